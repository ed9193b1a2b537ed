//! `kata-repro check`: build twice, the second time under reprotest's variations, and say
//! which artifacts are reproducible and, for those that are not, why.

use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::check::{Report, Verdict};
use kata_repro::job::check::{self, CheckSpec};
use kata_repro::job::{Event, Job};
use kata_repro::sandbox::variation::{self, Applied, Variation};
use kata_repro::source::mirror::Config;

use super::Failure;
use super::build::JobArgs;
use super::progress::JobProgress;
use super::render::{Format, Output, outln};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Variations for the second build: `all`, or a comma-separated list of reprotest's names
    /// (environment, build_path, kernel, aslr, num_cpus, time, user_group, fileordering,
    /// domain_host, home, locales, exec_path, timezone, umask).
    #[arg(long, value_name = "all|LIST", default_value = "all")]
    variations: String,
    /// Keep both builds: DIR/first and DIR/second. Default: a scratch directory, removed.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Write an HTML report (index.html, and diffoscope's pages where it is installed) here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// When something differs, rebuild once per applied variation, each alone, to find which
    /// variations change which artifacts (a full build each).
    #[arg(long)]
    bisect: bool,
}

pub fn run(args: CheckArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let variations = variation::parse_list(&args.variations).map_err(Failure::input)?;
    let progress = JobProgress::new();
    let events = |e: Event<'_>| progress.show(e);
    let job = Job::open(args.job.spec(config), &events)?;
    let spec = CheckSpec {
        variations,
        keep: args.keep,
        bisect: args.bisect,
        diffoscope_pages: args.report.clone(),
    };
    let checked = check::run(&job, &spec, &events)?;
    drop(progress);
    if let Some(dir) = &args.report {
        let page = kata_repro::check::html::write(&checked.report, dir).map_err(Failure::input)?;
        super::progress::say(format!("report: {}", page.display()));
    }
    let report = &checked.report;
    let mut json = serde_json::to_value(report).expect("reports serialise");
    if let Some(k) = &checked.kept {
        json["kept"] = serde_json::json!(k);
    }
    let text = |out: &mut String| print(out, report, &checked.applied);
    Ok(format.emit(Output::checked(report.ok(), json, &text)))
}

fn print(out: &mut String, report: &Report, applied: &[Applied]) {
    outln!(out, "{:<13} {:<8} SECOND BUILD", "VARIATION", "APPLIED");
    for a in applied {
        outln!(
            out,
            "{:<13} {:<8} {}",
            a.variation.name(),
            if a.applied { "yes" } else { "no" },
            a.second
        );
    }
    outln!(out);
    print_artifacts(out, report);
    if let Some(f) = &report.failure {
        outln!(out, "{f}");
    }
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(label, s)| format!("{label} {s:.1}s"))
        .collect();
    outln!(out, "{}", timings.join(", "));
    let blamed: std::collections::BTreeSet<Variation> = report
        .artifacts
        .iter()
        .flat_map(|a| a.blame.iter().map(|b| b.variation))
        .collect();
    outln!(
        out,
        "{} reproducible, {} not reproducible{}{}: {}",
        report.count(Verdict::Reproducible),
        report.count(Verdict::NotReproducible),
        if report.count(Verdict::CouldNotRebuild) > 0 {
            format!(
                ", {} could not be rebuilt",
                report.count(Verdict::CouldNotRebuild)
            )
        } else {
            String::new()
        },
        if blamed.is_empty() {
            String::new()
        } else {
            format!(
                " (variations that change the outputs: {})",
                blamed
                    .iter()
                    .map(|v| v.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        if report.ok() {
            "reproducible under every applied variation"
        } else {
            "not reproducible"
        }
    );
}

/// The artifact table with each difference explained: shared by `check` and `audit`.
pub fn print_artifacts(out: &mut String, report: &Report) {
    let width = report
        .artifacts
        .iter()
        .map(|a| a.path.len())
        .max()
        .unwrap_or(8)
        .max(8);
    outln!(out, "{:<width$}  {:<17} WHY", "ARTIFACT", "VERDICT");
    for a in &report.artifacts {
        let why: Vec<&str> = a.blame.iter().map(|b| b.variation.name()).collect();
        outln!(
            out,
            "{:<width$}  {:<17} {}",
            a.path,
            a.verdict.label(),
            why.join(", ")
        );
        if a.verdict.ok() {
            continue;
        }
        for b in &a.blame {
            outln!(out, "    {}: {}", b.variation, b.evidence);
        }
        for n in &a.notes {
            outln!(out, "    {n}");
        }
        for d in &a.details {
            outln!(out, "    {d}");
        }
    }
}
