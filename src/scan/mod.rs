//! `kata-repro scan`: every pinned input against offline advisory databases.
//!
//! One unit per ecosystem's check, as cargo-deny has one per check: [`rustsec`] matches the
//! crates of the release's Cargo.lock against the RustSec database, [`govulndb`] its Go modules
//! and Go toolchain against the Go vulnerability database (OSV records, [`osv`]). Each check
//! turns a [`database::Snapshot`] and the pinned inputs into [`Finding`]s; none prints.
//! Matching is by package and version only: whether a vulnerable function is reachable is not
//! analysed.

pub mod database;
pub mod debian;
pub mod embed;
pub mod govulndb;
pub mod osv;
pub mod rustsec;
pub mod sarif;
pub mod vex;

use std::str::FromStr;

use serde::Serialize;

pub use database::{DatabaseError, Snapshot};

/// Which ecosystem a finding's package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Cargo,
    Go,
    Deb,
}

impl Ecosystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Cargo => "cargo",
            Ecosystem::Go => "go",
            Ecosystem::Deb => "deb",
        }
    }
}

/// How severe a vulnerability is, from its CVSS score (or the database's own rating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "`{s}` is not a severity: use low, medium, high or critical"
            )),
        }
    }
}

/// What an advisory says of the package: a vulnerability, or information that is not one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Vulnerability,
    Unmaintained,
    Unsound,
    Notice,
    /// Another informational kind, by the database's name for it.
    Informational(String),
}

impl Category {
    pub fn is_vulnerability(&self) -> bool {
        matches!(self, Category::Vulnerability)
    }

    pub fn name(&self) -> &str {
        match self {
            Category::Vulnerability => "vulnerability",
            Category::Unmaintained => "unmaintained",
            Category::Unsound => "unsound",
            Category::Notice => "notice",
            Category::Informational(s) => s,
        }
    }
}

/// Whether the package is in what the release's components compile, or only in a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// In a component's resolved dependency set (the set its SBOM lists).
    Compiled,
    /// In the lock only: no component of the release compiles it.
    LockOnly,
    /// The Go toolchain itself (the go command): it builds the components, and is not in them.
    BuildTool,
    /// A rootfs package: every pinned one is installed in the guest image as it is.
    Installed,
    /// Not resolved (`--lock-only`).
    Unresolved,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Compiled => "compiled",
            Reach::LockOnly => "lock-only",
            Reach::BuildTool => "build-tool",
            Reach::Installed => "installed",
            Reach::Unresolved => "unresolved",
        }
    }
}

/// One advisory that applies to one pinned package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub ecosystem: Ecosystem,
    pub id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub package: String,
    pub version: String,
    pub category: Category,
    /// `None` when the advisory carries no rating.
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss: Option<String>,
    pub title: String,
    pub url: String,
    /// Versions (or ranges) that fix it; empty when none does.
    pub fixed: Vec<String>,
    pub reach: Reach,
    /// The package's URL (its `bom-ref`) in the SBOM of the component that compiles it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// The file and line that pin the package (`Cargo.lock:123`).
    pub pinned_at: String,
    /// The lockfile entry that pins that file (or the toolchain archive), where it stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<LockfilePin>,
    /// Why the advisory does not apply, when `--ignore` says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// Why the database could not say whether this version is affected (a range or fixed
    /// version that cannot be read): the finding stands until it can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
}

impl Finding {
    /// Whether this finding fails a scan run with `--fail-on threshold`: a vulnerability that
    /// is not ignored and rated at or above it. An unrated vulnerability fails at any threshold,
    /// since nothing says it is less severe.
    pub fn fails(&self, threshold: Severity) -> bool {
        self.category.is_vulnerability()
            && self.ignored.is_none()
            && self.severity.is_none_or(|s| s >= threshold)
    }
}

/// A place in the lockfile: its path, and the line and column of an entry's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockfilePin {
    pub file: std::path::PathBuf,
    pub line: usize,
    pub column: usize,
}

impl LockfilePin {
    /// Where entry `index` of `table` (`source.files`, `toolchains.go.sources`) stands in
    /// `lock`'s text, if it was read from a file whose entries could be located.
    pub fn of(lock: &crate::lock::Lockfile, table: &str, index: usize) -> Option<Self> {
        let origin = lock.origin.as_ref()?;
        let span = origin.spans.table(table).get(index)?;
        Some(Self {
            file: origin.path.clone(),
            line: span.line,
            column: span.column,
        })
    }
}

/// `--ignore ID=REASON`: the advisory does not apply, and why; recorded, never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignore {
    pub id: String,
    pub reason: String,
}

impl FromStr for Ignore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((id, reason)) if !id.trim().is_empty() && !reason.trim().is_empty() => Ok(Self {
                id: id.trim().to_owned(),
                reason: reason.trim().to_owned(),
            }),
            _ => Err(format!(
                "`{s}` is not ID=REASON: say which advisory and why it does not apply, \
                 e.g. RUSTSEC-2024-0001=\"the affected function is never called\""
            )),
        }
    }
}

/// Marks the findings an `--ignore` names; returns the ignores that matched nothing.
pub fn apply_ignores<'a>(findings: &mut [Finding], ignores: &'a [Ignore]) -> Vec<&'a Ignore> {
    let mut unused = Vec::new();
    for ignore in ignores {
        let mut used = false;
        for f in findings.iter_mut() {
            if f.id == ignore.id || f.aliases.contains(&ignore.id) {
                f.ignored = Some(ignore.reason.clone());
                used = true;
            }
        }
        if !used {
            unused.push(ignore);
        }
    }
    unused
}

/// The packages the components compile: (ecosystem, name (crate, or Go module path), version)
/// → the package URL their SBOMs give it.
pub type Compiled = std::collections::BTreeMap<(Ecosystem, String, String), String>;

/// Sets the reach of each finding not yet placed (`Unresolved`) from the packages the
/// components compile; `None` when that was not resolved.
pub fn classify(findings: &mut [Finding], compiled: Option<&Compiled>) {
    let Some(set) = compiled else {
        return;
    };
    for f in findings.iter_mut().filter(|f| f.reach == Reach::Unresolved) {
        let key = (f.ecosystem, f.package.clone(), f.version.clone());
        match set.get(&key) {
            Some(purl) => {
                f.reach = Reach::Compiled;
                f.purl = Some(purl.clone());
            }
            None => f.reach = Reach::LockOnly,
        }
    }
}

/// An advisory file that could not be read, and why: reported, and the rest still scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// A database as the report records it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseRecord {
    pub name: &'static str,
    pub location: std::path::PathBuf,
    pub read_from: database::Origin,
    pub commit: Option<String>,
    /// The commit's date (RFC 3339, UTC); for a database that is one file, its modification
    /// time.
    pub commit_date: Option<String>,
    /// Days between that date and the scan.
    pub age_days: Option<i64>,
    /// The sha256 of a database that is one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub advisories: usize,
    pub skipped: Vec<Skipped>,
}

/// A database older than this many days is reported as stale.
pub const STALE_DAYS: i64 = 30;

impl DatabaseRecord {
    pub fn new(snapshot: &Snapshot, advisories: usize, skipped: Vec<Skipped>, now: i64) -> Self {
        Self {
            name: snapshot.kind.name,
            location: snapshot.location.clone(),
            read_from: snapshot.origin,
            commit: snapshot.commit.clone(),
            commit_date: snapshot.commit_time.and_then(rfc3339),
            age_days: snapshot.commit_time.map(|t| (now - t).div_euclid(86_400)),
            sha256: None,
            advisories,
            skipped,
        }
    }

    /// The Debian security tracker's export, read from one file.
    pub fn of_tracker(tracker: &debian::Tracker, now: i64) -> Self {
        Self {
            name: "Debian security tracker",
            location: tracker.path.clone(),
            read_from: database::Origin::File,
            commit: None,
            commit_date: tracker.modified.and_then(rfc3339),
            age_days: tracker.modified.map(|t| (now - t).div_euclid(86_400)),
            sha256: Some(tracker.sha256.clone()),
            advisories: tracker.issues(),
            skipped: Vec::new(),
        }
    }

    pub fn is_stale(&self) -> bool {
        self.age_days.is_some_and(|d| d > STALE_DAYS)
    }
}

fn rfc3339(t: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// What a scan found, with the databases it read and what it could not read.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The release scanned, and the sha256 of its lockfile.
    pub release: String,
    pub lockfile_sha256: String,
    pub databases: Vec<DatabaseRecord>,
    /// How many pinned packages of each ecosystem were checked.
    pub scanned: std::collections::BTreeMap<Ecosystem, usize>,
    pub findings: Vec<Finding>,
    /// `--ignore`s that named no finding.
    pub unused_ignores: Vec<String>,
    /// What the scan does not cover, and anything else worth saying.
    pub notes: Vec<String>,
    /// Which components' compiled packages `compiled` and `lock-only` were decided against;
    /// `None` with `--lock-only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<ReachScope>,
}

/// What a scan resolved the compiled packages of, against what the release compiles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReachScope {
    /// Architecture → the components resolved for it.
    pub resolved: std::collections::BTreeMap<String, Vec<String>>,
    /// Architecture → every component of the release that compiles crates or Go modules there.
    pub release: std::collections::BTreeMap<String, Vec<String>>,
    /// What the release compiles that was not resolved (`agent for aarch64`): a package
    /// compiled only there shows as `lock-only`, so no finding is `not_affected` in VEX for
    /// not being compiled.
    pub not_resolved: Vec<String>,
}

impl ReachScope {
    /// Whether everything the release compiles was resolved: only then does `lock-only` mean
    /// that no component of the release compiles the package.
    pub fn is_complete(&self) -> bool {
        self.not_resolved.is_empty()
    }
}

impl Report {
    /// The findings that fail the scan at `threshold`.
    pub fn failing(&self, threshold: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.fails(threshold))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A finding of smallvec 1.6.0, for tests.
    pub(crate) fn finding(id: &str, category: Category, severity: Option<Severity>) -> Finding {
        Finding {
            ecosystem: Ecosystem::Cargo,
            id: id.into(),
            aliases: vec!["CVE-2024-1".into()],
            package: "smallvec".into(),
            version: "1.6.0".into(),
            category,
            severity,
            cvss: None,
            title: String::new(),
            url: String::new(),
            fixed: vec![],
            reach: Reach::Unresolved,
            purl: None,
            pinned_at: "Cargo.lock:1".into(),
            pinned_by: None,
            ignored: None,
            undecided: None,
        }
    }

    #[test]
    fn fail_on_counts_vulnerabilities_at_or_above_the_threshold() {
        let high = finding("A", Category::Vulnerability, Some(Severity::High));
        assert!(high.fails(Severity::Low));
        assert!(high.fails(Severity::High));
        assert!(!high.fails(Severity::Critical));
        let unrated = finding("B", Category::Vulnerability, None);
        assert!(unrated.fails(Severity::Critical));
        let info = finding("C", Category::Unmaintained, None);
        assert!(!info.fails(Severity::Low));
    }

    #[test]
    fn ignores_are_recorded_by_id_or_alias_and_unused_ones_returned() {
        let mut fs = vec![
            finding("A", Category::Vulnerability, Some(Severity::High)),
            finding("B", Category::Vulnerability, None),
        ];
        let ignores: Vec<Ignore> = ["A=not called", "CVE-2024-1=alias", "Z=nothing"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let unused = apply_ignores(&mut fs, &ignores);
        assert_eq!(unused, vec![&ignores[2]]);
        // The alias names both; the last reason wins.
        assert_eq!(fs[0].ignored.as_deref(), Some("alias"));
        assert_eq!(fs[1].ignored.as_deref(), Some("alias"));
        assert!(!fs[0].fails(Severity::Low));
        assert!("A=".parse::<Ignore>().is_err());
        assert!("=why".parse::<Ignore>().is_err());
        assert!("A".parse::<Ignore>().is_err());
    }

    #[test]
    fn reach_is_compiled_only_for_packages_a_component_compiles() {
        let mut fs = vec![finding("A", Category::Vulnerability, None)];
        classify(&mut fs, None);
        assert_eq!(fs[0].reach, Reach::Unresolved);
        let crate_ = |v: &str| (Ecosystem::Cargo, "smallvec".to_owned(), v.to_owned());
        let mut set = Compiled::new();
        set.insert(crate_("1.6.1"), "pkg:cargo/smallvec@1.6.1".into());
        set.insert(
            (Ecosystem::Go, "smallvec".to_owned(), "1.6.0".to_owned()),
            "pkg:golang/smallvec@1.6.0".into(),
        );
        classify(&mut fs, Some(&set));
        assert_eq!(fs[0].reach, Reach::LockOnly);
        set.insert(crate_("1.6.0"), "pkg:cargo/smallvec@1.6.0".into());
        fs[0].reach = Reach::Unresolved;
        classify(&mut fs, Some(&set));
        assert_eq!(fs[0].reach, Reach::Compiled);
        assert_eq!(fs[0].purl.as_deref(), Some("pkg:cargo/smallvec@1.6.0"));
        // A reach already known (the toolchain's) stays.
        fs[0].reach = Reach::BuildTool;
        classify(&mut fs, Some(&Compiled::new()));
        assert_eq!(fs[0].reach, Reach::BuildTool);
    }

    #[test]
    fn severities_parse_and_order() {
        assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::None < Severity::Low && Severity::High < Severity::Critical);
    }
}
