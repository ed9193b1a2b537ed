//! A fixture Kata-like project with recipes: a Go module with a vendored dependency, and a Rust
//! crate with a vendored git dependency.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::Fixture;

pub const HELLO_GO: &str = r#"
schema = 1
component = "hello"
description = "a Go program with a vendored dependency"
workdir = "src/runtime"
toolchains = ["go"]
inputs = ["go-modules"]
host_tools = []

[arch.x86_64.env]
GOARCH = "amd64"
[arch.aarch64.env]
GOARCH = "arm64"

[env]
CGO_ENABLED = "0"
GOFLAGS = "-mod=${gomod} -modcacherw"
GOPROXY = "${goproxy}"
GOSUMDB = "off"
GOTOOLCHAIN = "local"
GOCACHE = "${tmp}/go-build"
GOPATH = "${tmp}/go"
GOENV = "off"

[[steps]]
name = "build"
argv = ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", "${out}/hello", "./cmd/hello"]

[[outputs]]
path = "hello"
mode = 0o755
"#;

pub const AGENT_RS: &str = r#"
schema = 1
component = "agent"
description = "a Rust crate with a vendored git dependency"
workdir = "src/agent"
toolchains = ["rust"]
inputs = ["cargo-vendor"]
host_tools = ["cc", "ld"]

[arch.x86_64]
[arch.aarch64]

[vars]
remap = "build.rustflags=['--remap-path-prefix=${src}=/src']"

[env]
CARGO_TERM_COLOR = "never"

[[steps]]
name = "cargo-build"
argv = ["cargo", "build", "--release", "--locked", "--offline", "--config", "${remap}"]

[[outputs]]
path = "agent"
from = "target/release/agent"
mode = 0o755
"#;

/// A recipe whose one step runs `script` (a shell line) and writes clean.txt and leak.txt.
pub fn leak_recipe(script: &str) -> String {
    format!(
        r#"
schema = 1
component = "leak"
description = "writes what its world looks like"
workdir = "src/runtime"
host_tools = ["sh", "date", "env", "sort", "cat", "grep", "ls", "mkdir", "mv"]

[arch.x86_64]
[arch.aarch64]

[[steps]]
name = "write"
argv = ["sh", "-c", "echo same > ${{out}}/clean.txt ; {script}"]

[[outputs]]
path = "clean.txt"
mode = 0o644

[[outputs]]
path = "leak.txt"
mode = 0o644
"#
    )
}

/// HELLO_GO with `host_tools` (a TOML array) and its build step's argv replaced by `argv`.
pub fn hello_go_running(host_tools: &str, argv: &str) -> String {
    HELLO_GO
        .replace("host_tools = []", &format!("host_tools = {host_tools}"))
        .replace(
            r#"argv = ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", "${out}/hello", "./cmd/hello"]"#,
            &format!("argv = {argv}"),
        )
}

pub struct Project {
    pub fixture: Fixture,
    pub recipes: PathBuf,
}

impl Project {
    pub fn new(recipes: &[(&str, &str)]) -> Self {
        Self::with(Fixture::with_projects(), recipes)
    }

    pub fn with(fixture: Fixture, recipes: &[(&str, &str)]) -> Self {
        let dir = fixture.root().join("recipes");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in recipes {
            std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        }
        Self {
            fixture,
            recipes: dir,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.fixture.root().join(rel)
    }

    /// `kata-repro build` with the fixture's config, recipes and lockfile.
    pub fn build(&self, store: &str, out: &str, extra: &[&str]) -> Output {
        self.build_with_umask(store, out, extra, None)
    }

    pub fn build_with_umask(
        &self,
        store: &str,
        out: &str,
        extra: &[&str],
        umask: Option<&str>,
    ) -> Output {
        self.command_under(umask, "build", store)
            .arg("--out")
            .arg(self.path(out))
            .args(extra)
            .output()
            .unwrap()
    }

    /// kata-repro `subcommand` with the fixture's config and lockfile, these recipes and the
    /// store at `store`.
    pub fn command(&self, subcommand: &str, store: &str) -> Command {
        self.command_under(None, subcommand, store)
    }

    /// [`Project::command`], under `umask` when one is given.
    pub fn command_under(&self, umask: Option<&str>, subcommand: &str, store: &str) -> Command {
        let mut cmd = self.fixture.command_under(umask, subcommand);
        cmd.arg("--lockfile")
            .arg(&self.fixture.lockfile)
            .arg("--recipes")
            .arg(&self.recipes)
            .arg("--store")
            .arg(self.path(store));
        cmd
    }
}
