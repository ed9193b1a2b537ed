//! The `outdated` job: a release's lockfile against what is newer, from its mirror, the store
//! and whatever indexes are reachable.

use std::path::Path;

use super::{Events, JobError, Release, Sources, waiting};
use crate::lockdiff::read::pinned_files;
use crate::outdated::{self, Options, Reader, Report, Tree};

pub fn run(
    lockfile: &Path,
    store: Option<&Path>,
    sources: &Sources,
    options: &Options,
    events: Events<'_>,
) -> Result<Report, JobError> {
    let release = Release::open(lockfile, store, sources, waiting(events))?;
    let lock = &release.lock.value;
    let repo = release
        .getter(options.offline)
        .repository(&lock.source.url, None)
        .map(|(repo, _)| repo)
        .map_err(|f| f.message);
    let files = |name: &str| {
        pinned_files(lock, lockfile, name, &release.store, &release.mirrors)
            .map_err(|e| e.to_string())
    };
    let reader = Reader {
        mirrors: &release.mirrors,
        policy: &release.policy,
        offline: options.offline,
    };
    Ok(outdated::report(
        lock,
        repo.as_ref().map_err(Clone::clone),
        &Tree { files: &files },
        &reader,
        options,
    ))
}
