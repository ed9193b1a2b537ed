//! The command line: argument parsing, output and exit codes over the library.
//!
//! Exit codes: 0 ok, 1 a check failed, 2 usage or input error.

mod audit;
mod build;
mod check;
mod diff;
mod fetch;
mod lock;
mod mirror;
mod progress;
mod sbom;
mod setup;
mod sign;
mod vendor;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use kata_repro::lock::{Loaded, Lockfile};
use kata_repro::source::fetch::check_policy;
use kata_repro::source::get::Getter;
use kata_repro::source::mirror::{Config, Mirrors};
use kata_repro::source::policy::HostPolicy;
use kata_repro::source::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "kata-repro",
    version,
    about = "Reproducible builds of Kata Containers: pin, fetch, verify, build, compare"
)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print no progress on stderr (errors and reports still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Configuration file (mirrors, extra allowed hosts, store). Default: $KATA_REPRO_CONFIG,
    /// else ~/.config/kata-repro/config.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the host tools and packages the recipes need, and install what is missing.
    Setup(setup::SetupArgs),
    /// Write a lockfile for a Kata release by reading its pinned tree.
    Lock(lock::LockArgs),
    /// Fetch every pinned input of a lockfile into the store, verified.
    Fetch(fetch::FetchArgs),
    /// Write bare mirrors of every git source a lockfile needs, and the mirrors.toml mapping
    /// them, for an air-gapped network.
    Mirror(mirror::MirrorCmdArgs),
    /// Verify every crate, Go module and kernel input against its pin.
    Verify(verify::VerifyArgs),
    /// Write a verified vendor tree and cargo config for `cargo build --locked --offline`.
    Vendor(vendor::VendorArgs),
    /// Build components hermetically from recipes, with a manifest and SHA256SUMS.
    Build(build::BuildArgs),
    /// Write CycloneDX SBOMs of a release's dependency set without building it.
    Sbom(sbom::SbomArgs),
    /// Sign a build's manifest digest and provenance (ed25519, DSSE envelopes).
    Sign(sign::SignArgs),
    /// Check a build's signatures, and its provenance subjects against its files.
    VerifySignature(sign::VerifySignatureArgs),
    /// Compare two builds (manifests or output directories) and explain every difference.
    Diff(diff::DiffArgs),
    /// Build twice, the second time under reprotest's variations, and say what is reproducible.
    Check(check::CheckArgs),
    /// Rebuild a published manifest from the lockfile it names and compare bit for bit.
    Audit(audit::AuditArgs),
    /// A builtin recipe step (run by `build` inside its sandbox).
    #[command(hide = true)]
    Builtin(BuiltinArgs),
}

#[derive(Debug, clap::Args)]
pub struct BuiltinArgs {
    pub name: kata_repro::recipe::Builtin,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Mirror options shared by commands that read upstream sources.
#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// Use a mirror (a local path, or a URL) for an upstream URL or URL prefix; repeatable.
    #[arg(long = "mirror", value_name = "URL=PATH")]
    pub mirrors: Vec<String>,
    /// Allow an upstream host beyond the built-in ones (a lockfile's [policy] cannot); repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
}

/// A command that did not succeed, with its exit code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad usage or input: exit 2.
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }
    /// A verification failed: exit 1.
    pub fn check(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }

    pub fn report(self, json: bool) -> ExitCode {
        // Errors carry their causes in their own messages.
        let message = format!("{}", self.error);
        if json {
            let v = serde_json::json!({ "ok": false, "exit_code": self.code, "error": message });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        eprintln!("error: {message}");
        ExitCode::from(self.code)
    }
}

/// A command line clap refused: exit 2, as JSON when `--json` was asked for.
pub fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || !std::env::args().any(|a| a == "--json")
    {
        error.exit();
    }
    let message = error.render().to_string();
    let v = serde_json::json!({ "ok": false, "exit_code": 2, "error": message.trim() });
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    eprint!("{message}");
    ExitCode::from(2)
}

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    progress::set_quiet(cli.quiet);
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Setup(args) => setup::run(args, cli.json),
        Command::Lock(args) => lock::run(args, &config, cli.json),
        Command::Fetch(args) => fetch::run(args, &config, cli.json),
        Command::Mirror(args) => mirror::run(args, &config, cli.json),
        Command::Verify(args) => verify::run(args, &config, cli.json),
        Command::Vendor(args) => vendor::run(args, &config, cli.json),
        Command::Build(args) => build::run(args, &config, cli.json),
        Command::Diff(args) => diff::run(args, cli.json),
        Command::Check(args) => check::run(args, &config, cli.json),
        Command::Audit(args) => audit::run(args, &config, cli.json),
        Command::Sbom(args) => sbom::run(args, &config, cli.json),
        Command::Sign(args) => sign::run(args, cli.json),
        Command::VerifySignature(args) => sign::verify(args, cli.json),
        Command::Builtin(args) => kata_repro::builder::builtin::run(args.name, &args.args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failure::check),
    }
}

fn load_config(explicit: Option<&Path>) -> Result<Config, Failure> {
    match Config::locate(explicit) {
        Some(path) => Config::load(&path).map_err(Failure::input),
        None => Ok(Config::default()),
    }
}

/// Mirrors from the config, then `--mirror` (which wins).
fn mirrors(config: &Config, args: &MirrorArgs) -> Result<Mirrors, Failure> {
    let mut m = Mirrors::new();
    m.extend_from(config);
    for arg in &args.mirrors {
        m.insert_arg(arg).map_err(Failure::input)?;
    }
    Ok(m)
}

/// The store named by `--store`, the environment or the config, opened for writing.
fn open_store(store: Option<&Path>, config: &Config) -> Result<Store, Failure> {
    let root = Store::default_root(store, config.store.as_deref());
    Store::open(&root, || {
        eprintln!(
            "waiting for another kata-repro to release the store {}",
            root.display()
        )
    })
    .map_err(Failure::input)
}

/// What a command that reads a release's inputs needs: its lockfile, the mirrors, the host
/// policy (already checked against every URL the lockfile names) and the store.
pub struct Release {
    /// The lockfile, with the sha256 of the bytes it was parsed from.
    pub lock: Loaded<Lockfile>,
    mirrors: Mirrors,
    policy: HostPolicy,
    pub store: Store,
}

impl Release {
    fn open(
        lockfile: &Path,
        store: Option<&Path>,
        config: &Config,
        mirror_args: &MirrorArgs,
    ) -> Result<Self, Failure> {
        let lock = Lockfile::load(lockfile).map_err(Failure::input)?;
        let mirrors = mirrors(config, mirror_args)?;
        let policy = HostPolicy::for_lockfile(
            &lock.policy.allowed_hosts,
            &config.policy.allowed_hosts,
            &mirror_args.allow_hosts,
        )
        .map_err(|e| {
            let at = lock
                .locate("allowed_hosts")
                .unwrap_or_else(|| lockfile.display().to_string());
            Failure::input(anyhow!("{at}: {e}"))
        })?;
        check_policy(&lock, &policy)
            .map_err(|e| Failure::input(anyhow!("{}: {e}", lockfile.display())))?;
        let store = open_store(store, config)?;
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

    /// Says [`Self::policy_line`] on stderr.
    pub fn announce_policy(&self) {
        progress::say(self.policy_line());
    }

    /// The effective allow-list for `--json`: `[{host, from}]`.
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

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
}
