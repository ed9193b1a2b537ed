//! The initrd: a tree written as a deterministic newc `cpio`, gzip-compressed.
//!
//! Kata's `initrd_builder.sh` pipes `find . | cpio -H newc -o | gzip -9`, which keeps the
//! directory order, mtimes, owners, inode and device numbers of the build machine. Here every
//! entry is written in byte order of its path, with uid and gid 0, mtime SOURCE_DATE_EPOCH,
//! inode numbers counted from 1, device numbers 0 and one link each (a hard link becomes a copy),
//! and the gzip header carries no name and no time.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {problem}; an initrd holds only files, directories and symbolic links")]
    Unsupported {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("{path}: larger than 4 GiB, which newc cannot record")]
    TooLarge { path: PathBuf },
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitrdStats {
    pub entries: u32,
    pub bytes: u64,
}

/// Writes `tree` as a gzip-compressed newc archive to `out`.
pub fn write_initrd(tree: &Path, out: &Path, mtime: u32) -> Result<InitrdStats, InitrdError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| InitrdError::Io { path, source }
    };
    let file = std::fs::File::create(out).map_err(io_err(out))?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(io::BufWriter::new(file), flate2::Compression::best());
    let mut w = gz;
    let mut stats = InitrdStats::default();
    let walk = walkdir::WalkDir::new(tree).min_depth(1).follow_links(false);
    // Whole relative paths in byte order (not per-directory order): `a.b` before `a/b`.
    let mut entries = Vec::new();
    for e in walk {
        let e = e.map_err(|e| InitrdError::Io {
            path: tree.to_owned(),
            source: e.into(),
        })?;
        let rel = e.path().strip_prefix(tree).expect("under tree").to_owned();
        entries.push((rel, e.into_path()));
    }
    entries.sort_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });
    for (ino, (rel, path)) in (1u32..).zip(entries) {
        let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = meta.file_type();
        let perm = meta.permissions().mode() & 0o7777;
        let name = rel.to_string_lossy().into_owned();
        let header = cpio::newc::Builder::new(&name)
            .ino(ino)
            .uid(0)
            .gid(0)
            .mtime(mtime)
            .dev_major(0)
            .dev_minor(0)
            .rdev_major(0)
            .rdev_minor(0);
        let (header, data): (_, Vec<u8>) = if ft.is_dir() {
            (header.mode(0o040000 | perm).nlink(2), Vec::new())
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_err(&path))?;
            (
                header.mode(0o120000 | 0o777).nlink(1),
                target.into_os_string().into_encoded_bytes(),
            )
        } else if ft.is_file() {
            if meta.len() > u64::from(u32::MAX) {
                return Err(InitrdError::TooLarge { path });
            }
            (
                header.mode(0o100000 | perm).nlink(1),
                std::fs::read(&path).map_err(io_err(&path))?,
            )
        } else {
            return Err(InitrdError::Unsupported {
                path,
                problem: if ft.is_block_device() || ft.is_char_device() {
                    "a device node"
                } else {
                    "a fifo or socket"
                },
            });
        };
        let mut writer = header.write(&mut w, data.len() as u32);
        writer.write_all(&data).map_err(io_err(out))?;
        writer.finish().map_err(io_err(out))?;
        stats.entries += 1;
        stats.bytes += data.len() as u64;
    }
    cpio::newc::trailer(&mut w).map_err(io_err(out))?;
    let inner = w.finish().map_err(io_err(out))?;
    let file = inner.into_inner().map_err(|e| InitrdError::Io {
        path: out.to_owned(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(out))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn tree(root: &Path, order: &[&str], mtime: i64) {
        for name in order {
            let p = root.join(name);
            match *name {
                n if n.ends_with('/') => std::fs::create_dir_all(&p).unwrap(),
                "sbin/init" => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::os::unix::fs::symlink("/usr/bin/kata-agent", &p).unwrap();
                }
                _ => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, name.as_bytes()).unwrap();
                }
            }
        }
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
        for e in walkdir::WalkDir::new(root).min_depth(1) {
            let e = e.unwrap();
            if !e.path_is_symlink() {
                std::fs::File::open(e.path())
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
        }
    }

    fn names(initrd: &Path) -> Vec<(String, u32, u32, u32)> {
        let mut data = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(initrd).unwrap())
            .read_to_end(&mut data)
            .unwrap();
        let mut out = Vec::new();
        let mut rest: &[u8] = &data;
        loop {
            let r = cpio::newc::Reader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            out.push((e.name().to_owned(), e.ino(), e.uid(), e.mtime()));
            rest = r.finish().unwrap();
        }
        out
    }

    #[test]
    fn same_tree_same_bytes_whatever_the_order_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        tree(
            &a,
            &[
                "usr/bin/kata-agent",
                "etc/",
                "sbin/init",
                "usr/lib/x",
                "a.b",
            ],
            1_600_000_000,
        );
        tree(
            &b,
            &[
                "a.b",
                "usr/lib/x",
                "sbin/init",
                "etc/",
                "usr/bin/kata-agent",
            ],
            1_700_000_000,
        );
        let (ia, ib) = (dir.path().join("a.img"), dir.path().join("b.img"));
        let sa = write_initrd(&a, &ia, 1_234).unwrap();
        write_initrd(&b, &ib, 1_234).unwrap();
        assert_eq!(std::fs::read(&ia).unwrap(), std::fs::read(&ib).unwrap());
        assert_eq!(sa.entries, 9);
        let listed = names(&ia);
        let order: Vec<&str> = listed.iter().map(|(n, ..)| n.as_str()).collect();
        assert_eq!(
            order,
            [
                "a.b",
                "etc",
                "sbin",
                "sbin/init",
                "usr",
                "usr/bin",
                "usr/bin/kata-agent",
                "usr/lib",
                "usr/lib/x"
            ]
        );
        assert!(listed.iter().enumerate().all(|(i, (_, ino, uid, mtime))| {
            *ino == i as u32 + 1 && *uid == 0 && *mtime == 1_234
        }));
        // A different epoch gives different bytes: the time is really recorded.
        let ic = dir.path().join("c.img");
        write_initrd(&a, &ic, 99).unwrap();
        assert_ne!(std::fs::read(&ia).unwrap(), std::fs::read(&ic).unwrap());
    }
}
