//! Git sources fetched over https where no local mirror is configured: the fixture's
//! repositories served by a loopback `git http-backend` behind TLS, GitHub's URLs mapped to it
//! by `[mirrors]` URL entries (so the lockfile's allow-list still holds), its CA trusted through
//! the config's `ca_file`.

mod common;

use std::path::{Path, PathBuf};

use common::https_git::HttpsGit;
use common::{
    CI_URL, DEP_URL, Fixture, KATA_URL, TAG, git, items, json, kata_repro, tamper_loose_object,
    text,
};

/// A config mapping the fixture's git upstreams to `server` (and its files to their local
/// mirrors, as the fixture's own config does).
fn https_config(f: &Fixture, server: &HttpsGit, ca_file: Option<&Path>) -> PathBuf {
    let base = server.base_url();
    let own = std::fs::read_to_string(&f.config).unwrap();
    let files: Vec<&str> = own
        .lines()
        .filter(|l| l.starts_with("\"https://") && l.contains("/\" = "))
        .collect();
    let mut text = String::new();
    if let Some(ca) = ca_file {
        text.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    text.push_str(&format!(
        "[mirrors]\n\"{KATA_URL}\" = \"{base}kata-containers\"\n\"{DEP_URL}\" = \"{base}dep-rs\"\n\
         \"{CI_URL}\" = \"{base}ci\"\n{}\n",
        files.join("\n")
    ));
    let path = f.root().join(format!("https-{}.toml", ca_file.is_some()));
    std::fs::write(&path, text).unwrap();
    path
}

/// The fixture's repositories served over https, a config mapping them to the server (trusting
/// its CA when `trusted`), and a store.
struct Served {
    server: HttpsGit,
    config: PathBuf,
    store: PathBuf,
}

impl Served {
    fn start(f: &Fixture, trusted: bool) -> Self {
        let server = HttpsGit::start(&f.root().join("mirrors"));
        let ca_file = trusted.then(|| server.ca_file());
        let config = https_config(f, &server, ca_file.as_deref());
        Served {
            server,
            config,
            store: f.root().join("https-store"),
        }
    }

    /// `fetch --json` of the git sources through the server, which must exit with `code`
    /// (the server's log is shown otherwise).
    fn fetch(&self, f: &Fixture, code: i32) -> std::process::Output {
        let out = kata_repro()
            .arg("--config")
            .arg(&self.config)
            .args(["fetch", "--json", "--lockfile"])
            .arg(&f.lockfile)
            .arg("--store")
            .arg(&self.store)
            .args(["--skip", "toolchain,kernel"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}\n{}",
            text(&out),
            self.server.log()
        );
        out
    }
}

#[test]
fn git_sources_are_cloned_over_https_into_the_mirror_cache_and_verified() {
    let f = Fixture::new();
    let served = Served::start(&f, true);
    let store = &served.store;

    let v = json(&served.fetch(&f, 0));
    let git_inputs: Vec<&serde_json::Value> = items(&v["report"]["inputs"])
        .filter(|i| i["class"] == "source" || i["class"] == "git")
        .collect();
    assert_eq!(git_inputs.len(), 2, "{v}");
    for i in git_inputs {
        assert_eq!(i["status"], "fetched", "{i}");
        assert!(i["from"].as_str().unwrap().contains("(cached in "), "{i}");
    }
    let cache = store.join("mirrors/github.com/example/kata-containers.git");
    assert!(cache.is_dir(), "{}", cache.display());
    assert!(store.join("mirrors/github.com/example/ci.git").is_dir());
    // The checkout is the pinned commit's tree, as from a local mirror.
    let checkout = store.join("git").join(f.kata_commit()).join("tree");
    assert_eq!(
        std::fs::read_to_string(checkout.join("README.md")).unwrap(),
        git(&f.kata, &["show", &format!("{TAG}:README.md")]) + "\n"
    );

    // A second store reuses nothing of the first; a fetch into the same store asks the server
    // for nothing new.
    let requests = served.server.requests();
    std::fs::remove_dir_all(store.join("git")).unwrap();
    served.fetch(&f, 0);
    assert_eq!(
        served.server.requests(),
        requests,
        "{:?}",
        served.server.request_log()
    );
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let f = Fixture::new();
    let served = Served::start(&f, false);
    let t = text(&served.fetch(&f, 1));
    assert!(
        t.contains(&format!(
            "no local mirror of {KATA_URL} is configured, and it could not be fetched"
        )),
        "{t}"
    );
    assert!(!served.store.join("git").join(f.kata_commit()).exists());
    assert!(
        !served
            .store
            .join("mirrors/github.com/example/kata-containers.git")
            .exists()
    );
}

#[test]
fn a_tampered_object_served_over_https_is_refused() {
    let f = Fixture::new();
    let blob = git(&f.kata, &["rev-parse", &format!("{TAG}:README.md")]);
    tamper_loose_object(&f.kata, &blob, "blob", b"Kata fixture, with a backdoor\n");
    let served = Served::start(&f, true);
    let t = text(&served.fetch(&f, 1));
    assert!(t.contains(&blob), "{t}");
    assert!(!served.store.join("git").join(f.kata_commit()).exists());
}
