//! `list_agents`: this node and every peer it sees through the relay. Gate: the mode allows
//! reading.

use std::sync::Arc;

use remote_agents_ops::operation::ListAgents;
use remote_agents_ops::{AgentArgs, AgentSummary, ListAgentsResult, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

impl Run for ListAgents {
    type Checked = ();

    fn check(_node: &Node, mode: Mode, _args: AgentArgs) -> Result<(), Refusal> {
        Policy::check_mode(mode, Access::Read)
    }

    async fn execute(node: Arc<Node>, _call: Call, (): ()) -> Outcome {
        blocking(move || Outcome::ok(&node.list_agents())).await
    }
}

impl Node {
    /// This node plus every known peer.
    pub fn list_agents(&self) -> ListAgentsResult {
        let mut agents = vec![AgentSummary {
            agent_id: self.agent_id.clone(),
            name: self.settings.name.value.clone(),
            tags: self.tags(),
            facts: self.facts.to_map(),
            mode: self.effective_mode(),
            accepts_commands: !self.settings.no_agent.value,
            local: true,
        }];
        let note = match self.peers() {
            Some(peers) => {
                agents.extend(peers.list());
                None
            }
            None => Some("local-only: no relay configured, so no peers are known".to_string()),
        };
        ListAgentsResult { agents, note }
    }
}
