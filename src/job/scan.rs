//! The `scan` job: a release's pinned inputs against offline advisory databases.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::build::Opened;
use super::records::rust_sysroot;
use super::{Event, Events, JobError, Spec};
use crate::lock::Lockfile;
use crate::lock::cargo_lock::{CargoLock, CargoLockError};
use crate::recipe::{Input, LoadedRecipe};
use crate::scan::database::{self, DatabaseError, GO_VULNDB, RUSTSEC, Snapshot};
use crate::scan::{
    self, DatabaseRecord, Ecosystem, Ignore, LockfilePin, Reach, Report, debian, govulndb, rustsec,
};
use crate::source::fetch::check_trusted_files;
use crate::source::get::TreePin;
use crate::verify::gomod::gosum::{GoSum, GoSumError, SumKind};

/// What to scan a release against.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    /// The release, the architecture and the components whose compiled packages count as
    /// `compiled`.
    pub spec: Spec,
    /// The RustSec database; `None` for the mirror the config maps its upstream to.
    pub rustsec: Option<PathBuf>,
    /// The Go vulnerability database; `None` for the config's mirror.
    pub go_vulndb: Option<PathBuf>,
    /// The Debian security tracker's JSON export, for the rootfs packages.
    pub debian_tracker: Option<PathBuf>,
    pub ignore: Vec<Ignore>,
    /// The architectures whose compiled packages count as `compiled`; empty for every one a
    /// recipe that compiles crates or Go modules builds for. `spec.arch` is not read.
    pub arches: Vec<String>,
    /// Leave out which packages the components compile: findings are then `unresolved`.
    pub lock_only: bool,
    /// Seconds since the epoch, for the databases' age.
    pub now: i64,
}

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(
        "no advisory database: pass --{} DIR, --{} DIR or --debian-tracker FILE, or map {} or \
         {} to a local mirror in the config's [mirrors]",
        RUSTSEC.flag, GO_VULNDB.flag, RUSTSEC.upstream, GO_VULNDB.upstream
    )]
    NoDatabase,
    #[error(transparent)]
    Tracker(#[from] debian::TrackerError),
    #[error(
        "the Kata source {tag} could not be verified, so nothing read from it is scanned: {message}"
    )]
    Source { tag: String, message: String },
    #[error(transparent)]
    CargoLock(#[from] CargoLockError),
    #[error(transparent)]
    GoSum(#[from] GoSumError),
}

impl ScanError {
    /// 1 when the pinned source failed verification, 2 for a database or input that cannot be
    /// read.
    pub fn exit_code(&self) -> u8 {
        match self {
            ScanError::Source { .. } => 1,
            _ => 2,
        }
    }
}

/// The databases a scan reads, each opened once.
struct Databases {
    rustsec: Option<Snapshot>,
    go: Option<Snapshot>,
    debian: Option<debian::Tracker>,
}

impl Databases {
    fn open(
        spec: &ScanSpec,
        release: &super::Release,
        events: Events<'_>,
    ) -> Result<Self, ScanError> {
        let open =
            |explicit: Option<&std::path::Path>, kind| -> Result<Option<Snapshot>, ScanError> {
                let Some(path) = database::locate(explicit, &release.mirrors, kind)? else {
                    return Ok(None);
                };
                events(Event::Phase {
                    label: "",
                    what: &format!("reading the {} at {}", kind.name, path.display()),
                });
                Ok(Some(database::open(&path, kind)?))
            };
        let debian = match &spec.debian_tracker {
            Some(path) => {
                events(Event::Phase {
                    label: "",
                    what: &format!(
                        "reading the Debian security tracker's export {}",
                        path.display()
                    ),
                });
                Some(debian::Tracker::load(path)?)
            }
            None => None,
        };
        let dbs = Self {
            rustsec: open(spec.rustsec.as_deref(), RUSTSEC)?,
            go: open(spec.go_vulndb.as_deref(), GO_VULNDB)?,
            debian,
        };
        if dbs.rustsec.is_none() && dbs.go.is_none() && dbs.debian.is_none() {
            return Err(ScanError::NoDatabase);
        }
        Ok(dbs)
    }
}

/// Scans `spec`'s release.
pub fn run(spec: &ScanSpec, events: Events<'_>) -> Result<Report, JobError> {
    let opened = Opened::open(&spec.spec, events)?;
    let release = &opened.release;
    let dbs = Databases::open(spec, release, events)?;
    let lock = &release.lock;
    let checkout = pinned_source(release, spec.spec.env.offline, events)?;

    let mut report = Report {
        release: lock.release.clone(),
        lockfile_sha256: lock.sha256.to_hex(),
        databases: Vec::new(),
        scanned: BTreeMap::new(),
        findings: Vec::new(),
        unused_ignores: Vec::new(),
        notes: Vec::new(),
        reach: None,
    };
    let pinned = Pinned {
        lock,
        checkout: &checkout,
        now: spec.now,
    };
    if let Some(db) = &dbs.rustsec {
        scan_crates(db, &pinned, &mut report)?;
    }
    if let Some(db) = &dbs.go {
        scan_go(db, &pinned, &mut report)?;
    }
    if let Some(tracker) = &dbs.debian {
        scan_debs(tracker, &pinned, &mut report)?;
    }
    if !spec.lock_only {
        let (compiled, scope) = compiled_packages(spec, &opened, events)?;
        scan::classify(&mut report.findings, compiled.as_ref());
        report.reach = Some(scope);
    }
    let unused = scan::apply_ignores(&mut report.findings, &spec.ignore);
    report.unused_ignores = unused.iter().map(|i| i.id.clone()).collect();
    Ok(report)
}

/// The Kata source checkout the pinned files are read from. The scan reads only the files
/// the lockfile pins by sha256 (Cargo.lock, go.sum), so a stored checkout whose pinned files
/// all hash as pinned is used as it is; otherwise the checkout is fetched (or repaired) and
/// its whole tree verified, as every other job does.
fn pinned_source(
    release: &super::Release,
    offline: bool,
    events: Events<'_>,
) -> Result<std::path::PathBuf, ScanError> {
    let lock = &release.lock;
    let failed = |f: crate::source::get::Failure| ScanError::Source {
        tag: lock.source.tag.clone(),
        message: f.message,
    };
    let stored = release.store.git_path(&lock.source.commit);
    if release.store.git_entry(&lock.source.commit).exists()
        && check_trusted_files(lock, &stored).is_ok()
    {
        return Ok(stored);
    }
    events(Event::Phase {
        label: "",
        what: &format!("verifying the Kata source {}", lock.source.tag),
    });
    let got = release
        .getter(offline)
        .git(
            &lock.source.url,
            lock.source.commit,
            Some(&lock.source.tag),
            TreePin::of_source(&lock.source),
        )
        .map_err(failed)?;
    check_trusted_files(lock, &got.path).map_err(failed)?;
    Ok(got.path)
}

/// What a scan reads the pinned inputs from: the lockfile, and the verified source checkout;
/// and when it runs.
#[derive(Clone, Copy)]
struct Pinned<'a> {
    lock: &'a Lockfile,
    checkout: &'a std::path::Path,
    now: i64,
}

/// The files named `name` (`Cargo.lock`, `go.sum`) the lockfile pins in the Kata source, with
/// where each pin stands.
fn pinned_files<'a>(
    lock: &'a Lockfile,
    name: &'a str,
) -> impl Iterator<Item = (&'a str, Option<LockfilePin>)> + 'a {
    lock.source
        .files
        .iter()
        .enumerate()
        .filter(move |(_, f)| f.path == name || f.path.ends_with(&format!("/{name}")))
        .map(|(i, f)| (f.path.as_str(), LockfilePin::of(lock, "source.files", i)))
}

fn scan_crates(db: &Snapshot, at: &Pinned<'_>, report: &mut Report) -> Result<(), ScanError> {
    let Pinned {
        lock,
        checkout,
        now,
    } = *at;
    let advisories = rustsec::load(db);
    let mut scanned = 0;
    for (path, pin) in pinned_files(lock, "Cargo.lock") {
        let cargo_lock = CargoLock::load(&checkout.join(path))?;
        scanned += cargo_lock
            .packages
            .iter()
            .filter(|p| p.is_crates_io())
            .count();
        report
            .findings
            .extend(rustsec::scan(&advisories, &cargo_lock, path, pin.as_ref()));
    }
    report.scanned.insert(Ecosystem::Cargo, scanned);
    report.databases.push(DatabaseRecord::new(
        db,
        advisories.list.len(),
        advisories.skipped,
        now,
    ));
    report.notes.push(
        "crates are matched by name and version against crates.io advisories; whether an \
         affected function is called is not analysed"
            .into(),
    );
    Ok(())
}

fn scan_go(db: &Snapshot, at: &Pinned<'_>, report: &mut Report) -> Result<(), ScanError> {
    let Pinned {
        lock,
        checkout,
        now,
    } = *at;
    let vulns = govulndb::load(db);
    let mut pinned = Vec::new();
    for (path, pin) in pinned_files(lock, "go.sum") {
        pinned.extend(go_modules(&*GoSum::load(&checkout.join(path))?, path, pin));
    }
    report.scanned.insert(Ecosystem::Go, pinned.len());
    pinned.extend(go_toolchains(lock));
    let unpinned: BTreeSet<&str> = lock
        .toolchains
        .go
        .sources
        .iter()
        .filter(|s| s.sha256.is_none())
        .map(|s| s.version.as_str())
        .collect();
    if !unpinned.is_empty() {
        let list: Vec<&str> = unpinned.into_iter().collect();
        report.notes.push(format!(
            "Go {} is listed in the lockfile without a sha256, so no build uses it and it is \
             not checked as stdlib or toolchain",
            list.join(", ")
        ));
    }
    report.findings.extend(govulndb::scan(&vulns, &pinned));
    report.databases.push(DatabaseRecord::new(
        db,
        vulns.list.len(),
        vulns.skipped,
        now,
    ));
    report.notes.push(
        "Go modules are matched by module path and version (OSV ranges); govulncheck's \
         symbol-level analysis of whether vulnerable code is reachable is not done"
            .into(),
    );
    Ok(())
}

fn scan_debs(
    tracker: &debian::Tracker,
    at: &Pinned<'_>,
    report: &mut Report,
) -> Result<(), ScanError> {
    let lock = at.lock;
    let mut pinned = Vec::new();
    let mut other = BTreeMap::new();
    for (i, p) in lock.rootfs.packages.iter().enumerate() {
        let base = lock.rootfs.base.iter().find(|b| b.arch == p.target);
        let Some(base) = base.filter(|b| b.distro == "debian") else {
            let distro = base.map_or("unknown", |b| b.distro.as_str());
            *other.entry(distro.to_owned()).or_insert(0) += 1;
            continue;
        };
        let Some(source) = debian::source_of(&p.url) else {
            *other.entry("no pool path".to_owned()).or_insert(0) += 1;
            continue;
        };
        pinned.push(debian::Pinned {
            package: p.name.clone(),
            version: p.version.clone(),
            source: source.to_owned(),
            release: base.release.clone(),
            pinned_at: lock
                .locate(&p.sha256.to_hex())
                .unwrap_or_else(|| "[[rootfs.packages]]".into()),
            pinned_by: LockfilePin::of(lock, "rootfs.packages", i),
        });
    }
    // The tracker names releases by codename: a lockfile whose suite is an alias (`stable`)
    // would match nothing, and look clean.
    let known = tracker.releases();
    if let Some(p) = pinned.iter().find(|p| !known.contains(p.release.as_str())) {
        return Err(debian::TrackerError::UnknownRelease {
            path: tracker.path.clone(),
            release: p.release.clone(),
            packages: pinned.iter().filter(|q| q.release == p.release).count(),
            known: known.iter().copied().collect::<Vec<_>>().join(", "),
        }
        .into());
    }
    for (why, n) in other {
        report.notes.push(format!(
            "{n} rootfs packages not checked against the Debian tracker: {why}"
        ));
    }
    report.scanned.insert(Ecosystem::Deb, pinned.len());
    report.findings.extend(debian::scan(tracker, &pinned));
    report
        .databases
        .push(DatabaseRecord::of_tracker(tracker, at.now));
    Ok(())
}

/// Each module version of a go.sum once, at the line of its zip hash where it has one (the
/// module's code), else of its go.mod hash.
fn go_modules(sum: &GoSum, path: &str, pin: Option<LockfilePin>) -> Vec<govulndb::Pinned> {
    let mut by_module: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in &sum.entries {
        let line = by_module
            .entry((e.module.as_str(), e.version.as_str()))
            .or_insert(e.line);
        if e.kind == SumKind::Zip {
            *line = e.line;
        }
    }
    by_module
        .into_iter()
        .map(|((module, version), line)| govulndb::Pinned {
            module: module.to_owned(),
            version: version.to_owned(),
            pinned_at: format!("{path}:{line}"),
            pinned_by: pin.clone(),
            reach: Reach::Unresolved,
        })
        .collect()
}

/// The pinned Go toolchains: each as `stdlib` (linked into every Go binary) and `toolchain`
/// (the go command that builds them).
fn go_toolchains(lock: &Lockfile) -> Vec<govulndb::Pinned> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, s) in lock.toolchains.go.sources.iter().enumerate() {
        let Some(sha) = s.sha256 else { continue };
        let Some(version) = govulndb::GoVersion::of_go_release(&s.version) else {
            continue;
        };
        if !seen.insert(s.version.clone()) {
            continue;
        }
        let at = lock
            .locate(&sha.to_hex())
            .unwrap_or_else(|| "[toolchains.go]".into());
        for (module, reach) in [("stdlib", Reach::Compiled), ("toolchain", Reach::BuildTool)] {
            out.push(govulndb::Pinned {
                module: module.into(),
                version: version.to_string(),
                pinned_at: at.clone(),
                pinned_by: LockfilePin::of(lock, "toolchains.go.sources", i),
                reach,
            });
        }
    }
    out
}

/// Whether a recipe compiles crates or Go modules.
fn compiles_packages(r: &LoadedRecipe) -> bool {
    r.recipe
        .inputs
        .iter()
        .any(|i| matches!(i, Input::CargoVendor | Input::GoModules))
}

/// The architectures a compiling recipe builds for, in name order.
fn compiling_arches(opened: &Opened) -> Vec<String> {
    let arches: BTreeSet<&String> = opened
        .all
        .values()
        .filter(|r| compiles_packages(r))
        .flat_map(|r| r.recipe.arch.keys())
        .collect();
    arches.into_iter().cloned().collect()
}

/// The packages the spec's components compile (crates and Go modules) on each architecture
/// asked for: the dependency sets their SBOMs list, from the store or resolved here. `None`
/// when no chosen component compiles crates or Go modules: nothing can then be called
/// lock-only. With it, what the resolution covered, and whether that is the whole release.
fn compiled_packages(
    spec: &ScanSpec,
    opened: &Opened,
    events: Events<'_>,
) -> Result<(Option<scan::Compiled>, scan::ReachScope), JobError> {
    let release_arches = compiling_arches(opened);
    let arches = if spec.arches.is_empty() {
        release_arches.clone()
    } else {
        spec.arches.clone()
    };
    let mut compiled: Option<scan::Compiled> = None;
    let mut scope = scan::ReachScope::default();
    for arch in &release_arches {
        // What the whole release compiles on this architecture, to tell whether the scan
        // resolved all of it.
        let every = Spec {
            arch: arch.clone(),
            components: Vec::new(),
            ..spec.spec.clone()
        };
        let all = match opened.select(&every, "scanned", false) {
            Ok(s) => s.order,
            Err(e) => {
                scope.not_resolved.push(format!(
                    "{arch} (what the release compiles there could not be chosen: {e})"
                ));
                Vec::new()
            }
        };
        let all: Vec<String> = all
            .into_iter()
            .filter(|c| compiles_packages(&opened.all[c]))
            .collect();
        if !all.is_empty() && !arches.contains(arch) {
            scope
                .not_resolved
                .push(format!("{} for {arch}", all.join(", ")));
        }
        scope.release.insert(arch.clone(), all);
    }
    for arch in &arches {
        let s = Spec {
            arch: arch.clone(),
            ..spec.spec.clone()
        };
        let here: Vec<String> = scope.release.get(arch).cloned().unwrap_or_default();
        let chosen = match compiled_on(&s, opened, events) {
            Ok(Some((set, chosen))) => {
                compiled.get_or_insert_with(Default::default).extend(set);
                chosen
            }
            Ok(None) => Vec::new(),
            // Every architecture by default: one the named components do not build for is
            // left unresolved, and said so; one asked for by name fails the scan.
            Err(e) if spec.arches.is_empty() => {
                scope.not_resolved.push(format!("{arch} ({e})"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let left: Vec<&str> = here
            .iter()
            .filter(|c| !chosen.contains(c))
            .map(String::as_str)
            .collect();
        if !left.is_empty() {
            scope
                .not_resolved
                .push(format!("{} for {arch}", left.join(", ")));
        }
        if !chosen.is_empty() {
            scope.resolved.insert(arch.clone(), chosen);
        }
    }
    Ok((compiled, scope))
}

/// The packages `s`'s components compile on `s.arch`, with the components; `None` when none
/// of them compiles crates or Go modules.
fn compiled_on(
    s: &Spec,
    opened: &Opened,
    events: Events<'_>,
) -> Result<Option<(scan::Compiled, Vec<String>)>, JobError> {
    let order = opened.select(s, "scanned", false)?.order;
    let chosen: Vec<&LoadedRecipe> = order
        .iter()
        .map(|c| &opened.all[c])
        .filter(|r| compiles_packages(r))
        .collect();
    if chosen.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = chosen.iter().map(|r| r.recipe.component.clone()).collect();
    events(Event::Phase {
        label: "",
        what: &format!(
            "resolving the packages {} compile for {}",
            names.join(", "),
            s.arch
        ),
    });
    let release = &opened.release;
    let lock = &release.lock;
    let sysroot = rust_sysroot(
        &chosen,
        &release.store,
        lock,
        s.env.rust_toolchain.as_deref(),
    )?;
    let sets = crate::sbom::dependency_sets(
        &chosen,
        &lock.sha256,
        &s.arch,
        release.getter(s.env.offline),
        lock,
        None,
        sysroot.as_deref(),
        s.env.offline,
    )?;
    let compiled = sets
        .values()
        .flat_map(|set| &set.packages)
        .filter_map(|p| {
            let eco = match p.ecosystem {
                crate::sbom::Ecosystem::Cargo => Ecosystem::Cargo,
                crate::sbom::Ecosystem::Golang => Ecosystem::Go,
                _ => return None,
            };
            Some(((eco, p.name.clone(), p.version.clone()), p.purl.clone()))
        })
        .collect();
    Ok(Some((compiled, names)))
}

/// Seconds since the epoch now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
