//! Kata releases newer than the pinned tag, from the tags of the mirror (or of the upstream's
//! cache in the store), grouped by release line, with what each new line's first release
//! changes: a new major that makes another runtime the default is flagged.

use std::collections::BTreeMap;

use super::{Item, Section, Skipped};
use crate::lock::Lockfile;
use crate::source::git::VerifiedRepo;

/// A release tag: `X.Y.Z`, digits only (no `-rc`, `-alpha`).
pub fn release_version(tag: &str) -> Option<semver::Version> {
    let v = semver::Version::parse(tag).ok()?;
    (v.pre.is_empty() && v.build.is_empty()).then_some(v)
}

/// The release tags newer than `pinned`, by major version, oldest first.
pub fn newer_by_line(tags: &[String], pinned: &str) -> BTreeMap<u64, Vec<semver::Version>> {
    let Some(pinned) = release_version(pinned) else {
        return BTreeMap::new();
    };
    let mut lines: BTreeMap<u64, Vec<semver::Version>> = BTreeMap::new();
    for v in tags.iter().filter_map(|t| release_version(t)) {
        if v > pinned {
            lines.entry(v.major).or_default().push(v);
        }
    }
    for versions in lines.values_mut() {
        versions.sort();
    }
    lines
}

/// Where kata-deploy's Helm chart names the default shim of each architecture
/// (`defaultShim.amd64: qemu` up to 3.x, `qemu-runtime-rs` from 4.0.0).
pub const HELM_VALUES: &str = "tools/packaging/kata-deploy/helm-chart/kata-deploy/values.yaml";

/// The runtime a release deploys by default on x86_64: `runtime-rs` when the default shim
/// of `amd64` in kata-deploy's Helm values is a runtime-rs one (`*-runtime-rs`), else the Go
/// `runtime`; `None` when the chart does not say.
pub fn default_runtime(repo: &VerifiedRepo, tag: &str) -> Option<String> {
    let commit = repo.tag_commit(tag).ok()??;
    let tree = repo.commit(commit).ok()?.tree;
    default_runtime_in(&|path| repo.read_path(tree, path).ok().flatten())
}

/// [`default_runtime`] over a tree read by `read`.
pub fn default_runtime_in(read: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<String> {
    let values: serde_norway::Value = serde_norway::from_slice(&read(HELM_VALUES)?).ok()?;
    let shim = values.get("defaultShim")?.get("amd64")?.as_str()?;
    let runtime = if shim.ends_with("-runtime-rs") {
        "runtime-rs"
    } else {
        "runtime"
    };
    Some(format!("{runtime} (shim {shim})"))
}

pub fn section(
    lock: &Lockfile,
    repo: Result<&VerifiedRepo, String>,
    skipped: &mut Vec<Skipped>,
) -> Section {
    let mut section = Section::new("Kata releases");
    let pinned = &lock.source.tag;
    let repo = match repo {
        Ok(r) => r,
        Err(reason) => {
            skipped.push(Skipped {
                what: "Kata release tags".into(),
                source: lock.source.url.clone(),
                reason,
            });
            return section;
        }
    };
    let tags = match repo.tags() {
        Ok(t) => t,
        Err(e) => {
            skipped.push(Skipped {
                what: "Kata release tags".into(),
                source: repo.path().display().to_string(),
                reason: e.to_string(),
            });
            return section;
        }
    };
    let lines = newer_by_line(&tags, pinned);
    let pinned_major = release_version(pinned).map(|v| v.major);
    // The release lines looked at: the pinned one and every newer one.
    section.checked = 1 + lines.keys().filter(|m| Some(**m) != pinned_major).count();
    let pinned_runtime = default_runtime(repo, pinned);
    for (major, versions) in lines {
        let newest = versions.last().expect("a line has a release").to_string();
        let mut item = Item::new(format!("Kata {major}.x"), pinned.as_str(), newest);
        item.outdated = true;
        item.newer = versions.iter().map(|v| v.to_string()).collect();
        if Some(major) != pinned_major {
            let first = versions[0].to_string();
            let runtime = default_runtime(repo, &first);
            match (&pinned_runtime, &runtime) {
                (Some(was), Some(now)) if was != now => item.notes.push(format!(
                    "new major: {first} makes {now} the default runtime ({pinned}: {was})"
                )),
                (None, Some(now)) => item.notes.push(format!(
                    "new major: {first} deploys {now} by default ({pinned}'s kata-deploy does \
                     not say)"
                )),
                _ => item.notes.push(format!("new major: {first}")),
            }
        }
        section.items.push(item);
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_lines_hold_only_newer_final_releases() {
        let tags: Vec<String> = [
            "3.3.0",
            "3.3.0-alpha0",
            "3.29.0",
            "3.30.0",
            "3.31.0",
            "3.32.0",
            "4.0.0-rc0",
            "4.0.0",
            "4.1.0",
            "v9",
            "latest",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let lines = newer_by_line(&tags, "3.30.0");
        let show: Vec<(u64, Vec<String>)> = lines
            .into_iter()
            .map(|(m, v)| (m, v.iter().map(|v| v.to_string()).collect()))
            .collect();
        assert_eq!(
            show,
            [
                (3, vec!["3.31.0".to_owned(), "3.32.0".to_owned()]),
                (4, vec!["4.0.0".to_owned(), "4.1.0".to_owned()])
            ]
        );
        assert!(newer_by_line(&tags, "4.1.0").is_empty());
    }

    #[test]
    fn the_default_runtime_is_read_from_the_helm_values() {
        let values = |text: &'static str| {
            move |path: &str| (path == HELM_VALUES).then(|| text.as_bytes().to_vec())
        };
        let go = values("defaultShim:\n  amd64: qemu\n  arm64: qemu\n");
        assert_eq!(
            default_runtime_in(&go).as_deref(),
            Some("runtime (shim qemu)")
        );
        let rs = values("defaultShim:\n  amd64: qemu-runtime-rs\n");
        assert_eq!(
            default_runtime_in(&rs).as_deref(),
            Some("runtime-rs (shim qemu-runtime-rs)")
        );
        assert_eq!(default_runtime_in(&values("other: 1\n")), None);
    }
}
