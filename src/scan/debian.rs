//! Rootfs packages against the Debian security tracker's JSON export
//! (https://security-tracker.debian.org/tracker/data/json, a file the user provides).
//!
//! The tracker is keyed by source package, then issue (CVE, or a TEMP- id), then release
//! (`bookworm`, …): a `resolved` issue is fixed in `fixed_version` (`0`: the release was never
//! affected), an `open` or `undetermined` one has no fix yet. A pinned binary package belongs
//! to the source its pool directory names (Debian's pool is laid out by source package), at its
//! version without a binNMU suffix (`+bN`); it is affected when that version sorts before the
//! fix, by Debian's version ordering (`debversion`, tested against `dpkg --compare-versions`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Category, Ecosystem, Finding, LockfilePin, Reach, Severity};

/// The tracker's view of one issue in one release.
#[derive(Debug, Clone, Deserialize)]
pub struct ReleaseStatus {
    pub status: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    #[serde(default)]
    pub urgency: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub releases: BTreeMap<String, ReleaseStatus>,
}

/// The tracker export: source package → issue id → issue.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    pub path: PathBuf,
    pub by_source: BTreeMap<String, BTreeMap<String, Issue>>,
    /// The sha256 of the file read, as the report records it.
    pub sha256: String,
    /// The file's modification time, seconds since the epoch.
    pub modified: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("--debian-tracker {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--debian-tracker {}: not the Debian security tracker's JSON export ({message}); \
         download https://security-tracker.debian.org/tracker/data/json",
        path.display()
    )]
    Malformed { path: PathBuf, message: String },
    #[error(
        "--debian-tracker {}: no issue names the release `{release}`, which {packages} pinned \
         rootfs packages belong to (the tracker names {known}); lock the rootfs again, which \
         pins the release file's codename rather than a suite alias, or scan without \
         --debian-tracker to leave the rootfs out",
        path.display()
    )]
    UnknownRelease {
        path: PathBuf,
        release: String,
        packages: usize,
        known: String,
    },
}

impl Tracker {
    pub fn load(path: &Path) -> Result<Self, TrackerError> {
        let read_err = |source| TrackerError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::read(path).map_err(read_err)?;
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let by_source = serde_json::from_slice(&bytes).map_err(|e| TrackerError::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            by_source,
            sha256: crate::digest::Sha256Digest::of(&bytes).to_hex(),
            modified,
        })
    }

    /// How many issues it lists.
    pub fn issues(&self) -> usize {
        self.by_source.values().map(BTreeMap::len).sum()
    }

    /// The releases its issues name (`bookworm`, `trixie`, …): codenames, never suites.
    pub fn releases(&self) -> std::collections::BTreeSet<&str> {
        self.by_source
            .values()
            .flat_map(BTreeMap::values)
            .flat_map(|i| i.releases.keys().map(String::as_str))
            .collect()
    }
}

/// Debian's version ordering.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    crate::lock::debian::version_cmp(a, b)
}

/// The source package a pool URL (`…/pool/<component>/<prefix>/<source>/<file>.deb`, the
/// component being one directory or more: `pool/updates/main/…` in debian-security) names. The
/// prefix is the source's first letter, or `lib` and its fourth.
pub fn source_of(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let parts: Vec<&str> = path.split('/').collect();
    let pool = parts.iter().rposition(|p| *p == "pool")?;
    // pool, at least one component directory, prefix, source, file.
    let [prefix, source, _file] = parts.get(pool + 2..)?.last_chunk::<3>()?;
    // As dak files it: `lib` and the next letter (all of `lib` for a source named so).
    let expected = if source.starts_with("lib") {
        source.get(..4).unwrap_or(source)
    } else {
        source.get(..1)?
    };
    (*prefix == expected).then_some(*source)
}

/// A binary package's version as its source's: without a binNMU suffix (`+b1`).
pub fn source_version(version: &str) -> &str {
    match version.rsplit_once("+b") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => version,
    }
}

/// A pinned rootfs package.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub package: String,
    pub version: String,
    pub source: String,
    /// The Debian release its archive suite belongs to (`bookworm`).
    pub release: String,
    pub pinned_at: String,
    pub pinned_by: Option<LockfilePin>,
}

fn severity(urgency: Option<&str>) -> Option<Severity> {
    match urgency?.trim_end_matches('*') {
        "unimportant" => Some(Severity::None),
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        _ => None,
    }
}

/// Every issue the tracker says affects a pinned package in its release. A fixed version that
/// does not parse gives an `undecided` finding, never a silent "not affected".
pub fn scan(tracker: &Tracker, pinned: &[Pinned]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for p in pinned {
        let Some(issues) = tracker.by_source.get(&p.source) else {
            continue;
        };
        let version = source_version(&p.version);
        for (id, issue) in issues {
            let Some(status) = issue.releases.get(&p.release) else {
                continue;
            };
            let mut undecided = None;
            let fixed = match (status.status.as_str(), status.fixed_version.as_deref()) {
                ("resolved", Some("0")) => continue,
                ("resolved", Some(fix)) => match compare(version, fix) {
                    Some(Ordering::Less) => Some(fix),
                    Some(_) => continue,
                    None => {
                        undecided = Some(format!(
                            "{}: cannot compare {} {version} with {id}'s fixed version `{fix}`",
                            tracker.path.display(),
                            p.source
                        ));
                        Some(fix)
                    }
                },
                ("resolved", None) => continue,
                _ => None,
            };
            findings.push(Finding {
                ecosystem: Ecosystem::Deb,
                id: id.clone(),
                aliases: Vec::new(),
                package: p.package.clone(),
                version: p.version.clone(),
                category: Category::Vulnerability,
                severity: severity(status.urgency.as_deref()),
                cvss: None,
                title: issue.description.clone().unwrap_or_default(),
                url: format!("https://security-tracker.debian.org/tracker/{id}"),
                fixed: fixed.map(str::to_owned).into_iter().collect(),
                reach: Reach::Installed,
                purl: None,
                pinned_at: p.pinned_at.clone(),
                pinned_by: p.pinned_by.clone(),
                ignored: None,
                undecided,
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_their_versions_come_from_the_pool_path() {
        let url = "https://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9+deb12u13_amd64.deb";
        assert_eq!(source_of(url), Some("glibc"));
        assert_eq!(
            source_of("https://x/pool/main/libs/libssl/libssl3_3.0.17-1~deb12u3_amd64.deb"),
            Some("libssl")
        );
        assert_eq!(source_of("https://x/libc6.deb"), None);
        // debian-security's pool has one more directory; the prefix must match the source.
        assert_eq!(
            source_of(
                "https://deb.debian.org/debian-security/pool/updates/main/l/linux-6.12/\
                 linux-source-6.12_6.12.117-1%7edeb12u1_all.deb"
            ),
            Some("linux-6.12")
        );
        assert_eq!(source_of("https://x/pool/main/x/glibc/libc6.deb"), None);
        assert_eq!(source_of("https://x/pool/g/glibc/libc6.deb"), None);
        assert_eq!(source_version("1.2-3+b1"), "1.2-3");
        assert_eq!(source_version("12.4+deb12u15"), "12.4+deb12u15");
        assert_eq!(source_version("1.0+b"), "1.0+b");
    }

    fn tracker(json: serde_json::Value) -> Tracker {
        Tracker {
            path: "tracker.json".into(),
            by_source: serde_json::from_value(json).unwrap(),
            ..Tracker::default()
        }
    }

    fn pinned(package: &str, version: &str, source: &str) -> Pinned {
        Pinned {
            package: package.into(),
            version: version.into(),
            source: source.into(),
            release: "bookworm".into(),
            pinned_at: "kata.toml:10".into(),
            pinned_by: None,
        }
    }

    #[test]
    fn fixed_open_and_never_affected_issues_by_release() {
        let t = tracker(serde_json::json!({
            "glibc": {
                "CVE-2099-0001": {"description": "fixed later", "releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "2.36-9+deb12u14", "urgency": "high"},
                    "trixie": {"status": "resolved", "fixed_version": "2.41-1"}}},
                "CVE-2099-0002": {"releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "2.36-9+deb12u13", "urgency": "low"}}},
                "CVE-2099-0003": {"releases": {
                    "bookworm": {"status": "open", "urgency": "unimportant"}}},
                "CVE-2099-0004": {"releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "0"}}},
                "CVE-2099-0005": {"releases": {
                    "trixie": {"status": "open"}}},
                "CVE-2099-0006": {"releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "not a version!"}}}
            }
        }));
        let found = scan(
            &t,
            &[
                pinned("libc6", "2.36-9+deb12u13+b1", "glibc"),
                pinned("x", "1", "other"),
            ],
        );
        let got: Vec<(&str, Option<Severity>, &[String])> = found
            .iter()
            .map(|f| (f.id.as_str(), f.severity, f.fixed.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "CVE-2099-0001",
                    Some(Severity::High),
                    &["2.36-9+deb12u14".to_owned()][..]
                ),
                ("CVE-2099-0003", Some(Severity::None), &[][..]),
                ("CVE-2099-0006", None, &["not a version!".to_owned()][..]),
            ]
        );
        assert_eq!(found[0].package, "libc6");
        assert_eq!(found[0].title, "fixed later");
        // An unrated open issue of importance "unimportant" does not fail a scan.
        assert!(!found[1].fails(Severity::Low));
        // A fixed version that cannot be compared leaves the issue standing, and failing.
        let undecided = found[2].undecided.as_deref().unwrap_or_default();
        assert!(undecided.contains("not a version!"), "{undecided}");
        assert!(found[2].fails(Severity::Critical));
        assert!(found[..2].iter().all(|f| f.undecided.is_none()));
    }

    #[test]
    fn versions_order_as_debian_orders_them() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1:0.9", "2.0", Greater),
            ("2.36-9+deb12u13", "2.36-9+deb12u14", Less),
            ("1.0-1", "1.0-1+b1", Less),
            ("1.0a", "1.0+", Less),
        ] {
            assert_eq!(compare(a, b), Some(o), "{a} {b}");
        }
    }
}
