//! What changes between two lockfiles, section by section: the source, policy hosts, git
//! dependencies, toolchains, kernel, rootfs base and packages, and host pins. Each section is
//! a map from a key (a package and its target, a git URL, a toolchain archive) to what is
//! pinned for it; the diff lists the keys added, removed, or pinned to something else.

pub mod packages;
pub mod read;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::lock::Lockfile;

/// One key whose pin differs: `from` is `None` when it was added, `to` when it was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Entry {
    pub fn kind(&self) -> ChangeKind {
        match (&self.from, &self.to) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// The differing keys of one section, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub name: &'static str,
    pub entries: Vec<Entry>,
}

impl Section {
    /// How many keys were added, removed and changed.
    pub fn counts(&self) -> [(ChangeKind, usize); 3] {
        [ChangeKind::Added, ChangeKind::Removed, ChangeKind::Changed]
            .map(|k| (k, self.entries.iter().filter(|e| e.kind() == k).count()))
    }
}

/// What a section pins, by key.
pub type Pins = BTreeMap<String, String>;

/// A section's name, and how its pins are read from a lockfile.
type SectionOf = (&'static str, fn(&Lockfile) -> Pins);

/// The keys of `from` and `to` whose pins differ.
pub fn diff_pins(from: &Pins, to: &Pins) -> Vec<Entry> {
    let keys: std::collections::BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    keys.into_iter()
        .filter(|k| from.get(*k) != to.get(*k))
        .map(|k| Entry {
            key: k.clone(),
            from: from.get(k).cloned(),
            to: to.get(k).cloned(),
        })
        .collect()
}

fn short(oid: &impl std::fmt::Display) -> String {
    oid.to_string().chars().take(12).collect()
}

fn source(l: &Lockfile) -> Pins {
    Pins::from([(
        l.source.url.clone(),
        format!("{} ({})", l.source.tag, short(&l.source.commit)),
    )])
}

fn policy(l: &Lockfile) -> Pins {
    l.policy
        .allowed_hosts
        .iter()
        .map(|h| (h.clone(), "allowed".to_owned()))
        .collect()
}

fn git(l: &Lockfile) -> Pins {
    l.git
        .iter()
        .map(|g| {
            let at = match &g.reference {
                Some(r) => format!("{} ({r})", short(&g.commit)),
                None => short(&g.commit),
            };
            (g.url.clone(), at)
        })
        .collect()
}

fn toolchains(l: &Lockfile) -> Pins {
    let t = &l.toolchains;
    let mut pins = Pins::from([
        ("go (versions.yaml)".to_owned(), t.go.version.clone()),
        (
            "rust (rust-toolchain.toml)".to_owned(),
            t.rust.channel.clone(),
        ),
    ]);
    if let Some(v) = &t.rust.version {
        pins.insert("rust (rustc)".into(), v.clone());
    }
    for s in &t.go.sources {
        let sha = s
            .sha256
            .map_or("unpinned".to_owned(), |d| short(&d.to_hex()));
        pins.insert(
            format!("go {} {} {}", s.kind, s.host, s.version),
            format!("{} ({sha})", s.url),
        );
    }
    pins
}

fn kernel(l: &Lockfile) -> Pins {
    let k = &l.kernel;
    let sha = k
        .sha256
        .map_or("unpinned".to_owned(), |d| short(&d.to_hex()));
    Pins::from([
        ("linux".to_owned(), format!("{} ({sha})", k.version)),
        (
            "kata_config_version".to_owned(),
            k.kata_config_version.clone(),
        ),
    ])
}

fn rootfs_base(l: &Lockfile) -> Pins {
    l.rootfs
        .base
        .iter()
        .map(|b| (b.arch.clone(), format!("{} {}", b.distro, b.release)))
        .collect()
}

fn rootfs_packages(l: &Lockfile) -> Pins {
    l.rootfs
        .packages
        .iter()
        .map(|p| (format!("{} ({})", p.name, p.target), p.version.clone()))
        .collect()
}

fn host(l: &Lockfile) -> Pins {
    l.host
        .iter()
        .flat_map(|h| &h.packages)
        .map(|p| (format!("{}:{}", p.name, p.arch), p.version.clone()))
        .collect()
}

/// The sections of a lockfile diff that the lockfiles themselves hold, in the order a
/// reviewer reads them; sections without a change are left out.
pub fn sections(from: &Lockfile, to: &Lockfile) -> Vec<Section> {
    let all: [SectionOf; 8] = [
        ("source", source),
        ("policy hosts", policy),
        ("git dependencies", git),
        ("toolchains", toolchains),
        ("kernel", kernel),
        ("rootfs base", rootfs_base),
        ("rootfs packages", rootfs_packages),
        ("host packages", host),
    ];
    all.into_iter()
        .map(|(name, pins)| Section {
            name,
            entries: diff_pins(&pins(from), &pins(to)),
        })
        .filter(|s| !s.entries.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(name: &str) -> Lockfile {
        crate::lock::committed(name)
    }

    #[test]
    fn pins_are_added_removed_or_changed() {
        let from = Pins::from([("a".into(), "1".into()), ("b".into(), "1".into())]);
        let to = Pins::from([("b".into(), "2".into()), ("c".into(), "1".into())]);
        let kinds: Vec<(String, ChangeKind)> = diff_pins(&from, &to)
            .into_iter()
            .map(|e| (e.key.clone(), e.kind()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a".into(), ChangeKind::Removed),
                ("b".into(), ChangeKind::Changed),
                ("c".into(), ChangeKind::Added),
            ]
        );
        assert!(diff_pins(&from, &from).is_empty());
    }

    #[test]
    fn a_release_against_itself_differs_nowhere_and_3_30_against_4_1_in_its_pins() {
        let old = lock("kata-3.30.0.toml");
        let new = lock("kata-4.1.0.toml");
        assert!(sections(&old, &old).is_empty());
        let diff = sections(&old, &new);
        let names: Vec<&str> = diff.iter().map(|s| s.name).collect();
        for expected in ["source", "git dependencies", "toolchains", "kernel"] {
            assert!(names.contains(&expected), "{names:?}");
        }
        let source = &diff[0].entries[0];
        assert_eq!(source.kind(), ChangeKind::Changed);
        assert!(source.from.as_deref().unwrap().starts_with("3.30.0 ("));
        assert!(source.to.as_deref().unwrap().starts_with("4.1.0 ("));
        // 4.1.0 adds pcilibs-rs and devicemapper-rs and drops cgroups-rs.
        let git = diff.iter().find(|s| s.name == "git dependencies").unwrap();
        let of = |kind| -> Vec<&str> {
            git.entries
                .iter()
                .filter(|e| e.kind() == kind)
                .map(|e| e.key.rsplit('/').next().unwrap())
                .collect()
        };
        assert_eq!(of(ChangeKind::Added), vec!["devicemapper-rs", "pcilibs-rs"]);
        assert_eq!(of(ChangeKind::Removed), vec!["cgroups-rs"]);
        let counts = git.counts();
        assert_eq!(
            counts.iter().map(|(_, n)| n).sum::<usize>(),
            git.entries.len()
        );
    }
}
