//! Kata's release tarballs: the `release-tarballs` builtin on the built-in kata-static recipe,
//! over component outputs shaped like the real ones and a tree shaped like Kata 4.0.0's
//! (tests/data/kata-shaped: its release workflow's jobs and assets, VERSION, versions.yaml). The layout is compared with the listing Kata's scripts
//! give (tests/data/kata-static-4.0.0-amd64.members), and the bytes with themselves across
//! orders, mtimes, umasks and zstd thread counts.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use kata_repro::recipe::{self, RecipeSource};
use kata_repro::release::layout::{self, PlanContext};

const KERNEL: &str = "6.18.35-200";
const SDE: u64 = 1_784_556_680;

/// A tree shaped like Kata 4.0.0's, as far as the release needs it.
fn kata_tree() -> PathBuf {
    kata_tree_of("4.0.0")
}

/// A tree shaped like that of the Kata release `version`.
fn kata_tree_of(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kata-shaped")
        .join(version)
}

/// The runtime-rs configurations Kata 4.0.0's Makefile generates for x86_64.
const RS_CONFIGS: &[&str] = &[
    "clh-azure-runtime-rs",
    "clh-runtime-rs",
    "dragonball",
    "qemu-coco-dev-runtime-rs",
    "qemu-nvidia-cpu-runtime-rs",
    "qemu-nvidia-gpu-runtime-rs",
    "qemu-nvidia-gpu-snp-runtime-rs",
    "qemu-nvidia-gpu-tdx-runtime-rs",
    "qemu-runtime-rs",
    "qemu-se-runtime-rs",
    "qemu-snp-runtime-rs",
    "qemu-tdx-runtime-rs",
    "remote",
    "rs-fc",
];

/// Each component's outputs, as its recipe names them, written in `order` with `mtime` and the
/// given file mode (the layout, not the files, must decide what the tarball says).
fn components(root: &Path, reverse: bool, mtime: i64, mode: u32) -> BTreeMap<String, PathBuf> {
    let mut files: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "kernel",
            format!("vmlinux-{KERNEL}"),
            b"\x7fELF vmlinux".to_vec(),
        ),
        ("kernel", format!("vmlinuz-{KERNEL}"), b"bzImage".to_vec()),
        (
            "kernel",
            format!("config-{KERNEL}"),
            b"CONFIG_X=y\n".to_vec(),
        ),
        (
            "kernel",
            format!("System.map-{KERNEL}"),
            b"ffff T _text\n".to_vec(),
        ),
        ("kernel", "kernel-config-report.json".into(), b"[]".to_vec()),
        ("rootfs", "kata-containers.img".into(), vec![7u8; 70_000]),
        (
            "rootfs",
            "root_hash.txt".into(),
            b"root_hash=ab,salt=cd\n".to_vec(),
        ),
        (
            "initrd",
            "kata-containers-initrd.img".into(),
            vec![9u8; 5000],
        ),
        (
            "runtime-rs",
            "containerd-shim-kata-v2".into(),
            b"\x7fELF shim".to_vec(),
        ),
    ];
    for c in RS_CONFIGS {
        files.push((
            "runtime-rs",
            format!("config/configuration-{c}.toml"),
            format!("# {c}\n").into_bytes(),
        ));
    }
    if reverse {
        files.reverse();
    }
    let mut dirs = BTreeMap::new();
    for (component, rel, bytes) in files {
        let dir = root.join(component);
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        dirs.insert(component.to_owned(), dir);
    }
    dirs
}

/// The plan the build would hand the builtin, for 4.0.0 on x86_64 with an Ubuntu noble rootfs.
fn plan_json(dirs: &BTreeMap<String, PathBuf>, reverse_parts: bool) -> String {
    plan_json_for(&kata_tree(), "4.0.0", dirs, reverse_parts)
}

/// The same for the release `version` of the Kata-shaped `tree`.
fn plan_json_for(
    tree: &Path,
    version: &str,
    dirs: &BTreeMap<String, PathBuf>,
    reverse_parts: bool,
) -> String {
    let all = RecipeSource::Builtin.load_all().unwrap();
    let r = &all["kata-static"].recipe;
    let mut def = r.release.clone().unwrap();
    if reverse_parts {
        def.parts.reverse();
    }
    let vars: BTreeMap<String, String> = [
        ("version", version),
        ("kata_arch", "amd64"),
        ("kernel_version", "6.18.35"),
        ("kata_config_version", "200"),
        ("image", "kata-ubuntu-noble"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let built = |c: &str| {
        dirs.get(c)
            .cloned()
            .ok_or_else(|| format!("component `{c}` is not part of this build"))
    };
    let plan = layout::plan(
        &def,
        &|s| recipe::expand(s, &vars),
        PlanContext {
            kata: tree.to_owned(),
            kata_arch: "amd64".into(),
            mtime: SDE,
        },
        &built,
    );
    serde_json::to_string(&plan).unwrap()
}

/// Runs the builtin under `umask`, as a step would; returns its output directory.
fn pack(dir: &Path, plan: &str, umask: &str) -> (PathBuf, std::process::Output) {
    let plan_file = dir.join("layout.json");
    std::fs::write(&plan_file, plan).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask {umask}; exec \"$0\" builtin release-tarballs \"$1\" \"$2\""
        ))
        .arg(env!("CARGO_BIN_EXE_kata-repro"))
        .arg(&plan_file)
        .arg(&out)
        .env("KATA_REPRO_NOTES", dir.join("notes"))
        .output()
        .unwrap();
    (out, o)
}

fn build_once(root: &Path, reverse: bool, mtime: i64, mode: u32, umask: &str) -> Vec<u8> {
    let dirs = components(&root.join("components"), reverse, mtime, mode);
    let (out, o) = pack(root, &plan_json(&dirs, reverse), umask);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kata-static-4.0.0-amd64.tar.zst"], "{names:?}");
    std::fs::read(out.join(&names[0])).unwrap()
}

/// `TYPE MODE PATH [-> TARGET]` of each member, in archive order, with uid, gid, owner names and
/// mtime checked on the way.
fn listing(tarball: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(zstd::Decoder::new(tarball).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        assert_eq!(h.mtime().unwrap(), SDE);
        let kind = match h.entry_type() {
            tar::EntryType::Directory => "d",
            tar::EntryType::Regular => "f",
            tar::EntryType::Symlink => "l",
            other => panic!("unexpected entry type {other:?}"),
        };
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| format!(" -> {}", String::from_utf8_lossy(&l)))
            .unwrap_or_default();
        out.push(format!("{kind} {:04o} {path}{link}", h.mode().unwrap()));
    }
    out
}

#[test]
fn layout_matches_kata_scripts_listing() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_once(dir.path(), false, 1_000_000_000, 0o644, "022");
    let got = listing(&bytes);
    let mut sorted = got.clone();
    sorted.sort();
    let expected: Vec<String> = include_str!("data/kata-static-4.0.0-amd64.members")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted);
    // Path order: each directory before what it holds.
    assert_eq!(got[0], "d 0755 ./");
    assert_eq!(got[1], "d 0755 ./opt/");
    // The merged files are Kata's own.
    let mut ar = tar::Archive::new(zstd::Decoder::new(&bytes[..]).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().as_ref() == b"./opt/kata/VERSION" {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            assert_eq!(s, "4.0.0\n");
        }
    }
    // The notes never call the tarball complete, and name what Kata merges that was not built.
    let notes = notes_in(dir.path());
    assert!(
        notes.contains("kata-static-4.0.0-amd64.tar.zst: 40 members; PARTIAL: 4 of the 26"),
        "{notes}"
    );
    for missing in [
        "not built: kata-static-qemu.tar.zst (kata-repro has no recipe for it)",
        "not built: kata-static-shim-v2-go.tar.zst (component `runtime` is not part of this build)",
        "not built: kata-static-virtiofsd.tar.zst",
        "not built: kata-static-rootfs-image-confidential.tar.zst",
    ] {
        assert!(notes.contains(missing), "{missing}\n{notes}");
    }
}

/// The Go runtime's outputs, as recipes/runtime.toml names them.
fn go_runtime(root: &Path) -> PathBuf {
    let dir = root.join("runtime");
    for (rel, bytes) in [
        ("containerd-shim-kata-v2", &b"\x7fELF go shim"[..]),
        ("kata-runtime", b"\x7fELF kata-runtime"),
        ("kata-monitor", b"\x7fELF kata-monitor"),
        ("kata-collect-data.sh", b"#!/bin/bash\n"),
        (
            "completions/kata-runtime",
            b"complete -F _kata kata-runtime\n",
        ),
        ("config/configuration-qemu.toml", b"# qemu\n"),
        ("config/configuration-clh.toml", b"# clh\n"),
    ] {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

/// Packs the release `version` of `tree` in a new temporary directory, from the components'
/// outputs (and the Go runtime's too, when `with_go_runtime`), under umask 022; the builtin must
/// succeed. Returns the directory and the builtin's output directory in it.
fn pack_release(tree: &Path, version: &str, with_go_runtime: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut dirs = components(&dir.path().join("components"), false, 1, 0o644);
    if with_go_runtime {
        dirs.insert("runtime".into(), go_runtime(&dir.path().join("components")));
    }
    let (out, o) = pack(
        dir.path(),
        &plan_json_for(tree, version, &dirs, false),
        "022",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dir, out)
}

/// The notes the builtin wrote in `dir`.
fn notes_in(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("notes")).unwrap()
}

/// Members of a release tarball written by `pack`, by path.
fn paths(out: &Path, name: &str) -> Vec<String> {
    let bytes = std::fs::read(out.join(name)).unwrap();
    listing(&bytes)
        .into_iter()
        .map(|l| l.split(' ').nth(2).unwrap().to_owned())
        .collect()
}

/// From 4.1.0, each release tarball merges its own list: kata-static the runtime-rs stack,
/// kata-go-static (written once the Go runtime is built) the Go runtime's.
#[test]
fn with_the_go_runtime_4_1_0_writes_both_release_tarballs() {
    let (dir, out) = pack_release(&kata_tree_of("4.1.0"), "4.1.0", true);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "kata-go-static-4.1.0-amd64.tar.zst",
            "kata-static-4.1.0-amd64.tar.zst"
        ]
    );
    let rs = paths(&out, "kata-static-4.1.0-amd64.tar.zst");
    assert!(rs.contains(&"./opt/kata/runtime-rs/bin/containerd-shim-kata-v2".to_owned()));
    assert!(
        !rs.iter().any(|p| p.starts_with("./opt/kata/bin/")),
        "{rs:?}"
    );
    let go = paths(&out, "kata-go-static-4.1.0-amd64.tar.zst");
    for want in [
        "./opt/kata/bin/containerd-shim-kata-v2",
        "./opt/kata/bin/kata-collect-data.sh",
        "./opt/kata/share/bash-completion/completions/kata-runtime",
        "./opt/kata/share/defaults/kata-containers/configuration-clh.toml",
        "./opt/kata/share/defaults/kata-containers/configuration.toml",
        "./opt/kata/share/kata-containers/kata-containers.img",
        "./opt/kata/VERSION",
    ] {
        assert!(go.contains(&want.to_owned()), "{want}: {go:?}");
    }
    assert!(!go.iter().any(|p| p.contains("runtime-rs")), "{go:?}");
    let notes = notes_in(dir.path());
    assert!(
        notes.contains("kata-go-static-4.1.0-amd64.tar.zst: "),
        "{notes}"
    );
    assert!(
        notes.contains("kata-go-static-4.1.0-amd64.tar.zst: 31 members; PARTIAL: 4 of the 22"),
        "{notes}"
    );
}

/// Without the Go runtime, 4.1.0's kata-go-static is not written, and the notes say why.
#[test]
fn without_the_go_runtime_kata_go_static_is_left_out() {
    let (dir, out) = pack_release(&kata_tree_of("4.1.0"), "4.1.0", false);
    assert!(!out.join("kata-go-static-4.1.0-amd64.tar.zst").exists());
    assert!(out.join("kata-static-4.1.0-amd64.tar.zst").exists());
    let notes = notes_in(dir.path());
    assert!(
        notes.contains(
            "kata-go-static-4.1.0-amd64.tar.zst: not written: it needs \
             kata-static-shim-v2-go.tar.zst, which was not built (component `runtime` is not part \
             of this build)"
        ),
        "{notes}"
    );
}

/// Before 4.1.0 the release merges one kata-static, the Go runtime in it too: no
/// kata-go-static is written even with the Go runtime built, and the notes say why.
#[test]
fn before_4_1_0_the_go_runtime_goes_into_kata_static() {
    let (dir, out) = pack_release(&kata_tree(), "4.0.0", true);
    assert!(!out.join("kata-go-static-4.0.0-amd64.tar.zst").exists());
    let all = paths(&out, "kata-static-4.0.0-amd64.tar.zst");
    assert!(all.contains(&"./opt/kata/bin/containerd-shim-kata-v2".to_owned()));
    assert!(all.contains(&"./opt/kata/runtime-rs/bin/containerd-shim-kata-v2".to_owned()));
    let notes = notes_in(dir.path());
    assert!(notes.contains("PARTIAL: 5 of the 26"), "{notes}");
    assert!(
        notes.contains(
            "kata-go-static-4.0.0-amd64.tar.zst: not written: Kata 4.0.0 names no inputs of \
             kata-go-static for amd64"
        ),
        "{notes}"
    );
}

#[test]
fn gnu_tar_reads_the_tarball() {
    let has = |p: &str| Command::new(p).arg("--version").output().is_ok();
    assert!(
        has("tar") && has("zstd"),
        "GNU tar and zstd are the oracle here; install them (apt-get install tar zstd)"
    );
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_once(dir.path(), false, 1_000_000_000, 0o644, "022");
    let file = dir.path().join("t.tar.zst");
    std::fs::write(&file, &bytes).unwrap();
    let o = Command::new("tar")
        .args(["--zstd", "-tvf"])
        .env("TZ", "UTC")
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let long = "./opt/kata/share/defaults/kata-containers/runtime-rs/configuration-qemu-nvidia-gpu-snp-runtime-rs.toml";
    assert!(long.len() > 100);
    assert!(text.contains(long), "{text}");
    assert!(
        text.contains("lrwxrwxrwx 0/0               0 2026-07-20 14:11 ./opt/kata/share/kata-containers/kata-containers.img -> kata-ubuntu-noble.image"),
        "{text}"
    );
}

#[test]
fn same_bytes_whatever_the_order_times_modes_and_umask() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = build_once(a.path(), false, 1_000_000_000, 0o644, "022");
    let second = build_once(b.path(), true, 1_700_000_000, 0o600, "077");
    assert_eq!(first.len(), second.len());
    assert!(first == second, "the two tarballs differ");
}

#[test]
fn a_missing_output_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = components(&dir.path().join("components"), false, 1, 0o644);
    std::fs::remove_file(dirs["rootfs"].join("root_hash.txt")).unwrap();
    let (out, o) = pack(dir.path(), &plan_json(&dirs, false), "022");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kata-static-rootfs-image.tar.zst was built, but its component's outputs lack root_hash.txt"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

fn diff_json(a: &Path, b: &Path) -> (i32, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_kata-repro"))
        .args(["diff", "--json"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), v)
}

/// The one differing member, and its explanation: the line of the configuration that differs.
#[test]
fn diff_of_two_release_tarballs_names_the_member_and_why() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = build_once(a.path(), false, 1, 0o644, "022");
    let dirs = components(&b.path().join("components"), false, 1, 0o644);
    let config = dirs["runtime-rs"].join("config/configuration-qemu-runtime-rs.toml");
    std::fs::write(
        &config,
        "# qemu-runtime-rs\nkernel_verity_params = \"other\"\n",
    )
    .unwrap();
    let (out, o) = pack(b.path(), &plan_json(&dirs, false), "022");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let name = "kata-static-4.0.0-amd64.tar.zst";
    let (fa, fb) = (a.path().join("a.tar.zst"), out.join(name));
    std::fs::write(&fa, first).unwrap();

    let (code, v) = diff_json(&fa, &fb);
    assert_eq!(code, 1, "{v}");
    let differing = v["differing"].as_array().unwrap();
    assert_eq!(differing.len(), 1, "{v}");
    let details = differing[0]["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{v}");
    let d = &details[0];
    assert_eq!(d["kind"], "within");
    assert_eq!(
        d["member"],
        "opt/kata/share/defaults/kata-containers/runtime-rs/configuration-qemu-runtime-rs.toml"
    );
    assert_eq!(d["change"]["content"], true);
    assert_eq!(d["details"][0]["kind"], "line");
    assert_eq!(d["details"][0]["line"], 2);
    assert_eq!(d["details"][0]["b"], "kernel_verity_params = \"other\"");

    let (code, v) = diff_json(&fa, &fa);
    assert_eq!(code, 0, "{v}");
}

/// Older Kata releases publish `.tar.xz`: read member by member too, here as GNU tar writes
/// them.
#[test]
fn diff_of_two_tar_xz_names_the_member_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut tarballs = Vec::new();
    for (side, line) in [("a", "CONFIG_X=y"), ("b", "CONFIG_X=n")] {
        let tree = dir.path().join(side).join("opt/kata/share/kata-containers");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("config-6.18.35-200"), format!("# k\n{line}\n")).unwrap();
        std::fs::write(tree.join("same"), "same\n").unwrap();
        let file = dir.path().join(format!("{side}.tar.xz"));
        let o = Command::new("tar")
            .args(["--mtime=@0", "--owner=0", "--group=0", "-cJf"])
            .arg(&file)
            .arg("-C")
            .arg(dir.path().join(side))
            .arg(".")
            .output()
            .expect(
                "GNU tar and xz are the oracle here; install them (apt-get install tar xz-utils)",
            );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        tarballs.push(file);
    }
    let (code, v) = diff_json(&tarballs[0], &tarballs[1]);
    assert_eq!(code, 1, "{v}");
    let details = v["differing"][0]["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{v}");
    assert_eq!(
        details[0]["member"],
        "opt/kata/share/kata-containers/config-6.18.35-200"
    );
    assert_eq!(details[0]["details"][0]["kind"], "line");
    assert_eq!(details[0]["details"][0]["a"], "CONFIG_X=y");
}

/// A layout that takes a file its component does not make, or a component the release recipe
/// does not build: refused when the recipes load, before anything is fetched or built.
#[test]
fn a_layout_naming_what_is_not_built_is_refused_with_exit_2() {
    let cases = [
        (
            "from = \"System.map-${kernel_version}-${kata_config_version}\"",
            "from = \"System.map-${kernel_version}\"",
            "part kata-static-kernel.tar.zst takes System.map-${kernel_version} from component `kernel`, whose recipe declares no such output",
        ),
        (
            "needs = [\"kernel\", \"rootfs\", \"initrd\", \"runtime-rs\"]",
            "needs = [\"kernel\", \"rootfs\", \"initrd\"]",
            "part kata-static-shim-v2-rust.tar.zst takes files from component `runtime-rs`, which is neither in this recipe's `needs` nor in its `uses`",
        ),
    ];
    for (from, to, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let recipes = dir.path().join("recipes");
        std::fs::create_dir_all(&recipes).unwrap();
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, recipes.join(p.file_name().unwrap())).unwrap();
            }
        }
        let file = recipes.join("kata-static.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&file, text.replacen(from, to, 1)).unwrap();
        let out = dir.path().join("out");
        let o = Command::new(env!("CARGO_BIN_EXE_kata-repro"))
            .args(["build", "--component", "kata-static", "--recipes"])
            .arg(&recipes)
            .arg("--lockfile")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("lockfiles/kata-4.0.0-debian.toml"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("kata-static.toml:"), "{err}");
        assert!(err.contains(message), "{err}");
        assert!(!out.exists());
        assert!(!dir.path().join("store").exists(), "something was fetched");
    }
}
