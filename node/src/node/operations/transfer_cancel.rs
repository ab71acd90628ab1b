//! `transfer_cancel`: stops a running transfer this node coordinates. The destination stops
//! pulling and removes its partial file, and closes its ticket at the source, before the record
//! reads `cancelled`. Only this node's own callers may, as only they may start one.

use std::sync::Arc;

use remote_agents_ops::operation::TransferCancel;
use remote_agents_ops::{Caller, Outcome, TransferCancelArgs, TransferState};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

/// How long the answer waits for the transfer's two ends to stop.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Run for TransferCancel {
    type Checked = String;

    fn check(_node: &Node, _mode: Mode, args: TransferCancelArgs) -> Result<String, Refusal> {
        Ok(args.transfer_id)
    }

    async fn execute(node: Arc<Node>, call: Call, transfer_id: String) -> Outcome {
        let caller = Caller::from(call.caller.as_str());
        if !matches!(caller, Caller::McpLocal | Caller::Cli) {
            return Outcome::Refused {
                reason: format!(
                    "transfer_cancel acts on the caller's own node's transfers (this one was \
                     asked by `{caller}`)"
                ),
            };
        }
        let transfers = node.transfers();
        let Some(status) = transfers.record(&transfer_id) else {
            return Outcome::failed(format!(
                "no transfer `{transfer_id}` on this node; transfer_list shows them"
            ));
        };
        if status.state != TransferState::Running {
            return Outcome::failed(format!(
                "transfer `{transfer_id}` already ended ({})",
                serde_json::to_value(status.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        }
        transfers.cancel(&transfer_id);
        match transfers.wait_record(&transfer_id, STOP_WAIT).await {
            Some(status) => Outcome::ok(&status),
            None => Outcome::failed("the transfer's record was lost"),
        }
    }
}
