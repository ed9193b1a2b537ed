//! `kata-repro verify --lockfile`: everything a pinned release depends on, checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::cargo::registry::{self, CrateSources};
use super::cargo::{offline, resolve};
use super::gomod::gosum::{GoSum, SumKind};
use super::gomod::modcache::{self, ModuleSources};
use super::gomod::vendor::{self, VendorCheck};
use super::kernel;
use super::report::{Ecosystem, Finding, Outcome, Report};
use crate::lock::cargo_lock::{CargoLock, PackageSource};
use crate::lock::{Loaded, Lockfile};
use crate::source::fetch::{Status, check_trusted_files, repo_name};
use crate::source::get::{Failure, Getter, Got, TreePin};

pub struct ReleaseCheck<'a> {
    pub lock: &'a Lockfile,
    pub get: Getter<'a>,
    pub registry_caches: Vec<PathBuf>,
    pub modcaches: Vec<PathBuf>,
    pub proxy: Option<String>,
    /// Download crates missing from the caches into the store.
    pub download: bool,
    /// Architectures whose kernel inputs are listed.
    pub arches: Vec<String>,
    pub host_arch: String,
    pub skip: BTreeSet<Ecosystem>,
    /// Threads for downloads.
    pub threads: usize,
    pub on_crate: Option<&'a (dyn Fn(&Finding) + Sync)>,
    /// Resolve which locked crates a build needs, over a verified offline vendor tree.
    pub resolve: Option<ResolveRequest>,
}

/// The build whose crates `verify` separates from the rest of the workspace lock.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    /// The package's manifest, relative to the Kata tree (e.g. `src/agent/Cargo.toml`).
    pub manifest: String,
    pub target: String,
    pub features: Vec<String>,
    /// The cargo binary to run.
    pub cargo: String,
}

fn outcome_of(status: Status) -> Outcome {
    match status {
        Status::Fetched | Status::Cached | Status::Repaired | Status::Skipped => Outcome::Ok,
        Status::Failed => Outcome::Failed,
        Status::Missing => Outcome::Missing,
        Status::Unpinned => Outcome::Unpinned,
    }
}

fn finding_from(base: Finding, result: &Result<Got, Failure>) -> Finding {
    match result {
        Ok(got) => {
            let origin = got
                .from
                .clone()
                .unwrap_or_else(|| got.path.display().to_string());
            let f = base.origin(origin);
            match &got.note {
                Some(n) => f.message(n.clone()),
                None => f,
            }
        }
        Err(f) => base
            .outcome(outcome_of(f.status))
            .message(f.message.clone()),
    }
}

impl ReleaseCheck<'_> {
    pub fn run(&self) -> Report {
        let lock = self.lock;
        let mut report = Report::default();
        let at = |needle: &str| lock.locate(needle);
        let pinned = |f: Finding, needle: &str| match at(needle) {
            Some(p) => f.pinned_at(p),
            None => f,
        };

        // The Kata source: everything else is read from it.
        let source = self
            .get
            .git(
                &lock.source.url,
                lock.source.commit,
                Some(&lock.source.tag),
                TreePin::of_source(&lock.source),
            )
            .and_then(|got| check_trusted_files(lock, &got.path).map(|()| got));
        let base = pinned(
            Finding::new(
                Ecosystem::Source,
                format!("kata-containers@{}", lock.source.tag),
                Outcome::Ok,
            )
            .expected(lock.source.commit.to_string()),
            &lock.source.commit.to_string(),
        );
        report.findings.push(finding_from(base, &source));
        let Ok(checkout) = source.map(|g| g.path) else {
            report.notes.push(
                "the Kata source could not be verified, so nothing read from it was checked".into(),
            );
            return report;
        };

        if !self.skip.contains(&Ecosystem::Toolchain) {
            for s in lock
                .toolchains
                .go
                .sources
                .iter()
                .filter(|s| s.host == self.host_arch)
            {
                let name = format!("go@{} ({})", s.version, s.kind);
                let Some(sha) = s.sha256 else {
                    report
                        .notes
                        .push(format!("{name} for {} is unpinned and not used", s.host));
                    continue;
                };
                let base = pinned(
                    Finding::new(Ecosystem::Toolchain, name, Outcome::Ok).expected(sha.to_hex()),
                    &sha.to_hex(),
                );
                report.findings.push(finding_from(
                    base,
                    &self.get.file(&s.url, &sha, &mut |_| {}),
                ));
            }
        }
        if !self.skip.contains(&Ecosystem::Cargo) {
            report.extend(self.cargo(&checkout));
        }
        if !self.skip.contains(&Ecosystem::Go) {
            report.extend(self.go(&checkout));
        }
        if !self.skip.contains(&Ecosystem::Kernel) {
            let k = &lock.kernel;
            let name = format!("linux@{}", k.version);
            let base = Finding::new(Ecosystem::Kernel, name, Outcome::Ok);
            match &k.sha256 {
                None => report.findings.push(pinned(base, "[kernel]").outcome(Outcome::Unpinned).message(
                    "the kernel tarball is unpinned; pin it with `kata-repro lock --kernel-sha256 HEX`",
                )),
                Some(sha) => {
                    let base = pinned(base.expected(sha.to_hex()), &sha.to_hex());
                    report.findings.push(finding_from(base, &self.get.file(&k.url, sha, &mut |_| {})));
                }
            }
            let tree_at = at(&lock.source.tree.to_string());
            report.findings.extend(kernel::tree_inputs(
                &checkout,
                &k.version,
                &self.arches,
                tree_at.as_deref(),
            ));
        }
        report
    }

    fn cargo(&self, checkout: &Path) -> Report {
        let lock_path = checkout.join("Cargo.lock");
        let mut report = Report::default();
        let cargo_lock = match CargoLock::load(&lock_path) {
            Ok(l) => l,
            Err(e) => {
                report.findings.push(
                    Finding::new(Ecosystem::Cargo, "Cargo.lock", Outcome::Failed)
                        .origin(lock_path.display().to_string())
                        .message(e.to_string()),
                );
                return report;
            }
        };
        let sources = CrateSources {
            store: Some(self.get.store),
            registry_caches: self.registry_caches.clone(),
            download: self.download,
            mirrors: Some(self.get.mirrors),
            on_done: self.on_crate,
        };
        report.findings.extend(registry::verify(
            &cargo_lock,
            &lock_path,
            &sources,
            self.threads,
        ));

        // Git packages: Cargo.lock and the lockfile must pin the same commits.
        report.findings.extend(git_packages(
            &cargo_lock,
            &lock_path,
            &self.get,
            Some(&self.lock.git),
        ));
        let paths: Vec<String> = cargo_lock
            .packages
            .iter()
            .filter(|p| p.source == PackageSource::Path)
            .map(|p| p.id())
            .collect();
        if let Some(request) = &self.resolve {
            self.resolve_build(request, &cargo_lock, checkout, &mut report);
        }
        report.notes.push(format!(
            "{} path packages are covered by the source commit {}: {}",
            paths.len(),
            self.lock.source.commit.short(),
            paths.join(", ")
        ));
        report
    }

    /// Marks each cargo finding as needed by the resolved build or only locked.
    fn resolve_build(
        &self,
        request: &ResolveRequest,
        cargo_lock: &Loaded<CargoLock>,
        checkout: &Path,
        report: &mut Report,
    ) {
        if report.findings.iter().any(|f| f.outcome != Outcome::Ok) {
            report.notes.push(format!(
                "{} was not resolved: the offline vendor tree is made only when every crate verifies",
                request.manifest
            ));
            return;
        }
        let vendored = offline::ensure_in_store(
            cargo_lock,
            checkout,
            self.get.store,
            self.get.mirrors,
            &request.cargo,
        );
        let resolution = vendored.map_err(|e| e.to_string()).and_then(|v| {
            resolve::resolve(
                &checkout.join(&request.manifest),
                &v.config,
                &request.target,
                &request.features,
                &request.cargo,
            )
            .map_err(|e| e.to_string())
        });
        match resolution {
            Err(e) => report
                .notes
                .push(format!("{} was not resolved: {e}", request.manifest)),
            Ok(r) => {
                let mut needed = 0;
                for f in report.findings.iter_mut() {
                    let in_build = r.needed.contains(&f.name);
                    needed += usize::from(in_build);
                    f.scope = Some(if in_build { "build" } else { "lock-only" }.to_owned());
                }
                let total = report.findings.len();
                let paths = cargo_lock
                    .packages
                    .iter()
                    .filter(|p| p.source == PackageSource::Path && r.needed.contains(&p.id()))
                    .count();
                report.notes.push(format!(
                    "{} for {} with features [{}]: needs {needed} of the {total} verified crates and {paths} path packages; \
                     the other {} are only in the workspace lock",
                    r.root,
                    r.target,
                    r.features.join(", "),
                    total - needed
                ));
            }
        }
    }

    fn go(&self, checkout: &Path) -> Report {
        let runtime = checkout.join("src/runtime");
        let sum_path = runtime.join("go.sum");
        let mut report = Report::default();
        let sum = match GoSum::load(&sum_path) {
            Ok(s) => s,
            Err(e) => {
                report.findings.push(
                    Finding::new(Ecosystem::Go, "go.sum", Outcome::Failed).message(e.to_string()),
                );
                return report;
            }
        };
        let sources = ModuleSources {
            modcaches: self.modcaches.clone(),
            proxy: self.proxy.clone(),
            store: Some(self.get.store.go_module_cache()),
            staging: Some(self.get.store.staging_dir()),
        };
        let vendor_dir = runtime.join("vendor");
        if vendor_dir.join("modules.txt").is_file() {
            let pin = format!("the source commit {}", self.lock.source.commit.short());
            match vendored(&runtime, &vendor_dir, &sum, &sources, Some(pin)) {
                Ok(r) => report.extend(r),
                Err(e) => report.findings.push(
                    Finding::new(Ecosystem::Go, "vendor", Outcome::Failed).message(e.to_string()),
                ),
            }
        } else {
            let mut checked = modcache::verify(&sum, &sources);
            if sources.proxy.is_none() && sources.modcaches.is_empty() {
                report.notes.push(
                    "this release commits no vendor/ tree: its Go modules need a module proxy (--proxy URL) or a module cache (--modcache DIR)"
                        .into(),
                );
            }
            report.findings.append(&mut checked.findings);
        }
        report
    }
}

/// A committed vendor/ tree: consistency and go.sum coverage always; files derived again from
/// module zips where a module cache or proxy provides them.
pub fn vendored(
    module_dir: &Path,
    vendor_dir: &Path,
    sum: &GoSum,
    sources: &ModuleSources,
    pinned_by: Option<String>,
) -> Result<Report, vendor::VendorError> {
    let mut report = Report::default();
    let mut zips = BTreeMap::new();
    if !sources.modcaches.is_empty() || sources.proxy.is_some() || sources.store.is_some() {
        let needed = match vendor::parse_modules_txt(
            &std::fs::read_to_string(vendor_dir.join("modules.txt")).unwrap_or_default(),
            &vendor_dir.join("modules.txt"),
        ) {
            Ok(mods) => mods
                .iter()
                .filter_map(|m| m.source().map(|(p, v)| (p.to_owned(), v.to_owned())))
                .collect::<BTreeSet<_>>(),
            Err(_) => BTreeSet::new(),
        };
        let wanted = GoSum {
            path: sum.path.clone(),
            entries: sum
                .entries
                .iter()
                .filter(|e| {
                    e.kind == SumKind::Zip
                        && needed.contains(&(e.module.clone(), e.version.clone()))
                })
                .cloned()
                .collect(),
        };
        let checked = modcache::verify(&wanted, sources);
        for f in checked.findings.iter().filter(|f| f.outcome == Outcome::Ok) {
            let (Some((module, version)), Some(origin)) = (f.name.rsplit_once('@'), &f.origin)
            else {
                continue;
            };
            if origin.ends_with(".zip") {
                zips.insert(
                    (module.to_owned(), version.to_owned()),
                    PathBuf::from(origin),
                );
            }
        }
        // Zips no source has are not findings here: the vendored module says what was checked.
        report.findings.extend(
            checked
                .findings
                .into_iter()
                .filter(|f| f.outcome != Outcome::Missing),
        );
    }
    let check = VendorCheck {
        gomod_path: &module_dir.join("go.mod"),
        vendor_dir,
        sum,
        zips: &zips,
        pinned_by,
    };
    report.extend(vendor::verify(&check)?);
    Ok(report)
}

/// Every git package of a Cargo.lock, checked out through its mirror at the commit Cargo.lock
/// pins. With `pins` (a lockfile's `[[git]]`), the lockfile must pin the same commit too.
pub fn git_packages(
    cargo_lock: &CargoLock,
    lock_path: &Path,
    get: &Getter<'_>,
    pins: Option<&[crate::lock::GitDependency]>,
) -> Vec<Finding> {
    let mut by_repo: BTreeMap<
        (String, crate::lock::GitOid),
        Vec<&crate::lock::cargo_lock::LockedPackage>,
    > = BTreeMap::new();
    for p in &cargo_lock.packages {
        if let PackageSource::Git(g) = &p.source {
            by_repo
                .entry((g.url.clone(), g.commit))
                .or_default()
                .push(p);
        }
    }
    let mut findings = Vec::new();
    for ((url, commit), packages) in &by_repo {
        let pin = match pins {
            None => Ok(TreePin::FromCommit),
            Some(pins) => match pins.iter().find(|g| &g.url == url && g.commit == *commit) {
                Some(dep) => TreePin::of_dependency(dep),
                None => Err(Failure::failed(format!(
                    "Cargo.lock pins {url} at {commit}, but the lockfile does not; regenerate it with `kata-repro lock`"
                ))),
            },
        };
        let result = {
            pin.and_then(|pin| get.policy.check(url).map_err(Failure::failed).map(|()| pin))
                .and_then(|pin| get.git(url, *commit, None, pin))
                .map_err(|mut f| {
                    f.message = format!("{} at {}: {}", repo_name(url), commit.short(), f.message);
                    f
                })
        };
        for p in packages {
            let base = Finding::new(Ecosystem::Cargo, p.id(), Outcome::Ok)
                .expected(commit.to_string())
                .pinned_at(format!("{}:{}", lock_path.display(), p.line));
            findings.push(finding_from(base, &result));
        }
    }
    findings
}
