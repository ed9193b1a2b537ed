//! Go's `dirhash.Hash1`, the `h1:` hashes of go.sum, computed exactly as
//! golang.org/x/mod/sumdb/dirhash does:
//!
//! - file names are sorted bytewise;
//! - each file contributes the line `<hex sha256 of its content>  <name>\n`;
//! - the hash is the sha256 of those lines, base64-encoded, prefixed `h1:`.
//!
//! A module zip is hashed over its entry names (which carry the `<module>@<version>/` prefix); an
//! extracted module directory over its files with that prefix added; a `go.mod` alone over the
//! single name `go.mod`.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::digest::Sha256Digest;

#[derive(Debug, thiserror::Error)]
pub enum DirHashError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable zip archive: {message}")]
    Zip { path: PathBuf, message: String },
    #[error("file name {name:?} contains a newline, which dirhash does not support")]
    Newline { name: String },
}

/// Hash1 over `(name, sha256 of content)` pairs.
pub fn hash1(mut files: Vec<(String, Sha256Digest)>) -> Result<String, DirHashError> {
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut summary = Sha256::new();
    for (name, digest) in &files {
        if name.contains('\n') {
            return Err(DirHashError::Newline { name: name.clone() });
        }
        summary.update(format!("{}  {name}\n", digest.to_hex()).as_bytes());
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    ))
}

/// The `/go.mod` hash of go.sum.
pub fn hash_go_mod(content: &[u8]) -> String {
    hash1(vec![("go.mod".to_owned(), Sha256Digest::of(content))]).expect("no newline in go.mod")
}

/// Zips up to this size are read whole, so that their many small entries cost no seeks.
const ZIP_IN_MEMORY: u64 = 64 << 20;

/// Hash1 of a module zip, over its entry names as they are.
pub fn hash_zip(path: &Path) -> Result<String, DirHashError> {
    let io_err = |source| DirHashError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    if size > ZIP_IN_MEMORY {
        return open_zip_and_hash(BufReader::new(file), path, &mut |_, _| {}).map(|(h, _)| h);
    }
    let mut bytes = Vec::with_capacity(size as usize);
    BufReader::new(file)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    open_zip_and_hash(std::io::Cursor::new(bytes), path, &mut |_, _| {}).map(|(h, _)| h)
}

fn open_zip_and_hash<R: std::io::Read + std::io::Seek>(
    reader: R,
    path: &Path,
    visit: &mut dyn FnMut(&str, &[u8]),
) -> Result<(String, bool), DirHashError> {
    let archive = zip::ZipArchive::new(reader).map_err(|e| DirHashError::Zip {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    hash_zip_entries(archive, path, visit)
}

/// A module zip and the tree extracted from it, checked together: the zip's Hash1, and the
/// files of `dir` that differ from the zip, were added or are missing. When the zip's hash is
/// the pinned one and nothing differs, the tree has that hash too, without hashing it again:
/// its files are the zip's, byte for byte.
pub fn hash_zip_and_compare_dir(
    zip: &Path,
    dir: &Path,
    prefix: &str,
) -> Result<ZipAndDir, DirHashError> {
    let io_err = |source| DirHashError::Io {
        path: zip.to_owned(),
        source,
    };
    let file = File::open(zip).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let entry_prefix = format!("{prefix}/");
    let mut differences = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = Vec::new();
    let mut compare = |name: &str, content: &[u8]| {
        let Some(rel) = name.strip_prefix(&entry_prefix) else {
            differences.push(format!("zip entry {name} is outside {prefix}/"));
            return;
        };
        seen.insert(rel.to_owned());
        match same_bytes(&dir.join(rel), content, &mut buf) {
            Ok(true) => {}
            Ok(false) => differences.push(format!("{rel} differs from the zip")),
            Err(_) => differences.push(format!("{rel} is missing")),
        }
    };
    let (zip_hash, streamed) = if size > ZIP_IN_MEMORY {
        open_zip_and_hash(BufReader::new(file), zip, &mut compare)?
    } else {
        let mut bytes = Vec::with_capacity(size as usize);
        BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        open_zip_and_hash(std::io::Cursor::new(bytes), zip, &mut compare)?
    };
    if streamed {
        // Some entries were too large to hold: hash the tree itself.
        let dir_hash = hash_dir(dir, prefix)?;
        let differences = if dir_hash == zip_hash {
            Vec::new()
        } else {
            vec!["the tree's hash differs from the zip's".to_owned()]
        };
        return Ok(ZipAndDir {
            zip_hash,
            differences,
        });
    }
    for (rel, _) in dir_files(dir)? {
        if !seen.contains(&rel) {
            differences.push(format!("{rel} was added"));
        }
    }
    differences.sort();
    Ok(ZipAndDir {
        zip_hash,
        differences,
    })
}

/// Whether the file at `path` holds exactly `expected`, read into `buf` (reused between calls):
/// one byte more than expected is asked for, so that a longer file shows.
fn same_bytes(path: &Path, expected: &[u8], buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut file = File::open(path)?;
    buf.resize(expected.len() + 1, 0);
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled == expected.len() && buf[..filled] == *expected)
}

/// The outcome of [`hash_zip_and_compare_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipAndDir {
    pub zip_hash: String,
    /// Empty when the tree holds exactly the zip's files.
    pub differences: Vec<String>,
}

/// Hash1 over a zip's entries. `visit` sees the content of every entry that is held in memory
/// whole; the flag returned is true when some entry was streamed instead.
fn hash_zip_entries<R: std::io::Read + std::io::Seek>(
    mut archive: zip::ZipArchive<R>,
    path: &Path,
    visit: &mut dyn FnMut(&str, &[u8]),
) -> Result<(String, bool), DirHashError> {
    let mut streamed = false;
    let zip_err = |e: zip::result::ZipError| DirHashError::Zip {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let io_err = |source| DirHashError::Io {
        path: path.to_owned(),
        source,
    };
    let mut inflater = libdeflater::Decompressor::new();
    let (mut raw, mut plain) = (Vec::new(), Vec::new());
    let mut files = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        // Small deflated entries are inflated whole with libdeflate; anything else streams.
        let (name, digest) = {
            let mut entry = archive.by_index_raw(i).map_err(zip_err)?;
            let name = entry_name(entry.name_raw(), path, i)?;
            let method = entry.compression();
            let usize_ok =
                entry.size() <= ZIP_IN_MEMORY && entry.compressed_size() <= ZIP_IN_MEMORY;
            match method {
                zip::CompressionMethod::Stored if usize_ok => {
                    raw.clear();
                    entry.read_to_end(&mut raw).map_err(io_err)?;
                    visit(&name, &raw);
                    (name, Some(Sha256Digest::of(&raw)))
                }
                zip::CompressionMethod::Deflated if usize_ok => {
                    raw.clear();
                    entry.read_to_end(&mut raw).map_err(io_err)?;
                    plain.resize(entry.size() as usize, 0);
                    let n = inflater.deflate_decompress(&raw, &mut plain).map_err(|e| {
                        DirHashError::Zip {
                            path: path.to_owned(),
                            message: format!("entry {name}: {e:?}"),
                        }
                    })?;
                    if n != plain.len() {
                        return Err(DirHashError::Zip {
                            path: path.to_owned(),
                            message: format!(
                                "entry {name} inflates to {n} bytes, not the {} it declares",
                                plain.len()
                            ),
                        });
                    }
                    visit(&name, &plain);
                    (name, Some(Sha256Digest::of(&plain)))
                }
                _ => (name, None),
            }
        };
        let digest = match digest {
            Some(d) => d,
            None => {
                streamed = true;
                Sha256Digest::of_reader(&mut archive.by_index(i).map_err(zip_err)?)
                    .map_err(io_err)?
            }
        };
        files.push((name, digest));
    }
    Ok((hash1(files)?, streamed))
}

fn entry_name(raw: &[u8], path: &Path, i: usize) -> Result<String, DirHashError> {
    String::from_utf8(raw.to_vec()).map_err(|_| DirHashError::Zip {
        path: path.to_owned(),
        message: format!("entry {i} has a name that is not UTF-8"),
    })
}

/// Hash1 of the files under `dir`, named `<prefix>/<relative path>` (prefix is usually
/// `<module>@<version>`). Files are hashed in parallel.
pub fn hash_dir(dir: &Path, prefix: &str) -> Result<String, DirHashError> {
    let files = dir_files(dir)?;
    let hashed: Result<Vec<(String, Sha256Digest)>, DirHashError> = files
        .par_iter()
        .map(|(rel, path)| {
            let digest = Sha256Digest::of_file(path).map_err(|source| DirHashError::Io {
                path: path.clone(),
                source,
            })?;
            let name = if prefix.is_empty() {
                rel.clone()
            } else {
                format!("{prefix}/{rel}")
            };
            Ok((name, digest))
        })
        .collect();
    hash1(hashed?)
}

/// Every non-directory under `dir`, as (slash-separated relative path, full path). Like Go's
/// `filepath.Walk`, symlinks are listed but not followed.
pub fn dir_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, DirHashError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| DirHashError::Io {
            path: e.path().map_or_else(|| dir.to_owned(), Path::to_owned),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("walk failed")),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays under its root");
        let rel = rel
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        out.push((rel, entry.path().to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_bytewise() {
        let d = Sha256Digest::of(b"");
        let a = hash1(vec![("b".into(), d), ("B".into(), d), ("a".into(), d)]).unwrap();
        let b = hash1(vec![("a".into(), d), ("B".into(), d), ("b".into(), d)]).unwrap();
        assert_eq!(a, b);
        assert!(hash1(vec![("a\nb".into(), d)]).is_err());
    }
}
