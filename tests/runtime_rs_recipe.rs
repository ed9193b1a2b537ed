//! The built-in runtime-rs recipe's steps, run as the recipe writes them with stand-ins for
//! Kata's Makefile and for cargo: what the generate step hands make, and that the C code
//! cargo-build's build scripts compile is remapped by flags that are the same at every build
//! root (OpenSSL compiles its CFLAGS into libcrypto), checked with the host's gcc.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kata_repro::recipe::{self, RecipeSource};

/// The recipe's vars for x86_64 with `given` (the builtins a build sets), expanded as a build
/// expands them: until nothing changes.
fn vars(given: &[(&str, String)]) -> BTreeMap<String, String> {
    let all = RecipeSource::Builtin.load_all().unwrap();
    let r = &all["runtime-rs"].recipe;
    let mut vars: BTreeMap<String, String> = r.vars.clone();
    vars.extend(r.arch["x86_64"].vars.clone());
    for (k, v) in given {
        vars.insert((*k).into(), v.clone());
    }
    let own: Vec<String> = vars.keys().cloned().collect();
    recipe::expand_vars(&mut vars, own.iter());
    vars
}

/// The step `name` of the built-in runtime-rs recipe: its argv and its own env, expanded.
fn step(name: &str, vars: &BTreeMap<String, String>) -> (Vec<String>, BTreeMap<String, String>) {
    let all = RecipeSource::Builtin.load_all().unwrap();
    let r = &all["runtime-rs"].recipe;
    let step = r.steps.iter().find(|s| s.name == name).unwrap();
    let argv = step.argv.iter().map(|a| recipe::expand(a, vars)).collect();
    let env = r
        .env
        .iter()
        .chain(&step.env)
        .map(|(k, v)| (k.clone(), recipe::expand(v, vars)))
        .collect();
    (argv, env)
}

/// A Makefile that writes down the variables and goal runtime-rs's generate step hands it.
const RECORDING_MAKEFILE: &str = "static-checks-build:\n\
\tprintf '%s\\n' 'goal=$@' 'verity=$(KERNELVERITYPARAMS)' 'libc=$(LIBC)' \\\n\
\t  'prefix=$(PREFIX)' 'qemu=$(QEMUCMD)' 'packages=$(PACKAGES)' > made.txt\n";

/// Runs the built-in runtime-rs recipe's generate step in `dir` with `needs_rootfs`; returns
/// what the Makefile was given.
fn generate(dir: &Path, needs_rootfs: &str) -> Vec<String> {
    std::fs::write(dir.join("Makefile"), RECORDING_MAKEFILE).unwrap();
    let (argv, _) = step(
        "generate",
        &vars(&[("needs_rootfs", needs_rootfs.to_owned())]),
    );
    let o = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(dir.join("made.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// runtime-rs's generate step, as the built-in recipe runs it, hands Kata's Makefile the rootfs
/// image's dm-verity parameters as KERNELVERITYPARAMS, with Kata's release variables; without a
/// rootfs it hands an empty value, as Kata's Makefile defaults to. (That Kata's own Makefile puts
/// them in the configurations is what `cargo xtask e2e --check-only --kata4` checks.)
#[test]
fn runtime_rs_generate_step_hands_make_the_root_hash() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let hash = "root_hash=5c1d0a2e9f7b6c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5,salt=00ff,data_blocks=1024,data_block_size=4096,hash_block_size=4096";
    std::fs::write(rootfs.join("root_hash.txt"), format!("{hash}\n")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let made = generate(&src, &rootfs.display().to_string());
    assert_eq!(
        made,
        [
            "goal=static-checks-build".to_owned(),
            format!("verity={hash}"),
            "libc=gnu".into(),
            "prefix=/opt/kata".into(),
            "qemu=qemu-system-x86_64".into(),
            "packages=".into(),
        ]
    );
    let made = generate(&src, "");
    assert_eq!(made[1], "verity=");
}

/// What cargo does here, as far as the prefix maps go: a build script compiles a C file of a
/// vendored crate with `cc $CFLAGS` in its OUT_DIR (as openssl-src does, which also keeps the
/// flags, in libcrypto), and the binary lands in the target directory.
const STAND_IN_CARGO: &str = r#"#!/bin/sh
set -e
out="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
mkdir -p "$out"
cd "$CARGO_TARGET_DIR"
printf '%s' "$CFLAGS" > "$out/cflags"
cc $CFLAGS -g -O2 -c "$VENDORED_C" -o "$out/containerd-shim-kata-v2"
"#;

/// Runs the recipe's cargo-build step under `root` (a build root) with the stand-in cargo and
/// one fixed target directory; returns the flags the C compiler was given and the object.
fn cargo_build(root: &Path, target_dir: &Path, bin: &Path) -> (String, Vec<u8>) {
    let vendor = root.join("inputs/cargo-vendor");
    let c = vendor.join("openssl-src-300.6.0+3.6.2/openssl/crypto/err/err.c");
    std::fs::create_dir_all(c.parent().unwrap()).unwrap();
    std::fs::write(&c, "const char *where(void) { return __FILE__; }\n").unwrap();
    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let vars = vars(&[
        ("src", root.join("src").display().to_string()),
        ("cargo_vendor", vendor.display().to_string()),
        ("home", root.join("home").display().to_string()),
        ("out", out.display().to_string()),
        ("target_dir", target_dir.display().to_string()),
    ]);
    let (argv, env) = step("cargo-build", &vars);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(&env)
        .env("PATH", path)
        .env("VENDORED_C", &c)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cflags =
        std::fs::read_to_string(target_dir.join("x86_64-unknown-linux-gnu/release/cflags"))
            .unwrap();
    (
        cflags,
        std::fs::read(out.join("containerd-shim-kata-v2")).unwrap(),
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The C code build scripts compile under two build roots of different lengths gets the same
/// CFLAGS (which OpenSSL keeps in libcrypto) and, through the specs file those CFLAGS name,
/// its source paths remapped: __FILE__ and the debug info say /vendor, never the build root,
/// and the two objects are the same bytes.
#[test]
fn c_code_is_remapped_by_flags_that_name_no_build_root() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, STAND_IN_CARGO).unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target_dir = dir.path().join("target");
    let (a, b) = (
        dir.path().join("a"),
        dir.path().join("second/a-longer-path"),
    );
    let (flags_a, obj_a) = cargo_build(&a, &target_dir, &bin);
    let (flags_b, obj_b) = cargo_build(&b, &target_dir, &bin);

    assert_eq!(flags_a, flags_b, "CFLAGS name the build root");
    let remapped = "/vendor/openssl-src-300.6.0+3.6.2/openssl/crypto/err/err.c";
    for (root, obj) in [(&a, &obj_a), (&b, &obj_b)] {
        assert!(contains(obj, remapped), "{remapped} not in the object");
        assert!(
            !contains(obj, &root.display().to_string()),
            "the object names its build root {}",
            root.display()
        );
    }
    assert!(obj_a == obj_b, "the objects differ between build roots");
}
