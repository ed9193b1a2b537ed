//! `kata-repro build --remote URL` with `kata-repro worker`s, against a real BuildGrid whose
//! scheduler runs on a private PostgreSQL: the fixture Go and Rust components built by workers
//! are the ones a local build gives, another store then takes them from the remote cache, and a
//! worker killed mid-action leaves the action to the other.
#![cfg(feature = "remote")]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::buildgrid::BuildGrid;
use common::project::{AGENT_RS, HELLO_GO, Project};
use common::{assert_code, items, json};

/// A `kata-repro worker` with a store of its own, stopped (with everything it started) when
/// dropped.
struct Worker {
    child: Child,
    log: std::path::PathBuf,
}

impl Worker {
    fn start(p: &Project, server: &BuildGrid, id: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let log = p.path(&format!("{id}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = p
            .fixture
            .command("worker")
            .args([
                "--remote",
                &server.url(),
                "--remote-instance",
                "main",
                "--id",
                id,
            ])
            .arg("--store")
            .arg(p.path(&format!("store-{id}")))
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
    let remote = ["--remote", url.as_str(), "--remote-instance", "main"];

    let built = p.build("store-a", "out-a", &[&["--json"][..], &remote].concat());
    assert_eq!(
        built.status.code(),
        Some(0),
        "{}\nworker:\n{}\nserver:\n{}",
        common::text(&built),
        worker.log(),
        server.log()
    );
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
    let taken = p.build("store-b", "out-b", &[&["--json"][..], &remote].concat());
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
