//! One store, several kata-repro processes: a reader never waits for a build, builds of
//! different components run at the same time and record what sequential builds record, and a
//! build killed half-way leaves nothing a later process takes for an entry.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::project::{AGENT_RS, HELLO_GO, Project};
use common::{assert_code, items, text};

/// A component whose first step sleeps for `token` seconds: the token names this test, so
/// that no other process on the host has the same command line.
fn slow_recipe(token: &str) -> String {
    format!(
        r#"
schema = 1
component = "slow"
description = "a long step, then one output"
workdir = "src/runtime"
host_tools = ["sh", "sleep"]

[arch.x86_64]
[arch.aarch64]

[[steps]]
name = "wait"
argv = ["sleep", "{token}"]

[[steps]]
name = "write"
argv = ["sh", "-c", "echo done > ${{out}}/done"]

[[outputs]]
path = "done"
mode = 0o644
"#
    )
}

/// Far longer than any of the commands takes alone, far shorter than the slow step.
const LIMIT: Duration = Duration::from_secs(300);

/// Whether a process whose command line is exactly `sleep <token>` runs.
fn sleeping(token: &str) -> bool {
    let cmdline = format!("sleep\0{token}\0").into_bytes();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|s| s.parse::<u32>().is_ok())
            && std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline)
    })
}

/// Kills the child on every exit path. Its stdout and stderr go to files, so that a chatty
/// child never blocks on a full pipe while the test polls it.
struct Running {
    child: Option<Child>,
    logs: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(mut cmd: Command) -> Running {
    let logs = tempfile::tempdir().unwrap();
    let file = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
    let child = cmd
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .unwrap();
    Running {
        child: Some(child),
        logs,
    }
}

/// The child's output, once it exits within `limit`; killed, and the test failed, if not.
fn finish_within(mut run: Running, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    let child = run.child.as_mut().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < limit,
            "{what} did not finish within {limit:?}: it waited for the store"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    run.child = None;
    let read = |name: &str| std::fs::read(run.logs.path().join(name)).unwrap();
    Output {
        status,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

/// The component records of a build's manifest, by name.
fn components(out: &Path) -> Vec<(String, serde_json::Value)> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    items(&m["components"])
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

#[test]
fn readers_and_other_builds_go_on_while_a_build_holds_the_store() {
    let token = format!("600.{}", std::process::id());
    let p = Project::new(&[
        ("hello", HELLO_GO),
        ("agent", AGENT_RS),
        ("slow", &slow_recipe(&token)),
    ]);

    // The reference: both components built one after the other, in a store of their own.
    let seq = p.build("store-seq", "out-seq", &["--component", "hello,agent"]);
    assert_code(&seq, 0);

    // A build that holds the shared store open in its long step.
    let mut slow = p.command("build", "store");
    slow.arg("--out")
        .arg(p.path("out-slow"))
        .args(["--component", "slow"]);
    let slow = spawn(slow);
    let start = Instant::now();
    while !sleeping(&token) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "control: the slow build never reached its step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A reader: it verifies every input and finishes while the build goes on.
    let mut verify = p.fixture.lockfile_command("verify");
    verify.arg("--offline");
    let verify = finish_within(spawn(verify), LIMIT, "verify");
    // Nothing is in the store yet but what the slow build fetched: the offline verify finds
    // the crates and modules missing (exit 1), which is an answer, not a wait.
    assert!(
        matches!(verify.status.code(), Some(0 | 1)),
        "{}",
        text(&verify)
    );

    // Two builds of other components, at the same time, on the same store.
    let build = |component: &str, out: &str| {
        let mut cmd = p.command("build", "store");
        cmd.arg("--out")
            .arg(p.path(out))
            .args(["--component", component]);
        spawn(cmd)
    };
    let hello = build("hello", "out-hello");
    let agent = build("agent", "out-agent");
    let hello = finish_within(hello, LIMIT, "the hello build");
    let agent = finish_within(agent, LIMIT, "the agent build");
    assert_code(&hello, 0);
    assert_code(&agent, 0);
    assert!(
        sleeping(&token),
        "control: the slow build still holds its step while the others finished"
    );

    // The same as the sequential builds, component by component.
    let reference = components(&p.path("out-seq"));
    let mut concurrent = components(&p.path("out-hello"));
    concurrent.extend(components(&p.path("out-agent")));
    concurrent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        concurrent.iter().map(|c| &c.0).collect::<Vec<_>>(),
        ["agent", "hello"]
    );
    for (name, record) in &concurrent {
        let (_, want) = reference.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(record, want, "{name} differs from its sequential build");
    }

    // And with everything in the store, the offline reader verifies it all while the slow
    // build still runs.
    let mut verify = p.fixture.lockfile_command("verify");
    verify.arg("--offline");
    let verify = finish_within(spawn(verify), LIMIT, "verify");
    assert_code(&verify, 0);
    assert!(sleeping(&token), "control: the slow build still runs");

    // Killed half-way: its scratch is swept by the next process that has the store alone, and
    // no result of it is recorded.
    drop(slow);
    let start = Instant::now();
    while sleeping(&token) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the killed build's step outlived it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.fixture.staging_entries() > 0, "control: the scratch left");
    assert!(
        !p.path("out-slow").exists(),
        "a killed build writes no output"
    );
    let again = p.build("store", "out-again", &["--component", "hello"]);
    assert_code(&again, 0);
    assert_eq!(p.fixture.staging_entries(), 0);
}

#[test]
fn store_verify_re_hashes_every_object_and_removes_the_damaged() {
    let f = common::Fixture::new();
    assert_code(&f.fetch(&[]), 0);
    let store_verify = |store: &Path| {
        f.command("store")
            .args(["verify", "--store"])
            .arg(store)
            .arg("--json")
            .output()
            .unwrap()
    };
    let out = store_verify(&f.store);
    assert_code(&out, 0);
    let v = common::json(&out);
    let objects = v["objects"].as_u64().unwrap();
    assert!(objects >= 2, "{v}");

    // One object's bytes changed under its name: reported with both digests, and removed.
    let dir = f.store.join("objects/sha256");
    let victim = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(&victim, b"tampered").unwrap();
    let out = store_verify(&f.store);
    assert_code(&out, 1);
    let v = common::json(&out);
    let damaged: Vec<_> = items(&v["damaged"]).collect();
    assert_eq!(damaged.len(), 1, "{v}");
    assert_eq!(damaged[0]["name"], name.as_str());
    assert_eq!(
        damaged[0]["actual"],
        common::sha256_hex(b"tampered").as_str()
    );
    assert!(!victim.exists());
    // In text, the object and what happens next are named.
    std::fs::write(&victim, b"tampered").unwrap();
    let out = f
        .command("store")
        .args(["verify", "--store"])
        .arg(&f.store)
        .output()
        .unwrap();
    assert_code(&out, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("damaged: objects/sha256/{name}")) && stdout.contains("removed"),
        "{stdout}"
    );
    let out = store_verify(&f.store);
    assert_code(&out, 0);
    assert_eq!(common::json(&out)["objects"].as_u64(), Some(objects - 1));

    // A store that cannot be opened is bad input.
    let file = f.root().join("not-a-store");
    std::fs::write(&file, b"").unwrap();
    let out = store_verify(&file);
    assert_code(&out, 2);
}

/// A component that reads `hello`'s output.
const COPY_HELLO: &str = r#"
schema = 1
component = "copy"
description = "reads another component's output"
workdir = "src/runtime"
needs = ["hello"]
host_tools = ["sh", "cp"]

[arch.x86_64]
[arch.aarch64]

[[steps]]
name = "copy"
argv = ["sh", "-c", "cp ${needs_hello}/hello ${out}/hello-copy && echo copied >> ${out}/hello-copy"]

[[outputs]]
path = "hello-copy"
mode = 0o755
"#;

/// The one object a component's result names.
fn object_of(p: &Project, out: &str, component: &str) -> std::path::PathBuf {
    let arch = std::env::consts::ARCH;
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path(&format!("{out}/manifest.json"))).unwrap())
            .unwrap();
    let a = items(&m["artifacts"])
        .find(|a| {
            a["path"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{arch}/{component}/"))
        })
        .unwrap();
    p.path("store/objects/sha256")
        .join(a["sha256"].as_str().unwrap())
}

fn cached(out: &Output) -> Vec<(String, bool)> {
    let v = common::json(out);
    items(&v["components"])
        .map(|c| {
            (
                c["component"].as_str().unwrap().to_owned(),
                c["cached"] == true,
            )
        })
        .collect()
}

#[test]
fn a_no_op_build_trusts_names_and_sizes_and_store_verify_the_rest() {
    let p = Project::new(&[("hello", HELLO_GO), ("copy", COPY_HELLO)]);
    let first = p.build("store", "out", &["--json"]);
    assert_code(&first, 0);

    // Every phase of a no-op is timed.
    let again = p.build("store", "out", &["--json"]);
    assert_code(&again, 0);
    assert_eq!(
        cached(&again),
        [("hello".to_owned(), true), ("copy".to_owned(), true)]
    );
    let v = common::json(&again);
    let phases: Vec<&str> = items(&v["phases"])
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "open",
            "preflight",
            "keys",
            "store checks",
            "inputs",
            "steps and installs",
            "manifest",
            "records",
            "output"
        ]
    );
    assert!(items(&v["phases"]).all(|p| p["seconds"].as_f64().unwrap() >= 0.0));

    // An output cut short no longer has its recorded size: built again.
    let hello = object_of(&p, "out", "hello");
    let good = std::fs::read(&hello).unwrap();
    std::fs::write(&hello, &good[..good.len() / 2]).unwrap();
    let rebuilt = p.build("store", "out", &["--json"]);
    assert_code(&rebuilt, 0);
    assert_eq!(cached(&rebuilt)[0], ("hello".to_owned(), false));
    assert_eq!(std::fs::read(&hello).unwrap(), good);

    // Damaged in place, at the same size: a no-op takes the result on its name and size ...
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&hello, &bad).unwrap();
    let noop = p.build("store", "out", &["--json"]);
    assert_code(&noop, 0);
    assert_eq!(cached(&noop)[0], ("hello".to_owned(), true));
    // ... but a step never reads it: copy, built again, finds hello's output damaged.
    let copy = object_of(&p, "out", "copy");
    std::fs::remove_file(&copy).unwrap();
    let out = p.build("store", "out-copy", &[]);
    assert_code(&out, 1);
    let t = text(&out);
    assert!(
        t.contains("its stored copy no longer hashes as the result of its build records")
            && t.contains("kata-repro store verify"),
        "{t}"
    );
    // And `store verify` finds it, and removes it, so that the next build makes it again.
    let verify = p
        .fixture
        .command("store")
        .args(["verify", "--store"])
        .arg(p.path("store"))
        .output()
        .unwrap();
    assert_code(&verify, 1);
    assert!(!hello.exists());
    let fixed = p.build("store", "out", &["--json"]);
    assert_code(&fixed, 0);
    assert_eq!(
        cached(&fixed),
        [("hello".to_owned(), false), ("copy".to_owned(), false)]
    );
    assert_eq!(std::fs::read(&hello).unwrap(), good);
}
