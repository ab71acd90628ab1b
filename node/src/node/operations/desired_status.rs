//! `desired_status`: the node's observed desired-state status. Gate: none; it is metadata about
//! the node, answered in every mode.

use std::sync::Arc;

use remote_agents_ops::operation::DesiredStatus;
use remote_agents_ops::{AgentArgs, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for DesiredStatus {
    type Checked = ();

    fn check(_node: &Node, _mode: Mode, _args: AgentArgs) -> Result<(), Refusal> {
        Ok(())
    }

    async fn execute(node: Arc<Node>, _call: Call, (): ()) -> Outcome {
        blocking(move || Outcome::ok(&node.status())).await
    }
}
