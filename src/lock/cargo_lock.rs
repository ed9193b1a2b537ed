//! The git dependencies recorded in a Cargo.lock (v3 or v4).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{GitDependency, GitOid};

#[derive(Debug, thiserror::Error)]
pub enum CargoLockError {
    #[error("Cargo.lock is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("Cargo.lock package {package}: git source `{source_url}` {problem}")]
    BadGitSource {
        package: String,
        source_url: String,
        problem: String,
    },
}

#[derive(Deserialize)]
struct RawLock {
    #[serde(default)]
    package: Vec<RawPackage>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// A `git+URL?ref#commit` source string, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub commit: GitOid,
}

impl GitSource {
    pub fn parse(source: &str) -> Result<Self, String> {
        let rest = source
            .strip_prefix("git+")
            .ok_or("does not start with `git+`")?;
        let (before_fragment, fragment) =
            rest.split_once('#').ok_or("has no `#<commit>` fragment")?;
        let commit: GitOid = fragment
            .parse()
            .map_err(|_| format!("has `#{fragment}`, which is not a full 40-hex commit"))?;
        let (url, query) = match before_fragment.split_once('?') {
            Some((u, q)) => (u, Some(q.to_owned())),
            None => (before_fragment, None),
        };
        Ok(Self {
            url: url.to_owned(),
            reference: query,
            commit,
        })
    }
}

/// Every distinct git repository and commit in `text`, with the packages taken from it.
/// Sorted by URL, then commit.
pub fn git_dependencies(text: &str) -> Result<Vec<GitDependency>, CargoLockError> {
    let lock: RawLock = toml::from_str(text)?;
    let mut by_key: BTreeMap<(String, GitOid), GitDependency> = BTreeMap::new();
    for pkg in lock.package {
        let Some(source) = pkg.source.as_deref().filter(|s| s.starts_with("git+")) else {
            continue;
        };
        let git = GitSource::parse(source).map_err(|problem| CargoLockError::BadGitSource {
            package: format!("{}@{}", pkg.name, pkg.version),
            source_url: source.to_owned(),
            problem,
        })?;
        let entry = by_key
            .entry((git.url.clone(), git.commit))
            .or_insert_with(|| GitDependency {
                url: git.url,
                reference: git.reference,
                commit: git.commit,
                packages: Vec::new(),
            });
        entry.packages.push(format!("{}@{}", pkg.name, pkg.version));
    }
    Ok(by_key
        .into_values()
        .map(|mut d| {
            d.packages.sort();
            d
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(release: &str) -> String {
        crate::kata_fixture(release, "Cargo.lock")
    }

    #[test]
    fn kata_4_1_0_git_dependencies() {
        let deps = git_dependencies(&fixture("4.1.0")).unwrap();
        let packages: usize = deps.iter().map(|d| d.packages.len()).sum();
        assert_eq!(packages, 7, "FACTS: 7 git packages");
        assert_eq!(deps.len(), 6);
        let pci = deps.iter().find(|d| d.url.contains("pcilibs-rs")).unwrap();
        assert_eq!(pci.url, "https://github.com/zvonkok/pcilibs-rs");
        assert_eq!(
            pci.commit.to_string(),
            "ce6486db79ade33028583a9e81245db5f4de2079"
        );
        assert_eq!(pci.reference.as_deref(), Some("rev=ce6486db"));
    }

    #[test]
    fn kata_3_30_0_git_dependencies() {
        let deps = git_dependencies(&fixture("3.30.0")).unwrap();
        let urls: Vec<_> = deps.iter().map(|d| d.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://github.com/cloud-hypervisor/cloud-hypervisor",
                "https://github.com/firecracker-microvm/micro-http",
                "https://github.com/ibm-s390-linux/s390-tools",
                "https://github.com/kata-containers/cgroups-rs",
                "https://github.com/microsoft/regorus",
            ]
        );
    }

    #[test]
    fn short_commit_fragment_is_refused() {
        let lock = "[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"git+https://github.com/a/b?rev=abc#abc\"\n";
        let err = git_dependencies(lock).unwrap_err().to_string();
        assert!(
            err.contains("x@1.0.0") && err.contains("not a full 40-hex commit"),
            "{err}"
        );
    }
}
