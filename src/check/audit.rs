//! `audit`'s verdicts: a published build against its rebuild, and the published records'
//! claims against the manifest.

use std::path::Path;

use super::{ArtifactVerdict, Verdict, verdict};
use crate::diff::{self, Detail, Side};
use crate::digest::Sha256Digest;
use crate::manifest::Manifest;

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
    let report = diff::diff(published, &rebuilt_side, &diff::Options::default());
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

/// Why a published SBOM's subjects cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum NotAnSbom {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("not a CycloneDX BOM (no bomFormat CycloneDX)")]
    NotCycloneDx,
}

/// The artifacts a published CycloneDX SBOM names as its subject's files (`artifact:<path>`
/// bom-refs), with their SHA-256.
pub fn sbom_subjects(text: &str) -> Result<Vec<(String, String)>, NotAnSbom> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    if v.get("bomFormat").and_then(|f| f.as_str()) != Some("CycloneDX") {
        return Err(NotAnSbom::NotCycloneDx);
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
