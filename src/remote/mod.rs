//! The Remote Execution API client: a content-addressed store and an action cache shared through
//! an REAPI server (BuildGrid, for one). Every blob read back is hashed again and refused unless
//! it is the digest asked for, so a server is trusted no further than the local store.

mod cache;
mod cas;
mod endpoint;
mod error;
mod execute;
mod worker;

/// The Remote Execution API's messages.
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
pub use cache::{ActionBlobs, RemoteCache};
pub use cas::Blob;
pub use endpoint::{Endpoint, Tls, TlsFiles};
pub use error::RemoteError;
pub use execute::Stage;
pub use worker::{Bot, GIVE_UP_AFTER, Notice, Ran, RunAction};

use std::time::Duration;

use re::capabilities_client::CapabilitiesClient;
use tonic::transport::Channel;

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one instance of a REAPI server, checked to offer what kata-repro uses.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    endpoint: Endpoint,
    /// The largest request BatchUpdateBlobs and BatchReadBlobs take; larger blobs go through
    /// ByteStream.
    max_batch: usize,
    /// Whether the server lets clients write to its action cache.
    cache_writable: bool,
    /// Whether the server executes actions (with SHA-256 digests).
    executes: bool,
}

impl Remote {
    /// Connects and asks the server's capabilities: it must hash with SHA-256 and serve a
    /// CAS and an action cache under the instance name.
    pub fn connect(endpoint: Endpoint) -> Result<Self, RemoteError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Runtime(e.to_string()))?;
        let channel = rt.block_on(async {
            transport(&endpoint)?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(|e| unreachable(&endpoint, error::chain(&e)))
        })?;
        let caps = rt
            .block_on(CapabilitiesClient::new(channel.clone()).get_capabilities(
                re::GetCapabilitiesRequest {
                    instance_name: endpoint.instance.clone(),
                },
            ))
            .map_err(|s| first_call(&endpoint, s))?
            .into_inner();
        let (max_batch, cache_writable) = check_capabilities(&endpoint, &caps)?;
        let remote = Self {
            rt,
            channel,
            executes: executes(&caps),
            endpoint,
            max_batch,
            cache_writable,
        };
        remote.probe_action_cache()?;
        Ok(remote)
    }

    /// Capabilities do not say whether an instance has an action cache to read: ask it for the
    /// result of an action no one builds (the empty blob's).
    fn probe_action_cache(&self) -> Result<(), RemoteError> {
        match self.get_action_result(Blob::of(&[])) {
            Ok(_) => Ok(()),
            Err(RemoteError::Lacks {
                url, instance, why, ..
            }) => Err(RemoteError::Lacks {
                url,
                instance,
                what: "an action cache".into(),
                why,
            }),
            Err(e) => Err(e),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Makes an idempotent call, and makes it again (twice at most, after 0.5 s then 1 s) when
    /// the connection broke under it: a server closes connections that stayed idle while a
    /// build ran, and the first call after that may meet the closing one.
    pub(crate) fn unary<Q, T, F>(
        &self,
        request: Q,
        call: impl Fn(Q) -> F,
    ) -> Result<tonic::Response<T>, tonic::Status>
    where
        Q: Clone,
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            match self.rt.block_on(call(request.clone())) {
                Err(s) if attempt < 2 && broken(&s) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500 << (attempt - 1)));
                }
                other => return other,
            }
        }
    }

    /// Whether the server takes action results from clients.
    pub fn cache_writable(&self) -> bool {
        self.cache_writable
    }

    /// Refuses a server that does not execute actions, for a build that asks it to.
    pub fn require_execution(&self) -> Result<(), RemoteError> {
        if self.executes {
            return Ok(());
        }
        Err(RemoteError::Lacks {
            url: self.endpoint.to_string(),
            instance: self.endpoint.instance.clone(),
            what: "remote execution".into(),
            why: "its capabilities do not enable execution with SHA-256 digests (or add \
                  --remote-cache-only to build here and share results through its cache)"
                .into(),
        })
    }
}

/// A connection that could not be made; over TLS, a certificate the client does not trust is
/// said as such.
fn unreachable(endpoint: &Endpoint, why: String) -> RemoteError {
    let url = endpoint.to_string();
    if endpoint.tls.is_some() && why.contains("invalid peer certificate") {
        return RemoteError::TlsUntrusted { url, why };
    }
    RemoteError::Unreachable { url, why }
}

/// The first call's failure: one the connection broke (a TLS peer that refused this client,
/// say) is the server's being unreachable, with what the transport said.
fn first_call(endpoint: &Endpoint, s: tonic::Status) -> RemoteError {
    use std::error::Error;
    use tonic::Code;
    let why = match s.source() {
        Some(source) => error::chain(source),
        None => s.message().to_owned(),
    };
    let url = endpoint.to_string();
    match s.code() {
        Code::Cancelled | Code::Unknown if endpoint.tls.is_some() => {
            RemoteError::TlsRefused { url, why }
        }
        Code::Cancelled | Code::Unknown | Code::Unavailable => unreachable(endpoint, why),
        _ => error::from_status(endpoint, "GetCapabilities", s),
    }
}

/// The transport's endpoint: the URL, and over TLS, the name the server's certificate must
/// carry, the CAs to trust (the system's unless given) and the client's identity.
fn transport(endpoint: &Endpoint) -> Result<tonic::transport::Endpoint, RemoteError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let bad = |e: &dyn std::error::Error| RemoteError::BadUrl {
        url: endpoint.to_string(),
        why: error::chain(e),
    };
    let channel =
        tonic::transport::Endpoint::from_shared(endpoint.http_url()).map_err(|e| bad(&e))?;
    let Some(tls) = &endpoint.tls else {
        return Ok(channel);
    };
    let mut config = ClientTlsConfig::new().domain_name(endpoint.host.clone());
    config = match &tls.ca {
        Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
        None => config.with_native_roots(),
    };
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    channel.tls_config(config).map_err(|e| bad(&e))
}

/// Whether a call failed because its connection broke, not because the server answered so.
fn broken(s: &tonic::Status) -> bool {
    use tonic::Code;
    match s.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => {
            let m = s.message();
            m.contains("transport error")
                || m.contains("operation was canceled")
                || m.contains("error reading a body from connection")
        }
        _ => false,
    }
}

/// Whether a server's capabilities say it executes actions named by SHA-256 digests.
fn executes(caps: &re::ServerCapabilities) -> bool {
    caps.execution_capabilities.as_ref().is_some_and(|x| {
        x.exec_enabled && x.digest_function == re::digest_function::Value::Sha256 as i32
    })
}

/// What the client needs of a server's capabilities, or the one it lacks: the batch size limit
/// and whether the action cache takes updates.
fn check_capabilities(
    endpoint: &Endpoint,
    caps: &re::ServerCapabilities,
) -> Result<(usize, bool), RemoteError> {
    let lacks = |what: &str, why: String| RemoteError::Lacks {
        url: endpoint.to_string(),
        instance: endpoint.instance.clone(),
        what: what.to_owned(),
        why,
    };
    let cache = caps.cache_capabilities.as_ref().ok_or_else(|| {
        lacks(
            "a CAS and an action cache",
            "its capabilities have no cache_capabilities".into(),
        )
    })?;
    let sha256 = re::digest_function::Value::Sha256 as i32;
    if !cache.digest_functions.contains(&sha256) {
        let names: Vec<String> = cache
            .digest_functions
            .iter()
            .map(|f| {
                re::digest_function::Value::try_from(*f)
                    .map(|v| v.as_str_name().to_owned())
                    .unwrap_or_else(|_| f.to_string())
            })
            .collect();
        return Err(lacks(
            "SHA-256 digests",
            format!("it hashes with [{}]", names.join(", ")),
        ));
    }
    // Zero means no limit of its own; gRPC's default message size still applies.
    let max_batch = match cache.max_batch_total_size_bytes {
        n if n > 0 => (n as usize).min(cas::DEFAULT_MAX_BATCH),
        _ => cas::DEFAULT_MAX_BATCH,
    };
    let writable = cache
        .action_cache_update_capabilities
        .as_ref()
        .is_some_and(|u| u.update_enabled);
    Ok((max_batch, writable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(functions: &[re::digest_function::Value], max: i64) -> re::ServerCapabilities {
        re::ServerCapabilities {
            cache_capabilities: Some(re::CacheCapabilities {
                digest_functions: functions.iter().map(|f| *f as i32).collect(),
                max_batch_total_size_bytes: max,
                action_cache_update_capabilities: Some(re::ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_server_must_hash_with_sha256_and_serve_a_cache() {
        let e: Endpoint = "grpc://127.0.0.1:1".parse().unwrap();
        let ok = check_capabilities(&e, &caps(&[re::digest_function::Value::Sha256], 1 << 20));
        assert_eq!(ok.unwrap(), (1 << 20, true));
        let unlimited = check_capabilities(&e, &caps(&[re::digest_function::Value::Sha256], 0));
        assert_eq!(unlimited.unwrap().0, cas::DEFAULT_MAX_BATCH);
        let sha1 = check_capabilities(&e, &caps(&[re::digest_function::Value::Sha1], 0));
        let msg = sha1.unwrap_err().to_string();
        assert!(msg.contains("SHA-256") && msg.contains("SHA1"), "{msg}");
        let none = check_capabilities(&e, &re::ServerCapabilities::default());
        assert!(none.unwrap_err().to_string().contains("action cache"));
    }

    #[test]
    fn only_a_broken_connection_is_called_again() {
        use tonic::{Code, Status};
        assert!(broken(&Status::new(Code::Unknown, "transport error")));
        assert!(broken(&Status::new(Code::Unavailable, "tcp connect error")));
        assert!(broken(&Status::new(
            Code::Cancelled,
            "operation was canceled"
        )));
        assert!(broken(&Status::new(
            Code::Unknown,
            "h2 protocol error: error reading a body from connection"
        )));
        assert!(!broken(&Status::new(Code::Unknown, "the server failed")));
        assert!(!broken(&Status::new(Code::NotFound, "transport error")));
        assert!(!broken(&Status::new(Code::InvalidArgument, "")));
    }

    #[test]
    fn a_server_executes_only_if_it_says_so_with_sha256() {
        let mut c = caps(&[re::digest_function::Value::Sha256], 0);
        assert!(!executes(&c));
        let exec = |enabled, f: re::digest_function::Value| re::ExecutionCapabilities {
            exec_enabled: enabled,
            digest_function: f as i32,
            ..Default::default()
        };
        c.execution_capabilities = Some(exec(false, re::digest_function::Value::Sha256));
        assert!(!executes(&c));
        c.execution_capabilities = Some(exec(true, re::digest_function::Value::Sha1));
        assert!(!executes(&c));
        c.execution_capabilities = Some(exec(true, re::digest_function::Value::Sha256));
        assert!(executes(&c));
    }
}
