use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;
use kata_repro::builder::prepare::{PrepareOptions, prepare};
use kata_repro::builder::{self, BuildError, Builder, Event};
use kata_repro::digest::Sha256Digest;
use kata_repro::recipe::{LoadedRecipe, RecipeSource};
use kata_repro::source::mirror::Config;

use super::progress::{Progress, clock};
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

pub(crate) fn failure(e: BuildError) -> Failure {
    let code = e.exit_code();
    Failure {
        code,
        error: e.into(),
    }
}

/// A release opened for building: the recipes chosen, in build order, and everything resolved
/// once for however many builds follow.
pub struct Job {
    pub args: JobArgs,
    all: std::collections::BTreeMap<String, LoadedRecipe>,
    order: Vec<String>,
    /// Recipes of this arch the lockfile cannot build, with why (without --component).
    pub skipped: Vec<String>,
    /// Every recipe of this arch left out of the build, with why, for the recipes that use it.
    left_out: Vec<String>,
    templates: kata_repro::sbom::Templates,
    pub release: super::Release,
    pub lockfile_sha256: Sha256Digest,
    sysroot: Option<PathBuf>,
}

/// How one build of a job goes.
pub struct BuildOptions {
    pub no_cache: bool,
    pub variations: kata_repro::sandbox::Varied,
    /// Write SBOMs and provenance beside the manifest.
    pub records: bool,
    /// Put before progress lines ("first build", …).
    pub label: String,
}

/// What one build of a job gave.
pub struct Built {
    pub manifest: kata_repro::manifest::Manifest,
    pub runs: Vec<builder::ComponentRun>,
    pub prepare_seconds: f64,
    pub record_files: Vec<String>,
}

impl Job {
    pub fn open(args: JobArgs, config: &Config) -> Result<Self, Failure> {
        let source = match &args.with.recipes {
            Some(d) => RecipeSource::Dir(d.clone()),
            None => RecipeSource::Builtin,
        };
        let all = source.load_all().map_err(Failure::input)?;
        let templates = kata_repro::sbom::Templates::load(args.with.sbom_templates.as_deref())
            .map_err(Failure::input)?;
        let release = super::Release::open(
            &args.lockfile,
            args.with.store.as_deref(),
            config,
            &args.with.mirrors,
        )?;
        let lock = &release.lock;
        let selection = builder::select::select(&builder::select::Request {
            all: &all,
            components: &args.component,
            arch: &args.arch,
            lock,
            lockfile: &args.lockfile,
            go_proxy: Some(args.with.go_proxy.is_some()),
            with_needs: true,
            verb: "built",
        })
        .map_err(Failure::input)?;
        let builder::select::Selection {
            order,
            left_out,
            skipped,
        } = selection;
        if let Some(p) = &args.with.go_proxy {
            kata_repro::verify::gomod::modcache::check_proxy(p, args.with.offline)
                .map_err(|e| Failure::input(anyhow!("--go-proxy {e}")))?;
        }
        let lockfile_sha256 = release.lock.sha256;
        // The Rust toolchain's own cargo writes the vendor tree and reads the crate graph.
        let chosen: Vec<&LoadedRecipe> = order.iter().map(|c| &all[c]).collect();
        let sysroot = super::sbom::rust_sysroot(
            &chosen,
            &release.store,
            &release.lock,
            args.with.rust_toolchain.as_deref(),
        )?;
        if let Some(sysroot) = &sysroot
            && args.arch != kata_repro::host::arch()
        {
            let triple = kata_repro::host::gnu_triple(&args.arch);
            if !sysroot.join("lib/rustlib").join(&triple).is_dir() {
                return Err(Failure::input(anyhow!(
                    "the Rust toolchain {} has no standard library for {triple}; install it \
                     (rustup target add {triple}) or build on a {} host",
                    sysroot.display(),
                    args.arch
                )));
            }
        }
        Ok(Self {
            args,
            all,
            order,
            skipped,
            left_out,
            templates,
            release,
            lockfile_sha256,
            sysroot,
        })
    }

    /// The sha256 of the recipe that builds `component`, if any.
    pub fn recipe_digest(&self, component: &str) -> Option<Sha256Digest> {
        self.all.get(component).map(|r| r.digest)
    }

    /// Whether `component`'s recipe packs Kata's release tarballs.
    pub fn is_release(&self, component: &str) -> bool {
        self.all
            .get(component)
            .is_some_and(|r| r.recipe.release.is_some())
    }

    /// Whether `component`'s recipe builds with the Rust toolchain.
    pub fn uses_rust(&self, component: &str) -> bool {
        self.all.get(component).is_some_and(|r| {
            r.recipe
                .toolchains
                .contains(&kata_repro::recipe::Toolchain::Rust)
        })
    }

    /// The components, in build order.
    pub fn components(&self) -> &[String] {
        &self.order
    }

    /// Whether steps can be isolated here (or, with --allow-network-leak, not).
    pub fn isolation(&self) -> Result<kata_repro::sandbox::Isolation, Failure> {
        kata_repro::sandbox::isolation(self.args.with.allow_network_leak)
            .map_err(|e| Failure::input(anyhow!(e)))
    }

    /// Builds into `out` (which must not hold anything but an earlier build), atomically.
    pub fn build(&self, out: &Path, options: &BuildOptions) -> Result<Built, Failure> {
        let args = &self.args;
        let lock = &self.release.lock;
        let chosen: Vec<&LoadedRecipe> = self.order.iter().map(|c| &self.all[c]).collect();
        builder::check_out_dir(out).map_err(|e| Failure::input(anyhow!(e)))?;
        let progress = Progress::new();
        let label = if options.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", options.label)
        };
        progress.set(format!("{label}planning"));
        let cargo = self
            .sysroot
            .as_ref()
            .map(|s| s.join("bin/cargo").to_string_lossy().into_owned());
        let builder = Builder {
            store: &self.release.store,
            lock,
            lockfile_name: args
                .lockfile
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            lockfile_sha256: self.lockfile_sha256,
            arch: args.arch.clone(),
            no_cache: options.no_cache,
            allow_network_leak: args.with.allow_network_leak,
            allow_host_drift: args.with.allow_host_drift,
            rust_toolchain: args.with.rust_toolchain.clone(),
            host_path: std::env::var("PATH").unwrap_or_default(),
            work_dir: args.with.work_dir.clone(),
            self_exe: std::env::current_exe().map_err(|e| {
                Failure::input(anyhow!("cannot find the kata-repro executable: {e}"))
            })?,
            variations: options.variations.clone(),
            left_out: self.left_out.clone(),
        };
        let stage = builder::stage_beside(out).map_err(failure)?;
        // Action keys come from pins alone: components whose results the store holds need no
        // input.
        let plans = builder.plan_all(&chosen, stage.path()).map_err(failure)?;
        let to_build: Vec<&LoadedRecipe> = plans
            .iter()
            .filter(|p| !p.is_cached())
            .map(|p| p.recipe())
            .collect();
        let on_crate = |f: &kata_repro::verify::report::Finding| {
            progress
                .bar()
                .set_message(format!("{label}verifying crates: {}", f.name));
        };
        let prepare_started = Instant::now();
        let prepared = if to_build.is_empty() {
            None
        } else {
            progress.set(format!("{label}fetching and verifying inputs"));
            Some(
                prepare(
                    lock,
                    self.release.getter(args.with.offline),
                    &to_build,
                    &PrepareOptions {
                        offline: args.with.offline,
                        cargo,
                        go_proxy: args.with.go_proxy.clone(),
                        on_crate: Some(&on_crate),
                        arch: args.arch.clone(),
                    },
                )
                .map_err(failure)?,
            )
        };
        let prepare_seconds = prepare_started.elapsed().as_secs_f64();
        let mut total_steps = 0;
        let result = builder.build(plans, prepared.as_ref(), &mut |event| match event {
            Event::ComponentStart { component, steps } => {
                total_steps = steps;
                progress.set(format!("{label}{component}: starting"));
            }
            Event::StepStart {
                component,
                step,
                index,
                estimate,
            } => {
                let last = estimate
                    .map(|e| format!(" (took {} last time)", clock(e)))
                    .unwrap_or_default();
                progress.set(format!(
                    "{label}{component}: step {}/{total_steps} {step}{last}",
                    index + 1
                ));
            }
            Event::StepEnd {
                component,
                step,
                duration,
            } => progress.line(format!(
                "  {label}built {component}: {step} ({:.1}s)",
                duration.as_secs_f64()
            )),
            Event::ComponentCached { component } => progress.line(format!(
                "  {label}cached {component}: every step's result is in the store"
            )),
        });
        let (manifest, runs) = result.map_err(failure)?;
        manifest
            .write(stage.path())
            .map_err(|e| Failure::input(anyhow!(e)))?;
        let record_files = if options.records {
            progress.set(format!("{label}writing SBOMs and provenance"));
            let records = super::sbom::Records {
                recipes: &chosen,
                lock,
                lockfile_sha256: self.lockfile_sha256,
                arch: &args.arch,
                getter: self.release.getter(args.with.offline),
                prepared: prepared.as_ref(),
                rust_sysroot: self.sysroot.as_deref(),
                offline: args.with.offline,
                templates: &self.templates,
            };
            records.write_for_build(&manifest, stage.path())?
        } else {
            Vec::new()
        };
        builder::install(stage, out).map_err(failure)?;
        Ok(Built {
            manifest,
            runs,
            prepare_seconds,
            record_files,
        })
    }
}

pub fn run(args: BuildArgs, config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let job = Job::open(args.job, config)?;
    let built = job.build(
        &args.out,
        &BuildOptions {
            no_cache: args.no_cache,
            variations: Default::default(),
            records: true,
            label: String::new(),
        },
    )?;
    let Built {
        manifest,
        runs,
        prepare_seconds,
        record_files,
    } = built;
    let skipped = &job.skipped;
    let manifest_sha256 = Sha256Digest::of(manifest.to_json().as_bytes());

    if json {
        super::print_json(&serde_json::json!({
            "ok": true,
            "exit_code": 0,
            "out": args.out,
            "manifest_sha256": manifest_sha256,
            "seconds": started.elapsed().as_secs_f64(),
            "inputs_seconds": prepare_seconds,
            "components": runs,
            "not_built": skipped,
            "notes": manifest.components.iter().map(|c| (c.name.clone(), c.notes.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "artifacts": manifest.artifacts,
            "records": record_files,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<7} {:>9} {:>7}  ACTION KEY",
        "COMPONENT", "RESULT", "TIME", "OUTPUTS"
    );
    for (run, c) in runs.iter().zip(
        runs.iter()
            .map(|r| manifest.components.iter().find(|c| c.name == r.component)),
    ) {
        let outputs = c.map_or(0, |c| c.outputs.len());
        let key = c
            .map(|c| c.action_key.to_hex()[..16].to_owned())
            .unwrap_or_default();
        println!(
            "{:<12} {:<7} {:>8.1}s {:>7}  {key}",
            run.component,
            if run.cached { "cached" } else { "built" },
            run.seconds,
            outputs
        );
    }
    for s in skipped {
        println!("note: not built: {s}");
    }
    for c in &manifest.components {
        for t in c.toolchains.iter().filter_map(|t| t.note.as_ref()) {
            println!("note: {}: {t}", c.name);
        }
        for n in &c.notes {
            println!("note: {}: {n}", c.name);
        }
        for d in &c.host_drift {
            println!("warning: {}: {d}", c.name);
        }
    }
    if job.release.lock.host.is_none() {
        println!(
            "note: the lockfile pins no host packages; their versions are recorded in the \
             manifest (pin them with `kata-repro lock --pin-host`)"
        );
    }
    if prepare_seconds > 0.05 {
        println!("inputs fetched and verified in {prepare_seconds:.1}s");
    }
    println!("SBOMs and provenance: {}", record_files.join(", "));
    for a in &manifest.artifacts {
        let component = a.path.split('/').nth(1).unwrap_or_default();
        if job.is_release(component) {
            println!(
                "release tarball: {} sha256 {} ({} bytes; in SHA256SUMS)",
                args.out.join(&a.path).display(),
                a.sha256,
                a.size
            );
        }
    }
    println!(
        "{} artifacts in {} (manifest.json sha256 {}); {:.1}s in all",
        manifest.artifacts.len(),
        args.out.display(),
        manifest_sha256,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
