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
use crate::transfer::forward::Forwarding;
use crate::transfer::path;
use crate::transfer::{BytePath, Destination, ReceiveError, ReceivePlan, Source};
use remote_agents_protocol::frame::PeerId;

/// Hosts one destination serves a swarm's file to at most.
const MAX_SERVE_TO: usize = 16;

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
        let forward = match forward(&node, &args, &shown) {
            Ok(forward) => forward,
            Err(error) => return Outcome::failed(error),
        };
        let plan = ReceivePlan {
            from_agent_id: args.from_agent_id,
            from_path: args.from_path,
            ticket: args.ticket,
            size: args.size,
            modified_ms: args.modified_ms,
            origin: args.origin,
            forward,
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

/// The sources that serve this receive to the next hosts of a swarm (`serve_to`), under the
/// tickets the coordinator drew, each bound to its host: registered before the first byte is
/// pulled, so the next hosts may start pulling as soon as the coordinator hears of progress.
fn forward(
    node: &Arc<Node>,
    args: &TransferReceiveArgs,
    shown: &str,
) -> Result<Option<Arc<Forwarding>>, String> {
    if args.serve_to.is_empty() {
        return Ok(None);
    }
    if args.serve_to.len() > MAX_SERVE_TO {
        return Err(format!(
            "serve_to names {} hosts; a host forwards to {MAX_SERVE_TO} at most",
            args.serve_to.len()
        ));
    }
    let forwarding = Forwarding::new();
    for next in &args.serve_to {
        let source = Source::forwarded(
            forwarding.clone(),
            shown.to_string(),
            args.size,
            args.modified_ms,
            &next.agent_id,
        );
        node.transfers()
            .add_source_with_ticket(&next.ticket, source)?;
    }
    Ok(Some(forwarding))
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
    // A peer present in the room is enough: a node that has not talked to it yet (rooms do not
    // handshake eagerly) meets it with the first pull, as a swarm's hosts meet each other.
    let peer = from_agent_id
        .parse::<PeerId>()
        .ok()
        .filter(|id| net.may_be_present(id))
        .ok_or_else(|| format!("source host {from_agent_id} is not connected"))?;
    let mut paths = Vec::new();
    if node.settings().direct.value {
        paths.push(crate::transfer::direct::path(net.clone(), peer));
    }
    paths.push(path::relay(net, peer));
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
