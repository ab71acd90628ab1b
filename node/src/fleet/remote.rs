//! Fan-out over the secure channel: resolves a target selector against live presence (and the
//! hosts the caller expects, so offline ones are reported), and calls each host through the RPC
//! [`Client`], turning every way a call can end into a [`HostRecord`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use remote_agents_spec::{HostFacts, Selector};
use tokio::time::Instant;

use super::fanout::{HostCaller, Target};
use super::{HostRecord, HostStatus};
use crate::client::{CallError, Client, decode_result, ok_result, peer_of};
use crate::net::PeerInfo;
use remote_agents_ops::operation::{Exec, ReadFile, TaskGet, WriteFile};
use remote_agents_ops::{Outcome, Request};

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

/// Calls hosts with one request through the RPC client. `op_id` names the fan-out; each host's
/// envelope id is `op_id/host`, so a retried fan-out with the same op id returns the hosts'
/// journaled results instead of running twice.
pub struct NetCaller {
    /// Labels each request with the fan-out's caller.
    pub client: Client,
    pub op_id: String,
    pub request: Request,
    /// Per-OS-family replacement requests (`fleet_exec`'s command map), keyed by the `os` fact.
    pub per_os: BTreeMap<String, Request>,
}

impl HostCaller for NetCaller {
    fn call(&self, target: Target, timeout: Duration) -> BoxFuture<'static, HostRecord> {
        let client = self.client.clone();
        // Only a per-OS command map needs the host's facts; look up just this one peer.
        let os = if self.per_os.is_empty() {
            None
        } else {
            peer_of(target.agent_id.as_deref())
                .ok()
                .and_then(|id| client.net().peer(&id))
                .and_then(|p| host_facts(&p).facts.get("os").cloned())
        };
        let request = os
            .and_then(|os| self.per_os.get(&os).cloned())
            .unwrap_or_else(|| self.request.clone())
            .without_agent_id();
        let envelope = client.envelope(format!("{}/{}", self.op_id, target.host), request);
        Box::pin(async move {
            let started = Instant::now();
            let host = target.host.clone();
            let answer = match peer_of(target.agent_id.as_deref()) {
                Ok(peer) => client.send(peer, &envelope, timeout, None).await,
                Err(error) => Err(error),
            };
            let mut record = match answer {
                Ok(outcome) => record_from_outcome(host, &envelope.request, outcome),
                Err(error) => record_from_error(host, &error),
            };
            record.agent_id = target.agent_id;
            record.duration_ms = started.elapsed().as_millis() as u64;
            record
        })
    }
}

/// The record of a host whose call failed: its status and text are
/// [`CallError::host_failure`]'s, the one mapping every caller of the client shares.
pub fn record_from_error(host: String, error: &CallError) -> HostRecord {
    let (status, text) = error.host_failure();
    HostRecord::new(host, status).with_error(text)
}

/// Turns a host's answer into its record. Command results carry their streams and exit code;
/// a file read carries the content as stdout; other results carry their JSON as stdout, so
/// identical answers still fold together.
pub fn record_from_outcome(host: String, request: &Request, outcome: Outcome) -> HostRecord {
    let result = match ok_result(outcome) {
        Ok(result) => result,
        Err(error) => return record_from_error(host, &error),
    };
    let record = match request {
        Request::Exec(_) => decode_result::<Exec>(result).map(|exec| {
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
                ..HostRecord::new(host.clone(), status)
            }
        }),
        Request::ReadFile(_) => decode_result::<ReadFile>(result).map(|read| HostRecord {
            // A read that stopped before the end of the file is a cut result.
            truncated: !read.eof,
            stdout: read.content,
            ..HostRecord::new(host.clone(), HostStatus::Ok)
        }),
        // The backup's name differs per host; what a reader compares is what was written.
        Request::WriteFile(_) => decode_result::<WriteFile>(result).map(|write| HostRecord {
            stdout: format!("wrote {} bytes to {}\n", write.bytes_written, write.path),
            ..HostRecord::new(host.clone(), HostStatus::Ok)
        }),
        Request::TaskDispatch(_)
        | Request::TaskGet(_)
        | Request::TaskWait(_)
        | Request::TaskCancel(_) => {
            decode_result::<TaskGet>(result).map(|task| task_record(host.clone(), task))
        }
        _ => Ok(HostRecord {
            stdout: serde_json::to_string_pretty(&result).unwrap_or_default() + "\n",
            ..HostRecord::new(host.clone(), HostStatus::Ok)
        }),
    };
    record.unwrap_or_else(|error| record_from_error(host, &error))
}

/// A task's record as a host's: the answer is what a reader compares, so it is the output
/// (identical answers fold); how the task went (its id, session, turns, cost) is the detail.
fn task_record(host: String, task: remote_agents_ops::TaskStatus) -> HostRecord {
    use remote_agents_ops::TaskState;
    let status = match task.state {
        TaskState::Done | TaskState::Running => HostStatus::Ok,
        TaskState::Failed | TaskState::Cancelled | TaskState::Interrupted => HostStatus::Failed,
    };
    let mut stdout = match task.state {
        TaskState::Running => "running\n".to_string(),
        _ => task.answer.clone().unwrap_or_default(),
    };
    if !stdout.is_empty() && !stdout.ends_with('\n') {
        stdout.push('\n');
    }
    let detail = format!(
        "task {} {} · {} turns · {:.1}s{} · session {}",
        task.task_id,
        task.state.as_str(),
        task.turns,
        task.duration_ms as f64 / 1000.0,
        task.usage
            .cost_usd
            .map(|c| format!(" · ${c:.4}"))
            .unwrap_or_default(),
        task.session_id.as_deref().unwrap_or("none"),
    );
    HostRecord {
        stdout,
        error: task.error,
        duration_ms: task.duration_ms,
        detail: Some(detail),
        ..HostRecord::new(host, status)
    }
}
