//! The verified inputs of a build, below both the builder and the SBOMs: every input that
//! what is asked for ([`Needs`]) reads is fetched and verified before anything uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::lock::Lockfile;
use crate::lock::cargo_lock::CargoLock;
use crate::recipe::{Input, LoadedRecipe, Toolchain};
use crate::source::fetch::{FetchOptions, Fetcher, InputClass};
use crate::source::get::Getter;
use crate::verify::cargo::offline;
use crate::verify::cargo::registry::{self, CrateSources};
use crate::verify::gomod::gosum::GoSum;
use crate::verify::gomod::modcache::ModuleSources;
use crate::verify::release;
use crate::verify::report::{Finding, Outcome};

/// Failures listed in an error, at most.
const LISTED: usize = 12;

pub struct PrepareOptions<'a> {
    /// Download nothing: the store and mirrors only.
    pub offline: bool,
    /// The cargo that writes the vendor tree (the toolchain's own).
    pub cargo: Option<String>,
    /// A Go module proxy (`https://` or `file://`) for modules no vendor/ holds.
    pub go_proxy: Option<String>,
    pub on_crate: Option<&'a (dyn Fn(&Finding) + Sync)>,
    /// The Kata architecture built for: which rootfs packages are needed.
    pub arch: String,
}

/// The verified source checkout and inputs a build, or an SBOM, works from.
pub struct Prepared {
    /// The verified checkout of the pinned commit, in the store.
    pub checkout: PathBuf,
    /// The verified offline vendor tree and its cargo config, when crates are needed.
    pub cargo_vendor: Option<offline::OfflineVendor>,
    /// sha256 of the Cargo.lock the vendor tree was verified against.
    pub cargo_lock_sha256: Option<Sha256Digest>,
    /// Where each Go component's modules come from, by component.
    pub go_modules: BTreeMap<String, GoModules>,
    /// The rootfs packages for the architecture, verified, with their store paths.
    pub rootfs_debs: Vec<(crate::lock::RootfsPackage, PathBuf)>,
}

/// What is to be fetched and verified, whoever asks: recipes about to be built
/// ([`Needs::of`]), or an SBOM that reads only crates and packages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// Who needs them, for messages.
    pub components: Vec<String>,
    /// The kernel tarball.
    pub kernel: bool,
    /// The Go toolchain archive.
    pub go_toolchain: bool,
    /// Every crate of the source's Cargo.lock, and its offline vendor tree.
    pub crates: bool,
    /// The rootfs packages of the architecture.
    pub rootfs: bool,
    /// The Go modules of each component's module directory: (component, workdir).
    pub go_modules: Vec<(String, String)>,
}

impl Needs {
    /// What building `recipes` reads.
    pub fn of(recipes: &[&LoadedRecipe]) -> Self {
        let needs = |i: Input| recipes.iter().any(|r| r.recipe.inputs.contains(&i));
        Self {
            components: recipes.iter().map(|r| r.recipe.component.clone()).collect(),
            kernel: recipes
                .iter()
                .any(|r| r.recipe.source == crate::recipe::SourceTree::Kernel),
            go_toolchain: recipes
                .iter()
                .any(|r| r.recipe.toolchains.contains(&Toolchain::Go)),
            crates: needs(Input::CargoVendor),
            rootfs: needs(Input::RootfsPackages),
            go_modules: recipes
                .iter()
                .filter(|r| r.recipe.inputs.contains(&Input::GoModules))
                .map(|r| (r.recipe.component.clone(), r.recipe.workdir.clone()))
                .collect(),
        }
    }

    /// The input classes a fetch for these needs leaves out.
    fn skipped(&self) -> BTreeSet<InputClass> {
        [
            (self.kernel, InputClass::Kernel),
            (self.rootfs, InputClass::Rootfs),
            (self.crates, InputClass::Git),
            (self.go_toolchain, InputClass::Toolchain),
        ]
        .into_iter()
        .filter(|(needed, _)| !needed)
        .map(|(_, class)| class)
        .collect()
    }
}

/// An input that could not be had, verified.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// Inputs that did not verify, or could not be had: each line names one, with its pin.
    #[error("{component} needs an input that is not available: {what}:\n  {}{}",
        lines[..lines.len().min(LISTED)].join("\n  "),
        more_line(lines.len()))]
    Unverified {
        component: String,
        what: String,
        lines: Vec<String>,
    },
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
}

impl InputsError {
    /// 1 when an input failed its verification or is not available, 2 when this machine could
    /// not write what it was given.
    pub fn exit_code(&self) -> u8 {
        match self {
            InputsError::Unverified { .. } => 1,
            InputsError::Io(_) => 2,
        }
    }
}

fn more_line(n: usize) -> String {
    let more = n.saturating_sub(LISTED);
    if more > 0 {
        format!("\n  … and {more} more (see `kata-repro verify --lockfile`)")
    } else {
        String::new()
    }
}

/// Refuses the inputs when any of `bad` is there, listing them.
fn all_verified<'a>(
    component: &str,
    what: &str,
    bad: impl Iterator<Item = &'a Finding>,
) -> Result<(), InputsError> {
    let lines: Vec<String> = bad.map(Finding::line).collect();
    if lines.is_empty() {
        Ok(())
    } else {
        Err(fail(component, what, lines))
    }
}

fn fail(component: &str, what: &str, lines: Vec<String>) -> InputsError {
    InputsError::Unverified {
        component: component.to_owned(),
        what: what.to_owned(),
        lines,
    }
}

/// Fetches and verifies what `needs` asks for: the source, toolchain archives, git
/// dependencies, crates (into a verified offline vendor tree), Go modules and rootfs packages.
pub fn prepare(
    lock: &Lockfile,
    get: Getter<'_>,
    needs: &Needs,
    options: &PrepareOptions<'_>,
) -> Result<Prepared, InputsError> {
    let all = needs.components.join(",");

    // 1. Pinned inputs into the store.
    let fetcher = Fetcher {
        lock,
        get: Getter { ..get },
        options: FetchOptions {
            skip: needs.skipped(),
            host_arch: crate::host::arch(),
            target_arch: Some(options.arch.clone()),
        },
    };
    let report = fetcher.run(&mut |_| {});
    let failed: Vec<String> = report
        .inputs
        .iter()
        .filter(|i| !i.status.is_ok())
        .map(|i| {
            format!(
                "{} {}: {}{}",
                i.status,
                i.name,
                i.message.as_deref().unwrap_or(""),
                i.pinned_at
                    .as_ref()
                    .map(|p| format!(" (pinned at {p})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if !failed.is_empty() {
        return Err(fail(
            &all,
            "inputs could not be fetched and verified",
            failed,
        ));
    }
    let checkout = get.store.git_path(&lock.source.commit);

    // 2. Crates: every one verified, then the offline vendor tree.
    let mut cargo_vendor = None;
    let mut cargo_lock_sha256 = None;
    if needs.crates {
        let cargo_lock = CargoLock::load(&checkout.join("Cargo.lock"))
            .map_err(|e| fail(&all, "Cargo.lock cannot be read", vec![e.to_string()]))?;
        let lock_path = &cargo_lock.path;
        let sources = CrateSources {
            store: Some(get.store),
            registry_caches: vec![],
            download: !options.offline,
            mirrors: Some(get.mirrors),
            on_done: options.on_crate,
        };
        let mut findings = registry::verify(&cargo_lock, lock_path, &sources, 8);
        findings.extend(release::git_packages(
            &cargo_lock,
            lock_path,
            &get,
            Some(&lock.git),
        ));
        let bad = findings.iter().filter(|f| f.outcome != Outcome::Ok);
        all_verified(&all, "crates did not verify", bad)?;
        let cargo = options.cargo.clone().unwrap_or_else(|| "cargo".into());
        let vendored =
            offline::ensure_in_store(&cargo_lock, &checkout, get.store, get.mirrors, &cargo)
                .map_err(|e| {
                    fail(
                        &all,
                        "the offline vendor tree could not be made",
                        vec![e.to_string()],
                    )
                })?;
        cargo_lock_sha256 = Some(cargo_lock.sha256);
        cargo_vendor = Some(vendored);
    }

    // 3. Go: each Go recipe's modules, vendored or from the proxy.
    let mut go_modules = BTreeMap::new();
    for (component, workdir) in &needs.go_modules {
        let module_dir = checkout.join(workdir);
        let modules = match go_mode(lock, workdir) {
            GoMode::Vendor => {
                check_go_vendor(component, &module_dir)?;
                GoModules::Vendor
            }
            GoMode::Proxy { .. } => {
                proxy_modules(component, &module_dir, lock, get.store, options)?
            }
        };
        go_modules.insert(component.clone(), modules);
    }

    // 4. The kernel tree is unpacked from its verified tarball only when a step builds in it
    // (see [`kernel_tree`]), so a build whose result is in the store reads none of it.

    // 5. The rootfs packages: fetched above against their sha256, checked against their pins.
    let mut rootfs_debs = Vec::new();
    if needs.rootfs {
        let pinned: Vec<_> = lock.rootfs.packages_of(&options.arch).collect();
        if pinned.is_empty() {
            return Err(fail(
                &all,
                "the lockfile pins no rootfs packages",
                vec![format!(
                    "[rootfs] has no packages for {}: resolve them with `kata-repro lock \
                     --rootfs-archive URL --rootfs-arch {}`",
                    options.arch, options.arch
                )],
            ));
        }
        for p in pinned {
            rootfs_debs.push((p.clone(), get.store.object_path(&p.sha256)));
        }
    }

    Ok(Prepared {
        checkout,
        cargo_vendor,
        cargo_lock_sha256,
        go_modules,
        rootfs_debs,
    })
}

/// Where the pinned kernel tarball is unpacked in the store, by its pin.
pub fn kernel_tree_dir(
    store: &crate::source::store::Store,
    kernel: &crate::lock::Kernel,
) -> Option<std::path::PathBuf> {
    let sha = kernel.sha256?;
    let name = match &kernel.member {
        Some(m) => format!(
            "kernel-{}-{}",
            sha.to_hex(),
            Sha256Digest::of(m.as_bytes()).to_hex()
        ),
        None => format!("kernel-{}", sha.to_hex()),
    };
    Some(store.tree(&name))
}

#[derive(Debug, thiserror::Error)]
pub enum KernelTreeError {
    #[error("the kernel tarball is unpinned: pin it with `kata-repro lock --kernel-sha256`")]
    Unpinned,
    #[error(transparent)]
    Deb(#[from] crate::source::deb::DebError),
    #[error(transparent)]
    Extract(#[from] crate::source::extract::ExtractError),
    #[error(transparent)]
    Io(#[from] crate::files::PathIo),
    #[error(
        "the kernel tarball (sha256 {sha256}) is not in the store, or no longer hashes to its \
         pin: run `kata-repro fetch` to fetch it again"
    )]
    NotFetched { sha256: Sha256Digest },
}

/// The kernel tree in the store, unpacked afresh from the tarball (taken out of its Debian
/// package first when the lockfile says so), re-hashed against its pin, on every use; members
/// that would escape are refused. A tree left by an earlier build is never trusted. The tree
/// is the caller's until it drops the returned lock.
pub fn kernel_tree(
    kernel: &crate::lock::Kernel,
    store: &crate::source::store::Store,
) -> Result<(std::path::PathBuf, crate::source::store::EntryLock), KernelTreeError> {
    use crate::files::io_err;
    use crate::source::extract::{self, Links, TreeOptions};
    let other = |path: PathBuf, e: &dyn std::fmt::Display| {
        io_err(&path)(std::io::Error::other(e.to_string()))
    };
    let sha = kernel.sha256.ok_or(KernelTreeError::Unpinned)?;
    let dir = kernel_tree_dir(store, kernel).expect("pinned");
    let name = dir
        .file_name()
        .expect("named")
        .to_string_lossy()
        .into_owned();
    let in_use = store
        .lock_entry(&format!("tree-{name}"))
        .map_err(|e| other(dir.clone(), &e))?;
    let tree = dir.join("tree");
    let _ = crate::files::remove_tree(&dir);
    if !store
        .verify_object(&sha)
        .map_err(|e| other(store.object_path(&sha), &e))?
    {
        return Err(KernelTreeError::NotFetched { sha256: sha });
    }
    let stage = store
        .stage_dir()
        .map_err(|e| other(store.root().to_owned(), &e))?;
    let object = store.object_path(&sha);
    let tarball = match &kernel.member {
        Some(member) => {
            let t = stage.path().join("linux.tar");
            crate::source::deb::extract_member(&object, member, &t)?;
            t
        }
        None => object,
    };
    let unpacked = stage.path().join("tree");
    std::fs::create_dir(&unpacked).map_err(io_err(&unpacked))?;
    let file = std::fs::File::open(&tarball).map_err(io_err(&tarball))?;
    let stream = extract::decompressed(std::io::BufReader::new(file)).map_err(io_err(&tarball))?;
    extract::untar_tree(
        &tarball,
        stream,
        &unpacked,
        &TreeOptions {
            strip: 1,
            links: Links::Inside,
            ..TreeOptions::default()
        },
    )?;
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    std::fs::rename(&unpacked, &tree).map_err(io_err(&tree))?;
    Ok((tree, in_use))
}

/// Where a Go module's dependencies will come from, as the lockfile says: from the committed
/// vendor/ when the lockfile pins its modules.txt, else from a proxy, checked against go.sum.
#[derive(Debug, Clone, PartialEq)]
pub enum GoMode {
    Vendor,
    Proxy { go_sum_sha256: Option<Sha256Digest> },
}

pub fn go_mode(lock: &Lockfile, workdir: &str) -> GoMode {
    let rel = |f: &str| {
        if workdir.is_empty() {
            f.to_owned()
        } else {
            format!("{workdir}/{f}")
        }
    };
    let pinned = |f: &str| {
        lock.source
            .files
            .iter()
            .find(|p| p.path == rel(f))
            .map(|p| p.sha256)
    };
    if pinned("vendor/modules.txt").is_some() {
        GoMode::Vendor
    } else {
        GoMode::Proxy {
            go_sum_sha256: pinned("go.sum"),
        }
    }
}

/// Where a Go recipe's modules come from.
#[derive(Debug, Clone, PartialEq)]
pub enum GoModules {
    /// The committed vendor/, part of the pinned tree.
    Vendor,
    /// Every module of go.sum, verified into the store, which serves them as a GOPROXY.
    Proxy {
        dir: std::path::PathBuf,
        go_sum_sha256: Sha256Digest,
    },
}

/// Every module go.sum names, from the proxy into the store, each checked against its `h1:`
/// hash; the store's module tree is then a complete `file://` GOPROXY for the step.
fn proxy_modules(
    component: &str,
    module_dir: &Path,
    lock: &Lockfile,
    store: &crate::source::store::Store,
    options: &PrepareOptions<'_>,
) -> Result<GoModules, InputsError> {
    let Some(proxy) = &options.go_proxy else {
        return Err(fail(
            component,
            "Go modules are not vendored in the source",
            vec![format!(
                "{} has no vendor/modules.txt: Kata {} does not commit its Go modules, so they \
                 must come from a module proxy: pass --go-proxy URL (https:// or file://); each \
                 module is checked against go.sum before use",
                module_dir.display(),
                lock.release
            )],
        ));
    };
    let sum_path = module_dir.join("go.sum");
    let sum = GoSum::load(&sum_path)
        .map_err(|e| fail(component, "go.sum cannot be read", vec![e.to_string()]))?;
    let dir = store.go_module_cache();
    let sources = ModuleSources {
        modcaches: vec![],
        proxy: Some(proxy.clone()),
        store: Some(dir.clone()),
        staging: Some(store.staging_dir()),
    };
    let report = crate::verify::gomod::modcache::verify(&sum, &sources);
    let what = "Go modules from the proxy did not verify";
    all_verified(component, what, report.failures())?;
    // A proxy also answers `.info` for each version; its content is not hashed by go.sum.
    for e in &sum.entries {
        let info = dir
            .join(crate::verify::gomod::gosum::escape_path(&e.module))
            .join("@v")
            .join(format!(
                "{}.info",
                crate::verify::gomod::gosum::escape_path(&e.version)
            ));
        if !info.exists()
            && let Some(parent) = info.parent()
            && parent.is_dir()
        {
            let text = serde_json::json!({ "Version": e.version }).to_string();
            std::fs::write(&info, text).map_err(crate::files::io_err(&info))?;
        }
    }
    Ok(GoModules::Proxy {
        dir,
        go_sum_sha256: sum.sha256,
    })
}

fn check_go_vendor(component: &str, module_dir: &Path) -> Result<(), InputsError> {
    let vendor_dir = module_dir.join("vendor");
    let sum = GoSum::load(&module_dir.join("go.sum"))
        .map_err(|e| fail(component, "go.sum cannot be read", vec![e.to_string()]))?;
    let sources = ModuleSources {
        modcaches: vec![],
        proxy: None,
        store: None,
        staging: None,
    };
    let report = release::vendored(module_dir, &vendor_dir, &sum, &sources, None)
        .map_err(|e| fail(component, "vendor/ cannot be checked", vec![e.to_string()]))?;
    // Modules no zip was at hand for are still pinned: vendor/ is part of the source tree,
    // whose git tree id the lockfile pins and the fetch verified object by object.
    let bad = report.failures().filter(|f| f.outcome != Outcome::Unpinned);
    all_verified(component, "vendored Go modules did not verify", bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::store::Store;

    /// A gzip'd tar with raw member names (bypassing the tar crate's checks) and links.
    fn tarball(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(0);
            h.set_mode(0o644);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn pinned(store: &Store, dir: &Path, bytes: &[u8]) -> crate::lock::Kernel {
        let file = dir.join("linux.tar.gz");
        std::fs::write(&file, bytes).unwrap();
        let sha = Sha256Digest::of(bytes);
        store
            .put(
                &crate::source::download::Location::File(file),
                &sha,
                |_, _| {},
            )
            .unwrap();
        crate::lock::Kernel {
            version: "6.0.1".into(),
            kata_config_version: "1".into(),
            url: "https://cdn.kernel.org/linux-6.0.1.tar.gz".into(),
            sha256: Some(sha),
            member: None,
        }
    }

    #[test]
    fn kernel_tree_is_unpacked_afresh_whatever_the_store_says_about_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let k = pinned(
            &store,
            dir.path(),
            &tarball(&[
                ("linux-6.0.1/Makefile", tar::EntryType::Regular, None),
                (
                    "linux-6.0.1/arch/arm64/boot/dts/x",
                    tar::EntryType::Symlink,
                    Some("../../../../Makefile"),
                ),
            ]),
        );
        let (tree, in_use) = kernel_tree(&k, &store).unwrap();
        let pristine = std::fs::read(tree.join("Makefile")).unwrap();
        drop(in_use);
        let (again, in_use) = kernel_tree(&k, &store).unwrap();
        assert_eq!(again, tree);
        // Changed after unpacking, together with every digest the store could keep of it: the
        // next use still gets the tarball's bytes.
        std::fs::write(tree.join("Makefile"), "changed").unwrap();
        let all = |_: &str| true;
        let forged = crate::digest::tree_digest(&crate::digest::tree_files(&tree, &all).unwrap());
        std::fs::write(
            tree.parent().unwrap().join("tree-digest"),
            format!("{forged}\n"),
        )
        .unwrap();
        drop(in_use);
        let (tree, in_use) = kernel_tree(&k, &store).unwrap();
        assert_eq!(std::fs::read(tree.join("Makefile")).unwrap(), pristine);
        drop(in_use);
        // A tarball that no longer hashes to its pin is not unpacked.
        std::fs::write(store.object_path(&k.sha256.unwrap()), "not the kernel").unwrap();
        let err = kernel_tree(&k, &store).unwrap_err().to_string();
        assert!(err.contains("kata-repro fetch"), "{err}");
    }

    #[test]
    fn kernel_tarballs_that_escape_are_refused_and_leave_nothing() {
        for (entries, want) in [
            (
                vec![("linux/../../etc/x", tar::EntryType::Regular, None)],
                "climbs out",
            ),
            (
                vec![("/etc/x", tar::EntryType::Regular, None)],
                "absolute path",
            ),
            (
                vec![("linux/l", tar::EntryType::Symlink, Some("../../etc"))],
                "pointing outside",
            ),
            (
                vec![("linux/l", tar::EntryType::Symlink, Some("/etc"))],
                "absolute path",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("store"), || {}).unwrap();
            let k = pinned(&store, dir.path(), &tarball(&entries));
            let err = kernel_tree(&k, &store).unwrap_err().to_string();
            assert!(err.contains(want), "{entries:?}: {err}");
            assert!(
                !kernel_tree_dir(&store, &k).unwrap().exists(),
                "nothing kept"
            );
            assert!(!dir.path().join("etc").exists());
        }
    }
}
