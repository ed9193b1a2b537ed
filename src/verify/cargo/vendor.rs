//! Vendored crates, as `cargo vendor` writes them: each directory has a `.cargo-checksum.json`
//! whose `package` is the Cargo.lock checksum (null for git packages) and whose `files` lists
//! the sha256 of every file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;

use crate::digest::Sha256Digest;
use crate::lock::cargo_lock::{CargoLock, LockedPackage, PackageSource};
use crate::verify::report::{Ecosystem, Finding, Outcome};

pub const CHECKSUM_FILE: &str = ".cargo-checksum.json";

#[derive(Debug, Deserialize)]
pub struct CargoChecksum {
    pub files: BTreeMap<String, String>,
    pub package: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    package: Option<ManifestPackage>,
}

#[derive(Deserialize)]
struct ManifestPackage {
    name: String,
    version: Option<toml::Value>,
}

/// `(name, version)` of the crate in `dir`, from its Cargo.toml.
fn crate_id(dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let manifest: Manifest = toml::from_str(&text).ok()?;
    let package = manifest.package?;
    let version = package
        .version
        .and_then(|v| v.as_str().map(str::to_owned))?;
    Some((package.name, version))
}

/// Problems with one vendored crate's files, against its checksum file.
fn check_files(dir: &Path, listed: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems: Vec<String> = listed
        .par_iter()
        .filter_map(|(rel, want)| {
            let path = dir.join(rel);
            match Sha256Digest::of_file(&path) {
                Ok(actual) if actual.to_hex() == *want => None,
                Ok(actual) => Some(format!(
                    "{rel} was edited (expected {want}, actual {actual})"
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(format!("{rel} is listed but missing"))
                }
                Err(e) => Some(format!("{rel}: {e}")),
            }
        })
        .collect();
    for (rel, _) in files_of(dir) {
        if rel != CHECKSUM_FILE && !listed.contains_key(&rel) {
            problems.push(format!(
                "{rel} is present but not listed in {CHECKSUM_FILE}"
            ));
        }
    }
    problems.sort();
    problems
}

/// Whether `cargo vendor` keeps a file of a `.crate` (by its path in the crate): not cargo's
/// unpack marker, and not the git files at the crate's top.
pub fn vendored_from_crate(rel: &str) -> bool {
    !matches!(rel, ".cargo-ok" | ".gitattributes" | ".gitignore" | ".git")
}

/// The files of a `.crate` (paths without the `<name>-<version>/` prefix) and their sha256,
/// those `cargo vendor` keeps.
pub fn crate_files(archive: &Path) -> std::io::Result<BTreeMap<String, Sha256Digest>> {
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut out = BTreeMap::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let rel: PathBuf = path.components().skip(1).collect();
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel.is_empty() || !vendored_from_crate(&rel) {
            continue;
        }
        out.insert(rel, Sha256Digest::of_reader(&mut entry)?);
    }
    Ok(out)
}

/// Every file under `dir`, by slash-separated relative path (an unreadable tree lists nothing,
/// and its files are then reported missing).
fn files_of(dir: &Path) -> Vec<(String, PathBuf)> {
    crate::verify::gomod::dirhash::dir_files(dir).unwrap_or_default()
}

/// Vendored files that are not byte for byte files of the verified archive.
fn compare_with_archive(dir: &Path, archive: &BTreeMap<String, Sha256Digest>) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, path) in files_of(dir) {
        if rel == CHECKSUM_FILE {
            continue;
        }
        match (archive.get(&rel), Sha256Digest::of_file(&path)) {
            (None, _) => problems.push(format!("{rel} is not in the verified .crate")),
            (Some(want), Ok(got)) if *want != got => problems.push(format!(
                "{rel} differs from the verified .crate (expected {want}, actual {got})"
            )),
            (Some(_), Err(e)) => problems.push(format!("{rel}: {e}")),
            _ => {}
        }
    }
    problems
}

/// Files of the verified `.crate` that are not vendored although the package's own `include`
/// and `exclude` (which cargo vendor applies, as cargo does) keep them: a file deleted from both
/// the tree and its checksum file.
fn not_vendored(dir: &Path, archive: &BTreeMap<String, Sha256Digest>) -> Vec<String> {
    let rules = PackagingRules::read(&dir.join("Cargo.toml"));
    archive
        .keys()
        .filter(|rel| !dir.join(rel.as_str()).is_file() && rules.keeps(rel))
        .map(|rel| format!("{rel} of the verified .crate is not vendored"))
        .collect()
}

/// A package's `include` and `exclude` lists, as gitignore-style patterns (cargo's reading).
struct PackagingRules {
    include: Option<ignore::gitignore::Gitignore>,
    exclude: Option<ignore::gitignore::Gitignore>,
}

impl PackagingRules {
    fn read(manifest: &Path) -> Self {
        let value: Option<toml::Value> = std::fs::read_to_string(manifest)
            .ok()
            .and_then(|t| toml::from_str(&t).ok());
        let list = |key: &str| -> Option<ignore::gitignore::Gitignore> {
            let patterns = value.as_ref()?.get("package")?.get(key)?.as_array()?;
            let root = manifest.parent().unwrap_or(Path::new("."));
            let mut b = ignore::gitignore::GitignoreBuilder::new(root);
            for p in patterns.iter().filter_map(|p| p.as_str()) {
                b.add_line(None, p).ok()?;
            }
            b.build().ok()
        };
        Self {
            include: list("include"),
            exclude: list("exclude"),
        }
    }

    /// Whether cargo keeps the file at `rel`.
    fn keeps(&self, rel: &str) -> bool {
        let matched = |g: &ignore::gitignore::Gitignore| {
            g.matched_path_or_any_parents(rel, false).is_ignore()
        };
        match (&self.include, &self.exclude) {
            (Some(include), _) => matched(include),
            (None, Some(exclude)) => !matched(exclude),
            (None, None) => true,
        }
    }
}

/// Verifies the vendored package directories `dirs` against Cargo.lock, one finding each: the
/// `package` checksum, every file against the checksum file, and a registry crate's files
/// against its verified `.crate` when `crates` finds it.
pub fn verify_dirs(
    lock: &CargoLock,
    lock_path: &Path,
    dirs: &[PathBuf],
    crates: &CrateLookup<'_>,
) -> Vec<Finding> {
    let by_id: BTreeMap<(String, String), &LockedPackage> = lock
        .packages
        .iter()
        .map(|p| ((p.name.clone(), p.version.clone()), p))
        .collect();
    dirs.par_iter()
        .map(|dir| {
            let origin = dir.display().to_string();
            let Some((name, version)) = crate_id(dir) else {
                return Finding::new(Ecosystem::Cargo, origin.clone(), Outcome::Failed)
                    .origin(origin)
                    .message("no readable Cargo.toml with a package name and version");
            };
            let id = format!("{name}@{version}");
            let base = Finding::new(Ecosystem::Cargo, id, Outcome::Ok).origin(origin);
            let Some(pkg) = by_id.get(&(name, version)) else {
                return base
                    .outcome(Outcome::Failed)
                    .message("vendored, but not in Cargo.lock");
            };
            let base = base.pinned_at(format!(
                "{}:{}",
                lock_path.display(),
                pkg.checksum_line.unwrap_or(pkg.line)
            ));
            let checksum: CargoChecksum = match std::fs::read(dir.join(CHECKSUM_FILE))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(c) => c,
                Err(e) => {
                    return base
                        .outcome(Outcome::Failed)
                        .message(format!("{CHECKSUM_FILE}: {e}"));
                }
            };
            let expected = pkg.checksum.map(|c| c.to_hex());
            if checksum.package != expected {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".into());
                return base
                    .outcome(Outcome::Failed)
                    .hashes(show(&expected), show(&checksum.package))
                    .message(format!(
                        "the `package` checksum in {CHECKSUM_FILE} is not Cargo.lock's"
                    ));
            }
            let mut problems = check_files(dir, &checksum.files);
            let archive = pkg.checksum.and_then(|_| crates(pkg));
            if let Some(archive) = &archive {
                match crate_files(archive) {
                    Ok(files) => {
                        problems.extend(compare_with_archive(dir, &files));
                        problems.extend(not_vendored(dir, &files));
                    }
                    Err(e) => problems.push(format!("{}: {e}", archive.display())),
                }
            }
            if problems.is_empty() {
                match (&archive, pkg.checksum) {
                    (Some(_), _) => base,
                    (None, Some(_)) => base.outcome(Outcome::SelfConsistent).message(format!(
                        "its files agree with its own {CHECKSUM_FILE}, but no verified .crate \
                         was at hand to check them against: pass --registry-cache DIR, or \
                         fetch the crates first"
                    )),
                    (None, None) => base.outcome(Outcome::SelfConsistent).message(format!(
                        "its files agree with its own {CHECKSUM_FILE} only: a git package is \
                         pinned by its commit, which `verify cargo` checks without --vendor"
                    )),
                }
            } else {
                let n = problems.len();
                let mut msg = problems.into_iter().take(5).collect::<Vec<_>>().join("; ");
                if n > 5 {
                    msg.push_str(&format!("; and {} more", n - 5));
                }
                base.outcome(Outcome::Failed).message(msg)
            }
        })
        .collect()
}

/// Verifies a vendor directory against Cargo.lock. Every registry and git package must be
/// vendored, every vendored crate must be locked, and every file must match its checksum.
pub fn verify(lock: &CargoLock, lock_path: &Path, vendor: &Path) -> Vec<Finding> {
    verify_against(lock, lock_path, vendor, &|_| None)
}

/// Finds the verified `.crate` of a locked package, when one is at hand.
pub type CrateLookup<'a> = dyn Fn(&LockedPackage) -> Option<PathBuf> + Sync + 'a;

/// Like [`verify`], and where `crates` finds the verified `.crate` of a registry package, every
/// vendored file must also be a file of that archive, byte for byte: a tree whose files and
/// checksum file were both rewritten is caught.
pub fn verify_against(
    lock: &CargoLock,
    lock_path: &Path,
    vendor: &Path,
    crates: &CrateLookup<'_>,
) -> Vec<Finding> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(vendor) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) => {
            return vec![
                Finding::new(
                    Ecosystem::Cargo,
                    vendor.display().to_string(),
                    Outcome::Missing,
                )
                .message(format!("cannot read the vendor directory: {e}")),
            ];
        }
    };
    dirs.sort();
    let mut findings = verify_dirs(lock, lock_path, &dirs, crates);
    let mut seen = BTreeSet::new();
    for f in &findings {
        seen.insert(f.name.clone());
    }
    for pkg in &lock.packages {
        if pkg.source != PackageSource::Path && !seen.contains(&pkg.id()) {
            findings.push(
                Finding::new(Ecosystem::Cargo, pkg.id(), Outcome::Missing)
                    .origin(vendor.display().to_string())
                    .pinned_at(format!("{}:{}", lock_path.display(), pkg.line))
                    .message("locked, but not vendored"),
            );
        }
    }
    findings
}
