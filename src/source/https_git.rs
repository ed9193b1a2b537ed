//! Git sources over https, where no local mirror is configured: cloned, or updated, in-process
//! with gix into the store's mirror cache (`<store>/mirrors/<host>/<path>.git`).
//!
//! The cache is only a mirror. Nothing in it is trusted: every object a build uses is read from
//! it exactly as from a local mirror, re-hashed and compared with its pinned id
//! ([`super::git::VerifiedRepo`]), so a server that sends altered objects is caught.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::remote::Direction;

/// Why a remote could not be cloned or updated.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct HttpsGitError {
    pub url: String,
    pub message: String,
}

/// How the cache reaches remotes.
#[derive(Debug, Clone, Default)]
pub struct HttpsOptions {
    /// PEM certificates to trust besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// Makes `dir` a bare mirror of `url` that holds `want`: nothing is fetched when it already
/// does; otherwise every branch and tag is fetched (into a new repository beside `dir`, moved
/// into place only when complete, when there is none yet).
pub fn update(
    url: &str,
    dir: &Path,
    want: Option<ObjectId>,
    options: &HttpsOptions,
) -> Result<(), HttpsGitError> {
    let err = |message: String| HttpsGitError {
        url: url.to_owned(),
        message,
    };
    if !url.starts_with("https://") {
        return Err(err(
            "git is fetched over https only; map it to a local mirror or an https URL".into(),
        ));
    }
    if dir.exists() {
        let repo = open(dir).map_err(err)?;
        if want.is_some_and(|id| repo.has_object(id)) {
            return Ok(());
        }
        return fetch(&repo, url, options).map_err(err);
    }
    let parent = dir.parent().expect("a cache dir has a parent");
    std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
    let stage = tempfile::Builder::new()
        .prefix(".clone-")
        .tempdir_in(parent)
        .map_err(|e| err(format!("{}: {e}", parent.display())))?;
    gix::create::into(
        stage.path(),
        gix::create::Kind::Bare,
        gix::create::Options::default(),
    )
    .map_err(|e| err(format!("cannot create a repository: {e}")))?;
    let repo = open(stage.path()).map_err(err)?;
    fetch(&repo, url, options).map_err(err)?;
    drop(repo);
    let staged = stage.keep();
    std::fs::rename(&staged, dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    Ok(())
}

/// Opens a cache repository ignoring the user's and the system's git configuration.
fn open(dir: &Path) -> Result<gix::Repository, String> {
    gix::open_opts(dir, gix::open::Options::isolated())
        .map_err(|e| format!("{} is not a git repository: {e}", dir.display()))
}

/// Fetches every branch and tag of `url` into `repo`, as they are upstream.
fn fetch(repo: &gix::Repository, url: &str, options: &HttpsOptions) -> Result<(), String> {
    let remote = repo
        .remote_at(url)
        .map_err(|e| format!("not a git URL: {e}"))?
        .with_refspecs(
            ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            Direction::Fetch,
        )
        .map_err(|e| e.to_string())?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let mut connection = remote
        .connect(Direction::Fetch)
        .map_err(|e| format!("cannot connect: {e}"))?;
    if let Some(transport) = transport_options(repo, url, options)? {
        connection.set_transport_options(transport);
    }
    connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| format!("cannot list its refs: {e}"))?
        .receive(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| format!("fetch failed: {e}"))?;
    Ok(())
}

/// gix's http options for `url`: redirects are not followed (gix would follow the first one to
/// any host, which the URL policy never saw), and the CA file's certificates, when given, are
/// added to the client's roots.
fn transport_options(
    repo: &gix::Repository,
    url: &str,
    options: &HttpsOptions,
) -> Result<Option<Box<dyn std::any::Any>>, String> {
    use gix::protocol::transport::client::blocking_io::http;
    use std::sync::{Arc, Mutex};
    let mut boxed = repo
        .transport_options(url, None)
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| Box::new(http::Options::default()));
    let opts = boxed
        .downcast_mut::<http::Options>()
        .ok_or("gix's https transport options are not http options")?;
    opts.follow_redirects = http::options::FollowRedirects::None;
    if let Some(ca_file) = &options.ca_file {
        let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not PEM certificates: {e}", ca_file.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: holds no PEM certificate", ca_file.display()));
        }
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(builder.tls_certs_merge(certs.clone()))
            })),
            configure_request: None,
        };
        opts.backend = Some(Arc::new(Mutex::new(backend)));
    }
    Ok(Some(boxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_is_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let e = update(
            "http://example.org/a",
            &dir.path().join("a.git"),
            None,
            &HttpsOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("over https only"), "{e}");
        assert!(!dir.path().join("a.git").exists());
    }

    /// A loopback server that answers every request with a redirect to `to`, until dropped.
    struct Redirector {
        url: String,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        handle: Option<std::thread::JoinHandle<()>>,
    }

    impl Redirector {
        fn start(to: String) -> Self {
            use std::io::{BufRead, BufReader, Write};
            use std::sync::atomic::Ordering;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let stopped = stop.clone();
            let handle = std::thread::spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    let Ok((conn, _)) = listener.accept() else {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    };
                    conn.set_nonblocking(false).unwrap();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut head = String::new();
                    while reader.read_line(&mut head).unwrap_or(0) > 2 {}
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let _ = write!(
                        &conn,
                        "HTTP/1.1 302 Found\r\nlocation: {to}{path}\r\ncontent-length: 0\r\n\
                         connection: close\r\n\r\n"
                    );
                }
            });
            Self {
                url,
                stop,
                handle: Some(handle),
            }
        }
    }

    impl Drop for Redirector {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    #[test]
    fn a_redirect_is_not_followed() {
        // Where the redirect points: a listener that must never be contacted.
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let server = Redirector::start(format!("http://{}", elsewhere.local_addr().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        gix::create::into(
            dir.path(),
            gix::create::Kind::Bare,
            gix::create::Options::default(),
        )
        .unwrap();
        let repo = open(dir.path()).unwrap();
        let result = fetch(
            &repo,
            &format!("{}/kata.git", server.url),
            &HttpsOptions::default(),
        );
        assert!(result.is_err(), "a redirect is not a repository");
        assert!(
            elsewhere.accept().is_err(),
            "the redirect's target was contacted"
        );
    }
}
