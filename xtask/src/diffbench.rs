//! `cargo xtask bench diff`: `kata-repro diff` against diffoscope on the same two
//! rootfs-like trees, in one run.
//!
//! The trees hold shared libraries and data (incompressible bytes), documentation (text),
//! ELF executables (copies of the host's), and a tar archive; the second tree differs from the
//! first in a handful of files: a byte of an ELF section, a tar member's mtime, a text file's
//! timestamp line, and a byte of a binary blob. Both tools are timed to the first line that
//! names a differing file and to the full list, and each must name all of them, with the page
//! cache holding both trees. The limit is reading and hashing both trees with openssl's SHA-NI
//! code, two processes at a time. Then both trees get a manifest, as builds write them, and
//! `kata-repro diff` compares them from the manifests first.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use object::{Object, ObjectSection};

use crate::bench::fill;

pub struct Options {
    pub dir: PathBuf,
    pub files: usize,
    pub mib: usize,
    pub runs: usize,
}

/// The files that differ, relative to the tree root.
const DIFFERING: [&str; 4] = [
    "usr/bin/kr-elf-0007",
    "var/cache/kata/bundle.tar",
    "etc/kata-build-info.txt",
    "usr/lib/x86_64-linux-gnu/libkr-0012.so.1",
];

fn text(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "the",
        "Debian",
        "package",
        "copyright",
        "License:",
        "GPL-2+",
        "Files:",
        "*",
        "of",
        "and",
        "software",
        "you",
        "can",
        "redistribute",
        "it",
    ];
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(words[(s % words.len() as u64) as usize].as_bytes());
        out.push(if s.is_multiple_of(9) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// The host's ELF executables to copy in (the first `n` by name, under 4 MiB).
fn host_elves(n: usize) -> Result<Vec<PathBuf>> {
    let mut all: Vec<PathBuf> = std::fs::read_dir("/usr/bin")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    all.sort();
    let mut out = Vec::new();
    for p in all {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if !meta.is_file() || meta.len() > 4 << 20 || meta.len() < 4096 {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        if bytes.starts_with(b"\x7fELF")
            && object::File::parse(&*bytes).is_ok_and(|f| f.section_by_name(".rodata").is_some())
        {
            out.push(p);
        }
        if out.len() == n {
            break;
        }
    }
    ensure!(
        !out.is_empty(),
        "no ELF executables with .rodata in /usr/bin"
    );
    Ok(out)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

fn tar_bundle(mtime: u64) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..200u64 {
        let mut data = vec![0u8; 16 * 1024];
        fill(&mut data, 7000 + i);
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(if i == 42 { mtime } else { 1_700_000_000 });
        h.set_cksum();
        b.append_data(&mut h, format!("bundle/part-{i:04}.bin"), &*data)?;
    }
    Ok(b.into_inner()?)
}

/// Writes tree `a` and its copy `b` with the differences of [`DIFFERING`]; returns the size of
/// one tree in bytes and its file count.
fn generate(dir: &Path, files: usize, mib: usize) -> Result<(u64, usize)> {
    let a = dir.join("a");
    let elves = host_elves(300)?;
    let elf_bytes: u64 = elves
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let budget = (mib as u64) << 20;
    // A quarter of the files are libraries and data (most of the bytes), the rest small text.
    let libs = files / 4;
    let docs = files - libs - elves.len() - 2;
    let doc_size = 1500usize;
    let lib_size = ((budget.saturating_sub(elf_bytes + (docs * doc_size) as u64)) / libs as u64)
        .max(4096) as usize;
    let mut total = 0u64;
    let mut count = 0usize;
    for (i, p) in elves.iter().enumerate() {
        let bytes = std::fs::read(p)?;
        total += bytes.len() as u64;
        write(&a.join(format!("usr/bin/kr-elf-{i:04}")), &bytes)?;
        count += 1;
    }
    let mut buf = vec![0u8; lib_size];
    for i in 0..libs {
        fill(&mut buf, i as u64);
        let sub = if i % 3 == 0 {
            "usr/lib/x86_64-linux-gnu".to_owned()
        } else {
            format!("usr/share/kata/data-{:02}", i % 40)
        };
        write(&a.join(format!("{sub}/libkr-{i:04}.so.1")), &buf)?;
        total += buf.len() as u64;
        count += 1;
    }
    for i in 0..docs {
        let t = text(doc_size, 100_000 + i as u64);
        write(
            &a.join(format!("usr/share/doc/pkg-{:03}/file-{i:05}.txt", i % 500)),
            &t,
        )?;
        total += t.len() as u64;
        count += 1;
    }
    let bundle = tar_bundle(1_700_000_000)?;
    write(&a.join(DIFFERING[1]), &bundle)?;
    let info = "KATA_VERSION=3.30.0\nBUILT=2026-11-27T10:00:00Z\nCOMMIT=0123456789abcdef\n";
    write(&a.join(DIFFERING[2]), info.as_bytes())?;
    total += (bundle.len() + info.len()) as u64;
    count += 2;

    // b: a copy of a, then the differences.
    let b = dir.join("b");
    for e in walkdir::WalkDir::new(&a).sort_by_file_name() {
        let e = e?;
        let rel = e.path().strip_prefix(&a)?;
        let dest = b.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    let elf_path = b.join(DIFFERING[0]);
    let mut elf = std::fs::read(&elf_path)?;
    let (start, len) = {
        let f = object::File::parse(&*elf)?;
        let s = f.section_by_name(".rodata").context(".rodata")?;
        let (off, len) = s.file_range().context("a .rodata with file bytes")?;
        (off as usize, len as usize)
    };
    ensure!(len > 64, ".rodata too small");
    elf[start + len / 2] ^= 0x55;
    std::fs::write(&elf_path, &elf)?;
    std::fs::write(b.join(DIFFERING[1]), tar_bundle(1_700_086_400)?)?;
    std::fs::write(b.join(DIFFERING[2]), info.replace("10:00:00", "11:17:42"))?;
    let lib = b.join(DIFFERING[3]);
    let mut bytes = std::fs::read(&lib)?;
    bytes[100] ^= 1;
    std::fs::write(&lib, bytes)?;
    Ok((total, count))
}

/// Runs `cmd`; returns seconds to the first output line naming a differing file, seconds to
/// exit, and the whole output.
fn timed(mut cmd: Command) -> Result<(Option<f64>, f64, String)> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut first = None;
    let mut all = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        if first.is_none() && DIFFERING.iter().any(|d| line.contains(d)) {
            first = Some(started.elapsed().as_secs_f64());
        }
        all.push_str(&line);
        all.push('\n');
    }
    child.wait()?;
    Ok((first, started.elapsed().as_secs_f64(), all))
}

/// A manifest of every file under `dir`, as a build writes one.
fn write_manifest(dir: &Path) -> Result<()> {
    let artifacts = kata_repro::manifest::scan_dir(dir)?;
    let zero = "0".repeat(64);
    let manifest = serde_json::json!({
        "schema": 1,
        "generator": {"name": "kata-repro", "version": "bench"},
        "release": "bench",
        "arch": "x86_64",
        "lockfile": {"name": "bench.toml", "sha256": zero},
        "source": {"url": "https://example.invalid/bench", "tag": "bench", "commit": zero, "tree": zero, "commit_time": 0},
        "source_date_epoch": 0,
        "environment": {"isolation": "namespaces", "network": "none", "root": "/", "hostname": "kata-repro", "umask": "022", "tz": "UTC", "locale": "C.UTF-8"},
        "components": [],
        "artifacts": artifacts,
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    Ok(())
}

pub fn run(bin: &Path, o: &Options) -> Result<()> {
    if Command::new("diffoscope")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("diffoscope is not installed: apt-get install --no-install-recommends diffoscope");
    }
    if o.dir.exists() {
        std::fs::remove_dir_all(&o.dir)?;
    }
    std::fs::create_dir_all(&o.dir)?;
    eprintln!(
        "generating two trees of {} files, {} MiB each, in {}",
        o.files,
        o.mib,
        o.dir.display()
    );
    let (bytes, count) = generate(&o.dir, o.files, o.mib)?;
    let (a, b) = (o.dir.join("a"), o.dir.join("b"));
    let version =
        String::from_utf8_lossy(&Command::new("diffoscope").arg("--version").output()?.stdout)
            .trim()
            .to_owned();
    println!(
        "trees: {count} files, {:.0} MiB each; differing: {}",
        bytes as f64 / (1 << 20) as f64,
        DIFFERING.join(", ")
    );
    // The page cache holds both trees for every run (read once here), as it does right after
    // two builds: the comparison is of the tools, not of the disk.
    let list = o.dir.join("files.txt");
    let mut files = String::new();
    for side in [&a, &b] {
        for e in walkdir::WalkDir::new(side).sort_by_file_name() {
            let e = e?;
            if e.file_type().is_file() {
                files.push_str(&format!("{}\n", e.path().display()));
            }
        }
    }
    std::fs::write(&list, files)?;
    // The limit: reading and hashing both trees with openssl's SHA-NI code, two processes at
    // a time.
    let mut limit = f64::MAX;
    for _ in 0..=o.runs {
        let started = Instant::now();
        let status = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "xargs -a {} -n 256 -P 2 openssl dgst -sha256 > /dev/null",
                    list.display()
                ),
            ])
            .status()?;
        ensure!(status.success(), "openssl dgst failed");
        limit = limit.min(started.elapsed().as_secs_f64());
    }
    let mut best: [(f64, f64); 2] = [(f64::MAX, f64::MAX); 2];
    for run in 0..o.runs {
        for (i, tool) in ["kata-repro diff", "diffoscope"].iter().enumerate() {
            let mut cmd = if i == 0 {
                let mut c = Command::new(bin);
                c.arg("diff").arg(&a).arg(&b);
                c
            } else {
                let mut c = Command::new("diffoscope");
                c.args([
                    "--text",
                    "-",
                    "--no-progress",
                    "--exclude-directory-metadata=yes",
                ])
                .arg(&a)
                .arg(&b);
                c
            };
            cmd.env("LC_ALL", "C.UTF-8");
            let (first, total, out) = timed(cmd)?;
            let missing: Vec<&str> = DIFFERING
                .iter()
                .copied()
                .filter(|d| !out.contains(d))
                .collect();
            ensure!(
                missing.is_empty(),
                "{tool} did not name {missing:?}:\n{}",
                out.lines().take(40).collect::<Vec<_>>().join("\n")
            );
            let first = first.unwrap_or(total);
            println!(
                "run {}: {tool:<16} first difference {first:>8.2}s, full list {total:>8.2}s",
                run + 1
            );
            best[i].0 = best[i].0.min(first);
            best[i].1 = best[i].1.min(total);
            std::io::stdout().flush()?;
        }
    }

    // Two builds with manifests: compared from the manifests first.
    write_manifest(&a)?;
    write_manifest(&b)?;
    let mut manifests = (f64::MAX, f64::MAX);
    for _ in 0..=o.runs {
        let mut cmd = Command::new(bin);
        cmd.arg("diff").arg(&a).arg(&b);
        let (first, total, out) = timed(cmd)?;
        ensure!(
            DIFFERING.iter().all(|d| out.contains(d)),
            "kata-repro diff of the manifests did not name every differing file:\n{out}"
        );
        manifests.0 = manifests.0.min(first.unwrap_or(total));
        manifests.1 = manifests.1.min(total);
    }
    std::fs::remove_file(a.join("manifest.json"))?;
    std::fs::remove_file(b.join("manifest.json"))?;

    let (k, d) = (best[0], best[1]);
    println!();
    println!(
        "{:<34} {:>18} {:>14}",
        "best of runs, page cache warm", "first difference", "full list"
    );
    println!(
        "{:<34} {:>17.2}s {:>13.2}s",
        "kata-repro diff (directories)", k.0, k.1
    );
    println!(
        "{:<34} {:>17.3}s {:>13.3}s",
        "kata-repro diff (with manifests)", manifests.0, manifests.1
    );
    println!("{:<34} {:>17.2}s {:>13.2}s", version, d.0, d.1);
    println!(
        "{:<34} {:>17} {:>13.2}s",
        "limit: openssl dgst, 2 at a time", "-", limit
    );
    let per_core = crate::bench::sha_ni_per_core()?;
    println!(
        "{:<34} {:>17} {:>13.2}s",
        "compute only: openssl speed, 2 cores",
        "-",
        2.0 * bytes as f64 / (2.0 * per_core)
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let r1 = d.0 / k.0;
    println!(
        "to the first difference: {r1:.0}x faster than diffoscope (goal >= 100x): {}",
        met(r1 >= 100.0)
    );
    let r2 = k.1 / limit;
    println!(
        "full list: {r2:.2}x the time to read and hash both trees at the limit (goal <= 2x): {}; {:.1}x faster than diffoscope",
        met(r2 <= 2.0),
        d.1 / k.1
    );
    println!(
        "with manifests: the full list in {:.3}s, {:.0}x faster than hashing both trees",
        manifests.1,
        limit / manifests.1
    );
    Ok(())
}
