//! Findings of a verification run, and their summary.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// The Kata source tree itself.
    Source,
    Toolchain,
    Cargo,
    Go,
    Kernel,
}

impl std::fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ecosystem::Source => "source",
            Ecosystem::Toolchain => "toolchain",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Go => "go",
            Ecosystem::Kernel => "kernel",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The bytes match their pin.
    Ok,
    /// The bytes differ from their pin, or the tree around them is inconsistent.
    Failed,
    /// The pinned bytes were not found.
    Missing,
    /// Nothing pins these bytes.
    Unpinned,
    /// The files agree with the checksums beside them (a vendor tree's own checksum file), but
    /// nothing pinned was at hand to check them against: not `ok`, and a failure under
    /// `--strict`.
    #[serde(rename = "self-consistent")]
    SelfConsistent,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Missing => "missing",
            Outcome::Unpinned => "unpinned",
            Outcome::SelfConsistent => "self-consistent",
        })
    }
}

/// One input, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub ecosystem: Ecosystem,
    /// `name@version`, or a path for kernel inputs.
    pub name: String,
    pub outcome: Outcome,
    /// What was checked: a file, directory or URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// The file and line that pins it (`path:line`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For locked packages: `build` when the resolved build needs it, `lock-only` when only
    /// the workspace lock holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Finding {
    pub fn new(ecosystem: Ecosystem, name: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            ecosystem,
            name: name.into(),
            outcome,
            origin: None,
            expected: None,
            actual: None,
            pinned_at: None,
            message: None,
            scope: None,
        }
    }
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
    pub fn hashes(mut self, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self.actual = Some(actual.into());
        self
    }
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
    pub fn pinned_at(mut self, at: impl Into<String>) -> Self {
        self.pinned_at = Some(at.into());
        self
    }
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The one-line form used for failures.
    pub fn line(&self) -> String {
        let mut s = format!("{} {} {}", self.outcome, self.ecosystem, self.name);
        if let Some(o) = &self.origin {
            s.push_str(&format!(" from {o}"));
        }
        if let Some(m) = &self.message {
            s.push_str(&format!(": {m}"));
        }
        if let (Some(e), Some(a)) = (&self.expected, &self.actual) {
            s.push_str(&format!(" (expected {e}, actual {a})"));
        } else if let Some(e) = &self.expected {
            s.push_str(&format!(" (expected {e})"));
        }
        if let Some(p) = &self.pinned_at {
            s.push_str(&format!(" [pinned at {p}]"));
        }
        s
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub failed: usize,
    pub missing: usize,
    pub unpinned: usize,
    pub self_consistent: usize,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Facts worth showing that are not findings (e.g. path dependencies covered by the source).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    pub fn extend(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.notes.extend(other.notes);
    }

    /// Nothing failed, went missing or is unpinned; `self-consistent` findings pass.
    pub fn ok(&self) -> bool {
        self.findings
            .iter()
            .all(|f| matches!(f.outcome, Outcome::Ok | Outcome::SelfConsistent))
    }

    /// Every finding was checked against a pin.
    pub fn strictly_ok(&self) -> bool {
        self.findings.iter().all(|f| f.outcome == Outcome::Ok)
    }

    pub fn summary(&self) -> BTreeMap<Ecosystem, Counts> {
        let mut out: BTreeMap<Ecosystem, Counts> = BTreeMap::new();
        for f in &self.findings {
            let c = out.entry(f.ecosystem).or_default();
            match f.outcome {
                Outcome::Ok => c.ok += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Missing => c.missing += 1,
                Outcome::Unpinned => c.unpinned += 1,
                Outcome::SelfConsistent => c.self_consistent += 1,
            }
        }
        out
    }

    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.outcome != Outcome::Ok)
    }
}
