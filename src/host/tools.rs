//! The host's tools and Debian packages: found on PATH, hashed, and named by the package that
//! installed them, for the manifest and the lockfile's `[host]` pins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::files::io_err;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "host tool `{name}` is not on PATH ({path}); `kata-repro setup` installs what the \
         recipes name, or remove it from the recipe's host_tools"
    )]
    MissingTool { name: String, path: String },
    #[error("host package `{name}` is not installed; install it (apt-get install {name})")]
    MissingPackage { name: String },
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
}

/// A program from the host, as a step finds it on PATH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTool {
    pub name: String,
    /// Where it was found on the host's PATH.
    pub path: PathBuf,
    /// The file it resolves to, through symlinks.
    pub resolved: PathBuf,
    pub sha256: Sha256Digest,
    /// The Debian package that installed it, with its version, where dpkg knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<HostPackage>,
}

/// A host package, by name and installed version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// Installed Debian packages (from dpkg's database), for recording versions.
#[derive(Debug, Default)]
pub struct Dpkg {
    /// package name → (version, arch)
    installed: BTreeMap<String, (String, String)>,
    root: PathBuf,
    index: std::sync::OnceLock<std::collections::HashMap<String, String>>,
}

impl Dpkg {
    pub fn load() -> Self {
        Self::load_from(Path::new("/var/lib/dpkg"))
    }

    pub fn load_from(root: &Path) -> Self {
        let mut installed = BTreeMap::new();
        let text = std::fs::read_to_string(root.join("status")).unwrap_or_default();
        for para in text.split("\n\n") {
            let field = |name: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            let (Some(pkg), Some(status), Some(version)) =
                (field("Package:"), field("Status:"), field("Version:"))
            else {
                continue;
            };
            if status.ends_with(" installed") {
                let arch = field("Architecture:").unwrap_or_default();
                installed.insert(pkg, (version, arch));
            }
        }
        Self {
            installed,
            root: root.to_owned(),
            index: Default::default(),
        }
    }

    pub fn package(&self, name: &str) -> Option<HostPackage> {
        self.installed.get(name).map(|(v, a)| HostPackage {
            name: name.to_owned(),
            version: v.clone(),
            arch: a.clone(),
        })
    }

    /// Which installed package owns each of `paths` (by dpkg's file lists, read once).
    pub fn owners(&self, paths: &BTreeSet<PathBuf>) -> BTreeMap<PathBuf, String> {
        let index = self.index.get_or_init(|| self.read_index());
        let mut out = BTreeMap::new();
        for p in paths {
            let s = p.to_string_lossy();
            // usrmerge: dpkg may list /bin/x for /usr/bin/x.
            let owner = index
                .get(s.as_ref())
                .or_else(|| s.strip_prefix("/usr").and_then(|alt| index.get(alt)));
            if let Some(pkg) = owner {
                out.insert(p.clone(), pkg.clone());
            }
        }
        out
    }

    /// Where an installed package puts a program called `name` in one of the system's program
    /// directories (`/usr/bin`, `/usr/sbin`, `/bin`, `/sbin`), if one does and it is there.
    pub fn program_named(&self, name: &str) -> Option<PathBuf> {
        let index = self.index.get_or_init(|| self.read_index());
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| index.contains_key(p.to_string_lossy().as_ref()) && is_executable(p))
    }

    /// path → package, from every `info/<package>.list`.
    fn read_index(&self) -> std::collections::HashMap<String, String> {
        let mut index = std::collections::HashMap::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("info")) else {
            return index;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pkg) = name.strip_suffix(".list") else {
                continue;
            };
            let pkg = pkg.split(':').next().unwrap_or(pkg).to_owned();
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            for line in text.lines() {
                index.entry(line.to_owned()).or_insert_with(|| pkg.clone());
            }
        }
        index
    }
}

/// How a host tool's file is hashed: [`Sha256Digest::of_file`], or a remembered digest.
pub type FileDigest<'a> = &'a dyn Fn(&Path) -> std::io::Result<Sha256Digest>;

/// Resolves each tool on `search_path` (a PATH value), hashing what it resolves to.
pub fn resolve_host_tools(
    names: &[String],
    search_path: &str,
    dpkg: &Dpkg,
    digest: FileDigest<'_>,
) -> Result<Vec<HostTool>, HostError> {
    let mut found = Vec::new();
    for name in names {
        let path = find_on_path(name, search_path).ok_or_else(|| HostError::MissingTool {
            name: name.clone(),
            path: search_path.to_owned(),
        })?;
        let resolved = std::fs::canonicalize(&path).map_err(io_err(&path))?;
        let sha256 = digest(&resolved).map_err(io_err(&resolved))?;
        found.push((name.clone(), path, resolved, sha256));
    }
    let resolved: BTreeSet<PathBuf> = found.iter().map(|f| f.2.clone()).collect();
    let owners = dpkg.owners(&resolved);
    Ok(found
        .into_iter()
        .map(|(name, path, resolved, sha256)| {
            let package = owners.get(&resolved).and_then(|p| dpkg.package(p));
            HostTool {
                name,
                path,
                resolved,
                sha256,
                package,
            }
        })
        .collect())
}

/// Where `name` is on `search_path` (a PATH value): the first executable file of that name.
pub fn find_on_path(name: &str, search_path: &str) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn resolve_host_packages(names: &[String], dpkg: &Dpkg) -> Result<Vec<HostPackage>, HostError> {
    names
        .iter()
        .map(|n| {
            dpkg.package(n)
                .ok_or_else(|| HostError::MissingPackage { name: n.clone() })
        })
        .collect()
}

/// The host's distribution, from /etc/os-release: `<ID> <VERSION_ID>`.
pub fn host_os() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    format!("{} {}", field("ID="), field("VERSION_ID="))
        .trim()
        .to_owned()
}

/// Every package a build uses on this host, as the lockfile's `[host]` pins them: those owning
/// `tools` (found on `search_path`), and `packages`.
pub fn host_pins(
    tools: &[String],
    packages: &[String],
    search_path: &str,
    dpkg: &Dpkg,
) -> Result<crate::lock::HostPins, HostError> {
    let mut pins = BTreeSet::new();
    for t in resolve_host_tools(tools, search_path, dpkg, &|p| Sha256Digest::of_file(p))? {
        pins.extend(t.package);
    }
    pins.extend(resolve_host_packages(packages, dpkg)?);
    Ok(crate::lock::HostPins {
        os: host_os(),
        packages: pins
            .into_iter()
            .map(|p| crate::lock::HostPin {
                name: p.name,
                version: p.version,
                arch: p.arch,
            })
            .collect(),
    })
}

/// The packages a build uses that differ from the lockfile's `[host]` pins, or that it does
/// not pin: one line each, naming what is installed and what is pinned.
pub fn host_drift(
    pins: &crate::lock::HostPins,
    used: impl IntoIterator<Item = HostPackage>,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for p in used {
        match pins.packages.iter().find(|x| x.name == p.name) {
            None => {
                out.insert(format!(
                    "host package {} {} ({}) is not pinned by the lockfile's [host]",
                    p.name, p.version, p.arch
                ));
            }
            Some(pin) if pin.version != p.version || pin.arch != p.arch => {
                out.insert(format!(
                    "host package {} is {} ({}) here; the lockfile pins {} ({})",
                    p.name, p.version, p.arch, pin.version, pin.arch
                ));
            }
            Some(_) => {}
        }
    }
    out.into_iter().collect()
}

/// The lockfile's `[host]` pins this host does not hold: each pinned package that is not
/// installed, or is installed at another version or arch, one line each.
pub fn unmet_pins(pins: &crate::lock::HostPins, dpkg: &Dpkg) -> Vec<String> {
    let installed: Vec<HostPackage> = pins
        .packages
        .iter()
        .filter_map(|pin| dpkg.package(&pin.name))
        .collect();
    let mut unmet: Vec<String> = pins
        .packages
        .iter()
        .filter(|pin| !installed.iter().any(|p| p.name == pin.name))
        .map(|pin| {
            format!(
                "host package {} {} ({}) is pinned and not installed here",
                pin.name, pin.version, pin.arch
            )
        })
        .collect();
    unmet.extend(host_drift(pins, installed));
    unmet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_and_owners() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("info")).unwrap();
        std::fs::write(
            dir.path().join("status"),
            "Package: make\nStatus: install ok installed\nArchitecture: amd64\nVersion: 4.3-4.1\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("info/make.list"), "/.\n/usr/bin/make\n").unwrap();
        let d = Dpkg::load_from(dir.path());
        assert_eq!(d.package("make").unwrap().version, "4.3-4.1");
        assert!(d.package("gone").is_none());
        let owners = d.owners(&[PathBuf::from("/usr/bin/make")].into_iter().collect());
        assert_eq!(owners.get(Path::new("/usr/bin/make")).unwrap(), "make");

        let pin = |name: &str, version: &str| crate::lock::HostPin {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
        };
        let pins = crate::lock::HostPins {
            os: "debian 12".into(),
            packages: vec![pin("make", "4.3-4.1"), pin("gone", "1"), pin("make2", "1")],
        };
        let unmet = unmet_pins(&pins, &d);
        assert_eq!(unmet.len(), 2, "{unmet:?}");
        assert!(unmet[0].contains("gone 1 (amd64) is pinned and not installed"));
        let pins = crate::lock::HostPins {
            os: "debian 12".into(),
            packages: vec![pin("make", "4.3-4.2")],
        };
        assert_eq!(
            unmet_pins(&pins, &d),
            ["host package make is 4.3-4.1 (amd64) here; the lockfile pins 4.3-4.2 (amd64)"]
        );
    }

    #[test]
    fn missing_tool_names_itself() {
        let e = resolve_host_tools(
            &["no-such-tool-x".into()],
            "/usr/bin:/bin",
            &Dpkg::default(),
            &|p| Sha256Digest::of_file(p),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("host tool `no-such-tool-x` is not on PATH"),
            "{e}"
        );
    }
}
