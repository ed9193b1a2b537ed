//! `kata-repro diff A B`: which artifacts of two builds differ, and why.
//!
//! Each side is a manifest or an output directory. Input differences (release, source,
//! toolchains, host tools, recipes, environment) come first, because they explain output
//! differences. Every artifact is then identical, differing, added or removed; for a differing
//! artifact whose bytes are at hand, the explanation goes down to the ELF section (with the
//! strings that differ in it: embedded paths, dates), the archive member, or the partition and
//! the file of a disk image.

pub mod explain;
pub mod follows;
pub mod image;
pub mod tarball;
pub mod trees;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::{Artifact, MANIFEST_FILE, Manifest, ManifestError, scan_dir};

pub use explain::{Change, Detail};
pub use follows::FollowsFrom;

/// One side of a comparison.
#[derive(Debug)]
pub struct Side {
    pub label: String,
    pub manifest: Option<Manifest>,
    pub artifacts: Vec<Artifact>,
    /// Where the artifacts' bytes are, when they are at hand.
    pub dir: Option<PathBuf>,
    /// For a side that is one file (a release tarball, say): where it is.
    pub single: Option<PathBuf>,
}

impl Side {
    /// A manifest file, an output directory with a manifest, or any directory.
    pub fn open(path: &Path) -> Result<Self, ManifestError> {
        let label = path.display().to_string();
        if path.is_dir() {
            let m = path.join(MANIFEST_FILE);
            if m.is_file() {
                let manifest = Manifest::load(&m)?;
                return Ok(Self {
                    label,
                    artifacts: manifest.artifacts.clone(),
                    manifest: Some(manifest),
                    dir: Some(path.to_owned()),
                    single: None,
                });
            }
            return Ok(Self {
                label,
                manifest: None,
                artifacts: scan_dir(path)?,
                dir: Some(path.to_owned()),
                single: None,
            });
        }
        if path.extension().is_none_or(|e| e != "json") {
            return Self::one_file(path);
        }
        let manifest = Manifest::load(path)?;
        let dir = path.parent().map(Path::to_owned);
        Ok(Self {
            label,
            artifacts: manifest.artifacts.clone(),
            manifest: Some(manifest),
            dir,
            single: None,
        })
    }

    /// A side that is one file, its artifact named by its file name.
    fn one_file(path: &Path) -> Result<Self, ManifestError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| ManifestError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let sha256 = crate::digest::Sha256Digest::of_file(path).map_err(read)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            label: path.display().to_string(),
            manifest: None,
            artifacts: vec![Artifact {
                path: name,
                size: meta.len(),
                mode: format!("{:04o}", meta.permissions().mode() & 0o7777),
                sha256,
            }],
            dir: None,
            single: Some(path.to_owned()),
        })
    }

    /// Two one-file sides are the same artifact whatever their names: `other` takes this
    /// side's name.
    pub fn pair(&self, other: &mut Side) {
        if let (Some(_), Some(_), [mine], [theirs]) = (
            &self.single,
            &other.single,
            &self.artifacts[..],
            &mut other.artifacts[..],
        ) {
            theirs.path = mine.path.clone();
        }
    }

    /// An artifact checked by its size alone: absent, resized, or taken to match.
    fn size_check(&self, a: &Artifact) -> OnDisk {
        let Some(p) = self.dir.as_ref().map(|d| d.join(&a.path)) else {
            return OnDisk::Absent;
        };
        match std::fs::metadata(&p) {
            Err(_) => OnDisk::Absent,
            Ok(m) if m.len() == a.size => OnDisk::Matches(p),
            Ok(m) => OnDisk::Resized(m.len()),
        }
    }

    /// The bytes of an artifact: absent (no output directory, or no such file), or present and
    /// matching the recorded digest, or present and changed since the manifest was written.
    fn file(&self, a: &Artifact) -> OnDisk {
        let p = match &self.single {
            Some(p) => Some(p.clone()),
            None => self.dir.as_ref().map(|d| d.join(&a.path)),
        };
        let Some(p) = p else {
            return OnDisk::Absent;
        };
        match crate::digest::Sha256Digest::of_file(&p) {
            Err(_) => OnDisk::Absent,
            Ok(d) if d == a.sha256 => OnDisk::Matches(p),
            Ok(d) => OnDisk::Changed(d),
        }
    }
}

enum OnDisk {
    Absent,
    Matches(PathBuf),
    Changed(crate::digest::Sha256Digest),
    /// Present, with another size than its manifest says.
    Resized(u64),
}

impl OnDisk {
    /// How an output directory's file disagrees with its manifest, if it does.
    fn modified(&self, side: &Side, x: &Artifact) -> Option<String> {
        let (label, path) = (&side.label, &x.path);
        match self {
            OnDisk::Matches(_) => None,
            // A one-file side, or a manifest without its directory: nothing to compare.
            OnDisk::Absent if side.dir.as_ref().is_none_or(|d| !d.is_dir()) => None,
            OnDisk::Absent => Some(format!(
                "{label}: {path} is listed in its manifest but missing"
            )),
            OnDisk::Changed(d) => Some(format!(
                "{label}: {path} is sha256 {d}, but its manifest says {}",
                x.sha256
            )),
            OnDisk::Resized(n) => Some(format!(
                "{label}: {path} is {n} bytes, but its manifest says {}",
                x.size
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputDifference {
    pub what: String,
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactDiff {
    pub path: String,
    pub a: Artifact,
    pub b: Artifact,
    pub details: Vec<Detail>,
    /// The differing artifact this difference follows from, with the evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<FollowsFrom>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffReport {
    pub inputs: Vec<InputDifference>,
    pub identical: Vec<String>,
    pub differing: Vec<ArtifactDiff>,
    /// Only in B.
    pub added: Vec<String>,
    /// Only in A.
    pub removed: Vec<String>,
    /// Files in an output directory that no longer match its own manifest.
    pub modified: Vec<String>,
}

impl DiffReport {
    /// Whether the artifacts are bit-for-bit the same.
    pub fn same(&self) -> bool {
        self.differing.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.modified.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Hand differing files to diffoscope, when installed.
    pub deep: bool,
    /// Re-hash every file of an output directory against its manifest. Without it, two
    /// manifests are compared first and only the files they disagree on are read; every other
    /// file is checked by its size alone.
    pub verify_files: bool,
}

pub fn diff(a: &Side, b: &Side, options: &Options) -> DiffReport {
    let mut report = DiffReport::default();
    if let (Some(ma), Some(mb)) = (&a.manifest, &b.manifest) {
        report.inputs = input_differences(ma, mb);
    }
    let by_path = |s: &Side| -> BTreeMap<String, Artifact> {
        s.artifacts
            .iter()
            .map(|x| (x.path.clone(), x.clone()))
            .collect()
    };
    let (pa, pb) = (by_path(a), by_path(b));
    // An output directory's files must still be what its manifest says: every one re-hashed
    // with `verify_files`, else by its size, and those the manifests disagree on re-hashed
    // below, as they are explained.
    for side in [a, b] {
        if side.manifest.is_none() || !side.dir.as_ref().is_some_and(|d| d.is_dir()) {
            continue;
        }
        for x in &side.artifacts {
            let state = if options.verify_files {
                side.file(x)
            } else {
                side.size_check(x)
            };
            if let Some(line) = state.modified(side, x) {
                report.modified.push(line);
            }
        }
    }
    for (path, x) in &pa {
        match pb.get(path) {
            None => report.removed.push(path.clone()),
            Some(y) if x.sha256 == y.sha256 && x.mode == y.mode => {
                report.identical.push(path.clone())
            }
            Some(y) => {
                let mut details = Vec::new();
                if x.mode != y.mode {
                    details.push(Detail::Mode {
                        a: x.mode.clone(),
                        b: y.mode.clone(),
                    });
                }
                if x.sha256 != y.sha256 {
                    let (fa, fb) = (a.file(x), b.file(y));
                    if !options.verify_files {
                        for (side, state, art) in [(a, &fa, x), (b, &fb, y)] {
                            let said = format!("{}: {} is", side.label, art.path);
                            let line = side.manifest.as_ref().and(state.modified(side, art));
                            if let Some(line) = line
                                .filter(|_| !report.modified.iter().any(|l| l.starts_with(&said)))
                            {
                                report.modified.push(line);
                            }
                        }
                    }
                    match (fa, fb) {
                        (OnDisk::Matches(fa), OnDisk::Matches(fb)) => {
                            details.extend(explain::explain(&fa, &fb));
                            if options.deep {
                                details.push(explain::diffoscope(&fa, &fb));
                            }
                        }
                        (OnDisk::Changed(..), _) | (_, OnDisk::Changed(..)) => {
                            details.push(Detail::Unavailable {
                                reason: "a file on disk no longer matches its manifest (see \
                                         `modified`): only the manifests' digests were compared"
                                    .into(),
                            })
                        }
                        _ => details.push(Detail::Unavailable {
                            reason: "the bytes of one side are not at hand (a manifest without \
                                     its output directory): only digests were compared"
                                .into(),
                        }),
                    }
                }
                report.differing.push(ArtifactDiff {
                    path: path.clone(),
                    a: x.clone(),
                    b: y.clone(),
                    details,
                    follows: None,
                });
            }
        }
    }
    report.added = pb
        .keys()
        .filter(|p| !pa.contains_key(*p))
        .cloned()
        .collect();
    if let (Some(da), Some(db)) = (&a.dir, &b.dir) {
        follows::link(&mut report.differing, da, db);
    }
    report
}

fn push(
    out: &mut Vec<InputDifference>,
    what: impl Into<String>,
    a: impl ToString,
    b: impl ToString,
) {
    let (a, b) = (a.to_string(), b.to_string());
    if a != b {
        out.push(InputDifference {
            what: what.into(),
            a,
            b,
        });
    }
}

/// What went into two builds, compared: the explanation for any output difference.
pub fn input_differences(a: &Manifest, b: &Manifest) -> Vec<InputDifference> {
    let mut out = Vec::new();
    push(&mut out, "release", &a.release, &b.release);
    push(&mut out, "arch", &a.arch, &b.arch);
    push(
        &mut out,
        "source commit",
        &a.source.commit,
        &b.source.commit,
    );
    push(&mut out, "source tree", &a.source.tree, &b.source.tree);
    push(
        &mut out,
        "lockfile sha256",
        a.lockfile.sha256,
        b.lockfile.sha256,
    );
    push(
        &mut out,
        "SOURCE_DATE_EPOCH",
        a.source_date_epoch,
        b.source_date_epoch,
    );
    push(
        &mut out,
        "generator",
        &a.generator.version,
        &b.generator.version,
    );
    let (ea, eb) = (&a.environment, &b.environment);
    push(
        &mut out,
        "isolation",
        format!("{:?}", ea.isolation),
        format!("{:?}", eb.isolation),
    );
    push(&mut out, "network", &ea.network, &eb.network);
    push(&mut out, "build root", &ea.root, &eb.root);
    push(&mut out, "hostname", &ea.hostname, &eb.hostname);
    push(&mut out, "umask", &ea.umask, &eb.umask);
    push(&mut out, "TZ", &ea.tz, &eb.tz);
    push(&mut out, "locale", &ea.locale, &eb.locale);
    push(
        &mut out,
        "variations",
        ea.variations.join(","),
        eb.variations.join(","),
    );
    let names: BTreeSet<&str> = a
        .components
        .iter()
        .chain(&b.components)
        .map(|c| c.name.as_str())
        .collect();
    for name in names {
        let ca = a.components.iter().find(|c| c.name == name);
        let cb = b.components.iter().find(|c| c.name == name);
        let (ca, cb) = match (ca, cb) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                push(
                    &mut out,
                    format!("component {name}"),
                    if x.is_some() { "built" } else { "not built" },
                    if y.is_some() { "built" } else { "not built" },
                );
                continue;
            }
        };
        push(
            &mut out,
            format!("{name}: recipe"),
            ca.recipe.sha256,
            cb.recipe.sha256,
        );
        let tools = |c: &crate::manifest::ComponentRecord| -> BTreeMap<String, String> {
            c.toolchains
                .iter()
                .map(|t| {
                    (
                        format!("toolchain {}", t.name),
                        format!("{} {}", t.version, t.digest),
                    )
                })
                .chain(c.host_tools.iter().map(|t| {
                    (
                        format!("host tool {}", t.name),
                        format!(
                            "{} sha256:{}{}",
                            t.resolved.display(),
                            t.sha256,
                            t.package
                                .as_ref()
                                .map(|p| format!(" ({} {})", p.name, p.version))
                                .unwrap_or_default()
                        ),
                    )
                }))
                .chain(c.host_packages.iter().map(|p| {
                    (
                        format!("host package {}", p.name),
                        format!("{} {}", p.version, p.arch),
                    )
                }))
                .chain(
                    c.inputs
                        .iter()
                        .map(|i| (format!("input {}", i.name), i.digest.clone())),
                )
                .collect()
        };
        let (ta, tb) = (tools(ca), tools(cb));
        let keys: BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
        for k in keys {
            let none = String::from("(none)");
            push(
                &mut out,
                format!("{name}: {k}"),
                ta.get(k).unwrap_or(&none),
                tb.get(k).unwrap_or(&none),
            );
        }
        if out.iter().all(|d| !d.what.starts_with(&format!("{name}:"))) {
            // Same inputs; a different key means the commands or environment differ.
            push(
                &mut out,
                format!("{name}: action key"),
                ca.action_key,
                cb.action_key,
            );
        }
    }
    out
}
