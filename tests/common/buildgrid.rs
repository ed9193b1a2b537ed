//! BuildGrid, the REAPI server, for the tests that talk to one: `$KATA_REPRO_BGD` (`.ci/run`
//! installs it in a venv of its own), else `bgd` on PATH.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A BuildGrid serving CAS, ByteStream and an action cache from disk on 127.0.0.1; stopped when
/// dropped, whatever the test did.
pub struct BuildGrid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl BuildGrid {
    pub fn start() -> Self {
        let bgd = std::env::var_os("KATA_REPRO_BGD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("bgd"));
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("bgd.yml");
        std::fs::write(
            &config,
            format!(
                r#"server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
storages:
  - !disk-storage &cas
    path: {cas}
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 1024
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: main
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"#,
                cas = dir.path().join("cas").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("bgd.log")).unwrap();
        let child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; set KATA_REPRO_BGD to BuildGrid's bgd (pip install buildgrid in a \
                     venv; .ci/run does)",
                    bgd.display()
                )
            });
        let mut server = Self { child, port, dir };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("bgd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "bgd never listened:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    /// Where it listens: `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// The file the disk storage keeps a blob (by its sha256, in hex) in.
    pub fn stored(&self, hex: &str) -> PathBuf {
        walkdir::WalkDir::new(self.dir.path().join("cas"))
            .into_iter()
            .filter_map(Result::ok)
            .find(|e| e.file_type().is_file() && e.path().to_string_lossy().ends_with(&hex[2..]))
            .map(|e| e.path().to_owned())
            .unwrap_or_else(|| panic!("{hex} is not in {}", self.dir.path().display()))
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on, from the kernel's ephemeral range.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
