//! `provenance.intoto.json`: an in-toto Statement v1 with a SLSA Provenance v1 predicate.
//!
//! Subjects are the manifest's artifacts; resolved dependencies are the source commit, the
//! toolchains, the kernel tarball, git dependencies, crates, Go modules and rootfs packages.
//! Nothing in it depends on when or where the build ran, so two builds of the same inputs give
//! the same bytes. The format is documented in `docs/sbom.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lock::Lockfile;
use crate::manifest::{Manifest, ManifestError};
use crate::sbom::{DependencySet, Ecosystem};

pub const FILE: &str = crate::manifest::PROVENANCE_FILE;
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a kata-repro build is, as `buildDefinition.buildType`: documented in docs/sbom.md.
pub const BUILD_TYPE: &str = "https://kata-repro.dev/provenance/build/v1";
/// Who ran it, as `runDetails.builder.id`.
pub const BUILDER_ID: &str = "https://kata-repro.dev/builder/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

/// in-toto's ResourceDescriptor, with the fields kata-repro writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub digest: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "downloadLocation",
        skip_serializing_if = "Option::is_none"
    )]
    pub download_location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    #[serde(rename = "buildDefinition")]
    pub build_definition: BuildDefinition,
    #[serde(rename = "runDetails")]
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildDefinition {
    #[serde(rename = "buildType")]
    pub build_type: String,
    #[serde(rename = "externalParameters")]
    pub external_parameters: serde_json::Value,
    #[serde(rename = "internalParameters")]
    pub internal_parameters: serde_json::Value,
    #[serde(rename = "resolvedDependencies")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetails {
    pub builder: Builder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    pub version: BTreeMap<String, String>,
}

fn digest(alg: &str, value: impl Into<String>) -> BTreeMap<String, String> {
    BTreeMap::from([(alg.to_owned(), value.into())])
}

/// `sha256:<hex>` (how the manifest writes toolchain digests) as a DigestSet.
fn digest_set(text: &str) -> Option<BTreeMap<String, String>> {
    let (alg, value) = text.split_once(':')?;
    (alg == "sha256" && value.len() == 64).then(|| digest("sha256", value))
}

impl Statement {
    /// The provenance of `manifest`'s build, from `lock` and the components' dependency sets.
    pub fn of_build(
        manifest: &Manifest,
        lock: &Lockfile,
        sets: &BTreeMap<String, DependencySet>,
    ) -> Self {
        let subject = manifest
            .artifacts
            .iter()
            .map(|a| ResourceDescriptor {
                name: Some(a.path.clone()),
                uri: None,
                digest: digest("sha256", a.sha256.to_hex()),
                download_location: None,
            })
            .collect();
        let mut deps: BTreeMap<String, ResourceDescriptor> = BTreeMap::new();
        let mut add = |d: ResourceDescriptor| {
            let key = d.uri.clone().or_else(|| d.name.clone()).unwrap_or_default();
            deps.entry(key).or_insert(d);
        };
        add(ResourceDescriptor {
            name: Some("kata-containers".into()),
            uri: Some(format!(
                "git+{}@refs/tags/{}",
                manifest.source.url, manifest.source.tag
            )),
            digest: digest("gitCommit", manifest.source.commit.clone()),
            download_location: None,
        });
        for c in &manifest.components {
            for t in &c.toolchains {
                if let Some(d) = digest_set(&t.digest) {
                    add(ResourceDescriptor {
                        name: Some(format!("toolchain:{} {}", t.name, t.version)),
                        // The archive it came from, else a purl of the release used.
                        uri: t.source.clone().or_else(|| {
                            let release = t.version.split_whitespace().next().unwrap_or_default();
                            Some(format!("pkg:generic/{}@{release}", t.name))
                        }),
                        digest: d,
                        download_location: t.source.clone(),
                    });
                }
            }
        }
        for g in &lock.git {
            add(ResourceDescriptor {
                name: Some(g.packages.join(", ")),
                uri: Some(format!("git+{}@{}", g.url, g.commit)),
                digest: digest("gitCommit", g.commit.to_string()),
                download_location: None,
            });
        }
        for set in sets.values() {
            for p in &set.packages {
                let d = match p.ecosystem {
                    Ecosystem::Golang => match p.properties.get("goModuleH1") {
                        Some(h) => digest("goModuleH1", h.clone()),
                        None => continue, // the main module: part of the source commit
                    },
                    _ => match (&p.sha256, &p.vcs) {
                        (Some(s), _) => digest("sha256", s.to_hex()),
                        // Path crates are the source commit; git crates are listed by repository.
                        (None, _) => continue,
                    },
                };
                add(ResourceDescriptor {
                    name: Some(format!("{} {}", p.name, p.version)),
                    uri: Some(p.purl.clone()),
                    digest: d,
                    download_location: p.download_url.clone(),
                });
            }
        }
        let components: Vec<&str> = manifest
            .components
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject,
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Predicate {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.into(),
                    external_parameters: serde_json::json!({
                        "lockfile": { "name": manifest.lockfile.name, "sha256": manifest.lockfile.sha256 },
                        "release": manifest.release,
                        "arch": manifest.arch,
                        "components": components,
                    }),
                    internal_parameters: serde_json::json!({
                        "sourceDateEpoch": manifest.source_date_epoch,
                        "environment": manifest.environment,
                        "recipes": manifest.components.iter().map(|c| (c.name.clone(), serde_json::json!({
                            "name": c.recipe.name, "sha256": c.recipe.sha256, "actionKey": c.action_key,
                        }))).collect::<BTreeMap<_, _>>(),
                    }),
                    resolved_dependencies: deps.into_values().collect(),
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: BUILDER_ID.into(),
                        version: BTreeMap::from([(
                            manifest.generator.name.clone(),
                            manifest.generator.version.clone(),
                        )]),
                    },
                },
            },
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("statements serialise");
        s.push('\n');
        s
    }

    pub fn write(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(FILE);
        crate::files::write_atomically(&path, self.to_json().as_bytes())
            .map_err(|source| ManifestError::Write { path, source })
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let s: Statement = serde_json::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if s.statement_type != STATEMENT_TYPE || s.predicate_type != PREDICATE_TYPE {
            return Err(ManifestError::Parse {
                path: path.to_owned(),
                message: format!(
                    "not an in-toto {STATEMENT_TYPE} with a {PREDICATE_TYPE} predicate"
                ),
            });
        }
        Ok(s)
    }
}

/// How one subject compares with the file in a directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectCheck {
    pub name: String,
    pub expected: String,
    /// What the file hashes to, if it exists.
    pub found: Option<String>,
}

impl SubjectCheck {
    pub fn ok(&self) -> bool {
        self.found.as_deref() == Some(self.expected.as_str())
    }
}

/// Each subject's sha256 against the file of that name under `dir`.
pub fn check_subjects(statement: &Statement, dir: &Path) -> Vec<SubjectCheck> {
    statement
        .subject
        .iter()
        .map(|s| {
            let name = s.name.clone().unwrap_or_default();
            let expected = s.digest.get("sha256").cloned().unwrap_or_default();
            let safe = !name.is_empty() && !name.split('/').any(|p| p == ".." || p.is_empty());
            let found = safe
                .then(|| crate::digest::Sha256Digest::of_file(&dir.join(&name)).ok())
                .flatten()
                .map(|d| d.to_hex());
            SubjectCheck {
                name,
                expected,
                found,
            }
        })
        .collect()
}
