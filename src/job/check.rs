//! The `check` job: build twice, the second time under reprotest's variations, and say which
//! artifacts are reproducible and, for those that are not, why; with `bisect`, rebuild once
//! per applied variation to blame each for what it changes.

use std::path::{Path, PathBuf};

use super::{BuildOptions, Event, Events, Job, JobError};
use crate::check::{self, ArtifactVerdict, Blame, Report, Verdict};
use crate::diff::{self, Side};
use crate::sandbox::variation::{self, Applied, Variation, Varied};

/// What a check asks for.
#[derive(Debug, Clone, Default)]
pub struct CheckSpec {
    /// The variations asked for.
    pub variations: Vec<Variation>,
    /// Keep both builds here (`first`, `second`); `None` for a scratch directory, removed.
    pub keep: Option<PathBuf>,
    /// Rebuild once per applied variation when something differs.
    pub bisect: bool,
    /// Where diffoscope's pages go, for an HTML report.
    pub diffoscope_pages: Option<PathBuf>,
}

/// What a check found.
pub struct Checked {
    pub report: Report,
    /// Each variation asked for: whether the second build applied it, and how.
    pub applied: Vec<Applied>,
    /// Where the builds were kept.
    pub kept: Option<PathBuf>,
}

/// Which variations the second build applies here, and how each was (or was not) applied.
pub fn plan(job: &Job, requested: &[Variation]) -> Result<(Varied, Vec<Applied>), JobError> {
    let isolation = job.isolation()?;
    let host = variation::Host::probe(&std::env::var("PATH").unwrap_or_default());
    let (varied, mut applied) = variation::plan(requested, isolation, &host);
    let rust: Vec<&str> = job
        .components()
        .iter()
        .filter(|c| job.uses_rust(c))
        .map(String::as_str)
        .collect();
    let total = job.components().len();
    let varied = variation::restrict_to_components(&varied, &mut applied, &rust, total);
    Ok((varied, applied))
}

fn options(variations: Varied, label: &str) -> BuildOptions {
    BuildOptions {
        no_cache: crate::builder::NoCache::All,
        variations,
        records: false,
        label: label.to_owned(),
        ..Default::default()
    }
}

/// Builds `job` twice and compares.
pub fn run(job: &Job, spec: &CheckSpec, events: Events<'_>) -> Result<Checked, JobError> {
    let (varied, applied) = plan(job, &spec.variations)?;
    let scratch;
    let base: PathBuf = match &spec.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(crate::files::io_err(dir))?;
            dir.clone()
        }
        None => {
            scratch = super::scratch(&job.release, "check-")?;
            scratch.path().to_owned()
        }
    };
    let (first_dir, second_dir) = (base.join("first"), base.join("second"));
    let names: Vec<&str> = varied.names().iter().map(|v| v.name()).collect();
    events(Event::Note(format!(
        "check: {} for {}, built twice without the action cache; the second build varies {}",
        job.components().join(", "),
        job.spec.arch,
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(", ")
        }
    )));
    // A first build that fails is not a reproducibility verdict: its error stands.
    let started = std::time::Instant::now();
    let first = job.build(
        &first_dir,
        &options(Varied::default(), "first build"),
        events,
    )?;
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
    let second = job.build(
        &second_dir,
        &options(varied.clone(), "second build"),
        events,
    );
    report
        .timings
        .push(("second build".into(), started.elapsed().as_secs_f64()));
    match second {
        Err(e) if refused_by_remote(&e) => return Err(e),
        Ok(_) => {
            let d = diff::diff(
                &Side::open(&first_dir)?,
                &Side::open(&second_dir)?,
                &diff::Options::default(),
            );
            report.inputs = d.inputs.clone();
            report.artifacts = check::check_verdicts(&d, &first_dir, &second_dir, &varied);
        }
        Err(e) => {
            report.failure = Some(format!("the second build failed under the variations: {e}"));
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
    if spec.bisect && report.failure.is_none() && !report.ok() {
        bisect(job, &mut report, &varied, &first_dir, &base, events)?;
    }
    if let Some(dir) = &spec.diffoscope_pages {
        check::add_diffoscope_pages(&mut report.artifacts, &first_dir, &second_dir, dir);
    }
    Ok(Checked {
        report,
        applied,
        kept: spec.keep.clone(),
    })
}

/// Rebuilds once per applied variation, alone, and blames each for the artifacts it changes.
fn bisect(
    job: &Job,
    report: &mut Report,
    varied: &Varied,
    first_dir: &Path,
    base: &Path,
    events: Events<'_>,
) -> Result<(), JobError> {
    for v in varied.names() {
        let dir = base.join(format!("only-{}", v.name()));
        let label = format!("bisect {}", v.name());
        let started = std::time::Instant::now();
        let built = job.build(&dir, &options(varied.only(&[v]), &label), events);
        report
            .timings
            .push((label.clone(), started.elapsed().as_secs_f64()));
        let changed = match built {
            Err(e) if refused_by_remote(&e) => return Err(e),
            Ok(_) => changed_paths(first_dir, &dir)?,
            Err(e) => {
                for a in report.artifacts.iter_mut().filter(|a| !a.verdict.ok()) {
                    a.notes
                        .push(format!("with only {v}, the build failed: {e}"));
                }
                Vec::new()
            }
        };
        blame(report, v, &changed);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Whether a build failed because the remote's workers cannot build it as asked (none makes
/// one of its variations, or comes to its key): that stops the check, since it says nothing of
/// the artifacts.
fn refused_by_remote(e: &JobError) -> bool {
    use crate::builder::{BuildError, SharedError};
    matches!(e, JobError::Build(b) if matches!(
        **b,
        BuildError::Shared {
            source: SharedError::Usage(_),
            ..
        }
    ))
}

/// The artifacts that differ between two builds, or are in only one.
fn changed_paths(first: &Path, other: &Path) -> Result<Vec<String>, JobError> {
    let d = diff::diff(
        &Side::open(first)?,
        &Side::open(other)?,
        &diff::Options::default(),
    );
    Ok(d.differing
        .iter()
        .map(|x| x.path.clone())
        .chain(d.added.iter().cloned())
        .chain(d.removed.iter().cloned())
        .collect())
}

/// Blames `v` for the artifacts in `changed`.
fn blame(report: &mut Report, v: Variation, changed: &[String]) {
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
}
