use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::builder::{self, Prepared};
use kata_repro::digest::Sha256Digest;
use kata_repro::lock::Lockfile;
use kata_repro::manifest::Manifest;
use kata_repro::provenance::Statement;
use kata_repro::recipe::{LoadedRecipe, RecipeSource, Toolchain};
use kata_repro::sbom::{self, BomContext, DependencySet, Subject, Templates};
use kata_repro::source::get::Getter;
use kata_repro::source::mirror::Config;

use super::{Failure, MirrorArgs};

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
    /// The store directory (see `fetch`).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Download nothing: use the store and mirrors only.
    #[arg(long)]
    offline: bool,
    /// Read recipes from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    recipes: Option<PathBuf>,
    /// A directory with a `kata.toml` to use instead of the built-in SBOM templates.
    #[arg(long, value_name = "DIR")]
    sbom_templates: Option<PathBuf>,
    /// The Rust toolchain whose cargo reads the crate graph (as for `build`).
    #[arg(long, value_name = "DIR")]
    rust_toolchain: Option<PathBuf>,
    #[command(flatten)]
    mirrors: MirrorArgs,
}

/// Everything the SBOMs and the provenance of one build are made from.
pub struct Records<'a> {
    pub recipes: &'a [&'a LoadedRecipe],
    pub lock: &'a Lockfile,
    pub lockfile_sha256: Sha256Digest,
    pub arch: &'a str,
    pub getter: Getter<'a>,
    pub prepared: Option<&'a Prepared>,
    pub rust_sysroot: Option<&'a Path>,
    pub offline: bool,
    pub templates: &'a Templates,
}

fn sbom_failure(e: sbom::SbomError) -> Failure {
    match e {
        sbom::SbomError::Template { .. } | sbom::SbomError::Input { .. } => Failure::input(e),
        _ => Failure::check(e),
    }
}

fn build_failure(e: builder::BuildError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

impl Records<'_> {
    fn dependency_sets(&self) -> Result<BTreeMap<String, DependencySet>, Failure> {
        sbom::dependency_sets(
            self.recipes,
            &self.lockfile_sha256,
            self.arch,
            Getter { ..self.getter },
            self.lock,
            self.prepared,
            self.rust_sysroot,
            self.offline,
        )
        .map_err(build_failure)
    }

    fn subjects(
        &self,
        sets: &BTreeMap<String, DependencySet>,
        manifest: Option<&Manifest>,
    ) -> Vec<Subject> {
        self.recipes
            .iter()
            .filter_map(|r| {
                let c = &r.recipe.component;
                let deps = sets.get(c)?.clone();
                // The component's artifacts, by their paths in the output directory.
                let artifacts = manifest
                    .map(|m| {
                        let prefix = format!("{}/{c}/", m.arch);
                        m.artifacts
                            .iter()
                            .filter(|a| a.path.starts_with(&prefix))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Subject {
                    component: c.clone(),
                    description: r.recipe.description.clone(),
                    // What it holds: its needs, and for a release recipe every part this
                    // build has.
                    needs: r
                        .recipe
                        .needs
                        .iter()
                        .chain(r.recipe.release.iter().flat_map(|d| {
                            d.parts.iter().map(|p| &p.component).filter(|c| {
                                !r.recipe.needs.contains(c)
                                    && self.recipes.iter().any(|o| &o.recipe.component == *c)
                            })
                        }))
                        .cloned()
                        .collect(),
                    artifacts,
                    deps,
                })
            })
            .collect()
    }

    /// Writes the SBOMs and `provenance.intoto.json` of `manifest`'s build into `dir`.
    pub fn write_for_build(&self, manifest: &Manifest, dir: &Path) -> Result<Vec<String>, Failure> {
        let sets = self.dependency_sets()?;
        let manifest_sha256 = Sha256Digest::of(manifest.to_json().as_bytes());
        let ctx = BomContext {
            release: &manifest.release,
            arch: &manifest.arch,
            source_url: &manifest.source.url,
            source_tag: &manifest.source.tag,
            source_commit: &manifest.source.commit,
            source_date_epoch: manifest.source_date_epoch,
            seed: manifest_sha256,
            lockfile_name: &manifest.lockfile.name,
            lockfile_sha256: manifest.lockfile.sha256,
            templates: self.templates,
            generator_version: &manifest.generator.version,
        };
        let mut files =
            sbom::write(&ctx, &self.subjects(&sets, Some(manifest)), dir).map_err(sbom_failure)?;
        Statement::of_build(manifest, self.lock, &sets)
            .write(dir)
            .map_err(|e| Failure::check(anyhow!(e)))?;
        files.push(kata_repro::provenance::FILE.to_owned());
        Ok(files)
    }
}

/// The Rust toolchain's sysroot when a recipe builds with Rust.
pub fn rust_sysroot(
    recipes: &[&LoadedRecipe],
    store: &kata_repro::source::store::Store,
    lock: &Lockfile,
    explicit: Option<&Path>,
) -> Result<Option<PathBuf>, Failure> {
    if !recipes
        .iter()
        .any(|r| r.recipe.toolchains.contains(&Toolchain::Rust))
    {
        return Ok(None);
    }
    let rust = kata_repro::builder::tools::find_rust(store, lock, explicit)
        .map_err(|e| build_failure(e.into()))?;
    Ok(Some(rust.sysroot))
}

pub fn run(args: SbomArgs, config: &Config, json: bool) -> Result<ExitCode, Failure> {
    let source = match &args.recipes {
        Some(d) => RecipeSource::Dir(d.clone()),
        None => RecipeSource::Builtin,
    };
    let all = source.load_all().map_err(Failure::input)?;
    let templates = Templates::load(args.sbom_templates.as_deref()).map_err(Failure::input)?;
    let release =
        super::Release::open(&args.lockfile, args.store.as_deref(), config, &args.mirrors)?;
    let lock = &release.lock;
    let requested = builder::select::select(&builder::select::Request {
        all: &all,
        components: &args.component,
        arch: &args.arch,
        lock,
        lockfile: &args.lockfile,
        go_proxy: None,
        with_needs: false,
        verb: "described",
    })
    .map_err(Failure::input)?
    .order;
    let chosen: Vec<&LoadedRecipe> = all
        .values()
        .filter(|r| requested.contains(&r.recipe.component))
        .collect();
    check_sbom_out(&args.out)?;
    let lockfile_sha256 = release.lock.sha256;
    let sysroot = rust_sysroot(
        &chosen,
        &release.store,
        lock,
        args.rust_toolchain.as_deref(),
    )?;
    let progress = super::progress::Progress::new();
    progress.set(format!(
        "reading the dependency sets of {} for {}",
        requested.join(", "),
        args.arch
    ));
    let records = Records {
        recipes: &chosen,
        lock,
        lockfile_sha256,
        arch: &args.arch,
        getter: release.getter(args.offline),
        prepared: None,
        rust_sysroot: sysroot.as_deref(),
        offline: args.offline,
        templates: &templates,
    };
    let sets = records.dependency_sets()?;
    let ctx = BomContext {
        release: &lock.release,
        arch: &args.arch,
        source_url: &lock.source.url,
        source_tag: &lock.source.tag,
        source_commit: &lock.source.commit.to_string(),
        source_date_epoch: lock.source.commit_time,
        seed: lockfile_sha256,
        lockfile_name: &args
            .lockfile
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        lockfile_sha256,
        templates: &templates,
        generator_version: env!("CARGO_PKG_VERSION"),
    };
    let stage = builder::stage_beside(&args.out).map_err(build_failure)?;
    let files =
        sbom::write(&ctx, &records.subjects(&sets, None), stage.path()).map_err(sbom_failure)?;
    builder::install(stage, &args.out).map_err(build_failure)?;
    let counts: BTreeMap<&String, BTreeMap<&str, usize>> = sets
        .iter()
        .map(|(c, s)| {
            (
                c,
                BTreeMap::from([
                    ("cargo", s.count(sbom::Ecosystem::Cargo)),
                    ("golang", s.count(sbom::Ecosystem::Golang)),
                    ("deb", s.count(sbom::Ecosystem::Deb)),
                    ("kernel", s.count(sbom::Ecosystem::Kernel)),
                ]),
            )
        })
        .collect();
    if json {
        super::print_json(&serde_json::json!({
            "ok": true,
            "exit_code": 0,
            "out": args.out,
            "files": files,
            "components": counts,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<10} {:>6} {:>6} {:>6} {:>6}  FILE",
        "COMPONENT", "CRATES", "GO", "DEBS", "KERNEL"
    );
    for (c, n) in &counts {
        println!(
            "{:<10} {:>6} {:>6} {:>6} {:>6}  {}",
            c,
            n["cargo"],
            n["golang"],
            n["deb"],
            n["kernel"],
            sbom::component_bom_file(c)
        );
    }
    println!(
        "{} SBOMs (CycloneDX {}) in {}",
        files.len(),
        sbom::SPEC_NAME,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--out` for SBOMs: absent, empty, or an earlier `kata-repro sbom` output.
fn check_sbom_out(out: &Path) -> Result<(), Failure> {
    if !out.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(out)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    let earlier = out.join(sbom::RELEASE_BOM).is_file()
        && !out.join(kata_repro::manifest::MANIFEST_FILE).exists();
    if out.is_dir() && (empty || earlier) {
        return Ok(());
    }
    Err(Failure::input(anyhow!(
        "--out {} exists and is not an SBOM directory (no {}); choose an empty or new directory",
        out.display(),
        sbom::RELEASE_BOM
    )))
}
