//! Signatures over a build's manifest digest and its provenance: ed25519 in DSSE envelopes.
//!
//! `manifest.dsse.json` signs a small JSON statement of `manifest.json`'s sha256;
//! `provenance.dsse.json` signs `provenance.intoto.json` itself (payload type
//! `application/vnd.in-toto+json`). Keys are PKCS#8 PEM files as `openssl genpkey -algorithm
//! ed25519` writes them; see docs/sbom.md.

use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

pub const MANIFEST_ENVELOPE: &str = "manifest.dsse.json";
pub const PROVENANCE_ENVELOPE: &str = "provenance.dsse.json";
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.kata-repro.manifest-digest+json";
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a DSSE envelope: {message}")]
    Envelope { path: PathBuf, message: String },
    #[error(
        "{path}: no signature by key {keyid} verifies (payload or signature changed, or another key signed it)"
    )]
    BadSignature { path: PathBuf, keyid: String },
    #[error("{path}: payload type is {found}, not {expected}")]
    PayloadType {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// A DSSE envelope (https://github.com/secure-systems-lab/dsse).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// What `manifest.dsse.json` signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDigest {
    pub file: String,
    pub sha256: Sha256Digest,
    pub release: String,
    pub arch: String,
}

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The key id kata-repro writes: the sha256 of the public key's DER (SubjectPublicKeyInfo),
/// which is also `openssl pkey -pubin -outform DER | sha256sum`.
pub fn key_id(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("ed25519 keys encode");
    Sha256Digest::of(der.as_bytes()).to_hex()
}

fn read_text(path: &Path) -> Result<String, SignError> {
    std::fs::read_to_string(path).map_err(|source| SignError::Read {
        path: path.to_owned(),
        source,
    })
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey, SignError> {
    let text = read_text(path)?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| SignError::Key {
        path: path.to_owned(),
        message: format!(
            "not an ed25519 private key in PKCS#8 PEM ({e}); make one with `openssl genpkey \
             -algorithm ed25519 -out key.pem`"
        ),
    })
}

/// A public key in PEM, or the private key's PEM (whose public half is then used).
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, SignError> {
    let text = read_text(path)?;
    if let Ok(k) = VerifyingKey::from_public_key_pem(&text) {
        return Ok(k);
    }
    SigningKey::from_pkcs8_pem(&text)
        .map(|k| k.verifying_key())
        .map_err(|e| SignError::Key {
            path: path.to_owned(),
            message: format!(
                "not an ed25519 public key in PEM ({e}); export it with `openssl pkey -in \
                 key.pem -pubout -out key.pub.pem`"
            ),
        })
}

pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Envelope {
    let sig: Signature = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: b64().encode(payload),
        payload_type: payload_type.to_owned(),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: b64().encode(sig.to_bytes()),
        }],
    }
}

impl Envelope {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("envelopes serialise");
        s.push('\n');
        s
    }

    pub fn load(path: &Path) -> Result<Self, SignError> {
        let text = read_text(path)?;
        serde_json::from_str(&text).map_err(|e| SignError::Envelope {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The payload, once a signature by `key` verifies over it and the payload type is
    /// `expected_type`.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        expected_type: &str,
        path: &Path,
    ) -> Result<Vec<u8>, SignError> {
        if self.payload_type != expected_type {
            return Err(SignError::PayloadType {
                path: path.to_owned(),
                found: self.payload_type.clone(),
                expected: expected_type.to_owned(),
            });
        }
        let bad_envelope = |message: String| SignError::Envelope {
            path: path.to_owned(),
            message,
        };
        let payload = b64()
            .decode(&self.payload)
            .map_err(|e| bad_envelope(format!("payload is not base64: {e}")))?;
        let message = pae(&self.payload_type, &payload);
        let verified = self.signatures.iter().any(|s| {
            b64()
                .decode(&s.sig)
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .is_some_and(|sig| key.verify(&message, &sig).is_ok())
        });
        if !verified {
            return Err(SignError::BadSignature {
                path: path.to_owned(),
                keyid: key_id(key),
            });
        }
        Ok(payload)
    }
}

/// Whether `envelope` (read from `envelope_path`) is `key`'s signature over the digest of the
/// manifest at `manifest`: what was checked, or why it fails.
pub fn check_manifest(
    envelope: &Envelope,
    envelope_path: &Path,
    key: &VerifyingKey,
    manifest: &Path,
) -> Result<String, String> {
    let manifest_sha256 = crate::digest::Sha256Digest::of_file(manifest)
        .map_err(|e| format!("{}: {e}", manifest.display()))?;
    let payload = envelope
        .verify(key, MANIFEST_PAYLOAD_TYPE, envelope_path)
        .map_err(|e| e.to_string())?;
    let signed: ManifestDigest = serde_json::from_slice(&payload).map_err(|e| {
        format!(
            "{}: payload is not a manifest digest: {e}",
            envelope_path.display()
        )
    })?;
    if signed.sha256 == manifest_sha256 {
        Ok(format!("sha256 {manifest_sha256} is the signed digest"))
    } else {
        Err(format!(
            "{} was changed after it was signed: it hashes to {manifest_sha256}, the signature \
             covers {}",
            manifest.display(),
            signed.sha256
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_dsse_v1() {
        // The example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn a_changed_payload_or_signature_does_not_verify() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let env = sign(&key, INTOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let p = Path::new("x.dsse.json");
        assert_eq!(
            env.verify(&key.verifying_key(), INTOTO_PAYLOAD_TYPE, p)
                .unwrap(),
            b"{\"a\":1}"
        );
        let mut changed = env.clone();
        changed.payload = b64().encode(b"{\"a\":2}");
        assert!(matches!(
            changed.verify(&key.verifying_key(), INTOTO_PAYLOAD_TYPE, p),
            Err(SignError::BadSignature { .. })
        ));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(
            env.verify(&other.verifying_key(), INTOTO_PAYLOAD_TYPE, p)
                .is_err()
        );
        assert!(matches!(
            env.verify(&key.verifying_key(), MANIFEST_PAYLOAD_TYPE, p),
            Err(SignError::PayloadType { .. })
        ));
    }
}
