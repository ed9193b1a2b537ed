//! What every command that reads a release's inputs opens first.

use std::path::Path;

use super::JobError;
use crate::lock::{Loaded, Lockfile};
use crate::source::fetch::check_policy;
use crate::source::get::Getter;
use crate::source::mirror::{Config, MirrorError, Mirrors};
use crate::source::policy::HostPolicy;
use crate::source::store::Store;

/// Where upstream sources come from: the configuration, then the command line's mirrors
/// (`URL=PATH`, which win) and extra allowed hosts.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config: Config,
    pub mirrors: Vec<String>,
    pub allow_hosts: Vec<String>,
}

impl Sources {
    /// Mirrors from the config, then the command line's.
    pub fn mirrors(&self) -> Result<Mirrors, MirrorError> {
        let mut m = Mirrors::new();
        m.extend_from(&self.config);
        for arg in &self.mirrors {
            m.insert_arg(arg)?;
        }
        Ok(m)
    }

    /// The store named explicitly, by the environment or by the config, shared with other
    /// processes; `on_wait` is called while another process sweeps its staging area. Waits for
    /// an entry another process is writing are said on stderr.
    pub fn open_store(
        &self,
        store: Option<&Path>,
        on_wait: impl FnOnce(&Path),
    ) -> Result<Store, JobError> {
        let root = Store::default_root(store, self.config.store.as_deref());
        let shown = root.display().to_string();
        let notice = move |entry: &str| {
            eprintln!("waiting for another kata-repro that holds {entry} in the store {shown}")
        };
        Ok(Store::open(&root, || on_wait(&root))?.with_wait_notice(Box::new(notice)))
    }
}

/// A release's lockfile, the mirrors, the host policy (already checked against every URL the
/// lockfile names) and the store.
pub struct Release {
    /// The lockfile, with the sha256 of the bytes it was parsed from.
    pub lock: Loaded<Lockfile>,
    pub mirrors: Mirrors,
    pub policy: HostPolicy,
    pub store: Store,
}

impl Release {
    pub fn open(
        lockfile: &Path,
        store: Option<&Path>,
        sources: &Sources,
        on_wait: impl FnOnce(&Path),
    ) -> Result<Self, JobError> {
        let lock = Lockfile::load(lockfile)?;
        let mirrors = sources.mirrors()?;
        let policy = HostPolicy::for_lockfile(
            &lock.policy.allowed_hosts,
            &sources.config.policy.allowed_hosts,
            &sources.allow_hosts,
        )
        .map_err(|source| JobError::Widened {
            at: lock
                .locate("allowed_hosts")
                .unwrap_or_else(|| lockfile.display().to_string()),
            source,
        })?;
        check_policy(&lock, &policy).map_err(|source| JobError::Policy {
            lockfile: lockfile.to_owned(),
            source,
        })?;
        let store = sources.open_store(store, on_wait)?;
        Ok(Self {
            lock,
            mirrors,
            policy,
            store,
        })
    }

    /// Which hosts may be contacted, and why each may: `allowed hosts: github.com (built-in), …`.
    pub fn policy_line(&self) -> String {
        format!("allowed hosts: {}", self.policy.describe())
    }

    /// The effective allow-list: `[{host, from}]`.
    pub fn policy_json(&self) -> serde_json::Value {
        self.policy
            .hosts()
            .map(|(host, from)| serde_json::json!({ "host": host, "from": from }))
            .collect()
    }

    pub fn getter(&self, offline: bool) -> Getter<'_> {
        Getter {
            store: &self.store,
            mirrors: &self.mirrors,
            policy: &self.policy,
            offline,
        }
    }
}
