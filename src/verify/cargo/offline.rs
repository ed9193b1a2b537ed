//! An offline vendor tree for `cargo build --locked --offline`, made only from verified bytes.
//!
//! 1. Every registry crate is extracted from its verified `.crate` in the store straight into
//!    the vendor tree (or, where an earlier run left it, compared file by file with the `.crate`
//!    inflated again), with the `.cargo-checksum.json` cargo expects, so that the tree holds
//!    every file of the `.crate` (cargo vendor's packaging rules would drop some: openssl-src's
//!    build needs the openssl/fuzz/build.info its Cargo.toml excludes).
//! 2. `cargo vendor` then completes the tree, with crates.io replaced by the tree itself (it
//!    leaves a versioned directory that has its checksum file alone, so the registry crates are
//!    not copied again) and every git source replaced by its local mirror (cargo re-hashes every
//!    git object it reads, and checks out the commit Cargo.lock pins). Cargo itself writes the
//!    normalised manifests of git packages. Its git databases are kept in the store between
//!    runs; its checkouts never are.
//! 3. The result is verified against Cargo.lock like any vendor tree, and a source-replacement
//!    config that points at it is written beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::vendor::{self, CHECKSUM_FILE};
use crate::digest::Sha256Digest;
use crate::lock::Loaded;
use crate::lock::cargo_lock::{CargoLock, PackageSource};
use crate::source::download::Location;
use crate::source::extract;
use crate::source::mirror::Mirrors;
use crate::source::store::Store;
use crate::verify::report::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{package}: its .crate is not in the store; run `kata-repro verify --lockfile` first")]
    NotInStore { package: String },
    #[error("{package}: {source}")]
    Extract {
        package: String,
        source: extract::ExtractError,
    },
    #[error("git source {source_id}: no local mirror; pass --mirror {url}=PATH")]
    NoMirror { source_id: String, url: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cargo vendor failed:\n{stderr}")]
    CargoVendor { stderr: String },
    #[error("the vendor tree cargo wrote does not verify: {0}")]
    Unverified(String),
}

/// The `.cargo-checksum.json` of a directory source, as cargo writes it.
#[derive(Serialize)]
struct Checksum<'a> {
    files: &'a BTreeMap<String, String>,
    package: Option<String>,
}

/// Extracts a verified `.crate` into `dest` and writes its checksum file, which it returns.
pub fn unpack_crate(
    crate_file: &Path,
    dest: &Path,
    checksum: &Sha256Digest,
) -> Result<String, extract::ExtractError> {
    let io_err = |source| extract::ExtractError::Io {
        archive: crate_file.to_owned(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(io_err)?;
    let written = extract::untar_gz(crate_file, dest, 1)?;
    let mut files = BTreeMap::new();
    for f in written {
        // What cargo vendor leaves out: its unpack marker and the crate's top-level git files.
        if !vendor::vendored_from_crate(&f.path) {
            std::fs::remove_file(dest.join(&f.path)).map_err(io_err)?;
            continue;
        }
        let digest = Sha256Digest::of_file(&dest.join(&f.path)).map_err(io_err)?;
        files.insert(f.path, digest.to_hex());
    }
    let json = checksum_json(&files, checksum);
    std::fs::write(dest.join(CHECKSUM_FILE), &json).map_err(io_err)?;
    Ok(json)
}

/// What was produced.
#[derive(Debug, Clone)]
pub struct OfflineVendor {
    pub vendor_dir: PathBuf,
    /// A cargo config that replaces every source with the vendor tree.
    pub config: PathBuf,
    pub crates: usize,
    /// Held while the tree is in use: another process waits rather than write it afresh
    /// under a build. `None` for a tree outside the store.
    pub in_use: Option<std::sync::Arc<crate::source::store::EntryLock>>,
}

/// Builds `out/vendor` and `out/config.toml` for the workspace at `workspace` (whose Cargo.lock
/// is `lock`); an `out/vendor` an earlier run left is brought up to date, never believed (see
/// [`ensure_in_store`]). The config names the vendor tree at `final_out/vendor`, where `out` is
/// moved once complete (or `out` itself). `cargo` is the cargo binary to run.
pub fn build(
    lock: &Loaded<CargoLock>,
    workspace: &Path,
    store: &Store,
    mirrors: &Mirrors,
    out: &Path,
    final_out: &Path,
    cargo: &str,
) -> Result<OfflineVendor, OfflineError> {
    // Scratch (cargo's home, its config) in the store's staging area, which is swept of what a
    // killed run leaves: a cargo checkout left behind would be used unchecked.
    let stage = store.stage_dir().map_err(|e| OfflineError::Io {
        path: store.root().to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let staging = stage.path().to_owned();
    let vendor_dir = out.join("vendor");
    std::fs::create_dir_all(&vendor_dir).map_err(io_err(&vendor_dir))?;

    // 1. Registry crates, from the store, straight into the vendor tree.
    let mut written = unpack_registry_crates(lock, store, &vendor_dir)?;

    // 2. cargo vendor with every source replaced.
    let mut config = String::from("[source.crates-io]\nreplace-with = \"kata-repro-registry\"\n\n");
    config.push_str(&format!(
        "[source.kata-repro-registry]\ndirectory = {}\n\n",
        toml_str(&vendor_dir.display().to_string())
    ));
    let mut git_sources: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    for p in &lock.packages {
        if let PackageSource::Git(g) = &p.source {
            git_sources.insert(g.source_id(), (g.url.clone(), g.reference.clone()));
        }
    }
    for (i, (source_id, (url, reference))) in git_sources.iter().enumerate() {
        let Some(Location::File(mirror)) = mirrors.resolve(url) else {
            return Err(OfflineError::NoMirror {
                source_id: source_id.clone(),
                url: url.clone(),
            });
        };
        let mirror_url = format!("file://{}", mirror.display());
        if mirror_url.trim_end_matches('/') == url.trim_end_matches('/') {
            continue; // the upstream is itself this local repository
        }
        let reference = reference_line(reference.as_deref());
        config.push_str(&format!(
            "[source.{}]\ngit = {}\n{}replace-with = \"kata-repro-git-{i}\"\n\n[source.kata-repro-git-{i}]\ngit = {}\n{}\n",
            toml_str(source_id),
            toml_str(url),
            reference.clone().unwrap_or_default(),
            toml_str(&mirror_url),
            reference.unwrap_or_default(),
        ));
    }
    let cfg_path = staging.join("vendor-sources.toml");
    std::fs::write(&cfg_path, &config).map_err(io_err(&cfg_path))?;
    let cargo_home = staging.join("cargo-home");
    // Submodules are cloned from the URLs in .gitmodules: send those to their mirrors too.
    let mut gitconfig = String::new();
    // (git rewrites by prefix; a wrong rewrite can only fail, since cargo checks out pinned ids.)
    for (url, path) in mirrors.local_repositories() {
        if url.starts_with("file://") {
            continue; // a local upstream needs no rewriting
        }
        let mirror = format!("file://{}", path.display());
        for from in [url.clone(), format!("{url}.git")] {
            gitconfig.push_str(&format!(
                "[url {}]\n\tinsteadOf = {from}\n",
                toml_str(&mirror)
            ));
        }
    }
    let gitconfig_path = staging.join(".gitconfig");
    std::fs::write(&gitconfig_path, gitconfig).map_err(io_err(&gitconfig_path))?;
    // Cargo's git databases are kept in the store between runs, so that a git dependency is
    // cloned from its mirror once. A kept database that cargo cannot use (libgit2 re-hashes
    // every object it reads, so a damaged or altered object fails the checkout) is dropped and
    // the run repeated from the mirrors.
    let git_db = cargo_home.join("git/db");
    let reused = take_git_db(store, &git_db);
    let vendor_run = || run_cargo_vendor(cargo, workspace, &cfg_path, &vendor_dir, &staging);
    match vendor_run() {
        Err(_) if reused => {
            if cargo_home.exists() {
                crate::files::remove_tree(&cargo_home).map_err(io_err(&cargo_home))?;
            }
            written = unpack_registry_crates(lock, store, &vendor_dir)?;
            vendor_run()?;
        }
        done => done?,
    }
    keep_git_db(store, &git_db);

    // 3. Verify what cargo wrote, then point cargo at it.
    let bad = check_vendored(lock, &vendor_dir, &written);
    if !bad.is_empty() {
        return Err(OfflineError::Unverified(bad.join("\n")));
    }
    let mut final_config =
        String::from("[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n");
    for (source_id, (url, reference)) in &git_sources {
        let reference = reference_line(reference.as_deref());
        final_config.push_str(&format!(
            "[source.{}]\ngit = {}\n{}replace-with = \"vendored-sources\"\n\n",
            toml_str(source_id),
            toml_str(url),
            reference.unwrap_or_default()
        ));
    }
    let final_vendor = final_out.join("vendor");
    final_config.push_str(&format!(
        "[source.vendored-sources]\ndirectory = {}\n",
        toml_str(&final_vendor.display().to_string())
    ));
    let config = out.join("config.toml");
    crate::files::write_atomically(&config, final_config.as_bytes()).map_err(io_err(&config))?;
    drop(stage);
    Ok(OfflineVendor {
        vendor_dir: final_vendor,
        config: final_out.join("config.toml"),
        crates: written.len() + git_packages(lock).count(),
        in_use: None,
    })
}

/// Makes `vendor_dir` hold exactly the registry crates of `lock`, each as [`unpack_crate`]
/// writes it from its verified `.crate` in the store, on every core: a crate directory an
/// earlier run left is kept only when it is exactly that, compared file by file with the
/// `.crate` inflated again; anything else there (git packages, strays) is removed. Returns each
/// directory's name with its checksum file.
fn unpack_registry_crates(
    lock: &Loaded<CargoLock>,
    store: &Store,
    vendor_dir: &Path,
) -> Result<BTreeMap<String, String>, OfflineError> {
    use rayon::prelude::*;
    let written: BTreeMap<String, String> = lock
        .packages
        .par_iter()
        .filter(|p| matches!(p.source, PackageSource::Registry(_)))
        .map(|p| {
            let checksum = p
                .checksum
                .ok_or_else(|| OfflineError::NotInStore { package: p.id() })?;
            if !store.verify_object(&checksum).unwrap_or(false) {
                return Err(OfflineError::NotInStore { package: p.id() });
            }
            let name = format!("{}-{}", p.name, p.version);
            let (crate_file, dir) = (store.object_path(&checksum), vendor_dir.join(&name));
            let extract_err = |source| OfflineError::Extract {
                package: p.id(),
                source,
            };
            if dir.exists() {
                if let Some(json) = unpacked(&crate_file, &dir, &checksum).map_err(extract_err)? {
                    return Ok((name, json));
                }
                crate::files::remove_tree(&dir).map_err(io_err(&dir))?;
            }
            let json = unpack_crate(&crate_file, &dir, &checksum).map_err(extract_err)?;
            Ok((name, json))
        })
        .collect::<Result<_, _>>()?;
    for entry in std::fs::read_dir(vendor_dir)
        .map_err(io_err(vendor_dir))?
        .flatten()
    {
        if !written.contains_key(entry.file_name().to_string_lossy().as_ref()) {
            crate::files::remove_tree(&entry.path()).map_err(io_err(&entry.path()))?;
        }
    }
    Ok(written)
}

/// The checksum file of `dir` when `dir` is exactly what [`unpack_crate`] writes from
/// `crate_file`, checksum file included.
fn unpacked(
    crate_file: &Path,
    dir: &Path,
    checksum: &Sha256Digest,
) -> Result<Option<String>, extract::ExtractError> {
    let files = match extract::tar_gz_tree_matches(
        crate_file,
        dir,
        1,
        &vendor::vendored_from_crate,
        &[CHECKSUM_FILE],
    )? {
        Ok(files) => files,
        Err(_) => return Ok(None),
    };
    let files: BTreeMap<String, String> = files
        .into_iter()
        .map(|(rel, d)| (rel, d.to_hex()))
        .collect();
    let json = checksum_json(&files, checksum);
    let on_disk = std::fs::read_to_string(dir.join(CHECKSUM_FILE)).ok();
    Ok((on_disk.as_deref() == Some(json.as_str())).then_some(json))
}

/// A directory source's `.cargo-checksum.json` for a crate, as cargo writes it.
fn checksum_json(files: &BTreeMap<String, String>, checksum: &Sha256Digest) -> String {
    serde_json::to_string(&Checksum {
        files,
        package: Some(checksum.to_hex()),
    })
    .expect("checksums serialise")
}

/// The git packages of `lock`.
fn git_packages(lock: &CargoLock) -> impl Iterator<Item = &crate::lock::cargo_lock::LockedPackage> {
    lock.packages
        .iter()
        .filter(|p| matches!(p.source, PackageSource::Git(_)))
}

/// What is wrong with the tree cargo vendor completed, one line each: a directory that is not
/// a locked package, a locked package missing, a registry crate whose checksum file is no
/// longer the one step 1 wrote (cargo leaves such a directory alone; the crate's files were
/// just written from the verified `.crate`), or a git package that does not agree with
/// Cargo.lock and its own checksum file (it was vendored from the commit Cargo.lock pins).
fn check_vendored(
    lock: &Loaded<CargoLock>,
    vendor_dir: &Path,
    written: &BTreeMap<String, String>,
) -> Vec<String> {
    let git: BTreeMap<String, PathBuf> = git_packages(lock)
        .map(|p| {
            let name = format!("{}-{}", p.name, p.version);
            let dir = vendor_dir.join(&name);
            (name, dir)
        })
        .collect();
    let mut bad = Vec::new();
    let found: std::collections::BTreeSet<String> = match std::fs::read_dir(vendor_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return vec![format!("{}: {e}", vendor_dir.display())],
    };
    for name in &found {
        if !written.contains_key(name) && !git.contains_key(name) {
            bad.push(format!("{name}: vendored, but not a locked package"));
        }
    }
    for (name, json) in written {
        let now = std::fs::read_to_string(vendor_dir.join(name).join(CHECKSUM_FILE));
        if now.as_deref().ok() != Some(json.as_str()) {
            bad.push(format!(
                "{name}: cargo vendor rewrote the crate unpacked from its verified .crate"
            ));
        }
    }
    let dirs: Vec<PathBuf> = git.values().cloned().collect();
    let no_crates = |_: &crate::lock::cargo_lock::LockedPackage| None;
    bad.extend(
        vendor::verify_dirs(lock, &lock.path, &dirs, &no_crates)
            .iter()
            .filter(|f| !matches!(f.outcome, Outcome::Ok | Outcome::SelfConsistent))
            .map(|f| f.line()),
    );
    bad
}

/// Runs `cargo vendor` in `staging`, whose `cargo-home` is CARGO_HOME and which is HOME (for
/// the `.gitconfig` that sends submodules to their mirrors).
fn run_cargo_vendor(
    cargo: &str,
    workspace: &Path,
    cfg_path: &Path,
    vendor_dir: &Path,
    staging: &Path,
) -> Result<(), OfflineError> {
    // HOME changes below (for the git config); rustup must still find its toolchains.
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".rustup")));
    let mut command = Command::new(cargo);
    if let Some(r) = rustup_home {
        command.env("RUSTUP_HOME", r);
    }
    let output = command
        .args([
            "vendor",
            "--locked",
            "--respect-source-config",
            "--versioned-dirs",
            "--quiet",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .arg("--config")
        .arg(cfg_path)
        .arg(vendor_dir)
        .current_dir(staging)
        .env("CARGO_HOME", staging.join("cargo-home"))
        .env("HOME", staging)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(io_err(Path::new(cargo)))?;
    if !output.status.success() {
        return Err(OfflineError::CargoVendor {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Moves the store's kept cargo git databases to `git_db`, if the store has them and no other
/// vendor run has taken them; says whether it did.
fn take_git_db(store: &Store, git_db: &Path) -> bool {
    let kept = store.cargo_git_db();
    if !kept.is_dir() {
        return false;
    }
    git_db
        .parent()
        .is_some_and(|parent| std::fs::create_dir_all(parent).is_ok())
        && std::fs::rename(&kept, git_db).is_ok()
}

/// Moves the git databases of a successful run back into the store, unless another run put
/// its own there first. They are only a cache of what the mirrors hold: losing them costs a
/// clone.
fn keep_git_db(store: &Store, git_db: &Path) {
    if git_db.is_dir() {
        let _ = std::fs::rename(git_db, store.cargo_git_db());
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OfflineError {
    let path = path.to_owned();
    move |source| OfflineError::Io { path, source }
}

/// The `rev = "…"`, `tag = "…"` or `branch = "…"` line of a git source's reference
/// (`rev=<value>` as Cargo.lock writes it), if it has one.
fn reference_line(reference: Option<&str>) -> Option<String> {
    reference
        .and_then(|r| r.split_once('='))
        .map(|(k, v)| format!("{k} = {}\n", toml_str(v)))
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The verified offline vendor tree of a Cargo.lock, in the store under the lock's sha256,
/// brought up to date in place (under the entry's lock) from the verified `.crate` objects and
/// the git commits the lockfile pins. A registry crate an earlier build left there is kept only
/// when it is, file for file, what its `.crate` unpacks to; every git package is vendored
/// afresh, since it can only be checked against the checksum file cargo wrote beside it, which
/// the store could have rewritten too. A run that fails leaves a tree the next one repairs.
pub fn ensure_in_store(
    lock: &Loaded<CargoLock>,
    workspace: &Path,
    store: &Store,
    mirrors: &Mirrors,
    cargo: &str,
) -> Result<OfflineVendor, OfflineError> {
    let final_out = store.vendor_tree(&lock.sha256);
    let in_use = store
        .lock_entry(&format!("vendor-{}", lock.sha256.to_hex()))
        .map_err(|e| OfflineError::Io {
            path: final_out.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    std::fs::create_dir_all(&final_out).map_err(io_err(&final_out))?;
    let built = build(
        lock, workspace, store, mirrors, &final_out, &final_out, cargo,
    )?;
    Ok(OfflineVendor {
        in_use: Some(std::sync::Arc::new(in_use)),
        ..built
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        Sha256Digest::of(data).to_hex()
    }

    /// A Cargo.lock with one registry crate and one git package, and the tree vendoring them.
    fn vendored(dir: &Path) -> (Loaded<CargoLock>, PathBuf, BTreeMap<String, String>) {
        let lock_path = dir.join("Cargo.lock");
        std::fs::write(
            &lock_path,
            format!(
                "version = 4\n\n[[package]]\nname = \"leaf\"\nversion = \"0.1.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n\n[[package]]\nname = \"gitdep\"\nversion = \"0.2.0\"\nsource = \"git+https://git.example.org/gitdep#{}\"\n",
                sha(b"leaf"),
                "a".repeat(40)
            ),
        )
        .unwrap();
        let lock = CargoLock::load(&lock_path).unwrap();
        let vendor = dir.join("vendor");
        let leaf = vendor.join("leaf-0.1.0");
        std::fs::create_dir_all(&leaf).unwrap();
        let json = format!("{{\"files\":{{}},\"package\":\"{}\"}}", sha(b"leaf"));
        std::fs::write(leaf.join(CHECKSUM_FILE), &json).unwrap();
        let git = vendor.join("gitdep-0.2.0");
        std::fs::create_dir_all(git.join("src")).unwrap();
        let manifest = "[package]\nname = \"gitdep\"\nversion = \"0.2.0\"\n";
        std::fs::write(git.join("Cargo.toml"), manifest).unwrap();
        std::fs::write(git.join("src/lib.rs"), "pub fn g() {}\n").unwrap();
        std::fs::write(
            git.join(CHECKSUM_FILE),
            format!(
                "{{\"files\":{{\"Cargo.toml\":\"{}\",\"src/lib.rs\":\"{}\"}},\"package\":null}}",
                sha(manifest.as_bytes()),
                sha(b"pub fn g() {}\n")
            ),
        )
        .unwrap();
        let written = BTreeMap::from([("leaf-0.1.0".to_owned(), json)]);
        (lock, vendor, written)
    }

    #[test]
    fn the_completed_tree_is_checked_without_reading_the_crates_again() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, vendor, written) = vendored(dir.path());
        assert_eq!(
            check_vendored(&lock, &vendor, &written),
            Vec::<String>::new()
        );

        std::fs::create_dir(vendor.join("stray-1.0.0")).unwrap();
        let bad = check_vendored(&lock, &vendor, &written);
        assert!(
            bad[0].contains("stray-1.0.0: vendored, but not a locked package"),
            "{bad:?}"
        );
        std::fs::remove_dir(vendor.join("stray-1.0.0")).unwrap();

        let sums = vendor.join("leaf-0.1.0").join(CHECKSUM_FILE);
        let json = std::fs::read_to_string(&sums).unwrap();
        std::fs::write(&sums, json.replace("{}", "{\"x\":\"00\"}")).unwrap();
        let bad = check_vendored(&lock, &vendor, &written);
        assert!(
            bad[0].contains("leaf-0.1.0: cargo vendor rewrote"),
            "{bad:?}"
        );
        std::fs::write(&sums, json).unwrap();

        std::fs::write(
            vendor.join("gitdep-0.2.0/src/lib.rs"),
            "pub fn g() { evil() }\n",
        )
        .unwrap();
        let bad = check_vendored(&lock, &vendor, &written);
        assert!(bad.len() == 1 && bad[0].contains("gitdep@0.2.0"), "{bad:?}");
        crate::files::remove_tree(&vendor.join("gitdep-0.2.0")).unwrap();
        let bad = check_vendored(&lock, &vendor, &written);
        assert!(bad.len() == 1 && bad[0].contains("gitdep"), "{bad:?}");
    }
}
