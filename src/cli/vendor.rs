use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::lock::cargo_lock::CargoLock;
use kata_repro::source::mirror::Config;
use kata_repro::verify::cargo::offline;
use kata_repro::verify::release::ReleaseCheck;
use kata_repro::verify::report::Ecosystem;

use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct VendorArgs {
    /// The release whose Rust workspace to vendor.
    #[arg(long, value_name = "FILE")]
    lockfile: PathBuf,
    /// Where to write `vendor/` and `config.toml` (replaced if it exists).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The store directory (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Local registry caches holding `.crate` files; repeatable.
    #[arg(long = "registry-cache", value_name = "DIR")]
    registry_caches: Vec<PathBuf>,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

pub fn run(args: VendorArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let release = super::open_release(&args.lockfile, args.store.as_deref(), config, args.mirrors)?;
    let (lock, store, mirrors) = (&release.lock, &release.store, &release.mirrors);

    let progress = super::progress::Progress::new();
    progress.set(format!("verifying the Rust inputs of {}", lock.release));
    // Everything the vendor tree is made from is verified first.
    let check = ReleaseCheck {
        lock,
        get: release.getter(false),
        registry_caches: args.registry_caches.clone(),
        modcaches: Vec::new(),
        proxy: None,
        download: true,
        arches: Vec::new(),
        host_arch: kata_repro::host::arch(),
        skip: BTreeSet::from([Ecosystem::Toolchain, Ecosystem::Go, Ecosystem::Kernel]),
        threads: 8,
        on_crate: None,
        resolve: None,
    };
    let report = check.run();
    if !report.ok() {
        for f in report.failures() {
            eprintln!("{}", f.line());
        }
        return Err(Failure::check(anyhow!(
            "not every Rust input of {} verified, so no vendor tree was written",
            lock.release
        )));
    }
    progress.set("writing the vendor tree");
    let checkout = store.git_path(&lock.source.commit);
    let cargo_lock =
        CargoLock::load(&checkout.join("Cargo.lock")).map_err(|e| Failure::check(anyhow!(e)))?;

    // Build beside the destination, then move it into place.
    let out = std::path::absolute(&args.out).map_err(|e| Failure::input(anyhow!("--out: {e}")))?;
    let parent = out.parent().unwrap_or(std::path::Path::new("/")).to_owned();
    std::fs::create_dir_all(&parent)
        .map_err(|e| Failure::input(anyhow!("{}: {e}", parent.display())))?;
    let work = tempfile::Builder::new()
        .prefix(".kata-repro-vendor-")
        .tempdir_in(&parent)
        .map_err(|e| Failure::input(anyhow!("{}: {e}", parent.display())))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = offline::build(
        &cargo_lock,
        &checkout,
        store,
        mirrors,
        work.path(),
        &out,
        &cargo,
    )
    .map_err(Failure::check)?;
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| Failure::input(anyhow!("{}: {e}", out.display())))?;
    }
    std::fs::rename(work.keep(), &out)
        .map_err(|e| Failure::input(anyhow!("{}: {e}", out.display())))?;
    let json = serde_json::json!({
        "vendor": built.vendor_dir,
        "config": built.config,
        "crates": built.crates,
    });
    let text = |out: &mut String| {
        outln!(
            out,
            "wrote {} ({} crates, verified) and {}\nbuild offline with: cargo build --locked --offline --config {}",
            built.vendor_dir.display(),
            built.crates,
            built.config.display(),
            built.config.display()
        );
    };
    Ok(format.emit(Output::ok(json, &text)))
}
