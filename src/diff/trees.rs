//! Two directories without manifests (unpacked images, other tools' output), compared file by
//! file: each pair by mode and size, then byte by byte, stopping at the first differing chunk.
//! Nothing is hashed but the files that differ, and each difference is reported as soon as it
//! is seen, for a front end to stream.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{ArtifactDiff, Detail, DiffReport, Options, explain};
use crate::digest::{Sha256Digest, tree_entries};
use crate::manifest::{Artifact, ManifestError, is_record_file};

/// What a path is in one tree.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    path: PathBuf,
    size: u64,
    mode: u32,
    /// Where a symbolic link points; `None` for a regular file.
    link: Option<PathBuf>,
}

fn list(root: &Path) -> Result<BTreeMap<String, Entry>, ManifestError> {
    let read_err = |source: io::Error| ManifestError::Read {
        path: root.to_owned(),
        source,
    };
    let mut out = BTreeMap::new();
    for (rel, e) in tree_entries(root, &|rel| !is_record_file(rel)).map_err(read_err)? {
        let meta = e.metadata().map_err(|e| read_err(io::Error::other(e)))?;
        let link = if e.file_type().is_symlink() {
            Some(std::fs::read_link(e.path()).map_err(read_err)?)
        } else {
            None
        };
        out.insert(
            rel,
            Entry {
                path: e.into_path(),
                size: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
                link,
            },
        );
    }
    Ok(out)
}

/// Whether two files of the same size have the same bytes.
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    crate::files::same_bytes(std::fs::File::open(a)?, std::fs::File::open(b)?)
}

fn artifact(rel: &str, e: &Entry) -> Artifact {
    let sha256 = match &e.link {
        Some(target) => Sha256Digest::of(target.to_string_lossy().as_bytes()),
        None => Sha256Digest::of_file(&e.path).unwrap_or_else(|_| Sha256Digest::of(b"")),
    };
    Artifact {
        path: rel.to_owned(),
        sha256,
        size: e.size,
        mode: format!("{:04o}", e.mode),
    }
}

/// Compares the trees under `a` and `b`; `found` hears each path that differs (`differs`), is
/// only in A (`removed`) or only in B (`added`) as soon as it is known, from several threads,
/// in no set order.
pub fn diff_trees(
    a: &Path,
    b: &Path,
    options: &Options,
    found: &(dyn Fn(&str, &str) + Sync),
) -> Result<DiffReport, ManifestError> {
    let (la, lb) = rayon::join(|| list(a), || list(b));
    let (la, lb) = (la?, lb?);
    let mut report = DiffReport::default();
    for p in la.keys().filter(|p| !lb.contains_key(*p)) {
        found("removed", p);
        report.removed.push(p.clone());
    }
    for p in lb.keys().filter(|p| !la.contains_key(*p)) {
        found("added", p);
        report.added.push(p.clone());
    }
    let common: Vec<(&String, &Entry, &Entry)> = la
        .iter()
        .filter_map(|(p, x)| lb.get(p).map(|y| (p, x, y)))
        .collect();
    // In path order: the first worker starts at the top of the tree.
    let verdicts: Vec<bool> = common
        .par_iter()
        .map(|(p, x, y)| {
            let same = x.mode == y.mode
                && x.size == y.size
                && match (&x.link, &y.link) {
                    (Some(s), Some(t)) => s == t,
                    (None, None) => same_bytes(&x.path, &y.path).unwrap_or(false),
                    _ => false,
                };
            if !same {
                found("differs", p);
            }
            same
        })
        .collect();
    let differing: Vec<(&String, &Entry, &Entry)> = common
        .iter()
        .zip(&verdicts)
        .filter(|(_, same)| !**same)
        .map(|(c, _)| *c)
        .collect();
    report.identical = common
        .iter()
        .zip(&verdicts)
        .filter(|(_, same)| **same)
        .map(|(c, _)| c.0.clone())
        .collect();
    report.differing = differing
        .par_iter()
        .map(|(p, x, y)| {
            let (aa, ab) = (artifact(p, x), artifact(p, y));
            let mut details = Vec::new();
            if aa.mode != ab.mode {
                details.push(Detail::Mode {
                    a: aa.mode.clone(),
                    b: ab.mode.clone(),
                });
            }
            if aa.sha256 != ab.sha256 {
                if x.link.is_some() || y.link.is_some() {
                    details.push(Detail::Unavailable {
                        reason: format!(
                            "symbolic link: {} → {}",
                            x.link
                                .as_ref()
                                .map_or("a file".into(), |l| l.display().to_string()),
                            y.link
                                .as_ref()
                                .map_or("a file".into(), |l| l.display().to_string())
                        ),
                    });
                } else {
                    details.extend(explain::explain(&x.path, &y.path));
                    if options.deep {
                        details.push(explain::diffoscope(&x.path, &y.path));
                    }
                }
            }
            ArtifactDiff {
                path: (*p).clone(),
                a: aa,
                b: ab,
                details,
                follows: None,
            }
        })
        .collect();
    super::follows::link(&mut report.differing, a, b);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn differences_are_heard_as_found_and_explained_after() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for root in [&a, &b] {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("same.bin"), vec![7u8; 300_000]).unwrap();
        }
        std::fs::write(a.join("etc/info"), "built 2026-01-01\n").unwrap();
        std::fs::write(b.join("etc/info"), "built 2026-01-02\n").unwrap();
        std::fs::write(a.join("only-a"), "x").unwrap();
        std::os::unix::fs::symlink("same.bin", b.join("only-b")).unwrap();
        let heard = Mutex::new(Vec::new());
        let r = diff_trees(&a, &b, &Options::default(), &|kind, p| {
            heard.lock().unwrap().push(format!("{kind} {p}"))
        })
        .unwrap();
        let mut heard = heard.into_inner().unwrap();
        heard.sort();
        assert_eq!(
            heard,
            ["added only-b", "differs etc/info", "removed only-a"]
        );
        assert_eq!(r.identical, ["same.bin"]);
        assert_eq!(r.removed, ["only-a"]);
        assert_eq!(r.added, ["only-b"]);
        assert_eq!(r.differing.len(), 1);
        assert_eq!(
            r.differing[0].details,
            [Detail::Line {
                line: 1,
                a: "built 2026-01-01".into(),
                b: "built 2026-01-02".into()
            }]
        );
        assert_ne!(r.differing[0].a.sha256, r.differing[0].b.sha256);
    }
}
