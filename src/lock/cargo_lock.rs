//! Cargo.lock (v1 to v4): every package with its source, checksum and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{GitDependency, GitOid, LineIndex, Loaded, line_col};
use crate::digest::Sha256Digest;

/// What is wrong with a Cargo.lock, at `file:line` (`file` is `Cargo.lock` for text parsed
/// without a path).
#[derive(Debug, thiserror::Error)]
pub enum CargoLockError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Toml {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{}:{line}: package {package}: git source `{source_url}` {problem}",
        file.display()
    )]
    BadGitSource {
        file: PathBuf,
        line: usize,
        package: String,
        source_url: String,
        problem: String,
    },
    #[error(
        "{}:{line}: package {package}: checksum `{checksum}` is not a sha256",
        file.display()
    )]
    BadChecksum {
        file: PathBuf,
        line: usize,
        package: String,
        checksum: String,
    },
    #[error(
        "{}:{line}: package {package} from {source_name} is locked again (first on line \
         {first}); a Cargo.lock lists each package once: restore it from the pinned tree",
        file.display()
    )]
    Duplicate {
        file: PathBuf,
        line: usize,
        first: usize,
        package: String,
        source_name: String,
    },
    #[error(
        "{} locks no package: it is empty or is not a Cargo.lock",
        file.display()
    )]
    Empty { file: PathBuf },
}

#[derive(Deserialize)]
struct RawLock {
    version: Option<u32>,
    #[serde(default)]
    package: Vec<RawPackage>,
    /// v1 lockfiles keep checksums here: `"checksum <name> <version> (<source>)" = "<hex>"`.
    #[serde(default)]
    metadata: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: Spanned<String>,
    version: String,
    source: Option<String>,
    checksum: Option<Spanned<String>>,
    #[serde(default)]
    dependencies: Vec<String>,
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

    /// The source id without the commit, as Cargo's source replacement names it.
    pub fn source_id(&self) -> String {
        match &self.reference {
            Some(r) => format!("git+{}?{r}", self.url),
            None => format!("git+{}", self.url),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    /// A registry (`registry+…` or `sparse+…`), by its source string.
    Registry(String),
    Git(GitSource),
    /// A path dependency: no source in Cargo.lock.
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub source: PackageSource,
    pub checksum: Option<Sha256Digest>,
    /// 1-based line of the package's `name`.
    pub line: usize,
    /// 1-based line of its checksum.
    pub checksum_line: Option<usize>,
    pub dependencies: Vec<String>,
}

impl LockedPackage {
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
    pub fn is_crates_io(&self) -> bool {
        matches!(&self.source, PackageSource::Registry(s) if s == CRATES_IO || s == CRATES_IO_SPARSE)
    }
}

pub const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
pub const CRATES_IO_SPARSE: &str = "sparse+https://index.crates.io/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CargoLock {
    pub version: Option<u32>,
    pub packages: Vec<LockedPackage>,
}

impl CargoLock {
    /// Reads and parses the Cargo.lock at `path`, once: errors name `path`, and the sha256 is
    /// that of the bytes parsed.
    pub fn load(path: &Path) -> Result<Loaded<Self>, CargoLockError> {
        Loaded::read(
            path,
            |source| CargoLockError::Read {
                file: path.to_owned(),
                source,
            },
            |text| Self::parse_file(text, path),
        )
    }

    /// Parses Cargo.lock text read from elsewhere (a git blob); errors name `Cargo.lock`.
    pub fn parse(text: &str) -> Result<Self, CargoLockError> {
        Self::parse_file(text, Path::new("Cargo.lock"))
    }

    /// Parses `text`, naming `file` in errors.
    pub fn parse_file(text: &str, file: &Path) -> Result<Self, CargoLockError> {
        let raw: RawLock = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            CargoLockError::Toml {
                file: file.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        let lines = LineIndex::new(text);
        let line_of = |offset: usize| lines.line(offset);
        let mut packages = Vec::with_capacity(raw.package.len());
        for pkg in raw.package {
            let line = line_of(pkg.name.span().start);
            let id = format!("{}@{}", pkg.name.get_ref(), pkg.version);
            let source = match pkg.source.as_deref() {
                None => PackageSource::Path,
                Some(s) if s.starts_with("git+") => {
                    PackageSource::Git(GitSource::parse(s).map_err(|problem| {
                        CargoLockError::BadGitSource {
                            file: file.to_owned(),
                            line,
                            package: id.clone(),
                            source_url: s.to_owned(),
                            problem,
                        }
                    })?)
                }
                Some(s) => PackageSource::Registry(s.to_owned()),
            };
            let v1_key = pkg
                .source
                .as_ref()
                .map(|s| format!("checksum {} {} ({s})", pkg.name.get_ref(), pkg.version));
            let checksum = pkg
                .checksum
                .or_else(|| v1_key.and_then(|k| raw.metadata.get(&k).cloned()));
            let (checksum, checksum_line) = match checksum {
                Some(c) => {
                    let l = line_of(c.span().start);
                    let digest = c.get_ref().parse::<Sha256Digest>().map_err(|_| {
                        CargoLockError::BadChecksum {
                            file: file.to_owned(),
                            line: l,
                            package: id.clone(),
                            checksum: c.get_ref().clone(),
                        }
                    })?;
                    (Some(digest), Some(l))
                }
                None => (None, None),
            };
            if let Some(first) = packages.iter().find(|p: &&LockedPackage| {
                p.name == *pkg.name.get_ref() && p.version == pkg.version && p.source == source
            }) {
                return Err(CargoLockError::Duplicate {
                    file: file.to_owned(),
                    line,
                    first: first.line,
                    package: id,
                    source_name: pkg.source.clone().unwrap_or_else(|| "a path".into()),
                });
            }
            packages.push(LockedPackage {
                name: pkg.name.into_inner(),
                version: pkg.version,
                source,
                checksum,
                line,
                checksum_line,
                dependencies: pkg.dependencies,
            });
        }
        if packages.is_empty() {
            return Err(CargoLockError::Empty {
                file: file.to_owned(),
            });
        }
        Ok(Self {
            version: raw.version,
            packages,
        })
    }
}

/// Every distinct git repository and commit in `text`, with the packages taken from it.
/// Sorted by URL, then commit.
pub fn git_dependencies(text: &str) -> Result<Vec<GitDependency>, CargoLockError> {
    let lock = CargoLock::parse(text)?;
    let mut by_key: BTreeMap<(String, GitOid), GitDependency> = BTreeMap::new();
    for pkg in &lock.packages {
        let PackageSource::Git(git) = &pkg.source else {
            continue;
        };
        let entry = by_key
            .entry((git.url.clone(), git.commit))
            .or_insert_with(|| GitDependency {
                url: git.url.clone(),
                reference: git.reference.clone(),
                commit: git.commit,
                tree: None,
                packages: Vec::new(),
                submodules: Vec::new(),
            });
        entry.packages.push(pkg.id());
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
    fn empty_and_duplicated_locks_are_refused() {
        for text in ["", "version = 4\n", "# nothing\n"] {
            assert!(
                matches!(CargoLock::parse(text), Err(CargoLockError::Empty { .. })),
                "{text:?}"
            );
        }
        let pkg = |name: &str, version: &str| {
            format!(
                "[[package]]\nname = \"{name}\"\nversion = \"{version}\"\nsource = \"{CRATES_IO}\"\n\
                 checksum = \"{}\"\n\n",
                "ab".repeat(32)
            )
        };
        let text = format!(
            "version = 4\n\n{}{}{}",
            pkg("a", "1.0.0"),
            pkg("b", "1.0.0"),
            pkg("a", "1.0.0")
        );
        let err = CargoLock::parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                CargoLockError::Duplicate {
                    line: 16,
                    first: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("Cargo.lock:16: package a@1.0.0"),
            "{err}"
        );
        // The same name and version from two sources is two packages.
        let path_a = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n";
        let text = format!("version = 4\n\n{}{path_a}", pkg("a", "1.0.0"));
        assert_eq!(CargoLock::parse(&text).unwrap().packages.len(), 2);
    }

    #[test]
    fn kata_4_1_0_counts() {
        let lock = CargoLock::parse(&fixture("4.1.0")).unwrap();
        assert_eq!(lock.version, Some(4));
        assert_eq!(lock.packages.len(), 901);
        let registry = lock
            .packages
            .iter()
            .filter(|p| p.checksum.is_some())
            .count();
        let git = lock
            .packages
            .iter()
            .filter(|p| matches!(p.source, PackageSource::Git(_)))
            .count();
        let path = lock
            .packages
            .iter()
            .filter(|p| p.source == PackageSource::Path)
            .count();
        assert_eq!((registry, git, path), (845, 7, 49));
        assert!(
            lock.packages
                .iter()
                .filter(|p| p.checksum.is_some())
                .all(LockedPackage::is_crates_io)
        );
    }

    #[test]
    fn lines_point_at_name_and_checksum() {
        let text = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
        let lock = CargoLock::parse(text).unwrap();
        assert_eq!(
            (lock.packages[0].line, lock.packages[0].checksum_line),
            (4, Some(7))
        );
        let bad = text.replace("00000000000000000000", "zz");
        let err = CargoLock::parse(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("Cargo.lock:7: package a@1.0.0: checksum"),
            "{err}"
        );
    }

    #[test]
    fn v1_metadata_checksums_are_read() {
        let text = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[metadata]\n\"checksum a 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)\" = \"1111111111111111111111111111111111111111111111111111111111111111\"\n";
        let lock = CargoLock::parse(text).unwrap();
        assert_eq!(lock.packages[0].checksum_line, Some(7));
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
