use std::path::PathBuf;
use std::process::ExitCode;

use kata_repro::job::records::{Described, describe};
use kata_repro::job::{Env, Spec};
use kata_repro::sbom;
use kata_repro::source::mirror::Config;

use super::progress::JobProgress;
use super::render::{Format, Output, outln};
use super::{Failure, ReadArgs};

#[derive(Debug, clap::Args)]
pub struct SbomArgs {
    /// The lockfile of the release.
    #[arg(long, value_name = "FILE")]
    lockfile: PathBuf,
    /// The architecture whose dependency set to describe.
    #[arg(long, value_name = "ARCH", default_value_t = kata_repro::host::arch())]
    arch: String,
    /// Components, comma-separated. Default: every recipe the lockfile can build for ARCH.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    component: Vec<String>,
    /// Where to write `<component>.cdx.json` and `kata.cdx.json`; replaced as a whole.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A directory with a `kata.toml` to use instead of the built-in SBOM templates.
    #[arg(long, value_name = "DIR")]
    sbom_templates: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
}

pub fn run(args: SbomArgs, config: &Config, format: Format) -> Result<ExitCode, Failure> {
    let spec = Spec {
        lockfile: args.lockfile,
        arch: args.arch,
        components: args.component,
        env: Env {
            sbom_templates: args.sbom_templates,
            ..args.read.env(config)
        },
    };
    let progress = JobProgress::new();
    let described = describe(&spec, &args.out, &|e| progress.show(e))?;
    drop(progress);
    let Described { files, counts } = &described;
    let json = serde_json::json!({
        "out": args.out,
        "files": files,
        "components": counts,
    });
    let text = |out: &mut String| {
        outln!(
            out,
            "{:<10} {:>6} {:>6} {:>6} {:>6}  FILE",
            "COMPONENT",
            "CRATES",
            "GO",
            "DEBS",
            "KERNEL"
        );
        for (c, n) in counts {
            outln!(
                out,
                "{:<10} {:>6} {:>6} {:>6} {:>6}  {}",
                c,
                n["cargo"],
                n["golang"],
                n["deb"],
                n["kernel"],
                sbom::component_bom_file(c)
            );
        }
        outln!(
            out,
            "{} SBOMs (CycloneDX {}) in {}",
            files.len(),
            sbom::SPEC_NAME,
            args.out.display()
        );
    };
    Ok(format.emit(Output::ok(json, &text)))
}
