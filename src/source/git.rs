//! Reading pinned commits out of a git repository or bare mirror, in-process with gix.
//!
//! Every object read here is re-hashed and compared with the id it was asked for, so a mirror
//! that serves altered bytes under a pinned id is caught, whatever its pack files claim.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;

/// What gix reported, whichever of its errors it was.
pub type BoxedError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path} is not a git repository: {source}")]
    Open { path: PathBuf, source: BoxedError },
    #[error(
        "moved tag: `{tag}` in {repo} points at {found}, but the lockfile pins {pinned}; \
         the tag was moved upstream or the mirror is wrong. Re-pin with `kata-repro lock` only \
         after reviewing the new commit"
    )]
    MovedTag {
        repo: PathBuf,
        tag: String,
        pinned: ObjectId,
        found: ObjectId,
    },
    #[error(
        "{kind} {id} is not in {repo}: the mirror does not hold the pinned commit; update the mirror"
    )]
    NotFound {
        repo: PathBuf,
        kind: &'static str,
        id: ObjectId,
    },
    #[error("{repo}: object {id} is a {actual}, expected a {expected}")]
    WrongKind {
        repo: PathBuf,
        id: ObjectId,
        expected: &'static str,
        actual: String,
    },
    #[error(
        "{repo}: object {expected} is corrupt or tampered: its content hashes to {actual}; \
         nothing from this mirror was used"
    )]
    Corrupt {
        repo: PathBuf,
        expected: ObjectId,
        actual: ObjectId,
    },
    #[error(
        "commit {commit} has tree {actual}, but the lockfile pins tree {pinned}: \
         this is not the pinned commit"
    )]
    TreeMismatch {
        commit: ObjectId,
        pinned: ObjectId,
        actual: ObjectId,
    },
    #[error("{repo}: cannot read object {id}: {source}")]
    Read {
        repo: PathBuf,
        id: ObjectId,
        source: BoxedError,
    },
    #[error("submodule {path} at {commit}: {message}")]
    Submodule {
        path: String,
        commit: ObjectId,
        message: String,
    },
    #[error("tree {tree} holds an unsafe path `{path}`: refused")]
    UnsafePath { tree: ObjectId, path: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A blob and its slash-separated path.
pub type PathBlob = (String, Vec<u8>);

/// A repository opened for verified reads.
pub struct VerifiedRepo {
    repo: gix::Repository,
    path: PathBuf,
}

/// What a commit says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    pub tree: ObjectId,
    /// Committer time, seconds since the epoch.
    pub time: i64,
}

/// A submodule commit recorded in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gitlink {
    pub path: String,
    pub commit: ObjectId,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckoutStats {
    pub files: u64,
    pub bytes: u64,
    pub gitlinks: Vec<Gitlink>,
}

impl VerifiedRepo {
    /// Opens a repository or bare mirror, ignoring the user's and system git configuration.
    pub fn open(path: &Path) -> Result<Self, GitError> {
        let repo =
            gix::open_opts(path, gix::open::Options::isolated()).map_err(|e| GitError::Open {
                path: path.to_owned(),
                source: e.into(),
            })?;
        Ok(Self {
            repo,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_error(&self, id: ObjectId, error: impl Into<BoxedError>) -> GitError {
        GitError::Read {
            repo: self.path.clone(),
            id,
            source: error.into(),
        }
    }

    /// Finds any object and checks that its content hashes to `id`.
    fn find_verified(
        &self,
        id: ObjectId,
        what: &'static str,
    ) -> Result<(gix::objs::Kind, Vec<u8>), GitError> {
        let obj = self
            .repo
            .try_find_object(id)
            .map_err(|e| self.read_error(id, e))?
            .ok_or(GitError::NotFound {
                repo: self.path.clone(),
                kind: what,
                id,
            })?;
        let actual = gix::objs::compute_hash(id.kind(), obj.kind, &obj.data)
            .map_err(|e| self.read_error(id, e))?;
        if actual != id {
            return Err(GitError::Corrupt {
                repo: self.path.clone(),
                expected: id,
                actual,
            });
        }
        Ok((obj.kind, obj.data.clone()))
    }

    /// Reads an object of the `expected` kind and checks that its content hashes to `id`.
    pub fn read(&self, id: ObjectId, expected: gix::objs::Kind) -> Result<Vec<u8>, GitError> {
        let (kind, data) = self.find_verified(id, kind_name(expected))?;
        if kind != expected {
            return Err(GitError::WrongKind {
                repo: self.path.clone(),
                id,
                expected: kind_name(expected),
                actual: kind.to_string(),
            });
        }
        Ok(data)
    }

    /// The commit `refs/tags/<tag>` points at, following annotated tags; `None` if no such tag.
    pub fn tag_commit(&self, tag: &str) -> Result<Option<ObjectId>, GitError> {
        let name = format!("refs/tags/{tag}");
        let reference =
            self.repo
                .try_find_reference(name.as_str())
                .map_err(|e| GitError::Open {
                    path: self.path.clone(),
                    source: e.into(),
                })?;
        let Some(id) = reference.and_then(|r| r.target().try_id().map(|id| id.to_owned())) else {
            return Ok(None);
        };
        // Peel annotated tags, verifying each object on the way.
        let mut id = id;
        for _ in 0..16 {
            let (kind, data) = self.find_verified(id, "tag target")?;
            if kind != gix::objs::Kind::Tag {
                return Ok(Some(id));
            }
            let tag = gix::objs::TagRef::from_bytes(&data, id.kind())
                .map_err(|e| self.read_error(id, e))?;
            id = ObjectId::from_hex(tag.target).map_err(|e| self.read_error(id, e))?;
        }
        Ok(Some(id))
    }

    /// The tree and committer time of a commit, verified.
    pub fn commit(&self, id: ObjectId) -> Result<CommitInfo, GitError> {
        let data = self.read(id, gix::objs::Kind::Commit)?;
        let commit = gix::objs::CommitRef::from_bytes(&data, id.kind())
            .map_err(|e| self.read_error(id, e))?;
        let committer = commit.committer().map_err(|e| self.read_error(id, e))?;
        let time = committer.time().map_err(|e| self.read_error(id, e))?;
        Ok(CommitInfo {
            tree: commit.tree(),
            time: time.seconds,
        })
    }

    /// Resolves the pinned commit and checks it against a pinned tag and tree.
    pub fn verify_pin(
        &self,
        commit: ObjectId,
        tag: Option<&str>,
        tree: Option<ObjectId>,
    ) -> Result<CommitInfo, GitError> {
        if let Some(tag) = tag
            && let Some(found) = self.tag_commit(tag)?
            && found != commit
        {
            return Err(GitError::MovedTag {
                repo: self.path.clone(),
                tag: tag.to_owned(),
                pinned: commit,
                found,
            });
        }
        let info = self.commit(commit)?;
        if let Some(pinned) = tree
            && info.tree != pinned
        {
            return Err(GitError::TreeMismatch {
                commit,
                pinned,
                actual: info.tree,
            });
        }
        Ok(info)
    }

    /// Entries of a tree, verified.
    fn tree_entries(&self, tree: ObjectId) -> Result<Vec<(String, EntryKind, ObjectId)>, GitError> {
        let data = self.read(tree, gix::objs::Kind::Tree)?;
        let parsed = gix::objs::TreeRef::from_bytes(&data, tree.kind())
            .map_err(|e| self.read_error(tree, e))?;
        parsed
            .entries
            .iter()
            .map(|e| {
                let name = e.filename.to_str().map_err(|_| GitError::UnsafePath {
                    tree,
                    path: e.filename.to_str_lossy().into_owned(),
                })?;
                Ok((name.to_owned(), e.mode.kind(), e.oid.to_owned()))
            })
            .collect()
    }

    /// The commit HEAD points at, or `None` in a repository without commits.
    pub fn head(&self) -> Result<Option<ObjectId>, GitError> {
        let open_err = |e: BoxedError| GitError::Open {
            path: self.path.clone(),
            source: e,
        };
        let head = self.repo.head().map_err(|e| open_err(e.into()))?;
        if head.is_unborn() {
            return Ok(None);
        }
        let id = head.into_peeled_id().map_err(|e| open_err(e.into()))?;
        Ok(Some(id.detach()))
    }

    /// The names of every tag (`refs/tags/<name>`), sorted.
    pub fn tags(&self) -> Result<Vec<String>, GitError> {
        let open_err = |e: BoxedError| GitError::Open {
            path: self.path.clone(),
            source: e,
        };
        let refs = self.repo.references().map_err(|e| open_err(e.into()))?;
        let mut out = Vec::new();
        for r in refs.tags().map_err(|e| open_err(e.into()))? {
            let r = r.map_err(|e| open_err(e.into()))?;
            let name = r.name().as_bstr().to_string();
            if let Some(tag) = name.strip_prefix("refs/tags/") {
                out.push(tag.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether the repository has no work tree (a mirror).
    pub fn is_bare(&self) -> bool {
        self.repo.is_bare()
    }

    /// Every blob under the directory `dir` (slash-separated) of `tree`, recursively, as
    /// (path relative to `dir`, bytes), each verified; `None` if `tree` has no such directory.
    pub fn blobs_under(
        &self,
        tree: ObjectId,
        dir: &str,
    ) -> Result<Option<Vec<PathBlob>>, GitError> {
        let Some(current) = self.subtree(tree, dir)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        self.collect_blobs(current, "", &mut out)?;
        Ok(Some(out))
    }

    /// The id of the directory `dir` (slash-separated) of `tree`; `None` if it has none.
    pub fn subtree(&self, tree: ObjectId, dir: &str) -> Result<Option<ObjectId>, GitError> {
        let mut current = tree;
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            let Some((_, EntryKind::Tree, id)) = self
                .tree_entries(current)?
                .into_iter()
                .find(|(n, _, _)| n == part)
            else {
                return Ok(None);
            };
            current = id;
        }
        Ok(Some(current))
    }

    fn collect_blobs(
        &self,
        tree: ObjectId,
        prefix: &str,
        out: &mut Vec<PathBlob>,
    ) -> Result<(), GitError> {
        for (name, kind, id) in self.tree_entries(tree)? {
            let path = format!("{prefix}{name}");
            match kind {
                EntryKind::Tree => self.collect_blobs(id, &format!("{path}/"), out)?,
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    out.push((path, self.read(id, gix::objs::Kind::Blob)?));
                }
                EntryKind::Link | EntryKind::Commit => {}
            }
        }
        Ok(())
    }

    /// The blob at `path` (slash-separated) in `tree`, or `None` if there is none.
    pub fn read_path(&self, tree: ObjectId, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let mut current = tree;
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let Some((_, kind, id)) = self
                .tree_entries(current)?
                .into_iter()
                .find(|(n, _, _)| n == part)
            else {
                return Ok(None);
            };
            match (last, kind) {
                (true, EntryKind::Blob | EntryKind::BlobExecutable) => {
                    return self.read(id, gix::objs::Kind::Blob).map(Some);
                }
                (false, EntryKind::Tree) => current = id,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Writes `commit`, its tree and every object under it into `dest`, each verified as it is
    /// read, and returns the gitlinks in the tree (followed by the caller, through their own
    /// repositories).
    pub fn copy_commit(
        &self,
        commit: ObjectId,
        dest: &gix::Repository,
    ) -> Result<Vec<Gitlink>, GitError> {
        let info = self.commit(commit)?;
        let data = self.read(commit, gix::objs::Kind::Commit)?;
        self.write_to(dest, gix::objs::Kind::Commit, &data)?;
        let mut links = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.copy_tree(info.tree, dest, "", &mut seen, &mut links)?;
        Ok(links)
    }

    fn copy_tree(
        &self,
        tree: ObjectId,
        dest: &gix::Repository,
        prefix: &str,
        seen: &mut std::collections::HashSet<ObjectId>,
        links: &mut Vec<Gitlink>,
    ) -> Result<(), GitError> {
        let data = self.read(tree, gix::objs::Kind::Tree)?;
        if seen.insert(tree) {
            self.write_to(dest, gix::objs::Kind::Tree, &data)?;
        }
        for (name, kind, id) in self.tree_entries(tree)? {
            let rel = format!("{prefix}{name}");
            match kind {
                EntryKind::Tree => self.copy_tree(id, dest, &format!("{rel}/"), seen, links)?,
                EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                    if seen.insert(id) {
                        let blob = self.read(id, gix::objs::Kind::Blob)?;
                        self.write_to(dest, gix::objs::Kind::Blob, &blob)?;
                    }
                }
                EntryKind::Commit => links.push(Gitlink {
                    path: rel,
                    commit: id,
                }),
            }
        }
        Ok(())
    }

    fn write_to(
        &self,
        dest: &gix::Repository,
        kind: gix::objs::Kind,
        data: &[u8],
    ) -> Result<(), GitError> {
        use gix::objs::Write as _;
        dest.objects
            .write_buf(kind, data)
            .map(|_| ())
            .map_err(|e| GitError::Write {
                path: dest.path().to_owned(),
                source: std::io::Error::other(e.to_string()),
            })
    }

    /// Writes every file of `tree` under `dest` (which must exist and be empty). Gitlinks are
    /// returned, not followed; their directories are created empty.
    pub fn checkout(&self, tree: ObjectId, dest: &Path) -> Result<CheckoutStats, GitError> {
        let mut stats = CheckoutStats::default();
        self.checkout_into(tree, dest, "", &mut stats)?;
        Ok(stats)
    }

    fn checkout_into(
        &self,
        tree: ObjectId,
        dir: &Path,
        prefix: &str,
        stats: &mut CheckoutStats,
    ) -> Result<(), GitError> {
        for (name, kind, id) in self.tree_entries(tree)? {
            let rel = format!("{prefix}{name}");
            if !is_safe_component(&name) {
                return Err(GitError::UnsafePath { tree, path: rel });
            }
            let path = dir.join(&name);
            let write_err = |source| GitError::Write {
                path: path.clone(),
                source,
            };
            match kind {
                EntryKind::Tree => {
                    fs::create_dir(&path).map_err(write_err)?;
                    self.checkout_into(id, &path, &format!("{rel}/"), stats)?;
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let data = self.read(id, gix::objs::Kind::Blob)?;
                    write_file(&path, &data, kind == EntryKind::BlobExecutable)
                        .map_err(write_err)?;
                    stats.files += 1;
                    stats.bytes += data.len() as u64;
                }
                EntryKind::Link => {
                    let data = self.read(id, gix::objs::Kind::Blob)?;
                    let target = data.to_path().map_err(|_| GitError::UnsafePath {
                        tree,
                        path: rel.clone(),
                    })?;
                    std::os::unix::fs::symlink(target, &path).map_err(write_err)?;
                    stats.files += 1;
                }
                EntryKind::Commit => {
                    fs::create_dir(&path).map_err(write_err)?;
                    stats.gitlinks.push(Gitlink {
                        path: rel,
                        commit: id,
                    });
                }
            }
        }
        Ok(())
    }
}

/// How deep submodules may nest.
pub const MAX_SUBMODULE_DEPTH: usize = 8;

impl VerifiedRepo {
    /// The gitlinks anywhere in `tree` (submodule commits, by path), every tree verified as it
    /// is read. A tree without `.gitmodules` is not walked: it can have no submodule that a
    /// checkout would follow.
    pub fn gitlinks(&self, tree: ObjectId) -> Result<Vec<Gitlink>, GitError> {
        let mut links = Vec::new();
        if self.read_path(tree, ".gitmodules")?.is_some() {
            self.collect_gitlinks(tree, "", &mut links)?;
        }
        Ok(links)
    }

    fn collect_gitlinks(
        &self,
        tree: ObjectId,
        prefix: &str,
        links: &mut Vec<Gitlink>,
    ) -> Result<(), GitError> {
        for (name, kind, id) in self.tree_entries(tree)? {
            let rel = format!("{prefix}{name}");
            match kind {
                EntryKind::Tree => self.collect_gitlinks(id, &format!("{rel}/"), links)?,
                EntryKind::Commit => links.push(Gitlink {
                    path: rel,
                    commit: id,
                }),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Every submodule of `tree`, nested ones included, each with the tree of its commit, read
/// verified from the repository `open` gives for its URL. Paths are relative to the top of
/// `repo`, sorted.
pub fn pin_submodules(
    repo: &VerifiedRepo,
    tree: ObjectId,
    open: &dyn Fn(&str, ObjectId) -> Result<VerifiedRepo, String>,
) -> Result<Vec<crate::lock::PinnedSubmodule>, GitError> {
    let mut out = Vec::new();
    pin_submodules_under(repo, tree, open, "", 0, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn pin_submodules_under(
    repo: &VerifiedRepo,
    tree: ObjectId,
    open: &dyn Fn(&str, ObjectId) -> Result<VerifiedRepo, String>,
    prefix: &str,
    depth: usize,
    out: &mut Vec<crate::lock::PinnedSubmodule>,
) -> Result<(), GitError> {
    let links = repo.gitlinks(tree)?;
    if links.is_empty() {
        return Ok(());
    }
    let submodule_err = |path: &str, commit: ObjectId, message: String| GitError::Submodule {
        path: format!("{prefix}{path}"),
        commit,
        message,
    };
    if depth >= MAX_SUBMODULE_DEPTH {
        let first = &links[0];
        return Err(submodule_err(
            &first.path,
            first.commit,
            format!("submodules nest deeper than {MAX_SUBMODULE_DEPTH} levels"),
        ));
    }
    let urls = repo
        .read_path(tree, ".gitmodules")?
        .map(|m| submodule_urls(&m))
        .unwrap_or_default();
    for link in links {
        let url = urls
            .iter()
            .find(|(p, _)| *p == link.path)
            .map(|(_, u)| u.clone())
            .ok_or_else(|| {
                submodule_err(
                    &link.path,
                    link.commit,
                    "it has no URL in .gitmodules".into(),
                )
            })?;
        let sub = open(&url, link.commit)
            .map_err(|m| submodule_err(&link.path, link.commit, format!("{url}: {m}")))?;
        let info = sub.commit(link.commit)?;
        let path = format!("{prefix}{}", link.path);
        out.push(crate::lock::PinnedSubmodule {
            path: path.clone(),
            url,
            commit: link.commit.into(),
            tree: info.tree.into(),
        });
        pin_submodules_under(&sub, info.tree, open, &format!("{path}/"), depth + 1, out)?;
    }
    Ok(())
}

/// Submodule URLs by path, from a `.gitmodules` blob.
pub fn submodule_urls(gitmodules: &[u8]) -> Vec<(String, String)> {
    let Ok(file) = gix::config::File::from_bytes_no_includes(
        gitmodules,
        gix::config::file::Metadata::api(),
        Default::default(),
    ) else {
        return Vec::new();
    };
    let Some(sections) = file.sections_by_name("submodule") else {
        return Vec::new();
    };
    sections
        .filter_map(|s| {
            let path = s.value("path")?.to_str().ok()?.to_owned();
            let url = s.value("url")?.to_str().ok()?.to_owned();
            Some((path, url))
        })
        .collect()
}

fn is_safe_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.eq_ignore_ascii_case(".git")
}

fn write_file(path: &Path, data: &[u8], executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)
}

fn kind_name(kind: gix::objs::Kind) -> &'static str {
    match kind {
        gix::objs::Kind::Commit => "commit",
        gix::objs::Kind::Tree => "tree",
        gix::objs::Kind::Blob => "blob",
        gix::objs::Kind::Tag => "tag",
    }
}

/// The git tree id of a directory as it is on disk, as `git write-tree` would compute it for
/// the same files and modes. Directories at `gitlinks` paths are not read: they enter the tree
/// as the given submodule commits. Empty directories, as in git, do not count.
pub fn tree_id_of_dir(
    dir: &Path,
    gitlinks: &std::collections::BTreeMap<String, ObjectId>,
) -> std::io::Result<ObjectId> {
    use rayon::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    // Every file and symlink, outside submodules.
    let mut files = Vec::new();
    let mut walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("under dir")
            .to_string_lossy()
            .into_owned();
        if entry.file_type().is_dir() {
            if gitlinks.contains_key(&rel) {
                walker.skip_current_dir();
            }
            continue;
        }
        files.push((rel, entry.path().to_owned(), entry.file_type().is_symlink()));
    }
    let hashed: Vec<(String, EntryKind, ObjectId)> = files
        .par_iter()
        .map(|(rel, path, is_link)| {
            let (kind, data) = if *is_link {
                (
                    EntryKind::Link,
                    fs::read_link(path)?.into_os_string().into_encoded_bytes(),
                )
            } else {
                let exec = fs::symlink_metadata(path)?.permissions().mode() & 0o100 != 0;
                (
                    if exec {
                        EntryKind::BlobExecutable
                    } else {
                        EntryKind::Blob
                    },
                    fs::read(path)?,
                )
            };
            let oid = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &data)
                .map_err(std::io::Error::other)?;
            Ok((rel.clone(), kind, oid))
        })
        .collect::<std::io::Result<_>>()?;

    // Nest by directory, then write trees bottom-up.
    #[derive(Default)]
    struct Dir {
        entries: Vec<(String, EntryKind, ObjectId)>,
        dirs: std::collections::BTreeMap<String, Dir>,
    }
    let mut root = Dir::default();
    let place = |root: &mut Dir, rel: &str, kind: EntryKind, oid: ObjectId| {
        let mut parts: Vec<&str> = rel.split('/').collect();
        let name = parts.pop().expect("non-empty path");
        let mut d = root;
        for p in parts {
            d = d.dirs.entry(p.to_owned()).or_default();
        }
        d.entries.push((name.to_owned(), kind, oid));
    };
    for (rel, kind, oid) in hashed {
        place(&mut root, &rel, kind, oid);
    }
    for (rel, commit) in gitlinks {
        place(&mut root, rel, EntryKind::Commit, *commit);
    }
    fn write(d: &Dir) -> std::io::Result<Option<ObjectId>> {
        use gix::objs::WriteTo;
        let mut entries = Vec::new();
        for (name, kind, oid) in &d.entries {
            entries.push(gix::objs::tree::Entry {
                mode: (*kind).into(),
                filename: name.as_str().into(),
                oid: *oid,
            });
        }
        for (name, sub) in &d.dirs {
            if let Some(oid) = write(sub)? {
                entries.push(gix::objs::tree::Entry {
                    mode: EntryKind::Tree.into(),
                    filename: name.as_str().into(),
                    oid,
                });
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        entries.sort();
        let mut buf = Vec::new();
        gix::objs::Tree { entries }.write_to(&mut buf)?;
        gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Tree, &buf)
            .map(Some)
            .map_err(std::io::Error::other)
    }
    Ok(write(&root)?.unwrap_or_else(|| ObjectId::empty_tree(gix::hash::Kind::Sha1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_components_are_refused() {
        for bad in ["", ".", "..", ".git", ".GIT", "a/b"] {
            assert!(!is_safe_component(bad), "{bad}");
        }
        assert!(is_safe_component(".gitmodules"));
    }

    #[test]
    fn gitmodules_are_read() {
        let text = b"[submodule \"rust-vmm-ci\"]\n\tpath = rust-vmm-ci\n\turl = https://github.com/rust-vmm/rust-vmm-ci.git\n";
        assert_eq!(
            submodule_urls(text),
            [(
                "rust-vmm-ci".to_owned(),
                "https://github.com/rust-vmm/rust-vmm-ci.git".to_owned()
            )]
        );
    }
}
