//! How a call ended on one host, as a fan-out record reports it: every way a request can end
//! (answered, refused, lost, timed out, never delivered) maps to one of these.

use serde::{Deserialize, Serialize};

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
