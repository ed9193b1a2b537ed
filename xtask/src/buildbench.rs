//! `cargo xtask bench build`: a component built by kata-repro (every step run, nothing from
//! the cache) against the same commands run raw, side by side, on the same inputs.
//!
//! The raw run replays the exact commands the orchestrated build ran (each step's
//! `<step>.command.json` beside its log) in a plain directory laid out as the step saw it, with
//! no namespaces, no input verification, no output hashing: what a release engineer would type.
//! The difference is kata-repro's overhead. The no-op rebuild (every result from the store) is
//! timed too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use kata_repro::lock::Lockfile;
use kata_repro::recipe::{RecipeSource, Toolchain};
use kata_repro::sandbox::ROOT;
use kata_repro::source::store::Store;

pub struct Options {
    pub lockfile: PathBuf,
    pub components: Vec<String>,
    pub store: PathBuf,
    pub dir: PathBuf,
    pub runs: usize,
    pub mirror_args: Vec<String>,
}

struct Timing {
    component: String,
    orchestrated: Vec<f64>,
    steps_inside: Vec<f64>,
    raw: Vec<f64>,
    noop: f64,
}

/// The least time an orchestrated run spent outside its steps.
fn around_steps(t: &Timing) -> f64 {
    let outside: Vec<f64> = t
        .orchestrated
        .iter()
        .zip(&t.steps_inside)
        .map(|(k, s)| k - s)
        .collect();
    best(&outside)
}

/// The least of `v`: the best run.
pub fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn run(bin: &Path, o: &Options) -> Result<()> {
    if o.dir.exists() {
        kata_repro::files::remove_tree(&o.dir)?;
    }
    std::fs::create_dir_all(&o.dir)?;
    let lock = Lockfile::load(&o.lockfile)?;
    let recipes = RecipeSource::Builtin.load_all()?;
    let mut timings = Vec::new();
    for component in &o.components {
        let recipe = recipes
            .get(component)
            .with_context(|| format!("no recipe for {component}"))?;
        // Each orchestrated run prepares the inputs it finds missing (fetch, vendor tree,
        // unpacked toolchain): run this on a store that already holds them (after a build or
        // `cargo xtask e2e`), or with --runs 2 or more, so that the best run excludes them.
        let mut t = Timing {
            component: component.clone(),
            orchestrated: vec![],
            steps_inside: vec![],
            raw: vec![],
            noop: 0.0,
        };
        for i in 0..o.runs {
            let out = o.dir.join(format!("{component}-{i}"));
            let started = Instant::now();
            let report = kata(bin, o, component, &out, &["--no-cache"])?;
            t.orchestrated.push(started.elapsed().as_secs_f64());
            let inside: f64 = report["components"][0]["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["seconds"].as_f64())
                .sum();
            t.steps_inside.push(inside);
            let raw_root = o.dir.join(format!("{component}-raw-{i}"));
            let secs = raw(&lock, &o.store, recipe, &out, &raw_root)?;
            t.raw.push(secs);
            kata_repro::files::remove_tree(&raw_root)?;
            let phases: Vec<String> = report["components"][0]["phases"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k} {:.2}s", v.as_f64().unwrap_or(0.0)))
                .collect();
            println!(
                "{component} run {i}: kata-repro {:.1}s (steps {:.1}s; inputs {:.2}s, {}), raw {:.1}s",
                t.orchestrated[i],
                inside,
                report["inputs_seconds"].as_f64().unwrap_or(0.0),
                phases.join(", "),
                secs
            );
        }
        let started = Instant::now();
        let report = kata(
            bin,
            o,
            component,
            &o.dir.join(format!("{component}-0")),
            &[],
        )?;
        t.noop = started.elapsed().as_secs_f64();
        ensure!(
            report["components"][0]["cached"] == true,
            "the no-op rebuild of {component} ran steps"
        );
        timings.push(t);
    }
    println!();
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>9} {:>13} {:>10}",
        "component", "kata-repro", "raw", "overhead", "in steps", "around steps", "no-op"
    );
    for t in &timings {
        let (k, r) = (best(&t.orchestrated), best(&t.raw));
        println!(
            "{:<10} {:>11.1}s {:>11.1}s {:>9.1}% {:>8.1}s {:>12.1}% {:>9.2}s",
            t.component,
            k,
            r,
            (k - r) / r * 100.0,
            best(&t.steps_inside),
            around_steps(t) / r * 100.0,
            t.noop
        );
    }
    println!(
        "(best of {} runs each; overhead = (kata-repro - raw) / raw; around steps = the least \
         time a run spent outside its steps (inputs, toolchains, setup, outputs, cleanup) / raw)",
        o.runs
    );

    // Every component at once, all from the store: what a no-op rebuild of the release costs,
    // phase by phase.
    let all = o.components.join(",");
    let out = o.dir.join("noop-all");
    kata(bin, o, &all, &out, &[])?;
    let started = Instant::now();
    let report = kata(bin, o, &all, &out, &[])?;
    let noop = started.elapsed().as_secs_f64();
    let phases: Vec<String> = report["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {:.3}s",
                p["phase"].as_str().unwrap_or("?"),
                p["seconds"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    println!();
    println!(
        "no-op rebuild of {all}: {noop:.2}s wall; by phase: {}",
        phases.join(", ")
    );
    println!();
    for t in &timings {
        let (k, r) = (best(&t.orchestrated), best(&t.raw));
        let overhead = (k - r) / r * 100.0;
        println!(
            "orchestrator overhead, {}: {overhead:.1}% (goal <= 3%): {}",
            t.component,
            met(overhead <= 3.0)
        );
    }
    println!(
        "no-op rebuild of {all}: {noop:.2}s (goal < 1s): {}",
        met(noop < 1.0)
    );
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// `kata-repro --json build …`, which must succeed.
fn kata(
    bin: &Path,
    o: &Options,
    component: &str,
    out: &Path,
    extra: &[&str],
) -> Result<serde_json::Value> {
    let output = Command::new(bin)
        .args(&o.mirror_args)
        .args([
            "--json",
            "build",
            "--offline",
            "--component",
            component,
            "--lockfile",
        ])
        .arg(&o.lockfile)
        .arg("--store")
        .arg(&o.store)
        .arg("--out")
        .arg(out)
        .arg("--work-dir")
        .arg(o.dir.join("work"))
        .args(extra)
        .output()?;
    if !output.status.success() {
        bail!(
            "kata-repro build {component} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Replays the orchestrated build's step commands in `root`, laid out as the steps saw
/// `/tmp/kata-repro`, and returns the seconds they took.
fn raw(
    lock: &Lockfile,
    store_root: &Path,
    recipe: &kata_repro::recipe::LoadedRecipe,
    out: &Path,
    root: &Path,
) -> Result<f64> {
    let r = &recipe.recipe;
    let store = Store::open(store_root, || {})?;
    std::fs::create_dir_all(root)?;
    kata_repro::builder::copy_tree(&store.git_path(&lock.source.commit), &root.join("src"))?;
    for d in ["out", "home", "tmp", "bin", "toolchains", "inputs", "logs"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let link = |target: &Path, at: &str| std::os::unix::fs::symlink(target, root.join(at));
    // Held until the raw run is done, as a build holds the tree it unpacked.
    let mut _go_in_use = None;
    if r.toolchains.contains(&Toolchain::Go) {
        let (go, held) =
            kata_repro::builder::tools::ensure_go(&store, lock, &kata_repro::host::arch())?;
        _go_in_use = Some(held);
        link(&go.goroot, "toolchains/go")?;
    }
    if r.toolchains.contains(&Toolchain::Rust) {
        let rust = kata_repro::builder::tools::find_rust(&store, lock, None)?;
        link(&rust.sysroot, "toolchains/rust")?;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for t in &r.host_tools_for(&kata_repro::host::arch()) {
        let found = std::env::split_paths(&path)
            .map(|d| d.join(t))
            .find(|p| p.is_file())
            .with_context(|| format!("{t} is not on PATH"))?;
        link(&found, &format!("bin/{t}"))?;
    }
    if r.vcs_shim {
        kata_repro::builder::write_vcs_shim(
            &root.join("bin/git"),
            &lock.source.commit.to_string(),
        )?;
    }
    let root_str = root.display().to_string();
    let local = |s: &str| s.replace(ROOT, &root_str);
    if r.inputs.contains(&kata_repro::recipe::Input::CargoVendor) {
        let lock_sha = kata_repro::digest::Sha256Digest::of_file(&root.join("src/Cargo.lock"))?;
        let vendor = store.vendor_tree(&lock_sha);
        link(&vendor.join("vendor"), "inputs/cargo-vendor")?;
        // The vendor tree's config already names its store path.
        std::fs::create_dir_all(root.join("home/.cargo"))?;
        std::fs::copy(
            vendor.join("config.toml"),
            root.join("home/.cargo/config.toml"),
        )?;
    }
    if r.inputs.contains(&kata_repro::recipe::Input::GoModules)
        && matches!(
            kata_repro::inputs::go_mode(lock, &r.workdir),
            kata_repro::inputs::GoMode::Proxy { .. }
        )
    {
        link(&store.go_module_cache(), "inputs/goproxy")?;
    }
    drop(store);

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    let steps: Vec<String> = manifest["components"][0]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    let logs = out
        .join("logs")
        .join(manifest["arch"].as_str().unwrap_or_default())
        .join(&r.component);
    let started = Instant::now();
    for step in &steps {
        let command: serde_json::Value =
            serde_json::from_slice(&std::fs::read(logs.join(format!("{step}.command.json")))?)?;
        let args: Vec<String> = command["arguments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| local(a.as_str().unwrap_or_default()))
            .collect();
        let env: Vec<(String, String)> = command["environment_variables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    local(v["value"].as_str().unwrap_or_default()),
                )
            })
            .collect();
        // The program is looked up on the step's PATH, not ours.
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let program = std::env::split_paths(&path)
            .map(|d| d.join(&args[0]))
            .find(|p| p.exists())
            .with_context(|| format!("{} is not on {path}", args[0]))?;
        let log = std::fs::File::create(root.join("logs").join(format!("{step}.log")))?;
        let mut cmd = Command::new(program);
        cmd.args(&args[1..])
            .env_clear()
            .envs(env)
            .current_dir(local(
                command["working_directory"].as_str().unwrap_or_default(),
            ))
            .stdout(log.try_clone()?)
            .stderr(log);
        let status = cmd.status()?;
        ensure!(
            status.success(),
            "raw step {step} failed; see {}",
            root.join("logs").join(format!("{step}.log")).display()
        );
    }
    Ok(started.elapsed().as_secs_f64())
}
