//! Before any step runs: every input the chosen recipes need is fetched and verified.

use std::collections::BTreeSet;
use std::path::Path;

use super::recipe::{Input, LoadedRecipe, Toolchain};
use super::{BuildError, Prepared};
use crate::digest::Sha256Digest;
use crate::lock::Lockfile;
use crate::lock::cargo_lock::CargoLock;
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
    pub on_crate: Option<&'a (dyn Fn(&Finding) + Sync)>,
}

fn fail(component: &str, what: &str, lines: Vec<String>) -> BuildError {
    let more = lines.len().saturating_sub(LISTED);
    let mut message = format!("{what}:\n  {}", lines[..lines.len().min(LISTED)].join("\n  "));
    if more > 0 {
        message.push_str(&format!("\n  … and {more} more (see `kata-repro verify --lockfile`)"));
    }
    BuildError::Input {
        component: component.to_owned(),
        message,
    }
}

/// Fetches and verifies what `recipes` need: the source, toolchain archives, git dependencies,
/// crates (into a verified offline vendor tree) and vendored Go modules.
pub fn prepare(
    lock: &Lockfile,
    get: Getter<'_>,
    recipes: &[&LoadedRecipe],
    options: &PrepareOptions<'_>,
) -> Result<Prepared, BuildError> {
    let needs = |i: Input| recipes.iter().any(|r| r.recipe.inputs.contains(&i));
    let needs_go = recipes
        .iter()
        .any(|r| r.recipe.toolchains.contains(&Toolchain::Go));
    let names: Vec<&str> = recipes.iter().map(|r| r.recipe.component.as_str()).collect();
    let all = names.join(",");

    // 1. Pinned inputs into the store.
    let mut skip: BTreeSet<InputClass> = [InputClass::Kernel, InputClass::Rootfs].into();
    if !needs(Input::CargoVendor) {
        skip.insert(InputClass::Git);
    }
    if !needs_go {
        skip.insert(InputClass::Toolchain);
    }
    let fetcher = Fetcher {
        lock,
        get: Getter { ..get },
        options: FetchOptions {
            skip,
            host_arch: super::host_arch(),
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
        return Err(fail(&all, "inputs could not be fetched and verified", failed));
    }
    let checkout = get.store.git_path(&lock.source.commit);

    // 2. Crates: every one verified, then the offline vendor tree.
    let mut cargo_vendor = None;
    let mut cargo_lock_sha256 = None;
    if needs(Input::CargoVendor) {
        let lock_path = checkout.join("Cargo.lock");
        let cargo_lock = std::fs::read_to_string(&lock_path)
            .map_err(|e| e.to_string())
            .and_then(|t| CargoLock::parse(&t).map_err(|e| e.to_string()))
            .map_err(|e| fail(&all, "Cargo.lock cannot be read", vec![format!("{}: {e}", lock_path.display())]))?;
        let sources = CrateSources {
            store: Some(get.store),
            registry_caches: vec![],
            download: !options.offline,
            mirrors: Some(get.mirrors),
            on_done: options.on_crate,
        };
        let mut findings = registry::verify(&cargo_lock, &lock_path, &sources, 8);
        findings.extend(release::git_packages(&cargo_lock, &lock_path, &get, Some(&lock.git)));
        let bad: Vec<String> = findings
            .iter()
            .filter(|f| f.outcome != Outcome::Ok)
            .map(Finding::line)
            .collect();
        if !bad.is_empty() {
            return Err(fail(&all, "crates did not verify", bad));
        }
        let cargo = options.cargo.clone().unwrap_or_else(|| "cargo".into());
        let vendored = offline::ensure_in_store(
            &cargo_lock,
            &lock_path,
            &checkout,
            get.store,
            get.mirrors,
            &cargo,
        )
        .map_err(|e| fail(&all, "the offline vendor tree could not be made", vec![e.to_string()]))?;
        cargo_lock_sha256 = Some(
            Sha256Digest::of_file(&lock_path).map_err(|e| BuildError::Io {
                path: lock_path.clone(),
                source: e,
            })?,
        );
        cargo_vendor = Some(vendored);
    }

    // 3. Go: the committed vendor/ of every Go recipe's module.
    for r in recipes.iter().filter(|r| r.recipe.inputs.contains(&Input::GoVendor)) {
        let module_dir = checkout.join(&r.recipe.workdir);
        check_go_vendor(&r.recipe.component, &module_dir, lock)?;
    }

    Ok(Prepared {
        checkout,
        cargo_vendor,
        cargo_lock_sha256,
    })
}

fn check_go_vendor(component: &str, module_dir: &Path, lock: &Lockfile) -> Result<(), BuildError> {
    let vendor_dir = module_dir.join("vendor");
    if !vendor_dir.join("modules.txt").is_file() {
        return Err(fail(
            component,
            "Go modules are not vendored in the source",
            vec![format!(
                "{} has no vendor/modules.txt: Kata {} does not commit its Go modules, so they \
                 must come from a module proxy (GOPROXY), which this build cannot use yet; build \
                 a release with vendor/ committed (3.30.0 or earlier)",
                module_dir.display(),
                lock.release
            )],
        ));
    }
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
    let bad: Vec<String> = report
        .failures()
        .filter(|f| f.outcome != Outcome::Unpinned)
        .map(Finding::line)
        .collect();
    if !bad.is_empty() {
        return Err(fail(component, "vendored Go modules did not verify", bad));
    }
    Ok(())
}
