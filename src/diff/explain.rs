//! Explaining why two files differ: ELF sections, archive members, text lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use object::{Object, ObjectSection};
use serde::Serialize;

use crate::digest::Sha256Digest;

/// Files above this size are not read whole for text or archive comparison.
const MAX_READ: u64 = 1 << 30;
/// Strings reported per side and section.
const MAX_STRINGS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Detail {
    Mode {
        a: String,
        b: String,
    },
    /// An ELF section whose bytes differ (or that only one side has).
    ElfSection {
        section: String,
        size_a: Option<u64>,
        size_b: Option<u64>,
        /// Printable strings only in A's section: embedded paths, dates and the like.
        only_a: Vec<String>,
        only_b: Vec<String>,
    },
    /// An archive member (or a file in a filesystem image) that differs, with what about it
    /// differs.
    Member {
        archive: String,
        member: String,
        change: Change,
    },
    /// A member of a release tarball whose content differs, explained as a loose file would
    /// be.
    Within {
        archive: String,
        member: String,
        change: Change,
        details: Vec<Detail>,
    },
    /// More members differ than are listed one by one: how many, by what differs.
    MoreMembers {
        archive: String,
        more: usize,
        counts: String,
    },
    /// A disk image's partition table or one partition: what differs there, or what it
    /// follows from.
    Partition {
        partition: String,
        note: String,
    },
    /// The first line that differs in a text file.
    Line {
        line: usize,
        a: String,
        b: String,
    },
    /// diffoscope's text output (`--deep`).
    Diffoscope {
        output: String,
    },
    Unavailable {
        reason: String,
    },
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detail::Mode { a, b } => write!(f, "mode {a} → {b}"),
            Detail::ElfSection {
                section,
                size_a,
                size_b,
                only_a,
                only_b,
            } => {
                write!(
                    f,
                    "ELF section {section} differs ({} → {})",
                    section_size(*size_a),
                    section_size(*size_b)
                )?;
                for s in only_a {
                    write!(f, "\n      - {s:?}")?;
                }
                for s in only_b {
                    write!(f, "\n      + {s:?}")?;
                }
                Ok(())
            }
            Detail::Member {
                archive,
                member,
                change,
            } => write!(f, "{archive} member {member}: {change}"),
            Detail::Within {
                archive,
                member,
                change,
                details,
            } => {
                write!(f, "{archive} member {member}: {change}")?;
                for d in details {
                    let text = d.to_string().replace('\n', "\n        ");
                    write!(f, "\n        {text}")?;
                }
                Ok(())
            }
            Detail::MoreMembers {
                archive,
                more,
                counts,
            } => write!(f, "{archive}: {more} more members differ ({counts})"),
            Detail::Partition { partition, note } => write!(f, "{partition}: {note}"),
            Detail::Line { line, a, b } => {
                write!(f, "line {line} differs\n      - {a:?}\n      + {b:?}")
            }
            Detail::Diffoscope { output } => write!(f, "diffoscope:\n{output}"),
            Detail::Unavailable { reason } => write!(f, "{reason}"),
        }
    }
}

/// A section's size as a difference names it: `N bytes`, or `absent`.
pub fn section_size(size: Option<u64>) -> String {
    size.map_or("absent".to_owned(), |s| format!("{s} bytes"))
}

/// What differs about one member present on both sides, or which side alone has it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Change {
    /// `A` or `B` when only that side has the member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub content: bool,
    /// The file types (`file`, `directory`, `symlink`, …), when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<[&'static str; 2]>,
    /// Permission bits (with the type bits, where the format records them), A then B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<[u32; 2]>,
    /// (uid, gid), A then B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<[(u64, u64); 2]>,
    /// Each time field that differs: (name, A, B), in seconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<(&'static str, i64, i64)>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(side) = self.only {
            return write!(f, "only in {side}");
        }
        let mut what = Vec::new();
        if let Some([a, b]) = self.kind {
            what.push(format!("{a} → {b}"));
        }
        if self.content {
            what.push("content differs".to_owned());
        }
        if let Some([a, b]) = self.mode {
            what.push(format!("mode {a:o} → {b:o}"));
        }
        for (name, a, b) in &self.times {
            what.push(format!("{name} {a} → {b}"));
        }
        if let Some([(ua, ga), (ub, gb)]) = self.owner {
            what.push(format!("owner {ua}:{ga} → {ub}:{gb}"));
        }
        write!(f, "{}", what.join(", "))
    }
}

/// Explains how `a` and `b` differ, by what they are.
pub fn explain(a: &Path, b: &Path) -> Vec<Detail> {
    if let Some(details) = super::image::explain(a, b) {
        return details;
    }
    if let Some(details) = super::tarball::explain(a, b) {
        return details;
    }
    let read = |p: &Path| -> Option<Vec<u8>> {
        let len = std::fs::metadata(p).ok()?.len();
        (len <= MAX_READ).then(|| std::fs::read(p).ok()).flatten()
    };
    let (Some(da), Some(db)) = (read(a), read(b)) else {
        return vec![Detail::Unavailable {
            reason: "too large to compare in memory".into(),
        }];
    };
    if da.starts_with(b"\x7fELF") && db.starts_with(b"\x7fELF") {
        return elf(&da, &db);
    }
    if let (Some(ma), Some(mb)) = (archive_members(&da), archive_members(&db)) {
        return members("archive", &ma, &mb);
    }
    if let (Ok(ta), Ok(tb)) = (std::str::from_utf8(&da), std::str::from_utf8(&db)) {
        return text(ta, tb);
    }
    let first = da
        .iter()
        .zip(&db)
        .position(|(x, y)| x != y)
        .unwrap_or(da.len().min(db.len()));
    vec![Detail::Unavailable {
        reason: format!(
            "binary files differ, first at byte {first} ({} and {} bytes); use --deep for diffoscope",
            da.len(),
            db.len()
        ),
    }]
}

fn elf(da: &[u8], db: &[u8]) -> Vec<Detail> {
    let (Ok(fa), Ok(fb)) = (object::File::parse(da), object::File::parse(db)) else {
        return vec![Detail::Unavailable {
            reason: "ELF files that could not be parsed".into(),
        }];
    };
    let sections = |f: &object::File<'_>| -> BTreeMap<String, Vec<u8>> {
        f.sections()
            .filter_map(|s| {
                let name = s.name().ok()?.to_owned();
                let data = s.data().ok()?.to_vec();
                Some((name, data))
            })
            .collect()
    };
    let (sa, sb) = (sections(&fa), sections(&fb));
    let names: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (x, y) = (sa.get(name), sb.get(name));
        if x == y {
            continue;
        }
        let (only_a, only_b) = match (x, y) {
            (Some(x), Some(y)) => differing_strings(x, y),
            _ => (vec![], vec![]),
        };
        out.push(Detail::ElfSection {
            section: name.clone(),
            size_a: x.map(|d| d.len() as u64),
            size_b: y.map(|d| d.len() as u64),
            only_a,
            only_b,
        });
    }
    or_unavailable(
        out,
        "every section is the same: the ELF headers or the layout differ",
    )
}

/// `details`, or why there are none.
pub(super) fn or_unavailable(details: Vec<Detail>, reason: &str) -> Vec<Detail> {
    if details.is_empty() {
        vec![Detail::Unavailable {
            reason: reason.to_owned(),
        }]
    } else {
        details
    }
}

/// Printable runs of at least 6 bytes.
fn strings(data: &[u8]) -> BTreeSet<&str> {
    data.split(|b| !(0x20..0x7f).contains(b) && *b != b'\t')
        .filter(|s| s.len() >= 6)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .collect()
}

/// The strings only one side has, those that look like paths or dates first.
fn differing_strings(a: &[u8], b: &[u8]) -> (Vec<String>, Vec<String>) {
    let (sa, sb) = (strings(a), strings(b));
    let pick = |mine: &BTreeSet<&str>, theirs: &BTreeSet<&str>| -> Vec<String> {
        let mut only: Vec<&str> = mine.difference(theirs).copied().collect();
        only.sort_by_key(|s| (!looks_telling(s), s.len()));
        only.into_iter()
            .take(MAX_STRINGS)
            .map(|s| s.chars().take(200).collect())
            .collect()
    };
    (pick(&sa, &sb), pick(&sb, &sa))
}

/// Embedded paths and timestamps are the usual causes.
fn looks_telling(s: &str) -> bool {
    s.contains('/')
        || s.contains(':') && s.chars().filter(char::is_ascii_digit).count() >= 4
        || [
            "Jan ", "Feb ", "Mar ", "Apr ", "May ", "Jun ", "Jul ", "Aug ", "Sep ", "Oct ", "Nov ",
            "Dec ", "UTC", "20",
        ]
        .iter()
        .any(|m| s.contains(m))
}

/// What one member of an archive, or one file of a filesystem, is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub kind: &'static str,
    /// Of the content, or of a link's target.
    pub sha256: Sha256Digest,
    pub mode: u32,
    pub owner: (u64, u64),
    /// The times the format records, by name, in seconds.
    pub times: Vec<(&'static str, i64)>,
}

/// Members listed one by one before the rest are only counted.
const MAX_MEMBERS: usize = 40;

/// The members of a tar or cpio archive, gzip-compressed or not.
fn archive_members(data: &[u8]) -> Option<BTreeMap<String, Entry>> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .take(MAX_READ)
            .read_to_end(&mut out)
            .ok()?;
        return archive_members(&out);
    }
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        return cpio_members(data);
    }
    if data.len() > 262 && &data[257..262] == b"ustar" {
        return tar_members(data);
    }
    None
}

fn tar_members(data: &[u8]) -> Option<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).ok()?;
        if let Ok(Some(link)) = entry.link_name() {
            content.extend_from_slice(link.to_string_lossy().as_bytes());
        }
        out.insert(path, tar_entry(&header, Sha256Digest::of(&content)));
    }
    Some(out)
}

/// A tar member's entry: its type, mode, owner and mtime from `header`, and the digest of its
/// content (or link target).
pub(crate) fn tar_entry(header: &tar::Header, sha256: Sha256Digest) -> Entry {
    let kind = header.entry_type();
    Entry {
        kind: if kind.is_dir() {
            "directory"
        } else if kind.is_symlink() {
            "symlink"
        } else if kind.is_hard_link() {
            "hard link"
        } else if kind.is_file() {
            "file"
        } else {
            "special file"
        },
        sha256,
        mode: header.mode().unwrap_or(0),
        owner: (header.uid().unwrap_or(0), header.gid().unwrap_or(0)),
        times: vec![("mtime", header.mtime().unwrap_or(0) as i64)],
    }
}

fn cpio_members(mut data: &[u8]) -> Option<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    loop {
        let mut reader = cpio::NewcReader::new(data).ok()?;
        let entry = reader.entry();
        if entry.is_trailer() {
            break;
        }
        let name = entry.name().to_owned();
        let (mode, mtime, uid, gid) = (entry.mode(), entry.mtime(), entry.uid(), entry.gid());
        let mut content = Vec::new();
        reader.read_to_end(&mut content).ok()?;
        out.insert(
            name,
            Entry {
                kind: match mode & 0o170000 {
                    0o040000 => "directory",
                    0o120000 => "symlink",
                    0o100000 => "file",
                    _ => "special file",
                },
                sha256: Sha256Digest::of(&content),
                mode,
                owner: (uid as u64, gid as u64),
                times: vec![("mtime", i64::from(mtime))],
            },
        );
        data = reader.finish().ok()?;
    }
    Some(out)
}

/// What differs about one member, if anything.
fn change(a: Option<&Entry>, b: Option<&Entry>) -> Option<Change> {
    let (x, y) = match (a, b) {
        (Some(_), None) => {
            return Some(Change {
                only: Some("A"),
                ..Change::default()
            });
        }
        (None, Some(_)) => {
            return Some(Change {
                only: Some("B"),
                ..Change::default()
            });
        }
        (Some(x), Some(y)) if x != y => (x, y),
        _ => return None,
    };
    let times = x
        .times
        .iter()
        .filter_map(|(name, ta)| {
            let tb = y.times.iter().find(|(n, _)| n == name)?.1;
            (*ta != tb).then_some((*name, *ta, tb))
        })
        .collect();
    Some(Change {
        only: None,
        content: x.sha256 != y.sha256,
        kind: (x.kind != y.kind).then_some([x.kind, y.kind]),
        mode: (x.mode != y.mode).then_some([x.mode, y.mode]),
        owner: (x.owner != y.owner).then_some([x.owner, y.owner]),
        times,
    })
}

/// The members that differ, one detail each up to [`MAX_MEMBERS`], then one that counts the
/// rest by what differs about them.
pub(crate) fn members(
    archive: &str,
    a: &BTreeMap<String, Entry>,
    b: &BTreeMap<String, Entry>,
) -> Vec<Detail> {
    let mut out = Vec::new();
    let mut more = 0;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let Some(change) = change(a.get(name), b.get(name)) else {
            continue;
        };
        if out.len() < MAX_MEMBERS {
            out.push(Detail::Member {
                archive: archive.to_owned(),
                member: name.clone(),
                change,
            });
            continue;
        }
        more += 1;
        let mut count = |what| *counts.entry(what).or_default() += 1;
        match change.only {
            Some("A") => count("only in A"),
            Some(_) => count("only in B"),
            None => {
                if change.content {
                    count("content");
                }
                if change.kind.is_some() {
                    count("type");
                }
                if change.mode.is_some() {
                    count("mode");
                }
                if change.owner.is_some() {
                    count("owner");
                }
                if !change.times.is_empty() {
                    count("times");
                }
            }
        }
    }
    if more > 0 {
        let counts = counts
            .iter()
            .map(|(what, n)| format!("{what}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Detail::MoreMembers {
            archive: archive.to_owned(),
            more,
            counts,
        });
    }
    or_unavailable(
        out,
        "every member is the same: the archive's framing or order differs",
    )
}

fn text(a: &str, b: &str) -> Vec<Detail> {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let n = la.len().max(lb.len());
    for i in 0..n {
        let (x, y) = (la.get(i).copied(), lb.get(i).copied());
        if x != y {
            return vec![Detail::Line {
                line: i + 1,
                a: x.unwrap_or("(end of file)").to_owned(),
                b: y.unwrap_or("(end of file)").to_owned(),
            }];
        }
    }
    vec![Detail::Unavailable {
        reason: "the lines are the same: line endings or a final newline differ".into(),
    }]
}

/// diffoscope's text report, when it is installed.
pub fn diffoscope(a: &Path, b: &Path) -> Detail {
    let out = std::process::Command::new("diffoscope")
        .args(["--text", "-", "--no-progress"])
        .arg(a)
        .arg(b)
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Detail::Unavailable {
            reason: "--deep needs diffoscope, which is not installed (apt-get install \
                     --no-install-recommends diffoscope)"
                .into(),
        },
        Err(e) => Detail::Unavailable {
            reason: format!("diffoscope: {e}"),
        },
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let mut output: String = text.lines().take(400).collect::<Vec<_>>().join("\n");
            if text.lines().count() > 400 {
                output.push_str("\n[… cut: see diffoscope's full output]");
            }
            Detail::Diffoscope { output }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(mtime: u64, content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_cksum();
        b.append_data(&mut h, "etc/os-release", content).unwrap();
        let mut h2 = tar::Header::new_ustar();
        h2.set_size(2);
        h2.set_mode(0o644);
        h2.set_cksum();
        b.append_data(&mut h2, "same", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_members_name_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        std::fs::write(&a, tar_with(1, b"x")).unwrap();
        std::fs::write(&b, tar_with(2, b"y")).unwrap();
        let d = explain(&a, &b);
        assert_eq!(
            d,
            vec![Detail::Member {
                archive: "archive".into(),
                member: "etc/os-release".into(),
                change: Change {
                    content: true,
                    times: vec![("mtime", 1, 2)],
                    ..Change::default()
                }
            }]
        );
        assert_eq!(
            d[0].to_string(),
            "archive member etc/os-release: content differs, mtime 1 → 2"
        );
    }

    #[test]
    fn cpio_members_are_read() {
        let build = |content: &'static [u8]| {
            let entries = vec![(
                cpio::newc::Builder::new("init").mode(0o100755),
                std::io::Cursor::new(content),
            )];
            cpio::write_cpio(entries.into_iter(), Vec::new()).unwrap()
        };
        let m = cpio_members(&build(b"one")).unwrap();
        let n = cpio_members(&build(b"two")).unwrap();
        let d = members("archive", &m, &n);
        assert_eq!(d.len(), 1);
        assert!(matches!(&d[0], Detail::Member { member, .. } if member == "init"));
    }

    #[test]
    fn text_names_the_first_line() {
        let d = text("a\nbuilt 2026-01-01\n", "a\nbuilt 2026-01-02\n");
        assert_eq!(
            d,
            vec![Detail::Line {
                line: 2,
                a: "built 2026-01-01".into(),
                b: "built 2026-01-02".into()
            }]
        );
    }

    #[test]
    fn paths_and_dates_come_first() {
        let (a, b) = differing_strings(
            b"\0zzzzzzzzzzz\0/tmp/a/src/x.c\0",
            b"\0yyyyyyyyyyy\0/tmp/b/src/x.c\0",
        );
        assert_eq!(a[0], "/tmp/a/src/x.c");
        assert_eq!(b[0], "/tmp/b/src/x.c");
    }
}
