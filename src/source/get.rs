//! Getting one pinned input into the store: a file by its sha256, a git commit by its id
//! (checked out with its submodules), from a mirror where one is configured.

use std::path::{Path, PathBuf};

use super::download::{DownloadError, Location};
use super::fetch::{Event, Status};
use super::git::{GitError, VerifiedRepo};
use super::mirror::Mirrors;
use super::policy::HostPolicy;
use super::store::{Store, StoreError};
use crate::digest::Sha256Digest;
use crate::lock::GitOid;

/// A failure of one input.
pub struct Failure {
    pub status: Status,
    pub message: String,
}

impl Failure {
    pub fn failed(message: impl ToString) -> Self {
        Self {
            status: Status::Failed,
            message: message.to_string(),
        }
    }
    pub fn missing(message: impl ToString) -> Self {
        Self {
            status: Status::Missing,
            message: message.to_string(),
        }
    }
}

impl From<GitError> for Failure {
    fn from(e: GitError) -> Self {
        match e {
            GitError::NotFound { .. } | GitError::Open { .. } => Failure::missing(e),
            _ => Failure::failed(e),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Download(DownloadError::Truncated { .. }) | StoreError::Mismatch { .. } => {
                Failure::failed(e)
            }
            StoreError::Download(_) => Failure::missing(e),
            StoreError::Io { .. } => Failure::failed(e),
        }
    }
}

/// What a successful input produced.
pub struct Got {
    pub status: Status,
    /// The mirror or URL the bytes came from (none when cached).
    pub from: Option<String>,
    pub path: PathBuf,
    pub bytes: Option<u64>,
    pub note: Option<String>,
}

/// Gets pinned inputs into the store: files by sha256, git commits by id, through mirrors.
pub struct Getter<'a> {
    pub store: &'a Store,
    pub mirrors: &'a Mirrors,
    pub policy: &'a HostPolicy,
    /// Use only the store and local mirrors: never the network.
    pub offline: bool,
}

impl Getter<'_> {
    pub fn file(
        &self,
        url: &str,
        sha256: &Sha256Digest,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<Got, Failure> {
        let path = self.store.object_path(sha256);
        if self.store.verify_object(sha256)? {
            let bytes = std::fs::metadata(&path).ok().map(|m| m.len());
            return Ok(Got {
                status: Status::Cached,
                from: None,
                path,
                bytes,
                note: None,
            });
        }
        let location = self
            .mirrors
            .resolve(url)
            .unwrap_or_else(|| Location::Http(url.to_owned()));
        if self.offline && matches!(location, Location::Http(_)) {
            return Err(Failure::missing(format!(
                "{url} is not in the store, and --offline forbids downloading it; \
                 fetch it first, or pass --mirror {url}=PATH"
            )));
        }
        let path = self
            .store
            .put(&location, sha256, |done, total| {
                events(Event::Bytes { done, total })
            })
            .map_err(|e| {
                let mut f = Failure::from(e);
                if f.status == Status::Missing {
                    f.message.push_str(&format!(
                        "\n  to use a local copy, pass --mirror {url}=PATH"
                    ));
                }
                f
            })?;
        let bytes = std::fs::metadata(&path).ok().map(|m| m.len());
        Ok(Got {
            status: Status::Fetched,
            from: Some(location.to_string()),
            path,
            bytes,
            note: None,
        })
    }

    /// Verifies `commit` (and the tag and tree, when pinned) in the mirror of `url`, then checks
    /// it out into the store with its submodules.
    pub fn git(
        &self,
        url: &str,
        commit: GitOid,
        tag: Option<&str>,
        tree: Option<GitOid>,
    ) -> Result<Got, Failure> {
        let entry = self.store.git_entry(&commit);
        let mut note = None;
        if entry.exists() {
            match CheckoutRecord::verify_entry(&entry, commit, tree) {
                Ok(()) => {
                    // Re-check the pins against the mirror when there is one at hand (no
                    // network for a stored checkout): a moved tag is news.
                    if let Ok((repo, _)) = &self.mirror_repo(url, Some(commit.id()), false) {
                        repo.verify_pin(commit.id(), tag, tree.map(|t| t.id()))?;
                    }
                    return Ok(Got {
                        status: Status::Cached,
                        from: None,
                        path: self.store.git_path(&commit),
                        bytes: None,
                        note: None,
                    });
                }
                Err(reason) => {
                    self.store.remove_git_entry(&commit)?;
                    note = Some(format!(
                        "the stored checkout was damaged ({reason}) and was checked out again"
                    ));
                }
            }
        }
        let (repo, from) = self.mirror_repo(url, Some(commit.id()), true)?;
        let info = repo.verify_pin(commit.id(), tag, tree.map(|t| t.id()))?;
        if let Some(t) = tag
            && repo.tag_commit(t)?.is_none()
        {
            note = Some(format!(
                "tag {t} is not in the mirror; the commit was verified by its id"
            ));
        }
        let staged = self.store.stage_dir()?;
        let tree_dir = staged.path().join(CHECKOUT_DIR);
        std::fs::create_dir(&tree_dir)
            .map_err(|e| Failure::failed(format!("{}: {e}", tree_dir.display())))?;
        let mut bytes = 0;
        let submodules = self.checkout_recursive(&repo, info.tree, &tree_dir, &mut bytes, 0)?;
        let record = CheckoutRecord {
            commit,
            tree: info.tree.into(),
            submodules,
        };
        record.write(staged.path())?;
        self.store.commit_checkout(staged, &commit)?;
        Ok(Got {
            status: Status::Fetched,
            from: Some(from),
            path: self.store.git_path(&commit),
            bytes: Some(bytes),
            note,
        })
    }

    /// Checks out `tree` into `dest` and, through their mirrors, every submodule in it.
    fn checkout_recursive(
        &self,
        repo: &VerifiedRepo,
        tree: gix::ObjectId,
        dest: &Path,
        bytes: &mut u64,
        depth: usize,
    ) -> Result<Vec<SubmoduleRecord>, Failure> {
        let stats = repo.checkout(tree, dest)?;
        *bytes += stats.bytes;
        if stats.gitlinks.is_empty() {
            return Ok(Vec::new());
        }
        if depth > 8 {
            return Err(Failure::failed(format!(
                "submodules nest deeper than 8 levels under {}",
                dest.display()
            )));
        }
        let urls = repo
            .read_path(tree, ".gitmodules")?
            .map(|m| super::git::submodule_urls(&m))
            .unwrap_or_default();
        let mut records = Vec::new();
        for link in stats.gitlinks {
            let url = urls
                .iter()
                .find(|(p, _)| *p == link.path)
                .map(|(_, u)| u.clone())
                .ok_or_else(|| {
                    Failure::failed(format!(
                        "submodule {} ({}) has no URL in .gitmodules",
                        link.path, link.commit
                    ))
                })?;
            self.policy
                .check(&url)
                .map_err(|e| Failure::failed(format!("submodule {}: {e}", link.path)))?;
            let (sub, _) = self
                .mirror_repo(&url, Some(link.commit), true)
                .map_err(|mut f| {
                    f.message =
                        format!("submodule {} at {}: {}", link.path, link.commit, f.message);
                    f
                })?;
            let info = sub.commit(link.commit).map_err(|e| {
                let mut f = Failure::from(e);
                f.message = format!("submodule {} ({url}): {}", link.path, f.message);
                f
            })?;
            let submodules =
                self.checkout_recursive(&sub, info.tree, &dest.join(&link.path), bytes, depth + 1)?;
            records.push(SubmoduleRecord {
                path: link.path,
                commit: link.commit.into(),
                tree: info.tree.into(),
                submodules,
            });
        }
        Ok(records)
    }

    /// The repository to read `url` from, holding `want` (see [`Self::mirror_repo`]), and
    /// where it is.
    pub fn repository(
        &self,
        url: &str,
        want: Option<gix::ObjectId>,
    ) -> Result<(VerifiedRepo, String), Failure> {
        self.mirror_repo(url, want, true)
    }

    /// The repository to read `url` from: its local mirror, else (with `network`, and not
    /// offline) the store's mirror cache of it, cloned or updated over https until it holds
    /// `want`.
    fn mirror_repo(
        &self,
        url: &str,
        want: Option<gix::ObjectId>,
        network: bool,
    ) -> Result<(VerifiedRepo, String), Failure> {
        let remote = match self.mirrors.resolve(url) {
            Some(Location::File(path)) => {
                let repo = VerifiedRepo::open(&path)
                    .map_err(|e| Failure::missing(format!("mirror of {url}: {e}")))?;
                return Ok((repo, path.display().to_string()));
            }
            Some(Location::Http(m)) => m,
            None => url.to_owned(),
        };
        self.cached_remote(url, &remote, want, network && !self.offline)
    }

    fn no_mirror(&self, url: &str, why: &str) -> Failure {
        Failure::missing(format!(
            "no local mirror of {url} is configured{why}; pass --mirror {url}=PATH or add it to \
             [mirrors] in the config"
        ))
    }

    #[cfg(feature = "https")]
    fn cached_remote(
        &self,
        url: &str,
        remote: &str,
        want: Option<gix::ObjectId>,
        may_fetch: bool,
    ) -> Result<(VerifiedRepo, String), Failure> {
        use super::https_git::{HttpsOptions, update};
        let dir = super::mirror::mirror_dir(&self.store.root().join("mirrors"), url);
        if may_fetch {
            let options = HttpsOptions {
                ca_file: self.mirrors.ca_file.clone(),
            };
            update(remote, &dir, want, &options)
                .map_err(|e| self.no_mirror(url, &format!(", and it could not be fetched: {e}")))?;
        } else if !dir.exists() {
            let why = if self.offline {
                ", and --offline forbids fetching it"
            } else {
                ""
            };
            return Err(self.no_mirror(url, why));
        }
        let repo = VerifiedRepo::open(&dir)
            .map_err(|e| Failure::missing(format!("mirror cache of {url}: {e}")))?;
        Ok((repo, format!("{remote} (cached in {})", dir.display())))
    }

    #[cfg(not(feature = "https"))]
    fn cached_remote(
        &self,
        url: &str,
        remote: &str,
        _want: Option<gix::ObjectId>,
        _may_fetch: bool,
    ) -> Result<(VerifiedRepo, String), Failure> {
        let why = format!(
            ", and this kata-repro was built without the `https` feature, so it cannot fetch \
             {remote}"
        );
        Err(self.no_mirror(url, &why))
    }
}

/// Where a checkout's files live inside its store entry.
pub const CHECKOUT_DIR: &str = "tree";
const RECORD_FILE: &str = "record.json";

/// What a store entry for a commit holds: the ids its files were verified against, so that
/// the files can be re-hashed into the same tree ids whenever the entry is used again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckoutRecord {
    pub commit: GitOid,
    pub tree: GitOid,
    pub submodules: Vec<SubmoduleRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmoduleRecord {
    /// Relative to the repository that records the submodule.
    pub path: String,
    pub commit: GitOid,
    pub tree: GitOid,
    pub submodules: Vec<SubmoduleRecord>,
}

impl CheckoutRecord {
    fn write(&self, entry: &Path) -> Result<(), Failure> {
        let path = entry.join(RECORD_FILE);
        let json = serde_json::to_vec_pretty(self).expect("a record serialises");
        std::fs::write(&path, json).map_err(|e| Failure::failed(format!("{}: {e}", path.display())))
    }

    /// Re-hashes a stored checkout: the record must name `commit` (and `tree`, when pinned),
    /// and the files on disk must hash to the recorded trees, submodules included.
    pub fn verify_entry(entry: &Path, commit: GitOid, tree: Option<GitOid>) -> Result<(), String> {
        let text = std::fs::read(entry.join(RECORD_FILE))
            .map_err(|e| format!("no readable {RECORD_FILE}: {e}"))?;
        let record: CheckoutRecord =
            serde_json::from_slice(&text).map_err(|e| format!("{RECORD_FILE}: {e}"))?;
        if record.commit != commit {
            return Err(format!("it records commit {}", record.commit));
        }
        if let Some(pinned) = tree
            && record.tree != pinned
        {
            return Err(format!(
                "it records tree {}, not the pinned {pinned}",
                record.tree
            ));
        }
        verify_dir(&entry.join(CHECKOUT_DIR), record.tree, &record.submodules)
    }
}

fn verify_dir(dir: &Path, tree: GitOid, submodules: &[SubmoduleRecord]) -> Result<(), String> {
    let gitlinks = submodules
        .iter()
        .map(|s| (s.path.clone(), s.commit.id()))
        .collect();
    let actual = super::git::tree_id_of_dir(dir, &gitlinks)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if actual != tree.id() {
        return Err(format!(
            "{} hashes to tree {actual}, not {tree}",
            dir.display()
        ));
    }
    for s in submodules {
        verify_dir(&dir.join(&s.path), s.tree, &s.submodules)?;
    }
    Ok(())
}
