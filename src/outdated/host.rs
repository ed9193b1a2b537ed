//! Host pins: the builder's packages whose installed version differs from the lockfile's
//! `[host]` section.

use super::{Item, Section};
use crate::host::Dpkg;
use crate::lock::Lockfile;

/// `None` when the lockfile pins no host packages.
pub fn section(lock: &Lockfile, dpkg: &Dpkg) -> Option<Section> {
    let pins = lock.host.as_ref()?;
    let mut section = Section::new("host packages");
    section.checked = pins.packages.len();
    for pin in &pins.packages {
        let installed = dpkg.package(&pin.name);
        let found = installed
            .as_ref()
            .map_or_else(|| "not installed".to_owned(), |p| p.version.clone());
        if installed
            .as_ref()
            .is_some_and(|p| p.version == pin.version && p.arch == pin.arch)
        {
            continue;
        }
        let mut item = Item::new(
            format!("{} ({})", pin.name, pin.arch),
            pin.version.as_str(),
            found,
        );
        item.outdated = true;
        item.notes.push(format!(
            "installed here; the lockfile pins {} (lock --pin-host pins what is installed)",
            pin.version
        ));
        section.items.push(item);
    }
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{HostPin, HostPins};

    #[test]
    fn installed_versions_that_differ_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("status"),
            "Package: make\nStatus: install ok installed\nArchitecture: amd64\nVersion: 4.3-4.1\n\n\
             Package: gcc\nStatus: install ok installed\nArchitecture: amd64\nVersion: 4:12.2.0-3\n",
        )
        .unwrap();
        let dpkg = Dpkg::load_from(dir.path());
        let mut lock = crate::lock::committed("kata-4.1.0.toml");
        let pin = |name: &str, version: &str| HostPin {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
        };
        lock.host = Some(HostPins {
            os: "debian 12".into(),
            packages: vec![
                pin("gcc", "4:12.2.0-3"),
                pin("make", "4.3-4"),
                pin("bc", "1.07"),
            ],
        });
        let s = section(&lock, &dpkg).unwrap();
        let got: Vec<(&str, &str)> = s
            .items
            .iter()
            .map(|i| (i.name.as_str(), i.newest.as_str()))
            .collect();
        assert_eq!(
            got,
            [("make (amd64)", "4.3-4.1"), ("bc (amd64)", "not installed")]
        );
        assert_eq!(s.checked, 3);
    }
}
