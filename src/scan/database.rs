//! An advisory database as a scan reads it: a bare mirror (its HEAD commit, read and verified
//! with gix), a git checkout (its work tree, with HEAD's commit recorded) or a plain directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::source::download::Location;
use crate::source::git::{GitError, VerifiedRepo};
use crate::source::mirror::Mirrors;

/// What kind of database, where its advisories live, and where it comes from upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    /// The command-line option that names it.
    pub flag: &'static str,
    pub upstream: &'static str,
    /// The directory of advisories within the repository.
    pub dir: &'static str,
}

pub const RUSTSEC: Kind = Kind {
    name: "RustSec advisory database",
    flag: "rustsec",
    upstream: "https://github.com/rustsec/advisory-db",
    dir: "crates",
};

pub const GO_VULNDB: Kind = Kind {
    name: "Go vulnerability database",
    flag: "go-vulndb",
    upstream: "https://github.com/golang/vulndb",
    dir: "data/osv",
};

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(
        "{}: not a {}: it has no `{}` directory; point --{} at a checkout or mirror of {}",
        path.display(), kind.name, kind.dir, kind.flag, kind.upstream
    )]
    NotADatabase { path: PathBuf, kind: Kind },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: {} is mirrored at {url}, which is not a local path; a scan reads only local \
         databases: mirror it with `kata-repro mirror` and map it to the directory",
        kind.name, kind.upstream
    )]
    Remote { kind: Kind, url: String },
    #[error("{} ({}): {source}", path.display(), kind.name)]
    Git {
        path: PathBuf,
        kind: Kind,
        source: Box<GitError>,
    },
}

/// How the files were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// From the commit HEAD names, in a repository without a work tree.
    Commit,
    /// From the work tree of a checkout whose HEAD is `commit`.
    WorkTree,
    /// From the work tree of a checkout that differs from its HEAD `commit` under the
    /// database's directory (files changed, added or removed): the commit is only its base.
    ModifiedWorkTree,
    /// From a directory that is not a git repository: no commit to record.
    Directory,
    /// From one file (the Debian tracker's export): its sha256 is recorded.
    File,
}

/// A database's files, read once, and which commit they are.
#[derive(Debug)]
pub struct Snapshot {
    pub kind: Kind,
    pub location: PathBuf,
    pub origin: Origin,
    pub commit: Option<String>,
    /// The commit's committer time, seconds since the epoch.
    pub commit_time: Option<i64>,
    /// The files under `kind.dir`: (path relative to the database's root, bytes), sorted.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Where the database of `kind` is: `explicit`, else the mirror the config maps its upstream
/// to; `None` when neither names one.
pub fn locate(
    explicit: Option<&Path>,
    mirrors: &Mirrors,
    kind: Kind,
) -> Result<Option<PathBuf>, DatabaseError> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_owned()));
    }
    match mirrors.resolve(kind.upstream) {
        None => Ok(None),
        Some(Location::File(p)) => Ok(Some(p)),
        Some(Location::Http(url)) => Err(DatabaseError::Remote { kind, url }),
    }
}

/// Reads the database of `kind` at `path`.
pub fn open(path: &Path, kind: Kind) -> Result<Snapshot, DatabaseError> {
    if !path.is_dir() {
        return Err(match std::fs::metadata(path) {
            Err(source) => DatabaseError::Read {
                path: path.to_owned(),
                source,
            },
            Ok(_) => DatabaseError::NotADatabase {
                path: path.to_owned(),
                kind,
            },
        });
    }
    let git_err = |source: GitError| DatabaseError::Git {
        path: path.to_owned(),
        kind,
        source: Box::new(source),
    };
    let repo = match VerifiedRepo::open(path) {
        Ok(repo) => repo,
        // A repository gix cannot open is a broken one, not a plain directory.
        Err(e) if looks_like_git(path) => return Err(git_err(e)),
        Err(_) => return from_directory(path, kind, Origin::Directory, None),
    };
    let head = repo.head().map_err(git_err)?;
    let info = head
        .map(|id| repo.commit(id).map(|info| (id, info)))
        .transpose()
        .map_err(git_err)?;
    if !repo.is_bare() {
        // The work tree is what is read: say so when it is not the commit recorded.
        let origin = match &info {
            // Without the directory, from_directory says it is no database.
            Some((_, i)) if path.join(kind.dir).is_dir() => {
                let committed = repo.subtree(i.tree, kind.dir).map_err(git_err)?;
                let dir = path.join(kind.dir);
                let here =
                    crate::source::git::tree_id_of_dir(&dir, &std::collections::BTreeMap::new())
                        .map_err(|source| DatabaseError::Read { path: dir, source })?;
                if committed == Some(here) {
                    Origin::WorkTree
                } else {
                    Origin::ModifiedWorkTree
                }
            }
            _ => Origin::WorkTree,
        };
        return from_directory(path, kind, origin, info.map(|(id, i)| (id, i.time)));
    }
    let not_one = || DatabaseError::NotADatabase {
        path: path.to_owned(),
        kind,
    };
    let (id, info) = info.ok_or_else(not_one)?;
    let mut files = repo
        .blobs_under(info.tree, kind.dir)
        .map_err(git_err)?
        .ok_or_else(not_one)?;
    for (name, _) in &mut files {
        *name = format!("{}/{name}", kind.dir);
    }
    files.sort();
    Ok(Snapshot {
        kind,
        location: path.to_owned(),
        origin: Origin::Commit,
        commit: Some(id.to_string()),
        commit_time: Some(info.time),
        files,
    })
}

/// Whether `path` is laid out as a git repository: a work tree's `.git`, or a bare
/// repository's `HEAD` and `objects`.
fn looks_like_git(path: &Path) -> bool {
    path.join(".git").exists() || (path.join("HEAD").is_file() && path.join("objects").is_dir())
}

fn from_directory(
    root: &Path,
    kind: Kind,
    origin: Origin,
    commit: Option<(gix::ObjectId, i64)>,
) -> Result<Snapshot, DatabaseError> {
    let dir = root.join(kind.dir);
    if !dir.is_dir() {
        return Err(DatabaseError::NotADatabase {
            path: root.to_owned(),
            kind,
        });
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
        let entry = entry.map_err(|e| DatabaseError::Read {
            path: e.path().unwrap_or(&dir).to_owned(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(entry.path()).map_err(|source| DatabaseError::Read {
            path: entry.path().to_owned(),
            source,
        })?;
        files.push((rel, bytes));
    }
    // By whole path, as a commit's files are: the same database, the same order.
    files.sort();
    Ok(Snapshot {
        kind,
        location: root.to_owned(),
        origin,
        commit: commit.map(|(id, _)| id.to_string()),
        commit_time: commit.map(|(_, t)| t),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_the_advisories_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path(), RUSTSEC).unwrap_err();
        assert!(matches!(err, DatabaseError::NotADatabase { .. }), "{err}");
        assert!(err.to_string().contains("no `crates` directory"), "{err}");
        let missing = dir.path().join("nope");
        assert!(matches!(
            open(&missing, RUSTSEC).unwrap_err(),
            DatabaseError::Read { .. }
        ));
    }

    #[test]
    fn a_broken_repository_is_named_as_one_not_taken_for_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("objects")).unwrap();
        std::fs::create_dir_all(dir.path().join("crates/a")).unwrap();
        std::fs::write(dir.path().join("HEAD"), "not a ref\n").unwrap();
        let err = open(dir.path(), RUSTSEC).unwrap_err();
        assert!(matches!(err, DatabaseError::Git { .. }), "{err}");
    }

    #[test]
    fn files_are_in_path_order_from_a_directory_as_from_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["crates/a", "crates/a-b"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("RUSTSEC-2099-0001.md"), "x").unwrap();
        }
        let names: Vec<String> = open(dir.path(), RUSTSEC)
            .unwrap()
            .files
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            vec![
                "crates/a-b/RUSTSEC-2099-0001.md",
                "crates/a/RUSTSEC-2099-0001.md"
            ]
        );
    }

    #[test]
    fn a_plain_directory_is_read_without_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let adv = dir.path().join("crates/smallvec");
        std::fs::create_dir_all(&adv).unwrap();
        std::fs::write(adv.join("RUSTSEC-2021-0003.md"), "x").unwrap();
        let s = open(dir.path(), RUSTSEC).unwrap();
        assert_eq!(s.origin, Origin::Directory);
        assert_eq!(s.commit, None);
        assert_eq!(
            s.files,
            vec![("crates/smallvec/RUSTSEC-2021-0003.md".into(), b"x".to_vec())]
        );
    }

    #[test]
    fn the_config_mirror_is_used_unless_a_path_is_given() {
        let mut m = Mirrors::new();
        assert_eq!(locate(None, &m, RUSTSEC).unwrap(), None);
        m.insert(RUSTSEC.upstream, "/srv/advisory-db");
        assert_eq!(
            locate(None, &m, RUSTSEC).unwrap(),
            Some(PathBuf::from("/srv/advisory-db"))
        );
        assert_eq!(
            locate(Some(Path::new("/x")), &m, RUSTSEC).unwrap(),
            Some(PathBuf::from("/x"))
        );
        m.insert(GO_VULNDB.upstream, "https://example.org/vulndb.git");
        assert!(matches!(
            locate(None, &m, GO_VULNDB),
            Err(DatabaseError::Remote { .. })
        ));
    }
}
