//! Safe archive extraction: the one place archive member names are checked.
//!
//! A member is written only if its path is relative and has no `..`, `.` or root component.
//! [`untar_gz`] (crates, toolchains) takes regular files and directories only. [`untar_tree`]
//! (kernel sources, Debian packages) also takes symbolic links whose target stays inside the
//! tree, and hard links to files already written; [`unzip_tree`] (Go wheels) takes files,
//! directories and such links. A link target is resolved through the links already on disk,
//! and every link again once the archive is written. Devices and fifos are refused everywhere.
//! Nothing is ever written through a link: a member whose parent is a link is refused, and so
//! is a hard link to a file reached through one. No other module writes members by their names.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

mod compare;
pub use compare::{tar_gz_tree_matches, zip_tree_matches};

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

/// A gzip-compressed tar, opened for reading.
type TarGz = tar::Archive<flate2::read::GzDecoder<io::BufReader<std::fs::File>>>;

fn open_tar_gz(archive: &Path) -> Result<TarGz, ExtractError> {
    let file = std::fs::File::open(archive).map_err(|source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    })?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(
        io::BufReader::new(file),
    )))
}

/// Extracts a gzip-compressed tar into `dest` (which must exist), dropping `strip` leading path
/// components, keeping the executable bit of files. Returns the files written.
pub fn untar_gz(archive: &Path, dest: &Path, strip: usize) -> Result<Vec<Extracted>, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let mut tar = open_tar_gz(archive)?;
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

/// How many links one resolution may pass through before it is taken for a loop (as Linux's
/// `MAXSYMLINKS`).
const MAX_LINK_HOPS: u32 = 40;

/// Where link `target`, written at `link` (relative to the tree at `root`), leads, as a path
/// relative to the tree: resolved component by component against what is already on disk, so
/// that links written before are followed (an absolute target, and an absolute link met on the
/// way, start at the tree's root, as they will once the tree is a guest's root filesystem).
/// `None` when the resolution climbs above the tree's root or loops.
fn resolve_in_tree(root: &Path, link: &Path, target: &Path) -> Option<PathBuf> {
    let dir: Vec<std::ffi::OsString> = link
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut hops = MAX_LINK_HOPS;
    follow(root, dir, target, &mut hops).map(|parts| parts.iter().collect())
}

fn follow(
    root: &Path,
    mut at: Vec<std::ffi::OsString>,
    target: &Path,
    hops: &mut u32,
) -> Option<Vec<std::ffi::OsString>> {
    if target.is_absolute() {
        at.clear();
    }
    for c in target.components() {
        match c {
            Component::Normal(n) => {
                at.push(n.to_owned());
                let on_disk: PathBuf = std::iter::once(root.as_os_str())
                    .chain(at.iter().map(|p| p.as_os_str()))
                    .collect();
                let is_link =
                    std::fs::symlink_metadata(&on_disk).is_ok_and(|m| m.file_type().is_symlink());
                if is_link {
                    *hops = hops.checked_sub(1)?;
                    let next = std::fs::read_link(&on_disk).ok()?;
                    at.pop();
                    at = follow(root, at, &next, hops)?;
                }
            }
            Component::ParentDir => {
                at.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(at)
}

/// Every symbolic link in the tree at `root` must still resolve inside it, through whatever
/// links were written after it (`a -> s/../x` is harmless until `s -> .` arrives). Returns the
/// first that does not, after removing every such link.
fn links_that_escape(root: &Path, links: Links) -> io::Result<Option<(String, PathBuf)>> {
    let mut first = None;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(io::Error::other)?;
        if !entry.file_type().is_symlink() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("under root")
            .to_owned();
        let target = std::fs::read_link(entry.path())?;
        let absolute_refused = links == Links::Inside && target.is_absolute();
        if absolute_refused || resolve_in_tree(root, &rel, &target).is_none() {
            std::fs::remove_file(entry.path())?;
            first.get_or_insert((rel.display().to_string(), target));
        }
    }
    Ok(first)
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
        ensure_parents(dest, &rel, &mut real_dirs).map_err(|e| match e {
            ParentError::Unsafe(problem) => refuse(problem),
            ParentError::Io(e) => io_err(e),
        })?;
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
            if resolve_in_tree(dest, &rel, &link).is_none() {
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
    check_links(archive, dest, options.links)?;
    Ok(stats)
}

/// The last check of an extraction: see [`links_that_escape`].
fn check_links(archive: &Path, dest: &Path, links: Links) -> Result<(), ExtractError> {
    match links_that_escape(dest, links) {
        Ok(None) => Ok(()),
        Ok(Some((member, target))) => Err(ExtractError::Unsafe {
            archive: archive.to_owned(),
            member: format!("{member} -> {}", target.display()),
            problem: "is a symbolic link that leads outside the tree through other links",
        }),
        Err(source) => Err(ExtractError::Io {
            archive: archive.to_owned(),
            source,
        }),
    }
}

enum ParentError {
    Unsafe(&'static str),
    Io(io::Error),
}

/// Every parent of `rel` must be a real directory of the tree at `dest`: each is created (0755,
/// never what the umask leaves) or checked, and remembered in `real_dirs`. Nothing is ever
/// written through a link.
fn ensure_parents(
    dest: &Path,
    rel: &Path,
    real_dirs: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), ParentError> {
    use std::os::unix::fs::PermissionsExt;
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
                return Err(ParentError::Unsafe(
                    "would be written through a symbolic link",
                ));
            }
            Ok(_) => return Err(ParentError::Unsafe("has a parent that is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&p).map_err(ParentError::Io)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(ParentError::Io)?;
            }
            Err(e) => return Err(ParentError::Io(e)),
        }
        real_dirs.insert(parent.clone());
    }
    Ok(())
}

/// A zip member's header: its raw name, unix mode (0o644 when it has none), whether it is a
/// directory, and its uncompressed size. The member's data is not read.
fn zip_header(
    zip: &mut zip::ZipArchive<io::BufReader<std::fs::File>>,
    index: usize,
) -> zip::result::ZipResult<(String, u32, bool, u64)> {
    let entry = zip.by_index_raw(index)?;
    Ok((
        String::from_utf8_lossy(entry.name_raw()).into_owned(),
        entry.unix_mode().unwrap_or(0o644),
        entry.is_dir(),
        entry.size(),
    ))
}

/// A zip archive, opened for reading.
fn open_zip(archive: &Path) -> Result<zip::ZipArchive<io::BufReader<std::fs::File>>, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let file = std::fs::File::open(archive).map_err(io_err)?;
    zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| io_err(io::Error::other(e)))
}

/// Extracts the members of a zip archive (a Python wheel) for which `keep` holds into `dest`,
/// which must exist: regular files (keeping the executable bit), directories, and symbolic
/// links whose target stays inside the tree through every link already written (absolute
/// targets are refused); anything else is refused, and nothing is written through a link.
pub fn unzip_tree(
    archive: &Path,
    dest: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<TreeStats, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let zip_err = |e: zip::result::ZipError| io_err(io::Error::other(e));
    let mut zip = open_zip(archive)?;
    let mut stats = TreeStats::default();
    let mut real_dirs = std::collections::HashSet::from([PathBuf::new()]);
    let mut regular = Vec::new();
    for i in 0..zip.len() {
        // The header alone: regular files are read below, links where they are made.
        let (member, mode, is_dir, _) = zip_header(&mut zip, i).map_err(zip_err)?;
        let refuse = |problem: &'static str| ExtractError::Unsafe {
            archive: archive.to_owned(),
            member: member.clone(),
            problem,
        };
        let Some(rel) = safe_path(archive, Path::new(&member), 0)? else {
            continue;
        };
        if !keep(&rel) {
            continue;
        }
        ensure_parents(dest, &rel, &mut real_dirs).map_err(|e| match e {
            ParentError::Unsafe(problem) => refuse(problem),
            ParentError::Io(e) => io_err(e),
        })?;
        let target = dest.join(&rel);
        if is_dir {
            if !target.is_dir() {
                std::fs::create_dir(&target).map_err(io_err)?;
            }
            real_dirs.insert(rel);
            stats.dirs += 1;
        } else if mode & 0o170000 == 0o120000 {
            let mut link = String::new();
            let mut entry = zip.by_index(i).map_err(zip_err)?;
            entry.read_to_string(&mut link).map_err(io_err)?;
            let link = PathBuf::from(link);
            if link.is_absolute() {
                return Err(refuse("is a symbolic link to an absolute path"));
            }
            if resolve_in_tree(dest, &rel, &link).is_none() {
                return Err(refuse("is a symbolic link pointing outside the tree"));
            }
            std::os::unix::fs::symlink(&link, &target).map_err(io_err)?;
            stats.symlinks += 1;
        } else if mode & 0o170000 == 0o100000 || mode & 0o170000 == 0 {
            // Written below, on every core, once every path is checked and every directory
            // and link made.
            let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            regular.push((i, target, perm));
            stats.files += 1;
        } else {
            return Err(refuse("is a device, fifo or other special file"));
        }
    }
    stats.bytes = unzip_files(archive, &regular).map_err(io_err)?;
    check_links(archive, dest, Links::Inside)?;
    Ok(stats)
}

/// Writes the regular files `(index, target, mode)` of a zip, each new, split among the cores,
/// each core reading the archive through its own handle; returns the bytes written.
fn unzip_files(archive: &Path, regular: &[(usize, PathBuf, u32)]) -> io::Result<u64> {
    use rayon::prelude::*;
    use std::os::unix::fs::PermissionsExt;
    let workers = rayon::current_num_threads().max(1);
    (0..workers)
        .into_par_iter()
        .map(|w| -> io::Result<u64> {
            let file = std::fs::File::open(archive)?;
            let mut zip =
                zip::ZipArchive::new(io::BufReader::new(file)).map_err(io::Error::other)?;
            let mut bytes = 0;
            for (i, target, perm) in regular.iter().skip(w).step_by(workers) {
                let mut entry = zip.by_index(*i).map_err(io::Error::other)?;
                let mut f = std::fs::File::create_new(target)?;
                bytes += io::copy(&mut entry, &mut f)?;
                drop(f);
                std::fs::set_permissions(target, std::fs::Permissions::from_mode(*perm))?;
            }
            Ok(bytes)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))
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

    /// Every symbolic link under `dir` that resolves on the host (through the links beside
    /// it) to somewhere outside `dir`.
    fn escaping_links(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
        let dir = dir.canonicalize().unwrap();
        walkdir::WalkDir::new(&dir)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_symlink())
            .filter_map(|e| {
                let real = std::fs::canonicalize(e.path()).ok()?;
                (!real.starts_with(&dir)).then(|| (e.path().to_owned(), real))
            })
            .collect()
    }

    #[test]
    fn link_chains_that_escape_through_other_links_are_refused() {
        use tar::EntryType::*;
        let deep = "a/b/c/d/e/f/g/h/i/j/k/m";
        let up = "../".repeat(12);
        let (s, l) = (format!("{deep}/s"), format!("{deep}/l"));
        let climb = format!("s/{up}");
        let passwd = format!("{deep}/l/etc/passwd");
        // The host's /etc/passwd, reached from an unpacked tree: `s` leads to the tree's root,
        // and `l` climbs from there; each looks inside the tree as text.
        let to_host: Vec<Member<'_>> = vec![
            (&s, Symlink, b"", Some(&up)),
            (&l, Symlink, b"", Some(&climb)),
            ("passwd", Symlink, b"", Some(&passwd)),
        ];
        // The same, written in the other order: `l` first, while `s` does not exist yet.
        let later: Vec<Member<'_>> = vec![
            ("x/l", Symlink, b"", Some("s/../..")),
            ("x/s", Symlink, b"", Some(".")),
        ];
        for (entries, want) in [
            (&to_host, "pointing outside the tree"),
            (&later, "leads outside the tree through other links"),
        ] {
            for links in [Links::Inside, Links::GuestRoot] {
                let (dir, r) = unpack(
                    &tar_of(entries),
                    &TreeOptions {
                        links,
                        ..Default::default()
                    },
                );
                let out = dir.path().join("out");
                let err = r.unwrap_err().to_string();
                assert!(err.contains(want), "{links:?} {entries:?}: {err}");
                assert_eq!(
                    escaping_links(&out),
                    [],
                    "{links:?}: an escaping link is left"
                );
            }
        }
    }

    #[test]
    fn hard_links_through_links_are_refused() {
        use tar::EntryType::*;
        let tree: [Member<'_>; 3] = [
            ("d/", Directory, b"", None),
            ("d/f", Regular, b"x", None),
            ("l", Symlink, b"", Some("d")),
        ];
        let cases: [(Member<'_>, &str, &str); 3] = [
            // The hard link's own name passes through `l`.
            (
                ("l/h", Link, b"", Some("d/f")),
                "through a symbolic link",
                "d/h",
            ),
            // The file it names is reached through `l`.
            (("h", Link, b"", Some("l/f")), "hard link to something", "h"),
            // It names a link, not a file.
            (("h", Link, b"", Some("l")), "hard link to something", "h"),
        ];
        for (hard, want, absent) in cases {
            for links in [Links::Inside, Links::GuestRoot] {
                let mut entries = tree.to_vec();
                entries.push(hard);
                let (dir, r) = unpack(
                    &tar_of(&entries),
                    &TreeOptions {
                        links,
                        ..Default::default()
                    },
                );
                let err = r.unwrap_err().to_string();
                assert!(err.contains(want), "{links:?} {hard:?}: {err}");
                let out = dir.path().join("out");
                assert!(
                    std::fs::symlink_metadata(out.join(absent)).is_err(),
                    "{links:?} {hard:?}: {absent} was written"
                );
                assert_eq!(std::fs::read(out.join("d/f")).unwrap(), b"x");
            }
        }
    }

    #[test]
    fn link_chains_that_stay_inside_are_kept() {
        use tar::EntryType::*;
        let t = tar_of(&[
            ("./usr/bin/", Directory, b"", None),
            ("./usr/bin/mawk", Regular, b"awk", None),
            ("./etc/alternatives/", Directory, b"", None),
            (
                "./etc/alternatives/awk",
                Symlink,
                b"",
                Some("/usr/bin/mawk"),
            ),
            ("./usr/bin/awk", Symlink, b"", Some("/etc/alternatives/awk")),
            ("./lib", Symlink, b"", Some("usr/lib")),
            ("./usr/lib/", Directory, b"", None),
            ("./usr/lib/x", Symlink, b"", Some("../../lib/../bin/awk")),
        ]);
        let (dir, r) = unpack(
            &t,
            &TreeOptions {
                links: Links::GuestRoot,
                ..Default::default()
            },
        );
        let stats = r.unwrap();
        assert_eq!(stats.symlinks, 4);
        let out = dir.path().join("out");
        assert_eq!(
            resolve_in_tree(
                &out,
                Path::new("usr/lib/x"),
                Path::new("../../lib/../bin/awk")
            ),
            Some(PathBuf::from("usr/bin/mawk"))
        );
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

#[cfg(test)]
mod zip_tests {
    use super::*;

    fn wheel(dir: &Path, links: &[(&str, &str)]) -> PathBuf {
        use std::io::Write;
        let path = dir.join("go.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("go/bin/go", exec).unwrap();
        z.write_all(b"go").unwrap();
        let plain = zip::write::SimpleFileOptions::default();
        z.start_file("go-1.0.dist-info/RECORD", plain).unwrap();
        for (name, target) in links {
            z.add_symlink(*name, *target, plain).unwrap();
        }
        z.finish().unwrap();
        path
    }

    fn unzip(links: &[(&str, &str)]) -> (tempfile::TempDir, Result<TreeStats, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = wheel(dir.path(), links);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let r = unzip_tree(&archive, &out, &|rel| rel.starts_with("go"));
        (dir, r)
    }

    #[test]
    fn a_wheel_unpacks_its_go_tree_with_modes_and_inside_links() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, r) = unzip(&[("go/bin/gofmt", "go")]);
        let stats = r.unwrap();
        assert_eq!((stats.files, stats.symlinks), (1, 1));
        let out = dir.path().join("out");
        let mode = std::fs::metadata(out.join("go/bin/go"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!out.join("go-1.0.dist-info").exists());
    }

    #[test]
    fn a_wheel_whose_links_escape_is_refused() {
        for (links, want) in [
            (
                vec![("go/a/s", ".."), ("go/a/l", "s/../../..")],
                "pointing outside",
            ),
            (vec![("go/l", "/etc/passwd")], "absolute path"),
            (
                vec![("go/l", "s/../.."), ("go/s", ".")],
                "through other links",
            ),
            (
                vec![("go/s", "."), ("go/s/x", "y")],
                "through a symbolic link",
            ),
        ] {
            let (dir, r) = unzip(&links);
            let err = r.unwrap_err().to_string();
            assert!(err.contains(want), "{links:?}: {err}");
            let out = dir.path().join("out");
            for e in walkdir::WalkDir::new(&out).into_iter().flatten() {
                if e.file_type().is_symlink() {
                    let rel = e.path().strip_prefix(&out).unwrap();
                    let target = std::fs::read_link(e.path()).unwrap();
                    assert!(resolve_in_tree(&out, rel, &target).is_some(), "{links:?}");
                }
            }
        }
    }
}
