//! Getting one pinned input into the store: a file by its sha256, a git commit by its id
//! (checked out with its submodules), from a mirror where one is configured.

use std::path::{Path, PathBuf};

use super::download::{DownloadError, Location, Redirects};
use super::git::{GitError, VerifiedRepo};
use super::mirror::Mirrors;
use super::policy::HostPolicy;
use super::report::{Event, Status};
use super::store::{CHECKOUT_DIR, ObjectState, Store, StoreError};
use crate::digest::Sha256Digest;
use crate::lock::{GitOid, PinnedSubmodule};

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
            StoreError::Download(
                DownloadError::Truncated { .. }
                | DownloadError::TooLarge { .. }
                | DownloadError::Redirected { .. },
            )
            | StoreError::Mismatch { .. } => Failure::failed(e),
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
    /// What was wrong with the stored copy that was replaced.
    pub damaged: Option<String>,
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
        let damaged = match self.store.check_object(sha256)? {
            ObjectState::Good => {
                let bytes = std::fs::metadata(&path).ok().map(|m| m.len());
                return Ok(Got {
                    status: Status::Cached,
                    from: None,
                    path,
                    bytes,
                    note: None,
                    damaged: None,
                });
            }
            ObjectState::Absent => None,
            ObjectState::Damaged { actual } => Some(format!(
                "the stored copy hashed to sha256 {actual}, not the pinned {sha256}; it was \
                 removed"
            )),
        };
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
        // The upstream's redirects are followed where the policy allows their target.
        let redirects = match &location {
            Location::Http(u) if u == url => Redirects::Within(self.policy),
            _ => Redirects::Refused,
        };
        let path = self
            .store
            .put_with(&location, sha256, redirects, |done, total| {
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
            status: if damaged.is_some() {
                Status::Repaired
            } else {
                Status::Fetched
            },
            from: Some(location.to_string()),
            path,
            bytes,
            note: None,
            damaged,
        })
    }

    /// Verifies `commit` (and the tag, when pinned) in the mirror of `url`, then checks it out
    /// into the store with its submodules. A stored checkout is used again only when its files
    /// hash to the trees of `pin`, never to anything the store wrote about itself.
    pub fn git(
        &self,
        url: &str,
        commit: GitOid,
        tag: Option<&str>,
        pin: TreePin<'_>,
    ) -> Result<Got, Failure> {
        // One writer per commit: a second waits, then finds the checkout in place.
        let _writing = self.store.lock_entry(&format!("git-{commit}"))?;
        let entry = self.store.git_entry(&commit);
        let mut damaged = None;
        if entry.exists() {
            let expected = match &pin {
                TreePin::Locked(pins) => pins.clone(),
                TreePin::FromCommit => self.pins_from_commit(url, commit)?,
            };
            let checkout = self.store.git_path(&commit);
            match verify_checkout(&checkout, &expected) {
                Ok(()) => {
                    // Re-check the pins against the mirror when there is one at hand (no
                    // network for a stored checkout): a moved tag is news.
                    if let Ok((repo, _)) = &self.mirror_repo(url, Some(commit.id()), false) {
                        repo.verify_pin(commit.id(), tag, Some(expected.tree.id()))?;
                    }
                    return Ok(Got {
                        status: Status::Cached,
                        from: None,
                        path: checkout,
                        bytes: None,
                        note: None,
                        damaged: None,
                    });
                }
                Err(reason) => {
                    self.store.remove_git_entry(&commit)?;
                    damaged = Some(format!(
                        "the stored checkout of {commit} was damaged: {reason}"
                    ));
                }
            }
        }
        let (repo, from) = self.mirror_repo(url, Some(commit.id()), true)?;
        let locked_tree = match &pin {
            TreePin::Locked(p) => Some(p.tree.id()),
            TreePin::FromCommit => None,
        };
        let info = repo.verify_pin(commit.id(), tag, locked_tree)?;
        let mut note = None;
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
        let mut submodules = Vec::new();
        self.checkout_recursive(&repo, info.tree, &tree_dir, "", &mut bytes, &mut submodules)?;
        submodules.sort_by(|a, b| a.path.cmp(&b.path));
        if let TreePin::Locked(pins) = &pin {
            check_submodule_pins(&pins.submodules, &submodules)?;
        }
        self.store.commit_checkout(staged, &commit)?;
        Ok(Got {
            status: if damaged.is_some() {
                Status::Repaired
            } else {
                Status::Fetched
            },
            from: Some(from),
            path: self.store.git_path(&commit),
            bytes: Some(bytes),
            note,
            damaged,
        })
    }

    /// The trees a checkout of `commit` must hash to when no lockfile pins them: read again,
    /// verified, from the commit and its submodules' commits in their repositories.
    fn pins_from_commit(&self, url: &str, commit: GitOid) -> Result<TreePins<'static>, Failure> {
        let (repo, _) = self.mirror_repo(url, Some(commit.id()), true)?;
        let info = repo.commit(commit.id())?;
        let open = |sub_url: &str, want: gix::ObjectId| -> Result<VerifiedRepo, String> {
            self.policy.check(sub_url).map_err(|e| e.to_string())?;
            self.mirror_repo(sub_url, Some(want), true)
                .map(|(r, _)| r)
                .map_err(|f| f.message)
        };
        let submodules = super::git::pin_submodules(&repo, info.tree, &open)?;
        Ok(TreePins {
            tree: info.tree.into(),
            submodules: std::borrow::Cow::Owned(submodules),
        })
    }

    /// Checks out `tree` into `dest` and, through their mirrors, every submodule in it,
    /// recording each submodule (path from the top, commit, tree) in `out`.
    fn checkout_recursive(
        &self,
        repo: &VerifiedRepo,
        tree: gix::ObjectId,
        dest: &Path,
        prefix: &str,
        bytes: &mut u64,
        out: &mut Vec<PinnedSubmodule>,
    ) -> Result<(), Failure> {
        let stats = repo.checkout(tree, dest)?;
        *bytes += stats.bytes;
        if stats.gitlinks.is_empty() {
            return Ok(());
        }
        if prefix.matches('/').count() >= super::git::MAX_SUBMODULE_DEPTH {
            return Err(Failure::failed(format!(
                "submodules nest deeper than {} levels under {}",
                super::git::MAX_SUBMODULE_DEPTH,
                dest.display()
            )));
        }
        let urls = repo
            .read_path(tree, ".gitmodules")?
            .map(|m| super::git::submodule_urls(&m))
            .unwrap_or_default();
        for link in stats.gitlinks {
            let path = format!("{prefix}{}", link.path);
            let url = urls
                .iter()
                .find(|(p, _)| *p == link.path)
                .map(|(_, u)| u.clone())
                .ok_or_else(|| {
                    Failure::failed(format!(
                        "submodule {path} ({}) has no URL in .gitmodules",
                        link.commit
                    ))
                })?;
            self.policy
                .check(&url)
                .map_err(|e| Failure::failed(format!("submodule {path}: {e}")))?;
            let (sub, _) = self
                .mirror_repo(&url, Some(link.commit), true)
                .map_err(|mut f| {
                    f.message = format!("submodule {path} at {}: {}", link.commit, f.message);
                    f
                })?;
            let info = sub.commit(link.commit).map_err(|e| {
                let mut f = Failure::from(e);
                f.message = format!("submodule {path} ({url}): {}", f.message);
                f
            })?;
            out.push(PinnedSubmodule {
                path: path.clone(),
                url,
                commit: link.commit.into(),
                tree: info.tree.into(),
            });
            self.checkout_recursive(
                &sub,
                info.tree,
                &dest.join(&link.path),
                &format!("{path}/"),
                bytes,
                out,
            )?;
        }
        Ok(())
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
        let dir = super::mirror::mirror_dir(&self.store.mirrors_dir(), url);
        let id = crate::digest::Sha256Digest::of(dir.as_os_str().as_encoded_bytes()).to_hex();
        let _writing = self.store.lock_entry(&format!("mirror-{}", &id[..32]))?;
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

/// The trees a checkout must hash to: the commit's tree and every submodule's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePins<'a> {
    pub tree: GitOid,
    /// Sorted by path; nested submodules carry their full path from the top.
    pub submodules: std::borrow::Cow<'a, [PinnedSubmodule]>,
}

/// What a checkout is checked against.
#[derive(Debug, Clone)]
pub enum TreePin<'a> {
    /// The lockfile's pins.
    Locked(TreePins<'a>),
    /// No lockfile pins the trees (`verify cargo` on a bare Cargo.lock): they are read again,
    /// verified, from the commit in its repository whenever a stored checkout is used.
    FromCommit,
}

impl<'a> TreePin<'a> {
    /// The lockfile's pins of a git dependency, or why it cannot be used.
    pub fn of_dependency(dep: &'a crate::lock::GitDependency) -> Result<Self, Failure> {
        let tree = dep.tree.ok_or_else(|| Failure {
            status: Status::Unpinned,
            message: format!(
                "the lockfile pins commit {} of {} but not its tree, so it is never used; \
                 regenerate the lockfile with `kata-repro lock` where a mirror of it can be read",
                dep.commit, dep.url
            ),
        })?;
        Ok(TreePin::Locked(TreePins {
            tree,
            submodules: std::borrow::Cow::Borrowed(&dep.submodules),
        }))
    }

    /// The lockfile's pins of the Kata source.
    pub fn of_source(source: &'a crate::lock::Source) -> Self {
        TreePin::Locked(TreePins {
            tree: source.tree,
            submodules: std::borrow::Cow::Borrowed(&source.submodules),
        })
    }
}

/// The submodules a checkout found must be the ones the lockfile pins, commit and tree.
fn check_submodule_pins(
    pinned: &[PinnedSubmodule],
    found: &[PinnedSubmodule],
) -> Result<(), Failure> {
    for f in found {
        match pinned.iter().find(|p| p.path == f.path) {
            None => {
                return Err(Failure {
                    status: Status::Unpinned,
                    message: format!(
                        "submodule {} ({} at {}) is not pinned in the lockfile; regenerate it \
                         with `kata-repro lock`",
                        f.path, f.url, f.commit
                    ),
                });
            }
            Some(p) if (p.commit, p.tree) != (f.commit, f.tree) => {
                return Err(Failure::failed(format!(
                    "submodule {}: the lockfile pins commit {} with tree {}, the checkout has \
                     commit {} with tree {}",
                    f.path, p.commit, p.tree, f.commit, f.tree
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(p) = pinned
        .iter()
        .find(|p| !found.iter().any(|f| f.path == p.path))
    {
        return Err(Failure::failed(format!(
            "the lockfile pins submodule {} at {}, but the tree has no such submodule",
            p.path, p.commit
        )));
    }
    Ok(())
}

/// A stored checkout whose files are not the pinned tree.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutMismatch {
    #[error("{}: {source}", dir.display())]
    Unreadable {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} hashes to tree {found}, not the pinned {expected}", dir.display())]
    Tree {
        dir: std::path::PathBuf,
        expected: GitOid,
        found: gix::ObjectId,
    },
}

/// Re-hashes a stored checkout into git tree ids: its files must hash to the pinned tree, and
/// each submodule's files to its pinned tree.
pub fn verify_checkout(dir: &Path, pins: &TreePins<'_>) -> Result<(), CheckoutMismatch> {
    verify_dir(dir, pins.tree, &pins.submodules, "")
}

/// The submodules directly under `prefix` (not inside another submodule below it).
fn direct_submodules<'s>(subs: &'s [PinnedSubmodule], prefix: &str) -> Vec<&'s PinnedSubmodule> {
    let below = |s: &PinnedSubmodule| s.path.strip_prefix(prefix).map(str::to_owned);
    subs.iter()
        .filter(|s| {
            let Some(rel) = below(s) else { return false };
            !subs.iter().any(|t| {
                t.path != s.path
                    && below(t).is_some_and(|t_rel| rel.starts_with(&format!("{t_rel}/")))
            })
        })
        .collect()
}

fn verify_dir(
    dir: &Path,
    tree: GitOid,
    subs: &[PinnedSubmodule],
    prefix: &str,
) -> Result<(), CheckoutMismatch> {
    let direct = direct_submodules(subs, prefix);
    let gitlinks = direct
        .iter()
        .map(|s| (s.path[prefix.len()..].to_owned(), s.commit.id()))
        .collect();
    let found = super::git::tree_id_of_dir(dir, &gitlinks).map_err(|source| {
        CheckoutMismatch::Unreadable {
            dir: dir.to_owned(),
            source,
        }
    })?;
    if found != tree.id() {
        return Err(CheckoutMismatch::Tree {
            dir: dir.to_owned(),
            expected: tree,
            found,
        });
    }
    for s in direct {
        let rel = &s.path[prefix.len()..];
        verify_dir(&dir.join(rel), s.tree, subs, &format!("{}/", s.path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(path: &str) -> PinnedSubmodule {
        let oid: GitOid = "1111111111111111111111111111111111111111".parse().unwrap();
        PinnedSubmodule {
            path: path.into(),
            url: format!("https://github.com/x/{path}"),
            commit: oid,
            tree: oid,
        }
    }

    #[test]
    fn nested_submodules_are_checked_under_their_parent() {
        let subs = [sub("a"), sub("a/b"), sub("a/b/c"), sub("d"), sub("ab")];
        let paths = |prefix| {
            direct_submodules(&subs, prefix)
                .iter()
                .map(|s| s.path.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(""), ["a", "d", "ab"]);
        assert_eq!(paths("a/"), ["a/b"]);
        assert_eq!(paths("a/b/"), ["a/b/c"]);
        assert!(paths("d/").is_empty());
    }

    #[test]
    fn submodules_must_be_the_pinned_ones() {
        assert!(check_submodule_pins(&[sub("a")], &[sub("a")]).is_ok());
        let unpinned = check_submodule_pins(&[], &[sub("a")]).unwrap_err();
        assert_eq!(unpinned.status, Status::Unpinned);
        let gone = check_submodule_pins(&[sub("a")], &[]).unwrap_err();
        assert!(
            gone.message.contains("no such submodule"),
            "{}",
            gone.message
        );
        let mut other = sub("a");
        other.tree = "2222222222222222222222222222222222222222".parse().unwrap();
        let moved = check_submodule_pins(&[sub("a")], &[other]).unwrap_err();
        assert!(moved.message.contains("2222222"), "{}", moved.message);
    }
}
