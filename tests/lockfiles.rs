//! The committed lockfiles, checked against the real files of those Kata releases.

use std::path::{Path, PathBuf};

use kata_repro::lock::{Lockfile, cargo_lock, versions::KataVersions};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    std::env::var_os("KATA_REPRO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join("kata")
}

/// The path of the committed lockfile of `release`.
fn committed(release: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("lockfiles/kata-{release}.toml"))
}

fn check(release: &str, commit: &str) {
    let path = committed(release);
    let lock = Lockfile::load(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        lock.to_toml(),
        text,
        "the committed lockfile is in canonical form"
    );
    assert_eq!(lock.release, release);
    assert_eq!(lock.source.commit.to_string(), commit);
    let source_txt = std::fs::read_to_string(fixtures().join(release).join("SOURCE.txt")).unwrap();
    assert!(source_txt.contains(commit));

    // Every pinned file that the fixtures hold hashes the same there.
    let mut compared = 0;
    for f in &lock.source.files {
        let fixture = fixtures().join(release).join(&f.path);
        if let Ok(data) = std::fs::read(&fixture) {
            assert_eq!(
                hex::encode(Sha256::digest(&data)),
                f.sha256.to_string(),
                "{}",
                f.path
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 4,
        "only {compared} pinned files could be compared"
    );

    let cargo = std::fs::read_to_string(fixtures().join(release).join("Cargo.lock")).unwrap();
    // The same repositories and commits as Cargo.lock; the lockfile adds their trees.
    let unpinned: Vec<_> = lock
        .git
        .iter()
        .cloned()
        .map(|mut g| {
            g.tree = None;
            g.submodules.clear();
            g
        })
        .collect();
    assert_eq!(cargo_lock::git_dependencies(&cargo).unwrap(), unpinned);
    for g in lock.git.iter().filter(|g| !g.url.contains("pcilibs-rs")) {
        assert!(g.tree.is_some(), "{} has no pinned tree", g.url);
    }
    let versions = KataVersions::parse(
        &std::fs::read_to_string(fixtures().join(release).join("versions.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(lock.kernel.version, versions.kernel_version);
    assert_eq!(lock.kernel.url, versions.kernel_url());
    assert_eq!(lock.toolchains.go.version, versions.go_version);
    let kcv = std::fs::read_to_string(
        fixtures()
            .join(release)
            .join("tools/packaging/kernel/kata_config_version"),
    )
    .unwrap();
    assert_eq!(lock.kernel.kata_config_version, kcv.trim());
    assert!(
        lock.kernel.sha256.is_some(),
        "release lockfiles pin kernel.org's hash"
    );
    // Every pypi source is pinned; go.dev archives could not be reached when locking.
    assert!(
        lock.toolchains
            .go
            .sources
            .iter()
            .filter(|s| s.kind == kata_repro::lock::SourceKind::Pypi)
            .all(|s| s.sha256.is_some())
    );
}

#[test]
fn kata_4_1_0() {
    check("4.1.0", "ddcb1ad8d23cbb4323f86c209f132b89592902df");
    let lock = Lockfile::load(&committed("4.1.0")).unwrap();
    assert_eq!(lock.toolchains.rust.channel, "1.95");
    assert_eq!(lock.git.iter().map(|g| g.packages.len()).sum::<usize>(), 7);
    assert_eq!(lock.kernel.kata_config_version, "202");
    assert_eq!(
        lock.source.commit_time, 1787297979,
        "2026-08-21T09:39:39+02:00"
    );
}

#[test]
fn kata_3_30_0() {
    check("3.30.0", "86e5975ad6a20f091ed686e492672c70496d0400");
    let lock = Lockfile::load(&committed("3.30.0")).unwrap();
    assert!(
        lock.source
            .files
            .iter()
            .any(|f| f.path == "src/runtime/vendor/modules.txt")
    );
    assert_eq!(lock.git.len(), 5);
}
