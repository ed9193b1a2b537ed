//! `kata-repro setup` against the shipped recipes, on a host that has nothing: an empty PATH
//! and an empty dpkg database. What it would install is computed again here from the recipe
//! files themselves.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{kata_repro, text};

/// The packages the shipped recipes name for `arch`, read from the TOML files: every host
/// tool's package and every host package. Panics on a host tool listed without its package.
fn packages_named(arch: &str) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let recipe: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(arch_section) = recipe["arch"].as_table().unwrap().get(arch) else {
            continue;
        };
        for section in [&recipe, arch_section.as_table().unwrap()] {
            if let Some(tools) = section.get("host_tools") {
                let by_package = tools.as_table().unwrap_or_else(|| {
                    panic!(
                        "{}: host_tools must name each tool's Debian package",
                        path.display()
                    )
                });
                for (package, tools) in by_package {
                    assert!(!tools.as_array().unwrap().is_empty(), "{}", path.display());
                    out.insert(package.clone());
                }
            }
            for p in section
                .get("host_packages")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
            {
                out.insert(p.as_str().unwrap().to_owned());
            }
        }
    }
    out
}

fn rust_sysroot() -> PathBuf {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `setup --dry-run` with nothing on PATH and nothing installed.
fn dry_run_on_a_bare_host(extra: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let dpkg = empty.path().join("dpkg");
    std::fs::create_dir_all(dpkg.join("info")).unwrap();
    std::fs::write(dpkg.join("status"), "").unwrap();
    let bin = empty.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    kata_repro()
        .env("PATH", &bin)
        .arg("setup")
        .arg("--dry-run")
        .arg("--admindir")
        .arg(&dpkg)
        .arg("--rust-toolchain")
        .arg(rust_sysroot())
        .args(extra)
        .output()
        .unwrap()
}

fn expected_command(packages: &BTreeSet<String>) -> String {
    let sudo = if nix::unistd::geteuid().is_root() {
        ""
    } else {
        "sudo "
    };
    let list: Vec<&str> = packages.iter().map(String::as_str).collect();
    format!(
        "{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {}",
        list.join(" ")
    )
}

#[test]
fn dry_run_prints_the_one_command_that_installs_what_the_recipes_name() {
    let expected = packages_named("x86_64");
    for needle in [
        "protobuf-compiler",
        "cpio",
        "e2fsprogs",
        "libseccomp-dev",
        "cmake",
    ] {
        assert!(expected.contains(needle), "{needle}: {expected:?}");
    }
    let out = dry_run_on_a_bare_host(&["--arch", "x86_64"]);
    // Something is missing, so the host is not ready: exit 1, and stdout is the command.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected_command(&expected),
        "{}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing protobuf-compiler: protoc"),
        "{stderr}"
    );
    assert!(!stderr.contains("no package named"), "{stderr}");
}

#[test]
fn dry_run_json_lists_every_tool_with_its_package() {
    let expected = packages_named("aarch64");
    assert!(expected.contains("gcc-aarch64-linux-gnu"), "{expected:?}");
    let out = dry_run_on_a_bare_host(&["--arch", "aarch64", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let to_install: BTreeSet<String> = v["to_install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(to_install, expected);
    assert_eq!(v["command"], expected_command(&expected));
    assert_eq!(v["installed"], false);
    let tools = v["surveys"][0]["tools"].as_array().unwrap();
    assert!(tools.len() > 50, "{}", tools.len());
    for t in tools {
        assert!(t["package"].is_string(), "{t}");
        assert!(t["found"].is_null(), "{t}");
    }
    assert!(v["rust"]["found"]["version"].is_string(), "{}", v["rust"]);
}

#[test]
fn a_complete_host_needs_nothing() {
    // The recipe of one component whose tools are on this PATH, with no packages to check.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.toml"),
        r#"schema = 1
component = "one"
description = "a test"

[host_tools]
dash = ["sh"]

[arch.x86_64]
[arch.aarch64]

[[steps]]
name = "build"
argv = ["sh", "-c", "true"]

[[outputs]]
path = "x"
mode = 0o644
"#,
    )
    .unwrap();
    let out = kata_repro()
        .args(["setup", "--dry-run", "--recipes"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(text(&out).contains("nothing to install"), "{}", text(&out));

    let out = kata_repro()
        .args(["setup", "--dry-run", "--component", "nope", "--recipes"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--component nope"), "{}", text(&out));
}
