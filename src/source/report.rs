//! What fetching reports: each input's class, status and provenance, and the progress events a
//! front end renders. Below both the fetch of a release and the getters of single inputs.

use std::path::PathBuf;

use serde::Serialize;

/// Kinds of input, as `--skip` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputClass {
    Source,
    Git,
    Toolchain,
    Kernel,
    Rootfs,
}

impl std::fmt::Display for InputClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputClass::Source => "source",
            InputClass::Git => "git",
            InputClass::Toolchain => "toolchain",
            InputClass::Kernel => "kernel",
            InputClass::Rootfs => "rootfs",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fetched and verified now.
    Fetched,
    /// Already in the store, verified earlier.
    Cached,
    /// The stored copy failed its pin and was fetched and verified again: the store was
    /// damaged or tampered with (see `damaged`).
    Repaired,
    /// The bytes did not match their pin (or could not be verified): nothing was kept.
    Failed,
    /// The pinned bytes could not be obtained.
    Missing,
    /// The lockfile carries no hash for this input, so it is never used.
    Unpinned,
    /// Left out with `--skip`.
    Skipped,
}

impl Status {
    pub fn is_ok(self) -> bool {
        matches!(
            self,
            Status::Fetched | Status::Cached | Status::Repaired | Status::Skipped
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub class: InputClass,
    pub name: String,
    /// The pin: a commit id or a sha256.
    pub pin: Option<String>,
    pub upstream: String,
    /// The mirror or URL the bytes came from.
    pub from: Option<String>,
    pub status: Status,
    pub message: Option<String>,
    /// The lockfile line that pins this input (`path:line`).
    pub pinned_at: Option<String>,
    /// Where the verified input is in the store.
    pub path: Option<PathBuf>,
    pub bytes: Option<u64>,
    /// What was wrong with the stored copy, when it was replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    pub release: String,
    pub store: PathBuf,
    pub inputs: Vec<InputReport>,
}

impl FetchReport {
    pub fn ok(&self) -> bool {
        self.inputs.iter().all(|i| i.status.is_ok())
    }
}

/// Progress, for a front end to render.
pub enum Event<'a> {
    Begin { class: InputClass, name: &'a str },
    Bytes { done: u64, total: Option<u64> },
    End(&'a InputReport),
}
