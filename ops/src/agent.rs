//! The node's own operations: its info and facts, its mode, the agents it sees.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use remote_agents_spec::Mode;

use crate::operation::Summary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetModeArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub mode: Mode,
    /// Seconds until the override lapses and the configured mode applies again; default 3600,
    /// at most 31622400 (366 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Why; recorded in the audit log and reported with the drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A live mode override (imperative, with an expiry; reported as drift).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModeOverride {
    pub mode: Mode,
    pub set_by: String,
    pub reason: Option<String>,
    pub set_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SetModeResult {
    pub configured_mode: Mode,
    pub effective_mode: Mode,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InfoResult {
    pub agent_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub version: String,
    pub facts: crate::Facts,
    pub configured_mode: Mode,
    pub effective_mode: Mode,
    pub mode_override: Option<ModeOverride>,
    /// Differences between configured and live state, in words.
    pub drift: Vec<String>,
    pub accepts_commands: bool,
    pub roots: Vec<String>,
    pub relay: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSummary {
    pub agent_id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// Platform facts as advertised (see get_info for typed values).
    pub facts: BTreeMap<String, String>,
    pub mode: Mode,
    pub accepts_commands: bool,
    /// True for the node answering this request.
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListAgentsResult {
    pub agents: Vec<AgentSummary>,
    /// Why the list holds only this node, when it does.
    pub note: Option<String>,
}

impl Summary for AgentArgs {
    fn summary(&self, op: &str) -> String {
        op.to_string()
    }
}

impl Summary for SetModeArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.mode)
    }
}
