//! The packages the pinned Cargo.lock and go.sum files hold, as pins a lockfile diff compares:
//! each crate or module by name, with every version the file locks it at.

use std::collections::{BTreeMap, BTreeSet};

use super::Pins;
use crate::lock::cargo_lock::{CargoLock, PackageSource};
use crate::verify::gomod::gosum::GoSum;

/// Each package of a Cargo.lock by name (git and path packages say so), with its versions.
pub fn crate_pins(lock: &CargoLock) -> Pins {
    let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &lock.packages {
        let version = match &p.source {
            PackageSource::Git(g) => format!("{} (git {})", p.version, g.url),
            PackageSource::Path => format!("{} (path)", p.version),
            PackageSource::Registry(_) if p.is_crates_io() => p.version.clone(),
            PackageSource::Registry(r) => format!("{} ({r})", p.version),
        };
        by_name.entry(p.name.clone()).or_default().insert(version);
    }
    joined(by_name)
}

/// Each module of a go.sum by path, with its versions (a `/go.mod`-only entry included: the
/// module is in the graph).
pub fn module_pins(sum: &GoSum) -> Pins {
    let mut by_module: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &sum.entries {
        by_module
            .entry(e.module.clone())
            .or_default()
            .insert(e.version.clone());
    }
    joined(by_module)
}

fn joined(sets: BTreeMap<String, BTreeSet<String>>) -> Pins {
    sets.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockdiff::{ChangeKind, diff_pins};

    #[test]
    fn kata_3_30_and_4_1_differ_in_crates_and_modules() {
        let lock = |r| CargoLock::parse(&crate::kata_fixture(r, "Cargo.lock")).unwrap();
        let (old, new) = (crate_pins(&lock("3.30.0")), crate_pins(&lock("4.1.0")));
        let diff = diff_pins(&old, &new);
        assert!(diff.iter().any(|e| e.kind() == ChangeKind::Changed));
        assert!(diff.len() < old.len().max(new.len()));
        // pcilibs-rs is a git package of 4.1.0 only.
        let pcilibs = diff.iter().find(|e| e.key == "pcilibs-rs").unwrap();
        assert_eq!(pcilibs.kind(), ChangeKind::Added);
        assert!(
            pcilibs.to.as_deref().unwrap().contains("git"),
            "{pcilibs:?}"
        );

        let sum = |r| {
            GoSum::parse(
                &crate::kata_fixture(r, "src/runtime/go.sum"),
                std::path::Path::new("go.sum"),
            )
            .unwrap()
        };
        let (old, new) = (module_pins(&sum("3.30.0")), module_pins(&sum("4.1.0")));
        let diff = diff_pins(&old, &new);
        let containerd = diff
            .iter()
            .find(|e| e.key == "github.com/containerd/containerd")
            .unwrap();
        assert_eq!(containerd.kind(), ChangeKind::Changed, "{containerd:?}");
    }
}
