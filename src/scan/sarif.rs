//! A scan as SARIF 2.1.0, for CI code-scanning views: one rule per advisory, one result per
//! finding, located at the lockfile entry that pins the input (the Cargo.lock or go.sum a
//! crate or module comes from, or the toolchain archive), with the pinning file's own line in
//! the message. Ignored findings are kept, with a suppression that gives the reason.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{Category, Finding, Report, Severity};

pub const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The SARIF log of `report`, scanned from `lockfile`, at `fail_on`.
pub fn document(report: &Report, lockfile: &Path, fail_on: Severity) -> Value {
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in &report.findings {
        rules.entry(f.id.as_str()).or_insert(f);
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, id)| (*id, i)).collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| result(f, index[f.id.as_str()], lockfile, fail_on))
        .collect();
    let databases: Vec<Value> = report
        .databases
        .iter()
        .map(|d| json!({ "name": d.name, "commit": d.commit, "commitDate": d.commit_date }))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "kata-repro",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/kata-containers/kata-containers",
                "rules": rules.values().map(|f| rule(f)).collect::<Vec<_>>(),
            }},
            "results": results,
            "properties": { "databases": databases, "notes": report.notes },
        }],
    })
}

fn rule(f: &Finding) -> Value {
    let title = if f.title.is_empty() { &f.id } else { &f.title };
    json!({
        "id": f.id,
        "shortDescription": { "text": title },
        "helpUri": f.url,
        "properties": {
            "tags": ["security", f.ecosystem.as_str(), f.category.name()],
            "aliases": f.aliases,
        },
    })
}

/// error: a vulnerability that fails the scan; warning: one below `fail_on` (or ignored);
/// note: information.
fn level(f: &Finding, fail_on: Severity) -> &'static str {
    match &f.category {
        _ if f.fails(fail_on) => "error",
        Category::Vulnerability => "warning",
        _ => "note",
    }
}

fn result(f: &Finding, rule_index: usize, lockfile: &Path, fail_on: Severity) -> Value {
    let fixed = if f.fixed.is_empty() {
        "no fixed version".to_owned()
    } else {
        format!("fixed in {}", f.fixed.join(" or "))
    };
    let mut r = json!({
        "ruleId": f.id,
        "ruleIndex": rule_index,
        "level": level(f, fail_on),
        "message": { "text": format!(
            "{} {} ({}, pinned at {}) {} {}: {} ({}; {})",
            f.package, f.version, f.ecosystem.as_str(), f.pinned_at,
            if f.undecided.is_some() { "may be affected by" } else { "is affected by" }, f.id,
            if f.title.is_empty() { f.category.name() } else { &f.title },
            fixed, f.reach.as_str(),
        )},
        "locations": [location(f, lockfile)],
        "partialFingerprints": {
            "kataReproFinding/v1": format!("{}:{}@{}:{}", f.ecosystem.as_str(), f.package, f.version, f.id),
        },
        "properties": {
            "package": f.package,
            "version": f.version,
            "category": f.category.name(),
            "severity": f.severity.map_or("unrated", Severity::as_str),
            "reach": f.reach.as_str(),
            "pinnedAt": f.pinned_at,
            "fixed": f.fixed,
            "undecided": f.undecided,
        },
    });
    if let Some(reason) = &f.ignored {
        r["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": reason,
        }]);
    }
    r
}

fn location(f: &Finding, lockfile: &Path) -> Value {
    match &f.pinned_by {
        Some(pin) => json!({ "physicalLocation": {
            "artifactLocation": { "uri": uri(&pin.file) },
            "region": { "startLine": pin.line, "startColumn": pin.column },
        }}),
        None => json!({ "physicalLocation": {
            "artifactLocation": { "uri": uri(lockfile) },
        }}),
    }
}

/// A path as a URI reference: relative paths stay relative (to where the scan ran, as CI
/// uploads expect), absolute ones become `file://` URLs.
fn uri(path: &Path) -> String {
    if path.is_absolute()
        && let Ok(u) = url::Url::from_file_path(path)
    {
        return u.to_string();
    }
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(&path.to_string_lossy(), KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::LockfilePin;

    fn finding(id: &str, category: Category, severity: Option<Severity>) -> Finding {
        Finding {
            title: "a title".into(),
            pinned_by: Some(LockfilePin {
                file: "lockfiles/kata 4.toml".into(),
                line: 30,
                column: 1,
            }),
            ..crate::scan::tests::finding(id, category, severity)
        }
    }

    #[test]
    fn results_point_at_the_lockfile_and_keep_ignored_findings_suppressed() {
        let mut ignored = finding("B", Category::Vulnerability, None);
        ignored.ignored = Some("not reachable".into());
        let report = Report {
            release: "4.0.0".into(),
            lockfile_sha256: String::new(),
            databases: vec![],
            scanned: Default::default(),
            findings: vec![
                finding("A", Category::Vulnerability, Some(Severity::Medium)),
                ignored,
                finding("C", Category::Unmaintained, None),
                finding("A", Category::Vulnerability, Some(Severity::Medium)),
            ],
            unused_ignores: vec![],
            notes: vec![],
            reach: None,
        };
        let doc = document(&report, Path::new("lockfiles/kata 4.toml"), Severity::High);
        let run = &doc["runs"][0];
        let ids: Vec<&str> = run["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["A", "B", "C"]);
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        let levels: Vec<&str> = results
            .iter()
            .map(|r| r["level"].as_str().unwrap())
            .collect();
        // The ignored one is a warning, though unrated.
        assert_eq!(levels, vec!["warning", "warning", "note", "warning"]);
        assert_eq!(results[3]["ruleIndex"], 0);
        let loc = &results[0]["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "lockfiles/kata%204.toml");
        assert_eq!(loc["region"]["startLine"], 30);
        assert_eq!(
            results[1]["suppressions"][0]["justification"],
            "not reachable"
        );
        assert!(results[0].get("suppressions").is_none());
        assert!(
            results[0]["message"]["text"]
                .as_str()
                .unwrap()
                .contains("pinned at Cargo.lock:1")
        );
    }
}
