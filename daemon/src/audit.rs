//! The audit log's record and how it is printed: who asked what, the policy decision and the
//! result. Records are written by the journal in the same commit that finishes a request.

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

/// Formats records as an aligned text table.
pub fn table(records: &[AuditRecord]) -> String {
    let mut out = String::from(
        "SEQ  TIME(ms)       CALLER          OP           RESULT           DECISION / SUMMARY\n",
    );
    for r in records {
        out.push_str(&format!(
            "{:<4} {:<14} {:<15} {:<12} {:<16} {} — {}{}\n",
            r.seq,
            r.at_ms,
            truncate(&r.caller, 15),
            r.op,
            r.result,
            r.decision,
            r.summary,
            r.detail
                .as_deref()
                .map(|d| format!(" ({})", truncate(d, 80)))
                .unwrap_or_default()
        ));
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_caller_decision_and_result() {
        let text = table(&[AuditRecord {
            seq: 1,
            at_ms: 5,
            request_id: "r".into(),
            caller: "mcp:local".into(),
            op: "write_file".into(),
            summary: "write_file /etc/x".into(),
            decision: "refused: plan mode".into(),
            result: "refused".into(),
            detail: None,
        }]);
        assert!(text.contains("mcp:local"));
        assert!(text.contains("refused: plan mode"));
        assert!(text.contains("write_file /etc/x"));
    }
}
