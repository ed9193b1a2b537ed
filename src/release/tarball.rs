//! The release tarball writer: a tree of members written as a `.tar.zst` whose bytes depend on
//! the members alone.
//!
//! Kata's `kata_tar_zstd` tars a directory as the build left it: readdir order, the files' mtimes
//! and the modes the build's umask gave. Here the members are given, not found: each has its
//! path, type and mode from the layout, and the writer puts them in path order (each
//! directory's names in byte order, a directory before what it holds), with mtime
//! SOURCE_DATE_EPOCH, uid and gid 0 and empty owner names, GNU headers (long names as GNU long
//! name entries, no atime or ctime), and one zstd frame at a fixed level. zstd always runs in
//! its multi-threaded mode, whose output is the same for every number of worker threads.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// What a member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file whose bytes are read from `source`.
    File {
        source: PathBuf,
    },
    /// A symbolic link to `target`, stored as written.
    Symlink {
        target: String,
    },
}

/// One member: its path inside the tarball (relative, `/`-separated, without `./`), its kind and
/// its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
}

impl Member {
    pub fn dir(path: &str, mode: u32) -> Self {
        Member {
            path: path.to_owned(),
            kind: Kind::Dir,
            mode,
        }
    }

    pub fn file(path: &str, source: impl Into<PathBuf>, mode: u32) -> Self {
        Member {
            path: path.to_owned(),
            kind: Kind::File {
                source: source.into(),
            },
            mode,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Self {
        Member {
            path: path.to_owned(),
            kind: Kind::Symlink {
                target: target.to_owned(),
            },
            mode: 0o777,
        }
    }
}

/// How the tarball is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Every member's mtime: SOURCE_DATE_EPOCH.
    pub mtime: u64,
    /// The zstd level.
    pub level: i32,
    /// zstd worker threads (at least 1); the output does not depend on it.
    pub threads: u32,
    /// The mode of a directory no member names but some member's path goes through.
    pub implied_dir_mode: u32,
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub members: usize,
    /// The bytes of file data before compression.
    pub file_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "member `{path}`: {problem}; member paths are relative, `/`-separated, with no `.`, `..` \
         or empty components"
    )]
    BadPath { path: String, problem: &'static str },
    #[error("member `{path}` is given twice (as {first} and as {second})")]
    Duplicate {
        path: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("member `{path}` lies under `{parent}`, which is not a directory")]
    UnderNonDir { path: String, parent: String },
    #[error("member `{path}`: mode {mode:#o} has bits beyond 0o7777")]
    BadMode { path: String, mode: u32 },
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Dir => "a directory",
        Kind::File { .. } => "a file",
        Kind::Symlink { .. } => "a symbolic link",
    }
}

fn check_path(path: &str) -> Result<(), TarballError> {
    let bad = |problem| {
        Err(TarballError::BadPath {
            path: path.to_owned(),
            problem,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("has an empty, `.` or `..` component");
    }
    Ok(())
}

/// The members in the order they are written, with every implied parent directory added: the
/// key is the path's components, so a directory sorts before everything under it and the names
/// in one directory sort by their bytes.
pub fn plan(members: &[Member], implied_dir_mode: u32) -> Result<Vec<Member>, TarballError> {
    let mut by_path: BTreeMap<Vec<String>, Member> = BTreeMap::new();
    for m in members {
        check_path(&m.path)?;
        if m.mode & !0o7777 != 0 {
            return Err(TarballError::BadMode {
                path: m.path.clone(),
                mode: m.mode,
            });
        }
        let key: Vec<String> = m.path.split('/').map(str::to_owned).collect();
        if let Some(prev) = by_path.get(&key) {
            return Err(TarballError::Duplicate {
                path: m.path.clone(),
                first: kind_name(&prev.kind),
                second: kind_name(&m.kind),
            });
        }
        by_path.insert(key, m.clone());
    }
    let paths: Vec<Vec<String>> = by_path.keys().cloned().collect();
    for key in paths {
        for n in 1..key.len() {
            let parent = key[..n].to_vec();
            match by_path.get(&parent) {
                Some(p) if p.kind != Kind::Dir => {
                    return Err(TarballError::UnderNonDir {
                        path: key.join("/"),
                        parent: parent.join("/"),
                    });
                }
                Some(_) => {}
                None => {
                    let path = parent.join("/");
                    by_path.insert(parent, Member::dir(&path, implied_dir_mode));
                }
            }
        }
    }
    Ok(by_path.into_values().collect())
}

/// The name a member is stored under: `./path`, with a trailing `/` for a directory, as
/// `tar -C DIR .` stores them; the tree's root is `./`.
fn stored_name(m: &Member) -> String {
    match m.kind {
        Kind::Dir => format!("./{}/", m.path),
        _ => format!("./{}", m.path),
    }
}

fn header(mode: u32, mtime: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

/// Writes `members` (with their implied parents, and the root `./`) as a `.tar.zst` to `out`,
/// through a temporary file in the same directory: `out` is either the whole tarball or absent.
pub fn write(members: &[Member], out: &Path, opts: &Options) -> Result<Stats, TarballError> {
    let planned = plan(members, opts.implied_dir_mode)?;
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| TarballError::Io { path, source }
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(out))?;
    let file = tmp.as_file().try_clone().map_err(io_at(out))?;
    let stats = write_to(&planned, io::BufWriter::new(file), opts).map_err(|e| match e {
        TarballError::Io { path, source } if path.as_os_str().is_empty() => TarballError::Io {
            path: out.to_owned(),
            source,
        },
        e => e,
    })?;
    tmp.as_file().sync_all().map_err(io_at(out))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_at(out))?;
    }
    tmp.persist(out).map_err(|e| TarballError::Io {
        path: out.to_owned(),
        source: e.error,
    })?;
    Ok(stats)
}

/// The tar stream of `planned` (already in order), zstd-compressed into `w`. Errors writing to
/// `w` carry an empty path, which [`write`] replaces with the output's.
fn write_to<W: Write>(planned: &[Member], w: W, opts: &Options) -> Result<Stats, TarballError> {
    let sink = |source| TarballError::Io {
        path: PathBuf::new(),
        source,
    };
    let mut enc = zstd::stream::write::Encoder::new(w, opts.level).map_err(sink)?;
    enc.multithread(opts.threads.max(1)).map_err(sink)?;
    enc.include_checksum(true).map_err(sink)?;
    let mut tar = tar::Builder::new(enc);
    let mut stats = Stats::default();
    let mut root = header(0o755, opts.mtime, tar::EntryType::Directory);
    append_raw(&mut tar, &mut root, "./", None, io::empty()).map_err(sink)?;
    stats.members += 1;
    for m in planned {
        let name = stored_name(m);
        match &m.kind {
            Kind::Dir => {
                let mut h = header(m.mode, opts.mtime, tar::EntryType::Directory);
                append_raw(&mut tar, &mut h, &name, None, io::empty()).map_err(sink)?;
            }
            Kind::Symlink { target } => {
                let mut h = header(m.mode, opts.mtime, tar::EntryType::Symlink);
                append_raw(&mut tar, &mut h, &name, Some(target), io::empty()).map_err(sink)?;
            }
            Kind::File { source } => {
                let f = std::fs::File::open(source).map_err(io_at_path(source))?;
                let len = f.metadata().map_err(io_at_path(source))?.len();
                let mut h = header(m.mode, opts.mtime, tar::EntryType::Regular);
                h.set_size(len);
                // A file that changes size while it is read would give a corrupt member.
                let mut reader = LengthChecked {
                    inner: f.take(len),
                    left: len,
                };
                append_raw(&mut tar, &mut h, &name, None, &mut reader)
                    .map_err(io_at_path(source))?;
                if reader.left != 0 {
                    return Err(TarballError::Io {
                        path: source.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was read",
                        ),
                    });
                }
                stats.file_bytes += len;
            }
        }
        stats.members += 1;
    }
    let enc = tar.into_inner().map_err(sink)?;
    let mut w = enc.finish().map_err(sink)?;
    w.flush().map_err(sink)?;
    Ok(stats)
}

/// Appends one member with `name` (and `link`) stored byte for byte: the `tar` crate's own
/// path handling would drop the `./` that Kata's members carry. A name or link longer than its
/// 100-byte field goes first as a GNU long name (`L`) or long link (`K`) entry, as GNU tar writes
/// them.
fn append_raw<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &str,
    link: Option<&str>,
    data: R,
) -> io::Result<()> {
    let gnu = h.as_gnu_mut().expect("a GNU header");
    let field = gnu.name.len();
    if name.len() > field {
        long_entry(tar, b'L', name)?;
    }
    let n = name.len().min(field);
    h.as_gnu_mut().expect("a GNU header").name[..n].copy_from_slice(&name.as_bytes()[..n]);
    if let Some(link) = link {
        let field = h.as_gnu_mut().expect("a GNU header").linkname.len();
        if link.len() > field {
            long_entry(tar, b'K', link)?;
        }
        let n = link.len().min(field);
        h.as_gnu_mut().expect("a GNU header").linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
    }
    h.set_cksum();
    tar.append(h, data)
}

/// A GNU `././@LongLink` entry carrying `value` and its terminating NUL.
fn long_entry<W: Write>(tar: &mut tar::Builder<W>, kind: u8, value: &str) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    let tag = b"././@LongLink";
    h.as_gnu_mut().expect("a GNU header").name[..tag.len()].copy_from_slice(tag);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    tar.append(&h, value.as_bytes().chain(&[0u8][..]))
}

fn io_at_path(path: &Path) -> impl FnOnce(io::Error) -> TarballError + '_ {
    move |source| TarballError::Io {
        path: path.to_owned(),
        source,
    }
}

struct LengthChecked<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for LengthChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(threads: u32) -> Options {
        Options {
            mtime: 1_784_556_680,
            level: 19,
            threads,
            implied_dir_mode: 0o755,
        }
    }

    #[test]
    fn plan_adds_parents_and_orders_by_component() {
        let m = vec![
            Member::symlink("opt/kata/share/a.b", "x"),
            Member::dir("opt/kata/share/a", 0o700),
            Member::file("opt/kata/share/a/z", "/dev/null", 0o644),
        ];
        let p = plan(&m, 0o755).unwrap();
        let names: Vec<(&str, u32)> = p.iter().map(|m| (m.path.as_str(), m.mode)).collect();
        assert_eq!(
            names,
            [
                ("opt", 0o755),
                ("opt/kata", 0o755),
                ("opt/kata/share", 0o755),
                ("opt/kata/share/a", 0o700),
                ("opt/kata/share/a/z", 0o644),
                ("opt/kata/share/a.b", 0o777),
            ]
        );
    }

    #[test]
    fn plan_refuses_bad_paths_duplicates_and_files_as_parents() {
        for bad in ["", "/opt", "opt//x", "opt/../x", "./opt"] {
            let e = plan(&[Member::dir(bad, 0o755)], 0o755).unwrap_err();
            assert!(matches!(e, TarballError::BadPath { .. }), "{bad}: {e}");
        }
        let e = plan(&[Member::dir("a", 0o755), Member::symlink("a", "b")], 0o755).unwrap_err();
        assert_eq!(
            e.to_string(),
            "member `a` is given twice (as a directory and as a symbolic link)"
        );
        let e = plan(
            &[Member::symlink("a", "b"), Member::dir("a/c", 0o755)],
            0o755,
        )
        .unwrap_err();
        assert!(matches!(e, TarballError::UnderNonDir { .. }), "{e}");
        let e = plan(&[Member::dir("a", 0o40755)], 0o755).unwrap_err();
        assert!(matches!(e, TarballError::BadMode { .. }), "{e}");
    }

    #[test]
    fn written_members_read_back_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        std::fs::write(&src, b"kernel bytes").unwrap();
        let long = format!("opt/kata/share/{}", "n".repeat(120));
        let members = vec![
            Member::file(&long, &src, 0o644),
            Member::symlink("opt/kata/share/vmlinux.container", "vmlinux-6.12"),
        ];
        let out = dir.path().join("t.tar.zst");
        let stats = write(&members, &out, &opts(2)).unwrap();
        assert_eq!(stats.members, 6);
        assert_eq!(stats.file_bytes, 12);
        let mut ar =
            tar::Archive::new(zstd::Decoder::new(std::fs::File::open(&out).unwrap()).unwrap());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 1_784_556_680);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username().unwrap(), Some(""));
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            seen.push((
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.mode().unwrap(),
                link,
            ));
        }
        assert_eq!(seen[0], ("./".into(), 0o755, None));
        assert_eq!(seen[1], ("./opt/".into(), 0o755, None));
        assert_eq!(seen[4], (format!("./{long}"), 0o644, None));
        assert_eq!(
            seen[5],
            (
                "./opt/kata/share/vmlinux.container".into(),
                0o777,
                Some("vmlinux-6.12".into())
            )
        );
    }

    /// Large enough for zstd to cut it into several jobs at level 3, so that the worker count
    /// could show in the output if it were allowed to.
    #[test]
    fn same_bytes_for_every_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        let mut data = Vec::with_capacity(20 << 20);
        let mut x: u32 = 1;
        while data.len() < 20 << 20 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            data.extend_from_slice(&[b'a' + (x >> 28) as u8, b'0' + (x >> 29) as u8, b' ']);
        }
        std::fs::write(&src, &data).unwrap();
        let members = vec![Member::file("opt/kata/image", &src, 0o644)];
        let written: Vec<Vec<u8>> = [1, 2, 4]
            .into_iter()
            .map(|threads| {
                let out = dir.path().join(format!("t{threads}.tar.zst"));
                let o = Options {
                    level: 3,
                    ..opts(threads)
                };
                write(&members, &out, &o).unwrap();
                std::fs::read(&out).unwrap()
            })
            .collect();
        assert!(written[0].len() < data.len() / 2);
        assert!(written[0] == written[1] && written[1] == written[2]);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.tar.zst");
        let members = vec![Member::file("a", dir.path().join("missing"), 0o644)];
        let e = write(&members, &out, &opts(1)).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
