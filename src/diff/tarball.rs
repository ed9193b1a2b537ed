//! Release tarballs (`.tar.zst`, `.tar.xz`, `.tar.gz`) compared member by member, each differing
//! file explained as a loose file would be: an ELF file by section, an initrd by cpio member, a
//! disk image by partition and file, a configuration by line.
//!
//! Kata's tarballs hold images of hundreds of megabytes, so nothing is read whole: a first pass
//! hashes every member of both sides as it streams by, a second unpacks only the files present
//! on both sides whose contents differ, each to a numbered file (never to its member path).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::explain::{self, Detail, Entry};
use crate::digest::Sha256Digest;

/// The label the details carry.
const ARCHIVE: &str = "tarball";

/// What compression a file has, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Zstd,
    Xz,
    Gzip,
}

fn compression(path: &Path) -> Option<Compression> {
    let mut magic = [0u8; 6];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if magic[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        Some(Compression::Zstd)
    } else if magic == [0xfd, b'7', b'z', b'X', b'Z', 0] {
        Some(Compression::Xz)
    } else if magic[..2] == [0x1f, 0x8b] {
        Some(Compression::Gzip)
    } else {
        None
    }
}

/// The decompressed stream of `path`.
fn open(path: &Path, c: Compression) -> io::Result<Box<dyn Read>> {
    let f = io::BufReader::new(std::fs::File::open(path)?);
    Ok(match c {
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(f)?),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(f)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
    })
}

/// Whether the decompressed stream starts with a tar header.
fn is_tar(path: &Path, c: Compression) -> bool {
    let mut block = [0u8; 512];
    open(path, c)
        .and_then(|mut r| r.read_exact(&mut block))
        .is_ok()
        && &block[257..262] == b"ustar"
}

/// A member's name without the `./` of `tar -C DIR .`, so that `./opt/x` and `opt/x` meet.
fn key(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let s = s.strip_prefix("./").unwrap_or(&s);
    let s = s.trim_end_matches('/');
    if s.is_empty() { ".".into() } else { s.into() }
}

/// Every member's entry, and, for the members in `unpack`, its content written to `dir/<n>`.
fn pass(
    path: &Path,
    c: Compression,
    unpack: &BTreeSet<String>,
    dir: Option<&Path>,
) -> io::Result<(BTreeMap<String, Entry>, BTreeMap<String, PathBuf>)> {
    let mut archive = tar::Archive::new(open(path, c)?);
    let mut entries = BTreeMap::new();
    let mut files = BTreeMap::new();
    for e in archive.entries()? {
        let mut e = e?;
        let name = key(&e.path_bytes());
        let header = e.header().clone();
        let mut hasher = Sha256::new();
        let mut sink: Option<std::fs::File> = match dir {
            Some(d) if unpack.contains(&name) && header.entry_type().is_file() => {
                let p = d.join(files.len().to_string());
                files.insert(name.clone(), p.clone());
                Some(std::fs::File::create(p)?)
            }
            _ => None,
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = e.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(f) = &mut sink {
                f.write_all(&buf[..n])?;
            }
        }
        if let Some(link) = e.link_name_bytes() {
            hasher.update(&link);
        }
        let digest = Sha256Digest::from_bytes(hasher.finalize().into());
        entries.insert(name, explain::tar_entry(&header, digest));
    }
    Ok((entries, files))
}

/// Explains two compressed tarballs, or `None` when they are not both one.
pub fn explain(a: &Path, b: &Path) -> Option<Vec<Detail>> {
    let (ca, cb) = (compression(a)?, compression(b)?);
    if !(is_tar(a, ca) && is_tar(b, cb)) {
        return None;
    }
    Some(compare(a, ca, b, cb).unwrap_or_else(|e| {
        vec![Detail::Unavailable {
            reason: format!("the tarballs cannot be read: {e}"),
        }]
    }))
}

fn compare(a: &Path, ca: Compression, b: &Path, cb: Compression) -> io::Result<Vec<Detail>> {
    let none = BTreeSet::new();
    let (ea, _) = pass(a, ca, &none, None)?;
    let (eb, _) = pass(b, cb, &none, None)?;
    let mut details = explain::members(ARCHIVE, &ea, &eb);
    // The files both sides have and whose contents differ, as far as they are listed.
    let wanted: BTreeSet<String> = details
        .iter()
        .filter_map(|d| match d {
            Detail::Member { member, change, .. }
                if change.content
                    && ea.get(member).is_some_and(|e| e.kind == "file")
                    && eb.get(member).is_some_and(|e| e.kind == "file") =>
            {
                Some(member.clone())
            }
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(details);
    }
    let scratch = tempfile::tempdir()?;
    let (da, db) = (scratch.path().join("a"), scratch.path().join("b"));
    std::fs::create_dir_all(&da)?;
    std::fs::create_dir_all(&db)?;
    let (_, fa) = pass(a, ca, &wanted, Some(&da))?;
    let (_, fb) = pass(b, cb, &wanted, Some(&db))?;
    for d in &mut details {
        let Detail::Member {
            archive,
            member,
            change,
        } = d
        else {
            continue;
        };
        let (Some(pa), Some(pb)) = (fa.get(member.as_str()), fb.get(member.as_str())) else {
            continue;
        };
        *d = Detail::Within {
            archive: archive.clone(),
            member: member.clone(),
            change: change.clone(),
            details: explain::explain(pa, pb),
        };
    }
    Ok(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_meet_with_or_without_dot_slash() {
        assert_eq!(key(b"./opt/kata/"), "opt/kata");
        assert_eq!(key(b"opt/kata"), "opt/kata");
        assert_eq!(key(b"./"), ".");
    }
}
