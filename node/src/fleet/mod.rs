//! The fleet as one computer: per-host result records, the fan-out engine (concurrency cap,
//! per-host timeout, global deadline, rolling batches with a failure threshold) and folding of
//! identical results. The engine is independent of transport: it calls hosts through
//! [`HostCaller`], which the node implements over the secure channel.

pub mod connection;
pub mod fanout;
pub mod fold;
pub mod inventory;
pub mod jobs;
pub mod remote;
pub mod send;
pub mod tools;

use serde::{Deserialize, Serialize};

pub use fanout::{Amount, FanoutOptions, FanoutReport, HostCaller, Target, run};
pub use fold::{Folded, OutputGroup, fold};

/// What happened on one host (the type lives with the other reply values in `ops`, so the RPC
/// client can map every way a call ends to it).
pub use remote_agents_ops::HostStatus;

/// One host's result of a fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostRecord {
    pub host: String,
    /// The host's agent id, when it is connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub status: HostStatus,
    /// Exit code of the command, when one ran to completion.
    pub exit: Option<i32>,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    /// Why the host is not `ok` when there is no command output to say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A connected host that no declaration of the fleet's spec covers (see
    /// [`inventory::Inventory`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undeclared: bool,
    /// What tells this host's part apart beyond its output, not compared when folding: a
    /// task's id, state, turns, cost and session id, so identical answers still fold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HostRecord {
    pub fn new(host: impl Into<String>, status: HostStatus) -> Self {
        HostRecord {
            host: host.into(),
            agent_id: None,
            status,
            exit: None,
            duration_ms: 0,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            error: None,
            undeclared: false,
            detail: None,
        }
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}
