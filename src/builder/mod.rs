//! `kata-repro build`: components built from recipes, hermetically, into an output directory
//! with a manifest.
//!
//! For each component the builder resolves the toolchains and host tools its recipe names,
//! computes an action key per step (see [`action`]), and either reuses a stored result whose
//! outputs still hash as recorded, or runs the steps in the [`crate::sandbox`] over a fresh copy
//! of the verified source. Outputs are normalised (mode, mtime), stored by sha256 and installed
//! under `<out>/<arch>/<component>/`. Everything is staged beside the output directory and moved
//! into place only when every component succeeded, so a failure leaves no partial output and no
//! manifest.

pub mod action;
pub mod builtin;
mod env;
mod error;
pub mod initrd;
pub mod kernel;
mod keys;
pub mod shared;
pub mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use self::error::{
    BuildError, DamagedOutput, MissingInput, OutDirError, RecipeProblem, StepFailure,
};
pub use self::shared::{ActionResult, Published, SharedAction, SharedCache, SharedError, StepLogs};
use self::tools::{GoInstall, RustInstall, ToolError};
use crate::digest::Sha256Digest;
use crate::files::{io_err, remove_tree};
use crate::host::Dpkg;
use crate::inputs;
pub use crate::inputs::{GoMode, Prepared};
use crate::lock::Lockfile;
use crate::manifest::{
    Artifact, ComponentRecord, Environment, Generator, LOGS_DIR, LockfileRef, Manifest, RecipeRef,
    SourceRef, StepRecord,
};
use crate::recipe::{self, Input, LoadedRecipe, OutputDef, Toolchain};
use crate::sandbox::{self, Bind, Isolation, Sandbox, SandboxError};
use crate::source::store::{EntryLock, Store};

/// Bumped whenever the step environment changes in a way action keys must reflect.
const SANDBOX_VERSION: &str = "1";

/// Environment variables the builder sets; recipes may not.
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "SOURCE_DATE_EPOCH",
    "TZ",
    "LC_ALL",
    "LANG",
];

/// What the builder reports as it goes, for a front end to render.
pub enum Event<'a> {
    ComponentStart {
        component: &'a str,
        steps: usize,
    },
    StepStart {
        component: &'a str,
        step: &'a str,
        index: usize,
        /// How long the same step of the same action took when last built here.
        estimate: Option<Duration>,
    },
    StepEnd {
        component: &'a str,
        step: &'a str,
        duration: Duration,
    },
    /// A component executed by the remote's workers, at a new stage.
    Remote {
        component: &'a str,
        stage: &'a str,
    },
    ComponentCached {
        component: &'a str,
        /// Taken from the remote cache rather than the store.
        remote: bool,
    },
}

pub struct Builder<'a> {
    pub store: &'a Store,
    pub lock: &'a Lockfile,
    pub lockfile_name: String,
    pub lockfile_sha256: Sha256Digest,
    pub arch: String,
    /// Which components skip the action caches, the store's and the shared one.
    pub no_cache: NoCache,
    pub allow_network_leak: bool,
    /// Build even when host packages differ from the lockfile's `[host]` pins.
    pub allow_host_drift: bool,
    /// A Rust sysroot to use instead of the one found.
    pub rust_toolchain: Option<PathBuf>,
    /// Where host tools are looked up (the caller's PATH).
    pub host_path: String,
    /// Where scratch directories are made (default: the store's staging area).
    pub work_dir: Option<PathBuf>,
    /// The kata-repro executable builtin steps run (`kata-repro builtin …`).
    pub self_exe: PathBuf,
    /// What this build varies from the fixed step environment (`kata-repro check`); nothing
    /// for a release build.
    pub variations: sandbox::Varied,
    /// Components left out of this build, with why (`component: reason`), for what uses them.
    pub left_out: Vec<String>,
    /// A cache shared with other machines: asked for what the store lacks, given what it
    /// lacks.
    pub shared: Option<&'a dyn SharedCache>,
    /// Results given with the build, their outputs and logs in the store (a fresh action's
    /// needs, as the client's build has them): checked as a shared cache's are, they stand
    /// for their components over anything the caches hold.
    pub given: Vec<ActionResult>,
}

/// Which components of a build skip the action caches and are built afresh (`--no-cache`,
/// `check`, `audit`): none, every one, or one (a worker's fresh action, whose needs come
/// with it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NoCache {
    #[default]
    None,
    All,
    Only(String),
}

impl NoCache {
    /// Whether `component` is built afresh.
    pub fn skips(&self, component: &str) -> bool {
        match self {
            NoCache::None => false,
            NoCache::All => true,
            NoCache::Only(c) => c == component,
        }
    }
}

impl From<bool> for NoCache {
    fn from(all: bool) -> Self {
        if all { NoCache::All } else { NoCache::None }
    }
}

/// Why a Go recipe is left out where no `--go-proxy` is given: the release commits no Go
/// vendor/ tree (Kata 3.31.0 and later), so its modules can only come from a proxy.
pub fn needs_go_proxy(lock: &Lockfile, recipe: &recipe::Recipe) -> Option<String> {
    let proxy = recipe.inputs.contains(&Input::GoModules)
        && matches!(
            inputs::go_mode(lock, &recipe.workdir),
            inputs::GoMode::Proxy { .. }
        );
    proxy.then(|| {
        format!(
            "Kata {} commits no Go vendor/ tree, so its Go modules need a module proxy: give \
             --go-proxy URL (https:// or file://) to build it",
            lock.release
        )
    })
}

/// Why the lockfile cannot build `recipe` for `arch`, if it cannot: its kernel or rootfs
/// packages are not pinned.
pub fn unbuildable(lock: &Lockfile, recipe: &recipe::Recipe, arch: &str) -> Option<String> {
    if recipe.source == recipe::SourceTree::Kernel && lock.kernel.sha256.is_none() {
        return Some(format!(
            "the lockfile does not pin the kernel tarball (linux {})",
            lock.kernel.version
        ));
    }
    if recipe.inputs.contains(&Input::RootfsPackages)
        && !lock.rootfs.packages.iter().any(|p| p.target == arch)
    {
        return Some(format!("the lockfile pins no rootfs packages for {arch}"));
    }
    None
}

/// How one component went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentRun {
    pub component: String,
    pub cached: bool,
    pub seconds: f64,
    pub steps: Vec<StepRun>,
    /// Where the time outside the steps went, in seconds: `toolchains` (unpacking or checking
    /// them), `setup` (copying the source, laying out the scratch directory), `outputs`
    /// (collecting, hashing, storing and installing them), `cleanup` (removing the scratch
    /// directory).
    #[serde(default)]
    pub phases: BTreeMap<String, f64>,
    /// Whether the result came from the remote: from its action cache (`cached` is then true),
    /// or built by one of its workers (`cached` is then false).
    #[serde(default)]
    pub remote: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRun {
    pub name: String,
    pub seconds: f64,
}

/// A step's name, argv, environment and action key.
type PlannedStep = (String, Vec<String>, BTreeMap<String, String>, Sha256Digest);

/// A component ready to be installed from the store or built.
pub struct Plan {
    loaded: LoadedRecipe,
    resolved: Resolved,
    scratch: tempfile::TempDir,
    sandbox: Sandbox,
    vars: BTreeMap<String, String>,
    workdir: String,
    steps: Vec<PlannedStep>,
    record: ComponentRecord,
    cached: Option<ActionResult>,
    /// Whether `cached` came from the shared cache.
    from_shared: bool,
    /// The action keys of the components this one needs.
    needs: BTreeMap<String, Sha256Digest>,
    /// The recipes of the components this one needs, directly or not.
    needed_recipes: Vec<LoadedRecipe>,
    /// Each step's seconds when the same action was last built here.
    previous: BTreeMap<String, f64>,
    stage: PathBuf,
}

impl Plan {
    pub fn component(&self) -> &str {
        &self.loaded.recipe.component
    }

    /// The component's action key.
    pub fn action_key(&self) -> Sha256Digest {
        self.record.action_key
    }

    /// Whether the store holds the result, so that no input is needed.
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    pub fn recipe(&self) -> &LoadedRecipe {
        &self.loaded
    }
}

/// The sha256 the lockfile pins for a file of the source tree.
fn pinned_file(lock: &Lockfile, path: &str) -> Option<Sha256Digest> {
    lock.source
        .files
        .iter()
        .find(|f| f.path == path)
        .map(|f| f.sha256)
}

/// What a component was built with, before any step runs.
struct Resolved {
    go: Option<GoInstall>,
    rust: Option<RustInstall>,
    host_tools: Vec<crate::host::HostTool>,
    host_packages: Vec<crate::host::HostPackage>,
}

/// Where planning a build spent its time.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PlanTimes {
    /// Host tools and packages, and the sandbox.
    pub preflight: f64,
    /// Every component's action key.
    pub keys: f64,
    /// Looking up each key's result in the store.
    pub store_checks: f64,
    /// Looking up the results the store lacks in the remote cache, downloading them, and
    /// giving it those the store holds and it lacks.
    pub remote_checks: f64,
}

/// Whether outputs are hashed again as they are installed: when a step of `reader` is about to
/// read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rehash<'a> {
    ForStep { reader: &'a str },
    No,
}

/// What a component's steps see read-only at fixed paths, and the trees unpacked afresh for
/// them, each held until the steps are done.
struct InputBinds<'p> {
    binds: Vec<Bind>,
    vendor: Option<&'p crate::verify::cargo::offline::OfflineVendor>,
    /// The source tree the component builds from.
    tree: PathBuf,
    in_use: Vec<EntryLock>,
}

impl Builder<'_> {
    /// Builds `recipes` (in order) from `prepared` into a staging directory, and returns it
    /// with the manifest and the runs. Nothing is written to the final output directory here:
    /// see [`install`].
    /// Plans every component (in order) into `stage`: see [`Plan`].
    /// `recipes` must come in build order, each after what it needs (see
    /// [`recipe::with_needs`]).
    pub fn plan_all(
        &self,
        recipes: &[&LoadedRecipe],
        stage: &Path,
    ) -> Result<(Vec<Plan>, PlanTimes), BuildError> {
        let started = Instant::now();
        let dpkg = Dpkg::load();
        // Everything the host lacks, named at once before anything is planned or fetched.
        let chosen: Vec<&recipe::Recipe> = recipes.iter().map(|l| &l.recipe).collect();
        crate::setup::preflight(&chosen, &self.arch, &self.host_path, &dpkg)?;
        let isolation = sandbox::isolation(self.allow_network_leak)?;
        let preflight = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut keys: BTreeMap<String, Sha256Digest> = BTreeMap::new();
        let mut plans: Vec<Plan> = Vec::new();
        for loaded in recipes {
            let mut plan = self.plan(loaded, stage, &dpkg, isolation, &keys)?;
            keys.insert(plan.component().to_owned(), plan.record.action_key);
            plan.needed_recipes = needed_recipes(&plans, &plan.needs);
            plans.push(plan);
        }
        let keys = started.elapsed().as_secs_f64();
        let started = Instant::now();
        // What a build makes afresh is taken neither from the store nor from what it is given.
        for plan in plans
            .iter_mut()
            .filter(|p| !self.no_cache.skips(p.component()))
        {
            plan.cached = self.cached(&plan.record.action_key);
            self.take_given(plan)?;
        }
        let store_checks = started.elapsed().as_secs_f64();
        let started = Instant::now();
        if let Some(shared) = self.shared {
            for plan in &mut plans {
                self.share(shared, plan)?;
            }
        }
        let times = PlanTimes {
            preflight,
            keys,
            store_checks,
            remote_checks: started.elapsed().as_secs_f64(),
        };
        Ok((plans, times))
    }

    /// Installs or builds every planned component, and returns the manifest and the runs.
    /// `prepared` (the verified inputs) is needed only when some component is not in the store.
    /// Nothing is written to the final output directory here: see [`install`].
    pub fn build(
        &self,
        plans: Vec<Plan>,
        prepared: Option<&Prepared>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(Manifest, Vec<ComponentRun>), BuildError> {
        let mut components: Vec<ComponentRecord> = Vec::new();
        let mut runs = Vec::new();
        let isolation = plans
            .first()
            .map_or(Isolation::Namespaces, |p| p.sandbox.isolation());
        for plan in plans {
            let (record, run) = self.execute(plan, prepared, &components, events)?;
            components.push(record);
            runs.push(run);
        }
        let mut artifacts: Vec<Artifact> = components
            .iter()
            .flat_map(|c| {
                c.outputs.iter().map(|o| Artifact {
                    path: format!("{}/{}/{}", self.arch, c.name, o.path),
                    ..o.clone()
                })
            })
            .collect();
        artifacts.sort();
        components.sort_by(|a, b| a.name.cmp(&b.name));
        let lock = self.lock;
        let manifest = Manifest {
            schema: crate::manifest::SCHEMA,
            generator: Generator {
                name: "kata-repro".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            release: lock.release.clone(),
            arch: self.arch.clone(),
            lockfile: LockfileRef {
                name: self.lockfile_name.clone(),
                sha256: self.lockfile_sha256,
            },
            source: SourceRef {
                url: lock.source.url.clone(),
                tag: lock.source.tag.clone(),
                commit: lock.source.commit.to_string(),
                tree: lock.source.tree.to_string(),
                commit_time: lock.source.commit_time,
            },
            source_date_epoch: lock.source_date_epoch(),
            environment: Environment {
                isolation,
                network: match isolation {
                    Isolation::Namespaces => "none".into(),
                    Isolation::None => "host (--allow-network-leak)".into(),
                },
                root: match isolation {
                    Isolation::Namespaces => self
                        .variations
                        .root
                        .as_deref()
                        .unwrap_or(sandbox::ROOT)
                        .into(),
                    Isolation::None => "the real scratch directory (no mount namespace)".into(),
                },
                hostname: match isolation {
                    Isolation::Namespaces => match &self.variations.host {
                        Some((h, d)) => format!("{h} (domain {d})"),
                        None => sandbox::HOSTNAME.into(),
                    },
                    Isolation::None => "the host's".into(),
                },
                umask: format!("{:04o}", self.variations.umask.unwrap_or(0o022)),
                tz: self
                    .variations
                    .env
                    .get("TZ")
                    .cloned()
                    .unwrap_or_else(|| "UTC".into()),
                locale: self
                    .variations
                    .env
                    .get("LC_ALL")
                    .cloned()
                    .unwrap_or_else(|| "C.UTF-8".into()),
                variations: self
                    .variations
                    .names()
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
            },
            components,
            artifacts,
        };
        Ok((manifest, runs))
    }

    fn resolve(&self, loaded: &LoadedRecipe, dpkg: &Dpkg) -> Result<Resolved, BuildError> {
        let r = &loaded.recipe;
        let go = if r.toolchains.contains(&Toolchain::Go) {
            Some(tools::go_pin(self.store, self.lock, &crate::host::arch())?)
        } else {
            None
        };
        let rust = if r.toolchains.contains(&Toolchain::Rust) {
            Some(tools::find_rust(
                self.store,
                self.lock,
                self.rust_toolchain.as_deref(),
            )?)
        } else {
            None
        };
        Ok(Resolved {
            go,
            rust,
            host_tools: crate::host::resolve_host_tools(
                &r.host_tools_for(&self.arch),
                &self.host_path,
                dpkg,
                &|p| {
                    tools::memo_file_digest(self.store, p)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                },
            )
            .map_err(ToolError::from)?,
            host_packages: crate::host::resolve_host_packages(
                &r.host_packages_for(&self.arch),
                dpkg,
            )
            .map_err(ToolError::from)?,
        })
    }

    /// Installs a component whose result the action cache holds: its outputs and logs, from the
    /// store.
    fn install_cached(
        &self,
        result: ActionResult,
        record_base: ComponentRecord,
        component_stage: &Path,
        log_stage: &Path,
        started: Instant,
    ) -> Result<(ComponentRecord, ComponentRun), BuildError> {
        let name = record_base.name.clone();
        self.install_outputs(&result.record.outputs, component_stage, Rehash::No)?;
        std::fs::create_dir_all(log_stage).map_err(io_err(log_stage))?;
        for (step, digest) in &result.logs {
            let dest = log_stage.join(format!("{step}.log"));
            std::fs::copy(self.store.object_path(digest), &dest).map_err(io_err(&dest))?;
        }
        let mut notes = record_base.notes.clone();
        notes.extend(
            result
                .record
                .notes
                .iter()
                .filter(|n| !notes.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let record = ComponentRecord {
            outputs: result.record.outputs.clone(),
            notes,
            ..record_base
        };
        Ok((
            record,
            ComponentRun {
                component: name,
                cached: true,
                seconds: started.elapsed().as_secs_f64(),
                steps: result.steps,
                phases: BTreeMap::new(),
                remote: false,
            },
        ))
    }

    /// What a component's steps see read-only at fixed paths (toolchains, the vendor tree, the
    /// Go proxy, the Kata tree beside a kernel), the vendor tree it builds with, and the source
    /// tree it builds from.
    fn input_binds<'p>(
        &self,
        r: &recipe::Recipe,
        resolved: &Resolved,
        prepared: &'p Prepared,
    ) -> Result<InputBinds<'p>, BuildError> {
        let name = r.component.clone();
        let mut binds = Vec::new();
        // Trees unpacked afresh for this build, each held until its steps are done.
        let mut in_use = Vec::new();
        if resolved.go.is_some() {
            let (go, held) = tools::ensure_go(self.store, self.lock, &crate::host::arch())?;
            in_use.push(held);
            binds.push(Bind {
                host: go.goroot,
                inside: "toolchains/go".into(),
            });
        }
        if let Some(rust) = &resolved.rust {
            binds.push(Bind {
                host: rust.sysroot.clone(),
                inside: "toolchains/rust".into(),
            });
        }
        let vendor = if r.inputs.contains(&Input::CargoVendor) {
            let v = prepared
                .cargo_vendor
                .as_ref()
                .ok_or_else(|| BuildError::Input {
                    component: name.clone(),
                    missing: Box::new(MissingInput::CargoVendor),
                })?;
            binds.push(Bind {
                host: v.vendor_dir.clone(),
                inside: "inputs/cargo-vendor".into(),
            });
            Some(v)
        } else {
            None
        };
        if r.inputs.contains(&Input::GoModules) {
            let m = prepared
                .go_modules
                .get(&name)
                .ok_or_else(|| BuildError::Input {
                    component: name.clone(),
                    missing: Box::new(MissingInput::GoModules),
                })?;
            if let inputs::GoModules::Proxy { dir, .. } = m {
                binds.push(Bind {
                    host: dir.clone(),
                    inside: "inputs/goproxy".into(),
                });
            }
        }
        let tree = match r.source {
            recipe::SourceTree::Kata => prepared.checkout.clone(),
            recipe::SourceTree::Kernel => {
                binds.push(Bind {
                    host: prepared.checkout.clone(),
                    inside: "inputs/kata".into(),
                });
                let (tree, held) =
                    inputs::kernel_tree(&self.lock.kernel, self.store).map_err(|e| {
                        BuildError::Input {
                            component: name.clone(),
                            missing: Box::new(e.into()),
                        }
                    })?;
                in_use.push(held);
                tree
            }
        };
        if r.steps.iter().any(|s| s.builtin.is_some()) {
            binds.push(Bind {
                host: self.self_exe.clone(),
                inside: "bin/kata-repro".into(),
            });
        }
        Ok(InputBinds {
            binds,
            vendor,
            tree,
            in_use,
        })
    }

    /// Runs the planned steps in order in the sandbox, each with its log kept beside the outputs
    /// and in the store; a failing step stops the build with its log's tail.
    #[allow(clippy::too_many_arguments)]
    fn run_steps(
        &self,
        loaded: &LoadedRecipe,
        planned: &[keys::PlannedStep],
        sandbox: &Sandbox,
        workdir: &str,
        log_stage: &Path,
        previous: &BTreeMap<String, f64>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(Vec<StepRun>, StepLogs), BuildError> {
        let name = loaded.recipe.component.clone();
        let recipe_err = |problem: RecipeProblem| BuildError::Recipe {
            component: name.clone(),
            problem: Box::new(problem),
        };
        let mut step_runs = Vec::new();
        let mut logs = Vec::new();
        for (index, (step_name, argv, env, _)) in planned.iter().enumerate() {
            events(Event::StepStart {
                component: &name,
                step: step_name,
                index,
                estimate: previous.get(step_name).map(|s| Duration::from_secs_f64(*s)),
            });
            let log = sandbox.host("logs").join(format!("{step_name}.log"));
            let run = sandbox.run(&sandbox::Step {
                argv: argv.clone(),
                env: env.clone(),
                cwd: workdir.to_owned(),
                log: log.clone(),
            });
            let run = match run {
                Ok(run) => run,
                Err(SandboxError::Spawn { program, source })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Err(recipe_err(RecipeProblem::NotOnPath {
                        recipe: loaded.path.clone(),
                        step: step_name.clone(),
                        program,
                        path: env["PATH"].clone(),
                    }));
                }
                Err(e) => return Err(e.into()),
            };
            // Keep the log beside the outputs whatever happens.
            std::fs::create_dir_all(log_stage).map_err(io_err(log_stage))?;
            let kept = log_stage.join(format!("{step_name}.log"));
            std::fs::copy(&log, &kept).map_err(io_err(&kept))?;
            if !run.status.success() {
                // The output directory is not written on failure: keep the log in the store.
                let failed = self.store.failed_logs(&self.arch, &name);
                std::fs::create_dir_all(&failed).map_err(io_err(&failed))?;
                let kept = failed.join(format!("{step_name}.log"));
                std::fs::copy(&log, &kept).map_err(io_err(&kept))?;
                let tail = sandbox::log_tail(&log, 20);
                let hint = if sandbox.isolation() == Isolation::Namespaces
                    && looks_like_network(&tail)
                {
                    "\nsteps have no network (they run in a new network namespace): every input \
                 must come from the lockfile, through the store"
                        .to_owned()
                } else {
                    String::new()
                };
                return Err(BuildError::StepFailed(Box::new(StepFailure {
                    component: name.clone(),
                    step: step_name.clone(),
                    status: run.status.to_string(),
                    secs: run.duration.as_secs_f64(),
                    log: kept,
                    tail,
                    hint,
                })));
            }
            events(Event::StepEnd {
                component: &name,
                step: step_name,
                duration: run.duration,
            });
            step_runs.push(StepRun {
                name: step_name.clone(),
                seconds: run.duration.as_secs_f64(),
            });
            let (digest, _) = self
                .store
                .insert_file(&log)
                .map_err(|e| io_err(&log)(std::io::Error::other(e.to_string())))?;
            logs.push((step_name.clone(), digest));
        }

        Ok((step_runs, logs))
    }

    /// Puts a fresh copy of the verified source at `src` in the scratch directory: an overlay
    /// over the store's tree, a copy, or (for the `fileordering` variation) a copy shown through
    /// disorderfs. Returns where outputs are collected from, first to last, and the disorderfs
    /// mount to keep until the steps are done.
    fn lay_out_source(
        &self,
        sandbox: &mut Sandbox,
        tree: &Path,
    ) -> Result<(Vec<PathBuf>, Option<sandbox::variation::DisorderMount>), BuildError> {
        let src = sandbox.host("src");
        let mut disordered = None;
        let src_roots = if let Some(bin) = &self.variations.disorderfs {
            // The `fileordering` variation: a writable copy, shown at src through disorderfs
            // with its directory entries shuffled (an overlay cannot have FUSE below it and
            // still let cargo rename directories into place).
            let lower = sandbox.host("src.lower");
            copy_tree(tree, &lower)?;
            std::fs::create_dir_all(&src).map_err(io_err(&src))?;
            disordered = Some(
                sandbox::variation::DisorderMount::new(bin, &lower, &src).map_err(io_err(&src))?,
            );
            vec![src.clone()]
        } else if sandbox.add_overlay(tree, "src")? {
            let upper = sandbox
                .overlay()
                .expect("just added")
                .upper(&sandbox.host(""));
            vec![upper, tree.to_owned()]
        } else {
            copy_tree(tree, &src)?;
            vec![src.clone()]
        };
        Ok((src_roots, disordered))
    }

    /// Everything else a component's steps find in the scratch directory: what it needs from
    /// components built before it, the rootfs packages, the release layout, the empty
    /// directories, links to the host tools, the VCS shim and the cargo config.
    #[allow(clippy::too_many_arguments)]
    fn lay_out_inputs(
        &self,
        loaded: &LoadedRecipe,
        sandbox: &Sandbox,
        prepared: &Prepared,
        built_before: &[ComponentRecord],
        vars: &BTreeMap<String, String>,
        tree: &Path,
        resolved: &Resolved,
        vendor: Option<&crate::verify::cargo::offline::OfflineVendor>,
    ) -> Result<(), BuildError> {
        let r = &loaded.recipe;
        let recipe_err = |problem: RecipeProblem| BuildError::Recipe {
            component: r.component.clone(),
            problem: Box::new(problem),
        };
        // What this component needs from components built before it, read-only by convention.
        for dep in r.needs.iter().chain(&r.uses) {
            if let Some(c) = built_before.iter().find(|c| &c.name == dep) {
                let dir = sandbox.host(&format!("inputs/needs/{dep}"));
                let rehash = Rehash::ForStep {
                    reader: &r.component,
                };
                self.install_outputs(&c.outputs, &dir, rehash)?;
            }
        }
        if r.inputs.contains(&Input::RootfsPackages) {
            let dir = sandbox.host("inputs/debs");
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let mut list = String::new();
            for (p, object) in &prepared.rootfs_debs {
                let file = format!(
                    "{}_{}_{}.deb",
                    p.name,
                    p.version.replace(':', "%3a"),
                    p.arch
                );
                let dest = dir.join(&file);
                if std::fs::hard_link(object, &dest).is_err() {
                    std::fs::copy(object, &dest).map_err(io_err(&dest))?;
                }
                list.push_str(&format!(
                    "{}/{file}\t{}\t{}\t{}\n",
                    sandbox.inside("inputs/debs"),
                    p.name,
                    p.version,
                    p.arch
                ));
            }
            let dest = sandbox.host("inputs/rootfs-packages.list");
            std::fs::write(&dest, list).map_err(io_err(&dest))?;
        }
        if r.inputs.contains(&Input::ReleaseLayout) {
            let plan = self.release_plan(loaded, vars, sandbox, built_before)?;
            let dest = sandbox.host("inputs/release-layout.json");
            let json = serde_json::to_vec_pretty(&plan).expect("a plan serialises");
            std::fs::write(&dest, json).map_err(io_err(&dest))?;
        }
        if !tree.join(&r.workdir).is_dir() {
            return Err(recipe_err(RecipeProblem::NoWorkdir {
                recipe: loaded.path.clone(),
                workdir: r.workdir.clone(),
            }));
        }
        let varied_home = self.variations.home.as_deref();
        for d in ["out", "home", "tmp", "bin", "logs"]
            .into_iter()
            .chain(varied_home)
        {
            let p = sandbox.host(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        for t in &resolved.host_tools {
            let link = sandbox.host("bin").join(&t.name);
            std::os::unix::fs::symlink(&t.path, &link).map_err(io_err(&link))?;
        }
        if r.vcs_shim {
            write_vcs_shim(
                &sandbox.host("bin").join("git"),
                &self.lock.source.commit.to_string(),
            )?;
        }
        if let Some(v) = vendor {
            let config = vendor_config(&v.config, &vars["cargo_vendor"])?;
            let cargo_home = sandbox.host("home/.cargo");
            std::fs::create_dir_all(&cargo_home).map_err(io_err(&cargo_home))?;
            let dest = cargo_home.join("config.toml");
            std::fs::write(&dest, config).map_err(io_err(&dest))?;
        }
        Ok(())
    }

    /// How the host packages a component uses differ from the lockfile's `[host]` pins: an
    /// error unless drift is allowed, then the lines that say how.
    fn host_drift(&self, component: &str, resolved: &Resolved) -> Result<Vec<String>, BuildError> {
        let Some(pins) = &self.lock.host else {
            return Ok(Vec::new());
        };
        let used = resolved
            .host_tools
            .iter()
            .filter_map(|t| t.package.clone())
            .chain(resolved.host_packages.iter().cloned());
        let drift = crate::host::host_drift(pins, used);
        if !drift.is_empty() && !self.allow_host_drift {
            return Err(BuildError::HostDrift {
                component: component.to_owned(),
                at: self
                    .lock
                    .locate("[host]")
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default(),
                lines: drift,
            });
        }
        Ok(drift)
    }

    /// A fresh scratch directory for a component, under `--work-dir` or the store's staging
    /// area.
    fn scratch(&self, component: &str) -> Result<tempfile::TempDir, BuildError> {
        let work_root = self
            .work_dir
            .clone()
            .unwrap_or_else(|| self.store.staging_dir());
        std::fs::create_dir_all(&work_root).map_err(io_err(&work_root))?;
        let scratch = tempfile::Builder::new()
            .prefix(&format!("build-{component}-"))
            .tempdir_in(&work_root);
        Ok(scratch.map_err(io_err(&work_root))?)
    }

    /// Everything about a component that can be known before its inputs are prepared: the
    /// toolchains and host tools, each step's command and action key, and whether the store
    /// already holds the result.
    fn plan(
        &self,
        loaded: &LoadedRecipe,
        stage: &Path,
        dpkg: &Dpkg,
        isolation: Isolation,
        built_before: &BTreeMap<String, Sha256Digest>,
    ) -> Result<Plan, BuildError> {
        let r = &loaded.recipe;
        let name = r.component.clone();
        let recipe_err = |problem: RecipeProblem| BuildError::Recipe {
            component: name.clone(),
            problem: Box::new(problem),
        };
        let arch_section = env::arch_section(r, &self.arch).map_err(|has| {
            recipe_err(RecipeProblem::NoArch {
                recipe: loaded.path.clone(),
                arch: self.arch.clone(),
                has,
            })
        })?;
        env::check_reserved(r, arch_section).map_err(|key| {
            recipe_err(RecipeProblem::Reserved {
                recipe: loaded.path.clone(),
                key,
            })
        })?;
        let resolved = self.resolve(loaded, dpkg)?;
        let host_drift = self.host_drift(&name, &resolved)?;

        // The scratch directory and the sandbox over it.
        let scratch = self.scratch(&name)?;
        let sandbox = Sandbox::new(scratch.path(), isolation).with_variations(&self.variations);
        let go_mode = r
            .inputs
            .contains(&Input::GoModules)
            .then(|| inputs::go_mode(self.lock, &r.workdir));
        let cargo_lock_sha256 = if r.inputs.contains(&Input::CargoVendor) {
            Some(
                pinned_file(self.lock, "Cargo.lock")
                    .ok_or_else(|| recipe_err(RecipeProblem::NoCargoLock))?,
            )
        } else {
            None
        };

        // Variables and the environment every step gets.
        let inside = |rel: &str| sandbox.inside(rel);
        let mut vars = recipe::vars::builtin_values(&recipe::vars::VarContext {
            lock: self.lock,
            arch: &self.arch,
            recipe: r,
            inside: &inside,
            go_proxy: matches!(go_mode, Some(inputs::GoMode::Proxy { .. })),
        });
        let workdir = vars["workdir"].clone();
        // What this component needs: built before it in this run.
        let env::Needed {
            vars: needed_vars,
            keys: needed,
            mut notes,
        } = env::needed(r, built_before, &inside, &self.arch).map_err(|dep| {
            recipe_err(RecipeProblem::NeedsUnbuilt {
                recipe: loaded.path.clone(),
                dep,
            })
        })?;
        vars.extend(needed_vars);
        env::add_own_vars(&mut vars, r, arch_section).map_err(|(var, through)| {
            recipe_err(RecipeProblem::SelfReference {
                recipe: loaded.path.clone(),
                var,
                through,
            })
        })?;
        let varied = &self.variations;
        let (base_env, note) = env::base_env(&env::EnvSources {
            lock: self.lock,
            recipe: r,
            arch_section,
            vars: &vars,
            inside: &inside,
            rust: resolved.rust.is_some(),
            go: resolved.go.is_some(),
            cargo_vendor: cargo_lock_sha256.is_some(),
            varied,
        });
        notes.extend(note);
        let uses_builtins = env::uses_builtins(r);

        // Inputs by digest: what the first step's input root is made of.
        let self_exe = if uses_builtins {
            Some(tools::memo_file_digest(self.store, &self.self_exe)?)
        } else {
            None
        };
        let inputs = keys::input_digests(&keys::KeySources {
            lock: self.lock,
            arch: &self.arch,
            recipe: r,
            recipe_digest: loaded.digest,
            isolation: sandbox.isolation(),
            resolved: &resolved,
            cargo_lock_sha256,
            go_mode: go_mode.as_ref(),
            needed: &needed,
            varied,
            self_exe,
        });
        let toolchains = keys::toolchain_records(&resolved);
        let needs: BTreeMap<String, Sha256Digest> = needed.into_iter().collect();

        // Output paths may name variables (`vmlinux-${kernel_version}`): from here on the recipe
        // is this build's, with them expanded.
        let mut loaded = loaded.clone();
        for o in &mut loaded.recipe.outputs {
            o.path = recipe::expand(&o.path, &vars);
        }
        let loaded = &loaded;
        let r = &loaded.recipe;
        // Every step's key, chained.
        let declared: Vec<&str> = r.outputs.iter().map(|o| o.path.as_str()).collect();
        let planned = keys::step_actions(&keys::StepSources {
            recipe: r,
            vars: &vars,
            base_env: &base_env,
            inside: &inside,
            declared: &declared,
            workdir: &workdir,
            inputs: &inputs,
            arch: &self.arch,
        });
        let previous = planned.last().map(|(_, _, _, key)| *key);
        let action_key = previous.expect("recipes have steps");
        let record_base = ComponentRecord {
            name: name.clone(),
            recipe: RecipeRef {
                name: loaded
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: loaded.digest,
            },
            action_key,
            steps: planned
                .iter()
                .map(|(n, _, _, k)| StepRecord {
                    name: n.clone(),
                    action_key: *k,
                })
                .collect(),
            toolchains,
            host_tools: resolved.host_tools.clone(),
            host_packages: resolved.host_packages.clone(),
            inputs,
            outputs: Vec::new(),
            host_drift,
            notes,
        };
        // What each step runs, exactly (a REAPI Command), beside its log: to read, to replay.
        let log_stage = stage.join(LOGS_DIR).join(&self.arch).join(&name);
        write_commands(&log_stage, &planned, &declared, &workdir)?;
        // Looked up by `plan_all`, once every key is known.
        let cached = None;
        let previous = self.previous_steps(&action_key);
        Ok(Plan {
            loaded: loaded.clone(),
            resolved,
            scratch,
            sandbox,
            vars,
            workdir,
            steps: planned,
            record: record_base,
            cached,
            from_shared: false,
            needs,
            needed_recipes: Vec::new(),
            previous,
            stage: stage.to_owned(),
        })
    }

    /// Installs a planned component from the store, or builds it from `prepared`.
    fn execute(
        &self,
        plan: Plan,
        prepared: Option<&Prepared>,
        built_before: &[ComponentRecord],
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(ComponentRecord, ComponentRun), BuildError> {
        let started = Instant::now();
        let Plan {
            loaded,
            resolved,
            scratch,
            mut sandbox,
            vars,
            workdir,
            steps: planned,
            record: record_base,
            cached,
            from_shared,
            needs,
            needed_recipes,
            previous,
            stage,
        } = plan;
        let loaded = &loaded;
        let r = &loaded.recipe;
        let name = r.component.clone();
        let recipe_err = |problem: RecipeProblem| BuildError::Recipe {
            component: name.clone(),
            problem: Box::new(problem),
        };
        let action_key = record_base.action_key;
        let component_stage = stage.join(&self.arch).join(&name);
        let log_stage = stage.join(LOGS_DIR).join(&self.arch).join(&name);
        events(Event::ComponentStart {
            component: &name,
            steps: planned.len(),
        });
        if let Some(result) = cached {
            events(Event::ComponentCached {
                component: &name,
                remote: from_shared,
            });
            return self
                .install_cached(result, record_base, &component_stage, &log_stage, started)
                .map(|(record, run)| {
                    let remote = from_shared;
                    (record, ComponentRun { remote, ..run })
                });
        }
        // A server that executes builds every component the store lacks, a rebuild without the
        // cache (`check`, `audit`) too: its workers build it afresh, under this build's
        // variations. No entry of the store is held while a worker builds: a worker on this
        // machine may share the store, and takes the action's entry to build.
        let fresh = self.no_cache.skips(&name);
        if let Some(shared) = self.shared.filter(|s| s.executes()) {
            let mut action = self.shared_action(loaded, action_key, needs, &needed_recipes)?;
            if fresh {
                action.fresh = true;
                action.given = shared::keys_of(&needed_recipes, built_before);
            }
            let err = |source| self.shared_err(shared, &name, source);
            let result = shared
                .execute(&action, self.store, &mut |stage| {
                    events(Event::Remote {
                        component: &name,
                        stage,
                    })
                })
                .map_err(err)?;
            self.accept_shared(shared, loaded, action_key, &result)?;
            // A worker records no fresh result in the cache: it was built on results this
            // build gave it. This build, which took them, gives the cache a plain one.
            if fresh && self.variations.is_empty() {
                shared.publish(&action, &result, self.store).map_err(err)?;
            }
            let (record, run) =
                self.install_cached(result, record_base, &component_stage, &log_stage, started)?;
            let run = ComponentRun {
                cached: false,
                remote: true,
                ..run
            };
            return Ok((record, run));
        }
        // One build per action key: a concurrent build of the same component waits here, then
        // takes the result the other recorded.
        let _building = self
            .store
            .lock_entry(&format!("action-{}", action_key.to_hex()))
            .map_err(|e| io_err(self.store.root())(std::io::Error::other(e.to_string())))?;
        if let Some(result) = (!fresh).then(|| self.cached(&action_key)).flatten() {
            events(Event::ComponentCached {
                component: &name,
                remote: false,
            });
            return self.install_cached(result, record_base, &component_stage, &log_stage, started);
        }
        let prepared = prepared.ok_or_else(|| BuildError::Input {
            component: name.clone(),
            missing: Box::new(MissingInput::NotPrepared),
        })?;

        let mut phases = BTreeMap::new();
        let mut phase = Instant::now();
        let mut lap = |phases: &mut BTreeMap<String, f64>, name: &str| {
            phases.insert(name.to_owned(), phase.elapsed().as_secs_f64());
            phase = Instant::now();
        };

        // The inputs, read-only, at fixed paths.
        let InputBinds {
            binds,
            vendor,
            tree,
            in_use: _in_use,
        } = self.input_binds(r, &resolved, prepared)?;
        sandbox.add_binds(binds)?;
        lap(&mut phases, "toolchains");

        // A fresh copy of the verified source, and the fixed layout.
        let (src_roots, disordered) = self.lay_out_source(&mut sandbox, &tree)?;
        self.lay_out_inputs(
            loaded,
            &sandbox,
            prepared,
            built_before,
            &vars,
            &tree,
            &resolved,
            vendor,
        )?;

        lap(&mut phases, "setup");
        let (step_runs, logs) = self.run_steps(
            loaded, &planned, &sandbox, &workdir, &log_stage, &previous, events,
        )?;
        lap(&mut phases, "steps");
        let mut notes = record_base.notes.clone();
        if let Ok(text) = std::fs::read_to_string(sandbox.host("tmp/.kata-repro-notes")) {
            notes.extend(text.lines().map(str::to_owned));
        }
        // What only the steps needed (caches, HOME) goes while the outputs are collected.
        let early_cleanup = {
            let dirs = [sandbox.host("tmp"), sandbox.host("home")];
            std::thread::spawn(move || {
                for d in dirs {
                    let _ = remove_tree(&d);
                }
            })
        };
        let outputs = self
            .collect_outputs(loaded, &src_roots, &sandbox.host("out"), &vars)
            .map_err(&recipe_err)?;
        self.install_outputs(&outputs, &component_stage, Rehash::No)?;
        let record = ComponentRecord {
            outputs,
            notes,
            ..record_base
        };
        let result = ActionResult {
            action_key,
            record: record.clone(),
            steps: step_runs.clone(),
            logs,
        };
        self.record_result(&result)?;
        lap(&mut phases, "outputs");
        // A varied build's result is never looked up but by another varied build: it is kept
        // in the store only (see also `share`).
        if let Some(shared) = self.shared.filter(|_| self.variations.is_empty()) {
            let action = self.shared_action(loaded, action_key, needs, &needed_recipes)?;
            shared
                .publish(&action, &result, self.store)
                .map_err(|source| self.shared_err(shared, &name, source))?;
            lap(&mut phases, "remote");
        }
        let _ = early_cleanup.join();
        drop(sandbox);
        drop(disordered);
        let _ = remove_tree(scratch.path());
        lap(&mut phases, "cleanup");
        phases.remove("steps");
        Ok((
            record,
            ComponentRun {
                component: name,
                cached: false,
                seconds: started.elapsed().as_secs_f64(),
                steps: step_runs,
                phases,
                remote: false,
            },
        ))
    }

    /// Takes the result given for a planned component, if any: checked against its recipe and
    /// key, recorded in the store, and installed as a cached one.
    fn take_given(&self, plan: &mut Plan) -> Result<(), BuildError> {
        let key = plan.record.action_key;
        let Some(result) = self.given.iter().find(|r| r.action_key == key) else {
            return Ok(());
        };
        shared::check_result(&plan.loaded, &key, result, self.store).map_err(|why| {
            BuildError::Given {
                component: plan.component().to_owned(),
                key,
                why,
            }
        })?;
        self.record_result(result)?;
        plan.cached = Some(result.clone());
        Ok(())
    }

    /// Consults the shared cache for a planned component: a result the store lacks is fetched
    /// from it, checked and recorded in the store; one the store holds is given to it, unless
    /// the build is varied.
    fn share(&self, shared: &dyn SharedCache, plan: &mut Plan) -> Result<(), BuildError> {
        let key = plan.record.action_key;
        let name = plan.component().to_owned();
        let action =
            self.shared_action(&plan.loaded, key, plan.needs.clone(), &plan.needed_recipes)?;
        let err = |source| self.shared_err(shared, &name, source);
        if let Some(result) = &plan.cached {
            if self.variations.is_empty() {
                shared.publish(&action, result, self.store).map_err(err)?;
            }
            return Ok(());
        }
        if self.no_cache.skips(&name) {
            return Ok(());
        }
        let Some(result) = shared.fetch(&action, self.store).map_err(err)? else {
            return Ok(());
        };
        self.accept_shared(shared, &plan.loaded, key, &result)?;
        plan.cached = Some(result);
        plan.from_shared = true;
        Ok(())
    }

    /// Checks a result that came from the shared cache against the recipe and `key` (see
    /// [`shared::check_result`]) and records it in the store's action cache: the one way a
    /// remote's result becomes the store's.
    fn accept_shared(
        &self,
        shared: &dyn SharedCache,
        loaded: &LoadedRecipe,
        key: Sha256Digest,
        result: &ActionResult,
    ) -> Result<(), BuildError> {
        shared::check_result(loaded, &key, result, self.store).map_err(|why| {
            self.shared_err(
                shared,
                &loaded.recipe.component,
                SharedError::Refused(format!("result of {key} refused: {why}")),
            )
        })?;
        self.record_result(result)
    }

    /// A component's action as the shared cache names it.
    fn shared_action<'l>(
        &'l self,
        loaded: &'l LoadedRecipe,
        key: Sha256Digest,
        needs: BTreeMap<String, Sha256Digest>,
        needed_recipes: &'l [LoadedRecipe],
    ) -> Result<SharedAction<'l>, BuildError> {
        let lockfile_text = self.lock.origin.as_ref().map(|o| o.text.as_str());
        let lockfile_text = lockfile_text.ok_or_else(|| BuildError::Shared {
            component: loaded.recipe.component.clone(),
            cache: self.shared.map(|s| s.describe()).unwrap_or_default(),
            source: SharedError::Usage("the lockfile was not read from a file".into()),
        })?;
        Ok(SharedAction {
            component: &loaded.recipe.component,
            arch: &self.arch,
            key,
            lockfile_name: &self.lockfile_name,
            lockfile_text,
            recipes: std::iter::once(loaded).chain(needed_recipes).collect(),
            needs,
            platform: shared::platform(&self.arch, self.lock.host.as_ref()),
            fresh: false,
            given: BTreeMap::new(),
            variations: self.variations.names(),
        })
    }

    fn shared_err(
        &self,
        shared: &dyn SharedCache,
        component: &str,
        source: SharedError,
    ) -> BuildError {
        BuildError::Shared {
            component: component.to_owned(),
            cache: shared.describe(),
            source,
        }
    }

    /// The recipe's `[release]` for this build: variables expanded, each part's outputs where
    /// this build installed its component, or why it was not built.
    fn release_plan(
        &self,
        loaded: &LoadedRecipe,
        vars: &BTreeMap<String, String>,
        sandbox: &Sandbox,
        built_before: &[ComponentRecord],
    ) -> Result<crate::release::layout::Plan, BuildError> {
        let r = &loaded.recipe;
        let err = |problem: RecipeProblem| BuildError::Recipe {
            component: r.component.clone(),
            problem: Box::new(problem),
        };
        let def = r.release.as_ref().ok_or_else(|| {
            err(RecipeProblem::NoRelease {
                recipe: loaded.path.clone(),
            })
        })?;
        let kata_arch = vars.get("kata_arch").cloned().ok_or_else(|| {
            err(RecipeProblem::NoKataArch {
                recipe: loaded.path.clone(),
                arch: self.arch.clone(),
            })
        })?;
        let built = |component: &str| {
            if built_before.iter().any(|c| c.name == component) {
                Ok(sandbox.inside(&format!("inputs/needs/{component}")).into())
            } else {
                Err(self.why_not_built(component))
            }
        };
        Ok(crate::release::layout::plan(
            def,
            &|s| recipe::expand(s, vars),
            crate::release::layout::PlanContext {
                kata: vars["kata"].clone().into(),
                kata_arch,
                mtime: self.lock.source_date_epoch() as u64,
            },
            &built,
        ))
    }

    /// Why a component a release recipe uses is not part of this build.
    fn why_not_built(&self, component: &str) -> String {
        let prefix = format!("{component}: ");
        match self.left_out.iter().find_map(|l| l.strip_prefix(&prefix)) {
            Some(why) => format!("component `{component}` was not built: {why}"),
            None => format!("component `{component}` is not part of this build"),
        }
    }

    /// Each step's seconds from the stored result of `key`, whether or not its outputs are
    /// still there (for progress estimates only).
    fn previous_steps(&self, key: &Sha256Digest) -> BTreeMap<String, f64> {
        let path = self.store.action_path(key).with_extension("json");
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ActionResult>(&b).ok())
            .filter(|r| r.action_key == *key)
            .map(|r| r.steps.into_iter().map(|s| (s.name, s.seconds)).collect())
            .unwrap_or_default()
    }

    /// A stored result whose every output is still in the store under its digest, with its
    /// recorded size. The bytes are not hashed again here: the result itself is the one record
    /// the store is believed on (docs/trust.md), so hashing its outputs would only catch what
    /// the size misses of damage by accident, which `kata-repro store verify` finds. Outputs
    /// are hashed again when a step is to read them (see [`Self::install_outputs`]).
    fn cached(&self, key: &Sha256Digest) -> Option<ActionResult> {
        shared::recorded(self.store, key)
    }

    /// Collects, checks and normalises a component's outputs: what `from` names is copied from
    /// the source roots into `out`, then see [`Self::check_outputs`].
    fn collect_outputs(
        &self,
        loaded: &LoadedRecipe,
        src_roots: &[PathBuf],
        out: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Vec<Artifact>, RecipeProblem> {
        for o in loaded.recipe.outputs.iter().filter(|o| o.from.is_some()) {
            collect_from(o, src_roots, out, vars)?;
        }
        self.check_outputs(loaded, out)
    }

    /// Records a built component in the action cache, by its key.
    fn record_result(&self, result: &ActionResult) -> Result<(), BuildError> {
        shared::record(self.store, result)
    }

    /// Every file under `out` must be declared; every declared file must be there. Each is
    /// stored by sha256 and recorded with the declared mode.
    fn check_outputs(
        &self,
        loaded: &LoadedRecipe,
        out: &Path,
    ) -> Result<Vec<Artifact>, RecipeProblem> {
        let r = &loaded.recipe;
        let unreadable = |e: &dyn std::fmt::Display| RecipeProblem::Unreadable(e.to_string());
        let files = crate::digest::tree_listing(out).map_err(|e| unreadable(&e))?;
        let mut outputs = Vec::new();
        for f in &files {
            let Some(def) = r.declaring(&f.path) else {
                return Err(RecipeProblem::Undeclared {
                    recipe: loaded.path.clone(),
                    output: f.path.clone(),
                });
            };
            if f.link.is_some() {
                return Err(RecipeProblem::Link {
                    output: f.path.clone(),
                });
            }
            let (digest, size) = self
                .store
                .insert_file(&out.join(&f.path))
                .map_err(|e| unreadable(&e))?;
            outputs.push(Artifact {
                path: f.path.clone(),
                size,
                mode: format!("{:04o}", def.mode),
                sha256: digest,
            });
        }
        for o in &r.outputs {
            let present = files.iter().any(|f| o.declares(&f.path));
            if !present && !o.optional {
                return Err(RecipeProblem::NotProduced {
                    output: o.path.clone(),
                    matched: o.from.clone(),
                });
            }
        }
        outputs.sort();
        Ok(outputs)
    }

    /// Copies stored outputs into `dir`, with their recorded modes and SOURCE_DATE_EPOCH as
    /// their mtime.
    fn install_outputs(
        &self,
        outputs: &[Artifact],
        dir: &Path,
        rehash: Rehash<'_>,
    ) -> Result<(), BuildError> {
        use std::os::unix::fs::PermissionsExt;
        let mtime = std::time::UNIX_EPOCH
            + Duration::from_secs(self.lock.source_date_epoch().max(0) as u64);
        for o in outputs {
            let dest = dir.join(&o.path);
            let parent = dest.parent().expect("has a parent");
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            let object = self.store.object_path(&o.sha256);
            std::fs::copy(&object, &dest).map_err(io_err(&dest))?;
            if let Rehash::ForStep { reader } = rehash {
                let actual = Sha256Digest::of_file(&dest).map_err(io_err(&dest))?;
                if actual != o.sha256 {
                    return Err(BuildError::DamagedOutput(Box::new(DamagedOutput {
                        component: reader.to_owned(),
                        path: o.path.clone(),
                        object,
                        expected: o.sha256,
                        actual,
                    })));
                }
            }
            // The time first: a read-only mode would forbid opening the file to set it.
            let f = std::fs::File::options()
                .write(true)
                .open(&dest)
                .map_err(io_err(&dest))?;
            f.set_modified(mtime).map_err(io_err(&dest))?;
            drop(f);
            let mode = u32::from_str_radix(&o.mode, 8).unwrap_or(0o644);
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(&dest))?;
        }
        Ok(())
    }
}

/// The recipes of the components `needs` names, among `planned`, and of every component those
/// need in turn, each once, sorted by component.
fn needed_recipes(planned: &[Plan], needs: &BTreeMap<String, Sha256Digest>) -> Vec<LoadedRecipe> {
    let mut found: BTreeMap<String, LoadedRecipe> = BTreeMap::new();
    for p in planned.iter().filter(|p| needs.contains_key(p.component())) {
        for r in std::iter::once(&p.loaded).chain(&p.needed_recipes) {
            found
                .entry(r.recipe.component.clone())
                .or_insert_with(|| r.clone());
        }
    }
    found.into_values().collect()
}

/// Copies what `o.from` matches (relative to the source root) into `out/<o.path>`.
fn collect_from(
    o: &OutputDef,
    src: &[PathBuf],
    out: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<(), RecipeProblem> {
    let pattern = recipe::expand(o.from.as_deref().expect("filtered"), vars);
    let glob = globset::GlobBuilder::new(&pattern)
        .literal_separator(true)
        .build()
        .map_err(|source| RecipeProblem::BadPattern {
            output: o.path.clone(),
            pattern: pattern.clone(),
            source,
        })?
        .compile_matcher();
    // Walk only below the pattern's literal prefix.
    let literal: Vec<&str> = pattern
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .collect();
    // The source as the steps saw it: the first root holding a path wins (an overlay's upper
    // directory, then the tree under it); a whiteout in an upper root hides the path below.
    let mut by_rel: BTreeMap<PathBuf, Option<PathBuf>> = BTreeMap::new();
    for root in src {
        let base = root.join(literal.join("/"));
        for e in walkdir::WalkDir::new(&base)
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("under its root")
                .to_owned();
            if by_rel.contains_key(&rel) || !glob.is_match(&rel) {
                continue;
            }
            let ft = e.file_type();
            let whiteout = {
                use std::os::unix::fs::FileTypeExt;
                ft.is_char_device()
            };
            if whiteout {
                by_rel.insert(rel, None);
            } else if ft.is_file() {
                by_rel.insert(rel, Some(e.into_path()));
            }
        }
    }
    let matched: Vec<PathBuf> = by_rel.into_values().flatten().collect();
    if matched.is_empty() {
        return Err(RecipeProblem::NotProduced {
            output: o.path.clone(),
            matched: Some(pattern),
        });
    }
    if !o.path.ends_with('/') && matched.len() > 1 {
        return Err(RecipeProblem::ManyMatched {
            output: o.path.clone(),
            pattern,
            count: matched.len(),
        });
    }
    let mut names = std::collections::BTreeSet::new();
    for m in &matched {
        if !names.insert(m.file_name()) {
            return Err(RecipeProblem::SameName {
                output: o.path.clone(),
                pattern,
                name: m.file_name().unwrap_or_default().to_string_lossy().into(),
            });
        }
    }
    for m in matched {
        let dest = if o.path.ends_with('/') {
            out.join(&o.path).join(m.file_name().expect("a file"))
        } else {
            out.join(&o.path)
        };
        let unreadable = |e: String| RecipeProblem::Unreadable(e);
        std::fs::create_dir_all(dest.parent().expect("has a parent"))
            .map_err(|e| unreadable(e.to_string()))?;
        std::fs::copy(&m, &dest).map_err(|e| unreadable(format!("{}: {e}", m.display())))?;
    }
    Ok(())
}

fn looks_like_network(tail: &str) -> bool {
    let t = tail.to_ascii_lowercase();
    [
        "network is unreachable",
        "temporary failure in name resolution",
        "could not resolve host",
        "name or service not known",
        "no such host",
        "dial tcp",
        "failed to connect",
        "connection refused",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// The vendor tree's cargo config, with every directory source pointed at `inside`.
fn vendor_config(path: &Path, inside: &str) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| io_err(path)(std::io::Error::other(e.to_string())))?;
    if let Some(toml::Value::Table(sources)) = table.get_mut("source") {
        for (_, s) in sources.iter_mut() {
            if let toml::Value::Table(s) = s
                && s.contains_key("directory")
            {
                s.insert("directory".into(), toml::Value::String(inside.to_owned()));
            }
        }
    }
    Ok(toml::to_string(&table).expect("serialises"))
}

/// The `git` a recipe with `vcs_shim` sees: the pinned commit, a clean tree, nothing else.
pub fn write_vcs_shim(path: &Path, commit: &str) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\n\
         # kata-repro: answers what build files ask git about the pinned commit, nothing else.\n\
         case \"$*\" in\n\
         \"rev-parse HEAD\"|\"rev-parse --verify HEAD\") echo {commit} ;;\n\
         \"rev-parse --short HEAD\") echo {short} ;;\n\
         \"status --porcelain\"*) ;;\n\
         *) echo \"git $*: not available in a kata-repro build step (only rev-parse HEAD and status --porcelain are)\" >&2; exit 1 ;;\n\
         esac\n",
        short = &commit[..12.min(commit.len())]
    );
    std::fs::write(path, script).map_err(io_err(path))?;
    let executable = std::fs::Permissions::from_mode(0o755);
    Ok(std::fs::set_permissions(path, executable).map_err(io_err(path))?)
}

/// Copies a tree: files with their modes, symlinks as symlinks.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(from).sort_by_file_name() {
        let e = e.map_err(|e| io_err(from)(std::io::Error::other(e)))?;
        let rel = e.path().strip_prefix(from).expect("under from");
        let dest = to.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(io_err(e.path()))?;
            std::os::unix::fs::symlink(target, &dest).map_err(io_err(&dest))?;
        } else {
            std::fs::copy(e.path(), &dest).map_err(io_err(&dest))?;
            let mode = e
                .metadata()
                .map(|m| m.permissions().mode())
                .unwrap_or(0o644);
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode & 0o777))
                .map_err(io_err(&dest))?;
        }
    }
    Ok(())
}

/// Writes what each planned step runs (a REAPI `Command`) to `<step>.command.json` in
/// `log_dir`: to read, and to replay.
fn write_commands(
    log_dir: &Path,
    planned: &[keys::PlannedStep],
    declared: &[&str],
    workdir: &str,
) -> Result<(), BuildError> {
    std::fs::create_dir_all(log_dir).map_err(io_err(log_dir))?;
    for (step_name, argv, env, _) in planned {
        let command = action::CommandSpec {
            arguments: argv,
            environment_variables: env
                .iter()
                .map(|(name, value)| action::EnvVar { name, value })
                .collect(),
            output_paths: declared.to_vec(),
            working_directory: workdir,
        };
        let dest = log_dir.join(format!("{step_name}.command.json"));
        let mut text = serde_json::to_string_pretty(&command).expect("serialises");
        text.push('\n');
        std::fs::write(&dest, text).map_err(io_err(&dest))?;
    }
    Ok(())
}

/// Moves a staged output directory into place at `out`: the old contents (which must be a
/// previous kata-repro output, or nothing) are replaced as a whole.
pub fn install(stage: tempfile::TempDir, out: &Path) -> Result<(), BuildError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if out.exists() {
        let old = tempfile::Builder::new()
            .prefix(".kata-repro-old-")
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        let old_path = old.path().join("out");
        std::fs::rename(out, &old_path).map_err(io_err(out))?;
        if let Err(e) = std::fs::rename(stage.path(), out) {
            // Put the previous build back rather than leave nothing.
            let _ = std::fs::rename(&old_path, out);
            return Err(io_err(out)(e).into());
        }
        let _ = stage.keep();
        let _ = remove_tree(old.path());
    } else {
        std::fs::rename(stage.keep(), out).map_err(io_err(out))?;
    }
    Ok(())
}

/// Checks that `out` can receive a build: absent, empty, or a previous kata-repro output.
pub fn check_out_dir(out: &Path) -> Result<(), OutDirError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(OutDirError::NotADirectory {
            path: out.to_owned(),
        });
    }
    let empty = std::fs::read_dir(out)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty || out.join(crate::manifest::MANIFEST_FILE).is_file() {
        Ok(())
    } else {
        Err(OutDirError::NotABuild {
            path: out.to_owned(),
        })
    }
}

/// A staging directory beside `out`, on the same filesystem so that [`install`] is a rename.
pub fn stage_beside(out: &Path) -> Result<tempfile::TempDir, BuildError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let stage = tempfile::Builder::new()
        .prefix(".kata-repro-stage-")
        .tempdir_in(parent);
    Ok(stage.map_err(io_err(parent))?)
}
