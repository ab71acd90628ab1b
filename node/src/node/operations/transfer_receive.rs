//! `transfer_receive`: a step of `send_file`, asked by the transfer's coordinator. Pulls the file
//! a source host holds under a ticket into a temp file beside the target, verifies SHA-256 end to
//! end, fsyncs and renames (`transfer::receive`), reporting progress as it goes. Gate: the target
//! resolves for writing beneath a root (so `plan` mode refuses it, like `write_file`).

use std::sync::Arc;

use remote_agents_ops::operation::TransferReceive;
use remote_agents_ops::{Outcome, TransferPath, TransferReceiveArgs, TransferReceiveResult};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};
use crate::transfer::path;
use crate::transfer::{BytePath, Destination, ReceiveError, ReceivePlan};

/// The target the gate approved and the source to pull from.
pub(in crate::node) struct Approved {
    target: Resolved,
    args: TransferReceiveArgs,
}

impl Run for TransferReceive {
    type Checked = Approved;

    fn check(node: &Node, mode: Mode, args: TransferReceiveArgs) -> Result<Approved, Refusal> {
        Ok(Approved {
            target: node
                .policy()
                .resolve(mode, std::path::Path::new(&args.path), Intent::Write)?,
            args,
        })
    }

    async fn execute(node: Arc<Node>, call: Call, approved: Approved) -> Outcome {
        let Approved { target, args } = approved;
        let paths = match paths_to(&node, &args.from_agent_id) {
            Ok(paths) => paths,
            Err(error) => return Outcome::failed(error),
        };
        let destination = match Destination::beneath(target) {
            Ok(destination) => destination,
            Err(error) => return Outcome::failed(error),
        };
        let shown = destination.shown().to_string();
        let plan = ReceivePlan {
            from_agent_id: args.from_agent_id,
            from_path: args.from_path,
            ticket: args.ticket,
            size: args.size,
            modified_ms: args.modified_ms,
        };
        let progress = reporter(call.ctx.progress.clone(), plan.size);
        match crate::transfer::receive(destination, plan, paths, progress, call.ctx.cancel).await {
            Ok(received) => Outcome::ok(&TransferReceiveResult {
                path: shown,
                bytes: received.bytes,
                sha256: received.sha256,
                transfer_path: received.path,
                resumed_from: received.resumed_from,
            }),
            Err(ReceiveError::Cancelled) => Outcome::failed(ReceiveError::Cancelled),
            Err(error) => Outcome::failed(error),
        }
    }
}

/// The byte paths to the source host, preferred first: the direct path (`node::net::direct`,
/// unless the `direct` setting is off), then the relay, the fallback every transfer has.
fn paths_to(node: &Arc<Node>, from_agent_id: &str) -> Result<Vec<Arc<dyn BytePath>>, String> {
    if node.is_local(from_agent_id) {
        return Ok(vec![path::local(node.transfers().clone(), node.agent_id())]);
    }
    let net = node.net().ok_or_else(|| {
        format!(
            "source host {from_agent_id} cannot be reached: this node runs local-only (no relay)"
        )
    })?;
    let peer = net
        .peers()
        .into_iter()
        .find(|p| p.agent_id == from_agent_id)
        .ok_or_else(|| format!("source host {from_agent_id} is not connected"))?;
    let mut paths = Vec::new();
    if node.settings().direct.value {
        paths.push(crate::transfer::direct::path(net.clone(), peer.peer_id));
    }
    paths.push(path::relay(net, peer.peer_id));
    Ok(paths)
}

/// Progress as the request's progress reports (bytes of total, `via <path>`), about every
/// percent rather than every chunk.
fn reporter(
    progress: Option<crate::node::ProgressFn>,
    size: u64,
) -> crate::transfer::receive::Progress {
    let last = std::sync::Mutex::new(None::<(u64, TransferPath)>);
    Arc::new(move |bytes, path| {
        let Some(progress) = &progress else { return };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let due = match *last {
            None => true,
            Some((before, before_path)) => {
                before_path != path
                    || bytes == size
                    || bytes.saturating_sub(before) >= (size / 100).max(1)
            }
        };
        if due {
            *last = Some((bytes, path));
            progress(
                bytes as f64,
                Some(size as f64),
                crate::transfer::coordinate::progress_message(path),
            );
        }
    })
}
