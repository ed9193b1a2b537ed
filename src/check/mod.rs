//! Verdicts on two builds of the same inputs: `kata-repro check` (a plain build against one
//! under reprotest's variations) and `kata-repro audit` (a published build against a rebuild).
//!
//! A verdict per artifact comes from [`crate::diff`]; for `check`, each difference is also put
//! down to the variation that caused it where the evidence shows it: a marker that only the
//! second build's world has (its path, hostname, environment) found in the second build's file,
//! a year that moved with the shifted clock, a mode that moved with the umask. Differences no
//! marker explains are named as such; `--bisect` then rebuilds with one variation at a time.

pub mod html;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diff::{self, ArtifactDiff, Detail, DiffReport, InputDifference, Side};
use crate::digest::Sha256Digest;
use crate::manifest::Manifest;
use crate::sandbox::variation::{self, Applied, Variation, Varied};

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

fn verdict(
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

/// The variations that evidence in the two files (and how they differ) points at.
pub fn blame(first: &Path, second: &Path, d: &ArtifactDiff, varied: &Varied) -> Vec<Blame> {
    let mut out: Vec<Blame> = Vec::new();
    let mut add = |variation: Variation, evidence: String| {
        if !out.iter().any(|b| b.variation == variation) {
            out.push(Blame {
                variation,
                evidence,
            });
        }
    };
    let read = |p: &Path| -> Vec<u8> {
        match std::fs::metadata(p) {
            Ok(m) if m.len() <= MAX_SCAN => std::fs::read(p).unwrap_or_default(),
            _ => Vec::new(),
        }
    };
    // Modes and owners read from the members first: they name the member, where a marker only
    // says that the file holds a string.
    if let Some(evidence) = varied.umask.and_then(|u| umask_evidence(&d.details, u)) {
        add(Variation::Umask, evidence);
    }
    if let Some(evidence) = varied.user.and_then(|u| owner_evidence(&d.details, u)) {
        add(Variation::UserGroup, evidence);
    }
    let (a, b) = (read(first), read(second));
    // Every string of the explanation, for the markers that show only there (archive members).
    let detail_text: Vec<(String, String)> = d.details.iter().map(detail_sides).collect();
    for (variation, marker) in variation::markers(varied) {
        let m = marker.as_bytes();
        let in_b = contains(&b, m) || detail_text.iter().any(|(_, y)| y.contains(&marker));
        let in_a = contains(&a, m) || detail_text.iter().any(|(x, _)| x.contains(&marker));
        if in_b && !in_a {
            add(
                variation,
                format!("the second build's file holds `{marker}`, which only its {variation} had"),
            );
        }
    }
    if varied.names.contains(&Variation::Time) {
        let this_year = year_now();
        let next = (this_year + 1).to_string();
        let (na, nb) = (count(&a, next.as_bytes()), count(&b, next.as_bytes()));
        if nb > na {
            add(
                Variation::Time,
                format!(
                    "the second build's file says {next} where the first says {this_year}: its \
                     clock ran {} ahead",
                    variation::TIME_SHIFT
                ),
            );
        }
    }
    out
}

/// The blame of the artifact `d` follows from (following the chain), each with the evidence of
/// where it shows.
fn origin_blame(d: &ArtifactDiff, diff: &DiffReport, verdicts: &[ArtifactVerdict]) -> Vec<Blame> {
    let mut seen = vec![d.path.as_str()];
    let mut at = d;
    while let Some(f) = &at.follows {
        if seen.contains(&f.artifact.as_str()) {
            break;
        }
        seen.push(&f.artifact);
        let Some(next) = diff.differing.iter().find(|x| x.path == f.artifact) else {
            break;
        };
        let origin = verdicts.iter().find(|v| v.path == next.path);
        if let Some(v) = origin.filter(|v| !v.blame.is_empty()) {
            return v
                .blame
                .iter()
                .map(|b| Blame {
                    variation: b.variation,
                    evidence: format!("through {}: {}", v.path, b.evidence),
                })
                .collect();
        }
        at = next;
    }
    Vec::new()
}

/// The umask of the plain build's steps.
const FIRST_UMASK: u32 = 0o022;

/// Whether a mode moved from `a` to `b` as the umask did from [`FIRST_UMASK`] to `second`: only
/// permission bits differ, only bits one of the two umasks clears, and each side lacks exactly
/// the bits its own umask clears.
pub fn moved_with_umask(a: u32, b: u32, second: u32) -> bool {
    let moved = a ^ b;
    moved != 0
        && moved & !0o777 == 0
        && moved & !(FIRST_UMASK ^ second) == 0
        && a & moved & FIRST_UMASK == 0
        && b & moved & second == 0
}

fn umask_evidence(details: &[Detail], umask: u32) -> Option<String> {
    let octal = |m: &str| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok();
    details.iter().find_map(|x| {
        let because = format!("as the umask did ({FIRST_UMASK:04o}, then {umask:04o})");
        match x {
            Detail::Mode { a, b } => {
                let (ma, mb) = (octal(a)?, octal(b)?);
                moved_with_umask(ma, mb, umask)
                    .then(|| format!("the file's mode moved from {a} to {b}, {because}"))
            }
            Detail::Member {
                archive,
                member,
                change,
            } => {
                let [ma, mb] = change.mode?;
                moved_with_umask(ma, mb, umask).then(|| {
                    format!("{archive} member {member} is mode {mb:o} where the first build has {ma:o}, {because}")
                })
            }
            Detail::Line { a, b, .. } => (a.contains("022") && b.contains(&format!("{umask:03o}"))
                || a.contains("rw-r--r--") && b.contains("rw-rw-r--"))
            .then(|| format!("the file records a mode that moved {because}")),
            _ => None,
        }
    })
}

fn owner_evidence(details: &[Detail], (uid, gid): (u32, u32)) -> Option<String> {
    let (uid, gid) = (u64::from(uid), u64::from(gid));
    let listed = details.iter().find_map(|x| match x {
        Detail::Member {
            archive,
            member,
            change,
        } => {
            let [(ua, ga), (ub, gb)] = change.owner?;
            (ub == uid || gb == gid).then(|| {
                format!(
                    "{archive} member {member} is owned by {ub}:{gb}, the second build's user \
                     and group (the first build's: {ua}:{ga})"
                )
            })
        }
        _ => None,
    })?;
    let more: usize = details
        .iter()
        .filter_map(|x| match x {
            Detail::MoreMembers { counts, .. } => counts
                .split(", ")
                .find_map(|c| c.strip_prefix("owner: ")?.parse::<usize>().ok()),
            _ => None,
        })
        .sum();
    Some(if more > 0 {
        format!("{listed}; {more} more members' owners differ too")
    } else {
        listed
    })
}

/// The A and B text of a detail, for marker search.
fn detail_sides(d: &Detail) -> (String, String) {
    match d {
        Detail::ElfSection { only_a, only_b, .. } => (only_a.join("\n"), only_b.join("\n")),
        Detail::Line { a, b, .. } => (a.clone(), b.clone()),
        Detail::Mode { a, b } => (a.clone(), b.clone()),
        Detail::Member { change, .. } => (String::new(), change.to_string()),
        Detail::Within {
            change, details, ..
        } => {
            let (mut a, mut b) = (String::new(), change.to_string());
            for d in details {
                let (da, db) = detail_sides(d);
                a.push('\n');
                a.push_str(&da);
                b.push('\n');
                b.push_str(&db);
            }
            (a, b)
        }
        Detail::MoreMembers { counts, .. } => (String::new(), counts.clone()),
        Detail::Partition { note, .. } => (String::new(), note.clone()),
        Detail::Diffoscope { output } => (String::new(), output.clone()),
        Detail::Unavailable { .. } => (String::new(), String::new()),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn year_now() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

/// `audit`'s verdicts: the published manifest (with its files, where they are beside it)
/// against a rebuild's output directory, or against the rebuild's failure.
pub fn audit_verdicts(published: &Side, rebuilt: Result<&Path, &str>) -> Vec<ArtifactVerdict> {
    let mut out = Vec::new();
    let dir = match rebuilt {
        Ok(dir) => dir,
        Err(why) => {
            for a in &published.artifacts {
                let mut v = verdict(&a.path, Verdict::CouldNotRebuild, Some(a.sha256), None);
                v.notes.push(why.to_owned());
                out.push(v);
            }
            return out;
        }
    };
    let rebuilt_side = match Side::open(dir) {
        Ok(s) => s,
        Err(e) => return audit_verdicts(published, Err(&e.to_string())),
    };
    let report = diff::diff(published, &rebuilt_side, &diff::Options { deep: false });
    for p in &report.identical {
        let sha = published
            .artifacts
            .iter()
            .find(|a| &a.path == p)
            .map(|a| a.sha256);
        out.push(verdict(p, Verdict::Matches, sha, sha));
    }
    for d in &report.differing {
        let mut v = verdict(
            &d.path,
            Verdict::Differs,
            Some(d.a.sha256),
            Some(d.b.sha256),
        );
        v.details = d.details.clone();
        // Whether the published file itself is what the rebuild gave: then the manifest lies.
        if let Some(pdir) = &published.dir
            && let Ok(actual) = Sha256Digest::of_file(&pdir.join(&d.path))
        {
            if actual == d.b.sha256 {
                v.notes.push(format!(
                    "the published file hashes to {actual}, as the rebuild does: the \
                     manifest's digest {} was altered after the build",
                    d.a.sha256
                ));
            } else if actual != d.a.sha256 {
                v.notes.push(format!(
                    "the published file hashes to {actual}, which is neither the manifest's \
                     digest nor the rebuild's"
                ));
            }
        }
        if v.details.is_empty()
            || v.details
                .iter()
                .all(|x| matches!(x, Detail::Unavailable { .. }))
        {
            v.notes.push(format!(
                "the manifest says sha256 {}, the rebuild gives {}",
                d.a.sha256, d.b.sha256
            ));
        }
        out.push(v);
    }
    for p in &report.removed {
        let sha = published
            .artifacts
            .iter()
            .find(|a| &a.path == p)
            .map(|a| a.sha256);
        let mut v = verdict(p, Verdict::CouldNotRebuild, sha, None);
        v.notes.push("the rebuild did not produce it".into());
        out.push(v);
    }
    for p in &report.added {
        let mut v = verdict(p, Verdict::Differs, None, None);
        v.notes
            .push("the rebuild produced it; the published manifest does not list it".into());
        out.push(v);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The artifacts a published CycloneDX SBOM names as its subject's files (`artifact:<path>`
/// bom-refs), with their SHA-256.
pub fn sbom_subjects(text: &str) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("bomFormat").and_then(|f| f.as_str()) != Some("CycloneDX") {
        return Err("not a CycloneDX BOM (no bomFormat CycloneDX)".into());
    }
    let mut out = Vec::new();
    let mut stack: Vec<&serde_json::Value> = Vec::new();
    if let Some(c) = v.pointer("/metadata/component") {
        stack.push(c);
    }
    if let Some(cs) = v.get("components").and_then(|c| c.as_array()) {
        stack.extend(cs);
    }
    while let Some(c) = stack.pop() {
        if let Some(path) = c
            .get("bom-ref")
            .and_then(|r| r.as_str())
            .and_then(|r| r.strip_prefix("artifact:"))
        {
            let sha = c
                .get("hashes")
                .and_then(|h| h.as_array())
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.get("alg").and_then(|a| a.as_str()) == Some("SHA-256"))
                })
                .and_then(|x| x.get("content"))
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            out.push((path.to_owned(), sha.to_owned()));
        }
        if let Some(cs) = c.get("components").and_then(|c| c.as_array()) {
            stack.extend(cs);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether each (path, sha256) a published record claims is what `manifest` lists.
pub fn claims_match(
    what: &str,
    claims: &[(String, String)],
    manifest: &Manifest,
) -> Vec<(String, bool, String)> {
    claims
        .iter()
        .map(|(path, sha)| {
            let listed = manifest.artifacts.iter().find(|a| &a.path == path);
            let (ok, detail) = match listed {
                Some(a) if a.sha256.to_hex() == *sha => (true, format!("sha256 {sha}")),
                Some(a) => (
                    false,
                    format!("{what} says sha256 {sha}, the manifest says {}", a.sha256),
                ),
                None => (
                    false,
                    format!("{what} names it; the manifest does not list it"),
                ),
            };
            (format!("{what}: {path}"), ok, detail)
        })
        .collect()
}

/// Where diffoscope is, if installed.
pub fn diffoscope() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("diffoscope"))
        .find(|p| p.is_file())
}

/// Runs diffoscope on two differing files into `<report>/diffoscope/<n>.html`, and records the
/// page on the verdict.
pub fn add_diffoscope_pages(
    verdicts: &mut [ArtifactVerdict],
    a_dir: &Path,
    b_dir: &Path,
    report_dir: &Path,
) {
    let Some(bin) = diffoscope() else { return };
    let pages = report_dir.join("diffoscope");
    for (n, v) in verdicts.iter_mut().enumerate() {
        if v.verdict.ok() || v.sha256_first.is_none() || v.sha256_second.is_none() {
            continue;
        }
        let (a, b) = (a_dir.join(&v.path), b_dir.join(&v.path));
        if !a.is_file() || !b.is_file() {
            continue;
        }
        if std::fs::create_dir_all(&pages).is_err() {
            return;
        }
        let rel = format!("diffoscope/{n}.html");
        let status = std::process::Command::new(&bin)
            .arg("--html")
            .arg(report_dir.join(&rel))
            .args(["--no-progress", "--max-report-size", "20000000"])
            .arg(&a)
            .arg(&b)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // diffoscope exits 1 when the files differ, which they do.
        if matches!(status, Ok(s) if s.code() == Some(1) || s.success()) {
            v.diffoscope_html = Some(rel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Artifact;
    use crate::sandbox::Isolation;
    use crate::sandbox::variation::{Host, plan};

    fn differing(path: &str, details: Vec<Detail>) -> ArtifactDiff {
        let art = |s: &[u8]| Artifact {
            path: path.into(),
            sha256: Sha256Digest::of(s),
            size: 1,
            mode: "0644".into(),
        };
        ArtifactDiff {
            path: path.into(),
            a: art(b"a"),
            b: art(b"b"),
            details,
            follows: None,
        }
    }

    #[test]
    fn markers_in_the_second_file_name_their_variation() {
        let host = Host {
            cpus: 2,
            libfaketime: Some("/x/libfaketime.so.1".into()),
            ..Host::default()
        };
        let (varied, _) = plan(&Variation::ALL, Isolation::Namespaces, &host);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let cases = [
            (
                "/tmp/kata-repro/src/main.c",
                "/tmp/kata-repro-second-build/a-longer-path/src/main.c",
                Variation::BuildPath,
            ),
            (
                "built on kata-repro",
                "built on kata-repro-varied-host",
                Variation::DomainHost,
            ),
            (
                "env: A=1",
                "env: A=1 CAPTURE_ENVIRONMENT=i_capture_the_environment",
                Variation::Environment,
            ),
        ];
        for (x, y, expected) in cases {
            std::fs::write(&a, x).unwrap();
            std::fs::write(&b, y).unwrap();
            let got = blame(&a, &b, &differing("f", vec![]), &varied);
            assert_eq!(
                got.iter().map(|g| g.variation).collect::<Vec<_>>(),
                [expected],
                "{x}"
            );
        }
        let y = year_now();
        std::fs::write(&a, format!("built {y}-11-27")).unwrap();
        std::fs::write(&b, format!("built {}-12-05", y + 1)).unwrap();
        let got = blame(&a, &b, &differing("f", vec![]), &varied);
        assert_eq!(got[0].variation, Variation::Time);
        std::fs::write(&a, "0022").unwrap();
        std::fs::write(&b, "0077").unwrap();
        let line = Detail::Line {
            line: 1,
            a: "0022".into(),
            b: "0077".into(),
        };
        let got = blame(&a, &b, &differing("f", vec![line]), &varied);
        assert_eq!(got[0].variation, Variation::Umask);
        // Nothing telling: nobody is blamed.
        std::fs::write(&a, "x1").unwrap();
        std::fs::write(&b, "x2").unwrap();
        assert!(blame(&a, &b, &differing("f", vec![]), &varied).is_empty());
    }

    #[test]
    fn modes_move_with_the_umask_only_as_it_did() {
        // 022 then 002: group write appears, nothing else.
        assert!(moved_with_umask(0o644, 0o664, 0o002));
        assert!(moved_with_umask(0o100755, 0o100775, 0o002));
        // 022 then 077: group and other read go.
        assert!(moved_with_umask(0o644, 0o600, 0o077));
        assert!(!moved_with_umask(0o644, 0o644, 0o002), "nothing moved");
        assert!(
            !moved_with_umask(0o644, 0o646, 0o002),
            "other write is masked by both"
        );
        assert!(
            !moved_with_umask(0o644, 0o755, 0o002),
            "execute bits are no umask's"
        );
        assert!(
            !moved_with_umask(0o664, 0o644, 0o002),
            "the wrong way round"
        );
        assert!(
            !moved_with_umask(0o100644, 0o040664, 0o002),
            "a type change"
        );
    }

    #[test]
    fn owners_equal_to_the_varied_user_are_its_evidence() {
        let member = |owner| Detail::Member {
            archive: "partition 1 (ext4, 8 MiB at 3 MiB)".into(),
            member: "/etc/passwd".into(),
            change: crate::diff::Change {
                owner: Some([(0, 0), owner]),
                ..Default::default()
            },
        };
        let e = owner_evidence(&[member((1234, 1234))], (1234, 1234)).unwrap();
        assert!(e.contains("/etc/passwd is owned by 1234:1234"), "{e}");
        assert!(owner_evidence(&[member((7, 7))], (1234, 1234)).is_none());
    }
}
