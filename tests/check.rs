//! `kata-repro check` and `kata-repro audit` on fixture projects whose recipes leak one thing
//! of the build's world each.

mod common;

use std::path::Path;
use std::process::Output;

use common::project::{Project, leak_recipe as recipe};
use common::{
    assert_code, ed25519_key_pair, exited, items, json, json_error, kata_repro, one_item, string,
};

/// `kata-repro check` over the fixture's lockfile, recipes and store.
fn check_command(p: &Project) -> std::process::Command {
    p.command("check", "store")
}

fn check(p: &Project, variations: &str, extra: &[&str]) -> Output {
    check_command(p)
        .args(["--variations", variations, "--json"])
        .args(extra)
        .output()
        .unwrap()
}

fn leak_path() -> String {
    format!("{}/leak/leak.txt", std::env::consts::ARCH)
}

/// The verdict on leak.txt and the variations blamed for it.
fn verdict_on_leak(v: &serde_json::Value) -> (String, Vec<String>) {
    let a = items(&v["artifacts"])
        .find(|a| a["path"] == leak_path().as_str())
        .unwrap_or_else(|| panic!("{v}"));
    let blamed = items(&a["blame"])
        .map(|b| b["variation"].as_str().unwrap().to_owned())
        .collect();
    (a["verdict"].as_str().unwrap().to_owned(), blamed)
}

/// An audit that stopped before building.
fn assert_refused(v: &serde_json::Value) {
    let failure = v["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("refusing to rebuild"), "{v}");
}

fn faketime_installed() -> bool {
    kata_repro::sandbox::variation::Host::probe(&std::env::var("PATH").unwrap_or_default())
        .libfaketime
        .is_some()
}

#[test]
fn each_leak_is_put_down_to_its_variation_and_file() {
    let mut cases = vec![
        ("pwd > ${out}/leak.txt", "build_path"),
        (
            "cat /proc/sys/kernel/hostname > ${out}/leak.txt",
            "domain_host",
        ),
        ("umask > ${out}/leak.txt", "umask"),
        ("env | sort > ${out}/leak.txt", "environment"),
    ];
    if faketime_installed() {
        cases.push(("date +%Y-%m-%d > ${out}/leak.txt", "time"));
    } else {
        eprintln!("libfaketime is not installed: the time leak is not tested");
    }
    for (script, variation) in cases {
        let p = Project::new(&[("leak", &recipe(script))]);
        let out = check(&p, "all", &[]);
        assert_code(&out, 1);
        let v = json(&out);
        let (verdict, blamed) = verdict_on_leak(&v);
        assert_eq!(verdict, "not-reproducible", "{script}: {v}");
        assert!(
            blamed.contains(&variation.to_owned()),
            "{script}: blamed {blamed:?}\n{v}"
        );
        if variation != "environment" {
            assert_eq!(
                blamed,
                [variation],
                "{script}: only {variation} shows in the file"
            );
        }
        let clean = items(&v["artifacts"])
            .find(|a| a["path"].as_str().unwrap().ends_with("clean.txt"))
            .unwrap();
        assert_eq!(clean["verdict"], "reproducible");
        assert_eq!(v["ok"], false);
    }
}

#[test]
fn check_json_reports_progress_on_stderr_and_one_document_on_stdout() {
    let slow =
        recipe("sleep 1 ; echo fixed > ${out}/leak.txt").replace("\"mv\"]", "\"mv\", \"sleep\"]");
    let p = Project::new(&[("leak", &slow)]);
    let run = |extra: &[&str]| {
        check_command(&p)
            .args(["--variations", "umask", "--json"])
            .args(extra)
            .env("KATA_REPRO_PROGRESS_SECONDS", "0.3")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_code(&out, 0);
    // stdout is one JSON document and nothing else.
    let v = json(&out);
    assert_eq!(v["ok"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "first build: leak: step 1/1 write",
        "second build: leak: step 1/1 write",
        "built leak: write",
    ] {
        assert!(stderr.contains(needle), "{needle} not in:\n{stderr}");
    }
    // While the step runs, a line names it with its elapsed time.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("leak: step 1/1 write") && l.contains("(for ")),
        "{stderr}"
    );
    let quiet = run(&["--quiet"]);
    assert_code(&quiet, 0);
    serde_json::from_slice::<serde_json::Value>(&quiet.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("step 1/1"), "{stderr}");
}

#[test]
fn a_clean_recipe_is_reproducible_under_every_applicable_variation_and_the_table_says_so() {
    let p = Project::new(&[(
        "leak",
        &recipe(
            "echo fixed > ${out}/leak.txt ; ls ${src} > /dev/null ; \
         mkdir ${src}/target.tmp && echo tag > ${src}/target.tmp/CACHEDIR.TAG && mv ${src}/target.tmp ${src}/target",
        ),
    )]);
    let report = p.path("report");
    let out = check(&p, "all", &["--report", report.to_str().unwrap()]);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["ok"], true);
    let rows = v["variations"].as_array().unwrap();
    assert_eq!(rows.len(), 14, "every variation has a row: {v}");
    let host =
        kata_repro::sandbox::variation::Host::probe(&std::env::var("PATH").unwrap_or_default());
    for r in rows {
        let name = r["variation"].as_str().unwrap();
        let applicable = match name {
            "time" => host.libfaketime.is_some(),
            "fileordering" => host.disorderfs.is_some(),
            "aslr" => host.aslr_enabled,
            "num_cpus" => host.cpus > 1,
            _ => true,
        };
        assert_eq!(r["applied"], applicable, "{name}: {r}");
        if !applicable {
            assert!(
                r["second"].as_str().unwrap().starts_with("not applied: "),
                "{r}"
            );
        }
    }
    for a in items(&v["artifacts"]) {
        assert_eq!(a["verdict"], "reproducible", "{a}");
    }
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(page.contains("every artifact is reproducible") && page.contains("fileordering"));

    // The human table lists every variation and the summary.
    let out = check_command(&p)
        .args(["--variations", "umask,build_path"])
        .output()
        .unwrap();
    let t = exited(&out, 0);
    assert!(t.contains("umask         yes      umask 0077"), "{t}");
    assert!(t.contains("2 reproducible, 0 not reproducible"), "{t}");
}

#[test]
fn bisect_finds_a_variation_no_marker_shows_and_the_report_links_the_difference() {
    // Which CPUs a step may use leaves no marker of the variation in the file.
    let p = Project::new(&[(
        "leak",
        &recipe("grep Cpus_allowed_list /proc/self/status > ${out}/leak.txt"),
    )]);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("one CPU: num_cpus cannot be varied here");
        return;
    }
    let report = p.path("report");
    let out = check(
        &p,
        "num_cpus,umask",
        &["--bisect", "--report", report.to_str().unwrap()],
    );
    assert_code(&out, 1);
    let v = json(&out);
    let (_, blamed) = verdict_on_leak(&v);
    assert_eq!(blamed, ["num_cpus"], "{v}");
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        page.contains("href=\"#a1\""),
        "the table links the difference"
    );
    assert!(
        page.contains("id=\"a1\"") && page.contains("num_cpus") && page.contains("line 1 differs")
    );
}

#[test]
fn unknown_variations_are_usage_errors() {
    let p = Project::new(&[("leak", &recipe("true > ${out}/leak.txt"))]);
    let e = json_error(&check(&p, "umask,cosmic_rays", &[]), 2);
    assert!(
        e.contains("unknown variation `cosmic_rays`") && e.contains("build_path"),
        "{e}"
    );
}

fn build(p: &Project, out: &str) {
    assert_code(&p.build("store", out, &[]), 0);
}

fn audit(p: &Project, manifest: &Path, extra: &[&str]) -> Output {
    p.command("audit", "store")
        .arg("--json")
        .arg("--manifest")
        .arg(manifest)
        .args(extra)
        .output()
        .unwrap()
}

/// A project whose recipe writes a fixed leak.txt, built into `published`.
fn published() -> Project {
    let p = Project::new(&[("leak", &recipe("echo fixed > ${out}/leak.txt"))]);
    build(&p, "published");
    p
}

#[test]
fn audit_matches_a_true_manifest_and_names_the_tampered_artifact() {
    let p = published();
    let manifest = p.path("published/manifest.json");
    let sbom = p.path("published/leak.cdx.json");
    let out = audit(&p, &manifest, &["--sbom", sbom.to_str().unwrap()]);
    assert_code(&out, 0);
    let v = json(&out);
    assert!(
        items(&v["artifacts"]).all(|a| a["verdict"] == "matches"),
        "{v}"
    );
    assert!(
        items(&v["preflight"]).any(|r| r[0] == "rebuilt leak.cdx.json" && r[1] == true),
        "the published SBOM is what the rebuild writes: {v}"
    );

    // Another leak.txt digest in the manifest: the audit names that artifact.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let real =
        kata_repro::digest::Sha256Digest::of_file(&p.path(&format!("published/{}", leak_path())))
            .unwrap()
            .to_hex();
    let fake = "ab".repeat(32);
    assert!(text.contains(&real));
    std::fs::write(&manifest, text.replace(&real, &fake)).unwrap();
    let report = p.path("audit-report");
    let out = audit(&p, &manifest, &["--report", report.to_str().unwrap()]);
    assert_code(&out, 1);
    let v = json(&out);
    let bad = one_item(&v["artifacts"], |a| a["verdict"] != "matches");
    assert_eq!(bad["path"], leak_path().as_str());
    assert_eq!(bad["verdict"], "differs");
    let notes = bad["notes"].to_string();
    assert!(notes.contains("altered after the build"), "{notes}");
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(page.contains("not every artifact matches") && page.contains(&leak_path()));

    // Recipes other than the build's: refused before building.
    std::fs::write(&manifest, &text).unwrap();
    let recipe_file = p.recipes.join("leak.toml");
    let recipe_text = std::fs::read_to_string(&recipe_file).unwrap();
    std::fs::write(&recipe_file, format!("{recipe_text}\n# changed\n")).unwrap();
    let out = audit(&p, &manifest, &[]);
    assert_code(&out, 1);
    let v = json(&out);
    assert!(
        string(&v["failure"]).contains("recipes are not the ones"),
        "{v}"
    );
    let row = items(&v["preflight"])
        .find(|r| r[0] == "recipe of leak")
        .unwrap();
    assert!(row[2].as_str().unwrap().contains("--recipes"), "{row}");
    std::fs::write(&recipe_file, recipe_text).unwrap();
    std::fs::write(&manifest, text.replace(&real, &fake)).unwrap();

    // The SBOM still says the real digest: refused before building.
    let out = audit(&p, &manifest, &["--sbom", sbom.to_str().unwrap()]);
    assert_code(&out, 1);
    let v = json(&out);
    assert_refused(&v);
    assert!(v["artifacts"].as_array().unwrap().is_empty());
}

#[test]
fn audit_refuses_an_altered_signature_before_building() {
    let p = published();
    let key = p.path("release.pem");
    let public = p.path("release.pub.pem");
    ed25519_key_pair(&key, &public);
    let signed = kata_repro()
        .arg("sign")
        .arg("--key")
        .arg(&key)
        .arg(p.path("published"))
        .output()
        .unwrap();
    assert_code(&signed, 0);
    let manifest = p.path("published/manifest.json");
    let pubkey = public.to_str().unwrap();
    assert_code(&audit(&p, &manifest, &["--key", pubkey]), 0);

    // One character of the signature changed.
    let env_path = p.path("published/manifest.dsse.json");
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env_path).unwrap()).unwrap();
    let sig = env["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    let flipped = format!("{first}{}", &sig[1..]);
    env["signatures"][0]["sig"] = flipped.into();
    std::fs::write(&env_path, serde_json::to_vec(&env).unwrap()).unwrap();
    let out_dir = p.path("rebuild");
    let out = audit(
        &p,
        &manifest,
        &["--key", pubkey, "--out", out_dir.to_str().unwrap()],
    );
    assert_code(&out, 1);
    let v = json(&out);
    assert_refused(&v);
    let row = &v["preflight"][0];
    assert_eq!(row[0], "signature of manifest.json");
    assert_eq!(row[1], false);
    assert!(!out_dir.exists(), "nothing was built");
    // A key without an envelope, or an envelope without a key: usage errors.
    std::fs::remove_file(&env_path).unwrap();
    assert_code(&audit(&p, &manifest, &["--key", pubkey]), 2);
    assert_code(&audit(&p, &manifest, &["--signature", "x.json"]), 2);
}
