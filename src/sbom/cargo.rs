//! The crates a Rust component is built from, as cargo itself resolves them.
//!
//! Two of cargo's own views are combined. `cargo tree -p <package> --target <triple> --features
//! <…> -e normal,build` runs cargo's feature resolver for exactly what `cargo build -p` builds
//! (its set equals the crates a build compiles); `cargo metadata` (through cargo_metadata) gives
//! each of those packages' source, licence and description. `cargo metadata`'s own resolve is
//! not used for the set: it unifies features over every workspace member, and so names crates
//! (openssl, ring, …) that other members enable but the component never compiles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_metadata::{CargoOpt, MetadataCommand, PackageId};

use super::{DependencySet, Ecosystem, Package, SbomError, Vcs, purl, vcs_url};
use crate::lock::Source;
use crate::lock::cargo_lock::{CargoLock, GitSource, PackageSource};

/// The toolchain and the offline configuration cargo runs with.
#[derive(Debug, Clone)]
pub struct CargoTools {
    pub cargo: PathBuf,
    pub rustc: PathBuf,
    /// A cargo config that replaces every source with the verified vendor tree.
    pub config: PathBuf,
}

/// What was built: the package at `workdir`, for `target`, with `features`.
pub struct CrateQuery<'a> {
    pub checkout: &'a Path,
    pub workdir: &'a str,
    pub target: &'a str,
    /// Space- or comma-separated, as `cargo build --features` takes them.
    pub features: &'a str,
    /// The Kata source, for path crates' repository and commit.
    pub source: &'a Source,
}

fn tool_err(component: &str, tool: &str, message: impl Into<String>) -> SbomError {
    SbomError::Tool {
        component: component.to_owned(),
        tool: tool.to_owned(),
        message: message.into(),
    }
}

/// A CARGO_HOME holding only the offline config, so that cargo reads nothing else.
fn cargo_home(component: &str, tools: &CargoTools) -> Result<tempfile::TempDir, SbomError> {
    let home = tempfile::tempdir().map_err(|e| tool_err(component, "cargo", e.to_string()))?;
    std::fs::copy(&tools.config, home.path().join("config.toml")).map_err(|e| {
        SbomError::Input {
            path: tools.config.clone(),
            message: e.to_string(),
        }
    })?;
    Ok(home)
}

pub fn collect(
    component: &str,
    query: &CrateQuery<'_>,
    tools: &CargoTools,
) -> Result<DependencySet, SbomError> {
    let home = cargo_home(component, tools)?;
    let manifest_path = query.checkout.join(query.workdir).join("Cargo.toml");
    let features: Vec<String> = query
        .features
        .split([' ', ','])
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let metadata = MetadataCommand::new()
        .cargo_path(&tools.cargo)
        .manifest_path(&manifest_path)
        .features(CargoOpt::SomeFeatures(features.clone()))
        .other_options(vec![
            "--filter-platform".into(),
            query.target.into(),
            "--locked".into(),
            "--offline".into(),
        ])
        .env("CARGO_HOME", home.path())
        .env("RUSTC", &tools.rustc)
        .env("CARGO_NET_OFFLINE", "true")
        .exec()
        .map_err(|e| tool_err(component, "cargo metadata", e.to_string()))?;
    let root = metadata
        .packages
        .iter()
        .find(|p| p.manifest_path.as_std_path() == manifest_path)
        .ok_or_else(|| SbomError::Input {
            path: manifest_path.clone(),
            message: "cargo metadata lists no package with this manifest".into(),
        })?;

    let tree = cargo_tree(
        component,
        query,
        tools,
        home.path(),
        &manifest_path,
        &root.name,
        &features,
    )?;

    // (name, version) → the metadata packages that carry them.
    let mut by_name: BTreeMap<(String, String), Vec<&cargo_metadata::Package>> = BTreeMap::new();
    for p in &metadata.packages {
        by_name
            .entry((p.name.to_string(), p.version.to_string()))
            .or_default()
            .push(p);
    }
    let find = |node: &TreeNode| -> Result<&cargo_metadata::Package, SbomError> {
        let candidates = by_name
            .get(&(node.name.clone(), node.version.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let chosen: Vec<_> = candidates
            .iter()
            .filter(|p| match (&p.source, &node.source) {
                (None, Some(s)) => s.starts_with('/'),
                (Some(src), Some(s)) => !s.starts_with('/') && src.repr.starts_with("git+"),
                (Some(src), None) => !src.repr.starts_with("git+"),
                (None, None) => false,
            })
            .collect();
        match chosen.as_slice() {
            [one] => Ok(one),
            _ => Err(tool_err(
                component,
                "cargo tree",
                format!(
                    "`{} v{}` from cargo tree matches {} packages of cargo metadata",
                    node.name,
                    node.version,
                    chosen.len()
                ),
            )),
        }
    };

    let lock_path = query.checkout.join("Cargo.lock");
    let cargo_lock = CargoLock::load(&lock_path)?;

    let mut ids: BTreeMap<usize, PackageId> = BTreeMap::new();
    for (i, node) in tree.nodes.iter().enumerate() {
        ids.insert(i, find(node)?.id.clone());
    }
    let by_id: BTreeMap<&PackageId, &cargo_metadata::Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let mut purls: BTreeMap<PackageId, String> = BTreeMap::new();
    let mut set = DependencySet::new(component);
    set.method.push(format!(
        "cargo tree -p {} --target {} --features {:?} -e normal,build --locked --offline; cargo metadata --filter-platform {}",
        root.name,
        query.target,
        query.features,
        query.target
    ));
    for id in ids.values() {
        if purls.contains_key(id) {
            continue;
        }
        let p = by_id[id];
        let package = crate_package(p, &cargo_lock, query, &lock_path)?;
        purls.insert(id.clone(), package.purl.clone());
        set.packages.push(package);
    }
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (parent, child) in &tree.edges {
        deps.entry(purls[&ids[parent]].clone())
            .or_default()
            .insert(purls[&ids[child]].clone());
    }
    for p in &mut set.packages {
        if let Some(d) = deps.remove(&p.purl) {
            p.depends_on = d;
        }
    }
    set.packages.sort_by(|a, b| a.purl.cmp(&b.purl));
    set.direct.insert(purls[&ids[&0]].clone());
    Ok(set)
}

fn crate_package(
    p: &cargo_metadata::Package,
    lock: &CargoLock,
    query: &CrateQuery<'_>,
    lock_path: &Path,
) -> Result<Package, SbomError> {
    let name = p.name.to_string();
    let version = p.version.to_string();
    let bad = |message: String| SbomError::Input {
        path: lock_path.to_owned(),
        message,
    };
    let locked = lock
        .packages
        .iter()
        .find(|l| l.name == name && l.version == version && matches_source(&l.source, p));
    let mut package = match p.source.as_ref().map(|s| s.repr.as_str()) {
        None => {
            let dir = p
                .manifest_path
                .parent()
                .and_then(|d| d.as_std_path().strip_prefix(query.checkout).ok())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            let vcs = vcs_url(&query.source.url, &query.source.commit.to_string());
            let purl = purl(
                "cargo",
                None,
                &name,
                &version,
                &[("vcs_url", &vcs)],
                Some(&dir),
            )
            .map_err(bad)?;
            let mut package = Package::new(Ecosystem::Cargo, purl, &name, &version);
            package.vcs = Some(Vcs {
                url: query.source.url.clone(),
                commit: query.source.commit.to_string(),
                path: Some(dir.clone()),
            });
            package
                .properties
                .insert("kata-repro:cargo:source".into(), format!("path {dir}"));
            package
        }
        Some(repr) if repr.starts_with("git+") => {
            let git = GitSource::parse(repr)
                .map_err(|e| bad(format!("{name} {version}: {repr}: {e}")))?;
            let vcs = vcs_url(&git.url, &git.commit.to_string());
            let purl =
                purl("cargo", None, &name, &version, &[("vcs_url", &vcs)], None).map_err(bad)?;
            let mut package = Package::new(Ecosystem::Cargo, purl, &name, &version);
            package.vcs = Some(Vcs {
                url: git.url.clone(),
                commit: git.commit.to_string(),
                path: None,
            });
            package
                .properties
                .insert("kata-repro:cargo:source".into(), repr.to_owned());
            package
        }
        Some(repr) => {
            let purl = purl("cargo", None, &name, &version, &[], None).map_err(bad)?;
            let mut package = Package::new(Ecosystem::Cargo, purl, &name, &version);
            let checksum = locked.and_then(|l| l.checksum).ok_or_else(|| {
                bad(format!(
                    "{name} {version} ({repr}) has no checksum in Cargo.lock"
                ))
            })?;
            package.sha256 = Some(checksum);
            package.download_url = Some(format!(
                "https://static.crates.io/crates/{name}/{name}-{version}.crate"
            ));
            package
        }
    };
    package.description = p
        .description
        .as_ref()
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "));
    package.license = p.license.as_deref().map(normalise_license);
    if package.license.is_none()
        && let Some(file) = &p.license_file
    {
        package.properties.insert(
            "kata-repro:cargo:license-file".into(),
            file.file_name().unwrap_or_default().to_owned(),
        );
    }
    Ok(package)
}

fn matches_source(locked: &PackageSource, p: &cargo_metadata::Package) -> bool {
    match (locked, &p.source) {
        (PackageSource::Path, None) => true,
        (PackageSource::Git(g), Some(s)) => {
            s.repr.starts_with("git+") && s.repr.contains(&g.commit.to_string())
        }
        (PackageSource::Registry(r), Some(s)) => *r == s.repr,
        _ => false,
    }
}

/// Cargo's old `MIT/Apache-2.0` form is `MIT OR Apache-2.0` in SPDX.
fn normalise_license(license: &str) -> String {
    let joined = license
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ");
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line of `cargo tree --prefix depth --format {p}`.
#[derive(Debug, Clone, PartialEq)]
struct TreeNode {
    name: String,
    version: String,
    /// What cargo prints in parentheses: a path, or a git URL; none for a registry crate.
    source: Option<String>,
}

#[derive(Debug, Default)]
struct Tree {
    nodes: Vec<TreeNode>,
    /// (parent, child) indices into `nodes`.
    edges: BTreeSet<(usize, usize)>,
}

fn cargo_tree(
    component: &str,
    query: &CrateQuery<'_>,
    tools: &CargoTools,
    home: &Path,
    manifest_path: &Path,
    package: &str,
    features: &[String],
) -> Result<Tree, SbomError> {
    let mut cmd = Command::new(&tools.cargo);
    cmd.arg("tree")
        .arg("--manifest-path")
        .arg(manifest_path)
        .args(["-p", package, "--target", query.target])
        .args(["-e", "normal,build", "--prefix", "depth", "--format", "{p}"])
        .args(["--charset", "ascii", "--locked", "--offline"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.env("CARGO_HOME", home)
        .env("RUSTC", &tools.rustc)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_COLOR", "never")
        .current_dir(query.checkout);
    let out = cmd.output().map_err(|e| {
        tool_err(
            component,
            "cargo tree",
            format!("{}: {e}", tools.cargo.display()),
        )
    })?;
    if !out.status.success() {
        return Err(tool_err(
            component,
            "cargo tree",
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    parse_tree(&String::from_utf8_lossy(&out.stdout))
        .map_err(|m| tool_err(component, "cargo tree", m))
}

/// Parses `cargo tree --prefix depth --format {p}`: each line is a depth, then `name vX.Y.Z`,
/// then `(source)` for non-registry crates, then markers (`(proc-macro)`, `(*)`). A line's
/// parent is the nearest line above it one level up; a crate printed again (`(*)`) is the
/// same node.
fn parse_tree(text: &str) -> Result<Tree, String> {
    let mut tree = Tree::default();
    let mut index: BTreeMap<(String, String, Option<String>), usize> = BTreeMap::new();
    let mut stack: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let depth: usize = line[..digits]
            .parse()
            .map_err(|_| format!("line {}: no depth: {line:?}", n + 1))?;
        let mut rest = line[digits..].trim();
        for marker in [" (*)", " (proc-macro)"] {
            while let Some(r) = rest.strip_suffix(marker) {
                rest = r.trim_end();
            }
        }
        let (name, after) = rest
            .split_once(' ')
            .ok_or_else(|| format!("line {}: no version: {line:?}", n + 1))?;
        let (version, source) = match after.split_once(' ') {
            Some((v, s)) => (
                v,
                Some(s.trim_start_matches('(').trim_end_matches(')').to_owned()),
            ),
            None => (after, None),
        };
        let version = version
            .strip_prefix('v')
            .ok_or_else(|| format!("line {}: version does not start with v: {line:?}", n + 1))?;
        let key = (name.to_owned(), version.to_owned(), source.clone());
        let id = *index.entry(key).or_insert_with(|| {
            tree.nodes.push(TreeNode {
                name: name.to_owned(),
                version: version.to_owned(),
                source,
            });
            tree.nodes.len() - 1
        });
        if depth > stack.len() {
            return Err(format!("line {}: depth {depth} skips a level", n + 1));
        }
        stack.truncate(depth);
        if let Some(&parent) = stack.last() {
            tree.edges.insert((parent, id));
        } else if id != 0 {
            return Err(format!("line {}: a second root", n + 1));
        }
        stack.push(id);
    }
    if tree.nodes.is_empty() {
        return Err("printed no crates".into());
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_lines_give_nodes_and_edges() {
        let text = "0kata-agent v0.1.0 (/src/agent)\n\
                    1anyhow v1.0.102\n\
                    1cgroups-rs v0.3.5 (https://github.com/kata-containers/cgroups-rs?rev=v0.3.5#de9625ff)\n\
                    2libc v0.2.180\n\
                    1serde_derive v1.0.228 (proc-macro)\n\
                    2proc-macro2 v1.0.106\n\
                    1libc v0.2.180 (*)\n";
        let t = parse_tree(text).unwrap();
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kata-agent",
                "anyhow",
                "cgroups-rs",
                "libc",
                "serde_derive",
                "proc-macro2"
            ]
        );
        assert_eq!(t.nodes[0].source.as_deref(), Some("/src/agent"));
        assert!(
            t.nodes[2]
                .source
                .as_deref()
                .unwrap()
                .starts_with("https://")
        );
        assert_eq!(t.nodes[4].version, "1.0.228");
        let edges: Vec<_> = t.edges.iter().copied().collect();
        assert_eq!(edges, [(0, 1), (0, 2), (0, 3), (0, 4), (2, 3), (4, 5)]);
    }

    #[test]
    fn malformed_trees_are_refused() {
        assert!(parse_tree("").is_err());
        assert!(
            parse_tree("0a v1\n2b v1\n")
                .unwrap_err()
                .contains("skips a level")
        );
        assert!(
            parse_tree("0a v1\n0b v1\n")
                .unwrap_err()
                .contains("second root")
        );
        assert!(
            parse_tree("0a 1.0\n")
                .unwrap_err()
                .contains("does not start with v")
        );
    }

    #[test]
    fn old_style_licences_become_spdx() {
        assert_eq!(normalise_license("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(normalise_license("MIT OR  Apache-2.0"), "MIT OR Apache-2.0");
    }
}
