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

    // Remote execution asked of a server that only caches.
    let t = exited(
        &p.build(
            "store-x",
            "out-x",
            &["--remote", &url, "--remote-instance", "main"],
        ),
        2,
    );
    assert!(
        t.contains("remote execution") && t.contains("--remote-cache-only"),
        "{t}"
    );
    assert_eq!(error_lines(&t), 1, "{t}");

    // A server with a CAS and no action cache.
    let cas_only = BuildGrid::cas_only();
    let t = exited(
        &p.build("store-x", "out-x", &with_remote(&cas_only.url(), &[])),
        2,
    );
    assert!(t.contains("does not offer"), "{t}");
    assert_eq!(error_lines(&t), 1, "{t}");

    assert!(!p.path("store-x").exists(), "a store was made");
    assert!(!p.path("out-x").exists(), "an output was made");
}

#[test]
fn a_worker_offers_no_host_pins_this_host_does_not_hold() {
    let p = Project::new(&[("hello", HELLO_GO)]);
    let (version, arch) = common::dpkg_installed("dash");
    let lock = std::fs::read_to_string(&p.fixture.lockfile).unwrap();
    let pinned = |v: &str| {
        let path = p.path(&format!("pinned-{v}.toml"));
        std::fs::write(
            &path,
            format!(
                "{lock}\n[host]\nos = \"debian 12\"\n\n[[host.packages]]\nname = \"dash\"\n\
                 version = \"{v}\"\narch = \"{arch}\"\n"
            ),
        )
        .unwrap();
        path
    };
    let port = free_port().to_string();
    let worker = |lockfile: &Path| {
        p.fixture
            .command("worker")
            .args(["--remote", &format!("grpc://127.0.0.1:{port}")])
            .arg("--lockfile")
            .arg(lockfile)
            .arg("--store")
            .arg(p.path("store-w"))
            .output()
            .unwrap()
    };

    let other = pinned("0.0-other");
    let t = exited(&worker(&other), 2);
    assert!(
        t.contains("does not hold the lockfile's [host] pins"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "host package dash is {version} ({arch}) here; the lockfile pins 0.0-other"
        )),
        "{t}"
    );
    assert!(t.contains(&other.display().to_string()), "{t}");

    // Pins it holds pass; then the server is called (and nothing listens there).
    let t = exited(&worker(&pinned(&version)), 2);
    assert!(t.contains("cannot connect"), "{t}");
    assert!(!p.path("store-w").exists());
}

/// A CA, and a server certificate for 127.0.0.1 and a client certificate signed by it, in
/// `dir`: (ca.pem, server.pem, server.key, client.pem, client.key).
fn certificates(dir: &Path) -> [std::path::PathBuf; 5] {
    common::https_git::make_certificates(dir);
    common::https_git::make_client_certificate(dir);
    [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ]
    .map(|f| dir.join(f))
}

#[test]
fn a_tls_remote_is_trusted_through_the_given_ca_and_shown_the_client_certificate() {
    let p = Project::new(&[("hello", HELLO_GO)]);
    let certs = tempfile::tempdir().unwrap();
    let [ca, server_pem, server_key, client_pem, client_key] = certificates(certs.path());
    let server = BuildGrid::start_tls(&server_pem, &server_key, &ca);
    let url = server.url();
    assert!(url.starts_with("grpcs://"));
    let path = |p: &Path| p.display().to_string();
    let (ca, client_pem, client_key) = (path(&ca), path(&client_pem), path(&client_key));
    let tls = [
        "--remote-ca",
        &ca,
        "--remote-cert",
        &client_pem,
        "--remote-key",
        &client_key,
    ];

    let first = p.build("store-a", "out-a", &with_remote(&url, &tls));
    assert_code(&first, 0);
    let second = p.build(
        "store-b",
        "out-b",
        &with_remote(&url, &[&["--json"][..], &tls].concat()),
    );
    assert_code(&second, 0);
    assert!(components(&second).iter().all(|c| c["remote"] == true));

    // The system's CAs do not know the server's; a server that asks for a client certificate
    // gets none; TLS files for a plaintext remote.
    let error_lines = |t: &str| t.lines().filter(|l| l.contains("error")).count();
    let no_ca = [&tls[2..]].concat();
    let no_cert = [&tls[..2]].concat();
    for (args, why) in [
        (
            with_remote(&url, &no_ca),
            "not trusted (transport error: invalid peer certificate",
        ),
        (with_remote(&url, &no_cert), "client certificate"),
        (
            with_remote(&url.replace("grpcs", "grpc"), &tls),
            "for a TLS remote",
        ),
    ] {
        let t = exited(&p.build("store-x", "out-x", &args), 2);
        assert!(t.contains(why), "{args:?}: {t}");
        assert_eq!(error_lines(&t), 1, "{t}");
    }
    assert!(!p.path("store-x").exists(), "a store was made");
    assert!(!p.path("out-x").exists(), "an output was made");
}
