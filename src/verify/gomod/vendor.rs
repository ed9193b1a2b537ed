//! Vendored Go trees (`go mod vendor`, committed by Kata up to 3.30.0). Go itself never checks
//! these against go.sum (golang/go#27348), so kata-repro does:
//!
//! 1. `vendor/modules.txt` must agree with go.mod, as `go build -mod=vendor` requires: every
//!    requirement explicit and at the same version, no explicit module that go.mod does not
//!    require, and the same replacements;
//! 2. every vendored module must have its go.sum lines;
//! 3. where a verified module zip is at hand, every vendored package directory is derived again
//!    from it, the way `go mod vendor` copies files, and any file that differs, was added or is
//!    missing is reported. Without the zip a module is `self-consistent` (its files are pinned
//!    by the source commit only) or `unpinned`, never `ok`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use gomod_parser::{GoMod, Replacement};

use super::gosum::{GoSum, SumKind};
use crate::digest::Sha256Digest;
use crate::lock::line_col;
use crate::verify::report::{Ecosystem, Finding, Outcome, Report};

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{path}: {message}")]
    Unparsable { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// A `# module version [=> replacement [version]]` block of modules.txt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendoredModule {
    pub path: String,
    pub version: Option<String>,
    pub replacement: Option<(String, Option<String>)>,
    pub explicit: bool,
    pub go_version: Option<String>,
    pub packages: Vec<String>,
    /// 1-based line of the `#` header.
    pub line: usize,
}

impl VendoredModule {
    /// The module whose files are vendored: the replacement when there is one.
    pub fn source(&self) -> Option<(&str, &str)> {
        match &self.replacement {
            Some((path, Some(version))) => Some((path, version)),
            Some((_, None)) => None, // a directory replacement: no module, no go.sum lines
            None => self.version.as_deref().map(|v| (self.path.as_str(), v)),
        }
    }
}

pub fn parse_modules_txt(text: &str, path: &Path) -> Result<Vec<VendoredModule>, VendorError> {
    let mut modules: Vec<VendoredModule> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let malformed = |message: &str| VendorError::Malformed {
            path: path.to_owned(),
            line,
            message: message.to_owned(),
        };
        if let Some(rest) = raw.strip_prefix("## ") {
            let m = modules
                .last_mut()
                .ok_or_else(|| malformed("annotation before any module"))?;
            for part in rest.split(';').map(str::trim) {
                if part == "explicit" {
                    m.explicit = true;
                } else if let Some(v) = part.strip_prefix("go ") {
                    m.go_version = Some(v.to_owned());
                }
            }
        } else if let Some(rest) = raw.strip_prefix("# ") {
            let (left, right) = match rest.split_once(" => ") {
                Some((l, r)) => (l, Some(r)),
                None => (rest, None),
            };
            let mut l = left.split_whitespace();
            let module = l
                .next()
                .ok_or_else(|| malformed("a module line without a module"))?;
            let version = l.next().map(str::to_owned);
            let replacement = right.map(|r| {
                let mut r = r.split_whitespace();
                (
                    r.next().unwrap_or_default().to_owned(),
                    r.next().map(str::to_owned),
                )
            });
            modules.push(VendoredModule {
                path: module.to_owned(),
                version,
                replacement,
                explicit: false,
                go_version: None,
                packages: Vec::new(),
                line,
            });
        } else if !raw.trim().is_empty() {
            let m = modules
                .last_mut()
                .ok_or_else(|| malformed("a package before any module"))?;
            m.packages.push(raw.trim().to_owned());
        }
    }
    Ok(modules)
}

/// Inputs of the vendor check.
pub struct VendorCheck<'a> {
    pub gomod_path: &'a Path,
    pub vendor_dir: &'a Path,
    pub sum: &'a GoSum,
    /// Module zips already verified against go.sum, by (module, version).
    pub zips: &'a BTreeMap<(String, String), PathBuf>,
    /// What pins the vendored files when no zip is at hand (the source commit they were
    /// checked out from): such modules are then self-consistent; without it, unpinned.
    pub pinned_by: Option<String>,
}

/// What is wrong with each module (or with `vendor` as a whole), by name.
type Problems = BTreeMap<String, Vec<String>>;

fn problem(problems: &mut Problems, who: &str, what: String) {
    problems.entry(who.to_owned()).or_default().push(what);
}

/// Where a finding points: `go.mod:<line>` or `vendor/modules.txt:<line>`.
struct Places<'a> {
    gomod_path: &'a Path,
    gomod_text: &'a str,
    modules_txt: &'a Path,
}

impl Places<'_> {
    fn gomod(&self, offset: usize) -> String {
        let line = line_col(self.gomod_text, offset).0;
        format!("{}:{line}", self.gomod_path.display())
    }

    fn txt(&self, line: usize) -> String {
        format!("{}:{line}", self.modules_txt.display())
    }

    fn finding(&self, name: String) -> Finding {
        Finding::new(Ecosystem::Go, name, Outcome::Failed)
            .origin(self.modules_txt.display().to_string())
    }
}

pub fn verify(check: &VendorCheck<'_>) -> Result<Report, VendorError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| VendorError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let gomod_text = read(check.gomod_path)?;
    let gomod: GoMod = gomod_text
        .parse()
        .map_err(|message: String| VendorError::Unparsable {
            path: check.gomod_path.to_owned(),
            message,
        })?;
    let modules_txt = check.vendor_dir.join("modules.txt");
    let modules = parse_modules_txt(&read(&modules_txt)?, &modules_txt)?;
    let at = Places {
        gomod_path: check.gomod_path,
        gomod_text: &gomod_text,
        modules_txt: &modules_txt,
    };
    let mut report = Report::default();
    // 1. modules.txt against go.mod.
    report.findings.extend(against_gomod(&gomod, &modules, &at));
    // 2. go.sum lines for every vendored module; 3. the deep check where a zip is at hand.
    let mut problems = Problems::new();
    let expected = from_zips(check, &gomod, &modules, &mut problems);
    compare_dirs(check.vendor_dir, &expected, &mut problems);
    stray_files(check.vendor_dir, &modules, &expected.dirs, &mut problems);
    report
        .findings
        .extend(module_findings(check, &modules, problems, &at));
    let deep = modules.iter().filter(|m| has_zip(check, m)).count();
    report.notes.push(format!(
        "{}: {} vendored modules checked against go.mod and go.sum; {deep} derived again from verified zips",
        check.vendor_dir.display(),
        modules.len()
    ));
    Ok(report)
}

/// Whether a verified zip of `m` is at hand.
fn has_zip(check: &VendorCheck<'_>, m: &VendoredModule) -> bool {
    m.source()
        .is_some_and(|(p, v)| check.zips.contains_key(&(p.to_owned(), v.to_owned())))
}

/// modules.txt against go.mod: every requirement vendored at its version and marked explicit,
/// nothing explicit that go.mod does not require, every replacement as go.mod says.
fn against_gomod(gomod: &GoMod, modules: &[VendoredModule], at: &Places<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let by_path: BTreeMap<&str, &VendoredModule> =
        modules.iter().map(|m| (m.path.as_str(), m)).collect();
    let required: BTreeSet<&str> = gomod
        .require
        .iter()
        .map(|r| r.module.module_path.as_str())
        .collect();
    for req in &gomod.require {
        let (path, version) = (&req.module.module_path, &req.module.version);
        let problem = match by_path.get(path.as_str()) {
            None => Some("required in go.mod, but not in vendor/modules.txt".to_owned()),
            Some(m) if m.version.as_deref() != Some(version) => Some(format!(
                "required at {version} in go.mod, but vendored at {}",
                m.version.as_deref().unwrap_or("no version")
            )),
            Some(m) if !m.explicit => {
                Some("required in go.mod, but not marked explicit in vendor/modules.txt".into())
            }
            Some(_) => None,
        };
        if let Some(p) = problem {
            out.push(
                at.finding(format!("{path}@{version}"))
                    .pinned_at(at.gomod(req.module.path_span.start))
                    .message(p),
            );
        }
    }
    for m in modules
        .iter()
        .filter(|m| m.explicit && !required.contains(m.path.as_str()))
    {
        out.push(
            at.finding(module_name(m))
                .pinned_at(at.txt(m.line))
                .message("marked explicit in vendor/modules.txt, but not required in go.mod"),
        );
    }
    for r in &gomod.replace {
        let want = match &r.replacement {
            Replacement::Module(m) => (m.module_path.clone(), Some(m.version.clone())),
            Replacement::FilePath(p) => (p.clone(), None),
        };
        let vendored = modules
            .iter()
            .find(|m| m.path == r.module_path && (r.version.is_none() || m.version == r.version));
        if let Some(m) = vendored
            && m.replacement.as_ref() != Some(&want)
        {
            out.push(
                at.finding(module_name(m))
                    .pinned_at(at.gomod(r.path_span.start))
                    .message(format!(
                        "replaced by {} {} in go.mod, but not so in vendor/modules.txt",
                        want.0,
                        want.1.as_deref().unwrap_or("")
                    )),
            );
        }
    }
    out
}

/// What the verified zips say vendor/ holds: each file with its module and digest, and each
/// directory so derived with the module it belongs to.
#[derive(Default)]
struct Expected {
    files: BTreeMap<String, (String, Sha256Digest)>,
    dirs: BTreeMap<String, String>,
}

/// The go.sum lines every vendored module needs, and what its verified zip (where one is at
/// hand) says its vendored files are.
fn from_zips(
    check: &VendorCheck<'_>,
    gomod: &GoMod,
    modules: &[VendoredModule],
    problems: &mut Problems,
) -> Expected {
    let main_go = gomod.go.clone().unwrap_or_default();
    let strip_gomod = crate::lock::toolchain::version_key(&main_go) >= vec![1, 17];
    let mut expected = Expected::default();
    for m in modules {
        let name = module_name(m);
        let Some((src_path, src_version)) = m.source() else {
            continue;
        };
        for (kind, what) in [(SumKind::GoMod, "/go.mod"), (SumKind::Zip, "")] {
            if kind == SumKind::Zip && m.packages.is_empty() {
                continue;
            }
            if check.sum.find(src_path, src_version, kind).is_none() {
                let line = format!("missing from go.sum: no `{src_path} {src_version}{what}` line");
                problem(problems, &name, line);
            }
        }
        let Some(zip) = check
            .zips
            .get(&(src_path.to_owned(), src_version.to_owned()))
        else {
            continue;
        };
        let prefix = format!("{src_path}@{src_version}/");
        match expected_vendor_files(zip, &prefix, &m.path, &m.packages, strip_gomod) {
            Ok((files, dirs)) => {
                for (rel, digest) in files {
                    expected.files.insert(rel, (name.clone(), digest));
                }
                for d in dirs {
                    expected.dirs.entry(d).or_insert_with(|| name.clone());
                }
            }
            Err(e) => problem(problems, &name, format!("{}: {e}", zip.display())),
        }
    }
    expected
}

/// The vendor tree against what the zips say, directory by directory.
fn compare_dirs(vendor_dir: &Path, expected: &Expected, problems: &mut Problems) {
    for (dir, owner) in &expected.dirs {
        let actual = files_in(vendor_dir, dir);
        let want: BTreeMap<&String, &Sha256Digest> = expected
            .files
            .iter()
            .filter(|(rel, _)| parent(rel) == dir.as_str())
            .map(|(rel, (_, d))| (rel, d))
            .collect();
        for (rel, path) in &actual {
            let what = match want.get(rel) {
                None => format!("vendor/{rel} was added"),
                Some(want) => match Sha256Digest::of_file(path) {
                    Ok(got) if got == **want => continue,
                    Ok(got) => format!(
                        "vendor/{rel} differs from the module zip (expected {want}, actual {got})"
                    ),
                    Err(e) => format!("vendor/{rel}: {e}"),
                },
            };
            problem(problems, owner, what);
        }
        for rel in want.keys().filter(|rel| !actual.contains_key(**rel)) {
            problem(problems, owner, format!("vendor/{rel} is missing"));
        }
    }
}

/// Whatever lies in vendor/ outside every package directory was added by hand.
fn stray_files(
    vendor_dir: &Path,
    modules: &[VendoredModule],
    checked_dirs: &BTreeMap<String, String>,
    problems: &mut Problems,
) {
    let package_dirs: BTreeSet<String> = modules
        .iter()
        .flat_map(|m| m.packages.iter().cloned())
        .collect();
    let ancestors: BTreeSet<String> = package_dirs.iter().flat_map(|p| ancestors_of(p)).collect();
    let embeds = embedded_in_vendor(vendor_dir, &package_dirs);
    for entry in walkdir::WalkDir::new(vendor_dir)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(vendor_dir)
            .expect("under vendor")
            .to_string_lossy()
            .into_owned();
        let dir = parent(&rel).to_owned();
        if rel == "modules.txt" || package_dirs.contains(&dir) || embeds.contains(&rel) {
            continue;
        }
        if ancestors.contains(&dir) && is_metadata(file_of(&rel)) {
            continue;
        }
        if checked_dirs.contains_key(&dir) {
            continue; // already reported by compare_dirs
        }
        let what = format!("vendor/{rel} belongs to no vendored package");
        problem(problems, "vendor", what);
    }
}

/// A finding per vendored module (failed with its problems, derived from its zip, or only
/// consistent), then one per problem that no module owns.
fn module_findings(
    check: &VendorCheck<'_>,
    modules: &[VendoredModule],
    mut problems: Problems,
    at: &Places<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let origin = check.vendor_dir.display().to_string();
    for m in modules {
        let name = module_name(m);
        let base = Finding::new(Ecosystem::Go, name.clone(), Outcome::Ok)
            .origin(origin.clone())
            .pinned_at(at.txt(m.line));
        out.push(match problems.remove(&name) {
            Some(p) => base.outcome(Outcome::Failed).message(p.join("; ")),
            None if has_zip(check, m) => {
                base.message("vendored files derived again from the verified zip")
            }
            None => match &check.pinned_by {
                Some(pin) => base.outcome(Outcome::SelfConsistent).message(format!(
                    "consistent with go.mod and go.sum, and its files are those of {pin}, but no verified \
                     zip was at hand to derive them from, so nothing checks them against go.sum: pass \
                     --modcache DIR or --proxy URL"
                )),
                None => base.outcome(Outcome::Unpinned).message(
                    "consistent with go.mod and go.sum, but no verified zip was at hand to derive its files \
                     from, so nothing pins them: pass --modcache DIR or --proxy URL",
                ),
            },
        });
    }
    for (name, p) in problems {
        out.push(
            Finding::new(Ecosystem::Go, name, Outcome::Failed)
                .origin(origin.clone())
                .message(p.join("; ")),
        );
    }
    out
}

/// Files below vendored package directories that the packages' own `//go:embed` directives
/// select, by vendor-relative path.
fn embedded_in_vendor(vendor: &Path, packages: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pkg in packages {
        let dir = vendor.join(pkg);
        let sources: Vec<Vec<u8>> = files_in(vendor, pkg)
            .into_iter()
            .filter(|(rel, _)| rel.ends_with(".go") && !rel.ends_with("_test.go"))
            .filter_map(|(_, path)| std::fs::read(path).ok())
            .collect();
        let patterns = embed_patterns(sources.iter().map(Vec::as_slice));
        if patterns.is_empty() {
            continue;
        }
        let candidates: Vec<String> = walkdir::WalkDir::new(&dir)
            .min_depth(2)
            .into_iter()
            .flatten()
            .filter(|e| !e.file_type().is_dir())
            .map(|e| {
                e.path()
                    .strip_prefix(&dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        out.extend(
            embedded(&patterns, &candidates)
                .into_iter()
                .map(|rel| format!("{pkg}/{rel}")),
        );
    }
    out
}

fn module_name(m: &VendoredModule) -> String {
    match &m.version {
        Some(v) => format!("{}@{v}", m.path),
        None => m.path.clone(),
    }
}

fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(d, _)| d)
}

fn file_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or(rel, |(_, f)| f)
}

fn ancestors_of(pkg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = pkg;
    while let Some((d, _)) = p.rsplit_once('/') {
        out.push(d.to_owned());
        p = d;
    }
    out
}

/// Regular files directly in `vendor/<dir>`, by vendor-relative path.
fn files_in(vendor: &Path, dir: &str) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(vendor.join(dir))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let rel = if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    };
                    (rel, e.path())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Names `go mod vendor` copies from the parents of a package directory.
const METADATA_PREFIXES: &[&str] = &[
    "AUTHORS",
    "CONTRIBUTORS",
    "COPYLEFT",
    "COPYING",
    "COPYRIGHT",
    "LEGAL",
    "LICENSE",
    "NOTICE",
    "PATENTS",
];

fn is_metadata(name: &str) -> bool {
    METADATA_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `go mod vendor` copies a file of a package directory: not tests, not go.mod/go.sum
/// (from Go 1.17 on), and not Go files that build only with the `ignore` tag.
fn copied_source_file(name: &str, content: &[u8], strip_gomod: bool) -> bool {
    if name.ends_with("_test.go") {
        return false;
    }
    if strip_gomod && (name == "go.mod" || name == "go.sum") {
        return false;
    }
    if name.ends_with(".go") {
        let head = String::from_utf8_lossy(&content[..content.len().min(4096)]);
        for line in head.lines().map(str::trim) {
            if line.starts_with("package ") {
                break;
            }
            if line == "//go:build ignore" || line == "// +build ignore" {
                return false;
            }
        }
    }
    true
}

/// The patterns of the `//go:embed` directives in Go sources.
fn embed_patterns<'a>(sources: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut out = Vec::new();
    for src in sources {
        for line in String::from_utf8_lossy(src).lines() {
            let Some(rest) = line.trim_start().strip_prefix("//go:embed") else {
                continue;
            };
            if !rest.starts_with([' ', '\t']) {
                continue;
            }
            out.extend(
                rest.split_whitespace()
                    .map(|p| p.trim_matches(['"', '`']).to_owned()),
            );
        }
    }
    out
}

/// Which of `candidates` (paths relative to a package directory, files only) the embed
/// `patterns` select, as Go does: a pattern naming a directory takes the files below it, except
/// those whose names start with `.` or `_` unless the pattern has the `all:` prefix.
fn embedded(patterns: &[String], candidates: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for raw in patterns {
        let (all, pattern) = match raw.strip_prefix("all:") {
            Some(p) => (true, p),
            None => (false, raw.as_str()),
        };
        let Ok(glob) = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
        else {
            continue;
        };
        let matcher = glob.compile_matcher();
        for c in candidates {
            let parts: Vec<&str> = c.split('/').collect();
            // The file itself, or a directory above it, matches.
            for depth in 1..=parts.len() {
                if !matcher.is_match(parts[..depth].join("/")) {
                    continue;
                }
                let hidden = parts[depth..]
                    .iter()
                    .any(|p| p.starts_with('.') || p.starts_with('_'));
                if depth == parts.len() || all || !hidden {
                    out.insert(c.clone());
                }
                break;
            }
        }
    }
    out
}

/// The files `go mod vendor` would write for `packages` of one module, from its zip: vendor-
/// relative path → sha256; and the directories that were derived.
fn expected_vendor_files(
    zip_path: &Path,
    prefix: &str,
    module_path: &str,
    packages: &[String],
    strip_gomod: bool,
) -> Result<(BTreeMap<String, Sha256Digest>, BTreeSet<String>), String> {
    let file = std::fs::File::open(zip_path).map_err(|e| e.to_string())?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    // The zip's files, by module-relative path.
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let Some(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        if entry.is_dir() {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
        entries.insert(rel.to_owned(), data);
    }
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    for pkg in packages {
        let Some(sub) = pkg.strip_prefix(module_path) else {
            continue;
        };
        let sub = sub.trim_start_matches('/');
        dirs.insert(pkg.clone());
        let mut go_sources: Vec<&[u8]> = Vec::new();
        for (rel, data) in &entries {
            if parent(rel) == sub && copied_source_file(file_of(rel), data, strip_gomod) {
                files.insert(format!("{pkg}/{}", file_of(rel)), Sha256Digest::of(data));
                if rel.ends_with(".go") {
                    go_sources.push(data);
                }
            }
        }
        // Files the package embeds, below its directory.
        let below = if sub.is_empty() {
            String::new()
        } else {
            format!("{sub}/")
        };
        let candidates: Vec<String> = entries
            .keys()
            .filter_map(|rel| rel.strip_prefix(&below).map(str::to_owned))
            .filter(|r| r.contains('/'))
            .collect();
        for rel in embedded(&embed_patterns(go_sources), &candidates) {
            let data = &entries[&format!("{below}{rel}")];
            let vendor_rel = format!("{pkg}/{rel}");
            dirs.insert(parent(&vendor_rel).to_owned());
            files.insert(vendor_rel, Sha256Digest::of(data));
        }
        // Metadata from each parent directory up to the module root.
        let (mut vendor_dir, mut zip_dir) = (pkg.as_str(), sub);
        while !zip_dir.is_empty() {
            vendor_dir = parent(vendor_dir);
            zip_dir = parent(zip_dir);
            dirs.insert(vendor_dir.to_owned());
            for (rel, data) in &entries {
                if parent(rel) == zip_dir && is_metadata(file_of(rel)) {
                    files.insert(
                        format!("{vendor_dir}/{}", file_of(rel)),
                        Sha256Digest::of(data),
                    );
                }
            }
        }
    }
    Ok((files, dirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kata_3_30_0_modules_txt() {
        let text = crate::kata_fixture("3.30.0", "src/runtime/vendor/modules.txt");
        let modules = parse_modules_txt(&text, Path::new("modules.txt")).unwrap();
        assert_eq!(modules.len(), 130);
        let first = &modules[0];
        assert_eq!(first.path, "code.cloudfoundry.org/bytefmt");
        assert_eq!(
            first.version.as_deref(),
            Some("v0.0.0-20211005130812-5bb3c17173e5")
        );
        assert!(first.explicit);
        assert_eq!(first.go_version.as_deref(), Some("1.16"));
        assert_eq!(first.packages, ["code.cloudfoundry.org/bytefmt"]);
    }

    /// A vendored module with no verified zip at hand was checked only against go.mod and
    /// go.sum: its files are self-consistent (pinned by the source commit) or unpinned, never ok.
    #[test]
    fn vendored_files_without_their_zip_are_not_ok() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let h1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        std::fs::write(
            root.join("go.mod"),
            "module example.com/app\n\ngo 1.22\n\nrequire example.com/a v1.0.0\n",
        )
        .unwrap();
        std::fs::write(
            root.join("go.sum"),
            format!("example.com/a v1.0.0 {h1}\nexample.com/a v1.0.0/go.mod {h1}\n"),
        )
        .unwrap();
        let vendor = root.join("vendor");
        std::fs::create_dir_all(vendor.join("example.com/a")).unwrap();
        std::fs::write(
            vendor.join("modules.txt"),
            "# example.com/a v1.0.0\n## explicit; go 1.22\nexample.com/a\n",
        )
        .unwrap();
        std::fs::write(vendor.join("example.com/a/a.go"), "package a\n").unwrap();
        let sum = GoSum::load(&root.join("go.sum")).unwrap();
        let zips = BTreeMap::new();
        for (pinned_by, want) in [
            (
                Some("the source commit 0123abc".to_owned()),
                Outcome::SelfConsistent,
            ),
            (None, Outcome::Unpinned),
        ] {
            let report = verify(&VendorCheck {
                gomod_path: &root.join("go.mod"),
                vendor_dir: &vendor,
                sum: &sum,
                zips: &zips,
                pinned_by: pinned_by.clone(),
            })
            .unwrap();
            assert_eq!(report.findings.len(), 1, "{report:?}");
            let f = &report.findings[0];
            assert_eq!(f.name, "example.com/a@v1.0.0");
            assert_eq!(f.outcome, want, "{pinned_by:?}: {f:?}");
            assert!(!report.strictly_ok(), "{f:?}");
        }
    }

    #[test]
    fn replacements_are_read() {
        let m = parse_modules_txt(
            "# a v1.0.0 => b v1.1.0\n## explicit\na\n# c => ../c\n",
            Path::new("m"),
        )
        .unwrap();
        assert_eq!(m[0].source(), Some(("b", "v1.1.0")));
        assert_eq!(m[1].source(), None);
        assert!(parse_modules_txt("## explicit\n", Path::new("m")).is_err());
    }

    #[test]
    fn embed_patterns_select_like_go() {
        let patterns = embed_patterns([
            &b"package spec\n\n//go:embed schemas/*.json schemas/*/*.json\nvar f embed.FS\n"[..],
        ]);
        assert_eq!(patterns, ["schemas/*.json", "schemas/*/*.json"]);
        let c: Vec<String> = [
            "schemas/a.json",
            "schemas/v2/b.json",
            "schemas/v2/c.txt",
            "other/d.json",
        ]
        .map(String::from)
        .to_vec();
        let got: Vec<String> = embedded(&patterns, &c).into_iter().collect();
        assert_eq!(got, ["schemas/a.json", "schemas/v2/b.json"]);
        // A directory takes its files, but not hidden ones unless all: is given.
        let c: Vec<String> = ["static/x.css", "static/.hidden", "static/_draft/y"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            embedded(&["static".into()], &c)
                .into_iter()
                .collect::<Vec<_>>(),
            ["static/x.css"]
        );
        assert_eq!(embedded(&["all:static".into()], &c).len(), 3);
    }

    #[test]
    fn vendor_copy_rules() {
        assert!(!copied_source_file("a_test.go", b"package a", true));
        assert!(!copied_source_file("go.mod", b"module a", true));
        assert!(copied_source_file("go.mod", b"module a", false));
        assert!(!copied_source_file(
            "gen.go",
            b"//go:build ignore\n\npackage main\n",
            true
        ));
        assert!(copied_source_file(
            "a.go",
            b"//go:build linux\n\npackage a\n",
            true
        ));
        assert!(copied_source_file("asm.s", b"", true));
    }
}
