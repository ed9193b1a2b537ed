//! Disk images and filesystem images: the partition table first, then each ext4 filesystem
//! file by file (content, type, mode, owner and times), and a dm-verity hash tree put down to the
//! data it hashes.
//!
//! The filesystem is read with `ext4-view`; the inode times, which it does not expose, come from
//! e2fsprogs' `debugfs` where it is installed (the rootfs recipe needs it anyway).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use super::explain::{Detail, Entry, members};
use crate::digest::Sha256Digest;

const SECTOR: u64 = 512;
/// ext4's superblock is 1024 bytes in, its magic 56 bytes into that.
const EXT4_MAGIC_AT: u64 = 1024 + 56;
const EXT4_MAGIC: [u8; 2] = [0x53, 0xef];
/// erofs' superblock is 1024 bytes in, starting with its magic.
const EROFS_MAGIC_AT: u64 = 1024;
const EROFS_MAGIC: [u8; 4] = [0xe2, 0xe1, 0xf5, 0xe0];
/// dm-verity as the rootfs recipe formats it: 4 KiB blocks, sha256.
const VERITY_BLOCK: u64 = 4096;
const VERITY_DIGEST: u64 = 32;

/// What a stretch of an image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contents {
    Ext4,
    Erofs,
    Other,
}

impl Contents {
    fn name(self) -> &'static str {
        match self {
            Contents::Ext4 => "ext4",
            Contents::Erofs => "erofs",
            Contents::Other => "no filesystem",
        }
    }
}

/// One partition of a DOS partition table, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    index: usize,
    start: u64,
    size: u64,
    sys: u8,
    contents: Contents,
}

impl Part {
    fn label(&self) -> String {
        format!(
            "partition {} ({}, {} at {})",
            self.index,
            self.contents.name(),
            mib(self.size),
            mib(self.start)
        )
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// How an image is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// A filesystem from byte 0.
    Bare(Contents),
    /// A DOS partition table: its disk identifier and partitions.
    Dos { disk_id: u32, parts: Vec<Part> },
}

fn read_at(f: &mut File, at: u64, buf: &mut [u8]) -> io::Result<()> {
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(buf)
}

fn contents_at(f: &mut File, at: u64) -> Contents {
    let mut ext4 = [0; 2];
    if read_at(f, at + EXT4_MAGIC_AT, &mut ext4).is_ok() && ext4 == EXT4_MAGIC {
        return Contents::Ext4;
    }
    let mut erofs = [0; 4];
    if read_at(f, at + EROFS_MAGIC_AT, &mut erofs).is_ok() && erofs == EROFS_MAGIC {
        return Contents::Erofs;
    }
    Contents::Other
}

/// The layout of `f`, when it is a filesystem or a partitioned disk.
fn layout(f: &mut File) -> Option<Layout> {
    let len = f.metadata().ok()?.len();
    match contents_at(f, 0) {
        Contents::Other => {}
        c => return Some(Layout::Bare(c)),
    }
    let header = mbrman::MBRHeader::read_from(f).ok()?;
    let mut parts = Vec::new();
    for (index, p) in header.iter() {
        if p.is_unused() {
            continue;
        }
        let (start, size) = (
            u64::from(p.starting_lba) * SECTOR,
            u64::from(p.sectors) * SECTOR,
        );
        if size == 0 || start + size > len {
            return None;
        }
        parts.push(Part {
            index,
            start,
            size,
            sys: p.sys,
            contents: contents_at(f, start),
        });
    }
    // Sector 0 of any file may end in 0x55aa by chance: a disk image holds a filesystem.
    let holds_filesystem = parts.iter().any(|p| p.contents != Contents::Other);
    holds_filesystem.then(|| Layout::Dos {
        disk_id: u32::from_le_bytes(header.disk_signature),
        parts,
    })
}

/// Explains two images, or returns `None` when they are not both images.
pub fn explain(a: &Path, b: &Path) -> Option<Vec<Detail>> {
    let (mut fa, mut fb) = (File::open(a).ok()?, File::open(b).ok()?);
    let (la, lb) = (layout(&mut fa)?, layout(&mut fb)?);
    let mut out = Vec::new();
    match (&la, &lb) {
        (Layout::Bare(ca), Layout::Bare(cb)) if ca == cb => {
            let len = fa.metadata().ok()?.len();
            let whole = Part {
                index: 0,
                start: 0,
                size: len,
                sys: 0,
                contents: *ca,
            };
            out.extend(filesystem(a, b, &whole, "filesystem"));
        }
        (
            Layout::Dos {
                disk_id: ia,
                parts: pa,
            },
            Layout::Dos {
                disk_id: ib,
                parts: pb,
            },
        ) => out.extend(disk(a, b, (&mut fa, &mut fb), (*ia, pa), (*ib, pb))),
        _ => {
            out.push(Detail::Partition {
                partition: "layout".into(),
                note: format!("{} → {}", describe(&la), describe(&lb)),
            });
        }
    }
    Some(super::explain::or_unavailable(
        out,
        "the partition table and every partition are the same: bytes outside the partitions \
         differ",
    ))
}

fn describe(l: &Layout) -> String {
    match l {
        Layout::Bare(c) => format!("a bare {} image", c.name()),
        Layout::Dos { parts, .. } => {
            format!("a DOS-partitioned disk of {} partitions", parts.len())
        }
    }
}

fn disk(
    a: &Path,
    b: &Path,
    (fa, fb): (&mut File, &mut File),
    (ia, pa): (u32, &[Part]),
    (ib, pb): (u32, &[Part]),
) -> Vec<Detail> {
    let mut out = Vec::new();
    if ia != ib {
        out.push(Detail::Partition {
            partition: "partition table".into(),
            note: format!("disk identifier {ia:#010x} → {ib:#010x}"),
        });
    }
    for index in 1..=4 {
        let (x, y) = (
            pa.iter().find(|p| p.index == index),
            pb.iter().find(|p| p.index == index),
        );
        match (x, y) {
            (None, None) => {}
            (Some(x), None) => out.push(Detail::Partition {
                partition: x.label(),
                note: "only in A".into(),
            }),
            (None, Some(y)) => out.push(Detail::Partition {
                partition: y.label(),
                note: "only in B".into(),
            }),
            (Some(x), Some(y)) if (x.start, x.size, x.sys) != (y.start, y.size, y.sys) => {
                out.push(Detail::Partition {
                    partition: format!("partition {index}"),
                    note: format!(
                        "{} at {}, type {:#04x} → {} at {}, type {:#04x}",
                        mib(x.size),
                        mib(x.start),
                        x.sys,
                        mib(y.size),
                        mib(y.start),
                        y.sys
                    ),
                })
            }
            (Some(x), Some(_)) => {
                if same_bytes(fa, fb, x.start, x.size).unwrap_or(false) {
                    continue;
                }
                if x.contents != Contents::Other {
                    out.extend(filesystem(a, b, x, &x.label()));
                    continue;
                }
                let note = match verity_data_of(x, pa) {
                    Some(data) if differs(&out, data) => format!(
                        "a dm-verity hash tree over partition {} (by its place and its size, \
                         enough for the {} blocks of 4 KiB): it follows from partition {}'s \
                         data, which differs",
                        data.index,
                        data.size / VERITY_BLOCK,
                        data.index
                    ),
                    Some(data) => format!(
                        "a dm-verity hash tree over partition {}, whose data is the same: the \
                         salt or the hash parameters differ",
                        data.index
                    ),
                    None => match first_difference(fa, fb, x.start, x.size) {
                        Ok(Some(at)) => {
                            format!("bytes differ, first at byte {at} of the partition")
                        }
                        _ => "bytes differ".into(),
                    },
                };
                out.push(Detail::Partition {
                    partition: x.label(),
                    note,
                });
            }
        }
    }
    out
}

/// Whether `out` already says that partition `p` differs.
fn differs(out: &[Detail], p: &Part) -> bool {
    let label = p.label();
    out.iter().any(|d| match d {
        Detail::Member { archive, .. } | Detail::MoreMembers { archive, .. } => *archive == label,
        Detail::Partition { partition, .. } => *partition == label,
        _ => false,
    })
}

/// The size of a dm-verity hash tree (no superblock) over `data_blocks` blocks.
fn verity_tree_size(data_blocks: u64) -> u64 {
    let per_block = VERITY_BLOCK / VERITY_DIGEST;
    let (mut level, mut blocks) = (data_blocks, 0);
    loop {
        level = level.div_ceil(per_block);
        blocks += level;
        if level <= 1 {
            return blocks * VERITY_BLOCK;
        }
    }
}

/// The filesystem partition that `p` is the dm-verity hash tree of: the one right before it, when
/// `p` has room for a tree over it.
fn verity_data_of<'a>(p: &Part, parts: &'a [Part]) -> Option<&'a Part> {
    let data = parts
        .iter()
        .filter(|d| d.contents != Contents::Other && d.start + d.size <= p.start)
        .max_by_key(|d| d.start)?;
    (p.size >= verity_tree_size(data.size / VERITY_BLOCK)).then_some(data)
}

/// The top block of each dm-verity hash tree in the image at `path` (by [`verity_data_of`]), with
/// its partition's label: the root hash is sha256 over the salt and this block.
pub fn verity_top_blocks(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let Some(Layout::Dos { parts, .. }) = layout(&mut f) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in parts.iter().filter(|p| p.contents == Contents::Other) {
        if verity_data_of(p, &parts).is_some() {
            let mut block = vec![0; VERITY_BLOCK as usize];
            if read_at(&mut f, p.start, &mut block).is_ok() {
                out.push((p.label(), block));
            }
        }
    }
    out
}

const CHUNK: usize = 1 << 20;

fn same_bytes(fa: &mut File, fb: &mut File, at: u64, len: u64) -> io::Result<bool> {
    Ok(first_difference(fa, fb, at, len)?.is_none())
}

/// The first offset (from `at`) where the two files differ within `len` bytes.
fn first_difference(fa: &mut File, fb: &mut File, at: u64, len: u64) -> io::Result<Option<u64>> {
    let (mut ba, mut bb) = (vec![0; CHUNK], vec![0; CHUNK]);
    let mut done = 0;
    while done < len {
        let n = CHUNK.min((len - done) as usize);
        read_at(fa, at + done, &mut ba[..n])?;
        read_at(fb, at + done, &mut bb[..n])?;
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(done + i as u64));
        }
        done += n as u64;
    }
    Ok(None)
}

/// A partition of an image file, as ext4-view reads it.
struct Window {
    file: File,
    start: u64,
    len: u64,
}

impl ext4_view::Ext4Read for Window {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        if start_byte + dst.len() as u64 > self.len {
            return Err(format!(
                "read of {} bytes at {start_byte} goes past the partition's {} bytes",
                dst.len(),
                self.len
            )
            .into());
        }
        read_at(&mut self.file, self.start + start_byte, dst)?;
        Ok(())
    }
}

/// Every path of the ext4 filesystem in `part` of `image`, with what it is.
fn ext4_entries(image: &Path, part: &Part) -> Result<BTreeMap<String, Entry>, String> {
    let window = Window {
        file: File::open(image).map_err(|e| e.to_string())?,
        start: part.start,
        len: part.size,
    };
    let fs = ext4_view::Ext4::load(Box::new(window)).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let mut dirs = vec![ext4_view::PathBuf::new("/")];
    while let Some(dir) = dirs.pop() {
        for entry in fs.read_dir(&dir).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| e.to_string())?;
            let (kind, bytes) = match meta.file_type() {
                ext4_view::FileType::Directory => {
                    dirs.push(path.clone());
                    ("directory", Vec::new())
                }
                ext4_view::FileType::Regular => {
                    ("file", fs.read(&path).map_err(|e| e.to_string())?)
                }
                ext4_view::FileType::Symlink => (
                    "symlink",
                    fs.read_link(&path)
                        .map_err(|e| e.to_string())?
                        .as_ref()
                        .to_vec(),
                ),
                _ => ("special file", Vec::new()),
            };
            let text = String::from_utf8_lossy(path.as_ref()).into_owned();
            out.insert(
                text,
                Entry {
                    kind,
                    sha256: Sha256Digest::of(&bytes),
                    mode: u32::from(meta.mode()),
                    owner: (u64::from(meta.uid()), u64::from(meta.gid())),
                    times: Vec::new(),
                },
            );
        }
    }
    Ok(out)
}

/// The inode times of `paths` in the ext4 filesystem at `offset` of `image`, from `debugfs`; `None`
/// when debugfs cannot be run.
fn ext4_times(
    image: &Path,
    offset: u64,
    paths: &[&String],
) -> Option<BTreeMap<String, Vec<(&'static str, i64)>>> {
    let mut script = tempfile::NamedTempFile::new().ok()?;
    for p in paths
        .iter()
        .filter(|p| !p.contains('"') && !p.contains('\n'))
    {
        use std::io::Write;
        writeln!(script, "stat \"{p}\"").ok()?;
    }
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(script.path())
        .arg(format!("{}?offset={offset}", image.display()))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_stats(&String::from_utf8_lossy(&out.stdout)))
}

/// `debugfs -f` output of `stat` commands: each block starts with the echoed command.
fn parse_stats(text: &str) -> BTreeMap<String, Vec<(&'static str, i64)>> {
    let mut out: BTreeMap<String, Vec<(&'static str, i64)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("debugfs: stat ") {
            current = Some(cmd.trim_matches('"').to_owned());
            continue;
        }
        let Some(path) = &current else { continue };
        let line = line.trim_start();
        for name in ["ctime", "atime", "mtime", "crtime"] {
            let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(": 0x")) else {
                continue;
            };
            let hex = rest.split(':').next().unwrap_or("");
            if let Ok(secs) = i64::from_str_radix(hex, 16) {
                out.entry(path.clone()).or_default().push((name, secs));
            }
        }
    }
    out
}

fn filesystem(a: &Path, b: &Path, part: &Part, label: &str) -> Vec<Detail> {
    if part.contents != Contents::Ext4 {
        let what = part.contents.name();
        return vec![Detail::Partition {
            partition: label.to_owned(),
            note: format!("the {what} filesystems differ; kata-repro reads only ext4 file by file"),
        }];
    }
    let (mut ea, mut eb) = match (ext4_entries(a, part), ext4_entries(b, part)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            return vec![Detail::Partition {
                partition: label.to_owned(),
                note: format!("the ext4 filesystem could not be read: {e}"),
            }];
        }
    };
    let both: Vec<&String> = ea.keys().filter(|k| eb.contains_key(*k)).collect();
    let times = (
        ext4_times(a, part.start, &both),
        ext4_times(b, part.start, &both),
    );
    let timed = matches!(times, (Some(_), Some(_)));
    if let (Some(ta), Some(tb)) = times {
        for (entries, times) in [(&mut ea, ta), (&mut eb, tb)] {
            for (path, t) in times {
                if let Some(e) = entries.get_mut(&path) {
                    e.times = t;
                }
            }
        }
    }
    let mut out = members(label, &ea, &eb);
    if let [Detail::Unavailable { .. }] = out[..] {
        out = vec![Detail::Partition {
            partition: label.to_owned(),
            note: format!(
                "every path, content, type, mode, owner{} is the same: the filesystem's own \
                 metadata differs (superblock, allocation, directory order)",
                if timed { " and time" } else { "" }
            ),
        }];
    }
    if !timed {
        out.push(Detail::Unavailable {
            reason: format!(
                "{label}: inode times not compared: debugfs (e2fsprogs) could not be run"
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verity_tree_sizes_follow_the_levels() {
        assert_eq!(verity_tree_size(1), 4096);
        assert_eq!(verity_tree_size(128), 4096);
        assert_eq!(verity_tree_size(129), 3 * 4096);
        assert_eq!(verity_tree_size(128 * 128 + 1), (129 + 2 + 1) * 4096);
    }

    #[test]
    fn debugfs_stats_are_parsed_per_path() {
        let text = "debugfs 1.47.0 (5-Feb-2023)\ndebugfs: stat \"/etc/a\"\nInode: 13   Type: regular\n \
                    ctime: 0x0000000a:00000000 -- x\n atime: 0x0000000b:00000000 -- x\n \
                    mtime: 0x0000000c:00000000 -- x\ncrtime: 0x0000000d:00000000 -- x\n\
                    debugfs: stat \"/etc\"\n mtime: 0x00000010:00000000 -- x\n";
        let t = parse_stats(text);
        assert_eq!(
            t["/etc/a"],
            [("ctime", 10), ("atime", 11), ("mtime", 12), ("crtime", 13)]
        );
        assert_eq!(t["/etc"], [("mtime", 16)]);
    }
}
