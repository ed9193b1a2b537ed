//! Safe archive extraction: the one place archive member names are checked.
//!
//! A member is written only if its path is relative and has no `..`, `.` or root component.
//! [`untar_gz`] (crates, toolchains) takes regular files and directories only. [`untar_tree`]
//! (kernel sources, Debian packages) also takes symbolic links whose target stays inside the
//! tree, and hard links to members already written; devices and fifos are refused everywhere.
//! Nothing is ever written through a link: a member whose parent is a link is refused.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{archive}: member `{member}` {problem}; the archive was refused")]
    Unsafe {
        archive: PathBuf,
        member: String,
        problem: &'static str,
    },
    #[error("{archive}: {source}")]
    Io { archive: PathBuf, source: io::Error },
}

/// A file that was written, with its path relative to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub path: String,
    pub size: u64,
}

/// `member` as a safe relative path, after removing `strip` leading components.
fn safe_path(archive: &Path, member: &Path, strip: usize) -> Result<Option<PathBuf>, ExtractError> {
    let unsafe_member = |problem| ExtractError::Unsafe {
        archive: archive.to_owned(),
        member: member.display().to_string(),
        problem,
    };
    let mut out = PathBuf::new();
    for (i, c) in member.components().enumerate() {
        match c {
            Component::Normal(part) if i >= strip => out.push(part),
            Component::Normal(_) => {}
            Component::CurDir if i == 0 => {}
            Component::ParentDir => return Err(unsafe_member("climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_member("is an absolute path"));
            }
            Component::CurDir => return Err(unsafe_member("has a `.` component")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Extracts a gzip-compressed tar into `dest` (which must exist), dropping `strip` leading path
/// components, keeping the executable bit of files. Returns the files written.
pub fn untar_gz(archive: &Path, dest: &Path, strip: usize) -> Result<Vec<Extracted>, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let file = std::fs::File::open(archive).map_err(io_err)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut written = Vec::new();
    for entry in tar.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let member = entry.path().map_err(io_err)?.into_owned();
        let kind = entry.header().entry_type();
        let Some(rel) = safe_path(archive, &member, strip)? else {
            continue;
        };
        let target = dest.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(io_err)?;
            continue;
        }
        if !kind.is_file() {
            return Err(ExtractError::Unsafe {
                archive: archive.to_owned(),
                member: member.display().to_string(),
                problem: "is not a regular file or directory (links and devices are refused)",
            });
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(io_err)?;
        write_new(&target, &data, mode & 0o111 != 0).map_err(io_err)?;
        written.push(Extracted {
            path: rel.to_string_lossy().replace('\\', "/"),
            size: data.len() as u64,
        });
    }
    Ok(written)
}

/// How [`untar_tree`] treats symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Relative targets that stay inside the tree; absolute targets are refused (a source tree).
    Inside,
    /// As `Inside`, and absolute targets too: they name a path of the tree itself once it is a
    /// guest's root filesystem (`/usr/bin/awk -> /etc/alternatives/awk`).
    GuestRoot,
}

/// Options for [`untar_tree`].
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    /// Leading path components dropped from every member.
    pub strip: usize,
    pub links: Links,
    /// Keep setuid, setgid and sticky bits (a root filesystem); otherwise only `rwx` bits.
    pub special_bits: bool,
    /// Rewrite a member's (stripped) path before it is checked and written: for example the
    /// merged-/usr layout, where `bin/ls` lands in `usr/bin/ls`.
    pub rewrite: Option<fn(PathBuf) -> PathBuf>,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            strip: 0,
            links: Links::Inside,
            special_bits: false,
            rewrite: None,
        }
    }
}

/// What [`untar_tree`] wrote: regular files, directories, links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
}

/// Opens `reader` through whichever decompressor its first bytes name: gzip, xz, zstd, or
/// none.
pub fn decompressed<'a>(reader: impl io::BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = reader;
    let head = reader.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

/// The lexical resolution of link `target`, written at `link` (relative to the tree), as a path
/// relative to the tree; `None` when it climbs above the tree's root.
fn resolve_link(link: &Path, target: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    let base: Vec<&std::ffi::OsStr> = if target.is_absolute() {
        Vec::new()
    } else {
        link.parent()
            .map(|p| {
                p.components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    out.extend(base);
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out.iter().collect())
}

/// Extracts a tar stream (compressed or not, see [`decompressed`]) into `dest`, which must
/// exist. Directories that exist already are kept; a file or link that exists is replaced
/// (never followed). `archive` names the archive in errors.
pub fn untar_tree(
    archive: &Path,
    reader: impl Read,
    dest: &Path,
    options: &TreeOptions,
) -> Result<TreeStats, ExtractError> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let mut tar = tar::Archive::new(reader);
    let mut stats = TreeStats::default();
    // Directories of the tree known to be real directories (not links).
    let mut real_dirs: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    real_dirs.insert(PathBuf::new());
    for entry in tar.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let member = entry.path().map_err(io_err)?.into_owned();
        let refuse = |problem: &'static str| ExtractError::Unsafe {
            archive: archive.to_owned(),
            member: member.display().to_string(),
            problem,
        };
        let kind = entry.header().entry_type();
        let Some(mut rel) = safe_path(archive, &member, options.strip)? else {
            continue;
        };
        if let Some(rewrite) = options.rewrite {
            rel = rewrite(rel);
        }
        // Every parent must be a real directory of the tree: create it, or check it.
        let mut parent = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            parent.push(c);
            if real_dirs.contains(&parent) {
                continue;
            }
            let p = dest.join(&parent);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse("would be written through a symbolic link"));
                }
                Ok(_) => return Err(refuse("has a parent that is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A directory the archive does not list: 0755, never what the umask leaves.
                    std::fs::create_dir(&p).map_err(io_err)?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                        .map_err(io_err)?;
                }
                Err(e) => return Err(io_err(e)),
            }
            real_dirs.insert(parent.clone());
        }
        let target = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644);
        let mode = if options.special_bits {
            mode & 0o7777
        } else {
            mode & 0o777
        };
        let replace = |target: &Path| -> io::Result<()> {
            match std::fs::symlink_metadata(target) {
                Ok(m) if m.is_dir() => Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a directory", target.display()),
                )),
                Ok(_) => std::fs::remove_file(target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        };
        if kind.is_dir() {
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(refuse("is a directory where a file or link was written")),
                Err(_) => std::fs::create_dir(&target).map_err(io_err)?,
            }
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o700))
                .map_err(io_err)?;
            real_dirs.insert(rel);
            stats.dirs += 1;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(io_err)?
                .ok_or_else(|| refuse("is a symbolic link without a target"))?
                .into_owned();
            if link.is_absolute() && options.links == Links::Inside {
                return Err(refuse("is a symbolic link to an absolute path"));
            }
            if resolve_link(&rel, &link).is_none() {
                return Err(refuse("is a symbolic link pointing outside the tree"));
            }
            replace(&target).map_err(io_err)?;
            std::os::unix::fs::symlink(&link, &target).map_err(io_err)?;
            stats.symlinks += 1;
        } else if kind == tar::EntryType::Link {
            let link = entry
                .link_name()
                .map_err(io_err)?
                .ok_or_else(|| refuse("is a hard link without a target"))?
                .into_owned();
            let Some(mut existing) = safe_path(archive, &link, options.strip)? else {
                return Err(refuse("is a hard link to the tree's root"));
            };
            if let Some(rewrite) = options.rewrite {
                existing = rewrite(existing);
            }
            let source = dest.join(&existing);
            let is_file = std::fs::symlink_metadata(&source)
                .map(|m| m.is_file())
                .unwrap_or(false);
            if !is_file || !real_dirs.contains(existing.parent().unwrap_or(Path::new(""))) {
                return Err(refuse(
                    "is a hard link to something other than a file already extracted",
                ));
            }
            replace(&target).map_err(io_err)?;
            std::fs::hard_link(&source, &target).map_err(io_err)?;
            stats.hardlinks += 1;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            replace(&target).map_err(io_err)?;
            let mut f = std::fs::File::create_new(&target).map_err(io_err)?;
            stats.bytes += io::copy(&mut entry, &mut f).map_err(io_err)?;
            drop(f);
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(io_err)?;
            stats.files += 1;
        } else if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        } else {
            return Err(refuse("is a device, fifo or other special file"));
        }
    }
    Ok(stats)
}

fn write_new(path: &Path, data: &[u8], executable: bool) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path, entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> PathBuf {
        let path = dir.join("t.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Write the raw name, bypassing the builder's own checks.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn extracts_and_strips() {
        let dir = tempfile::tempdir().unwrap();
        let t = tarball(
            dir.path(),
            &[("pkg-1.0/src/lib.rs", tar::EntryType::Regular, b"x", None)],
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let files = untar_gz(&t, &out, 1).unwrap();
        assert_eq!(
            files,
            [Extracted {
                path: "src/lib.rs".into(),
                size: 1
            }]
        );
        assert_eq!(std::fs::read(out.join("src/lib.rs")).unwrap(), b"x");
    }

    #[test]
    fn refuses_escapes_and_links() {
        let cases: &[(&str, tar::EntryType, Option<&str>, &str)] = &[
            (
                "pkg/../../etc/passwd",
                tar::EntryType::Regular,
                None,
                "climbs out",
            ),
            ("/etc/passwd", tar::EntryType::Regular, None, "absolute"),
            (
                "pkg/link",
                tar::EntryType::Symlink,
                Some("/etc"),
                "not a regular file",
            ),
            (
                "pkg/hard",
                tar::EntryType::Link,
                Some("/etc/passwd"),
                "not a regular file",
            ),
        ];
        for (name, kind, link, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let t = tarball(dir.path(), &[(name, *kind, b"", *link)]);
            let out = dir.path().join("out");
            std::fs::create_dir(&out).unwrap();
            let err = untar_gz(&t, &out, 1).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert_eq!(
                std::fs::read_dir(&out).unwrap().count(),
                0,
                "{name}: nothing written"
            );
        }
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    type Member<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>);

    /// A tar with raw names and link targets, bypassing the tar crate's own checks.
    fn tar_of(entries: &[Member<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            if let Some(l) = link {
                let lb = l.as_bytes();
                h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack(
        tar: &[u8],
        options: &TreeOptions,
    ) -> (tempfile::TempDir, Result<TreeStats, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let r = untar_tree(Path::new("t.tar"), tar, &out, options);
        (dir, r)
    }

    #[test]
    fn takes_links_that_stay_inside() {
        use tar::EntryType::*;
        let t = tar_of(&[
            ("linux/", Directory, b"", None),
            ("linux/Makefile", Regular, b"all:\n", None),
            ("linux/arch/x/dts", Symlink, b"", Some("../../Makefile")),
            ("linux/copy", Link, b"", Some("linux/Makefile")),
        ]);
        let (dir, r) = unpack(
            &t,
            &TreeOptions {
                strip: 1,
                ..Default::default()
            },
        );
        let stats = r.unwrap();
        assert_eq!((stats.files, stats.symlinks, stats.hardlinks), (1, 1, 1));
        let out = dir.path().join("out");
        assert_eq!(
            std::fs::read_link(out.join("arch/x/dts")).unwrap(),
            Path::new("../../Makefile")
        );
        assert_eq!(std::fs::read(out.join("copy")).unwrap(), b"all:\n");
    }

    #[test]
    fn refuses_what_would_escape() {
        use tar::EntryType::*;
        let cases: &[(&[Member<'_>], Links, &str)] = &[
            (
                &[("a/../../x", Regular, b"", None)],
                Links::Inside,
                "climbs out",
            ),
            (
                &[("/etc/passwd", Regular, b"", None)],
                Links::Inside,
                "absolute path",
            ),
            (
                &[("a/l", Symlink, b"", Some("../../etc"))],
                Links::Inside,
                "pointing outside",
            ),
            (
                &[("a/l", Symlink, b"", Some("/etc"))],
                Links::Inside,
                "absolute path",
            ),
            (
                &[("a/l", Symlink, b"", Some("../../../etc"))],
                Links::GuestRoot,
                "pointing outside",
            ),
            (
                &[
                    ("a/l", Symlink, b"", Some(".")),
                    ("a/l/f", Regular, b"x", None),
                ],
                Links::Inside,
                "through a symbolic link",
            ),
            (
                &[("a/h", Link, b"", Some("/etc/passwd"))],
                Links::Inside,
                "absolute path",
            ),
            (
                &[("a/h", Link, b"", Some("a/missing"))],
                Links::Inside,
                "hard link",
            ),
            (&[("a/dev", Char, b"", None)], Links::GuestRoot, "device"),
        ];
        for (entries, links, want) in cases {
            let t = tar_of(entries);
            let (dir, r) = unpack(
                &t,
                &TreeOptions {
                    links: *links,
                    ..Default::default()
                },
            );
            let err = r.unwrap_err().to_string();
            assert!(err.contains(want), "{entries:?}: {err}");
            let escaped = dir.path().join("x").exists() || dir.path().join("out/a/l/f").exists();
            assert!(!escaped, "{entries:?}: wrote outside or through a link");
        }
    }

    #[test]
    fn guest_root_keeps_absolute_links_and_rewrites() {
        use tar::EntryType::*;
        let t = tar_of(&[
            ("./bin/", Directory, b"", None),
            ("./bin/awk", Symlink, b"", Some("/etc/alternatives/awk")),
        ]);
        fn usr(p: PathBuf) -> PathBuf {
            if p.starts_with("bin") {
                Path::new("usr").join(p)
            } else {
                p
            }
        }
        let (dir, r) = unpack(
            &t,
            &TreeOptions {
                links: Links::GuestRoot,
                rewrite: Some(usr),
                ..Default::default()
            },
        );
        r.unwrap();
        let link = dir.path().join("out/usr/bin/awk");
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            Path::new("/etc/alternatives/awk")
        );
    }
}
