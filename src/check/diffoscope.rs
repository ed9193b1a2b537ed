//! diffoscope's pages for differing artifacts, where diffoscope is installed.

use std::path::{Path, PathBuf};

use super::ArtifactVerdict;

/// Where diffoscope is, if installed.
pub fn diffoscope() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("diffoscope"))
        .find(|p| p.is_file())
}

/// Runs diffoscope on two differing files into `<report>/diffoscope/<n>.html`, and records the
/// page on the verdict.
pub fn add_diffoscope_pages(
    verdicts: &mut [ArtifactVerdict],
    a_dir: &Path,
    b_dir: &Path,
    report_dir: &Path,
) {
    let Some(bin) = diffoscope() else { return };
    let pages = report_dir.join("diffoscope");
    for (n, v) in verdicts.iter_mut().enumerate() {
        if v.verdict.ok() || v.sha256_first.is_none() || v.sha256_second.is_none() {
            continue;
        }
        let (a, b) = (a_dir.join(&v.path), b_dir.join(&v.path));
        if !a.is_file() || !b.is_file() {
            continue;
        }
        if std::fs::create_dir_all(&pages).is_err() {
            return;
        }
        let rel = format!("diffoscope/{n}.html");
        let status = std::process::Command::new(&bin)
            .arg("--html")
            .arg(report_dir.join(&rel))
            .args(["--no-progress", "--max-report-size", "20000000"])
            .arg(&a)
            .arg(&b)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // diffoscope exits 1 when the files differ, which they do.
        if matches!(status, Ok(s) if s.code() == Some(1) || s.success()) {
            v.diffoscope_html = Some(rel);
        }
    }
}
