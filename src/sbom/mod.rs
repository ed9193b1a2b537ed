//! CycloneDX SBOMs: what each component was built from, and what it produced.
//!
//! Collection ([`collect`]) reads a component's dependency set from the pinned source with the
//! real tools (cargo's own resolver for Rust, modules.txt and go.mod for Go, the lockfile for
//! the kernel and rootfs packages) into a [`DependencySet`], which the store keeps. Writing
//! ([`write`]) turns dependency sets, the manifest's artifacts and the templates into one BOM
//! per component and one for the release. Both are deterministic: the same inputs give the same
//! bytes (see `docs/sbom.md`).

pub mod cargo;
pub mod gomod;
pub mod packages;
pub mod templates;
mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cyclonedx_bom::models::bom::SpecVersion;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::inputs::{InputsError, Needs, PrepareOptions, Prepared};
use crate::lock::Lockfile;
use crate::recipe::{Input, LoadedRecipe, Recipe, SourceTree, Toolchain};
use crate::source::get::Getter;
use crate::source::store::Store;

pub use templates::Templates;
pub use writer::{BomContext, Subject, release_ref, serial_of, to_json, write};

/// The CycloneDX specification version every BOM is written in: the newest cyclonedx-bom
/// writes. Moving to 1.6 is this constant and `SPEC_NAME`.
pub const SPEC: SpecVersion = SpecVersion::V1_5;
pub const SPEC_NAME: &str = "1.5";
/// The release BOM's file name; each component's is `<component>.cdx.json`.
pub const RELEASE_BOM: &str = "kata.cdx.json";
/// Bumped whenever collection changes what a dependency set holds, so that stored sets are
/// collected again.
const DEPENDENCY_SET_SCHEMA: u32 = 2;

pub fn component_bom_file(component: &str) -> String {
    format!("{component}.cdx.json")
}

pub use crate::manifest::is_bom_file;

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("{component}: {tool} failed: {message}")]
    Tool {
        component: String,
        tool: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    /// The Cargo.lock the crate graph is read against; it names its own file and line.
    #[error(transparent)]
    CargoLock(#[from] crate::lock::cargo_lock::CargoLockError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} does not validate as CycloneDX {SPEC_NAME}: {message}")]
    Invalid { file: String, message: String },
    #[error("{path}: {message}; see sbom-templates/README.md")]
    Template { path: PathBuf, message: String },
}

/// Why the dependency sets of a build could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DependencySetError {
    #[error(transparent)]
    Inputs(#[from] InputsError),
    #[error("{component} needs an input that is not available: its SBOM cannot be made: {source}")]
    Collect {
        component: String,
        source: Box<SbomError>,
    },
}

impl DependencySetError {
    /// 1 when an input did not verify or a set could not be read, 2 when the machine could not
    /// write what it was given.
    pub fn exit_code(&self) -> u8 {
        match self {
            DependencySetError::Inputs(e) => e.exit_code(),
            DependencySetError::Collect { .. } => 1,
        }
    }
}

/// Which package ecosystem a dependency comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Cargo,
    Golang,
    Deb,
    Kernel,
}

/// One dependency of a component, as the SBOM lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    /// The package URL, which is also its reference within a BOM.
    pub purl: String,
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An SPDX expression, or a licence name where the package's is not one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The sha256 the lockfile (or Cargo.lock) pins for the package's archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    /// Where the pinned archive is downloaded from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// The repository and commit of a git (or path) dependency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs: Option<Vcs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpe: Option<String>,
    /// Further facts, by property name (`goModuleH1`, `kata-repro:…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// The purls of the packages this one depends on.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vcs {
    pub url: String,
    pub commit: String,
    /// The package's directory within the repository, when not at its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Package {
    fn new(ecosystem: Ecosystem, purl: String, name: &str, version: &str) -> Self {
        Self {
            purl,
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            description: None,
            license: None,
            sha256: None,
            download_url: None,
            vcs: None,
            cpe: None,
            properties: BTreeMap::new(),
            depends_on: BTreeSet::new(),
        }
    }
}

/// Everything one component was built from, beyond the Kata source itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencySet {
    pub schema: u32,
    pub component: String,
    /// The purls the component depends on directly.
    pub direct: BTreeSet<String>,
    /// Sorted by purl.
    pub packages: Vec<Package>,
    /// How the set was collected (the commands run), for the SBOM's readers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub method: Vec<String>,
}

impl DependencySet {
    fn new(component: &str) -> Self {
        Self {
            schema: DEPENDENCY_SET_SCHEMA,
            component: component.to_owned(),
            direct: BTreeSet::new(),
            packages: Vec::new(),
            method: Vec::new(),
        }
    }

    /// Adds `other`'s packages and direct dependencies.
    fn merge(&mut self, other: DependencySet) {
        self.direct.extend(other.direct);
        self.method.extend(other.method);
        let mut by_purl: BTreeMap<String, Package> = std::mem::take(&mut self.packages)
            .into_iter()
            .map(|p| (p.purl.clone(), p))
            .collect();
        for p in other.packages {
            match by_purl.get_mut(&p.purl) {
                Some(existing) => existing.depends_on.extend(p.depends_on),
                None => {
                    by_purl.insert(p.purl.clone(), p);
                }
            }
        }
        self.packages = by_purl.into_values().collect();
    }

    pub fn count(&self, ecosystem: Ecosystem) -> usize {
        self.packages
            .iter()
            .filter(|p| p.ecosystem == ecosystem)
            .count()
    }
}

/// What collection reads: the verified checkout, and the tools and inputs in the store.
pub struct CollectInputs<'a> {
    pub lock: &'a Lockfile,
    pub arch: &'a str,
    /// The verified checkout of the pinned commit.
    pub checkout: &'a Path,
    /// The toolchain's cargo and rustc, and the cargo config that replaces every source with
    /// the verified vendor tree: needed for components built with Rust.
    pub cargo: Option<cargo::CargoTools>,
    /// Where the verified rootfs packages are, by sha256.
    pub store: &'a Store,
}

/// The dependency set of `recipe`'s component for `inputs.arch`.
pub fn collect(recipe: &Recipe, inputs: &CollectInputs<'_>) -> Result<DependencySet, SbomError> {
    let component = recipe.component.as_str();
    let mut set = DependencySet::new(component);
    let mut vars = recipe.vars.clone();
    if let Some(section) = recipe.arch.get(inputs.arch) {
        vars.extend(section.vars.clone());
    }
    if recipe.toolchains.contains(&Toolchain::Rust) && recipe.inputs.contains(&Input::CargoVendor) {
        let tools = inputs.cargo.as_ref().ok_or_else(|| SbomError::Tool {
            component: component.to_owned(),
            tool: "cargo".into(),
            message: "no Rust toolchain was given to read the crate graph with".into(),
        })?;
        let target = vars
            .get("target")
            .cloned()
            .unwrap_or_else(|| crate::host::gnu_triple(inputs.arch));
        let features = vars.get("features").cloned().unwrap_or_default();
        set.merge(cargo::collect(
            component,
            &cargo::CrateQuery {
                checkout: inputs.checkout,
                workdir: &recipe.workdir,
                target: &target,
                features: &features,
                source: &inputs.lock.source,
            },
            tools,
        )?);
    }
    if recipe.inputs.contains(&Input::GoModules) {
        set.merge(gomod::collect(
            component,
            inputs.checkout,
            &recipe.workdir,
            inputs.lock,
        )?);
    }
    if recipe.source == SourceTree::Kernel {
        set.merge(packages::kernel(component, &inputs.lock.kernel));
    }
    if recipe.inputs.contains(&Input::RootfsPackages) {
        set.merge(packages::rootfs(
            component,
            inputs.lock,
            inputs.arch,
            inputs.store,
        )?);
    }
    Ok(set)
}

/// The dependency sets of `recipes`: from the store where it holds them, else collected from
/// `prepared` (or, where that lacks what a component needs, from inputs fetched and verified
/// here) and stored. `rust` is the toolchain's sysroot, for Rust components.
#[allow(clippy::too_many_arguments)]
pub fn dependency_sets(
    recipes: &[&LoadedRecipe],
    lockfile_sha256: &Sha256Digest,
    arch: &str,
    get: Getter<'_>,
    lock: &Lockfile,
    prepared: Option<&Prepared>,
    rust: Option<&Path>,
    offline: bool,
) -> Result<BTreeMap<String, DependencySet>, DependencySetError> {
    let mut sets = BTreeMap::new();
    let mut missing: Vec<&LoadedRecipe> = Vec::new();
    for r in recipes {
        let key = dependency_set_key(lockfile_sha256, &r.digest, &r.recipe.component, arch);
        match load_stored(get.store, &key) {
            Some(set) => {
                sets.insert(r.recipe.component.clone(), set);
            }
            None => missing.push(r),
        }
    }
    if missing.is_empty() {
        return Ok(sets);
    }
    let needs_vendor = missing
        .iter()
        .any(|r| r.recipe.inputs.contains(&Input::CargoVendor));
    let needs_debs = missing
        .iter()
        .any(|r| r.recipe.inputs.contains(&Input::RootfsPackages));
    let usable = prepared.filter(|p| {
        (!needs_vendor || p.cargo_vendor.is_some()) && (!needs_debs || !p.rootfs_debs.is_empty())
    });
    let fetched;
    let prepared = match usable {
        Some(p) => p,
        None => {
            // Only what collection reads: the source, the vendor tree, the packages.
            let needs = Needs {
                components: missing
                    .iter()
                    .filter(|r| {
                        r.recipe
                            .inputs
                            .iter()
                            .any(|i| matches!(i, Input::CargoVendor | Input::RootfsPackages))
                    })
                    .map(|r| r.recipe.component.clone())
                    .collect(),
                crates: needs_vendor,
                rootfs: needs_debs,
                ..Needs::default()
            };
            fetched = crate::inputs::prepare(
                lock,
                Getter { ..get },
                &needs,
                &PrepareOptions {
                    offline,
                    cargo: rust.map(|r| r.join("bin/cargo").to_string_lossy().into_owned()),
                    go_proxy: None,
                    on_crate: None,
                    arch: arch.to_owned(),
                },
            )?;
            &fetched
        }
    };
    let cargo = match (&prepared.cargo_vendor, rust) {
        (Some(v), Some(sysroot)) => Some(cargo::CargoTools {
            cargo: sysroot.join("bin/cargo"),
            rustc: sysroot.join("bin/rustc"),
            config: v.config.clone(),
        }),
        _ => None,
    };
    let inputs = CollectInputs {
        lock,
        arch,
        checkout: &prepared.checkout,
        cargo,
        store: get.store,
    };
    for r in missing {
        let component = r.recipe.component.clone();
        let as_build = |source: SbomError| DependencySetError::Collect {
            component: component.clone(),
            source: Box::new(source),
        };
        let set = collect(&r.recipe, &inputs).map_err(as_build)?;
        let key = dependency_set_key(lockfile_sha256, &r.digest, &component, arch);
        save_stored(get.store, &key, &set).map_err(as_build)?;
        sets.insert(component, set);
    }
    Ok(sets)
}

/// The store key of a component's dependency set: what it is a function of.
pub fn dependency_set_key(
    lockfile_sha256: &Sha256Digest,
    recipe_sha256: &Sha256Digest,
    component: &str,
    arch: &str,
) -> Sha256Digest {
    Sha256Digest::of(
        format!(
            "kata-repro dependency set {DEPENDENCY_SET_SCHEMA}\n{lockfile_sha256}\n{recipe_sha256}\n{component}\n{arch}\n"
        )
        .as_bytes(),
    )
}

/// Where the store keeps the dependency set of `key`.
pub fn stored_path(store: &Store, key: &Sha256Digest) -> PathBuf {
    store.sbom_dependency_set(key)
}

/// The stored dependency set of `key`, if the store has a readable one.
pub fn load_stored(store: &Store, key: &Sha256Digest) -> Option<DependencySet> {
    let text = std::fs::read_to_string(stored_path(store, key)).ok()?;
    let set: DependencySet = serde_json::from_str(&text).ok()?;
    (set.schema == DEPENDENCY_SET_SCHEMA).then_some(set)
}

pub fn save_stored(
    store: &Store,
    key: &Sha256Digest,
    set: &DependencySet,
) -> Result<(), SbomError> {
    let path = stored_path(store, key);
    let dir = path.parent().expect("under the store");
    std::fs::create_dir_all(dir).map_err(|source| SbomError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let json = serde_json::to_string_pretty(set).expect("dependency sets serialise");
    crate::files::write_atomically(&path, json.as_bytes()).map_err(|source| SbomError::Write {
        path: path.clone(),
        source,
    })
}

/// A package URL: `pkg:<kind>/[<namespace>/]<name>@<version>[?<qualifiers>][#<subpath>]`, each
/// part encoded and the qualifiers sorted by the purl crate.
fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
    subpath: Option<&str>,
) -> Result<String, String> {
    let mut b =
        ::purl::GenericPurlBuilder::<String>::new(kind.to_owned(), name).with_version(version);
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        b = b.with_namespace(ns);
    }
    for (k, v) in qualifiers.iter().filter(|(_, v)| !v.is_empty()) {
        b = b
            .with_qualifier(*k, *v)
            .map_err(|e| format!("purl qualifier {k}={v}: {e}"))?;
    }
    if let Some(sub) = subpath.filter(|s| !s.is_empty()) {
        b = b.with_subpath(sub);
    }
    b.build()
        .map(|p| p.to_string())
        .map_err(|e| format!("no package URL for {kind}/{name}@{version}: {e}"))
}

/// A Kata source URL and commit as a purl `vcs_url` qualifier: `git+<url>@<commit>`.
fn vcs_url(url: &str, commit: &str) -> String {
    format!("git+{url}@{commit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_are_encoded_and_parse_back() {
        let deb = purl(
            "deb",
            Some("debian"),
            "libc6",
            "2.36-9+deb12u10",
            &[("distro", "debian-12"), ("arch", "amd64")],
            None,
        )
        .unwrap();
        assert_eq!(
            deb,
            "pkg:deb/debian/libc6@2.36-9+deb12u10?arch=amd64&distro=debian-12"
        );
        let epoch = purl("deb", Some("debian"), "dbus", "1:1.14", &[], None).unwrap();
        assert!(epoch.starts_with("pkg:deb/debian/dbus@1"), "{epoch}");
        let path = purl(
            "cargo",
            None,
            "kata-agent",
            "0.1.0",
            &[(
                "vcs_url",
                &vcs_url("https://github.com/kata-containers/kata-containers", "86e5"),
            )],
            Some("src/agent"),
        )
        .unwrap();
        assert!(
            path.starts_with("pkg:cargo/kata-agent@0.1.0?vcs_url=git%2Bhttps"),
            "{path}"
        );
        assert!(path.ends_with("#src/agent"), "{path}");
        let go = purl(
            "golang",
            Some("github.com/containerd"),
            "containerd",
            "v1.7.0",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(go, "pkg:golang/github.com/containerd/containerd@v1.7.0");
        for p in [deb, epoch, path, go] {
            let parsed: ::purl::GenericPurl<String> =
                p.parse().unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(!parsed.name().is_empty());
        }
    }

    #[test]
    fn merged_sets_keep_one_package_per_purl() {
        let mut a = DependencySet::new("x");
        let mut p = Package::new(Ecosystem::Deb, "pkg:deb/debian/a@1".into(), "a", "1");
        p.depends_on.insert("pkg:deb/debian/b@1".into());
        a.packages.push(p.clone());
        a.direct.insert(p.purl.clone());
        let mut b = DependencySet::new("x");
        let mut q = p.clone();
        q.depends_on = ["pkg:deb/debian/c@1".to_owned()].into();
        b.packages.push(q);
        b.packages.push(Package::new(
            Ecosystem::Deb,
            "pkg:deb/debian/0@1".into(),
            "0",
            "1",
        ));
        a.merge(b);
        assert_eq!(a.packages.len(), 2);
        assert_eq!(a.packages[0].name, "0", "sorted by purl");
        assert_eq!(a.packages[1].depends_on.len(), 2);
    }
}
