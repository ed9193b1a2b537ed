//! The e2e scan stage: `kata-repro scan` of 3.30.0 and 4.0.0 against real mirrors of the RustSec
//! and Go vulnerability databases, every crate and module resolved; the crate findings compared
//! with `cargo audit` on the same Cargo.lock files and database checkout, the SARIF and VEX
//! validated against their schemas, and the release SBOM written with the databases configured,
//! whose embedded advisories must be the scan's compiled findings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::{E2e, elements, scanbench, str_of, validate_boms};

const RUSTSEC_URL: &str = "https://github.com/rustsec/advisory-db";
const GO_VULNDB_URL: &str = "https://github.com/golang/vulndb";
/// The architecture `kata-repro sbom` describes by default here.
const HOST_ARCH: &str = std::env::consts::ARCH;

/// The databases the stage reads.
pub struct Databases {
    /// A checkout of rustsec/advisory-db: `cargo audit` reads the same one.
    pub rustsec: PathBuf,
    /// golang/vulndb: a checkout or a bare mirror.
    pub go_vulndb: PathBuf,
    pub cargo_audit: PathBuf,
}

pub fn run(e: E2e, dbs: &Databases) -> Result<()> {
    let out = e.scratch.join("scan");
    std::fs::create_dir_all(&out)?;
    for tag in ["3.30.0", "4.0.0"] {
        let report = scan(e, dbs, tag, &out)?;
        same_as_cargo_audit(e, dbs, tag, &report)?;
        if tag == "3.30.0" {
            sbom_embeds_compiled_findings(e, dbs, tag, &report, &out)?;
        }
    }
    Ok(())
}

/// `kata-repro --json scan` of `lockfiles/kata-<tag>.toml` with SARIF and VEX; its summary
/// printed, both files validated.
fn scan(e: E2e, dbs: &Databases, tag: &str, out: &Path) -> Result<serde_json::Value> {
    let sarif = out.join(format!("{tag}.sarif"));
    let vex = out.join(format!("{tag}.vex.cdx.json"));
    let (code, report) = scan_json(
        e,
        dbs,
        tag,
        &[
            "--sarif".as_ref(),
            sarif.as_os_str(),
            "--vex".as_ref(),
            vex.as_os_str(),
        ],
    )?;
    summarize(&report);
    println!("  reach resolved: {}", report["reach"]["resolved"]);
    ensure!(
        elements(&report["reach"]["not_resolved"]).count() == 0,
        "scan {tag} left {} unresolved",
        report["reach"]["not_resolved"]
    );
    let findings = elements(&report["findings"]).count();
    let failing = report["failing"].as_u64().unwrap_or_default();
    ensure!(
        (code == 1) == (failing > 0),
        "scan {tag}: exit {code} with {failing} failing findings"
    );
    for eco in ["cargo", "go"] {
        ensure!(
            report["scanned"][eco].as_u64().unwrap_or_default() > 0,
            "scan {tag} scanned no {eco} packages"
        );
    }
    let unresolved: Vec<&str> = elements(&report["findings"])
        .filter(|f| f["reach"] == "unresolved")
        .map(|f| str_of(&f["id"]))
        .collect();
    ensure!(
        unresolved.is_empty(),
        "scan {tag} left findings unresolved: {unresolved:?}"
    );
    let results = sarif_validate(e.root, &sarif)?;
    ensure!(
        results == findings,
        "{}: {results} results for {findings} findings",
        sarif.display()
    );
    let vex_dir = out.join(format!("{tag}-vex"));
    std::fs::create_dir_all(&vex_dir)?;
    std::fs::copy(&vex, vex_dir.join("vex.cdx.json"))?;
    validate_boms(&vex_dir)?;
    println!("  SARIF valid against the SARIF 2.1.0 schema: {results} results");
    Ok(report)
}

/// `kata-repro --json scan` of `lockfiles/kata-<tag>.toml` with `extra` arguments: its exit
/// code (0 or 1) and report.
fn scan_json(
    e: E2e,
    dbs: &Databases,
    tag: &str,
    extra: &[&std::ffi::OsStr],
) -> Result<(i32, serde_json::Value)> {
    let started = Instant::now();
    let output = e
        .mirrors
        .command(e.bin)
        .args(["--json", "scan", "--lockfile"])
        .arg(e.root.join(format!("lockfiles/kata-{tag}.toml")))
        .arg("--store")
        .arg(e.store)
        .arg("--rustsec")
        .arg(&dbs.rustsec)
        .arg("--go-vulndb")
        .arg(&dbs.go_vulndb)
        .args(extra)
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let code = output.status.code().unwrap_or(-1);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("scan {tag}: {}", String::from_utf8_lossy(&output.stderr)))?;
    let args: Vec<String> = extra.iter().map(|a| a.to_string_lossy().into()).collect();
    println!("scan {tag} {}: exit {code} in {secs:.1}s", args.join(" "));
    ensure!(
        matches!(code, 0 | 1),
        "scan {tag} should run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((code, report))
}

/// Databases, counts per ecosystem and category, and the compiled findings by id.
fn summarize(report: &serde_json::Value) {
    for db in elements(&report["databases"]) {
        println!(
            "  database {}: commit {} of {} ({} days old), {} advisories, {} skipped",
            str_of(&db["name"]),
            str_of(&db["commit"]),
            str_of(&db["commit_date"]),
            db["age_days"],
            db["advisories"],
            elements(&db["skipped"]).count()
        );
    }
    for eco in ["cargo", "go", "deb"] {
        let of: Vec<&serde_json::Value> = elements(&report["findings"])
            .filter(|f| f["ecosystem"] == eco)
            .collect();
        if report["scanned"][eco].is_null() {
            continue;
        }
        let mut categories = std::collections::BTreeMap::<&str, usize>::new();
        for f in &of {
            *categories.entry(str_of(&f["category"])).or_default() += 1;
        }
        println!(
            "  {eco}: {} scanned, {} findings {categories:?}",
            report["scanned"][eco],
            of.len()
        );
        let compiled: BTreeSet<String> = of
            .iter()
            .filter(|f| f["reach"] == "compiled")
            .map(|f| {
                format!(
                    "{} {}@{} ({})",
                    str_of(&f["id"]),
                    str_of(&f["package"]),
                    str_of(&f["version"]),
                    str_of(&f["category"])
                )
            })
            .collect();
        println!("    compiled: {}", compiled.len());
        for c in compiled {
            println!("      {c}");
        }
    }
}

/// The crate findings are what `cargo audit` reports on the same Cargo.lock files (each the
/// lockfile pins, from the verified checkout in the store) and the same database checkout.
fn same_as_cargo_audit(
    e: E2e,
    dbs: &Databases,
    tag: &str,
    report: &serde_json::Value,
) -> Result<()> {
    let lockfile: toml::Value = toml::from_str(&std::fs::read_to_string(
        e.root.join(format!("lockfiles/kata-{tag}.toml")),
    )?)?;
    let commit = lockfile["source"]["commit"]
        .as_str()
        .context("the lockfile pins no source commit")?;
    let tree = e.store.join("git").join(commit).join("tree");
    let home = tempfile::tempdir()?;
    let mut theirs = scanbench::Ids::new();
    let mut locks = 0;
    let files = lockfile["source"]["files"].as_array().into_iter().flatten();
    for path in files.filter_map(|f| f.get("path")?.as_str()) {
        if path == "Cargo.lock" || path.ends_with("/Cargo.lock") {
            theirs.extend(scanbench::audit_ids(
                &dbs.cargo_audit,
                &dbs.rustsec,
                &tree.join(path),
                home.path(),
            )?);
            locks += 1;
        }
    }
    let ours = scanbench::cargo_ids(report);
    ensure!(
        ours == theirs,
        "scan {tag}: kata-repro and cargo audit disagree: only kata-repro {:?}, only cargo \
         audit {:?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    println!(
        "  cargo audit --no-fetch on the same {locks} Cargo.lock and checkout: the same {} \
         (advisory, crate, version)",
        ours.len()
    );
    Ok(())
}

/// `kata-repro sbom` with both databases mapped in the config: the release SBOM embeds the
/// scan's compiled crate and module vulnerabilities (information is no vulnerability), and
/// validates.
fn sbom_embeds_compiled_findings(
    e: E2e,
    dbs: &Databases,
    tag: &str,
    report: &serde_json::Value,
    out: &Path,
) -> Result<()> {
    let config = out.join("config.toml");
    let mut value: toml::Table = match &e.mirrors.config {
        Some(c) => toml::from_str(&std::fs::read_to_string(c)?)?,
        None => toml::Table::new(),
    };
    let mirrors = value
        .entry("mirrors")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("the config's [mirrors] is not a table")?;
    for (url, path) in [(RUSTSEC_URL, &dbs.rustsec), (GO_VULNDB_URL, &dbs.go_vulndb)] {
        mirrors.insert(url.into(), path.display().to_string().into());
    }
    std::fs::write(&config, toml::to_string(&value)?)?;
    let sboms = out.join(format!("{tag}-sbom"));
    let started = Instant::now();
    let mut cmd = Command::new(e.bin);
    cmd.arg("--config").arg(&config);
    for m in &e.mirrors.mirrors {
        cmd.arg("--mirror").arg(m);
    }
    let output = cmd
        .args(["--json", "sbom", "--lockfile"])
        .arg(e.root.join(format!("lockfiles/kata-{tag}.toml")))
        .arg("--store")
        .arg(e.store)
        .arg("--out")
        .arg(&sboms)
        .output()?;
    ensure!(
        output.status.success(),
        "sbom {tag} with the databases configured: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "sbom {tag} with both databases configured: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    validate_boms(&sboms)?;
    let bom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sboms.join("kata.cdx.json"))?)?;
    let embedded: BTreeSet<(String, String)> = elements(&bom["vulnerabilities"])
        .flat_map(|v| {
            elements(&v["affects"])
                .map(|a| (str_of(&v["id"]).to_owned(), str_of(&a["ref"]).to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    // The SBOM describes the host's architecture: compare with a scan resolved for it alone.
    let (_, host) = scan_json(e, dbs, tag, &["--arch".as_ref(), HOST_ARCH.as_ref()])?;
    let compiled: BTreeSet<(String, String)> = elements(&host["findings"])
        .filter(|f| f["reach"] == "compiled" && f["category"] == "vulnerability")
        .filter(|f| f["purl"].is_string())
        .map(|f| (str_of(&f["id"]).to_owned(), str_of(&f["purl"]).to_owned()))
        .collect();
    let every: BTreeSet<(String, String)> = elements(&report["findings"])
        .filter(|f| f["reach"] == "compiled" && f["category"] == "vulnerability")
        .filter(|f| f["purl"].is_string())
        .map(|f| (str_of(&f["id"]).to_owned(), str_of(&f["purl"]).to_owned()))
        .collect();
    ensure!(
        compiled.is_subset(&every),
        "the host's compiled vulnerabilities are not among every architecture's"
    );
    ensure!(
        !compiled.is_empty(),
        "the scan found no compiled vulnerability"
    );
    ensure!(
        embedded == compiled,
        "kata.cdx.json embeds other advisories than the scan's compiled vulnerabilities: \
         only embedded {:?}, only scanned {:?}",
        embedded.difference(&compiled).collect::<Vec<_>>(),
        compiled.difference(&embedded).collect::<Vec<_>>()
    );
    println!(
        "  kata.cdx.json embeds {} (advisory, package) pairs: the scan's compiled \
         vulnerabilities",
        embedded.len()
    );
    Ok(())
}

/// Validates `file` against the SARIF 2.1.0 schema the tests carry; the number of results.
fn sarif_validate(root: &Path, file: &Path) -> Result<usize> {
    let sarif = root.join("tests/data/sarif");
    let mut cmd = Command::new("python3");
    cmd.arg(sarif.join("validate.py"))
        .arg(sarif.join("sarif-schema-2.1.0.json"))
        .arg(file);
    if let Some(p) = std::env::var_os("KATA_REPRO_CDX_PYTHONPATH") {
        cmd.env("PYTHONPATH", p);
    }
    let output = cmd.output()?;
    ensure!(
        output.status.success(),
        "{} does not validate against SARIF 2.1.0: {}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(file)?)?;
    Ok(elements(&log["runs"])
        .map(|r| elements(&r["results"]).count())
        .sum())
}
