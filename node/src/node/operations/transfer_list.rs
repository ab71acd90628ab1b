//! `transfer_list`: the transfers this node coordinates, newest first.

use std::sync::Arc;

use remote_agents_ops::operation::TransferList;
use remote_agents_ops::{Outcome, TransferListArgs, TransferListResult};

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for TransferList {
    type Checked = ();

    fn check(_node: &Node, _mode: Mode, _args: TransferListArgs) -> Result<(), Refusal> {
        Ok(())
    }

    async fn execute(node: Arc<Node>, _call: Call, _checked: ()) -> Outcome {
        Outcome::ok(&TransferListResult {
            transfers: node.transfers().records(),
        })
    }
}
