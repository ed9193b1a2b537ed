//! The e2e's reproducibility stage: `kata-repro check` under every variation, of Kata 3.30.0's
//! runtime and agent, or of the whole 3.30.0-debian release (kernel, agent, rootfs image, initrd,
//! runtime); or Kata 4.0.0's release tarball with what it holds, built a second time at other
//! paths, later and under umask 077; and its HTML report checked in headless Chromium with a
//! screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use sha2::Digest as _;

/// What the stage checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// 3.30.0's agent and runtime (`kata-3.30.0.toml`: no rootfs, so no root hash).
    AgentRuntime,
    /// Every component of `kata-3.30.0-debian.toml`; every artifact must be reproducible.
    Release,
    /// `kata-4.0.0-debian.toml`'s kata-static tarball and the agent, runtime-rs, kernel,
    /// rootfs and initrd it is built from, under build_path, time and umask; every artifact must
    /// be reproducible, the tarballs identical, and runtime-rs's configurations must carry the
    /// image's root hash.
    Kata4,
}

/// Runs the check; the report and screenshot stay in `out` for a person to look at. With
/// `reuse`, the check is not run again: what the last run left in `out` (its `check.json`, kept
/// builds and report) is checked again.
pub fn run(
    root: &Path,
    bin: &Path,
    mirror_args: &[String],
    store: &Path,
    out: &Path,
    scope: Scope,
    reuse: bool,
) -> Result<()> {
    if !reuse {
        if out.exists() {
            std::fs::remove_dir_all(out)?;
        }
        std::fs::create_dir_all(out)?;
    }
    let report = out.join("report");
    let started = Instant::now();
    let (lockfile, components, variations, what) = match scope {
        Scope::AgentRuntime => (
            "kata-3.30.0.toml",
            &["--component", "agent,runtime"][..],
            "all",
            "3.30.0 agent,runtime",
        ),
        Scope::Release => (
            "kata-3.30.0-debian.toml",
            &[][..],
            "all",
            "3.30.0-debian release",
        ),
        Scope::Kata4 => (
            "kata-4.0.0-debian.toml",
            &["--component", "kata-static"][..],
            "build_path,time,umask",
            "4.0.0-debian kata-static",
        ),
    };
    let (v, code, secs) = if reuse {
        let path = out.join("check.json");
        let text = std::fs::read(&path)
            .with_context(|| format!("{}: no earlier check run to reuse", path.display()))?;
        let v: serde_json::Value = serde_json::from_slice(&text)?;
        let code = v["exit_code"].as_i64().unwrap_or(-1) as i32;
        (v, code, 0.0)
    } else {
        let o = Command::new(bin)
            .args(mirror_args)
            .args(["--json", "check", "--lockfile"])
            .arg(root.join("lockfiles").join(lockfile))
            .args(components)
            .args(["--variations", variations, "--store"])
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
        (v, code, secs)
    };
    println!("check {what} ({variations}): exit {code} in {secs:.1}s");
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
    if scope != Scope::AgentRuntime {
        ensure!(
            code == 0 && differing == 0,
            "the release is not reproducible under the variations"
        );
    }
    if scope == Scope::Kata4 {
        release_tarballs(&out.join("builds"))?;
    }
    screenshot(
        &report.join("index.html"),
        &out.join("report.png"),
        artifacts,
    )?;
    Ok(())
}

/// Both builds' kata-static tarballs hash the same and hold the members Kata's layout names, and
/// runtime-rs's configurations (inside the tarball), generated by Kata's own Makefile, are fully
/// expanded and carry the image's root hash.
fn release_tarballs(builds: &Path) -> Result<()> {
    let mut sums = Vec::new();
    for side in ["first", "second"] {
        let dir = builds.join(side).join("x86_64/kata-static");
        let tarball = dir.join("kata-static-4.0.0-amd64.tar.zst");
        let bytes = std::fs::read(&tarball).with_context(|| tarball.display().to_string())?;
        sums.push(hex(&sha2::Sha256::digest(&bytes)));
        let members = members(&bytes)?;
        let root_hash = members
            .get("opt/kata/share/kata-containers/root_hash_base.txt")
            .context("no root_hash_base.txt in the tarball")?;
        let root_hash = String::from_utf8(root_hash.clone())?;
        let image_hash =
            std::fs::read_to_string(builds.join(side).join("x86_64/rootfs/root_hash.txt"))?;
        ensure!(
            root_hash == image_hash,
            "{side}: root_hash_base.txt is not the image's"
        );
        let params = format!("kernel_verity_params = \"{}\"", image_hash.trim_end());
        let mut carrying = Vec::new();
        for (name, content) in &members {
            if name.starts_with("opt/kata/share/defaults/kata-containers/runtime-rs/")
                && String::from_utf8_lossy(content).contains(&params)
            {
                carrying.push(name.rsplit('/').next().unwrap_or_default().to_owned());
            }
        }
        ensure!(
            carrying.len() == 3,
            "{side}: runtime-rs configurations with the image's root hash: {carrying:?}"
        );
        configurations_expanded(&members).with_context(|| side.to_owned())?;
        partial_as_kata_merges(&builds.join(side).join("manifest.json"))
            .with_context(|| side.to_owned())?;
        same_layout_as_listed(&bytes).with_context(|| side.to_owned())?;
        println!(
            "  {side}: {} sha256 {} ({} bytes, {} members); the root hash in {}",
            tarball.file_name().unwrap_or_default().to_string_lossy(),
            sums.last().unwrap(),
            bytes.len(),
            members.len(),
            carrying.join(", ")
        );
    }
    ensure!(sums[0] == sums[1], "the two kata-static tarballs differ");
    Ok(())
}

/// The manifest's notes call the tarball partial, counting the 26 per-component tarballs Kata
/// 4.0.0's release workflow merges for amd64, and name each one not built.
fn partial_as_kata_merges(manifest: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest).with_context(|| manifest.display().to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let mut notes = Vec::new();
    collect_notes(&v, &mut notes);
    notes.sort();
    notes.dedup();
    let tarball = "kata-static-4.0.0-amd64.tar.zst: ";
    let ours: Vec<&str> = notes
        .iter()
        .filter_map(|n| n.strip_prefix(tarball))
        .collect();
    ensure!(
        ours.iter()
            .any(|n| n.contains("PARTIAL: 4 of the 26 per-component tarballs")),
        "no note counts 4 of the 26 tarballs Kata merges: {ours:?}"
    );
    let not_built = ours.iter().filter(|n| n.starts_with("not built: ")).count();
    ensure!(
        not_built == 22,
        "{not_built} tarballs named not built: {ours:?}"
    );
    Ok(())
}

/// Every string in a `notes` array anywhere in the manifest.
fn collect_notes(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("notes", serde_json::Value::Array(a)) => {
                        out.extend(a.iter().filter_map(|n| n.as_str()).map(str::to_owned))
                    }
                    _ => collect_notes(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_notes(x, out)),
        _ => {}
    }
}

/// The placeholders Kata 4.0.0's own Makefile leaves unexpanded (it defines no
/// FIRMWAREVOLUMEPATH_NV), which its release ships too.
const KATA_LEFTOVERS: &[&str] = &["firmware_volume = \"@FIRMWAREVOLUMEPATH_NV@\""];

/// Every setting of runtime-rs's configurations was expanded by Kata's Makefile.
fn configurations_expanded(members: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<()> {
    let prefix = "opt/kata/share/defaults/kata-containers/runtime-rs/configuration-";
    let mut configs = 0;
    for (name, content) in members.range(prefix.to_owned()..) {
        if !name.starts_with(prefix) || !name.ends_with(".toml") {
            continue;
        }
        configs += 1;
        let text = String::from_utf8_lossy(content);
        let unexpanded: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.matches('@').count() >= 2)
            .filter(|l| !KATA_LEFTOVERS.contains(&l.trim()))
            .collect();
        ensure!(unexpanded.is_empty(), "{name}: unexpanded {unexpanded:?}");
    }
    ensure!(configs > 1, "runtime-rs configurations: {configs}");
    Ok(())
}

/// The tarball's members (type, mode, path, link target) are those of
/// tests/data/kata-static-4.0.0-amd64.members, Kata's scripts' layout for kernel 6.18.35-200 and
/// an Ubuntu noble rootfs, once this build's kernel version and image name are put in their place.
fn same_layout_as_listed(bytes: &[u8]) -> Result<()> {
    let listed = include_str!("../../tests/data/kata-static-4.0.0-amd64.members");
    let mut want: Vec<String> = listed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut got = Vec::new();
    let mut ar = tar::Archive::new(zstd::Decoder::new(bytes)?);
    for e in ar.entries()? {
        let e = e?;
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => "d",
            tar::EntryType::Regular => "f",
            tar::EntryType::Symlink => "l",
            other => bail!("unexpected entry type {other:?}"),
        };
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| format!(" -> {}", String::from_utf8_lossy(&l)))
            .unwrap_or_default();
        got.push(format!("{kind} {:04o} {path}{link}", h.mode()?));
    }
    let find = |marker: &str, end: &str| {
        got.iter()
            .find_map(|l| {
                l.split_once(marker)
                    .and_then(|(_, rest)| rest.strip_suffix(end))
            })
            .map(str::to_owned)
    };
    let kernel = find(
        "./opt/kata/share/kata-containers/vmlinux.container -> vmlinux-",
        "",
    )
    .context("no vmlinux.container link")?;
    let image = find(
        "./opt/kata/share/kata-containers/kata-containers.img -> ",
        ".image",
    )
    .context("no kata-containers.img link")?;
    let mut got: Vec<String> = got
        .iter()
        .map(|l| {
            l.replace(&kernel, "6.18.35-200")
                .replace(&image, "kata-ubuntu-noble")
        })
        .collect();
    got.sort();
    want.sort();
    ensure!(
        got == want,
        "members differ from Kata's layout: extra {:?}, missing {:?}",
        got.iter().filter(|l| !want.contains(l)).collect::<Vec<_>>(),
        want.iter().filter(|l| !got.contains(l)).collect::<Vec<_>>()
    );
    Ok(())
}

/// Each member of a `.tar.zst`, by its name without `./`, with its content (a link's target).
fn members(bytes: &[u8]) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(zstd::Decoder::new(bytes)?);
    for e in ar.entries()? {
        let mut e = e?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        let mut content = Vec::new();
        e.read_to_end(&mut content)?;
        if let Some(l) = e.link_name_bytes() {
            content = l.into_owned();
        }
        out.insert(name, content);
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
