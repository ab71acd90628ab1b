//! The audit log's record: who asked what, the policy decision and the result. Records are written by the journal in the same commit that finishes a request.

use serde::{Deserialize, Serialize};

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    /// Position in the log, assigned by the store.
    pub seq: u64,
    pub at_ms: u64,
    pub request_id: String,
    /// Who asked: `mcp:local`, a peer id, or `cli`.
    pub caller: String,
    pub op: String,
    /// What was asked, without file contents or stdin.
    pub summary: String,
    /// `allowed (mode edit)`, `refused: <reason>`, `duplicate`, `recovered after restart`.
    pub decision: String,
    /// `ok`, `failed`, `refused`, `outcome_unknown`.
    pub result: String,
    /// Error text or a short result note.
    pub detail: Option<String>,
}
