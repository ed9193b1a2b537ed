//! Go modules in a module cache (GOMODCACHE layout) or fetched from a proxy, against go.sum.
//!
//! A module's zip lives at `cache/download/<escaped module>/@v/<escaped version>.zip` and its
//! go.mod at `….mod`; the extracted tree at `<escaped module>@<escaped version>/`. A GOPROXY
//! serves the same files at `<proxy>/<escaped module>/@v/<escaped version>.{zip,mod}`, so the
//! store keeps verified modules in that layout and can itself serve as a `file://` proxy.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dirhash;
use super::gosum::{GoSum, GoSumEntry, SumKind, escape_path};
use crate::source::download::{self, Location};
use crate::verify::report::{Ecosystem, Finding, Outcome, Report};

/// Why a Go module proxy URL cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProxyError {
    #[error("{url}: a Go module proxy must be https:// or file://")]
    Scheme { url: String },
    #[error("{url} cannot be used offline; use a file:// proxy")]
    Offline { url: String },
}

/// Checks a GOPROXY URL before anything is fetched from it: https:// or file://, and only
/// file:// when nothing may be downloaded.
pub fn check_proxy(url: &str, offline: bool) -> Result<(), ProxyError> {
    let url = url.to_owned();
    if url.starts_with("file://") {
        Ok(())
    } else if !url.starts_with("https://") {
        Err(ProxyError::Scheme { url })
    } else if offline {
        Err(ProxyError::Offline { url })
    } else {
        Ok(())
    }
}

/// Where module files are looked for, in order.
#[derive(Debug, Clone, Default)]
pub struct ModuleSources {
    /// Existing module caches (GOMODCACHE directories).
    pub modcaches: Vec<PathBuf>,
    /// A GOPROXY (https:// or file://) to download missing modules from, into `store`.
    pub proxy: Option<String>,
    /// The verified store of Go modules (a GOPROXY file layout), written only after a match.
    pub store: Option<PathBuf>,
    /// Where downloads are staged before they are checked (the store's `tmp/`).
    pub staging: Option<PathBuf>,
}

fn file_name(entry: &GoSumEntry) -> String {
    let ext = match entry.kind {
        SumKind::Zip => "zip",
        SumKind::GoMod => "mod",
    };
    format!(
        "{}/@v/{}.{ext}",
        escape_path(&entry.module),
        escape_path(&entry.version)
    )
}

fn hash_of(entry: &GoSumEntry, path: &Path) -> Result<String, String> {
    match entry.kind {
        SumKind::Zip => dirhash::hash_zip(path).map_err(|e| e.to_string()),
        SumKind::GoMod => std::fs::read(path)
            .map(|d| dirhash::hash_go_mod(&d))
            .map_err(|e| format!("{}: {e}", path.display())),
    }
}

fn finding_for(entry: &GoSumEntry, sum: &GoSum) -> Finding {
    let suffix = if entry.kind == SumKind::GoMod {
        "/go.mod"
    } else {
        ""
    };
    Finding::new(
        Ecosystem::Go,
        format!("{}@{}{suffix}", entry.module, entry.version),
        Outcome::Ok,
    )
    .pinned_at(format!("{}:{}", sum.path.display(), entry.line))
}

/// Checks one go.sum entry against a file. Returns the finding.
fn check_file(entry: &GoSumEntry, sum: &GoSum, path: &Path) -> Finding {
    let f = finding_for(entry, sum).origin(path.display().to_string());
    match hash_of(entry, path) {
        Ok(actual) if actual == entry.hash => f,
        Ok(actual) => f
            .outcome(Outcome::Failed)
            .hashes(&entry.hash, actual)
            .message("h1 mismatch"),
        Err(e) => f.outcome(Outcome::Failed).message(e),
    }
}

/// Verifies every go.sum entry: the zip (and any extracted directory) or the go.mod, from the
/// first source that has it. Entries no source has are missing.
pub fn verify(sum: &GoSum, sources: &ModuleSources) -> Report {
    let findings = sum
        .entries
        .par_iter()
        .map(|entry| verify_entry(entry, sum, sources))
        .collect::<Vec<_>>();
    Report {
        findings: findings.into_iter().flatten().collect(),
        notes: Vec::new(),
    }
}

fn verify_entry(entry: &GoSumEntry, sum: &GoSum, sources: &ModuleSources) -> Vec<Finding> {
    let rel = file_name(entry);
    let mut out = Vec::new();
    let dir_name = format!(
        "{}@{}",
        escape_path(&entry.module),
        escape_path(&entry.version)
    );
    let prefix = format!("{}@{}", entry.module, entry.version);
    // Extracted trees in the caches are checked too: a build reads those, not the zip.
    let mut dirs: Vec<PathBuf> = if entry.kind == SumKind::Zip {
        sources
            .modcaches
            .iter()
            .map(|c| c.join(&dir_name))
            .filter(|d| d.is_dir())
            .collect()
    } else {
        Vec::new()
    };
    // The store first: what is there was verified before, but check again, and drop it if it
    // no longer matches, so that another source can replace it.
    if let Some(store) = &sources.store {
        let path = store.join(&rel);
        if path.is_file() {
            let f = check_file(entry, sum, &path);
            if f.outcome == Outcome::Ok {
                out.push(f);
                out.extend(dirs.iter().map(|d| check_dir(entry, sum, d, &prefix)));
                return out;
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    let candidates: Vec<(PathBuf, Option<PathBuf>)> = sources
        .modcaches
        .iter()
        .map(|m| {
            let dir = m.join(&dir_name);
            (
                m.join("cache/download").join(&rel),
                (entry.kind == SumKind::Zip && dir.is_dir()).then_some(dir),
            )
        })
        .collect();
    if let Some((path, beside)) = candidates.iter().find(|(p, _)| p.is_file()) {
        match beside {
            // A zip and the tree extracted from it, in the same cache: checked in one pass.
            Some(dir) => {
                dirs.retain(|d| d != dir);
                out.extend(check_zip_and_dir(entry, sum, path, dir, &prefix));
            }
            None => out.push(check_file(entry, sum, path)),
        }
    } else if let (Some(proxy), Some(store)) = (&sources.proxy, &sources.store) {
        let staging = sources.staging.clone().unwrap_or_else(std::env::temp_dir);
        out.push(fetch_into_store(entry, sum, proxy, store, &staging, &rel));
    } else {
        out.push(
            finding_for(entry, sum)
                .outcome(Outcome::Missing)
                .expected(&entry.hash)
                .message(format!(
                    "{rel} is in no module cache; pass --modcache DIR or --proxy URL"
                )),
        );
    }
    for dir in dirs {
        out.push(check_dir(entry, sum, &dir, &prefix));
    }
    out
}

fn check_dir(entry: &GoSumEntry, sum: &GoSum, dir: &Path, prefix: &str) -> Finding {
    let f = finding_for(entry, sum).origin(dir.display().to_string());
    match dirhash::hash_dir(dir, prefix) {
        Ok(actual) if actual == entry.hash => f,
        Ok(actual) => f
            .outcome(Outcome::Failed)
            .hashes(&entry.hash, actual)
            .message("extracted module tree differs from go.sum"),
        Err(e) => f.outcome(Outcome::Failed).message(e.to_string()),
    }
}

/// The zip against go.sum, and its extracted tree against the zip's bytes: when the zip is the
/// pinned one and the tree holds exactly its files, the tree has the pinned hash too.
fn check_zip_and_dir(
    entry: &GoSumEntry,
    sum: &GoSum,
    zip: &Path,
    dir: &Path,
    prefix: &str,
) -> Vec<Finding> {
    let zip_f = finding_for(entry, sum).origin(zip.display().to_string());
    let dir_f = finding_for(entry, sum).origin(dir.display().to_string());
    match dirhash::hash_zip_and_compare_dir(zip, dir, prefix) {
        Err(e) => vec![
            zip_f.outcome(Outcome::Failed).message(e.to_string()),
            check_dir(entry, sum, dir, prefix),
        ],
        Ok(r) if r.zip_hash != entry.hash => vec![
            zip_f
                .outcome(Outcome::Failed)
                .hashes(&entry.hash, r.zip_hash)
                .message("h1 mismatch"),
            check_dir(entry, sum, dir, prefix),
        ],
        Ok(r) if r.differences.is_empty() => vec![zip_f, dir_f],
        Ok(r) => {
            let actual = dirhash::hash_dir(dir, prefix).unwrap_or_else(|e| e.to_string());
            let n = r.differences.len();
            let mut listed = r
                .differences
                .into_iter()
                .take(5)
                .collect::<Vec<_>>()
                .join("; ");
            if n > 5 {
                listed.push_str(&format!("; and {} more", n - 5));
            }
            vec![
                zip_f,
                dir_f
                    .outcome(Outcome::Failed)
                    .hashes(&entry.hash, actual)
                    .message(format!(
                        "extracted module tree differs from go.sum: {listed}"
                    )),
            ]
        }
    }
}

/// Downloads one module file from a GOPROXY into the store, keeping it only if its h1 matches.
fn fetch_into_store(
    entry: &GoSumEntry,
    sum: &GoSum,
    proxy: &str,
    store: &Path,
    staging: &Path,
    rel: &str,
) -> Finding {
    let url = format!("{}/{rel}", proxy.trim_end_matches('/'));
    let f = finding_for(entry, sum).origin(url.clone());
    let dest = store.join(rel);
    let result = (|| -> Result<Result<(), String>, String> {
        let parent = dest.parent().expect("has a parent");
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(staging)
            .map_err(|e| format!("{}: {e}", staging.display()))?;
        download::copy_to(
            &Location::parse(&url),
            &mut tmp,
            download::Redirects::Refused,
            download::Limits::FILE,
            |_, _| {},
        )
        .map_err(|e| e.to_string())?;
        let actual = hash_of(entry, tmp.path())?;
        if actual != entry.hash {
            return Ok(Err(actual));
        }
        tmp.as_file().sync_all().map_err(|e| e.to_string())?;
        tmp.persist(&dest).map_err(|e| e.error.to_string())?;
        Ok(Ok(()))
    })();
    match result {
        Ok(Ok(())) => f
            .origin(dest.display().to_string())
            .message(format!("downloaded from {url}")),
        Ok(Err(actual)) => f
            .outcome(Outcome::Failed)
            .hashes(&entry.hash, actual)
            .message("h1 mismatch; the download was deleted"),
        Err(e) => f.outcome(Outcome::Missing).expected(&entry.hash).message(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_https_or_file_and_only_file_offline() {
        assert_eq!(check_proxy("https://proxy.golang.org", false), Ok(()));
        assert_eq!(check_proxy("file:///srv/goproxy", true), Ok(()));
        assert!(matches!(
            check_proxy("http://proxy.example", false),
            Err(ProxyError::Scheme { .. })
        ));
        assert_eq!(
            check_proxy("https://proxy.golang.org", true)
                .unwrap_err()
                .to_string(),
            "https://proxy.golang.org cannot be used offline; use a file:// proxy"
        );
    }
}
