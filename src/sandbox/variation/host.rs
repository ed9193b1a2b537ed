//! What this machine offers the variations that need more than the step runner.

use std::path::{Path, PathBuf};

use super::SECOND_LOCALE;

/// What this host offers for the variations that need more than the step runner.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// libfaketime's shared object.
    pub libfaketime: Option<PathBuf>,
    /// disorderfs, when it and /dev/fuse are there.
    pub disorderfs: Option<PathBuf>,
    /// Why disorderfs cannot be used.
    pub disorderfs_missing: String,
    pub aslr_enabled: bool,
    pub cpus: usize,
    /// A locale other than C that is installed (for `locales`), if any.
    pub locale_installed: bool,
}

impl Host {
    /// Looks at this machine.
    pub fn probe(path: &str) -> Host {
        let libfaketime = [
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/s390x-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/powerpc64le-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/faketime/libfaketime.so.1",
            "/usr/lib64/faketime/libfaketime.so.1",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
        let found = std::env::split_paths(path)
            .map(|d| d.join("disorderfs"))
            .find(|p| p.is_file());
        let (disorderfs, disorderfs_missing) = match found {
            None => (
                None,
                "disorderfs is not installed (apt-get install disorderfs)".to_owned(),
            ),
            Some(_) if !Path::new("/dev/fuse").exists() => (
                None,
                "/dev/fuse is missing: FUSE is not available here".to_owned(),
            ),
            Some(p) => (Some(p), String::new()),
        };
        let aslr_enabled = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space")
            .map(|s| s.trim() != "0")
            .unwrap_or(false);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let locale_installed = locale_installed(SECOND_LOCALE);
        Host {
            libfaketime,
            disorderfs,
            disorderfs_missing,
            aslr_enabled,
            cpus,
            locale_installed,
        }
    }
}

/// Whether glibc can load `locale` (compiled into the locale archive or a directory).
fn locale_installed(locale: &str) -> bool {
    let dir_name = locale.replace("UTF-8", "utf8");
    Path::new("/usr/lib/locale").join(&dir_name).is_dir()
        || std::fs::read("/usr/lib/locale/locale-archive")
            .map(|b| b.windows(dir_name.len()).any(|w| w == dir_name.as_bytes()))
            .unwrap_or(false)
}

/// The release uname(2) reports under UNAME26 here: "2.6." and the kernel's minor version plus
/// 60 (as the kernel's override_release makes it).
pub(super) fn uname26_release() -> Option<String> {
    let release = nix::sys::utsname::uname()
        .ok()?
        .release()
        .to_string_lossy()
        .into_owned();
    let minor: u32 = release.split('.').nth(1)?.parse().ok()?;
    Some(format!("2.6.{}", minor + 60))
}
