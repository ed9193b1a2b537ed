//! Go modules and the Go toolchain against the Go vulnerability database (golang/vulndb's
//! `data/osv/*.json`).
//!
//! Matching is by module path and version, as OSV ranges say: a module is affected when any of
//! its ranges holds the pinned version. The database also names the affected packages and
//! symbols (what govulncheck follows to decide whether vulnerable code is reachable); that
//! symbol-level analysis is not done here. The toolchain is checked as the database's `stdlib`
//! (what every Go binary links) and `toolchain` (the go command) modules.

use std::collections::BTreeMap;

use super::database::Snapshot;
use super::osv::{Affected, Record};
use super::{Category, Ecosystem, Finding, LockfilePin, Reach, Skipped};

/// A Go version as OSV and go.sum write them (`v1.2.3`, `1.2.3`, pseudo-versions,
/// `+incompatible`), ordered as Go orders them: semver, ignoring build metadata.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion(semver::Version);

impl GoVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut v = semver::Version::parse(s).ok()?;
        v.build = semver::BuildMetadata::EMPTY;
        Some(Self(v))
    }

    /// A Go release as the toolchain names it (`1.25`, `1.25.9`, `1.26rc1`), as the database's
    /// `stdlib` versions write it (`1.25.0`, `1.26.0-rc.1`).
    pub fn of_go_release(release: &str) -> Option<Self> {
        let (numbers, pre) = match release.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) => (&release[..i], Some(&release[i..])),
            None => (release, None),
        };
        let mut parts: Vec<&str> = numbers.split('.').collect();
        while parts.len() < 3 {
            parts.push("0");
        }
        let mut text = parts.join(".");
        if let Some(pre) = pre {
            let (word, n) = pre.split_at(pre.find(|c: char| c.is_ascii_digit())?);
            text.push_str(&format!("-{word}.{n}"));
        }
        Self::parse(&text)
    }
}

impl std::fmt::Display for GoVersion {
    /// As the database's `stdlib` versions write it: `1.27.3`, no `v`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The database's records, and the files that could not be read.
#[derive(Debug, Default)]
pub struct Vulns {
    pub list: Vec<Record>,
    pub skipped: Vec<Skipped>,
}

/// Parses every `data/osv/<id>.json` of the snapshot.
pub fn load(snapshot: &Snapshot) -> Vulns {
    let mut out = Vulns::default();
    let prefix = format!("{}/", snapshot.kind.dir);
    for (path, bytes) in &snapshot.files {
        let Some(name) = path.strip_prefix(&prefix) else {
            continue;
        };
        if name.contains('/') || !name.ends_with(".json") {
            continue;
        }
        match parse(name, bytes) {
            Ok(r) => out.list.push(r),
            Err(reason) => out.skipped.push(Skipped {
                file: format!("{}/{path}", snapshot.location.display()),
                reason,
            }),
        }
    }
    out
}

/// One record from the file `name` (`<id>.json`).
pub fn parse(name: &str, bytes: &[u8]) -> Result<Record, String> {
    let record: Record =
        serde_json::from_slice(bytes).map_err(|e| format!("not an OSV record: {e}"))?;
    if name != format!("{}.json", record.id) {
        return Err(format!(
            "holds {}, so it should be {}.json",
            record.id, record.id
        ));
    }
    Ok(record)
}

/// A pinned Go module (or `stdlib`/`toolchain` at the Go release's version) and where it is
/// pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub module: String,
    pub version: String,
    pub pinned_at: String,
    pub pinned_by: Option<LockfilePin>,
    pub reach: Reach,
}

/// Every record that affects a pinned module, in `pinned` order then by id. A record whose
/// ranges cannot be read, or a pinned version that is not a Go version, gives an `undecided`
/// finding: never "not affected" by default.
pub fn scan(vulns: &Vulns, pinned: &[Pinned]) -> Vec<Finding> {
    let mut by_module: BTreeMap<&str, Vec<(&Record, &Affected)>> = BTreeMap::new();
    for r in vulns.list.iter().filter(|r| r.withdrawn.is_none()) {
        for a in r.affected.iter().filter(|a| a.package.ecosystem == "Go") {
            by_module
                .entry(a.package.name.as_str())
                .or_default()
                .push((r, a));
        }
    }
    let mut findings = Vec::new();
    for p in pinned {
        let version = GoVersion::parse(&p.version);
        // Per record: its finding, and whether a readable range decided it.
        let mut found: BTreeMap<&str, Finding> = BTreeMap::new();
        for (record, affected) in by_module.get(p.module.as_str()).into_iter().flatten() {
            let verdict = match &version {
                Some(v) => affects(affected, v, &p.version),
                None => Err(format!("`{}` is not a Go module version", p.version)),
            };
            let undecided = match verdict {
                Ok(false) => continue,
                Ok(true) => None,
                Err(reason) => Some(format!("{}.json: {reason}", record.id)),
            };
            let f = found.entry(record.id.as_str()).or_insert_with(|| Finding {
                undecided: undecided.clone(),
                ..finding(record, p)
            });
            f.fixed.extend(fixed(affected, &p.module, version.as_ref()));
            f.fixed.sort_by_cached_key(|v| GoVersion::parse(v));
            f.fixed.dedup();
            // A range that does affect the version decides, whatever another cannot say.
            if undecided.is_none() {
                f.undecided = None;
            }
        }
        findings.extend(found.into_values());
    }
    findings
}

fn affects(affected: &Affected, version: &GoVersion, text: &str) -> Result<bool, String> {
    let listed = affected
        .versions
        .iter()
        .any(|v| v == text || GoVersion::parse(v).as_ref() == Some(version));
    if listed {
        return Ok(true);
    }
    let mut unreadable = None;
    // Go's records use SEMVER ranges; any other kind cannot be read as Go versions.
    if let Some(other) = affected.ranges.iter().find(|r| r.kind != "SEMVER") {
        unreadable = Some(format!("a `{}` range, not SEMVER", other.kind));
    }
    for range in affected.ranges.iter().filter(|r| r.kind == "SEMVER") {
        match range.affects(version, GoVersion::parse) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => unreadable = unreadable.or(Some(e)),
        }
    }
    unreadable.map_or(Ok(false), Err)
}

/// The fixed versions of `affected`'s ranges as the pinned versions are written: module
/// versions with their `v`, Go releases (`stdlib`, `toolchain`) without.
fn fixed<'a>(
    affected: &'a Affected,
    module: &str,
    pinned: Option<&'a GoVersion>,
) -> impl Iterator<Item = String> + 'a {
    let prefix = if matches!(module, "stdlib" | "toolchain") {
        ""
    } else {
        "v"
    };
    // Only the fixes that are readable and after the pinned version are a way out.
    affected
        .ranges
        .iter()
        .flat_map(|r| r.fixed())
        .filter(move |v| GoVersion::parse(v).is_some_and(|fix| pinned.is_none_or(|p| fix > *p)))
        .map(move |v| format!("{prefix}{v}"))
}

fn finding(record: &Record, p: &Pinned) -> Finding {
    let url = record
        .database_specific
        .as_ref()
        .and_then(|d| d.get("url"))
        .and_then(|u| u.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("https://pkg.go.dev/vuln/{}", record.id));
    Finding {
        ecosystem: Ecosystem::Go,
        id: record.id.clone(),
        aliases: record.aliases.clone(),
        package: p.module.clone(),
        version: p.version.clone(),
        category: Category::Vulnerability,
        severity: None,
        cvss: None,
        title: record.summary.clone().unwrap_or_default(),
        url,
        fixed: Vec::new(),
        reach: p.reach,
        purl: None,
        pinned_at: p.pinned_at.clone(),
        pinned_by: p.pinned_by.clone(),
        ignored: None,
        undecided: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::database::{GO_VULNDB, Origin};

    fn v(s: &str) -> GoVersion {
        GoVersion::parse(s).unwrap()
    }

    #[test]
    fn go_versions_order_pseudo_versions_and_ignore_incompatible() {
        assert!(v("v0.0.0-20210101000000-abcdefabcdef") < v("v0.0.0-20220101000000-abcdefabcdef"));
        assert!(v("v0.0.0-20220101000000-abcdefabcdef") < v("v0.1.0"));
        // A pseudo-version after v1.2.3 sorts between it and v1.2.4.
        assert!(v("v1.2.3") < v("v1.2.4-0.20210101000000-abcdefabcdef"));
        assert!(v("v1.2.4-0.20210101000000-abcdefabcdef") < v("v1.2.4"));
        assert_eq!(v("v2.7.0+incompatible"), v("2.7.0"));
        assert!(GoVersion::parse("v1.2").is_none());
        assert_eq!(GoVersion::of_go_release("1.25"), Some(v("1.25.0")));
        assert_eq!(GoVersion::of_go_release("1.27.3"), Some(v("1.27.3")));
        assert_eq!(GoVersion::of_go_release("1.26rc1"), Some(v("1.26.0-rc.1")));
    }

    fn record(id: &str, module: &str, events: serde_json::Value) -> String {
        serde_json::json!({
            "id": id, "aliases": ["CVE-2099-1"], "summary": format!("{id} summary"),
            "affected": [{
                "package": {"name": module, "ecosystem": "Go"},
                "ranges": [{"type": "SEMVER", "events": events}],
            }],
        })
        .to_string()
    }

    fn vulns(files: &[(&str, String)]) -> Vulns {
        load(&Snapshot {
            kind: GO_VULNDB,
            location: "/vulndb".into(),
            origin: Origin::Directory,
            commit: None,
            commit_time: None,
            files: files
                .iter()
                .map(|(n, t)| (format!("data/osv/{n}"), t.clone().into_bytes()))
                .collect(),
        })
    }

    fn pinned(module: &str, version: &str) -> Pinned {
        Pinned {
            module: module.into(),
            version: version.into(),
            pinned_at: "go.sum:1".into(),
            pinned_by: None,
            reach: Reach::Unresolved,
        }
    }

    #[test]
    fn modules_match_ranges_with_pseudo_versions_and_incompatible() {
        let db = vulns(&[
            (
                "GO-2099-0001.json",
                record(
                    "GO-2099-0001",
                    "github.com/docker/docker",
                    serde_json::json!([{"introduced": "0"}, {"fixed": "20.10.0+incompatible"},
                        {"introduced": "23.0.0+incompatible"}, {"fixed": "23.0.5+incompatible"}]),
                ),
            ),
            (
                "GO-2099-0002.json",
                record(
                    "GO-2099-0002",
                    "golang.org/x/net",
                    serde_json::json!([{"introduced": "0"},
                        {"fixed": "0.0.0-20220906165146-f3363e06e74c"}]),
                ),
            ),
            ("GO-2099-0003.json", "{ not json".into()),
            (
                "GO-2099-0004.json",
                record("GO-2099-0005", "x", serde_json::json!([])),
            ),
        ]);
        assert_eq!(db.list.len(), 2);
        assert_eq!(db.skipped.len(), 2);
        assert!(db.skipped[0].file.ends_with("GO-2099-0003.json"));
        assert!(db.skipped[1].reason.contains("GO-2099-0005.json"));
        let found = scan(
            &db,
            &[
                pinned("github.com/docker/docker", "v20.10.27+incompatible"),
                pinned("github.com/docker/docker", "v23.0.1+incompatible"),
                pinned("github.com/docker/docker", "v19.3.0+incompatible"),
                pinned("golang.org/x/net", "v0.0.0-20220225172249-27dd8689420f"),
                pinned("golang.org/x/net", "v0.0.0-20221004154528-8021a29435af"),
                pinned("golang.org/x/net", "v0.45.0"),
            ],
        );
        assert!(found.iter().all(|f| f.undecided.is_none()), "{found:?}");
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.version.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("GO-2099-0001", "v23.0.1+incompatible"),
                ("GO-2099-0001", "v19.3.0+incompatible"),
                ("GO-2099-0002", "v0.0.0-20220225172249-27dd8689420f"),
            ]
        );
        // The fixes after the pinned version, in version order.
        assert_eq!(found[0].fixed, vec!["v23.0.5+incompatible"]);
        assert_eq!(
            found[1].fixed,
            vec!["v20.10.0+incompatible", "v23.0.5+incompatible"]
        );
        assert_eq!(found[0].url, "https://pkg.go.dev/vuln/GO-2099-0001");
    }

    #[test]
    fn the_toolchain_matches_stdlib_and_withdrawn_records_do_not_count() {
        let mut withdrawn: serde_json::Value = serde_json::from_str(&record(
            "GO-2099-0010",
            "stdlib",
            serde_json::json!([{"introduced": "0"}]),
        ))
        .unwrap();
        withdrawn["withdrawn"] = "2099-01-01T00:00:00Z".into();
        let db = vulns(&[
            (
                "GO-2099-0009.json",
                record(
                    "GO-2099-0009",
                    "stdlib",
                    serde_json::json!([{"introduced": "1.27.0-0"}, {"fixed": "1.27.4"}]),
                ),
            ),
            ("GO-2099-0010.json", withdrawn.to_string()),
        ]);
        let go = GoVersion::of_go_release("1.27.3").unwrap();
        let found = scan(
            &db,
            &[
                pinned("stdlib", &go.to_string()),
                pinned("stdlib", "1.27.4"),
            ],
        );
        let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["GO-2099-0009"]);
        assert_eq!(found[0].version, "1.27.3");
        // Go releases are written as the pinned version is, without a `v`.
        assert_eq!(found[0].fixed, vec!["1.27.4"]);
    }

    #[test]
    fn an_unreadable_range_is_an_undecided_finding_not_a_silent_miss() {
        let unreadable = serde_json::json!({"type": "SEMVER", "events": [
            {"introduced": "0"}, {"fixed": "x.y"}]});
        let mut two: serde_json::Value = serde_json::from_str(&record(
            "GO-2099-0021",
            "n",
            serde_json::json!([{"introduced": "1.0.0"}, {"fixed": "1.1.0"}]),
        ))
        .unwrap();
        // The unreadable range comes first: the readable one after it still decides.
        let ranges = two["affected"][0]["ranges"].as_array_mut().unwrap();
        ranges.insert(0, unreadable);
        let db = vulns(&[
            (
                "GO-2099-0020.json",
                record(
                    "GO-2099-0020",
                    "m",
                    serde_json::json!([{"introduced": "0"}, {"fixed": "x.y"}]),
                ),
            ),
            ("GO-2099-0021.json", two.to_string()),
            (
                "GO-2099-0022.json",
                serde_json::json!({"id": "GO-2099-0022", "affected": [{
                    "package": {"name": "o", "ecosystem": "Go"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]})
                .to_string(),
            ),
        ]);
        let found = scan(
            &db,
            &[
                pinned("m", "v1.0.0"),
                pinned("m", "not-a-version"),
                pinned("n", "v1.0.5"),
                pinned("n", "v2.0.0"),
                pinned("o", "v1.0.0"),
            ],
        );
        let got: Vec<(&str, &str, Option<&str>)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.version.as_str(), f.undecided.as_deref()))
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got[4].2.unwrap().contains("`ECOSYSTEM` range"), "{got:?}");
        assert!(got[0].2.unwrap().contains("x.y"), "{got:?}");
        assert!(got[1].2.unwrap().contains("not-a-version"), "{got:?}");
        assert_eq!(got[2], ("GO-2099-0021", "v1.0.5", None));
        assert_eq!(got[3].1, "v2.0.0");
        assert!(got[3].2.unwrap().contains("GO-2099-0021.json"), "{got:?}");
        assert!(
            found
                .iter()
                .all(|f| f.fails(crate::scan::Severity::Critical))
        );
    }
}
