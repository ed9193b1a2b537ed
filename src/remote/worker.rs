//! A bot of the Remote Workers API (`google.devtools.remoteworkers.v1test2`): it opens a bot
//! session with the server, advertising its platform properties, takes one lease at a time,
//! lays out the leased action's input root (every blob checked against its digest), has it run,
//! and reports the action's result. The server only schedules: what runs is the caller's.

use std::path::{Component, Path};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::devtools::remoteworkers::v1test2 as rw;
use googleapis_tonic_google_devtools_remoteworkers_v1test2::google::rpc::Status;
use prost::Message;
use rw::bots_client::BotsClient;

use super::error::from_status;
use super::{Blob, Endpoint, Remote, RemoteError};

/// How long an idle bot lets the server hold an UpdateBotSession open, waiting for work; the
/// server shortens it to its own keepalive.
const POLL: Duration = Duration::from_secs(30);
/// How often a busy bot tells the server it is alive.
const BUSY_POLL: Duration = Duration::from_secs(1);
/// The most an input root may hold: a lockfile, recipes and a job, not a source tree.
const MAX_INPUT_BYTES: u64 = 64 << 20;
const MAX_DEPTH: usize = 4;

/// The `google.rpc.Code`s a lease ends with.
const INTERNAL: i32 = tonic::Code::Internal as i32;
const UNKNOWN: i32 = tonic::Code::Unknown as i32;
const FAILED_PRECONDITION: i32 = tonic::Code::FailedPrecondition as i32;

/// Who a bot is and what it offers.
pub struct Bot {
    /// Unique among the server's bots (a host name, with a suffix for several on one host).
    pub id: String,
    /// Platform properties: (key, value), a key repeated for each value it offers.
    pub properties: Vec<(String, String)>,
}

/// How running a leased action went.
pub enum Ran {
    /// It ran: the result, its blobs given to the server (see `RemoteCache::hand_over`).
    Done(Box<re::ActionResult>),
    /// It could not run here (a precondition, like the action key, does not hold).
    Refused(String),
    /// It failed: the message, for the client.
    Failed(String),
}

/// What runs a leased action: the action's blob, and the directory its input root was laid out
/// in.
pub type RunAction<'a> = dyn Fn(Blob, &Path) -> Ran + Sync + 'a;

/// What a bot says of itself, with its properties on its primary device, where BuildGrid
/// reads them.
fn worker(bot: &Bot) -> rw::Worker {
    rw::Worker {
        devices: vec![rw::Device {
            handle: bot.id.clone(),
            properties: bot
                .properties
                .iter()
                .map(|(key, value)| rw::device::Property {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }],
        ..Default::default()
    }
}

/// A lease in flight: its id and the thread running it.
struct Running<'s> {
    id: String,
    thread: std::thread::ScopedJoinHandle<'s, (re::ActionResult, Status)>,
}

/// What a bot does after a call to the Bots service failed.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Call again at once (a long poll that outlived its deadline).
    Again,
    /// The server forgot the session (it reaped the bot, or restarted): open a new one.
    Reopen,
    /// The server or the network is away for now: wait and call again.
    Wait,
    /// Calling again cannot help (the instance, a permission, a method the server lacks).
    Stop,
}

/// Sorts a failed call.
fn next(status: &tonic::Status) -> Next {
    use tonic::Code;
    let forgotten = {
        let m = status.message().to_ascii_lowercase();
        m.contains("does not exist") || m.contains("not found") || m.contains("unknown bot")
    };
    match status.code() {
        Code::DeadlineExceeded => Next::Again,
        Code::InvalidArgument | Code::NotFound if forgotten => Next::Reopen,
        Code::Unavailable
        | Code::Unknown
        | Code::Internal
        | Code::Aborted
        | Code::Cancelled
        | Code::ResourceExhausted => Next::Wait,
        _ => Next::Stop,
    }
}

/// How long a bot waits between calls to a server that keeps failing, and when it stops.
#[derive(Debug, Default)]
struct Backoff {
    /// Consecutive failures so far.
    failures: u32,
    /// When the first of them happened.
    since: Option<std::time::Instant>,
}

/// The first wait after a failure; each next one doubles, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long a server may keep failing before the bot stops.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

impl Backoff {
    /// The wait before the next call, or `None` once the failures have lasted
    /// [`GIVE_UP_AFTER`].
    fn failed(&mut self, now: std::time::Instant) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= GIVE_UP_AFTER {
            return None;
        }
        let wait = FIRST_WAIT.saturating_mul(1 << self.failures.min(5));
        self.failures += 1;
        Some(wait.min(MAX_WAIT))
    }

    fn succeeded(&mut self) {
        *self = Self::default();
    }
}

/// What a bot says of how its session goes: a line for the operator.
pub type Notice<'a> = dyn Fn(&str) + Sync + 'a;

impl Remote {
    /// Serves as `bot` until a call fails in a way calling again cannot help, or the server
    /// stays unreachable for [`GIVE_UP_AFTER`]: each lease is run by `run` on a thread of its
    /// own while the session is kept alive. A session the server forgot is opened again; the
    /// lease it held is the server's to give to another bot, and its result here is dropped.
    pub fn serve(
        &self,
        bot: &Bot,
        run: &RunAction<'_>,
        notice: &Notice<'_>,
    ) -> Result<(), RemoteError> {
        let mut client = BotsClient::new(self.channel.clone());
        let mut backoff = Backoff::default();
        let mut session = self.reopen(&mut client, bot, &mut backoff, notice)?;
        notice(&format!("opened session {}", session.name));
        std::thread::scope(|scope| {
            let mut running: Option<Running> = None;
            loop {
                // Report a finished lease, and keep the one running active.
                if running.as_ref().is_some_and(|r| r.thread.is_finished()) {
                    let done = running.take().expect("checked");
                    let (result, status) = done
                        .thread
                        .join()
                        .unwrap_or_else(|_| (failed(), internal("panicked")));
                    if !complete(&mut session, &done.id, result, status) {
                        notice(&format!(
                            "lease {} ended after its session was lost: not reported",
                            done.id
                        ));
                    }
                }
                let busy = running.is_some();
                let updated = match self.update_session(&mut client, &session) {
                    Ok(s) => s,
                    Err(status) => {
                        let call = from_status(&self.endpoint, "UpdateBotSession", status.clone());
                        match next(&status) {
                            Next::Again => continue,
                            Next::Stop => return Err(call),
                            Next::Wait => {
                                let wait = backoff.failed(std::time::Instant::now()).ok_or(call)?;
                                notice(&format!(
                                    "UpdateBotSession: {}: calling again in {wait:?}",
                                    said(&status)
                                ));
                                std::thread::sleep(wait);
                                continue;
                            }
                            Next::Reopen => {
                                notice(&format!(
                                    "the server lost this bot's session ({})",
                                    status.message()
                                ));
                                session = self.reopen(&mut client, bot, &mut backoff, notice)?;
                                notice(&format!("opened session {}", session.name));
                                continue;
                            }
                        }
                    }
                };
                backoff.succeeded();
                session = updated;
                for lease in &mut session.leases {
                    // BuildGrid hands a lease out already active.
                    let new = lease.state == rw::LeaseState::Pending as i32
                        || lease.state == rw::LeaseState::Active as i32;
                    if new && running.is_none() {
                        lease.state = rw::LeaseState::Active as i32;
                        let payload = lease.payload.clone();
                        let endpoint = self.endpoint.clone();
                        running = Some(Running {
                            id: lease.id.clone(),
                            thread: scope.spawn(move || take(&endpoint, payload, run)),
                        });
                    }
                }
                // Leases the server cancelled, or any beyond the one this bot runs, are given
                // back.
                let current = running.as_ref().map(|r| r.id.clone());
                session.leases.retain(|l| Some(&l.id) == current.as_ref());
                if busy {
                    std::thread::sleep(BUSY_POLL);
                }
            }
        })
    }

    fn open_session(
        &self,
        client: &mut BotsClient<tonic::transport::Channel>,
        bot: &Bot,
    ) -> Result<rw::BotSession, tonic::Status> {
        let create = rw::CreateBotSessionRequest {
            parent: self.endpoint.instance.clone(),
            bot_session: Some(rw::BotSession {
                bot_id: bot.id.clone(),
                status: rw::BotStatus::Ok as i32,
                worker: Some(worker(bot)),
                ..Default::default()
            }),
        };
        let mut request = tonic::Request::new(create);
        request.set_timeout(POLL);
        Ok(self
            .rt
            .block_on(client.create_bot_session(request))?
            .into_inner())
    }

    /// Opens a session for `bot`, waiting out a server that is away; a server that refuses it
    /// (the instance, a permission, no Bots service) is the operator's to fix.
    fn reopen(
        &self,
        client: &mut BotsClient<tonic::transport::Channel>,
        bot: &Bot,
        backoff: &mut Backoff,
        notice: &Notice<'_>,
    ) -> Result<rw::BotSession, RemoteError> {
        loop {
            let status = match self.open_session(client, bot) {
                Ok(session) => return Ok(session),
                Err(status) => status,
            };
            let call = from_status(&self.endpoint, "CreateBotSession", status.clone());
            if next(&status) == Next::Stop {
                return Err(call);
            }
            let wait = backoff.failed(std::time::Instant::now()).ok_or(call)?;
            notice(&format!(
                "CreateBotSession: {}: calling again in {wait:?}",
                said(&status)
            ));
            std::thread::sleep(wait);
        }
    }

    fn update_session(
        &self,
        client: &mut BotsClient<tonic::transport::Channel>,
        session: &rw::BotSession,
    ) -> Result<rw::BotSession, tonic::Status> {
        let mut request = tonic::Request::new(rw::UpdateBotSessionRequest {
            name: session.name.clone(),
            bot_session: Some(session.clone()),
            update_mask: None,
        });
        request.set_timeout(POLL);
        Ok(self
            .rt
            .block_on(client.update_bot_session(request))?
            .into_inner())
    }
}

/// A failed call's code and message, one line.
fn said(status: &tonic::Status) -> String {
    format!("{:?} ({})", status.code(), status.message())
}

/// Marks the lease `id` completed with `result` and `status`; false if the session does not
/// hold it (it was opened again since).
fn complete(
    session: &mut rw::BotSession,
    id: &str,
    result: re::ActionResult,
    status: Status,
) -> bool {
    let Some(lease) = session.leases.iter_mut().find(|l| l.id == id) else {
        return false;
    };
    lease.state = rw::LeaseState::Completed as i32;
    lease.result = Some(prost_types::Any {
        type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ActionResult".into(),
        value: result.encode_to_vec(),
    });
    lease.status = Some(status);
    true
}

fn internal(message: &str) -> Status {
    Status {
        code: INTERNAL,
        message: message.to_owned(),
        details: Vec::new(),
    }
}

/// An ActionResult for a run that failed; its stderr is set by [`take`] where it can upload it.
fn failed() -> re::ActionResult {
    re::ActionResult {
        exit_code: 1,
        ..Default::default()
    }
}

/// Runs one lease: its action read (from the payload, or from the CAS by digest), its input
/// root laid out in a fresh directory, and `run` called. Whatever fails is the lease's status, with the message as its stderr.
fn take(
    endpoint: &Endpoint,
    payload: Option<prost_types::Any>,
    run: &RunAction<'_>,
) -> (re::ActionResult, Status) {
    let remote = match Remote::connect(endpoint.clone()) {
        Ok(r) => r,
        Err(e) => return (failed(), internal(&e.to_string())),
    };
    let outcome = (|| -> Result<Ran, String> {
        let (action, blob) = leased_action(&remote, payload).map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = action
            .input_root_digest
            .ok_or("the action names no input root")?;
        let mut budget = MAX_INPUT_BYTES;
        lay_out(
            &remote,
            Blob::from_proto(&root)?,
            dir.path(),
            0,
            &mut budget,
        )?;
        Ok(run(blob, dir.path()))
    })();
    let (code, why) = match outcome {
        Ok(Ran::Done(result)) => return (*result, Status::default()),
        Ok(Ran::Refused(why)) => (FAILED_PRECONDITION, why),
        // A build that failed fails again: a code BuildGrid does not requeue.
        Ok(Ran::Failed(why)) => (UNKNOWN, why),
        // The lease could not be taken (the server, the input root): another worker may.
        Err(why) => (INTERNAL, why),
    };
    let mut result = failed();
    if let Ok(blobs) = remote.upload(&[why.as_bytes()]) {
        result.stderr_digest = Some(blobs[0].to_proto());
    }
    let first = why.lines().next().unwrap_or_default();
    (
        result,
        Status {
            code,
            message: first.to_owned(),
            details: Vec::new(),
        },
    )
}

/// The leased Action: packed in the payload, or named by its digest there.
fn leased_action(
    remote: &Remote,
    payload: Option<prost_types::Any>,
) -> Result<(re::Action, Blob), RemoteError> {
    let bad = |why: String| RemoteError::Call {
        url: remote.endpoint().to_string(),
        call: "UpdateBotSession",
        why,
    };
    let any = payload.ok_or_else(|| bad("a lease came with no payload".into()))?;
    if any
        .type_url
        .ends_with("build.bazel.remote.execution.v2.Action")
    {
        let action = re::Action::decode(any.value.as_slice())
            .map_err(|e| bad(format!("the leased Action does not decode: {e}")))?;
        return Ok((action, Blob::of(&any.value)));
    }
    if any
        .type_url
        .ends_with("build.bazel.remote.execution.v2.Digest")
    {
        let digest = re::Digest::decode(any.value.as_slice())
            .map_err(|e| bad(format!("the leased Digest does not decode: {e}")))?;
        let blob = Blob::from_proto(&digest).map_err(bad)?;
        let bytes = remote.download(blob)?;
        let action = re::Action::decode(bytes.as_slice())
            .map_err(|e| bad(format!("Action {blob} does not decode: {e}")))?;
        return Ok((action, blob));
    }
    Err(bad(format!("a lease carries a {}", any.type_url)))
}

/// Writes the Directory `dir` (and what it holds) under `at`: every blob checked against its
/// digest, every name a plain one, at most `MAX_DEPTH` deep and `budget` bytes in all.
fn lay_out(
    remote: &Remote,
    dir: Blob,
    at: &Path,
    depth: usize,
    budget: &mut u64,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("the input root is deeper than {MAX_DEPTH}"));
    }
    let bytes = remote.download(dir).map_err(|e| e.to_string())?;
    let dir = re::Directory::decode(bytes.as_slice()).map_err(|e| format!("{dir}: {e}"))?;
    let plain = |name: &str| {
        let mut parts = Path::new(name).components();
        matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none()
    };
    for f in &dir.files {
        if !plain(&f.name) {
            return Err(format!("the input root names a file `{}`", f.name));
        }
        let blob = Blob::from_proto(&f.digest.clone().unwrap_or_default())?;
        *budget = budget
            .checked_sub(blob.size)
            .ok_or_else(|| format!("the input root holds more than {MAX_INPUT_BYTES} bytes"))?;
        let bytes = remote.download(blob).map_err(|e| e.to_string())?;
        let path = at.join(&f.name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for d in &dir.directories {
        if !plain(&d.name) {
            return Err(format!("the input root names a directory `{}`", d.name));
        }
        let path = at.join(&d.name);
        std::fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let blob = Blob::from_proto(&d.digest.clone().unwrap_or_default())?;
        lay_out(remote, blob, &path, depth + 1, budget)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_failed_call_is_retried_reopened_or_final_by_its_status() {
        let s = |code, m: &str| tonic::Status::new(code, m);
        use tonic::Code;
        assert_eq!(next(&s(Code::DeadlineExceeded, "")), Next::Again);
        assert_eq!(
            next(&s(Code::InvalidArgument, "Bot does not exist: 7f3e")),
            Next::Reopen
        );
        assert_eq!(
            next(&s(Code::NotFound, "bot session not found")),
            Next::Reopen
        );
        assert_eq!(
            next(&s(Code::Unavailable, "connection refused")),
            Next::Wait
        );
        assert_eq!(next(&s(Code::Internal, "database")), Next::Wait);
        assert_eq!(
            next(&s(Code::InvalidArgument, "Invalid instance name")),
            Next::Stop
        );
        assert_eq!(next(&s(Code::Unimplemented, "")), Next::Stop);
        assert_eq!(next(&s(Code::PermissionDenied, "")), Next::Stop);
    }

    #[test]
    fn waits_double_up_to_a_bound_and_stop_after_a_while() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|i| b.failed(t0 + Duration::from_secs(i)).unwrap().as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.failed(t0 + GIVE_UP_AFTER), None);
        b.succeeded();
        assert_eq!(b.failed(t0 + GIVE_UP_AFTER), Some(FIRST_WAIT));
    }

    #[test]
    fn a_lease_is_completed_only_in_the_session_that_holds_it() {
        let mut session = rw::BotSession {
            leases: vec![rw::Lease {
                id: "a".into(),
                state: rw::LeaseState::Active as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let ok = Status::default();
        assert!(!complete(
            &mut session,
            "b",
            re::ActionResult::default(),
            ok.clone()
        ));
        assert!(complete(&mut session, "a", re::ActionResult::default(), ok));
        let lease = &session.leases[0];
        assert_eq!(lease.state, rw::LeaseState::Completed as i32);
        assert!(
            lease
                .result
                .as_ref()
                .unwrap()
                .type_url
                .ends_with("v2.ActionResult")
        );
    }
}
