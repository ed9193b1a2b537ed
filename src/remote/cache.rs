//! The server's action cache as the builder's shared cache.
//!
//! A component's action is an REAPI `Action` whose input root holds what a machine with none of
//! this build's state needs to run it: `job.json` (the component, the arch, the action key, the
//! keys of the components it needs), the lockfile, and under `recipes/` the recipes of the
//! component and of every component it needs. The Action's digest therefore follows from the
//! action key and those files alone, with nothing to hash on a no-op. The
//! verified inputs the key names (sources, crates, modules, toolchains) are not in the input
//! root: a machine that runs the action fetches and verifies them from their pins itself.
//!
//! Its result lists `result.json` (the store's own record of the result), each output under
//! `out/` and each step's log under `logs/`.
//!
//! A fresh action (`--no-cache`, `check`, `audit`) says so in `job.json`, with the variations
//! it is built under, and is sent with `do_not_cache` and `skip_cache_lookup`: the server
//! neither answers it from its cache nor records its result. Its input root also holds, under
//! `needs/`, the result of each component it needs as the same build has it: how the server
//! listed it (an encoded `ActionResult`), so that the worker builds on those very outputs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::{Blob, Remote, RemoteError};
use crate::builder::shared::{ActionJob, JOB_FILE, LOCKFILE_FILE, NEEDS_DIR, RECIPES_DIR};
use crate::builder::{ActionResult, Published, SharedAction, SharedCache, SharedError};
use crate::digest::Sha256Digest;
use crate::source::store::Store;

/// The result's files.
pub const RESULT: &str = "result.json";
pub const OUT: &str = "out";
pub const LOGS: &str = "logs";

/// A component's action as REAPI messages, encoded, with every blob they name.
pub struct ActionBlobs {
    /// The `Action`'s own blob: its key in the action cache.
    pub action: Blob,
    /// The action, then every blob it names: the command, the input root, its `recipes`
    /// directory, and the files.
    pub blobs: Vec<Vec<u8>>,
}

impl ActionBlobs {
    /// `a`'s blobs; `needs` holds, for a fresh action, each needed component's result as the
    /// server listed it (an encoded `ActionResult`), by component.
    pub fn of(a: &SharedAction<'_>, needs: &BTreeMap<String, Vec<u8>>) -> Self {
        let job = ActionJob {
            schema: crate::builder::shared::SHARED_SCHEMA,
            component: a.component.to_owned(),
            arch: a.arch.to_owned(),
            action_key: a.key,
            lockfile: a.lockfile_name.to_owned(),
            needs: a.needs.clone(),
            fresh: a.fresh,
            given: a.given.clone(),
            variations: a.variations.clone(),
        };
        let job = serde_json::to_vec(&job).expect("serialises");
        let lockfile = a.lockfile_text.as_bytes().to_vec();
        let mut recipes: Vec<(String, Vec<u8>)> = a
            .recipes
            .iter()
            .map(|r| {
                let name = format!("{}.toml", r.recipe.component);
                (name, r.text.as_bytes().to_vec())
            })
            .collect();
        recipes.sort();
        recipes.dedup_by(|x, y| x.0 == y.0);
        let recipes_dir = directory(
            recipes.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
            Vec::new(),
        );
        let needs_dir = directory(
            needs.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
            Vec::new(),
        );
        let mut dirs = vec![(RECIPES_DIR, &recipes_dir)];
        if !needs.is_empty() {
            dirs.insert(0, (NEEDS_DIR, &needs_dir));
        }
        let root = directory(
            [
                (JOB_FILE, job.as_slice()),
                (LOCKFILE_FILE, lockfile.as_slice()),
            ]
            .into_iter(),
            dirs.iter()
                .map(|(name, dir)| re::DirectoryNode {
                    name: (*name).to_owned(),
                    digest: Some(Blob::of(dir).to_proto()),
                })
                .collect(),
        );
        let platform = platform(&a.platform);
        let command = re::Command {
            arguments: ["kata-repro", "run-action", JOB_FILE]
                .map(str::to_owned)
                .to_vec(),
            output_paths: [LOGS, OUT, RESULT].map(str::to_owned).to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let action = re::Action {
            command_digest: Some(Blob::of(&command).to_proto()),
            input_root_digest: Some(Blob::of(&root).to_proto()),
            platform: Some(platform),
            do_not_cache: a.fresh,
            ..Default::default()
        }
        .encode_to_vec();
        let mut blobs = vec![action, command, root, recipes_dir, job, lockfile];
        blobs.extend(recipes.into_iter().map(|(_, b)| b));
        if !needs.is_empty() {
            blobs.push(needs_dir);
            blobs.extend(needs.values().cloned());
        }
        Self {
            action: Blob::of(&blobs[0]),
            blobs,
        }
    }
}

/// An REAPI `Directory` of these files (given sorted by name) and subdirectories, encoded.
fn directory<'b>(
    files: impl Iterator<Item = (&'b str, &'b [u8])>,
    directories: Vec<re::DirectoryNode>,
) -> Vec<u8> {
    re::Directory {
        files: files
            .map(|(name, bytes)| re::FileNode {
                name: name.to_owned(),
                digest: Some(Blob::of(bytes).to_proto()),
                is_executable: false,
                ..Default::default()
            })
            .collect(),
        directories,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Platform properties, sorted by name as REAPI requires.
fn platform(props: &BTreeMap<String, String>) -> re::Platform {
    re::Platform {
        properties: props
            .iter()
            .map(|(name, value)| re::platform::Property {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// The server's action cache, as the builder's shared cache.
pub struct RemoteCache {
    remote: Remote,
    /// Whether actions the cache lacks are executed by the server's workers.
    executes: bool,
    /// How the server listed each result taken from it, by action key: what a fresh action
    /// of a component that needs it carries.
    listed: Mutex<BTreeMap<Sha256Digest, Vec<u8>>>,
}

impl RemoteCache {
    /// The server's action cache; with `executes`, also its workers.
    pub fn new(remote: Remote, executes: bool) -> Self {
        Self {
            remote,
            executes,
            listed: Mutex::default(),
        }
    }

    /// The results of the components a fresh action needs, directly or not, as the server
    /// listed them to this build, by component.
    fn needs_listed(&self, a: &SharedAction<'_>) -> Result<BTreeMap<String, Vec<u8>>, SharedError> {
        let listed = self.listed.lock().expect("not poisoned");
        a.given
            .iter()
            .map(|(component, key)| {
                let bytes = listed.get(key).cloned().ok_or_else(|| {
                    SharedError::Failed(format!(
                        "{} needs {component} ({key}), which this build did not take from {}",
                        a.component,
                        self.describe()
                    ))
                })?;
                Ok((component.clone(), bytes))
            })
            .collect()
    }

    /// Uploads `a`'s blobs, has the server's workers execute it, and takes the result.
    fn run(
        &self,
        a: &SharedAction<'_>,
        store: &Store,
        on_stage: &mut dyn FnMut(super::Stage),
    ) -> Result<ActionResult, SharedError> {
        let blobs = ActionBlobs::of(a, &self.needs_listed(a)?);
        let all: Vec<&[u8]> = blobs.blobs.iter().map(Vec::as_slice).collect();
        self.remote.upload(&all).map_err(shared)?;
        let response = self
            .remote
            .execute(blobs.action, a.fresh, on_stage)
            .map_err(shared)?;
        let status = response.status.clone().unwrap_or_default();
        let result = response.result.unwrap_or_default();
        // The server, or a worker, cannot run the action as it is (FAILED_PRECONDITION: no
        // worker here makes one of its variations, or comes to its key).
        if status.code == tonic::Code::FailedPrecondition as i32 {
            return Err(SharedError::Usage(self.failure(&status, &result)));
        }
        if status.code != 0 || result.exit_code != 0 {
            return Err(SharedError::Failed(self.failure(&status, &result)));
        }
        self.take(&a.key, &result, store)?.ok_or_else(|| {
            SharedError::Failed(format!(
                "action {}: the server dropped blobs of the result it just returned",
                blobs.action
            ))
        })
    }

    /// Why an execution failed: the server's status, and what the worker wrote to stderr.
    fn failure(
        &self,
        status: &bazel_remote_apis::google::rpc::Status,
        r: &re::ActionResult,
    ) -> String {
        let mut why = if status.code != 0 {
            format!(
                "the execution failed (code {}): {}",
                status.code, status.message
            )
        } else {
            format!("the worker's build exited with {}", r.exit_code)
        };
        let stderr = r.stderr_digest.as_ref().and_then(|d| {
            let blob = Blob::from_proto(d).ok()?;
            self.remote.download(blob).ok()
        });
        if let Some(text) = stderr.filter(|t| !t.is_empty()) {
            why.push_str(":\n");
            why.push_str(String::from_utf8_lossy(&text).trim_end());
        }
        why
    }

    /// A blob read back from the server and checked against its digest; `None` when the
    /// server no longer holds it.
    fn get(&self, blob: Blob) -> Result<Option<Vec<u8>>, SharedError> {
        match self.remote.download(blob) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(RemoteError::Missing { .. }) => Ok(None),
            Err(e) => Err(shared(e)),
        }
    }

    /// Puts the blob into the store unless it holds it at that size; false when the server no
    /// longer holds it.
    fn fetch_blob(&self, blob: Blob, store: &Store) -> Result<bool, SharedError> {
        let held = std::fs::metadata(store.object_path(&blob.digest)).map(|m| m.len());
        if held.is_ok_and(|n| n == blob.size) {
            return Ok(true);
        }
        let failed = |e: &dyn std::fmt::Display| {
            SharedError::Failed(format!("{}: {e}", store.root().display()))
        };
        // Written to the store's staging area as it arrives, hashed on the way: a large
        // output is never held in memory, and only the blob asked for is given its name.
        let staged = store.stage().map_err(|e| failed(&e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, staged.file());
        match self.remote.download_into(blob, &mut out) {
            Ok(()) => {}
            Err(RemoteError::Missing { .. }) => return Ok(false),
            Err(e) => return Err(shared(e)),
        }
        std::io::Write::flush(&mut out).map_err(|e| failed(&e))?;
        drop(out);
        store
            .persist(staged, &blob.digest)
            .map_err(|e| failed(&e))?;
        Ok(true)
    }

    fn fetch_result(
        &self,
        a: &SharedAction<'_>,
        store: &Store,
    ) -> Result<Option<ActionResult>, SharedError> {
        let blobs = ActionBlobs::of(&a.plain(), &BTreeMap::new());
        let Some(found) = self
            .remote
            .get_action_result(blobs.action)
            .map_err(shared)?
        else {
            return Ok(None);
        };
        self.take(&a.key, &found, store)
    }

    /// The result of `key` that `listing` (an encoded `ActionResult` the server gave) lists,
    /// checked, with its outputs and logs put into `store`; `None` when the server no longer
    /// holds some blob of it. A worker takes a fresh action's needs so.
    pub fn take_listed(
        &self,
        key: &Sha256Digest,
        listing: &[u8],
        store: &Store,
    ) -> Result<Option<ActionResult>, SharedError> {
        let found = re::ActionResult::decode(listing).map_err(|e| {
            SharedError::Refused(format!("the listing of {key} does not decode: {e}"))
        })?;
        self.take(key, &found, store)
    }

    /// The result of `key` that `found` lists, checked, with its outputs and logs put into
    /// `store`; `None` when the server no longer holds some blob of it.
    fn take(
        &self,
        key: &Sha256Digest,
        found: &re::ActionResult,
        store: &Store,
    ) -> Result<Option<ActionResult>, SharedError> {
        let listed = Listed::of(found).map_err(SharedError::Refused)?;
        let result = listed.file(RESULT).map_err(SharedError::Refused)?;
        // A result whose blobs the server dropped is no result.
        let Some(bytes) = self.get(result)? else {
            return Ok(None);
        };
        let result: ActionResult = serde_json::from_slice(&bytes).map_err(|e| {
            SharedError::Refused(format!("its {RESULT} ({result}) does not parse: {e}"))
        })?;
        if result.action_key != *key {
            return Err(SharedError::Refused(format!(
                "its {RESULT} is the result of action {}, not of {key}",
                result.action_key
            )));
        }
        let wanted = result
            .record
            .outputs
            .iter()
            .map(|o| (format!("{OUT}/{}", o.path), o.sha256, Some(o.size)))
            .chain(
                result
                    .logs
                    .iter()
                    .map(|(step, d)| (format!("{LOGS}/{step}.log"), *d, None)),
            );
        for (path, digest, size) in wanted {
            let blob = listed.file(&path).map_err(SharedError::Refused)?;
            if blob.digest != digest || size.is_some_and(|s| s != blob.size) {
                return Err(SharedError::Refused(format!(
                    "its {RESULT} names {path} as {digest}, the action result as {blob}"
                )));
            }
            if !self.fetch_blob(blob, store)? {
                return Ok(None);
            }
        }
        let listing = re::ActionResult {
            output_files: found.output_files.clone(),
            ..Default::default()
        };
        self.listed
            .lock()
            .expect("not poisoned")
            .insert(*key, listing.encode_to_vec());
        Ok(Some(result))
    }

    fn publish_result(
        &self,
        a: &SharedAction<'_>,
        result: &ActionResult,
        store: &Store,
    ) -> Result<Published, RemoteError> {
        if !self.remote.cache_writable() {
            return Ok(Published::ReadOnly);
        }
        let blobs = ActionBlobs::of(&a.plain(), &BTreeMap::new());
        if self.remote.get_action_result(blobs.action)?.is_some() {
            return Ok(Published::Present);
        }
        let all: Vec<&[u8]> = blobs.blobs.iter().map(Vec::as_slice).collect();
        self.remote.upload(&all)?;
        let output = self.hand_over(result, store)?;
        self.remote.update_action_result(blobs.action, output)?;
        Ok(Published::Recorded)
    }

    /// Gives the server `result`'s record, outputs and logs, read from `store`, and returns
    /// the action result that lists them, recorded nowhere: what a worker reports for its
    /// lease, and what is recorded in the action cache.
    pub fn hand_over(
        &self,
        result: &ActionResult,
        store: &Store,
    ) -> Result<re::ActionResult, RemoteError> {
        let json = serde_json::to_vec_pretty(result).expect("serialises");
        self.remote.upload(&[&json])?;
        let mut files: Vec<(String, Blob, bool)> = result
            .record
            .outputs
            .iter()
            .map(|o| {
                let blob = Blob {
                    digest: o.sha256,
                    size: o.size,
                };
                let executable = u32::from_str_radix(&o.mode, 8).is_ok_and(|m| m & 0o111 != 0);
                (format!("{OUT}/{}", o.path), blob, executable)
            })
            .collect();
        for (step, digest) in &result.logs {
            let path = store.object_path(digest);
            let size = std::fs::metadata(&path)
                .map_err(|e| RemoteError::Local {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?
                .len();
            let blob = Blob {
                digest: *digest,
                size,
            };
            files.push((format!("{LOGS}/{step}.log"), blob, false));
        }
        let paths: Vec<_> = files
            .iter()
            .map(|(_, b, _)| (*b, store.object_path(&b.digest)))
            .collect();
        let named: Vec<(Blob, &std::path::Path)> =
            paths.iter().map(|(b, p)| (*b, p.as_path())).collect();
        self.remote.upload_files(&named)?;
        files.push((RESULT.to_owned(), Blob::of(&json), false));
        files.sort();
        Ok(re::ActionResult {
            output_files: files
                .into_iter()
                .map(|(path, blob, is_executable)| re::OutputFile {
                    path,
                    digest: Some(blob.to_proto()),
                    is_executable,
                    ..Default::default()
                })
                .collect(),
            exit_code: 0,
            ..Default::default()
        })
    }
}

impl SharedCache for RemoteCache {
    fn describe(&self) -> String {
        let e = self.remote.endpoint();
        if e.instance.is_empty() {
            e.to_string()
        } else {
            format!("{e} (instance `{}`)", e.instance)
        }
    }

    fn fetch(
        &self,
        action: &SharedAction<'_>,
        store: &Store,
    ) -> Result<Option<ActionResult>, SharedError> {
        self.fetch_result(action, store)
    }

    fn publish(
        &self,
        action: &SharedAction<'_>,
        result: &ActionResult,
        store: &Store,
    ) -> Result<Published, SharedError> {
        self.publish_result(action, result, store).map_err(shared)
    }

    fn executes(&self) -> bool {
        self.executes
    }

    fn execute(
        &self,
        action: &SharedAction<'_>,
        store: &Store,
        on_stage: &mut dyn FnMut(&str),
    ) -> Result<ActionResult, SharedError> {
        let offered: Vec<String> = action
            .platform
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let waiting = format!(
            "no worker has taken it in {}s: is one running that offers {}? (`kata-repro worker \
             --lockfile` with this lockfile, on a host that holds its [host] pins, offers them)",
            super::execute::QUEUED_NOTICE.as_secs(),
            offered.join(", ")
        );
        self.run(action, store, &mut |stage| {
            on_stage(match stage {
                super::Stage::CacheCheck => "checking the remote cache",
                super::Stage::Queued => "queued for a worker",
                super::Stage::Executing => "executing on a worker",
                super::Stage::Completed => "completed",
                super::Stage::Unknown => "in an unknown stage",
                super::Stage::StillQueued => &waiting,
            })
        })
    }
}

/// A remote's error as the builder sees it: a blob that fails its digest is refused.
fn shared(e: RemoteError) -> SharedError {
    match e {
        e if e.is_usage() => SharedError::Usage(e.to_string()),
        e @ RemoteError::Corrupt { .. } => SharedError::Refused(e.to_string()),
        e => SharedError::Failed(e.to_string()),
    }
}

/// The files an action result lists, by path.
struct Listed(BTreeMap<String, Blob>);

impl Listed {
    fn of(result: &re::ActionResult) -> Result<Self, String> {
        if result.exit_code != 0 {
            return Err(format!("it records exit code {}", result.exit_code));
        }
        let mut files = BTreeMap::new();
        for f in &result.output_files {
            let d = f.digest.clone().unwrap_or_default();
            let blob = Blob::from_proto(&d).map_err(|e| format!("{} has {e}", f.path))?;
            files.insert(f.path.clone(), blob);
        }
        Ok(Self(files))
    }

    fn file(&self, path: &str) -> Result<Blob, String> {
        self.0
            .get(path)
            .copied()
            .ok_or_else(|| format!("the action result lists no {path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;

    fn blobs(key: &[u8], needs: &[(&str, &[u8])], arch: &str) -> ActionBlobs {
        fresh_blobs(key, needs, arch, false)
    }

    fn fresh_blobs(key: &[u8], needs: &[(&str, &[u8])], arch: &str, fresh: bool) -> ActionBlobs {
        let recipe = crate::recipe::RecipeSource::Builtin.load_all().unwrap()["runtime"].clone();
        let keys: BTreeMap<String, Sha256Digest> = needs
            .iter()
            .map(|(n, k)| ((*n).to_owned(), Sha256Digest::of(k)))
            .collect();
        let action = SharedAction {
            component: "runtime",
            arch,
            key: Sha256Digest::of(key),
            lockfile_name: "kata.toml",
            lockfile_text: "release = \"9.9.9\"\n",
            recipes: vec![&recipe],
            needs: keys.clone(),
            platform: crate::builder::shared::platform(arch, None),
            fresh,
            given: if fresh { keys } else { BTreeMap::new() },
            variations: Vec::new(),
        };
        let listed = needs
            .iter()
            .filter(|_| fresh)
            .map(|(n, k)| ((*n).to_owned(), k.to_vec()))
            .collect();
        ActionBlobs::of(&action, &listed)
    }

    #[test]
    fn an_action_is_named_by_its_key_needs_and_platform_alone() {
        let base = blobs(b"k", &[], "x86_64");
        assert_eq!(base.action, blobs(b"k", &[], "x86_64").action);
        assert_ne!(base.action, blobs(b"k2", &[], "x86_64").action);
        assert_ne!(
            base.action,
            blobs(b"k", &[("agent", b"a")], "x86_64").action
        );
        assert_ne!(base.action, blobs(b"k", &[], "aarch64").action);
        // The action blob comes first, then what it names.
        assert_eq!(Blob::of(&base.blobs[0]), base.action);
        let action = re::Action::decode(base.blobs[0].as_slice()).unwrap();
        let root = re::Directory::decode(base.blobs[2].as_slice()).unwrap();
        assert_eq!(
            action.input_root_digest,
            Some(Blob::of(&base.blobs[2]).to_proto())
        );
        let names: Vec<&str> = root.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, [JOB_FILE, LOCKFILE_FILE]);
        assert_eq!(root.directories[0].name, RECIPES_DIR);
        let recipes = re::Directory::decode(base.blobs[3].as_slice()).unwrap();
        assert_eq!(recipes.files[0].name, "runtime.toml");
        let job: ActionJob = serde_json::from_slice(&base.blobs[4]).unwrap();
        assert_eq!(job.component, "runtime");
        let props = &action.platform.unwrap().properties;
        let keys: Vec<&str> = props.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(keys, ["arch", "host-pins", "kata-repro"]);
    }

    #[test]
    fn a_fresh_action_is_never_cached_and_carries_its_needs_listings() {
        let needs: &[(&str, &[u8])] = &[("agent", b"a")];
        let plain = blobs(b"k", needs, "x86_64");
        let fresh = fresh_blobs(b"k", needs, "x86_64", true);
        assert_ne!(plain.action, fresh.action);
        let action = re::Action::decode(fresh.blobs[0].as_slice()).unwrap();
        assert!(action.do_not_cache);
        assert!(
            !re::Action::decode(plain.blobs[0].as_slice())
                .unwrap()
                .do_not_cache
        );
        let job: ActionJob = serde_json::from_slice(&fresh.blobs[4]).unwrap();
        assert!(job.fresh);
        let root = re::Directory::decode(fresh.blobs[2].as_slice()).unwrap();
        let dirs: Vec<&str> = root.directories.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(dirs, [NEEDS_DIR, RECIPES_DIR]);
        // The needs directory lists each needed component's listing, and is sent.
        let needs_dir = root.directories[0].digest.clone().unwrap();
        let sent = fresh
            .blobs
            .iter()
            .find(|b| Blob::of(b).to_proto() == needs_dir)
            .expect("the needs directory is among the blobs");
        let listed = re::Directory::decode(sent.as_slice()).unwrap();
        assert_eq!(listed.files[0].name, "agent");
        assert_eq!(listed.files[0].digest, Some(Blob::of(b"a").to_proto()));
        assert!(fresh.blobs.iter().any(|b| b == b"a"));
        // A plain action carries none.
        let root = re::Directory::decode(plain.blobs[2].as_slice()).unwrap();
        assert_eq!(root.directories.len(), 1);
    }

    #[test]
    fn a_listed_result_must_have_succeeded_and_name_sha256_digests() {
        let file = |path: &str, hash: &str| re::OutputFile {
            path: path.into(),
            digest: Some(re::Digest {
                hash: hash.into(),
                size_bytes: 3,
            }),
            ..Default::default()
        };
        let good = Sha256Digest::of(b"abc").to_hex();
        let ok = re::ActionResult {
            output_files: vec![file(RESULT, &good)],
            ..Default::default()
        };
        let listed = Listed::of(&ok).unwrap();
        assert_eq!(listed.file(RESULT).unwrap(), Blob::of(b"abc"));
        assert!(listed.file("out/x").unwrap_err().contains("out/x"));
        let failed = re::ActionResult {
            exit_code: 2,
            ..ok.clone()
        };
        assert!(Listed::of(&failed).err().unwrap().contains("exit code 2"));
        let sha1 = re::ActionResult {
            output_files: vec![file(RESULT, "a9993e364706816aba3e25717850c26c9cd0d89d")],
            ..Default::default()
        };
        assert!(Listed::of(&sha1).is_err());
    }
}
