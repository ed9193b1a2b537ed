//! The release layout: which of Kata's per-component tarballs kata-repro builds, from which
//! component's outputs, at which paths under Kata's prefix (`/opt/kata`), and what Kata's merge
//! adds. A release recipe declares it in `[release]`; kata-repro checks it against the other
//! recipes before anything runs, expands it for the build, and hands it to the
//! `release-tarballs` builtin as JSON (`${release_layout}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tarball::{self, Member};

/// `[release]` of a release recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDef {
    /// Kata's install prefix, without the leading `/` (`opt/kata`).
    pub prefix: String,
    /// The zstd level (Kata's `kata_tar_zstd` uses 10).
    pub level: i32,
    /// The release tarballs, `kata-static` first.
    pub tarballs: Vec<TarballDef>,
    /// Files Kata's merge adds to every release tarball, from the Kata tree.
    #[serde(default)]
    pub merged: Vec<FileDef>,
    /// Kata's per-component tarballs that kata-repro builds.
    pub parts: Vec<PartDef>,
}

impl ReleaseDef {
    /// Every string that may hold `${…}` variables.
    pub fn strings(&self) -> impl Iterator<Item = &String> {
        let tarballs = self.tarballs.iter().map(|t| &t.file);
        let merged = self.merged.iter().flat_map(|f| [&f.path, &f.from]);
        let parts = self.parts.iter().flat_map(|p| {
            p.files
                .iter()
                .flat_map(|f| [&f.path, &f.from])
                .chain(p.links.iter().flat_map(|l| [&l.path, &l.target]))
        });
        tarballs.chain(merged).chain(parts)
    }

    /// The layout with `expand` applied to every string.
    pub fn expanded(&self, expand: &dyn Fn(&str) -> String) -> ReleaseDef {
        let file = |f: &FileDef| FileDef {
            path: expand(&f.path),
            from: expand(&f.from),
            mode: f.mode,
        };
        ReleaseDef {
            prefix: self.prefix.clone(),
            level: self.level,
            tarballs: self
                .tarballs
                .iter()
                .map(|t| TarballDef {
                    kata: t.kata.clone(),
                    file: expand(&t.file),
                    requires: t.requires.clone(),
                })
                .collect(),
            merged: self.merged.iter().map(file).collect(),
            parts: self
                .parts
                .iter()
                .map(|p| PartDef {
                    kata: p.kata.clone(),
                    component: p.component.clone(),
                    files: p.files.iter().map(file).collect(),
                    links: p
                        .links
                        .iter()
                        .map(|l| LinkDef {
                            path: expand(&l.path),
                            target: expand(&l.target),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// One release tarball.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TarballDef {
    /// Kata's name for the merge (`kata-static`, `kata-go-static`): the list in
    /// `kata-release-tarball-inputs.sh` it takes its inputs from.
    pub kata: String,
    /// The file written, `kata-static-${version}-${kata_arch}.tar.zst`.
    pub file: String,
    /// Written only when this part was built (kata-go-static needs the Go runtime).
    #[serde(default)]
    pub requires: Option<String>,
}

/// A file placed under the prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// Under the prefix; ending in `/` for a directory that takes every file of `from`.
    pub path: String,
    /// For a part, an output of its component (a declared `[[outputs]]` path); for `merged`, a
    /// path in the Kata tree.
    pub from: String,
    pub mode: u32,
}

/// A symbolic link placed under the prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDef {
    pub path: String,
    pub target: String,
}

/// One of Kata's per-component tarballs (`kata-static-kernel.tar.zst`), as kata-repro builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartDef {
    pub kata: String,
    pub component: String,
    #[serde(default)]
    pub files: Vec<FileDef>,
    #[serde(default)]
    pub links: Vec<LinkDef>,
}

/// What the builtin is handed: the layout with every variable expanded and every `from`
/// resolved to a path the step can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub prefix: String,
    pub level: i32,
    pub mtime: u64,
    /// Kata's tree, for Kata's lists of inputs and the merged files.
    pub kata: PathBuf,
    /// `amd64`, `arm64`, … as Kata's scripts name the architecture.
    pub kata_arch: String,
    pub tarballs: Vec<TarballDef>,
    pub merged: Vec<FileDef>,
    pub parts: Vec<PlannedPart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedPart {
    pub kata: String,
    pub component: String,
    /// Where the component's outputs are; `None` when this build did not build it, with why.
    pub outputs: Option<PathBuf>,
    #[serde(default)]
    pub not_built: Option<String>,
    pub files: Vec<FileDef>,
    pub links: Vec<LinkDef>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "release layout: part {kata} takes files from component `{component}`, which is neither \
         in this recipe's `needs` nor in its `uses`; add it there"
    )]
    NotNeeded { kata: String, component: String },
    #[error(
        "release layout: part {kata} takes {} from component `{component}`, whose recipe \
         declares no such output (it declares: {declared}); fix the path or add the output to \
         recipes/{component}.toml",
        missing.join(", ")
    )]
    Undeclared {
        kata: String,
        component: String,
        missing: Vec<String>,
        declared: String,
    },
    #[error("release tarball {file} needs part `{requires}`, which the layout does not define")]
    UnknownRequirement { file: String, requires: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "release layout: {part} was built, but its component's outputs lack {}: \
         the component's recipe and the layout disagree",
        missing.join(", ")
    )]
    MissingOutputs { part: String, missing: Vec<String> },
    #[error(transparent)]
    Inputs(#[from] super::inputs::InputsError),
    #[error(transparent)]
    Tarball(#[from] tarball::TarballError),
}

/// Checks the layout against the recipes before anything is built: every part's component is
/// needed or used, and every file it takes is an output that component's recipe declares.
/// `declared(component)` gives the declared output paths (None for an unknown component).
pub fn check(
    def: &ReleaseDef,
    needs: &[String],
    uses: &[String],
    declared: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<(), LayoutError> {
    for part in &def.parts {
        if !needs.contains(&part.component) && !uses.contains(&part.component) {
            return Err(LayoutError::NotNeeded {
                kata: part.kata.clone(),
                component: part.component.clone(),
            });
        }
        let outputs = declared(&part.component).unwrap_or_default();
        let missing: Vec<String> = part
            .files
            .iter()
            .filter(|f| !declares(&outputs, &f.from))
            .map(|f| f.from.clone())
            .collect();
        if !missing.is_empty() {
            return Err(LayoutError::Undeclared {
                kata: part.kata.clone(),
                component: part.component.clone(),
                missing,
                declared: outputs.join(", "),
            });
        }
    }
    for t in &def.tarballs {
        if let Some(r) = &t.requires
            && !def.parts.iter().any(|p| &p.kata == r)
        {
            return Err(LayoutError::UnknownRequirement {
                file: t.file.clone(),
                requires: r.clone(),
            });
        }
    }
    Ok(())
}

/// Where the release is built: Kata's tree, its name for the architecture, and the time every
/// member carries.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanContext {
    pub kata: PathBuf,
    pub kata_arch: String,
    pub mtime: u64,
}

/// The plan for one build: `def` with `expand` applied, each part's outputs where `built` says
/// its component's outputs are, or why it was not built.
pub fn plan(
    def: &ReleaseDef,
    expand: &dyn Fn(&str) -> String,
    ctx: PlanContext,
    built: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Plan {
    let def = def.expanded(expand);
    let parts = def
        .parts
        .into_iter()
        .map(|p| {
            let (outputs, not_built) = match built(&p.component) {
                Ok(dir) => (Some(dir), None),
                Err(why) => (None, Some(why)),
            };
            PlannedPart {
                kata: p.kata,
                component: p.component,
                outputs,
                not_built,
                files: p.files,
                links: p.links,
            }
        })
        .collect();
    Plan {
        prefix: def.prefix,
        level: def.level,
        mtime: ctx.mtime,
        kata: ctx.kata,
        kata_arch: ctx.kata_arch,
        tarballs: def.tarballs,
        merged: def.merged,
        parts,
    }
}

/// Whether the declared output path `declared` covers `rel` (a path under the output
/// directory): itself, or, for a directory (`dir/`), everything under it. The one rule every
/// check of outputs follows.
pub fn path_declares(declared: &str, rel: &str) -> bool {
    if declared.ends_with('/') {
        rel.starts_with(declared)
    } else {
        declared == rel
    }
}

/// Whether `from` is one of `outputs` (declared paths; `dir/` covers what is under it).
fn declares(outputs: &[String], from: &str) -> bool {
    outputs.iter().any(|o| path_declares(o, from))
}

/// The members one built part contributes, under the prefix.
pub fn part_members(
    prefix: &str,
    part: &PlannedPart,
    outputs: &Path,
) -> Result<Vec<Member>, LayoutError> {
    let mut members = Vec::new();
    let mut missing = Vec::new();
    for f in &part.files {
        let src = outputs.join(&f.from);
        if f.path.ends_with('/') {
            let dir = src;
            let mut names = Vec::new();
            match std::fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|source| LayoutError::Io {
                            path: dir.clone(),
                            source,
                        })?;
                        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                            names.push(e.file_name().to_string_lossy().into_owned());
                        }
                    }
                }
                Err(_) => missing.push(f.from.clone()),
            }
            names.sort();
            for n in names {
                members.push(Member::file(
                    &format!("{prefix}/{}{n}", f.path),
                    dir.join(&n),
                    f.mode,
                ));
            }
        } else if src.is_file() {
            members.push(Member::file(&format!("{prefix}/{}", f.path), src, f.mode));
        } else {
            missing.push(f.from.clone());
        }
    }
    if !missing.is_empty() {
        return Err(LayoutError::MissingOutputs {
            part: part.kata.clone(),
            missing,
        });
    }
    for l in &part.links {
        members.push(Member::symlink(&format!("{prefix}/{}", l.path), &l.target));
    }
    Ok(members)
}

/// What the builtin did: per tarball written, its members, and what Kata merges that this
/// build does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Written {
    pub file: String,
    pub members: usize,
    pub built: Vec<String>,
    /// Kata's per-component tarballs merged there that kata-repro did not build, with why.
    pub not_built: BTreeMap<String, String>,
}

/// A release tarball of the layout that was not written, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    pub file: String,
    pub why: String,
}

/// What `write_all` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub written: Vec<Written>,
    pub left_out: Vec<LeftOut>,
}

/// Writes every release tarball of `plan` into `out`. A tarball whose required part was not
/// built, or for which the release's Kata tree names no inputs, is left out and said so.
/// Nothing is written unless every written part's files are there.
pub fn write_all(plan: &Plan, out: &Path, threads: u32) -> Result<Release, LayoutError> {
    let lists = super::inputs::kata_inputs(&plan.kata, &plan.kata_arch)?;
    let mut by_kata: BTreeMap<&str, Vec<Member>> = BTreeMap::new();
    for p in &plan.parts {
        if let Some(o) = &p.outputs {
            by_kata.insert(&p.kata, part_members(&plan.prefix, p, o)?);
        }
    }
    let mut merged = Vec::new();
    for f in &plan.merged {
        let src = plan.kata.join(&f.from);
        if !src.is_file() {
            return Err(LayoutError::MissingOutputs {
                part: "the merge".into(),
                missing: vec![src.display().to_string()],
            });
        }
        merged.push(Member::file(
            &format!("{}/{}", plan.prefix, f.path),
            src,
            f.mode,
        ));
    }
    let mut jobs = Vec::new();
    let mut left_out = Vec::new();
    for t in &plan.tarballs {
        if let Some(r) = &t.requires
            && !by_kata.contains_key(r.as_str())
        {
            let why = why_not_built(plan, r);
            left_out.push(LeftOut {
                file: t.file.clone(),
                why: format!("it needs {r}, which was not built ({why})"),
            });
            continue;
        }
        let Some(inputs) = lists.get(&t.kata) else {
            left_out.push(LeftOut {
                file: t.file.clone(),
                why: format!(
                    "Kata {} names no inputs of {} for {}",
                    plan_version(plan),
                    t.kata,
                    plan.kata_arch
                ),
            });
            continue;
        };
        let mut members = merged.clone();
        let mut built = Vec::new();
        let mut not_built = BTreeMap::new();
        for input in inputs {
            match by_kata.get(input.as_str()) {
                Some(m) => {
                    built.push(input.clone());
                    members.extend(m.iter().cloned());
                }
                None => {
                    not_built.insert(input.clone(), why_not_built(plan, input));
                }
            }
        }
        jobs.push((t, dedup_links(members), built, not_built));
    }
    let mut written = Vec::new();
    let staged = tempfile::Builder::new()
        .prefix(".release-")
        .tempdir_in(out)
        .map_err(|source| LayoutError::Io {
            path: out.to_owned(),
            source,
        })?;
    for (t, members, built, not_built) in jobs {
        let opts = tarball::Options {
            mtime: plan.mtime,
            level: plan.level,
            threads,
            implied_dir_mode: 0o755,
        };
        let stats = tarball::write(&members, &staged.path().join(&t.file), &opts)?;
        written.push(Written {
            file: t.file.clone(),
            members: stats.members,
            built,
            not_built,
        });
    }
    for w in &written {
        let from = staged.path().join(&w.file);
        let to = out.join(&w.file);
        std::fs::rename(&from, &to).map_err(|source| LayoutError::Io { path: to, source })?;
    }
    Ok(Release { written, left_out })
}

/// Why Kata's per-component tarball `kata` is not in this build.
fn why_not_built(plan: &Plan, kata: &str) -> String {
    plan.parts
        .iter()
        .find(|p| p.kata == kata)
        .and_then(|p| p.not_built.clone())
        .unwrap_or_else(|| "kata-repro has no recipe for it".into())
}

/// The release of the plan's Kata tree, from its VERSION, for messages.
fn plan_version(plan: &Plan) -> String {
    std::fs::read_to_string(plan.kata.join("VERSION"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|_| "of this tree".into())
}

/// The same symbolic link given by two parts (Kata's shims both make
/// `share/defaults/kata-containers/configuration.toml`) is kept once, as Kata's merge, which
/// unpacks one tarball over the other, keeps it.
/// A link given twice with different targets stays twice, and the writer refuses it.
fn dedup_links(members: Vec<Member>) -> Vec<Member> {
    let mut out: Vec<Member> = Vec::with_capacity(members.len());
    for m in members {
        let is_link = matches!(m.kind, tarball::Kind::Symlink { .. });
        if !(is_link && out.contains(&m)) {
            out.push(m);
        }
    }
    out
}

/// What a written tarball holds, as lines for the build's notes: never "complete" unless Kata
/// merges nothing there that this build lacks.
pub fn summary(w: &Written) -> Vec<String> {
    let total = w.built.len() + w.not_built.len();
    let mut lines = vec![if w.not_built.is_empty() {
        format!(
            "{}: {} members, all {total} of the per-component tarballs Kata merges there",
            w.file, w.members
        )
    } else {
        format!(
            "{}: {} members; PARTIAL: {} of the {total} per-component tarballs Kata merges there \
             ({})",
            w.file,
            w.members,
            w.built.len(),
            w.built.join(", ")
        )
    }];
    for (name, why) in &w.not_built {
        lines.push(format!("{}: not built: {name} ({why})", w.file));
    }
    lines
}

/// The note for a release tarball left out.
pub fn left_out_note(l: &LeftOut) -> String {
    format!("{}: not written: {}", l.file, l.why)
}
