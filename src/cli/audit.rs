//! `kata-repro audit`: rebuild a published build from the lockfile its manifest names, and
//! compare bit for bit. Signatures and the published SBOMs and provenance are checked first:
//! a claim that does not hold refuses the audit before anything is built.

use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::check::{Report, Verdict};
use kata_repro::job::Event;
use kata_repro::job::audit::{self, AuditSpec};
use kata_repro::manifest::MANIFEST_FILE;
use kata_repro::source::mirror::Config;

use super::Failure;
use super::build::BuildEnvArgs;
use super::progress::JobProgress;
use super::render::{Format, Output, outln};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The published manifest.json. Its artifacts may sit beside it, as `build` wrote them.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The publisher's public key (PEM): the manifest's signature (and the provenance's, where
    /// published) must verify before anything is built.
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
    /// The manifest's DSSE envelope. Default: manifest.dsse.json beside the manifest.
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// Published CycloneDX SBOMs: their artifacts must be the manifest's, and each must be what
    /// the rebuild writes. Repeatable.
    #[arg(long, value_name = "FILE")]
    sbom: Vec<PathBuf>,
    /// The published provenance (provenance.intoto.json): its subjects must be the manifest's
    /// artifacts, and it must be what the rebuild writes.
    #[arg(long, value_name = "FILE")]
    provenance: Option<PathBuf>,
    /// The lockfile the manifest names. Default: beside the manifest, else lockfiles/<name>.
    #[arg(long, value_name = "FILE")]
    lockfile: Option<PathBuf>,
    /// Keep the rebuild here. Default: a scratch directory, removed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write an HTML report here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    #[command(flatten)]
    with: BuildEnvArgs,
}

pub fn run(args: AuditArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let spec = AuditSpec {
        manifest: args.manifest,
        key: args.key,
        signature: args.signature,
        sboms: args.sbom,
        provenance: args.provenance,
        lockfile: args.lockfile,
        out: args.out,
        diffoscope_pages: args.report.clone(),
    };
    let progress = JobProgress::new();
    let events = |e: Event<'_>| progress.show(e);
    let report = audit::run(&spec, args.with.env(config), &events)?;
    drop(progress);
    if let Some(dir) = &args.report {
        let page = kata_repro::check::html::write(&report, dir).map_err(Failure::input)?;
        super::progress::say(format!("report: {}", page.display()));
    }
    let json = serde_json::to_value(&report).expect("reports serialise");
    let text = |out: &mut String| print(out, &report);
    Ok(format.emit(Output::checked(report.ok(), json, &text)))
}

fn print(out: &mut String, report: &Report) {
    for (what, ok, detail) in &report.preflight {
        outln!(
            out,
            "{:<4} {what}: {detail}",
            if *ok { "ok" } else { "FAIL" }
        );
    }
    if !report.artifacts.is_empty() {
        super::check::print_artifacts(out, report);
    }
    if let Some(f) = &report.failure {
        outln!(out, "{f}");
    }
    outln!(
        out,
        "{} match, {} differ, {} could not be rebuilt: {}",
        report.count(Verdict::Matches),
        report.count(Verdict::Differs),
        report.count(Verdict::CouldNotRebuild),
        if report.ok() {
            format!("the rebuild is bit for bit what {} lists", MANIFEST_FILE)
        } else {
            "the published build is not confirmed".into()
        }
    );
}
