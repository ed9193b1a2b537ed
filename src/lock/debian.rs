//! Pinning a rootfs package set from a Debian or Ubuntu archive.
//!
//! `kata-repro lock --rootfs-archive URL` reads the suite's `InRelease` (its signature checked
//! with `gpgv` against the distribution's archive keyring), then the `Packages` index of each
//! component for the architecture, checked against the sha256 the release file gives. It takes
//! the packages Kata's osbuilder installs plus every `Priority: required` package (what
//! `mmdebstrap --variant required` starts from) and closes the set over `Pre-Depends` and
//! `Depends`, choosing in each alternative group the first package already chosen, else the
//! first real package, else the first package that provides it. Every package is pinned by
//! name, version, architecture, URL and sha256.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::lock::{RootfsBase, RootfsPackage};
use crate::source::deb::{Paragraph, paragraphs};

/// What Kata's osbuilder installs on top of the required set (rootfs-builder/ubuntu/config.sh
/// with `AGENT_INIT=no` and `SECCOMP=yes`).
pub const KATA_PACKAGES: &[&str] = &["chrony", "iptables", "dbus", "init", "libseccomp2"];

#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("{url}: {message}")]
    Fetch { url: String, message: String },
    #[error(
        "{url}: the release file's signature did not verify against {keyring}:\n{output}\n\
         the archive or a mirror in between may have been tampered with; nothing was pinned"
    )]
    Signature {
        url: String,
        keyring: PathBuf,
        output: String,
    },
    #[error("{url}: {message}")]
    Index { url: String, message: String },
    #[error(
        "package `{name}` ({why}) is not in {suite}/{components} for {arch}; check the name, \
         or add the component that holds it with --rootfs-component"
    )]
    Missing {
        name: String,
        why: String,
        suite: String,
        components: String,
        arch: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// Debian's name for a Kata architecture.
pub fn debian_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "s390x" => "s390x",
        "ppc64le" => "ppc64el",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    /// The archive root, e.g. `http://deb.debian.org/debian` (a `file://` URL or a path works).
    pub archive: String,
    pub suite: String,
    pub components: Vec<String>,
    /// `debian` or `ubuntu`: recorded in the lockfile's `[[rootfs.base]]`.
    pub distro: String,
    /// Kata architectures to pin a set for.
    pub targets: Vec<String>,
    /// Packages beyond the required set.
    pub include: Vec<String>,
    /// The keyring `gpgv` checks `InRelease` with; `None` skips the check (with a warning).
    pub keyring: Option<PathBuf>,
}

/// The pinned packages and the base entries for the lockfile, with warnings.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub packages: Vec<RootfsPackage>,
    pub base: Vec<RootfsBase>,
    pub warnings: Vec<String>,
}

/// Reads a URL (through whatever mirrors the caller applies).
pub type Fetch<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

fn fetch(get: Fetch<'_>, url: &str) -> Result<Vec<u8>, DebianError> {
    get(url).map_err(|message| DebianError::Fetch {
        url: url.to_owned(),
        message,
    })
}

fn join(archive: &str, rel: &str) -> String {
    format!("{}/{rel}", archive.trim_end_matches('/'))
}

/// Checks a clear-signed release file with `gpgv`.
fn check_signature(url: &str, text: &[u8], keyring: &Path) -> Result<(), DebianError> {
    let file = tempfile::NamedTempFile::new().map_err(|e| DebianError::Fetch {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    std::fs::write(file.path(), text).map_err(|e| DebianError::Fetch {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    let out = std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .arg(file.path())
        .output()
        .map_err(|e| DebianError::Signature {
            url: url.to_owned(),
            keyring: keyring.to_owned(),
            output: format!("cannot run gpgv: {e} (install the gpgv package)"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DebianError::Signature {
            url: url.to_owned(),
            keyring: keyring.to_owned(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `(sha256, size)` of each file the release file lists.
fn release_hashes(text: &str) -> BTreeMap<String, (Sha256Digest, u64)> {
    let mut out = BTreeMap::new();
    if let Some(p) = paragraphs(text).first()
        && let Some(list) = p.get("SHA256")
    {
        for line in list.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [hash, size, path] = parts[..]
                && let (Ok(h), Ok(s)) = (hash.parse::<Sha256Digest>(), size.parse::<u64>())
            {
                out.insert(path.to_owned(), (h, s));
            }
        }
    }
    out
}

/// The release's codename (`bookworm`) from the release file, which names releases as the
/// security tracker does: the suites that update a release (`bookworm-security`,
/// `bookworm-updates`, `bookworm-proposed-updates`) name it without their suffix. `None` when
/// the file has no codename.
fn release_codename(text: &str) -> Option<String> {
    let first = paragraphs(text).into_iter().next()?;
    let name = first.get("Codename")?.trim();
    let release = ["-security", "-proposed-updates", "-updates"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    (!release.is_empty()).then(|| release.to_owned())
}

/// The `Packages` paragraphs of one component and architecture, checked against the release
/// file.
fn packages_index(
    get: Fetch<'_>,
    req: &ArchiveRequest,
    hashes: &BTreeMap<String, (Sha256Digest, u64)>,
    component: &str,
    darch: &str,
) -> Result<Vec<Paragraph>, DebianError> {
    let base = format!("{component}/binary-{darch}/Packages");
    for ext in [".xz", ".gz", ""] {
        let rel = format!("{base}{ext}");
        let Some((sha, size)) = hashes.get(&rel) else {
            continue;
        };
        let url = join(&req.archive, &format!("dists/{}/{rel}", req.suite));
        let bytes = fetch(get, &url)?;
        let got = Sha256Digest::of(&bytes);
        if got != *sha || bytes.len() as u64 != *size {
            return Err(DebianError::Index {
                url,
                message: format!(
                    "sha256 {got} ({} bytes), but the release file says {sha} ({size} bytes)",
                    bytes.len()
                ),
            });
        }
        let mut text = String::new();
        let mut reader = crate::source::extract::decompressed(std::io::BufReader::new(&bytes[..]))
            .map_err(|e| DebianError::Index {
                url: url.clone(),
                message: e.to_string(),
            })?;
        std::io::Read::read_to_string(&mut reader, &mut text).map_err(|e| DebianError::Index {
            url: url.clone(),
            message: e.to_string(),
        })?;
        return Ok(paragraphs(&text));
    }
    Err(DebianError::Index {
        url: join(&req.archive, &format!("dists/{}/Release", req.suite)),
        message: format!("the release file lists no {base}(.xz|.gz) for component {component}"),
    })
}

/// One alternative of a relation: the package name, without `:any` and the version.
fn relation_name(alt: &str) -> &str {
    let name = alt.trim().split([' ', '(', '[', '<']).next().unwrap_or("");
    name.split(':').next().unwrap_or(name)
}

/// The alternative groups of a `Depends`-style field.
pub(crate) fn relation_groups(field: &str) -> Vec<Vec<&str>> {
    field
        .split(',')
        .map(|g| {
            g.split('|')
                .map(relation_name)
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// The package set for one architecture, from its index.
pub fn close_over_depends(
    index: &[Paragraph],
    include: &[String],
) -> Result<Vec<Paragraph>, (String, String)> {
    let mut real: BTreeMap<&str, &Paragraph> = BTreeMap::new();
    let mut provides: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in index {
        let Some(name) = p.get("Package") else {
            continue;
        };
        // A suite holds one version of a package; keep the first should there be more.
        real.entry(name.as_str()).or_insert(p);
        if let Some(field) = p.get("Provides") {
            for group in relation_groups(field) {
                for v in group {
                    provides.entry(v).or_default().insert(name.as_str());
                }
            }
        }
    }
    let mut chosen: BTreeSet<&str> = BTreeSet::new();
    let mut todo: BTreeSet<(String, String)> = BTreeSet::new();
    for p in index {
        if p.get("Priority").is_some_and(|v| v == "required")
            && let Some(n) = p.get("Package")
        {
            todo.insert((n.clone(), "Priority: required".into()));
        }
    }
    for n in include {
        todo.insert((n.clone(), "asked for".into()));
    }
    while let Some((name, why)) = todo.pop_first() {
        let Some(p) = real.get(name.as_str()) else {
            return Err((name, why));
        };
        let pname = p["Package"].as_str();
        if !chosen.insert(pname) {
            continue;
        }
        for field in ["Pre-Depends", "Depends"] {
            let Some(value) = p.get(field) else { continue };
            for group in relation_groups(value) {
                let pick = group
                    .iter()
                    .find(|a| chosen.contains(**a))
                    .or_else(|| group.iter().find(|a| real.contains_key(**a)))
                    .map(|a| (*a).to_owned())
                    .or_else(|| {
                        group.iter().find_map(|a| {
                            let by = provides.get(a)?;
                            by.iter()
                                .find(|b| chosen.contains(**b))
                                .or_else(|| by.iter().next())
                                .map(|b| (*b).to_owned())
                        })
                    });
                match pick {
                    Some(n) if !chosen.contains(n.as_str()) => {
                        todo.insert((n, format!("{field} of {pname}")));
                    }
                    Some(_) => {}
                    None => {
                        return Err((group.join(" | "), format!("{field} of {pname}")));
                    }
                }
            }
        }
    }
    Ok(chosen.iter().map(|n| real[n].clone()).collect())
}

/// Resolves and pins the package set of every target architecture.
pub fn resolve(req: &ArchiveRequest, get: Fetch<'_>) -> Result<Resolved, DebianError> {
    let mut out = Resolved::default();
    let url = join(&req.archive, &format!("dists/{}/InRelease", req.suite));
    let release = fetch(get, &url)?;
    match &req.keyring {
        Some(k) => check_signature(&url, &release, k)?,
        None => out.warnings.push(format!(
            "{url}: the release file's signature was not checked (no keyring); the packages \
             are pinned by sha256 from here on"
        )),
    }
    let release_text = String::from_utf8_lossy(&release);
    let hashes = release_hashes(&release_text);
    // Pinned by codename, not by suite: `stable` names another release every two years.
    let codename = release_codename(&release_text).unwrap_or_else(|| {
        out.warnings.push(format!(
            "{url}: the release file names no Codename; the release is pinned as the suite \
             `{}`, which the Debian security tracker may not know",
            req.suite
        ));
        req.suite.clone()
    });
    if hashes.is_empty() {
        return Err(DebianError::Index {
            url,
            message: "the release file lists no SHA256 hashes".into(),
        });
    }
    for target in &req.targets {
        let darch = debian_arch(target).ok_or_else(|| {
            DebianError::Usage(format!(
                "--rootfs-arch {target}: not an architecture Kata builds for"
            ))
        })?;
        let mut index = Vec::new();
        for c in &req.components {
            index.extend(packages_index(get, req, &hashes, c, darch)?);
        }
        let set = close_over_depends(&index, &req.include).map_err(|(name, why)| {
            DebianError::Missing {
                name,
                why,
                suite: req.suite.clone(),
                components: req.components.join(","),
                arch: darch.to_owned(),
            }
        })?;
        for p in set {
            let field = |k: &str| {
                p.get(k).cloned().ok_or_else(|| DebianError::Index {
                    url: url.clone(),
                    message: format!("package {} has no {k}", p.get("Package").map_or("?", |s| s)),
                })
            };
            let sha256 =
                field("SHA256")?
                    .parse::<Sha256Digest>()
                    .map_err(|e| DebianError::Index {
                        url: url.clone(),
                        message: format!("package {}: SHA256: {e}", p["Package"]),
                    })?;
            out.packages.push(RootfsPackage {
                name: field("Package")?,
                version: field("Version")?,
                arch: field("Architecture")?,
                target: target.clone(),
                url: join(&req.archive, &field("Filename")?),
                sha256,
            });
        }
        out.base.push(RootfsBase {
            arch: target.clone(),
            distro: req.distro.clone(),
            release: codename.clone(),
            archive: Some(req.archive.clone()),
        });
    }
    out.packages
        .sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_is_pinned_by_its_codename() {
        let text = "Origin: Debian\nSuite: stable\nCodename: trixie\nSHA256:\n 00 1 main/x\n";
        assert_eq!(release_codename(text).as_deref(), Some("trixie"));
        let security = "Suite: stable-security\nCodename: trixie-security\n";
        assert_eq!(release_codename(security).as_deref(), Some("trixie"));
        let updates = "Suite: oldstable-updates\nCodename: bookworm-updates\n";
        assert_eq!(release_codename(updates).as_deref(), Some("bookworm"));
        assert_eq!(release_codename("Origin: Fixture\nSuite: stable\n"), None);
    }

    fn index(text: &str) -> Vec<Paragraph> {
        paragraphs(text)
    }

    #[test]
    fn closes_over_depends_with_alternatives_and_virtuals() {
        let idx = index(
            "Package: base-files\nPriority: required\nVersion: 12\n\n\
             Package: chrony\nPriority: optional\nDepends: libc6 (>= 2.34), timeconf | tzdata, adduser\n\n\
             Package: libc6\nPriority: optional\nPre-Depends: libgcc-s1\n\n\
             Package: libgcc-s1\nPriority: optional\n\n\
             Package: tzdata\nPriority: optional\n\n\
             Package: adduser\nPriority: optional\nDepends: passwd:any\n\n\
             Package: shadow-utils\nPriority: optional\nProvides: passwd (= 1)\n\n\
             Package: unrelated\nPriority: optional\n",
        );
        let set = close_over_depends(&idx, &["chrony".into()]).unwrap();
        let names: Vec<&str> = set.iter().map(|p| p["Package"].as_str()).collect();
        assert_eq!(
            names,
            [
                "adduser",
                "base-files",
                "chrony",
                "libc6",
                "libgcc-s1",
                "shadow-utils",
                "tzdata"
            ]
        );
        let err = close_over_depends(&idx, &["nope".into()]).unwrap_err();
        assert_eq!(err, ("nope".to_owned(), "asked for".to_owned()));
    }
}
