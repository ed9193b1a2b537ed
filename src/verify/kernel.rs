//! Kernel inputs: the tarball against its pin, and Kata's patches and config fragments for each
//! architecture, listed with their sha256 from the pinned tree.

use std::path::Path;

use crate::digest::Sha256Digest;
use crate::verify::report::{Ecosystem, Finding, Outcome};

/// Kata's directory name for an architecture's kernel config fragments.
pub fn fragment_dir(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        "s390x" => "s390",
        "ppc64le" => "powerpc",
        "riscv64" => "riscv",
        _ => return None,
    })
}

pub use crate::lock::major_minor;

/// Files directly in `dir` ending in `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The patches of `version` and the fragments of each arch, from a Kata checkout. They are
/// covered by the source tree's pin, so each is listed as verified with its sha256.
pub fn tree_inputs(
    checkout: &Path,
    version: &str,
    arches: &[String],
    pinned_at: Option<&str>,
) -> Vec<Finding> {
    let kernel = checkout.join("tools/packaging/kernel");
    let mut paths = files(
        &kernel
            .join("patches")
            .join(format!("{}.x", major_minor(version))),
        ".patch",
    );
    paths.extend(files(&kernel.join("configs/fragments/common"), ".conf"));
    for arch in arches {
        if let Some(dir) = fragment_dir(arch) {
            paths.extend(files(&kernel.join("configs/fragments").join(dir), ".conf"));
        }
    }
    paths.dedup();
    paths
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(checkout)
                .unwrap_or(&path)
                .display()
                .to_string();
            let f = Finding::new(Ecosystem::Kernel, rel, Outcome::Ok)
                .origin(path.display().to_string());
            let f = match pinned_at {
                Some(p) => f.pinned_at(p),
                None => f,
            };
            match Sha256Digest::of_file(&path) {
                Ok(d) => Finding {
                    actual: Some(d.to_hex()),
                    ..f
                },
                Err(e) => f.outcome(Outcome::Failed).message(e.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(major_minor("6.18.35"), "6.18");
        assert_eq!(major_minor("6.18"), "6.18");
        assert_eq!(fragment_dir("aarch64"), Some("arm64"));
        assert_eq!(fragment_dir("mips"), None);
    }
}
