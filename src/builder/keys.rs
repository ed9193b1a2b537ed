//! What a component's action key is made of: its inputs, each named by digest, and the
//! toolchains it records. Pure functions of what the plan resolved, so that a change to a key
//! is a change to one of these lines.

use std::collections::BTreeMap;

use super::action::Action;
use super::{Resolved, SANDBOX_VERSION};
use crate::digest::{InputDigest, Sha256Digest};
use crate::inputs::GoMode;
use crate::lock::Lockfile;
use crate::manifest::ToolchainRecord;
use crate::recipe::{self, Input, Recipe, SourceTree};
use crate::sandbox::Isolation;
use crate::sandbox::variation::Varied;

/// Everything a component's input digests are drawn from.
pub(super) struct KeySources<'a> {
    pub lock: &'a Lockfile,
    pub arch: &'a str,
    pub recipe: &'a Recipe,
    pub recipe_digest: Sha256Digest,
    pub isolation: Isolation,
    pub resolved: &'a Resolved,
    /// The Cargo.lock the vendor tree is verified against, when the recipe takes one.
    pub cargo_lock_sha256: Option<Sha256Digest>,
    pub go_mode: Option<&'a GoMode>,
    /// Components built before this one that it needs or uses, with their action keys.
    pub needed: &'a [(String, Sha256Digest)],
    pub varied: &'a Varied,
    /// The digest of this kata-repro, when a step runs one of its builtins.
    pub self_exe: Option<Sha256Digest>,
}

fn input(name: impl Into<String>, digest: impl Into<String>) -> InputDigest {
    InputDigest {
        name: name.into(),
        digest: digest.into(),
    }
}

/// The inputs of a component's first step, sorted by name.
pub(super) fn input_digests(s: &KeySources<'_>) -> Vec<InputDigest> {
    let r = s.recipe;
    let mut inputs = vec![
        input("source", format!("gitTree:{}", s.lock.source.tree)),
        input(
            format!("recipe:{}", r.component),
            format!("sha256:{}", s.recipe_digest),
        ),
        input(
            "sandbox",
            format!(
                "{SANDBOX_VERSION}:{:?}:kata-repro-{}",
                s.isolation,
                env!("CARGO_PKG_VERSION")
            ),
        ),
    ];
    if let Some(go) = &s.resolved.go {
        inputs.push(input("toolchain:go", format!("sha256:{}", go.sha256)));
    }
    if let Some(rust) = &s.resolved.rust {
        inputs.push(input("toolchain:rust", format!("sha256:{}", rust.digest)));
    }
    for t in &s.resolved.host_tools {
        inputs.push(input(
            format!("host-tool:{}", t.name),
            format!("sha256:{}", t.sha256),
        ));
    }
    for p in &s.resolved.host_packages {
        inputs.push(input(
            format!("host-package:{}", p.name),
            format!("version:{}:{}", p.version, p.arch),
        ));
    }
    if let Some(sha) = s.cargo_lock_sha256 {
        inputs.push(input(
            "cargo-vendor",
            format!("verified-against-Cargo.lock:sha256:{sha}"),
        ));
    }
    match s.go_mode {
        Some(GoMode::Proxy { go_sum_sha256 }) => inputs.push(input(
            "go-modules",
            format!(
                "proxy-verified-against-go.sum:sha256:{}",
                go_sum_sha256.map_or("unpinned".to_owned(), |d| d.to_hex())
            ),
        )),
        Some(GoMode::Vendor) => inputs.push(input("go-modules", "vendored-in-source-tree")),
        None => {}
    }
    if r.vcs_shim {
        inputs.push(input(
            "vcs-shim",
            format!("gitCommit:{}", s.lock.source.commit),
        ));
    }
    if r.source == SourceTree::Kernel {
        inputs.push(input("kernel-source", kernel_source(s.lock)));
    }
    if r.inputs.contains(&Input::RootfsPackages) {
        inputs.push(input(
            "rootfs-packages",
            format!("sha256:{}", rootfs_packages(s.lock, s.arch)),
        ));
    }
    for (dep, key) in s.needed {
        inputs.push(input(
            format!("component:{dep}"),
            format!("actionKey:{key}"),
        ));
    }
    if !s.varied.is_empty() {
        // A varied build's results never stand in for a plain build's.
        inputs.push(input(
            "variations",
            s.varied
                .names()
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(","),
        ));
    }
    if let Some(exe) = s.self_exe {
        inputs.push(input("kata-repro", format!("sha256:{exe}")));
    }
    inputs.sort();
    inputs
}

/// The kernel tarball's pin, with the member of the Debian package it is taken from.
fn kernel_source(lock: &Lockfile) -> String {
    let k = &lock.kernel;
    format!(
        "sha256:{}{}",
        k.sha256
            .map(|d| d.to_hex())
            .unwrap_or_else(|| "unpinned".into()),
        k.member
            .as_ref()
            .map(|m| format!(":{m}"))
            .unwrap_or_default()
    )
}

/// One digest over the pins of the rootfs packages for `arch`.
fn rootfs_packages(lock: &Lockfile, arch: &str) -> Sha256Digest {
    let pins: Vec<String> = lock
        .rootfs
        .packages_of(arch)
        .map(|p| format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256))
        .collect();
    Sha256Digest::of(pins.join("\n").as_bytes())
}

/// The toolchains a component is built with, as its manifest records them.
pub(super) fn toolchain_records(resolved: &Resolved) -> Vec<ToolchainRecord> {
    let mut toolchains = Vec::new();
    if let Some(go) = &resolved.go {
        toolchains.push(ToolchainRecord {
            name: "go".into(),
            version: go.version.clone(),
            requested: (go.version != go.requested).then(|| go.requested.clone()),
            digest: format!("sha256:{}", go.sha256),
            source: Some(go.url.clone()),
            note: (go.version != go.requested).then(|| {
                format!(
                    "Kata asks for Go {}; the pinned {} archive holds Go {}",
                    go.requested, go.kind, go.version
                )
            }),
        });
    }
    if let Some(rust) = &resolved.rust {
        toolchains.push(ToolchainRecord {
            name: "rust".into(),
            version: format!("{} ({})", rust.version, rust.commit_hash),
            requested: (!rust.pinned).then(|| rust.requested.clone()),
            digest: format!("sha256:{}", rust.digest),
            source: None,
            note: (!rust.pinned).then(|| {
                format!(
                    "not the pinned toolchain: the source asks for Rust {}, which is not \
                     installed here; built with rustc {} ({})",
                    rust.requested, rust.version, rust.commit_hash
                )
            }),
        });
    }
    toolchains
}

/// What a component's steps are planned from.
pub(super) struct StepSources<'a> {
    pub recipe: &'a Recipe,
    pub vars: &'a BTreeMap<String, String>,
    /// The environment every step gets; a step's own `env` is added on top.
    pub base_env: &'a BTreeMap<String, String>,
    pub inside: &'a dyn Fn(&str) -> String,
    /// The output paths, expanded.
    pub declared: &'a [&'a str],
    pub workdir: &'a str,
    pub inputs: &'a [InputDigest],
    pub arch: &'a str,
}

/// A planned step: its name, argv, environment and action key.
pub(super) type PlannedStep = (String, Vec<String>, BTreeMap<String, String>, Sha256Digest);

/// Each step's argv and environment, with variables expanded, and its action key: each key
/// covers the one before it, so the last one stands for the whole component.
pub(super) fn step_actions(s: &StepSources<'_>) -> Vec<PlannedStep> {
    let mut platform = BTreeMap::new();
    platform.insert("arch".to_owned(), s.arch.to_owned());
    platform.insert("OSFamily".to_owned(), "linux".to_owned());
    let mut planned = Vec::new();
    let mut previous = None;
    for step in &s.recipe.steps {
        let argv: Vec<String> = match step.builtin {
            Some(b) => [
                (s.inside)("bin/kata-repro"),
                "builtin".into(),
                b.name().into(),
            ]
            .into_iter()
            .chain(step.args.iter().map(|a| recipe::expand(a, s.vars)))
            .collect(),
            None => step
                .argv
                .iter()
                .map(|a| recipe::expand(a, s.vars))
                .collect(),
        };
        let mut env = s.base_env.clone();
        for (k, v) in &step.env {
            env.insert(k.clone(), recipe::expand(v, s.vars));
        }
        let key = Action::new(
            &argv,
            &env,
            s.declared,
            s.workdir,
            s.inputs,
            previous,
            platform.clone(),
        )
        .digest();
        previous = Some(key);
        planned.push((step.name.clone(), argv, env, key));
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lockfile {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("lockfiles/kata-4.0.0-debian.toml");
        Lockfile::load(&path).unwrap().value
    }

    fn recipe(component: &str) -> Recipe {
        crate::recipe::RecipeSource::Builtin.load_all().unwrap()[component]
            .recipe
            .clone()
    }

    fn digests(lock: &Lockfile, recipe: &Recipe, varied: &Varied) -> Vec<InputDigest> {
        let resolved = Resolved {
            go: None,
            rust: None,
            host_tools: Vec::new(),
            host_packages: Vec::new(),
        };
        input_digests(&KeySources {
            lock,
            arch: "x86_64",
            recipe,
            recipe_digest: Sha256Digest::of(b"recipe"),
            isolation: Isolation::Namespaces,
            resolved: &resolved,
            cargo_lock_sha256: None,
            go_mode: Some(&GoMode::Vendor),
            needed: &[("kernel".to_owned(), Sha256Digest::of(b"kernel key"))],
            varied,
            self_exe: None,
        })
    }

    fn names(d: &[InputDigest]) -> Vec<&str> {
        d.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn inputs_are_sorted_and_name_each_pin() {
        let lock = lock();
        let d = digests(&lock, &recipe("kernel"), &Varied::default());
        assert_eq!(
            names(&d),
            [
                "component:kernel",
                "go-modules",
                "kernel-source",
                "recipe:kernel",
                "sandbox",
                "source"
            ]
        );
        let kernel = d.iter().find(|i| i.name == "kernel-source").unwrap();
        assert_eq!(
            kernel.digest,
            format!(
                "sha256:{}:usr/src/linux-source-6.12.tar.xz",
                lock.kernel.sha256.unwrap()
            )
        );
        assert_eq!(d[5].digest, format!("gitTree:{}", lock.source.tree));
    }

    #[test]
    fn rootfs_packages_are_one_digest_over_the_arch_pins() {
        let lock = lock();
        let d = digests(&lock, &recipe("rootfs"), &Varied::default());
        let packages = d.iter().find(|i| i.name == "rootfs-packages").unwrap();
        assert_eq!(
            packages.digest,
            format!("sha256:{}", rootfs_packages(&lock, "x86_64"))
        );
        assert_ne!(
            rootfs_packages(&lock, "x86_64"),
            rootfs_packages(&lock, "s390x")
        );
    }

    #[test]
    fn a_varied_build_never_shares_a_plain_builds_inputs() {
        let lock = lock();
        let plain = digests(&lock, &recipe("agent"), &Varied::default());
        assert!(!names(&plain).contains(&"variations"));
        let varied: Varied = [(
            crate::sandbox::variation::Variation::Environment,
            Default::default(),
        )]
        .into_iter()
        .collect();
        let varied = digests(&lock, &recipe("agent"), &varied);
        assert!(names(&varied).contains(&"variations"));
    }

    fn steps(argv0: &str) -> Vec<PlannedStep> {
        let steps = format!(
            "[[steps]]\nname = \"one\"\nargv = [\"{argv0}\", \"${{arch}}\"]\n\
             env = {{ A = \"${{arch}}\" }}\n[[steps]]\nname = \"two\"\nargv = [\"true\"]\n"
        );
        let r = crate::recipe::test_recipe("c", "", &steps, "");
        let vars: BTreeMap<String, String> = [("arch".into(), "x86_64".into())].into();
        let base: BTreeMap<String, String> = [("A".into(), "base".into())].into();
        let inside = |rel: &str| format!("/tmp/kata-repro/{rel}");
        step_actions(&StepSources {
            recipe: &r,
            vars: &vars,
            base_env: &base,
            inside: &inside,
            declared: &["a"],
            workdir: "/tmp/kata-repro/src",
            inputs: &[],
            arch: "x86_64",
        })
    }

    #[test]
    fn steps_are_expanded_and_their_keys_chained() {
        let planned = steps("make");
        assert_eq!(planned[0].1, ["make", "x86_64"]);
        assert_eq!(
            planned[0].2["A"], "x86_64",
            "a step's env overrides the base"
        );
        assert_ne!(planned[0].3, planned[1].3);
        // The second step runs the same command, yet its key follows the first step's.
        let other = steps("cmake");
        assert_eq!(planned[1].1, other[1].1);
        assert_ne!(planned[1].3, other[1].3);
        assert_eq!(steps("make")[1].3, planned[1].3, "keys are deterministic");
    }
}
