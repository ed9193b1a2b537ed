//! What can go wrong in a build, each with the evidence a fix needs.

use std::path::PathBuf;

use super::tools::ToolError;
use crate::inputs::InputsError;
use crate::sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    HostMissing(#[from] crate::setup::HostMissing),
    #[error("{component}: {problem}")]
    Recipe {
        component: String,
        problem: Box<RecipeProblem>,
    },
    #[error("{component} needs an input that is not available: {missing}")]
    Input {
        component: String,
        missing: Box<MissingInput>,
    },
    #[error(
        "{component}: this build host differs from the lockfile's [host] pins{at}:\n  {}\n  \
         install the pinned versions or build on the pinned builder; --allow-host-drift builds \
         anyway and records the drift in the manifest",
        lines.join("\n  ")
    )]
    HostDrift {
        component: String,
        at: String,
        lines: Vec<String>,
    },
    #[error(transparent)]
    Inputs(#[from] InputsError),
    #[error(transparent)]
    StepFailed(Box<StepFailure>),
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
    #[error(transparent)]
    DamagedOutput(Box<DamagedOutput>),
    #[error("{component}: the remote cache {cache}: {source}")]
    Shared {
        component: String,
        cache: String,
        source: super::shared::SharedError,
    },
    /// A result the caller gave (a fresh action's needs) that is not the one its recipe and
    /// key call for.
    #[error("{component}: the result given for action {key} is refused: {why}")]
    Given {
        component: String,
        key: crate::digest::Sha256Digest,
        why: String,
    },
}

impl BuildError {
    /// 1 when a step or a verification failed, 2 when the input (recipe, options, machine) is
    /// wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            BuildError::StepFailed(_)
            | BuildError::Input { .. }
            | BuildError::HostDrift { .. }
            | BuildError::DamagedOutput(_)
            | BuildError::Given { .. } => 1,
            BuildError::Inputs(e) => e.exit_code(),
            BuildError::Shared { source, .. } => match source {
                super::shared::SharedError::Usage(_) => 2,
                _ => 1,
            },
            _ => 2,
        }
    }
}

/// An output of an earlier build that a step was to read, whose stored copy no longer hashes as
/// recorded.
#[derive(Debug, thiserror::Error)]
#[error(
    "{component} reads {path}, and its stored copy no longer hashes as the result of its build \
     records\n  expected {expected}\n  actual   {actual}\n  object   {}\n  \
     run `kata-repro store verify`, which removes it, then build again",
    object.display()
)]
pub struct DamagedOutput {
    /// The component whose step was to read it.
    pub component: String,
    /// The output, as the manifest names it.
    pub path: String,
    pub object: PathBuf,
    pub expected: crate::digest::Sha256Digest,
    pub actual: crate::digest::Sha256Digest,
}

/// A step that exited unsuccessfully, with the end of its log.
#[derive(Debug, thiserror::Error)]
#[error(
    "{component}: step `{step}` failed ({status}) after {secs:.1}s; its log is {log}\n\
     --- last lines ---\n{tail}\n---{hint}"
)]
pub struct StepFailure {
    pub component: String,
    pub step: String,
    pub status: String,
    pub secs: f64,
    pub log: PathBuf,
    pub tail: String,
    pub hint: String,
}

/// A recipe that cannot build as written, or outputs that are not what it declares.
#[derive(Debug, thiserror::Error)]
pub enum RecipeProblem {
    #[error(
        "{} does not build for {arch} (it has [arch.{has}]); add an [arch.{arch}] section",
        recipe.display()
    )]
    NoArch {
        recipe: PathBuf,
        arch: String,
        has: String,
    },
    #[error(
        "{}: {key} is set by kata-repro for every step and cannot be set by a recipe",
        recipe.display()
    )]
    Reserved { recipe: PathBuf, key: String },
    #[error("the lockfile pins no Cargo.lock; regenerate it with `kata-repro lock`")]
    NoCargoLock,
    #[error(
        "{} needs component `{dep}`, which is not part of this build",
        recipe.display()
    )]
    NeedsUnbuilt { recipe: PathBuf, dep: String },
    #[error(
        "{}: variable `{var}` refers to itself through `${{{through}}}`",
        recipe.display()
    )]
    SelfReference {
        recipe: PathBuf,
        var: String,
        through: String,
    },
    #[error(
        "step `{step}`: `{program}` is not on the step's PATH ({path}); add it to host_tools or \
         toolchains in {}",
        recipe.display()
    )]
    NotOnPath {
        recipe: PathBuf,
        step: String,
        program: String,
        path: String,
    },
    #[error("{}: workdir `{workdir}` is not a directory of the source", recipe.display())]
    NoWorkdir { recipe: PathBuf, workdir: String },
    #[error(
        "{}: `release-layout` is an input, but the recipe has no [release]",
        recipe.display()
    )]
    NoRelease { recipe: PathBuf },
    #[error(
        "{}: a release recipe sets `kata_arch` in [arch.{arch}.vars] (amd64, arm64, …)",
        recipe.display()
    )]
    NoKataArch { recipe: PathBuf, arch: String },
    #[error(
        "a step wrote `{output}` to ${{out}}, which no [[outputs]] entry in {} declares; \
         declare it or stop writing it",
        recipe.display()
    )]
    Undeclared { recipe: PathBuf, output: String },
    #[error("output `{output}` is a symbolic link; outputs must be files")]
    Link { output: String },
    #[error("declared output `{output}` was not produced{}", matched.as_ref().map(|f| format!(" (nothing matched `{f}`)")).unwrap_or_default())]
    NotProduced {
        output: String,
        matched: Option<String>,
    },
    #[error("output `{output}` is one file, but `{pattern}` matched {count}")]
    ManyMatched {
        output: String,
        pattern: String,
        count: usize,
    },
    #[error("output `{output}`: `{pattern}` matches two files named {name}; narrow the pattern")]
    SameName {
        output: String,
        pattern: String,
        name: String,
    },
    #[error("output `{output}`: bad pattern `{pattern}`: {source}")]
    BadPattern {
        output: String,
        pattern: String,
        source: globset::Error,
    },
    /// The outputs could not be read or stored.
    #[error("{0}")]
    Unreadable(String),
}

/// A verified input a component needs that the build does not have.
#[derive(Debug, thiserror::Error)]
pub enum MissingInput {
    #[error("the verified cargo vendor tree")]
    CargoVendor,
    #[error("its verified Go modules")]
    GoModules,
    #[error("the kernel source, unpacked from its tarball: {0}")]
    KernelTree(#[from] crate::inputs::KernelTreeError),
    #[error("its inputs were not prepared")]
    NotPrepared,
}

/// Why an output directory cannot receive a build.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    #[error("--out {} exists and is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "--out {} exists and holds files that are not a kata-repro build (no manifest.json); \
         choose an empty or new directory",
        path.display()
    )]
    NotABuild { path: PathBuf },
}
