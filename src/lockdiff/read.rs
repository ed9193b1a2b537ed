//! The files a lockfile pins in the Kata source (Cargo.lock, go.sum), read for a diff: from
//! the store's checkout of the pinned commit, else from the commit in the local mirror the
//! config maps the source to; either way checked against the lockfile's sha256 before use.

use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::lock::Lockfile;
use crate::source::download::Location;
use crate::source::git::{GitError, VerifiedRepo};
use crate::source::mirror::Mirrors;
use crate::source::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "{lockfile}: {path} of {tag} is neither in the store nor in a local mirror of {url}; \
         fetch the release first (kata-repro fetch) or map {url} to a mirror in the config"
    )]
    Unavailable {
        lockfile: String,
        path: String,
        tag: String,
        url: String,
    },
    #[error(
        "{lockfile}: {path} of {tag} from {from}: expected sha256 {}, found {}",
        digests.0,
        digests.1
    )]
    Mismatch {
        lockfile: String,
        path: String,
        tag: String,
        from: String,
        /// Expected, found.
        digests: Box<(Sha256Digest, Sha256Digest)>,
    },
    #[error("{lockfile}: reading {path} of {tag} from the mirror {}: {source}", mirror.display())]
    Git {
        lockfile: String,
        path: String,
        tag: String,
        mirror: PathBuf,
        source: Box<GitError>,
    },
}

/// Every file named `name` (`Cargo.lock`, `go.sum`) the lockfile pins, as (path, bytes), each
/// checked against its pin.
pub fn pinned_files(
    lock: &Lockfile,
    lockfile: &Path,
    name: &str,
    store: &Store,
    mirrors: &Mirrors,
) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
    let wanted = lock
        .source
        .files
        .iter()
        .filter(|f| f.path == name || f.path.ends_with(&format!("/{name}")));
    wanted
        .map(|f| {
            let (bytes, from) = read(lock, lockfile, &f.path, store, mirrors)?;
            let found = Sha256Digest::of(&bytes);
            if found != f.sha256 {
                return Err(ReadError::Mismatch {
                    lockfile: lockfile.display().to_string(),
                    path: f.path.clone(),
                    tag: lock.source.tag.clone(),
                    from,
                    digests: Box::new((f.sha256, found)),
                });
            }
            Ok((f.path.clone(), bytes))
        })
        .collect()
}

/// The bytes of `path` at the pinned commit, and where they came from.
fn read(
    lock: &Lockfile,
    lockfile: &Path,
    path: &str,
    store: &Store,
    mirrors: &Mirrors,
) -> Result<(Vec<u8>, String), ReadError> {
    let stored = store.git_path(&lock.source.commit).join(path);
    if let Ok(bytes) = std::fs::read(&stored) {
        return Ok((bytes, stored.display().to_string()));
    }
    let unavailable = || ReadError::Unavailable {
        lockfile: lockfile.display().to_string(),
        path: path.to_owned(),
        tag: lock.source.tag.clone(),
        url: lock.source.url.clone(),
    };
    let Some(Location::File(mirror)) = mirrors.resolve(&lock.source.url) else {
        return Err(unavailable());
    };
    let git_err = |source: GitError| ReadError::Git {
        lockfile: lockfile.display().to_string(),
        path: path.to_owned(),
        tag: lock.source.tag.clone(),
        mirror: mirror.clone(),
        source: Box::new(source),
    };
    let repo = VerifiedRepo::open(&mirror).map_err(git_err)?;
    let tree = repo.commit(lock.source.commit.id()).map_err(git_err)?.tree;
    let bytes = repo
        .read_path(tree, path)
        .map_err(git_err)?
        .ok_or_else(unavailable)?;
    Ok((
        bytes,
        format!("{} at {}", mirror.display(), lock.source.commit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_is_read_once_it_hashes_as_pinned() {
        let lock = crate::lock::committed("kata-3.30.0.toml");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let mirrors = Mirrors::new();
        let name = Path::new("lockfiles/kata-3.30.0.toml");
        // Neither stored nor mirrored: said so, with what to do.
        let err = pinned_files(&lock, name, "Cargo.lock", &store, &mirrors).unwrap_err();
        assert!(matches!(err, ReadError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("kata-repro fetch"), "{err}");

        let stored = store.git_path(&lock.source.commit).join("Cargo.lock");
        std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
        let real = crate::kata_fixture("3.30.0", "Cargo.lock");
        std::fs::write(&stored, &real).unwrap();
        let files = pinned_files(&lock, name, "Cargo.lock", &store, &mirrors).unwrap();
        assert_eq!(
            files,
            vec![("Cargo.lock".to_owned(), real.clone().into_bytes())]
        );

        std::fs::write(&stored, format!("{real}\n")).unwrap();
        let err = pinned_files(&lock, name, "Cargo.lock", &store, &mirrors).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ReadError::Mismatch { .. }), "{text}");
        assert!(
            text.contains("expected sha256") && text.contains("found"),
            "{text}"
        );
    }
}
