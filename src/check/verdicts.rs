//! `check`'s verdicts: the plain build against the varied one, each difference put down to the
//! variation whose marker shows in it.

use std::path::Path;

use super::blame::origin_blame;
use super::{ArtifactVerdict, Blame, Verdict, blame, verdict};
use crate::diff::DiffReport;
use crate::sandbox::variation::Varied;

/// `check`'s verdicts: `first` and `second` are output directories of the plain and the varied
/// build.
pub fn check_verdicts(
    diff: &DiffReport,
    first: &Path,
    second: &Path,
    varied: &Varied,
) -> Vec<ArtifactVerdict> {
    let mut out = Vec::new();
    for path in &diff.identical {
        let sha = crate::digest::Sha256Digest::of_file(&first.join(path)).ok();
        out.push(verdict(path, Verdict::Reproducible, sha, sha));
    }
    let mut differing: Vec<ArtifactVerdict> = Vec::new();
    for d in &diff.differing {
        let mut v = verdict(
            &d.path,
            Verdict::NotReproducible,
            Some(d.a.sha256),
            Some(d.b.sha256),
        );
        v.details = d.details.clone();
        v.blame = blame(&first.join(&d.path), &second.join(&d.path), d, varied);
        differing.push(v);
    }
    // A difference that follows from another artifact's is put down to what that one is.
    let origins: Vec<Vec<Blame>> = diff
        .differing
        .iter()
        .map(|d| origin_blame(d, diff, &differing))
        .collect();
    for ((d, mut v), inherited) in diff.differing.iter().zip(differing).zip(origins) {
        if let Some(f) = &d.follows {
            v.notes
                .push(format!("follows from {}: {}", f.artifact, f.evidence));
            for b in inherited {
                if !v.blame.iter().any(|x| x.variation == b.variation) {
                    v.blame.push(b);
                }
            }
        }
        if v.blame.is_empty() {
            v.notes.push(
                "no marker of a variation shows in the files: `kata-repro check --bisect` \
                 rebuilds with one variation at a time to find which"
                    .into(),
            );
        }
        out.push(v);
    }
    for p in &diff.removed {
        let mut v = verdict(p, Verdict::NotReproducible, None, None);
        v.notes.push("only the first build has it".into());
        out.push(v);
    }
    for p in &diff.added {
        let mut v = verdict(p, Verdict::NotReproducible, None, None);
        v.notes.push("only the second build has it".into());
        out.push(v);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
