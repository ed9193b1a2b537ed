use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::ProgressStyle;
use kata_repro::source::fetch::{Event, FetchOptions, FetchReport, Fetcher, InputClass, Status};
use kata_repro::source::mirror::Config;

use super::progress::Progress;
use super::render::{Format, Output, outln};
use super::{Failure, MirrorArgs};

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The lockfile whose inputs to fetch.
    #[arg(long, value_name = "FILE")]
    lockfile: PathBuf,
    /// The store directory. Default: $KATA_REPRO_STORE, else `store` in the config, else
    /// ~/.cache/kata-repro/store.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Leave out a kind of input; repeatable or comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    skip: Vec<InputClass>,
    /// Fetch toolchains for this host architecture instead of this machine's.
    #[arg(long, value_name = "ARCH", value_parser = ["x86_64", "aarch64"])]
    host_arch: Option<String>,
    /// Use the store and local mirrors only: download nothing, clone nothing.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

pub fn run(args: FetchArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let release = super::open_release(&args.lockfile, args.store.as_deref(), config, args.mirrors)?;
    super::progress::say(release.policy_line());
    let mut options = FetchOptions {
        skip: args.skip.iter().copied().collect(),
        ..FetchOptions::default()
    };
    if let Some(arch) = args.host_arch {
        options.host_arch = arch;
    }
    let fetcher = Fetcher {
        lock: &release.lock,
        get: release.getter(args.offline),
        options,
    };

    let progress = Progress::new();
    let bar = progress.bar();
    let report = fetcher.run(&mut |event| match event {
        Event::Begin { class, name } => {
            bar.reset();
            bar.set_length(0);
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            progress.note(format!("{class}: {name}"));
        }
        Event::Bytes { done, total } => {
            if let Some(total) = total
                && bar.length() != Some(total)
            {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("valid template"),
                );
                bar.set_length(total);
            }
            bar.set_position(done);
        }
        Event::End(input) => {
            progress.line(format!(
                "{:>9} {}: {}",
                input.status.to_string(),
                input.class,
                input.name
            ));
        }
    });
    drop(progress);

    let json = serde_json::json!({
        "allowed_hosts": release.policy_json(),
        "report": report,
    });
    let text = |out: &mut String| print_summary(out, &report);
    Ok(format.emit(Output::checked(report.ok(), json, &text)))
}

fn print_summary(out: &mut String, report: &FetchReport) {
    let rows: Vec<[String; 4]> = report
        .inputs
        .iter()
        .map(|i| {
            let pin = i
                .pin
                .as_deref()
                .map(|p| p[..p.len().min(12)].to_owned())
                .unwrap_or_else(|| "-".into());
            [
                i.class.to_string(),
                i.name.clone(),
                pin,
                i.status.to_string(),
            ]
        })
        .collect();
    let header = ["KIND", "INPUT", "PIN", "STATUS"];
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    outln!(
        out,
        "Kata {} — store {}",
        report.release,
        report.store.display()
    );
    outln!(out, "{}", line(header));
    for r in &rows {
        outln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3]]));
    }
    let count = |s: Status| report.inputs.iter().filter(|i| i.status == s).count();
    outln!(
        out,
        "\n{} fetched, {} cached, {} repaired, {} failed, {} missing, {} unpinned, {} skipped",
        count(Status::Fetched),
        count(Status::Cached),
        count(Status::Repaired),
        count(Status::Failed),
        count(Status::Missing),
        count(Status::Unpinned),
        count(Status::Skipped)
    );
    let problems: Vec<_> = report.inputs.iter().filter(|i| !i.status.is_ok()).collect();
    if !problems.is_empty() {
        outln!(out);
        for i in problems {
            let at = i
                .pinned_at
                .as_deref()
                .map(|a| format!(" (pinned at {a})"))
                .unwrap_or_default();
            outln!(
                out,
                "{} {}{at}: {}",
                i.status,
                i.name,
                i.message.as_deref().unwrap_or("")
            );
        }
    }
    for i in report.inputs.iter().filter(|i| i.damaged.is_some()) {
        outln!(
            out,
            "damaged: {}: {}; it was fetched and verified again. Something other than kata-repro \
             changed the store: find out what before trusting other copies of it",
            i.name,
            i.damaged.as_deref().unwrap_or("")
        );
    }
    for i in report
        .inputs
        .iter()
        .filter(|i| i.status.is_ok() && i.message.is_some() && i.status != Status::Skipped)
    {
        outln!(
            out,
            "note: {}: {}",
            i.name,
            i.message.as_deref().unwrap_or("")
        );
    }
}
