//! A loopback HTTPS git server for integration tests: `git http-backend` (smart HTTP, read
//! only) run as CGI by a small Python `http.server` behind TLS, on 127.0.0.1 with an ephemeral
//! port, with a server certificate for IP 127.0.0.1 signed by a CA made for this server only.
//!
//! Everything it makes (CA, server certificate and key, the script, its log) lives in a
//! tempdir owned by [`HttpsGit`]; dropping it kills the server and waits for it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The path every repository is served under: `https://127.0.0.1:PORT/git/<name>`.
const PREFIX: &str = "git";

/// The server. Arguments: root, cert, key, git-http-backend, prefix, request log, home.
///
/// It binds 127.0.0.1:0 and prints the port on stdout once it listens, exits when its stdin
/// reaches EOF (so it dies with the test process even if `Drop` never runs), logs to stderr,
/// and appends one line per answered request to the request log before sending the response:
/// `METHOD PATH STATUS te=<transfer-encoding> ce=<content-encoding> proto=<git-protocol>`.
const SERVER_PY: &str = r#"
import os, socket, ssl, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

root, cert, key, backend, prefix, request_log, home = sys.argv[1:8]
prefix = "/" + prefix.strip("/")
log_lock = threading.Lock()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])


def note(line):
    with log_lock:
        with open(request_log, "a") as f:
            f.write(line + "\n")
            f.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kata-repro-test-https-git"
    sys_version = ""
    timeout = 120

    def setup(self):
        self.request.settimeout(self.timeout)
        # The TLS handshake happens here, in the connection's own thread, not in accept().
        self.request.do_handshake()
        super().setup()

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))
        sys.stderr.flush()

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te:
            codings = [c.strip() for c in te.split(",") if c.strip()]
            if codings[-1:] != ["chunked"]:
                raise ValueError("unsupported Transfer-Encoding: " + te)
            body = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ValueError("EOF inside a chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    break
                data = self.rfile.read(size)
                if len(data) != size:
                    raise ValueError("EOF inside a chunk")
                body += data
                if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise ValueError("chunk not followed by CRLF")
            while True:
                line = self.rfile.readline(65537)
                if line in (b"\r\n", b"\n", b""):
                    break
            return bytes(body)
        length = self.headers.get("Content-Length")
        if length is not None:
            n = int(length)
            data = self.rfile.read(n)
            if len(data) != n:
                raise ValueError("EOF inside the body")
            return data
        return b""

    def reply(self, status, reason, headers, body):
        note(
            "%s %s %d te=%s ce=%s proto=%s"
            % (
                self.command,
                self.path,
                status,
                (self.headers.get("Transfer-Encoding") or "-").replace(" ", ""),
                (self.headers.get("Content-Encoding") or "-").replace(" ", ""),
                (self.headers.get("Git-Protocol") or "-").replace(" ", ""),
            )
        )
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def cgi(self):
        try:
            body = self.read_body()
        except (ValueError, OSError) as e:
            sys.stderr.write("bad request body: %s\n" % e)
            self.close_connection = True
            self.reply(400, "Bad Request", [("Connection", "close")], b"bad request body\n")
            return
        path, _, query = self.path.partition("?")
        if path != prefix and not path.startswith(prefix + "/"):
            self.reply(404, "Not Found", [("Content-Type", "text/plain")], b"not found\n")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": self.server_version,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.server.server_address[1]),
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": prefix,
            "PATH_INFO": path[len(prefix):],
            "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_LENGTH": str(len(body)),
        }
        for header, var in [
            ("Content-Type", "CONTENT_TYPE"),
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
            ("Accept", "HTTP_ACCEPT"),
            ("User-Agent", "HTTP_USER_AGENT"),
        ]:
            value = self.headers.get(header)
            if value is not None:
                env[var] = value
        proc = subprocess.run(
            [backend], input=body, stdout=subprocess.PIPE, stderr=sys.stderr, env=env
        )
        out = proc.stdout
        sep = out.find(b"\r\n\r\n")
        sep_len = 4
        lf = out.find(b"\n\n")
        if lf != -1 and (sep == -1 or lf < sep):
            sep, sep_len = lf, 2
        if sep == -1:
            sys.stderr.write("git-http-backend exited %d without headers\n" % proc.returncode)
            self.reply(502, "Bad Gateway", [("Content-Type", "text/plain")], b"bad gateway\n")
            return
        status, reason, headers = 200, "OK", []
        for line in out[:sep].decode("latin-1").splitlines():
            if not line.strip():
                continue
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if name.lower() == "status":
                code, _, reason = value.partition(" ")
                status = int(code)
            elif name.lower() not in ("content-length", "transfer-encoding", "connection"):
                headers.append((name, value))
        self.reply(status, reason or None, headers, out[sep + sep_len:])

    do_GET = cgi
    do_POST = cgi


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    allow_reuse_port = False

    def get_request(self):
        sock, addr = self.socket.accept()
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        sys.stderr.write("connection from %s: %s: %s\n" % (client_address, type(e).__name__, e))
        sys.stderr.flush()


def watch_stdin():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


server = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=watch_stdin, daemon=True).start()
sys.stdout.write("%d\n" % server.server_address[1])
sys.stdout.flush()
server.serve_forever()
"#;

/// The CA's `openssl req` config: a v3 CA certificate with basicConstraints CA:TRUE.
const CA_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = kata-repro test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

/// The server certificate request's config.
const SERVER_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = 127.0.0.1
";

const CLIENT_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = kata-repro test client
";

/// The extensions of a client certificate.
const CLIENT_EXT: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The extensions of the server (end-entity) certificate.
const SERVER_EXT: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

pub struct HttpsGit {
    child: Child,
    /// Held open: the server exits when it sees EOF here.
    stdin: Option<ChildStdin>,
    port: u16,
    dir: tempfile::TempDir,
}

impl HttpsGit {
    /// Serves every bare repository under `root` (e.g. root/kata.git) read-only over smart HTTP
    /// (`git http-backend` as CGI) behind TLS on 127.0.0.1 with an ephemeral port, with a
    /// certificate for IP 127.0.0.1 signed by a CA made for this server only.
    pub fn start(root: &Path) -> HttpsGit {
        let root = std::fs::canonicalize(root).expect("the repository root exists");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certificates(d);
        std::fs::write(d.join("server.py"), SERVER_PY).unwrap();
        std::fs::write(d.join("requests.log"), "").unwrap();
        let home = d.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let stderr = std::fs::File::create(d.join("server.log")).unwrap();
        let mut child = Command::new("python3")
            .arg(d.join("server.py"))
            .arg(&root)
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"))
            .arg(http_backend())
            .arg(PREFIX)
            .arg(d.join("requests.log"))
            .arg(&home)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        // From here on, Drop kills the server whatever happens.
        let mut server = HttpsGit {
            child,
            stdin,
            port: 0,
            dir,
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        server.port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => panic!(
                "the https git server did not start (stdout {line:?}):\n{}",
                server.log()
            ),
        };
        server
    }

    /// `https://127.0.0.1:PORT/<prefix>/` such that `format!("{}{name}", base_url())` is the
    /// clone URL of root/<name>.
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}/{PREFIX}/", self.port)
    }

    /// The PEM file of the CA that signed the server certificate (to trust through a CA-file
    /// option).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many HTTP requests it has answered (counted before each response is sent, so a
    /// request whose response the client has read is always counted).
    pub fn requests(&self) -> usize {
        self.request_log().len()
    }

    /// One line per answered request, in order:
    /// `METHOD PATH STATUS te=<Transfer-Encoding> ce=<Content-Encoding> proto=<Git-Protocol>`
    /// with `-` for a header the request did not carry.
    pub fn request_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The server's stderr so far (access log, TLS handshake failures, git-http-backend errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git-http-backend` of the `git` on PATH, or the system one.
fn http_backend() -> PathBuf {
    let exec_path = Command::new("git").arg("--exec-path").output().ok();
    if let Some(out) = exec_path.filter(|o| o.status.success()) {
        let candidate =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-http-backend");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("/usr/lib/git-core/git-http-backend")
}

/// ca.pem/ca.key (a CA for this server only) and server.pem/server.key (for IP 127.0.0.1,
/// signed by that CA) in `d`.
pub fn make_certificates(d: &Path) {
    std::fs::write(d.join("ca.cnf"), CA_CNF).unwrap();
    openssl(
        d,
        &["req", "-x509", "-config", "ca.cnf", "-sha256", "-days", "7"],
        &EC,
        &["-keyout", "ca.key", "-out", "ca.pem"],
    );
    issue(d, "server", SERVER_CNF, SERVER_EXT, "2");
}

/// client.pem/client.key in `d`, a client certificate signed by [`make_certificates`]'s CA.
pub fn make_client_certificate(d: &Path) {
    issue(d, "client", CLIENT_CNF, CLIENT_EXT, "3");
}

/// A new EC P-256 key, unencrypted.
const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// `name`.pem and `name`.key: a certificate with subject `cnf` and extensions `ext`, signed by
/// the CA in `d`.
fn issue(d: &Path, name: &str, cnf: &str, ext: &str, serial: &str) {
    let file = |suffix: &str| format!("{name}.{suffix}");
    std::fs::write(d.join(file("cnf")), cnf).unwrap();
    std::fs::write(d.join(file("ext")), ext).unwrap();
    openssl(
        d,
        &["req", "-new", "-config", &file("cnf"), "-sha256"],
        &EC,
        &["-keyout", &file("key"), "-out", &file("csr")],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &file("csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
        ],
        &[
            "-set_serial",
            serial,
            "-sha256",
            "-days",
            "7",
            "-extfile",
            &file("ext"),
        ],
        &["-out", &file("pem")],
    );
}

fn openssl(d: &Path, a: &[&str], b: &[&str], c: &[&str]) {
    super::run_ok(
        Command::new("openssl")
            .args(a)
            .args(b)
            .args(c)
            .current_dir(d)
            .env_remove("OPENSSL_CONF")
            .stdin(Stdio::null()),
        format!("openssl {a:?} {b:?} {c:?}"),
    );
}
