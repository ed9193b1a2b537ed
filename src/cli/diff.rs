use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::diff::{self, Options, Side};
use kata_repro::manifest::MANIFEST_FILE;

use super::Failure;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// A manifest.json, or an output directory.
    a: PathBuf,
    /// A manifest.json, or an output directory.
    b: PathBuf,
    /// Hand each differing file to diffoscope (when it is installed).
    #[arg(long)]
    deep: bool,
}

pub fn run(args: DiffArgs, json: bool) -> Result<ExitCode, Failure> {
    let open = |p: &PathBuf| {
        if !p.exists() {
            return Err(Failure::input(anyhow!("{} does not exist", p.display())));
        }
        Side::open(p).map_err(Failure::input)
    };
    let options = Options { deep: args.deep };
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
            if !json {
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
    let code = if report.same() { 0 } else { 1 };
    if json {
        super::print_json(&serde_json::json!({
            "ok": report.same(),
            "exit_code": code,
            "a": label_a,
            "b": label_b,
            "inputs": report.inputs,
            "identical": report.identical,
            "differing": report.differing,
            "added": report.added,
            "removed": report.removed,
            "modified": report.modified,
        }));
        return Ok(ExitCode::from(code));
    }
    if !report.inputs.is_empty() {
        println!("inputs that differ (they explain what follows):");
        for d in &report.inputs {
            println!("  {}:\n    A {}\n    B {}", d.what, d.a, d.b);
        }
        println!();
    }
    for d in &report.differing {
        if streamed {
            println!("{}:", d.path);
        } else {
            println!("differs  {}", d.path);
        }
        println!("    A sha256 {} ({} bytes)", d.a.sha256, d.a.size);
        println!("    B sha256 {} ({} bytes)", d.b.sha256, d.b.size);
        if let Some(f) = &d.follows {
            println!("    follows from {}: {}", f.artifact, f.evidence);
        }
        for detail in &d.details {
            println!("    {detail}");
        }
    }
    for m in &report.modified {
        println!("modified {m}");
    }
    if !streamed {
        for p in &report.removed {
            println!("removed  {p} (only in A)");
        }
        for p in &report.added {
            println!("added    {p} (only in B)");
        }
    }
    println!(
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
    Ok(ExitCode::from(code))
}
