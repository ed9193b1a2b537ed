//! The e2e currency stage: `kata-repro outdated` of 3.30.0 against the real Kata mirror (it
//! must list 3.31.0 through 4.1.0, and 4.0.0's switch to runtime-rs), `lockdiff` of 3.30.0 and
//! 4.1.0 with its counts, and the Debian test lockfile against Debian's archive: `outdated`,
//! then `lock --update rootfs`, which must change only the rootfs packages, write nothing on a
//! second run, leave nothing outdated in the rootfs, and pin packages `fetch` verifies.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::{E2e, elements, str_of};

pub fn run(e: E2e) -> Result<()> {
    kata_releases(e)?;
    lockdiff(e)?;
    debian(e)
}

/// `kata-repro --json ARGS`: exit code, report, seconds.
fn json(e: E2e, args: &[&std::ffi::OsStr]) -> Result<(i32, serde_json::Value, f64)> {
    let started = Instant::now();
    let mut cmd: Command = e.mirrors.command(e.bin);
    let output = cmd.arg("--json").args(args).output()?;
    let secs = started.elapsed().as_secs_f64();
    let code = output.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "kata-repro {args:?} printed no JSON (exit {code}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok((code, report, secs))
}

fn section<'r>(report: &'r serde_json::Value, name: &str) -> Result<&'r serde_json::Value> {
    elements(&report["sections"])
        .find(|s| s["name"] == name)
        .with_context(|| format!("no section {name} in {report:#}"))
}

fn outdated_items(report: &serde_json::Value, name: &str) -> Result<Vec<String>> {
    Ok(elements(&section(report, name)?["items"])
        .filter(|i| i["outdated"] == true)
        .map(|i| {
            format!(
                "{} {} -> {}",
                str_of(&i["name"]),
                str_of(&i["pinned"]),
                str_of(&i["newest"])
            )
        })
        .collect())
}

fn kata_releases(e: E2e) -> Result<()> {
    let lockfile = e.root.join("lockfiles/kata-3.30.0.toml");
    let (code, report, secs) = json(
        e,
        &[
            "outdated".as_ref(),
            "--lockfile".as_ref(),
            lockfile.as_os_str(),
            "--store".as_ref(),
            e.store.as_os_str(),
            "--offline".as_ref(),
        ],
    )?;
    ensure!(code == 1, "outdated 3.30.0 exited {code}");
    let kata = section(&report, "Kata releases")?;
    let newer: Vec<&str> = elements(&kata["items"])
        .flat_map(|i| elements(&i["newer"]))
        .map(str_of)
        .collect();
    ensure!(
        newer == ["3.31.0", "3.32.0", "4.0.0", "4.1.0"],
        "outdated 3.30.0 lists {newer:?}"
    );
    let notes: Vec<&str> = elements(&kata["items"])
        .flat_map(|i| elements(&i["notes"]))
        .map(str_of)
        .collect();
    ensure!(
        notes.iter().any(|n| n.contains("4.0.0 makes runtime-rs")),
        "no note of 4.0.0's default runtime: {notes:?}"
    );
    println!("outdated 3.30.0 --offline: exit {code} in {secs:.1} s; Kata releases {newer:?}");
    for n in notes {
        println!("  {n}");
    }
    let skipped: Vec<&str> = elements(&report["skipped"])
        .map(|s| str_of(&s["source"]))
        .collect();
    println!("  skipped offline: {skipped:?}");
    Ok(())
}

fn lockdiff(e: E2e) -> Result<()> {
    let from = e.root.join("lockfiles/kata-3.30.0.toml");
    let to = e.root.join("lockfiles/kata-4.1.0.toml");
    let (code, report, secs) = json(
        e,
        &[
            "lockdiff".as_ref(),
            from.as_os_str(),
            to.as_os_str(),
            "--store".as_ref(),
            e.store.as_os_str(),
        ],
    )?;
    ensure!(code == 0, "lockdiff exited {code}");
    println!("lockdiff 3.30.0 -> 4.1.0 in {secs:.1} s:");
    let counts = report["counts"].as_object().context("no counts")?;
    for section in [
        "source",
        "git dependencies",
        "toolchains",
        "kernel",
        "crates",
        "go modules",
    ] {
        ensure!(
            counts.contains_key(section),
            "lockdiff has no {section} section"
        );
    }
    for (name, c) in counts {
        println!(
            "  {name:<18} {} added, {} removed, {} changed",
            c["added"], c["removed"], c["changed"]
        );
    }
    Ok(())
}

/// The Debian test lockfile's rootfs and kernel against Debian's archive, updated.
fn debian(e: E2e) -> Result<()> {
    let lockfile = e.scratch.join("kata-4.0.0-debian.toml");
    std::fs::copy(e.root.join("lockfiles/kata-4.0.0-debian.toml"), &lockfile)?;
    let before = std::fs::read_to_string(&lockfile)?;
    let outdated = |lockfile: &Path| {
        json(
            e,
            &[
                "outdated".as_ref(),
                "--lockfile".as_ref(),
                lockfile.as_os_str(),
                "--store".as_ref(),
                e.store.as_os_str(),
                "--no-deps".as_ref(),
            ],
        )
    };
    let (code, report, secs) = outdated(&lockfile)?;
    let rootfs = outdated_items(&report, "rootfs packages")?;
    let kernel = outdated_items(&report, "kernel")?;
    println!(
        "outdated 4.0.0-debian: exit {code} in {secs:.1} s; {} rootfs packages, kernel {kernel:?}",
        rootfs.len()
    );
    let update = || {
        json(
            e,
            &[
                "lock".as_ref(),
                "--update".as_ref(),
                "rootfs".as_ref(),
                "--lockfile".as_ref(),
                lockfile.as_os_str(),
            ],
        )
    };
    let (code, first, secs) = update()?;
    ensure!(code == 0, "lock --update rootfs exited {code}: {first:#}");
    let sections: Vec<&str> = elements(&first["diff"]["sections"])
        .map(|s| str_of(&s["name"]))
        .collect();
    ensure!(
        rootfs.is_empty() || sections == ["rootfs packages"],
        "lock --update rootfs changed {sections:?}"
    );
    let changed = elements(&first["diff"]["sections"])
        .flat_map(|s| elements(&s["entries"]))
        .count();
    ensure!(
        changed >= rootfs.len(),
        "{changed} packages changed, {} were outdated",
        rootfs.len()
    );
    println!("lock --update rootfs in {secs:.1} s: {changed} packages moved");
    let after = std::fs::read_to_string(&lockfile)?;
    let head = |t: &str| t[..t.find("\n[[rootfs.").unwrap_or(t.len())].to_owned();
    ensure!(
        head(&before) == head(&after),
        "lock --update rootfs changed more than the rootfs"
    );
    let (code, second, _) = update()?;
    ensure!(
        code == 0 && second["written"] == false,
        "a second lock --update rootfs wrote {second:#}"
    );
    ensure!(
        std::fs::read_to_string(&lockfile)? == after,
        "the second update changed the file"
    );
    let (_, report, _) = outdated(&lockfile)?;
    let left = outdated_items(&report, "rootfs packages")?;
    ensure!(left.is_empty(), "still outdated after the update: {left:?}");
    let started = Instant::now();
    let (code, fetched, _) = json(
        e,
        &[
            "fetch".as_ref(),
            "--skip".as_ref(),
            "source,git,toolchain,kernel".as_ref(),
            "--lockfile".as_ref(),
            lockfile.as_os_str(),
            "--store".as_ref(),
            e.store.as_os_str(),
        ],
    )?;
    ensure!(
        code == 0,
        "fetch of the updated rootfs pins exited {code}: {fetched:#}"
    );
    let mut statuses = std::collections::BTreeMap::<&str, usize>::new();
    for input in elements(&fetched["report"]["inputs"]).filter(|i| i["class"] == "rootfs") {
        *statuses.entry(str_of(&input["status"])).or_default() += 1;
    }
    println!(
        "the updated pins: idempotent, nothing outdated, rootfs fetched and verified in \
         {:.1} s {statuses:?}",
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
