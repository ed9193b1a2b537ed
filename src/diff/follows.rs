//! Differences that follow from another artifact's: a root hash computed from an image, a
//! configuration that carries that root hash. Each link is shown by evidence in both builds,
//! never assumed from names.

use std::path::Path;

use serde::Serialize;

use super::explain::Detail;
use super::{ArtifactDiff, image};
use crate::digest::Sha256Digest;

/// Files above this size are not searched for another artifact's values.
const MAX_TEXT: u64 = 1 << 20;
/// The shortest hex run taken for a digest.
const MIN_DIGEST_HEX: usize = 32;

/// The artifact a difference follows from, and what shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowsFrom {
    pub artifact: String,
    pub evidence: String,
}

/// Sets `follows` on each differing artifact whose difference another differing artifact's
/// explains. `a` and `b` are the two output directories.
pub fn link(differing: &mut [ArtifactDiff], a: &Path, b: &Path) {
    let found: Vec<Option<FollowsFrom>> = differing
        .iter()
        .map(|x| verity_root(x, differing, a, b).or_else(|| carried_digest(x, differing, a, b)))
        .collect();
    for (x, f) in differing.iter_mut().zip(found) {
        x.follows = f;
    }
}

fn small_text(p: &Path) -> Option<String> {
    let len = std::fs::metadata(p).ok()?.len();
    if len > MAX_TEXT {
        return None;
    }
    String::from_utf8(std::fs::read(p).ok()?).ok()
}

/// Kata's `root_hash.txt`: `root_hash=HEX,salt=HEX,…`.
fn root_hash_and_salt(text: &str) -> Option<(String, Vec<u8>)> {
    let mut root = None;
    let mut salt = None;
    for kv in text.trim().split(',') {
        match kv.split_once('=') {
            Some(("root_hash", v)) => root = Some(v.to_ascii_lowercase()),
            Some(("salt", v)) => salt = hex::decode(v).ok(),
            _ => {}
        }
    }
    Some((root?, salt?))
}

/// A root hash file whose root hash is, in both builds, the dm-verity root of a differing
/// image's hash tree.
fn verity_root(
    x: &ArtifactDiff,
    differing: &[ArtifactDiff],
    a: &Path,
    b: &Path,
) -> Option<FollowsFrom> {
    let (ra, sa) = root_hash_and_salt(&small_text(&a.join(&x.path))?)?;
    let (rb, sb) = root_hash_and_salt(&small_text(&b.join(&x.path))?)?;
    for y in differing.iter().filter(|y| y.path != x.path) {
        let roots = |dir: &Path, salt: &[u8]| -> Vec<(String, String)> {
            image::verity_top_blocks(&dir.join(&y.path))
                .into_iter()
                .map(|(label, block)| {
                    let mut data = salt.to_vec();
                    data.extend_from_slice(&block);
                    (label, Sha256Digest::of(&data).to_string())
                })
                .collect()
        };
        let (ya, yb) = (roots(a, &sa), roots(b, &sb));
        let hit = ya
            .iter()
            .find(|(label, root)| *root == ra && yb.iter().any(|(l, r)| l == label && *r == rb));
        if let Some((label, _)) = hit {
            return Some(FollowsFrom {
                artifact: y.path.clone(),
                evidence: format!(
                    "its root_hash is, in both builds, the dm-verity root of that image's \
                     {label} (sha256 of the salt and the hash tree's top block)"
                ),
            });
        }
    }
    None
}

/// Hex runs of at least [`MIN_DIGEST_HEX`] digits.
fn digests(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|t| t.len() >= MIN_DIGEST_HEX)
        .collect()
}

/// A text artifact whose differing line carries a digest that another differing artifact holds,
/// the first build's value in its first build and the second's in its second. Only smaller
/// artifacts are candidates; those of another directory (another component) come first, then
/// the smallest: the origin, not a sibling that carries the same value.
fn carried_digest(
    x: &ArtifactDiff,
    differing: &[ArtifactDiff],
    a: &Path,
    b: &Path,
) -> Option<FollowsFrom> {
    let (line, la, lb) = x.details.iter().find_map(|d| match d {
        Detail::Line { line, a, b } => Some((*line, a, b)),
        _ => None,
    })?;
    let (da, db) = (digests(la), digests(lb));
    let pairs: Vec<(&str, &str)> = da
        .iter()
        .filter(|t| !db.contains(t))
        .flat_map(|t| db.iter().filter(|u| !da.contains(u)).map(move |u| (*t, *u)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let dir = |p: &str| Path::new(p).parent().map(Path::to_owned);
    // What a value comes from says less than what carries it: only smaller artifacts are
    // candidates, so that the root hash file never follows from a configuration.
    let mut candidates: Vec<&ArtifactDiff> = differing
        .iter()
        .filter(|y| y.path != x.path && y.a.size < x.a.size)
        .collect();
    candidates.sort_by_key(|y| (dir(&y.path) == dir(&x.path), y.a.size));
    for y in candidates {
        let (Some(ya), Some(yb)) = (small_text(&a.join(&y.path)), small_text(&b.join(&y.path)))
        else {
            continue;
        };
        if let Some((ta, tb)) = pairs
            .iter()
            .find(|(ta, tb)| ya.contains(ta) && yb.contains(tb))
        {
            return Some(FollowsFrom {
                artifact: y.path.clone(),
                evidence: format!(
                    "line {line} carries {}'s value: `{}…` in the first build, `{}…` in the \
                     second",
                    y.path,
                    &ta[..16],
                    &tb[..16]
                ),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kata_root_hash_lines_are_read() {
        let (root, salt) =
            root_hash_and_salt("root_hash=ABcd,salt=0011,data_blocks=3,data_block_size=4096\n")
                .unwrap();
        assert_eq!(root, "abcd");
        assert_eq!(salt, [0x00, 0x11]);
        assert!(root_hash_and_salt("salt=00\n").is_none());
    }

    #[test]
    fn digests_are_long_hex_runs() {
        let h = "a".repeat(64);
        assert_eq!(
            digests(&format!("x = \"root_hash={h},salt=00\"")),
            [h.as_str()]
        );
        assert!(digests("version 2026 1234567").is_empty());
    }

    #[test]
    fn a_configuration_follows_from_the_root_hash_it_carries() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (ha, hb) = ("a".repeat(64), "b".repeat(64));
        for (side, h) in [(&a, &ha), (&b, &hb)] {
            std::fs::create_dir_all(side.join("rootfs")).unwrap();
            std::fs::create_dir_all(side.join("runtime/config")).unwrap();
            std::fs::write(
                side.join("rootfs/root_hash.txt"),
                format!("root_hash={h},salt=00\n"),
            )
            .unwrap();
            for c in ["x", "y"] {
                let text = format!("kernel_verity_params = \"root_hash={h},salt=00\"\n");
                std::fs::write(side.join(format!("runtime/config/{c}.toml")), text).unwrap();
            }
        }
        let entry = |path: &str, line: usize, text: &dyn Fn(&str) -> String| ArtifactDiff {
            path: path.into(),
            a: crate::manifest::Artifact {
                path: path.into(),
                size: std::fs::metadata(a.join(path)).unwrap().len(),
                mode: "0644".into(),
                sha256: Sha256Digest::of(b"a"),
            },
            b: crate::manifest::Artifact {
                path: path.into(),
                size: 1,
                mode: "0644".into(),
                sha256: Sha256Digest::of(b"b"),
            },
            details: vec![Detail::Line {
                line,
                a: text(&ha),
                b: text(&hb),
            }],
            follows: None,
        };
        let config = |h: &str| format!("kernel_verity_params = \"root_hash={h},salt=00\"");
        let root = |h: &str| format!("root_hash={h},salt=00");
        let mut differing = vec![
            entry("runtime/config/x.toml", 1, &config),
            entry("runtime/config/y.toml", 1, &config),
            entry("rootfs/root_hash.txt", 1, &root),
        ];
        link(&mut differing, &a, &b);
        for d in &differing[..2] {
            let f = d.follows.as_ref().unwrap();
            assert_eq!(
                f.artifact, "rootfs/root_hash.txt",
                "not the sibling configuration"
            );
            assert!(
                f.evidence
                    .contains("`aaaaaaaaaaaaaaaa…` in the first build"),
                "{}",
                f.evidence
            );
        }
        assert!(
            differing[2].follows.is_none(),
            "nothing it carries is another's"
        );
    }
}
