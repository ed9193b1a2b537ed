//! Kata's guest kernel configuration: which config fragments `build-kernel.sh` merges, and
//! which requested options did not survive into the final `.config`.
//!
//! Selection follows `get_kernel_frag_path` in `tools/packaging/kernel/build-kernel.sh`:
//! `common/*.conf` without an exclusion tag (a file is left out when it contains `!<arch>`, or
//! `!<conf_guest>` for a confidential build, anywhere in its text, exactly as `grep -L` finds
//! it), then `<arch>/*.conf`, then `common/confidential_containers/cryptsetup.conf` for a
//! measured rootfs, then `<arch>/<conf_guest>/*.conf` and
//! `common/confidential_containers/tmpfs.conf` for a confidential guest. Files are ordered as
//! the C locale sorts them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How Kata's release builds the kernel for an architecture (kata-deploy's `install_kernel`:
/// `-x` makes it a confidential guest kernel, with `MEASURED_ROOTFS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentOptions {
    /// Kata's kernel architecture name: `x86_64`, `arm64`, `s390`, `powerpc`, `riscv`.
    pub kernel_arch: String,
    /// `confidential` for `build-kernel.sh -x`.
    pub conf_guest: Option<String>,
    /// `MEASURED_ROOTFS=yes`: dm-verity and dm-crypt support for a measured root filesystem.
    pub measured_rootfs: bool,
}

/// The fragments merged, in merge order, as paths relative to `configs/fragments/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub fragments: Vec<String>,
    /// Common fragments left out, with the tag that excluded them.
    pub excluded: Vec<Excluded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub fragment: String,
    pub tag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelConfigError {
    #[error(
        "configs/fragments/{0}: no such directory in the Kata tree; is `{1}` a kernel architecture Kata supports?"
    )]
    NoArchDir(String, String),
    #[error("configs/fragments/{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// `*.conf` directly inside `dir` (relative to the fragments root), C-locale sorted.
fn confs_in<'a>(listing: &'a [String], dir: &str) -> Vec<&'a String> {
    let prefix = format!("{dir}/");
    let mut out: Vec<&String> = listing
        .iter()
        .filter(|p| {
            p.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".conf"))
        })
        .collect();
    out.sort();
    out
}

/// Chooses the fragments `build-kernel.sh` would merge, from `listing` (every file under
/// `configs/fragments/`, relative to it) and `read` (a fragment's text by relative path).
pub fn select_fragments(
    listing: &[String],
    read: impl Fn(&str) -> std::io::Result<String>,
    options: &FragmentOptions,
) -> Result<Selection, KernelConfigError> {
    let arch = &options.kernel_arch;
    let arch_confs = confs_in(listing, arch);
    if arch_confs.is_empty() {
        return Err(KernelConfigError::NoArchDir(arch.clone(), arch.clone()));
    }
    let mut tags = vec![format!("!{arch}")];
    if let Some(g) = &options.conf_guest {
        tags.push(format!("!{g}"));
    }
    let mut selection = Selection::default();
    for path in confs_in(listing, "common") {
        let text = read(path).map_err(|source| KernelConfigError::Read {
            path: path.clone(),
            source,
        })?;
        match tags.iter().find(|t| text.contains(t.as_str())) {
            Some(tag) => selection.excluded.push(Excluded {
                fragment: path.clone(),
                tag: tag.clone(),
            }),
            None => selection.fragments.push(path.clone()),
        }
    }
    selection.fragments.extend(arch_confs.into_iter().cloned());
    let present = |p: &str| listing.iter().any(|l| l == p);
    if options.measured_rootfs {
        let p = "common/confidential_containers/cryptsetup.conf";
        if present(p) {
            selection.fragments.push(p.to_owned());
        }
    }
    if let Some(g) = &options.conf_guest {
        selection.fragments.extend(
            confs_in(listing, &format!("{arch}/{g}"))
                .into_iter()
                .cloned(),
        );
        let p = "common/confidential_containers/tmpfs.conf";
        if present(p) {
            selection.fragments.push(p.to_owned());
        }
    }
    Ok(selection)
}

/// One `CONFIG_…` line of a fragment or a `.config`: `y`, `m`, a string or number, or `n` for
/// `# CONFIG_X is not set`.
fn config_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let option = rest.strip_suffix(" is not set")?;
        return option.starts_with("CONFIG_").then_some((option, "n"));
    }
    let (option, value) = line.split_once('=')?;
    option
        .starts_with("CONFIG_")
        .then_some((option.trim(), value.trim()))
}

/// The options of a `.config`.
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(config_line)
        .map(|(o, v)| (o.to_owned(), v.to_owned()))
        .collect()
}

/// An option a fragment asks for, and what the final `.config` has instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub option: String,
    pub requested: String,
    /// The final value (`None`: not in `.config` at all, usually an option this kernel lacks).
    pub actual: Option<String>,
    /// The fragment (relative to `configs/fragments/`) and line that asked for it.
    pub fragment: String,
    pub line: usize,
    /// Kata's whitelist covers it: `build-kernel.sh` would not have failed on it.
    pub whitelisted: bool,
}

/// What became of the merged fragments' options in the final `.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReport {
    pub fragments: Vec<String>,
    /// Options the fragments set (the last setting of each counts, as in `merge_config.sh`).
    pub requested: usize,
    /// Every requested option whose final value differs, sorted by option.
    pub missing: Vec<Missing>,
}

impl ConfigReport {
    /// Missing options Kata's own build would have failed on.
    pub fn not_whitelisted(&self) -> impl Iterator<Item = &Missing> {
        self.missing.iter().filter(|m| !m.whitelisted)
    }
}

/// Compares what `fragments` (name, text; in merge order) ask for with `final_config`.
/// `whitelist` holds the lines of Kata's whitelist files (`grep -f` patterns).
pub fn check_config(
    fragments: &[(String, String)],
    final_config: &str,
    whitelist: &[String],
) -> ConfigReport {
    let mut wanted: BTreeMap<String, (String, String, usize)> = BTreeMap::new();
    for (name, text) in fragments {
        for (i, line) in text.lines().enumerate() {
            if let Some((option, value)) = config_line(line) {
                wanted.insert(option.to_owned(), (value.to_owned(), name.clone(), i + 1));
            }
        }
    }
    let actual = parse_config(final_config);
    let patterns: Vec<&str> = whitelist
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let missing = wanted
        .iter()
        .filter_map(|(option, (requested, fragment, line))| {
            let got = actual.get(option);
            let same = match got {
                Some(v) => v == requested,
                None => requested == "n",
            };
            if same {
                return None;
            }
            // merge_config.sh's message, which Kata's whitelist lines are matched against.
            let message = format!("Value requested for {option} not in final .config");
            Some(Missing {
                option: option.clone(),
                requested: requested.clone(),
                actual: got.cloned(),
                fragment: fragment.clone(),
                line: *line,
                whitelisted: patterns.iter().any(|p| message.contains(p)),
            })
        })
        .collect();
    ConfigReport {
        fragments: fragments.iter().map(|(n, _)| n.clone()).collect(),
        requested: wanted.len(),
        missing,
    }
}

/// Kata's kernel architecture name for a Kata architecture (`aarch64` → `arm64`).
pub fn kernel_arch(arch: &str) -> Option<&'static str> {
    crate::verify::kernel::fragment_dir(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real fragment listing of Kata 4.1.0, relative to `configs/fragments/`.
    fn listing() -> Vec<String> {
        let text = crate::kata_fixture("4.1.0", "tools/packaging/kernel/configs.LISTING.txt");
        text.lines()
            .filter_map(|l| l.strip_prefix("tools/packaging/kernel/configs/fragments/"))
            .map(str::to_owned)
            .collect()
    }

    /// Fragment texts with the exclusion headers the 4.1.0 files carry.
    fn read(path: &str) -> std::io::Result<String> {
        Ok(match path {
            "common/acpi.conf" => "# !powerpc !riscv !s390x\nCONFIG_ACPI=y\n",
            "common/cpu.conf"
            | "common/dax.conf"
            | "common/pmem.conf"
            | "common/security.conf"
            | "common/serial.conf" => "# !s390x\n\nCONFIG_X=y\n",
            "common/mmu.conf" => "# !powerpc\n",
            "common/virtio-extras.conf" => "# !confidential\nCONFIG_VIRTIO_BALLOON=y\n",
            _ => "CONFIG_Y=y\n",
        }
        .to_owned())
    }

    fn options(arch: &str, conf_guest: Option<&str>, measured: bool) -> FragmentOptions {
        FragmentOptions {
            kernel_arch: arch.into(),
            conf_guest: conf_guest.map(str::to_owned),
            measured_rootfs: measured,
        }
    }

    #[test]
    fn x86_64_release_kernel_on_the_real_listing() {
        let s = select_fragments(
            &listing(),
            read,
            &options("x86_64", Some("confidential"), true),
        )
        .unwrap();
        // virtio-extras says `!confidential`; nothing else excludes x86_64.
        assert_eq!(
            s.excluded,
            [Excluded {
                fragment: "common/virtio-extras.conf".into(),
                tag: "!confidential".into()
            }]
        );
        let f = &s.fragments;
        assert_eq!(f.first().unwrap(), "common/9p.conf");
        // Only top-level common/*.conf: confidential_containers/ and signing/ come later or never.
        assert!(!f.iter().any(|p| p.starts_with("common/signing")));
        let common_end = f
            .iter()
            .rposition(|p| p.starts_with("common/") && !p.contains("confidential_containers"))
            .unwrap();
        assert!(f[common_end + 1].starts_with("x86_64/"));
        let tail: Vec<&str> = f.iter().rev().take(5).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "common/confidential_containers/cryptsetup.conf",
                "x86_64/confidential/fips.conf",
                "x86_64/confidential/snp.conf",
                "x86_64/confidential/tdx.conf",
                "common/confidential_containers/tmpfs.conf",
            ]
        );
        // The C locale puts `virtio-extras` before `virtio`; neither gpu/ nor debug/ is used.
        assert!(
            !f.iter()
                .any(|p| p.starts_with("gpu/") || p.starts_with("debug/"))
        );
    }

    #[test]
    fn plain_and_other_arches() {
        let plain = select_fragments(&listing(), read, &options("x86_64", None, false)).unwrap();
        assert!(plain.excluded.is_empty());
        assert!(
            plain
                .fragments
                .contains(&"common/virtio-extras.conf".to_owned())
        );
        assert!(!plain.fragments.iter().any(|p| p.contains("confidential")));

        // `!s390` (Kata's kernel arch name) matches the `!s390x` tags, as grep does.
        let s390 = select_fragments(&listing(), read, &options("s390", None, false)).unwrap();
        let excluded: Vec<&str> = s390.excluded.iter().map(|e| e.fragment.as_str()).collect();
        assert_eq!(
            excluded,
            [
                "common/acpi.conf",
                "common/cpu.conf",
                "common/dax.conf",
                "common/pmem.conf",
                "common/security.conf",
                "common/serial.conf"
            ]
        );
        let arm = select_fragments(
            &listing(),
            read,
            &options("arm64", Some("confidential"), true),
        )
        .unwrap();
        assert!(
            arm.fragments
                .contains(&"arm64/confidential/cca.conf".to_owned())
        );
        assert!(arm.fragments.iter().all(|p| !p.starts_with("x86_64/")));

        let err = select_fragments(&listing(), read, &options("mips", None, false)).unwrap_err();
        assert!(err.to_string().contains("mips"), "{err}");
    }

    #[test]
    fn reports_options_that_did_not_survive() {
        let fragments = vec![
            (
                "common/a.conf".to_owned(),
                "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n".to_owned(),
            ),
            (
                "x86_64/b.conf".to_owned(),
                "\nCONFIG_C=y\nCONFIG_GONE=y\nCONFIG_ARCH_RANDOM=y\nCONFIG_S=\"x\"\n".to_owned(),
            ),
        ];
        let config = "CONFIG_A=y\nCONFIG_C=m\nCONFIG_S=\"x\"\n# CONFIG_B is not set\n";
        let whitelist = vec![
            "# comment lines are patterns too".to_owned(),
            "CONFIG_ARCH_RANDOM".to_owned(),
            String::new(),
        ];
        let r = check_config(&fragments, config, &whitelist);
        assert_eq!(r.requested, 6);
        let got: Vec<String> = r
            .missing
            .iter()
            .map(|m| {
                format!(
                    "{} {}->{:?} {}:{} {}",
                    m.option, m.requested, m.actual, m.fragment, m.line, m.whitelisted
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "CONFIG_ARCH_RANDOM y->None x86_64/b.conf:4 true",
                "CONFIG_C y->Some(\"m\") x86_64/b.conf:2 false",
                "CONFIG_GONE y->None x86_64/b.conf:3 false",
            ]
        );
        assert_eq!(r.not_whitelisted().count(), 2);
    }
}
