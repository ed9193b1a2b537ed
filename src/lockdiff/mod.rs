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

/// Two releases compared: their lockfiles' sections, then the crates and Go modules of the
/// Cargo.lock and go.sum files each pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockDiff {
    pub from: String,
    pub to: String,
    pub sections: Vec<Section>,
}

/// Where the pinned files of both lockfiles are read from.
pub struct Sources<'a> {
    pub store: &'a crate::source::store::Store,
    pub mirrors: &'a crate::source::mirror::Mirrors,
}

/// The pins of every file named `name` a lockfile pins, merged (a package in two files keeps
/// the versions of both).
fn file_pins(
    lock: &Lockfile,
    path: &std::path::Path,
    name: &str,
    sources: &Sources<'_>,
    parse: impl Fn(&str, &[u8]) -> Result<Pins, String>,
) -> Result<Pins, DiffError> {
    let mut pins = Pins::new();
    for (file, bytes) in read::pinned_files(lock, path, name, sources.store, sources.mirrors)? {
        let parsed = parse(&file, &bytes).map_err(|message| DiffError::Parse {
            lockfile: path.display().to_string(),
            file: file.clone(),
            message,
        })?;
        for (k, v) in parsed {
            pins.entry(k)
                .and_modify(|old| {
                    if !old.split(", ").any(|x| x == v) {
                        *old = format!("{old}, {v}");
                    }
                })
                .or_insert(v);
        }
    }
    Ok(pins)
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Read(#[from] read::ReadError),
    #[error("{lockfile}: the pinned {file} cannot be read: {message}")]
    Parse {
        lockfile: String,
        file: String,
        message: String,
    },
}

fn cargo_pins(file: &str, bytes: &[u8]) -> Result<Pins, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let lock = crate::lock::cargo_lock::CargoLock::parse_file(text, std::path::Path::new(file))
        .map_err(|e| e.to_string())?;
    Ok(packages::crate_pins(&lock))
}

fn go_pins(file: &str, bytes: &[u8]) -> Result<Pins, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let sum = crate::verify::gomod::gosum::GoSum::parse(text, std::path::Path::new(file))
        .map_err(|e| e.to_string())?;
    Ok(packages::module_pins(&sum))
}

/// `from` and `to` compared, section by section; `paths` are the lockfiles' paths, for
/// messages.
pub fn diff(
    (from, from_path): (&Lockfile, &std::path::Path),
    (to, to_path): (&Lockfile, &std::path::Path),
    sources: &Sources<'_>,
) -> Result<LockDiff, DiffError> {
    let mut all = sections(from, to);
    for (name, file, parse) in [
        ("crates", "Cargo.lock", cargo_pins as fn(&str, &[u8]) -> _),
        ("go modules", "go.sum", go_pins),
    ] {
        let old = file_pins(from, from_path, file, sources, parse)?;
        let new = file_pins(to, to_path, file, sources, parse)?;
        let entries = diff_pins(&old, &new);
        if !entries.is_empty() {
            all.push(Section { name, entries });
        }
    }
    Ok(LockDiff {
        from: from.release.clone(),
        to: to.release.clone(),
        sections: all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(name: &str) -> Lockfile {
        crate::lock::committed(name)
    }

    #[test]
    fn two_releases_differ_in_their_lockfiles_crates_and_modules() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::source::store::Store::open(&dir.path().join("store"), || {}).unwrap();
        let mirrors = crate::source::mirror::Mirrors::new();
        let mut locks = Vec::new();
        for release in ["3.30.0", "4.1.0"] {
            let lock = lock(&format!("kata-{release}.toml"));
            let tree = store.git_path(&lock.source.commit);
            for file in ["Cargo.lock", "src/runtime/go.sum"] {
                let path = tree.join(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, crate::kata_fixture(release, file)).unwrap();
            }
            locks.push(lock);
        }
        let sources = Sources {
            store: &store,
            mirrors: &mirrors,
        };
        let path = std::path::Path::new("x.toml");
        let d = diff((&locks[0], path), (&locks[1], path), &sources).unwrap();
        assert_eq!((d.from.as_str(), d.to.as_str()), ("3.30.0", "4.1.0"));
        let names: Vec<&str> = d.sections.iter().map(|s| s.name).collect();
        assert_eq!(names.last(), Some(&"go modules"), "{names:?}");
        assert!(names.contains(&"crates"), "{names:?}");
        let same = diff((&locks[0], path), (&locks[0], path), &sources).unwrap();
        assert!(same.sections.is_empty(), "{same:?}");
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
