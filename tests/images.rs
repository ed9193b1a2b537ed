//! The rootfs image (ext4, dm-verity, disk, DAX header) and the initrd, built from a fixture
//! Debian archive with the shipped recipes, twice, from different paths at different times;
//! and what happens with packages that do not match their pins.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::debian::{kata_like_packages, write_archive};
use common::{Fixture, kata_repro, sha256_hex, text};

const ARCHIVE: &str = "https://deb.example.org/debian";

/// An agent that is only a script: the image steps care that it is there, not what it is.
const AGENT: &str = r#"
schema = 1
component = "agent"
description = "a stand-in agent"
host_tools = ["sh"]

[arch.x86_64]

[[steps]]
name = "write"
argv = ["sh", "-c", "printf '#!/bin/sh\\necho agent\\n' > ${out}/kata-agent"]

[[outputs]]
path = "kata-agent"
mode = 0o755
"#;

struct Images {
    fixture: Fixture,
    recipes: PathBuf,
    packages: Vec<(&'static str, PathBuf)>,
}

impl Images {
    fn new() -> Self {
        let fixture = Fixture::new();
        let root = fixture.root().to_owned();
        let archive = root.join("debian");
        let packages = write_archive(&archive, &kata_like_packages());
        let mut config = std::fs::read_to_string(&fixture.config).unwrap();
        config.push_str(&format!("\"{ARCHIVE}\" = \"{}\"\n", archive.display()));
        std::fs::write(&fixture.config, config).unwrap();
        let out = fixture.lock(&[
            "--kernel-sha256",
            &fixture.kernel_sha256.clone(),
            "--rootfs-archive",
            ARCHIVE,
            "--rootfs-suite",
            "stable",
            "--rootfs-keyring",
            "none",
            "--rootfs-package",
            "chrony",
            "--rootfs-package",
            "init",
            "--rootfs-arch",
            "x86_64",
            "-o",
            fixture.lockfile.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "lock: {}", text(&out));
        let recipes = root.join("recipes");
        std::fs::create_dir_all(&recipes).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        for r in ["rootfs.toml", "initrd.toml"] {
            std::fs::copy(shipped.join(r), recipes.join(r)).unwrap();
        }
        std::fs::write(recipes.join("agent.toml"), AGENT).unwrap();
        Images {
            fixture,
            recipes,
            packages,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.fixture.root().join(rel)
    }

    fn build(&self, store: &str, out: &str, extra: &[&str], umask: &str) -> Output {
        let bin = env!("CARGO_BIN_EXE_kata-repro");
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(bin)
            .args([
                "--config",
                self.fixture.config.to_str().unwrap(),
                "build",
                "--lockfile",
            ])
            .arg(&self.fixture.lockfile)
            .arg("--recipes")
            .arg(&self.recipes)
            .arg("--store")
            .arg(self.path(store))
            .arg("--out")
            .arg(self.path(out))
            .args(extra);
        cmd.output().unwrap()
    }

    fn package(&self, name: &str) -> &Path {
        &self.packages.iter().find(|(n, _)| *n == name).unwrap().1
    }
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// (start, sectors) of the DOS partitions in the MBR at `offset`.
fn partitions(image: &Path, offset: u64) -> Vec<(u64, u64)> {
    let mbr = read_at(image, offset, 512);
    assert_eq!(&mbr[510..], &[0x55, 0xaa], "an MBR at {offset}");
    (0..4)
        .map(|i| &mbr[446 + 16 * i..446 + 16 * (i + 1)])
        .filter(|e| e[4] != 0)
        .map(|e| {
            let le = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().unwrap()));
            (le(&e[8..12]), le(&e[12..16]))
        })
        .collect()
}

#[test]
fn rootfs_image_root_hash_and_initrd_are_identical_across_paths_times_and_umasks() {
    let images = Images::new();
    let first = images.build("store", "out1", &["--component", "rootfs,initrd"], "022");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // Another time (the filesystem records seconds), another scratch path, another umask,
    // every step run again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let work = images.path("elsewhere/deeper");
    let second = images.build(
        "store",
        "out2",
        &[
            "--component",
            "rootfs,initrd",
            "--no-cache",
            "--work-dir",
            work.to_str().unwrap(),
        ],
        "077",
    );
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));

    let diff = kata_repro()
        .arg("diff")
        .arg(images.path("out1"))
        .arg(images.path("out2"))
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));

    // The SBOMs: the same bytes, valid, every package with its pin and its Depends.
    let (out1, out2) = (images.path("out1"), images.path("out2"));
    for f in [
        "rootfs.cdx.json",
        "initrd.cdx.json",
        "agent.cdx.json",
        "kata.cdx.json",
        "provenance.intoto.json",
    ] {
        assert_eq!(
            std::fs::read(out1.join(f)).unwrap(),
            std::fs::read(out2.join(f)).unwrap(),
            "{f}"
        );
    }
    let checked =
        common::cyclonedx_validate(&[out1.join("rootfs.cdx.json"), out1.join("initrd.cdx.json")]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    let bom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("rootfs.cdx.json")).unwrap()).unwrap();
    let debs: Vec<&serde_json::Value> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["purl"].as_str().unwrap().starts_with("pkg:deb/debian/"))
        .collect();
    let lock = std::fs::read_to_string(&images.fixture.lockfile).unwrap();
    assert_eq!(debs.len(), lock.matches("[[rootfs.packages]]").count());
    let libc = debs.iter().find(|c| c["name"] == "libc6").unwrap();
    assert_eq!(libc["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        libc["licenses"][0]["license"]["name"], "LGPL-2.1+",
        "from its DEP-5 copyright file"
    );
    let base_passwd = debs.iter().find(|c| c["name"] == "base-passwd").unwrap();
    let deps = bom["dependencies"].as_array().unwrap();
    let of =
        |r: &serde_json::Value| deps.iter().find(|d| d["ref"] == *r).unwrap()["dependsOn"].clone();
    assert_eq!(
        of(&base_passwd["bom-ref"]),
        serde_json::json!([libc["bom-ref"]])
    );
    // The image holds the agent: its component is in the rootfs BOM, and depended on.
    assert!(
        of(&serde_json::json!("kata:rootfs"))
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("kata:agent"))
    );

    let dir = images.path("out1/x86_64/rootfs");
    let image = dir.join("kata-containers.img");
    let root_hash = std::fs::read_to_string(dir.join("root_hash.txt")).unwrap();
    // Kata's format: one line of key=value pairs.
    let fields: Vec<(&str, &str)> = root_hash
        .trim_end()
        .split(',')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "root_hash",
            "salt",
            "data_blocks",
            "data_block_size",
            "hash_block_size"
        ]
    );
    let get = |k: &str| fields.iter().find(|(f, _)| *f == k).unwrap().1;

    // The image: Kata's DAX header (MBR #1 and the info block) in the first 2 MiB, then the
    // disk (MBR #2, the filesystem, the hash tree), a multiple of 128 MiB in all.
    let size = std::fs::metadata(&image).unwrap().len();
    assert_eq!(size % (128 << 20), 0, "size {size}");
    assert_eq!(read_at(&image, 4096, 15), b"NVDIMM_PFN_INFO");
    let outer = partitions(&image, 0);
    let disk = 2 << 20;
    let inner = partitions(&image, disk);
    assert_eq!(inner.len(), 2);
    assert_eq!(
        outer[0].0 * 512,
        disk + inner[0].0 * 512,
        "MBR #1 points at the same data"
    );
    let fs_at = disk + inner[0].0 * 512;
    assert_eq!(
        read_at(&image, fs_at + 1024 + 56, 2),
        [0x53, 0xef],
        "ext4 magic"
    );

    // veritysetup, independently, checks the hash tree and the root hash against the data.
    let data_bytes: u64 = get("data_blocks").parse::<u64>().unwrap() * 4096;
    let tmp = tempfile::tempdir().unwrap();
    let extract = |name: &str, at: u64, len: u64| {
        let p = tmp.path().join(name);
        let bytes = read_at(&image, at, len as usize);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let data = extract("data", fs_at, data_bytes);
    let hash_at = disk + inner[1].0 * 512;
    let hash = extract("hash", hash_at, inner[1].1 * 512);
    let verify = std::process::Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--hash=sha256"])
        .arg(format!("--salt={}", get("salt")))
        .arg(&data)
        .arg(&hash)
        .arg(get("root_hash"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "veritysetup verify: {}",
        text(&verify)
    );

    // The manifest says what was unpacked, and the initrd is a gzip'd newc archive with the
    // agent as init.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(images.path("out1/manifest.json")).unwrap()).unwrap();
    let notes = manifest["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rootfs")
        .unwrap()["notes"]
        .to_string();
    assert!(notes.contains("7 packages unpacked"), "{notes}");
    let initrd =
        std::fs::read(images.path("out1/x86_64/initrd/kata-containers-initrd.img")).unwrap();
    let mut cpio = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&initrd[..]), &mut cpio).unwrap();
    assert!(cpio.starts_with(b"070701"));
    let body = String::from_utf8_lossy(&cpio);
    assert!(
        body.contains("usr/sbin/init") && body.contains("echo agent"),
        "agent as init"
    );
    assert!(!body.contains("usr/share/doc"), "documentation is left out");
}

/// Runs a build expected to fail on the rootfs packages, and checks nothing was written.
fn fails_on_packages(images: &Images, store: &str, want: &[&str]) {
    let out = images.build(store, "bad-out", &["--component", "rootfs"], "022");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for w in want {
        assert!(all.contains(w), "want `{w}` in:\n{all}");
    }
    assert!(!images.path("bad-out").exists(), "no output directory");
}

#[test]
fn packages_that_do_not_match_their_pins_are_refused_with_nothing_written() {
    let images = Images::new();
    let lockfile = std::fs::read_to_string(&images.fixture.lockfile).unwrap();

    // A package whose bytes differ from the lock.
    let chrony = images.package("chrony").to_owned();
    let good = std::fs::read(&chrony).unwrap();
    let mut other = good.clone();
    other.extend_from_slice(b"tampered");
    std::fs::write(&chrony, &other).unwrap();
    fails_on_packages(&images, "store-a", &["chrony", "sha256"]);
    std::fs::write(&chrony, &good).unwrap();

    // A package the archive no longer has.
    let passwd = images.package("passwd").to_owned();
    let kept = std::fs::read(&passwd).unwrap();
    std::fs::remove_file(&passwd).unwrap();
    fails_on_packages(&images, "store-b", &["passwd", "missing"]);
    std::fs::write(&passwd, &kept).unwrap();

    // A corrupt .deb, pinned as it is: it matches its sha256 but is no package.
    let corrupt = b"!<arch>\nthis is not a Debian package".to_vec();
    let init = images.package("init").to_owned();
    let pinned = sha256_hex(&std::fs::read(&init).unwrap());
    std::fs::write(&init, &corrupt).unwrap();
    std::fs::write(
        &images.fixture.lockfile,
        lockfile.replace(&pinned, &sha256_hex(&corrupt)),
    )
    .unwrap();
    fails_on_packages(&images, "store-c", &["init", "not a Debian package"]);
}

#[test]
fn lock_checks_the_archive_signature_and_names_missing_packages() {
    let images = Images::new();
    let lock = |extra: &[&str]| {
        let mut args = vec![
            "--kernel-sha256",
            &images.fixture.kernel_sha256,
            "--rootfs-archive",
            ARCHIVE,
            "--rootfs-suite",
            "stable",
        ];
        args.extend_from_slice(extra);
        images.fixture.lock(&args)
    };
    // The fixture's InRelease is not signed: against a real keyring it is refused.
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    if Path::new(keyring).is_file() {
        let out = lock(&["--rootfs-keyring", keyring, "--rootfs-package", "chrony"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("signature did not verify"),
            "{}",
            text(&out)
        );
    }
    let out = lock(&[
        "--rootfs-keyring",
        "none",
        "--rootfs-package",
        "no-such-package",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`no-such-package` (asked for) is not in stable/main for amd64"),
        "{}",
        text(&out)
    );
    // The pinned set: the required packages and chrony's dependencies, each with its target.
    let lockfile = std::fs::read_to_string(&images.fixture.lockfile).unwrap();
    let names: Vec<&str> = lockfile
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    for want in [
        "base-files",
        "base-passwd",
        "chrony",
        "init",
        "libc6",
        "passwd",
        "systemd-sysv",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(lockfile.contains("target = \"x86_64\""));
    assert!(
        lockfile.contains("\"deb.example.org\""),
        "the archive's host is allowed"
    );
}
