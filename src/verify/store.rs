//! `kata-repro store verify`: every object in the store re-hashed against its name, the periodic
//! check that lets a no-op build trust an object's name and size (see docs/trust.md).

use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::source::store::{ObjectState, Store, StoreError};

/// An object whose bytes no longer hash to its name. It was removed, so that whatever needs it
/// fetches or builds it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damaged {
    pub name: Sha256Digest,
    pub actual: Sha256Digest,
    pub size: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct ObjectsReport {
    /// Objects re-hashed.
    pub objects: usize,
    pub bytes: u64,
    pub damaged: Vec<Damaged>,
    /// Files under `objects/sha256/` whose name is not a sha256: left alone, and reported.
    pub misnamed: Vec<PathBuf>,
}

impl ObjectsReport {
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.misnamed.is_empty()
    }
}

/// Re-hashes every object, largest first, on every core; `on_object` is called with each
/// object's size once it is hashed. Damaged objects are removed.
pub fn verify_objects(
    store: &Store,
    on_object: &(dyn Fn(u64) + Sync),
) -> Result<ObjectsReport, StoreError> {
    let dir = store.root().join("objects/sha256");
    let io = |source| StoreError::Io {
        path: dir.clone(),
        source,
    };
    let mut report = ObjectsReport::default();
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        match name.to_str().and_then(|n| n.parse::<Sha256Digest>().ok()) {
            Some(digest) => objects.push((entry.metadata().map_err(io)?.len(), digest)),
            // Staged writes never land here: they are renamed in under their digest.
            None => report.misnamed.push(entry.path()),
        }
    }
    objects.sort_by(|a, b| b.cmp(a));
    let checked: Vec<(u64, Sha256Digest, ObjectState)> = objects
        .into_par_iter()
        .map(|(size, digest)| {
            let state = store.check_object(&digest)?;
            on_object(size);
            Ok((size, digest, state))
        })
        .collect::<Result<_, StoreError>>()?;
    for (size, name, state) in checked {
        match state {
            ObjectState::Good => {
                report.objects += 1;
                report.bytes += size;
            }
            ObjectState::Damaged { actual } => {
                report.objects += 1;
                report.bytes += size;
                report.damaged.push(Damaged { name, actual, size });
            }
            // Removed by another process since it was listed.
            ObjectState::Absent => {}
        }
    }
    report.damaged.sort_by_key(|d| d.name);
    report.misnamed.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_objects_are_reported_and_removed_and_good_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let objects = dir.path().join("store/objects/sha256");
        let good = Sha256Digest::of(b"good");
        std::fs::write(objects.join(good.to_hex()), b"good").unwrap();
        let bad = Sha256Digest::of(b"bad");
        std::fs::write(objects.join(bad.to_hex()), b"BAD!").unwrap();
        std::fs::write(objects.join("not-a-digest"), b"x").unwrap();

        let seen = std::sync::atomic::AtomicU64::new(0);
        let report = verify_objects(&store, &|n| {
            seen.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(report.objects, 2);
        assert_eq!(report.bytes, 8);
        assert_eq!(seen.into_inner(), 8);
        assert_eq!(
            report.damaged,
            [Damaged {
                name: bad,
                actual: Sha256Digest::of(b"BAD!"),
                size: 4
            }]
        );
        assert_eq!(report.misnamed, [objects.join("not-a-digest")]);
        assert!(!report.ok());
        assert!(objects.join(good.to_hex()).exists());
        assert!(!objects.join(bad.to_hex()).exists());

        std::fs::remove_file(objects.join("not-a-digest")).unwrap();
        let again = verify_objects(&store, &|_| {}).unwrap();
        assert!(again.ok());
        assert_eq!(again.objects, 1);
    }
}
