//! Which variation a difference is put down to: markers only the varied build's world has, a
//! year that moved with the shifted clock, modes and owners that moved with the umask and user.

use std::path::Path;

use super::{ArtifactVerdict, Blame, MAX_SCAN};
use crate::diff::{ArtifactDiff, Detail, DiffReport};
use crate::sandbox::variation::{self, Variation, Varied};

/// The variations that evidence in the two files (and how they differ) points at.
pub fn blame(first: &Path, second: &Path, d: &ArtifactDiff, varied: &Varied) -> Vec<Blame> {
    let mut out: Vec<Blame> = Vec::new();
    let mut add = |variation: Variation, evidence: String| {
        if !out.iter().any(|b| b.variation == variation) {
            out.push(Blame {
                variation,
                evidence,
            });
        }
    };
    let read = |p: &Path| -> Vec<u8> {
        match std::fs::metadata(p) {
            Ok(m) if m.len() <= MAX_SCAN => std::fs::read(p).unwrap_or_default(),
            _ => Vec::new(),
        }
    };
    // Modes and owners read from the members first: they name the member, where a marker only
    // says that the file holds a string.
    if let Some(evidence) = varied.umask.and_then(|u| umask_evidence(&d.details, u)) {
        add(Variation::Umask, evidence);
    }
    if let Some(evidence) = varied.user.and_then(|u| owner_evidence(&d.details, u)) {
        add(Variation::UserGroup, evidence);
    }
    let (a, b) = (read(first), read(second));
    // Every string of the explanation, for the markers that show only there (archive members).
    let detail_text: Vec<(String, String)> = d.details.iter().map(detail_sides).collect();
    for (variation, marker) in varied.markers() {
        let m = marker.as_bytes();
        let in_b = contains(&b, m) || detail_text.iter().any(|(_, y)| y.contains(&marker));
        let in_a = contains(&a, m) || detail_text.iter().any(|(x, _)| x.contains(&marker));
        if in_b && !in_a {
            add(
                variation,
                format!("the second build's file holds `{marker}`, which only its {variation} had"),
            );
        }
    }
    if varied.names().contains(&Variation::Time) {
        let this_year = year_now();
        let next = (this_year + 1).to_string();
        let (na, nb) = (count(&a, next.as_bytes()), count(&b, next.as_bytes()));
        if nb > na {
            add(
                Variation::Time,
                format!(
                    "the second build's file says {next} where the first says {this_year}: its \
                     clock ran {} ahead",
                    variation::TIME_SHIFT
                ),
            );
        }
    }
    out
}

/// The blame of the artifact `d` follows from (following the chain), each with the evidence of
/// where it shows.
pub(super) fn origin_blame(
    d: &ArtifactDiff,
    diff: &DiffReport,
    verdicts: &[ArtifactVerdict],
) -> Vec<Blame> {
    let mut seen = vec![d.path.as_str()];
    let mut at = d;
    while let Some(f) = &at.follows {
        if seen.contains(&f.artifact.as_str()) {
            break;
        }
        seen.push(&f.artifact);
        let Some(next) = diff.differing.iter().find(|x| x.path == f.artifact) else {
            break;
        };
        let origin = verdicts.iter().find(|v| v.path == next.path);
        if let Some(v) = origin.filter(|v| !v.blame.is_empty()) {
            return v
                .blame
                .iter()
                .map(|b| Blame {
                    variation: b.variation,
                    evidence: format!("through {}: {}", v.path, b.evidence),
                })
                .collect();
        }
        at = next;
    }
    Vec::new()
}

/// The umask of the plain build's steps.
const FIRST_UMASK: u32 = 0o022;

/// Whether a mode moved from `a` to `b` as the umask did from [`FIRST_UMASK`] to `second`: only
/// permission bits differ, only bits one of the two umasks clears, and each side lacks exactly
/// the bits its own umask clears.
pub fn moved_with_umask(a: u32, b: u32, second: u32) -> bool {
    let moved = a ^ b;
    moved != 0
        && moved & !0o777 == 0
        && moved & !(FIRST_UMASK ^ second) == 0
        && a & moved & FIRST_UMASK == 0
        && b & moved & second == 0
}

fn umask_evidence(details: &[Detail], umask: u32) -> Option<String> {
    let octal = |m: &str| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok();
    details.iter().find_map(|x| {
        let because = format!("as the umask did ({FIRST_UMASK:04o}, then {umask:04o})");
        match x {
            Detail::Mode { a, b } => {
                let (ma, mb) = (octal(a)?, octal(b)?);
                moved_with_umask(ma, mb, umask)
                    .then(|| format!("the file's mode moved from {a} to {b}, {because}"))
            }
            Detail::Member {
                archive,
                member,
                change,
            } => {
                let [ma, mb] = change.mode?;
                moved_with_umask(ma, mb, umask).then(|| {
                    format!("{archive} member {member} is mode {mb:o} where the first build has {ma:o}, {because}")
                })
            }
            Detail::Line { a, b, .. } => (a.contains("022") && b.contains(&format!("{umask:03o}"))
                || a.contains("rw-r--r--") && b.contains("rw-rw-r--"))
            .then(|| format!("the file records a mode that moved {because}")),
            _ => None,
        }
    })
}

fn owner_evidence(details: &[Detail], (uid, gid): (u32, u32)) -> Option<String> {
    let (uid, gid) = (u64::from(uid), u64::from(gid));
    let listed = details.iter().find_map(|x| match x {
        Detail::Member {
            archive,
            member,
            change,
        } => {
            let [(ua, ga), (ub, gb)] = change.owner?;
            (ub == uid || gb == gid).then(|| {
                format!(
                    "{archive} member {member} is owned by {ub}:{gb}, the second build's user \
                     and group (the first build's: {ua}:{ga})"
                )
            })
        }
        _ => None,
    })?;
    let more: usize = details
        .iter()
        .filter_map(|x| match x {
            Detail::MoreMembers { counts, .. } => counts
                .split(", ")
                .find_map(|c| c.strip_prefix("owner: ")?.parse::<usize>().ok()),
            _ => None,
        })
        .sum();
    Some(if more > 0 {
        format!("{listed}; {more} more members' owners differ too")
    } else {
        listed
    })
}

/// The A and B text of a detail, for marker search.
fn detail_sides(d: &Detail) -> (String, String) {
    match d {
        Detail::ElfSection { only_a, only_b, .. } => (only_a.join("\n"), only_b.join("\n")),
        Detail::Line { a, b, .. } => (a.clone(), b.clone()),
        Detail::Mode { a, b } => (a.clone(), b.clone()),
        Detail::Member { change, .. } => (String::new(), change.to_string()),
        Detail::Within {
            change, details, ..
        } => {
            let (mut a, mut b) = (String::new(), change.to_string());
            for d in details {
                let (da, db) = detail_sides(d);
                a.push('\n');
                a.push_str(&da);
                b.push('\n');
                b.push_str(&db);
            }
            (a, b)
        }
        Detail::MoreMembers { counts, .. } => (String::new(), counts.clone()),
        Detail::Partition { note, .. } => (String::new(), note.clone()),
        Detail::Diffoscope { output } => (String::new(), output.clone()),
        Detail::Unavailable { .. } => (String::new(), String::new()),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn year_now() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use crate::manifest::Artifact;
    use crate::sandbox::Isolation;
    use crate::sandbox::variation::{Host, plan};

    fn differing(path: &str, details: Vec<Detail>) -> ArtifactDiff {
        let art = |s: &[u8]| Artifact {
            path: path.into(),
            sha256: Sha256Digest::of(s),
            size: 1,
            mode: "0644".into(),
        };
        ArtifactDiff {
            path: path.into(),
            a: art(b"a"),
            b: art(b"b"),
            details,
            follows: None,
        }
    }

    #[test]
    fn markers_in_the_second_file_name_their_variation() {
        let host = Host {
            cpus: 2,
            libfaketime: Some("/x/libfaketime.so.1".into()),
            ..Host::default()
        };
        let (varied, _) = plan(&Variation::ALL, Isolation::Namespaces, &host);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let cases = [
            (
                "/tmp/kata-repro/src/main.c",
                "/tmp/kata-repro-second-build/a-longer-path/src/main.c",
                Variation::BuildPath,
            ),
            (
                "built on kata-repro",
                "built on kata-repro-varied-host",
                Variation::DomainHost,
            ),
            (
                "env: A=1",
                "env: A=1 CAPTURE_ENVIRONMENT=i_capture_the_environment",
                Variation::Environment,
            ),
        ];
        for (x, y, expected) in cases {
            std::fs::write(&a, x).unwrap();
            std::fs::write(&b, y).unwrap();
            let got = blame(&a, &b, &differing("f", vec![]), &varied);
            assert_eq!(
                got.iter().map(|g| g.variation).collect::<Vec<_>>(),
                [expected],
                "{x}"
            );
        }
        let y = year_now();
        std::fs::write(&a, format!("built {y}-11-27")).unwrap();
        std::fs::write(&b, format!("built {}-12-05", y + 1)).unwrap();
        let got = blame(&a, &b, &differing("f", vec![]), &varied);
        assert_eq!(got[0].variation, Variation::Time);
        std::fs::write(&a, "0022").unwrap();
        std::fs::write(&b, "0077").unwrap();
        let line = Detail::Line {
            line: 1,
            a: "0022".into(),
            b: "0077".into(),
        };
        let got = blame(&a, &b, &differing("f", vec![line]), &varied);
        assert_eq!(got[0].variation, Variation::Umask);
        // Nothing telling: nobody is blamed.
        std::fs::write(&a, "x1").unwrap();
        std::fs::write(&b, "x2").unwrap();
        assert!(blame(&a, &b, &differing("f", vec![]), &varied).is_empty());
    }

    #[test]
    fn modes_move_with_the_umask_only_as_it_did() {
        // 022 then 002: group write appears, nothing else.
        assert!(moved_with_umask(0o644, 0o664, 0o002));
        assert!(moved_with_umask(0o100755, 0o100775, 0o002));
        // 022 then 077: group and other read go.
        assert!(moved_with_umask(0o644, 0o600, 0o077));
        assert!(!moved_with_umask(0o644, 0o644, 0o002), "nothing moved");
        assert!(
            !moved_with_umask(0o644, 0o646, 0o002),
            "other write is masked by both"
        );
        assert!(
            !moved_with_umask(0o644, 0o755, 0o002),
            "execute bits are no umask's"
        );
        assert!(
            !moved_with_umask(0o664, 0o644, 0o002),
            "the wrong way round"
        );
        assert!(
            !moved_with_umask(0o100644, 0o040664, 0o002),
            "a type change"
        );
    }

    #[test]
    fn owners_equal_to_the_varied_user_are_its_evidence() {
        let member = |owner| Detail::Member {
            archive: "partition 1 (ext4, 8 MiB at 3 MiB)".into(),
            member: "/etc/passwd".into(),
            change: crate::diff::Change {
                owner: Some([(0, 0), owner]),
                ..Default::default()
            },
        };
        let e = owner_evidence(&[member((1234, 1234))], (1234, 1234)).unwrap();
        assert!(e.contains("/etc/passwd is owned by 1234:1234"), "{e}");
        assert!(owner_evidence(&[member((7, 7))], (1234, 1234)).is_none());
    }
}
