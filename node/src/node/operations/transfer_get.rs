//! `transfer_get`: one transfer this node coordinates — state, bytes done, rate, the path in use
//! (`direct|relay`), SHA-256, error — optionally waiting for it to end.

use std::sync::Arc;

use remote_agents_ops::operation::TransferGet;
use remote_agents_ops::{Outcome, TransferGetArgs, timeout_from_secs};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

/// The transfer asked for and how long to wait for its end.
pub(in crate::node) struct Get {
    transfer_id: String,
    wait: std::time::Duration,
}

impl Run for TransferGet {
    type Checked = Get;

    fn check(_node: &Node, _mode: Mode, a: TransferGetArgs) -> Result<Get, Refusal> {
        let wait = match a.wait_secs {
            Some(secs) => {
                timeout_from_secs("wait_secs", secs).map_err(|reason| Refusal { reason })?
            }
            None => std::time::Duration::ZERO,
        };
        Ok(Get {
            transfer_id: a.transfer_id,
            wait,
        })
    }

    async fn execute(node: Arc<Node>, call: Call, get: Get) -> Outcome {
        let transfers = node.transfers();
        let waited = tokio::select! {
            status = transfers.wait_record(&get.transfer_id, get.wait) => status,
            _ = call.ctx.cancel.cancelled() => transfers.record(&get.transfer_id),
        };
        match waited {
            Some(status) => Outcome::ok(&status),
            None => Outcome::failed(format!(
                "no transfer `{}` on this node (transfers are kept in memory by the node that \
                 coordinated them, until it restarts); transfer_list shows them",
                get.transfer_id
            )),
        }
    }
}
