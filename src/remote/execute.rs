//! Execution: an action whose blobs are in the server's CAS is run by one of its workers, and
//! the client follows the operation until it is done.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::longrunning::{Operation, operation};
use prost::Message;
use re::execution_client::ExecutionClient;

use super::error::from_status;
use super::{Blob, Remote, RemoteError};

/// How often a broken operation stream is followed again, in a row, before giving up.
const MAX_RECONNECTS: u64 = 10;
/// How long an action may wait for a worker before the caller hears of it (once): no worker
/// may offer what it needs.
pub const QUEUED_NOTICE: std::time::Duration = std::time::Duration::from_secs(60);
/// How long the client waits on a quiet operation stream before looking at the clock.
const QUIET: std::time::Duration = std::time::Duration::from_secs(10);

/// Where an execution stands, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    CacheCheck,
    Queued,
    Executing,
    Completed,
    Unknown,
    /// Still queued after [`QUEUED_NOTICE`].
    StillQueued,
}

impl Stage {
    fn of(metadata: &re::ExecuteOperationMetadata) -> Self {
        use re::execution_stage::Value;
        match Value::try_from(metadata.stage) {
            Ok(Value::CacheCheck) => Self::CacheCheck,
            Ok(Value::Queued) => Self::Queued,
            Ok(Value::Executing) => Self::Executing,
            Ok(Value::Completed) => Self::Completed,
            _ => Self::Unknown,
        }
    }
}

/// How an operation ended: the server's response, or why there is none.
fn finished(e: &super::Endpoint, op: Operation) -> Result<re::ExecuteResponse, RemoteError> {
    let call = |why: String| RemoteError::Call {
        url: e.to_string(),
        call: "Execute",
        why,
    };
    match op.result {
        Some(operation::Result::Response(any)) => re::ExecuteResponse::decode(any.value.as_slice())
            .map_err(|err| {
                call(format!(
                    "operation {}: its response does not decode: {err}",
                    op.name
                ))
            }),
        Some(operation::Result::Error(status)) => Err(call(format!(
            "operation {} failed: code {}: {}",
            op.name, status.code, status.message
        ))),
        None => Err(call(format!(
            "operation {} is done with no result",
            op.name
        ))),
    }
}

impl Remote {
    /// Asks the server to execute `action` (its Action, Command and input root already in the
    /// CAS) unless its action cache has the result (or `fresh`: whatever it has), and waits for the operation to finish,
    /// reporting each stage to `on_stage`. A stream the server closes before the end is
    /// followed again with WaitExecution.
    pub fn execute(
        &self,
        action: Blob,
        fresh: bool,
        mut on_stage: impl FnMut(Stage),
    ) -> Result<re::ExecuteResponse, RemoteError> {
        let e = &self.endpoint;
        let request = re::ExecuteRequest {
            instance_name: e.instance.clone(),
            action_digest: Some(action.to_proto()),
            skip_cache_lookup: fresh,
            ..Default::default()
        };
        let mut client = ExecutionClient::new(self.channel.clone());
        self.rt.block_on(async {
            let mut stream = client
                .execute(request)
                .await
                .map_err(|s| from_status(e, "Execute", s))?
                .into_inner();
            let mut name = String::new();
            let mut last = None;
            let mut reconnects = 0;
            let mut queued = Queued::default();
            loop {
                let Ok(next) = tokio::time::timeout(QUIET, stream.message()).await else {
                    if queued.overdue(last) {
                        on_stage(Stage::StillQueued);
                    }
                    continue;
                };
                match next {
                    Ok(Some(op)) => {
                        reconnects = 0;
                        if let Some(m) = op.metadata.as_ref().and_then(|any| {
                            re::ExecuteOperationMetadata::decode(any.value.as_slice()).ok()
                        }) {
                            let stage = Stage::of(&m);
                            if last != Some(stage) {
                                on_stage(stage);
                                last = Some(stage);
                            }
                            if queued.overdue(last) {
                                on_stage(Stage::StillQueued);
                            }
                        }
                        if op.done {
                            return finished(e, op);
                        }
                        name = op.name;
                    }
                    // The server ended the stream (or it broke) before the operation was done:
                    // follow the same operation again.
                    Ok(None) | Err(_) if !name.is_empty() && reconnects < MAX_RECONNECTS => {
                        reconnects += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(200 * reconnects))
                            .await;
                        let wait = re::WaitExecutionRequest { name: name.clone() };
                        stream = client
                            .wait_execution(wait)
                            .await
                            .map_err(|s| from_status(e, "WaitExecution", s))?
                            .into_inner();
                    }
                    Ok(None) => {
                        return Err(RemoteError::Call {
                            url: e.to_string(),
                            call: "Execute",
                            why: format!(
                                "the server ended the stream of operation `{name}` before it was \
                                 done, {reconnects} times"
                            ),
                        });
                    }
                    Err(s) => return Err(from_status(e, "Execute", s)),
                }
            }
        })
    }
}

/// When an execution was first seen queued, and whether the caller was told it still is.
#[derive(Debug, Default)]
struct Queued {
    since: Option<std::time::Instant>,
    told: bool,
}

impl Queued {
    /// Whether the execution, in stage `now`, has waited [`QUEUED_NOTICE`] for a worker and
    /// the caller is yet to hear of it.
    fn overdue(&mut self, now: Option<Stage>) -> bool {
        self.overdue_at(now, std::time::Instant::now())
    }

    fn overdue_at(&mut self, now: Option<Stage>, at: std::time::Instant) -> bool {
        if now != Some(Stage::Queued) {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(at);
        if self.told || at.duration_since(since) < QUEUED_NOTICE {
            return false;
        }
        self.told = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_long_wait_for_a_worker_is_told_once() {
        let t0 = Instant::now();
        let mut q = Queued::default();
        assert!(!q.overdue_at(Some(Stage::CacheCheck), t0));
        assert!(!q.overdue_at(Some(Stage::Queued), t0));
        assert!(!q.overdue_at(Some(Stage::Queued), t0 + Duration::from_secs(59)));
        assert!(q.overdue_at(Some(Stage::Queued), t0 + QUEUED_NOTICE));
        assert!(!q.overdue_at(Some(Stage::Queued), t0 + QUEUED_NOTICE * 3));
        let mut q = Queued::default();
        assert!(!q.overdue_at(Some(Stage::Queued), t0));
        // Executing, then queued again (the worker was lost): the wait starts over.
        assert!(!q.overdue_at(Some(Stage::Executing), t0 + QUEUED_NOTICE));
        assert!(!q.overdue_at(Some(Stage::Queued), t0 + QUEUED_NOTICE));
        assert!(q.overdue_at(Some(Stage::Queued), t0 + QUEUED_NOTICE * 2));
    }
}
