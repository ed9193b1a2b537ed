//! The e2e's reproducibility stage: `kata-repro check` under every variation, of Kata 3.30.0's
//! runtime and agent, or of the whole 3.30.0-debian release (kernel, agent, rootfs image, initrd,
//! runtime), and its HTML report checked in headless Chromium with a screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

/// What the stage checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// 3.30.0's agent and runtime (`kata-3.30.0.toml`: no rootfs, so no root hash).
    AgentRuntime,
    /// Every component of `kata-3.30.0-debian.toml`; every artifact must be reproducible.
    Release,
}

/// Runs the check; the report and screenshot stay in `out` for a person to look at.
pub fn run(
    root: &Path,
    bin: &Path,
    mirror_args: &[String],
    store: &Path,
    out: &Path,
    scope: Scope,
) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::create_dir_all(out)?;
    let report = out.join("report");
    let started = Instant::now();
    let (lockfile, components, what) = match scope {
        Scope::AgentRuntime => (
            "kata-3.30.0.toml",
            &["--component", "agent,runtime"][..],
            "3.30.0 agent,runtime",
        ),
        Scope::Release => ("kata-3.30.0-debian.toml", &[][..], "3.30.0-debian release"),
    };
    let o = Command::new(bin)
        .args(mirror_args)
        .args(["--json", "check", "--lockfile"])
        .arg(root.join("lockfiles").join(lockfile))
        .args(components)
        .args(["--variations", "all", "--store"])
        .arg(store)
        .arg("--report")
        .arg(&report)
        .arg("--keep")
        .arg(out.join("builds"))
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let code = o.status.code().unwrap_or(-1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .with_context(|| format!("check: {}", String::from_utf8_lossy(&o.stderr)))?;
    ensure!(code == 0 || code == 1, "check exited {code}: {v}");
    std::fs::write(out.join("check.json"), serde_json::to_vec_pretty(&v)?)?;
    println!("check {what} (all variations): exit {code} in {secs:.1}s");
    for t in v["timings"].as_array().into_iter().flatten() {
        println!(
            "  {}: {:.0}s",
            t[0].as_str().unwrap_or(""),
            t[1].as_f64().unwrap_or(0.0)
        );
    }
    println!("  {:<13} {:<8} second build", "variation", "applied");
    for r in v["variations"].as_array().context("variations")? {
        println!(
            "  {:<13} {:<8} {}",
            r["variation"].as_str().unwrap_or(""),
            if r["applied"] == true { "yes" } else { "no" },
            r["second"].as_str().unwrap_or("")
        );
    }
    let artifacts = v["artifacts"].as_array().context("artifacts")?;
    ensure!(!artifacts.is_empty(), "no artifacts: {v}");
    for a in artifacts {
        let blame: Vec<&str> = a["blame"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["variation"].as_str())
            .collect();
        println!(
            "  {:<55} {:<17} {}",
            a["path"].as_str().unwrap_or(""),
            a["verdict"].as_str().unwrap_or(""),
            blame.join(", ")
        );
        if a["verdict"] != "reproducible" {
            for d in a["details"].as_array().into_iter().flatten().take(6) {
                println!("      {d}");
            }
        }
    }
    if let Some(f) = v["failure"].as_str() {
        println!("  failure: {f}");
    }
    let differing = artifacts
        .iter()
        .filter(|a| a["verdict"] != "reproducible")
        .count();
    println!(
        "  {} of {} artifacts reproducible",
        artifacts.len() - differing,
        artifacts.len()
    );
    if scope == Scope::Release {
        ensure!(
            code == 0 && differing == 0,
            "the release is not reproducible under every variation"
        );
    }
    screenshot(
        &report.join("index.html"),
        &out.join("report.png"),
        artifacts,
    )?;
    Ok(())
}

fn chromium() -> Result<PathBuf> {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(c).is_file() {
            return Ok(PathBuf::from(c));
        }
    }
    bail!("headless Chromium is needed for the report's screenshot test: apt-get install chromium")
}

/// Chromium, headless, with no background traffic (this machine has no network).
fn headless(profile: &Path) -> Result<Command> {
    let mut c = Command::new(chromium()?);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    Ok(c)
}

/// Renders the page, checks what the browser's DOM holds and that the screenshot is a page's
/// worth of pixels.
fn screenshot(page: &Path, png: &Path, artifacts: &[serde_json::Value]) -> Result<()> {
    let profile = tempfile::tempdir()?;
    let url = format!("file://{}", page.canonicalize()?.display());
    let dom = headless(profile.path())?
        .args(["--dump-dom", &url])
        .output()?;
    let dom = String::from_utf8_lossy(&dom.stdout);
    ensure!(
        dom.contains("id=\"verdict\""),
        "the rendered page has no verdict banner"
    );
    for a in artifacts {
        let path = a["path"].as_str().unwrap_or_default();
        ensure!(dom.contains(path), "the rendered page does not list {path}");
    }
    for heading in ["Artifacts", "Variations", "Inputs"] {
        ensure!(
            dom.contains(&format!(">{heading}</h2>")),
            "the rendered page has no {heading} section"
        );
    }
    let status = headless(profile.path())?
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,1600")
        .arg(&url)
        .output()?;
    ensure!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let bytes = std::fs::read(png)?;
    ensure!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 24,
        "not a PNG"
    );
    let width = u32::from_be_bytes(bytes[16..20].try_into()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into()?);
    ensure!(
        width == 1280 && height == 1600,
        "screenshot is {width}×{height}"
    );
    // A blank page compresses to a few KiB; tables of text do not.
    ensure!(
        bytes.len() > 30_000,
        "the screenshot looks blank ({} bytes)",
        bytes.len()
    );
    println!(
        "report: {} rendered in Chromium, screenshot {} ({width}×{height}, {} KiB)",
        page.display(),
        png.display(),
        bytes.len() / 1024
    );
    Ok(())
}
