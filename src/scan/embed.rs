//! The advisories that apply to what a release's components compile, for its SBOM: when the
//! configuration maps an advisory database's upstream to a local mirror, `build` and `sbom`
//! embed the same VEX section `scan --vex` writes in the release SBOM (`kata.cdx.json`), with
//! the databases' commits as properties, so that the SBOM says which database it was checked
//! against. Without a configured database nothing is embedded.

use std::collections::BTreeMap;

use cyclonedx_bom::models::vulnerability::Vulnerabilities;

use super::database::{self, DatabaseError, GO_VULNDB, RUSTSEC, Snapshot};
use super::{Reach, Report, govulndb, rustsec, vex};
use crate::sbom::{DependencySet, Ecosystem};
use crate::source::mirror::Mirrors;

/// What the release SBOM embeds.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub vulnerabilities: Vulnerabilities,
    /// `(database name, commit)` of each database read.
    pub databases: Vec<(String, String)>,
}

fn open(mirrors: &Mirrors, kind: database::Kind) -> Result<Option<Snapshot>, DatabaseError> {
    match database::locate(None, mirrors, kind)? {
        Some(path) => database::open(&path, kind).map(Some),
        None => Ok(None),
    }
}

/// The advisories that apply to the packages of `sets` (registry crates and Go modules, each
/// as its SBOM's package URL), from the databases `mirrors` maps; `None` when it maps none.
pub fn for_sets(
    sets: &BTreeMap<String, DependencySet>,
    mirrors: &Mirrors,
    release: &str,
) -> Result<Option<Embedded>, DatabaseError> {
    let rustsec_db = open(mirrors, RUSTSEC)?;
    let go_db = open(mirrors, GO_VULNDB)?;
    if rustsec_db.is_none() && go_db.is_none() {
        return Ok(None);
    }
    let mut packages: BTreeMap<(Ecosystem, &str, &str), &str> = BTreeMap::new();
    for p in sets.values().flat_map(|s| &s.packages) {
        packages.insert((p.ecosystem, &p.name, &p.version), &p.purl);
    }
    let mut findings = Vec::new();
    let mut databases = Vec::new();
    if let Some(db) = &rustsec_db {
        let advisories = rustsec::load(db);
        // Registry crates only: path and git crates carry a qualifier in their purl.
        let crates = packages
            .iter()
            .filter(|((eco, _, _), purl)| *eco == Ecosystem::Cargo && !purl.contains('?'))
            .map(|((_, name, version), _)| rustsec::Candidate {
                name,
                version,
                pinned_at: "Cargo.lock".into(),
                pinned_by: None,
            });
        findings.extend(rustsec::scan_crates(&advisories, crates));
        databases.push(record(db));
    }
    if let Some(db) = &go_db {
        let vulns = govulndb::load(db);
        let modules: Vec<govulndb::Pinned> = packages
            .keys()
            .filter(|(eco, _, _)| *eco == Ecosystem::Golang)
            .map(|(_, module, version)| govulndb::Pinned {
                module: (*module).to_owned(),
                version: (*version).to_owned(),
                pinned_at: "go.sum".into(),
                pinned_by: None,
                reach: Reach::Compiled,
            })
            .collect();
        findings.extend(govulndb::scan(&vulns, &modules));
        databases.push(record(db));
    }
    for f in &mut findings {
        let eco = match f.ecosystem {
            super::Ecosystem::Cargo => Ecosystem::Cargo,
            _ => Ecosystem::Golang,
        };
        f.reach = Reach::Compiled;
        f.purl = packages
            .get(&(eco, f.package.as_str(), f.version.as_str()))
            .map(|p| (*p).to_owned());
    }
    let report = Report {
        release: release.to_owned(),
        lockfile_sha256: String::new(),
        databases: Vec::new(),
        scanned: BTreeMap::new(),
        findings,
        unused_ignores: Vec::new(),
        notes: Vec::new(),
        reach: None,
    };
    let release_ref = crate::sbom::release_ref(release);
    let target = vex::Target {
        release_ref: &release_ref,
        link: None,
    };
    Ok(Some(Embedded {
        vulnerabilities: vex::vulnerabilities(&report, &target),
        databases,
    }))
}

fn record(db: &Snapshot) -> (String, String) {
    let commit = match (&db.commit, db.origin) {
        (Some(c), database::Origin::ModifiedWorkTree) => format!("{c}, work tree modified"),
        (Some(c), _) => c.clone(),
        (None, _) => "no commit".into(),
    };
    (db.kind.name.to_owned(), commit)
}
