//! Where each entry of a lockfile stands in its text: every pinned file, submodule, git
//! dependency, toolchain source, rootfs package and host pin, read with the lockfile, so that
//! what reports on an input can point at the line that pins it.

use super::Lockfile;

/// A place in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub line: usize,
    pub column: usize,
}

/// The span of every entry of a lockfile, in the order of the lockfile's own lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spans {
    /// `[[source.files]]`
    pub files: Vec<Span>,
    /// `[[source.submodules]]`
    pub submodules: Vec<Span>,
    /// `[[git]]`
    pub git: Vec<Span>,
    /// `[[toolchains.go.sources]]`
    pub go_sources: Vec<Span>,
    /// `[kernel]`
    pub kernel: Option<Span>,
    /// `[[rootfs.base]]`
    pub rootfs_base: Vec<Span>,
    /// `[[rootfs.packages]]`
    pub rootfs_packages: Vec<Span>,
    /// `[[host.packages]]`
    pub host_packages: Vec<Span>,
}

impl Spans {
    /// The spans of the entries of lockfile `text`, each at its table's header (`[[git]]`, …),
    /// as `kata-repro lock` writes them. A list whose headers do not match `lock`'s entries one
    /// for one (entries written inline) is left empty rather than pointed at wrongly.
    pub fn of(text: &str, lock: &Lockfile) -> Spans {
        let mut s = Spans::default();
        for (i, line) in text.lines().enumerate() {
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            let span = Span {
                line: i + 1,
                column: line.len() - line.trim_start().len() + 1,
            };
            match header.as_str() {
                "[[source.files]]" => s.files.push(span),
                "[[source.submodules]]" => s.submodules.push(span),
                "[[git]]" => s.git.push(span),
                "[[toolchains.go.sources]]" => s.go_sources.push(span),
                "[kernel]" => s.kernel = Some(span),
                "[[rootfs.base]]" => s.rootfs_base.push(span),
                "[[rootfs.packages]]" => s.rootfs_packages.push(span),
                "[[host.packages]]" => s.host_packages.push(span),
                _ => {}
            }
        }
        let keep = |spans: &mut Vec<Span>, entries: usize| {
            if spans.len() != entries {
                spans.clear();
            }
        };
        keep(&mut s.files, lock.source.files.len());
        keep(&mut s.submodules, lock.source.submodules.len());
        keep(&mut s.git, lock.git.len());
        keep(&mut s.go_sources, lock.toolchains.go.sources.len());
        keep(&mut s.rootfs_base, lock.rootfs.base.len());
        keep(&mut s.rootfs_packages, lock.rootfs.packages.len());
        let host = lock.host.as_ref().map_or(0, |h| h.packages.len());
        keep(&mut s.host_packages, host);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_written_inline_are_not_pointed_at() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lockfiles/kata-4.0.0.toml");
        let lock = Lockfile::load(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let spans = Spans::of(&text, &lock);
        assert_eq!(spans.git.len(), lock.git.len());
        // One header fewer than entries: the list is left empty.
        let first = text.find("[[git]]").unwrap();
        let fewer = format!("{}# {}", &text[..first], &text[first..]);
        assert!(Spans::of(&fewer, &lock).git.is_empty());
        assert_eq!(Spans::of(&fewer, &lock).files, spans.files);
    }
}
