//! The guest kernel: the newest release of the pinned series, from kernel.org's
//! `releases.json`, or from Debian's archive for a kernel pinned as Debian's `linux-source`.

use serde::Deserialize;

use super::rootfs::{keyring_for, newest_in, suites_of};
use super::{Item, Options, Reader, Section, Skipped};
use crate::lock::toolchain::version_key;
use crate::lock::{Lockfile, major_minor};

#[derive(Deserialize)]
struct Releases {
    releases: Vec<Release>,
}

#[derive(Deserialize)]
struct Release {
    version: String,
    #[serde(default)]
    moniker: String,
    #[serde(default)]
    iseol: bool,
}

/// The pinned kernel against the newest of its series in a `releases.json`.
pub fn from_releases_json(pinned: &str, json: &[u8]) -> Result<Item, String> {
    let releases: Releases =
        serde_json::from_slice(json).map_err(|e| format!("not kernel.org's releases.json: {e}"))?;
    let series = major_minor(pinned);
    let name = format!("linux {series}");
    let found = releases
        .releases
        .iter()
        .filter(|r| major_minor(&r.version) == series)
        .max_by_key(|r| version_key(&r.version));
    let Some(r) = found else {
        let mut item = Item::new(name, pinned, "none");
        item.notes.push(format!(
            "kernel.org lists no {series} release: the series is no longer maintained"
        ));
        return Ok(item);
    };
    let mut item = Item::new(name, pinned, r.version.as_str());
    item.outdated = version_key(&r.version) > version_key(pinned);
    if !item.outdated {
        item.newest = pinned.to_owned();
    }
    item.notes.push(format!("{} series", r.moniker));
    if r.iseol {
        item.outdated = true;
        item.notes
            .push(format!("kernel.org marks {series} end of life"));
    }
    Ok(item)
}

/// `(archive, package, version)` of a kernel pinned as a Debian package URL
/// (`…/debian-security/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1%7edeb12u1_all.deb`);
/// the archive is the release's main one.
pub fn debian_package(url: &str) -> Option<(String, String, String)> {
    let (root, rest) = url.split_once("/pool/")?;
    let file = rest.rsplit('/').next()?;
    let file = percent_encoding::percent_decode_str(file)
        .decode_utf8()
        .ok()?;
    let stem = file.strip_suffix(".deb")?;
    let mut parts = stem.split('_');
    let (name, version) = (parts.next()?, parts.next()?);
    let root = root.strip_suffix("-security").unwrap_or(root);
    Some((root.to_owned(), name.to_owned(), version.to_owned()))
}

pub fn section(
    lock: &Lockfile,
    reader: &Reader<'_>,
    options: &Options,
    skipped: &mut Vec<Skipped>,
) -> Section {
    let mut section = Section::new("kernel");
    let kernel = &lock.kernel;
    section.checked = 1;
    if kernel.member.is_some() {
        match debian_kernel(lock, reader, options, skipped) {
            Some(item) => section.items.push(item),
            None => section.checked = 0,
        }
        return section;
    }
    let url = &options.kernel_releases;
    match reader
        .get(url, Some("application/json"))
        .and_then(|json| from_releases_json(&kernel.version, &json))
    {
        Ok(item) => section.items.push(item),
        Err(reason) => {
            section.checked = 0;
            skipped.push(Skipped {
                what: "kernel releases".into(),
                source: url.clone(),
                reason,
            });
        }
    }
    section
}

/// A Debian `linux-source` kernel against the newest of its package in the release's suites.
fn debian_kernel(
    lock: &Lockfile,
    reader: &Reader<'_>,
    options: &Options,
    skipped: &mut Vec<Skipped>,
) -> Option<Item> {
    let kernel = &lock.kernel;
    let Some((archive, package, version)) = debian_package(&kernel.url) else {
        skipped.push(Skipped {
            what: "kernel package".into(),
            source: kernel.url.clone(),
            reason: "not a Debian pool URL".into(),
        });
        return None;
    };
    let Some(base) = lock.rootfs.base.iter().find(|b| b.distro == "debian") else {
        skipped.push(Skipped {
            what: "kernel package".into(),
            source: kernel.url.clone(),
            reason: "the lockfile pins no Debian release to look for it in".into(),
        });
        return None;
    };
    let darch = crate::lock::debian::debian_arch(&crate::host::arch())?;
    let suites = suites_of(&archive, "debian", &base.release);
    let keyring = keyring_for(options, "debian");
    let newest = newest_in(
        reader,
        &suites,
        &["main".to_owned()],
        darch,
        keyring.as_deref(),
        skipped,
    );
    let n = newest.get(&package)?;
    let mut item = Item::new(package.as_str(), version.as_str(), n.version.as_str());
    item.outdated =
        crate::lock::debian::version_cmp(&n.version, &version) == Some(std::cmp::Ordering::Greater);
    if item.outdated {
        item.notes.push(format!("in {}", n.suite));
    } else {
        item.newest = version;
    }
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_of_the_series_and_its_end_of_life() {
        let json = br#"{"releases":[
            {"moniker":"mainline","version":"6.19-rc3","iseol":false},
            {"moniker":"longterm","version":"6.18.21","iseol":false},
            {"moniker":"longterm","version":"6.12.60","iseol":false},
            {"moniker":"stable","version":"6.17.13","iseol":true}]}"#;
        let i = from_releases_json("6.18.15", json).unwrap();
        assert!(i.outdated && i.newest == "6.18.21", "{i:?}");
        let same = from_releases_json("6.12.60", json).unwrap();
        assert!(!same.outdated);
        let eol = from_releases_json("6.17.13", json).unwrap();
        assert!(eol.outdated && eol.notes.iter().any(|n| n.contains("end of life")));
        let gone = from_releases_json("6.1.100", json).unwrap();
        assert!(gone.outdated && gone.newest == "none");
        assert!(from_releases_json("6.1.1", b"{}").is_err());
    }

    #[test]
    fn a_debian_kernel_names_its_package_and_release_archive() {
        let url = "https://deb.debian.org/debian-security/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1%7edeb12u1_all.deb";
        assert_eq!(
            debian_package(url),
            Some((
                "https://deb.debian.org/debian".into(),
                "linux-source-6.12".into(),
                "6.12.117-1~deb12u1".into()
            ))
        );
    }
}
