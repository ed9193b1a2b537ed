//! The step sandbox, tried from inside a real step. Each check has a positive control: the same
//! command run on the host, outside the sandbox, must succeed, so that a check cannot pass only
//! because the command could never work.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kata_repro::sandbox::{self, ROOT, Sandbox, Step};

/// Runs `script` with `sh -c` inside a step (new namespaces, read-only host), returning its
/// exit code and log.
fn inside(script: &str) -> (i32, String) {
    let isolation = sandbox::isolation(false).expect("steps can be isolated here");
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let sandbox = Sandbox::new(&scratch, isolation);
    let log = dir.path().join("step.log");
    let env = BTreeMap::from([(
        "PATH".to_owned(),
        "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_owned(),
    )]);
    let run = sandbox
        .run(&Step {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env,
            cwd: ROOT.into(),
            log: log.clone(),
        })
        .unwrap();
    (
        run.status.code().unwrap_or(-1),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// The same script on the host.
fn outside(script: &str) -> (i32, String) {
    let out = Command::new("/bin/sh")
        .args(["-c", script])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Connects to a Unix socket or a TCP address with Python (on the read-only host): exit 0 when
/// the connection is made.
fn connect(target: &str) -> String {
    let code = if target.starts_with('/') {
        format!(
            "import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect({target:?})"
        )
    } else {
        let (host, port) = target.rsplit_once(':').unwrap();
        format!("import socket; s = socket.create_connection(({host:?}, {port}), timeout=3)")
    };
    format!("python3 -c '{code}'")
}

/// The host connects to `target` before and after a step tries to, and the step cannot
/// (`what` names the target in the failure).
fn assert_only_the_host_connects(target: &str, what: &str) {
    let script = connect(target);
    let (code, log) = outside(&script);
    assert_eq!(code, 0, "control: the host connects: {log}");
    let (code, log) = inside(&script);
    assert_ne!(code, 0, "the step reached {what}: {log}");
    let (code, log) = outside(&script);
    assert_eq!(code, 0, "control: the host still connects: {log}");
}

#[test]
fn a_step_cannot_see_host_processes() {
    let mut host = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = host.id();
    let script = format!("kill -0 {pid}");
    assert_eq!(
        outside(&script).0,
        0,
        "control: the host sees its own process"
    );
    let (code, log) = inside(&format!("{script} && echo SEEN; echo pid $$"));
    host.kill().unwrap();
    host.wait().unwrap();
    assert!(
        !log.contains("SEEN"),
        "the step signalled a host process: {log}"
    );
    assert_ne!(code, -1);
    // The step's shell is the only process of its namespace besides its init, and /proc is
    // the namespace's own.
    let (code, log) = inside("ls /proc | grep -c '^[0-9]*$'");
    assert_eq!(code, 0, "{log}");
    let count: usize = log.trim().parse().unwrap_or(usize::MAX);
    assert!(count <= 4, "the step sees {count} processes: {log}");
}

#[test]
fn a_step_cannot_reach_a_host_unix_socket() {
    assert_socket_unreachable_under(Path::new("/run"));
}

#[test]
fn a_step_cannot_reach_a_host_unix_socket_in_var_tmp() {
    assert_socket_unreachable_under(Path::new("/var/tmp"));
}

/// Listens on a Unix socket under the host's `parent`, which the step must neither reach nor see.
fn assert_socket_unreachable_under(parent: &Path) {
    let dir = parent.join(format!("kata-repro-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Remove(dir.clone());
    // Never accepted: the kernel completes a connection into the listen backlog, and the
    // listener stays open until the end, so that only the sandbox can refuse the step.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let path_text = path.to_str().unwrap().to_owned();
    assert_only_the_host_connects(&path_text, "a host socket");
    let (code, log) = inside(&format!(
        "ls -A {} 2>&1; test -e {path_text}",
        parent.display()
    ));
    assert_ne!(code, 0, "the step sees {path_text}: {log}");
    drop(listener);
}

#[test]
fn a_step_cannot_remount_or_write_the_host() {
    let probe = Path::new("/etc").join(format!("kata-repro-test-{}", std::process::id()));
    let write = format!("touch {}", probe.display());
    let (code, log) = outside(&write);
    assert_eq!(code, 0, "control: the host writes /etc: {log}");
    std::fs::remove_file(&probe).unwrap();
    let (code, log) = inside(&format!(
        "mount -o remount,rw / 2>&1 && echo REMOUNTED; {write} 2>&1 && echo WROTE; exit 0"
    ));
    let wrote = probe.exists();
    let _ = std::fs::remove_file(&probe);
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains("REMOUNTED") && !log.contains("WROTE") && !wrote,
        "the step changed the host: {log}"
    );
    // Nor can it give itself back what it was denied.
    let (code, log) = inside("grep -E '^Cap(Eff|Bnd)' /proc/self/status");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.lines().all(|l| l.ends_with("0000000000000000")),
        "the step holds capabilities: {log}"
    );
}

#[test]
fn a_step_cannot_reach_a_host_tcp_listener() {
    // Never accepted, and open until the end: see a_step_cannot_reach_a_host_unix_socket.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert_only_the_host_connects(&addr, &addr);
    drop(listener);
}

/// The command line of a process the step under `run_a_step_until_killed` starts: a `sleep`
/// whose duration names this test process, so that no other process on the host matches.
fn step_sleep(token: &str) -> Vec<u8> {
    format!("sleep\0{token}\0").into_bytes()
}

/// Host pids of the processes whose command line is `cmdline`.
fn processes(cmdline: &[u8]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == cmdline) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `limit` for `done`.
fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    done()
}

/// Run by `a_step_dies_with_the_process_that_runs_it` in a child process of its own, which that
/// test then terminates; it does nothing when run any other way.
#[test]
#[ignore = "run by a_step_dies_with_the_process_that_runs_it"]
fn run_a_step_until_killed() {
    if let Ok(token) = std::env::var("KATA_REPRO_TEST_STEP_TOKEN") {
        inside(&format!("sleep {token} & sleep {token}; wait"));
    }
}

#[test]
fn a_step_dies_with_the_process_that_runs_it() {
    let token = format!("3000.{}", std::process::id());
    let cmdline = step_sleep(&token);
    /// Kills whatever of the step outlived the test, on every exit path.
    struct KillLeftovers(Vec<u8>);
    impl Drop for KillLeftovers {
        fn drop(&mut self) {
            for pid in processes(&self.0) {
                // SAFETY: a plain signal to a pid read from /proc.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
    let _cleanup = KillLeftovers(cmdline.clone());
    let mut runner = Command::new(std::env::current_exe().unwrap())
        .args([
            "run_a_step_until_killed",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env("KATA_REPRO_TEST_STEP_TOKEN", &token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = eventually(std::time::Duration::from_secs(30), || {
        processes(&cmdline).len() == 2
    });
    // As `kata-repro` is stopped: SIGTERM, with its default action.
    // SAFETY: a plain signal to the child this test started.
    unsafe { libc::kill(runner.id() as libc::pid_t, libc::SIGTERM) };
    runner.wait().unwrap();
    assert!(running, "control: the step's two processes run on the host");
    let gone = eventually(std::time::Duration::from_secs(10), || {
        processes(&cmdline).is_empty()
    });
    assert!(
        gone,
        "the step's processes {:?} outlived the process that ran it",
        processes(&cmdline)
    );
}
