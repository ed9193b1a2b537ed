//! go.sum: `<module> <version>[/go.mod] h1:<base64>` per line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GoSumError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// What a go.sum line hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SumKind {
    /// The module's zip (its whole file tree).
    Zip,
    /// Only the module's go.mod.
    GoMod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoSumEntry {
    pub module: String,
    pub version: String,
    pub kind: SumKind,
    pub hash: String,
    /// 1-based line in go.sum.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct GoSum {
    pub path: PathBuf,
    pub entries: Vec<GoSumEntry>,
}

impl GoSum {
    pub fn load(path: &Path) -> Result<Self, GoSumError> {
        let text = std::fs::read_to_string(path).map_err(|source| GoSumError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, GoSumError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let malformed = |message: String| GoSumError::Malformed {
                path: path.to_owned(),
                line,
                message,
            };
            let fields: Vec<&str> = raw.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            let [module, version, hash] = fields[..] else {
                return Err(malformed(format!(
                    "expected `<module> <version> <hash>`, found {} fields",
                    fields.len()
                )));
            };
            if !hash.starts_with("h1:") {
                return Err(malformed(format!("hash `{hash}` is not an h1: hash")));
            }
            let (version, kind) = match version.strip_suffix("/go.mod") {
                Some(v) => (v, SumKind::GoMod),
                None => (version, SumKind::Zip),
            };
            if !version.starts_with('v') {
                return Err(malformed(format!(
                    "version `{version}` does not start with `v`"
                )));
            }
            entries.push(GoSumEntry {
                module: module.to_owned(),
                version: version.to_owned(),
                kind,
                hash: hash.to_owned(),
                line,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    pub fn find(&self, module: &str, version: &str, kind: SumKind) -> Option<&GoSumEntry> {
        self.entries
            .iter()
            .find(|e| e.module == module && e.version == version && e.kind == kind)
    }

    /// Distinct module paths.
    pub fn module_paths(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|e| e.module.as_str()).collect()
    }

    pub fn count(&self, kind: SumKind) -> usize {
        self.entries.iter().filter(|e| e.kind == kind).count()
    }
}

/// Go's module path escaping for the module cache and proxy: each upper-case letter becomes `!`
/// followed by its lower-case form.
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kata_4_1_0_counts() {
        let text = crate::kata_fixture("4.1.0", "src/runtime/go.sum");
        let sum = GoSum::parse(&text, Path::new("go.sum")).unwrap();
        assert_eq!(sum.module_paths().len(), 181);
        assert_eq!(sum.count(SumKind::Zip), 160);
        assert_eq!(sum.count(SumKind::GoMod), 320);
        let e = sum
            .find("github.com/BurntSushi/toml", "v0.3.1", SumKind::GoMod)
            .unwrap();
        assert_eq!(
            (e.line, e.hash.as_str()),
            (10, "h1:xHWCNGjB5oqiDr8zfno3MHue2Ht5sIBksp03qcyfWMU=")
        );
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let err = GoSum::parse("a v1.0.0 h1:x=\nb v1.0.0\n", Path::new("go.sum")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "go.sum:2: expected `<module> <version> <hash>`, found 2 fields"
        );
        let err = GoSum::parse("a v1.0.0 h2:x=\n", Path::new("go.sum")).unwrap_err();
        assert!(err.to_string().starts_with("go.sum:1: hash `h2:x=`"));
    }

    #[test]
    fn escapes_upper_case() {
        assert_eq!(
            escape_path("github.com/BurntSushi/toml"),
            "github.com/!burnt!sushi/toml"
        );
    }
}
