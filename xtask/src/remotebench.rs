//! `cargo xtask bench remote`: a component built through BuildGrid by two `kata-repro worker`s
//! against the same component built here, and a no-op build from the remote cache against one
//! from the local store, side by side in one run; the remote build must be the local one to the
//! byte (`kata-repro diff`). Then `kata-repro check` of the component here and on the workers:
//! the verdicts must be the same.
//!
//! BuildGrid and its PostgreSQL are started as the integration tests start them (on 127.0.0.1,
//! ephemeral ports; `$KATA_REPRO_BGD` or `bgd` on PATH) and stopped at the end, also on failure.
//! The client's store is warmed by a local build first; each worker's store is a hard-linked
//! copy of it without its action results, so that workers fetch nothing and build everything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::buildbench::best;

#[allow(dead_code)]
#[path = "../../tests/common/buildgrid.rs"]
mod buildgrid;

pub struct Options {
    pub lockfile: PathBuf,
    pub component: String,
    pub store: PathBuf,
    pub dir: PathBuf,
    pub runs: usize,
    pub mirror_args: Vec<String>,
}

/// A `kata-repro worker`, killed with what it started when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        unsafe { libc::killpg(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

struct Bench<'a> {
    bin: &'a Path,
    o: &'a Options,
    url: String,
}

impl Bench<'_> {
    /// `kata-repro --json build` of the component, which must succeed; its report and seconds.
    fn build(&self, out: &Path, extra: &[&str]) -> Result<(serde_json::Value, f64)> {
        let started = Instant::now();
        let output = self
            .command("build")
            .arg("--out")
            .arg(out)
            .args(extra)
            .stderr(Stdio::inherit())
            .output()?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!("kata-repro build {extra:?} failed");
        }
        Ok((serde_json::from_slice(&output.stdout)?, seconds))
    }

    /// `kata-repro --json VERB --offline` of the component, with the lockfile and the client's
    /// store.
    fn command(&self, verb: &str) -> Command {
        let mut command = Command::new(self.bin);
        command
            .args(&self.o.mirror_args)
            .args(["--json", verb, "--offline", "--component"])
            .arg(&self.o.component)
            .arg("--lockfile")
            .arg(&self.o.lockfile)
            .arg("--store")
            .arg(&self.o.store);
        command
    }

    /// `kata-repro --json check` of the component under `variations`: its verdict on each
    /// artifact, the variations applied, and seconds.
    fn check(&self, variations: &str, extra: &[&str]) -> Result<(Vec<String>, String, f64)> {
        let started = Instant::now();
        let output = self
            .command("check")
            .args(["--variations", variations])
            .args(extra)
            .stderr(Stdio::inherit())
            .output()?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            matches!(output.status.code(), Some(0 | 1)),
            "kata-repro check {extra:?} failed"
        );
        let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let rows = |key: &str| v[key].as_array().cloned().unwrap_or_default();
        let verdicts = rows("artifacts")
            .iter()
            .map(|a| format!("{} {}", a["path"], a["verdict"]))
            .collect();
        let applied = rows("variations")
            .iter()
            .filter(|r| r["applied"] == true)
            .map(|r| r["variation"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join(",");
        Ok((verdicts, applied, seconds))
    }

    fn remote<'s>(&'s self, extra: &[&'s str]) -> Vec<&'s str> {
        let mut args = vec!["--remote", &self.url, "--remote-instance", "main"];
        args.extend_from_slice(extra);
        args
    }

    fn worker(&self, id: &str, store: &Path) -> Result<Worker> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.o.dir.join(format!("{id}.log")))?;
        let child = Command::new(self.bin)
            .args(&self.o.mirror_args)
            .args(["worker", "--offline", "--remote", &self.url])
            .args(["--remote-instance", "main", "--id", id, "--lockfile"])
            .arg(&self.o.lockfile)
            .arg("--store")
            .arg(store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        Ok(Worker(child))
    }

    fn worker_log(&self, id: &str) -> String {
        std::fs::read_to_string(self.o.dir.join(format!("{id}.log"))).unwrap_or_default()
    }
}

/// The action key of the one component in the build at `out`.
fn action_key(out: &Path) -> Result<String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    manifest["components"][0]["action_key"]
        .as_str()
        .map(str::to_owned)
        .context("manifest.json names no action key")
}

/// Forgets the stored result of `key`, so that the next build of it builds or takes it again.
fn forget(store: &Path, key: &str) -> Result<()> {
    let path = store.join("actions").join(format!("{key}.json"));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Forgets the outputs of the build at `out` too: the store must take them again.
fn forget_outputs(store: &Path, out: &Path) -> Result<()> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    for o in manifest["components"][0]["outputs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let hex = o["sha256"].as_str().context("an output without sha256")?;
        let path = store.join("objects/sha256").join(hex);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// `cp -al`: the store's objects, shared by hard links.
fn link_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        kata_repro::files::remove_tree(to)?;
    }
    let status = Command::new("cp").arg("-al").arg(from).arg(to).status()?;
    ensure!(
        status.success(),
        "cp -al {} {}",
        from.display(),
        to.display()
    );
    Ok(())
}

/// The variations the check applies: those of the step runner, which every worker here can make.
const CHECKED: &str =
    "environment,build_path,home,locales,exec_path,timezone,umask,domain_host,user_group";

pub fn run(bin: &Path, o: &Options) -> Result<()> {
    if o.dir.exists() {
        kata_repro::files::remove_tree(&o.dir)?;
    }
    std::fs::create_dir_all(&o.dir)?;
    let c = &o.component;

    // Warm the client's store: inputs fetched, the component built once.
    eprintln!("warming {} with a local build of {c}", o.store.display());
    let warm = o.dir.join("warm");
    let warmed = Command::new(bin)
        .args(&o.mirror_args)
        .args(["build", "--component", c, "--lockfile"])
        .arg(&o.lockfile)
        .arg("--store")
        .arg(&o.store)
        .arg("--out")
        .arg(&warm)
        .status()?;
    ensure!(warmed.success(), "the warm-up build of {c} failed");
    let key = action_key(&warm)?;
    let stores: Vec<PathBuf> = ["w1", "w2"]
        .iter()
        .map(|id| o.dir.join(format!("store-{id}")))
        .collect();
    for s in &stores {
        link_copy(&o.store, s)?;
        // Its own results, locks and staging: only objects, checkouts and toolchains shared.
        for dir in ["actions", "locks", "tmp"] {
            kata_repro::files::remove_tree(&s.join(dir))?;
            std::fs::create_dir_all(s.join(dir))?;
        }
        std::fs::remove_file(s.join("lock"))?;
    }

    let mut server = buildgrid::BuildGrid::with_execution();
    let b = Bench {
        bin,
        o,
        url: server.url(),
    };
    let _workers = [b.worker("w1", &stores[0])?, b.worker("w2", &stores[1])?];

    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for i in 0..o.runs {
        let out_local = o.dir.join(format!("local-{i}"));
        let (_, secs) = b.build(&out_local, &["--no-cache"])?;
        local.push(secs);

        // Neither the store, the workers' stores nor the remote have the result.
        for s in std::iter::once(&o.store).chain(&stores) {
            forget(s, &key)?;
        }
        if i > 0 {
            // A fresh action cache; the workers' sessions are found again within seconds.
            server.restart(Duration::from_secs(0));
            std::thread::sleep(Duration::from_secs(10));
        }
        let out_remote = o.dir.join(format!("remote-{i}"));
        let (report, secs) = b.build(&out_remote, &b.remote(&[]))?;
        let run = &report["components"][0];
        ensure!(
            run["remote"] == true && run["cached"] == false,
            "the remote build of {c} was not built by a worker: {run}"
        );
        remote.push(secs);
        let by = ["w1", "w2"]
            .into_iter()
            .filter(|id| b.worker_log(id).contains(&format!("built {c}")))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{c} run {i}: local {:.1}s, through BuildGrid {secs:.1}s (built by {by})",
            local[i]
        );

        let diff = Command::new(bin)
            .arg("diff")
            .arg(&out_local)
            .arg(&out_remote)
            .output()?;
        let said = String::from_utf8_lossy(&diff.stdout);
        ensure!(
            diff.status.success(),
            "the remote build differs from the local one:\n{said}"
        );
        println!(
            "kata-repro diff local-{i} remote-{i}: {}",
            said.lines().last().unwrap_or("")
        );
    }

    // No-ops: the store has the result; then only the remote has it.
    let noop_out = o.dir.join("noop");
    let (r, noop_local) = b.build(&noop_out, &[])?;
    ensure!(r["components"][0]["cached"] == true, "the no-op ran steps");
    let (_, noop_both) = b.build(&noop_out, &b.remote(&["--remote-cache-only"]))?;
    let mut noop_remote = Vec::new();
    for _ in 0..o.runs.max(3) {
        forget(&o.store, &key)?;
        forget_outputs(&o.store, &noop_out)?;
        let (r, secs) = b.build(&noop_out, &b.remote(&["--remote-cache-only"]))?;
        let run = &r["components"][0];
        ensure!(
            run["cached"] == true && run["remote"] == true,
            "the no-op did not take {c} from the remote cache: {run}"
        );
        noop_remote.push(secs);
    }

    // A check: both builds here, then both on the workers, which apply the variations.
    let (here, applied, check_local) = b.check(CHECKED, &[])?;
    let (there, applied_there, check_remote) = b.check(CHECKED, &b.remote(&[]))?;
    ensure!(
        here == there && applied == applied_there,
        "check here and on the workers disagree:\n{here:?} ({applied})\n{there:?} ({applied_there})"
    );
    let checked = ["w1", "w2"]
        .into_iter()
        .map(|id| {
            (
                id,
                b.worker_log(id).matches(&format!("built {c} (")).count(),
            )
        })
        .map(|(id, n)| format!("{id} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "check of {c} under {applied}: {} artifacts, the same verdicts here and on the workers",
        here.len()
    );
    for v in &here {
        println!("  {v}");
    }
    println!("builds of {c} by worker, all runs: {checked}");

    let (l, r) = (best(&local), best(&remote));
    let (nl, nr) = (noop_local, best(&noop_remote));
    println!();
    println!("{:<44} {:>10} {:>10} {:>7}", "", "here", "remote", "ratio");
    println!(
        "{:<44} {:>9.1}s {:>9.1}s {:>6.2}x",
        format!("{c} built (best of {})", o.runs),
        l,
        r,
        r / l
    );
    println!(
        "{:<44} {:>9.2}s {:>9.2}s {:>6.2}x",
        format!("no-op {c}: store / remote cache (download)"),
        nl,
        nr,
        nr / nl
    );
    println!(
        "{:<44} {:>9.2}s {:>9.2}s {:>6.2}x",
        "no-op with --remote, both have it",
        nl,
        noop_both,
        noop_both / nl
    );
    println!(
        "{:<44} {:>9.1}s {:>9.1}s {:>6.2}x",
        format!("check {c} (two builds, fresh)"),
        check_local,
        check_remote,
        check_remote / check_local
    );
    println!(
        "(remote: the client's build with --remote against BuildGrid 0.4.4 and two workers on \
         this machine; the no-op from the remote cache finds neither the result nor the outputs \
         in the store, and downloads and checks every output)"
    );
    Ok(())
}
