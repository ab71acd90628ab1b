//! The coordinator of one transfer (the caller's own node for `send_file`, or fleetctl for
//! `fleetctl cp`): asks the source host for a ticket, then the destination host to receive with
//! it, and keeps the transfer's record (`transfer_get`) up to date from the destination's
//! progress. It reaches the hosts through [`Hosts`], so the same steps serve a node (its request
//! pipeline, which forwards to peers) and fleetctl (its own connection).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use remote_agents_ops::{
    TransferPath, TransferReceiveArgs, TransferReceiveResult, TransferSourceArgs,
    TransferSourceResult, TransferState, TransferStatus,
};
use tokio_util::sync::CancellationToken;

use super::Transfers;
use crate::journal::now_ms;

/// Progress the destination reports: bytes verified, and the path in use.
pub type HostProgress = Arc<dyn Fn(u64, Option<TransferPath>) + Send + Sync>;

/// How the coordinator reaches the two hosts. Each call is authorized on that host against the
/// coordinator's caller.
pub trait Hosts: Send + Sync {
    /// The agent id of `host` (an agent id or a unique name).
    fn resolve(&self, host: &str) -> Result<String, String>;
    fn source(
        &self,
        host: &str,
        args: TransferSourceArgs,
    ) -> BoxFuture<'_, Result<TransferSourceResult, String>>;
    fn receive(
        &self,
        host: &str,
        args: TransferReceiveArgs,
        progress: HostProgress,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<TransferReceiveResult, String>>;
}

/// One transfer to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub transfer_id: String,
    pub from_host: String,
    pub from_path: String,
    pub to_host: String,
    pub to_path: String,
}

/// The record of a transfer that has just started.
pub fn started(job: &Job) -> TransferStatus {
    TransferStatus {
        transfer_id: job.transfer_id.clone(),
        state: TransferState::Running,
        from_agent_id: job.from_host.clone(),
        from_path: job.from_path.clone(),
        to_agent_id: job.to_host.clone(),
        to_path: job.to_path.clone(),
        size: None,
        bytes_done: 0,
        rate_bytes_per_sec: 0.0,
        path: None,
        sha256: None,
        resumed_from: 0,
        started_at_ms: now_ms(),
        finished_at_ms: None,
        error: None,
    }
}

/// Runs `job` to its end, keeping its record in `transfers` (which must hold [`started`]'s
/// record already), and returns the final record.
pub async fn run(
    transfers: Arc<Transfers>,
    hosts: &dyn Hosts,
    job: Job,
    cancel: CancellationToken,
) -> TransferStatus {
    let id = job.transfer_id.clone();
    // Cancellation goes down to the destination, which stops pulling and removes its partial
    // file before the step returns: the step is not dropped half-way.
    let outcome = steps(&transfers, hosts, &job, cancel.clone()).await;
    match outcome {
        Ok(received) => transfers.update_record(&id, |status| {
            status.state = TransferState::Done;
            status.bytes_done = received.bytes;
            status.sha256 = Some(received.sha256);
            status.path = Some(received.transfer_path);
            status.resumed_from = received.resumed_from;
            status.finished_at_ms = Some(now_ms());
            status.rate_bytes_per_sec = rate(status);
        }),
        Err((state, error)) => {
            let state = if cancel.is_cancelled() {
                TransferState::Cancelled
            } else {
                state
            };
            transfers.update_record(&id, |status| super::fail(status, state, error))
        }
    }
    transfers.record(&id).unwrap_or_else(|| started(&job))
}

async fn steps(
    transfers: &Arc<Transfers>,
    hosts: &dyn Hosts,
    job: &Job,
    cancel: CancellationToken,
) -> Result<TransferReceiveResult, (TransferState, String)> {
    let failed = |text: String| (TransferState::Failed, text);
    if cancel.is_cancelled() {
        return Err((
            TransferState::Cancelled,
            "cancelled before it started".into(),
        ));
    }
    let from = hosts.resolve(&job.from_host).map_err(failed)?;
    let to = hosts.resolve(&job.to_host).map_err(failed)?;
    transfers.update_record(&job.transfer_id, |status| {
        status.from_agent_id = from.clone();
        status.to_agent_id = to.clone();
    });
    let source = hosts
        .source(
            &from,
            TransferSourceArgs {
                agent_id: None,
                path: job.from_path.clone(),
                to_agent_id: to.clone(),
            },
        )
        .await
        .map_err(|e| failed(format!("source {}:{}: {e}", job.from_host, job.from_path)))?;
    transfers.update_record(&job.transfer_id, |status| {
        status.size = Some(source.size);
        status.from_path = source.path.clone();
    });
    let progress: HostProgress = {
        let transfers = transfers.clone();
        let id = job.transfer_id.clone();
        Arc::new(move |bytes, path| {
            transfers.update_record(&id, |status| {
                status.bytes_done = bytes;
                if path.is_some() {
                    status.path = path;
                }
                status.rate_bytes_per_sec = rate(status);
            })
        })
    };
    hosts
        .receive(
            &to,
            TransferReceiveArgs {
                agent_id: None,
                path: job.to_path.clone(),
                from_agent_id: source.agent_id,
                from_path: source.path,
                ticket: source.ticket,
                size: source.size,
                modified_ms: source.modified_ms,
                serve_to: Vec::new(),
                origin: None,
            },
            progress,
            cancel,
        )
        .await
        .map_err(|e| failed(format!("destination {}:{}: {e}", job.to_host, job.to_path)))
}

fn rate(status: &TransferStatus) -> f64 {
    let elapsed_ms = status.finished_at_ms.unwrap_or_else(now_ms) - status.started_at_ms;
    let sent = status.bytes_done.saturating_sub(status.resumed_from);
    sent as f64 * 1000.0 / elapsed_ms.max(1) as f64
}

/// The message of a destination's progress report: `via <path>`.
pub fn progress_message(path: TransferPath) -> String {
    match path {
        TransferPath::Direct => "via direct",
        TransferPath::Relay => "via relay",
        TransferPath::Local => "via local",
    }
    .to_string()
}

/// The path a progress message names.
pub fn progress_path(message: &str) -> Option<TransferPath> {
    match message.strip_prefix("via ")? {
        "direct" => Some(TransferPath::Direct),
        "relay" => Some(TransferPath::Relay),
        "local" => Some(TransferPath::Local),
        _ => None,
    }
}
