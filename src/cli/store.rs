//! `kata-repro store verify`: the periodic check of a store's objects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use kata_repro::source::mirror::Config;
use kata_repro::verify::store::{ObjectsReport, verify_objects};

use super::Failure;
use super::render::{Format, Output, outln};

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Re-hash every object against its name; remove (and report) each that no longer matches,
    /// so that it is fetched or built again. Run it periodically: a no-op build checks only an
    /// object's name and size.
    Verify {
        /// The store directory (see `fetch`).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
}

pub fn run(args: StoreArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let StoreCommand::Verify { store } = args.command;
    let store = super::open_store(store.as_deref(), config)?;
    let progress = super::progress::Progress::new();
    let done = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let report = verify_objects(&store, &|size| {
        let bytes = done.fetch_add(size, Ordering::Relaxed) + size;
        progress.set(format!("re-hashed {} MiB", bytes >> 20));
    })
    .map_err(Failure::input)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(progress);
    let mut json = serde_json::to_value(&report).expect("reports serialise");
    json["store"] = store.root().display().to_string().into();
    json["seconds"] = seconds.into();
    let root = store.root().to_owned();
    let text = |out: &mut String| print(out, &report, &root, seconds);
    Ok(format.emit(Output::checked(report.ok(), json, &text)))
}

fn print(out: &mut String, report: &ObjectsReport, root: &std::path::Path, seconds: f64) {
    outln!(
        out,
        "{} objects, {} MiB, re-hashed in {seconds:.2} s ({})",
        report.objects,
        report.bytes >> 20,
        root.display()
    );
    for d in &report.damaged {
        outln!(
            out,
            "damaged: objects/sha256/{} ({} bytes) hashes to {}; removed, so that it is fetched \
             or built again when next needed",
            d.name,
            d.size,
            d.actual
        );
    }
    for m in &report.misnamed {
        outln!(
            out,
            "misnamed: {} is not named by a sha256; nothing kata-repro writes is, so remove it",
            m.display()
        );
    }
    if report.ok() {
        outln!(out, "every object hashes to its name");
    }
}
