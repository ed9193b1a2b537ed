//! A small Debian archive for tests: real `.deb` files (ar, control.tar.gz, data.tar.xz), a
//! `Packages` index and an unsigned `InRelease` listing its sha256.

use std::path::{Path, PathBuf};

use super::sha256_hex;

/// The upstream URL fixture archives stand for (its host is allowed in the fixture config).
pub const ARCHIVE: &str = "https://deb.example.org/debian";

/// Maps each `(upstream URL, directory)` in the config at `config` as a mirror, and allows
/// their host, as a user would: a lockfile cannot widen the allow-list.
pub fn map_archives(config: &Path, archives: &[(&str, &Path)]) {
    let mut text = std::fs::read_to_string(config).unwrap();
    for (url, dir) in archives {
        text.push_str(&format!("\"{url}\" = \"{}\"\n", dir.display()));
    }
    text.push_str("\n[policy]\nallowed_hosts = [\"deb.example.org\"]\n");
    std::fs::write(config, text).unwrap();
}

/// `lock` arguments that pin the x86_64 rootfs from [`ARCHIVE`]'s `suite`, unsigned, with
/// `packages` beyond the required set, written to `output`.
pub fn rootfs_lock_args<'a>(suite: &'a str, packages: &[&'a str], output: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "--rootfs-archive",
        ARCHIVE,
        "--rootfs-suite",
        suite,
        "--rootfs-keyring",
        "none",
        "--rootfs-arch",
        "x86_64",
        "-o",
        output,
    ];
    for p in packages {
        args.extend(["--rootfs-package", p]);
    }
    args
}

/// One member of a package's data tree.
pub enum Entry {
    File(&'static [u8], u32),
    Dir,
    Symlink(&'static str),
}

pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    pub priority: &'static str,
    pub depends: &'static str,
    pub files: Vec<(&'static str, Entry)>,
}

/// A package of `priority` that depends on `depends` (empty: on nothing) and holds `files`.
fn package(
    name: &'static str,
    version: &'static str,
    priority: &'static str,
    depends: &'static str,
    files: Vec<(&'static str, Entry)>,
) -> Package {
    Package {
        name,
        version,
        priority,
        depends,
        files,
    }
}

/// The fields that open both `p`'s control file and its stanza in the archive's index.
fn control_fields(p: &Package, arch: &str) -> String {
    let depends = if p.depends.is_empty() {
        String::new()
    } else {
        format!("Depends: {}\n", p.depends)
    };
    format!(
        "Package: {}\nVersion: {}\nArchitecture: {arch}\nPriority: {}\n{depends}",
        p.name, p.version, p.priority
    )
}

fn tar(entries: &[(&str, &Entry)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_path(path).unwrap();
        let data: &[u8] = match entry {
            Entry::File(data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                data
            }
            Entry::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                &[]
            }
            Entry::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                &[]
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A `.deb` of `p` for `arch`.
pub fn deb(p: &Package, arch: &str) -> Vec<u8> {
    let control = format!("{}Description: fixture\n", control_fields(p, arch));
    let control_file = Entry::File(Box::leak(control.into_bytes().into_boxed_slice()), 0o644);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar(&[("./control", &control_file)])).unwrap();
    let control_tar = gz.finish().unwrap();
    let data: Vec<(&str, &Entry)> = p.files.iter().map(|(n, e)| (*n, e)).collect();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    std::io::Write::write_all(&mut xz, &tar(&data)).unwrap();
    let data_tar = xz.finish().unwrap();
    let mut out = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.gz", control_tar),
        ("data.tar.xz", data_tar),
    ] {
        out.append(
            &ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64),
            &bytes[..],
        )
        .unwrap();
    }
    out.into_inner().unwrap()
}

/// Writes the archive under `root` (suite `stable`, codename `bookworm`, component `main`,
/// amd64) and returns the
/// path of each package's file, by name.
pub fn write_archive(root: &Path, packages: &[Package]) -> Vec<(&'static str, PathBuf)> {
    write_suite(root, "stable", "bookworm", packages)
}

/// Writes `packages` as the suite `suite` (with the release file's `Codename: codename`) of
/// the archive under `root`, component `main`, amd64; returns each package file's path.
pub fn write_suite(
    root: &Path,
    suite: &str,
    codename: &str,
    packages: &[Package],
) -> Vec<(&'static str, PathBuf)> {
    let mut index = String::new();
    let mut files = Vec::new();
    for p in packages {
        let bytes = deb(p, "amd64");
        // Debian's pool layout: by source package (here the package itself), under its
        // first letter (`lib` and the next for libraries).
        let prefix = match p.name.strip_prefix("lib") {
            Some(rest) => format!("lib{}", &rest[..1]),
            None => p.name[..1].to_owned(),
        };
        let rel = format!(
            "pool/main/{prefix}/{name}/{name}_{}_amd64.deb",
            p.version,
            name = p.name
        );
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        index.push_str(&format!(
            "{}Filename: {rel}\nSize: {}\nSHA256: {}\n\n",
            control_fields(p, "amd64"),
            bytes.len(),
            sha256_hex(&bytes)
        ));
        files.push((p.name, path));
    }
    let dists = root.join("dists").join(suite);
    std::fs::create_dir_all(dists.join("main/binary-amd64")).unwrap();
    std::fs::write(dists.join("main/binary-amd64/Packages"), &index).unwrap();
    std::fs::write(
        dists.join("InRelease"),
        format!(
            "Origin: Fixture\nSuite: {suite}\nCodename: {codename}\nSHA256:\n {} {} \
             main/binary-amd64/Packages\n",
            sha256_hex(index.as_bytes()),
            index.len()
        ),
    )
    .unwrap();
    files
}

/// What Kata's rootfs needs of a package set, in miniature: merged-/usr paths, a setuid
/// program, an absolute link, base-passwd's masters, chrony's files, systemd's tmp.mount.
pub fn kata_like_packages() -> Vec<Package> {
    use Entry::*;
    vec![
        package("base-files", "12.4", "required", "", vec![
            ("./etc/", Dir),
            ("./etc/os-release", File(b"PRETTY_NAME=\"Fixture\"\n", 0o644)),
            ("./usr/share/doc/base-files/copyright", File(b"free\n", 0o644)),
            ("./var/lib/misc/x", File(b"x\n", 0o644)),
        ]),
        package("base-passwd", "3.6.1", "required", "libc6", vec![
            ("./usr/share/base-passwd/passwd.master", File(b"root:x:0:0:root:/root:/bin/sh\n", 0o644)),
            ("./usr/share/base-passwd/group.master", File(b"root:x:0:\n", 0o644)),
        ]),
        package("libc6", "2.36-9", "optional", "", vec![
            ("./lib/x86_64-linux-gnu/libc.so.6", File(b"\x7fELF libc", 0o755)),
            (
                "./usr/share/doc/libc6/copyright",
                File(
                    b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                      Files: *\nCopyright: 1991-2023 Free Software Foundation\nLicense: LGPL-2.1+\n",
                    0o644,
                ),
            ),
            ("./lib64/ld-linux-x86-64.so.2", Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")),
            ("./usr/bin/sh", File(b"#!shell\n", 0o755)),
        ]),
        package("passwd", "1:4.13", "required", "libc6 (>= 2.34)", vec![
            ("./usr/bin/passwd", File(b"passwd", 0o4755)),
        ]),
        package("chrony", "4.3-2", "optional", "libc6 (>= 2.34), adduser | passwd", vec![
            ("./etc/chrony/chrony.conf", File(b"pool 2.debian.pool.ntp.org iburst\n", 0o644)),
            (
                "./lib/systemd/system/chrony.service",
                File(b"[Unit]\nDescription=chrony\n[Service]\nExecStart=/usr/sbin/chronyd -F 1 -u _chrony\n", 0o644),
            ),
            ("./usr/sbin/chronyd", File(b"chronyd", 0o755)),
        ]),
        package("init", "1.65", "optional", "systemd-sysv | sysvinit-core", vec![]),
        package("systemd-sysv", "252.38", "optional", "libc6", vec![
            ("./usr/share/systemd/tmp.mount", File(b"[Mount]\nWhat=tmpfs\nWhere=/tmp\n", 0o644)),
            ("./usr/lib/systemd/system/dbus.socket", File(b"[Socket]\n", 0o644)),
            ("./usr/lib/systemd/systemd", File(b"systemd", 0o755)),
            ("./sbin/init", Symlink("../lib/systemd/systemd")),
        ]),
    ]
}
