//! Registry crates: each `.crate` archive must hash to its Cargo.lock `checksum`.
//!
//! Archives are looked for in the store, then in local registry caches (`~/.cargo/registry/cache`
//! or a mirror directory), and are otherwise downloaded from the registry into the store, where
//! they land only if they match.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::digest::Sha256Digest;
use crate::lock::cargo_lock::{CargoLock, LockedPackage, PackageSource};
use crate::source::download::{DownloadError, Location};
use crate::source::mirror::Mirrors;
use crate::source::store::{Store, StoreError};
use crate::verify::report::{Ecosystem, Finding, Outcome};

/// crates.io's download URL of a crate archive.
pub fn crates_io_url(name: &str, version: &str) -> String {
    format!("https://static.crates.io/crates/{name}/{name}-{version}.crate")
}

#[derive(Clone, Default)]
pub struct CrateSources<'a> {
    /// Verified archives live here; downloads land here.
    pub store: Option<&'a Store>,
    /// Directories holding `<name>-<version>.crate` files, directly or one level down (as in
    /// `~/.cargo/registry/cache/<index>/`).
    pub registry_caches: Vec<PathBuf>,
    /// Download what no cache holds (from the registry or its mirror).
    pub download: bool,
    pub mirrors: Option<&'a Mirrors>,
    /// Called as each crate is done, from any thread.
    pub on_done: Option<&'a (dyn Fn(&Finding) + Sync)>,
}

/// The verified `.crate` of `pkg`: in the store, or in a cache when it hashes to the checksum.
pub fn verified_crate(
    pkg: &LockedPackage,
    store: Option<&Store>,
    caches: &[PathBuf],
) -> Option<PathBuf> {
    let checksum = pkg.checksum?;
    if let Some(store) = store
        && store.verify_object(&checksum).unwrap_or(false)
    {
        return Some(store.object_path(&checksum));
    }
    let path = in_caches(caches, &format!("{}-{}.crate", pkg.name, pkg.version))?;
    (Sha256Digest::of_file(&path).ok()? == checksum).then_some(path)
}

fn in_caches(caches: &[PathBuf], file: &str) -> Option<PathBuf> {
    for cache in caches {
        let direct = cache.join(file);
        if direct.is_file() {
            return Some(direct);
        }
        if let Ok(rd) = std::fs::read_dir(cache) {
            for sub in rd.flatten() {
                let p = sub.path().join(file);
                if p.is_file() {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Checks every registry package of `lock` that carries a checksum; packages of other
/// registries than crates.io can only come from caches.
pub fn verify(
    lock: &CargoLock,
    lock_path: &Path,
    sources: &CrateSources<'_>,
    threads: usize,
) -> Vec<Finding> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("a thread pool");
    let packages: Vec<&LockedPackage> = lock
        .packages
        .iter()
        .filter(|p| matches!(p.source, PackageSource::Registry(_)))
        .collect();
    pool.install(|| {
        packages
            .par_iter()
            .map(|p| verify_one(p, lock_path, sources))
            .collect()
    })
}

fn verify_one(pkg: &LockedPackage, lock_path: &Path, sources: &CrateSources<'_>) -> Finding {
    let file = format!("{}-{}.crate", pkg.name, pkg.version);
    let base = Finding::new(Ecosystem::Cargo, pkg.id(), Outcome::Ok).pinned_at(format!(
        "{}:{}",
        lock_path.display(),
        pkg.checksum_line.unwrap_or(pkg.line)
    ));
    let Some(expected) = pkg.checksum else {
        return base
            .outcome(Outcome::Unpinned)
            .message("Cargo.lock has no checksum for this registry package");
    };
    // The store: verified before, re-hashed now.
    if let Some(store) = sources.store {
        match store.verify_object(&expected) {
            Ok(true) => return base.origin(store.object_path(&expected).display().to_string()),
            Ok(false) => {}
            Err(e) => return base.outcome(Outcome::Failed).message(e.to_string()),
        }
    }
    if let Some(path) = in_caches(&sources.registry_caches, &file) {
        let base = base.origin(path.display().to_string());
        return match Sha256Digest::of_file(&path) {
            Ok(actual) if actual == expected => {
                // Keep a verified copy, so that later steps use the store alone.
                if let Some(store) = sources.store
                    && let Err(e) = store.put(&Location::File(path.clone()), &expected, |_, _| {})
                {
                    return base.outcome(Outcome::Failed).message(e.to_string());
                }
                base
            }
            Ok(actual) => base
                .outcome(Outcome::Failed)
                .hashes(expected.to_hex(), actual.to_hex())
                .message("sha256 mismatch"),
            Err(e) => base.outcome(Outcome::Failed).message(e.to_string()),
        };
    }
    let (Some(store), true, true) = (sources.store, sources.download, pkg.is_crates_io()) else {
        return base
            .outcome(Outcome::Missing)
            .expected(expected.to_hex())
            .message(format!(
                "{file} is in no registry cache; pass --registry-cache DIR"
            ));
    };
    let url = crates_io_url(&pkg.name, &pkg.version);
    let location = sources
        .mirrors
        .and_then(|m| m.resolve(&url))
        .unwrap_or(Location::Http(url));
    let base = base.origin(location.to_string());
    match store.put(&location, &expected, |_, _| {}) {
        Ok(_) => base,
        Err(StoreError::Mismatch { actual, .. }) => base
            .outcome(Outcome::Failed)
            .hashes(expected.to_hex(), actual.to_hex())
            .message("sha256 mismatch; the download was deleted"),
        Err(StoreError::Download(e @ DownloadError::Truncated { .. })) => {
            base.outcome(Outcome::Failed).message(e.to_string())
        }
        Err(StoreError::Download(e)) => base
            .outcome(Outcome::Missing)
            .expected(expected.to_hex())
            .message(e.to_string()),
        Err(e) => base.outcome(Outcome::Failed).message(e.to_string()),
    }
}
