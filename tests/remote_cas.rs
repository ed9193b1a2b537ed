//! The REAPI client against a real BuildGrid: blobs and action results round-trip, a blob
//! corrupted in the server's storage is refused, and a wrong address or instance is a usage
//! error. BuildGrid is `$KATA_REPRO_BGD` (`.ci/run` installs it in a venv of its own), else `bgd`
//! on PATH.
#![cfg(feature = "remote")]

mod common;

use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::buildgrid::{BuildGrid, free_port};
use kata_repro::remote::{Blob, Endpoint, Remote, RemoteError};

fn endpoint(server: &BuildGrid, instance: &str) -> Endpoint {
    server
        .url()
        .parse::<Endpoint>()
        .unwrap()
        .with_instance(instance)
}

fn connect(server: &BuildGrid) -> Remote {
    Remote::connect(endpoint(server, "main")).unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
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

    // A file is sent a chunk at a time and read back into a file; a file that is not the blob
    // it is named as is not sent.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image");
    let image: Vec<u8> = (0..(7u32 << 20) + 3).map(|i| (i % 241) as u8).collect();
    std::fs::write(&file, &image).unwrap();
    let named = Blob::of(&image);
    remote.upload_files(&[(named, &file)]).unwrap();
    let mut back = std::fs::File::create(dir.path().join("back")).unwrap();
    remote.download_into(named, &mut back).unwrap();
    drop(back);
    assert_eq!(std::fs::read(dir.path().join("back")).unwrap(), image);
    let other = Blob::of(b"something else entirely, at another size");
    let e = remote.upload_files(&[(other, &file)]).unwrap_err();
    assert!(e.to_string().contains("store verify"), "{e}");

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
        let file = server.stored(&blob.digest.to_hex());
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
    let e = Remote::connect(endpoint(&server, "nope"))
        .err()
        .expect("an unknown instance was accepted");
    assert!(e.is_usage(), "{e:?}");
    assert!(e.to_string().contains("`nope`"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}

/// A TCP proxy on 127.0.0.1 to a server's port that cuts each of its first `cuts` connections
/// once `after` bytes have gone through it, either way. Stopped, with every connection it
/// holds, when dropped.
struct Cutter {
    port: u16,
    accepted: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cutter {
    fn start(target: u16, after: u64, cuts: usize) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, cut) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let thread = {
            let (accepted, cut, stop, open) =
                (accepted.clone(), cut.clone(), stop.clone(), open.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    client.set_nonblocking(false).unwrap();
                    let server = TcpStream::connect((Ipv4Addr::LOCALHOST, target)).unwrap();
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let limit = if n < cuts { after } else { u64::MAX };
                    open.lock()
                        .unwrap()
                        .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                    let passed = Arc::new(AtomicU64::new(0));
                    let this_cut = Arc::new(AtomicBool::new(false));
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let (passed, this_cut, cut) =
                            (passed.clone(), this_cut.clone(), cut.clone());
                        std::thread::spawn(move || pump(from, to, limit, &passed, &this_cut, &cut));
                    }
                }
            })
        };
        Self {
            port,
            accepted,
            cut,
            stop,
            open,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> Endpoint {
        format!("grpc://127.0.0.1:{}", self.port)
            .parse::<Endpoint>()
            .unwrap()
            .with_instance("main")
    }

    fn cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, or until `passed` (the connection's bytes, both
/// ways) goes over `limit`: then both are shut down and the cut counted once.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    limit: u64,
    passed: &AtomicU64,
    this_cut: &AtomicBool,
    cut: &AtomicUsize,
) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if passed.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit {
            if !this_cut.swap(true, Ordering::SeqCst) {
                cut.fetch_add(1, Ordering::SeqCst);
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_stream_whose_connection_breaks_is_resumed_or_sent_again() {
    let server = BuildGrid::start();
    let direct = connect(&server);
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let large: Vec<u8> = (0..9u32 << 20).map(|i| (i % 239) as u8).collect();
    let blob = direct.upload(&[&large]).unwrap()[0];

    // A read whose connection is cut after 3 MiB goes on where it stopped.
    let cutter = Cutter::start(port, 3 << 20, 1);
    let remote = Remote::connect(cutter.endpoint()).unwrap();
    assert_eq!(remote.download(blob).unwrap(), large);
    assert_eq!(cutter.cut(), 1);
    assert!(cutter.accepted() >= 2);

    // A file whose upload is cut after 3 MiB is sent again, whole.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image");
    let image: Vec<u8> = (0..7u32 << 20).map(|i| (i % 233) as u8).collect();
    std::fs::write(&file, &image).unwrap();
    let named = Blob::of(&image);
    let cutter = Cutter::start(port, 3 << 20, 1);
    let remote = Remote::connect(cutter.endpoint()).unwrap();
    remote.upload_files(&[(named, &file)]).unwrap();
    assert_eq!(cutter.cut(), 1);
    assert_eq!(direct.download(named).unwrap(), image);

    // An upload cut every time fails after the retries, naming the call; the server has
    // nothing of it.
    let other: Vec<u8> = (0..7u32 << 20).map(|i| (i % 229) as u8).collect();
    std::fs::write(&file, &other).unwrap();
    let named = Blob::of(&other);
    let cutter = Cutter::start(port, 3 << 20, usize::MAX);
    let remote = Remote::connect(cutter.endpoint()).unwrap();
    let e = remote.upload_files(&[(named, &file)]).unwrap_err();
    assert!(e.to_string().contains("ByteStream.Write"), "{e}");
    assert!(cutter.cut() >= 1, "{e}");
    assert_eq!(direct.find_missing(&[named]).unwrap(), [named]);
}
