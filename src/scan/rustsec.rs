//! The crates of a Cargo.lock against the RustSec advisory database.
//!
//! Advisories are parsed one file at a time with the `rustsec` crate, so that one malformed
//! file is reported and skipped instead of hiding the rest, and matched with its `Query`, as
//! `cargo audit` matches them: crates.io packages only, withdrawn advisories left out,
//! informational ones (unmaintained, unsound, notice) kept as their own category.

use std::collections::BTreeMap;

use rustsec::advisory::Informational;
use rustsec::database::Query;
use rustsec::{Advisory, Collection, SourceId, Version};

use super::database::Snapshot;
use super::{Category, Ecosystem, Finding, LockfilePin, Reach, Severity, Skipped};
use crate::lock::cargo_lock::CargoLock;

/// The advisories of a database, and the files that could not be read.
#[derive(Debug, Default)]
pub struct Advisories {
    pub list: Vec<Advisory>,
    pub skipped: Vec<Skipped>,
}

/// Parses every `crates/<package>/RUSTSEC-*.md` of the snapshot.
pub fn load(snapshot: &Snapshot) -> Advisories {
    let mut out = Advisories::default();
    for (path, bytes) in &snapshot.files {
        if !path.ends_with(".md") {
            continue;
        }
        match parse(path, bytes) {
            Ok(Some(a)) => out.list.push(a),
            Ok(None) => {}
            Err(reason) => out.skipped.push(Skipped {
                file: format!("{}/{path}", snapshot.location.display()),
                reason,
            }),
        }
    }
    out
}

/// One advisory file at `path` (`crates/<package>/<id>.md`); `None` for a placeholder.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Option<Advisory>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut advisory: Advisory = text.parse().map_err(|e: rustsec::Error| e.to_string())?;
    let parts: Vec<&str> = path.split('/').collect();
    let [collection, package, file] = parts[..] else {
        return Err("not at crates/<package>/<id>.md".into());
    };
    if collection != Collection::Crates.as_str() {
        return Err(format!(
            "not in the `crates` collection but in `{collection}`"
        ));
    }
    let id = advisory.metadata.id.to_string();
    if file != format!("{id}.md") && !file.starts_with("RUSTSEC-0000-0000.") {
        return Err(format!("names advisory {id}, so it should be {id}.md"));
    }
    if package != advisory.metadata.package.as_str() {
        return Err(format!(
            "is about package `{}` but sits in `crates/{package}`",
            advisory.metadata.package
        ));
    }
    match advisory.metadata.collection {
        Some(c) if c != Collection::Crates => {
            return Err(format!("says collection `{c}` but sits in `crates`"));
        }
        _ => advisory.metadata.collection = Some(Collection::Crates),
    }
    Ok((!advisory.metadata.id.is_placeholder()).then_some(advisory))
}

/// A crates.io package to match, and where it is pinned.
pub struct Candidate<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// `Cargo.lock:123`.
    pub pinned_at: String,
    pub pinned_by: Option<&'a LockfilePin>,
}

/// Every advisory that applies to a crates.io package of `lock` (read from `lock_name`, which
/// the lockfile pins at `pinned_by`), as a finding whose reach is still unresolved, in
/// Cargo.lock order then by id.
pub fn scan(
    advisories: &Advisories,
    lock: &CargoLock,
    lock_name: &str,
    pinned_by: Option<&LockfilePin>,
) -> Vec<Finding> {
    let candidates = lock
        .packages
        .iter()
        .filter(|p| p.is_crates_io())
        .map(|p| Candidate {
            name: &p.name,
            version: &p.version,
            pinned_at: format!("{lock_name}:{}", p.line),
            pinned_by,
        });
    scan_crates(advisories, candidates)
}

/// Every advisory that applies to one of `crates` (crates.io packages), in their order then
/// by id.
pub fn scan_crates<'a>(
    advisories: &Advisories,
    crates: impl IntoIterator<Item = Candidate<'a>>,
) -> Vec<Finding> {
    let mut by_package: BTreeMap<&str, Vec<&Advisory>> = BTreeMap::new();
    for a in &advisories.list {
        by_package
            .entry(a.metadata.package.as_str())
            .or_default()
            .push(a);
    }
    let mut findings = Vec::new();
    for c in crates {
        let Some(advisories) = by_package.get(c.name) else {
            continue;
        };
        let (Ok(version), Ok(name)) = (Version::parse(c.version), c.name.parse()) else {
            continue;
        };
        // Both crates.io index URLs (git and sparse) are the advisory's default source.
        let query = Query::new()
            .collection(Collection::Crates)
            .withdrawn(false)
            .package_name(name)
            .package_version(version)
            .package_source(SourceId::default());
        let mut found: Vec<Finding> = advisories
            .iter()
            .filter(|a| query.matches(a))
            .map(|a| finding(a, &c))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        findings.extend(found);
    }
    findings
}

fn category(advisory: &Advisory) -> Category {
    match &advisory.metadata.informational {
        None => Category::Vulnerability,
        Some(Informational::Unmaintained) => Category::Unmaintained,
        Some(Informational::Unsound) => Category::Unsound,
        Some(Informational::Notice) => Category::Notice,
        Some(other) => Category::Informational(other.as_str().to_owned()),
    }
}

fn severity(advisory: &Advisory) -> Option<Severity> {
    use rustsec::advisory::Severity as S;
    advisory.severity().map(|s| match s {
        S::None => Severity::None,
        S::Low => Severity::Low,
        S::Medium => Severity::Medium,
        S::High => Severity::High,
        S::Critical => Severity::Critical,
    })
}

fn finding(advisory: &Advisory, c: &Candidate<'_>) -> Finding {
    let m = &advisory.metadata;
    let id = m.id.to_string();
    Finding {
        ecosystem: Ecosystem::Cargo,
        aliases: m.aliases.iter().map(ToString::to_string).collect(),
        package: c.name.to_owned(),
        version: c.version.to_owned(),
        category: category(advisory),
        severity: severity(advisory),
        cvss: m.cvss.as_ref().map(ToString::to_string),
        title: m.title.clone(),
        url: m
            .url
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| format!("https://rustsec.org/advisories/{id}.html")),
        fixed: advisory
            .versions
            .patched()
            .iter()
            .map(ToString::to_string)
            .collect(),
        reach: Reach::Unresolved,
        purl: None,
        pinned_at: c.pinned_at.clone(),
        pinned_by: c.pinned_by.cloned(),
        ignored: None,
        undecided: None,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::database::{Origin, RUSTSEC};

    const SMALLVEC: &str = r#"```toml
[advisory]
id = "RUSTSEC-2021-0003"
package = "smallvec"
date = "2021-01-08"
url = "https://github.com/servo/rust-smallvec/issues/252"
categories = ["memory-corruption"]
aliases = ["CVE-2021-25900"]
cvss = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"

[versions]
patched = [">= 0.6.14, < 1.0.0", ">= 1.6.1"]
unaffected = ["< 0.6.3"]
```

# Buffer overflow in SmallVec::insert_many
"#;

    const UNMAINTAINED: &str = r#"```toml
[advisory]
id = "RUSTSEC-2020-0036"
package = "failure"
date = "2020-05-02"
informational = "unmaintained"

[versions]
patched = []
```

# failure is officially deprecated/unmaintained
"#;

    const WITHDRAWN: &str = r#"```toml
[advisory]
id = "RUSTSEC-2020-0999"
package = "smallvec"
date = "2020-05-02"
withdrawn = "2020-06-01"

[versions]
patched = []
```

# withdrawn
"#;

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            kind: RUSTSEC,
            location: "/db".into(),
            origin: Origin::Directory,
            commit: None,
            commit_time: None,
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn lock(packages: &[(&str, &str)]) -> CargoLock {
        let mut text = String::from("version = 4\n");
        for (name, version) in packages {
            text.push_str(&format!(
                "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                 checksum = \"{}\"\n",
                "0".repeat(64)
            ));
        }
        text.push_str("\n[[package]]\nname = \"agent\"\nversion = \"0.1.0\"\n");
        CargoLock::parse(&text).unwrap()
    }

    #[test]
    fn vulnerable_versions_match_and_patched_ones_do_not() {
        let db = load(&snapshot(&[
            ("crates/smallvec/RUSTSEC-2021-0003.md", SMALLVEC),
            ("crates/failure/RUSTSEC-2020-0036.md", UNMAINTAINED),
            ("crates/smallvec/RUSTSEC-2020-0999.md", WITHDRAWN),
            ("crates/README.txt", "not an advisory"),
        ]));
        assert!(db.skipped.is_empty(), "{:?}", db.skipped);
        assert_eq!(db.list.len(), 3);
        let lock = lock(&[
            ("smallvec", "1.6.0"),
            ("smallvec", "1.6.1"),
            ("smallvec", "0.6.2"),
            ("failure", "0.1.8"),
        ]);
        let found = scan(&db, &lock, "Cargo.lock", None);
        let got: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.version.as_str(), f.category.name()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("RUSTSEC-2021-0003", "1.6.0", "vulnerability"),
                ("RUSTSEC-2020-0036", "0.1.8", "unmaintained"),
            ]
        );
        let f = &found[0];
        assert_eq!(f.severity, Some(Severity::Critical));
        assert_eq!(f.aliases, vec!["CVE-2021-25900"]);
        assert_eq!(f.fixed, vec![">=0.6.14, <1.0.0", ">=1.6.1"]);
        assert_eq!(f.pinned_at, "Cargo.lock:4");
        assert_eq!(
            found[1].url,
            "https://rustsec.org/advisories/RUSTSEC-2020-0036.html"
        );
    }

    #[test]
    fn a_malformed_file_is_skipped_and_named_and_the_rest_still_load() {
        let db = load(&snapshot(&[
            ("crates/smallvec/RUSTSEC-2021-0003.md", SMALLVEC),
            (
                "crates/broken/RUSTSEC-2021-0004.md",
                "```toml\n[advisory\n```\n# x\n",
            ),
            ("crates/other/RUSTSEC-2021-0003.md", SMALLVEC),
            ("crates/smallvec/RUSTSEC-2021-0005.md", SMALLVEC),
        ]));
        assert_eq!(db.list.len(), 1);
        let files: Vec<&str> = db.skipped.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(
            files,
            vec![
                "/db/crates/broken/RUSTSEC-2021-0004.md",
                "/db/crates/other/RUSTSEC-2021-0003.md",
                "/db/crates/smallvec/RUSTSEC-2021-0005.md",
            ]
        );
        assert!(
            db.skipped[1].reason.contains("crates/other"),
            "{:?}",
            db.skipped
        );
        assert!(
            db.skipped[2].reason.contains("RUSTSEC-2021-0003.md"),
            "{:?}",
            db.skipped
        );
    }

    #[test]
    fn git_and_path_packages_are_not_matched() {
        let db = load(&snapshot(&[(
            "crates/smallvec/RUSTSEC-2021-0003.md",
            SMALLVEC,
        )]));
        let lock = CargoLock::parse(&format!(
            "version = 4\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\n\
             source = \"git+https://github.com/servo/rust-smallvec?rev={c}#{c}\"\n\n\
             [[package]]\nname = \"smallvec\"\nversion = \"1.5.0\"\n",
            c = "a".repeat(40)
        ))
        .unwrap();
        assert!(scan(&db, &lock, "Cargo.lock", None).is_empty());
    }
}
