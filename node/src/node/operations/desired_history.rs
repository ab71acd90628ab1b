//! `desired_history`: the generations the node accepted. Gate: none; it is metadata about the
//! node, answered in every mode.

use std::sync::Arc;

use remote_agents_ops::operation::DesiredHistory;
use remote_agents_ops::{AgentArgs, Outcome};

use super::{Call, Run, blocking, result};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for DesiredHistory {
    type Checked = ();

    fn check(_node: &Node, _mode: Mode, _args: AgentArgs) -> Result<(), Refusal> {
        Ok(())
    }

    async fn execute(node: Arc<Node>, _call: Call, (): ()) -> Outcome {
        blocking(move || result(node.desired.history())).await
    }
}
