//! Byte transport: https (and http for mirrors), `file://` URLs and plain paths.
//!
//! Nothing here trusts what it reads: callers hash the bytes against a pin.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("{url}: the transfer stopped after {got} of {expected} bytes (truncated download)")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url}: writing the download failed: {source}")]
    Write { url: String, source: io::Error },
}

/// Where bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Http(String),
    File(PathBuf),
}

impl Location {
    /// `https://…`/`http://…` are fetched; `file://…` and anything else is a local path.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("https://") || s.starts_with("http://") {
            Location::Http(s.to_owned())
        } else if let Some(path) = s.strip_prefix("file://") {
            Location::File(PathBuf::from(path))
        } else {
            Location::File(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Http(u) => f.write_str(u),
            Location::File(p) => write!(f, "{}", p.display()),
        }
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .user_agent(concat!("kata-repro/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}

/// An open stream and, when the server said, its length.
pub struct Stream {
    pub reader: Box<dyn Read + Send>,
    pub len: Option<u64>,
}

pub fn open(location: &Location, accept: Option<&str>) -> Result<Stream, DownloadError> {
    match location {
        Location::Http(url) => {
            let mut req = agent().get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            let resp = req.call().map_err(|e| DownloadError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
            let len = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            Ok(Stream {
                reader: Box::new(resp.into_body().into_reader()),
                len,
            })
        }
        Location::File(path) => {
            let path = if path.is_dir() {
                path.join("index.json")
            } else {
                path.clone()
            };
            let file = std::fs::File::open(&path).map_err(|source| DownloadError::File {
                path: path.clone(),
                source,
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            Ok(Stream {
                reader: Box::new(file),
                len,
            })
        }
    }
}

/// Copies everything at `location` into `out`, calling `progress` with the running byte count.
/// A transfer shorter than the length the server announced is an error.
pub fn copy_to(
    location: &Location,
    out: &mut impl Write,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, DownloadError> {
    let mut stream = open(location, None)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let url = location.to_string();
    loop {
        let n = match stream.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match stream.len {
                    Some(expected) if total < expected => DownloadError::Truncated {
                        url,
                        got: total,
                        expected,
                    },
                    _ => DownloadError::Http {
                        url,
                        message: e.to_string(),
                    },
                });
            }
        };
        out.write_all(&buf[..n])
            .map_err(|source| DownloadError::Write {
                url: url.clone(),
                source,
            })?;
        total += n as u64;
        progress(total, stream.len);
    }
    if let Some(expected) = stream.len
        && total < expected
    {
        return Err(DownloadError::Truncated {
            url,
            got: total,
            expected,
        });
    }
    Ok(total)
}

/// Reads a small document (an index page) whole.
pub fn get_bytes(url: &str, accept: Option<&str>) -> Result<Vec<u8>, DownloadError> {
    let location = Location::parse(url);
    let mut stream = open(&location, accept)?;
    let mut out = Vec::new();
    stream
        .reader
        .read_to_end(&mut out)
        .map_err(|e| DownloadError::Http {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    Ok(out)
}
