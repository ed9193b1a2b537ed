//! The jobs: build, sbom, check (with bisect) and audit, as library calls. Each takes a spec,
//! reports progress through [`Event`]s and returns a result a front end renders; none prints.
//!
//! - [`Release`] opens what every job reads: the lockfile (parsed once, with the sha256 of the
//!   bytes parsed), the mirrors, the host policy and the store.
//! - [`select`] chooses the components a job covers.
//! - [`Job`] is a release opened for building; [`Job::build`] builds it into a directory.
//! - [`records`] writes SBOMs and provenance; [`check`] and [`audit`] compare builds.
//! - [`lock`] writes a lockfile from a release's pinned tree.
//! - [`scan`] matches a release's pinned inputs against advisory databases.

pub mod action;
pub mod audit;
mod build;
pub mod check;
pub mod lock;
pub mod lockdiff;
pub mod outdated;
pub mod records;
mod release;
pub mod scan;
pub mod select;

use std::path::PathBuf;

pub use build::{BuildOptions, Built, Job};
pub use release::{Release, Sources};

use crate::builder::{self, BuildError, OutDirError};
use crate::files::io_err;

/// How a release is built here: the store, the recipes, the toolchains, the mirrors.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The store directory; `None` for the default one.
    pub store: Option<PathBuf>,
    /// Download nothing: use the store and mirrors only.
    pub offline: bool,
    /// Run steps without namespaces where they cannot be made.
    pub allow_network_leak: bool,
    /// Build even where host packages differ from the lockfile's `[host]` pins.
    pub allow_host_drift: bool,
    /// Recipes from this directory instead of the built-in ones.
    pub recipes: Option<PathBuf>,
    /// The Rust toolchain's sysroot; `None` to find the pinned one.
    pub rust_toolchain: Option<PathBuf>,
    /// A Go module proxy for modules the source does not vendor.
    pub go_proxy: Option<String>,
    /// A directory with a `kata.toml` instead of the built-in SBOM templates.
    pub sbom_templates: Option<PathBuf>,
    /// Where scratch directories are made; `None` for the store's staging area.
    pub work_dir: Option<PathBuf>,
    /// Mirrors (`URL=PATH`) and extra allowed hosts, beyond the config's.
    pub sources: Sources,
    /// A remote (REAPI) server whose action cache is shared with this build.
    pub remote: Option<RemoteSpec>,
}

/// A remote to share results through: its address, the instance, and what it is used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// `grpc://HOST:PORT`.
    pub url: String,
    /// The REAPI instance name; empty for the server's default one.
    pub instance: String,
    /// Use the remote's action cache only, and run steps here.
    pub cache_only: bool,
    /// For `grpcs://`: the CA certificates to trust (PEM; the system's when none).
    pub ca: Option<PathBuf>,
    /// For `grpcs://`: the client certificate and its key (PEM), for a server that asks.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[cfg(feature = "remote")]
impl RemoteSpec {
    /// Where the remote is: the URL, the instance, and for `grpcs://` the TLS files, read.
    pub fn endpoint(&self) -> Result<crate::remote::Endpoint, crate::remote::RemoteError> {
        let endpoint: crate::remote::Endpoint = self.url.parse()?;
        endpoint
            .with_instance(&self.instance)
            .with_tls(&crate::remote::TlsFiles {
                ca: self.ca.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            })
    }
}

/// What a job builds: the release, for which architecture, which components.
#[derive(Debug, Clone)]
pub struct Spec {
    pub lockfile: PathBuf,
    pub arch: String,
    /// Empty for every component the lockfile can build for `arch`.
    pub components: Vec<String>,
    pub env: Env,
}

/// What a job reports as it goes, for a front end to render. `label` names the build it comes
/// from ("first build", "bisect time", …), empty for a lone build.
pub enum Event<'a> {
    /// A phase begins: planning, fetching and verifying inputs, writing records.
    Phase { label: &'a str, what: &'a str },
    /// A crate of the release was verified.
    Crate { label: &'a str, name: &'a str },
    /// The builder's own progress.
    Step {
        label: &'a str,
        event: builder::Event<'a>,
    },
    /// Something worth a line: what a check varies, where a report went.
    Note(String),
}

/// Where a job's events go. Crates are verified in parallel, so it must be `Sync`.
pub type Events<'a> = &'a (dyn Fn(Event<'_>) + Sync);

/// Why a job could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    #[error(transparent)]
    Lockfile(#[from] crate::lock::LockError),
    #[error(transparent)]
    Mirror(#[from] crate::source::mirror::MirrorError),
    #[error("{at}: {source}")]
    Widened {
        at: String,
        source: crate::source::policy::WidenedByLockfile,
    },
    #[error("{}: {source}", lockfile.display())]
    Policy {
        lockfile: PathBuf,
        source: crate::source::policy::PolicyError,
    },
    #[error(transparent)]
    Store(#[from] crate::source::store::StoreError),
    #[error(transparent)]
    Select(#[from] select::SelectError),
    #[error("--go-proxy {0}")]
    GoProxy(#[from] crate::verify::gomod::modcache::ProxyError),
    #[error(
        "the Rust toolchain {} has no standard library for {triple}; install it \
         (rustup target add {triple}) or build on a {arch} host",
        sysroot.display()
    )]
    NoStdlib {
        sysroot: PathBuf,
        triple: String,
        arch: String,
    },
    #[error(transparent)]
    Isolation(crate::sandbox::SandboxError),
    #[error(transparent)]
    OutDir(#[from] OutDirError),
    #[error("cannot find the kata-repro executable: {0}")]
    SelfExe(std::io::Error),
    #[error(transparent)]
    Build(Box<BuildError>),
    #[error(transparent)]
    DependencySets(Box<crate::sbom::DependencySetError>),
    /// The SBOM templates, or an SBOM that could not be written.
    #[error(transparent)]
    Sbom(Box<crate::sbom::SbomError>),
    /// A manifest or report that could not be read or written.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The provenance statement that could not be written.
    #[error("{0}")]
    Provenance(crate::manifest::ManifestError),
    #[error(transparent)]
    SbomDir(#[from] records::NotAnSbomDir),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error(transparent)]
    LockDiff(#[from] crate::lockdiff::DiffError),
    #[cfg(feature = "remote")]
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error(
        "--remote {0}: this kata-repro was built without the `remote` feature; rebuild it with \
         it (a default feature)"
    )]
    NoRemote(String),
    #[error(transparent)]
    Action(#[from] action::ActionError),
}

/// Large errors are boxed, so that every job's `Result` stays small.
macro_rules! boxed_from {
    ($($variant:ident($t:ty)),*) => {$(
        impl From<$t> for JobError {
            fn from(e: $t) -> Self {
                JobError::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    DependencySets(crate::sbom::DependencySetError),
    Sbom(crate::sbom::SbomError),
    Build(BuildError)
);

impl JobError {
    /// 1 when a step or a verification failed, 2 when the input (options, files, machine) is
    /// wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            JobError::Build(e) => e.exit_code(),
            JobError::Action(action::ActionError::KeyMismatch { .. }) => 1,
            #[cfg(feature = "remote")]
            JobError::Remote(e) if !e.is_usage() => 1,
            JobError::DependencySets(e) => e.exit_code(),
            JobError::Sbom(e) => match **e {
                crate::sbom::SbomError::Template { .. } | crate::sbom::SbomError::Input { .. } => 2,
                _ => 1,
            },
            JobError::Provenance(_) => 1,
            JobError::Scan(e) => e.exit_code(),
            // A pinned file that does not hash as pinned failed verification.
            JobError::LockDiff(crate::lockdiff::DiffError::Read(
                crate::lockdiff::read::ReadError::Mismatch { .. },
            )) => 1,
            _ => 2,
        }
    }
}

/// Says that another process holds the store, while a job waits for it.
pub fn waiting(events: Events<'_>) -> impl FnOnce(&std::path::Path) + '_ {
    move |root| {
        events(Event::Note(format!(
            "waiting for another kata-repro to release the store {}",
            root.display()
        )))
    }
}

/// A scratch directory for a job's builds, in the store's staging area, removed when dropped.
fn scratch(release: &Release, prefix: &str) -> Result<tempfile::TempDir, JobError> {
    let root = release.store.staging_dir();
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    let scratch = tempfile::Builder::new().prefix(prefix).tempdir_in(&root);
    Ok(scratch.map_err(io_err(&root))?)
}
