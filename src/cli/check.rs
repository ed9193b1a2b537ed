//! `kata-repro check`: build twice, the second time under reprotest's variations, and say
//! which artifacts are reproducible and, for those that are not, why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::check::{self, ArtifactVerdict, Blame, Report, Verdict};
use kata_repro::diff::{self, Side};
use kata_repro::sandbox::variation::{self, Applied, Variation, Varied};
use kata_repro::source::mirror::Config;

use super::Failure;
use super::build::{BuildOptions, Job, JobArgs};

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

pub fn run(args: CheckArgs, config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let requested = variation::parse_list(&args.variations).map_err(Failure::input)?;
    let job = Job::open(args.job, config)?;
    let isolation = job.isolation()?;
    let host = variation::Host::probe(&std::env::var("PATH").unwrap_or_default());
    let (mut varied, mut applied) = variation::plan(&requested, isolation, &host);
    // The clock cannot be shifted for rustc (see variation::time_unsupported).
    let rust: Vec<&str> = job
        .components()
        .iter()
        .filter(|c| job.uses_rust(c))
        .map(String::as_str)
        .collect();
    if let Some(row) = applied
        .iter_mut()
        .find(|r| r.variation == Variation::Time && r.applied)
        && let Some(why) = variation::time_unsupported(&varied.env, !rust.is_empty())
    {
        if rust.len() == job.components().len() {
            row.applied = false;
            row.second = format!("not applied: {why}");
            varied = varied.only(
                &varied
                    .names
                    .iter()
                    .copied()
                    .filter(|v| *v != Variation::Time)
                    .collect::<Vec<_>>(),
            );
        } else {
            row.second = format!("{}; not applied to {}: {why}", row.second, rust.join(", "));
        }
    }

    let scratch;
    let base: PathBuf = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::input(anyhow!("{}: {e}", dir.display())))?;
            dir.clone()
        }
        None => {
            let root = job.release.store.staging_dir();
            std::fs::create_dir_all(&root)
                .map_err(|e| Failure::input(anyhow!("{}: {e}", root.display())))?;
            scratch = tempfile::Builder::new()
                .prefix("check-")
                .tempdir_in(&root)
                .map_err(|e| Failure::input(anyhow!("{}: {e}", root.display())))?;
            scratch.path().to_owned()
        }
    };
    let (first_dir, second_dir) = (base.join("first"), base.join("second"));
    super::progress::say(format!(
        "check: {} for {}, built twice without the action cache; the second build varies {}",
        job.components().join(", "),
        job.args.arch,
        if varied.names.is_empty() {
            "nothing".to_owned()
        } else {
            varied
                .names
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let options = |variations: Varied, label: &str| BuildOptions {
        no_cache: true,
        variations,
        records: false,
        label: label.to_owned(),
    };
    // A first build that fails is not a reproducibility verdict: its error stands.
    let started = std::time::Instant::now();
    let first = job.build(&first_dir, &options(Varied::default(), "first build"))?;
    let first_seconds = started.elapsed().as_secs_f64();
    let mut report = check::report_for(
        "check",
        &first.manifest,
        "first build (plain)",
        "second build (varied)",
    );
    report.variations = applied.clone();
    report.timings.push(("first build".into(), first_seconds));
    let started = std::time::Instant::now();
    let second = job.build(&second_dir, &options(varied.clone(), "second build"));
    report
        .timings
        .push(("second build".into(), started.elapsed().as_secs_f64()));
    match second {
        Ok(_) => {
            let (a, b) = (open(&first_dir)?, open(&second_dir)?);
            let d = diff::diff(&a, &b, &diff::Options { deep: false });
            report.inputs = d.inputs.clone();
            report.artifacts = check::check_verdicts(&d, &first_dir, &second_dir, &varied);
        }
        Err(f) => {
            report.failure = Some(format!(
                "the second build failed under the variations: {:#}",
                f.error
            ));
            report.artifacts = first
                .manifest
                .artifacts
                .iter()
                .map(|a| ArtifactVerdict {
                    path: a.path.clone(),
                    verdict: Verdict::CouldNotRebuild,
                    sha256_first: Some(a.sha256),
                    sha256_second: None,
                    details: vec![],
                    blame: vec![],
                    notes: vec!["the second build failed (see the failure)".into()],
                    diffoscope_html: None,
                })
                .collect();
        }
    }
    if args.bisect && report.failure.is_none() && !report.ok() {
        bisect(&job, &mut report, &varied, &first_dir, &base)?;
    }
    if let Some(dir) = &args.report {
        check::add_diffoscope_pages(&mut report.artifacts, &first_dir, &second_dir, dir);
        let page = check::html::write(&report, dir).map_err(Failure::input)?;
        super::progress::say(format!("report: {}", page.display()));
    }
    print(&report, &applied, json, args.keep.as_deref());
    Ok(ExitCode::from(if report.ok() { 0 } else { 1 }))
}

fn open(dir: &Path) -> Result<Side, Failure> {
    Side::open(dir).map_err(Failure::input)
}

/// Rebuilds once per applied variation, alone, and blames each for the artifacts it changes.
fn bisect(
    job: &Job,
    report: &mut Report,
    varied: &Varied,
    first_dir: &Path,
    base: &Path,
) -> Result<(), Failure> {
    for &v in &varied.names {
        let dir = base.join(format!("only-{}", v.name()));
        let label = format!("bisect {}", v.name());
        let started = std::time::Instant::now();
        let built = job.build(
            &dir,
            &BuildOptions {
                no_cache: true,
                variations: varied.only(&[v]),
                records: false,
                label,
            },
        );
        report.timings.push((
            format!("bisect {}", v.name()),
            started.elapsed().as_secs_f64(),
        ));
        let changed: Vec<String> = match built {
            Ok(_) => {
                let d = diff::diff(
                    &open(first_dir)?,
                    &open(&dir)?,
                    &diff::Options { deep: false },
                );
                d.differing
                    .iter()
                    .map(|x| x.path.clone())
                    .chain(d.added.iter().cloned())
                    .chain(d.removed.iter().cloned())
                    .collect()
            }
            Err(f) => {
                for a in report.artifacts.iter_mut().filter(|a| !a.verdict.ok()) {
                    a.notes
                        .push(format!("with only {v}, the build failed: {:#}", f.error));
                }
                Vec::new()
            }
        };
        for a in report
            .artifacts
            .iter_mut()
            .filter(|a| changed.contains(&a.path))
        {
            a.notes.retain(|n| !n.contains("--bisect"));
            let evidence = format!("rebuilt with only {v} varied, it differs from the first build");
            match a.blame.iter_mut().find(|b| b.variation == v) {
                Some(b) => b.evidence = format!("{}; {evidence}", b.evidence),
                None => a.blame.push(Blame {
                    variation: v,
                    evidence,
                }),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn print(report: &Report, applied: &[Applied], json: bool, kept: Option<&Path>) {
    let code = if report.ok() { 0 } else { 1 };
    if json {
        let mut v = serde_json::to_value(report).expect("reports serialise");
        v["ok"] = report.ok().into();
        v["exit_code"] = code.into();
        if let Some(k) = kept {
            v["kept"] = serde_json::json!(k);
        }
        super::print_json(&v);
        return;
    }
    println!("{:<13} {:<8} SECOND BUILD", "VARIATION", "APPLIED");
    for a in applied {
        println!(
            "{:<13} {:<8} {}",
            a.variation.name(),
            if a.applied { "yes" } else { "no" },
            a.second
        );
    }
    println!();
    print_artifacts(report);
    if let Some(f) = &report.failure {
        println!("{f}");
    }
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(label, s)| format!("{label} {s:.1}s"))
        .collect();
    println!("{}", timings.join(", "));
    let blamed: std::collections::BTreeSet<Variation> = report
        .artifacts
        .iter()
        .flat_map(|a| a.blame.iter().map(|b| b.variation))
        .collect();
    println!(
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
pub fn print_artifacts(report: &Report) {
    let width = report
        .artifacts
        .iter()
        .map(|a| a.path.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!("{:<width$}  {:<17} WHY", "ARTIFACT", "VERDICT");
    for a in &report.artifacts {
        let why: Vec<&str> = a.blame.iter().map(|b| b.variation.name()).collect();
        println!(
            "{:<width$}  {:<17} {}",
            a.path,
            a.verdict.label(),
            why.join(", ")
        );
        if a.verdict.ok() {
            continue;
        }
        for b in &a.blame {
            println!("    {}: {}", b.variation, b.evidence);
        }
        for n in &a.notes {
            println!("    {n}");
        }
        for d in &a.details {
            println!("    {d}");
        }
    }
}
