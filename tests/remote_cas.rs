//! The REAPI client against a real BuildGrid: blobs and action results round-trip, a blob
//! corrupted in the server's storage is refused, and a wrong address or instance is a usage
//! error. BuildGrid is `$KATA_REPRO_BGD` (`.ci/run` installs it in a venv of its own), else `bgd`
//! on PATH.
#![cfg(feature = "remote")]

mod common;

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
