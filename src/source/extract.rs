//! Safe archive extraction: the one place archive member names are checked.
//!
//! A member is written only if its path is relative, has no `..`, `.` or root component, and
//! it is a regular file or a directory. Links of any kind, devices and fifos are refused, so
//! nothing can be written through a link or outside the destination.

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
