//! Rootfs packages: each pinned package against its newest version in the pinned release's
//! suite and its `-security` and `-updates` suites, with the Debian security tracker's issues
//! that the newer version fixes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Item, Options, Reader, Section, Skipped};
use crate::lock::debian::{self, SuiteRef, version_cmp};
use crate::lock::{Lockfile, RootfsPackage};
use crate::scan::debian::{Pinned, Tracker, source_of};

/// A package's newest version across suites, and the suite it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    pub version: String,
    pub suite: String,
}

/// The suites of a release, as apt reads them: the release itself, then its updates.
pub fn suites_of(archive: &str, distro: &str, release: &str) -> Vec<SuiteRef> {
    let mut suites = vec![SuiteRef {
        archive: archive.trim_end_matches('/').to_owned(),
        suite: release.to_owned(),
    }];
    suites.extend(SuiteRef::updates_of(archive, distro, release));
    suites
}

/// Every package's newest version in `suites` for one architecture. A suite that cannot be
/// read is skipped and named in `skipped`.
pub fn newest_in(
    reader: &Reader<'_>,
    suites: &[SuiteRef],
    components: &[String],
    darch: &str,
    keyring: Option<&std::path::Path>,
    skipped: &mut Vec<Skipped>,
) -> BTreeMap<String, Newest> {
    let get = |url: &str| reader.get_pinned_host(url);
    let mut newest: BTreeMap<String, Newest> = BTreeMap::new();
    for suite in suites {
        let mut warnings = Vec::new();
        let read = debian::read_release(&get, suite, keyring, &mut warnings).and_then(|release| {
            let mut all = Vec::new();
            for c in components {
                all.extend(debian::packages_index(&get, &release, c, darch)?);
            }
            Ok(all)
        });
        let index = match read {
            Ok(index) => index,
            Err(e) => {
                skipped.push(Skipped {
                    what: format!("suite {} ({darch})", suite.suite),
                    source: suite.archive.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        for p in index {
            let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
                continue;
            };
            let newer = newest
                .get(name)
                .is_none_or(|n| version_cmp(version, &n.version) == Some(Ordering::Greater));
            if newer {
                newest.insert(
                    name.clone(),
                    Newest {
                        version: version.clone(),
                        suite: suite.suite.clone(),
                    },
                );
            }
        }
    }
    newest
}

/// The keyring suites are checked with.
pub fn keyring_for(options: &Options, distro: &str) -> Option<PathBuf> {
    match &options.keyring {
        Some(given) => given.clone(),
        None => Some(PathBuf::from(format!(
            "/usr/share/keyrings/{distro}-archive-keyring.gpg"
        ))),
    }
}

/// The tracker's issues of `pin` in `release` that `newer` fixes: fixed after the pinned
/// version, and no later than `newer`.
fn fixed_by(tracker: &Tracker, pin: &RootfsPackage, release: &str, newer: &str) -> Vec<String> {
    let Some(source) = source_of(&pin.url) else {
        return Vec::new();
    };
    let pinned = Pinned {
        package: pin.name.clone(),
        version: pin.version.clone(),
        source: source.to_owned(),
        release: release.to_owned(),
        pinned_at: String::new(),
        pinned_by: None,
    };
    let newer = crate::scan::debian::source_version(newer);
    crate::scan::debian::scan(tracker, &[pinned])
        .into_iter()
        .filter(|f| {
            f.fixed
                .iter()
                .any(|fix| version_cmp(fix, newer).is_some_and(|o| o != Ordering::Greater))
        })
        .map(|f| f.id)
        .collect()
}

pub fn section(
    lock: &Lockfile,
    reader: &Reader<'_>,
    options: &Options,
    skipped: &mut Vec<Skipped>,
) -> Section {
    let mut section = Section::new("rootfs packages");
    let tracker = match &options.debian_tracker {
        Some(path) => match Tracker::load(path) {
            Ok(t) => Some(t),
            Err(e) => {
                skipped.push(Skipped {
                    what: "Debian security tracker".into(),
                    source: path.display().to_string(),
                    reason: e.to_string(),
                });
                None
            }
        },
        None => None,
    };
    for base in &lock.rootfs.base {
        let Some(archive) = &base.archive else {
            continue;
        };
        let pinned: Vec<&RootfsPackage> = lock.rootfs.packages_of(&base.arch).collect();
        if pinned.is_empty() {
            continue;
        }
        let Some(darch) = debian::debian_arch(&base.arch) else {
            continue;
        };
        let suites = suites_of(archive, &base.distro, &base.release);
        let urls: Vec<&str> = pinned.iter().map(|p| p.url.as_str()).collect();
        let components = debian::pool_components(&urls);
        let keyring = keyring_for(options, &base.distro);
        let newest = newest_in(
            reader,
            &suites,
            &components,
            darch,
            keyring.as_deref(),
            skipped,
        );
        if newest.is_empty() {
            continue;
        }
        section.checked += pinned.len();
        for pin in pinned {
            let Some(n) = newest.get(&pin.name) else {
                continue;
            };
            if version_cmp(&n.version, &pin.version) != Some(Ordering::Greater) {
                continue;
            }
            let mut item = Item::new(
                format!("{} ({})", pin.name, base.arch),
                pin.version.as_str(),
                n.version.as_str(),
            );
            item.notes.push(format!("in {}", n.suite));
            if let Some(t) = &tracker {
                let fixes = fixed_by(t, pin, &base.release, &n.version);
                if !fixes.is_empty() {
                    item.notes.push(format!("fixes {}", fixes.join(", ")));
                }
                item.fixes = fixes;
            }
            section.items.push(item);
        }
    }
    section
}
