//! Self-test of the loopback HTTPS git server in `common::https_git`, with the `git` CLI (and
//! reqwest, as the `https` feature's transport uses it) as clients.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::git;
use common::https_git::HttpsGit;

/// A bare repository root/kata.git with one commit, and the commit's id.
fn one_commit_repo(root: &Path) -> String {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("README"), "hello over https\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    git(root, &["clone", "-q", "--bare", "work", "kata.git"]);
    commit
}

/// `git clone` of `url` into `dest` with `config` (`name=value`), an empty HOME, no prompts,
/// no proxies, and no CA bundle from the environment.
fn clone(home: &Path, url: &str, dest: &Path, config: &[String]) -> Output {
    let mut cmd = Command::new("git");
    for c in config {
        cmd.args(["-c", c]);
    }
    cmd.args(["clone", "-q", url])
        .arg(dest)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_CAPATH")
        .env_remove("GIT_SSL_NO_VERIFY");
    for proxy in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(proxy);
    }
    cmd.output().expect("git runs")
}

/// A served repository with one commit: (its tempdir, the commit, the server, the clone URL).
fn served_one_commit() -> (tempfile::TempDir, String, HttpsGit, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let commit = one_commit_repo(&root);
    let server = HttpsGit::start(&root);
    let url = format!("{}kata.git", server.base_url());
    (dir, commit, server, url)
}

fn ca_config(server: &HttpsGit, version: u8) -> Vec<String> {
    vec![
        format!("http.sslCAInfo={}", server.ca_file().display()),
        format!("protocol.version={version}"),
    ]
}

#[test]
fn git_clones_over_https_with_protocol_v2_v1_and_v0() {
    let (dir, commit, server, url) = served_one_commit();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(server.ca_file().is_file());

    for version in [2u8, 1, 0] {
        let before = server.requests();
        let dest = dir.path().join(format!("clone-v{version}"));
        let out = clone(dir.path(), &url, &dest, &ca_config(&server, version));
        assert!(
            out.status.success(),
            "clone v{version}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), commit);
        assert_eq!(
            std::fs::read_to_string(dest.join("README")).unwrap(),
            "hello over https\n"
        );
        let log = server.request_log();
        let this_clone = &log[before..];
        assert!(this_clone.len() >= 2, "{log:#?}");
        assert!(
            this_clone[0].starts_with("GET /git/kata.git/info/refs?service=git-upload-pack 200 "),
            "{log:#?}"
        );
        assert!(
            this_clone
                .iter()
                .any(|l| l.starts_with("POST /git/kata.git/git-upload-pack 200 ")),
            "{log:#?}"
        );
        let v2 = this_clone.iter().any(|l| l.ends_with("proto=version=2"));
        assert_eq!(v2, version == 2, "{log:#?}");
    }
}

#[test]
fn git_refuses_the_server_without_its_ca() {
    let (dir, _, server, url) = served_one_commit();

    // Only the system's CA bundle: the server's CA is in none.
    let out = clone(
        dir.path(),
        &url,
        &dir.path().join("untrusted"),
        &["protocol.version=2".to_owned()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert_eq!(server.requests(), 0, "{:#?}", server.request_log());
    assert!(!dir.path().join("untrusted/.git").exists());

    // A CA that did not sign the server's certificate (another server's) is refused as well.
    let other = HttpsGit::start(&dir.path().join("root"));
    let mut config = ca_config(&other, 2);
    let out = clone(dir.path(), &url, &dir.path().join("wrong-ca"), &config);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.requests(), 0);

    // And with the right one it clones.
    config = ca_config(&server, 2);
    let out = clone(dir.path(), &url, &dir.path().join("trusted"), &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_paths_are_404_and_drop_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    one_commit_repo(&root);
    let server = HttpsGit::start(&root);
    let config = ca_config(&server, 2);
    for url in [
        format!("{}missing.git", server.base_url()),
        format!("https://127.0.0.1:{}/elsewhere/kata.git", server.port()),
    ] {
        let out = clone(dir.path(), &url, &dir.path().join("missing"), &config);
        assert!(!out.status.success());
    }
    let log = server.request_log();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|l| l.contains(" 404 ")), "{log:#?}");

    let port = server.port();
    drop(server);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Git gzips request bodies over 1 KiB and streams ones over http.postBuffer chunked; a clone of
/// a repository with many refs makes it send both. (http.postBuffer must stay above 65520:
/// remote-curl hits a BUG() at exactly that size with protocol v2.)
#[test]
fn gzip_and_chunked_request_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    // 2000 branches on distinct commits: 2000 wants, about 100 KB of request.
    let mut stream = String::new();
    for i in 0..2000 {
        let msg = format!("commit {i}\n");
        stream += &format!(
            "commit refs/heads/b{i:04}\ncommitter F <f@example.org> 1700000000 +0000\ndata {}\n{msg}\n",
            msg.len()
        );
    }
    stream += "reset refs/heads/main\nfrom refs/heads/b0000\n\n";
    let path = dir.path().join("stream");
    std::fs::write(&path, stream).unwrap();
    let status = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&work)
        .stdin(std::fs::File::open(&path).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    git(
        root.as_path(),
        &["clone", "-q", "--bare", "work", "kata.git"],
    );
    let server = HttpsGit::start(&root);
    let url = format!("{}kata.git", server.base_url());

    for (version, post_buffer, body) in [
        (2u8, None, "ce=gzip"),
        (2, Some(65536), "te=chunked"),
        (0, None, "ce=gzip"),
        (0, Some(65536), "te=chunked"),
    ] {
        let before = server.requests();
        let mut config = ca_config(&server, version);
        if let Some(size) = post_buffer {
            config.push(format!("http.postBuffer={size}"));
        }
        let dest = dir.path().join(format!("clone-{version}-{post_buffer:?}"));
        let out = clone(dir.path(), &url, &dest, &config);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let branches = git(&dest, &["branch", "-r"]);
        // b0000..b1999, main and the origin/HEAD symref.
        assert_eq!(branches.lines().count(), 2002, "{branches}");
        let log = server.request_log();
        assert!(
            log[before..]
                .iter()
                .any(|l| l.starts_with("POST ") && l.contains(" 200 ") && l.contains(body)),
            "v{version} postBuffer {post_buffer:?}: {log:#?}"
        );
    }
}

/// The client the `https` feature uses: reqwest with rustls, trusting only the server's CA,
/// posting a streamed body of unknown length (sent chunked), as gix's transport does.
#[cfg(feature = "https")]
#[test]
fn reqwest_with_rustls_and_a_chunked_post() {
    let (_dir, commit, server, url) = served_one_commit();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(server.ca_file()).unwrap()).unwrap();

    let untrusting = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let err = untrusting
        .get(format!("{url}/info/refs?service=git-upload-pack"))
        .send()
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let refs = client
        .get(format!("{url}/info/refs?service=git-upload-pack"))
        .header("Git-Protocol", "version=2")
        .send()
        .unwrap();
    assert_eq!(refs.status(), 200);
    assert_eq!(refs.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        refs.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );
    let refs = refs.text().unwrap();
    assert!(refs.contains("version 2"), "{refs}");
    assert!(refs.contains("ls-refs"), "{refs}");

    // A reader body: reqwest does not know its length and sends it chunked.
    let request = b"0014command=ls-refs\n0000".to_vec();
    let response = client
        .post(format!("{url}/git-upload-pack"))
        .header("Git-Protocol", "version=2")
        .header("Content-Type", "application/x-git-upload-pack-request")
        .header("Accept", "application/x-git-upload-pack-result")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(request)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().unwrap();
    assert!(
        text.contains(&format!("{commit} refs/heads/main")),
        "{text}"
    );
    let log = server.request_log();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(
        log[1].starts_with("POST /git/kata.git/git-upload-pack 200 te=chunked "),
        "{log:#?}"
    );
}
