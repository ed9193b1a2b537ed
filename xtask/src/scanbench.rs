//! `cargo xtask bench scan`: `kata-repro scan` against `cargo audit`, on the same Cargo.lock
//! and the same RustSec checkout, side by side in one run. Both must report the same advisory
//! ids (vulnerabilities and their default informational kinds) for the times to mean anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::bench::measure_exiting;

pub struct Options {
    pub lockfile: PathBuf,
    /// A checkout of rustsec/advisory-db (cargo audit needs a work tree).
    pub db: PathBuf,
    pub store: PathBuf,
    pub runs: usize,
    pub cargo_audit: PathBuf,
    pub mirror_args: Vec<String>,
}

/// (advisory id, crate, version) of each finding.
pub type Ids = BTreeSet<(String, String, String)>;

fn id(v: &serde_json::Value, id: &str, name: &str, version: &str) -> (String, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (s(id), s(name), s(version))
}

fn scan(bin: &Path, o: &Options) -> Command {
    let mut c = Command::new(bin);
    c.args(&o.mirror_args)
        .args([
            "--json",
            "--quiet",
            "scan",
            "--lock-only",
            "--offline",
            "--lockfile",
        ])
        .arg(&o.lockfile)
        .arg("--rustsec")
        .arg(&o.db)
        .arg("--store")
        .arg(&o.store);
    c
}

fn audit(o: &Options, lock: &Path, home: &Path) -> Command {
    audit_command(&o.cargo_audit, &o.db, lock, home)
}

/// `cargo audit` of `lock` against the checkout `db`, offline, with its own `CARGO_HOME`.
fn audit_command(cargo_audit: &Path, db: &Path, lock: &Path, home: &Path) -> Command {
    let mut c = Command::new(cargo_audit);
    c.args(["audit", "--no-fetch", "--json", "--db"])
        .arg(db)
        .arg("--file")
        .arg(lock)
        .env("CARGO_HOME", home);
    c
}

fn ours(bin: &Path, o: &Options) -> Result<Ids> {
    let out = scan(bin, o).output()?;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("kata-repro scan printed no report")?;
    ensure!(
        matches!(out.status.code(), Some(0 | 1)),
        "kata-repro scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(cargo_ids(&report))
}

/// The crate findings of a `kata-repro --json scan` report.
pub fn cargo_ids(report: &serde_json::Value) -> Ids {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["ecosystem"] == "cargo")
        .map(|f| id(f, "/id", "/package", "/version"))
        .collect()
}

fn theirs(o: &Options, lock: &Path, home: &Path) -> Result<Ids> {
    audit_ids(&o.cargo_audit, &o.db, lock, home)
}

/// What `cargo audit` reports on `lock`: its vulnerabilities and its default informational
/// kinds.
pub fn audit_ids(cargo_audit: &Path, db: &Path, lock: &Path, home: &Path) -> Result<Ids> {
    let out = audit_command(cargo_audit, db, lock, home).output()?;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo audit printed no report")?;
    let mut ids: Ids = report["vulnerabilities"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| id(v, "/advisory/id", "/package/name", "/package/version"))
        .collect();
    for kind in ["unmaintained", "unsound", "notice"] {
        ids.extend(
            report["warnings"][kind]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|w| !w["advisory"].is_null())
                .map(|w| id(w, "/advisory/id", "/package/name", "/package/version")),
        );
    }
    Ok(ids)
}

pub fn run(bin: &Path, o: &Options) -> Result<()> {
    let text = std::fs::read_to_string(&o.lockfile)?;
    let lockfile: toml::Value = toml::from_str(&text)?;
    let commit = lockfile["source"]["commit"]
        .as_str()
        .context("the lockfile pins no source commit")?;
    // The first scan brings the source into the store; the Cargo.lock both read is its own.
    let ours_ids = ours(bin, o)?;
    let lock = o.store.join("git").join(commit).join("tree/Cargo.lock");
    ensure!(lock.is_file(), "{} is missing", lock.display());
    let home = tempfile::tempdir()?;
    let theirs_ids = theirs(o, &lock, home.path())?;
    ensure!(
        ours_ids == theirs_ids,
        "kata-repro and cargo audit disagree: only kata-repro {:?}, only cargo audit {:?}",
        ours_ids.difference(&theirs_ids).collect::<Vec<_>>(),
        theirs_ids.difference(&ours_ids).collect::<Vec<_>>()
    );
    let (ours_s, ours_rss) = measure_exiting(o.runs, &[0, 1], || scan(bin, o))?;
    let (audit_s, audit_rss) = measure_exiting(o.runs, &[0, 1], || audit(o, &lock, home.path()))?;
    println!(
        "scan benchmark, best of {} runs after a warm-up: {} ({}), {} findings each",
        o.runs,
        o.lockfile.display(),
        lock.display(),
        ours_ids.len()
    );
    println!("{:<44} {:>8} {:>10}", "command", "seconds", "max RSS");
    println!(
        "{:<44} {:>8.2} {:>7} MiB",
        "kata-repro scan --lock-only (RustSec)",
        ours_s,
        ours_rss / 1024
    );
    println!(
        "{:<44} {:>8.2} {:>7} MiB",
        "cargo audit --no-fetch",
        audit_s,
        audit_rss / 1024
    );
    println!(
        "kata-repro scan: {:.2}x the time of cargo audit on the same lock and database \
         (goal <= 1x; it also checks the sha256 of each file the lockfile pins in the Kata \
         source)",
        ours_s / audit_s
    );
    Ok(())
}
