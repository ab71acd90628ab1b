//! `remote-agents audit`: the node's audit log as a table or JSON lines, read beside the running
//! node (or a stopped one).

use remote_agents_node::audit::AuditRecord;
use remote_agents_node::config::Settings;
use remote_agents_node::journal::{Store, StoreError};

use crate::output::Output;

/// The audit log as text or JSON lines, read beside the running node (or a stopped one).
/// `-o json` (and `--json`) prints JSON lines, one record a line: the log is a stream that tools
/// such as `jq` read a record at a time.
pub fn audit_report(settings: &Settings, limit: usize, output: Output) -> anyhow::Result<String> {
    let dir = &settings.data_dir.value;
    if !dir.join("store.redb").exists() {
        return Err(StoreError::Missing(dir.join("store.redb").display().to_string()).into());
    }
    let records = match Store::open(dir) {
        // The node is not running: opening the store recovers what a crash interrupted (as
        // the node would on start), so those requests read `outcome_unknown` here too.
        Ok(store) => store.audit(limit)?,
        // The node runs and holds the store: read beside it.
        Err(StoreError::Locked(_)) => Store::read_audit(dir, limit)?,
        Err(other) => return Err(other.into()),
    };
    match output {
        Output::Json => {
            let mut out = String::new();
            for r in &records {
                out.push_str(&serde_json::to_string(r)?);
                out.push('\n');
            }
            Ok(out)
        }
        Output::Yaml => Ok(output.data(&records)?.unwrap_or_default()),
        Output::Text => Ok(table(&records)),
    }
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
