//! A release opened for building, and one build of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::records::{Records, rust_sysroot};
use super::select::{Request, Selection, select};
use super::{Event, Events, JobError, Release, RemoteSpec, Spec};
use crate::builder::{self, BuildError, Builder, ComponentRun, SharedCache};
use crate::digest::Sha256Digest;
use crate::inputs::{Needs, PrepareOptions, prepare};
use crate::manifest::Manifest;
use crate::recipe::{LoadedRecipe, RecipeSource, Toolchain};
use crate::sandbox::{Isolation, Varied};
use crate::sbom::Templates;

/// A release opened for building: the recipes chosen, in build order, and everything resolved
/// once for however many builds follow.
pub struct Job {
    pub spec: Spec,
    all: BTreeMap<String, LoadedRecipe>,
    order: Vec<String>,
    /// Recipes of this arch the lockfile cannot build, with why (without components named).
    pub skipped: Vec<String>,
    /// Every recipe of this arch left out of the build, with why, for the recipes that use it.
    left_out: Vec<String>,
    templates: Templates,
    pub release: Release,
    sysroot: Option<PathBuf>,
    /// The remote whose action cache this job shares, connected.
    shared: Option<Box<dyn SharedCache>>,
}

/// How one build of a job goes.
#[derive(Default)]
pub struct BuildOptions {
    /// Which components skip the action caches and are built afresh.
    pub no_cache: builder::NoCache,
    pub variations: Varied,
    /// Write SBOMs and provenance beside the manifest.
    pub records: bool,
    /// Names the build in events ("first build", …); empty for a lone build.
    pub label: String,
    /// The action key a component must come to, or nothing is built (a worker running a
    /// client's action).
    pub expect: Option<(String, Sha256Digest)>,
    /// Results given with the build, their outputs and logs in the store: see
    /// [`Builder::given`].
    pub given: Vec<builder::ActionResult>,
}

/// What one build of a job gave.
pub struct Built {
    pub manifest: Manifest,
    pub runs: Vec<ComponentRun>,
    pub prepare_seconds: f64,
    pub record_files: Vec<String>,
    /// Seconds per phase, in order: where a build, a no-op one above all, spends its time.
    pub phases: Vec<(&'static str, f64)>,
}

/// What every job that builds or describes a release opens first: the recipes (the spec's
/// directory's, or the built-in ones), the SBOM templates and the release.
pub(super) struct Opened {
    pub all: BTreeMap<String, LoadedRecipe>,
    pub templates: Templates,
    pub release: Release,
}

impl Opened {
    pub fn open(spec: &Spec, events: Events<'_>) -> Result<Self, JobError> {
        let env = &spec.env;
        let source = match &env.recipes {
            Some(d) => RecipeSource::Dir(d.clone()),
            None => RecipeSource::Builtin,
        };
        let all = source.load_all()?;
        let templates = Templates::load(env.sbom_templates.as_deref())?;
        let waiting = super::waiting(events);
        let release = Release::open(&spec.lockfile, env.store.as_deref(), &env.sources, waiting)?;
        Ok(Self {
            all,
            templates,
            release,
        })
    }

    /// The components `spec` covers, for a job that does `verb` to them ("built", …).
    pub fn select(&self, spec: &Spec, verb: &str, builds: bool) -> Result<Selection, JobError> {
        Ok(select(&Request {
            all: &self.all,
            components: &spec.components,
            arch: &spec.arch,
            lock: &self.release.lock,
            lockfile: &spec.lockfile,
            go_proxy: builds.then_some(spec.env.go_proxy.is_some()),
            with_needs: builds,
            verb,
        })?)
    }
}

impl Job {
    /// Opens `spec`'s release and chooses its components.
    pub fn open(spec: Spec, events: Events<'_>) -> Result<Self, JobError> {
        // A remote that cannot be used stops the job before anything is opened or written.
        let shared = match &spec.env.remote {
            Some(remote) => Some(connect(remote)?),
            None => None,
        };
        let opened = Opened::open(&spec, events)?;
        let Selection {
            order,
            left_out,
            skipped,
        } = opened.select(&spec, "built", true)?;
        let Opened {
            all,
            templates,
            release,
        } = opened;
        let env = &spec.env;
        if let Some(p) = &env.go_proxy {
            crate::verify::gomod::modcache::check_proxy(p, env.offline)?;
        }
        // The Rust toolchain's own cargo writes the vendor tree and reads the crate graph.
        let chosen: Vec<&LoadedRecipe> = order.iter().map(|c| &all[c]).collect();
        let sysroot = rust_sysroot(
            &chosen,
            &release.store,
            &release.lock,
            env.rust_toolchain.as_deref(),
        )?;
        if let Some(sysroot) = &sysroot {
            check_stdlib(sysroot, &spec.arch)?;
        }
        Ok(Self {
            spec,
            all,
            order,
            skipped,
            left_out,
            templates,
            release,
            sysroot,
            shared,
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
        self.all
            .get(component)
            .is_some_and(|r| r.recipe.toolchains.contains(&Toolchain::Rust))
    }

    /// The components, in build order.
    pub fn components(&self) -> &[String] {
        &self.order
    }

    /// Whether steps can be isolated here (or, with `allow_network_leak`, not).
    pub fn isolation(&self) -> Result<Isolation, JobError> {
        crate::sandbox::isolation(self.spec.env.allow_network_leak).map_err(JobError::Isolation)
    }

    fn builder(&self, options: &BuildOptions) -> Result<Builder<'_>, JobError> {
        let env = &self.spec.env;
        Ok(Builder {
            store: &self.release.store,
            lock: &self.release.lock,
            lockfile_name: self
                .spec
                .lockfile
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            lockfile_sha256: self.release.lock.sha256,
            arch: self.spec.arch.clone(),
            no_cache: options.no_cache.clone(),
            allow_network_leak: env.allow_network_leak,
            allow_host_drift: env.allow_host_drift,
            rust_toolchain: env.rust_toolchain.clone(),
            host_path: std::env::var("PATH").unwrap_or_default(),
            work_dir: env.work_dir.clone(),
            self_exe: std::env::current_exe().map_err(JobError::SelfExe)?,
            variations: options.variations.clone(),
            left_out: self.left_out.clone(),
            shared: self.shared.as_deref(),
            given: options.given.clone(),
        })
    }

    /// Builds into `out` (which must not hold anything but an earlier build), atomically: `out`
    /// is replaced as a whole when the build succeeds and untouched when it fails.
    pub fn build(
        &self,
        out: &Path,
        options: &BuildOptions,
        events: Events<'_>,
    ) -> Result<Built, JobError> {
        let env = &self.spec.env;
        let lock = &self.release.lock;
        let label = options.label.as_str();
        let chosen: Vec<&LoadedRecipe> = self.order.iter().map(|c| &self.all[c]).collect();
        builder::check_out_dir(out)?;
        events(Event::Phase {
            label,
            what: "planning",
        });
        let mut laps = Laps::new();
        let builder = self.builder(options)?;
        let stage = builder::stage_beside(out)?;
        // Action keys come from pins alone: components whose results the store holds need no
        // input.
        let (plans, times) = builder.plan_all(&chosen, stage.path())?;
        if let Some((component, expected)) = &options.expect {
            let found = plans.iter().find(|p| p.component() == component);
            let found = found.map_or_else(|| Sha256Digest::of(b""), |p| p.action_key());
            if found != *expected {
                return Err(super::action::ActionError::KeyMismatch {
                    component: component.clone(),
                    expected: *expected,
                    found,
                }
                .into());
            }
        }
        laps.split(&[
            ("preflight", times.preflight),
            ("keys", times.keys),
            ("store checks", times.store_checks),
        ]);
        if self.shared.is_some() {
            laps.split(&[("remote checks", times.remote_checks)]);
        }
        // The remote's workers fetch and verify what they build from: nothing is needed here.
        let executes_remotely = self.shared.as_ref().is_some_and(|s| s.executes());
        let to_build: Vec<&LoadedRecipe> = plans
            .iter()
            .filter(|p| !p.is_cached() && !executes_remotely)
            .map(|p| p.recipe())
            .collect();
        let on_crate = |f: &crate::verify::report::Finding| {
            events(Event::Crate {
                label,
                name: &f.name,
            })
        };
        let prepare_started = Instant::now();
        let prepared = if to_build.is_empty() {
            None
        } else {
            events(Event::Phase {
                label,
                what: "fetching and verifying inputs",
            });
            let cargo = self
                .sysroot
                .as_ref()
                .map(|s| s.join("bin/cargo").to_string_lossy().into_owned());
            let options = PrepareOptions {
                offline: env.offline,
                cargo,
                go_proxy: env.go_proxy.clone(),
                on_crate: Some(&on_crate),
                arch: self.spec.arch.clone(),
            };
            let getter = self.release.getter(env.offline);
            let prepared = prepare(lock, getter, &Needs::of(&to_build), &options);
            Some(prepared.map_err(BuildError::from)?)
        };
        let prepare_seconds = prepare_started.elapsed().as_secs_f64();
        laps.lap("inputs");
        let (manifest, runs) = builder.build(plans, prepared.as_ref(), &mut |event| {
            events(Event::Step { label, event })
        })?;
        laps.lap("steps and installs");
        manifest.write(stage.path())?;
        laps.lap("manifest");
        let record_files = if options.records {
            events(Event::Phase {
                label,
                what: "writing SBOMs and provenance",
            });
            let records = Records {
                recipes: &chosen,
                lock,
                lockfile_sha256: lock.sha256,
                arch: &self.spec.arch,
                getter: self.release.getter(env.offline),
                prepared: prepared.as_ref(),
                rust_sysroot: self.sysroot.as_deref(),
                offline: env.offline,
                templates: &self.templates,
            };
            records.write_for_build(&manifest, stage.path())?
        } else {
            Vec::new()
        };
        laps.lap("records");
        builder::install(stage, out)?;
        laps.lap("output");
        Ok(Built {
            manifest,
            runs,
            prepare_seconds,
            record_files,
            phases: laps.phases,
        })
    }
}

/// Connects to the remote a job shares results through: it must be reachable, know the
/// instance and offer a SHA-256 CAS and action cache, and execute actions unless the cache
/// only is asked for.
#[cfg(feature = "remote")]
fn connect(spec: &RemoteSpec) -> Result<Box<dyn SharedCache>, JobError> {
    use crate::remote::{Remote, RemoteCache};
    let remote = Remote::connect(spec.endpoint()?)?;
    if !spec.cache_only {
        remote.require_execution()?;
    }
    Ok(Box::new(RemoteCache::new(remote, !spec.cache_only)))
}

#[cfg(not(feature = "remote"))]
fn connect(remote: &RemoteSpec) -> Result<Box<dyn SharedCache>, JobError> {
    Err(JobError::NoRemote(remote.url.clone()))
}

/// Seconds per phase, timed one after the other.
struct Laps {
    last: Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Laps {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// The phase that ends now.
    fn lap(&mut self, name: &'static str) {
        self.phases.push((name, self.last.elapsed().as_secs_f64()));
        self.last = Instant::now();
    }

    /// The phase that ends now, as the parts it timed itself.
    fn split(&mut self, parts: &[(&'static str, f64)]) {
        self.phases.extend_from_slice(parts);
        self.last = Instant::now();
    }
}

/// A Rust toolchain that builds for another architecture must have its standard library.
fn check_stdlib(sysroot: &Path, arch: &str) -> Result<(), JobError> {
    if arch == crate::host::arch() {
        return Ok(());
    }
    let triple = crate::host::gnu_triple(arch);
    if sysroot.join("lib/rustlib").join(&triple).is_dir() {
        return Ok(());
    }
    Err(JobError::NoStdlib {
        sysroot: sysroot.to_owned(),
        triple,
        arch: arch.to_owned(),
    })
}
