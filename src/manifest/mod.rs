//! `manifest.json` and `SHA256SUMS`: what a build produced and everything it was produced from.
//!
//! The format is documented in `docs/build.md`. Serialisation is deterministic (sorted
//! artifacts and components, no times, no host-specific paths beyond the resolved host tools),
//! so two builds of the same inputs give byte-identical manifests.

pub mod sign;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::InputDigest;
use crate::digest::{Sha256Digest, tree_files};
use crate::host::{HostPackage, HostTool};
use crate::sandbox::Isolation;

/// The manifest schema this build writes and reads.
pub const SCHEMA: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SUMS_FILE: &str = "SHA256SUMS";
/// Step logs live here in an output directory; they are not artifacts.
pub const LOGS_DIR: &str = "logs";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a kata-repro manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: manifest schema {found} is not {SCHEMA}, the one this kata-repro reads")]
    Schema { path: PathBuf, found: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub generator: Generator,
    pub release: String,
    pub arch: String,
    pub lockfile: LockfileRef,
    pub source: SourceRef,
    pub source_date_epoch: i64,
    /// The conditions every step ran under.
    pub environment: Environment,
    pub components: Vec<ComponentRecord>,
    /// Every output file, relative to the output directory.
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generator {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockfileRef {
    /// The file name (not its path: the same lockfile anywhere is the same input).
    pub name: String,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    pub url: String,
    pub tag: String,
    pub commit: String,
    pub tree: String,
    pub commit_time: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub isolation: Isolation,
    /// Whether steps could reach the network.
    pub network: String,
    /// The path every step sees its scratch directory at.
    pub root: String,
    pub hostname: String,
    pub umask: String,
    pub tz: String,
    pub locale: String,
    /// Variations applied on purpose (none for a plain build).
    #[serde(default)]
    pub variations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    pub name: String,
    pub recipe: RecipeRef,
    /// The key of the component's last step: it covers every step and input before it.
    pub action_key: Sha256Digest,
    pub steps: Vec<StepRecord>,
    pub toolchains: Vec<ToolchainRecord>,
    pub host_tools: Vec<HostTool>,
    pub host_packages: Vec<HostPackage>,
    /// Every input of the component's first step, by name and digest.
    pub inputs: Vec<InputDigest>,
    pub outputs: Vec<Artifact>,
    /// Host packages that differed from the lockfile's `[host]` pins (`--allow-host-drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_drift: Vec<String>,
    /// What the build found worth knowing: the kernel options that did not survive into
    /// `.config`, the packages unpacked, a component it could not use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeRef {
    pub name: String,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub action_key: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolchainRecord {
    pub name: String,
    pub version: String,
    /// What the source asked for, when it differs from what was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Anything a reader must know, e.g. that this is not the pinned toolchain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub size: u64,
    /// Octal permission bits, as a string (`"0755"`).
    pub mode: String,
    pub sha256: Sha256Digest,
}

impl Manifest {
    /// Pretty JSON with a trailing newline; stable for equal manifests.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("manifests serialise");
        s.push('\n');
        s
    }

    /// `sha256sum -c` input: `<hex>  <path>`, sorted by path.
    pub fn sha256sums(&self) -> String {
        let mut sorted: Vec<&Artifact> = self.artifacts.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        sorted
            .iter()
            .map(|a| format!("{}  {}\n", a.sha256, a.path))
            .collect()
    }

    /// Writes `manifest.json` and `SHA256SUMS` into `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ManifestError> {
        write_atomically(&dir.join(MANIFEST_FILE), self.to_json().as_bytes())?;
        write_atomically(&dir.join(SUMS_FILE), self.sha256sums().as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        #[derive(Deserialize)]
        struct Probe {
            schema: Option<u32>,
        }
        let probe: Probe = serde_json::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        match probe.schema {
            Some(SCHEMA) => {}
            Some(found) => {
                return Err(ManifestError::Schema {
                    path: path.to_owned(),
                    found,
                });
            }
            None => {
                return Err(ManifestError::Parse {
                    path: path.to_owned(),
                    message: "no `schema` field".into(),
                });
            }
        }
        serde_json::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The SLSA provenance statement written beside the manifest.
pub const PROVENANCE_FILE: &str = "provenance.intoto.json";

/// Whether `name` (relative to an output directory) is one of the SBOM files.
pub fn is_bom_file(name: &str) -> bool {
    !name.contains('/') && name.ends_with(".cdx.json")
}

/// Whether `rel` (relative to an output directory) is one of the files that describe a build
/// rather than being built: the manifest, checksums, SBOMs, provenance, signatures and logs.
pub fn is_record_file(rel: &str) -> bool {
    rel == MANIFEST_FILE
        || rel == SUMS_FILE
        || rel == PROVENANCE_FILE
        || is_bom_file(rel)
        || (!rel.contains('/') && rel.ends_with(".dsse.json"))
        || rel.starts_with(&format!("{LOGS_DIR}/"))
}

/// The artifacts of a directory without a manifest: every file but logs and checksum files.
pub fn scan_dir(dir: &Path) -> Result<Vec<Artifact>, ManifestError> {
    let keep = |rel: &str| !is_record_file(rel);
    let files = tree_files(dir, &keep).map_err(|source| ManifestError::Read {
        path: dir.to_owned(),
        source,
    })?;
    Ok(files
        .into_iter()
        .filter_map(|f| {
            Some(Artifact {
                sha256: f.sha256?,
                path: f.path,
                size: f.size,
                mode: format!("{:04o}", f.mode),
            })
        })
        .collect())
}

/// Writes `bytes` to `path` atomically, as [`crate::files::write_atomically`] does.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    crate::files::write_atomically(path, bytes).map_err(|source| ManifestError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: SCHEMA,
            generator: Generator {
                name: "kata-repro".into(),
                version: "0".into(),
            },
            release: "3.30.0".into(),
            arch: "x86_64".into(),
            lockfile: LockfileRef {
                name: "kata-3.30.0.toml".into(),
                sha256: Sha256Digest::of(b"lock"),
            },
            source: SourceRef {
                url: "u".into(),
                tag: "t".into(),
                commit: "c".into(),
                tree: "t".into(),
                commit_time: 1,
            },
            source_date_epoch: 1,
            environment: Environment {
                isolation: Isolation::Namespaces,
                network: "none".into(),
                root: "/tmp/kata-repro".into(),
                hostname: "kata-repro".into(),
                umask: "0022".into(),
                tz: "UTC".into(),
                locale: "C.UTF-8".into(),
                variations: vec![],
            },
            components: vec![],
            artifacts: vec![
                Artifact {
                    path: "x86_64/b".into(),
                    size: 1,
                    mode: "0644".into(),
                    sha256: Sha256Digest::of(b"b"),
                },
                Artifact {
                    path: "x86_64/a".into(),
                    size: 1,
                    mode: "0755".into(),
                    sha256: Sha256Digest::of(b"a"),
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_sums_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.write(dir.path()).unwrap();
        let back = Manifest::load(&dir.path().join(MANIFEST_FILE)).unwrap();
        assert_eq!(back, m);
        let sums = std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap();
        let paths: Vec<_> = sums
            .lines()
            .map(|l| l.split("  ").nth(1).unwrap())
            .collect();
        assert_eq!(paths, ["x86_64/a", "x86_64/b"]);
    }

    #[test]
    fn other_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"{"schema": 9}"#).unwrap();
        let e = Manifest::load(&p).unwrap_err().to_string();
        assert!(e.contains("manifest schema 9 is not 1"), "{e}");
    }
}
