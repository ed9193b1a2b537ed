//! The `lockdiff` job: what changes between two releases, from their lockfiles and the
//! Cargo.lock and go.sum files each pins.

use std::path::Path;

use super::{Events, JobError, Sources, waiting};
use crate::lock::Lockfile;
use crate::lockdiff::{self, LockDiff};

/// `from` and `to` compared; their pinned files are read from the store `store` names (or
/// the default one) or from the mirrors `sources` maps.
pub fn run(
    from: &Path,
    to: &Path,
    store: Option<&Path>,
    sources: &Sources,
    events: Events<'_>,
) -> Result<LockDiff, JobError> {
    let old = Lockfile::load(from)?.value;
    let new = Lockfile::load(to)?.value;
    let mirrors = sources.mirrors()?;
    let store = sources.open_store(store, waiting(events))?;
    let where_from = lockdiff::Sources {
        store: &store,
        mirrors: &mirrors,
    };
    Ok(lockdiff::diff((&old, from), (&new, to), &where_from)?)
}
