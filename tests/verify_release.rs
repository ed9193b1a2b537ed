//! `kata-repro verify --lockfile`, offline, against the fixture release.

mod common;

use common::{Fixture, assert_code, exited, items, json, string};

fn verify(f: &Fixture, extra: &[&str]) -> std::process::Output {
    f.lockfile_command("verify").args(extra).output().unwrap()
}

#[test]
fn a_release_verifies_and_lists_its_kernel_inputs() {
    let f = Fixture::new();
    let out = verify(&f, &["--json", "--arch", "x86_64,aarch64"]);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["summary"]["source"]["ok"], 1);
    assert_eq!(v["summary"]["cargo"]["ok"], 1, "the git package dep@0.1.0");
    assert_eq!(v["summary"]["toolchain"]["ok"], 2);
    let kernel: Vec<&serde_json::Value> = items(&v["findings"])
        .filter(|f| f["ecosystem"] == "kernel")
        .collect();
    let names: Vec<&str> = kernel.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "linux@6.0.1",
            "tools/packaging/kernel/patches/6.0.x/0001-fix.patch",
            "tools/packaging/kernel/configs/fragments/common/base.conf",
            "tools/packaging/kernel/configs/fragments/x86_64/x86.conf",
            "tools/packaging/kernel/configs/fragments/arm64/arm.conf",
        ]
    );
    assert_eq!(kernel[2]["actual"], common::sha256_hex(b"CONFIG_A=y\n"));
    assert!(
        items(&v["notes"])
            .any(|n| string(n).starts_with("1 path packages are covered by the source commit")),
        "{v}"
    );

    // The summary table, in text.
    let out = verify(&f, &[]);
    assert_code(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ECOSYSTEM") && stdout.contains("UNPINNED"),
        "{stdout}"
    );
}

#[test]
fn a_git_dependency_at_another_commit_fails() {
    let f = Fixture::new();
    f.pin_dep_at("1111111111111111111111111111111111111111");
    let all = exited(&verify(&f, &[]), 1);
    assert!(
        all.contains(&format!(
            "Cargo.lock pins https://github.com/example/dep-rs at {}, but the lockfile does not",
            f.dep_commit
        )),
        "{all}"
    );
    assert!(all.contains("failed cargo dep@0.1.0"), "{all}");
}

#[test]
fn a_swapped_kernel_tarball_fails_and_a_damaged_stored_one_is_fetched_again() {
    let f = Fixture::new();
    assert_eq!(verify(&f, &[]).status.code(), Some(0));
    // Damaged in the store: dropped, and fetched again from the (good) mirror.
    let stored = f.store.join("objects/sha256").join(&f.kernel_sha256);
    std::fs::write(&stored, b"swapped").unwrap();
    assert_eq!(verify(&f, &[]).status.code(), Some(0));
    assert_eq!(
        common::sha256_hex(&std::fs::read(&stored).unwrap()),
        f.kernel_sha256
    );
    // Swapped at the source too: refused, with both hashes.
    std::fs::write(&stored, b"swapped").unwrap();
    std::fs::write(f.downloads.join("kernel/linux-6.0.1.tar.xz"), b"swapped").unwrap();
    let all = exited(&verify(&f, &["--skip", "cargo,go,toolchain"]), 1);
    assert!(all.contains("failed kernel linux@6.0.1"), "{all}");
    assert!(
        all.contains(&f.kernel_sha256) && all.contains(&common::sha256_hex(b"swapped")),
        "{all}"
    );
    assert!(!stored.exists());
}

#[test]
fn offline_downloads_nothing() {
    let f = Fixture::new();
    // A kernel URL no mirror covers: offline, it is missing instead of downloaded.
    f.edit_lockfile(
        "url = \"https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.0.1.tar.xz\"",
        "url = \"https://cdn.kernel.org/pub/elsewhere/linux-6.0.1.tar.xz\"",
    );
    let all = exited(
        &verify(&f, &["--offline", "--skip", "cargo,go,toolchain"]),
        1,
    );
    assert!(all.contains("--offline forbids downloading it"), "{all}");
}
