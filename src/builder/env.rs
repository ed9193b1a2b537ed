//! A component's variables and the environment every one of its steps gets: pure functions of
//! the recipe, the lockfile and where the sandbox puts things.

use std::collections::BTreeMap;

use super::builtin;
use crate::digest::Sha256Digest;
use crate::lock::Lockfile;
use crate::recipe::{self, ArchSection, Recipe};
use crate::sandbox::variation::Varied;

/// The recipe's section for `arch`; else the architectures it has, as `a], [arch.b`.
pub(super) fn arch_section<'a>(r: &'a Recipe, arch: &str) -> Result<&'a ArchSection, String> {
    r.arch
        .get(arch)
        .ok_or_else(|| r.arch.keys().cloned().collect::<Vec<_>>().join("], [arch."))
}

/// Refuses a recipe that sets a variable kata-repro sets for every step; the error is its name.
pub(super) fn check_reserved(r: &Recipe, arch_section: &ArchSection) -> Result<(), String> {
    let set = r
        .env
        .keys()
        .chain(arch_section.env.keys())
        .chain(r.steps.iter().flat_map(|s| s.env.keys()));
    for key in set {
        if super::RESERVED_ENV.contains(&key.as_str()) {
            return Err(key.clone());
        }
    }
    Ok(())
}

/// What the components this one needs or uses bring: their variables, the action keys of those
/// built before it, and a note for each it is built without.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Needed {
    pub vars: BTreeMap<String, String>,
    pub keys: Vec<(String, Sha256Digest)>,
    pub notes: Vec<String>,
}

/// The `needs_<component>` variables of `r`: where each component built before it in this run
/// is, or empty for a component it only `uses` that this build leaves out. A component it
/// `needs` that is not built is an error naming it.
pub(super) fn needed(
    r: &Recipe,
    built_before: &BTreeMap<String, Sha256Digest>,
    inside: &dyn Fn(&str) -> String,
    arch: &str,
) -> Result<Needed, String> {
    let mut out = Needed::default();
    for dep in r.needs.iter().chain(&r.uses) {
        let var = recipe::needs_var(dep);
        if let Some(key) = built_before.get(dep) {
            out.vars.insert(var, inside(&format!("inputs/needs/{dep}")));
            out.keys.push((dep.clone(), *key));
        } else if r.needs.contains(dep) {
            return Err(dep.clone());
        } else {
            out.vars.insert(var, String::new());
            out.notes.push(format!(
                "built without `{dep}`, which this lockfile cannot build for {arch}"
            ));
        }
    }
    Ok(out)
}

/// Adds the recipe's own `[vars]` (the arch section's override them) to `vars`, expanded
/// against the built-ins and each other until nothing changes. A reference left over is a
/// cycle: the error names the variable and the reference, `(variable, reference)`.
pub(super) fn add_own_vars(
    vars: &mut BTreeMap<String, String>,
    r: &Recipe,
    arch_section: &ArchSection,
) -> Result<(), (String, String)> {
    let mut own: BTreeMap<String, String> = r.vars.clone();
    own.extend(arch_section.vars.clone());
    for (k, v) in &own {
        vars.insert(k.clone(), v.clone());
    }
    recipe::expand_vars(vars, own.keys());
    for k in own.keys() {
        if let Some(r) = recipe::references(&vars[k]).first()
            && own.contains_key(*r)
        {
            return Err((k.clone(), (*r).to_owned()));
        }
    }
    Ok(())
}

/// What the environment of a component's steps is made of.
pub(super) struct EnvSources<'a> {
    pub lock: &'a Lockfile,
    pub recipe: &'a Recipe,
    pub arch_section: &'a ArchSection,
    /// The component's variables, expanded.
    pub vars: &'a BTreeMap<String, String>,
    pub inside: &'a dyn Fn(&str) -> String,
    pub rust: bool,
    pub go: bool,
    /// Whether cargo builds from the offline vendor tree (it then gets a CARGO_HOME).
    pub cargo_vendor: bool,
    pub varied: &'a Varied,
}

/// The environment every step of the component gets (a step's own `env` is added on top), and
/// a note when a variation could not be applied to it.
pub(super) fn base_env(s: &EnvSources<'_>) -> (BTreeMap<String, String>, Option<String>) {
    let (vars, inside, varied) = (s.vars, s.inside, s.varied);
    let mut path = Vec::new();
    if s.rust {
        path.push(format!("{}/bin", vars["rust"]));
    }
    if s.go {
        path.push(format!("{}/bin", vars["go"]));
    }
    path.push(inside("bin"));
    if let Some(extra) = &varied.path_append {
        path.push(inside(extra));
    }
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), path.join(":"));
    env.insert(
        "HOME".into(),
        match &varied.home {
            Some(h) => inside(h),
            None => vars["home"].clone(),
        },
    );
    env.insert("TMPDIR".into(), vars["tmp"].clone());
    env.insert(
        "SOURCE_DATE_EPOCH".into(),
        s.lock.source_date_epoch().to_string(),
    );
    env.insert("TZ".into(), "UTC".into());
    env.insert("LC_ALL".into(), "C.UTF-8".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    if s.cargo_vendor {
        env.insert("CARGO_HOME".into(), format!("{}/.cargo", vars["home"]));
    }
    if uses_builtins(s.recipe) {
        env.insert(builtin::NOTES_ENV.into(), inside("tmp/.kata-repro-notes"));
    }
    for (k, v) in s.recipe.env.iter().chain(s.arch_section.env.iter()) {
        env.insert(k.clone(), recipe::expand(v, vars));
    }
    let (varied, notes) = varied.for_component(s.rust);
    env.extend(varied.env.clone());
    (env, notes.into_iter().next())
}

/// Whether a step of `r` runs one of kata-repro's builtins.
pub(super) fn uses_builtins(r: &Recipe) -> bool {
    r.steps.iter().any(|s| s.builtin.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(rel: &str) -> String {
        format!("/tmp/kata-repro/{rel}")
    }

    const NEEDS: &str = "needs = [\"kernel\"]\nuses = [\"agent\"]";

    fn recipe(tail: &str) -> Recipe {
        crate::recipe::test_recipe("image", NEEDS, "", tail)
    }

    #[test]
    fn needed_components_are_variables_and_keys_and_used_ones_may_be_left_out() {
        let r = recipe("");
        let key = Sha256Digest::of(b"k");
        let built: BTreeMap<String, Sha256Digest> = [("kernel".to_owned(), key)].into();
        let n = needed(&r, &built, &inside, "x86_64").unwrap();
        assert_eq!(
            n.vars["needs_kernel"],
            "/tmp/kata-repro/inputs/needs/kernel"
        );
        assert_eq!(n.vars["needs_agent"], "");
        assert_eq!(n.keys, [("kernel".to_owned(), key)]);
        assert_eq!(n.notes.len(), 1, "{:?}", n.notes);
        assert_eq!(
            needed(&r, &BTreeMap::new(), &inside, "x86_64"),
            Err("kernel".to_owned())
        );
    }

    #[test]
    fn own_vars_expand_against_each_other_and_a_cycle_is_named() {
        let r = recipe("[vars]\na = \"${b}/x\"\nb = \"${arch}\"\n");
        let mut vars: BTreeMap<String, String> = [("arch".into(), "x86_64".into())].into();
        add_own_vars(&mut vars, &r, &r.arch["x86_64"]).unwrap();
        assert_eq!(vars["a"], "x86_64/x");
        let cyclic = recipe("[vars]\na = \"${b}\"\nb = \"${a}\"\n");
        let mut vars = BTreeMap::new();
        let err = add_own_vars(&mut vars, &cyclic, &cyclic.arch["x86_64"]).unwrap_err();
        assert_eq!(err.0, "a");
    }

    #[test]
    fn the_environment_is_fixed_and_toolchains_come_first_on_path() {
        let r = recipe("");
        let lock_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("lockfiles/kata-4.0.0-debian.toml");
        let lock = Lockfile::load(&lock_path).unwrap().value;
        let vars: BTreeMap<String, String> = ["home", "tmp", "go", "rust"]
            .into_iter()
            .map(|k| (k.to_owned(), inside(k)))
            .collect();
        let (env, note) = base_env(&EnvSources {
            lock: &lock,
            recipe: &r,
            arch_section: &r.arch["x86_64"],
            vars: &vars,
            inside: &inside,
            rust: true,
            go: true,
            cargo_vendor: true,
            varied: &Varied::default(),
        });
        assert_eq!(note, None);
        assert_eq!(
            env["PATH"],
            "/tmp/kata-repro/rust/bin:/tmp/kata-repro/go/bin:/tmp/kata-repro/bin"
        );
        assert_eq!(env["CARGO_HOME"], "/tmp/kata-repro/home/.cargo");
        assert_eq!(
            env["SOURCE_DATE_EPOCH"],
            lock.source_date_epoch().to_string()
        );
        assert_eq!(
            (&*env["TZ"], &*env["LC_ALL"], &*env["LANG"]),
            ("UTC", "C.UTF-8", "C.UTF-8")
        );
    }

    #[test]
    fn a_recipe_names_its_arches_and_may_not_set_what_kata_repro_sets() {
        let r = recipe("");
        assert!(arch_section(&r, "x86_64").is_ok());
        assert_eq!(arch_section(&r, "s390x").unwrap_err(), "x86_64");
        assert_eq!(check_reserved(&r, &r.arch["x86_64"]), Ok(()));
        let bad = recipe("[env]\nSOURCE_DATE_EPOCH = \"1\"\n");
        assert_eq!(
            check_reserved(&bad, &bad.arch["x86_64"]),
            Err("SOURCE_DATE_EPOCH".to_owned())
        );
    }
}
