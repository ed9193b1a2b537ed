//! One component's action, run on a worker: the input root a client sent (`job.json`, the
//! lockfile, the recipes) is built as `kata-repro build` would build it here, with this machine's
//! store, mirrors and sandbox, and the remote's action cache shared. Every input is fetched and
//! verified from its pins here. The action key this machine comes to must be the one the client
//! planned: a worker whose toolchains, host tools or host packages differ refuses the action
//! rather than record a result under it.

use std::path::{Path, PathBuf};

use super::{BuildOptions, Env, Events, Job, JobError, RemoteSpec, Spec};
use crate::builder::shared::{ActionJob, JOB_FILE, LOCKFILE_FILE, RECIPES_DIR, SHARED_SCHEMA};
use crate::digest::Sha256Digest;
use crate::files::io_err;

/// Why an action's input root cannot be run here.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{}: {why}", path.display())]
    Job { path: PathBuf, why: String },
    #[error(
        "{component}: this worker comes to action key {found}, not {expected}: its toolchains, \
         host tools or host packages differ from the client's; it does not build the action"
    )]
    KeyMismatch {
        component: String,
        expected: Sha256Digest,
        found: Sha256Digest,
    },
}

/// An action's `job.json`, read and checked.
pub fn read_job(root: &Path) -> Result<ActionJob, ActionError> {
    let path = root.join(JOB_FILE);
    let bad = |why: String| ActionError::Job {
        path: path.clone(),
        why,
    };
    let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let job: ActionJob = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if job.schema != SHARED_SCHEMA {
        return Err(bad(format!(
            "schema {} is not {SHARED_SCHEMA}, the one this kata-repro reads",
            job.schema
        )));
    }
    let plain = |name: &str| {
        !name.is_empty() && !name.contains('/') && name != "." && name != ".." && name.is_ascii()
    };
    if !plain(&job.lockfile) || !job.lockfile.ends_with(".toml") {
        return Err(bad(format!(
            "the lockfile's name `{}` is not a plain .toml file name",
            job.lockfile
        )));
    }
    Ok(job)
}

/// Builds the action laid out in `root` into `out`, with `env` (the worker's store, mirrors,
/// Go proxy) and the remote's action cache shared, and returns the job's component and key.
/// The lockfile is read under the name the client read it by, so that the action named on
/// both sides is the same.
pub fn run(
    root: &Path,
    env: Env,
    remote: RemoteSpec,
    out: &Path,
    events: Events<'_>,
) -> Result<(String, Sha256Digest), JobError> {
    let job = read_job(root)?;
    let lockfile = root.join(&job.lockfile);
    std::fs::copy(root.join(LOCKFILE_FILE), &lockfile).map_err(io_err(&lockfile))?;
    let spec = Spec {
        lockfile,
        arch: job.arch.clone(),
        components: vec![job.component.clone()],
        env: Env {
            recipes: Some(root.join(RECIPES_DIR)),
            remote: Some(RemoteSpec {
                cache_only: true,
                ..remote
            }),
            ..env
        },
    };
    let opened = Job::open(spec, events)?;
    let options = BuildOptions {
        expect: Some((job.component.clone(), job.action_key)),
        ..Default::default()
    };
    opened.build(out, &options, events)?;
    Ok((job.component, job.action_key))
}
