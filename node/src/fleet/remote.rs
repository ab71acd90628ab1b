//! Fan-out over the secure channel: resolves a target selector against live presence (and the
//! hosts the caller expects, so offline ones are reported), and calls each host with an
//! `ops::Envelope` through `daemon::net`, turning every way a call can end into a [`HostRecord`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use remote_agents_protocol::frame::PeerId;
use remote_agents_spec::{HostFacts, Selector};
use tokio::time::Instant;

use super::fanout::{HostCaller, Target};
use super::{HostRecord, HostStatus};
use crate::net::{CallError, Net, PeerInfo};
use remote_agents_ops::{
    Caller, Envelope, ExecResult, Outcome, ReadFileResult, Reply, Request, WriteFileResult,
};

/// What a selector sees of a connected peer: its announced name, tags and facts. The OS family
/// is the `os` fact (`os:linux` is `fact:os=linux`).
pub fn host_facts(peer: &PeerInfo) -> HostFacts {
    let announcement = &peer.announcement;
    let name = if announcement.name.is_empty() {
        peer.agent_id.clone()
    } else {
        announcement.name.clone()
    };
    let mut facts = announcement.facts.clone();
    // Nodes announce their OS family as `os_family`; selectors spell it `os:FAMILY`.
    if let Some(family) = facts.get("os_family").cloned() {
        facts.entry("os".to_string()).or_insert(family);
    }
    HostFacts {
        name,
        tags: announcement.tags.iter().cloned().collect(),
        facts,
    }
}

/// The hosts a selector picks: every connected peer that accepts commands and matches, plus
/// every `expected` host (e.g. declared in the desired state) that matches but is not connected,
/// which then has no agent id and is reported `unreachable`.
pub fn resolve_targets(
    selector: &Selector,
    peers: &[PeerInfo],
    expected: &[HostFacts],
) -> Vec<Target> {
    let mut by_name: BTreeMap<String, Target> = BTreeMap::new();
    for peer in peers {
        if !peer.announcement.accepts_commands {
            continue;
        }
        let facts = host_facts(peer);
        if selector.matches(&facts) {
            by_name.insert(
                facts.name.clone(),
                Target {
                    host: facts.name,
                    agent_id: Some(peer.agent_id.clone()),
                },
            );
        }
    }
    for host in expected {
        if selector.matches(host) && !by_name.contains_key(&host.name) {
            by_name.insert(
                host.name.clone(),
                Target {
                    host: host.name.clone(),
                    agent_id: None,
                },
            );
        }
    }
    by_name.into_values().collect()
}

/// Calls hosts with one request through the net RPC. `op_id` names the fan-out; each host's
/// envelope id is `op_id/host`, so a retried fan-out with the same op id returns the hosts'
/// journaled results instead of running twice.
pub struct NetCaller {
    pub net: Net,
    pub op_id: String,
    pub caller: Caller,
    pub request: Request,
    /// Per-OS-family replacement requests (`fleet_exec`'s command map), keyed by the `os` fact.
    pub per_os: BTreeMap<String, Request>,
}

impl HostCaller for NetCaller {
    fn call(&self, target: Target, timeout: Duration) -> BoxFuture<'static, HostRecord> {
        let net = self.net.clone();
        // Only a per-OS command map needs the host's facts; look up just this one peer.
        let os = if self.per_os.is_empty() {
            None
        } else {
            target
                .agent_id
                .as_deref()
                .and_then(|id| id.parse::<PeerId>().ok())
                .and_then(|id| net.peer(&id))
                .and_then(|p| host_facts(&p).facts.get("os").cloned())
        };
        let request = os
            .and_then(|os| self.per_os.get(&os).cloned())
            .unwrap_or_else(|| self.request.clone())
            .without_agent_id();
        let envelope = Envelope {
            id: format!("{}/{}", self.op_id, target.host),
            caller: self.caller.clone(),
            request,
        };
        Box::pin(async move {
            let started = Instant::now();
            let mut record = call_host(&net, &target, envelope, timeout).await;
            record.agent_id = target.agent_id;
            record.duration_ms = started.elapsed().as_millis() as u64;
            record
        })
    }
}

async fn call_host(
    net: &Net,
    target: &Target,
    envelope: Envelope,
    timeout: Duration,
) -> HostRecord {
    let host = target.host.clone();
    let Some(peer) = target
        .agent_id
        .as_deref()
        .and_then(|id| id.parse::<PeerId>().ok())
    else {
        return HostRecord::new(host, HostStatus::Unreachable).with_error("host is not connected");
    };
    let bytes = match serde_json::to_vec(&envelope) {
        Ok(bytes) => bytes,
        Err(e) => {
            return HostRecord::new(host, HostStatus::Failed)
                .with_error(format!("cannot encode request: {e}"));
        }
    };
    let answer = match net.call(peer, bytes, timeout).await {
        Ok(mut stream) => stream.collect().await.map(|(_, response)| response),
        Err(e) => Err(e),
    };
    match answer {
        Ok(response) => match serde_json::from_slice::<Reply>(&response) {
            Ok(reply) => record_from_outcome(host, &envelope.request, reply.outcome),
            Err(e) => HostRecord::new(host, HostStatus::Failed)
                .with_error(format!("malformed reply: {e}")),
        },
        Err(error) => record_from_call_error(host, error),
    }
}

fn record_from_call_error(host: String, error: CallError) -> HostRecord {
    let status = match &error {
        CallError::Unreachable(_) | CallError::Shutdown => HostStatus::Unreachable,
        CallError::OutcomeUnknown(_) => HostStatus::OutcomeUnknown,
        CallError::DeadlineExceeded => HostStatus::Timeout,
        CallError::Remote(_) | CallError::TooLarge(_) => HostStatus::Failed,
    };
    HostRecord::new(host, status).with_error(error.to_string())
}

/// Turns a host's answer into its record. Command results carry their streams and exit code;
/// a file read carries the content as stdout; other results carry their JSON as stdout, so
/// identical answers still fold together.
pub fn record_from_outcome(host: String, request: &Request, outcome: Outcome) -> HostRecord {
    match outcome {
        Outcome::Ok { result } => match request {
            Request::Exec(_) => match serde_json::from_value::<ExecResult>(result) {
                Ok(exec) => {
                    let status = if exec.timed_out {
                        HostStatus::Timeout
                    } else if exec.exit_code == Some(0) {
                        HostStatus::Ok
                    } else {
                        HostStatus::Failed
                    };
                    HostRecord {
                        exit: exec.exit_code,
                        stdout: exec.stdout,
                        stderr: exec.stderr,
                        truncated: exec.truncated,
                        ..HostRecord::new(host, status)
                    }
                }
                Err(e) => HostRecord::new(host, HostStatus::Failed)
                    .with_error(format!("malformed exec result: {e}")),
            },
            Request::ReadFile(_) => match serde_json::from_value::<ReadFileResult>(result) {
                Ok(read) => HostRecord {
                    // A read that stopped before the end of the file is a cut result.
                    truncated: !read.eof,
                    stdout: read.content,
                    ..HostRecord::new(host, HostStatus::Ok)
                },
                Err(e) => HostRecord::new(host, HostStatus::Failed)
                    .with_error(format!("malformed read result: {e}")),
            },
            // The backup's name differs per host; what a reader compares is what was written.
            Request::WriteFile(_) => match serde_json::from_value::<WriteFileResult>(result) {
                Ok(write) => HostRecord {
                    stdout: format!("wrote {} bytes to {}\n", write.bytes_written, write.path),
                    ..HostRecord::new(host, HostStatus::Ok)
                },
                Err(e) => HostRecord::new(host, HostStatus::Failed)
                    .with_error(format!("malformed write result: {e}")),
            },
            _ => HostRecord {
                stdout: serde_json::to_string_pretty(&result).unwrap_or_default() + "\n",
                ..HostRecord::new(host, HostStatus::Ok)
            },
        },
        Outcome::Refused { reason } => HostRecord::new(host, HostStatus::Denied).with_error(reason),
        Outcome::Failed { error } => HostRecord::new(host, HostStatus::Failed).with_error(error),
        Outcome::OutcomeUnknown { reason } => {
            HostRecord::new(host, HostStatus::OutcomeUnknown).with_error(reason)
        }
    }
}
