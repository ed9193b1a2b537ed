//! Variations of the build environment, named as reprotest names them, that a second build
//! runs under to show whether anything of the builder's world leaks into the outputs.
//!
//! A variation is one value ([`Variation`], defined with everything about it in `kinds.rs`).
//! [`plan`] turns the requested ones into a [`Varied`] (the [`Effect`] of each on the step
//! runner, merged) and one [`Applied`] row per variation saying whether and how it was applied
//! on this host. A variation that this host cannot apply (no libfaketime, no FUSE, no
//! namespaces) is recorded as not applied, with the reason: a report never claims a variation
//! it did not make.

mod disorder;
mod host;
mod kinds;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::Isolation;

pub use disorder::DisorderMount;
pub use host::Host;
pub use kinds::Variation;

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

/// What variations change for the step runner. The default changes nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effect {
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
    /// `time`).
    pub env: BTreeMap<String, String>,
    /// A directory appended to PATH (`exec_path`), under the root.
    pub path_append: Option<String>,
    /// HOME, relative to the root (`home`).
    pub home: Option<String>,
    /// Show the source through disorderfs, with shuffled directory entries (`fileordering`).
    pub disorderfs: Option<PathBuf>,
    /// Strings only the second build's world has: found in an output, they name the variation
    /// behind a difference.
    pub markers: Vec<String>,
    /// Why the variation cannot be applied to components built with Rust, if it cannot.
    pub not_with_rust: Option<String>,
}

impl Effect {
    /// `self` with `other` on top.
    fn merge(mut self, other: &Effect) -> Effect {
        self.root = other.root.clone().or(self.root);
        self.host = other.host.clone().or(self.host);
        self.umask = other.umask.or(self.umask);
        self.user = other.user.or(self.user);
        self.personality |= other.personality;
        self.cpus = other.cpus.clone().or(self.cpus);
        self.env.extend(other.env.clone());
        self.path_append = other.path_append.clone().or(self.path_append);
        self.home = other.home.clone().or(self.home);
        self.disorderfs = other.disorderfs.clone().or(self.disorderfs);
        self.markers.extend(other.markers.iter().cloned());
        self.not_with_rust = other.not_with_rust.clone().or(self.not_with_rust);
        self
    }
}

/// The variations a build runs under, each with its effect; it reads as their merged
/// [`Effect`]. The default varies nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Varied {
    effects: BTreeMap<Variation, Effect>,
    merged: Effect,
}

impl std::ops::Deref for Varied {
    type Target = Effect;
    fn deref(&self) -> &Effect {
        &self.merged
    }
}

impl FromIterator<(Variation, Effect)> for Varied {
    fn from_iter<I: IntoIterator<Item = (Variation, Effect)>>(iter: I) -> Self {
        let effects: BTreeMap<Variation, Effect> = iter.into_iter().collect();
        let merged = effects.values().fold(Effect::default(), Effect::merge);
        Varied { effects, merged }
    }
}

impl Varied {
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }

    /// Which variations these are, in reprotest's order: for action keys and the manifest.
    pub fn names(&self) -> Vec<Variation> {
        self.effects.keys().copied().collect()
    }

    /// Only the variations of `self` that are in `keep`.
    pub fn only(&self, keep: &[Variation]) -> Varied {
        self.effects
            .iter()
            .filter(|(v, _)| keep.contains(v))
            .map(|(v, e)| (*v, e.clone()))
            .collect()
    }

    /// What applies to a component built with Rust (`rust`) or not: the variations that cannot
    /// be applied to it left out, each with a note saying why.
    pub fn for_component(&self, rust: bool) -> (Varied, Vec<String>) {
        let mut notes = Vec::new();
        let kept = self.effects.iter().filter(|(v, e)| match &e.not_with_rust {
            Some(why) if rust => {
                notes.push(format!(
                    "the {v} variation was not applied to this component: {why}"
                ));
                false
            }
            _ => true,
        });
        let kept = kept.map(|(v, e)| (*v, e.clone())).collect();
        (kept, notes)
    }

    /// The markers each applied variation leaves: strings only the second build's world has,
    /// for naming the variation behind a difference.
    pub fn markers(&self) -> Vec<(Variation, String)> {
        self.effects
            .iter()
            .flat_map(|(v, e)| e.markers.iter().map(|m| (*v, m.clone())))
            .collect()
    }
}

/// Leaves out of `varied` the variations that cannot be applied to any of a build's
/// components, and says in each row of `applied` which components a variation skips.
/// `rust` names the components built with Rust, of `total`.
pub fn restrict_to_components(
    varied: &Varied,
    applied: &mut [Applied],
    rust: &[&str],
    total: usize,
) -> Varied {
    let mut keep = Vec::new();
    for (v, e) in &varied.effects {
        let row = applied.iter_mut().find(|r| r.variation == *v);
        match (&e.not_with_rust, row) {
            (Some(why), Some(row)) if !rust.is_empty() => {
                if rust.len() == total {
                    row.applied = false;
                    row.second = format!("{NOT_APPLIED}{why}");
                    continue;
                }
                row.second = format!("{}; not applied to {}: {why}", row.second, rust.join(", "));
            }
            _ => {}
        }
        keep.push(*v);
    }
    varied.only(&keep)
}

/// How an [`Applied`] row's `second` begins when the variation was not applied; the reason
/// follows.
pub const NOT_APPLIED: &str = "not applied: ";

/// personality(2): uname(2) reports a 2.6 kernel.
pub const UNAME26: u64 = 0x0020000;
/// personality(2): no address space layout randomisation.
pub const ADDR_NO_RANDOMIZE: u64 = 0x0040000;

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

/// The second build's changes for `requested`, and a row per requested variation.
pub fn plan(requested: &[Variation], isolation: Isolation, host: &Host) -> (Varied, Vec<Applied>) {
    let ctx = kinds::Ctx {
        host,
        isolated: isolation == Isolation::Namespaces,
    };
    let mut effects = Vec::new();
    let mut rows = Vec::new();
    for &variation in requested {
        let p = variation.plan(&ctx);
        if p.applied {
            effects.push((variation, p.effect));
        }
        rows.push(Applied {
            variation,
            applied: p.applied,
            first: p.first,
            second: p.second,
        });
    }
    (effects.into_iter().collect(), rows)
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
        assert_eq!(v.names().len(), 10);
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
        let (rust, why) = v.for_component(true);
        assert!(why[0].contains("jemalloc"), "{why:?}");
        assert!(rust.is_empty() && rust.env.is_empty());
        assert_eq!(v.for_component(false), (v.clone(), vec![]));
        assert_eq!(v.env.len(), 3);
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
        assert_eq!(t.names(), [Variation::Time]);
        assert_eq!(t.env.len(), 3);
        assert!(t.root.is_none() && t.umask.is_none() && t.personality == 0);
        let k = v.only(&[Variation::Kernel]);
        assert_eq!(k.personality, UNAME26);
        assert!(k.env.is_empty());
    }

    #[test]
    fn a_variation_rust_cannot_take_is_left_out_only_where_every_component_is_rust() {
        let host = Host {
            libfaketime: Some("/lib/faketime.so".into()),
            ..Host::default()
        };
        let (v, rows) = plan(
            &[Variation::Time, Variation::Umask],
            Isolation::Namespaces,
            &host,
        );
        let mut all_rust = rows.clone();
        let kept = restrict_to_components(&v, &mut all_rust, &["agent"], 1);
        assert_eq!(kept.names(), [Variation::Umask]);
        assert!(!all_rust[0].applied && all_rust[0].second.starts_with("not applied: "));
        let mut some_rust = rows.clone();
        let kept = restrict_to_components(&v, &mut some_rust, &["agent"], 2);
        assert_eq!(kept, v);
        assert!(some_rust[0].applied && some_rust[0].second.contains("; not applied to agent: "));
        let mut none = rows.clone();
        assert_eq!(restrict_to_components(&v, &mut none, &[], 2), v);
        assert_eq!(none, rows);
    }
}
