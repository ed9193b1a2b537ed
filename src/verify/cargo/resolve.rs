//! Which locked packages a build actually needs: `cargo metadata` for one package, target and
//! feature set, over the verified offline vendor tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cargo_metadata::{CargoOpt, DependencyKind, MetadataCommand, PackageId};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cargo metadata for {manifest}: {message}")]
    Metadata { manifest: String, message: String },
    #[error("cargo metadata for {0} resolved no root package")]
    NoRoot(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolution {
    /// The package whose build was resolved, `name@version`.
    pub root: String,
    pub target: String,
    pub features: Vec<String>,
    /// `name@version` of every package the build needs (normal and build dependencies),
    /// the root and workspace path packages included.
    pub needed: BTreeSet<String>,
}

/// Resolves the build of the package at `manifest` for `target` with `features`, offline, with
/// sources replaced as `cargo_config` says.
pub fn resolve(
    manifest: &Path,
    cargo_config: &Path,
    target: &str,
    features: &[String],
    cargo: &str,
) -> Result<Resolution, ResolveError> {
    let err = |message: String| ResolveError::Metadata {
        manifest: manifest.display().to_string(),
        message,
    };
    let mut cmd = MetadataCommand::new();
    cmd.cargo_path(cargo)
        .manifest_path(manifest)
        .other_options(vec![
            "--offline".into(),
            "--locked".into(),
            "--config".into(),
            cargo_config.display().to_string(),
            "--filter-platform".into(),
            target.into(),
        ]);
    if !features.is_empty() {
        cmd.features(CargoOpt::SomeFeatures(features.to_vec()));
    }
    // Run outside the workspace, so that its rust-toolchain.toml does not pick the cargo.
    if let Some(dir) = cargo_config.parent() {
        cmd.current_dir(dir);
    }
    let metadata = cmd.exec().map_err(|e| err(e.to_string()))?;
    let resolve = metadata
        .resolve
        .ok_or_else(|| err("no resolve graph".into()))?;
    let root = resolve
        .root
        .clone()
        .ok_or_else(|| ResolveError::NoRoot(manifest.display().to_string()))?;
    let names: BTreeMap<&PackageId, String> = metadata
        .packages
        .iter()
        .map(|p| (&p.id, format!("{}@{}", p.name, p.version)))
        .collect();
    let edges: BTreeMap<&PackageId, Vec<&PackageId>> = resolve
        .nodes
        .iter()
        .map(|n| {
            let deps = n
                .deps
                .iter()
                .filter(|d| {
                    d.dep_kinds.is_empty()
                        || d.dep_kinds
                            .iter()
                            .any(|k| k.kind != DependencyKind::Development)
                })
                .map(|d| &d.pkg)
                .collect();
            (&n.id, deps)
        })
        .collect();
    let mut seen: BTreeSet<&PackageId> = BTreeSet::new();
    let mut todo = vec![&root];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        todo.extend(edges.get(id).into_iter().flatten().copied());
    }
    Ok(Resolution {
        root: names
            .get(&root)
            .cloned()
            .unwrap_or_else(|| root.to_string()),
        target: target.to_owned(),
        features: features.to_vec(),
        needed: seen
            .into_iter()
            .filter_map(|id| names.get(id).cloned())
            .collect(),
    })
}
