//! A file read once: the value parsed from it, where it was read, and the sha256 of the very
//! bytes that were parsed. Whatever records or keys on a file's digest takes it from here, so
//! that the digest and the parsed value can never come from two different reads.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;

#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    pub value: T,
}

impl<T> Deref for Loaded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Loaded<T> {
    /// Reads `path` once, as UTF-8 text, and parses it with `parse`.
    pub fn read<E>(
        path: &Path,
        read_error: impl FnOnce(std::io::Error) -> E,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Self, E> {
        let text = std::fs::read(path).and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        });
        let text = text.map_err(read_error)?;
        Ok(Self {
            path: path.to_owned(),
            sha256: Sha256Digest::of(text.as_bytes()),
            value: parse(&text)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_that_of_the_bytes_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "42\n").unwrap();
        let loaded: Loaded<u32> = Loaded::read(
            &path,
            |e| e.to_string(),
            |t| t.trim().parse().map_err(|_| "nan".into()),
        )
        .unwrap();
        assert_eq!(*loaded, 42);
        assert_eq!(loaded.sha256, Sha256Digest::of(b"42\n"));
        assert_eq!(loaded.path, path);
    }

    #[test]
    fn unreadable_and_non_utf8_files_are_read_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Loaded::<()>::read(&dir.path().join("none"), |_| "read", |_| Ok(()));
        assert_eq!(missing.unwrap_err(), "read");
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let binary = Loaded::<()>::read(&path, |_| "read", |_| Err("parse"));
        assert_eq!(binary.unwrap_err(), "read");
    }
}
