use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kata_repro::digest::Sha256Digest;
use kata_repro::job::{BuildOptions, Built, Env, Event, Job, RemoteSpec, Spec};
use kata_repro::source::mirror::Config;

use super::progress::JobProgress;
use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

/// What every command that builds takes: the release, what of it, and where from.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The lockfile of the release to build.
    #[arg(long, value_name = "FILE")]
    pub lockfile: PathBuf,
    /// The architecture to build for.
    #[arg(long, value_name = "ARCH", default_value_t = kata_repro::host::arch())]
    pub arch: String,
    /// Components to build, comma-separated. Default: every recipe.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub component: Vec<String>,
    #[command(flatten)]
    pub with: BuildEnvArgs,
}

/// How a release is built here: the store, the recipes, the toolchains, the mirrors.
#[derive(Debug, clap::Args)]
pub struct BuildEnvArgs {
    /// The store directory (see `fetch`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Download nothing: use the store and mirrors only.
    #[arg(long)]
    pub offline: bool,
    /// Run steps without namespaces where they cannot be made (the network stays reachable
    /// and real paths show); the manifest records it.
    #[arg(long)]
    pub allow_network_leak: bool,
    /// Build even where host packages differ from the lockfile's [host] pins; the manifest
    /// records each difference.
    #[arg(long)]
    pub allow_host_drift: bool,
    /// Read recipes from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub recipes: Option<PathBuf>,
    /// The Rust toolchain (a sysroot, e.g. ~/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu).
    /// Default: rustup's toolchain for the pinned version, else the `rustc` on PATH.
    #[arg(long, value_name = "DIR")]
    pub rust_toolchain: Option<PathBuf>,
    /// A Go module proxy (https:// or file://) for Go modules the source does not vendor
    /// (Kata 3.31.0 and later); every module is checked against go.sum first.
    #[arg(long, value_name = "URL")]
    pub go_proxy: Option<String>,
    /// A directory with a `kata.toml` to use instead of the built-in SBOM templates.
    #[arg(long, value_name = "DIR")]
    pub sbom_templates: Option<PathBuf>,
    /// Where scratch directories are made. Default: the store's staging area.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// A remote (REAPI) server whose action cache a build shares.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// An REAPI server (BuildGrid, say) to build with: grpc://HOST:PORT, or grpcs://HOST:PORT
    /// for TLS. Results the store
    /// lacks are taken from its action cache, every output checked against its digest; what
    /// neither has is built by its workers (`kata-repro worker`), or here with
    /// --remote-cache-only, and given to it.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The instance name on the remote server. Default: its default instance.
    #[arg(long, value_name = "NAME", default_value = "", requires = "remote")]
    pub remote_instance: String,
    /// Use the remote's action cache only: what it lacks is built here, not by its workers.
    #[arg(long, requires = "remote")]
    pub remote_cache_only: bool,
    #[command(flatten)]
    pub tls: RemoteTlsArgs,
}

/// The certificates of a TLS (grpcs://) remote.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteTlsArgs {
    /// For a grpcs:// remote: the CA certificates (PEM) to trust instead of the system's.
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub remote_ca: Option<PathBuf>,
    /// For a grpcs:// remote that asks for one: the client certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["remote", "remote_key"])]
    pub remote_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["remote", "remote_cert"])]
    pub remote_key: Option<PathBuf>,
}

impl RemoteArgs {
    pub fn spec(self) -> Option<RemoteSpec> {
        let (instance, cache_only, tls) = (self.remote_instance, self.remote_cache_only, self.tls);
        self.remote.map(|url| tls.spec(url, instance, cache_only))
    }
}

impl RemoteTlsArgs {
    /// The remote at `url`, instance `instance`, with these certificates.
    pub fn spec(self, url: String, instance: String, cache_only: bool) -> RemoteSpec {
        RemoteSpec {
            url,
            instance,
            cache_only,
            ca: self.remote_ca,
            cert: self.remote_cert,
            key: self.remote_key,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The output directory: `<arch>/<component>/…`, manifest.json, SHA256SUMS and logs/.
    /// Replaced as a whole when the build succeeds; untouched when it fails.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Run every step, even when the store holds its result.
    #[arg(long)]
    no_cache: bool,
}

impl JobArgs {
    /// The job these arguments ask for.
    pub fn spec(self, config: &Config) -> Spec {
        Spec {
            lockfile: self.lockfile,
            arch: self.arch,
            components: self.component,
            env: self.with.env(config),
        }
    }
}

impl BuildEnvArgs {
    pub fn env(self, config: &Config) -> Env {
        Env {
            store: self.store,
            offline: self.offline,
            allow_network_leak: self.allow_network_leak,
            allow_host_drift: self.allow_host_drift,
            recipes: self.recipes,
            rust_toolchain: self.rust_toolchain,
            go_proxy: self.go_proxy,
            sbom_templates: self.sbom_templates,
            work_dir: self.work_dir,
            sources: self.mirrors.sources(config),
            remote: self.remote.spec(),
        }
    }
}

pub fn run(args: BuildArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let progress = JobProgress::new();
    let events = |e: Event<'_>| progress.show(e);
    let job = Job::open(args.job.spec(config), &events)?;
    let opened = started.elapsed().as_secs_f64();
    let options = BuildOptions {
        no_cache: args.no_cache.into(),
        records: true,
        ..Default::default()
    };
    let built = job.build(&args.out, &options, &events)?;
    drop(progress);
    let Built {
        manifest,
        runs,
        prepare_seconds,
        record_files,
        phases,
    } = built;
    let phases: Vec<(&str, f64)> = std::iter::once(("open", opened)).chain(phases).collect();
    let skipped = &job.skipped;
    let manifest_sha256 = Sha256Digest::of(manifest.to_json().as_bytes());

    let json = serde_json::json!({
            "out": args.out,
            "manifest_sha256": manifest_sha256,
            "seconds": started.elapsed().as_secs_f64(),
            "inputs_seconds": prepare_seconds,
            "phases": phases.iter().map(|(phase, seconds)| serde_json::json!({"phase": phase, "seconds": seconds})).collect::<Vec<_>>(),
            "components": runs,
            "not_built": skipped,
            "notes": manifest.components.iter().map(|c| (c.name.clone(), c.notes.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "artifacts": manifest.artifacts,
            "records": record_files,
    });
    let text = |out: &mut String| {
        outln!(
            out,
            "{:<12} {:<7} {:>9} {:>7}  ACTION KEY",
            "COMPONENT",
            "RESULT",
            "TIME",
            "OUTPUTS"
        );
        for (run, c) in runs.iter().zip(
            runs.iter()
                .map(|r| manifest.components.iter().find(|c| c.name == r.component)),
        ) {
            let outputs = c.map_or(0, |c| c.outputs.len());
            let key = c
                .map(|c| c.action_key.to_hex()[..16].to_owned())
                .unwrap_or_default();
            outln!(
                out,
                "{:<12} {:<7} {:>8.1}s {:>7}  {key}",
                run.component,
                match (run.remote, run.cached) {
                    (true, true) => "remote",
                    (true, false) => "worker",
                    (false, true) => "cached",
                    (false, false) => "built",
                },
                run.seconds,
                outputs
            );
        }
        for s in skipped {
            outln!(out, "note: not built: {s}");
        }
        for c in &manifest.components {
            for t in c.toolchains.iter().filter_map(|t| t.note.as_ref()) {
                outln!(out, "note: {}: {t}", c.name);
            }
            for n in &c.notes {
                outln!(out, "note: {}: {n}", c.name);
            }
            for d in &c.host_drift {
                outln!(out, "warning: {}: {d}", c.name);
            }
        }
        if job.release.lock.host.is_none() {
            outln!(
                out,
                "note: the lockfile pins no host packages; their versions are recorded in the \
             manifest (pin them with `kata-repro lock --pin-host`)"
            );
        }
        if prepare_seconds > 0.05 {
            outln!(out, "inputs fetched and verified in {prepare_seconds:.1}s");
        }
        outln!(out, "SBOMs and provenance: {}", record_files.join(", "));
        let timed: Vec<String> = phases
            .iter()
            .map(|(phase, seconds)| format!("{phase} {seconds:.2}s"))
            .collect();
        outln!(out, "time by phase: {}", timed.join(", "));
        for a in &manifest.artifacts {
            let component = a.path.split('/').nth(1).unwrap_or_default();
            if job.is_release(component) {
                outln!(
                    out,
                    "release tarball: {} sha256 {} ({} bytes; in SHA256SUMS)",
                    args.out.join(&a.path).display(),
                    a.sha256,
                    a.size
                );
            }
        }
        outln!(
            out,
            "{} artifacts in {} (manifest.json sha256 {}); {:.1}s in all",
            manifest.artifacts.len(),
            args.out.display(),
            manifest_sha256,
            started.elapsed().as_secs_f64()
        );
    };
    Ok(format.emit(Output::ok(json, &text)))
}
