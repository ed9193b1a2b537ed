//! `kata-repro build --remote URL` with `kata-repro worker`s, against a real BuildGrid whose
//! scheduler runs on a private PostgreSQL: the fixture Go and Rust components built by workers
//! are the ones a local build gives, another store then takes them from the remote cache, and a
//! worker killed mid-action leaves the action to the other.
#![cfg(feature = "remote")]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::buildgrid::BuildGrid;
use common::project::{AGENT_RS, HELLO_GO, Project, hello_go_running, leak_recipe};
use common::{assert_code, exited, items, json, json_error, kata_repro};

/// A `kata-repro worker` with a store of its own, stopped (with everything it started) when
/// dropped.
struct Worker {
    child: Child,
    log: std::path::PathBuf,
}

impl Worker {
    fn start(p: &Project, server: &BuildGrid, id: &str) -> Self {
        Self::start_in(p, server, id, &format!("store-{id}"))
    }

    /// A worker using the store `store` (which a client may share).
    fn start_in(p: &Project, server: &BuildGrid, id: &str, store: &str) -> Self {
        Self::start_with(p, server, id, store, false)
    }

    /// [`Self::start_in`]; with `one_cpu`, the worker may run on CPU 0 only.
    fn start_with(p: &Project, server: &BuildGrid, id: &str, store: &str, one_cpu: bool) -> Self {
        use std::os::unix::process::CommandExt;
        let log = p.path(&format!("{id}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = p.fixture.command("worker");
        if one_cpu {
            // SAFETY: sched_setaffinity(2) on the child itself, between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .args([
                "--remote",
                &server.url(),
                "--remote-instance",
                "main",
                "--id",
                id,
            ])
            .arg("--store")
            .arg(p.path(store))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has taken an action.
    fn leased(&self) -> bool {
        self.log().contains("leased action")
    }

    /// SIGKILL to the worker and every process it started.
    fn kill(&mut self) {
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn components(out: &std::process::Output) -> Vec<serde_json::Value> {
    items(&json(out)["components"]).cloned().collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn components_built_by_workers_are_the_local_build_s_and_shared() {
    let server = BuildGrid::with_execution();
    let url = server.url();
    let p = Project::new(&[("hello", HELLO_GO), ("agent", AGENT_RS)]);
    let worker = Worker::start(&p, &server, "w1");
    let built = build_remotely(&p, "store-a", "out-a", &url, &[]).output(LIMIT);
    succeeded(&built, &[&worker], &server);
    let runs = components(&built);
    assert!(
        runs.iter()
            .all(|c| c["cached"] == false && c["remote"] == true),
        "{runs:?}"
    );
    // Built by the worker, installed here from the remote, as a local build gives it.
    let local = p.build("store-l", "out-l", &["--json"]);
    assert_code(&local, 0);
    assert_eq!(
        read(&p.path("out-a/manifest.json")),
        read(&p.path("out-l/manifest.json"))
    );
    assert!(worker.log().contains("built agent"), "{}", worker.log());

    // Another store takes every component from the remote cache: nothing is executed.
    let taken = build_remotely(&p, "store-b", "out-b", &url, &[]).output(LIMIT);
    assert_code(&taken, 0);
    assert!(
        components(&taken)
            .iter()
            .all(|c| c["cached"] == true && c["remote"] == true)
    );
    assert_eq!(
        read(&p.path("out-b/manifest.json")),
        read(&p.path("out-l/manifest.json"))
    );
}

/// `kata-repro build --remote` for instance `main` of `url`, then `extra`: killed, and the test
/// failed, if it takes longer than `limit` (an action no worker takes waits forever).
fn build_remotely(p: &Project, store: &str, out: &str, url: &str, extra: &[&str]) -> Client {
    let (stdout, stderr) = (
        p.path(&format!("{out}.stdout")),
        p.path(&format!("{out}.stderr")),
    );
    let child = p
        .command("build", store)
        .arg("--out")
        .arg(p.path(out))
        .args(["--json", "--remote", url, "--remote-instance", "main"])
        .args(extra)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Client {
        child,
        stdout,
        stderr,
    }
}

/// A client build under way.
struct Client {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Client {
    /// Its output, once it exited; killed after `limit`.
    fn output(mut self, limit: Duration) -> std::process::Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        std::process::Output {
            status,
            stdout: std::fs::read(&self.stdout).unwrap(),
            stderr: std::fs::read(&self.stderr).unwrap(),
        }
    }
}

/// How long a client build of the fixtures may take.
const LIMIT: Duration = Duration::from_secs(600);

/// Fails the test unless the client build `out` succeeded, showing what each party logged.
fn succeeded(out: &std::process::Output, workers: &[&Worker], server: &BuildGrid) {
    let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nworkers:\n{}\nserver:\n{}",
        common::text(out),
        logs.join("\n"),
        server.log()
    );
}

/// Waits up to `limit` for `done`, or panics with `what` and the logs.
fn wait_for(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not in {limit:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// hello, taking a few seconds more: long enough to kill the worker running it.
fn slow_hello() -> String {
    hello_go_running(
        r#"["sh", "sleep"]"#,
        r#"["sh", "-c", "sleep 5 && go build -trimpath -buildvcs=false -ldflags=-buildid= -o ${out}/hello ./cmd/hello"]"#,
    )
}

#[test]
fn a_worker_killed_mid_action_leaves_it_to_the_other() {
    let server = BuildGrid::with_execution();
    let url = server.url();
    let p = Project::new(&[("hello", &slow_hello())]);
    let mut workers = [
        Worker::start(&p, &server, "w1"),
        Worker::start(&p, &server, "w2"),
    ];
    let client = build_remotely(&p, "store-a", "out-a", &url, &[]);
    let logs = |w: &[Worker]| format!("w1:\n{}\nw2:\n{}", w[0].log(), w[1].log());
    wait_for(
        Duration::from_secs(180),
        "no worker took the action",
        || workers.iter().any(Worker::leased),
        || logs(&workers) + &server.log(),
    );
    // SIGKILL to the worker running it, and to its build, mid-step.
    let (dead, alive) = if workers[0].leased() { (0, 1) } else { (1, 0) };
    workers[dead].kill();

    let built = client.output(LIMIT);
    succeeded(&built, &[&workers[0], &workers[1]], &server);
    let runs = components(&built);
    assert!(
        runs[0]["remote"] == true && runs[0]["cached"] == false,
        "{runs:?}"
    );
    assert!(
        workers[alive].log().contains("built hello"),
        "{}",
        logs(&workers)
    );
    assert!(
        !workers[dead].log().contains("built hello"),
        "{}",
        logs(&workers)
    );

    // What was taken is what a local build gives, and the dead worker's store holds nothing
    // that fails its digest.
    let local = p.build("store-l", "out-l", &["--json"]);
    assert_code(&local, 0);
    assert_eq!(
        read(&p.path("out-a/manifest.json")),
        read(&p.path("out-l/manifest.json"))
    );
    let dead_store = p.path(&format!("store-w{}", dead + 1));
    let checked = kata_repro()
        .args(["store", "verify", "--store"])
        .arg(&dead_store)
        .output()
        .unwrap();
    assert_code(&checked, 0);
}

#[test]
fn a_worker_outlives_a_server_restart() {
    let mut server = BuildGrid::with_execution();
    let url = server.url();
    let p = Project::new(&[("hello", HELLO_GO)]);
    let worker = Worker::start(&p, &server, "w1");
    wait_for(
        Duration::from_secs(60),
        "the worker never served",
        || worker.log().contains("opened session"),
        || worker.log(),
    );
    // Down for longer than the bot's keepalive: its session is gone when the server is back.
    server.restart(Duration::from_secs(12));
    let built = build_remotely(&p, "store-a", "out-a", &url, &[]).output(LIMIT);
    succeeded(&built, &[&worker], &server);
    assert_eq!(components(&built)[0]["remote"], true);
    assert!(worker.log().contains("built hello"), "{}", worker.log());
    assert!(worker.log().contains("calling again"), "{}", worker.log());
    assert!(
        worker.log().contains("lost this bot's session"),
        "{}",
        worker.log()
    );
}

#[test]
fn a_leaky_recipe_built_by_a_worker_then_here_is_caught_by_diff() {
    let server = BuildGrid::with_execution();
    let url = server.url();
    let leaky = hello_go_running(
        r#"["sh", "date"]"#,
        r#"["sh", "-c", "go build -trimpath -buildvcs=false -ldflags=\"-buildid= -X main.stamp=$(date -u +%Y-%m-%dT%H:%M:%S.%N)\" -o ${out}/hello ./cmd/hello"]"#,
    );
    let p = Project::new(&[("hello", &leaky)]);
    // The worker shares the client's store, as on a machine that is both.
    let worker = Worker::start_in(&p, &server, "w1", "store-a");
    let remote = build_remotely(&p, "store-a", "out-a", &url, &[]).output(LIMIT);
    succeeded(&remote, &[&worker], &server);
    assert_eq!(components(&remote)[0]["remote"], true);
    let local = p.build("store-l", "out-l", &[]);
    assert_code(&local, 0);
    let diff = kata_repro()
        .arg("diff")
        .arg(p.path("out-a"))
        .arg(p.path("out-l"))
        .output()
        .unwrap();
    let t = exited(&diff, 1);
    let arch = std::env::consts::ARCH;
    assert!(t.contains(&format!("differs  {arch}/hello/hello")), "{t}");
    assert!(t.contains("ELF section"), "{t}");
}

/// A recipe that copies what the component `from` wrote as `file`, into `to`.
fn copy(component: &str, from: &str, file: &str, to: &str) -> String {
    format!(
        r#"
schema = 1
component = "{component}"
description = "copies what {from} wrote"
workdir = "src/runtime"
host_tools = ["sh", "cat"]
needs = ["{from}"]

[arch.x86_64]
[arch.aarch64]

[[steps]]
name = "copy"
argv = ["sh", "-c", "cat ${{needs_{from}}}/{file} > ${{out}}/{to}"]

[[outputs]]
path = "{to}"
mode = 0o644
"#
    )
}

/// How often the workers ran the action of `component`, and how often they ran its steps
/// (for its own actions, or again for one that needs it).
fn builds_of(workers: &[&Worker], component: &str) -> (usize, usize) {
    let logs: String = workers.iter().map(|w| w.log()).collect();
    (
        logs.matches(&format!("built {component} (")).count(),
        logs.matches(&format!("{component}: step 1/1")).count(),
    )
}

#[test]
fn a_check_s_builds_run_on_workers_afresh_under_its_variations() {
    let server = BuildGrid::with_execution();
    let url = server.url();
    let leak = leak_recipe("umask > ${out}/leak.txt");
    let p = Project::new(&[
        ("leak", &leak),
        ("copy", &copy("copy", "leak", "leak.txt", "copy.txt")),
        ("again", &copy("again", "copy", "copy.txt", "again.txt")),
    ]);
    let (w1, w2) = (
        Worker::start(&p, &server, "w1"),
        Worker::start(&p, &server, "w2"),
    );
    let workers = [&w1, &w2];
    let logs = || {
        workers
            .iter()
            .map(|w| w.log())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let check = || {
        p.command("check", "store-c")
            .args(["--variations", "umask", "--json"])
            .args(["--remote", &url, "--remote-instance", "main"])
            .output()
            .unwrap()
    };
    let checked = check();
    assert_eq!(
        checked.status.code(),
        Some(1),
        "{}\nworkers:\n{}",
        common::text(&checked),
        logs()
    );
    let v = json(&checked);
    let arch = std::env::consts::ARCH;
    let verdict = |path: &str| {
        let a = items(&v["artifacts"])
            .find(|a| a["path"] == format!("{arch}/{path}").as_str())
            .unwrap_or_else(|| panic!("{path}: {v}"));
        let blamed: Vec<&str> = items(&a["blame"])
            .map(|b| b["variation"].as_str().unwrap())
            .collect();
        (a["verdict"].as_str().unwrap().to_owned(), blamed.join(","))
    };
    // The workers applied the umask: the leak shows, and the components that need it, directly
    // or not, were built on the varied build's leak.
    assert_eq!(
        verdict("leak/leak.txt"),
        ("not-reproducible".into(), "umask".into())
    );
    assert_eq!(verdict("leak/clean.txt").0, "reproducible");
    assert_eq!(verdict("copy/copy.txt").0, "not-reproducible", "{v}");
    assert_eq!(verdict("again/again.txt").0, "not-reproducible", "{v}");
    // Both builds, each component, ran on the workers, and no component was built again for
    // one that needs it: its result went with the action.
    for c in ["leak", "copy", "again"] {
        assert_eq!(builds_of(&workers, c), (2, 2), "{c}:\n{}", logs());
    }
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("executing on a worker"), "{stderr}");

    // Never answered from a cache: a second check builds again.
    let again = check();
    assert_code(&again, 1);
    assert_eq!(builds_of(&workers, "leak"), (4, 4), "{}", logs());

    // The plain builds' results were shared.
    let taken = build_remotely(&p, "store-b", "out-b", &url, &[]).output(LIMIT);
    succeeded(&taken, &workers, &server);
    assert!(
        components(&taken)
            .iter()
            .all(|c| c["cached"] == true && c["remote"] == true),
        "{}",
        common::text(&taken)
    );
    assert_eq!(
        read(&p.path(&format!("out-b/{arch}/again/again.txt"))).trim(),
        "0022"
    );
}

#[test]
fn a_variation_no_worker_can_make_stops_the_check_with_the_reason() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("one CPU here: num_cpus is not applied, so no worker can lack it");
        return;
    }
    let server = BuildGrid::with_execution();
    let url = server.url();
    let leak = leak_recipe("echo x > ${out}/leak.txt");
    let p = Project::new(&[("leak", &leak)]);
    let worker = Worker::start_with(&p, &server, "w1", "store-w1", true);
    let checked = p
        .command("check", "store-c")
        .args(["--variations", "num_cpus", "--json"])
        .args(["--remote", &url, "--remote-instance", "main"])
        .output()
        .unwrap();
    let e = json_error(&checked, 2);
    assert!(
        e.contains("cannot apply the num_cpus variation") && e.contains("single CPU"),
        "{e}\nworker:\n{}",
        worker.log()
    );
    // The first build ran; the second was refused before anything was built.
    assert_eq!(builds_of(&[&worker], "leak"), (1, 1), "{}", worker.log());
}
