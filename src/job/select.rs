//! Which components a job covers: what was asked for (or every recipe for the arch that the
//! lockfile can build), with what they need, in build order. `build`, `check`, `audit` and
//! `sbom` all choose through here.

use std::collections::BTreeMap;
use std::path::Path;

use crate::lock::Lockfile;
use crate::recipe::{LoadedRecipe, RecipeError, with_needs};

/// What a job asks for.
pub struct Request<'a> {
    pub all: &'a BTreeMap<String, LoadedRecipe>,
    /// The components asked for; empty for every one the lockfile can build for `arch`.
    pub components: &'a [String],
    pub arch: &'a str,
    pub lock: &'a Lockfile,
    /// The lockfile's path, for messages.
    pub lockfile: &'a Path,
    /// Whether a Go module proxy was given; `None` where none is needed (an SBOM reads
    /// go.sum, it fetches no module).
    pub go_proxy: Option<bool>,
    /// Whether the components asked for bring what they need (a build does; an SBOM describes
    /// exactly what it is asked for).
    pub with_needs: bool,
    /// What the job does to a component, for messages: "built", "described".
    pub verb: &'a str,
}

/// The components a job covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// In build order: each after what it needs.
    pub order: Vec<String>,
    /// Recipes for the arch the lockfile cannot build (or that need a Go proxy none was given
    /// for), each with why.
    pub left_out: Vec<String>,
    /// The same, when nothing was asked for and they were left out of the default set; empty
    /// when components were named.
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("nothing to build for {arch} from {}: {}", lockfile.display(), skipped.join("; "))]
    Nothing {
        arch: String,
        lockfile: std::path::PathBuf,
        skipped: Vec<String>,
    },
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("{} does not build for {arch} (it builds for {has})", path.display())]
    WrongArch {
        path: std::path::PathBuf,
        arch: String,
        has: String,
    },
    #[error("{component} cannot be {verb} from {}: {why}", lockfile.display())]
    Unbuildable {
        component: String,
        verb: String,
        lockfile: std::path::PathBuf,
        why: String,
    },
}

/// Chooses the components of a job: see [`Request`].
pub fn select(req: &Request<'_>) -> Result<Selection, SelectError> {
    let unbuildable = |r: &LoadedRecipe| crate::builder::unbuildable(req.lock, &r.recipe, req.arch);
    // Left out of the default set (and of what uses it), but built when asked for, where it
    // then says what it lacks.
    let no_proxy = |r: &LoadedRecipe| match req.go_proxy {
        Some(false) => crate::builder::needs_go_proxy(req.lock, &r.recipe),
        _ => None,
    };
    let own = |r: &LoadedRecipe| unbuildable(r).or_else(|| no_proxy(r));
    // A component whose needs are left out is left out with them: a release tarball without
    // its rootfs is not Kata's, and its SBOM would reference components it does not have.
    let why_not = |r: &LoadedRecipe| blocked(req, r, &own, 0);
    let for_arch = || {
        req.all
            .values()
            .filter(|r| r.recipe.arch.contains_key(req.arch))
    };
    let left_out: Vec<String> = for_arch()
        .filter_map(|r| Some(format!("{}: {}", r.recipe.component, why_not(r)?)))
        .collect();
    let mut skipped = Vec::new();
    let requested: Vec<String> = if req.components.is_empty() {
        let chosen: Vec<String> = for_arch()
            .filter(|r| why_not(r).is_none())
            .map(|r| r.recipe.component.clone())
            .collect();
        if chosen.is_empty() {
            return Err(SelectError::Nothing {
                arch: req.arch.to_owned(),
                lockfile: req.lockfile.to_owned(),
                skipped: left_out,
            });
        }
        skipped = left_out.clone();
        chosen
    } else {
        req.components.to_vec()
    };
    let order = if req.with_needs {
        with_needs(req.all, &requested, &|c| {
            req.all.get(c).is_some_and(|r| why_not(r).is_none())
        })?
    } else {
        requested
    };
    for name in &order {
        let r = req.all.get(name).ok_or_else(|| RecipeError::Unknown {
            component: name.clone(),
            known: req.all.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        if !r.recipe.arch.contains_key(req.arch) {
            return Err(SelectError::WrongArch {
                path: r.path.clone(),
                arch: req.arch.to_owned(),
                has: r.recipe.arch.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        if let Some(why) = unbuildable(r) {
            return Err(SelectError::Unbuildable {
                component: name.clone(),
                verb: req.verb.to_owned(),
                lockfile: req.lockfile.to_owned(),
                why,
            });
        }
    }
    Ok(Selection {
        order,
        left_out,
        skipped,
    })
}

/// Why `r` cannot be in the default set: its own reason, or that of a component it needs
/// (transitively), named.
fn blocked(
    req: &Request<'_>,
    r: &LoadedRecipe,
    own: &dyn Fn(&LoadedRecipe) -> Option<String>,
    depth: usize,
) -> Option<String> {
    if let Some(why) = own(r) {
        return Some(why);
    }
    // Recipes' needs form no cycle (with_needs refuses one); the bound only keeps a broken
    // recipe set from recursing forever.
    if depth > req.all.len() {
        return None;
    }
    r.recipe.needs.iter().find_map(|n| {
        let why = match req.all.get(n) {
            Some(need) if need.recipe.arch.contains_key(req.arch) => {
                blocked(req, need, own, depth + 1)?
            }
            Some(_) => format!("it does not build for {}", req.arch),
            None => "no recipe has that name".to_owned(),
        };
        Some(format!("needs {n}, which is left out ({why})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(name: &str) -> Lockfile {
        crate::lock::committed(name)
    }

    fn request<'a>(
        all: &'a BTreeMap<String, LoadedRecipe>,
        lock: &'a Lockfile,
        components: &'a [String],
        go_proxy: Option<bool>,
        with_needs: bool,
    ) -> Request<'a> {
        Request {
            all,
            components,
            arch: "x86_64",
            lock,
            lockfile: Path::new("lockfiles/x.toml"),
            go_proxy,
            with_needs,
            verb: "built",
        }
    }

    #[test]
    fn the_default_set_leaves_out_what_needs_a_go_proxy_and_says_why() {
        let all = crate::recipe::RecipeSource::Builtin.load_all().unwrap();
        let lock = lock("kata-4.0.0-debian.toml");
        let s = select(&request(&all, &lock, &[], Some(false), true)).unwrap();
        assert!(!s.order.contains(&"runtime".to_owned()), "{:?}", s.order);
        assert!(s.order.contains(&"agent".to_owned()));
        assert!(
            s.skipped.iter().any(|l| l.starts_with("runtime: ")),
            "{:?}",
            s.skipped
        );
        assert_eq!(s.skipped, s.left_out);
        // Given a proxy, it is built; an SBOM needs none.
        for proxy in [Some(true), None] {
            let s = select(&request(&all, &lock, &[], proxy, true)).unwrap();
            assert!(s.order.contains(&"runtime".to_owned()));
        }
    }

    #[test]
    fn what_needs_a_left_out_component_is_left_out_too() {
        let all = crate::recipe::RecipeSource::Builtin.load_all().unwrap();
        // 3.30.0's rootfs is Ubuntu's, which kata-repro does not assemble: the release
        // tarball, which holds the rootfs, cannot be made either.
        let lock = lock("kata-3.30.0.toml");
        let s = select(&request(&all, &lock, &[], None, false)).unwrap();
        for c in ["rootfs", "initrd", "kata-static"] {
            assert!(!s.order.contains(&c.to_owned()), "{c}: {:?}", s.order);
        }
        let why = s
            .skipped
            .iter()
            .find(|l| l.starts_with("kata-static: "))
            .unwrap();
        assert!(why.contains("needs rootfs, which is left out ("), "{why}");
        assert!(s.order.contains(&"agent".to_owned()), "{:?}", s.order);
    }

    #[test]
    fn what_is_asked_for_comes_after_what_it_needs() {
        let all = crate::recipe::RecipeSource::Builtin.load_all().unwrap();
        let lock = lock("kata-4.0.0-debian.toml");
        let asked = ["rootfs".to_owned()];
        let s = select(&request(&all, &lock, &asked, Some(false), true)).unwrap();
        assert_eq!(s.order.last().unwrap(), "rootfs");
        assert!(s.order.contains(&"agent".to_owned()), "{:?}", s.order);
        assert!(s.skipped.is_empty());
        let exactly = select(&request(&all, &lock, &asked, None, false)).unwrap();
        assert_eq!(exactly.order, asked);
    }

    #[test]
    fn unknown_and_unbuildable_components_are_refused_naming_them() {
        let all = crate::recipe::RecipeSource::Builtin.load_all().unwrap();
        let mut lock = lock("kata-4.0.0-debian.toml");
        let unknown = ["nope".to_owned()];
        assert!(matches!(
            select(&request(&all, &lock, &unknown, None, false)),
            Err(SelectError::Recipe(RecipeError::Unknown { .. }))
        ));
        lock.kernel.sha256 = None;
        let kernel = ["kernel".to_owned()];
        let err = select(&request(&all, &lock, &kernel, None, true)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("kernel cannot be built from lockfiles/x.toml: "),
            "{err}"
        );
    }
}
