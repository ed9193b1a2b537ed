//! `kata-repro worker`: a bot of an REAPI server's Remote Workers API. It takes the actions
//! clients send with `build --remote`, one at a time, and builds each with this machine's
//! store, mirrors and step sandbox, as `build` would here: every input fetched and verified
//! from its pins, the action key checked against the client's.

use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::job::{Env, Event, JobError};
use kata_repro::remote::{Blob, Bot, Ran, Remote};
use kata_repro::source::mirror::Config;

use super::build::RemoteTlsArgs;
use super::progress::JobProgress;
use super::render::Format;
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The REAPI server (BuildGrid, say) whose Bots service hands out actions: grpc://HOST:PORT,
    /// or grpcs://HOST:PORT for TLS.
    #[arg(long, value_name = "URL")]
    remote: String,
    /// The instance name on the server. Default: its default instance.
    #[arg(long, value_name = "NAME", default_value = "")]
    remote_instance: String,
    /// This bot's id among the server's bots. Default: the host name and the process id.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Take the actions of this release: the digest of its [host] pins is advertised, so that
    /// only its actions pinned to hosts like this one come here. Repeatable. Actions of
    /// lockfiles with no [host] pins come to every worker.
    #[arg(long = "lockfile", value_name = "FILE")]
    lockfiles: Vec<PathBuf>,
    /// The store directory (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Download nothing: use the store and mirrors only.
    #[arg(long)]
    offline: bool,
    /// Run steps without namespaces where they cannot be made (as for `build`).
    #[arg(long)]
    allow_network_leak: bool,
    /// The Rust toolchain (a sysroot), as for `build`.
    #[arg(long, value_name = "DIR")]
    rust_toolchain: Option<PathBuf>,
    /// A Go module proxy for releases that vendor no Go modules, as for `build`.
    #[arg(long, value_name = "URL")]
    go_proxy: Option<String>,
    /// Where scratch directories are made. Default: the store's staging area.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    tls: RemoteTlsArgs,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

/// The platform properties this worker offers: its arch, kata-repro's version, and the host
/// pins of each lockfile it serves (and `none`).
fn properties(lockfiles: &[PathBuf]) -> Result<Vec<(String, String)>, Failure> {
    let arch = kata_repro::host::arch();
    let mut props: Vec<(String, String)> = kata_repro::builder::shared::platform(&arch, None)
        .into_iter()
        .collect();
    let dpkg = kata_repro::host::Dpkg::load();
    for path in lockfiles {
        let lock = kata_repro::lock::Lockfile::load(path)
            .map_err(|e| Failure::input(anyhow::anyhow!(e)))?
            .value;
        if let Some(pins) = &lock.host {
            hold(&lock, pins, &dpkg, path)?;
        }
        let pins = kata_repro::builder::shared::platform(&arch, lock.host.as_ref());
        let entry = ("host-pins".to_owned(), pins["host-pins"].clone());
        if !props.contains(&entry) {
            props.push(entry);
        }
    }
    Ok(props)
}

/// Refuses to offer a lockfile's host pins this host does not hold: its actions would come
/// here and fail.
fn hold(
    lock: &kata_repro::lock::Lockfile,
    pins: &kata_repro::lock::HostPins,
    dpkg: &kata_repro::host::Dpkg,
    path: &std::path::Path,
) -> Result<(), Failure> {
    let unmet = kata_repro::host::unmet_pins(pins, dpkg);
    if unmet.is_empty() {
        return Ok(());
    }
    let at = lock
        .locate("[host]")
        .unwrap_or_else(|| path.display().to_string());
    Err(Failure::input(anyhow::anyhow!(
        "{at}: this host does not hold the lockfile's [host] pins:\n  {}\ninstall those \
         versions, or serve this release from a host that has them (leave out --lockfile {})",
        unmet.join("\n  "),
        path.display()
    )))
}

pub fn run(args: WorkerArgs, config: &Config, _format: Format) -> Result<ExitCode, Failure> {
    // Its own builds take what they need from the remote cache, and run here.
    let spec = args
        .tls
        .clone()
        .spec(args.remote.clone(), args.remote_instance.clone(), true);
    let endpoint = spec
        .endpoint()
        .map_err(|e| Failure::input(anyhow::anyhow!(e)))?;
    // What it offers is checked before the server is called.
    let properties = properties(&args.lockfiles)?;
    let remote = Remote::connect(endpoint.clone()).map_err(|e| Failure {
        code: if e.is_usage() { 2 } else { 1 },
        error: anyhow::anyhow!(e),
    })?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let bot = Bot {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host.trim(), std::process::id())),
        properties,
    };
    let env = Env {
        store: args.store.clone(),
        offline: args.offline,
        allow_network_leak: args.allow_network_leak,
        rust_toolchain: args.rust_toolchain.clone(),
        go_proxy: args.go_proxy.clone(),
        work_dir: args.work_dir.clone(),
        sources: args.mirrors.clone().sources(config),
        ..Default::default()
    };
    let offered: Vec<String> = bot
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!(
        "worker {}: serving {endpoint} (instance `{}`), offering {}",
        bot.id,
        endpoint.instance,
        offered.join(", ")
    );
    let run = |action: Blob, root: &std::path::Path| -> Ran {
        eprintln!("worker {}: leased action {action}", bot.id);
        let progress = JobProgress::new();
        let events = |e: Event<'_>| progress.show(e);
        let scratch = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => return Ran::Failed(format!("a scratch directory: {e}")),
        };
        let out = scratch.path().join("out");
        let ran = kata_repro::job::action::run(root, env.clone(), spec.clone(), &out, &events);
        drop(progress);
        let outcome = match ran {
            Ok(done) => {
                eprintln!("worker {}: built {} ({})", bot.id, done.component, done.key);
                Ran::Done(Box::new(done.listing))
            }
            Err(JobError::Action(e)) if e.is_precondition() => Ran::Refused(e.to_string()),
            Err(e) => Ran::Failed(format!("{:#}", anyhow::anyhow!(e))),
        };
        if let Ran::Refused(why) | Ran::Failed(why) = &outcome {
            eprintln!("worker {}: action {action} failed: {why}", bot.id);
        }
        outcome
    };
    let notice = |line: &str| eprintln!("worker {}: {line}", bot.id);
    remote.serve(&bot, &run, &notice).map_err(|e| Failure {
        code: if e.is_usage() { 2 } else { 1 },
        error: anyhow::anyhow!(e),
    })?;
    Ok(ExitCode::SUCCESS)
}
