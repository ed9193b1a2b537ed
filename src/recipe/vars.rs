//! The variables every recipe may use, in one table: the loader reads its names to refuse a
//! reference to a variable that does not exist, and the builder reads its values.

use std::collections::BTreeMap;

use super::{Recipe, SourceTree};
use crate::digest::Sha256Digest;
use crate::lock::Lockfile;

/// What a built-in variable's value is drawn from.
pub struct VarContext<'a> {
    pub lock: &'a Lockfile,
    /// The Kata architecture built for.
    pub arch: &'a str,
    pub recipe: &'a Recipe,
    /// Where a path of the scratch directory (`src`, `inputs/goproxy`) is seen from inside a
    /// step.
    pub inside: &'a dyn Fn(&str) -> String,
    /// Whether the Go modules come from the store's module proxy rather than from vendor/.
    pub go_proxy: bool,
}

/// A variable kata-repro sets for every recipe: its name and how its value is made.
pub struct BuiltinVar {
    pub name: &'static str,
    pub value: fn(&VarContext) -> String,
}

/// A variable and its value.
macro_rules! var {
    ($name:literal, $value:expr) => {
        BuiltinVar {
            name: $name,
            value: $value,
        }
    };
}

/// A variable naming a path of the scratch directory as a step sees it.
macro_rules! inside {
    ($name:literal, $rel:literal) => {
        BuiltinVar {
            name: $name,
            value: |c| (c.inside)($rel),
        }
    };
}

/// A UUID derived from the pins for the purpose the variable is named after.
macro_rules! uuid {
    ($name:literal) => {
        BuiltinVar {
            name: $name,
            value: |c| derived_uuid(c.lock, c.arch, $name).to_string(),
        }
    };
}

/// Every built-in variable.
pub const BUILTINS: &[BuiltinVar] = &[
    // The scratch directory.
    inside!("src", "src"),
    BuiltinVar {
        name: "workdir",
        value: |c| match c.recipe.workdir.as_str() {
            "" => (c.inside)("src"),
            w => (c.inside)(&format!("src/{w}")),
        },
    },
    inside!("out", "out"),
    inside!("home", "home"),
    inside!("tmp", "tmp"),
    // The release.
    var!("arch", |c| c.arch.to_owned()),
    var!("commit", |c| c.lock.source.commit.to_string()),
    var!("version", |c| c.lock.release.clone()),
    var!("source_date_epoch", |c| c
        .lock
        .source_date_epoch()
        .to_string()),
    // Toolchains and verified inputs.
    inside!("go", "toolchains/go"),
    inside!("rust", "toolchains/rust"),
    inside!("cargo_vendor", "inputs/cargo-vendor"),
    var!("gomod", |c| if c.go_proxy { "readonly" } else { "vendor" }
        .to_owned()),
    BuiltinVar {
        name: "goproxy",
        value: |c| match c.go_proxy {
            true => format!("file://{}", (c.inside)("inputs/goproxy")),
            false => "off".to_owned(),
        },
    },
    BuiltinVar {
        name: "kata",
        value: |c| match c.recipe.source {
            SourceTree::Kata => (c.inside)("src"),
            SourceTree::Kernel => (c.inside)("inputs/kata"),
        },
    },
    inside!("rootfs_packages", "inputs/rootfs-packages.list"),
    inside!("release_layout", "inputs/release-layout.json"),
    // The guest kernel.
    var!("kernel_version", |c| c.lock.kernel.version.clone()),
    var!("kernel_major", |c| crate::lock::major_minor(
        &c.lock.kernel.version
    )
    .to_owned()),
    var!("kata_config_version", |c| c
        .lock
        .kernel
        .kata_config_version
        .clone()),
    // The rootfs image: its base and the identifiers derived from the pins.
    var!("rootfs_distro", |c| rootfs_base(c)
        .map(|b| b.distro.clone())
        .unwrap_or_default()),
    BuiltinVar {
        name: "rootfs_release",
        value: |c| {
            rootfs_base(c)
                .map(|b| b.release.clone())
                .unwrap_or_default()
        },
    },
    uuid!("fs_uuid"),
    uuid!("hash_seed"),
    BuiltinVar {
        name: "verity_salt",
        // veritysetup takes the salt as hex; 32 bytes, as its default salt.
        value: |c| {
            Sha256Digest::of(derived_uuid(c.lock, c.arch, "verity_salt").as_bytes()).to_hex()
        },
    },
    uuid!("verity_uuid"),
    BuiltinVar {
        name: "disk_id",
        value: |c| {
            let disk = derived_uuid(c.lock, c.arch, "disk_id");
            format!("0x{}", &disk.simple().to_string()[..8])
        },
    },
];

/// The names of the built-in variables.
pub fn builtin_names<'a>() -> impl Iterator<Item = &'a str> {
    BUILTINS.iter().map(|b| -> &'a str { b.name })
}

/// Every built-in variable with its value for `ctx`.
pub fn builtin_values(ctx: &VarContext) -> BTreeMap<String, String> {
    BUILTINS
        .iter()
        .map(|b| (b.name.to_owned(), (b.value)(ctx)))
        .collect()
}

fn rootfs_base<'a>(c: &VarContext<'a>) -> Option<&'a crate::lock::RootfsBase> {
    c.lock.rootfs.base.iter().find(|b| b.arch == c.arch)
}

/// Version-independent name-based UUID for an image property, derived from what the lockfile
/// pins (the source commit and the rootfs packages), the architecture and the purpose.
pub fn derived_uuid(lock: &Lockfile, arch: &str, purpose: &str) -> uuid::Uuid {
    let packages: Vec<String> = lock
        .rootfs
        .packages_of(arch)
        .map(|p| p.sha256.to_hex())
        .collect();
    let name = format!(
        "kata-repro:{purpose}:{}:{arch}:{}",
        lock.source.commit,
        Sha256Digest::of(packages.join(",").as_bytes())
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(name: &str) -> Lockfile {
        crate::lock::committed(name)
    }

    fn values(lock: &Lockfile, component: &str, go_proxy: bool) -> BTreeMap<String, String> {
        let recipes = crate::recipe::RecipeSource::Builtin.load_all().unwrap();
        let inside = |rel: &str| format!("/tmp/kata-repro/{rel}");
        builtin_values(&VarContext {
            lock,
            arch: "x86_64",
            recipe: &recipes[component].recipe,
            inside: &inside,
            go_proxy,
        })
    }

    #[test]
    fn every_builtin_has_a_value_and_names_are_unique() {
        let v = values(&lock("kata-4.0.0-debian.toml"), "rootfs", false);
        let names: Vec<&str> = builtin_names().collect();
        assert_eq!(v.len(), names.len(), "a name is listed twice");
        assert!(names.iter().all(|n| v.contains_key(*n)));
    }

    #[test]
    fn image_identifiers_are_the_ones_the_released_image_was_built_with() {
        // The dm-verity salt of the rootfs image built from kata-4.0.0-debian.toml.
        let v = values(&lock("kata-4.0.0-debian.toml"), "rootfs", false);
        assert_eq!(
            v["verity_salt"],
            "21a46c41d5c7e12f07da46d33d2584a0cae407ca45b8ac5dab7a5263cf93f175"
        );
        assert_eq!(v["fs_uuid"], "056117b3-fca5-5459-a95d-17c3bd9463bb");
        assert_eq!(v["disk_id"], "0x0c373d94");
        assert_eq!(v["kernel_major"], "6.12");
        assert_eq!(v["rootfs_distro"], "debian");
        assert_eq!(v["rootfs_release"], "bookworm");
        assert_eq!(v["commit"], "cf82bb35c80320178bf7570252fe75d6fb263209");
    }

    #[test]
    fn go_modules_come_from_vendor_or_the_stores_proxy() {
        let l = lock("kata-4.0.0-debian.toml");
        let vendored = values(&l, "runtime", false);
        assert_eq!(
            (&*vendored["gomod"], &*vendored["goproxy"]),
            ("vendor", "off")
        );
        let proxied = values(&l, "runtime", true);
        assert_eq!(proxied["gomod"], "readonly");
        assert_eq!(proxied["goproxy"], "file:///tmp/kata-repro/inputs/goproxy");
        assert_eq!(proxied["workdir"], "/tmp/kata-repro/src/src/runtime");
    }
}
