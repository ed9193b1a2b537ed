//! `kata-repro verify cargo`, against what cargo itself writes: `.crate` archives from
//! `cargo package`, a Cargo.lock from a local registry, and a vendor tree from `cargo vendor`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_code, exited, git, items, json, kata_repro, run_ok, sha256_hex, string, text};

struct CargoFixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    app: PathBuf,
    registry: PathBuf,
    gitdep: PathBuf,
}

fn cargo(dir: &Path, cargo_home: &Path, args: &[&str]) {
    run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .current_dir(dir)
            .env("CARGO_HOME", cargo_home)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .env_remove("RUSTUP_TOOLCHAIN"),
        format!("cargo {args:?}"),
    );
}

fn write(path: &Path, data: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

impl CargoFixture {
    /// Two registry crates packaged by cargo into a local registry, a git dependency, and an
    /// app that depends on all three, locked and vendored by cargo.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let home = root.join("cargo-home");
        let registry = root.join("registry");
        for (name, body) in [
            ("leaf", "pub fn leaf() {}\n"),
            ("twig", "pub fn twig() {}\n"),
        ] {
            let src = root.join(name);
            write(
                &src.join("Cargo.toml"),
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"MIT\"\ndescription = \"fixture\"\n"
                ),
            );
            write(&src.join("src/lib.rs"), body);
            cargo(
                &src,
                &home,
                &[
                    "package",
                    "--offline",
                    "--no-verify",
                    "--allow-dirty",
                    "--quiet",
                ],
            );
            let crate_file = format!("{name}-0.1.0.crate");
            let data = std::fs::read(src.join("target/package").join(&crate_file)).unwrap();
            write(&registry.join(&crate_file), "");
            std::fs::write(registry.join(&crate_file), &data).unwrap();
            let index = registry
                .join("index")
                .join(&name[..2])
                .join(&name[2..4])
                .join(name);
            write(
                &index,
                &format!(
                    "{{\"name\":\"{name}\",\"vers\":\"0.1.0\",\"deps\":[],\"cksum\":\"{}\",\"features\":{{}},\"yanked\":false}}\n",
                    sha256_hex(&data)
                ),
            );
        }
        let gitdep = root.join("gitdep");
        write(
            &gitdep.join("Cargo.toml"),
            "[package]\nname = \"gitdep\"\nversion = \"0.2.0\"\nedition = \"2021\"\n",
        );
        write(&gitdep.join("src/lib.rs"), "pub fn g() {}\n");
        git(&gitdep, &["init", "-q"]);
        git(&gitdep, &["add", "-A"]);
        git(&gitdep, &["commit", "-q", "-m", "gitdep"]);

        let app = root.join("app");
        write(
            &app.join("Cargo.toml"),
            &format!(
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nleaf = \"0.1\"\ngitdep = {{ git = \"file://{}\" }}\n\n[dev-dependencies]\ntwig = \"0.1\"\n",
                gitdep.display()
            ),
        );
        write(
            &app.join("src/main.rs"),
            "fn main() { leaf::leaf(); twig::twig(); gitdep::g(); }\n",
        );
        write(
            &app.join(".cargo/config.toml"),
            &format!(
                "[source.crates-io]\nreplace-with = \"local\"\n\n[source.local]\nlocal-registry = \"{}\"\n",
                registry.display()
            ),
        );
        cargo(&app, &home, &["generate-lockfile", "--quiet"]);
        cargo(
            &app,
            &home,
            &[
                "vendor",
                "--respect-source-config",
                "--locked",
                "--quiet",
                "vendor",
            ],
        );
        Self {
            _dir: dir,
            root,
            app,
            registry,
            gitdep,
        }
    }

    fn verify(&self, extra: &[&str]) -> std::process::Output {
        self.verify_into(&self.root.join("store"), extra)
    }

    /// `kata-repro verify cargo` of the app's Cargo.lock, into `store`.
    fn verify_into(&self, store: &Path, extra: &[&str]) -> std::process::Output {
        verify_lock(&self.app.join("Cargo.lock"))
            .arg("--store")
            .arg(store)
            .args(extra)
            .output()
            .unwrap()
    }

    fn vendor(&self) -> PathBuf {
        self.app.join("vendor")
    }
}

/// `kata-repro verify cargo` of the Cargo.lock at `lock`.
fn verify_lock(lock: &Path) -> Command {
    let mut cmd = kata_repro();
    cmd.args(["verify", "cargo", "--lock"]).arg(lock);
    cmd
}

#[test]
fn a_cargo_vendor_tree_verifies_and_each_kind_of_tampering_fails() {
    let f = CargoFixture::new();
    let vendor = f.vendor();
    let vendor_arg = vendor.to_str().unwrap();
    // Without the .crate archives, the tree can only agree with its own checksum files: that
    // is `self-consistent`, not `ok`, and fails under --strict.
    let out = f.verify(&["--vendor", vendor_arg, "--json"]);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["summary"]["cargo"]["ok"], 0, "{v}");
    assert_eq!(v["summary"]["cargo"]["self_consistent"], 3, "{v}");
    assert_eq!(v["findings"][1]["outcome"], "self-consistent", "{v}");
    let all = exited(&f.verify(&["--vendor", vendor_arg, "--strict"]), 1);
    assert!(all.contains("self-consistent cargo leaf@0.1.0"), "{all}");
    let registry = f.registry.to_str().unwrap();
    let with_crates = [
        "--vendor",
        vendor_arg,
        "--registry-cache",
        registry,
        "--json",
    ];
    let out = f.verify(&with_crates);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["summary"]["cargo"]["ok"], 2, "{v}");
    assert_eq!(
        v["summary"]["cargo"]["self_consistent"], 1,
        "the git package: {v}"
    );

    // A file deleted from a vendored crate and from its checksum file: the .crate tells.
    let leaf_sums = vendor.join("leaf/.cargo-checksum.json");
    let leaf_sums_text = std::fs::read_to_string(&leaf_sums).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&leaf_sums_text).unwrap();
    let toml_orig = vendor.join("leaf/Cargo.toml.orig");
    let toml_orig_text = std::fs::read(&toml_orig).unwrap();
    json["files"]
        .as_object_mut()
        .unwrap()
        .remove("Cargo.toml.orig");
    std::fs::write(&leaf_sums, json.to_string()).unwrap();
    std::fs::remove_file(&toml_orig).unwrap();
    let all = exited(&f.verify(&with_crates[..4]), 1);
    assert!(
        all.contains("Cargo.toml.orig of the verified .crate is not vendored"),
        "{all}"
    );
    std::fs::write(&toml_orig, toml_orig_text).unwrap();
    std::fs::write(&leaf_sums, leaf_sums_text).unwrap();

    // A vendored file edited.
    let lib = vendor.join("leaf/src/lib.rs");
    std::fs::write(&lib, "pub fn leaf() { /* edited */ }\n").unwrap();
    let all = exited(&f.verify(&["--vendor", vendor_arg]), 1);
    assert!(
        all.contains("failed cargo leaf@0.1.0") && all.contains("src/lib.rs was edited"),
        "{all}"
    );
    std::fs::write(&lib, "pub fn leaf() {}\n").unwrap();

    // A vendored file edited and its checksum file rewritten to match: only the verified
    // .crate (here from a registry cache) can tell.
    std::fs::write(&lib, "pub fn leaf() { /* rewritten */ }\n").unwrap();
    let sums_path = vendor.join("leaf/.cargo-checksum.json");
    let sums = std::fs::read_to_string(&sums_path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&sums).unwrap();
    json["files"]["src/lib.rs"] = sha256_hex(b"pub fn leaf() { /* rewritten */ }\n").into();
    std::fs::write(&sums_path, json.to_string()).unwrap();
    assert_eq!(
        f.verify(&["--vendor", vendor_arg]).status.code(),
        Some(0),
        "self-consistent without the archive"
    );
    assert_eq!(
        f.verify(&["--vendor", vendor_arg, "--strict"])
            .status
            .code(),
        Some(1),
        "self-consistent is no pass under --strict"
    );
    let all = exited(
        &f.verify(&["--vendor", vendor_arg, "--registry-cache", registry]),
        1,
    );
    assert!(
        all.contains("src/lib.rs differs from the verified .crate"),
        "{all}"
    );
    std::fs::write(&lib, "pub fn leaf() {}\n").unwrap();
    std::fs::write(&sums_path, sums).unwrap();
    assert_eq!(
        f.verify(&["--vendor", vendor_arg, "--registry-cache", registry])
            .status
            .code(),
        Some(0)
    );

    // An extra file in a vendored crate.
    std::fs::write(vendor.join("twig/src/backdoor.rs"), "pub fn b() {}\n").unwrap();
    let all = exited(&f.verify(&["--vendor", vendor_arg]), 1);
    assert!(
        all.contains("src/backdoor.rs is present but not listed in .cargo-checksum.json"),
        "{all}"
    );
    std::fs::remove_file(vendor.join("twig/src/backdoor.rs")).unwrap();

    // A git package's file edited: its checksum file is all there is to check against.
    std::fs::write(vendor.join("gitdep/src/lib.rs"), "pub fn g() { loop {} }\n").unwrap();
    let all = exited(&f.verify(&["--vendor", vendor_arg]), 1);
    assert!(all.contains("failed cargo gitdep@0.2.0"), "{all}");
    std::fs::write(vendor.join("gitdep/src/lib.rs"), "pub fn g() {}\n").unwrap();

    // A Cargo.lock checksum edited: the vendored package no longer matches it, and the line is named.
    let lock_path = f.app.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let twig_sum = sha256_hex(&std::fs::read(f.registry.join("twig-0.1.0.crate")).unwrap());
    let edited = lock.replace(&twig_sum, &"0".repeat(64));
    std::fs::write(&lock_path, &edited).unwrap();
    let line = edited
        .lines()
        .position(|l| l.contains(&"0".repeat(64)))
        .unwrap()
        + 1;
    let all = exited(&f.verify(&["--vendor", vendor_arg]), 1);
    assert!(
        all.contains(&format!("Cargo.lock:{line}]")) && all.contains(&twig_sum),
        "{all}"
    );
    std::fs::write(&lock_path, &lock).unwrap();

    // A vendored crate removed.
    std::fs::remove_dir_all(vendor.join("leaf")).unwrap();
    let all = exited(&f.verify(&["--vendor", vendor_arg]), 1);
    assert!(
        all.contains("missing cargo leaf@0.1.0") && all.contains("locked, but not vendored"),
        "{all}"
    );
}

#[test]
fn crate_archives_verify_against_cargo_lock_and_a_flipped_byte_fails() {
    let f = CargoFixture::new();
    let registry = f.registry.to_str().unwrap();
    let out = f.verify(&["--registry-cache", registry, "--json"]);
    // The crates verify; the git package is held to the host policy like any upstream, and a
    // file:// upstream is not https.
    assert_code(&out, 1);
    let v = json(&out);
    assert_eq!(v["summary"]["cargo"]["ok"], 2, "{v}");
    let git = items(&v["findings"])
        .find(|f| f["name"] == "gitdep@0.2.0")
        .unwrap();
    assert_eq!(git["outcome"], "failed");
    assert!(
        string(&git["message"]).contains("does not use https"),
        "{git}"
    );

    // A flipped byte in one .crate: reported with both hashes, and kept out of the store.
    let crate_path = f.registry.join("leaf-0.1.0.crate");
    let good = std::fs::read(&crate_path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&crate_path, &bad).unwrap();
    let store = f.root.join("store2");
    let all = exited(&f.verify_into(&store, &["--registry-cache", registry]), 1);
    assert!(
        all.contains("failed cargo leaf@0.1.0") && all.contains("sha256 mismatch"),
        "{all}"
    );
    assert!(
        all.contains(&sha256_hex(&good)) && all.contains(&sha256_hex(&bad)),
        "{all}"
    );
    assert!(
        !store
            .join("objects/sha256")
            .join(sha256_hex(&good))
            .exists()
    );

    // Absent from every cache, with downloads off: missing.
    std::fs::remove_file(&crate_path).unwrap();
    let all = exited(
        &f.verify_into(&store, &["--offline", "--registry-cache", registry]),
        1,
    );
    assert!(all.contains("missing cargo leaf@0.1.0"), "{all}");
}

#[test]
fn bad_cargo_input_exits_2() {
    let out = verify_lock(Path::new("/nonexistent/Cargo.lock"))
        .output()
        .unwrap();
    assert_code(&out, 2);
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("Cargo.lock");
    std::fs::write(&lock, "version = 4\n[[package]]\nname = \"a\"\nversion = \"1\"\nchecksum = \"xyz\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n").unwrap();
    let all = exited(&verify_lock(&lock).output().unwrap(), 2);
    assert!(
        all.contains("Cargo.lock:5: package a@1: checksum `xyz` is not a sha256"),
        "{all}"
    );
    // An empty Cargo.lock, and one that locks a package twice, are bad input too.
    let pkg = format!(
        "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n\n",
        "ab".repeat(32)
    );
    for (text_in, want) in [
        (String::new(), "locks no package".to_owned()),
        (
            format!("version = 4\n\n{pkg}{pkg}"),
            "Cargo.lock:10: package a@1.0.0 from registry+https://github.com/rust-lang/crates.io-index is locked again (first on line 4)".to_owned(),
        ),
    ] {
        std::fs::write(&lock, text_in).unwrap();
        let all = exited(&verify_lock(&lock).output().unwrap(), 2);
        assert!(all.contains(&want), "{all}");
    }
}

#[test]
fn crates_unpack_exactly_as_cargo_vendor_writes_them() {
    use kata_repro::verify::cargo::offline::unpack_crate;
    let f = CargoFixture::new();
    for name in ["leaf", "twig"] {
        let crate_file = f.registry.join(format!("{name}-0.1.0.crate"));
        let checksum = sha256_hex(&std::fs::read(&crate_file).unwrap())
            .parse()
            .unwrap();
        let ours = f.root.join("ours").join(name);
        unpack_crate(&crate_file, &ours, &checksum).unwrap();
        let theirs = f.vendor().join(name);
        let list = |d: &Path| -> Vec<(String, Vec<u8>)> {
            let mut v: Vec<_> = walkdir::WalkDir::new(d)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .map(|e| {
                    (
                        e.path().strip_prefix(d).unwrap().display().to_string(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            list(&ours),
            list(&theirs),
            "{name}: same files, same bytes, same .cargo-checksum.json"
        );
    }
}

/// A store holding the fixture's verified .crates, and a bare mirror of its git dependency,
/// as an air-gapped build has them.
struct OfflineSetup {
    store: kata_repro::source::store::Store,
    mirrors: kata_repro::source::mirror::Mirrors,
    mirror: PathBuf,
    lock: kata_repro::lock::Loaded<kata_repro::lock::cargo_lock::CargoLock>,
    cargo: String,
}

fn offline_setup(f: &CargoFixture) -> OfflineSetup {
    use kata_repro::lock::cargo_lock::CargoLock;
    use kata_repro::source::download::Location;
    use kata_repro::source::mirror::Mirrors;
    use kata_repro::source::store::Store;

    let store = Store::open(&f.root.join("store"), || {}).unwrap();
    for name in ["leaf", "twig"] {
        let crate_file = f.registry.join(format!("{name}-0.1.0.crate"));
        let checksum = sha256_hex(&std::fs::read(&crate_file).unwrap())
            .parse()
            .unwrap();
        store
            .put(&Location::File(crate_file), &checksum, |_, _| {})
            .unwrap();
    }
    let mirror = f.root.join("gitdep-mirror");
    git(
        &f.root,
        &[
            "clone",
            "-q",
            "--bare",
            f.gitdep.to_str().unwrap(),
            mirror.to_str().unwrap(),
        ],
    );
    let mut mirrors = Mirrors::new();
    mirrors.insert(
        &format!("file://{}", f.gitdep.display()),
        mirror.to_str().unwrap(),
    );
    // The app's own source replacement must not be what makes this work.
    std::fs::remove_file(f.app.join(".cargo/config.toml")).unwrap();
    OfflineSetup {
        store,
        mirrors,
        mirror,
        lock: CargoLock::load(&f.app.join("Cargo.lock")).unwrap(),
        cargo: std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
    }
}

#[test]
fn an_offline_vendor_tree_is_built_from_the_store_and_the_build_is_resolved() {
    use kata_repro::verify::cargo::{offline, resolve};

    let f = CargoFixture::new();
    let OfflineSetup {
        store,
        mirrors,
        lock,
        cargo,
        ..
    } = offline_setup(&f);
    let built = offline::ensure_in_store(&lock, &f.app, &store, &mirrors, &cargo).unwrap();
    assert_eq!(built.crates, 3);
    assert!(built.vendor_dir.join("gitdep-0.2.0/src/lib.rs").is_file());
    // A git package rewritten in the store, with the checksum file cargo wrote beside it, is
    // not used again: the tree is written afresh from the verified inputs.
    let lib = built.vendor_dir.join("gitdep-0.2.0/src/lib.rs");
    std::fs::write(&lib, "pub fn g() { loop {} }\n").unwrap();
    let sums = built.vendor_dir.join("gitdep-0.2.0/.cargo-checksum.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sums).unwrap()).unwrap();
    json["files"]["src/lib.rs"] = sha256_hex(b"pub fn g() { loop {} }\n").into();
    std::fs::write(&sums, json.to_string()).unwrap();
    // A registry crate's file edited to the same size, with the checksum file to match.
    let leaf_lib = built.vendor_dir.join("leaf-0.1.0/src/lib.rs");
    let leaf_text = std::fs::read_to_string(&leaf_lib).unwrap();
    let evil: String = leaf_text
        .chars()
        .map(|c| if c == 'f' { 'g' } else { c })
        .collect();
    assert_ne!(evil, leaf_text);
    std::fs::write(&leaf_lib, &evil).unwrap();
    let leaf_sums = built.vendor_dir.join("leaf-0.1.0/.cargo-checksum.json");
    let mut leaf_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&leaf_sums).unwrap()).unwrap();
    leaf_json["files"]["src/lib.rs"] = sha256_hex(evil.as_bytes()).into();
    std::fs::write(&leaf_sums, leaf_json.to_string()).unwrap();
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let twig_lib = built.vendor_dir.join("twig-0.1.0/src/lib.rs");
    let twig_inode = inode(&twig_lib);
    let again = offline::ensure_in_store(&lock, &f.app, &store, &mirrors, &cargo).unwrap();
    assert_eq!(again.vendor_dir, built.vendor_dir);
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "pub fn g() {}\n");
    assert_eq!(std::fs::read_to_string(&leaf_lib).unwrap(), leaf_text);
    assert_eq!(
        inode(&twig_lib),
        twig_inode,
        "an intact crate is compared, not written again"
    );
    // A stored tree that lacks a file of a verified .crate (as cargo vendor's packaging rules
    // leave out of a directory source) is not reused: it is built again, whole.
    let cargo_toml = built.vendor_dir.join("leaf-0.1.0/Cargo.toml.orig");
    assert!(
        cargo_toml.is_file(),
        "the .crate's Cargo.toml.orig is vendored"
    );
    std::fs::remove_file(&cargo_toml).unwrap();
    let rebuilt = offline::ensure_in_store(&lock, &f.app, &store, &mirrors, &cargo).unwrap();
    assert_eq!(rebuilt.crates, 3);
    assert!(cargo_toml.is_file(), "the tree was built again");

    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let r = resolve::resolve(
        &f.app.join("Cargo.toml"),
        &built.config,
        &target,
        &[],
        &cargo,
    )
    .unwrap();
    assert_eq!(r.root, "app@0.1.0");
    // twig is a dev-dependency: locked, but not needed to build the app.
    assert_eq!(
        r.needed.iter().map(String::as_str).collect::<Vec<_>>(),
        ["app@0.1.0", "gitdep@0.2.0", "leaf@0.1.0"]
    );
}

#[test]
fn a_git_dependency_is_cloned_once_and_a_kept_clone_that_lies_is_not_used() {
    use kata_repro::verify::cargo::offline;

    let f = CargoFixture::new();
    let s = offline_setup(&f);
    let vendor = || offline::ensure_in_store(&s.lock, &f.app, &s.store, &s.mirrors, &s.cargo);
    let lib_of = |v: &offline::OfflineVendor| {
        std::fs::read_to_string(v.vendor_dir.join("gitdep-0.2.0/src/lib.rs")).unwrap()
    };
    let first = vendor().unwrap();
    assert_eq!(lib_of(&first), "pub fn g() {}\n");
    let kept = s.store.cargo_git_db();
    assert!(kept.is_dir(), "cargo's git database is kept in the store");

    // The kept database serves the next run: the mirror is not read.
    let away = f.root.join("mirror-away");
    std::fs::rename(&s.mirror, &away).unwrap();
    let again = vendor().unwrap();
    assert_eq!(lib_of(&again), "pub fn g() {}\n");

    // A kept database whose blob of src/lib.rs was replaced under the same id.
    let blob = git(&away, &["rev-parse", "HEAD:src/lib.rs"]);
    let forge = || {
        let repos: Vec<_> = std::fs::read_dir(&kept).unwrap().flatten().collect();
        assert_eq!(repos.len(), 1, "one git source, one database");
        forge_loose_object(&repos[0].path(), blob.trim(), b"pub fn g() { loop {} }\n");
    };
    forge();
    // Without the mirror, the forged database fails the run rather than being used.
    let err = vendor().expect_err("a forged object must not be vendored");
    assert!(
        matches!(err, offline::OfflineError::CargoVendor { .. }),
        "{err}"
    );
    let lib = again.vendor_dir.join("gitdep-0.2.0/src/lib.rs");
    assert!(
        std::fs::read_to_string(&lib).map_or(true, |t| t == "pub fn g() {}\n"),
        "the forged blob was not vendored"
    );
    // With the mirror back, the forged database is dropped and the run repeated from it.
    std::fs::rename(&away, &s.mirror).unwrap();
    vendor().unwrap();
    forge();
    let recovered = vendor().unwrap();
    assert_eq!(lib_of(&recovered), "pub fn g() {}\n");
}

/// Unpacks `repo`'s packs into loose objects and writes `data` as the blob named `id`.
fn forge_loose_object(repo: &Path, id: &str, data: &[u8]) {
    use std::io::Write;
    let packs = repo.join("objects/pack");
    for entry in std::fs::read_dir(&packs).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pack") {
            let bytes = std::fs::read(&path).unwrap();
            for ext in ["pack", "idx", "rev"] {
                let _ = std::fs::remove_file(path.with_extension(ext));
            }
            let mut child = Command::new("git")
                .args(["unpack-objects", "-q"])
                .current_dir(repo)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&bytes).unwrap();
            assert!(child.wait().unwrap().success());
        }
    }
    let object = repo.join("objects").join(&id[..2]).join(&id[2..]);
    assert!(object.is_file(), "{} was unpacked", object.display());
    std::fs::remove_file(&object).unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(format!("blob {}\0", data.len()).as_bytes())
        .unwrap();
    z.write_all(data).unwrap();
    std::fs::write(&object, z.finish().unwrap()).unwrap();
}

#[test]
fn git_packages_are_judged_by_the_allow_list_that_allow_host_widens() {
    let f = CargoFixture::new();
    // The git package is moved to an https host that only --allow-host allows, with a mirror.
    let lock = f.app.join("Cargo.lock");
    let text_of = std::fs::read_to_string(&lock).unwrap();
    let from = format!("git+file://{}", f.gitdep.display());
    assert!(text_of.contains(&from), "{text_of}");
    std::fs::write(
        &lock,
        text_of.replace(&from, "git+https://git.example.org/gitdep"),
    )
    .unwrap();
    let registry = f.registry.to_str().unwrap();
    let mirror = format!("https://git.example.org/gitdep={}", f.gitdep.display());
    let gitdep_outcome = |extra: &[&str]| {
        let mut args = vec!["--registry-cache", registry, "--mirror", &mirror, "--json"];
        args.extend_from_slice(extra);
        let out = f.verify(&args);
        let git = items(&json(&out)["findings"])
            .find(|f| f["name"] == "gitdep@0.2.0")
            .unwrap()
            .clone();
        (out, git)
    };
    let (out, git) = gitdep_outcome(&[]);
    assert_code(&out, 1);
    assert!(
        git["message"].as_str().unwrap().contains("git.example.org"),
        "{git}"
    );
    let (out, git) = gitdep_outcome(&["--allow-host", "git.example.org"]);
    assert_eq!(git["outcome"], "ok", "{git}\n{}", text(&out));
    let all = exited(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("git.example.org (--allow-host)"),
        "{all}"
    );
}
