//! Results shared between machines: a cache beside the store's own (an REAPI server's action
//! cache, see `crate::remote`). It is asked for what the store lacks, and given what the store
//! holds and it lacks. What it gives back is believed no further than the store's own results:
//! it must be the result of the action key asked for, of outputs the recipe declares, each put
//! into the store under the digest it was checked against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StepRun;
use crate::digest::Sha256Digest;
use crate::manifest::{Artifact, ComponentRecord};
use crate::recipe::LoadedRecipe;
use crate::sandbox::variation::Variation;
use crate::source::store::Store;

/// Bumped whenever what a shared action names, or how its result is laid out, changes: results
/// recorded under another shape are then never looked up.
pub const SHARED_SCHEMA: u32 = 2;

/// Each step's log, by step name, as an object in the store.
pub type StepLogs = Vec<(String, Sha256Digest)>;

/// What a result records, in the store's action cache and in a shared one: enough to install
/// the outputs again and write the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult {
    pub action_key: Sha256Digest,
    pub record: ComponentRecord,
    pub steps: Vec<StepRun>,
    /// Step logs, stored by sha256: (step name, digest).
    pub logs: StepLogs,
}

/// The input root of a component's action: `job.json` ([`ActionJob`]), the lockfile's text, and
/// the recipes of the component and of every component it needs, each `<component>.toml`.
pub const JOB_FILE: &str = "job.json";
pub const LOCKFILE_FILE: &str = "lockfile.toml";
pub const RECIPES_DIR: &str = "recipes";
/// In a fresh action's input root: how the cache listed the result of each component it
/// needs, directly or not, as built in the same build, `<component>` each (see
/// [`SharedAction::given`]).
pub const NEEDS_DIR: &str = "needs";

/// What `job.json` of a component's action says, for the machine that runs it: the component,
/// the arch, the action key it must come to, the lockfile's name (its text is beside it) and the
/// keys of the components it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionJob {
    pub schema: u32,
    pub component: String,
    pub arch: String,
    pub action_key: Sha256Digest,
    /// The lockfile's file name where the action was planned.
    pub lockfile: String,
    /// The action keys of the components it needs, built before it.
    pub needs: BTreeMap<String, Sha256Digest>,
    /// Built afresh, whatever any cache holds.
    pub fresh: bool,
    /// For a fresh action: the components it needs, directly or not, with their keys, whose
    /// results (as the same build has them) come with it under [`NEEDS_DIR`].
    pub given: BTreeMap<String, Sha256Digest>,
    /// The variations it is built under (`check`'s second build), which the machine that
    /// runs it must apply, each of them.
    pub variations: Vec<Variation>,
}

/// One component's action as a shared cache names it: the key, and what a machine that has
/// none of this build's state needs to run it again (the lockfile, the recipe, the keys of the
/// components it needs, where it may run).
#[derive(Clone)]
pub struct SharedAction<'a> {
    pub component: &'a str,
    pub arch: &'a str,
    pub key: Sha256Digest,
    pub lockfile_name: &'a str,
    pub lockfile_text: &'a str,
    /// The component's recipe, then those of every component it needs, directly or not.
    pub recipes: Vec<&'a LoadedRecipe>,
    /// The action keys of the components this one needs, built before it.
    pub needs: BTreeMap<String, Sha256Digest>,
    /// What a machine must match to run it: `arch`, `kata-repro` (the version), `host-pins`
    /// (the digest of the lockfile's `[host]` pins, or `none`).
    pub platform: BTreeMap<String, String>,
    /// Built afresh (`--no-cache`, `check`, `audit`): no cache is consulted for it and its
    /// result is recorded in none.
    pub fresh: bool,
    /// For a fresh action: every component it needs, directly or not, with its key in this
    /// build. Their results go with the action as this build has them, so that it is built on
    /// those very outputs and no needed component is built again where it runs.
    pub given: BTreeMap<String, Sha256Digest>,
    /// The variations this build applies, which the machine that runs it must apply too.
    pub variations: Vec<Variation>,
}

impl SharedAction<'_> {
    /// The action as a cache records its result: not fresh, carrying no results. A fresh
    /// action's result, when it is one of its key, is recorded under this one.
    pub fn plain(&self) -> Self {
        Self {
            fresh: false,
            given: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// What publishing a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The cache had it already.
    Present,
    /// Its outputs and logs were uploaded and the result recorded.
    Recorded,
    /// The cache takes no results from clients.
    ReadOnly,
}

/// A cache of results shared between machines.
pub trait SharedCache: Sync {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// The result recorded for `action`, if any, with every output and log already put into
    /// `store` after its digest was checked.
    fn fetch(
        &self,
        action: &SharedAction<'_>,
        store: &Store,
    ) -> Result<Option<ActionResult>, SharedError>;
    /// Records `result` for `action` unless the cache has it, with the outputs and logs it
    /// names, read from `store`.
    fn publish(
        &self,
        action: &SharedAction<'_>,
        result: &ActionResult,
        store: &Store,
    ) -> Result<Published, SharedError>;
    /// Whether it runs the actions it lacks on machines of its own.
    fn executes(&self) -> bool {
        false
    }
    /// Runs `action` on a machine of its own and returns its result, every output and log
    /// already put into `store` after its digest was checked; `on_stage` hears where it stands
    /// ("queued for a worker", …).
    fn execute(
        &self,
        action: &SharedAction<'_>,
        store: &Store,
        on_stage: &mut dyn FnMut(&str),
    ) -> Result<ActionResult, SharedError> {
        let _ = (store, on_stage);
        Err(SharedError::Usage(format!(
            "{} runs no actions; it is a cache only",
            action.component
        )))
    }
}

/// Why a shared cache could not be used, or what it gave was refused.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The cache asked for is wrong or unusable (an address, an instance, a server lacking
    /// what is needed): exit 2.
    #[error("{0}")]
    Usage(String),
    /// What the cache gave back failed verification: exit 1.
    #[error("{0}")]
    Refused(String),
    /// The cache failed mid-way: exit 1.
    #[error("{0}")]
    Failed(String),
}

/// The platform properties a component's action carries, so that it only runs, and its result
/// is only taken, where they hold.
pub fn platform(arch: &str, host_pins: Option<&crate::lock::HostPins>) -> BTreeMap<String, String> {
    let pins = host_pins.map_or_else(
        || "none".to_owned(),
        |p| super::action::canonical_digest(p).to_hex(),
    );
    BTreeMap::from([
        ("arch".to_owned(), arch.to_owned()),
        ("host-pins".to_owned(), pins),
        (
            "kata-repro".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ])
}

/// The keys, in this build (`built`), of the components of `recipes`: those a component needs,
/// directly or not, whose results go with its fresh action.
pub(super) fn keys_of(
    recipes: &[LoadedRecipe],
    built: &[ComponentRecord],
) -> BTreeMap<String, Sha256Digest> {
    built
        .iter()
        .filter(|c| recipes.iter().any(|r| r.recipe.component == c.name))
        .map(|c| (c.name.clone(), c.action_key))
        .collect()
}

/// The result the store's action cache records for `key`, if every output is in the store at
/// its recorded size and every log is there. The store is believed on (docs/trust.md): sizes
/// catch what damage by accident does not, `kata-repro store verify` the rest.
pub fn recorded(store: &Store, key: &Sha256Digest) -> Option<ActionResult> {
    let path = store.action_path(key).with_extension("json");
    let result: ActionResult = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if result.action_key != *key {
        return None;
    }
    for o in &result.record.outputs {
        let size = std::fs::metadata(store.object_path(&o.sha256)).ok()?.len();
        if size != o.size {
            return None;
        }
    }
    for (_, d) in &result.logs {
        if !store.object_path(d).is_file() {
            return None;
        }
    }
    Some(result)
}

/// Records `result` in the store's action cache, under its key.
pub fn record(store: &Store, result: &ActionResult) -> Result<(), super::BuildError> {
    let path = store.action_path(&result.action_key).with_extension("json");
    let json = serde_json::to_vec_pretty(result).expect("serialises");
    crate::files::write_atomically(&path, &json).map_err(crate::files::io_err(&path))?;
    Ok(())
}

/// A shared result must be the one asked for, and install what the recipe declares: every
/// output declared with its mode, every required output present, and all of them, with the
/// logs, in the store at their recorded sizes.
pub fn check_result(
    loaded: &LoadedRecipe,
    key: &Sha256Digest,
    result: &ActionResult,
    store: &Store,
) -> Result<(), String> {
    let refuse = |why: String| why;
    if result.action_key != *key {
        return Err(refuse(format!(
            "it is the result of action {}, not of {key}",
            result.action_key
        )));
    }
    let r = &loaded.recipe;
    for o in &result.record.outputs {
        check_output(loaded, o).map_err(refuse)?;
    }
    for o in r.outputs.iter().filter(|o| !o.optional) {
        if !result.record.outputs.iter().any(|a| o.declares(&a.path)) {
            return Err(refuse(format!(
                "it lacks the output `{}` the recipe requires",
                o.path
            )));
        }
    }
    let sized = result
        .record
        .outputs
        .iter()
        .map(|o| (o.path.as_str(), o.sha256, Some(o.size)))
        .chain(result.logs.iter().map(|(s, d)| (s.as_str(), *d, None)));
    for (what, digest, size) in sized {
        let found = std::fs::metadata(store.object_path(&digest)).map(|m| m.len());
        match (found, size) {
            (Ok(n), Some(size)) if n != size => {
                return Err(refuse(format!(
                    "`{what}` is {size} bytes in the result, {n} in the store"
                )));
            }
            (Err(_), _) => {
                return Err(refuse(format!("`{what}` ({digest}) is not in the store")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// One output of a shared result: declared by the recipe, with the declared mode.
fn check_output(loaded: &LoadedRecipe, o: &Artifact) -> Result<(), String> {
    let plain = std::path::Path::new(&o.path)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(format!(
            "it has `{}`, which is not a plain relative path",
            o.path
        ));
    }
    let def = loaded
        .recipe
        .declaring(&o.path)
        .ok_or_else(|| format!("it has `{}`, which the recipe does not declare", o.path))?;
    let mode = format!("{:04o}", def.mode);
    if o.mode != mode {
        return Err(format!(
            "`{}` has mode {}, the recipe declares {mode}",
            o.path, o.mode
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RecipeRef;

    const RECIPE: &str = r#"schema = 1
component = "hello"
description = "a program"
workdir = "src/hello"
toolchains = []
host_tools = []

[arch.x86_64.env]

[[steps]]
name = "build"
argv = ["true"]

[[outputs]]
path = "hello"
mode = 0o755

[[outputs]]
path = "extra.txt"
mode = 0o644
optional = true
"#;

    fn result(key: Sha256Digest, outputs: Vec<Artifact>, logs: StepLogs) -> ActionResult {
        ActionResult {
            action_key: key,
            record: ComponentRecord {
                name: "hello".into(),
                recipe: RecipeRef {
                    name: "hello.toml".into(),
                    sha256: Sha256Digest::of(RECIPE.as_bytes()),
                },
                action_key: key,
                steps: Vec::new(),
                toolchains: Vec::new(),
                host_tools: Vec::new(),
                host_packages: Vec::new(),
                inputs: Vec::new(),
                outputs,
                host_drift: Vec::new(),
                notes: Vec::new(),
            },
            steps: Vec::new(),
            logs,
        }
    }

    fn artifact(path: &str, mode: &str, bytes: &[u8], store: &Store) -> Artifact {
        let (sha256, size) = store.insert_bytes(bytes).unwrap();
        Artifact {
            path: path.into(),
            size,
            mode: mode.into(),
            sha256,
        }
    }

    #[test]
    fn a_shared_result_must_be_the_key_s_and_install_what_the_recipe_declares() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let loaded = crate::recipe::parse(RECIPE, std::path::Path::new("hello.toml")).unwrap();
        let key = Sha256Digest::of(b"key");
        let hello = artifact("hello", "0755", b"\x7fELF", &store);
        let (log, _) = store.insert_bytes(b"built\n").unwrap();
        let logs = vec![("build".to_owned(), log)];
        let check = |r: &ActionResult| check_result(&loaded, &key, r, &store);

        assert_eq!(
            check(&result(key, vec![hello.clone()], logs.clone())),
            Ok(())
        );

        let other = Sha256Digest::of(b"other");
        let e = check(&result(other, vec![hello.clone()], logs.clone())).unwrap_err();
        assert!(e.contains(&other.to_string()), "{e}");

        let e = check(&result(key, Vec::new(), logs.clone())).unwrap_err();
        assert!(e.contains("lacks the output `hello`"), "{e}");

        let stray = artifact("stray", "0644", b"?", &store);
        let e = check(&result(key, vec![hello.clone(), stray], logs.clone())).unwrap_err();
        assert!(e.contains("does not declare"), "{e}");

        let writable = Artifact {
            mode: "0777".into(),
            ..hello.clone()
        };
        let e = check(&result(key, vec![writable], logs.clone())).unwrap_err();
        assert!(e.contains("mode 0777"), "{e}");

        let escaping = artifact("../hello", "0755", b"x", &store);
        let e = check(&result(key, vec![hello.clone(), escaping], logs.clone())).unwrap_err();
        assert!(e.contains("plain relative path"), "{e}");

        let resized = Artifact {
            size: 99,
            ..hello.clone()
        };
        let e = check(&result(key, vec![resized], logs.clone())).unwrap_err();
        assert!(e.contains("99 bytes"), "{e}");

        let lost = vec![("build".to_owned(), Sha256Digest::of(b"never stored"))];
        let e = check(&result(key, vec![hello], lost)).unwrap_err();
        assert!(e.contains("not in the store"), "{e}");
    }

    #[test]
    fn a_fresh_action_is_given_every_component_it_needs_directly_or_not() {
        let record = |name: &str| ComponentRecord {
            name: name.into(),
            ..result(Sha256Digest::of(name.as_bytes()), Vec::new(), Vec::new()).record
        };
        let recipe = |name: &str| {
            let text = RECIPE.replace("component = \"hello\"", &format!("component = \"{name}\""));
            crate::recipe::parse(&text, std::path::Path::new("r.toml")).unwrap()
        };
        let built = [record("agent"), record("kernel"), record("rootfs")];
        // kata-static needs rootfs, which needs agent; not kernel.
        let given = keys_of(&[recipe("rootfs"), recipe("agent")], &built);
        let names: Vec<&str> = given.keys().map(String::as_str).collect();
        assert_eq!(names, ["agent", "rootfs"]);
        assert_eq!(given["agent"], Sha256Digest::of(b"agent"));
        assert!(keys_of(&[], &built).is_empty());
    }

    #[test]
    fn the_platform_names_arch_version_and_host_pins() {
        let none = platform("x86_64", None);
        assert_eq!(none["arch"], "x86_64");
        assert_eq!(none["host-pins"], "none");
        assert_eq!(none["kata-repro"], env!("CARGO_PKG_VERSION"));
        let pins = crate::lock::HostPins {
            os: "debian 12".into(),
            packages: Vec::new(),
        };
        let pinned = platform("x86_64", Some(&pins));
        assert_eq!(pinned["host-pins"].len(), 64);
        assert_ne!(pinned, none);
    }
}
