//! Recipes: one declarative TOML per component (see `recipes/README.md`).
//!
//! A recipe names the toolchains and host tools its steps may use, the inputs they read, its
//! environment (common and per architecture), its steps as argv lists and its outputs. Loading
//! checks everything that can be checked before a step runs: unknown keys, unknown variables,
//! and references to `${out}/…` that no `[[outputs]]` entry declares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

pub mod vars;

/// The recipe schema this build reads.
pub const SCHEMA: u32 = 1;

/// The recipes shipped with kata-repro, used unless `--recipes DIR` is given.
pub static BUILTIN: include_dir::Dir<'_> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/recipes");

/// The variable that names where a needed component's outputs are: `needs_<component>`, with
/// `-` and `.` as `_`.
pub fn needs_var(component: &str) -> String {
    format!("needs_{}", component.replace(['-', '.'], "_"))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Toolchain {
    /// Go, unpacked from the lockfile's pinned archive.
    Go,
    /// The Rust toolchain (the pinned one where installed, else the one actually used).
    Rust,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// The workspace's crates as a verified vendor tree, at `${cargo_vendor}`, with a cargo
    /// config in `$CARGO_HOME` that replaces every source with it.
    CargoVendor,
    /// The Go module's dependencies: its committed `vendor/`, verified against go.mod and go.sum
    /// (`${gomod}` = `vendor`, `${goproxy}` = `off`); or, where none is committed, every module
    /// of go.sum from `--go-proxy`, verified against its `h1:` hash into the store and served to
    /// the step read-only as a `file://` proxy (`${gomod}` = `readonly`, `${goproxy}` = its URL).
    GoModules,
    /// The lockfile's rootfs packages for the architecture, verified against their sha256 and
    /// their control data; `${rootfs_packages}` lists them for the `unpack-debs` builtin.
    RootfsPackages,
    /// The recipe's `[release]` layout, expanded and resolved against the components built
    /// before it, as JSON at `${release_layout}` for the `release-tarballs` builtin.
    ReleaseLayout,
}

/// What `${src}` is: the tree a recipe's steps build in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceTree {
    /// The pinned Kata checkout.
    #[default]
    Kata,
    /// The pinned kernel tarball, verified and unpacked; the Kata checkout is at `${kata}`.
    Kernel,
}

/// Steps kata-repro runs itself (inside the same sandbox, as `kata-repro builtin …`): work no
/// host tool does reproducibly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Builtin {
    /// `FRAGMENTS_DIR KERNEL_ARCH CONF_GUEST MEASURED(yes|no) LIST`: the config fragments
    /// Kata's build-kernel.sh merges, one path per line, into LIST.
    KernelFragments,
    /// `FRAGMENTS_DIR LIST CONFIG REPORT [WHITELIST…]`: which requested options are not in the
    /// final CONFIG, as JSON in REPORT (and as notes in the manifest).
    KernelConfigReport,
    /// `LIST DEST`: unpacks the packages LIST names into DEST, merged-/usr, no maintainer
    /// scripts.
    UnpackDebs,
    /// `TREE FILE`: TREE as a deterministic gzip-compressed newc cpio.
    Initrd,
    /// `LAYOUT OUT`: the release tarballs LAYOUT (`${release_layout}`) describes, into OUT.
    ReleaseTarballs,
}

impl Builtin {
    /// The fewest and most arguments it takes.
    pub fn arity(self) -> (usize, usize) {
        match self {
            Builtin::KernelFragments => (5, 5),
            Builtin::KernelConfigReport => (4, usize::MAX),
            Builtin::UnpackDebs => (2, 2),
            Builtin::Initrd => (2, 2),
            Builtin::ReleaseTarballs => (2, 2),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::KernelFragments => "kernel-fragments",
            Builtin::KernelConfigReport => "kernel-config-report",
            Builtin::UnpackDebs => "unpack-debs",
            Builtin::Initrd => "initrd",
            Builtin::ReleaseTarballs => "release-tarballs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub schema: u32,
    pub component: String,
    pub description: String,
    /// The tree `${src}` holds.
    #[serde(default)]
    pub source: SourceTree,
    /// The step's working directory, relative to the source root.
    #[serde(default)]
    pub workdir: String,
    /// Components built first, whose outputs the steps read at `${needs_<component>}`.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Like `needs`, but only where the lockfile can build the component (say, a rootfs whose
    /// packages it pins); otherwise `${needs_<component>}` is empty and a note says so.
    #[serde(default)]
    pub uses: Vec<String>,
    #[serde(default)]
    pub toolchains: Vec<Toolchain>,
    /// Programs from the host put on PATH (their resolved paths and digests are recorded),
    /// each under the Debian package that provides it where the recipe says.
    #[serde(default)]
    pub host_tools: HostTools,
    /// Host packages whose versions are recorded and make part of every step's key (headers,
    /// libraries and compiler internals that no tool name covers).
    #[serde(default)]
    pub host_packages: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// Answer `git rev-parse HEAD` with the pinned commit (and `git status` with a clean tree),
    /// for build files that ask git; nothing else of git is provided.
    #[serde(default)]
    pub vcs_shim: bool,
    /// The architectures this recipe builds for, each with its own vars and env.
    pub arch: BTreeMap<String, ArchSection>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(rename = "steps")]
    pub steps: Vec<StepDef>,
    pub outputs: Vec<OutputDef>,
    /// For a release recipe: Kata's release tarballs and how the components are laid out in
    /// them (`crate::release::layout`).
    #[serde(default)]
    pub release: Option<crate::release::layout::ReleaseDef>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSection {
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host tools needed only for this architecture (a cross compiler, say).
    #[serde(default)]
    pub host_tools: HostTools,
    /// Host packages needed only for this architecture.
    #[serde(default)]
    pub host_packages: Vec<String>,
}

/// A recipe's host tools: bare program names (`host_tools = ["sh", "make"]`), or each under the
/// Debian package that provides it (`[host_tools]` with `coreutils = ["cat", "cut"]`), which is
/// what `kata-repro setup` installs when one is missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HostTools {
    ByPackage(BTreeMap<String, Vec<String>>),
    Names(Vec<String>),
}

impl Default for HostTools {
    fn default() -> Self {
        HostTools::Names(Vec::new())
    }
}

impl<'de> Deserialize<'de> for HostTools {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HostTools;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a list of program names, or a table of Debian package = [program names]",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<HostTools, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(HostTools::Names)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<HostTools, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(HostTools::ByPackage)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl HostTools {
    /// Each tool, with the package the recipe says provides it.
    pub fn entries(&self) -> Vec<(&str, Option<&str>)> {
        match self {
            HostTools::Names(names) => names.iter().map(|n| (n.as_str(), None)).collect(),
            HostTools::ByPackage(by) => by
                .iter()
                .flat_map(|(pkg, tools)| {
                    tools.iter().map(move |t| (t.as_str(), Some(pkg.as_str())))
                })
                .collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries().into_iter().map(|(t, _)| t)
    }
}

impl Recipe {
    /// The host tools a build for `arch` needs: the common ones, then the arch's own.
    pub fn host_tools_for(&self, arch: &str) -> Vec<String> {
        self.host_tool_packages_for(arch)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    /// The host tools a build for `arch` needs, each with the Debian package the recipe says
    /// provides it (none where the recipe lists bare names).
    pub fn host_tool_packages_for(&self, arch: &str) -> Vec<(String, Option<String>)> {
        let own = self.host_tools.entries();
        let extra = self
            .arch
            .get(arch)
            .map(|a| a.host_tools.entries())
            .unwrap_or_default();
        own.into_iter()
            .chain(extra)
            .map(|(t, p)| (t.to_owned(), p.map(str::to_owned)))
            .collect()
    }

    pub fn host_packages_for(&self, arch: &str) -> Vec<String> {
        let extra = self.arch.get(arch).map(|a| a.host_packages.as_slice());
        self.host_packages
            .iter()
            .chain(extra.unwrap_or_default())
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub name: String,
    /// The program and its arguments; or, for a builtin, nothing.
    #[serde(default)]
    pub argv: Vec<String>,
    /// A step kata-repro runs itself, with `args`.
    #[serde(default)]
    pub builtin: Option<Builtin>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for this step only.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    /// Where the output is installed, relative to the component's output directory. A path
    /// ending in `/` is a directory that receives every file `from` matches.
    pub path: String,
    /// Where a step left it, relative to the source root (a glob when `path` is a directory).
    /// Without `from`, a step writes it to `${out}/<path>` itself.
    #[serde(default)]
    pub from: Option<String>,
    /// The mode it is installed with (normalised: whatever the build left is replaced).
    pub mode: u32,
    /// May be absent (a release tarball written only when what it needs was built).
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}{at}: {message}", at = line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("no recipe for component `{component}` (known: {known}); add recipes/{component}.toml")]
    Unknown { component: String, known: String },
}

/// A recipe and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub recipe: Recipe,
    pub path: PathBuf,
    /// sha256 of the recipe file's bytes.
    pub digest: Sha256Digest,
    /// The recipe file's text, as `digest` hashed it.
    pub text: std::sync::Arc<str>,
}

/// Where recipes are read from.
#[derive(Debug, Clone)]
pub enum RecipeSource {
    Builtin,
    Dir(PathBuf),
}

impl RecipeSource {
    /// Every recipe, by component name.
    pub fn load_all(&self) -> Result<BTreeMap<String, LoadedRecipe>, RecipeError> {
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        match self {
            RecipeSource::Builtin => {
                for f in BUILTIN.files() {
                    if f.path().extension().is_some_and(|e| e == "toml") {
                        let text = f.contents_utf8().unwrap_or_default().to_owned();
                        files.push((Path::new("recipes").join(f.path()), text));
                    }
                }
            }
            RecipeSource::Dir(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|source| RecipeError::Read {
                    path: dir.clone(),
                    source,
                })?;
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|e| e == "toml") {
                        let text =
                            std::fs::read_to_string(&p).map_err(|source| RecipeError::Read {
                                path: p.clone(),
                                source,
                            })?;
                        files.push((p, text));
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (path, text) in files {
            let loaded = parse(&text, &path)?;
            let expected = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            if expected.as_deref() != Some(loaded.recipe.component.as_str()) {
                return Err(invalid(
                    &path,
                    &text,
                    "component",
                    format!(
                        "component `{}` must be named {}.toml",
                        loaded.recipe.component, loaded.recipe.component
                    ),
                ));
            }
            out.insert(loaded.recipe.component.clone(), (loaded, text));
        }
        for (loaded, text) in out.values() {
            check_release(loaded, text, &out)?;
        }
        Ok(out.into_iter().map(|(k, (l, _))| (k, l)).collect())
    }
}

/// A release recipe's layout against the other recipes: each part's component is needed or
/// used, and each file it takes is one of that component's declared outputs.
fn check_release(
    loaded: &LoadedRecipe,
    text: &str,
    all: &BTreeMap<String, (LoadedRecipe, String)>,
) -> Result<(), RecipeError> {
    let r = &loaded.recipe;
    let Some(release) = &r.release else {
        return Ok(());
    };
    let declared = |component: &str| {
        all.get(component)
            .map(|(l, _)| l.recipe.outputs.iter().map(|o| o.path.clone()).collect())
    };
    crate::release::layout::check(release, &r.needs, &r.uses, &declared).map_err(|e| {
        let needle = match &e {
            crate::release::layout::LayoutError::NotNeeded { kata, .. }
            | crate::release::layout::LayoutError::Undeclared { kata, .. } => kata.clone(),
            crate::release::layout::LayoutError::UnknownRequirement { file, .. } => file.clone(),
            _ => "[release]".to_owned(),
        };
        invalid(&loaded.path, text, &needle, e.to_string())
    })
}

fn invalid(path: &Path, text: &str, needle: &str, message: String) -> RecipeError {
    RecipeError::Invalid {
        path: path.to_owned(),
        line: text.find(needle).map(|o| crate::lock::line_col(text, o).0),
        message,
    }
}

/// Debian Policy 5.6.1: at least two characters of `[a-z0-9+.-]`, the first alphanumeric.
fn is_debian_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Parses and checks one recipe.
pub fn parse(text: &str, path: &Path) -> Result<LoadedRecipe, RecipeError> {
    let recipe: Recipe = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| crate::lock::line_col(text, s.start))
            .unwrap_or((1, 1));
        RecipeError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    if recipe.schema != SCHEMA {
        return Err(invalid(
            path,
            text,
            "schema",
            format!(
                "recipe schema {} is not {SCHEMA}, the one this kata-repro reads",
                recipe.schema
            ),
        ));
    }
    if recipe.steps.is_empty() {
        return Err(invalid(
            path,
            text,
            "component",
            "a recipe needs at least one [[steps]]".into(),
        ));
    }
    if recipe.outputs.is_empty() {
        return Err(invalid(
            path,
            text,
            "component",
            "a recipe needs at least one [[outputs]]".into(),
        ));
    }
    check_names(&recipe, path, text)?;
    check_vars(&recipe, path, text)?;
    check_outputs(&recipe, path, text)?;
    Ok(LoadedRecipe {
        recipe,
        path: path.to_owned(),
        digest: Sha256Digest::of(text.as_bytes()),
        text: text.into(),
    })
}

/// A name a recipe may not use: what to point at in its text, and why.
struct Bad {
    needle: String,
    message: String,
}

fn bad(needle: &str, message: String) -> Bad {
    Bad {
        needle: needle.to_owned(),
        message,
    }
}

/// A plain name: letters, digits, `-`, `_` and `.`, not starting with a dot.
fn safe(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_names(recipe: &Recipe, path: &Path, text: &str) -> Result<(), RecipeError> {
    check_places(recipe)
        .and_then(|()| check_steps(recipe))
        .and_then(|()| check_host_names(recipe))
        .and_then(|()| check_output_paths(recipe))
        .map_err(|b| invalid(path, text, &b.needle, b.message))
}

/// The component's name, the workdir, and the components it needs or uses.
fn check_places(recipe: &Recipe) -> Result<(), Bad> {
    if !safe(&recipe.component) {
        return Err(bad(
            "component",
            format!(
                "component `{}` must be a plain name (letters, digits, -, _, .)",
                recipe.component
            ),
        ));
    }
    let wd = Path::new(&recipe.workdir);
    if wd.is_absolute()
        || wd
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(
            "workdir",
            format!(
                "workdir `{}` must be a relative path inside the source",
                recipe.workdir
            ),
        ));
    }
    for n in recipe.needs.iter().chain(&recipe.uses) {
        if !safe(n) || *n == recipe.component {
            return Err(bad(
                n,
                format!("`{n}` in needs/uses must be another component's name"),
            ));
        }
    }
    Ok(())
}

/// Each step's name, command and builtin arguments.
fn check_steps(recipe: &Recipe) -> Result<(), Bad> {
    let mut seen = BTreeSet::new();
    for s in &recipe.steps {
        if !safe(&s.name) {
            return Err(bad(
                &format!("\"{}\"", s.name),
                format!(
                    "step name `{}` must be a plain name (letters, digits, -, _, .)",
                    s.name
                ),
            ));
        }
        match s.builtin {
            None if s.argv.is_empty() => {
                return Err(bad(
                    &format!("\"{}\"", s.name),
                    format!(
                        "step `{}` has an empty argv (give argv, or builtin and args)",
                        s.name
                    ),
                ));
            }
            None if !s.args.is_empty() => {
                return Err(bad(
                    &format!("\"{}\"", s.name),
                    format!(
                        "step `{}` has args but no builtin; put them in argv",
                        s.name
                    ),
                ));
            }
            Some(b) if !s.argv.is_empty() => {
                return Err(bad(
                    &format!("\"{}\"", s.name),
                    format!(
                        "step `{}` is builtin `{}`: give its arguments as args, not argv",
                        s.name,
                        b.name()
                    ),
                ));
            }
            Some(b) => {
                let (min, max) = b.arity();
                if s.args.len() < min || s.args.len() > max {
                    return Err(bad(
                        &format!("\"{}\"", s.name),
                        format!(
                            "builtin `{}` of step `{}` takes {} arguments, not {}",
                            b.name(),
                            s.name,
                            if min == max {
                                min.to_string()
                            } else {
                                format!("at least {min}")
                            },
                            s.args.len()
                        ),
                    ));
                }
            }
            None => {}
        }
        if !seen.insert(&s.name) {
            return Err(bad(
                &format!("\"{}\"", s.name),
                format!("two steps are named `{}`", s.name),
            ));
        }
    }
    Ok(())
}

/// Debian package names and bare host tool names.
fn check_host_names(recipe: &Recipe) -> Result<(), Bad> {
    let arch_tools = recipe.arch.values().flat_map(|a| a.host_tools.entries());
    let packages = recipe
        .host_tools
        .entries()
        .into_iter()
        .chain(arch_tools.clone())
        .filter_map(|(_, p)| p)
        .chain(recipe.host_packages.iter().map(String::as_str))
        .chain(
            recipe
                .arch
                .values()
                .flat_map(|a| a.host_packages.iter().map(String::as_str)),
        );
    for p in packages {
        if !is_debian_package_name(p) {
            return Err(bad(
                p,
                format!(
                    "`{p}` is not a Debian package name (lower-case letters, digits, `+`, `-` \
                     and `.`, starting with a letter or digit)"
                ),
            ));
        }
    }
    for t in recipe
        .host_tools
        .entries()
        .into_iter()
        .chain(arch_tools)
        .map(|(t, _)| t)
    {
        if t.contains('/') || t.is_empty() {
            return Err(bad(
                t,
                format!("host tool `{t}` must be a bare program name, found on the host's PATH"),
            ));
        }
    }
    Ok(())
}

/// Output paths inside the output directory, directories with what they collect, file modes.
fn check_output_paths(recipe: &Recipe) -> Result<(), Bad> {
    for o in &recipe.outputs {
        let p = o.path.trim_end_matches('/');
        if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
            return Err(bad(
                &o.path,
                format!(
                    "output `{}` must be a relative path inside the output directory",
                    o.path
                ),
            ));
        }
        if o.path.ends_with('/') && o.from.is_none() {
            return Err(bad(
                &o.path,
                format!(
                    "output directory `{}` needs `from`, the files it collects",
                    o.path
                ),
            ));
        }
        if o.mode > 0o7777 {
            return Err(bad(
                &o.path,
                format!(
                    "output `{}` has mode {:o}, which is not a file mode",
                    o.path, o.mode
                ),
            ));
        }
    }
    Ok(())
}

/// Every `${name}` in `s`.
pub fn references(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

fn check_vars(recipe: &Recipe, path: &Path, text: &str) -> Result<(), RecipeError> {
    for (arch, section) in &recipe.arch {
        let needs: Vec<String> = recipe
            .needs
            .iter()
            .chain(&recipe.uses)
            .map(|n| needs_var(n))
            .collect();
        let known: BTreeSet<&str> = vars::builtin_names()
            .chain(recipe.vars.keys().map(String::as_str))
            .chain(section.vars.keys().map(String::as_str))
            .chain(needs.iter().map(String::as_str))
            .collect();
        let all_strings = recipe
            .steps
            .iter()
            .flat_map(|s| s.argv.iter().chain(&s.args).chain(s.env.values()))
            .chain(recipe.env.values())
            .chain(recipe.vars.values())
            .chain(section.env.values())
            .chain(section.vars.values())
            .chain(recipe.outputs.iter().filter_map(|o| o.from.as_ref()))
            .chain(recipe.outputs.iter().map(|o| &o.path))
            .chain(recipe.release.iter().flat_map(|r| r.strings()));
        for s in all_strings {
            for r in references(s) {
                if !known.contains(r) {
                    return Err(invalid(
                        path,
                        text,
                        &format!("${{{r}}}"),
                        format!(
                            "unknown variable `${{{r}}}` (for arch {arch}); define it in [vars] or \
                             [arch.{arch}.vars], or use one of: {}",
                            vars::builtin_names().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `${out}/X` in an argv must be a declared output (or inside a declared output directory).
fn check_outputs(recipe: &Recipe, path: &Path, text: &str) -> Result<(), RecipeError> {
    for s in &recipe.steps {
        for a in s.argv.iter().chain(&s.args).chain(s.env.values()) {
            let mut rest = a.as_str();
            while let Some(i) = rest.find("${out}/") {
                let tail = &rest[i + "${out}/".len()..];
                let end = tail
                    .find(|c: char| {
                        c.is_whitespace() || c == '"' || c == '\'' || c == ':' || c == '='
                    })
                    .unwrap_or(tail.len());
                let named = &tail[..end];
                if !named.is_empty() && recipe.declaring(named).is_none() {
                    return Err(invalid(
                        path,
                        text,
                        &format!("${{out}}/{named}"),
                        format!(
                            "step `{}` writes `${{out}}/{named}`, which no [[outputs]] entry declares; \
                             add one with path = \"{named}\"",
                            s.name
                        ),
                    ));
                }
                rest = &tail[end..];
            }
        }
    }
    Ok(())
}

pub use crate::release::layout::path_declares;

impl OutputDef {
    /// Whether this output covers `rel`: see [`path_declares`].
    pub fn declares(&self, rel: &str) -> bool {
        path_declares(&self.path, rel)
    }
}

impl Recipe {
    /// The output that declares `rel`, if any.
    pub fn declaring(&self, rel: &str) -> Option<&OutputDef> {
        self.outputs.iter().find(|o| o.declares(rel))
    }
}

/// The host tools and packages the recipes that build for `arch` take from the host, each
/// once, sorted.
pub fn host_needs(recipes: &[&Recipe], arch: &str) -> (Vec<String>, Vec<String>) {
    let (mut tools, mut packages) = (BTreeSet::new(), BTreeSet::new());
    for r in recipes.iter().filter(|r| r.arch.contains_key(arch)) {
        tools.extend(r.host_tools_for(arch));
        packages.extend(r.host_packages_for(arch));
    }
    (tools.into_iter().collect(), packages.into_iter().collect())
}

/// `chosen` with every component they need, in build order (a component after what it needs).
/// A component in `uses` is added only when `buildable` says the lockfile can build it.
pub fn with_needs(
    all: &BTreeMap<String, LoadedRecipe>,
    chosen: &[String],
    buildable: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, RecipeError> {
    fn visit(
        name: &str,
        all: &BTreeMap<String, LoadedRecipe>,
        buildable: &dyn Fn(&str) -> bool,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), RecipeError> {
        if out.iter().any(|o| o == name) {
            return Ok(());
        }
        let loaded = all.get(name).ok_or_else(|| RecipeError::Unknown {
            component: name.to_owned(),
            known: all.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        if path.iter().any(|p| p == name) {
            return Err(RecipeError::Invalid {
                path: loaded.path.clone(),
                line: None,
                message: format!(
                    "components need each other: {} -> {name}",
                    path.join(" -> ")
                ),
            });
        }
        path.push(name.to_owned());
        let r = &loaded.recipe;
        let uses = r.uses.iter().filter(|u| buildable(u));
        for dep in r.needs.iter().chain(uses) {
            visit(dep, all, buildable, path, out)?;
        }
        path.pop();
        out.push(name.to_owned());
        Ok(())
    }
    let mut out = Vec::new();
    for c in chosen {
        visit(c, all, buildable, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// Expands the vars named by `own` in place, against all of `vars`, until nothing changes (as
/// many rounds as there are such vars); a reference still left afterwards is a cycle.
pub fn expand_vars<'a>(
    vars: &mut BTreeMap<String, String>,
    own: impl Iterator<Item = &'a String> + Clone,
) {
    let rounds = own.clone().count();
    for _ in 0..=rounds {
        let mut changed = false;
        for k in own.clone() {
            let value = expand(&vars[k], vars);
            if value != vars[k] {
                vars.insert(k.clone(), value);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Replaces every `${name}` in `s` from `vars`. Checked at load time, so unknown names only
/// remain when a builtin has no value for this build; they are left as they are.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                let name = &after[..j];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A valid recipe for x86_64, for tests: `head` is TOML put before its tables, `steps` its
/// `[[steps]]` (one step running `true` when empty), and `tail` TOML put after its one output,
/// the file `x`.
#[cfg(test)]
pub(crate) fn test_recipe(component: &str, head: &str, steps: &str, tail: &str) -> Recipe {
    let steps = match steps {
        "" => "[[steps]]\nname = \"build\"\nargv = [\"true\"]\n",
        s => s,
    };
    let text = format!(
        "schema = 1\ncomponent = \"{component}\"\ndescription = \"a test\"\n{head}\n\n\
         [arch.x86_64]\n\n{steps}\n[[outputs]]\npath = \"x\"\nmode = 0o644\n{tail}"
    );
    parse(&text, Path::new("test.toml")).unwrap().recipe
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
schema = 1
component = "hello"
description = "a test"
workdir = "app"
host_tools = ["sh"]

[arch.x86_64.vars]
goarch = "amd64"

[env]
GOARCH = "${goarch}"

[[steps]]
name = "build"
argv = ["sh", "-c", "echo hi > ${out}/hello"]

[[outputs]]
path = "hello"
mode = 0o755
"#;

    #[test]
    fn builtin_recipes_load() {
        let all = RecipeSource::Builtin.load_all().unwrap();
        assert!(all.contains_key("runtime"), "{:?}", all.keys());
        assert!(all.contains_key("agent"), "{:?}", all.keys());
    }

    #[test]
    fn good_recipe_parses_and_expands() {
        let r = parse(GOOD, Path::new("hello.toml")).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("out".to_owned(), "/o".to_owned());
        assert_eq!(
            expand(&r.recipe.steps[0].argv[2], &vars),
            "echo hi > /o/hello"
        );
        assert_eq!(r.recipe.outputs[0].mode, 0o755);
    }

    #[test]
    fn undeclared_output_is_named_with_its_line() {
        let bad = GOOD.replace("${out}/hello", "${out}/other");
        let e = parse(&bad, Path::new("hello.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hello.toml:16:"), "{e}");
        assert!(
            e.contains("`${out}/other`, which no [[outputs]] entry declares"),
            "{e}"
        );
    }

    #[test]
    fn unknown_variable_is_refused() {
        let bad = GOOD.replace("${goarch}", "${gorch}");
        let e = parse(&bad, Path::new("hello.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variable `${gorch}`"), "{e}");
        assert!(e.starts_with("hello.toml:12:"), "{e}");
    }

    #[test]
    fn needs_come_first_and_uses_only_where_buildable() {
        let recipe = |name: &str, extra: &str| {
            let text = GOOD.replace(
                "component = \"hello\"",
                &format!("component = \"{name}\"\n{extra}"),
            );
            parse(&text, Path::new(&format!("{name}.toml"))).unwrap()
        };
        let mut all = BTreeMap::new();
        all.insert("agent".to_owned(), recipe("agent", ""));
        all.insert("rootfs".to_owned(), recipe("rootfs", "needs = [\"agent\"]"));
        all.insert(
            "runtime".to_owned(),
            recipe("runtime", "uses = [\"rootfs\"]"),
        );
        let yes = |_: &str| true;
        let no_rootfs = |c: &str| c != "rootfs";
        assert_eq!(
            with_needs(&all, &["runtime".into()], &yes).unwrap(),
            ["agent", "rootfs", "runtime"]
        );
        assert_eq!(
            with_needs(&all, &["runtime".into()], &no_rootfs).unwrap(),
            ["runtime"]
        );
        assert_eq!(
            with_needs(&all, &["rootfs".into(), "agent".into()], &yes).unwrap(),
            ["agent", "rootfs"]
        );
        all.insert("agent".to_owned(), recipe("agent", "needs = [\"rootfs\"]"));
        let e = with_needs(&all, &["rootfs".into()], &yes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("components need each other: rootfs -> agent -> rootfs"),
            "{e}"
        );
    }

    #[test]
    fn builtin_steps_take_args_not_argv() {
        let bad = GOOD.replace(
            "argv = [\"sh\", \"-c\", \"echo hi > ${out}/hello\"]",
            "builtin = \"initrd\"\nargs = [\"${tmp}/x\"]",
        );
        let e = parse(&bad, Path::new("hello.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("builtin `initrd` of step `build` takes 2 arguments, not 1"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_line() {
        let bad = GOOD.replace("workdir", "workdri");
        let e = parse(&bad, Path::new("hello.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hello.toml:5:"), "{e}");
    }
}
