//! `kata-repro audit`: rebuild a published build from the lockfile its manifest names, and
//! compare bit for bit. Signatures and the published SBOMs and provenance are checked first:
//! a claim that does not hold refuses the audit before anything is built.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::check::{self, Report, Verdict};
use kata_repro::diff::Side;
use kata_repro::digest::Sha256Digest;
use kata_repro::manifest::sign::{self, Envelope};
use kata_repro::manifest::{MANIFEST_FILE, Manifest};
use kata_repro::provenance::{self, Statement};
use kata_repro::source::mirror::Config;

use super::Failure;
use super::build::{BuildEnvArgs, BuildOptions, Job, JobArgs};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The published manifest.json. Its artifacts may sit beside it, as `build` wrote them.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The publisher's public key (PEM): the manifest's signature (and the provenance's, where
    /// published) must verify before anything is built.
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
    /// The manifest's DSSE envelope. Default: manifest.dsse.json beside the manifest.
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// Published CycloneDX SBOMs: their artifacts must be the manifest's, and each must be what
    /// the rebuild writes. Repeatable.
    #[arg(long, value_name = "FILE")]
    sbom: Vec<PathBuf>,
    /// The published provenance (provenance.intoto.json): its subjects must be the manifest's
    /// artifacts, and it must be what the rebuild writes.
    #[arg(long, value_name = "FILE")]
    provenance: Option<PathBuf>,
    /// The lockfile the manifest names. Default: beside the manifest, else lockfiles/<name>.
    #[arg(long, value_name = "FILE")]
    lockfile: Option<PathBuf>,
    /// Keep the rebuild here. Default: a scratch directory, removed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write an HTML report here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    #[command(flatten)]
    with: BuildEnvArgs,
}

pub fn run(args: AuditArgs, config: &Config, json: bool) -> Result<ExitCode, Failure> {
    if !args.manifest.is_file() {
        return Err(Failure::input(anyhow!(
            "{} does not exist; pass the published manifest.json",
            args.manifest.display()
        )));
    }
    let manifest = Manifest::load(&args.manifest).map_err(Failure::input)?;
    let published_dir = args
        .manifest
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut report = check::report_for(
        "audit",
        &manifest,
        &format!("published {}", args.manifest.display()),
        "rebuild",
    );

    // Before building: every published claim must hold.
    report.preflight = preflight(&args, &manifest, &published_dir)?;
    if report.preflight.iter().any(|(_, ok, _)| !ok) {
        return refuse(
            args.report.as_deref(),
            &args.manifest,
            report,
            "a published claim does not hold (see the checks)",
            json,
        );
    }

    let lockfile = find_lockfile(&args, &manifest, &published_dir)?;
    let job = Job::open(
        JobArgs {
            lockfile,
            arch: manifest.arch.clone(),
            component: manifest.components.iter().map(|c| c.name.clone()).collect(),
            with: args.with,
        },
        config,
    )?;
    // What is built from is the bytes the job parsed: they must still be the ones the manifest
    // names (the file could have changed since it was chosen).
    if job.release.lock.sha256 != manifest.lockfile.sha256 {
        return Err(Failure::input(anyhow!(
            "{} changed while the audit read it: it now hashes to sha256 {}, not the manifest's {}",
            job.release.lock.path.display(),
            job.release.lock.sha256,
            manifest.lockfile.sha256
        )));
    }
    // The recipes must be the ones the build used, or the rebuild differs for that alone.
    let recipes: Vec<(String, bool, String)> = manifest
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
        .collect();
    let refused = recipes.iter().any(|(_, ok, _)| !ok);
    report.preflight.extend(recipes);
    if refused {
        return refuse(
            args.report.as_deref(),
            &args.manifest,
            report,
            "the recipes are not the ones the build used",
            json,
        );
    }
    let scratch;
    let out = match &args.out {
        Some(d) => d.clone(),
        None => {
            let root = job.release.store.staging_dir();
            std::fs::create_dir_all(&root)
                .map_err(|e| Failure::input(anyhow!("{}: {e}", root.display())))?;
            scratch = tempfile::Builder::new()
                .prefix("audit-")
                .tempdir_in(&root)
                .map_err(|e| Failure::input(anyhow!("{}: {e}", root.display())))?;
            scratch.path().join("rebuild")
        }
    };
    super::progress::say(format!(
        "audit: rebuilding {} for {} from {} without the action cache",
        job.components().join(", "),
        manifest.arch,
        manifest.lockfile.name
    ));
    let records = !args.sbom.is_empty() || args.provenance.is_some();
    let started = std::time::Instant::now();
    let built = job.build(
        &out,
        &BuildOptions {
            no_cache: true,
            variations: Default::default(),
            records,
            label: "rebuild".into(),
        },
    );
    report
        .timings
        .push(("rebuild".into(), started.elapsed().as_secs_f64()));
    let published = Side::open(&args.manifest).map_err(Failure::input)?;
    match &built {
        Ok(_) => {
            report.artifacts = check::audit_verdicts(&published, Ok(&out));
            // The published records must be what the rebuild writes, byte for byte.
            for f in args.sbom.iter().chain(&args.provenance) {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ours = out.join(&name);
                let same = std::fs::read(f)
                    .ok()
                    .is_some_and(|a| std::fs::read(&ours).ok() == Some(a));
                report.preflight.push((
                    format!("rebuilt {name}"),
                    same,
                    if same {
                        "byte for byte what the rebuild writes".into()
                    } else {
                        format!("differs from the rebuild's {}", ours.display())
                    },
                ));
            }
        }
        Err(f) => {
            let why = format!("the rebuild failed: {:#}", f.error);
            report.failure = Some(why.clone());
            report.artifacts = check::audit_verdicts(&published, Err(&why));
        }
    }
    finish(
        args.report.as_deref(),
        &args.manifest,
        &mut report,
        Some(&out),
        json,
    )?;
    Ok(ExitCode::from(if report.ok() { 0 } else { 1 }))
}

/// Stops before building: the report says why, and the audit fails.
fn refuse(
    report_dir: Option<&Path>,
    manifest: &Path,
    mut report: Report,
    why: &str,
    json: bool,
) -> Result<ExitCode, Failure> {
    report.failure = Some(format!("{why}: refusing to rebuild"));
    finish(report_dir, manifest, &mut report, None, json)?;
    Ok(ExitCode::from(1))
}

/// The signature, SBOM and provenance checks, each (what, passed, detail).
fn preflight(
    args: &AuditArgs,
    manifest: &Manifest,
    published_dir: &Path,
) -> Result<Vec<(String, bool, String)>, Failure> {
    let mut out = Vec::new();
    let envelope_path = args
        .signature
        .clone()
        .unwrap_or_else(|| published_dir.join(sign::MANIFEST_ENVELOPE));
    let key = match &args.key {
        Some(k) => Some(sign::load_verifying_key(k).map_err(Failure::input)?),
        None if args.signature.is_some() => {
            return Err(Failure::input(anyhow!(
                "--signature needs --key, the publisher's public key, to be checked"
            )));
        }
        None => None,
    };
    if let Some(key) = &key {
        if !envelope_path.is_file() {
            return Err(Failure::input(anyhow!(
                "{} does not exist: --key checks the manifest's signature, so pass --signature \
                 with the published manifest.dsse.json",
                envelope_path.display()
            )));
        }
        let result = Envelope::load(&envelope_path)
            .map_err(|e| e.to_string())
            .and_then(|env| sign::check_manifest(&env, &envelope_path, key, &args.manifest));
        out.push(row("signature of manifest.json", result));
        let prov_env = published_dir.join(sign::PROVENANCE_ENVELOPE);
        if let Some(p) = &args.provenance
            && prov_env.is_file()
        {
            let result = Envelope::load(&prov_env)
                .and_then(|env| env.verify(key, sign::INTOTO_PAYLOAD_TYPE, &prov_env))
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
    } else if envelope_path.is_file() {
        out.push((
            "signature of manifest.json".into(),
            true,
            format!(
                "not checked: {} is there, but no --key was given",
                envelope_path.display()
            ),
        ));
    }
    if let Some(p) = &args.provenance {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Failure::input(anyhow!("{}: {e}", p.display())))?;
        let statement = Statement::parse(&text, p).map_err(Failure::input)?;
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
    for f in &args.sbom {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Failure::input(anyhow!("{}: {e}", f.display())))?;
        let claims = check::sbom_subjects(&text)
            .map_err(|e| Failure::input(anyhow!("{}: {e}", f.display())))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(check::claims_match(&name, &claims, manifest));
    }
    Ok(out)
}

fn row(what: &str, result: Result<String, String>) -> (String, bool, String) {
    match result {
        Ok(d) => (what.to_owned(), true, d),
        Err(d) => (what.to_owned(), false, d),
    }
}

/// The lockfile the manifest names, with the sha256 it records.
fn find_lockfile(
    args: &AuditArgs,
    manifest: &Manifest,
    published_dir: &Path,
) -> Result<PathBuf, Failure> {
    let name = &manifest.lockfile.name;
    let candidates: Vec<PathBuf> = match &args.lockfile {
        Some(p) => vec![p.clone()],
        None => vec![published_dir.join(name), Path::new("lockfiles").join(name)],
    };
    for c in &candidates {
        if !c.is_file() {
            continue;
        }
        let sha = Sha256Digest::of_file(c)
            .map_err(|e| Failure::input(anyhow!("{}: {e}", c.display())))?;
        if sha == manifest.lockfile.sha256 {
            return Ok(c.clone());
        }
        return Err(Failure::input(anyhow!(
            "{} hashes to sha256 {sha}, but the manifest was built from {name} with sha256 {}; \
             pass the lockfile the release was built from with --lockfile",
            c.display(),
            manifest.lockfile.sha256
        )));
    }
    Err(Failure::input(anyhow!(
        "the manifest was built from {name} (sha256 {}), which is not at {}; pass it with \
         --lockfile",
        manifest.lockfile.sha256,
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}

fn finish(
    report_dir: Option<&Path>,
    manifest: &Path,
    report: &mut Report,
    rebuilt: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    if let Some(dir) = report_dir {
        if let (Some(r), Some(p)) = (rebuilt, manifest.parent()) {
            check::add_diffoscope_pages(&mut report.artifacts, p, r, dir);
        }
        let page = check::html::write(report, dir).map_err(Failure::input)?;
        super::progress::say(format!("report: {}", page.display()));
    }
    let code = if report.ok() { 0 } else { 1 };
    if json {
        let mut v = serde_json::to_value(&*report).expect("reports serialise");
        v["ok"] = report.ok().into();
        v["exit_code"] = code.into();
        super::print_json(&v);
        return Ok(());
    }
    for (what, ok, detail) in &report.preflight {
        println!("{:<4} {what}: {detail}", if *ok { "ok" } else { "FAIL" });
    }
    if !report.artifacts.is_empty() {
        super::check::print_artifacts(report);
    }
    if let Some(f) = &report.failure {
        println!("{f}");
    }
    println!(
        "{} match, {} differ, {} could not be rebuilt: {}",
        report.count(Verdict::Matches),
        report.count(Verdict::Differs),
        report.count(Verdict::CouldNotRebuild),
        if report.ok() {
            format!("the rebuild is bit for bit what {} lists", MANIFEST_FILE)
        } else {
            "the published build is not confirmed".into()
        }
    );
    Ok(())
}
