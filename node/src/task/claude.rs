//! Claude Code: `claude -p --output-format stream-json --verbose`, the prompt on stdin. Its
//! stream (documented at code.claude.com "Run Claude Code programmatically") is one JSON object
//! a line: `system`/`init` with the `session_id`, `assistant` messages whose content holds
//! `text` and `tool_use` blocks, `user` messages carrying `tool_result` blocks, and one closing
//! `result` (`subtype` `success`, `error_max_turns`, `error_during_execution`, …) with the final
//! text, `num_turns`, `total_cost_usd` and `usage`.
//!
//! The host's mode becomes `--permission-mode` (plan → `plan`, edit → `acceptEdits`, bypass →
//! `bypassPermissions`); the host's deny lists and protected files become `--disallowedTools`
//! rules (`Bash(…)`, `Read(//…)`, `Edit(//…)`), which Claude Code enforces in every mode.

use remote_agents_ops::TaskEvent;
use serde_json::Value;

use super::events::text_of;
use super::{Launch, ProviderCommand};
use crate::policy::Mode;

pub(super) fn command(launch: &Launch) -> ProviderCommand {
    let mut argv: Vec<String> = vec![
        "claude".into(),
        "-p".into(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
        "--permission-mode".into(),
        permission_mode(launch.mode).into(),
    ];
    if let Some(session) = &launch.resume {
        argv.extend(["--resume".into(), session.clone()]);
    }
    if let Some(model) = &launch.model {
        argv.extend(["--model".into(), model.clone()]);
    }
    if let Some(turns) = launch.max_turns {
        argv.extend(["--max-turns".into(), turns.to_string()]);
    }
    if let Some(budget) = launch.budget_usd {
        argv.extend(["--max-budget-usd".into(), format!("{budget}")]);
    }
    // The list options take several values each: one value, comma-separated, keeps the next
    // option from being read as a tool.
    if !launch.allowed_tools.is_empty() {
        argv.push(format!("--allowedTools={}", launch.allowed_tools.join(",")));
    }
    let disallowed = disallowed_tools(launch);
    if !disallowed.is_empty() {
        argv.push(format!("--disallowedTools={}", disallowed.join(",")));
    }
    ProviderCommand {
        argv,
        env: Vec::new(),
        stdin: Some(launch.prompt.clone()),
    }
}

fn permission_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Plan => "plan",
        Mode::Edit => "acceptEdits",
        // `disabled` never gets here (the gate refuses it); the strictest mode if it did.
        Mode::Bypass => "bypassPermissions",
        Mode::Disabled => "plan",
    }
}

/// The caller's disallowed tools, then the host's: its command deny list as `Bash(…)` rules
/// (a glob's trailing `*` as Claude's prefix form `:*`), and its denied and protected paths as
/// `Read` and `Edit` rules on absolute paths (Claude's `//` prefix).
pub(super) fn disallowed_tools(launch: &Launch) -> Vec<String> {
    let mut rules = launch.disallowed_tools.clone();
    for glob in &launch.deny_commands {
        let rule = match glob.strip_suffix('*') {
            Some(prefix) => format!("Bash({}:*)", prefix.trim_end()),
            None => format!("Bash({glob})"),
        };
        rules.push(rule);
    }
    for path in &launch.deny_paths {
        let absolute = format!("/{}", path.trim_start_matches('/'));
        rules.push(format!("Read(/{absolute})"));
        rules.push(format!("Edit(/{absolute})"));
    }
    rules
}

/// What the parser remembers between lines: Claude Code writes one `assistant` line per
/// content block, all with the same message id, and a turn is one message.
#[derive(Debug, Default)]
pub(super) struct Parser {
    message_id: Option<String>,
}

impl Parser {
    /// One line of the stream as events.
    pub(super) fn parse(&mut self, line: &Value) -> Vec<TaskEvent> {
        let mut events = Vec::new();
        if line.get("type").and_then(Value::as_str) == Some("assistant") {
            let id = line
                .get("message")
                .and_then(|m| m.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if id.is_none() || id != self.message_id {
                events.push(TaskEvent::Turn);
                if let Some(usage) = line.get("message").and_then(|m| m.get("usage")) {
                    events.push(TaskEvent::Usage {
                        input_tokens: usage.get("input_tokens").and_then(Value::as_u64),
                        output_tokens: usage.get("output_tokens").and_then(Value::as_u64),
                        cost_usd: None,
                    });
                }
                self.message_id = id;
            }
        }
        events.extend(parse_line(line));
        events
    }
}

fn parse_line(line: &Value) -> Vec<TaskEvent> {
    let mut events = Vec::new();
    match line.get("type").and_then(Value::as_str) {
        Some("system") => {
            if line.get("subtype").and_then(Value::as_str) == Some("init")
                && let Some(session) = line.get("session_id").and_then(Value::as_str)
            {
                events.push(TaskEvent::Session {
                    session_id: session.to_string(),
                });
            }
        }
        Some("assistant") => {
            let message = line.get("message");
            for block in content(message) {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            events.push(TaskEvent::AssistantText {
                                text: text.to_string(),
                            });
                        }
                    }
                    Some("tool_use") => events.push(TaskEvent::ToolUse {
                        id: str_field(block, "id"),
                        name: str_field(block, "name"),
                        input: block.get("input").cloned().unwrap_or(Value::Null),
                    }),
                    _ => {}
                }
            }
        }
        Some("user") => {
            for block in content(line.get("message")) {
                if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                    events.push(TaskEvent::ToolResult {
                        id: str_field(block, "tool_use_id"),
                        output: block.get("content").map(text_of).unwrap_or_default(),
                        is_error: block
                            .get("is_error")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    });
                }
            }
        }
        Some("result") => {
            let subtype = line
                .get("subtype")
                .and_then(Value::as_str)
                .unwrap_or("success");
            let is_error = line
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let turns = line
                .get("num_turns")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok());
            let cost = line.get("total_cost_usd").and_then(Value::as_f64);
            if let Some(session) = line.get("session_id").and_then(Value::as_str) {
                events.push(TaskEvent::Session {
                    session_id: session.to_string(),
                });
            }
            let text = line.get("result").and_then(Value::as_str);
            if subtype == "success" && !is_error {
                events.push(TaskEvent::Result {
                    text: text.unwrap_or("").to_string(),
                    turns,
                    cost_usd: cost,
                });
            } else {
                let message = match (text, line.get("errors")) {
                    (Some(text), _) if !text.is_empty() => text.to_string(),
                    (_, Some(errors)) => text_of(errors),
                    _ => format!("claude ended with {subtype}"),
                };
                events.push(TaskEvent::Usage {
                    input_tokens: None,
                    output_tokens: None,
                    cost_usd: cost,
                });
                // A `success` result flagged `is_error` (e.g. not logged in) is an error.
                let kind = if subtype == "success" {
                    "error"
                } else {
                    subtype
                };
                events.push(TaskEvent::Error {
                    kind: kind.to_string(),
                    message,
                });
            }
        }
        _ => {}
    }
    events
}

fn content(message: Option<&Value>) -> impl Iterator<Item = &Value> {
    message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}
