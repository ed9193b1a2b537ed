//! Debian packages: the `ar` container, the control paragraph, and the data tree.
//!
//! A `.deb` is an `ar` archive of `debian-binary` ("2.0"), `control.tar.*` and `data.tar.*`
//! (gzip, xz or zstd, as Debian and Ubuntu write them). [`inspect`] reads the control paragraph
//! so that a package can be checked against its pin (name, version, architecture) before it is
//! used; [`unpack_data`] writes the data tree through [`super::extract::untar_tree`], with no
//! maintainer script run.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::extract::{self, ExtractError, TreeOptions, TreeStats};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error(
        "{path}: not a Debian package ({problem}); delete it from the store and fetch it again"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// One deb822 paragraph: field names as written, values with continuation lines joined by
/// `\n`.
pub type Paragraph = BTreeMap<String, String>;

/// The paragraphs of a deb822 text (a control file, a Packages index, a Release file). Lines
/// starting with `#` are comments; a PGP armour around the text is skipped.
pub fn paragraphs(text: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut current = Paragraph::new();
    let mut last: Option<String> = None;
    let mut in_signature = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN PGP SIGNED MESSAGE") {
            continue;
        }
        if line.starts_with("-----BEGIN PGP SIGNATURE") {
            in_signature = true;
            continue;
        }
        if in_signature {
            if line.starts_with("-----END PGP SIGNATURE") {
                in_signature = false;
            }
            continue;
        }
        if line.starts_with("Hash:") && current.is_empty() && out.is_empty() && last.is_none() {
            // The armour header of a clear-signed file.
            continue;
        }
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            last = None;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(k) = &last {
                let v = current.entry(k.clone()).or_default();
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.insert(k.trim().to_owned(), v.trim().to_owned());
            last = Some(k.trim().to_owned());
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What a package says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebInfo {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub control: Paragraph,
}

fn corrupt(path: &Path, problem: impl Into<String>) -> DebError {
    DebError::Corrupt {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Calls `f` with the decompressed stream of the member whose name starts with `prefix`
/// (`control.tar`, `data.tar`), after checking `debian-binary`.
fn with_member<T>(
    path: &Path,
    prefix: &str,
    f: impl FnOnce(&mut dyn Read) -> Result<T, DebError>,
) -> Result<T, DebError> {
    let file = std::fs::File::open(path).map_err(|source| DebError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    let mut first = true;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| corrupt(path, format!("bad ar archive: {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if first {
            first = false;
            let mut version = String::new();
            if name != "debian-binary"
                || entry.read_to_string(&mut version).is_err()
                || !version.starts_with("2.")
            {
                return Err(corrupt(path, "its first member is not debian-binary 2.x"));
            }
            continue;
        }
        if name.starts_with(prefix) {
            let mut stream = extract::decompressed(BufReader::new(&mut entry))
                .map_err(|e| corrupt(path, format!("{name}: {e}")))?;
            return f(&mut stream);
        }
    }
    Err(corrupt(
        path,
        if first {
            "it is empty or not an ar archive".to_owned()
        } else {
            format!("it has no {prefix}.* member")
        },
    ))
}

/// Calls `f` on each member of the tar `stream` (name without a leading `./`) until it returns
/// a value; `what` names the tar in errors.
fn find_in_tar<T>(
    path: &Path,
    what: &str,
    stream: &mut dyn Read,
    mut f: impl FnMut(&Path, &mut tar::Entry<'_, &mut dyn Read>) -> Result<Option<T>, DebError>,
) -> Result<Option<T>, DebError> {
    let mut tar = tar::Archive::new(stream);
    let entries = tar
        .entries()
        .map_err(|e| corrupt(path, format!("{what}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(path, format!("{what}: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(path, format!("{what}: {e}")))?
            .into_owned();
        let name = name.strip_prefix(".").unwrap_or(&name).to_owned();
        if let Some(found) = f(&name, &mut entry)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Reads the control paragraph of the package at `path`.
pub fn inspect(path: &Path) -> Result<DebInfo, DebError> {
    with_member(path, "control.tar", |stream| {
        let control = find_in_tar(path, "control.tar", stream, |name, entry| {
            if name != Path::new("control") {
                return Ok(None);
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| corrupt(path, format!("control: {e}")))?;
            Ok(Some(text))
        })?
        .ok_or_else(|| corrupt(path, "control.tar has no control file"))?;
        let control = paragraphs(&control)
            .into_iter()
            .next()
            .ok_or_else(|| corrupt(path, "its control file is empty"))?;
        let field = |k: &str| {
            control
                .get(k)
                .cloned()
                .ok_or_else(|| corrupt(path, format!("its control file has no {k}")))
        };
        Ok(DebInfo {
            package: field("Package")?,
            version: field("Version")?,
            architecture: field("Architecture")?,
            control: control.clone(),
        })
    })
}

/// Unpacks the data tree of the package at `path` into `dest`.
pub fn unpack_data(path: &Path, dest: &Path, options: &TreeOptions) -> Result<TreeStats, DebError> {
    with_member(path, "data.tar", |stream| {
        extract::untar_tree(path, stream, dest, options).map_err(|e| match e {
            ExtractError::Io { source, .. }
                if source.kind() == io::ErrorKind::InvalidData
                    || source.kind() == io::ErrorKind::UnexpectedEof
                    || source.kind() == io::ErrorKind::Other =>
            {
                corrupt(path, format!("data.tar: {source}"))
            }
            e => e.into(),
        })
    })
}

/// Copies the regular file `member` (as named in the data tree, without a leading `./`) of the
/// package at `path` to `to`. Returns its size.
pub fn extract_member(path: &Path, member: &str, to: &Path) -> Result<u64, DebError> {
    with_member(path, "data.tar", |stream| {
        find_in_tar(path, "data.tar", stream, |name, entry| {
            if name != Path::new(member) || !entry.header().entry_type().is_file() {
                return Ok(None);
            }
            let mut f = std::fs::File::create(to).map_err(|source| DebError::Io {
                path: to.to_owned(),
                source,
            })?;
            io::copy(entry, &mut f)
                .map(Some)
                .map_err(|e| corrupt(path, format!("data.tar: {member}: {e}")))
        })?
        .ok_or_else(|| corrupt(path, format!("it holds no file {member}")))
    })
}

/// The bytes of the regular file `member` (as named in the data tree, without a leading `./`)
/// of the package at `path`, if it has one.
pub fn read_member(path: &Path, member: &str) -> Result<Option<Vec<u8>>, DebError> {
    with_member(path, "data.tar", |stream| {
        find_in_tar(path, "data.tar", stream, |name, entry| {
            if name != Path::new(member) || !entry.header().entry_type().is_file() {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            io::Read::read_to_end(entry, &mut bytes)
                .map(|_| Some(bytes))
                .map_err(|e| corrupt(path, format!("data.tar: {member}: {e}")))
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `.deb` with the given control fields and data files (path, contents).
    pub(crate) fn build_deb(out: &Path, control: &str, files: &[(&str, &[u8])]) {
        let targz = |entries: &[(&str, &[u8])]| {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            for (name, data) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o755);
                h.set_path(name).unwrap();
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            b.into_inner().unwrap().finish().unwrap()
        };
        let control_tar = targz(&[("./control", control.as_bytes())]);
        let data_tar = targz(files);
        let mut a = ar::Builder::new(std::fs::File::create(out).unwrap());
        for (name, data) in [
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", control_tar),
            ("data.tar.gz", data_tar),
        ] {
            let h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            a.append(&h, data.as_slice()).unwrap();
        }
    }

    #[test]
    fn reads_control_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("p.deb");
        build_deb(
            &deb,
            "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nDescription: hi\n more\n",
            &[("./usr/bin/hello", b"#!/bin/sh\n")],
        );
        let info = inspect(&deb).unwrap();
        assert_eq!(
            (info.package.as_str(), info.version.as_str()),
            ("hello", "1.0-1")
        );
        assert_eq!(info.control["Description"], "hi\nmore");
        let out = dir.path().join("root");
        std::fs::create_dir(&out).unwrap();
        let stats = unpack_data(&deb, &out, &TreeOptions::default()).unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(
            std::fs::read(out.join("usr/bin/hello")).unwrap(),
            b"#!/bin/sh\n"
        );
        let one = dir.path().join("one");
        extract_member(&deb, "usr/bin/hello", &one).unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), b"#!/bin/sh\n");
    }

    #[test]
    fn corrupt_packages_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("p.deb");
        std::fs::write(&deb, b"!<arch>\nnot really").unwrap();
        let err = inspect(&deb).unwrap_err().to_string();
        assert!(err.contains("not a Debian package"), "{err}");
        std::fs::write(&deb, b"PK\x03\x04zip").unwrap();
        assert!(
            inspect(&deb)
                .unwrap_err()
                .to_string()
                .contains("not a Debian package")
        );
    }

    #[test]
    fn parses_signed_release_paragraphs() {
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSHA256:\n \
                    abc 12 main/binary-amd64/Packages.xz\n-----BEGIN PGP SIGNATURE-----\nxyz\n\
                    -----END PGP SIGNATURE-----\n";
        let p = paragraphs(text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["Origin"], "Debian");
        assert_eq!(p[0]["SHA256"], "\nabc 12 main/binary-amd64/Packages.xz");
    }
}
