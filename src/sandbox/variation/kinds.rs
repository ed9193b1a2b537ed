//! Every variation, in one place each: its name (reprotest's), and how it is planned on this
//! host, that is whether it can be applied, what the first and second builds have, what it
//! changes in the step runner's world ([`Effect`]) and the markers it leaves. Adding a
//! variation is a line in the table and its function below; nothing else changes.

use serde::{Deserialize, Serialize};

use super::{
    ADDR_NO_RANDOMIZE, ENVIRONMENT_VALUE, Effect, Host, NOT_APPLIED, SECOND_DOMAIN, SECOND_HOME,
    SECOND_HOSTNAME, SECOND_LOCALE, SECOND_PATH, SECOND_ROOT, SECOND_TZ, SECOND_UMASK, SECOND_USER,
    TIME_SHIFT, UNAME26,
};
use crate::sandbox::{HOSTNAME, ROOT};

/// What a variation is planned with: this host, and whether steps run in namespaces.
pub(super) struct Ctx<'a> {
    pub host: &'a Host,
    pub isolated: bool,
}

/// One variation planned: whether it is applied, what each build has, and the effect.
pub(super) struct Planned {
    pub applied: bool,
    /// What the first build had.
    pub first: String,
    /// What the second build has, or why the variation cannot be made here.
    pub second: String,
    pub effect: Effect,
}

fn applied(first: &str, second: impl Into<String>, effect: Effect) -> Planned {
    Planned {
        applied: true,
        first: first.to_owned(),
        second: second.into(),
        effect,
    }
}

fn not_applied(first: &str, why: impl std::fmt::Display) -> Planned {
    Planned {
        applied: false,
        first: first.to_owned(),
        second: format!("{NOT_APPLIED}{why}"),
        effect: Effect::default(),
    }
}

const NO_NAMESPACES: &str = "steps run without namespaces here (--allow-network-leak)";

macro_rules! variations {
    ($($variant:ident = $name:literal => $plan:ident,)*) => {
        /// reprotest's variations, in its order.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub enum Variation {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Variation {
            pub const ALL: [Variation; [$($name),*].len()] = [$(Variation::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Variation::$variant => $name,)*
                }
            }

            pub(super) fn plan(self, ctx: &Ctx<'_>) -> Planned {
                match self {
                    $(Variation::$variant => $plan(ctx),)*
                }
            }
        }
    };
}

variations! {
    Environment = "environment" => environment,
    BuildPath = "build_path" => build_path,
    Kernel = "kernel" => kernel,
    Aslr = "aslr" => aslr,
    NumCpus = "num_cpus" => num_cpus,
    Time = "time" => time,
    UserGroup = "user_group" => user_group,
    Fileordering = "fileordering" => fileordering,
    DomainHost = "domain_host" => domain_host,
    Home = "home" => home,
    Locales = "locales" => locales,
    ExecPath = "exec_path" => exec_path,
    Timezone = "timezone" => timezone,
    Umask = "umask" => umask,
}

fn env(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn markers(m: &[&str]) -> Vec<String> {
    m.iter().map(|s| (*s).to_owned()).collect()
}

fn environment(_: &Ctx<'_>) -> Planned {
    applied(
        "the recipe's variables only",
        format!("plus CAPTURE_ENVIRONMENT={ENVIRONMENT_VALUE}, KATA_REPRO_SECOND_BUILD=1"),
        Effect {
            env: env(&[
                ("CAPTURE_ENVIRONMENT", ENVIRONMENT_VALUE),
                ("KATA_REPRO_SECOND_BUILD", "1"),
            ]),
            markers: markers(&[ENVIRONMENT_VALUE, "KATA_REPRO_SECOND_BUILD"]),
            ..Effect::default()
        },
    )
}

fn build_path(ctx: &Ctx<'_>) -> Planned {
    if !ctx.isolated {
        return applied(
            "a scratch directory",
            "another scratch directory (no mount namespace: real paths)",
            Effect::default(),
        );
    }
    applied(
        ROOT,
        SECOND_ROOT,
        Effect {
            root: Some(SECOND_ROOT.into()),
            markers: markers(&[SECOND_ROOT, "kata-repro-second-build"]),
            ..Effect::default()
        },
    )
}

fn kernel(_: &Ctx<'_>) -> Planned {
    applied(
        "the host's uname",
        "setarch --uname-2.6 (personality UNAME26)",
        Effect {
            personality: UNAME26,
            markers: super::host::uname26_release().into_iter().collect(),
            ..Effect::default()
        },
    )
}

fn aslr(ctx: &Ctx<'_>) -> Planned {
    if !ctx.host.aslr_enabled {
        return not_applied(
            "ASLR off",
            "kernel.randomize_va_space is 0 on this host, so both builds ran without ASLR",
        );
    }
    applied(
        "ASLR on",
        "ASLR off (setarch -R, personality ADDR_NO_RANDOMIZE)",
        Effect {
            personality: ADDR_NO_RANDOMIZE,
            ..Effect::default()
        },
    )
}

fn num_cpus(ctx: &Ctx<'_>) -> Planned {
    if ctx.host.cpus <= 1 {
        return not_applied("1 CPU", "this host has a single CPU");
    }
    applied(
        &format!("{} CPUs", ctx.host.cpus),
        "1 CPU (sched_setaffinity to CPU 0; nproc and parallel jobs follow)",
        Effect {
            cpus: Some(vec![0]),
            ..Effect::default()
        },
    )
}

fn time(ctx: &Ctx<'_>) -> Planned {
    let Some(lib) = &ctx.host.libfaketime else {
        return not_applied(
            "the real clock",
            "libfaketime is not installed (apt-get install faketime)",
        );
    };
    let lib = lib.display().to_string();
    applied(
        "the real clock",
        format!(
            "the clock {TIME_SHIFT} ahead through libfaketime ({lib}); statically linked \
             programs such as the Go toolchain do not see it"
        ),
        Effect {
            env: env(&[
                ("LD_PRELOAD", &lib),
                ("FAKETIME", TIME_SHIFT),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ]),
            // libfaketime deadlocks programs that link jemalloc at their first allocation
            // (libfaketime issue #130, fixed only by FAKETIME_IGNORE_SYMBOLS in releases after
            // Debian 12's 0.9.10), and rustc links jemalloc.
            not_with_rust: Some(
                "libfaketime deadlocks rustc, which links jemalloc (libfaketime issue #130)".into(),
            ),
            ..Effect::default()
        },
    )
}

fn user_group(ctx: &Ctx<'_>) -> Planned {
    if !ctx.isolated {
        return not_applied("the caller's", NO_NAMESPACES);
    }
    let (uid, gid) = SECOND_USER;
    applied(
        "uid 0, gid 0",
        format!("uid {uid}, gid {gid} (a user namespace)"),
        Effect {
            user: Some(SECOND_USER),
            markers: vec![format!("uid={uid}"), format!("{uid}")],
            ..Effect::default()
        },
    )
}

fn fileordering(ctx: &Ctx<'_>) -> Planned {
    let first = "the filesystem's directory order";
    let Some(bin) = &ctx.host.disorderfs else {
        return not_applied(first, &ctx.host.disorderfs_missing);
    };
    applied(
        first,
        "the source shown through disorderfs --shuffle-dirents=yes",
        Effect {
            disorderfs: Some(bin.clone()),
            ..Effect::default()
        },
    )
}

fn domain_host(ctx: &Ctx<'_>) -> Planned {
    if !ctx.isolated {
        return not_applied("the host's", NO_NAMESPACES);
    }
    applied(
        &format!("hostname {HOSTNAME}, no domain"),
        format!("hostname {SECOND_HOSTNAME}, domain {SECOND_DOMAIN} (a UTS namespace)"),
        Effect {
            host: Some((SECOND_HOSTNAME.into(), SECOND_DOMAIN.into())),
            markers: markers(&[SECOND_HOSTNAME, SECOND_DOMAIN]),
            ..Effect::default()
        },
    )
}

fn home(_: &Ctx<'_>) -> Planned {
    applied(
        "HOME=<root>/home",
        format!("HOME=<root>/{SECOND_HOME}"),
        Effect {
            home: Some(SECOND_HOME.into()),
            markers: markers(&[SECOND_HOME]),
            ..Effect::default()
        },
    )
}

fn locales(ctx: &Ctx<'_>) -> Planned {
    let note = if ctx.host.locale_installed {
        String::new()
    } else {
        format!(
            "; {SECOND_LOCALE} is not installed here, so programs that load it fall back to the \
             C locale"
        )
    };
    applied(
        "LANG=LC_ALL=C.UTF-8",
        format!("LANG=LC_ALL={SECOND_LOCALE}, LANGUAGE=fr_CH:fr{note}"),
        Effect {
            env: env(&[
                ("LANG", SECOND_LOCALE),
                ("LC_ALL", SECOND_LOCALE),
                ("LANGUAGE", "fr_CH:fr"),
            ]),
            markers: markers(&["fr_CH"]),
            ..Effect::default()
        },
    )
}

fn exec_path(_: &Ctx<'_>) -> Planned {
    applied(
        "the recipe's PATH",
        format!("PATH with <root>/{SECOND_PATH} appended"),
        Effect {
            path_append: Some(SECOND_PATH.into()),
            markers: markers(&[SECOND_PATH]),
            ..Effect::default()
        },
    )
}

fn timezone(_: &Ctx<'_>) -> Planned {
    applied(
        "TZ=UTC",
        format!("TZ={SECOND_TZ}"),
        Effect {
            env: env(&[("TZ", SECOND_TZ)]),
            markers: markers(&[SECOND_TZ, "+14"]),
            ..Effect::default()
        },
    )
}

fn umask(_: &Ctx<'_>) -> Planned {
    applied(
        "umask 0022",
        format!("umask {SECOND_UMASK:04o}"),
        Effect {
            umask: Some(SECOND_UMASK),
            ..Effect::default()
        },
    )
}
