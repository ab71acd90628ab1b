//! The one RPC client: an `ops::Envelope` goes out over [`Net`], a `Reply` comes back, and its
//! `Outcome` becomes the operation's typed output or a [`CallError`]. Fan-out, MapReduce, bundle
//! distribution, fleetctl and forwarding all call peers through it, so the same failure reads
//! the same everywhere; [`CallError::host_failure`] is the one mapping from a failure to a
//! fan-out record's status and text.
//!
//! Dropping a call's future cancels the call on the callee (the net layer's stream does that),
//! so callers cancel with `select!` or by aborting the task that runs the call.

use std::time::Duration;

use remote_agents_ops::operation::Operation;
use remote_agents_ops::{Caller, Envelope, HostStatus, Outcome, Reply};
use remote_agents_protocol::frame::PeerId;

use crate::net::{self, CallEvent, Net};

/// How long [`Client::call`] waits for an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a host that has no live session (no agent id, or one that does not parse) reports.
pub const NOT_CONNECTED: &str = "host is not connected";

/// Receives each chunk a callee streams before its reply (a forwarded request's progress).
pub type ChunkSink<'a> = &'a (dyn Fn(&[u8]) + Send + Sync);

/// Why a call did not give the operation's output: the request was not sent, the channel
/// failed, the answer was unreadable, or the host answered with something other than `ok`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No connected peer takes the request (the text says why); nothing was sent.
    #[error("{0}")]
    NotConnected(String),
    /// The secure channel failed: unreachable, deadline, the callee's failure, too large, or
    /// this node shutting down.
    #[error(transparent)]
    Transport(#[from] net::CallError),
    #[error("cannot encode request: {0}")]
    Encode(String),
    #[error("malformed reply: {0}")]
    MalformedReply(String),
    /// The host's policy gate refused the request; nothing ran.
    #[error("refused by policy: {reason}")]
    Refused { reason: String },
    /// It ran (or tried to) on the host and failed.
    #[error("{error}")]
    Failed { error: String },
    /// The host's journal says a crash interrupted it: it may or may not have taken effect.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// The host answered `ok` with a result that is not the operation's output.
    #[error("malformed {operation} result: {error}")]
    MalformedResult {
        operation: &'static str,
        error: String,
    },
}

impl CallError {
    /// A host without a live session.
    pub fn not_connected() -> Self {
        CallError::NotConnected(NOT_CONNECTED.to_string())
    }

    /// The status and error text of a fan-out record for this failure. The text is the
    /// error's own words, except that a refusal or an unknown outcome carries only the host's
    /// reason: the record's status already says which it was.
    pub fn host_failure(&self) -> (HostStatus, String) {
        let status = match self {
            CallError::NotConnected(_)
            | CallError::Transport(net::CallError::Unreachable(_) | net::CallError::Shutdown) => {
                HostStatus::Unreachable
            }
            CallError::Transport(net::CallError::OutcomeUnknown(_))
            | CallError::OutcomeUnknown { .. } => HostStatus::OutcomeUnknown,
            CallError::Transport(net::CallError::DeadlineExceeded) => HostStatus::Timeout,
            CallError::Refused { .. } => HostStatus::Denied,
            CallError::Transport(net::CallError::Remote(_) | net::CallError::TooLarge(_))
            | CallError::Encode(_)
            | CallError::MalformedReply(_)
            | CallError::Failed { .. }
            | CallError::MalformedResult { .. } => HostStatus::Failed,
        };
        let text = match self {
            CallError::Refused { reason } | CallError::OutcomeUnknown { reason } => reason.clone(),
            other => other.to_string(),
        };
        (status, text)
    }
}

/// The peer a target's agent id names; a host without one is not connected.
pub fn peer_of(agent_id: Option<&str>) -> Result<PeerId, CallError> {
    agent_id
        .and_then(|id| id.parse::<PeerId>().ok())
        .ok_or_else(CallError::not_connected)
}

/// The result an `ok` outcome carries; any other outcome is its [`CallError`].
pub fn ok_result(outcome: Outcome) -> Result<serde_json::Value, CallError> {
    match outcome {
        Outcome::Ok { result } => Ok(result),
        Outcome::Refused { reason } => Err(CallError::Refused { reason }),
        Outcome::Failed { error } => Err(CallError::Failed { error }),
        Outcome::OutcomeUnknown { reason } => Err(CallError::OutcomeUnknown { reason }),
    }
}

/// An `ok` result as the operation's output.
pub fn decode_result<O: Operation>(result: serde_json::Value) -> Result<O::Output, CallError> {
    serde_json::from_value(result).map_err(|e| CallError::MalformedResult {
        operation: O::NAME,
        error: e.to_string(),
    })
}

/// An outcome as the operation's output, or why not.
pub fn decode<O: Operation>(outcome: Outcome) -> Result<O::Output, CallError> {
    decode_result::<O>(ok_result(outcome)?)
}

/// A fresh request id, for calls that are not part of a fan-out or a job.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs the requests a [`Client`] addresses to its own node: the net has no session with
/// itself, and a declared job's coordinator is also one of the hosts its map runs on.
pub trait OwnNode: Send + Sync + 'static {
    fn run(&self, envelope: Envelope) -> futures_util::future::BoxFuture<'static, Outcome>;
}

/// Calls peers over a [`Net`] with requests labelled as coming from one [`Caller`] (the callee
/// replaces the label with the authenticated peer; it names the caller in logs and journals).
#[derive(Clone)]
pub struct Client {
    net: Net,
    caller: Caller,
    /// Marks every request as made on behalf of a model (`Envelope::on_behalf_of_model`).
    on_behalf_of_model: bool,
    /// Where requests to this node's own peer id go (none: they fail as unreachable).
    own_node: Option<std::sync::Arc<dyn OwnNode>>,
    /// The reason every request gives for acting inside a closed change window
    /// (`Envelope::window_override`), if it gives one.
    window_override: Option<String>,
}

impl Client {
    pub fn new(net: Net, caller: Caller) -> Self {
        Self {
            net,
            caller,
            on_behalf_of_model: false,
            own_node: None,
            window_override: None,
        }
    }

    /// The same client, its requests to this node's own peer id run by `own` instead of being
    /// sent.
    pub fn with_own_node(mut self, own: std::sync::Arc<dyn OwnNode>) -> Self {
        self.own_node = Some(own);
        self
    }

    /// The same client, its requests marked as made on behalf of a model (or not), so that
    /// each receiving host applies its `McpSurface` to them.
    pub fn on_behalf_of_model(mut self, model: bool) -> Self {
        self.on_behalf_of_model = model;
        self
    }

    /// The same client, its requests carrying `reason` to act inside a closed change window
    /// (each host records it in its audit log), or none.
    pub fn window_override(mut self, reason: Option<String>) -> Self {
        self.window_override = reason;
        self
    }

    pub fn net(&self) -> &Net {
        &self.net
    }

    /// `request` under id `id`, labelled with this client's caller.
    pub fn envelope(&self, id: String, request: remote_agents_ops::Request) -> Envelope {
        Envelope {
            id,
            caller: self.caller.clone(),
            request,
            on_behalf_of_model: self.on_behalf_of_model,
            window_override: self.window_override.clone(),
        }
    }

    /// Runs one operation on `peer` with a fresh request id and [`DEFAULT_TIMEOUT`].
    pub async fn call<O: Operation>(
        &self,
        peer: PeerId,
        args: O::Args,
    ) -> Result<O::Output, CallError> {
        self.call_with::<O>(peer, new_request_id(), args, DEFAULT_TIMEOUT)
            .await
    }

    /// Runs one operation on `peer` under request id `id` (a retried id returns the host's
    /// journaled outcome instead of running again), waiting at most `timeout`.
    pub async fn call_with<O: Operation>(
        &self,
        peer: PeerId,
        id: String,
        args: O::Args,
        timeout: Duration,
    ) -> Result<O::Output, CallError> {
        let outcome = self
            .call_request(peer, id, O::request(args), timeout)
            .await?;
        decode::<O>(outcome)
    }

    /// Sends one request and returns the host's outcome as it is, for callers that keep it
    /// (fan-out records). Errors are only those of the call itself.
    pub async fn call_request(
        &self,
        peer: PeerId,
        id: String,
        request: remote_agents_ops::Request,
        timeout: Duration,
    ) -> Result<Outcome, CallError> {
        self.send(peer, &self.envelope(id, request), timeout, None)
            .await
    }

    /// The step every call is built on: sends `envelope` as it is (its own id and caller; a
    /// forwarded request keeps those it came with), hands each streamed chunk to `on_chunk`,
    /// and decodes the reply.
    pub async fn send(
        &self,
        peer: PeerId,
        envelope: &Envelope,
        timeout: Duration,
        on_chunk: Option<ChunkSink<'_>>,
    ) -> Result<Outcome, CallError> {
        if let Some(own) = &self.own_node
            && peer == self.net.local_id()
        {
            return tokio::time::timeout(timeout, own.run(envelope.clone()))
                .await
                .map_err(|_| CallError::Transport(net::CallError::DeadlineExceeded));
        }
        let bytes = serde_json::to_vec(envelope).map_err(|e| CallError::Encode(e.to_string()))?;
        let mut stream = self.net.call(peer, bytes, timeout).await?;
        let response = loop {
            match stream.next().await {
                Some(Ok(CallEvent::Chunk(chunk))) => {
                    if let Some(sink) = on_chunk {
                        sink(&chunk);
                    }
                }
                Some(Ok(CallEvent::Response(response))) => break response,
                Some(Err(error)) => return Err(error.into()),
                None => return Err(net::CallError::Shutdown.into()),
            }
        };
        let reply: Reply = serde_json::from_slice(&response)
            .map_err(|e| CallError::MalformedReply(e.to_string()))?;
        Ok(reply.outcome)
    }
}

#[cfg(test)]
mod tests {
    use remote_agents_ops::operation::{DesiredHistory, Exec};
    use remote_agents_protocol::message::RemoteFailure;

    use super::*;

    /// Every way a call can fail, with the status and text a fan-out record shows for it, and
    /// the text it reads as on its own (MapReduce, fleetctl, forwarding).
    #[test]
    fn every_failure_has_one_status_and_text() {
        let cases: Vec<(CallError, HostStatus, &str, &str)> = vec![
            (
                CallError::not_connected(),
                HostStatus::Unreachable,
                "host is not connected",
                "host is not connected",
            ),
            (
                net::CallError::Unreachable("no session".into()).into(),
                HostStatus::Unreachable,
                "peer unreachable: no session",
                "peer unreachable: no session",
            ),
            (
                net::CallError::Shutdown.into(),
                HostStatus::Unreachable,
                "the node is shutting down",
                "the node is shutting down",
            ),
            (
                net::CallError::OutcomeUnknown("connection lost".into()).into(),
                HostStatus::OutcomeUnknown,
                "outcome unknown: connection lost",
                "outcome unknown: connection lost",
            ),
            (
                net::CallError::DeadlineExceeded.into(),
                HostStatus::Timeout,
                "deadline exceeded",
                "deadline exceeded",
            ),
            (
                net::CallError::Remote(RemoteFailure::Handler("boom".into())).into(),
                HostStatus::Failed,
                "remote failure: handler error: boom",
                "remote failure: handler error: boom",
            ),
            (
                net::CallError::TooLarge(9).into(),
                HostStatus::Failed,
                "message of 9 bytes exceeds the limit",
                "message of 9 bytes exceeds the limit",
            ),
            (
                CallError::Encode("bad".into()),
                HostStatus::Failed,
                "cannot encode request: bad",
                "cannot encode request: bad",
            ),
            (
                CallError::MalformedReply("eof".into()),
                HostStatus::Failed,
                "malformed reply: eof",
                "malformed reply: eof",
            ),
            (
                CallError::MalformedResult {
                    operation: "exec",
                    error: "missing field".into(),
                },
                HostStatus::Failed,
                "malformed exec result: missing field",
                "malformed exec result: missing field",
            ),
        ];
        for (error, status, record_text, text) in cases {
            assert_eq!(
                error.host_failure(),
                (status, record_text.to_string()),
                "{error:?}"
            );
            assert_eq!(error.to_string(), text, "{error:?}");
        }
    }

    /// A host's answer other than `ok` is the same failure whoever called.
    #[test]
    fn outcomes_other_than_ok_become_their_failure() {
        let cases = [
            (
                Outcome::Refused {
                    reason: "plan mode".into(),
                },
                HostStatus::Denied,
                "plan mode",
                "refused by policy: plan mode",
            ),
            (
                Outcome::failed("no such file"),
                HostStatus::Failed,
                "no such file",
                "no such file",
            ),
            (
                Outcome::OutcomeUnknown {
                    reason: "restarted".into(),
                },
                HostStatus::OutcomeUnknown,
                "restarted",
                "outcome unknown: restarted",
            ),
        ];
        for (outcome, status, record_text, text) in cases {
            let error = ok_result(outcome.clone()).unwrap_err();
            assert_eq!(
                error.host_failure(),
                (status, record_text.to_string()),
                "{outcome:?}"
            );
            assert_eq!(error.to_string(), text, "{outcome:?}");
            assert_eq!(decode::<Exec>(outcome).unwrap_err(), error);
        }
    }

    #[test]
    fn ok_outcomes_decode_as_the_operations_output() {
        let history = Outcome::Ok {
            result: serde_json::json!([]),
        };
        assert_eq!(decode::<DesiredHistory>(history).unwrap(), vec![]);
        let wrong = Outcome::Ok {
            result: serde_json::json!({"exit_code": "zero"}),
        };
        let error = decode::<Exec>(wrong).unwrap_err();
        assert!(
            matches!(
                &error,
                CallError::MalformedResult {
                    operation: "exec",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.host_failure().0, HostStatus::Failed);
    }

    #[test]
    fn a_target_without_a_valid_agent_id_is_not_connected() {
        assert_eq!(peer_of(None), Err(CallError::not_connected()));
        assert_eq!(peer_of(Some("not hex")), Err(CallError::not_connected()));
    }
}
