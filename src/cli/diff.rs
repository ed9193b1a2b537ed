use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::diff::{self, Options, Side};
use kata_repro::manifest::MANIFEST_FILE;

use super::Failure;
use super::render::{Format, Output, outln};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// A manifest.json, or an output directory.
    a: PathBuf,
    /// A manifest.json, or an output directory.
    b: PathBuf,
    /// Hand each differing file to diffoscope (when it is installed).
    #[arg(long)]
    deep: bool,
    /// Re-hash every file of an output directory against its manifest. By default two builds
    /// with manifests are compared from the manifests first: only the files they disagree on
    /// are read, and every other file is checked by its size.
    #[arg(long)]
    verify_files: bool,
}

pub fn run(args: DiffArgs, format: Format) -> Result<ExitCode, Failure> {
    let open = |p: &PathBuf| {
        if !p.exists() {
            return Err(Failure::input(anyhow!("{} does not exist", p.display())));
        }
        Side::open(p).map_err(Failure::input)
    };
    let options = Options {
        deep: args.deep,
        verify_files: args.verify_files,
    };
    let progress = super::progress::Progress::new();
    progress.note(format!(
        "comparing {} and {}",
        args.a.display(),
        args.b.display()
    ));
    let plain = |p: &Path| p.is_dir() && !p.join(MANIFEST_FILE).is_file();
    // Two plain directories are compared pair by pair, and each difference is printed as soon
    // as it is seen; the explanations follow.
    let streamed = plain(&args.a) && plain(&args.b);
    let (report, label_a, label_b) = if streamed {
        let out = std::sync::Mutex::new(std::io::stdout());
        let found = |kind: &str, path: &str| {
            if !format.is_json() {
                let mut o = out.lock().expect("stdout");
                let _ = writeln!(o, "{kind:<8} {path}");
                let _ = o.flush();
            }
        };
        let report =
            diff::trees::diff_trees(&args.a, &args.b, &options, &found).map_err(Failure::input)?;
        (
            report,
            args.a.display().to_string(),
            args.b.display().to_string(),
        )
    } else {
        let (a, mut b) = (open(&args.a)?, open(&args.b)?);
        a.pair(&mut b);
        (diff::diff(&a, &b, &options), a.label, b.label)
    };
    let json = serde_json::json!({
            "a": label_a,
            "b": label_b,
            "inputs": report.inputs,
            "identical": report.identical,
            "differing": report.differing,
            "added": report.added,
            "removed": report.removed,
            "modified": report.modified,
    });
    let text = |out: &mut String| print(out, &report, streamed);
    Ok(format.emit(Output::checked(report.same(), json, &text)))
}

fn print(out: &mut String, report: &diff::DiffReport, streamed: bool) {
    if !report.inputs.is_empty() {
        outln!(out, "inputs that differ (they explain what follows):");
        for d in &report.inputs {
            outln!(out, "  {}:\n    A {}\n    B {}", d.what, d.a, d.b);
        }
        outln!(out);
    }
    for d in &report.differing {
        if streamed {
            outln!(out, "{}:", d.path);
        } else {
            outln!(out, "differs  {}", d.path);
        }
        outln!(out, "    A sha256 {} ({} bytes)", d.a.sha256, d.a.size);
        outln!(out, "    B sha256 {} ({} bytes)", d.b.sha256, d.b.size);
        if let Some(f) = &d.follows {
            outln!(out, "    follows from {}: {}", f.artifact, f.evidence);
        }
        for detail in &d.details {
            outln!(out, "    {detail}");
        }
    }
    for m in &report.modified {
        outln!(out, "modified {m}");
    }
    if !streamed {
        for p in &report.removed {
            outln!(out, "removed  {p} (only in A)");
        }
        for p in &report.added {
            outln!(out, "added    {p} (only in B)");
        }
    }
    outln!(
        out,
        "{} identical, {} differing, {} added, {} removed{}: {}",
        report.identical.len(),
        report.differing.len(),
        report.added.len(),
        report.removed.len(),
        if report.modified.is_empty() {
            String::new()
        } else {
            format!(", {} modified since their manifest", report.modified.len())
        },
        if report.same() {
            "the artifacts are identical"
        } else {
            "the artifacts differ"
        }
    );
}
