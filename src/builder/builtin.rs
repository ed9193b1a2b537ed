//! Builtin steps: work kata-repro does itself, inside the same sandbox as any other step (it runs
//! as `kata-repro builtin NAME ARGS…`), because no host tool does it reproducibly.
//!
//! A builtin may leave notes for the manifest: one line each, appended to the file named by
//! `KATA_REPRO_NOTES`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::kernel::{self, FragmentOptions};
use crate::files::io_err;
use crate::recipe::Builtin;
use crate::source::deb;
use crate::source::extract::{Links, TreeOptions};

/// The environment variable naming the notes file.
pub const NOTES_ENV: &str = "KATA_REPRO_NOTES";

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelConfigError),
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    #[error(transparent)]
    Initrd(#[from] super::initrd::InitrdError),
    #[error("{0}")]
    Refused(String),
}

fn read(path: &Path) -> Result<String, BuiltinError> {
    Ok(std::fs::read_to_string(path).map_err(io_err(path))?)
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
fn write(path: &Path, bytes: &[u8]) -> Result<(), BuiltinError> {
    Ok(crate::files::write_atomically(path, bytes).map_err(io_err(path))?)
}

fn note(line: &str) -> Result<(), BuiltinError> {
    eprintln!("note: {line}");
    if let Some(path) = std::env::var_os(NOTES_ENV) {
        let path = PathBuf::from(path);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        writeln!(f, "{line}").map_err(io_err(&path))?;
    }
    Ok(())
}

/// Runs builtin `b` with `args` (already checked against its arity when the recipe loaded).
pub fn run(b: Builtin, args: &[String]) -> Result<(), BuiltinError> {
    let (min, max) = b.arity();
    if args.len() < min || args.len() > max {
        return Err(BuiltinError::Refused(format!(
            "builtin {} takes {min}{} arguments, not {}",
            b.name(),
            if max > min { " or more" } else { "" },
            args.len()
        )));
    }
    let p = |i: usize| Path::new(&args[i]);
    match b {
        Builtin::KernelFragments => kernel_fragments(
            p(0),
            &FragmentOptions {
                kernel_arch: args[1].clone(),
                conf_guest: (!args[2].is_empty()).then(|| args[2].clone()),
                measured_rootfs: args[3] == "yes",
            },
            p(4),
        ),
        Builtin::KernelConfigReport => {
            let whitelists: Vec<&Path> = args[4..].iter().map(Path::new).collect();
            kernel_config_report(p(0), p(1), p(2), p(3), &whitelists)
        }
        Builtin::UnpackDebs => unpack_debs(p(0), p(1)),
        Builtin::Initrd => {
            let epoch = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| {
                    BuiltinError::Refused("SOURCE_DATE_EPOCH is not set to a time".into())
                })?;
            let stats = super::initrd::write_initrd(p(0), p(1), epoch)?;
            note(&format!(
                "initrd: {} entries, {} bytes of file data",
                stats.entries, stats.bytes
            ))
        }
        Builtin::ReleaseTarballs => release_tarballs(p(0), p(1)),
    }
}

/// The release tarballs of the layout at `layout`, into `out`; a note per tarball says what it
/// holds and what Kata merges there that this build did not make.
fn release_tarballs(layout: &Path, out: &Path) -> Result<(), BuiltinError> {
    let plan: crate::release::layout::Plan = serde_json::from_str(&read(layout)?)
        .map_err(|e| BuiltinError::Refused(format!("{}: {e}", layout.display())))?;
    // zstd's output is the same for every worker count, so the machine's is used.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let release = crate::release::layout::write_all(&plan, out, threads)
        .map_err(|e| BuiltinError::Refused(e.to_string()))?;
    for w in &release.written {
        for line in crate::release::layout::summary(w) {
            note(&line)?;
        }
    }
    for l in &release.left_out {
        note(&crate::release::layout::left_out_note(l))?;
    }
    Ok(())
}

/// Every file under `dir`, relative to it, sorted.
fn listing(dir: &Path) -> Result<Vec<String>, BuiltinError> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e.map_err(|e| io_err(dir)(e.into()))?;
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(dir).expect("under dir");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn kernel_fragments(
    dir: &Path,
    options: &FragmentOptions,
    list: &Path,
) -> Result<(), BuiltinError> {
    let files = listing(dir)?;
    let selection = kernel::select_fragments(
        &files,
        |rel| std::fs::read_to_string(dir.join(rel)),
        options,
    )?;
    let mut text = String::new();
    for f in &selection.fragments {
        text.push_str(&dir.join(f).to_string_lossy());
        text.push('\n');
    }
    write(list, text.as_bytes())?;
    let excluded: Vec<String> = selection
        .excluded
        .iter()
        .map(|e| format!("{} ({})", e.fragment, e.tag))
        .collect();
    note(&format!(
        "kernel config: {} fragments merged for {}{}{}",
        selection.fragments.len(),
        options.kernel_arch,
        options
            .conf_guest
            .as_ref()
            .map(|g| format!(" ({g} guest)"))
            .unwrap_or_default(),
        if excluded.is_empty() {
            String::new()
        } else {
            format!("; left out: {}", excluded.join(", "))
        }
    ))
}

fn kernel_config_report(
    dir: &Path,
    list: &Path,
    config: &Path,
    report: &Path,
    whitelists: &[&Path],
) -> Result<(), BuiltinError> {
    let mut fragments = Vec::new();
    for line in read(list)?.lines().filter(|l| !l.is_empty()) {
        let path = Path::new(line);
        let name = path
            .strip_prefix(dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        fragments.push((name, read(path)?));
    }
    let mut whitelist = Vec::new();
    for w in whitelists {
        // A version's own whitelist (whitelist-<version>.conf) often does not exist.
        if w.is_file() {
            whitelist.extend(read(w)?.lines().map(str::to_owned));
        }
    }
    let final_config = read(config)?;
    let r = kernel::check_config(&fragments, &final_config, &whitelist);
    let mut json = serde_json::to_vec_pretty(&r).expect("serialises");
    json.push(b'\n');
    write(report, &json)?;
    let options = kernel::parse_config(&final_config);
    for signing in ["CONFIG_MODULE_SIG", "CONFIG_MODULE_SIG_ALL"] {
        if options.get(signing).is_some_and(|v| v == "y") {
            return Err(BuiltinError::Refused(format!(
                "{}: {signing}=y, but no module signing key is pinned: the build would sign \
                 modules with a key it generates, which no two builds share; drop the option, \
                 or pin a key",
                config.display()
            )));
        }
    }
    let listed: Vec<String> = r
        .missing
        .iter()
        .map(|m| {
            format!(
                "{}={} ({}{}; {}:{})",
                m.option,
                m.requested,
                m.actual
                    .as_ref()
                    .map(|a| format!("is {a}"))
                    .unwrap_or_else(|| "absent".into()),
                if m.whitelisted { ", whitelisted" } else { "" },
                m.fragment,
                m.line
            )
        })
        .collect();
    note(&format!(
        "kernel config: {} of {} requested options are not in the final .config{}{}",
        r.missing.len(),
        r.requested,
        if listed.is_empty() { "" } else { ": " },
        listed.join(", ")
    ))
}

/// Top-level directories that are links into /usr on a merged-/usr system.
const MERGED_USR: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

fn merged_usr(p: PathBuf) -> PathBuf {
    match p.components().next() {
        Some(std::path::Component::Normal(first))
            if MERGED_USR.iter().any(|m| first == std::ffi::OsStr::new(m)) =>
        {
            Path::new("usr").join(p)
        }
        _ => p,
    }
}

/// The package list `${rootfs_packages}` names: `PATH\tNAME\tVERSION\tARCH` per line.
fn unpack_debs(list: &Path, dest: &Path) -> Result<(), BuiltinError> {
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    let options = TreeOptions {
        strip: 0,
        links: Links::GuestRoot,
        special_bits: true,
        rewrite: Some(merged_usr),
    };
    let mut count = 0;
    let mut stats = crate::source::extract::TreeStats::default();
    for line in read(list)?.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [path, name, version, arch] = fields[..] else {
            return Err(BuiltinError::Refused(format!(
                "{}: `{line}` is not PATH<TAB>NAME<TAB>VERSION<TAB>ARCH",
                list.display()
            )));
        };
        let path = Path::new(path);
        let info = deb::inspect(path)?;
        if (
            info.package.as_str(),
            info.version.as_str(),
            info.architecture.as_str(),
        ) != (name, version, arch)
        {
            return Err(BuiltinError::Refused(format!(
                "{}: the package is {} {} ({}), but the lockfile pins {name} {version} ({arch})",
                path.display(),
                info.package,
                info.version,
                info.architecture
            )));
        }
        let s = deb::unpack_data(path, dest, &options)?;
        stats.files += s.files;
        stats.symlinks += s.symlinks;
        stats.bytes += s.bytes;
        count += 1;
    }
    for m in MERGED_USR {
        if dest.join("usr").join(m).is_dir() && !dest.join(m).exists() {
            let link = dest.join(m);
            std::os::unix::fs::symlink(format!("usr/{m}"), &link).map_err(io_err(&link))?;
        }
    }
    note(&format!(
        "rootfs: {count} packages unpacked (merged /usr, no maintainer scripts): {} files, {} \
         links, {} bytes",
        stats.files, stats.symlinks, stats.bytes
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_debs_merged_usr_and_checks_pins() {
        let dir = tempfile::tempdir().unwrap();
        let deb_path = dir.path().join("p.deb");
        deb::tests::build_deb(
            &deb_path,
            "Package: p\nVersion: 1\nArchitecture: amd64\n",
            &[("./bin/sh", b"sh"), ("./usr/lib/x", b"x")],
        );
        let list = dir.path().join("list");
        std::fs::write(&list, format!("{}\tp\t1\tamd64\n", deb_path.display())).unwrap();
        let root = dir.path().join("root");
        unpack_debs(&list, &root).unwrap();
        assert_eq!(std::fs::read(root.join("usr/bin/sh")).unwrap(), b"sh");
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert!(!root.join("sbin").exists());

        std::fs::write(&list, format!("{}\tp\t2\tamd64\n", deb_path.display())).unwrap();
        let err = unpack_debs(&list, &dir.path().join("other"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the lockfile pins p 2 (amd64)"), "{err}");
    }

    #[test]
    fn the_config_report_refuses_module_signing_without_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let frag = dir.path().join("common/base.conf");
        std::fs::create_dir_all(frag.parent().unwrap()).unwrap();
        std::fs::write(&frag, "CONFIG_A=y\nCONFIG_B=y\n").unwrap();
        let list = dir.path().join("list");
        std::fs::write(&list, format!("{}\n", frag.display())).unwrap();
        let config = dir.path().join(".config");
        let report = dir.path().join("report.json");
        std::fs::write(&config, "CONFIG_A=y\n").unwrap();
        kernel_config_report(dir.path(), &list, &config, &report, &[]).unwrap();
        let r: kernel::ConfigReport =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(r.missing.len(), 1);
        assert_eq!(r.missing[0].option, "CONFIG_B");
        assert_eq!(r.missing[0].fragment, "common/base.conf");
        std::fs::write(&config, "CONFIG_A=y\nCONFIG_MODULE_SIG=y\n").unwrap();
        let e = kernel_config_report(dir.path(), &list, &config, &report, &[]).unwrap_err();
        assert!(
            e.to_string().contains("no module signing key is pinned"),
            "{e}"
        );
    }
}
