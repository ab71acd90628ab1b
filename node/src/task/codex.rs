//! Codex CLI: `codex exec --json`, the prompt on stdin (`-`); a resumed session is
//! `codex exec … resume SESSION_ID -`. Its JSONL stream: `thread.started` with the
//! `thread_id` (the session id `resume` takes), `turn.started`, `item.started` /
//! `item.completed` whose `item.type` is `agent_message`, `reasoning`, `command_execution`,
//! `file_change`, `mcp_tool_call`, `web_search` or `todo_list`, `turn.completed` with `usage`,
//! and `turn.failed` / `error` with a message. Codex writes no closing result: the final
//! answer is the last `agent_message`.
//!
//! The host's mode becomes Codex's sandbox (plan → `--sandbox read-only`, edit →
//! `--sandbox workspace-write`: writes only beneath the working directory, bypass →
//! `--dangerously-bypass-approvals-and-sandbox`); `codex exec` never asks for approval. Codex has
//! no per-tool or per-path deny list, so the host's deny lists are not passed on (README).

use remote_agents_ops::TaskEvent;
use serde_json::Value;

use super::events::text_of;
use super::{Launch, ProviderCommand};
use crate::policy::Mode;

pub(super) fn command(launch: &Launch) -> ProviderCommand {
    let mut argv: Vec<String> = vec!["codex".into(), "exec".into()];
    // `resume` takes no sandbox or directory of its own: they are the parent command's.
    match launch.mode {
        Mode::Bypass => argv.push("--dangerously-bypass-approvals-and-sandbox".into()),
        Mode::Edit => argv.extend(["--sandbox".into(), "workspace-write".into()]),
        Mode::Plan | Mode::Disabled => argv.extend(["--sandbox".into(), "read-only".into()]),
    }
    argv.extend(["--cd".into(), launch.cwd.display().to_string()]);
    if let Some(session) = &launch.resume {
        argv.extend(["resume".into(), session.clone()]);
    }
    argv.extend(["--json".into(), "--skip-git-repo-check".into()]);
    if let Some(model) = &launch.model {
        argv.extend(["--model".into(), model.clone()]);
    }
    argv.push("-".into());
    ProviderCommand {
        argv,
        env: Vec::new(),
        stdin: Some(launch.prompt.clone()),
    }
}

/// Codex's lines need no memory of earlier ones.
#[derive(Debug, Default)]
pub(super) struct Parser;

impl Parser {
    pub(super) fn parse(&mut self, line: &Value) -> Vec<TaskEvent> {
        let mut events = Vec::new();
        match line.get("type").and_then(Value::as_str) {
            Some("thread.started") => {
                if let Some(id) = line.get("thread_id").and_then(Value::as_str) {
                    events.push(TaskEvent::Session {
                        session_id: id.to_string(),
                    });
                }
            }
            Some("item.completed") => {
                if let Some(item) = line.get("item") {
                    item_events(item, &mut events);
                }
            }
            Some("turn.completed") => {
                if let Some(usage) = line.get("usage") {
                    events.push(TaskEvent::Usage {
                        input_tokens: usage.get("input_tokens").and_then(Value::as_u64),
                        output_tokens: usage.get("output_tokens").and_then(Value::as_u64),
                        cost_usd: None,
                    });
                }
            }
            Some("turn.failed") => events.push(TaskEvent::Error {
                kind: "turn.failed".into(),
                message: line
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .map(text_of)
                    .unwrap_or_else(|| "the turn failed".into()),
            }),
            Some("error") => events.push(TaskEvent::Error {
                kind: "error".into(),
                message: line
                    .get("message")
                    .map(text_of)
                    .unwrap_or_else(|| "codex reported an error".into()),
            }),
            _ => {}
        }
        events
    }
}

fn item_events(item: &Value, events: &mut Vec<TaskEvent>) {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "agent_message" => {
            events.push(TaskEvent::Turn);
            events.push(TaskEvent::AssistantText {
                text: item.get("text").map(text_of).unwrap_or_default(),
            });
        }
        "command_execution" => {
            events.push(TaskEvent::Turn);
            events.push(TaskEvent::ToolUse {
                id: id.clone(),
                name: "command_execution".into(),
                input: serde_json::json!({ "command": item.get("command").cloned() }),
            });
            let exit = item.get("exit_code").and_then(Value::as_i64);
            events.push(TaskEvent::ToolResult {
                id,
                output: item
                    .get("aggregated_output")
                    .map(text_of)
                    .unwrap_or_default(),
                is_error: exit != Some(0)
                    || item.get("status").and_then(Value::as_str) == Some("failed"),
            });
        }
        "file_change" | "mcp_tool_call" | "web_search" => {
            events.push(TaskEvent::Turn);
            let name = match kind {
                "mcp_tool_call" => format!(
                    "{}.{}",
                    item.get("server").and_then(Value::as_str).unwrap_or(""),
                    item.get("tool").and_then(Value::as_str).unwrap_or("")
                ),
                other => other.to_string(),
            };
            let input = match kind {
                "file_change" => item.get("changes").cloned().unwrap_or(Value::Null),
                "web_search" => serde_json::json!({ "query": item.get("query").cloned() }),
                _ => item.get("arguments").cloned().unwrap_or(Value::Null),
            };
            events.push(TaskEvent::ToolUse {
                id: id.clone(),
                name,
                input,
            });
            let failed = item.get("status").and_then(Value::as_str) == Some("failed")
                || item.get("error").is_some_and(|e| !e.is_null());
            events.push(TaskEvent::ToolResult {
                id,
                output: item
                    .get("result")
                    .or_else(|| item.get("error"))
                    .or_else(|| item.get("status"))
                    .map(text_of)
                    .unwrap_or_default(),
                is_error: failed,
            });
        }
        // An `error` item is a warning Codex carries on past (a turn that fails ends with
        // `turn.failed`).
        _ => {}
    }
}
