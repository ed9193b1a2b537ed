//! `kata-repro lockdiff A.toml B.toml`: what changes between two releases.

use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::job::Event;
use kata_repro::lockdiff::{ChangeKind, Entry, LockDiff};
use kata_repro::source::mirror::Config;

use super::progress::JobProgress;
use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct LockDiffArgs {
    /// The lockfile of the release moved from.
    #[arg(value_name = "FROM")]
    from: PathBuf,
    /// The lockfile of the release moved to.
    #[arg(value_name = "TO")]
    to: PathBuf,
    /// Print Markdown (counts, then a table per section) instead of text, e.g. for a pull
    /// request's description.
    #[arg(long, conflicts_with = "json")]
    markdown: bool,
    /// The store holding the releases' source checkouts (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

pub fn run(args: LockDiffArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let sources = args.mirrors.sources(config);
    let progress = JobProgress::new();
    let events = |e: Event<'_>| progress.show(e);
    let diff = kata_repro::job::lockdiff::run(
        &args.from,
        &args.to,
        args.store.as_deref(),
        &sources,
        &events,
    )?;
    drop(progress);
    let mut json = serde_json::to_value(&diff).expect("diffs serialise");
    json["counts"] = diff
        .sections
        .iter()
        .map(|s| {
            let (added, removed, changed) = counts(s);
            let n = serde_json::json!({"added": added, "removed": removed, "changed": changed});
            (s.name.to_owned(), n)
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let markdown = args.markdown;
    let text = |out: &mut String| {
        if markdown {
            print_markdown(out, &diff)
        } else {
            print_text(out, &diff)
        }
    };
    Ok(format.emit(Output::ok(json, &text)))
}

fn counts(s: &kata_repro::lockdiff::Section) -> (usize, usize, usize) {
    let [(_, a), (_, r), (_, c)] = s.counts();
    (a, r, c)
}

fn change(e: &Entry) -> String {
    let (from, to) = (e.from.as_deref(), e.to.as_deref());
    match e.kind() {
        ChangeKind::Added => format!("+ {} {}", e.key, to.unwrap_or_default()),
        ChangeKind::Removed => format!("- {} {}", e.key, from.unwrap_or_default()),
        ChangeKind::Changed => format!(
            "~ {} {} -> {}",
            e.key,
            from.unwrap_or_default(),
            to.unwrap_or_default()
        ),
    }
}

pub(super) fn print_text(out: &mut String, d: &LockDiff) {
    outln!(out, "Kata {} -> {}", d.from, d.to);
    if d.sections.is_empty() {
        outln!(out, "no change");
        return;
    }
    for s in &d.sections {
        let (a, r, c) = counts(s);
        outln!(out, "{:<18} {a} added, {r} removed, {c} changed", s.name);
    }
    for s in &d.sections {
        outln!(out);
        outln!(out, "{}:", s.name);
        for e in &s.entries {
            outln!(out, "  {}", change(e));
        }
    }
}

/// A Markdown table cell: pipes escaped.
fn cell(s: Option<&str>) -> String {
    s.unwrap_or("").replace('|', "\\|")
}

fn print_markdown(out: &mut String, d: &LockDiff) {
    outln!(out, "## Kata {} → {}", d.from, d.to);
    outln!(out);
    if d.sections.is_empty() {
        outln!(out, "No change.");
        return;
    }
    outln!(out, "| section | added | removed | changed |");
    outln!(out, "|---|---:|---:|---:|");
    for s in &d.sections {
        let (a, r, c) = counts(s);
        outln!(out, "| {} | {a} | {r} | {c} |", s.name);
    }
    for s in &d.sections {
        outln!(out);
        outln!(out, "### {}", s.name);
        outln!(out);
        outln!(out, "| | {} | from | to |", "name");
        outln!(out, "|---|---|---|---|");
        for e in &s.entries {
            let mark = match e.kind() {
                ChangeKind::Added => "+",
                ChangeKind::Removed => "−",
                ChangeKind::Changed => "~",
            };
            outln!(
                out,
                "| {mark} | {} | {} | {} |",
                cell(Some(&e.key)),
                cell(e.from.as_deref()),
                cell(e.to.as_deref())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kata_repro::lockdiff::Section;

    fn diff() -> LockDiff {
        let entry = |key: &str, from: Option<&str>, to: Option<&str>| Entry {
            key: key.into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
        };
        LockDiff {
            from: "1.0".into(),
            to: "2.0".into(),
            sections: vec![Section {
                name: "crates",
                entries: vec![
                    entry("a", None, Some("1")),
                    entry("b", Some("1"), None),
                    entry("c|d", Some("1"), Some("2")),
                ],
            }],
        }
    }

    #[test]
    fn counts_come_first_then_each_change() {
        let mut out = String::new();
        print_text(&mut out, &diff());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Kata 1.0 -> 2.0");
        assert_eq!(lines[1], "crates             1 added, 1 removed, 1 changed");
        assert_eq!(
            &lines[3..],
            ["crates:", "  + a 1", "  - b 1", "  ~ c|d 1 -> 2"]
        );
    }

    #[test]
    fn markdown_has_a_count_table_and_escaped_cells() {
        let mut out = String::new();
        print_markdown(&mut out, &diff());
        assert!(out.contains("| crates | 1 | 1 | 1 |"), "{out}");
        assert!(out.contains("| ~ | c\\|d | 1 | 2 |"), "{out}");
        let mut empty = String::new();
        print_markdown(
            &mut empty,
            &LockDiff {
                sections: vec![],
                ..diff()
            },
        );
        assert!(empty.contains("No change."), "{empty}");
    }
}
