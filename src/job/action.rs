//! One component's action, run on a worker: the input root a client sent (`job.json`, the
//! lockfile, the recipes) is built as `kata-repro build` would build it here, with this machine's
//! store, mirrors and sandbox, and the remote's action cache shared. Every input is fetched and
//! verified from its pins here. The action key this machine comes to must be the one the client
//! planned: a worker whose toolchains, host tools or host packages differ refuses the action
//! rather than record a result under it.

use std::path::{Path, PathBuf};

#[cfg(feature = "remote")]
use super::{BuildOptions, Env, Events, Job, JobError, RemoteSpec, Spec};
#[cfg(feature = "remote")]
use crate::builder::SharedCache;
use crate::builder::shared::{ActionJob, JOB_FILE, SHARED_SCHEMA};
#[cfg(feature = "remote")]
use crate::builder::shared::{LOCKFILE_FILE, NEEDS_DIR, RECIPES_DIR};
use crate::digest::Sha256Digest;
#[cfg(feature = "remote")]
use crate::files::io_err;
use crate::sandbox::variation::{self, Variation, Varied};

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
    #[error("this worker cannot apply the {variation} variation the action is built under: {why}")]
    Variation { variation: Variation, why: String },
    #[error("the result of {component} the action needs cannot be taken: {why}")]
    Need { component: String, why: String },
    #[error("{component}: the result of {key} cannot be reported: {why}")]
    Recorded {
        component: String,
        key: Sha256Digest,
        why: String,
    },
}

impl ActionError {
    /// Whether the action cannot run on this machine as it is: its job, its key or a
    /// variation does not hold here.
    pub fn is_precondition(&self) -> bool {
        matches!(
            self,
            ActionError::Job { .. }
                | ActionError::KeyMismatch { .. }
                | ActionError::Variation { .. }
        )
    }
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

/// What a worker's build of an action gave.
#[cfg(feature = "remote")]
pub struct Done {
    pub component: String,
    pub key: Sha256Digest,
    /// The result as the server is to list it, its blobs already given to the server.
    pub listing: crate::remote::re::ActionResult,
}

/// Builds the action laid out in `root` into `out`, with `env` (the worker's store, mirrors,
/// Go proxy) and the remote's action cache shared, and hands the result over to the remote.
/// The lockfile is read under the name the client read it by, so that the action named on
/// both sides is the same. A fresh action is built whatever the caches hold, on the results of
/// its needs it carries, under the variations it names, each of which must apply here.
#[cfg(feature = "remote")]
pub fn run(
    root: &Path,
    env: Env,
    remote: RemoteSpec,
    out: &Path,
    events: Events<'_>,
) -> Result<Done, JobError> {
    use crate::builder::NoCache;
    use crate::remote::{Remote, RemoteCache};
    let job = read_job(root)?;
    let lockfile = root.join(&job.lockfile);
    std::fs::copy(root.join(LOCKFILE_FILE), &lockfile).map_err(io_err(&lockfile))?;
    let remote = RemoteSpec {
        cache_only: true,
        ..remote
    };
    let cache = RemoteCache::new(Remote::connect(remote.endpoint()?)?, false);
    let spec = Spec {
        lockfile,
        arch: job.arch.clone(),
        components: vec![job.component.clone()],
        env: Env {
            recipes: Some(root.join(RECIPES_DIR)),
            // A fresh action comes with every result it needs, and what is built on them is
            // the client's to record: it shares no cache.
            remote: (!job.fresh).then_some(remote),
            ..env
        },
    };
    let opened = Job::open(spec, events)?;
    let store = &opened.release.store;
    let host = variation::Host::probe(&std::env::var("PATH").unwrap_or_default());
    let variations = applying(&job.variations, opened.isolation()?, &host)?;
    let given = if job.fresh {
        taken_needs(root, &job, &cache, store)?
    } else {
        Vec::new()
    };
    let options = BuildOptions {
        no_cache: if job.fresh {
            NoCache::Only(job.component.clone())
        } else {
            NoCache::None
        },
        variations,
        expect: Some((job.component.clone(), job.action_key)),
        given,
        ..Default::default()
    };
    let built = opened.build(out, &options, events)?;
    let result = built_result(store, &job, &built.manifest)?;
    let listing = cache.hand_over(&result, store)?;
    Ok(Done {
        component: job.component,
        key: job.action_key,
        listing,
    })
}

/// The result the build of `job` recorded in `store`, which must be the one it installed in
/// `manifest`: the store may be shared, and another build may have recorded the key since.
#[cfg(feature = "remote")]
fn built_result(
    store: &crate::source::store::Store,
    job: &ActionJob,
    manifest: &crate::manifest::Manifest,
) -> Result<crate::builder::ActionResult, ActionError> {
    let unlike = |why: &str| ActionError::Recorded {
        component: job.component.clone(),
        key: job.action_key,
        why: why.to_owned(),
    };
    let result = crate::builder::shared::recorded(store, &job.action_key)
        .ok_or_else(|| unlike("the store holds no result under it"))?;
    let installed = manifest.components.iter().find(|c| c.name == job.component);
    if installed.map(|c| &c.outputs) != Some(&result.record.outputs) {
        return Err(unlike(
            "the store's result under it is not what the build installed (another build \
             sharing the store recorded it since)",
        ));
    }
    Ok(result)
}

/// The variations an action names, planned for `host`: each must apply here as it did where
/// the action was planned.
pub fn applying(
    names: &[Variation],
    isolation: crate::sandbox::Isolation,
    host: &variation::Host,
) -> Result<Varied, ActionError> {
    let (varied, applied) = variation::plan(names, isolation, host);
    match applied.into_iter().find(|a| !a.applied) {
        Some(a) => Err(ActionError::Variation {
            variation: a.variation,
            why: a
                .second
                .strip_prefix(variation::NOT_APPLIED)
                .unwrap_or(&a.second)
                .to_owned(),
        }),
        None => Ok(varied),
    }
}

/// The results of the components a fresh action needs, directly or not, as its input root
/// lists them, with their outputs and logs taken from the server into `store`, every blob
/// checked.
#[cfg(feature = "remote")]
fn taken_needs(
    root: &Path,
    job: &ActionJob,
    cache: &crate::remote::RemoteCache,
    store: &crate::source::store::Store,
) -> Result<Vec<crate::builder::ActionResult>, JobError> {
    let mut given = Vec::new();
    for (component, key) in &job.given {
        let path = root.join(NEEDS_DIR).join(component);
        let need = |why: String| ActionError::Need {
            component: component.clone(),
            why,
        };
        let listing = std::fs::read(&path)
            .map_err(|e| need(format!("the action carries no result of it ({e})")))?;
        let result = cache
            .take_listed(key, &listing, store)
            .map_err(|e| need(e.to_string()))?
            .ok_or_else(|| need(format!("{} no longer holds its blobs", cache.describe())))?;
        given.push(result);
    }
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Isolation;

    #[test]
    fn a_variation_the_worker_cannot_apply_refuses_the_action() {
        let bare = variation::Host::default();
        assert!(
            applying(&[], Isolation::Namespaces, &bare)
                .unwrap()
                .is_empty()
        );
        let varied = applying(
            &[Variation::Umask, Variation::Timezone],
            Isolation::Namespaces,
            &bare,
        )
        .unwrap();
        assert_eq!(varied.names(), [Variation::Timezone, Variation::Umask]);
        let e = applying(
            &[Variation::Umask, Variation::Time],
            Isolation::Namespaces,
            &bare,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            ActionError::Variation {
                variation: Variation::Time,
                ..
            }
        ));
        let text = e.to_string();
        assert!(
            text.contains("the time variation the action is built under: libfaketime is not"),
            "{text}"
        );
        assert!(e.is_precondition());
        let e = applying(&[Variation::DomainHost], Isolation::None, &bare).unwrap_err();
        assert!(e.to_string().contains("--allow-network-leak"), "{e}");
    }
}
