//! Where each entry of a lockfile stands in its text: every pinned file, submodule, git
//! dependency, toolchain source, rootfs package and host pin, read with the lockfile, so that
//! what reports on an input can point at the line that pins it.

use std::collections::BTreeMap;

use super::Lockfile;

/// A place in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub line: usize,
    pub column: usize,
}

/// The span of every entry of a lockfile, by table (`git`, `source.files`, … see [`TABLES`]),
/// in the order of the lockfile's own lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spans {
    tables: BTreeMap<&'static str, Vec<Span>>,
}

/// The tables whose entries are located: each entry is a `[[table]]` (`[kernel]` is one).
pub const TABLES: [&str; 8] = [
    "source.files",
    "source.submodules",
    "git",
    "toolchains.go.sources",
    "kernel",
    "rootfs.base",
    "rootfs.packages",
    "host.packages",
];

/// How many entries `lock` has in `table`.
fn entries(lock: &Lockfile, table: &str) -> usize {
    match table {
        "source.files" => lock.source.files.len(),
        "source.submodules" => lock.source.submodules.len(),
        "git" => lock.git.len(),
        "toolchains.go.sources" => lock.toolchains.go.sources.len(),
        "kernel" => 1,
        "rootfs.base" => lock.rootfs.base.len(),
        "rootfs.packages" => lock.rootfs.packages.len(),
        "host.packages" => lock.host.as_ref().map_or(0, |h| h.packages.len()),
        _ => 0,
    }
}

impl Spans {
    /// The spans of the entries of lockfile `text`, each at its table's header (`[[git]]`, …),
    /// as `kata-repro lock` writes them. A table whose headers do not match `lock`'s entries
    /// one for one (entries written inline) has none, rather than spans that point wrongly.
    pub fn of(text: &str, lock: &Lockfile) -> Spans {
        let mut tables: BTreeMap<&'static str, Vec<Span>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            let name = header
                .strip_prefix("[[")
                .and_then(|h| h.strip_suffix("]]"))
                .or_else(|| (header == "[kernel]").then_some("kernel"));
            if let Some(table) = name.and_then(|n| TABLES.into_iter().find(|t| *t == n)) {
                let column = line.len() - line.trim_start().len() + 1;
                let span = Span {
                    line: i + 1,
                    column,
                };
                tables.entry(table).or_default().push(span);
            }
        }
        tables.retain(|table, spans| spans.len() == entries(lock, table));
        Spans { tables }
    }

    /// The spans of `table`'s entries: empty when it has none, or they could not be located.
    pub fn table(&self, table: &str) -> &[Span] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
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
        assert_eq!(spans.table("git").len(), lock.git.len());
        // One header fewer than entries: the table has no spans.
        let first = text.find("[[git]]").unwrap();
        let fewer = format!("{}# {}", &text[..first], &text[first..]);
        assert!(Spans::of(&fewer, &lock).table("git").is_empty());
        assert_eq!(
            Spans::of(&fewer, &lock).table("source.files"),
            spans.table("source.files")
        );
    }
}
