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
        let dest = self.store.git_path(&commit);
        let mirror = self.mirror_repo(url);
        if dest.is_dir() {
            // Re-check the pins against the mirror when there is one: a moved tag is news.
            if let Ok((repo, _)) = &mirror {
                repo.verify_pin(commit.id(), tag, tree.map(|t| t.id()))?;
            }
            return Ok(Got {
                status: Status::Cached,
                from: None,
                path: dest,
                bytes: None,
                note: None,
            });
        }
        let (repo, from) = mirror?;
        let info = repo.verify_pin(commit.id(), tag, tree.map(|t| t.id()))?;
        let note = match tag {
            Some(t) if repo.tag_commit(t)?.is_none() => Some(format!(
                "tag {t} is not in the mirror; the commit was verified by its id"
            )),
            _ => None,
        };
        let staged = self.store.stage_dir()?;
        let mut bytes = 0;
        self.checkout_recursive(&repo, info.tree, staged.path(), &mut bytes, 0)?;
        let path = self.store.commit_checkout(staged, &commit)?;
        Ok(Got {
            status: Status::Fetched,
            from: Some(from),
            path,
            bytes: Some(bytes),
            note,
        })
    }

    fn checkout_recursive(
        &self,
        repo: &VerifiedRepo,
        tree: gix::ObjectId,
        dest: &Path,
        bytes: &mut u64,
        depth: usize,
    ) -> Result<(), Failure> {
        let stats = repo.checkout(tree, dest)?;
        *bytes += stats.bytes;
        if stats.gitlinks.is_empty() {
            return Ok(());
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
            let (sub, _) = self.mirror_repo(&url).map_err(|mut f| {
                f.message = format!("submodule {} at {}: {}", link.path, link.commit, f.message);
                f
            })?;
            let info = sub.commit(link.commit).map_err(|e| {
                let mut f = Failure::from(e);
                f.message = format!("submodule {} ({url}): {}", link.path, f.message);
                f
            })?;
            self.checkout_recursive(&sub, info.tree, &dest.join(&link.path), bytes, depth + 1)?;
        }
        Ok(())
    }

    fn mirror_repo(&self, url: &str) -> Result<(VerifiedRepo, String), Failure> {
        match self.mirrors.resolve(url) {
            Some(Location::File(path)) => {
                let repo = VerifiedRepo::open(&path)
                    .map_err(|e| Failure::missing(format!("mirror of {url}: {e}")))?;
                Ok((repo, path.display().to_string()))
            }
            Some(Location::Http(m)) => Err(Failure::missing(format!(
                "mirror {m} of {url} is remote, and git is only read from local mirrors; \
                 clone it and pass --mirror {url}=PATH"
            ))),
            None => Err(Failure::missing(format!(
                "no mirror of {url} is configured and git is only read from local mirrors; \
                 pass --mirror {url}=PATH or add it to [mirrors] in the config"
            ))),
        }
    }
}
