//! The rootfs image (ext4, dm-verity, disk, DAX header) and the initrd, built from a fixture
//! Debian archive with the shipped recipes, twice, from different paths at different times;
//! and what happens with packages that do not match their pins.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::debian::{ARCHIVE, kata_like_packages, map_archives, rootfs_lock_args, write_archive};
use common::project::Project;
use common::{
    Fixture, assert_code, exited, items, json, kata_repro, one_item, sha256_hex, string, text,
};

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

/// `lock` of the fixture release, its kernel pinned, with its rootfs from the fixture archive's
/// stable suite, and `extra`.
fn lock_with_archive(fixture: &Fixture, extra: &[&str]) -> Output {
    let mut args = vec!["--rootfs-archive", ARCHIVE, "--rootfs-suite", "stable"];
    args.extend_from_slice(extra);
    fixture.lock_pinned(&args)
}

struct Images {
    project: Project,
    packages: Vec<(&'static str, PathBuf)>,
}

impl Images {
    fn new() -> Self {
        let fixture = Fixture::new();
        let archive = fixture.root().join("debian");
        let packages = write_archive(&archive, &kata_like_packages());
        map_archives(&fixture.config, &[(ARCHIVE, &archive)]);
        let out = fixture.lock_pinned(&rootfs_lock_args(
            "stable",
            &["chrony", "init"],
            fixture.lockfile.to_str().unwrap(),
        ));
        assert_eq!(out.status.code(), Some(0), "lock: {}", text(&out));
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let shipped_recipe =
            |name: &str| std::fs::read_to_string(shipped.join(format!("{name}.toml"))).unwrap();
        let project = Project::with(
            fixture,
            &[
                ("rootfs", &shipped_recipe("rootfs")),
                ("initrd", &shipped_recipe("initrd")),
                ("agent", AGENT),
            ],
        );
        Images { project, packages }
    }

    fn fixture(&self) -> &Fixture {
        &self.project.fixture
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.project.path(rel)
    }

    fn build(&self, store: &str, out: &str, extra: &[&str], umask: &str) -> Output {
        self.project
            .build_with_umask(store, out, extra, Some(umask))
    }

    /// Replaces `from` by `to` in the test's copy of recipe `name`, which must hold it.
    fn edit_recipe(&self, name: &str, from: &str, to: &str) {
        let path = self.project.recipes.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{name} holds no `{from}`");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    /// `kata-repro check` of the images, the second build varying `variations`; both builds are
    /// kept in `keep`.
    fn check(&self, variations: &str, keep: &str) -> (Output, serde_json::Value) {
        let out = self
            .project
            .command("check", "store")
            .arg("--json")
            .args([
                "--component",
                "rootfs,initrd",
                "--variations",
                variations,
                "--keep",
            ])
            .arg(self.path(keep))
            .output()
            .unwrap();
        let v = json(&out);
        (out, v)
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
    assert_code(&first, 0);
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
    assert_code(&second, 0);

    let diff = kata_repro()
        .arg("diff")
        .arg(images.path("out1"))
        .arg(images.path("out2"))
        .output()
        .unwrap();
    assert_code(&diff, 0);

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
    assert_code(&checked, 0);
    let bom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("rootfs.cdx.json")).unwrap()).unwrap();
    let debs: Vec<&serde_json::Value> = items(&bom["components"])
        .filter(|c| c["purl"].as_str().unwrap().starts_with("pkg:deb/debian/"))
        .collect();
    let lock = std::fs::read_to_string(&images.fixture().lockfile).unwrap();
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
    let notes = items(&manifest["components"])
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
    let all = exited(
        &images.build(store, "bad-out", &["--component", "rootfs"], "022"),
        1,
    );
    for w in want {
        assert!(all.contains(w), "want `{w}` in:\n{all}");
    }
    assert!(!images.path("bad-out").exists(), "no output directory");
}

#[test]
fn packages_that_do_not_match_their_pins_are_refused_with_nothing_written() {
    let images = Images::new();
    let lockfile = std::fs::read_to_string(&images.fixture().lockfile).unwrap();

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
        &images.fixture().lockfile,
        lockfile.replace(&pinned, &sha256_hex(&corrupt)),
    )
    .unwrap();
    fails_on_packages(&images, "store-c", &["init", "not a Debian package"]);
}

#[test]
fn lock_checks_the_archive_signature_and_names_missing_packages() {
    let images = Images::new();
    let lock = |extra: &[&str]| lock_with_archive(images.fixture(), extra);
    // The fixture's InRelease is not signed: against a real keyring it is refused.
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    if Path::new(keyring).is_file() {
        let all = exited(
            &lock(&["--rootfs-keyring", keyring, "--rootfs-package", "chrony"]),
            1,
        );
        assert!(all.contains("signature did not verify"), "{all}");
    }
    let all = exited(
        &lock(&[
            "--rootfs-keyring",
            "none",
            "--rootfs-package",
            "no-such-package",
        ]),
        2,
    );
    assert!(
        all.contains("`no-such-package` (asked for) is not in stable/main for amd64"),
        "{all}"
    );
    // The pinned set: the required packages and chrony's dependencies, each with its target.
    let lockfile = std::fs::read_to_string(&images.fixture().lockfile).unwrap();
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

/// Every inode of the ext4 filesystem at `offset` of `image`, as debugfs reads it:
/// path → (mode, uid, gid). debugfs, not kata-repro, so that it is an independent reading.
fn ext4_inodes(image: &Path, offset: u64) -> std::collections::BTreeMap<String, (u32, u32, u32)> {
    let device = format!("{}?offset={offset}", image.display());
    let mut out = std::collections::BTreeMap::new();
    let mut level = vec!["/".to_owned()];
    while !level.is_empty() {
        let script = level
            .iter()
            .map(|d| format!("ls -p \"{d}\"\n"))
            .collect::<String>();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), script).unwrap();
        let o = std::process::Command::new("debugfs")
            .arg("-f")
            .arg(file.path())
            .arg(&device)
            .output()
            .unwrap();
        assert!(o.status.success(), "debugfs: {}", text(&o));
        let mut next = Vec::new();
        let mut dir = String::new();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(d) = line.strip_prefix("debugfs: ls -p ") {
                dir = d.trim_matches('"').trim_end_matches('/').to_owned();
                continue;
            }
            // /inode/mode/uid/gid/name/size/
            let f: Vec<&str> = line.split('/').collect();
            if f.len() < 7 || f[5] == "." || f[5] == ".." || f[5].is_empty() {
                continue;
            }
            let mode = u32::from_str_radix(f[2], 8).unwrap();
            let path = format!("{dir}/{}", f[5]);
            if mode & 0o170000 == 0o040000 {
                next.push(path.clone());
            }
            out.insert(path, (mode, f[3].parse().unwrap(), f[4].parse().unwrap()));
        }
        level = next;
    }
    out
}

/// Where the filesystem of a rootfs image starts: MBR #2, after Kata's 2 MiB DAX header.
fn filesystem_offset(image: &Path) -> u64 {
    let disk = 2 << 20;
    disk + partitions(image, disk)[0].0 * 512
}

/// (name, mode, uid, gid) of every member of a gzip'd newc initrd.
fn initrd_members(initrd: &Path) -> Vec<(String, u32, u32, u32)> {
    let mut data = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(initrd).unwrap()),
        &mut data,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut rest: &[u8] = &data;
    loop {
        let r = cpio::newc::Reader::new(rest).unwrap();
        let e = r.entry();
        if e.is_trailer() {
            break;
        }
        out.push((e.name().to_owned(), e.mode(), e.uid(), e.gid()));
        rest = r.finish().unwrap();
    }
    out
}

fn artifact<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    items(&v["artifacts"])
        .find(|a| a["path"].as_str().unwrap().ends_with(path))
        .unwrap_or_else(|| panic!("no {path} in {v}"))
}

fn blamed(a: &serde_json::Value) -> Vec<&str> {
    items(&a["blame"])
        .map(|b| b["variation"].as_str().unwrap())
        .collect()
}

#[test]
fn rootfs_and_initrd_are_identical_when_user_and_umask_vary_and_every_file_is_roots() {
    let images = Images::new();
    let (out, v) = images.check("user_group,umask", "keep");
    assert_eq!(out.status.code(), Some(0), "{v:#}\n{}", text(&out));
    for name in ["user_group", "umask"] {
        let row = items(&v["variations"])
            .find(|r| r["variation"] == name)
            .unwrap();
        assert_eq!(row["applied"], true, "{row}");
    }
    let artifacts = v["artifacts"].as_array().unwrap();
    assert!(artifacts.len() >= 3, "{v:#}");
    assert!(
        artifacts.iter().all(|a| a["verdict"] == "reproducible"),
        "{v:#}"
    );

    // Read back from what each build wrote: the second ran as uid 1234 under umask 0002.
    for build in ["first", "second"] {
        let dir = images.path(&format!("keep/{build}/x86_64"));
        let image = dir.join("rootfs/kata-containers.img");
        let inodes = ext4_inodes(&image, filesystem_offset(&image));
        assert!(inodes.len() > 50, "{inodes:?}");
        let not_root: Vec<_> = inodes
            .iter()
            .filter(|(_, (_, u, g))| (*u, *g) != (0, 0))
            .collect();
        assert!(
            not_root.is_empty(),
            "{build}: owned by another user: {not_root:?}"
        );
        for (path, mode) in [
            ("/etc/machine-id", 0o100644),
            ("/etc/resolv.conf", 0o100644),
            ("/etc/kata-opa", 0o040755),
            ("/etc/systemd/system/kata-containers.target.wants", 0o040755),
            ("/usr/lib/systemd/system/kata-agent.service", 0o100644),
            ("/usr/bin/kata-agent", 0o100755),
        ] {
            assert_eq!(
                inodes.get(path).map(|i| i.0),
                Some(mode),
                "{build}: {path} {inodes:?}"
            );
        }
        let members = initrd_members(&dir.join("initrd/kata-containers-initrd.img"));
        assert!(members.len() > 10, "{members:?}");
        assert!(
            members.iter().all(|(_, _, u, g)| (*u, *g) == (0, 0)),
            "{members:?}"
        );
        let mode = |name: &str| members.iter().find(|m| m.0 == name).map(|m| m.1);
        assert_eq!(mode("etc/machine-id"), Some(0o100644), "{build}");
        assert_eq!(mode("etc/resolv.conf"), Some(0o100644), "{build}");
        assert_eq!(mode("usr/sbin/init"), Some(0o100755), "{build}");
    }
}

#[test]
fn check_blames_the_user_and_the_umask_where_a_recipe_lets_them_in() {
    let images = Images::new();
    // The recipes as they were: mkfs's owners kept, machine-id made under the step's umask.
    images.edit_recipe(
        "rootfs.toml",
        r#"          printf "sif \"%s\" uid 0\nsif \"%s\" gid 0\n", $0, $0 }'"#,
        "        }'",
    );
    images.edit_recipe("initrd.toml", "umask 022\n", "");
    images.edit_recipe(
        "initrd.toml",
        "install -m 0644 /dev/null etc/machine-id",
        ": > etc/machine-id",
    );
    let (out, v) = images.check("user_group,umask", "keep");
    assert_eq!(out.status.code(), Some(1), "{v:#}\n{}", text(&out));

    let image = artifact(&v, "rootfs/kata-containers.img");
    assert_eq!(image["verdict"], "not-reproducible", "{image:#}");
    assert!(blamed(image).contains(&"user_group"), "{image:#}");
    let evidence = image["blame"].to_string();
    assert!(
        evidence.contains("1234:1234") && evidence.contains("ext4"),
        "{evidence}"
    );
    let details = image["details"].to_string();
    assert!(
        details.contains("dm-verity hash tree over partition 1"),
        "{details}"
    );

    let root_hash = artifact(&v, "rootfs/root_hash.txt");
    assert_eq!(root_hash["verdict"], "not-reproducible");
    let notes = root_hash["notes"].to_string();
    assert!(
        notes.contains("follows from x86_64/rootfs/kata-containers.img"),
        "{notes}"
    );
    assert!(notes.contains("dm-verity root"), "{notes}");
    assert!(blamed(root_hash).contains(&"user_group"), "{root_hash:#}");

    let initrd = artifact(&v, "initrd/kata-containers-initrd.img");
    assert_eq!(initrd["verdict"], "not-reproducible");
    assert_eq!(blamed(initrd), ["umask"], "{initrd:#}");
    let evidence = initrd["blame"][0]["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("etc/machine-id is mode 100600 where the first build has 100644"),
        "{evidence}"
    );
}

#[test]
fn diff_names_the_file_whose_owner_differs_and_what_follows_from_it() {
    let images = Images::new();
    let built = images.build("store", "out", &["--component", "rootfs"], "022");
    assert_code(&built, 0);
    let rootfs = images.path("out/x86_64/rootfs");
    let (a, b) = (images.path("a"), images.path("b"));
    for side in [&a, &b] {
        std::fs::create_dir_all(side.join("config")).unwrap();
        for f in ["kata-containers.img", "root_hash.txt"] {
            std::fs::copy(rootfs.join(f), side.join(f)).unwrap();
        }
    }
    // In B, one file belongs to uid 1234; the hash tree and the root hash are made again over
    // the changed filesystem, as a build would.
    let image = b.join("kata-containers.img");
    let fs_at = filesystem_offset(&image);
    let sif = std::process::Command::new("debugfs")
        .args(["-w", "-R", "sif /etc/machine-id uid 1234"])
        .arg(format!("{}?offset={fs_at}", image.display()))
        .output()
        .unwrap();
    assert!(sif.status.success(), "{}", text(&sif));
    let old = std::fs::read_to_string(a.join("root_hash.txt")).unwrap();
    let field = |text: &str, k: &str| {
        text.trim()
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    let blocks: u64 = field(&old, "data_blocks").parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (data, hash) = (tmp.path().join("data"), tmp.path().join("hash"));
    std::fs::write(&data, read_at(&image, fs_at, (blocks * 4096) as usize)).unwrap();
    let format = std::process::Command::new("veritysetup")
        .args([
            "format",
            "--no-superblock",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
        ])
        .arg(format!("--salt={}", field(&old, "salt")))
        .arg(&data)
        .arg(&hash)
        .output()
        .unwrap();
    assert!(format.status.success(), "{}", text(&format));
    let root = String::from_utf8_lossy(&format.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:").map(|r| r.trim().to_owned()))
        .unwrap();
    let hash_at = 2 * (1 << 20) + partitions(&image, 2 << 20)[1].0 * 512;
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        f.seek(std::io::SeekFrom::Start(hash_at)).unwrap();
        f.write_all(&std::fs::read(&hash).unwrap()).unwrap();
    }
    let new = old.replace(&field(&old, "root_hash"), &root);
    std::fs::write(b.join("root_hash.txt"), &new).unwrap();
    for (side, text) in [(&a, &old), (&b, &new)] {
        let config = format!(
            "[hypervisor.qemu]\nkernel_verity_params = \"{}\"\n",
            text.trim()
        );
        std::fs::write(side.join("config/configuration-qemu.toml"), config).unwrap();
    }

    let out = kata_repro()
        .args(["--json", "diff"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_code(&out, 1);
    let v = json(&out);
    let of = |path: &str| {
        items(&v["differing"])
            .find(|d| d["path"] == path)
            .unwrap_or_else(|| panic!("{v:#}"))
    };
    let img = of("kata-containers.img");
    let member = one_item(&img["details"], |d| d["kind"] == "member");
    assert_eq!(member["member"], "/etc/machine-id");
    assert!(
        string(&member["archive"]).starts_with("partition 1 (ext4"),
        "{img:#}"
    );
    assert_eq!(
        member["change"]["owner"],
        serde_json::json!([[0, 0], [1234, 0]])
    );
    let verity = items(&img["details"])
        .find(|d| d["kind"] == "partition")
        .unwrap_or_else(|| panic!("{img:#}"));
    assert!(
        string(&verity["note"]).contains("dm-verity hash tree over partition 1"),
        "{verity}"
    );
    assert_eq!(
        of("root_hash.txt")["follows"]["artifact"],
        "kata-containers.img"
    );
    assert_eq!(
        of("config/configuration-qemu.toml")["follows"]["artifact"],
        "root_hash.txt"
    );

    // The text names the file and both owners.
    let out = kata_repro().arg("diff").arg(&a).arg(&b).output().unwrap();
    let shown = text(&out);
    assert!(
        shown.contains("member /etc/machine-id: owner 0:0 → 1234:0"),
        "{shown}"
    );
    assert!(
        shown.contains("follows from kata-containers.img"),
        "{shown}"
    );
}
