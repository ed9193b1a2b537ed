//! `kata-repro mirror`: bare mirrors of every git source a lockfile needs, which a fetch with
//! nothing but their mirrors.toml (offline) then reads, and which git itself finds sound.

mod common;

use std::path::Path;

use common::{Fixture, TAG, git, kata_repro, tamper_loose_object, text};

fn mirror(f: &Fixture, dir: &Path) -> std::process::Output {
    kata_repro()
        .arg("--config")
        .arg(&f.config)
        .args(["mirror", "--json", "--lockfile"])
        .arg(&f.lockfile)
        .arg("--dir")
        .arg(dir)
        .arg("--store")
        .arg(&f.store)
        .output()
        .unwrap()
}

#[test]
fn mirrors_of_every_git_source_are_written_and_a_fetch_reads_them_offline() {
    let f = Fixture::new();
    let dir = f.root().join("carry/mirrors");
    let out = mirror(&f, &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let upstreams: Vec<&str> = v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["upstream"].as_str().unwrap())
        .collect();
    // Kata, its git dependency, and the dependency's submodule.
    assert_eq!(upstreams.len(), 3, "{v}");
    for u in [common::KATA_URL, common::DEP_URL, common::CI_URL] {
        assert!(
            upstreams.iter().any(|x| x.trim_end_matches(".git") == u),
            "{u}: {v}"
        );
    }
    for m in v["mirrors"].as_array().unwrap() {
        let repo = dir.join(m["path"].as_str().unwrap());
        // git's own check of every object and link.
        let fsck = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["fsck", "--full", "--strict"])
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{}: {}", repo.display(), text(&fsck));
    }
    let kata = dir.join("github.com/example/kata-containers.git");
    assert_eq!(
        git(&kata, &["rev-parse", &format!("{TAG}^{{commit}}")]),
        f.kata_commit()
    );

    // Only the written mirrors, offline, into a new store.
    let store = f.root().join("carried-store");
    let out = kata_repro()
        .arg("--config")
        .arg(dir.join("mirrors.toml"))
        .args([
            "fetch",
            "--json",
            "--offline",
            "--skip",
            "toolchain,kernel",
            "--lockfile",
        ])
        .arg(&f.lockfile)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        store
            .join("git")
            .join(f.kata_commit())
            .join("tree")
            .is_dir()
    );

    // A directory that holds something is refused before anything is read.
    let out = mirror(&f, &dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
}

#[test]
fn a_tampered_source_object_writes_no_mirrors() {
    let f = Fixture::new();
    let blob = git(&f.kata, &["rev-parse", &format!("{TAG}:README.md")]);
    tamper_loose_object(&f.kata, &blob, "blob", b"Kata fixture, with a backdoor\n");
    let carry = f.root().join("carry");
    let out = mirror(&f, &carry.join("mirrors"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("corrupt or tampered") && t.contains(&blob),
        "{t}"
    );
    // Nothing half-written: no output directory, no staging left beside it.
    assert!(!carry.join("mirrors").exists());
    assert_eq!(std::fs::read_dir(&carry).unwrap().count(), 0);
}
