//! Verdicts on two builds of the same inputs: `kata-repro check` (a plain build against one
//! under reprotest's variations) and `kata-repro audit` (a published build against a rebuild).
//!
//! A verdict per artifact comes from [`crate::diff`]; for `check`, each difference is also put
//! down to the variation that caused it where the evidence shows it: a marker that only the
//! second build's world has (its path, hostname, environment) found in the second build's file,
//! a year that moved with the shifted clock, a mode that moved with the umask. Differences no
//! marker explains are named as such; `--bisect` then rebuilds with one variation at a time.

mod audit;
mod blame;
mod diffoscope;
pub mod html;
mod verdicts;

use serde::Serialize;

use crate::diff::{Detail, InputDifference};
use crate::digest::Sha256Digest;
use crate::manifest::Manifest;
use crate::sandbox::variation::{Applied, Variation};

pub use audit::{NotAnSbom, audit_verdicts, claims_match, sbom_subjects};
pub use blame::{blame, moved_with_umask};
pub use diffoscope::{add_diffoscope_pages, diffoscope};
pub use verdicts::check_verdicts;

/// Files above this size are not searched for markers.
const MAX_SCAN: u64 = 2 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// `check`: bit for bit the same in both builds.
    Reproducible,
    /// `check`: the builds differ.
    NotReproducible,
    /// `audit`: the rebuild gives the published bytes.
    Matches,
    /// `audit`: the rebuild differs from what was published.
    Differs,
    /// The second build (or the rebuild) failed, or did not produce the artifact.
    CouldNotRebuild,
}

impl Verdict {
    pub fn ok(self) -> bool {
        matches!(self, Verdict::Reproducible | Verdict::Matches)
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Reproducible => "reproducible",
            Verdict::NotReproducible => "NOT reproducible",
            Verdict::Matches => "matches",
            Verdict::Differs => "DIFFERS",
            Verdict::CouldNotRebuild => "could not rebuild",
        }
    }
}

/// Why a variation is held responsible for a difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blame {
    pub variation: Variation,
    pub evidence: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactVerdict {
    pub path: String,
    pub verdict: Verdict,
    pub sha256_first: Option<Sha256Digest>,
    pub sha256_second: Option<Sha256Digest>,
    /// How the files differ (sections, members, lines), from `kata-repro diff`.
    pub details: Vec<Detail>,
    /// The variations the difference is put down to (`check`).
    pub blame: Vec<Blame>,
    /// What else is known: why it could not be rebuilt, what the published file holds.
    pub notes: Vec<String>,
    /// diffoscope's HTML report of the two files, relative to the report directory.
    pub diffoscope_html: Option<String>,
}

/// The whole outcome, for JSON, the table and the HTML page.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `check` or `audit`.
    pub kind: String,
    pub release: String,
    pub arch: String,
    pub lockfile: String,
    pub lockfile_sha256: String,
    pub source_commit: String,
    pub components: Vec<String>,
    /// `check`: each requested variation, applied or not.
    pub variations: Vec<Applied>,
    /// What went into each side, where they differ (the variations, for `check`).
    pub inputs: Vec<InputDifference>,
    /// The inputs of the first (or published) build: toolchains and recipe digests.
    pub first_inputs: Vec<(String, String)>,
    pub artifacts: Vec<ArtifactVerdict>,
    /// The second build's (or the rebuild's) failure, when it failed.
    pub failure: Option<String>,
    /// Checks before any build: signatures, SBOM and provenance files.
    pub preflight: Vec<(String, bool, String)>,
    /// Labels of the two sides.
    pub first: String,
    pub second: String,
    /// How long each build took, in seconds, by label.
    pub timings: Vec<(String, f64)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
            && self.artifacts.iter().all(|a| a.verdict.ok())
            && self.preflight.iter().all(|(_, ok, _)| *ok)
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.artifacts
            .iter()
            .filter(|a| a.verdict == verdict)
            .count()
    }
}

/// A report's frame from the first (or published) manifest.
pub fn report_for(kind: &str, first: &Manifest, first_label: &str, second_label: &str) -> Report {
    let mut first_inputs = vec![
        (
            "source".to_owned(),
            format!(
                "{} {} ({})",
                first.source.url, first.source.commit, first.source.tag
            ),
        ),
        (
            "lockfile".to_owned(),
            format!("{} sha256 {}", first.lockfile.name, first.lockfile.sha256),
        ),
        (
            "SOURCE_DATE_EPOCH".to_owned(),
            first.source_date_epoch.to_string(),
        ),
    ];
    for c in &first.components {
        first_inputs.push((
            format!("recipe {}", c.name),
            format!("{} sha256 {}", c.recipe.name, c.recipe.sha256),
        ));
        for t in &c.toolchains {
            first_inputs.push((
                format!("{} toolchain {}", c.name, t.name),
                format!("{} {}", t.version, t.digest),
            ));
        }
    }
    Report {
        kind: kind.to_owned(),
        release: first.release.clone(),
        arch: first.arch.clone(),
        lockfile: first.lockfile.name.clone(),
        lockfile_sha256: first.lockfile.sha256.to_hex(),
        source_commit: first.source.commit.clone(),
        components: first.components.iter().map(|c| c.name.clone()).collect(),
        variations: Vec::new(),
        inputs: Vec::new(),
        first_inputs,
        artifacts: Vec::new(),
        failure: None,
        preflight: Vec::new(),
        first: first_label.to_owned(),
        second: second_label.to_owned(),
        timings: Vec::new(),
    }
}

pub(crate) fn verdict(
    path: &str,
    verdict: Verdict,
    a: Option<Sha256Digest>,
    b: Option<Sha256Digest>,
) -> ArtifactVerdict {
    ArtifactVerdict {
        path: path.to_owned(),
        verdict,
        sha256_first: a,
        sha256_second: b,
        details: Vec::new(),
        blame: Vec::new(),
        notes: Vec::new(),
        diffoscope_html: None,
    }
}
