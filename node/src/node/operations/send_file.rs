//! `send_file`: a file from one host's path to another's, coordinated by this node for its own
//! caller (`transfer::coordinate`): the source host opens the file for the destination
//! (`transfer_source`), the destination pulls and verifies it (`transfer_receive`), each step
//! authorized on its host against this node's caller, as any request this node forwards. It
//! answers at once with the transfer's record (`transfer_get` follows it), or with `wait` once
//! the transfer ends, reporting progress meanwhile; cancelling a waiting call stops both ends.
//!
//! Only this node's own callers (its MCP client, its command line) may start one: a peer that
//! asked this node to coordinate would have the hosts authorize this node instead of itself.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use remote_agents_ops::operation::{Operation, SendFile, TransferReceive, TransferSource};
use remote_agents_ops::{
    Caller, Envelope, Outcome, Request, SendFileArgs, TransferReceiveArgs, TransferReceiveResult,
    TransferSourceArgs, TransferSourceResult,
};
use tokio_util::sync::CancellationToken;

use super::{Call, Run};
use crate::node::{CallContext, Node, ProgressFn};
use crate::policy::{Mode, Refusal};
use crate::transfer::coordinate::{self, HostProgress, Hosts, Job};

impl Run for SendFile {
    type Checked = SendFileArgs;

    /// The hosts' gates decide on the paths; here only the arguments.
    fn check(_node: &Node, _mode: Mode, args: SendFileArgs) -> Result<SendFileArgs, Refusal> {
        for (field, value) in [("from_path", &args.from_path), ("to_path", &args.to_path)] {
            if value.is_empty() {
                return Err(Refusal {
                    reason: format!("{field} is empty"),
                });
            }
        }
        Ok(args)
    }

    async fn execute(node: Arc<Node>, call: Call, args: SendFileArgs) -> Outcome {
        let caller = Caller::from(call.caller.as_str());
        if !matches!(caller, Caller::McpLocal | Caller::Cli) {
            return Outcome::Refused {
                reason: format!(
                    "send_file runs on the caller's own node (this one was asked by `{caller}`): \
                     call it there, naming from_agent_id and to_agent_id"
                ),
            };
        }
        let local = node.agent_id().to_string();
        let job = Job {
            transfer_id: uuid::Uuid::new_v4().to_string(),
            from_host: args.from_agent_id.unwrap_or_else(|| local.clone()),
            from_path: args.from_path,
            to_host: args.to_agent_id.unwrap_or_else(|| local.clone()),
            to_path: args.to_path,
        };
        let transfers = node.transfers().clone();
        transfers.put_record(coordinate::started(&job));
        if args.wait {
            let hosts = NodeHosts {
                node,
                caller,
                progress: call.ctx.progress.clone(),
            };
            let cancel = transfers.cancel_token(&job.transfer_id, &call.ctx.cancel);
            let status = coordinate::run(transfers, &hosts, job, cancel).await;
            return Outcome::ok(&status);
        }
        let started = transfers.record(&job.transfer_id);
        let hosts = NodeHosts {
            node,
            caller,
            progress: None,
        };
        // The transfer outlives this call: it ends on its own (or by transfer_cancel), and
        // transfer_get follows it.
        let cancel = transfers.cancel_token(&job.transfer_id, &CancellationToken::new());
        crate::runtime::spawn(async move {
            coordinate::run(transfers, &hosts, job, cancel).await;
        });
        match started {
            Some(status) => Outcome::ok(&status),
            None => Outcome::failed("the transfer's record was lost"),
        }
    }
}

/// The hosts as this node reaches them: through its own request pipeline, which runs a step
/// here or forwards it to the peer it names, under the caller of the `send_file` (or the
/// `fleet_send`).
pub(crate) struct NodeHosts {
    node: Arc<Node>,
    caller: Caller,
    /// The `send_file` call's own progress sink, when it waits.
    progress: Option<ProgressFn>,
}

impl NodeHosts {
    pub(crate) fn new(node: Arc<Node>, caller: Caller) -> Self {
        NodeHosts {
            node,
            caller,
            progress: None,
        }
    }

    async fn step<O: Operation>(
        &self,
        request: Request,
        ctx: CallContext,
    ) -> Result<O::Output, String> {
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            caller: self.caller.clone(),
            request,
            on_behalf_of_model: false,
            window_override: None,
        };
        match self.node.handle(envelope, ctx).await {
            Outcome::Ok { result } => serde_json::from_value(result)
                .map_err(|e| format!("malformed answer to {}: {e}", O::NAME)),
            Outcome::Refused { reason } => Err(format!("refused: {reason}")),
            Outcome::Failed { error } => Err(error),
            Outcome::OutcomeUnknown { reason } => Err(format!("outcome unknown: {reason}")),
        }
    }

    /// `Some(host)` for a peer, `None` for this node.
    fn agent(&self, host: &str) -> Option<String> {
        (!self.node.is_local(host)).then(|| host.to_string())
    }
}

impl Hosts for NodeHosts {
    fn resolve(&self, host: &str) -> Result<String, String> {
        if self.node.is_local(host) {
            return Ok(self.node.agent_id().to_string());
        }
        let peers = self.node.peers().map(|p| p.list()).unwrap_or_default();
        if let Some(peer) = peers.iter().find(|p| p.agent_id == host) {
            return Ok(peer.agent_id.clone());
        }
        match peers
            .iter()
            .filter(|p| p.name == host)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [peer] => Ok(peer.agent_id.clone()),
            [] => Err(format!(
                "no connected host has agent id or name `{host}`; call list_agents"
            )),
            _ => Err(format!(
                "several hosts are named `{host}`; use the agent_id from list_agents"
            )),
        }
    }

    fn source(
        &self,
        host: &str,
        args: TransferSourceArgs,
    ) -> BoxFuture<'_, Result<TransferSourceResult, String>> {
        let request = TransferSource::request(TransferSourceArgs {
            agent_id: self.agent(host),
            ..args
        });
        Box::pin(self.step::<TransferSource>(request, CallContext::default()))
    }

    fn receive(
        &self,
        host: &str,
        args: TransferReceiveArgs,
        progress: HostProgress,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<TransferReceiveResult, String>> {
        let request = TransferReceive::request(TransferReceiveArgs {
            agent_id: self.agent(host),
            ..args
        });
        let outer = self.progress.clone();
        let sink: ProgressFn = Arc::new(move |bytes, total, message| {
            progress(bytes as u64, coordinate::progress_path(&message));
            if let Some(outer) = &outer {
                outer(bytes, total, message);
            }
        });
        let ctx = CallContext {
            cancel,
            progress: Some(sink),
        };
        Box::pin(self.step::<TransferReceive>(request, ctx))
    }
}
