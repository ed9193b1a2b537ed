//! `kata-repro scan`: a release's pinned inputs against offline advisory databases.

use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::job::scan::{self, ScanSpec};
use kata_repro::job::{Event, Spec};
use kata_repro::scan::vex::{self, SbomLink};
use kata_repro::scan::{Category, DatabaseRecord, Finding, Ignore, Reach, Report, Severity};
use kata_repro::source::mirror::Config;

use super::progress::JobProgress;
use super::render::{Format, Output, outln};
use super::{Failure, ReadArgs};

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// The lockfile of the release.
    #[arg(long, value_name = "FILE")]
    lockfile: PathBuf,
    /// Components whose compiled packages make a finding `compiled`, comma-separated. Default:
    /// every recipe the lockfile can build for each ARCH.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    component: Vec<String>,
    /// The architectures the components are resolved for, comma-separated. Default: every one
    /// a recipe compiling crates or Go modules builds for. With fewer, a package compiled only
    /// on another is `lock-only` here, and no VEX analysis calls it `not_affected`.
    #[arg(long, value_delimiter = ',', value_name = "ARCH")]
    arch: Vec<String>,
    /// The RustSec advisory database: a checkout or a bare mirror of
    /// https://github.com/rustsec/advisory-db. Default: the mirror the config maps it to.
    #[arg(long, value_name = "DIR")]
    rustsec: Option<PathBuf>,
    /// The Go vulnerability database: a checkout or a bare mirror of
    /// https://github.com/golang/vulndb (its `data/osv`). Default: the mirror the config maps
    /// it to.
    #[arg(long, value_name = "DIR")]
    go_vulndb: Option<PathBuf>,
    /// The Debian security tracker's JSON export
    /// (https://security-tracker.debian.org/tracker/data/json), for the rootfs packages.
    #[arg(long, value_name = "FILE")]
    debian_tracker: Option<PathBuf>,
    /// Exit 1 when a vulnerability at or above this severity is not ignored (an unrated one
    /// counts at any level).
    #[arg(long, value_name = "LEVEL", default_value = "low", value_parser = parse_severity)]
    fail_on: Severity,
    /// An advisory that does not apply, and why: kept in the report as such. Repeatable.
    #[arg(long, value_name = "ID=REASON", value_parser = parse_ignore)]
    ignore: Vec<Ignore>,
    /// Also write the findings as SARIF 2.1.0 here, each at the lockfile line that pins its
    /// input (for CI code-scanning views).
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,
    /// Also write the findings as a CycloneDX 1.5 VEX document here: each vulnerability
    /// references the release SBOM's component by its bom-ref, with an impact analysis
    /// (ignored and lock-only findings are `not_affected`).
    #[arg(long, value_name = "FILE")]
    vex: Option<PathBuf>,
    /// The release SBOM (kata.cdx.json) the VEX document links into, e.g. a build's. Default:
    /// the one `kata-repro sbom` writes for the lockfile.
    #[arg(long, value_name = "FILE", requires = "vex")]
    sbom: Option<PathBuf>,
    /// Match the locks only: do not resolve which packages the components compile (findings
    /// other than the toolchain's are then `unresolved`).
    #[arg(long)]
    lock_only: bool,
    #[command(flatten)]
    read: ReadArgs,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

fn parse_ignore(s: &str) -> Result<Ignore, String> {
    s.parse()
}

pub fn run(args: ScanArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let spec = ScanSpec {
        spec: Spec {
            lockfile: args.lockfile,
            arch: args
                .arch
                .first()
                .cloned()
                .unwrap_or_else(kata_repro::host::arch),
            components: args.component,
            env: args.read.env(config),
        },
        rustsec: args.rustsec,
        go_vulndb: args.go_vulndb,
        debian_tracker: args.debian_tracker,
        ignore: args.ignore,
        arches: args.arch,
        lock_only: args.lock_only,
        now: scan::now(),
    };
    let progress = JobProgress::new();
    let events = |e: Event<'_>| progress.show(e);
    let lockfile = spec.spec.lockfile.clone();
    let report = scan::run(&spec, &events)?;
    drop(progress);
    warn(&report);
    if let Some(path) = &args.sarif {
        let doc = kata_repro::scan::sarif::document(&report, &lockfile, args.fail_on);
        write_json(path, &doc)?;
        super::progress::say(format!("SARIF: {}", path.display()));
    }
    if let Some(path) = &args.vex {
        write_vex(path, args.sbom.as_deref(), &report)?;
        super::progress::say(format!("VEX: {}", path.display()));
    }
    let failing = report.failing(args.fail_on).count();
    let mut json = serde_json::to_value(&report).expect("reports serialise");
    json["fail_on"] = args.fail_on.as_str().into();
    json["failing"] = failing.into();
    let text = |out: &mut String| print(out, &report, args.fail_on, failing);
    Ok(format.emit(Output::checked(failing == 0, json, &text)))
}

/// The release SBOM a VEX document links into: `sbom`'s serial number and version, or those of
/// the SBOM `kata-repro sbom` writes for the scanned lockfile.
fn sbom_link(sbom: Option<&std::path::Path>, report: &Report) -> Result<SbomLink, Failure> {
    let Some(path) = sbom else {
        let seed = report
            .lockfile_sha256
            .parse()
            .map_err(|e| Failure::input(anyhow::anyhow!("lockfile sha256: {e}")))?;
        return Ok(SbomLink {
            serial: kata_repro::sbom::serial_of(&seed, kata_repro::sbom::RELEASE_BOM).to_string(),
            version: 1,
        });
    };
    let bad = |what: String| Failure::input(anyhow::anyhow!("--sbom {}: {what}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let serial = doc["serialNumber"]
        .as_str()
        .filter(|s| s.starts_with("urn:uuid:"))
        .ok_or_else(|| bad("has no serialNumber (urn:uuid:…); give a CycloneDX SBOM".into()))?;
    Ok(SbomLink {
        serial: serial.to_owned(),
        version: doc["version"].as_u64().unwrap_or(1) as u32,
    })
}

fn write_vex(
    path: &std::path::Path,
    sbom: Option<&std::path::Path>,
    report: &Report,
) -> Result<(), Failure> {
    let link = sbom_link(sbom, report)?;
    let release_ref = kata_repro::sbom::release_ref(&report.release);
    // The same findings (ignores and reach included) from the same databases, linked into the
    // same SBOM, the same serial; anything else, another one.
    let databases: Vec<_> = report
        .databases
        .iter()
        .map(|d| (d.name, &d.commit, &d.sha256))
        .collect();
    let inputs = serde_json::to_vec(&(
        &report.lockfile_sha256,
        databases,
        &report.findings,
        &report.reach,
        (&link.serial, link.version),
    ))
    .expect("reports serialise");
    let seed = kata_repro::digest::Sha256Digest::of(&inputs).to_hex();
    let bom = vex::document(report, &report.release, &release_ref, &link, &seed);
    let name = path.display().to_string();
    let bytes = kata_repro::sbom::to_json(bom, &name).map_err(Failure::check)?;
    kata_repro::files::write_atomically(path, &bytes)
        .map_err(|e| Failure::input(anyhow::anyhow!("{name}: {e}")))
}

/// Writes `doc` to `path` whole or not at all.
fn write_json(path: &std::path::Path, doc: &serde_json::Value) -> Result<(), Failure> {
    let mut bytes = serde_json::to_vec_pretty(doc).expect("JSON values serialise");
    bytes.push(b'\n');
    kata_repro::files::write_atomically(path, &bytes)
        .map_err(|e| Failure::input(anyhow::anyhow!("{}: {e}", path.display())))
}

/// What the user should know even with `--json` or `--quiet`: files skipped, stale databases,
/// ignores that matched nothing.
fn warn(report: &Report) {
    for db in &report.databases {
        for s in &db.skipped {
            eprintln!("warning: {}: {}; skipped", s.file, s.reason);
        }
        if db.read_from == kata_repro::scan::database::Origin::ModifiedWorkTree {
            eprintln!(
                "warning: the {} at {} differs from its commit {}: the scan read the work tree, \
                 which no commit records; commit or reset the changes",
                db.name,
                db.location.display(),
                db.commit.as_deref().unwrap_or("?")
            );
        }
        if db.is_stale() {
            let what = match &db.commit {
                Some(c) => format!("its commit {c} is from"),
                None => "it was last changed".into(),
            };
            eprintln!(
                "warning: the {} at {} is stale: {what} {} ({} days ago); update it",
                db.name,
                db.location.display(),
                db.commit_date.as_deref().unwrap_or("?"),
                db.age_days.unwrap_or_default()
            );
        }
    }
    for id in &report.unused_ignores {
        eprintln!("warning: --ignore {id} matched no finding");
    }
}

fn describe_db(db: &DatabaseRecord) -> String {
    let commit = match (&db.commit, &db.commit_date, &db.sha256) {
        (Some(c), Some(d), _) => format!(
            "commit {} of {d}{}",
            &c[..c.len().min(12)],
            if db.read_from == kata_repro::scan::database::Origin::ModifiedWorkTree {
                ", work tree modified"
            } else {
                ""
            }
        ),
        (None, Some(d), Some(sha)) => format!("sha256 {}, modified {d}", &sha[..12]),
        _ => "no commit: not a git repository".into(),
    };
    format!(
        "{}: {} ({commit}), {} advisories, {} files skipped",
        db.name,
        db.location.display(),
        db.advisories,
        db.skipped.len()
    )
}

/// The findings of one ecosystem as a table, its columns as wide as their widest cell.
fn table(out: &mut String, findings: &[&Finding]) {
    if findings.is_empty() {
        return;
    }
    let rows: Vec<[String; 7]> = findings
        .iter()
        .map(|f| {
            let category = match (&f.category, &f.ignored) {
                (_, Some(_)) => "ignored",
                (c, None) => c.name(),
            };
            let fixed = if f.fixed.is_empty() {
                "no fixed version".into()
            } else {
                f.fixed.join(" or ")
            };
            [
                f.id.clone(),
                f.package.clone(),
                f.version.clone(),
                f.severity.map_or("unrated", Severity::as_str).into(),
                category.into(),
                f.reach.as_str().into(),
                fixed,
            ]
        })
        .collect();
    let header = [
        "ID", "PACKAGE", "VERSION", "SEVERITY", "CATEGORY", "REACH", "FIXED IN",
    ]
    .map(String::from);
    let all: Vec<[String; 7]> = std::iter::once(header).chain(rows).collect();
    super::render::table(out, &all, " ");
}

fn print(out: &mut String, report: &Report, fail_on: Severity, failing: usize) {
    for db in &report.databases {
        outln!(out, "{}", describe_db(db));
    }
    for (eco, n) in &report.scanned {
        let of: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.ecosystem == *eco)
            .collect();
        let vulns = of.iter().filter(|f| f.category.is_vulnerability()).count();
        outln!(out);
        outln!(
            out,
            "{}: {n} packages scanned, {vulns} vulnerabilities, {} informational",
            eco.as_str(),
            of.len() - vulns
        );
        table(out, &of);
    }
    outln!(out);
    for f in &report.findings {
        if let Some(why) = &f.undecided {
            outln!(
                out,
                "undecided {} {} {}: kept as affected, the database cannot say: {why}",
                f.id,
                f.package,
                f.version
            );
        }
    }
    let ignored: Vec<_> = report
        .findings
        .iter()
        .filter_map(|f| Some((f.id.as_str(), f.ignored.as_deref()?)))
        .collect();
    if !ignored.is_empty() {
        outln!(out);
        for (id, why) in ignored {
            outln!(out, "ignored {id}: {why}");
        }
    }
    if let Some(scope) = &report.reach {
        let resolved: Vec<String> = scope
            .resolved
            .iter()
            .map(|(arch, c)| format!("{} for {arch}", c.join(", ")))
            .collect();
        if resolved.is_empty() {
            outln!(
                out,
                "reach: no chosen component compiles crates or Go modules"
            );
        } else {
            outln!(out, "reach: compiled by {}", resolved.join("; "));
        }
        if !scope.is_complete() {
            outln!(
                out,
                "reach: not resolved: {} (a package compiled only there is lock-only here)",
                scope.not_resolved.join("; ")
            );
        }
    }
    for n in &report.notes {
        outln!(out, "note: {n}");
    }
    let compiled = report
        .findings
        .iter()
        .filter(|f| {
            f.category == Category::Vulnerability
                && matches!(f.reach, Reach::Compiled | Reach::Installed)
        })
        .count();
    outln!(
        out,
        "{failing} vulnerabilities at or above {} not ignored ({compiled} in what the release \
         compiles or installs): {}",
        fail_on.as_str(),
        if failing == 0 { "ok" } else { "FAIL" }
    );
}
