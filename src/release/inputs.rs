//! Which of Kata's per-component tarballs each release tarball merges, read from the Kata tree
//! of the release:
//! - from 4.1.0, `tools/packaging/kata-deploy/local-build/kata-release-tarball-inputs.sh`, one
//!   list per release tarball (`kata-static`, `kata-go-static`) and architecture;
//! - before it, the release workflow `.github/workflows/build-kata-static-tarball-<arch>.yaml`,
//!   whose one `kata-static` merges every asset its `build-asset*` jobs build, less those its
//!   `remove-*` jobs delete before the merge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The script that names the lists (4.1.0 and later).
pub const INPUTS_SCRIPT: &str =
    "tools/packaging/kata-deploy/local-build/kata-release-tarball-inputs.sh";

#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Unreadable { path: PathBuf, problem: String },
}

/// Kata's lists: release tarball name (`kata-static`) → its per-component tarballs, in the
/// script's order (the workflow's lists come sorted).
pub fn kata_inputs(
    kata: &Path,
    kata_arch: &str,
) -> Result<BTreeMap<String, Vec<String>>, InputsError> {
    let script = kata.join(INPUTS_SCRIPT);
    if script.is_file() {
        let text = read(&script)?;
        return from_script(&text, kata_arch).map_err(|problem| InputsError::Unreadable {
            path: script,
            problem,
        });
    }
    let workflow = kata.join(format!(
        ".github/workflows/build-kata-static-tarball-{kata_arch}.yaml"
    ));
    let text = read(&workflow)?;
    let list = from_workflow(&text).map_err(|problem| InputsError::Unreadable {
        path: workflow,
        problem,
    })?;
    Ok(BTreeMap::from([("kata-static".to_owned(), list)]))
}

fn read(path: &Path) -> Result<String, InputsError> {
    std::fs::read_to_string(path).map_err(|source| InputsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The script's functions and the release tarball each lists for.
const SCRIPT_FUNCTIONS: &[(&str, &str)] = &[
    ("kata_static_tarball_inputs", "kata-static"),
    ("kata_go_tarball_inputs", "kata-go-static"),
];

/// The here-documents of each function's `<arch>)` case.
fn from_script(text: &str, kata_arch: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for (function, tarball) in SCRIPT_FUNCTIONS {
        let start = text
            .find(&format!("{function}()"))
            .ok_or_else(|| format!("no function {function}()"))?;
        let body = &text[start..];
        let body = &body[..body.find("\n}").unwrap_or(body.len())];
        let case = format!("{kata_arch})");
        let mut lines = body.lines().skip_while(|l| l.trim() != case).skip(1);
        if !lines.next().is_some_and(|l| l.trim().starts_with("cat <<")) {
            return Err(format!(
                "{function}() has no `{case}` case with a here-document"
            ));
        }
        let list: Vec<String> = lines
            .take_while(|l| l.trim() != "EOF")
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        if list.is_empty() {
            return Err(format!("{function}() lists nothing for {kata_arch}"));
        }
        out.insert((*tarball).to_owned(), list);
    }
    Ok(out)
}

/// `kata-static-<asset>.tar.zst` for every asset of the `build-asset*` jobs' matrices, less the
/// assets of the `remove-*` jobs (which delete them before `create-kata-tarball` merges).
fn from_workflow(text: &str) -> Result<Vec<String>, String> {
    let doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let jobs = doc
        .get("jobs")
        .and_then(|j| j.as_mapping())
        .ok_or("no `jobs`")?;
    let mut built = BTreeSet::new();
    let mut removed = BTreeSet::new();
    for (name, job) in jobs {
        let Some(name) = name.as_str() else { continue };
        let assets = job
            .get("strategy")
            .and_then(|s| s.get("matrix"))
            .and_then(|m| m.get("asset"))
            .and_then(|a| a.as_sequence());
        let Some(assets) = assets else { continue };
        let names = assets.iter().filter_map(|a| a.as_str()).map(str::to_owned);
        if name == "build-asset" || name.starts_with("build-asset-") {
            built.extend(names);
        } else if name.starts_with("remove-") {
            removed.extend(names);
        }
    }
    if built.is_empty() {
        return Err("no `build-asset*` job with a matrix of assets".into());
    }
    Ok(built
        .difference(&removed)
        .map(|a| format!("kata-static-{a}.tar.zst"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree shaped like Kata's, from tests/data/kata-shaped.
    fn shaped(release: &str, path: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/kata-shaped")
            .join(release)
            .join(path)
    }

    #[test]
    fn script_lists_per_tarball_and_arch() {
        let text = std::fs::read_to_string(shaped("4.1.0", INPUTS_SCRIPT)).unwrap();
        let lists = from_script(&text, "amd64").unwrap();
        let rs = &lists["kata-static"];
        assert_eq!(rs.len(), 24);
        assert!(rs.contains(&"kata-static-shim-v2-rust.tar.zst".to_owned()));
        assert!(!rs.contains(&"kata-static-shim-v2-go.tar.zst".to_owned()));
        let go = &lists["kata-go-static"];
        assert_eq!(go.len(), 22);
        assert!(go.contains(&"kata-static-shim-v2-go.tar.zst".to_owned()));
        let ppc = from_script(&text, "ppc64le").unwrap();
        assert_eq!(ppc["kata-static"].len(), 5);
        let err = from_script(&text, "riscv64").unwrap_err();
        assert!(err.contains("no `riscv64)` case"), "{err}");
    }

    /// bash, running the script as Kata's release does, prints the same lists.
    #[test]
    fn script_lists_are_what_bash_prints() {
        let script = shaped("4.1.0", INPUTS_SCRIPT);
        let text = std::fs::read_to_string(&script).unwrap();
        for arch in ["amd64", "ppc64le"] {
            let lists = from_script(&text, arch).unwrap();
            for (tarball, list) in &lists {
                let o = std::process::Command::new("bash")
                    .arg(&script)
                    .args([tarball, arch])
                    .output()
                    .expect("bash runs the script");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let printed: Vec<String> = String::from_utf8(o.stdout)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                assert_eq!(&printed, list, "{tarball} {arch}");
            }
        }
    }

    #[test]
    fn unreadable_trees_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = kata_inputs(dir.path(), "amd64").unwrap_err().to_string();
        assert!(
            err.contains(".github/workflows/build-kata-static-tarball-amd64.yaml"),
            "{err}"
        );
        let workflows = dir.path().join(".github/workflows");
        std::fs::create_dir_all(&workflows).unwrap();
        std::fs::write(
            workflows.join("build-kata-static-tarball-amd64.yaml"),
            "jobs:\n  create-kata-tarball:\n    runs-on: x\n",
        )
        .unwrap();
        let err = kata_inputs(dir.path(), "amd64").unwrap_err().to_string();
        assert!(err.contains("no `build-asset*` job"), "{err}");
    }

    #[test]
    fn workflow_merges_built_assets_less_removed_ones() {
        let text = std::fs::read_to_string(shaped(
            "4.0.0",
            ".github/workflows/build-kata-static-tarball-amd64.yaml",
        ))
        .unwrap();
        let list = from_workflow(&text).unwrap();
        assert_eq!(list.len(), 26, "{list:?}");
        for present in [
            "kata-static-kernel.tar.zst",
            "kata-static-rootfs-image.tar.zst",
            "kata-static-rootfs-initrd.tar.zst",
            "kata-static-shim-v2-rust.tar.zst",
            "kata-static-shim-v2-go.tar.zst",
            "kata-static-qemu.tar.zst",
        ] {
            assert!(list.contains(&present.to_owned()), "{present}");
        }
        for absent in [
            "agent",
            "busybox",
            "pause-image",
            "coco-guest-components",
            "kata-deploy-binary",
            "genpolicy",
        ] {
            assert!(
                !list.contains(&format!("kata-static-{absent}.tar.zst")),
                "{absent}"
            );
        }
    }
}
