//! go.sum: `<module> <version>[/go.mod] h1:<base64>` per line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::lock::Loaded;

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
    /// Reads and parses the go.sum at `path`, once: the sha256 is that of the bytes parsed.
    pub fn load(path: &Path) -> Result<Loaded<Self>, GoSumError> {
        Loaded::read(
            path,
            |source| GoSumError::Read {
                path: path.to_owned(),
                source,
            },
            |text| Self::parse(text, path),
        )
    }

    /// Parses go.sum. Malformed lines, an `h1:` that is not base64 of a 32-byte SHA-256, and two
    /// lines that hash the same module version differently are refused, naming the lines. A line
    /// repeated word for word is read once, as Go reads it. An empty go.sum is a module without
    /// dependencies; `verify go`, which is asked to verify something, refuses it.
    pub fn parse(text: &str, path: &Path) -> Result<Self, GoSumError> {
        let mut entries: Vec<GoSumEntry> = Vec::new();
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
            let Some(b64) = hash.strip_prefix("h1:") else {
                return Err(malformed(format!("hash `{hash}` is not an h1: hash")));
            };
            check_h1(b64).map_err(|why| malformed(format!("`{hash}` {why}")))?;
            let (version, kind) = match version.strip_suffix("/go.mod") {
                Some(v) => (v, SumKind::GoMod),
                None => (version, SumKind::Zip),
            };
            if !version.starts_with('v') {
                return Err(malformed(format!(
                    "version `{version}` does not start with `v`"
                )));
            }
            if let Some(earlier) = entries
                .iter()
                .find(|e| e.module == module && e.version == version && e.kind == kind)
            {
                if earlier.hash == hash {
                    continue;
                }
                return Err(malformed(format!(
                    "{module} {version}{} is hashed {hash} here but {} on line {}: one of them \
                     is wrong; restore go.sum from the pinned tree",
                    if kind == SumKind::GoMod {
                        "/go.mod"
                    } else {
                        ""
                    },
                    earlier.hash,
                    earlier.line
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

/// An `h1:` value must be standard base64 of exactly 32 bytes (a SHA-256).
fn check_h1(b64: &str) -> Result<(), String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("is not base64: {e}"))?;
    if bytes.len() != 32 {
        return Err(format!(
            "decodes to {} bytes, not the 32 of a SHA-256",
            bytes.len()
        ));
    }
    Ok(())
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
    fn malformed_pins_are_refused_with_their_lines() {
        let good = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let other = "h1:frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=";
        let cases = [
            ("example.com/a v1.0.0 h1:AAAA\n", 1, "decodes to 3 bytes"),
            ("example.com/a v1.0.0 h1:!!!notbase64\n", 1, "not base64"),
            (
                &*format!(
                    "example.com/a v1.0.0 {good}\nexample.com/b v1.0.0 {good}\nexample.com/a v1.0.0 {other}\n"
                ),
                3,
                "on line 1",
            ),
        ];
        for (text, line, want) in cases {
            match GoSum::parse(text, Path::new("go.sum")) {
                Err(GoSumError::Malformed {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{text}: {message}");
                    assert!(message.contains(want), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // A line repeated word for word is harmless.
        let twice = format!("example.com/a v1.0.0 {good}\nexample.com/a v1.0.0 {good}\n");
        assert_eq!(
            GoSum::parse(&twice, Path::new("go.sum"))
                .unwrap()
                .entries
                .len(),
            1
        );
    }

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
        let err = GoSum::parse(
            "a v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nb v1.0.0\n",
            Path::new("go.sum"),
        )
        .unwrap_err();
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
