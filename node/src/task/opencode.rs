//! opencode: `opencode run --format json --dir CWD --print-logs --log-level ERROR [--session ID]
//! [--model provider/model] [--agent plan] -- PROMPT`. Its JSONL stream: every line has `type`, `timestamp` and
//! `sessionID` (the session `--session` continues); `step_start`, `text` (`part.text`),
//! `tool_use` (`part.tool`, `part.callID`, `part.state` with `status`, `input`, `output` or
//! `error`), `step_finish` (`part.reason`, `part.cost`, `part.tokens`) and `error`
//! (`error.name`, `error.data.message`). It writes no closing result: the final answer is the
//! text of the last step.
//!
//! The host's mode becomes opencode's agent and permissions (plan → the read-only `plan` agent
//! with `edit` and `bash` denied, edit → `edit` allowed and `bash` allowed but for the host's
//! command deny list, bypass → `--auto`), passed as `OPENCODE_CONFIG_CONTENT`, which opencode
//! merges over its own config. opencode has no per-path deny list.

use remote_agents_ops::TaskEvent;
use serde_json::{Value, json};

use super::events::text_of;
use super::{Launch, ProviderCommand};
use crate::policy::Mode;

pub(super) fn command(launch: &Launch) -> ProviderCommand {
    let mut argv: Vec<String> = vec![
        "opencode".into(),
        "run".into(),
        "--format".into(),
        "json".into(),
        "--dir".into(),
        launch.cwd.display().to_string(),
        // Its errors (a provider it cannot reach, a model it does not know) go to stderr
        // only as logs: the node keeps their tail for the task's error.
        "--print-logs".into(),
        "--log-level".into(),
        "ERROR".into(),
    ];
    if let Some(session) = &launch.resume {
        argv.extend(["--session".into(), session.clone()]);
    }
    if let Some(model) = &launch.model {
        argv.extend(["--model".into(), model.clone()]);
    }
    match launch.mode {
        Mode::Plan | Mode::Disabled => argv.extend(["--agent".into(), "plan".into()]),
        Mode::Edit => {}
        Mode::Bypass => argv.push("--auto".into()),
    }
    argv.push("--".into());
    argv.push(launch.prompt.clone());
    ProviderCommand {
        argv,
        env: vec![(
            "OPENCODE_CONFIG_CONTENT".into(),
            permissions(launch).to_string(),
        )],
        stdin: None,
    }
}

/// opencode's `permission` config for the host's mode and command deny list.
pub(super) fn permissions(launch: &Launch) -> Value {
    let permission = match launch.mode {
        Mode::Plan | Mode::Disabled => {
            json!({ "edit": "deny", "bash": "deny", "webfetch": "deny" })
        }
        Mode::Edit | Mode::Bypass => {
            let mut bash = serde_json::Map::new();
            bash.insert("*".into(), json!("allow"));
            for glob in &launch.deny_commands {
                bash.insert(glob.clone(), json!("deny"));
            }
            json!({ "edit": "allow", "bash": bash })
        }
    };
    json!({ "permission": permission })
}

/// opencode's lines need no memory of earlier ones.
#[derive(Debug, Default)]
pub(super) struct Parser;

impl Parser {
    pub(super) fn parse(&mut self, line: &Value) -> Vec<TaskEvent> {
        let mut events = Vec::new();
        if let Some(session) = line.get("sessionID").and_then(Value::as_str) {
            events.push(TaskEvent::Session {
                session_id: session.to_string(),
            });
        }
        let part = line.get("part");
        let field = |key: &str| part.and_then(|p| p.get(key));
        match line.get("type").and_then(Value::as_str) {
            Some("step_start") => events.push(TaskEvent::Turn),
            Some("text") => {
                let text = field("text").map(text_of).unwrap_or_default();
                if !text.is_empty() {
                    events.push(TaskEvent::AssistantText { text });
                }
            }
            Some("tool_use") => {
                let id = field("callID").map(text_of).unwrap_or_default();
                let state = field("state");
                events.push(TaskEvent::ToolUse {
                    id: id.clone(),
                    name: field("tool").map(text_of).unwrap_or_default(),
                    input: state
                        .and_then(|s| s.get("input"))
                        .cloned()
                        .unwrap_or(Value::Null),
                });
                let status = state.and_then(|s| s.get("status")).and_then(Value::as_str);
                if matches!(status, Some("completed" | "error")) {
                    events.push(TaskEvent::ToolResult {
                        id,
                        output: state
                            .and_then(|s| s.get("output").or_else(|| s.get("error")))
                            .map(text_of)
                            .unwrap_or_default(),
                        is_error: status == Some("error"),
                    });
                }
            }
            Some("step_finish") => {
                let tokens = field("tokens");
                events.push(TaskEvent::Usage {
                    input_tokens: tokens.and_then(|t| t.get("input")).and_then(Value::as_u64),
                    output_tokens: tokens.and_then(|t| t.get("output")).and_then(Value::as_u64),
                    cost_usd: field("cost").and_then(Value::as_f64),
                });
            }
            Some("error") => {
                let error = line.get("error");
                let message = error
                    .and_then(|e| e.get("data"))
                    .and_then(|d| d.get("message"))
                    .or_else(|| error.and_then(|e| e.get("message")))
                    .or(error)
                    .map(text_of)
                    .unwrap_or_else(|| "opencode reported an error".into());
                events.push(TaskEvent::Error {
                    kind: error
                        .and_then(|e| e.get("name"))
                        .map(text_of)
                        .unwrap_or_else(|| "error".into()),
                    message,
                });
            }
            _ => {}
        }
        events
    }
}
