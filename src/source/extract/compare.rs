//! Whether a tree on disk is exactly what [`super::unzip_tree`] or [`super::untar_gz`] writes
//! from an archive: the same paths, kinds, file modes and link targets, and every file's bytes
//! equal to its member's, decompressed from the archive again. A tree an earlier run unpacked
//! is used again only when it passes, so nothing about it is believed, only compared.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ExtractError, open_tar_gz, open_zip, safe_path, zip_header};
use crate::digest::Sha256Digest;

/// What a path of the tree must be.
#[derive(Debug, PartialEq)]
enum Want {
    Dir,
    Link(PathBuf),
    File { index: usize, mode: u32, size: u64 },
}

/// `None` when the tree at `dest` is exactly the members of the zip `archive` for which `keep`
/// holds, as [`super::unzip_tree`] writes them; otherwise the first difference found.
pub fn zip_tree_matches(
    archive: &Path,
    dest: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<Option<String>, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let want = match wanted(archive, keep)? {
        Ok(want) => want,
        Err(why) => return Ok(Some(why)),
    };
    if let Some(why) = layout_differs(dest, &want).map_err(io_err)? {
        return Ok(Some(why));
    }
    let files: Vec<(usize, PathBuf)> = want
        .iter()
        .filter_map(|(rel, w)| match w {
            Want::File { index, .. } => Some((*index, dest.join(rel))),
            _ => None,
        })
        .collect();
    contents_differ(archive, &files).map_err(io_err)
}

/// Every path the archive's kept members make, with what it must be; or why no tree can match
/// (a member that extraction refuses).
#[allow(clippy::type_complexity)]
fn wanted(
    archive: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<Result<BTreeMap<PathBuf, Want>, String>, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let zip_err = |e: zip::result::ZipError| io_err(io::Error::other(e));
    let mut zip = open_zip(archive)?;
    let mut want = BTreeMap::new();
    for i in 0..zip.len() {
        let (member, mode, is_dir, size) = zip_header(&mut zip, i).map_err(zip_err)?;
        let Some(rel) = safe_path(archive, Path::new(&member), 0)? else {
            continue;
        };
        if !keep(&rel) {
            continue;
        }
        for parent in rel.ancestors().skip(1) {
            if !parent.as_os_str().is_empty() {
                want.entry(parent.to_owned()).or_insert(Want::Dir);
            }
        }
        let kind = if is_dir {
            Want::Dir
        } else if mode & 0o170000 == 0o120000 {
            let mut link = String::new();
            zip.by_index(i)
                .map_err(zip_err)?
                .read_to_string(&mut link)
                .map_err(io_err)?;
            Want::Link(PathBuf::from(link))
        } else if mode & 0o170000 == 0o100000 || mode & 0o170000 == 0 {
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            Want::File {
                index: i,
                mode,
                size,
            }
        } else {
            return Ok(Err(format!("member `{member}` is a special file")));
        };
        want.insert(rel, kind);
    }
    Ok(Ok(want))
}

/// The first path of the tree at `dest` that is missing, extra, of another kind, mode, size or
/// link target than `want` says.
fn layout_differs(dest: &Path, want: &BTreeMap<PathBuf, Want>) -> io::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    for entry in walkdir::WalkDir::new(dest).min_depth(1).follow_links(false) {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry.path().strip_prefix(dest).expect("under dest");
        let Some(w) = want.get(rel) else {
            return Ok(Some(format!("{} is not in the archive", rel.display())));
        };
        seen += 1;
        let meta = entry.metadata().map_err(io::Error::other)?;
        let ft = meta.file_type();
        let same = match w {
            Want::Dir => ft.is_dir(),
            Want::Link(target) => ft.is_symlink() && std::fs::read_link(entry.path())? == *target,
            Want::File { mode, size, .. } => {
                ft.is_file() && meta.len() == *size && meta.permissions().mode() & 0o7777 == *mode
            }
        };
        if !same {
            return Ok(Some(format!(
                "{} differs from the archive's member in kind, mode, size or target",
                rel.display()
            )));
        }
    }
    Ok((seen != want.len()).then(|| {
        format!(
            "{} of the archive's {} paths are missing",
            want.len() - seen,
            want.len()
        )
    }))
}

/// The first file of `files` `(member index, path)` whose bytes differ from its member's,
/// compared on every core, each reading the archive through its own handle.
fn contents_differ(archive: &Path, files: &[(usize, PathBuf)]) -> io::Result<Option<String>> {
    use rayon::prelude::*;
    let workers = rayon::current_num_threads().max(1);
    let found: Vec<Option<String>> = (0..workers)
        .into_par_iter()
        .map(|w| -> io::Result<Option<String>> {
            let file = std::fs::File::open(archive)?;
            let mut zip =
                zip::ZipArchive::new(io::BufReader::new(file)).map_err(io::Error::other)?;
            for (i, path) in files.iter().skip(w).step_by(workers) {
                let entry = zip.by_index(*i).map_err(io::Error::other)?;
                let on_disk = std::fs::File::open(path)?;
                if !crate::files::same_bytes(entry, on_disk)? {
                    return Ok(Some(format!(
                        "{} differs from the archive's member",
                        path.display()
                    )));
                }
            }
            Ok(None)
        })
        .collect::<io::Result<_>>()?;
    Ok(found.into_iter().flatten().next())
}

/// The files of a tree that [`super::untar_gz`] wrote from `archive` (dropping `strip` leading
/// components), of which only the members whose path `keep` accepts were left, and to which
/// the files `added` were added afterwards: each kept file's path and sha256 when the tree is
/// exactly that (every kept file's bytes and executable bit, no other file, directory or
/// link), else the first difference found.
#[allow(clippy::type_complexity)]
pub fn tar_gz_tree_matches(
    archive: &Path,
    dest: &Path,
    strip: usize,
    keep: &dyn Fn(&str) -> bool,
    added: &[&str],
) -> Result<Result<Vec<(String, Sha256Digest)>, String>, ExtractError> {
    let io_err = |source| ExtractError::Io {
        archive: archive.to_owned(),
        source,
    };
    let mut tar = open_tar_gz(archive)?;
    let mut dirs = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    let mut data = Vec::new();
    for entry in tar.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let member = entry.path().map_err(io_err)?.into_owned();
        let kind = entry.header().entry_type();
        let Some(rel) = safe_path(archive, &member, strip)? else {
            continue;
        };
        dirs.extend(
            rel.ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_owned),
        );
        if kind.is_dir() {
            dirs.insert(rel);
            continue;
        }
        if !kind.is_file() {
            return Ok(Err(format!(
                "member {} is not a regular file",
                member.display()
            )));
        }
        let slashed = rel.to_string_lossy().replace('\\', "/");
        if !keep(&slashed) {
            continue;
        }
        let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
        data.clear();
        entry.read_to_end(&mut data).map_err(io_err)?;
        if let Some(why) = file_differs(&dest.join(&rel), &data, exec) {
            return Ok(Err(format!("{slashed}: {why}")));
        }
        files.push((slashed, Sha256Digest::of(&data)));
    }
    let expected: std::collections::BTreeSet<&str> = files
        .iter()
        .map(|(rel, _)| rel.as_str())
        .chain(added.iter().copied())
        .collect();
    for entry in walkdir::WalkDir::new(dest).min_depth(1) {
        let entry = entry.map_err(|e| io_err(io::Error::other(e)))?;
        let rel = entry.path().strip_prefix(dest).expect("under dest");
        let known = if entry.file_type().is_dir() {
            dirs.contains(rel)
        } else {
            entry.file_type().is_file() && expected.contains(rel.to_string_lossy().as_ref())
        };
        if !known {
            return Ok(Err(format!("{} is not in the archive", rel.display())));
        }
    }
    Ok(Ok(files))
}

/// Why the file at `path` is not `data` with the executable bit `exec`, if it is not.
fn file_differs(path: &Path, data: &[u8], exec: bool) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    let mode = if exec { 0o755 } else { 0o644 };
    if !meta.is_file()
        || meta.len() != data.len() as u64
        || meta.permissions().mode() & 0o7777 != mode
    {
        return Some("another kind, size or mode than the member's".into());
    }
    match std::fs::File::open(path).and_then(|f| crate::files::same_bytes(f, data)) {
        Ok(true) => None,
        Ok(false) => Some("other bytes than the member's".into()),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A wheel-like zip: a directory, an executable, a plain file and a link.
    fn zip_file(path: &Path) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.add_directory("go/bin/", opts.unix_permissions(0o755))
            .unwrap();
        z.start_file("go/bin/go", opts.unix_permissions(0o755))
            .unwrap();
        z.write_all(b"\x7fELF go").unwrap();
        z.start_file("go/src/a.go", opts.unix_permissions(0o644))
            .unwrap();
        z.write_all(&vec![b'a'; 200_000]).unwrap();
        z.add_symlink("go/link", "src/a.go", opts).unwrap();
        z.start_file("other/skip", opts).unwrap();
        z.finish().unwrap();
    }

    fn unpacked(dir: &Path) -> (PathBuf, PathBuf) {
        let archive = dir.join("t.zip");
        zip_file(&archive);
        let dest = dir.join("out");
        std::fs::create_dir(&dest).unwrap();
        super::super::unzip_tree(&archive, &dest, &|p| p.starts_with("go")).unwrap();
        (archive, dest)
    }

    fn check(archive: &Path, dest: &Path) -> Option<String> {
        zip_tree_matches(archive, dest, &|p| p.starts_with("go")).unwrap()
    }

    #[test]
    fn a_tree_unzip_wrote_matches_and_each_change_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (archive, dest) = unpacked(dir.path());
        assert_eq!(check(&archive, &dest), None);

        // One byte, same size, deep in a file.
        let a = dest.join("go/src/a.go");
        let mut bytes = std::fs::read(&a).unwrap();
        bytes[150_000] = b'b';
        std::fs::write(&a, &bytes).unwrap();
        let why = check(&archive, &dest).unwrap();
        assert!(why.contains("go/src/a.go differs"), "{why}");
        bytes[150_000] = b'a';
        std::fs::write(&a, &bytes).unwrap();
        assert_eq!(check(&archive, &dest), None);

        // The executable bit.
        let go = dest.join("go/bin/go");
        std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check(&archive, &dest).unwrap().contains("go/bin/go"));
        std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();

        // An extra file, a missing one, a retargeted link.
        std::fs::write(dest.join("go/bin/extra"), b"").unwrap();
        assert!(check(&archive, &dest).unwrap().contains("go/bin/extra"));
        std::fs::remove_file(dest.join("go/bin/extra")).unwrap();
        std::fs::remove_file(&go).unwrap();
        assert!(check(&archive, &dest).unwrap().contains("missing"));
        let (archive, dest) = {
            let fresh = dir.path().join("again");
            std::fs::create_dir(&fresh).unwrap();
            unpacked(&fresh)
        };
        std::fs::remove_file(dest.join("go/link")).unwrap();
        std::os::unix::fs::symlink("bin/go", dest.join("go/link")).unwrap();
        assert!(check(&archive, &dest).unwrap().contains("go/link"));
    }

    fn crate_archive(path: &Path) {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (name, data, mode) in [
            ("pkg-1.0/Cargo.toml", &b"[package]"[..], 0o644),
            ("pkg-1.0/src/lib.rs", &b"pub fn f() {}"[..], 0o644),
            ("pkg-1.0/run.sh", &b"#!/bin/sh"[..], 0o755),
            ("pkg-1.0/.cargo-ok", &b""[..], 0o644),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn a_tree_untar_wrote_matches_and_each_change_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pkg.crate");
        crate_archive(&archive);
        let dest = dir.path().join("pkg");
        std::fs::create_dir(&dest).unwrap();
        super::super::untar_gz(&archive, &dest, 1).unwrap();
        std::fs::remove_file(dest.join(".cargo-ok")).unwrap();
        std::fs::write(dest.join("sums.json"), "{}").unwrap();
        let keep = |rel: &str| rel != ".cargo-ok";
        let check = || tar_gz_tree_matches(&archive, &dest, 1, &keep, &["sums.json"]).unwrap();
        let files = check().unwrap();
        assert_eq!(
            files.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
            ["Cargo.toml", "src/lib.rs", "run.sh"]
        );
        assert_eq!(files[1].1, Sha256Digest::of(b"pub fn f() {}"));

        let lib = dest.join("src/lib.rs");
        std::fs::write(&lib, b"pub fn g() {}").unwrap();
        assert!(check().unwrap_err().contains("src/lib.rs: other bytes"));
        std::fs::write(&lib, b"pub fn f() {}").unwrap();
        let run = dest.join("run.sh");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check().unwrap_err().contains("run.sh"));
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dest.join(".cargo-ok"), b"").unwrap();
        assert!(
            check()
                .unwrap_err()
                .contains(".cargo-ok is not in the archive")
        );
        std::fs::remove_file(dest.join(".cargo-ok")).unwrap();
        std::fs::create_dir(dest.join("extra")).unwrap();
        assert!(check().unwrap_err().contains("extra is not in the archive"));
        std::fs::remove_dir(dest.join("extra")).unwrap();
        std::fs::remove_file(&lib).unwrap();
        assert!(check().unwrap_err().contains("src/lib.rs"));
    }
}
