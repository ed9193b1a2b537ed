//! The guest kernel and the rootfs packages, as the lockfile pins them.

use std::collections::{BTreeMap, BTreeSet};

use super::{DependencySet, Ecosystem, Package, SbomError, purl};
use crate::lock::{Kernel, Lockfile};
use crate::source::deb;
use crate::source::store::Store;

/// `pkg:generic/linux@<version>`, with its download URL, sha256 and CPE, and the Kata kernel
/// config version its fragments carry.
pub fn kernel(component: &str, kernel: &Kernel) -> DependencySet {
    let mut set = DependencySet::new(component);
    set.method.push("the lockfile's [kernel]".into());
    let purl = format!("pkg:generic/linux@{}", kernel.version);
    let mut p = Package::new(Ecosystem::Kernel, purl.clone(), "linux", &kernel.version);
    p.description = Some("The Linux kernel, configured with Kata's guest kernel fragments".into());
    p.license = Some("GPL-2.0-only WITH Linux-syscall-note".into());
    p.sha256 = kernel.sha256;
    p.download_url = Some(kernel.url.clone());
    p.cpe = Some(format!(
        "cpe:2.3:o:linux:linux_kernel:{}:*:*:*:*:*:*:*",
        kernel.version
    ));
    p.properties.insert(
        "kata-repro:kernel:kata-config-version".into(),
        kernel.kata_config_version.clone(),
    );
    if let Some(member) = &kernel.member {
        p.properties.insert(
            "kata-repro:kernel:tarball-in-package".into(),
            member.clone(),
        );
    }
    set.direct.insert(purl);
    set.packages.push(p);
    set
}

/// The rootfs packages the lockfile pins for `arch`, with the `Pre-Depends`/`Depends` graph
/// their control files give (each read from the verified package in the store).
pub fn rootfs(
    component: &str,
    lock: &Lockfile,
    arch: &str,
    store: &Store,
) -> Result<DependencySet, SbomError> {
    let mut set = DependencySet::new(component);
    set.method.push(format!(
        "the lockfile's [[rootfs.packages]] for {arch}, with each package's Depends"
    ));
    let base = lock.rootfs.base.iter().find(|b| b.arch == arch);
    let distro = base.map_or("debian", |b| b.distro.as_str()).to_lowercase();
    let release = base.map(|b| b.release.as_str()).unwrap_or("");
    let pinned: Vec<_> = lock.rootfs.packages_of(arch).collect();
    let mut purls: BTreeMap<&str, String> = BTreeMap::new();
    let mut provides: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut controls = Vec::new();
    for p in &pinned {
        let path = store.object_path(&p.sha256);
        let info = deb::inspect(&path).map_err(|e| SbomError::Input {
            path: path.clone(),
            message: format!(
                "{} {}: {e}; fetch it with `kata-repro fetch`",
                p.name, p.version
            ),
        })?;
        let purl = purl(
            "deb",
            Some(&distro),
            &p.name,
            &p.version,
            &[
                ("arch", &p.arch),
                ("distro", &format!("{distro}-{release}")),
            ],
            None,
        )
        .map_err(|message| SbomError::Input {
            path: path.clone(),
            message,
        })?;
        if let Some(field) = info.control.get("Provides") {
            for group in crate::lock::debian::relation_groups(field) {
                for v in group {
                    provides
                        .entry(v.to_owned())
                        .or_default()
                        .insert(p.name.clone());
                }
            }
        }
        let mut package = Package::new(Ecosystem::Deb, purl.clone(), &p.name, &p.version);
        package.sha256 = Some(p.sha256);
        package.download_url = Some(p.url.clone());
        package.description = info
            .control
            .get("Description")
            .and_then(|d| d.lines().next())
            .map(str::to_owned);
        // The licence of the package's own files, where its copyright file is machine-readable.
        let copyright = format!("usr/share/doc/{}/copyright", p.name);
        if let Some(license) = deb::read_member(&path, &copyright)
            .ok()
            .flatten()
            .and_then(|b| dep5_license(&String::from_utf8_lossy(&b)))
        {
            package.license = Some(license);
        }
        if let Some(source) = info.control.get("Source") {
            package
                .properties
                .insert("kata-repro:deb:source".into(), source.clone());
        }
        purls.insert(p.name.as_str(), purl.clone());
        set.direct.insert(purl);
        controls.push((package, info.control));
    }
    for (mut package, control) in controls {
        for field in ["Pre-Depends", "Depends"] {
            let Some(value) = control.get(field) else {
                continue;
            };
            for group in crate::lock::debian::relation_groups(value) {
                let pick = group.iter().find_map(|a| {
                    purls.get(a).cloned().or_else(|| {
                        provides
                            .get(*a)
                            .and_then(|by| by.iter().find_map(|b| purls.get(b.as_str()).cloned()))
                    })
                });
                if let Some(target) = pick
                    && target != package.purl
                {
                    package.depends_on.insert(target);
                }
            }
        }
        set.packages.push(package);
    }
    set.packages.sort_by(|a, b| a.purl.cmp(&b.purl));
    Ok(set)
}

/// The licence of `Files: *` in a machine-readable Debian copyright file (DEP-5), as Debian
/// names it (`GPL-2+`, `Expat`, …; SPDX identifiers where Debian uses them); none for a
/// free-form file.
pub fn dep5_license(text: &str) -> Option<String> {
    let paragraphs = deb::paragraphs(text);
    let header = paragraphs.first()?;
    if !header
        .get("Format")
        .is_some_and(|f| f.contains("copyright-format"))
    {
        return None;
    }
    paragraphs
        .iter()
        .find(|p| {
            p.get("Files")
                .is_some_and(|f| f.split_whitespace().next() == Some("*"))
        })
        .and_then(|p| p.get("License"))
        .and_then(|l| l.lines().next())
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_gives_the_licence_of_all_files() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: dbus\n\n\
                    Files: *\nCopyright: 2002-2008 Red Hat\nLicense: AFL-2.1 or GPL-2+\n\n\
                    Files: debian/*\nLicense: GPL-2+\n\n\
                    License: GPL-2+\n This program is free software\n";
        assert_eq!(dep5_license(text).as_deref(), Some("AFL-2.1 or GPL-2+"));
        assert_eq!(
            dep5_license("This is the Debian GNU/Linux prepackaged version of x.\n"),
            None
        );
        let no_star = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                       Files: src/*\nLicense: MIT\n";
        assert_eq!(dep5_license(no_star), None);
    }
}
