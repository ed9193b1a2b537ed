//! Where a remote is: `grpc://HOST:PORT` (plaintext) or `grpcs://HOST:PORT` (TLS, with the
//! certificates to trust and to show), and the instance name requests carry.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::RemoteError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `HOST:PORT`.
    pub authority: String,
    /// HOST alone: the name the server's certificate must carry.
    pub host: String,
    /// The REAPI instance name; empty for the server's default instance.
    pub instance: String,
    /// For `grpcs://`: what the TLS connection trusts and shows.
    pub tls: Option<Tls>,
}

/// A TLS connection's certificates, read in PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// The CA certificates to trust; none for the system's.
    pub ca: Option<Vec<u8>>,
    /// The client's certificate and key, for a server that asks for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where the files of a TLS connection are, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

impl Endpoint {
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.instance = instance.to_owned();
        self
    }

    /// Reads the TLS files of a `grpcs://` endpoint; refuses them for a plaintext one, and a
    /// certificate without its key.
    pub fn with_tls(mut self, files: &TlsFiles) -> Result<Self, RemoteError> {
        let Some(tls) = &mut self.tls else {
            if files.is_empty() {
                return Ok(self);
            }
            return Err(RemoteError::BadUrl {
                url: self.to_string(),
                why: "--remote-ca, --remote-cert and --remote-key are for a TLS remote".into(),
            });
        };
        let read = |path: &Path| {
            let bytes = std::fs::read(path).map_err(|e| RemoteError::TlsFile {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                return Err(RemoteError::TlsFile {
                    path: path.to_owned(),
                    why: "it holds no PEM block".into(),
                });
            }
            Ok(bytes)
        };
        tls.ca = files.ca.as_deref().map(read).transpose()?;
        tls.identity = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            (Some(path), None) | (None, Some(path)) => {
                return Err(RemoteError::TlsFile {
                    path: path.clone(),
                    why: "a client certificate needs its key: give both --remote-cert and \
                          --remote-key"
                        .into(),
                });
            }
        };
        Ok(self)
    }

    /// A ByteStream resource name under this instance: `[INSTANCE/]TAIL`.
    pub(super) fn resource(&self, tail: &str) -> String {
        if self.instance.is_empty() {
            tail.to_owned()
        } else {
            format!("{}/{tail}", self.instance)
        }
    }

    /// The URL the gRPC transport dials: HTTP/2, over TLS for `grpcs://`.
    pub(super) fn http_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.authority),
            None => format!("http://{}", self.authority),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "grpcs" } else { "grpc" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

impl FromStr for Endpoint {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RemoteError::BadUrl {
            url: s.to_owned(),
            why: why.to_owned(),
        };
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "grpc" => None,
            "grpcs" => Some(Tls::default()),
            other => {
                return Err(bad(&format!(
                    "the scheme is {other}://, not grpc:// or grpcs://"
                )));
            }
        };
        let host = url.host_str().ok_or_else(|| bad("it names no host"))?;
        let port = url.port().ok_or_else(|| bad("it names no port"))?;
        if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
            return Err(bad(
                "it has a path or query; give the instance name on its own",
            ));
        }
        Ok(Self {
            authority: format!("{host}:{port}"),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            instance: String::new(),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_host_port_is_a_remote() {
        let e: Endpoint = "grpc://127.0.0.1:50051".parse().unwrap();
        assert_eq!(e.http_url(), "http://127.0.0.1:50051");
        assert_eq!(e.resource("blobs/x/1"), "blobs/x/1");
        assert_eq!(
            e.with_instance("main").resource("blobs/x/1"),
            "main/blobs/x/1"
        );
        let s: Endpoint = "grpcs://cache.example:443".parse().unwrap();
        assert_eq!(s.http_url(), "https://cache.example:443");
        assert_eq!(s.to_string(), "grpcs://cache.example:443");
        assert_eq!(s.host, "cache.example");
        for (bad, why) in [
            ("http://h:1", "scheme is http"),
            ("grpc://h", "no port"),
            ("grpc://h:1/main", "instance name"),
            ("h:1", "scheme is h"),
        ] {
            let msg = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(msg.contains(why) && msg.contains(bad), "{bad}: {msg}");
        }
    }

    #[test]
    fn tls_files_are_read_for_grpcs_only_and_a_certificate_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, [0x30, 0x82]).unwrap();
        let files = |ca: &Path, cert: Option<&Path>, key: Option<&Path>| TlsFiles {
            ca: Some(ca.to_owned()),
            cert: cert.map(Path::to_owned),
            key: key.map(Path::to_owned),
        };
        let plain: Endpoint = "grpc://h:1".parse().unwrap();
        let msg = plain.with_tls(&files(&pem, None, None)).unwrap_err();
        assert!(msg.to_string().contains("TLS remote"), "{msg}");
        let tls: Endpoint = "grpcs://h:1".parse().unwrap();
        let read = tls
            .clone()
            .with_tls(&files(&pem, Some(&pem), Some(&pem)))
            .unwrap();
        let t = read.tls.unwrap();
        assert!(t.ca.is_some() && t.identity.is_some());
        for (f, why) in [
            (files(&not_pem, None, None), "no PEM"),
            (files(&dir.path().join("gone"), None, None), "gone"),
            (files(&pem, Some(&pem), None), "needs its key"),
        ] {
            let msg = tls.clone().with_tls(&f).unwrap_err().to_string();
            assert!(msg.contains(why), "{msg}");
        }
    }
}
