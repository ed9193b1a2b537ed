//! Typed digests. A digest is an algorithm plus a value, never a bare string.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

#[derive(Debug, thiserror::Error)]
#[error("`{value}` is not a sha256 digest: expected 64 lowercase hex characters")]
pub struct ParseDigestError {
    pub value: String,
}

impl Sha256Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Hashes everything `reader` yields, streaming.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Self> {
        let mut hasher = HashingWriter::new(io::sink());
        io::copy(&mut reader, &mut hasher)?;
        Ok(hasher.finish().0)
    }

    /// Hashes a file in large reads: the hashing, not the system calls, bounds it.
    pub fn of_file(path: &std::path::Path) -> io::Result<Self> {
        const CHUNK: usize = 256 * 1024;
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK]);
        }
        let mut file = std::fs::File::open(path)?;
        BUF.with_borrow_mut(|buf| {
            let mut hasher = Sha256::new();
            loop {
                match file.read(buf) {
                    Ok(0) => return Ok(Self(hasher.finalize().into())),
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDigestError {
            value: s.to_owned(),
        };
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes every byte it passes through and counts them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Returns the digest, the number of bytes written, and the inner writer.
    pub fn finish(self) -> (Sha256Digest, u64, W) {
        (
            Sha256Digest(self.hasher.finalize().into()),
            self.len,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One file of a directory tree, as [`tree_files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFile {
    /// Relative to the tree's root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Permission bits (`0o755`, `0o644`, …).
    pub mode: u32,
    /// For regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    /// For symbolic links: where the link points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Every file and symbolic link under `root` (not directories), in path order, with its path
/// relative to `root`, where `keep` says so.
pub fn tree_entries(
    root: &std::path::Path,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> io::Result<Vec<(String, walkdir::DirEntry)>> {
    let mut entries = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.map_err(io::Error::other)?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("walk stays under root")
            .to_string_lossy()
            .into_owned();
        if keep(&rel) {
            entries.push((rel, e));
        }
    }
    Ok(entries)
}

/// Every file and symlink under `root` (directories themselves are not listed), sorted by
/// path, files hashed in parallel. `keep` filters relative paths.
pub fn tree_files(
    root: &std::path::Path,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> io::Result<Vec<TreeFile>> {
    use rayon::prelude::*;
    use std::os::unix::fs::PermissionsExt;
    let entries: Vec<(String, std::path::PathBuf)> = tree_entries(root, keep)?
        .into_iter()
        .map(|(rel, e)| (rel, e.into_path()))
        .collect();
    entries
        .par_iter()
        .map(|(rel, path)| {
            let meta = std::fs::symlink_metadata(path)?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(path)?;
                return Ok(TreeFile {
                    path: rel.clone(),
                    size: 0,
                    mode,
                    sha256: None,
                    link: Some(target.to_string_lossy().into_owned()),
                });
            }
            Ok(TreeFile {
                path: rel.clone(),
                size: meta.len(),
                mode,
                sha256: Some(Sha256Digest::of_file(path)?),
                link: None,
            })
        })
        .collect()
}

/// Every file and symlink under `root`, as [`tree_files`] lists them but without hashing.
pub fn tree_listing(root: &std::path::Path) -> io::Result<Vec<TreeFile>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.map_err(io::Error::other)?;
        if e.file_type().is_dir() {
            continue;
        }
        let meta = std::fs::symlink_metadata(e.path())?;
        let link = if meta.file_type().is_symlink() {
            Some(std::fs::read_link(e.path())?.to_string_lossy().into_owned())
        } else {
            None
        };
        out.push(TreeFile {
            path: e
                .path()
                .strip_prefix(root)
                .expect("walk stays under root")
                .to_string_lossy()
                .into_owned(),
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
            sha256: None,
            link,
        });
    }
    Ok(out)
}

/// One digest over a listing: paths, modes, contents and link targets.
pub fn tree_digest(files: &[TreeFile]) -> Sha256Digest {
    let mut hasher = Sha256::new();
    for f in files {
        let what = match (&f.sha256, &f.link) {
            (Some(d), _) => d.to_hex(),
            (None, Some(l)) => format!("link:{l}"),
            _ => String::new(),
        };
        hasher.update(format!("{:o} {what} {}\n", f.mode, f.path).as_bytes());
    }
    Sha256Digest(hasher.finalize().into())
}

/// A named input and its digest, e.g. `("toolchain:go", "sha256:…")`, as action keys and
/// manifests record it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct InputDigest {
    pub name: String,
    pub digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(Sha256Digest::of_reader(&b"abc"[..]).unwrap(), d);
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("abc".parse::<Sha256Digest>().is_err());
        assert!(
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
                .parse::<Sha256Digest>()
                .is_err()
        );
        assert!(
            "zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .parse::<Sha256Digest>()
                .is_err()
        );
    }
}
