//! The `lock` job: a lockfile for a Kata release, from its pinned tree ([`generate`]), with
//! the kernel, the rootfs packages and the host's packages pinned as asked.

mod generate;
mod update;

use std::path::PathBuf;

pub use generate::{
    DEFAULT_ALLOWED_HOSTS, GenerateError, Generated, KernelPin, LockRequest, OpenRepo, Pins,
    generate,
};
pub use update::{Part, UpdateError, UpdateSpec, Updated, update};

use super::Sources;
use crate::lock::Lockfile;
use crate::lock::debian::{self, ArchiveRequest, DebianError};
use crate::source::download::Location;
use crate::source::git::{GitError, VerifiedRepo};
use crate::source::mirror::Mirrors;
use crate::source::policy::{FROM_FLAG, HostPolicy, PolicyError};

/// What a lockfile is made from.
#[derive(Debug, Clone)]
pub struct LockSpec {
    /// The Kata repository: its upstream https URL (read through a mirror), or a local path.
    pub source: String,
    /// The upstream URL to record when `source` is a path.
    pub upstream: Option<String>,
    pub pins: Pins,
    /// The kernel from this URL instead of the one versions.yaml names.
    pub kernel_url: Option<KernelUrl>,
    /// The rootfs packages, resolved from a Debian or Ubuntu archive.
    pub rootfs: Option<ArchiveRequest>,
    /// Pin the build host's packages the built-in recipes use.
    pub pin_host: bool,
}

/// A kernel taken from another URL: its version, and for a Debian package the tarball's path
/// in its data tree.
#[derive(Debug, Clone)]
pub struct KernelUrl {
    pub url: String,
    pub version: String,
    pub member: Option<String>,
}

/// Why a lockfile could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LockJobError {
    #[error(transparent)]
    Mirror(#[from] crate::source::mirror::MirrorError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "{url} has no local mirror, and git is only read from local mirrors: pass --mirror \
         {url}=PATH"
    )]
    NoMirror { url: String },
    #[error(
        "--source {} is a path: also pass --upstream URL, the repository's upstream https URL",
        path.display()
    )]
    NoUpstream { path: PathBuf },
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Debian(#[from] DebianError),
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
}

impl LockJobError {
    /// 1 when what was read does not verify (a corrupt or moved git object, an archive whose
    /// signature or index does not check), 2 when the input is wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            LockJobError::Generate(GenerateError::Git(
                GitError::Corrupt { .. } | GitError::TreeMismatch { .. },
            ))
            | LockJobError::Debian(DebianError::Signature { .. } | DebianError::Index { .. }) => 1,
            _ => 2,
        }
    }
}

/// Makes the lockfile `spec` asks for, reading git only from local mirrors and every URL
/// through the policy the lockfile will be used under.
pub fn run(spec: &LockSpec, sources: &Sources) -> Result<Generated, LockJobError> {
    let mirrors = sources.mirrors()?;
    let policy = policy(spec, sources);
    let (repo, upstream_url) = repository(spec, &mirrors, &policy)?;
    // The URL written into the lockfile must pass the policy that every later command applies.
    policy.check(&upstream_url)?;
    let request = LockRequest {
        repo,
        upstream_url,
        pins: spec.pins.clone(),
    };
    // Git dependencies and submodules are read from their local mirrors, to pin their trees.
    let open = |url: &str, _commit: gix::ObjectId| -> Result<VerifiedRepo, String> {
        policy.check(url).map_err(|e| e.to_string())?;
        match mirrors.resolve(url) {
            Some(Location::File(path)) => VerifiedRepo::open(&path).map_err(|e| e.to_string()),
            _ => Err(format!(
                "no local mirror of {url} is configured: pass --mirror {url}=PATH"
            )),
        }
    };
    let mut generated = generate(&request, &open)?;
    if let Some(k) = &spec.kernel_url {
        let kernel = &mut generated.lockfile.kernel;
        kernel.url = k.url.clone();
        kernel.version = k.version.clone();
        kernel.member = k.member.clone();
        allow_host_of(&mut generated.lockfile, &k.url);
    }
    if let Some(archive) = &spec.rootfs {
        pin_rootfs(&mut generated, archive, &mirrors, &policy)?;
    }
    if spec.pin_host {
        generated.lockfile.host = Some(host_pins()?);
    }
    Ok(generated)
}

/// The hosts a lockfile may name: the defaults, the config's and the flags', and the hosts of
/// an archive or kernel URL given (the lockfile records them).
fn policy(spec: &LockSpec, sources: &Sources) -> HostPolicy {
    let mut policy = HostPolicy::new(DEFAULT_ALLOWED_HOSTS);
    policy.extend(&sources.config.policy.allowed_hosts);
    policy.extend_from(&sources.allow_hosts, FROM_FLAG);
    let archive = spec.rootfs.as_ref().map(|r| &r.archive);
    let kernel = spec.kernel_url.as_ref().map(|k| &k.url);
    for url in archive.into_iter().chain(kernel) {
        if let Ok(u) = url::Url::parse(url)
            && let Some(host) = u.host_str()
        {
            policy.extend(&[host.to_owned()]);
        }
    }
    policy
}

/// The local repository to read, and the upstream URL to record.
fn repository(
    spec: &LockSpec,
    mirrors: &Mirrors,
    policy: &HostPolicy,
) -> Result<(PathBuf, String), LockJobError> {
    match Location::parse(&spec.source) {
        Location::Http(url) => match mirrors.resolve(&url) {
            Some(Location::File(path)) => Ok((path, spec.upstream.clone().unwrap_or(url))),
            _ => {
                policy.check(&url)?;
                Err(LockJobError::NoMirror { url })
            }
        },
        Location::File(path) => match &spec.upstream {
            Some(upstream) => Ok((path, upstream.clone())),
            None => Err(LockJobError::NoUpstream { path }),
        },
    }
}

/// Resolves the rootfs packages from `archive` into the lockfile, for its target
/// architectures (replacing what it pinned for them), through the mirrors and the policy.
fn pin_rootfs(
    generated: &mut Generated,
    archive: &ArchiveRequest,
    mirrors: &Mirrors,
    policy: &HostPolicy,
) -> Result<(), LockJobError> {
    let get = archive_reader(mirrors, policy);
    let resolved = debian::resolve(archive, &get)?;
    generated.warnings.extend(replace_rootfs(
        &mut generated.lockfile,
        &archive.targets,
        resolved,
    ));
    allow_host_of(&mut generated.lockfile, &archive.archive);
    Ok(())
}

/// Puts a resolved package set in the lockfile in place of what it pinned for `targets`;
/// returns the resolution's warnings.
fn replace_rootfs(
    lock: &mut Lockfile,
    targets: &[String],
    resolved: debian::Resolved,
) -> Vec<String> {
    let rootfs = &mut lock.rootfs;
    rootfs.base.retain(|b| !targets.contains(&b.arch));
    rootfs.base.extend(resolved.base);
    rootfs.base.sort_by(|a, b| a.arch.cmp(&b.arch));
    rootfs.packages.retain(|p| !targets.contains(&p.target));
    rootfs.packages.extend(resolved.packages);
    rootfs
        .packages
        .sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    resolved.warnings
}

/// Reads a URL of an archive through the mirrors, checking an upstream URL against the policy.
fn archive_reader<'a>(
    mirrors: &'a Mirrors,
    policy: &'a HostPolicy,
) -> impl Fn(&str) -> Result<Vec<u8>, String> + 'a {
    move |url: &str| {
        let location = mirrors.resolve(url).unwrap_or_else(|| Location::parse(url));
        if let Location::Http(u) = &location {
            policy.check(u).map_err(|e| e.to_string())?;
        }
        crate::source::download::get_bytes(&location.to_string(), None).map_err(|e| e.to_string())
    }
}

/// The versions of this host's packages that the built-in recipes use.
fn host_pins() -> Result<crate::lock::HostPins, LockJobError> {
    let arch = crate::host::arch();
    let recipes = crate::recipe::RecipeSource::Builtin.load_all()?;
    let recipes: Vec<_> = recipes.values().map(|r| &r.recipe).collect();
    let (tools, packages) = crate::recipe::host_needs(&recipes, &arch);
    let path = std::env::var("PATH").unwrap_or_default();
    let dpkg = crate::host::Dpkg::load();
    Ok(crate::host::host_pins(&tools, &packages, &path, &dpkg)?)
}

/// Adds the host of `url` (when it is http or https) to the lockfile's allowed hosts.
fn allow_host_of(lock: &mut Lockfile, url: &str) {
    if let Ok(u) = url::Url::parse(url)
        && matches!(u.scheme(), "http" | "https")
        && let Some(host) = u.host_str()
    {
        let hosts = &mut lock.policy.allowed_hosts;
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
            hosts.sort();
        }
    }
}
