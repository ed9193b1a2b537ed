//! What goes wrong talking to a remote, each with what was expected and what was found.

use super::Endpoint;
use crate::digest::Sha256Digest;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url} is not a remote: {why}; give grpc://HOST:PORT or grpcs://HOST:PORT")]
    BadUrl { url: String, why: String },
    #[error("{}: {why}", path.display())]
    TlsFile {
        path: std::path::PathBuf,
        why: String,
    },
    #[error("{url}: cannot connect: {why}; check that the server runs and listens there")]
    Unreachable { url: String, why: String },
    #[error(
        "{url}: the server closed the TLS connection ({why}); it may want a client certificate \
         (--remote-cert and --remote-key) other than the one given"
    )]
    TlsRefused { url: String, why: String },
    #[error(
        "{url}: the server's TLS certificate is not trusted ({why}); give the CA that signed it \
         with --remote-ca"
    )]
    TlsUntrusted { url: String, why: String },
    #[error(
        "{url} (instance `{instance}`) does not offer {what}: {why}; point --remote at a server \
         that does"
    )]
    Lacks {
        url: String,
        instance: String,
        what: String,
        why: String,
    },
    #[error(
        "{url} has no instance `{instance}` ({why}); give the instance name its configuration \
         declares"
    )]
    UnknownInstance {
        url: String,
        instance: String,
        why: String,
    },
    #[error(
        "{url}: blob {expected} ({expected_size} bytes) came back as {found} ({found_size} \
         bytes): refused"
    )]
    Corrupt {
        url: String,
        expected: Sha256Digest,
        expected_size: u64,
        found: Sha256Digest,
        found_size: u64,
    },
    #[error("{url}: blob {digest} ({size} bytes) is not in the server's CAS")]
    Missing {
        url: String,
        digest: Sha256Digest,
        size: u64,
    },
    #[error("{url}: {call} failed: {why}")]
    Call {
        url: String,
        call: &'static str,
        why: String,
    },
    #[error("reading {path}: {why}")]
    Local { path: String, why: String },
    #[error("starting the gRPC client: {0}")]
    Runtime(String),
}

impl RemoteError {
    /// Whether the fault is in what was given (the address, the instance, the server chosen):
    /// exit 2. A blob that fails its digest is a failed verification: exit 1.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::BadUrl { .. }
                | Self::TlsFile { .. }
                | Self::Unreachable { .. }
                | Self::TlsRefused { .. }
                | Self::TlsUntrusted { .. }
                | Self::Lacks { .. }
                | Self::UnknownInstance { .. }
        )
    }
}

/// A gRPC status from a call, named by the call; an instance the server does not know is its
/// own error.
pub(super) fn from_status(e: &Endpoint, call: &'static str, s: tonic::Status) -> RemoteError {
    let message = s.message().to_owned();
    let about_instance = message.to_ascii_lowercase().contains("instance");
    match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::NotFound if about_instance => {
            RemoteError::UnknownInstance {
                url: e.to_string(),
                instance: e.instance.clone(),
                why: message,
            }
        }
        tonic::Code::Unavailable => RemoteError::Unreachable {
            url: e.to_string(),
            why: message,
        },
        tonic::Code::Unimplemented => RemoteError::Lacks {
            url: e.to_string(),
            instance: e.instance.clone(),
            what: call.to_owned(),
            why: message,
        },
        code => RemoteError::Call {
            url: e.to_string(),
            call,
            why: format!("{code:?}: {message}"),
        },
    }
}

/// An error with its sources, one line.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
