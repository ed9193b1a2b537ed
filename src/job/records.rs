//! SBOMs and provenance: beside a build, or (the `sbom` job) for a release not built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::build::Opened;
use super::{Event, Events, JobError, Spec};
use crate::builder::{self, BuildError};
use crate::digest::Sha256Digest;
use crate::inputs::Prepared;
use crate::lock::Lockfile;
use crate::manifest::Manifest;
use crate::provenance::Statement;
use crate::recipe::{LoadedRecipe, Toolchain};
use crate::sbom::{self, BomContext, DependencySet, Subject, Templates};
use crate::source::get::Getter;
use crate::source::store::Store;

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

impl Records<'_> {
    fn dependency_sets(&self) -> Result<BTreeMap<String, DependencySet>, JobError> {
        Ok(sbom::dependency_sets(
            self.recipes,
            &self.lockfile_sha256,
            self.arch,
            Getter { ..self.getter },
            self.lock,
            self.prepared,
            self.rust_sysroot,
            self.offline,
        )?)
    }

    /// The advisories for the release SBOM, from the databases the config maps.
    fn advisories(
        &self,
        sets: &BTreeMap<String, DependencySet>,
        release: &str,
    ) -> Result<Option<crate::scan::embed::Embedded>, JobError> {
        crate::scan::embed::for_sets(sets, self.getter.mirrors, release)
            .map_err(|e| JobError::Scan(e.into()))
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
                Some(Subject {
                    component: c.clone(),
                    description: r.recipe.description.clone(),
                    needs: self.holds(r),
                    artifacts: manifest.map(|m| artifacts_of(m, c)).unwrap_or_default(),
                    deps: sets.get(c)?.clone(),
                })
            })
            .collect()
    }

    /// What a component holds: its needs, and for a release recipe every part this build has.
    fn holds(&self, r: &LoadedRecipe) -> Vec<String> {
        let parts = r.recipe.release.iter().flat_map(|d| {
            d.parts.iter().map(|p| &p.component).filter(|c| {
                !r.recipe.needs.contains(c)
                    && self.recipes.iter().any(|o| &o.recipe.component == *c)
            })
        });
        r.recipe.needs.iter().chain(parts).cloned().collect()
    }

    /// Writes the SBOMs and `provenance.intoto.json` of `manifest`'s build into `dir`.
    pub fn write_for_build(
        &self,
        manifest: &Manifest,
        dir: &Path,
    ) -> Result<Vec<String>, JobError> {
        let sets = self.dependency_sets()?;
        let advisories = self.advisories(&sets, &manifest.release)?;
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
            advisories: advisories.as_ref(),
        };
        let mut files = sbom::write(&ctx, &self.subjects(&sets, Some(manifest)), dir)?;
        Statement::of_build(manifest, self.lock, &sets)
            .write(dir)
            .map_err(JobError::Provenance)?;
        files.push(crate::provenance::FILE.to_owned());
        Ok(files)
    }
}

/// A component's artifacts, by their paths in the output directory.
fn artifacts_of(m: &Manifest, component: &str) -> Vec<crate::manifest::Artifact> {
    let prefix = format!("{}/{component}/", m.arch);
    m.artifacts
        .iter()
        .filter(|a| a.path.starts_with(&prefix))
        .cloned()
        .collect()
}

/// The Rust toolchain's sysroot when a recipe builds with Rust.
pub fn rust_sysroot(
    recipes: &[&LoadedRecipe],
    store: &Store,
    lock: &Lockfile,
    explicit: Option<&Path>,
) -> Result<Option<PathBuf>, JobError> {
    if !recipes
        .iter()
        .any(|r| r.recipe.toolchains.contains(&Toolchain::Rust))
    {
        return Ok(None);
    }
    let rust = builder::tools::find_rust(store, lock, explicit).map_err(BuildError::from)?;
    Ok(Some(rust.sysroot))
}

/// What the `sbom` job wrote: the files, and per component how many packages of each
/// ecosystem its SBOM lists.
pub struct Described {
    pub files: Vec<String>,
    /// Component → `cargo`, `golang`, `deb`, `kernel` → count.
    pub counts: BTreeMap<String, BTreeMap<&'static str, usize>>,
}

/// Writes the SBOMs of `spec`'s components (exactly those named, or every one the lockfile
/// can build) into `out`, replaced as a whole, without building them.
pub fn describe(spec: &Spec, out: &Path, events: Events<'_>) -> Result<Described, JobError> {
    let env = &spec.env;
    let opened = Opened::open(spec, events)?;
    let requested = opened.select(spec, "described", false)?.order;
    let Opened {
        all,
        templates,
        release,
    } = &opened;
    let lock = &release.lock;
    let chosen: Vec<&LoadedRecipe> = all
        .values()
        .filter(|r| requested.contains(&r.recipe.component))
        .collect();
    check_sbom_out(out)?;
    let sysroot = rust_sysroot(&chosen, &release.store, lock, env.rust_toolchain.as_deref())?;
    let what = format!(
        "reading the dependency sets of {} for {}",
        requested.join(", "),
        spec.arch
    );
    events(Event::Phase {
        label: "",
        what: &what,
    });
    let records = Records {
        recipes: &chosen,
        lock,
        lockfile_sha256: lock.sha256,
        arch: &spec.arch,
        getter: release.getter(env.offline),
        prepared: None,
        rust_sysroot: sysroot.as_deref(),
        offline: env.offline,
        templates,
    };
    let sets = records.dependency_sets()?;
    let advisories = records.advisories(&sets, &lock.release)?;
    let lockfile_name = spec
        .lockfile
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ctx = BomContext {
        release: &lock.release,
        arch: &spec.arch,
        source_url: &lock.source.url,
        source_tag: &lock.source.tag,
        source_commit: &lock.source.commit.to_string(),
        source_date_epoch: lock.source.commit_time,
        seed: lock.sha256,
        lockfile_name: &lockfile_name,
        lockfile_sha256: lock.sha256,
        templates,
        generator_version: env!("CARGO_PKG_VERSION"),
        advisories: advisories.as_ref(),
    };
    let stage = builder::stage_beside(out)?;
    let files = sbom::write(&ctx, &records.subjects(&sets, None), stage.path())?;
    builder::install(stage, out)?;
    let counts = sets
        .iter()
        .map(|(c, s)| {
            use sbom::Ecosystem::*;
            let per = [
                ("cargo", Cargo),
                ("golang", Golang),
                ("deb", Deb),
                ("kernel", Kernel),
            ];
            (c.clone(), per.map(|(k, e)| (k, s.count(e))).into())
        })
        .collect();
    Ok(Described { files, counts })
}

/// Why an SBOM output directory cannot be written.
#[derive(Debug, thiserror::Error)]
#[error(
    "--out {} exists and is not an SBOM directory (no {}); choose an empty or new directory",
    path.display(),
    sbom::RELEASE_BOM
)]
pub struct NotAnSbomDir {
    pub path: PathBuf,
}

/// `out` for SBOMs: absent, empty, or an earlier `sbom` output.
fn check_sbom_out(out: &Path) -> Result<(), NotAnSbomDir> {
    if !out.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(out)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    let earlier =
        out.join(sbom::RELEASE_BOM).is_file() && !out.join(crate::manifest::MANIFEST_FILE).exists();
    if out.is_dir() && (empty || earlier) {
        return Ok(());
    }
    Err(NotAnSbomDir {
        path: out.to_owned(),
    })
}
