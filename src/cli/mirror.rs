use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::source::export::write_mirrors;
use kata_repro::source::mirror::Config;

use super::progress::Progress;
use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct MirrorCmdArgs {
    /// The lockfile whose git sources to mirror.
    #[arg(long, value_name = "FILE")]
    lockfile: PathBuf,
    /// Where to write the mirrors and their mirrors.toml (a new or empty directory).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The store directory (its mirror cache holds what is fetched over https).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Read local mirrors and the store's mirror cache only: fetch nothing.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

pub fn run(args: MirrorCmdArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    if std::fs::read_dir(&args.dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Failure::input(anyhow!(
            "--dir {} is not empty; give a new directory for the mirrors",
            args.dir.display()
        )));
    }
    let release = super::open_release(&args.lockfile, args.store.as_deref(), config, args.mirrors)?;
    let progress = Progress::new();
    progress.set(format!(
        "writing mirrors of the git sources of {} into {}",
        args.lockfile.display(),
        args.dir.display()
    ));
    let written = write_mirrors(&release.getter(args.offline), &release.lock, &args.dir)
        .map_err(|f| Failure::check(anyhow!("{}", f.message)))?;
    drop(progress);
    let json = serde_json::json!({
        "dir": args.dir,
        "config": args.dir.join("mirrors.toml"),
        "mirrors": written,
    });
    let text = |out: &mut String| {
        for m in &written {
            outln!(
                out,
                "{:<60} {} ({} commit{}, from {})",
                m.upstream,
                m.path.display(),
                m.commits.len(),
                if m.commits.len() == 1 { "" } else { "s" },
                m.from
            );
        }
        outln!(
            out,
            "{} mirrors in {}; use them with --config {}",
            written.len(),
            args.dir.display(),
            args.dir.join("mirrors.toml").display()
        );
    };
    Ok(format.emit(Output::ok(json, &text)))
}
