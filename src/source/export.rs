//! Bare mirrors of every git source a lockfile needs, for carrying into an air-gapped network:
//! the Kata source, each Cargo git dependency and, through `.gitmodules`, every submodule.
//!
//! Each mirror holds exactly the pinned commits and every object under them, each read through
//! [`VerifiedRepo`] (re-hashed), so nothing unverified is carried over. The commits' history is
//! not: each mirror lists its pinned commits in `shallow`, as a shallow clone does. A
//! `mirrors.toml` beside them maps every upstream URL to its mirror, by relative path, so the
//! directory can be moved as a whole. It is written into a staging directory and moved into
//! place only when complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use serde::Serialize;

use super::get::{Failure, Getter};
use super::git::VerifiedRepo;
use super::mirror::mirror_dir;
use crate::lock::Lockfile;

/// One mirror written.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub upstream: String,
    /// Relative to the output directory.
    pub path: PathBuf,
    /// The pinned commits it holds.
    pub commits: Vec<String>,
    /// Where its objects were read from.
    pub from: String,
}

/// A git source to carry: its URL, its pinned commit, and (for Kata) the pinned tag and tree.
struct Wanted {
    url: String,
    commit: ObjectId,
    tag: Option<String>,
    tree: Option<ObjectId>,
}

/// Writes the mirrors of every git source `lock` needs, and their `mirrors.toml`, into `dir`
/// (which must not exist, or be empty).
pub fn write_mirrors(get: &Getter, lock: &Lockfile, dir: &Path) -> Result<Vec<Exported>, Failure> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| Failure::failed(format!("{}: {e}", dir.display())))?
            .next()
            .is_some()
    {
        return Err(Failure::failed(format!(
            "{} is not empty; give a new directory for the mirrors",
            dir.display()
        )));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Failure::failed(format!("{}: {e}", parent.display())))?;
    let stage = tempfile::Builder::new()
        .prefix(".mirrors-")
        .tempdir_in(&parent)
        .map_err(|e| Failure::failed(format!("{}: {e}", parent.display())))?;
    let mut queue: Vec<Wanted> = vec![Wanted {
        url: lock.source.url.clone(),
        commit: lock.source.commit.id(),
        tag: Some(lock.source.tag.clone()),
        tree: Some(lock.source.tree.id()),
    }];
    queue.extend(lock.git.iter().map(|g| Wanted {
        url: g.url.clone(),
        commit: g.commit.id(),
        tag: None,
        tree: None,
    }));
    let mut written: BTreeMap<PathBuf, Exported> = BTreeMap::new();
    while let Some(w) = queue.pop() {
        let rel = mirror_dir(Path::new(""), &w.url);
        let (repo, from) = get.repository(&w.url, Some(w.commit))?;
        repo.verify_pin(w.commit, w.tag.as_deref(), w.tree)?;
        let links = copy_one(&repo, &w, &stage.path().join(&rel))?;
        for (path, commit) in links {
            let sub_url = submodule_url(&repo, w.commit, &path)?;
            get.policy
                .check(&sub_url)
                .map_err(|e| Failure::failed(format!("submodule {path} of {}: {e}", w.url)))?;
            queue.push(Wanted {
                url: sub_url,
                commit,
                tag: None,
                tree: None,
            });
        }
        let entry = written.entry(rel.clone()).or_insert_with(|| Exported {
            upstream: w.url.clone(),
            path: rel,
            commits: Vec::new(),
            from,
        });
        if !entry.commits.contains(&w.commit.to_string()) {
            entry.commits.push(w.commit.to_string());
        }
    }
    let exported: Vec<Exported> = written.into_values().collect();
    write_config(&exported, &stage.path().join("mirrors.toml"))?;
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| Failure::failed(format!("{}: {e}", dir.display())))?;
    }
    let staged = stage.keep();
    std::fs::rename(&staged, dir)
        .map_err(|e| Failure::failed(format!("{}: {e}", dir.display())))?;
    Ok(exported)
}

/// Copies one pinned commit into the bare repository at `dest` (made when new), with a ref for
/// it and its tag, and lists it as a shallow root. Returns its gitlinks: (path, commit).
fn copy_one(
    repo: &VerifiedRepo,
    w: &Wanted,
    dest: &Path,
) -> Result<Vec<(String, ObjectId)>, Failure> {
    let io = |e: std::io::Error| Failure::failed(format!("{}: {e}", dest.display()));
    if !dest.exists() {
        std::fs::create_dir_all(dest).map_err(io)?;
        gix::create::into(
            dest,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
        )
        .map_err(|e| Failure::failed(format!("{}: {e}", dest.display())))?;
        // HEAD detached at the first pinned commit, so that a clone checks it out.
        std::fs::write(dest.join("HEAD"), format!("{}\n", w.commit)).map_err(io)?;
    }
    let out = gix::open_opts(dest, gix::open::Options::isolated())
        .map_err(|e| Failure::failed(format!("{}: {e}", dest.display())))?;
    let links = repo.copy_commit(w.commit, &out)?;
    // A branch per pinned commit: cargo (libgit2) fetches a pinned rev from a local
    // repository only through refs/heads.
    let mut refs = vec![format!("refs/heads/kata-repro/pinned/{}", w.commit)];
    refs.extend(w.tag.iter().map(|t| format!("refs/tags/{t}")));
    for name in refs {
        out.reference(
            name.as_str(),
            w.commit,
            gix::refs::transaction::PreviousValue::Any,
            "kata-repro mirror",
        )
        .map_err(|e| Failure::failed(format!("{}: {name}: {e}", dest.display())))?;
    }
    let shallow = dest.join("shallow");
    let mut roots = std::fs::read_to_string(&shallow).unwrap_or_default();
    let id = w.commit.to_string();
    if !roots.lines().any(|l| l == id) {
        roots.push_str(&format!("{}\n", w.commit));
        std::fs::write(&shallow, roots).map_err(io)?;
    }
    Ok(links.into_iter().map(|l| (l.path, l.commit)).collect())
}

/// The URL `.gitmodules` gives the submodule at `path` in `commit`.
fn submodule_url(repo: &VerifiedRepo, commit: ObjectId, path: &str) -> Result<String, Failure> {
    let tree = repo.commit(commit)?.tree;
    let urls = repo
        .read_path(tree, ".gitmodules")?
        .map(|m| super::git::submodule_urls(&m))
        .unwrap_or_default();
    urls.into_iter()
        .find(|(p, _)| p == path)
        .map(|(_, u)| u)
        .ok_or_else(|| {
            Failure::failed(format!(
                "submodule {path} of commit {commit} has no URL in .gitmodules"
            ))
        })
}

/// `[mirrors]` mapping each upstream to its mirror, relative to the file.
fn write_config(exported: &[Exported], path: &Path) -> Result<(), Failure> {
    let mirrors: BTreeMap<&str, String> = exported
        .iter()
        .map(|e| (e.upstream.as_str(), e.path.display().to_string()))
        .collect();
    let text = format!(
        "# Written by kata-repro mirror: each upstream git source of the lockfile, mapped to its\n\
         # bare mirror here (paths are relative to this file).\n{}",
        toml::to_string(&BTreeMap::from([("mirrors", mirrors)])).expect("serialises")
    );
    std::fs::write(path, text).map_err(|e| Failure::failed(format!("{}: {e}", path.display())))
}
