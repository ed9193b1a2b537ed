//! The command line: argument parsing, output and exit codes over the library.
//!
//! Exit codes: 0 ok, 1 a check failed, 2 usage or input error.

mod audit;
mod build;
mod check;
mod diff;
mod fetch;
mod lock;
mod lockdiff;
mod mirror;
mod outdated;
mod progress;
mod render;
mod sbom;
mod scan;
mod setup;
mod sign;
mod store;
mod vendor;
mod verify;
#[cfg(feature = "remote")]
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kata_repro::job::{JobError, Release, Sources};
use kata_repro::source::mirror::Config;
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
    /// What changes between two releases: their lockfiles, crates, Go modules and packages.
    Lockdiff(lockdiff::LockDiffArgs),
    /// What is newer than a release's pins: Kata releases, toolchains, kernel, rootfs and host
    /// packages, and Kata's own crates and Go modules.
    Outdated(outdated::OutdatedArgs),
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
    /// Check every pinned input against offline advisory databases (RustSec, Go vulndb).
    Scan(scan::ScanArgs),
    /// Check the store itself: `store verify` re-hashes every object against its name.
    Store(store::StoreArgs),
    /// Take actions from an REAPI server's workers API (BuildGrid) and build each here.
    #[cfg(feature = "remote")]
    Worker(worker::WorkerArgs),
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
#[derive(Debug, Clone, clap::Args)]
pub struct MirrorArgs {
    /// Use a mirror (a local path, or a URL) for an upstream URL or URL prefix; repeatable.
    #[arg(long = "mirror", value_name = "URL=PATH")]
    pub mirrors: Vec<String>,
    /// Allow an upstream host beyond the built-in ones (a lockfile's [policy] cannot); repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
}

/// Where a command that reads a release without building it finds the store, the recipes, the
/// Rust toolchain and the mirrors.
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// The store directory (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Download nothing: use the store and mirrors only.
    #[arg(long)]
    offline: bool,
    /// Read recipes from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    recipes: Option<PathBuf>,
    /// The Rust toolchain whose cargo reads the crate graph (as for `build`).
    #[arg(long, value_name = "DIR")]
    rust_toolchain: Option<PathBuf>,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

impl ReadArgs {
    pub fn env(self, config: &Config) -> kata_repro::job::Env {
        kata_repro::job::Env {
            store: self.store,
            offline: self.offline,
            recipes: self.recipes,
            rust_toolchain: self.rust_toolchain,
            sources: self.mirrors.sources(config),
            ..Default::default()
        }
    }
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

/// Runs the command `cli` asks for: its result on stdout, progress and errors on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let format = render::Format::new(cli.json);
    run(cli, format).unwrap_or_else(|failure| format.fail(failure))
}

fn run(cli: Cli, format: render::Format) -> Result<ExitCode, Failure> {
    progress::set_quiet(cli.quiet);
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Setup(args) => setup::run(args, format),
        Command::Lock(args) => lock::run(args, &config, format),
        Command::Fetch(args) => fetch::run(args, &config, format),
        Command::Mirror(args) => mirror::run(args, &config, format),
        Command::Verify(args) => verify::run(args, &config, format),
        Command::Vendor(args) => vendor::run(args, &config, format),
        Command::Build(args) => build::run(args, &config, format),
        Command::Diff(args) => diff::run(args, format),
        Command::Check(args) => check::run(args, &config, format),
        Command::Audit(args) => audit::run(args, &config, format),
        #[cfg(feature = "remote")]
        Command::Worker(args) => worker::run(args, &config, format),
        Command::Sbom(args) => sbom::run(args, &config, format),
        Command::Lockdiff(args) => lockdiff::run(args, &config, format),
        Command::Outdated(args) => outdated::run(args, &config, format),
        Command::Scan(args) => scan::run(args, &config, format),
        Command::Store(args) => store::run(args, &config, format),
        Command::Sign(args) => sign::run(args, format),
        Command::VerifySignature(args) => sign::verify(args, format),
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

impl MirrorArgs {
    /// Where upstream sources come from: the config's mirrors and hosts, then these.
    pub fn sources(self, config: &Config) -> Sources {
        Sources {
            config: config.clone(),
            mirrors: self.mirrors,
            allow_hosts: self.allow_hosts,
        }
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        Failure {
            code: e.exit_code(),
            error: e.into(),
        }
    }
}

/// Says on stderr that the store at `root` is held by another process.
fn say_waiting(root: &Path) {
    eprintln!(
        "waiting for another kata-repro to release the store {}",
        root.display()
    )
}

/// Opens the store named explicitly, by the environment or by the config, saying so while
/// another process holds it.
fn open_store(store: Option<&Path>, config: &Config) -> Result<Store, Failure> {
    let sources = kata_repro::job::Sources {
        config: config.clone(),
        ..Default::default()
    };
    Ok(sources.open_store(store, say_waiting)?)
}

/// Opens a release's lockfile, mirrors, policy and store, saying so while another process
/// holds the store.
fn open_release(
    lockfile: &Path,
    store: Option<&Path>,
    config: &Config,
    mirror_args: MirrorArgs,
) -> Result<Release, Failure> {
    let sources = mirror_args.sources(config);
    Ok(Release::open(lockfile, store, &sources, say_waiting)?)
}
