//! OSV records (the schema of golang/vulndb's `data/osv/*.json`) and the evaluation of their
//! affected ranges, as the OSV schema defines it: a range's events, sorted by version, switch a
//! version in and out of the affected set (`introduced` in; `fixed` out at that version;
//! `last_affected` out after it), and explicit `versions` are affected as
//! listed; `limit`s bound the whole range first.

use std::cmp::Ordering;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Affected {
    pub package: PackageId,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PackageId {
    pub name: String,
    pub ecosystem: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// A version as ranges compare it: `None` is the `"0"` before every version.
type Bound<V> = Option<V>;

impl Range {
    /// Whether `version` is in this range; `parse` reads the range's versions (an event whose
    /// version does not parse is an error naming it).
    pub fn affects<V: Ord>(
        &self,
        version: &V,
        parse: impl Fn(&str) -> Option<V>,
    ) -> Result<bool, String> {
        let bad = |e: &Event| format!("bad version `{}` in {e:?}", e.version());
        // Limits bound the range first: a version is in it only below some limit (`*` is no
        // limit at all).
        let mut limits = Vec::new();
        let mut events: Vec<(Bound<V>, &Event)> = Vec::with_capacity(self.events.len());
        for e in &self.events {
            match (e, e.version()) {
                (Event::Limit(_), "*") => limits.push(None),
                (Event::Limit(_), v) => limits.push(Some(parse(v).ok_or_else(|| bad(e))?)),
                (Event::Introduced(_), "0") => events.push((None, e)),
                (_, v) => events.push((Some(parse(v).ok_or_else(|| bad(e))?), e)),
            }
        }
        if !limits.is_empty()
            && !limits
                .iter()
                .any(|l| l.as_ref().is_none_or(|l| version < l))
        {
            return Ok(false);
        }
        // Sorted by version; at one version, `introduced` first, so that the order the file
        // lists events in never matters.
        let rank = |e: &Event| !matches!(e, Event::Introduced(_));
        events.sort_by(|a, b| {
            let by_version = match (&a.0, &b.0) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(y),
            };
            by_version.then(rank(a.1).cmp(&rank(b.1)))
        });
        let mut affected = false;
        for (bound, e) in events {
            let reached = bound.as_ref().is_none_or(|b| b <= version);
            match e {
                Event::Introduced(_) if reached => affected = true,
                Event::Fixed(_) if reached => affected = false,
                Event::LastAffected(_) if bound.as_ref().is_some_and(|b| b < version) => {
                    affected = false
                }
                _ => {}
            }
        }
        Ok(affected)
    }

    /// The versions that fix this range.
    pub fn fixed(&self) -> impl Iterator<Item = &str> {
        self.events.iter().filter_map(|e| match e {
            Event::Fixed(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(events: &[(&str, &str)]) -> Range {
        let json = serde_json::json!({
            "type": "SEMVER",
            "events": events.iter().map(|(k, v)| serde_json::json!({ *k: v })).collect::<Vec<_>>(),
        });
        serde_json::from_value(json).unwrap()
    }

    fn v(s: &str) -> Option<semver::Version> {
        semver::Version::parse(s).ok()
    }

    fn affects(r: &Range, version: &str) -> bool {
        r.affects(&v(version).unwrap(), v).unwrap()
    }

    #[test]
    fn several_introduced_fixed_pairs_in_any_order() {
        // Listed out of order: sorting is the evaluation's, not the file's.
        let r = range(&[
            ("fixed", "1.7.0"),
            ("introduced", "1.5.0"),
            ("introduced", "0"),
            ("fixed", "1.2.0"),
        ]);
        for (version, expected) in [
            ("0.1.0", true),
            ("1.1.9", true),
            ("1.2.0", false),
            ("1.4.0", false),
            ("1.5.0", true),
            ("1.6.9", true),
            ("1.7.0", false),
            ("2.0.0", false),
        ] {
            assert_eq!(affects(&r, version), expected, "{version}");
        }
        assert_eq!(r.fixed().collect::<Vec<_>>(), vec!["1.7.0", "1.2.0"]);
    }

    #[test]
    fn last_affected_includes_its_version_and_limit_excludes_its_own() {
        let r = range(&[("introduced", "1.0.0"), ("last_affected", "1.3.0")]);
        assert!(!affects(&r, "0.9.0"));
        assert!(affects(&r, "1.3.0"));
        assert!(!affects(&r, "1.3.1"));
        let r = range(&[("introduced", "0"), ("limit", "2.0.0")]);
        assert!(affects(&r, "1.9.9"));
        assert!(!affects(&r, "2.0.0"));
        // Limits bound the whole range: below some limit, and `*` is none.
        let r = range(&[
            ("introduced", "0"),
            ("limit", "2.0.0"),
            ("introduced", "3.0.0"),
        ]);
        assert!(!affects(&r, "3.1.0"));
        let r = range(&[("introduced", "0"), ("limit", "1.0.0"), ("limit", "2.0.0")]);
        assert!(affects(&r, "1.5.0"));
        let r = range(&[("introduced", "1.0.0"), ("limit", "*")]);
        assert!(affects(&r, "9.0.0"));
        // Events at one version give the same answer in any order.
        for events in [
            [("last_affected", "1.0.0"), ("introduced", "1.0.0")],
            [("introduced", "1.0.0"), ("last_affected", "1.0.0")],
        ] {
            let r = range(&events);
            assert!(affects(&r, "1.0.0") && !affects(&r, "2.0.0"), "{events:?}");
        }
        // Introduced only: everything since.
        let r = range(&[("introduced", "1.0.0")]);
        assert!(affects(&r, "99.0.0") && !affects(&r, "0.9.0"));
    }

    #[test]
    fn an_unreadable_event_is_an_error_naming_it() {
        let r = range(&[("introduced", "0"), ("fixed", "one.two")]);
        let err = r.affects(&v("1.0.0").unwrap(), v).unwrap_err();
        assert!(err.contains("one.two"), "{err}");
    }

    #[test]
    fn records_parse_from_vulndb_json() {
        let r: Record = serde_json::from_str(
            r#"{"schema_version":"1.3.1","id":"GO-2099-0001","aliases":["CVE-2099-1"],
                "summary":"s","affected":[{"package":{"name":"example.org/m","ecosystem":"Go"},
                "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.3"}]}],
                "ecosystem_specific":{"imports":[{"path":"example.org/m","symbols":["F"]}]}}],
                "database_specific":{"url":"https://pkg.go.dev/vuln/GO-2099-0001"}}"#,
        )
        .unwrap();
        assert_eq!(r.affected[0].package.name, "example.org/m");
        assert_eq!(
            r.affected[0].ranges[0].events,
            vec![Event::Introduced("0".into()), Event::Fixed("1.2.3".into())]
        );
    }
}
