//! `kata-repro lock`, offline, against a fixture repository.

mod common;

use common::{Fixture, KATA_URL, TAG, assert_code, exited, json, run_kata_repro};

#[test]
fn lock_pins_the_tree_and_is_deterministic() {
    let f = Fixture::new();
    let first = f.lockfile_text();
    let second = f.root().join("again.toml");
    assert_code(&f.lock_pinned(&["-o", second.to_str().unwrap()]), 0);
    assert_eq!(
        first,
        std::fs::read_to_string(&second).unwrap(),
        "same inputs, same bytes"
    );

    let lock: toml::Value = toml::from_str(&first).unwrap();
    assert_eq!(lock["schema"].as_integer(), Some(1));
    assert_eq!(lock["source"]["commit"].as_str().unwrap(), f.kata_commit());
    assert_eq!(
        lock["source"]["tree"].as_str().unwrap(),
        common::git(&f.kata, &["rev-parse", &format!("{TAG}^{{tree}}")])
    );
    // 2026-01-02T03:04:05Z, the fixture's commit time.
    assert_eq!(lock["source"]["commit_time"].as_integer(), Some(1767323045));
    let files: Vec<&str> = lock["source"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "versions.yaml",
            "Cargo.lock",
            "rust-toolchain.toml",
            "src/runtime/go.mod",
            "src/runtime/go.sum",
            "tools/packaging/kernel/kata_config_version"
        ]
    );
    let versions = std::fs::read(f.kata.join("versions.yaml")).unwrap();
    assert_eq!(
        lock["source"]["files"][0]["sha256"].as_str().unwrap(),
        common::sha256_hex(&versions)
    );
    assert_eq!(lock["git"][0]["commit"].as_str().unwrap(), f.dep_commit);
    // The dependency's tree and its submodule's, as git gives them, are pinned too.
    assert_eq!(
        lock["git"][0]["tree"].as_str().unwrap(),
        common::git(
            &f.dep,
            &["rev-parse", &format!("{}^{{tree}}", f.dep_commit)]
        )
    );
    let sub = &lock["git"][0]["submodules"][0];
    assert_eq!(sub["path"].as_str(), Some("ci"));
    let ci_commit = sub["commit"].as_str().unwrap();
    assert_eq!(
        ci_commit,
        common::git(&f.dep, &["rev-parse", &format!("{}:ci", f.dep_commit)])
    );
    assert_eq!(
        sub["tree"].as_str().unwrap(),
        common::git(&f.ci, &["rev-parse", &format!("{ci_commit}^{{tree}}")])
    );
    assert_eq!(lock["kernel"]["kata_config_version"].as_str(), Some("7"));
    assert_eq!(
        lock["kernel"]["url"].as_str(),
        Some("https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.0.1.tar.xz")
    );
    assert_eq!(
        lock["toolchains"]["rust"]["commit_hash"].as_str(),
        Some("59807616e1fa2540724bfbac14d7976d7e4a3860")
    );
    let go = lock["toolchains"]["go"]["sources"].as_array().unwrap();
    assert_eq!(go.len(), 4);
    assert!(go.iter().all(|s| s["sha256"].is_str()));
    assert!(
        go.iter()
            .any(|s| s["kind"] == "pypi".into() && s["version"] == "1.26.0".into())
    );
}

#[test]
fn rust_is_pinned_from_the_channel_manifest_else_from_a_matching_rustc() {
    let f = Fixture::new();
    // Without a readable dist server, the fixture's rustc (1.95.7) answers for channel 1.95.
    let out = f.lock_pinned(&["--rust-dist", "/nonexistent/dist"]);
    assert_code(&out, 0);
    let lock: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(
        lock["toolchains"]["rust"]["version"].as_str(),
        Some("1.95.7")
    );
    assert_eq!(
        lock["toolchains"]["rust"]["commit_hash"].as_str(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    // Neither: the channel alone is recorded, listed as unpinned, with a warning.
    let out = f.lock(&[
        "--rust-dist",
        "/nonexistent/dist",
        "--rustc",
        "/nonexistent/rustc",
    ]);
    let all = exited(&out, 0);
    assert!(
        all.contains("#   rust 1.95: neither its channel manifest"),
        "{all}"
    );
    assert!(all.contains("warning: Rust channel manifest"), "{all}");
}

#[test]
fn kernel_tarball_pins_by_hashing_it() {
    let f = Fixture::new();
    let out = f.lock(&[
        "--kernel-tarball",
        f.downloads
            .join("kernel/linux-6.0.1.tar.xz")
            .to_str()
            .unwrap(),
        "--json",
    ]);
    assert_code(&out, 0);
    let v = json(&out);
    let lock = v["lockfile"].as_str().unwrap();
    assert!(
        lock.contains(&format!("sha256 = \"{}\"", f.kernel_sha256)),
        "{lock}"
    );
}

#[test]
fn unreachable_go_dev_index_leaves_those_archives_unpinned() {
    let f = Fixture::new();
    let out = f.lock_pinned(&["--go-dl-index", "/nonexistent/go-dl.json"]);
    assert_code(&out, 0);
    let lock = String::from_utf8(out.stdout).unwrap();
    assert!(
        lock.contains(
            "#   go 1.25.1 from go.dev for x86_64: https://go.dev/dl/go1.25.1.linux-amd64.tar.gz"
        ),
        "{lock}"
    );
}

#[test]
fn bad_lock_input_exits_2() {
    let f = Fixture::new();
    let all = exited(&f.lock(&["--ref", "0.0.0-no-such-tag"]), 2);
    assert!(all.contains("tag `0.0.0-no-such-tag`"), "{all}");

    let all = exited(&f.lock(&["--kernel-sha256", "XYZ"]), 2);
    assert!(all.contains("--kernel-sha256"), "{all}");

    // What `lock --ref TAG` of `source`, with no config, prints as it exits 2.
    let refused = |source: &str, extra: &[&str]| {
        let mut args = vec!["lock", "--source", source, "--ref", TAG];
        args.extend_from_slice(extra);
        exited(&run_kata_repro(&args), 2)
    };
    let all = refused("http://github.com/example/kata-containers", &[]);
    assert!(all.contains("does not use https"), "{all}");

    let all = refused(KATA_URL, &[]);
    assert!(all.contains("--mirror"), "{all}");

    let all = refused(f.root().to_str().unwrap(), &["--upstream", KATA_URL]);
    assert!(all.contains("is not a git repository"), "{all}");

    // The upstream written into the lockfile must pass the policy, whatever --source is.
    let all = refused(
        f.kata.to_str().unwrap(),
        &["--upstream", "http://evil.example/kata"],
    );
    assert!(
        all.contains("`http://evil.example/kata` does not use https"),
        "{all}"
    );
}

#[test]
fn allow_host_lets_lock_pin_an_upstream_off_the_built_in_hosts() {
    let f = Fixture::new();
    let upstream = ["--upstream", "https://git.example.org/kata-containers"];
    let all = exited(&f.lock(&upstream), 2);
    assert!(
        all.contains("host `git.example.org` is not on the allow-list")
            && all.contains("--allow-host HOST"),
        "{all}"
    );
    let out = f.lock(&[upstream[0], upstream[1], "--allow-host", "git.example.org"]);
    let all = exited(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("url = \"https://git.example.org/kata-containers\""),
        "{all}"
    );
}
