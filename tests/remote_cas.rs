//! The REAPI client against a real BuildGrid: blobs and action results round-trip, a blob
//! corrupted in the server's storage is refused, and a wrong address or instance is a usage
//! error. BuildGrid is `$KATA_REPRO_BGD` (`.ci/run` installs it in a venv of its own), else `bgd`
//! on PATH.
#![cfg(feature = "remote")]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kata_repro::remote::{Blob, Endpoint, Remote, RemoteError};

/// A BuildGrid serving CAS, ByteStream and an action cache from disk on 127.0.0.1; stopped when
/// dropped, whatever the test did.
struct BuildGrid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl BuildGrid {
    fn start() -> Self {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    fn endpoint(&self, instance: &str) -> Endpoint {
        format!("grpc://127.0.0.1:{}", self.port)
            .parse::<Endpoint>()
            .unwrap()
            .with_instance(instance)
    }

    /// The file the disk storage keeps a blob in.
    fn stored(&self, blob: Blob) -> PathBuf {
        let hex = blob.digest.to_hex();
        walkdir::WalkDir::new(self.dir.path().join("cas"))
            .into_iter()
            .filter_map(Result::ok)
            .find(|e| e.file_type().is_file() && e.path().to_string_lossy().ends_with(&hex[2..]))
            .map(|e| e.path().to_owned())
            .unwrap_or_else(|| panic!("{blob} is not in {}", self.dir.path().display()))
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on, from the kernel's ephemeral range.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(server: &BuildGrid) -> Remote {
    Remote::connect(server.endpoint("main")).unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
}

#[test]
fn blobs_and_action_results_round_trip_and_a_corrupted_blob_is_refused() {
    let server = BuildGrid::start();
    let remote = connect(&server);
    let small = b"hello, cas".to_vec();
    // Larger than a batch: it goes through ByteStream both ways.
    let large: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();
    let empty: Vec<u8> = Vec::new();
    let blobs = remote.upload(&[&small, &large, &empty]).unwrap();
    assert_eq!(blobs[0], Blob::of(&small));
    assert!(remote.find_missing(&blobs).unwrap().is_empty());
    assert_eq!(remote.download(blobs[0]).unwrap(), small);
    assert_eq!(remote.download(blobs[1]).unwrap(), large);
    assert_eq!(remote.download(blobs[2]).unwrap(), empty);
    // Uploading again sends nothing new and names the same blobs.
    assert_eq!(remote.upload(&[&small]).unwrap()[0], blobs[0]);

    let absent = Blob::of(b"never uploaded");
    assert_eq!(remote.find_missing(&[absent]).unwrap(), vec![absent]);
    assert!(matches!(
        remote.download(absent),
        Err(RemoteError::Missing { .. })
    ));

    // The action cache: nothing, then what was written.
    let action = Blob::of(b"an action");
    assert!(remote.get_action_result(action).unwrap().is_none());
    assert!(remote.cache_writable());
    let result = bazel_remote_apis::build::bazel::remote::execution::v2::ActionResult {
        exit_code: 0,
        stdout_digest: Some(
            bazel_remote_apis::build::bazel::remote::execution::v2::Digest {
                hash: blobs[0].digest.to_hex(),
                size_bytes: blobs[0].size as i64,
            },
        ),
        ..Default::default()
    };
    remote.update_action_result(action, result.clone()).unwrap();
    let got = remote.get_action_result(action).unwrap().expect("cached");
    assert_eq!(got.stdout_digest, result.stdout_digest);

    // A blob changed in the server's storage, same size: refused on download, both ways.
    for blob in [blobs[0], blobs[1]] {
        let file = server.stored(blob);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
        match remote.download(blob) {
            Err(e @ RemoteError::Corrupt { .. }) => {
                assert!(!e.is_usage());
                assert!(e.to_string().contains(&blob.digest.to_hex()), "{e}");
            }
            other => panic!("{blob}: a corrupted blob was not refused: {other:?}"),
        }
    }
}

#[test]
fn a_wrong_address_or_instance_is_one_clear_usage_error() {
    // Nothing listens there.
    let port = free_port();
    let e = Remote::connect(format!("grpc://127.0.0.1:{port}").parse().unwrap())
        .err()
        .expect("connected to nothing");
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
    assert!(
        e.is_usage() && e.to_string().contains(&port.to_string()),
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 1, "{e}");

    let server = BuildGrid::start();
    let e = Remote::connect(server.endpoint("nope"))
        .err()
        .expect("an unknown instance was accepted");
    assert!(e.is_usage(), "{e:?}");
    assert!(e.to_string().contains("`nope`"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}
