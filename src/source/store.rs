//! The content-addressed store. An entry appears only after its bytes were verified.
//!
//! Layout under the store root:
//! - `objects/sha256/<hex>`: verified files (tarballs, archives, wheels);
//! - `git/<commit>/`: verified checkouts of a commit, submodules included;
//! - `tmp/`: staging; anything here is unverified. Each writer stages under a name of its own;
//!   what writers that died left is removed when the store is next opened by a process alone;
//! - `lock`: held shared by every process that uses the store, exclusively only for that sweep;
//! - `locks/<entry>`: held exclusively by the one writer producing (or using, for trees that
//!   are rebuilt on every use) that entry, so writers of different entries never wait for each
//!   other and readers never wait at all.
//!
//! Every write goes to `tmp/`, is verified there, and is then renamed into place, so a killed
//! fetch never leaves a partial entry where a reader would look, and a reader sees an entry
//! whole or not at all.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{HashingWriter, Sha256Digest};
use crate::files::{remove_tree, sync_dir};
use crate::lock::GitOid;
use crate::source::download::{self, DownloadError, Limits, Location, Redirects};

pub const STORE_ENV: &str = "KATA_REPRO_STORE";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(
        "{from}: sha256 mismatch\n  expected {expected}\n  actual   {actual} ({size} bytes)\n  \
         the bytes were deleted; check the mirror or the pin"
    )]
    Mismatch {
        from: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
        size: u64,
    },
}

/// What the store holds under an object's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectState {
    Absent,
    Good,
    /// Present, but its bytes hash to `actual`.
    Damaged {
        actual: Sha256Digest,
    },
}

pub struct Store {
    root: PathBuf,
    _lock: File,
    wait_notice: Option<Box<WaitNotice>>,
    /// Entry locks this process holds: asked again, the same lock is shared, never waited for.
    held: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<File>>>,
}

/// Called with an entry's name when another process holds it.
pub type WaitNotice = dyn Fn(&str) + Send + Sync;

/// An exclusive lock on one store entry (`locks/<name>`), held until every copy is dropped.
/// It excludes other processes; within the process that holds it, asking again shares it.
#[derive(Debug, Clone)]
pub struct EntryLock {
    _file: std::sync::Arc<File>,
    name: String,
}

impl EntryLock {
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Shared,
    Exclusive,
}

/// Locks `file`, calling `on_wait` first when another holder makes it wait.
fn lock_waiting(file: &File, mode: Mode, on_wait: impl FnOnce()) -> io::Result<()> {
    let tried = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match tried {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => {
            on_wait();
            match mode {
                Mode::Shared => file.lock_shared(),
                Mode::Exclusive => file.lock(),
            }
        }
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a checkout's files live inside its store entry.
pub const CHECKOUT_DIR: &str = "tree";

/// A file being written into the store's staging area (see [`Store::stage`]).
pub struct Staged(tempfile::NamedTempFile);

impl Staged {
    pub fn file(&self) -> &File {
        self.0.as_file()
    }
}

impl Store {
    /// The store directory: `explicit`, else `$KATA_REPRO_STORE`, else `configured`, else the
    /// user's cache dir.
    pub fn default_root(explicit: Option<&Path>, configured: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_owned)
            .or_else(|| std::env::var_os(STORE_ENV).map(PathBuf::from))
            .or_else(|| configured.map(Path::to_owned))
            .unwrap_or_else(|| {
                dirs::cache_dir()
                    .unwrap_or_else(std::env::temp_dir)
                    .join("kata-repro")
                    .join("store")
            })
    }

    /// Opens (creating) the store, sharing it with every other process that uses it: readers
    /// and writers of other entries never wait. When no other process has it open, what
    /// writers that died left in staging is removed first. `on_wait` is called once if that
    /// sweep, in another process, is under way.
    pub fn open(root: &Path, on_wait: impl FnOnce()) -> Result<Self, StoreError> {
        for dir in [
            "objects/sha256",
            "git",
            "tmp",
            "actions",
            "toolchains",
            "locks",
        ] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let store = Self {
            root: root.to_owned(),
            _lock: lock,
            wait_notice: None,
            held: Default::default(),
        };
        let alone = match store._lock.try_lock() {
            Ok(()) => true,
            Err(fs::TryLockError::WouldBlock) => false,
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        };
        if alone {
            store.clear_staging()?;
        }
        // From exclusive (after the sweep) or from nothing, to shared.
        lock_waiting(&store._lock, Mode::Shared, on_wait).map_err(io_err(&lock_path))?;
        Ok(store)
    }

    /// Calls `notice` with an entry's name whenever [`Self::lock_entry`] has to wait for it.
    pub fn with_wait_notice(mut self, notice: Box<WaitNotice>) -> Self {
        self.wait_notice = Some(notice);
        self
    }

    /// Takes the exclusive lock of the entry `name` (e.g. `git-<commit>`), waiting for the
    /// process that holds it. Whoever produces an entry, or rebuilds one it then uses, holds it.
    pub fn lock_entry(&self, name: &str) -> Result<EntryLock, StoreError> {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !name.starts_with('.'),
            "entry lock names are plain file names: {name}"
        );
        let held = || self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = held().get(name).and_then(std::sync::Weak::upgrade) {
            return Ok(EntryLock {
                _file: file,
                name: name.to_owned(),
            });
        }
        // Not held here: wait for other processes (and threads) without blocking this
        // process's other entries.
        let path = self.root.join("locks").join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let on_wait = || {
            if let Some(notice) = &self.wait_notice {
                notice(name);
            }
        };
        lock_waiting(&file, Mode::Exclusive, on_wait).map_err(io_err(&path))?;
        let file = std::sync::Arc::new(file);
        held().insert(name.to_owned(), std::sync::Arc::downgrade(&file));
        Ok(EntryLock {
            _file: file,
            name: name.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clear_staging(&self) -> Result<(), StoreError> {
        let tmp = self.staging_dir();
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let path = entry.map_err(io_err(&tmp))?.path();
            let removed = if path.is_dir() {
                remove_tree(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(io_err(&path))?;
        }
        Ok(())
    }

    pub fn object_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("objects/sha256").join(digest.to_hex())
    }

    /// The store entry of a commit: its checkout and the record it was verified against.
    pub fn git_entry(&self, commit: &GitOid) -> PathBuf {
        self.root.join("git").join(commit.to_string())
    }

    /// The checked-out files of a commit.
    pub fn git_path(&self, commit: &GitOid) -> PathBuf {
        self.git_entry(commit).join(CHECKOUT_DIR)
    }

    /// Removes a damaged checkout, so that it is checked out again.
    pub fn remove_git_entry(&self, commit: &GitOid) -> Result<(), StoreError> {
        let entry = self.git_entry(commit);
        fs::remove_dir_all(&entry).map_err(io_err(&entry))
    }

    /// Checks an existing object by re-hashing it. A damaged object is removed, so that it is
    /// fetched again. Returns whether a good object is present.
    pub fn verify_object(&self, digest: &Sha256Digest) -> Result<bool, StoreError> {
        Ok(self.check_object(digest)? == ObjectState::Good)
    }

    /// Re-hashes the object named `digest`: absent, good, or damaged (then removed, so that
    /// it is fetched again, and the digest it had is returned for the report).
    pub fn check_object(&self, digest: &Sha256Digest) -> Result<ObjectState, StoreError> {
        let path = self.object_path(digest);
        if !path.exists() {
            return Ok(ObjectState::Absent);
        }
        let actual = Sha256Digest::of_file(&path).map_err(io_err(&path))?;
        if actual == *digest {
            return Ok(ObjectState::Good);
        }
        fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(ObjectState::Damaged { actual })
    }

    /// Downloads `from` into the store if its sha256 is `expected`; otherwise nothing is kept.
    /// A transfer that fails on the network is tried again twice. Redirects are refused.
    pub fn put(
        &self,
        from: &Location,
        expected: &Sha256Digest,
        progress: impl FnMut(u64, Option<u64>),
    ) -> Result<PathBuf, StoreError> {
        self.put_with(from, expected, Redirects::Refused, progress)
    }

    /// [`Self::put`], following the redirects `redirects` allows.
    pub fn put_with(
        &self,
        from: &Location,
        expected: &Sha256Digest,
        redirects: Redirects<'_>,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<PathBuf, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.put_once(from, expected, redirects, &mut progress) {
                Err(StoreError::Download(DownloadError::Http { .. })) if attempt < 3 => {
                    std::thread::sleep(std::time::Duration::from_millis(500 * attempt));
                }
                other => return other,
            }
        }
    }

    fn put_once(
        &self,
        from: &Location,
        expected: &Sha256Digest,
        redirects: Redirects<'_>,
        progress: impl FnMut(u64, Option<u64>),
    ) -> Result<PathBuf, StoreError> {
        let staged = self.stage()?;
        let mut writer = HashingWriter::new(io::BufWriter::new(staged.file()));
        download::copy_to(from, &mut writer, redirects, Limits::FILE, progress)?;
        let (actual, size, buf) = writer.finish();
        buf.into_inner()
            .map_err(|e| io_err(staged.0.path())(e.into_error()))?;
        if actual != *expected {
            // `staged` is deleted on drop.
            return Err(StoreError::Mismatch {
                from: from.to_string(),
                expected: *expected,
                actual,
                size,
            });
        }
        self.persist(staged, expected)
    }

    /// Copies a local file into the store under its sha256 (a build output, say) and returns
    /// the digest. The copy is hashed as it is written, so what is stored is what was hashed,
    /// and synced before it takes the name: a no-op build trusts an object's name and size
    /// (see docs/trust.md), so no crash may leave one whole in size but not in content.
    pub fn insert_file(&self, src: &Path) -> Result<(Sha256Digest, u64), StoreError> {
        let mut input = File::open(src).map_err(io_err(src))?;
        self.insert_from(&mut input, src)
    }

    /// A file in the staging area for an object being written (a download, a build output, a
    /// blob read from a remote CAS, each hashed as it is written); it is removed unless
    /// [`Self::persist`] names it.
    pub fn stage(&self) -> Result<Staged, StoreError> {
        let file =
            tempfile::NamedTempFile::new_in(self.root.join("tmp")).map_err(io_err(&self.root))?;
        Ok(Staged(file))
    }

    /// Syncs a staged file and gives it its name: `digest`, which the caller computed over
    /// exactly the bytes it wrote.
    pub fn persist(&self, staged: Staged, digest: &Sha256Digest) -> Result<PathBuf, StoreError> {
        staged
            .0
            .as_file()
            .sync_all()
            .map_err(io_err(staged.0.path()))?;
        let dest = self.object_path(digest);
        staged.0.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(dest)
    }

    /// [`Self::insert_file`] for bytes in memory.
    pub fn insert_bytes(&self, mut bytes: &[u8]) -> Result<(Sha256Digest, u64), StoreError> {
        self.insert_from(&mut bytes, &self.root.join("tmp"))
    }

    /// Copies what `input` reads into the store under its sha256; `what` names it in errors.
    fn insert_from(
        &self,
        input: &mut impl io::Read,
        what: &Path,
    ) -> Result<(Sha256Digest, u64), StoreError> {
        let staged = self.stage()?;
        let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, staged.file()));
        io::copy(input, &mut writer).map_err(io_err(what))?;
        let (digest, size, buf) = writer.finish();
        buf.into_inner()
            .map_err(|e| io_err(staged.0.path())(e.into_error()))?;
        // Renamed over whatever has the name: bytes just hashed replace a damaged object.
        self.persist(staged, &digest)?;
        Ok((digest, size))
    }

    /// Where an action's result is recorded, by its key.
    pub fn action_path(&self, key: &Sha256Digest) -> PathBuf {
        self.root.join("actions").join(key.to_hex())
    }

    /// Where unpacked toolchains live.
    pub fn toolchain_dir(&self) -> PathBuf {
        self.root.join("toolchains")
    }

    /// The staging area: scratch directories that are cleared when the store is next opened.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The Go module cache, laid out as a GOPROXY serves it (`<module>/@v/<version>.zip`).
    pub fn go_module_cache(&self) -> PathBuf {
        self.root.join("gomod")
    }

    /// The offline cargo vendor tree written for the Cargo.lock whose sha256 is `lock`.
    pub fn vendor_tree(&self, lock: &Sha256Digest) -> PathBuf {
        self.root.join("vendor").join(lock.to_hex())
    }

    /// Cargo's git databases (`$CARGO_HOME/git/db`), kept between vendor runs so that a git
    /// dependency is cloned from its mirror once. Only the object databases are kept, never
    /// cargo's checkouts: see `verify::cargo::offline`.
    pub fn cargo_git_db(&self) -> PathBuf {
        self.root.join("cargo-git-db")
    }

    /// Where the logs of a failed build step of `component` for `arch` are kept.
    pub fn failed_logs(&self, arch: &str, component: &str) -> PathBuf {
        self.root.join("logs").join(arch).join(component)
    }

    /// The dependency set an SBOM was made from, by its key.
    pub fn sbom_dependency_set(&self, key: &Sha256Digest) -> PathBuf {
        self.root
            .join("sbom")
            .join(format!("{}.json", key.to_hex()))
    }

    /// An unpacked source tree (the kernel's, say) by its name.
    pub fn tree(&self, name: &str) -> PathBuf {
        self.root.join("trees").join(name)
    }

    /// The directory under which git mirrors of upstreams are kept.
    pub fn mirrors_dir(&self) -> PathBuf {
        self.root.join("mirrors")
    }

    /// A fresh staging directory; it is removed on drop unless committed.
    pub fn stage_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(self.staging_dir())
            .map_err(io_err(&self.root))
    }

    /// Moves a verified staging directory into place as the checkout of `commit`.
    pub fn commit_checkout(
        &self,
        staged: tempfile::TempDir,
        commit: &GitOid,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.git_entry(commit);
        let src = staged.keep();
        fs::rename(&src, &dest).map_err(io_err(&dest))?;
        sync_dir(&self.root.join("git"));
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_bytes_enter_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), || {}).unwrap();
        let src = dir.path().join("input");
        fs::write(&src, b"hello").unwrap();
        let good = Sha256Digest::of(b"hello");
        let bad = Sha256Digest::of(b"other");

        let err = store
            .put(&Location::File(src.clone()), &bad, |_, _| {})
            .unwrap_err();
        assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
        assert!(!store.object_path(&bad).exists());
        assert_eq!(
            fs::read_dir(dir.path().join("store/tmp")).unwrap().count(),
            0
        );

        let path = store.put(&Location::File(src), &good, |_, _| {}).unwrap();
        assert_eq!(fs::read(path).unwrap(), b"hello");
        assert!(store.verify_object(&good).unwrap());

        // A damaged object is dropped and reported absent.
        fs::write(store.object_path(&good), b"hellO").unwrap();
        assert!(!store.verify_object(&good).unwrap());
        assert!(!store.object_path(&good).exists());
    }

    #[test]
    fn processes_share_the_store_and_only_one_writes_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let first = Store::open(&root, || panic!("a reader never waits")).unwrap();
        // Staging in use by the first is not swept by the second.
        let staged = first.stage_dir().unwrap();
        let second = Store::open(&root, || panic!("a reader never waits")).unwrap();
        assert!(staged.path().is_dir());

        let held = first.lock_entry("git-abc").unwrap();
        assert_eq!(held.name(), "git-abc");
        let other = second.lock_entry("vendor-def").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = waited.clone();
        let second = second.with_wait_notice(Box::new(move |name| {
            assert_eq!(name, "git-abc");
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }));
        let writer = std::thread::spawn(move || {
            let lock = second.lock_entry("git-abc").unwrap();
            tx.send(()).unwrap();
            drop(lock);
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "a second writer of the entry waits"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("and goes on once it is released");
        writer.join().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
        drop(other);

        // Within one process, asking again for an entry it holds shares the lock.
        let held = first.lock_entry("vendor-x").unwrap();
        let again = first.lock_entry("vendor-x").unwrap();
        drop(held);
        drop(again);
    }

    #[test]
    fn leftover_staging_is_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        drop(Store::open(&root, || {}).unwrap());
        fs::write(root.join("tmp/partial"), b"half").unwrap();
        let _store = Store::open(&root, || {}).unwrap();
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }
}
