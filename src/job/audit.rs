//! The `audit` job: rebuild a published build from the lockfile its manifest names, and compare
//! bit for bit. Signatures and the published SBOMs and provenance are checked first: a claim
//! that does not hold refuses the audit before anything is built.

use std::path::{Path, PathBuf};

use super::{BuildOptions, Env, Event, Events, Job, JobError, Spec};
use crate::check::{self, Report};
use crate::diff::Side;
use crate::digest::Sha256Digest;
use crate::manifest::Manifest;
use crate::manifest::sign::{self, Envelope};
use crate::provenance::{self, Statement};

/// What an audit is given: the published files, and where to rebuild.
#[derive(Debug, Clone, Default)]
pub struct AuditSpec {
    /// The published manifest.json; its artifacts may sit beside it.
    pub manifest: PathBuf,
    /// The publisher's public key (PEM).
    pub key: Option<PathBuf>,
    /// The manifest's DSSE envelope; `None` for manifest.dsse.json beside the manifest.
    pub signature: Option<PathBuf>,
    /// Published CycloneDX SBOMs.
    pub sboms: Vec<PathBuf>,
    /// The published provenance.
    pub provenance: Option<PathBuf>,
    /// The lockfile the manifest names; `None` to look beside it, then in lockfiles/.
    pub lockfile: Option<PathBuf>,
    /// Keep the rebuild here; `None` for a scratch directory, removed.
    pub out: Option<PathBuf>,
    /// Where diffoscope's pages go, for an HTML report.
    pub diffoscope_pages: Option<PathBuf>,
}

/// A published claim that cannot be checked as given.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{} does not exist; pass the published manifest.json", path.display())]
    NoManifest { path: PathBuf },
    #[error("--signature needs --key, the publisher's public key, to be checked")]
    SignatureWithoutKey,
    #[error(
        "{} does not exist: --key checks the manifest's signature, so pass --signature with the \
         published manifest.dsse.json",
        path.display()
    )]
    NoEnvelope { path: PathBuf },
    #[error(transparent)]
    Sign(#[from] sign::SignError),
    #[error(transparent)]
    Provenance(#[from] crate::manifest::ManifestError),
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    NotAnSbom {
        path: PathBuf,
        source: check::NotAnSbom,
    },
    #[error(
        "{} hashes to sha256 {found}, but the manifest was built from {name} with sha256 \
         {expected}; pass the lockfile the release was built from with --lockfile",
        path.display()
    )]
    OtherLockfile {
        path: PathBuf,
        name: String,
        expected: Sha256Digest,
        found: Sha256Digest,
    },
    #[error(
        "the manifest was built from {name} (sha256 {expected}), which is not at {}; pass it \
         with --lockfile",
        looked.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
    )]
    NoLockfile {
        name: String,
        expected: Sha256Digest,
        looked: Vec<PathBuf>,
    },
    #[error(
        "{} changed while the audit read it: it now hashes to sha256 {found}, not the \
         manifest's {expected}",
        path.display()
    )]
    LockfileChanged {
        path: PathBuf,
        expected: Sha256Digest,
        found: Sha256Digest,
    },
}

/// One check before the rebuild: (what, passed, detail).
type Row = (String, bool, String);

/// Checks every published claim, rebuilds with `env`, and compares.
pub fn run(spec: &AuditSpec, env: Env, events: Events<'_>) -> Result<Report, JobError> {
    if !spec.manifest.is_file() {
        return Err(AuditError::NoManifest {
            path: spec.manifest.clone(),
        }
        .into());
    }
    let manifest = Manifest::load(&spec.manifest)?;
    let published_dir = published_dir(&spec.manifest);
    let mut report = check::report_for(
        "audit",
        &manifest,
        &format!("published {}", spec.manifest.display()),
        "rebuild",
    );

    // Before building: every published claim must hold.
    report.preflight = preflight(spec, &manifest, &published_dir)?;
    if report.preflight.iter().any(|(_, ok, _)| !ok) {
        return Ok(refuse(
            report,
            "a published claim does not hold (see the checks)",
        ));
    }

    let lockfile = find_lockfile(spec, &manifest, &published_dir)?;
    let job = Job::open(
        Spec {
            lockfile,
            arch: manifest.arch.clone(),
            components: manifest.components.iter().map(|c| c.name.clone()).collect(),
            env,
        },
        events,
    )?;
    // What is built from is the bytes the job parsed: they must still be the ones the manifest
    // names (the file could have changed since it was chosen).
    if job.release.lock.sha256 != manifest.lockfile.sha256 {
        return Err(AuditError::LockfileChanged {
            path: job.release.lock.path.clone(),
            expected: manifest.lockfile.sha256,
            found: job.release.lock.sha256,
        }
        .into());
    }
    // The recipes must be the ones the build used, or the rebuild differs for that alone.
    let recipes = recipe_rows(&job, &manifest);
    let refused = recipes.iter().any(|(_, ok, _)| !ok);
    report.preflight.extend(recipes);
    if refused {
        return Ok(refuse(
            report,
            "the recipes are not the ones the build used",
        ));
    }
    let scratch;
    let out = match &spec.out {
        Some(d) => d.clone(),
        None => {
            scratch = super::scratch(&job.release, "audit-")?;
            scratch.path().join("rebuild")
        }
    };
    events(Event::Note(format!(
        "audit: rebuilding {} for {} from {} without the action cache",
        job.components().join(", "),
        manifest.arch,
        manifest.lockfile.name
    )));
    let options = BuildOptions {
        no_cache: crate::builder::NoCache::All,
        variations: Default::default(),
        records: !spec.sboms.is_empty() || spec.provenance.is_some(),
        label: "rebuild".into(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let built = job.build(&out, &options, events);
    report
        .timings
        .push(("rebuild".into(), started.elapsed().as_secs_f64()));
    let published = Side::open(&spec.manifest)?;
    match &built {
        Ok(_) => {
            report.artifacts = check::audit_verdicts(&published, Ok(&out));
            // The published records must be what the rebuild writes, byte for byte.
            for f in spec.sboms.iter().chain(&spec.provenance) {
                report.preflight.push(same_as_rebuilt(f, &out));
            }
        }
        Err(e) => {
            let why = format!("the rebuild failed: {e}");
            report.failure = Some(why.clone());
            report.artifacts = check::audit_verdicts(&published, Err(&why));
        }
    }
    if let Some(dir) = &spec.diffoscope_pages {
        check::add_diffoscope_pages(&mut report.artifacts, &published_dir, &out, dir);
    }
    Ok(report)
}

/// The directory the published manifest is in.
fn published_dir(manifest: &Path) -> PathBuf {
    match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Stops before building: the report says why, and the audit fails.
fn refuse(mut report: Report, why: &str) -> Report {
    report.failure = Some(format!("{why}: refusing to rebuild"));
    report
}

/// Whether each component's recipe is the one the published build used.
fn recipe_rows(job: &Job, manifest: &Manifest) -> Vec<Row> {
    manifest
        .components
        .iter()
        .map(|c| {
            let ours = job.recipe_digest(&c.name);
            let ok = ours == Some(c.recipe.sha256);
            let detail = match ours {
                _ if ok => format!("{} sha256 {}", c.recipe.name, c.recipe.sha256),
                Some(d) => format!(
                    "the build used {} with sha256 {}, these recipes have {d}: pass the \
                     published recipes with --recipes DIR",
                    c.recipe.name, c.recipe.sha256
                ),
                None => {
                    "no recipe builds it here: pass the published recipes with --recipes DIR".into()
                }
            };
            (format!("recipe of {}", c.name), ok, detail)
        })
        .collect()
}

/// Whether a published record is byte for byte the one the rebuild wrote.
fn same_as_rebuilt(published: &Path, out: &Path) -> Row {
    let name = file_name(published);
    let ours = out.join(&name);
    let same = std::fs::read(published)
        .ok()
        .is_some_and(|a| std::fs::read(&ours).ok() == Some(a));
    let detail = if same {
        "byte for byte what the rebuild writes".into()
    } else {
        format!("differs from the rebuild's {}", ours.display())
    };
    (format!("rebuilt {name}"), same, detail)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The signature, SBOM and provenance checks.
fn preflight(
    spec: &AuditSpec,
    manifest: &Manifest,
    published_dir: &Path,
) -> Result<Vec<Row>, AuditError> {
    let mut out = signature_rows(spec, published_dir)?;
    if let Some(p) = &spec.provenance {
        let text = read(p)?;
        let statement = Statement::parse(&text, p)?;
        let claims: Vec<(String, String)> = statement
            .subject
            .iter()
            .map(|s| {
                (
                    s.name.clone().unwrap_or_default(),
                    s.digest.get("sha256").cloned().unwrap_or_default(),
                )
            })
            .collect();
        out.extend(check::claims_match(provenance::FILE, &claims, manifest));
        if claims.len() != manifest.artifacts.len() {
            out.push((
                format!("{}: subjects", provenance::FILE),
                false,
                format!(
                    "{} subjects for {} artifacts in the manifest",
                    claims.len(),
                    manifest.artifacts.len()
                ),
            ));
        }
    }
    for f in &spec.sboms {
        let claims = check::sbom_subjects(&read(f)?).map_err(|source| AuditError::NotAnSbom {
            path: f.clone(),
            source,
        })?;
        out.extend(check::claims_match(&file_name(f), &claims, manifest));
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, AuditError> {
    std::fs::read_to_string(path).map_err(|source| AuditError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// The manifest's signature, and the provenance's where it is published.
fn signature_rows(spec: &AuditSpec, published_dir: &Path) -> Result<Vec<Row>, AuditError> {
    let envelope_path = spec
        .signature
        .clone()
        .unwrap_or_else(|| published_dir.join(sign::MANIFEST_ENVELOPE));
    let key = match &spec.key {
        Some(k) => sign::load_verifying_key(k)?,
        None if spec.signature.is_some() => return Err(AuditError::SignatureWithoutKey),
        None if envelope_path.is_file() => {
            return Ok(vec![(
                "signature of manifest.json".into(),
                true,
                format!(
                    "not checked: {} is there, but no --key was given",
                    envelope_path.display()
                ),
            )]);
        }
        None => return Ok(Vec::new()),
    };
    if !envelope_path.is_file() {
        return Err(AuditError::NoEnvelope {
            path: envelope_path,
        });
    }
    let result = Envelope::load(&envelope_path)
        .map_err(|e| e.to_string())
        .and_then(|env| sign::check_manifest(&env, &envelope_path, &key, &spec.manifest));
    let mut out = vec![row("signature of manifest.json", result)];
    let prov_env = published_dir.join(sign::PROVENANCE_ENVELOPE);
    if let Some(p) = &spec.provenance
        && prov_env.is_file()
    {
        let result = Envelope::load(&prov_env)
            .and_then(|env| env.verify(&key, sign::INTOTO_PAYLOAD_TYPE, &prov_env))
            .map_err(|e| e.to_string())
            .and_then(|payload| match std::fs::read(p) {
                Ok(bytes) if bytes == payload => Ok("the signed statement".into()),
                Ok(_) => Err(format!(
                    "{} differs from the statement its envelope signs",
                    p.display()
                )),
                Err(e) => Err(format!("{}: {e}", p.display())),
            });
        out.push(row("signature of the provenance", result));
    }
    Ok(out)
}

fn row(what: &str, result: Result<String, String>) -> Row {
    match result {
        Ok(d) => (what.to_owned(), true, d),
        Err(d) => (what.to_owned(), false, d),
    }
}

/// The lockfile the manifest names, with the sha256 it records.
fn find_lockfile(
    spec: &AuditSpec,
    manifest: &Manifest,
    published_dir: &Path,
) -> Result<PathBuf, AuditError> {
    let name = &manifest.lockfile.name;
    let expected = manifest.lockfile.sha256;
    let candidates: Vec<PathBuf> = match &spec.lockfile {
        Some(p) => vec![p.clone()],
        None => vec![published_dir.join(name), Path::new("lockfiles").join(name)],
    };
    let Some(c) = candidates.iter().find(|c| c.is_file()) else {
        return Err(AuditError::NoLockfile {
            name: name.clone(),
            expected,
            looked: candidates,
        });
    };
    let found = Sha256Digest::of_file(c).map_err(|source| AuditError::Unreadable {
        path: c.clone(),
        source,
    })?;
    if found != expected {
        return Err(AuditError::OtherLockfile {
            path: c.clone(),
            name: name.clone(),
            expected,
            found,
        });
    }
    Ok(c.clone())
}
