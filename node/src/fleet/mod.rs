//! The fleet as one computer: per-host result records, the fan-out engine (concurrency cap,
//! per-host timeout, global deadline, rolling batches with a failure threshold) and folding of
//! identical results. The engine is independent of transport: it calls hosts through
//! [`HostCaller`], which the node implements over the secure channel.

pub mod connection;
pub mod fanout;
pub mod fold;
pub mod jobs;
pub mod remote;
pub mod tools;

use serde::{Deserialize, Serialize};

pub use fanout::{Amount, FanoutOptions, FanoutReport, HostCaller, Target, run};
pub use fold::{Folded, OutputGroup, fold};

/// What happened on one host. Every matched host gets exactly one of these; none is dropped.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// The operation ran and succeeded (exit code 0 for commands).
    Ok,
    /// The operation ran and failed (non-zero exit, or an error from the executor).
    Failed,
    /// The per-host timeout or the global deadline passed before an answer.
    Timeout,
    /// The host matched the target but is not connected, or the request could not be delivered.
    Unreachable,
    /// The host's policy refused the operation.
    Denied,
    /// The request was delivered but the connection was lost before an answer: it may or may
    /// not have run. Never retried automatically.
    OutcomeUnknown,
    /// Not attempted because a rolling run halted at its failure threshold.
    Skipped,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Ok => "ok",
            HostStatus::Failed => "failed",
            HostStatus::Timeout => "timeout",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Denied => "denied",
            HostStatus::OutcomeUnknown => "outcome_unknown",
            HostStatus::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        }
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}
