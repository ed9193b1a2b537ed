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
    /// Suites that update `suite` (`bookworm-security`, `bookworm-updates`): a package's
    /// newest version among all of them is the one pinned.
    pub updates: Vec<SuiteRef>,
}

/// One suite of one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteRef {
    pub archive: String,
    pub suite: String,
}

impl SuiteRef {
    /// The suites that carry a release's updates, as apt lists them: `<release>-security`
    /// (from Debian's separate security archive, the sibling `…/debian-security` of an archive
    /// whose URL ends in `/debian`) and `<release>-updates`.
    pub fn updates_of(archive: &str, distro: &str, release: &str) -> Vec<SuiteRef> {
        let archive = archive.trim_end_matches('/');
        let security = if distro == "debian" && archive.ends_with("/debian") {
            format!("{archive}-security")
        } else {
            archive.to_owned()
        };
        vec![
            SuiteRef {
                archive: security,
                suite: format!("{release}-security"),
            },
            SuiteRef {
                archive: archive.to_owned(),
                suite: format!("{release}-updates"),
            },
        ]
    }
}

impl std::fmt::Display for SuiteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.archive, self.suite)
    }
}

/// A suite's release file, its signature checked: the indexes it lists and its codename.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    pub suite: SuiteRef,
    pub url: String,
    hashes: BTreeMap<String, (Sha256Digest, u64)>,
    pub codename: Option<String>,
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

/// Reads a suite's `InRelease` and checks its signature with `keyring` (`None`: unchecked,
/// with a warning in `warnings`).
pub fn read_release(
    get: Fetch<'_>,
    suite: &SuiteRef,
    keyring: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<SignedRelease, DebianError> {
    let url = join(&suite.archive, &format!("dists/{}/InRelease", suite.suite));
    let release = fetch(get, &url)?;
    match keyring {
        Some(k) => check_signature(&url, &release, k)?,
        None => warnings.push(format!(
            "{url}: the release file's signature was not checked (no keyring); the packages \
             are pinned by sha256 from here on"
        )),
    }
    let text = String::from_utf8_lossy(&release);
    let hashes = release_hashes(&text);
    if hashes.is_empty() {
        return Err(DebianError::Index {
            url,
            message: "the release file lists no SHA256 hashes".into(),
        });
    }
    Ok(SignedRelease {
        suite: suite.clone(),
        codename: release_codename(&text),
        url,
        hashes,
    })
}

/// The `Packages` paragraphs of one component and architecture, checked against the release
/// file, each `Filename` made a full URL.
pub fn packages_index(
    get: Fetch<'_>,
    release: &SignedRelease,
    component: &str,
    darch: &str,
) -> Result<Vec<Paragraph>, DebianError> {
    let base = format!("{component}/binary-{darch}/Packages");
    let archive = &release.suite.archive;
    for ext in [".xz", ".gz", ""] {
        let rel = format!("{base}{ext}");
        let Some((sha, size)) = release.hashes.get(&rel) else {
            continue;
        };
        let url = join(archive, &format!("dists/{}/{rel}", release.suite.suite));
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
        let mut index = paragraphs(&text);
        for p in &mut index {
            if let Some(f) = p.get_mut("Filename") {
                *f = join(archive, f);
            }
        }
        return Ok(index);
    }
    Err(DebianError::Index {
        url: release.url.clone(),
        message: format!("the release file lists no {base}(.xz|.gz) for component {component}"),
    })
}

/// Of several suites' indexes, each package at its newest version (Debian's ordering); a
/// version that does not parse never wins over one that does.
pub fn newest_versions(indexes: Vec<Vec<Paragraph>>) -> Vec<Paragraph> {
    let mut newest: BTreeMap<String, Paragraph> = BTreeMap::new();
    for p in indexes.into_iter().flatten() {
        let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
            continue;
        };
        let newer = match newest.get(name).and_then(|q| q.get("Version")) {
            None => true,
            Some(old) => version_cmp(version, old) == Some(std::cmp::Ordering::Greater),
        };
        if newer {
            newest.insert(name.clone(), p);
        }
    }
    newest.into_values().collect()
}

/// Debian's version ordering (`dpkg --compare-versions`).
pub fn version_cmp(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let a: debversion::Version = a.parse().ok()?;
    let b: debversion::Version = b.parse().ok()?;
    Some(a.cmp(&b))
}

/// The archive components a package set was pinned from, read from its pool paths
/// (`pool/main/…`, debian-security's `pool/updates/main/…`); `main` when none can be read.
pub fn pool_components(urls: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = urls
        .iter()
        .filter_map(|u| u.split_once("/pool/").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let rest = rest.strip_prefix("updates/").unwrap_or(rest);
            rest.split('/').next().map(str::to_owned)
        })
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        out.push("main".to_owned());
    }
    out
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
    let main = SuiteRef {
        archive: req.archive.clone(),
        suite: req.suite.clone(),
    };
    let keyring = req.keyring.as_deref();
    let mut releases = vec![read_release(get, &main, keyring, &mut out.warnings)?];
    for suite in &req.updates {
        releases.push(read_release(get, suite, keyring, &mut out.warnings)?);
    }
    // Pinned by codename, not by suite: `stable` names another release every two years.
    let codename = releases[0].codename.clone().unwrap_or_else(|| {
        out.warnings.push(format!(
            "{}: the release file names no Codename; the release is pinned as the suite \
             `{}`, which the Debian security tracker may not know",
            releases[0].url, req.suite
        ));
        req.suite.clone()
    });
    let suites = std::iter::once(&main)
        .chain(&req.updates)
        .map(|s| s.suite.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for target in &req.targets {
        let darch = debian_arch(target).ok_or_else(|| {
            DebianError::Usage(format!(
                "--rootfs-arch {target}: not an architecture Kata builds for"
            ))
        })?;
        let mut indexes = Vec::new();
        for release in &releases {
            for c in &req.components {
                indexes.push(packages_index(get, release, c, darch)?);
            }
        }
        let index = newest_versions(indexes);
        let set = close_over_depends(&index, &req.include).map_err(|(name, why)| {
            DebianError::Missing {
                name,
                why,
                suite: suites.clone(),
                components: req.components.join(","),
                arch: darch.to_owned(),
            }
        })?;
        for p in set {
            out.packages.push(pin(&p, target, &releases[0].url)?);
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

/// The lockfile entry of one index paragraph.
fn pin(p: &Paragraph, target: &str, url: &str) -> Result<RootfsPackage, DebianError> {
    let field = |k: &str| {
        p.get(k).cloned().ok_or_else(|| DebianError::Index {
            url: url.to_owned(),
            message: format!("package {} has no {k}", p.get("Package").map_or("?", |s| s)),
        })
    };
    let sha256 = field("SHA256")?
        .parse::<Sha256Digest>()
        .map_err(|e| DebianError::Index {
            url: url.to_owned(),
            message: format!("package {}: SHA256: {e}", p["Package"]),
        })?;
    Ok(RootfsPackage {
        name: field("Package")?,
        version: field("Version")?,
        arch: field("Architecture")?,
        target: target.to_owned(),
        url: field("Filename")?,
        sha256,
    })
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

    #[test]
    fn the_newest_version_of_each_package_wins_across_suites() {
        let main = index("Package: a\nVersion: 1.0-1\n\nPackage: b\nVersion: 2\n");
        let security = index("Package: a\nVersion: 1.0-1+deb12u1\n\nPackage: b\nVersion: 1:0\n");
        let updates = index("Package: a\nVersion: 1.0-1~bpo1\n\nPackage: c\nVersion: 3\n");
        let got: Vec<(String, String)> = newest_versions(vec![main, security, updates])
            .iter()
            .map(|p| (p["Package"].clone(), p["Version"].clone()))
            .collect();
        let want = [("a", "1.0-1+deb12u1"), ("b", "1:0"), ("c", "3")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn components_come_from_pool_paths() {
        let urls = [
            "https://deb.debian.org/debian/pool/main/a/adduser/adduser_3.134_all.deb",
            "https://deb.debian.org/debian-security/pool/updates/main/o/openssl/libssl3.deb",
            "https://deb.debian.org/debian/pool/contrib/x/x/x.deb",
        ];
        assert_eq!(pool_components(&urls), ["contrib", "main"]);
        assert_eq!(pool_components(&[]), ["main"]);
    }

    #[test]
    fn debian_security_is_the_sibling_archive() {
        let s = SuiteRef::updates_of("https://deb.debian.org/debian/", "debian", "bookworm");
        assert_eq!(s[0].archive, "https://deb.debian.org/debian-security");
        assert_eq!(s[0].suite, "bookworm-security");
        assert_eq!(s[1].archive, "https://deb.debian.org/debian");
        assert_eq!(s[1].suite, "bookworm-updates");
        let u = SuiteRef::updates_of("http://archive.ubuntu.com/ubuntu", "ubuntu", "noble");
        assert_eq!(u[0].archive, "http://archive.ubuntu.com/ubuntu");
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
