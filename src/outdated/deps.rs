//! Kata's own dependencies, as information: which Cargo.lock crates have a newer
//! semver-compatible release in the crates registry's sparse index, and which go.mod modules
//! a newer release of the same major version on the Go module proxy.

use rayon::prelude::*;

use super::{Item, Options, Reader, Section, Skipped, Tree};
use crate::lock::cargo_lock::CargoLock;

/// Requests in flight at once: registries answer small files, so the wait is latency.
const PARALLEL: usize = 16;

/// The newest release of `pinned`'s crate that Cargo's caret requirement (`^pinned`) accepts,
/// from the crate's index file; `None` when the pin is the newest.
pub fn newest_compatible(pinned: &str, index_file: &[u8]) -> Result<Option<String>, String> {
    let krate = crates_index::Crate::from_slice(index_file).map_err(|e| e.to_string())?;
    let req = semver::VersionReq::parse(&format!("^{pinned}")).map_err(|e| e.to_string())?;
    let pinned = semver::Version::parse(pinned).map_err(|e| e.to_string())?;
    Ok(krate
        .versions()
        .iter()
        .filter(|v| !v.is_yanked())
        .filter_map(|v| semver::Version::parse(v.version()).ok())
        .filter(|v| v.pre.is_empty() && req.matches(v) && *v > pinned)
        .max()
        .map(|v| v.to_string()))
}

/// The newest release of a Go module's major version in a proxy's `@v/list`, after `pinned`;
/// pre-releases and `+incompatible` majors other than the pinned one are left out.
pub fn newest_go(pinned: &str, list: &str) -> Option<String> {
    let parse = |v: &str| semver::Version::parse(v.strip_prefix('v')?).ok();
    let p = parse(pinned)?;
    list.lines()
        .filter_map(|l| parse(l.trim()).map(|v| (v, l.trim().to_owned())))
        .filter(|(v, _)| v.pre.is_empty() && v.major == p.major && *v > p)
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, s)| s)
}

/// The index file URL of a crate in a sparse index given as `sparse+http(s)://…/` or a local
/// directory laid out as one.
fn crate_file(index: &str, name: &str) -> Option<String> {
    let base = if index.starts_with("sparse+") {
        index.to_owned()
    } else {
        "sparse+https://local.invalid/".to_owned()
    };
    let sparse = crates_index::SparseIndex::with_path("/nonexistent", &base).ok()?;
    let url = sparse.crate_url(name)?;
    if index.starts_with("sparse+") {
        return Some(url);
    }
    let rel = url.strip_prefix("https://local.invalid/")?;
    Some(format!("{}/{rel}", index.trim_end_matches('/')))
}

/// Asks each of `names`: the first alone, so an unreachable registry costs one request (its
/// error is then the only failure), then the rest in parallel, then once more, one at a time,
/// each that failed (a lookup that timed out under load). The answers, in name order, and the
/// failures; `Err` with the first request's error when that failed.
fn ask(mut names: Vec<(String, String)>, one: Newest<'_>) -> Result<Asked, String> {
    let mut found = Vec::new();
    if names.is_empty() {
        return Ok((found, Vec::new()));
    }
    let (name, version) = names.remove(0);
    match one(&name, &version) {
        Ok(Some(newest)) => found.push((name, version, newest)),
        Ok(None) => {}
        Err(e) => return Err(format!("{name}: {e}")),
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(PARALLEL)
        .build()
        .expect("a thread pool");
    let results: Vec<_> = pool.install(|| {
        names
            .into_par_iter()
            .map(|(name, version)| {
                let r = one(&name, &version);
                (name, version, r)
            })
            .collect()
    });
    let mut failed = Vec::new();
    for (name, version, r) in results {
        match r.or_else(|_| one(&name, &version)) {
            Ok(Some(t)) => found.push((name, version, t)),
            Ok(None) => {}
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    found.sort();
    Ok((found, failed))
}

/// The packages with a newer release, as (name, pinned, newest), and the failures.
type Asked = (Vec<(String, String, String)>, Vec<String>);

/// The (name, version) pairs of one pinned file, given its path and text.
type Packages<'a> = &'a dyn Fn(&str, &str) -> Result<Vec<(String, String)>, String>;

/// The newest compatible release of a (name, version), if newer.
type Newest<'a> = &'a (dyn Fn(&str, &str) -> Result<Option<String>, String> + Sync);

/// One registry's questions: which pinned file lists the packages, how to read them from it,
/// and how to ask the registry about one package.
struct Registry<'a> {
    section: &'static str,
    what: &'static str,
    /// The index or proxy.
    source: &'a str,
    /// The pinned file the packages come from (`Cargo.lock`, `go.mod`).
    file: &'static str,
    /// The (name, version) pairs of one such file.
    packages: Packages<'a>,
    /// The newest compatible release of one package, if newer.
    newest: Newest<'a>,
}

fn registry_section(
    r: &Registry<'_>,
    tree: &Tree<'_>,
    reader: &Reader<'_>,
    skipped: &mut Vec<Skipped>,
) -> Section {
    let mut section = Section::new(r.section);
    section.info_only = true;
    let skip = |skipped: &mut Vec<Skipped>, what: String, source: &str, reason: String| {
        skipped.push(Skipped {
            what,
            source: source.to_owned(),
            reason,
        })
    };
    if let Err(reason) = reader.may_read(r.source) {
        skip(skipped, r.what.into(), r.source, reason);
        return section;
    }
    let files = match (tree.files)(r.file) {
        Ok(f) => f,
        Err(reason) => {
            let what = format!("{} of the pinned tree", r.file);
            skip(skipped, what, "the store or the mirror", reason);
            return section;
        }
    };
    let mut names = std::collections::BTreeSet::new();
    for (path, bytes) in &files {
        match (r.packages)(path, &String::from_utf8_lossy(bytes)) {
            Ok(found) => names.extend(found),
            Err(reason) => skip(skipped, r.file.into(), path, reason),
        }
    }
    let names: Vec<(String, String)> = names.into_iter().collect();
    let asked = names.len();
    let (found, failed) = match ask(names, r.newest) {
        Ok(answers) => answers,
        Err(first) => {
            // The registry was not asked about the rest.
            skip(
                skipped,
                r.what.into(),
                r.source,
                format!("not reachable: {first}"),
            );
            return section;
        }
    };
    section.checked = asked - failed.len();
    if let Some(first) = failed.first() {
        let n = failed.len();
        let reason = format!("{n} of {asked} could not be read; first: {first}");
        skip(skipped, r.what.into(), r.source, reason);
    }
    section.items = found
        .into_iter()
        .map(|(name, pinned, newest)| Item::new(name, pinned, newest))
        .collect();
    section
}

fn cargo_packages(path: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let lock =
        CargoLock::parse_file(text, std::path::Path::new(path)).map_err(|e| e.to_string())?;
    Ok(lock
        .packages
        .iter()
        .filter(|p| p.is_crates_io())
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect())
}

fn go_requires(_path: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let gomod: gomod_parser::GoMod = text.parse()?;
    Ok(gomod
        .require
        .iter()
        .map(|r| (r.module.module_path.clone(), r.module.version.clone()))
        .collect())
}

pub fn sections(
    tree: &Tree<'_>,
    reader: &Reader<'_>,
    options: &Options,
    skipped: &mut Vec<Skipped>,
) -> Vec<Section> {
    let index = options.crates_index.as_str();
    let crate_newest = |name: &str, version: &str| {
        let url = crate_file(index, name).ok_or("not a crate name")?;
        newest_compatible(version, &reader.get(&url, None)?)
    };
    let proxy = options.go_proxy.trim_end_matches('/');
    let module_newest = |module: &str, version: &str| {
        let escaped = crate::verify::gomod::gosum::escape_path(module);
        let list = reader.get(&format!("{proxy}/{escaped}/@v/list"), None)?;
        Ok(newest_go(version, &String::from_utf8_lossy(&list)))
    };
    let registries = [
        Registry {
            section: "crates (information)",
            what: "crates registry index",
            source: index,
            file: "Cargo.lock",
            packages: &cargo_packages,
            newest: &crate_newest,
        },
        Registry {
            section: "Go modules (information)",
            what: "Go module proxy",
            source: &options.go_proxy,
            file: "go.mod",
            packages: &go_requires,
            newest: &module_newest,
        },
    ];
    registries
        .iter()
        .map(|r| registry_section(r, tree, reader, skipped))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_file(versions: &[(&str, bool)]) -> Vec<u8> {
        versions
            .iter()
            .map(|(v, yanked)| {
                serde_json::json!({"name": "serde", "vers": v, "deps": [], "cksum":
                    "0000000000000000000000000000000000000000000000000000000000000000",
                    "features": {}, "yanked": yanked})
                .to_string()
                    + "\n"
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn only_caret_compatible_unyanked_releases_count() {
        let f = index_file(&[
            ("1.0.100", false),
            ("1.0.200", false),
            ("1.0.201", true),
            ("1.1.0-rc.1", false),
            ("2.0.0", false),
        ]);
        assert_eq!(
            newest_compatible("1.0.100", &f).unwrap().as_deref(),
            Some("1.0.200")
        );
        assert_eq!(newest_compatible("1.0.200", &f).unwrap(), None);
        let zero = index_file(&[("0.3.1", false), ("0.3.9", false), ("0.4.0", false)]);
        assert_eq!(
            newest_compatible("0.3.1", &zero).unwrap().as_deref(),
            Some("0.3.9")
        );
    }

    #[test]
    fn go_modules_stay_in_their_major() {
        let list = "v1.2.0\nv1.10.1\nv1.11.0-rc.1\nv2.0.0+incompatible\nv1.9.9\n";
        assert_eq!(newest_go("v1.2.0", list).as_deref(), Some("v1.10.1"));
        assert_eq!(newest_go("v1.10.1", list), None);
        let pseudo = "v0.0.0-20240101000000-abcdefabcdef";
        assert_eq!(newest_go(pseudo, "v0.1.0\n").as_deref(), Some("v0.1.0"));
    }

    #[test]
    fn sparse_paths_follow_cargo() {
        assert_eq!(
            crate_file("sparse+https://index.crates.io/", "serde").unwrap(),
            "https://index.crates.io/se/rd/serde"
        );
        assert_eq!(crate_file("/idx", "a").unwrap(), "/idx/1/a");
        assert_eq!(crate_file("/idx/", "abc").unwrap(), "/idx/3/a/abc");
    }
}
