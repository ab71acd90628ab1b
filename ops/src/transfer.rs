//! Host→host file transfer as values: `send_file` (a file from one host's path to another's,
//! coordinated by the node the caller talks to), `transfer_get` and `transfer_list` (the
//! coordinator's record of each transfer), and the two steps the coordinator asks of the hosts,
//! each authorized there against the caller: `transfer_source` (the source host opens the file
//! through its gate and hands out a ticket that only the destination may pull with) and
//! `transfer_receive` (the destination host writes a temp file through its gate, pulls the bytes
//! with that ticket, verifies SHA-256 end to end, fsyncs and renames).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

/// Which byte path carries a transfer's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferPath {
    /// A direct connection between the two hosts (hole-punched UDP).
    Direct,
    /// Sealed chunks through the relay.
    Relay,
    /// Both ends are the same host: no network.
    Local,
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    Running,
    Done,
    Failed,
    Cancelled,
    /// The coordinating node stopped while it ran (read back after its restart); sending the
    /// file again resumes from what the destination verified.
    Interrupted,
}

impl TransferState {
    pub fn is_finished(self) -> bool {
        self != TransferState::Running
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendFileArgs {
    /// The node that coordinates the transfer and keeps its record (for transfer_get); omit it:
    /// a transfer is coordinated by the caller's own node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The source host (agent id or name); default this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_agent_id: Option<String>,
    /// The file to send, on the source host.
    pub from_path: String,
    /// The destination host (agent id or name); default this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_id: Option<String>,
    /// Where the file lands on the destination host (its folder must exist).
    pub to_path: String,
    /// Wait for the transfer to finish and answer with its final record (progress is reported
    /// meanwhile); default false: answer at once with the transfer id.
    #[serde(default)]
    pub wait: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferGetArgs {
    /// The node that coordinates the transfer; default this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub transfer_id: String,
    /// Wait up to this many seconds for the transfer to finish before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferCancelArgs {
    /// The node that coordinates the transfer; default this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub transfer_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferListArgs {
    /// The node that coordinates the transfers; default this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// One transfer as its coordinator records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransferStatus {
    pub transfer_id: String,
    pub state: TransferState,
    pub from_agent_id: String,
    pub from_path: String,
    pub to_agent_id: String,
    pub to_path: String,
    /// The source's size in bytes, once the source host opened it.
    pub size: Option<u64>,
    pub bytes_done: u64,
    /// Bytes per second over the transfer so far.
    pub rate_bytes_per_sec: f64,
    /// The byte path in use (or last used): `direct` or `relay` (`local` within one host).
    pub path: Option<TransferPath>,
    /// SHA-256 of the content, hex, once verified at both ends.
    pub sha256: Option<String>,
    /// Bytes that were already verified at the destination from an earlier, interrupted try.
    pub resumed_from: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransferListResult {
    /// Newest first.
    pub transfers: Vec<TransferStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferSourceArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The file to send.
    pub path: String,
    /// The agent id of the only host allowed to pull the file with the ticket.
    pub to_agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransferSourceResult {
    /// The source host's agent id (the destination pulls from it).
    pub agent_id: String,
    /// The file as the gate resolved it.
    pub path: String,
    pub size: u64,
    pub modified_ms: Option<u64>,
    /// Secret handle of the open file; valid for the destination named only.
    pub ticket: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferReceiveArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Where the file lands (its folder must exist).
    pub path: String,
    /// The source host's agent id, which holds the ticket.
    pub from_agent_id: String,
    /// The source's path, for messages and the resume key.
    pub from_path: String,
    pub ticket: String,
    pub size: u64,
    pub modified_ms: Option<u64>,
    /// Hosts this destination serves the file to while it receives it (a `fleet_send` swarm):
    /// each pulls the verified prefix with its own ticket, bound to its agent id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serve_to: Vec<ServeTo>,
    /// The host and path the file first came from, when `from_agent_id` only forwards it (a
    /// swarm): the resume key of the temp file, so a retry from another host resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// One next host of a swarm: who may pull, with which ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeTo {
    pub agent_id: String,
    /// 64 hex digits the coordinator drew at random.
    pub ticket: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransferReceiveResult {
    /// The file as the gate resolved it.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// The byte path that carried the last chunk.
    pub transfer_path: TransferPath,
    /// Bytes verified by an earlier, interrupted try and not sent again.
    pub resumed_from: u64,
}

impl Summary for SendFileArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op} {}:{} -> {}:{}",
            self.from_agent_id.as_deref().unwrap_or("local"),
            self.from_path,
            self.to_agent_id.as_deref().unwrap_or("local"),
            self.to_path
        )
    }
}

impl Summary for TransferGetArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.transfer_id)
    }
}

impl Summary for TransferCancelArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.transfer_id)
    }
}

impl Summary for TransferListArgs {
    fn summary(&self, op: &str) -> String {
        op.to_string()
    }
}

impl Summary for TransferSourceArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {} to {}", self.path, self.to_agent_id)
    }
}

impl Summary for TransferReceiveArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op} {} from {}:{} ({} bytes)",
            self.path, self.from_agent_id, self.from_path, self.size
        )
    }
}
