use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::anyhow;
use kata_repro::builder::tools::{RustProbe, probe_rust};
use kata_repro::host::Dpkg;
use kata_repro::lock::Lockfile;
use kata_repro::recipe::{LoadedRecipe, Recipe, RecipeSource, Toolchain, with_needs};
use kata_repro::setup::{Survey, apt_commands, shell_line, survey};
use serde::Serialize;

use super::Failure;
use super::render::{Format, Output, outln};

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// A release's lockfile: the Rust toolchain found is checked against its pin.
    #[arg(long, value_name = "FILE")]
    lockfile: Option<PathBuf>,
    /// Architectures to build for, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "ARCH", default_values_t = [kata_repro::host::arch()])]
    arch: Vec<String>,
    /// Components to build, comma-separated, with what they need. Default: every recipe.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    component: Vec<String>,
    /// Read recipes from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    recipes: Option<PathBuf>,
    /// Print the command that installs what is missing, and install nothing.
    #[arg(long)]
    dry_run: bool,
    /// dpkg's database directory, as dpkg's own --admindir.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/dpkg")]
    admindir: PathBuf,
    /// The Rust toolchain to check (a sysroot). Default: as `build` finds it.
    #[arg(long, value_name = "DIR")]
    rust_toolchain: Option<PathBuf>,
}

/// What `setup` found about the Rust toolchain.
#[derive(Debug, Serialize)]
struct RustReport {
    /// The version the lockfile pins, when one was given.
    pinned: Option<String>,
    found: Option<RustProbe>,
    /// Whether the toolchain found is the pinned one (or any, without a lockfile).
    ok: bool,
    /// What to do, when not.
    advice: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    components: Vec<String>,
    surveys: Vec<Survey>,
    /// The packages that install every missing tool and package.
    to_install: Vec<String>,
    /// The command that installs them (empty when nothing is missing).
    command: String,
    installed: bool,
    rust: Option<RustReport>,
    /// What apt-get cannot fix: tools off PATH, tools with no package.
    problems: Vec<String>,
}

pub fn run(args: SetupArgs, format: Format) -> Result<ExitCode, Failure> {
    let source = match &args.recipes {
        Some(d) => RecipeSource::Dir(d.clone()),
        None => RecipeSource::Builtin,
    };
    let all = source.load_all().map_err(Failure::input)?;
    let names: Vec<String> = if args.component.is_empty() {
        all.keys().cloned().collect()
    } else {
        for c in &args.component {
            if !all.contains_key(c) {
                return Err(Failure::input(anyhow!(
                    "--component {c}: no recipe builds it (there are: {})",
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        with_needs(&all, &args.component, &|_| true).map_err(Failure::input)?
    };
    let chosen: Vec<&LoadedRecipe> = names.iter().map(|n| &all[n]).collect();
    let recipes: Vec<&Recipe> = chosen.iter().map(|l| &l.recipe).collect();
    let lock = match &args.lockfile {
        Some(p) => Some(Lockfile::load(p).map_err(Failure::input)?.value),
        None => None,
    };
    let search_path = std::env::var("PATH").unwrap_or_default();
    let as_root = nix::unistd::geteuid().is_root();
    let look = || -> Vec<Survey> {
        let dpkg = Dpkg::load_from(&args.admindir);
        args.arch
            .iter()
            .map(|a| survey(&recipes, a, &search_path, &dpkg))
            .collect()
    };
    let mut surveys = look();
    let to_install: BTreeSet<String> = surveys.iter().flat_map(|s| s.to_install()).collect();
    let commands = apt_commands(&to_install, as_root);
    let command = shell_line(&commands);
    let mut installed = false;
    if !args.dry_run && !commands.is_empty() {
        eprintln!("installing {} packages: {command}", to_install.len());
        for c in &commands {
            apt(c)?;
        }
        installed = true;
        surveys = look();
    }
    let rust = recipes
        .iter()
        .any(|r| r.toolchains.contains(&Toolchain::Rust))
        .then(|| rust_report(lock.as_ref(), args.rust_toolchain.as_deref()));
    let problems = problems(&surveys, args.dry_run);
    // Ready to build: nothing missing (after installing, unless a dry run) and a Rust
    // toolchain where a recipe needs one.
    let ok =
        surveys.iter().all(Survey::is_complete) && rust.as_ref().is_none_or(|r| r.found.is_some());
    let report = Report {
        ok,
        components: names,
        surveys,
        to_install: to_install.into_iter().collect(),
        command,
        installed,
        rust,
        problems,
    };
    let json = serde_json::to_value(&report).expect("reports serialise");
    // The survey is for the person at the terminal (stderr); stdout has only the command, to
    // be run as it is.
    let text = |out: &mut String| print_human(out, &report, args.dry_run);
    Ok(format.emit(Output::checked(report.ok, json, &text)))
}

/// Runs one apt-get command, its output on stderr (stdout is the report's).
fn apt(argv: &[String]) -> Result<(), Failure> {
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| Failure::check(anyhow!("{}: {e}", argv[0])))?;
    if !status.success() {
        return Err(Failure::check(anyhow!(
            "`{}` failed ({status})",
            argv.join(" ")
        )));
    }
    Ok(())
}

/// What is still missing: after an install, everything; in a dry run, what the printed command
/// would not fix.
fn problems(surveys: &[Survey], dry_run: bool) -> Vec<String> {
    let mut out = Vec::new();
    for s in surveys {
        for t in s.missing_tools() {
            let line = match (&t.installed_off_path, &t.package) {
                (Some(at), _) => Some(format!(
                    "{}: host tool {} is installed at {}, which is not on PATH; add {} to PATH",
                    s.arch,
                    t.name,
                    at.display(),
                    at.parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )),
                (None, None) => Some(format!(
                    "{}: host tool {} ({}) is not on PATH and its recipe names no package for it",
                    s.arch,
                    t.name,
                    t.components.join(", ")
                )),
                (None, Some(p)) if !dry_run => Some(format!(
                    "{}: host tool {} is still not on PATH after installing {p}",
                    s.arch, t.name
                )),
                _ => None,
            };
            out.extend(line);
        }
        if !dry_run {
            for p in s.missing_packages() {
                out.push(format!(
                    "{}: host package {} is still not installed",
                    s.arch, p.name
                ));
            }
        }
    }
    out
}

fn rust_report(lock: Option<&Lockfile>, explicit: Option<&std::path::Path>) -> RustReport {
    let pin = lock.map(|l| &l.toolchains.rust);
    let pinned = pin.and_then(|p| p.version.clone());
    let wanted = pinned
        .clone()
        .or_else(|| pin.map(|p| p.channel.clone()))
        .unwrap_or_else(|| "stable".into());
    let install =
        format!("install it with rustup (https://rustup.rs): `rustup toolchain install {wanted}`");
    match probe_rust(pinned.as_deref(), explicit) {
        Err(e) => RustReport {
            pinned,
            found: None,
            ok: false,
            advice: Some(format!("{e}; {install}")),
        },
        Ok(found) => {
            let matches = pin.is_none_or(|p| {
                p.version.as_deref().is_none_or(|v| v == found.version)
                    && p.commit_hash
                        .as_deref()
                        .is_none_or(|c| c == found.commit_hash)
            });
            let advice = (!matches).then(|| {
                format!(
                    "rustc {} is not the pinned {wanted}: builds with it are recorded as not \
                     pinned; {install}, or pass --rust-toolchain SYSROOT",
                    found.version
                )
            });
            RustReport {
                pinned,
                found: Some(found),
                ok: matches,
                advice,
            }
        }
    }
}

fn print_human(out: &mut String, r: &Report, dry_run: bool) {
    for s in &r.surveys {
        let tools = s.tools.len();
        let packages = s.packages.len();
        let missing_t = s.missing_tools().count();
        let missing_p = s.missing_packages().count();
        eprintln!(
            "{}: {tools} host tools ({missing_t} missing), {packages} host packages \
             ({missing_p} missing), for {}",
            s.arch,
            r.components.join(", ")
        );
        let mut by_package: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for t in s.missing_tools() {
            let p = t.package.as_deref().unwrap_or("(no package named)");
            by_package.entry(p).or_default().push(&t.name);
        }
        for p in s.missing_packages() {
            by_package.entry(&p.name).or_default();
        }
        for (p, tools) in by_package {
            match tools.is_empty() {
                true => eprintln!("  missing {p}"),
                false => eprintln!("  missing {p}: {}", tools.join(" ")),
            }
        }
    }
    if let Some(rust) = &r.rust {
        match (&rust.found, &rust.advice) {
            (Some(f), None) => eprintln!(
                "rust: rustc {} ({}) at {}{}",
                f.version,
                f.commit_hash,
                f.sysroot.display(),
                if rust.pinned.is_some() {
                    ", the pinned toolchain"
                } else {
                    ""
                }
            ),
            (_, Some(advice)) => eprintln!("rust: {advice}"),
            (None, None) => {}
        }
    }
    for p in &r.problems {
        eprintln!("problem: {p}");
    }
    if dry_run {
        if r.command.is_empty() {
            eprintln!("nothing to install");
        } else {
            outln!(out, "{}", r.command);
        }
    } else if r.installed {
        eprintln!("installed: {}", r.to_install.join(" "));
    } else if r.command.is_empty() {
        eprintln!("nothing to install");
    }
}
