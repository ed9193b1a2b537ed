//! Variations of the build environment, named as reprotest names them, that a second build
//! runs under to show whether anything of the builder's world leaks into the outputs.
//!
//! [`plan`] turns the requested variations into a [`Varied`] (what the step runner changes) and
//! one [`Applied`] row per variation saying whether and how it was applied on this host. A
//! variation that this host cannot apply (no libfaketime, no FUSE, no namespaces) is recorded as
//! not applied, with the reason: a report never claims a variation it did not make.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Isolation;

/// reprotest's variations, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variation {
    Environment,
    BuildPath,
    Kernel,
    Aslr,
    NumCpus,
    Time,
    UserGroup,
    Fileordering,
    DomainHost,
    Home,
    Locales,
    ExecPath,
    Timezone,
    Umask,
}

impl Variation {
    pub const ALL: [Variation; 14] = [
        Variation::Environment,
        Variation::BuildPath,
        Variation::Kernel,
        Variation::Aslr,
        Variation::NumCpus,
        Variation::Time,
        Variation::UserGroup,
        Variation::Fileordering,
        Variation::DomainHost,
        Variation::Home,
        Variation::Locales,
        Variation::ExecPath,
        Variation::Timezone,
        Variation::Umask,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variation::Environment => "environment",
            Variation::BuildPath => "build_path",
            Variation::Kernel => "kernel",
            Variation::Aslr => "aslr",
            Variation::NumCpus => "num_cpus",
            Variation::Time => "time",
            Variation::UserGroup => "user_group",
            Variation::Fileordering => "fileordering",
            Variation::DomainHost => "domain_host",
            Variation::Home => "home",
            Variation::Locales => "locales",
            Variation::ExecPath => "exec_path",
            Variation::Timezone => "timezone",
            Variation::Umask => "umask",
        }
    }
}

impl std::fmt::Display for Variation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown variation `{0}`; the variations are {names} (or `all`)",
    names = Variation::ALL.map(Variation::name).join(", ")
)]
pub struct UnknownVariation(pub String);

impl std::str::FromStr for Variation {
    type Err = UnknownVariation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variation::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariation(s.to_owned()))
    }
}

/// `all`, or a comma-separated list of variation names.
pub fn parse_list(text: &str) -> Result<Vec<Variation>, UnknownVariation> {
    if text.trim() == "all" {
        return Ok(Variation::ALL.to_vec());
    }
    let mut out: Vec<Variation> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether a variation was applied to the second build, and how (or why not).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub variation: Variation,
    pub applied: bool,
    /// What the first build had.
    pub first: String,
    /// What the second build had, or why the variation could not be made here.
    pub second: String,
}

/// What the step runner changes for a varied build. The default changes nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Varied {
    /// Where the scratch directory appears instead of [`super::ROOT`] (`build_path`).
    pub root: Option<String>,
    /// (hostname, domainname) instead of [`super::HOSTNAME`] and none (`domain_host`).
    pub host: Option<(String, String)>,
    /// The umask instead of 022 (`umask`).
    pub umask: Option<u32>,
    /// The uid and gid steps run as instead of 0 (`user_group`), through a user namespace.
    pub user: Option<(u32, u32)>,
    /// personality(2) flags (`kernel`: UNAME26; `aslr`: ADDR_NO_RANDOMIZE).
    pub personality: u64,
    /// The CPUs steps may run on (`num_cpus`).
    pub cpus: Option<Vec<usize>>,
    /// Variables set over the step environment (`environment`, `home`, `locales`, `timezone`,
    /// `time`). A value may name `${root}`, replaced by the step's root.
    pub env: BTreeMap<String, String>,
    /// A directory appended to PATH (`exec_path`), under the root.
    pub path_append: Option<String>,
    /// HOME, relative to the root (`home`).
    pub home: Option<String>,
    /// Show the source through disorderfs, with shuffled directory entries (`fileordering`).
    pub disorderfs: Option<PathBuf>,
    /// What uname(2) reports under the `kernel` variation, for naming it in a difference.
    pub uname26_release: Option<String>,
    /// Which variations these are, for action keys and the manifest.
    pub names: Vec<Variation>,
}

impl Varied {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Only the variations of `self` that are in `keep`.
    pub fn only(&self, keep: &[Variation]) -> Varied {
        let has = |v| keep.contains(&v) && self.names.contains(&v);
        let mut env = BTreeMap::new();
        for (k, v) in &self.env {
            let owner = env_owner(k);
            if owner.is_some_and(has) {
                env.insert(k.clone(), v.clone());
            }
        }
        let mut personality = 0;
        if has(Variation::Kernel) {
            personality |= self.personality & UNAME26;
        }
        if has(Variation::Aslr) {
            personality |= self.personality & ADDR_NO_RANDOMIZE;
        }
        Varied {
            root: self.root.clone().filter(|_| has(Variation::BuildPath)),
            host: self.host.clone().filter(|_| has(Variation::DomainHost)),
            umask: self.umask.filter(|_| has(Variation::Umask)),
            user: self.user.filter(|_| has(Variation::UserGroup)),
            personality,
            cpus: self.cpus.clone().filter(|_| has(Variation::NumCpus)),
            env,
            path_append: self
                .path_append
                .clone()
                .filter(|_| has(Variation::ExecPath)),
            home: self.home.clone().filter(|_| has(Variation::Home)),
            disorderfs: self
                .disorderfs
                .clone()
                .filter(|_| has(Variation::Fileordering)),
            uname26_release: self
                .uname26_release
                .clone()
                .filter(|_| has(Variation::Kernel)),
            names: self
                .names
                .iter()
                .copied()
                .filter(|v| keep.contains(v))
                .collect(),
        }
    }
}

/// personality(2): uname(2) reports a 2.6 kernel.
pub const UNAME26: u64 = 0x0020000;
/// personality(2): no address space layout randomisation.
pub const ADDR_NO_RANDOMIZE: u64 = 0x0040000;

/// Whether `name` is one of the variables that shift the clock.
pub fn is_time_env(name: &str) -> bool {
    env_owner(name) == Some(Variation::Time)
}

/// Why the `time` variation cannot be applied to a component's steps, if it cannot:
/// libfaketime deadlocks programs that link jemalloc at their first allocation (libfaketime
/// issue #130, fixed only by FAKETIME_IGNORE_SYMBOLS in releases after Debian 12's 0.9.10), and
/// rustc links jemalloc.
pub fn time_unsupported(env: &BTreeMap<String, String>, uses_rust: bool) -> Option<String> {
    (uses_rust && env.contains_key("LD_PRELOAD")).then(|| {
        "libfaketime deadlocks rustc, which links jemalloc (libfaketime issue #130)".to_owned()
    })
}

/// The variation a varied environment variable belongs to.
fn env_owner(name: &str) -> Option<Variation> {
    Some(match name {
        "CAPTURE_ENVIRONMENT" | "KATA_REPRO_SECOND_BUILD" => Variation::Environment,
        "TZ" => Variation::Timezone,
        "LANG" | "LC_ALL" | "LANGUAGE" => Variation::Locales,
        "LD_PRELOAD" | "FAKETIME" | "FAKETIME_DONT_FAKE_MONOTONIC" => Variation::Time,
        _ => return None,
    })
}

/// The second build's root, hostname and so on: fixed, so that a report can name them.
pub const SECOND_ROOT: &str = "/tmp/kata-repro-second-build/a-longer-path";
pub const SECOND_HOSTNAME: &str = "kata-repro-varied-host";
pub const SECOND_DOMAIN: &str = "varied.example";
pub const SECOND_UMASK: u32 = 0o077;
pub const SECOND_USER: (u32, u32) = (1234, 1234);
pub const SECOND_TZ: &str = "GMT-14";
pub const SECOND_LOCALE: &str = "fr_CH.UTF-8";
pub const SECOND_HOME: &str = "home-second-build";
pub const SECOND_PATH: &str = "i_capture_the_path";
/// How far the second build's clock is ahead.
pub const TIME_SHIFT: &str = "+373d";
pub const ENVIRONMENT_VALUE: &str = "i_capture_the_environment";

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

/// The second build's changes for `requested`, and a row per requested variation.
pub fn plan(requested: &[Variation], isolation: Isolation, host: &Host) -> (Varied, Vec<Applied>) {
    let mut v = Varied::default();
    let mut rows = Vec::new();
    let isolated = isolation == Isolation::Namespaces;
    let no_ns = "steps run without namespaces here (--allow-network-leak)";
    for &variation in requested {
        let row = |applied: bool, first: &str, second: String| Applied {
            variation,
            applied,
            first: first.to_owned(),
            second,
        };
        let r = match variation {
            Variation::Environment => {
                v.env
                    .insert("CAPTURE_ENVIRONMENT".into(), ENVIRONMENT_VALUE.into());
                v.env.insert("KATA_REPRO_SECOND_BUILD".into(), "1".into());
                row(
                    true,
                    "the recipe's variables only",
                    format!(
                        "plus CAPTURE_ENVIRONMENT={ENVIRONMENT_VALUE}, KATA_REPRO_SECOND_BUILD=1"
                    ),
                )
            }
            Variation::BuildPath if isolated => {
                v.root = Some(SECOND_ROOT.into());
                row(true, super::ROOT, SECOND_ROOT.into())
            }
            Variation::BuildPath => row(
                true,
                "a scratch directory",
                "another scratch directory (no mount namespace: real paths)".into(),
            ),
            Variation::Kernel => {
                v.personality |= UNAME26;
                v.uname26_release = uname26_release();
                row(
                    true,
                    "the host's uname",
                    "setarch --uname-2.6 (personality UNAME26)".into(),
                )
            }
            Variation::Aslr if host.aslr_enabled => {
                v.personality |= ADDR_NO_RANDOMIZE;
                row(
                    true,
                    "ASLR on",
                    "ASLR off (setarch -R, personality ADDR_NO_RANDOMIZE)".into(),
                )
            }
            Variation::Aslr => row(
                false,
                "ASLR off",
                "not applied: kernel.randomize_va_space is 0 on this host, so both builds \
                 ran without ASLR"
                    .into(),
            ),
            Variation::NumCpus if host.cpus > 1 => {
                v.cpus = Some(vec![0]);
                row(
                    true,
                    &format!("{} CPUs", host.cpus),
                    "1 CPU (sched_setaffinity to CPU 0; nproc and parallel jobs follow)".into(),
                )
            }
            Variation::NumCpus => row(
                false,
                "1 CPU",
                "not applied: this host has a single CPU".into(),
            ),
            Variation::Time => match &host.libfaketime {
                Some(lib) => {
                    v.env.insert("LD_PRELOAD".into(), lib.display().to_string());
                    v.env.insert("FAKETIME".into(), TIME_SHIFT.into());
                    v.env
                        .insert("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into());
                    row(
                        true,
                        "the real clock",
                        format!(
                            "the clock {TIME_SHIFT} ahead through libfaketime ({}); statically \
                             linked programs such as the Go toolchain do not see it",
                            lib.display()
                        ),
                    )
                }
                None => row(
                    false,
                    "the real clock",
                    "not applied: libfaketime is not installed (apt-get install faketime)".into(),
                ),
            },
            Variation::UserGroup if isolated => {
                v.user = Some(SECOND_USER);
                row(
                    true,
                    "uid 0, gid 0",
                    format!(
                        "uid {}, gid {} (a user namespace)",
                        SECOND_USER.0, SECOND_USER.1
                    ),
                )
            }
            Variation::UserGroup => row(false, "the caller's", format!("not applied: {no_ns}")),
            Variation::Fileordering => match &host.disorderfs {
                Some(bin) => {
                    v.disorderfs = Some(bin.clone());
                    row(
                        true,
                        "the filesystem's directory order",
                        "the source shown through disorderfs --shuffle-dirents=yes".into(),
                    )
                }
                None => row(
                    false,
                    "the filesystem's directory order",
                    format!("not applied: {}", host.disorderfs_missing),
                ),
            },
            Variation::DomainHost if isolated => {
                v.host = Some((SECOND_HOSTNAME.into(), SECOND_DOMAIN.into()));
                row(
                    true,
                    &format!("hostname {}, no domain", super::HOSTNAME),
                    format!("hostname {SECOND_HOSTNAME}, domain {SECOND_DOMAIN} (a UTS namespace)"),
                )
            }
            Variation::DomainHost => row(false, "the host's", format!("not applied: {no_ns}")),
            Variation::Home => {
                v.home = Some(SECOND_HOME.into());
                row(
                    true,
                    "HOME=<root>/home",
                    format!("HOME=<root>/{SECOND_HOME}"),
                )
            }
            Variation::Locales => {
                for k in ["LANG", "LC_ALL"] {
                    v.env.insert(k.into(), SECOND_LOCALE.into());
                }
                v.env.insert("LANGUAGE".into(), "fr_CH:fr".into());
                let note = if host.locale_installed {
                    String::new()
                } else {
                    format!(
                        "; {SECOND_LOCALE} is not installed here, so programs that load it fall \
                         back to the C locale"
                    )
                };
                row(
                    true,
                    "LANG=LC_ALL=C.UTF-8",
                    format!("LANG=LC_ALL={SECOND_LOCALE}, LANGUAGE=fr_CH:fr{note}"),
                )
            }
            Variation::ExecPath => {
                v.path_append = Some(SECOND_PATH.into());
                row(
                    true,
                    "the recipe's PATH",
                    format!("PATH with <root>/{SECOND_PATH} appended"),
                )
            }
            Variation::Timezone => {
                v.env.insert("TZ".into(), SECOND_TZ.into());
                row(true, "TZ=UTC", format!("TZ={SECOND_TZ}"))
            }
            Variation::Umask => {
                v.umask = Some(SECOND_UMASK);
                row(true, "umask 0022", format!("umask {SECOND_UMASK:04o}"))
            }
        };
        if r.applied {
            v.names.push(variation);
        }
        rows.push(r);
    }
    v.names.sort();
    (v, rows)
}

/// A marker each applied variation leaves in what leaks it: a string that only the second
/// build's world has, for naming the variation behind a difference.
pub fn markers(varied: &Varied) -> Vec<(Variation, String)> {
    let mut out = Vec::new();
    if let Some(root) = &varied.root {
        out.push((Variation::BuildPath, root.clone()));
        out.push((Variation::BuildPath, "kata-repro-second-build".into()));
    }
    if let Some((host, domain)) = &varied.host {
        out.push((Variation::DomainHost, host.clone()));
        out.push((Variation::DomainHost, domain.clone()));
    }
    if varied.env.contains_key("CAPTURE_ENVIRONMENT") {
        out.push((Variation::Environment, ENVIRONMENT_VALUE.into()));
        out.push((Variation::Environment, "KATA_REPRO_SECOND_BUILD".into()));
    }
    if varied.home.is_some() {
        out.push((Variation::Home, SECOND_HOME.into()));
    }
    if varied.path_append.is_some() {
        out.push((Variation::ExecPath, SECOND_PATH.into()));
    }
    if varied.env.contains_key("TZ") {
        out.push((Variation::Timezone, SECOND_TZ.into()));
        out.push((Variation::Timezone, "+14".into()));
    }
    if varied.env.contains_key("LANG") {
        out.push((Variation::Locales, "fr_CH".into()));
    }
    if let Some((uid, _)) = varied.user {
        out.push((Variation::UserGroup, format!("uid={uid}")));
        out.push((Variation::UserGroup, format!("{uid}")));
    }
    if let Some(release) = &varied.uname26_release {
        out.push((Variation::Kernel, release.clone()));
    }
    out
}

/// The release uname(2) reports under UNAME26 here: "2.6." and the kernel's minor version plus
/// 60 (as the kernel's override_release makes it).
fn uname26_release() -> Option<String> {
    let release = nix::sys::utsname::uname()
        .ok()?
        .release()
        .to_string_lossy()
        .into_owned();
    let minor: u32 = release.split('.').nth(1)?.parse().ok()?;
    Some(format!("2.6.{}", minor + 60))
}

/// A tree shown through disorderfs at a mount point of its own, with directory entries
/// shuffled; unmounted and removed when dropped.
#[derive(Debug)]
pub struct DisorderMount {
    at: PathBuf,
}

impl DisorderMount {
    pub fn new(disorderfs: &Path, tree: &Path, at: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = std::process::Command::new(disorderfs)
            .args(["--multi-user=yes", "--shuffle-dirents=yes", "--quiet"])
            .arg(tree)
            .arg(at)
            .stdin(std::process::Stdio::null())
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(at);
            return Err(std::io::Error::other(format!(
                "disorderfs {} {} failed ({}): {}",
                tree.display(),
                at.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Self { at: at.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for DisorderMount {
    fn drop(&mut self) {
        let detached = std::ffi::CString::new(self.at.as_os_str().as_encoded_bytes())
            .map(|c| unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0)
            .unwrap_or(false);
        if !detached {
            let _ = std::process::Command::new("fusermount")
                .arg("-u")
                .arg(&self.at)
                .status();
        }
        let _ = std::fs::remove_dir(&self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known() {
        for v in Variation::ALL {
            assert_eq!(v.name().parse::<Variation>().unwrap(), v);
        }
        let e = parse_list("umask,bogus").unwrap_err().to_string();
        assert!(
            e.contains("unknown variation `bogus`") && e.contains("fileordering"),
            "{e}"
        );
        assert_eq!(parse_list("all").unwrap().len(), 14);
        assert_eq!(
            parse_list("umask, time,umask").unwrap(),
            [Variation::Time, Variation::Umask]
        );
    }

    #[test]
    fn what_cannot_be_applied_is_recorded_as_not_applied() {
        let host = Host {
            cpus: 1,
            ..Host::default()
        };
        let (v, rows) = plan(&Variation::ALL, Isolation::Namespaces, &host);
        let not: Vec<_> = rows
            .iter()
            .filter(|r| !r.applied)
            .map(|r| r.variation)
            .collect();
        assert_eq!(
            not,
            [
                Variation::Aslr,
                Variation::NumCpus,
                Variation::Time,
                Variation::Fileordering
            ]
        );
        assert!(!v.env.contains_key("LD_PRELOAD") && v.disorderfs.is_none() && v.cpus.is_none());
        assert_eq!(v.names.len(), 10);
        let (v, rows) = plan(&Variation::ALL, Isolation::None, &host);
        assert!(
            rows.iter()
                .any(|r| r.variation == Variation::DomainHost && !r.applied)
        );
        assert!(v.host.is_none() && v.user.is_none());
    }

    #[test]
    fn the_clock_is_not_shifted_for_rustc() {
        let host = Host {
            libfaketime: Some("/lib/libfaketime.so.1".into()),
            ..Host::default()
        };
        let (v, _) = plan(&[Variation::Time], Isolation::Namespaces, &host);
        let why = time_unsupported(&v.env, true).unwrap();
        assert!(why.contains("jemalloc"), "{why}");
        assert_eq!(time_unsupported(&v.env, false), None);
        assert_eq!(v.env.keys().filter(|k| is_time_env(k)).count(), 3);
    }

    #[test]
    fn only_keeps_one_variation() {
        let host = Host {
            cpus: 2,
            aslr_enabled: true,
            libfaketime: Some("/lib/faketime.so".into()),
            ..Host::default()
        };
        let (v, _) = plan(&Variation::ALL, Isolation::Namespaces, &host);
        let t = v.only(&[Variation::Time]);
        assert_eq!(t.names, [Variation::Time]);
        assert_eq!(t.env.len(), 3);
        assert!(t.root.is_none() && t.umask.is_none() && t.personality == 0);
        let k = v.only(&[Variation::Kernel]);
        assert_eq!(k.personality, UNAME26);
        assert!(k.env.is_empty());
    }
}
