//! What a build needs from its host, and what of it is missing.
//!
//! Every recipe names the programs its steps run (`host_tools`, each under the Debian package
//! that provides it) and the packages whose headers and libraries it uses (`host_packages`).
//! [`survey`] checks them all at once against PATH and dpkg's database, so that a build can
//! name everything missing in one message, and `kata-repro setup` can install it with one
//! apt-get command. Package names come from the recipes, and from dpkg for what is installed;
//! kata-repro keeps no table of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::host::{Dpkg, find_on_path};
use crate::recipe::Recipe;

/// A host tool the recipes name, and whether PATH has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStatus {
    pub name: String,
    /// The Debian package the recipes say provides it (none where a recipe lists bare names).
    pub package: Option<String>,
    /// The components whose recipes name it.
    pub components: Vec<String>,
    /// Where PATH has it.
    pub found: Option<PathBuf>,
    /// The installed package owning the file it resolves to (dpkg's database).
    pub owner: Option<String>,
    /// Where an installed package has it, when PATH does not (`/usr/sbin` missing from a
    /// user's PATH, say).
    pub installed_off_path: Option<PathBuf>,
}

/// A host package the recipes name, and whether dpkg has it installed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageStatus {
    pub name: String,
    pub components: Vec<String>,
    /// The installed version.
    pub installed: Option<String>,
}

/// Every host tool and package the chosen recipes need for one architecture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Survey {
    pub arch: String,
    pub tools: Vec<ToolStatus>,
    pub packages: Vec<PackageStatus>,
}

/// Checks every host tool and package that `recipes` need to build for `arch`: tools against
/// `search_path` (a PATH value), packages against `dpkg`.
pub fn survey(recipes: &[&Recipe], arch: &str, search_path: &str, dpkg: &Dpkg) -> Survey {
    let mut tools: BTreeMap<String, (Option<String>, BTreeSet<String>)> = BTreeMap::new();
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in recipes.iter().filter(|r| r.arch.contains_key(arch)) {
        for (tool, package) in r.host_tool_packages_for(arch) {
            let entry = tools.entry(tool).or_default();
            if entry.0.is_none() {
                entry.0 = package;
            }
            entry.1.insert(r.component.clone());
        }
        for p in r.host_packages_for(arch) {
            packages.entry(p).or_default().insert(r.component.clone());
        }
    }
    let found: BTreeMap<String, Option<PathBuf>> = tools
        .keys()
        .map(|t| (t.clone(), find_on_path(t, search_path)))
        .collect();
    let resolved: BTreeSet<PathBuf> = found
        .values()
        .flatten()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let owners = dpkg.owners(&resolved);
    let tools = tools
        .into_iter()
        .map(|(name, (package, components))| {
            let found = found[&name].clone();
            let owner = found
                .as_ref()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .and_then(|p| owners.get(&p).cloned());
            let installed_off_path = match &found {
                Some(_) => None,
                None => dpkg.program_named(&name),
            };
            ToolStatus {
                name,
                package,
                components: components.into_iter().collect(),
                found,
                owner,
                installed_off_path,
            }
        })
        .collect();
    let packages = packages
        .into_iter()
        .map(|(name, components)| PackageStatus {
            installed: dpkg.package(&name).map(|p| p.version),
            name,
            components: components.into_iter().collect(),
        })
        .collect();
    Survey {
        arch: arch.to_owned(),
        tools,
        packages,
    }
}

impl Survey {
    pub fn missing_tools(&self) -> impl Iterator<Item = &ToolStatus> {
        self.tools.iter().filter(|t| t.found.is_none())
    }

    pub fn missing_packages(&self) -> impl Iterator<Item = &PackageStatus> {
        self.packages.iter().filter(|p| p.installed.is_none())
    }

    pub fn is_complete(&self) -> bool {
        self.missing_tools().next().is_none() && self.missing_packages().next().is_none()
    }

    /// The Debian packages that would install everything missing, sorted: each missing
    /// package, and the package of each missing tool that no installed package already has.
    pub fn to_install(&self) -> BTreeSet<String> {
        let tools = self
            .missing_tools()
            .filter(|t| t.installed_off_path.is_none())
            .filter_map(|t| t.package.clone());
        let packages = self.missing_packages().map(|p| p.name.clone());
        tools.chain(packages).collect()
    }

    /// Missing tools whose recipes name no package for them.
    pub fn unprovided(&self) -> Vec<&ToolStatus> {
        self.missing_tools()
            .filter(|t| t.package.is_none() && t.installed_off_path.is_none())
            .collect()
    }

    /// Tools an installed package has outside PATH, with the directories PATH lacks.
    pub fn off_path_dirs(&self) -> BTreeSet<PathBuf> {
        self.missing_tools()
            .filter_map(|t| {
                t.installed_off_path
                    .as_deref()?
                    .parent()
                    .map(Path::to_owned)
            })
            .collect()
    }
}

/// The command that installs `packages`, as argv lists to run in turn: `apt-get update`, then
/// `apt-get install`, each behind `sudo` when not run as root.
pub fn apt_commands(packages: &BTreeSet<String>, as_root: bool) -> Vec<Vec<String>> {
    if packages.is_empty() {
        return Vec::new();
    }
    let sudo: &[&str] = if as_root { &[] } else { &["sudo"] };
    let update = sudo
        .iter()
        .chain(&["apt-get", "update"])
        .map(|s| s.to_string());
    let install = sudo
        .iter()
        .chain(&["apt-get", "install", "-y", "--no-install-recommends"])
        .map(|s| s.to_string())
        .chain(packages.iter().cloned());
    vec![update.collect(), install.collect()]
}

/// The commands of [`apt_commands`] as one shell line.
pub fn shell_line(commands: &[Vec<String>]) -> String {
    commands
        .iter()
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// What a build lacks from its host: every missing tool and package, named at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct HostMissing(pub Survey);

fn describe(s: &Survey) -> String {
    let mut out = format!(
        "this host lacks what the recipes need to build for {}:",
        s.arch
    );
    for t in s.missing_tools() {
        let why = match (&t.installed_off_path, &t.package) {
            (Some(at), _) => format!("installed at {}, which is not on PATH", at.display()),
            (None, Some(p)) => format!("not on PATH; Debian package {p}"),
            (None, None) => "not on PATH, and the recipe names no package for it".to_owned(),
        };
        out.push_str(&format!(
            "\n  host tool {} ({}): {why}",
            t.name,
            t.components.join(", ")
        ));
    }
    for p in s.missing_packages() {
        out.push_str(&format!(
            "\n  host package {} ({}): not installed",
            p.name,
            p.components.join(", ")
        ));
    }
    let install = s.to_install();
    if !install.is_empty() {
        let as_root = nix::unistd::geteuid().is_root();
        out.push_str(&format!(
            "\ninstall them all with: {}\n(or run `kata-repro setup`)",
            shell_line(&apt_commands(&install, as_root))
        ));
    }
    let dirs = s.off_path_dirs();
    if !dirs.is_empty() {
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        out.push_str(&format!("\nadd {} to PATH", dirs.join(":")));
    }
    let unprovided = s.unprovided();
    if !unprovided.is_empty() {
        let names: Vec<&str> = unprovided.iter().map(|t| t.name.as_str()).collect();
        out.push_str(&format!(
            "\nput {} on PATH, or name the Debian package of each under the recipe's \
             [host_tools]",
            names.join(", ")
        ));
    }
    out
}

/// Ok when the host has everything `recipes` need for `arch`; otherwise every missing tool and
/// package, at once.
pub fn preflight(
    recipes: &[&Recipe],
    arch: &str,
    search_path: &str,
    dpkg: &Dpkg,
) -> Result<(), HostMissing> {
    let s = survey(recipes, arch, search_path, dpkg);
    if s.is_complete() {
        Ok(())
    } else {
        Err(HostMissing(s))
    }
}

#[cfg(test)]
mod tests;
