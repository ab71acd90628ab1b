//! `get_info`: the node's identity, facts, configured and effective mode, drift and roots.
//! Gate: the mode allows reading.

use std::sync::Arc;

use remote_agents_ops::operation::GetInfo;
use remote_agents_ops::{AgentArgs, InfoResult, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

impl Run for GetInfo {
    type Checked = ();

    fn check(_node: &Node, mode: Mode, _args: AgentArgs) -> Result<(), Refusal> {
        Policy::check_mode(mode, Access::Read)
    }

    async fn execute(node: Arc<Node>, _call: Call, (): ()) -> Outcome {
        blocking(move || Outcome::ok(&node.info())).await
    }
}

impl Node {
    /// What `get_info` reports.
    pub fn info(&self) -> InfoResult {
        let mode_override = self.mode_override();
        let mut drift = Vec::new();
        if let Some(o) = &mode_override {
            drift.push(format!(
                "mode overridden to {} (configured {}) until {} ms since epoch{}",
                o.mode,
                self.configured_mode(),
                o.expires_at_ms,
                o.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        InfoResult {
            agent_id: self.agent_id.clone(),
            name: self.settings.name.value.clone(),
            tags: self.tags(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            facts: self.facts.clone(),
            configured_mode: self.configured_mode(),
            effective_mode: self.effective_mode(),
            mode_override,
            drift,
            accepts_commands: !self.settings.no_agent.value,
            roots: self
                .policy()
                .roots()
                .iter()
                .map(|r| r.display().to_string())
                .collect(),
            relay: self.settings.relay.value.clone(),
        }
    }
}
