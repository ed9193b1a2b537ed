//! BuildGrid, the REAPI server, for the tests that talk to one: `$KATA_REPRO_BGD` (`.ci/run`
//! installs it in a venv of its own), else `bgd` on PATH.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A BuildGrid on 127.0.0.1, its CAS on disk; stopped when dropped, whatever the test did
/// (and its PostgreSQL with it, where it has one).
pub struct BuildGrid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    _postgres: Option<Postgres>,
    /// Whether it speaks TLS.
    tls: bool,
}

/// The storage and action cache every configuration has.
const STORAGE: &str = r#"storages:
  - !disk-storage &cas
    path: {cas}
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 1024
    allow-updates: true
    cache-failed-actions: false
"#;

/// A CAS and ByteStream.
const CAS_SERVICES: &str = r#"      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"#;

/// The action cache.
const AC_SERVICE: &str = r#"      - !action-cache
        cache: *ac
"#;

fn bgd() -> PathBuf {
    std::env::var_os("KATA_REPRO_BGD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("bgd"))
}

impl BuildGrid {
    /// CAS, ByteStream and an action cache, instance `main`: no database.
    pub fn start() -> Self {
        Self::with(None, "", &format!("{AC_SERVICE}{CAS_SERVICES}"))
    }

    /// CAS and ByteStream only, instance `main`: no action cache.
    pub fn cas_only() -> Self {
        Self::with(None, "", CAS_SERVICES)
    }

    /// [`Self::start`] plus Execution and Bots, instance `main`, scheduling on a private
    /// PostgreSQL: jobs go to bots whose `arch`, `kata-repro` and `host-pins` properties match.
    pub fn with_execution() -> Self {
        let postgres = Postgres::start();
        let url = postgres.url();
        let migrated = Command::new(bgd())
            .args(["migrate", "apply", &url])
            .output()
            .unwrap();
        assert!(
            migrated.status.success(),
            "bgd migrate: {}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        let scheduler = format!(
            r#"connections:
  - !sql-connection &sql
    connection-string: {url}
    pool-size: 5
    pool-timeout: 30
    max-overflow: 10
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    action-cache: *ac
    storage: *cas
    property-set: !dynamic-property-set
      match-property-keys: [arch, kata-repro, host-pins]
    bot-session-keepalive-timeout: 10
"#
        );
        let execution = r#"      - !execution
        scheduler: *scheduler
        operation-stream-keepalive-timeout: 5
"#;
        Self::with(
            Some(postgres),
            &scheduler,
            &format!("{AC_SERVICE}{execution}{CAS_SERVICES}"),
        )
    }

    /// [`Self::start`] over TLS: the server shows `cert` (with `key`) and asks clients for a
    /// certificate signed by `client_ca`.
    pub fn start_tls(cert: &Path, key: &Path, client_ca: &Path) -> Self {
        let credentials = format!(
            "    insecure-mode: false\n    credentials:\n      tls-server-key: {}\n      \
             tls-server-cert: {}\n      tls-client-certs: {}\n",
            key.display(),
            cert.display(),
            client_ca.display()
        );
        let mut server = Self::with_channel(
            None,
            "",
            &format!("{AC_SERVICE}{CAS_SERVICES}"),
            &credentials,
        );
        server.tls = true;
        server
    }

    fn with(postgres: Option<Postgres>, scheduler: &str, services: &str) -> Self {
        Self::with_channel(postgres, scheduler, services, "    insecure-mode: true\n")
    }

    fn with_channel(
        postgres: Option<Postgres>,
        scheduler: &str,
        services: &str,
        security: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("bgd.yml");
        let storage = STORAGE.replace("{cas}", &dir.path().join("cas").display().to_string());
        std::fs::write(
            &config,
            format!(
                r#"server:
  - !channel
    address: "127.0.0.1:{port}"
{security}{storage}{scheduler}instances:
  - name: main
    services:
{services}"#
            ),
        )
        .unwrap();
        let child = spawn(&config, &dir.path().join("bgd.log"));
        let mut server = Self {
            child,
            port,
            dir,
            _postgres: postgres,
            tls: false,
        };
        server.wait_listening();
        server
    }

    /// Stops the server (as a crash would), waits `down`, and starts it again on the same
    /// port, storage and database: its bots must find their way back.
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let log = self.dir.path().join("bgd.log");
        self.child = spawn(&self.dir.path().join("bgd.yml"), &log);
        self.wait_listening();
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

    /// Where it listens: `grpc://127.0.0.1:PORT`, or `grpcs://` over TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        format!("{scheme}://127.0.0.1:{}", self.port)
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

/// `bgd server start CONFIG`, its output appended to `log`.
fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let bgd = bgd();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(&bgd)
        .args(["server", "start"])
        .arg(config)
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
        })
}

/// A port nothing listens on, from the kernel's ephemeral range.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private PostgreSQL cluster on 127.0.0.1 (Debian's `postgresql`, `/usr/lib/postgresql/N`),
/// trusting local connections; run as `nobody` where the tests run as root, since PostgreSQL
/// refuses root. Stopped and removed when dropped.
pub struct Postgres {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").is_file())
            .expect("no /usr/lib/postgresql/N/bin/initdb: install postgresql (.ci/run does)");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let root = unsafe { libc::geteuid() } == 0;
        let as_nobody = |cmd: &mut Command| {
            if root {
                cmd.uid(65534).gid(65534);
            }
        };
        if root {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "bgd", "--auth=trust", "--no-sync"])
            .stdout(Stdio::null());
        as_nobody(&mut initdb);
        let made = initdb.output().unwrap();
        assert!(
            made.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_nobody(&mut postgres);
        let child = postgres.spawn().unwrap();
        let started = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "postgres never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        started
    }

    /// The database `postgres`, as the superuser `bgd`, through psycopg2: BuildGrid 0.4.4's
    /// notifiers poll psycopg2 connections, and SQLAlchemy 2.1 picks psycopg 3 for a bare
    /// `postgresql://`.
    pub fn url(&self) -> String {
        format!("postgresql+psycopg2://bgd@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    /// An immediate shutdown (SIGQUIT): the server stops its backends and exits at once.
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
