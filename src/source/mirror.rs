//! Mirrors: upstream URL → mirror URL or local path, from the config file and `--mirror`.
//!
//! An entry matches a URL exactly (after normalisation: lowercase scheme and host, no trailing
//! `/` or `.git`), or as a prefix ending at a `/`, in which case the rest of the URL is appended
//! to the mirror. The longest match wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::download::Location;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("--mirror `{0}` is not of the form URL=PATH (or URL=URL)")]
    BadArgument(String),
    #[error("cannot read config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    ParseConfig {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The user configuration file (`config.toml`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Upstream URL (or URL prefix ending in `/`) → mirror URL or local path.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    #[serde(default)]
    pub policy: ConfigPolicy,
    /// The store directory, unless `--store` or `KATA_REPRO_STORE` says otherwise.
    pub store: Option<PathBuf>,
    /// PEM certificates trusted for https git remotes besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPolicy {
    /// Hosts allowed on top of the lockfile's list.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, MirrorError> {
        let text = std::fs::read_to_string(path).map_err(|source| MirrorError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| crate::lock::line_col(&text, s.start))
                .unwrap_or((1, 1));
            MirrorError::ParseConfig {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        // Relative mirror paths are relative to the config file, made absolute here: cargo and
        // the steps read them from other working directories.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(parent).map_err(|source| MirrorError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let base = base.as_path();
        if let Some(ca) = &mut config.ca_file
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
        for target in config.mirrors.values_mut() {
            if let Location::File(p) = Location::parse(target)
                && p.is_relative()
            {
                *target = base.join(p).display().to_string();
            }
        }
        Ok(config)
    }

    /// The config file in effect: `explicit`, else `$KATA_REPRO_CONFIG`, else the user's config
    /// dir when the file exists there.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = explicit {
            return Some(p.to_owned());
        }
        if let Some(p) = std::env::var_os("KATA_REPRO_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let default = dirs::config_dir()?.join("kata-repro").join("config.toml");
        default.is_file().then_some(default)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    entries: BTreeMap<String, String>,
    /// PEM certificates trusted for https git remotes besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl Mirrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, upstream: &str, mirror: &str) {
        self.entries.insert(normalize(upstream), mirror.to_owned());
    }

    /// Parses a `--mirror URL=PATH` argument.
    pub fn insert_arg(&mut self, arg: &str) -> Result<(), MirrorError> {
        let (upstream, mirror) = arg
            .split_once('=')
            .filter(|(u, m)| !u.is_empty() && !m.is_empty())
            .ok_or_else(|| MirrorError::BadArgument(arg.to_owned()))?;
        self.insert(upstream, mirror);
        Ok(())
    }

    pub fn extend_from(&mut self, config: &Config) {
        for (u, m) in &config.mirrors {
            self.insert(u, m);
        }
        if config.ca_file.is_some() {
            self.ca_file = config.ca_file.clone();
        }
    }

    /// Exact entries whose mirror is a local path: (normalised upstream URL, path).
    pub fn local_repositories(&self) -> Vec<(String, std::path::PathBuf)> {
        self.entries
            .iter()
            .filter(|(u, _)| !u.ends_with('/'))
            .filter_map(|(u, m)| match Location::parse(m) {
                Location::File(p) => Some((u.clone(), p)),
                Location::Http(_) => None,
            })
            .collect()
    }

    /// Where to get `upstream` from, if a mirror covers it.
    pub fn resolve(&self, upstream: &str) -> Option<Location> {
        let wanted = normalize(upstream);
        if let Some(m) = self.entries.get(&wanted) {
            return Some(Location::parse(m));
        }
        // Longest prefix that ends at a path boundary.
        self.entries
            .iter()
            .filter(|(prefix, _)| {
                wanted.starts_with(prefix.as_str())
                    && (prefix.ends_with('/') || wanted.as_bytes().get(prefix.len()) == Some(&b'/'))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(prefix, mirror)| {
                let rest = wanted[prefix.len()..].trim_start_matches('/');
                Location::parse(&format!("{}/{rest}", mirror.trim_end_matches('/')))
            })
    }
}

/// Where a bare mirror of `upstream` goes under `root`: `<host>/<path>.git`, from its URL
/// (the store's mirror cache, and `kata-repro mirror`'s output).
pub fn mirror_dir(root: &Path, upstream: &str) -> PathBuf {
    let rest = upstream.split_once("://").map_or(upstream, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let safe: Vec<String> = rest
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .map(|c| {
            c.chars()
                .map(|ch| match ch {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => ch,
                    _ => '_',
                })
                .collect()
        })
        .collect();
    let mut dir = root.to_owned();
    if let Some((last, parents)) = safe.split_last() {
        for c in parents {
            dir.push(c);
        }
        dir.push(format!("{last}.git"));
    }
    dir
}

/// `HTTPS://GitHub.com/a/b.git/` → `https://github.com/a/b`. Prefix keys keep a trailing `/`.
fn normalize(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => return url.to_owned(),
    };
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let prefix_key = path.ends_with('/') || path.is_empty() && rest.ends_with('/');
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if !path.is_empty() {
        out.push('/');
        out.push_str(path);
    }
    if prefix_key {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_matches_ignore_git_suffix_and_case() {
        let mut m = Mirrors::new();
        m.insert(
            "https://github.com/rust-vmm/rust-vmm-ci",
            "/srv/rust-vmm-ci",
        );
        assert_eq!(
            m.resolve("https://GitHub.com/rust-vmm/rust-vmm-ci.git"),
            Some(Location::File("/srv/rust-vmm-ci".into()))
        );
        assert_eq!(
            m.resolve("https://github.com/rust-vmm/rust-vmm-ci-other"),
            None
        );
    }

    #[test]
    fn prefixes_append_the_rest() {
        let mut m = Mirrors::new();
        m.insert("https://cdn.kernel.org/pub/", "/srv/kernel");
        m.insert(
            "https://cdn.kernel.org/pub/linux/kernel/v6.x/",
            "https://mirror.example/v6",
        );
        assert_eq!(
            m.resolve("https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.18.35.tar.xz"),
            Some(Location::Http(
                "https://mirror.example/v6/linux-6.18.35.tar.xz".into()
            ))
        );
        assert_eq!(
            m.resolve("https://cdn.kernel.org/pub/x.tar"),
            Some(Location::File("/srv/kernel/x.tar".into()))
        );
    }

    #[test]
    fn mirror_dirs_follow_the_upstream_url() {
        let root = Path::new("/s/mirrors");
        assert_eq!(
            mirror_dir(
                root,
                "https://github.com/kata-containers/kata-containers.git"
            ),
            Path::new("/s/mirrors/github.com/kata-containers/kata-containers.git")
        );
        assert_eq!(
            mirror_dir(root, "https://github.com/rust-vmm/rust-vmm-ci/"),
            Path::new("/s/mirrors/github.com/rust-vmm/rust-vmm-ci.git")
        );
        assert_eq!(
            mirror_dir(root, "https://h:8443/../a b/c.d"),
            Path::new("/s/mirrors/h_8443/a_b/c.d.git")
        );
    }

    #[test]
    fn relative_mirror_paths_become_absolute_from_the_config_file() {
        // Unit tests run in the package root, so a relative path to the config names it as a
        // user's `--config mirrors/mirrors.toml` would.
        std::fs::create_dir_all("target").unwrap();
        let dir = tempfile::tempdir_in("target").unwrap();
        let rel = dir
            .path()
            .strip_prefix(std::env::current_dir().unwrap())
            .unwrap_or(dir.path())
            .to_owned();
        let config = rel.join("mirrors.toml");
        std::fs::write(
            &config,
            "ca_file = \"ca.pem\"\n[mirrors]\n\"https://github.com/a/b\" = \"github.com/a/b.git\"\n",
        )
        .unwrap();
        assert!(config.is_relative());
        let loaded = Config::load(&config).unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            loaded.mirrors["https://github.com/a/b"],
            base.join("github.com/a/b.git").display().to_string()
        );
        assert_eq!(loaded.ca_file, Some(base.join("ca.pem")));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut m = Mirrors::new();
        assert!(m.insert_arg("no-equals-sign").is_err());
        assert!(m.insert_arg("=/path").is_err());
        assert!(m.insert_arg("https://github.com/a/b=/srv/b").is_ok());
    }
}
