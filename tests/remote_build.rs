//! `kata-repro build --remote URL --remote-cache-only` against a real BuildGrid: the fixture Go
//! and Rust components built into one store are taken by another from the remote cache, with
//! nothing run; a blob changed in the server's storage is refused and nothing is installed; an
//! unusable remote is one usage line, with nothing written.
#![cfg(feature = "remote")]

mod common;

use std::path::Path;

use common::buildgrid::{BuildGrid, free_port};
use common::project::{AGENT_RS, HELLO_GO, Project};
use common::{assert_code, exited, items, json, string};

/// `--remote` arguments for `server`'s instance `main`, then `extra`.
fn with_remote<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--remote",
        url,
        "--remote-instance",
        "main",
        "--remote-cache-only",
    ];
    args.extend_from_slice(extra);
    args
}

fn components(out: &std::process::Output) -> Vec<serde_json::Value> {
    items(&json(out)["components"]).cloned().collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_second_store_takes_every_component_from_the_remote_cache() {
    let server = BuildGrid::start();
    let url = server.url();
    let p = Project::new(&[("hello", HELLO_GO), ("agent", AGENT_RS)]);
    let arch = std::env::consts::ARCH;

    // Built here, and given to the remote cache.
    let first = p.build("store-a", "out-a", &with_remote(&url, &["--json"]));
    assert_code(&first, 0);
    let built = components(&first);
    assert_eq!(built.len(), 2);
    assert!(built.iter().all(|c| c["cached"] == false), "{built:?}");

    // Another store runs nothing: every result comes from the remote cache, every output
    // checked against its digest, and the build is the same to the byte.
    let second = p.build("store-b", "out-b", &with_remote(&url, &["--json"]));
    assert_code(&second, 0);
    let taken = components(&second);
    assert!(
        taken
            .iter()
            .all(|c| c["cached"] == true && c["remote"] == true),
        "{taken:?}"
    );
    let (a, b) = (p.path("out-a"), p.path("out-b"));
    assert_eq!(
        read(&a.join("manifest.json")),
        read(&b.join("manifest.json"))
    );
    assert_eq!(read(&a.join("SHA256SUMS")), read(&b.join("SHA256SUMS")));
    let log = format!("logs/{arch}/agent/cargo-build.log");
    assert_eq!(read(&a.join(&log)), read(&b.join(&log)));
    let ran = std::process::Command::new(b.join(format!("{arch}/hello/hello")))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from greet none\n"
    );

    // The second store now holds the results itself.
    let again = p.build("store-b", "out-b", &with_remote(&url, &["--json"]));
    assert_code(&again, 0);
    assert!(
        components(&again)
            .iter()
            .all(|c| c["cached"] == true && c["remote"] == false)
    );

    // A blob changed in the server's storage, at the same size: refused, exit 1, no output and
    // no object of it in the third store.
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&a.join("manifest.json"))).unwrap();
    let hello = items(&manifest["artifacts"])
        .find(|x| x["path"] == format!("{arch}/hello/hello"))
        .expect("hello is an artifact");
    let hex = string(&hello["sha256"])
        .trim_start_matches("sha256:")
        .to_owned();
    let stored = server.stored(&hex);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, bytes).unwrap();
    let refused = p.build("store-c", "out-c", &with_remote(&url, &[]));
    let t = exited(&refused, 1);
    assert!(t.contains("refused") && t.contains(&hex), "{t}");
    assert!(!p.path("out-c").exists());
    assert!(!p.path(&format!("store-c/objects/sha256/{hex}")).exists());
}

#[test]
fn an_unusable_remote_is_one_usage_line_and_writes_nothing() {
    let p = Project::new(&[("hello", HELLO_GO)]);
    let error_lines = |t: &str| t.lines().filter(|l| l.contains("error")).count();

    // Nothing listens there.
    let port = free_port().to_string();
    let url = format!("grpc://127.0.0.1:{port}");
    let t = exited(&p.build("store-x", "out-x", &with_remote(&url, &[])), 2);
    assert!(t.contains(&port) && t.contains("cannot connect"), "{t}");
    assert_eq!(error_lines(&t), 1, "{t}");

    // Not a remote at all.
    let t = exited(
        &p.build("store-x", "out-x", &with_remote("http://127.0.0.1:1", &[])),
        2,
    );
    assert!(t.contains("grpc://"), "{t}");

    // An instance the server does not know.
    let server = BuildGrid::start();
    let url = server.url();
    let mut args = with_remote(&url, &[]);
    args[3] = "nope";
    let t = exited(&p.build("store-x", "out-x", &args), 2);
    assert!(t.contains("`nope`"), "{t}");
    assert_eq!(error_lines(&t), 1, "{t}");

    assert!(!p.path("store-x").exists(), "a store was made");
    assert!(!p.path("out-x").exists(), "an output was made");
}
