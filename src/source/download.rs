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
    #[error(
        "{url}: the transfer stopped after {got}{} bytes (truncated download): {why}",
        expected.map(|e| format!(" of {e}")).unwrap_or_default()
    )]
    Truncated {
        url: String,
        got: u64,
        expected: Option<u64>,
        why: String,
    },
    #[error("{url}: the body is larger than {limit} bytes, more than this download may be")]
    TooLarge { url: String, limit: u64 },
    #[error(
        "{url}: redirected to {to}, which is not followed: {why}; pin the URL the file is \
         served from, or allow its host (--allow-host, or [policy] in the config)"
    )]
    Redirected {
        url: String,
        to: String,
        why: String,
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

/// How long a transfer may go without a byte before it is given up (a slow link is fine, a
/// stalled one is not).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest body a download of a pinned file may have.
pub const MAX_FILE_BYTES: u64 = 8 << 30;

/// The largest index document (a JSON index, a Release file) read into memory.
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // Redirects are followed by [`open`], each checked against the caller's policy.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("kata-repro/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}

/// Where a download may be redirected.
#[derive(Clone, Copy)]
pub enum Redirects<'a> {
    /// Nowhere: a redirect is an error naming its target.
    Refused,
    /// To URLs this policy accepts (https, an allowed host).
    Within(&'a super::policy::HostPolicy),
}

/// How a body is read.
#[derive(Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub max_bytes: u64,
}

impl Limits {
    pub const FILE: Limits = Limits {
        idle: IDLE_TIMEOUT,
        max_bytes: MAX_FILE_BYTES,
    };
    pub const DOCUMENT: Limits = Limits {
        idle: IDLE_TIMEOUT,
        max_bytes: MAX_DOCUMENT_BYTES,
    };
}

/// An open stream and, when the server said, its length.
pub struct Stream {
    pub reader: Box<dyn Read + Send>,
    pub len: Option<u64>,
    /// The server said it serves byte ranges of this URL.
    pub ranges: bool,
    /// The URL the body came from, after redirects.
    pub url: String,
}

pub fn open(location: &Location, accept: Option<&str>) -> Result<Stream, DownloadError> {
    open_with(
        location,
        accept,
        Redirects::Refused,
        None,
        Some(IDLE_TIMEOUT),
    )
}

/// Opens `location`, following redirects `redirects` allows, from byte `from` on when given
/// (an HTTP range request; the server must answer 206).
pub fn open_with(
    location: &Location,
    accept: Option<&str>,
    redirects: Redirects<'_>,
    from: Option<u64>,
    idle: Option<Duration>,
) -> Result<Stream, DownloadError> {
    match location {
        Location::Http(url) => {
            let mut current = url.clone();
            for _ in 0..10 {
                let mut req = agent()
                    .get(&current)
                    .config()
                    .timeout_per_read(idle)
                    .build();
                if let Some(a) = accept {
                    req = req.header("Accept", a);
                }
                if let Some(n) = from {
                    req = req.header("Range", format!("bytes={n}-"));
                }
                let resp = req.call().map_err(|e| DownloadError::Http {
                    url: current.clone(),
                    message: e.to_string(),
                })?;
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                if resp.status().is_redirection() {
                    let to = header("location")
                        .and_then(|l| url::Url::parse(&current).ok()?.join(&l).ok())
                        .map(|u| u.to_string())
                        .ok_or_else(|| DownloadError::Http {
                            url: current.clone(),
                            message: format!("{} without a usable Location", resp.status()),
                        })?;
                    let refused = |why: String| DownloadError::Redirected {
                        url: current.clone(),
                        to: to.clone(),
                        why,
                    };
                    match redirects {
                        Redirects::Refused => {
                            return Err(refused("redirects are not followed here".into()));
                        }
                        Redirects::Within(policy) => {
                            policy.check(&to).map_err(|e| refused(e.to_string()))?;
                        }
                    }
                    current = to;
                    continue;
                }
                if from.is_some() && resp.status().as_u16() != 206 {
                    return Err(DownloadError::Http {
                        url: current,
                        message: format!("asked for a range, answered {}", resp.status()),
                    });
                }
                if let Some(n) = from {
                    let range = header("content-range").unwrap_or_default();
                    if range_start(&range) != Some(n) {
                        return Err(DownloadError::Http {
                            url: current,
                            message: format!(
                                "asked for the bytes from {n} on, answered the range `{range}`"
                            ),
                        });
                    }
                }
                if !resp.status().is_success() {
                    return Err(DownloadError::Http {
                        url: current,
                        message: resp.status().to_string(),
                    });
                }
                let len = header("content-length").and_then(|v| v.parse().ok());
                let ranges = header("accept-ranges").is_some_and(|v| v.trim() == "bytes");
                return Ok(Stream {
                    reader: Box::new(resp.into_body().into_reader()),
                    len,
                    ranges,
                    url: current,
                });
            }
            Err(DownloadError::Http {
                url: url.clone(),
                message: "more than 10 redirects".into(),
            })
        }
        Location::File(path) => {
            let path = if path.is_dir() {
                path.join("index.json")
            } else {
                path.clone()
            };
            let mut file = std::fs::File::open(&path).map_err(|source| DownloadError::File {
                path: path.clone(),
                source,
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            if let Some(n) = from {
                use std::io::Seek;
                file.seek(io::SeekFrom::Start(n))
                    .map_err(|source| DownloadError::File {
                        path: path.clone(),
                        source,
                    })?;
            }
            Ok(Stream {
                reader: Box::new(file),
                len: len.map(|l| l - from.unwrap_or(0).min(l)),
                ranges: true,
                url: path.display().to_string(),
            })
        }
    }
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/LENGTH` header.
fn range_start(header: &str) -> Option<u64> {
    header
        .trim()
        .strip_prefix("bytes ")?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

/// Whether a read failed because no byte arrived in time.
fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)))
}

/// Copies everything at `location` into `out`, calling `progress` with the running byte count.
/// No read may wait longer than `limits.idle`, and the body may not exceed `limits.max_bytes`.
/// A transfer cut short (shorter than the length the server announced, or broken off) is
/// resumed with a range request where the server serves ranges, and is otherwise an error.
pub fn copy_to(
    location: &Location,
    out: &mut impl Write,
    redirects: Redirects<'_>,
    limits: Limits,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, DownloadError> {
    copy_accepting(location, None, out, redirects, limits, progress)
}

/// [`copy_to`], asking the server for the media type `accept`.
fn copy_accepting(
    location: &Location,
    accept: Option<&str>,
    out: &mut impl Write,
    redirects: Redirects<'_>,
    limits: Limits,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, DownloadError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut expected: Option<u64> = None;
    let mut resumes = 0;
    loop {
        let from = (total > 0).then_some(total);
        let stream = open_with(location, accept, redirects, from, Some(limits.idle))?;
        expected = expected.or(stream.len.map(|l| l + total));
        let url = stream.url.clone();
        if let Some(e) = expected
            && e > limits.max_bytes
        {
            return Err(DownloadError::TooLarge {
                url,
                limit: limits.max_bytes,
            });
        }
        let ranges = stream.ranges;
        let mut reader = stream.reader;
        let cut = loop {
            match reader.read(&mut buf) {
                Ok(0) => match expected {
                    Some(e) if total < e => break "the connection closed early".into(),
                    _ => return Ok(total),
                },
                Ok(n) => {
                    total += n as u64;
                    if let Some(e) = expected
                        && total > e
                    {
                        return Err(DownloadError::Http {
                            url,
                            message: format!("the body is longer than the announced {e} bytes"),
                        });
                    }
                    if total > limits.max_bytes {
                        return Err(DownloadError::TooLarge {
                            url,
                            limit: limits.max_bytes,
                        });
                    }
                    out.write_all(&buf[..n])
                        .map_err(|source| DownloadError::Write {
                            url: url.clone(),
                            source,
                        })?;
                    progress(total, expected);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    break format!("no byte arrived for {:?}", limits.idle);
                }
                Err(e) => break e.to_string(),
            }
        };
        if ranges && resumes < 3 && total > 0 {
            resumes += 1;
            continue;
        }
        return Err(DownloadError::Truncated {
            url,
            got: total,
            expected,
            why: cut,
        });
    }
}

/// Reads a small document (an index page) whole, up to [`MAX_DOCUMENT_BYTES`], on the same
/// terms as a file: no read waits longer than [`IDLE_TIMEOUT`], and no redirect is followed.
pub fn get_bytes(url: &str, accept: Option<&str>) -> Result<Vec<u8>, DownloadError> {
    get_bytes_with(url, accept, Limits::DOCUMENT)
}

fn get_bytes_with(
    url: &str,
    accept: Option<&str>,
    limits: Limits,
) -> Result<Vec<u8>, DownloadError> {
    let mut out = Vec::new();
    copy_accepting(
        &Location::parse(url),
        accept,
        &mut out,
        Redirects::Refused,
        limits,
        |_, _| {},
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// What one connection gets: the raw response head and body parts, with a pause before
    /// each part; the connection is closed after the last.
    struct Reply {
        parts: Vec<(Duration, Vec<u8>)>,
    }

    /// A loopback HTTP server that answers its connections in turn with `replies`, and records
    /// each request's head. Stopped when dropped.
    struct Server {
        url: String,
        requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        handle: Option<std::thread::JoinHandle<()>>,
        addr: std::net::SocketAddr,
    }

    impl Server {
        fn start(replies: Vec<Reply>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = requests.clone();
            let handle = std::thread::spawn(move || {
                for reply in replies {
                    let Ok((mut conn, _)) = listener.accept() else {
                        return;
                    };
                    let mut head = String::new();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    seen.lock().unwrap().push(head);
                    for (pause, bytes) in reply.parts {
                        std::thread::sleep(pause);
                        if conn.write_all(&bytes).is_err() {
                            break;
                        }
                        let _ = conn.flush();
                    }
                }
            });
            Self {
                url: format!("http://{addr}"),
                requests,
                handle: Some(handle),
                addr,
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            // Unblock a pending accept; the thread ends when its replies run out.
            for _ in 0..8 {
                let _ = std::net::TcpStream::connect(self.addr);
            }
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn now(bytes: &[u8]) -> (Duration, Vec<u8>) {
        (Duration::ZERO, bytes.to_vec())
    }

    const QUICK: Limits = Limits {
        idle: Duration::from_millis(700),
        max_bytes: 1 << 20,
    };

    fn get(
        server: &Server,
        path: &str,
        redirects: Redirects<'_>,
        limits: Limits,
    ) -> Result<Vec<u8>, DownloadError> {
        let mut out = Vec::new();
        copy_to(
            &Location::Http(format!("{}{path}", server.url)),
            &mut out,
            redirects,
            limits,
            |_, _| {},
        )
        .map(|_| out)
    }

    #[test]
    fn a_slow_steady_body_arrives_and_a_stalled_one_is_truncated() {
        let slow = Reply {
            parts: std::iter::once(now(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
            ))
            .chain((0..5).map(|_| (Duration::from_millis(300), b"x".to_vec())))
            .collect(),
        };
        let stalled = Reply {
            parts: vec![
                now(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab"),
                (Duration::from_secs(3), b"cde".to_vec()),
            ],
        };
        // The first reply closes its connection, so the second request is not written into a
        // socket the server is closing.
        let s = Server::start(vec![slow, stalled]);
        // 1.5 s in all, more than the idle timeout, but never idle that long.
        assert_eq!(
            get(&s, "/slow", Redirects::Refused, QUICK).unwrap(),
            b"xxxxx"
        );
        match get(&s, "/stalled", Redirects::Refused, QUICK) {
            Err(DownloadError::Truncated {
                got: 2,
                expected: Some(5),
                why,
                ..
            }) => {
                assert!(why.contains("no byte arrived"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_chunked_body_cut_short_is_truncated() {
        let s = Server::start(vec![Reply {
            parts: vec![now(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\nde",
            )],
        }]);
        match get(&s, "/chunked", Redirects::Refused, QUICK) {
            Err(DownloadError::Truncated {
                got,
                expected: None,
                ..
            }) => assert!(got >= 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_larger_than_the_limit_is_refused() {
        let s = Server::start(vec![
            Reply {
                parts: vec![now(b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n")],
            },
            Reply {
                parts: vec![
                    now(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"),
                    now(&[b'x'; 1_100_000]),
                ],
            },
        ]);
        for path in ["/announced", "/unannounced"] {
            assert!(
                matches!(
                    get(&s, path, Redirects::Refused, QUICK),
                    Err(DownloadError::TooLarge {
                        limit: 1_048_576,
                        ..
                    })
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn a_transfer_cut_short_resumes_with_a_range_request() {
        let s = Server::start(vec![
            Reply {
                parts: vec![now(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\naccept-ranges: bytes\r\n\r\n01234",
                )],
            },
            Reply {
                parts: vec![now(
                    b"HTTP/1.1 206 Partial Content\r\ncontent-length: 5\r\ncontent-range: bytes 5-9/10\r\n\r\n56789",
                )],
            },
        ]);
        assert_eq!(
            get(&s, "/f", Redirects::Refused, QUICK).unwrap(),
            b"0123456789"
        );
        let requests = s.requests.lock().unwrap().clone();
        assert!(
            requests[1].to_ascii_lowercase().contains("range: bytes=5-"),
            "{requests:?}"
        );
    }

    #[test]
    fn redirects_are_followed_only_where_the_policy_allows() {
        // Each reply closes its connection, so the second request cannot be written into the
        // first one's socket while the server is already closing it.
        let s = Server::start(vec![Reply {
            parts: vec![now(
                b"HTTP/1.1 302 Found\r\nlocation: https://evil.example/f\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )],
        }, Reply {
            parts: vec![now(
                b"HTTP/1.1 302 Found\r\nlocation: https://evil.example/f\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )],
        }]);
        let policy = crate::source::policy::HostPolicy::new(["github.com"]);
        match get(&s, "/f", Redirects::Within(&policy), QUICK) {
            Err(DownloadError::Redirected { to, why, .. }) => {
                assert_eq!(to, "https://evil.example/f");
                assert!(why.contains("allow-list"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            get(&s, "/f", Redirects::Refused, QUICK),
            Err(DownloadError::Redirected { .. })
        ));
    }

    #[test]
    fn a_document_is_read_with_the_idle_timeout_and_the_size_limit() {
        // The server answers one connection at a time, so the stalled one comes last.
        let s = Server::start(vec![
            Reply {
                parts: vec![
                    now(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"),
                    now(&[b'x'; 1_100_000]),
                ],
            },
            Reply {
                parts: vec![
                    now(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab"),
                    (Duration::from_secs(3), b"cde".to_vec()),
                ],
            },
        ]);
        let large = get_bytes_with(&format!("{}/large", s.url), None, QUICK);
        assert!(
            matches!(large, Err(DownloadError::TooLarge { .. })),
            "{large:?}"
        );
        let started = std::time::Instant::now();
        assert!(matches!(
            get_bytes_with(&format!("{}/stalled", s.url), None, QUICK),
            Err(DownloadError::Truncated { got: 2, .. })
        ));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the stalled read was waited out: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_resumed_transfer_must_continue_where_it_stopped() {
        let s = Server::start(vec![
            Reply {
                parts: vec![now(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\naccept-ranges: bytes\r\n\r\n01234",
                )],
            },
            Reply {
                parts: vec![now(
                    b"HTTP/1.1 206 Partial Content\r\ncontent-length: 10\r\ncontent-range: bytes 0-9/10\r\n\r\n0123456789",
                )],
            },
        ]);
        match get(&s, "/f", Redirects::Refused, QUICK) {
            Err(DownloadError::Http { message, .. }) => {
                assert!(message.contains("bytes 0-9/10"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(range_start("bytes 5-9/10"), Some(5));
        assert_eq!(range_start("bytes */10"), None);
    }
}
