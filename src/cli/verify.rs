use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use indicatif::ProgressStyle;
use kata_repro::lock::cargo_lock::{CargoLock, PackageSource};
use kata_repro::source::get::Getter;
use kata_repro::source::mirror::Config;
use kata_repro::source::policy::HostPolicy;
use kata_repro::source::store::Store;
use kata_repro::verify::cargo::{registry, vendor};
use kata_repro::verify::gomod::gosum::GoSum;
use kata_repro::verify::gomod::modcache::{self, ModuleSources};
use kata_repro::verify::release::{self, ReleaseCheck, ResolveRequest};
use kata_repro::verify::report::{Ecosystem, Finding, Report};

use super::progress::Progress;
use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct VerifyArgs {
    /// Verify everything this lockfile's release depends on.
    #[arg(long, value_name = "FILE", required = true)]
    lockfile: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// Local registry caches holding `.crate` files (e.g. ~/.cargo/registry/cache); repeatable.
    #[arg(long = "registry-cache", value_name = "DIR")]
    registry_caches: Vec<PathBuf>,
    /// Go module caches (GOMODCACHE); repeatable.
    #[arg(long = "modcache", value_name = "DIR")]
    modcaches: Vec<PathBuf>,
    /// A Go module proxy (https:// or file://) to fetch modules from.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Leave out an ecosystem; repeatable or comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ECOSYSTEM")]
    skip: Vec<Ecosystem>,
    /// Architectures whose kernel patches and fragments are listed. Default: this machine's.
    #[arg(long, value_delimiter = ',', value_name = "ARCH")]
    arch: Vec<String>,
    /// Do not resolve which crates the agent build needs.
    #[arg(long)]
    no_resolve: bool,
    /// The package whose build is resolved, by its manifest in the Kata tree.
    #[arg(long, value_name = "PATH", default_value = "src/agent/Cargo.toml")]
    resolve_manifest: String,
    /// The target the build is resolved for. Default: this machine's arch with musl, as Kata's
    /// release builds the agent (utils.mk: LIBC ?= musl).
    #[arg(long, value_name = "TRIPLE")]
    resolve_target: Option<String>,
    /// The features the build is resolved with. Default: those of Kata's release agent
    /// (SECCOMP=yes and INIT_DATA=yes in its Makefile, AGENT_POLICY=yes in kata-deploy).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "FEATURES",
        default_value = "seccomp,agent-policy,init-data"
    )]
    resolve_features: Vec<String>,
    #[command(flatten)]
    mirrors: MirrorArgs,
    /// Fail (exit 1) on `self-consistent` findings too: files that agree only with the checksum
    /// file beside them, with no pinned archive at hand to check them against.
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    command: Option<VerifyCommand>,
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// The store directory (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Use only what is in the store and the given caches: download nothing.
    #[arg(long)]
    offline: bool,
}

#[derive(Debug, clap::Subcommand)]
enum VerifyCommand {
    /// Verify the crates of any Cargo.lock: a vendor tree, registry caches, or crates.io.
    Cargo(CargoArgs),
    /// Verify the Go modules of any go.sum: a module cache, a proxy, or a vendor tree.
    Go(GoArgs),
}

#[derive(Debug, clap::Args)]
struct CargoArgs {
    #[arg(long, value_name = "PATH")]
    lock: PathBuf,
    /// A `cargo vendor` directory to verify file by file.
    #[arg(long, value_name = "DIR")]
    vendor: Option<PathBuf>,
    /// Registry caches holding `.crate` files; repeatable.
    #[arg(long = "registry-cache", value_name = "DIR")]
    registry_caches: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

#[derive(Debug, clap::Args)]
struct GoArgs {
    #[arg(long, value_name = "PATH")]
    sum: PathBuf,
    /// Go module caches (GOMODCACHE); repeatable.
    #[arg(long = "modcache", value_name = "DIR")]
    modcaches: Vec<PathBuf>,
    /// A Go module proxy (https:// or file://).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// A `go mod vendor` directory to verify (with --gomod).
    #[arg(long, value_name = "DIR", requires = "gomod")]
    vendor: Option<PathBuf>,
    /// The go.mod the vendor directory belongs to.
    #[arg(long, value_name = "PATH", requires = "vendor")]
    gomod: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

fn open_store(args: &StoreArgs, config: &Config) -> Result<Store, Failure> {
    super::open_store(args.store.as_deref(), config)
}

fn check_proxy(proxy: &Option<String>) -> Result<(), Failure> {
    match proxy {
        Some(p) => kata_repro::verify::gomod::modcache::check_proxy(p, false)
            .map_err(|e| Failure::input(anyhow!("--proxy {e}"))),
        None => Ok(()),
    }
}

/// Progress over crates: a bar when the count is known, a counter otherwise.
fn crate_progress(len: Option<usize>) -> Progress {
    let progress = Progress::new();
    let bar = progress.bar();
    if let Some(len) = len {
        bar.set_length(len as u64);
    }
    let template = match len {
        Some(_) => "crates [{bar:30}] {pos}/{len} {msg}",
        None => "{spinner} crates verified: {pos} {msg}",
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    progress
}

/// One crate done.
fn crate_done(progress: &Progress, name: &str) {
    let bar = progress.bar();
    bar.inc(1);
    progress.note(format!(
        "verifying crates: {} done, the last {name}",
        bar.position()
    ));
}

pub fn run(args: VerifyArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    match args.command {
        Some(VerifyCommand::Cargo(a)) => return cargo(a, config, format, args.strict),
        Some(VerifyCommand::Go(a)) => return go(a, config, format, args.strict),
        None => {}
    }
    let lockfile = args
        .lockfile
        .expect("clap requires --lockfile without a subcommand");
    check_proxy(&args.proxy)?;
    let release =
        super::open_release(&lockfile, args.store.store.as_deref(), config, args.mirrors)?;
    super::progress::say(release.policy_line());
    let host = kata_repro::host::arch();
    let progress = crate_progress(None);
    let on_crate = |f: &Finding| crate_done(&progress, &f.name);
    let check = ReleaseCheck {
        lock: &release.lock,
        get: release.getter(args.store.offline),
        registry_caches: args.registry_caches,
        modcaches: args.modcaches,
        proxy: if args.store.offline { None } else { args.proxy },
        download: !args.store.offline,
        arches: if args.arch.is_empty() {
            vec![host.clone()]
        } else {
            args.arch
        },
        host_arch: host,
        skip: args.skip.into_iter().collect::<BTreeSet<_>>(),
        threads: 8,
        on_crate: Some(&on_crate),
        resolve: (!args.no_resolve).then(|| ResolveRequest {
            manifest: args.resolve_manifest.clone(),
            target: args
                .resolve_target
                .clone()
                .unwrap_or_else(|| kata_repro::host::musl_triple(&kata_repro::host::arch())),
            features: args.resolve_features.clone(),
            cargo: std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        }),
    };
    let mut report = check.run();
    drop(progress);
    report.notes.push(release.policy_line());
    Ok(print(&report, format, args.strict))
}

fn cargo(
    args: CargoArgs,
    config: &Config,
    format: Format,
    strict: bool,
) -> Result<ExitCode, Failure> {
    let lock = CargoLock::load(&args.lock).map_err(|e| Failure::input(anyhow!(e)))?;
    let mut report = Report::default();
    let store = open_store(&args.store, config)?;
    if let Some(dir) = &args.vendor {
        // Files are checked against the verified .crate where the store or a cache has it.
        let lookup = |p: &kata_repro::lock::cargo_lock::LockedPackage| {
            registry::verified_crate(p, Some(&store), &args.registry_caches)
        };
        report
            .findings
            .extend(vendor::verify_against(&lock, &args.lock, dir, &lookup));
        return Ok(print(&report, format, strict));
    }
    let mirrors = args
        .mirrors
        .clone()
        .sources(config)
        .mirrors()
        .map_err(Failure::input)?;
    let registry_crates = lock
        .packages
        .iter()
        .filter(|p| matches!(p.source, PackageSource::Registry(_)))
        .count();
    let progress = crate_progress(Some(registry_crates));
    let on_done = |f: &Finding| crate_done(&progress, &f.name);
    let sources = registry::CrateSources {
        store: Some(&store),
        registry_caches: args.registry_caches.clone(),
        download: !args.store.offline && args.registry_caches.is_empty(),
        mirrors: Some(&mirrors),
        on_done: Some(&on_done),
    };
    report
        .findings
        .extend(registry::verify(&lock, &args.lock, &sources, 8));
    drop(progress);
    // Git packages, through their mirrors, on the same terms as verify --lockfile.
    let policy = HostPolicy::for_user(&config.policy.allowed_hosts, &args.mirrors.allow_hosts);
    super::progress::say(format!("allowed hosts: {}", policy.describe()));
    let get = Getter {
        store: &store,
        mirrors: &mirrors,
        policy: &policy,
        offline: args.store.offline,
    };
    report
        .findings
        .extend(release::git_packages(&lock, &args.lock, &get, None));
    Ok(print(&report, format, strict))
}

fn go(args: GoArgs, config: &Config, format: Format, strict: bool) -> Result<ExitCode, Failure> {
    check_proxy(&args.proxy)?;
    let sum = GoSum::load(&args.sum).map_err(Failure::input)?;
    if sum.entries.is_empty() {
        return Err(Failure::input(anyhow!(
            "{}: go.sum pins no module, so there is nothing to verify: is this the go.sum you \
             meant?",
            args.sum.display()
        )));
    }
    let store = if args.proxy.is_some() {
        Some(open_store(&args.store, config)?)
    } else {
        None
    };
    let sources = ModuleSources {
        modcaches: args.modcaches.clone(),
        proxy: if args.store.offline {
            None
        } else {
            args.proxy.clone()
        },
        store: store.as_ref().map(|s| s.go_module_cache()),
        staging: store.as_ref().map(|s| s.staging_dir()),
    };
    let report = match (&args.vendor, &args.gomod) {
        (Some(vendor_dir), Some(gomod)) => {
            let module_dir = gomod.parent().unwrap_or(std::path::Path::new("."));
            if module_dir.join("go.mod") != *gomod {
                return Err(Failure::input(anyhow!(
                    "--gomod must name a file called go.mod"
                )));
            }
            release::vendored(module_dir, vendor_dir, &sum, &sources, None)
                .map_err(Failure::input)?
        }
        _ => modcache::verify(&sum, &sources),
    };
    Ok(print(&report, format, strict))
}

fn print(report: &Report, format: Format, strict: bool) -> ExitCode {
    let ok = if strict {
        report.strictly_ok()
    } else {
        report.ok()
    };
    let json = serde_json::json!({
        "strict": strict,
        "summary": report.summary(),
        "findings": report.findings,
        "notes": report.notes,
    });
    let text = |out: &mut String| print_text(out, report);
    format.emit(Output::checked(ok, json, &text))
}

fn print_text(out: &mut String, report: &Report) {
    for f in report.failures() {
        outln!(out, "{}", f.line());
    }
    // Inputs listed by their hash (kernel patches and fragments), as the source tree pins them.
    let listed: Vec<_> = report
        .findings
        .iter()
        .filter(|f| {
            f.ecosystem == Ecosystem::Kernel && f.outcome == kata_repro::verify::report::Outcome::Ok
        })
        .filter_map(|f| f.actual.as_ref().map(|a| (a, &f.name)))
        .collect();
    if !listed.is_empty() {
        outln!(out, "kernel inputs from the pinned tree (sha256):");
        for (sha, name) in listed {
            outln!(out, "  {sha}  {name}");
        }
        outln!(out);
    }
    if report.failures().next().is_some() {
        outln!(out);
    }
    outln!(
        out,
        "{:<10} {:>6} {:>6} {:>7} {:>8} {:>15}",
        "ECOSYSTEM",
        "OK",
        "FAILED",
        "MISSING",
        "UNPINNED",
        "SELF-CONSISTENT"
    );
    for (eco, c) in report.summary() {
        outln!(
            out,
            "{:<10} {:>6} {:>6} {:>7} {:>8} {:>15}",
            eco.to_string(),
            c.ok,
            c.failed,
            c.missing,
            c.unpinned,
            c.self_consistent
        );
    }
    for n in &report.notes {
        outln!(out, "note: {n}");
    }
}
