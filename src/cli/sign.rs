use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use kata_repro::digest::Sha256Digest;
use kata_repro::files::write_atomically;
use kata_repro::manifest::sign::{self, Envelope, ManifestDigest};
use kata_repro::manifest::{MANIFEST_FILE, Manifest};
use kata_repro::provenance::{self, Statement};

use super::Failure;
use super::render::{Format, Output, outln};

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// An ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519 -out key.pem`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The build's output directory (with manifest.json and provenance.intoto.json).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifySignatureArgs {
    /// The ed25519 public key in PEM (`openssl pkey -in key.pem -pubout -out key.pub.pem`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The build's output directory (with the `.dsse.json` envelopes `sign` wrote).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

pub fn run(args: SignArgs, format: Format) -> Result<ExitCode, Failure> {
    let key = sign::load_signing_key(&args.key).map_err(Failure::input)?;
    let manifest_path = args.dir.join(MANIFEST_FILE);
    let manifest = Manifest::load(&manifest_path).map_err(Failure::input)?;
    let manifest_bytes = std::fs::read(&manifest_path)
        .map_err(|e| Failure::input(anyhow!("{}: {e}", manifest_path.display())))?;
    let provenance_path = args.dir.join(provenance::FILE);
    let provenance_bytes = std::fs::read(&provenance_path).map_err(|e| {
        Failure::input(anyhow!(
            "{}: {e}; builds write it beside manifest.json (rebuild with this kata-repro)",
            provenance_path.display()
        ))
    })?;
    Statement::parse(
        &String::from_utf8_lossy(&provenance_bytes),
        &provenance_path,
    )
    .map_err(Failure::input)?;

    let statement = ManifestDigest {
        file: MANIFEST_FILE.into(),
        sha256: Sha256Digest::of(&manifest_bytes),
        release: manifest.release.clone(),
        arch: manifest.arch.clone(),
    };
    let payload = serde_json::to_vec(&statement).expect("digests serialise");
    let envelopes = [
        (
            sign::MANIFEST_ENVELOPE,
            sign::sign(&key, sign::MANIFEST_PAYLOAD_TYPE, &payload),
        ),
        (
            sign::PROVENANCE_ENVELOPE,
            sign::sign(&key, sign::INTOTO_PAYLOAD_TYPE, &provenance_bytes),
        ),
    ];
    for (name, env) in &envelopes {
        let path = args.dir.join(name);
        write_atomically(&path, env.to_json().as_bytes())
            .map_err(|e| Failure::input(anyhow!("writing {}: {e}", path.display())))?;
    }
    let keyid = sign::key_id(&key.verifying_key());
    let json = serde_json::json!({
        "keyid": keyid,
        "manifest_sha256": statement.sha256,
        "envelopes": envelopes.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
    });
    let text = |out: &mut String| {
        outln!(
            out,
            "signed manifest.json (sha256 {}) and {} with key {keyid}: {}, {}",
            statement.sha256,
            provenance::FILE,
            sign::MANIFEST_ENVELOPE,
            sign::PROVENANCE_ENVELOPE
        );
    };
    Ok(format.emit(Output::ok(json, &text)))
}

#[derive(serde::Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

pub fn verify(args: VerifySignatureArgs, format: Format) -> Result<ExitCode, Failure> {
    let key = sign::load_verifying_key(&args.key).map_err(Failure::input)?;
    let mut checks: Vec<Check> = Vec::new();
    let mut check = |what: &str, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        checks.push(Check {
            what: what.to_owned(),
            ok,
            detail,
        });
    };

    // The manifest: the signed digest must be the file's.
    let env_path = args.dir.join(sign::MANIFEST_ENVELOPE);
    let envelope = Envelope::load(&env_path).map_err(Failure::input)?;
    let manifest_path = args.dir.join(MANIFEST_FILE);
    check(
        MANIFEST_FILE,
        sign::check_manifest(&envelope, &env_path, &key, &manifest_path),
    );

    // The provenance: signed as it is, and each subject matching its file.
    let env_path = args.dir.join(sign::PROVENANCE_ENVELOPE);
    let envelope = Envelope::load(&env_path).map_err(Failure::input)?;
    let provenance_path = args.dir.join(provenance::FILE);
    let signed = envelope
        .verify(&key, sign::INTOTO_PAYLOAD_TYPE, &env_path)
        .map_err(|e| e.to_string());
    let on_disk = std::fs::read(&provenance_path).ok();
    check(
        provenance::FILE,
        signed.clone().and_then(|payload| match &on_disk {
            Some(bytes) if *bytes == payload => Ok("the signed statement".into()),
            Some(_) => Err(format!(
                "{} differs from the statement its envelope signs",
                provenance_path.display()
            )),
            None => Ok(format!(
                "checked from {} ({} absent)",
                sign::PROVENANCE_ENVELOPE,
                provenance::FILE
            )),
        }),
    );
    if let Ok(payload) = signed {
        let statement = Statement::parse(&String::from_utf8_lossy(&payload), &env_path)
            .map_err(Failure::check)?;
        for s in provenance::check_subjects(&statement, &args.dir) {
            let result = match &s.found {
                _ if s.ok() => Ok(format!("sha256 {}", s.expected)),
                Some(found) => Err(format!(
                    "the provenance names sha256 {}, the file hashes to {found}",
                    s.expected
                )),
                None => Err(format!(
                    "missing (the provenance names sha256 {})",
                    s.expected
                )),
            };
            check(&format!("subject {}", s.name), result);
        }
    }

    let failed = checks.iter().filter(|c| !c.ok).count();
    let json = serde_json::json!({
        "keyid": sign::key_id(&key),
        "checks": checks,
    });
    let text = |out: &mut String| {
        for c in checks.iter().filter(|c| !c.ok || checks.len() <= 12) {
            outln!(
                out,
                "{:<4} {:<40} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.what,
                c.detail
            );
        }
        outln!(
            out,
            "{} checks, {failed} failed (key {})",
            checks.len(),
            sign::key_id(&key)
        );
    };
    Ok(format.emit(Output::checked(failed == 0, json, &text)))
}
