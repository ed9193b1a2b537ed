//! `kata-repro lockdiff` on the committed lockfiles of two Kata releases, their pinned
//! Cargo.lock and go.sum in a store as `fetch` leaves them.

mod common;

use std::path::{Path, PathBuf};

use common::{exited, json, kata_repro};

const FILES: [&str; 2] = ["Cargo.lock", "src/runtime/go.sum"];

/// A store holding the real pinned files of 3.30.0 and 4.1.0 at their commits.
fn store(root: &Path) -> PathBuf {
    let store = root.join("store");
    for release in ["3.30.0", "4.1.0"] {
        let tree = tree(&store, release);
        for file in FILES {
            let to = tree.join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(common::kata_fixtures().join(release).join(file), &to).unwrap();
        }
    }
    store
}

/// Where `store` keeps the checkout of `release`'s pinned commit.
fn tree(store: &Path, release: &str) -> PathBuf {
    let lock = kata_repro::lock::Lockfile::load(&lockfile(release))
        .unwrap()
        .value;
    store
        .join("git")
        .join(lock.source.commit.to_string())
        .join("tree")
}

fn lockfile(release: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("lockfiles/kata-{release}.toml"))
}

fn lockdiff(store: &Path, extra: &[&str]) -> std::process::Output {
    kata_repro()
        .args(extra)
        .arg("lockdiff")
        .arg(lockfile("3.30.0"))
        .arg(lockfile("4.1.0"))
        .arg("--store")
        .arg(store)
        .output()
        .unwrap()
}

#[test]
fn two_releases_are_compared_counts_first_as_text_json_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let text = exited(&lockdiff(&store, &[]), 0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Kata 3.30.0 -> 4.1.0", "{text}");
    assert!(
        lines[1].starts_with("source ") && lines[1].ends_with("0 added, 0 removed, 1 changed"),
        "{text}"
    );
    assert!(
        text.contains("+ https://github.com/zvonkok/pcilibs-rs"),
        "{text}"
    );
    assert!(
        text.contains("- https://github.com/kata-containers/cgroups-rs"),
        "{text}"
    );

    let report = json(&lockdiff(&store, &["--json"]));
    assert_eq!(report["from"], "3.30.0");
    assert_eq!(report["to"], "4.1.0");
    for section in [
        "source",
        "git dependencies",
        "toolchains",
        "kernel",
        "crates",
        "go modules",
    ] {
        assert!(report["counts"][section].is_object(), "{section}: {report}");
    }
    assert_eq!(report["counts"]["git dependencies"]["added"], 2);
    assert_eq!(report["counts"]["git dependencies"]["removed"], 1);

    let out = kata_repro()
        .arg("lockdiff")
        .arg("--markdown")
        .arg(lockfile("3.30.0"))
        .arg(lockfile("4.1.0"))
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let md = exited(&out, 0);
    assert!(md.starts_with("## Kata 3.30.0 → 4.1.0"), "{md}");
    assert!(md.contains("| git dependencies | 2 | 1 | 0 |"), "{md}");
}

#[test]
fn a_pinned_file_that_does_not_hash_as_pinned_fails_and_a_missing_one_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let go_sum = tree(&store, "4.1.0").join("src/runtime/go.sum");
    let mut bytes = std::fs::read(&go_sum).unwrap();
    bytes.extend_from_slice(b"example.org/x v1.0.0 h1:AAAA\n");
    std::fs::write(&go_sum, &bytes).unwrap();
    let err = exited(&lockdiff(&store, &[]), 1);
    assert!(
        err.contains("src/runtime/go.sum of 4.1.0") && err.contains("expected sha256"),
        "{err}"
    );
    std::fs::remove_file(&go_sum).unwrap();
    let err = exited(&lockdiff(&store, &[]), 2);
    assert!(err.contains("kata-repro fetch"), "{err}");
}
