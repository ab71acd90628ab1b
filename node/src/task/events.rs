//! The one event model's fold: every provider's events (`ops::TaskEvent`) added up into the
//! task's record — session id, turns, usage and cost, the last text and the final answer or
//! error — and the transcript the host keeps. How a finished process reads as a task's end
//! state is decided here too, the same way for every provider.

use remote_agents_ops::{TaskEvent, TaskState, TaskStatus};
use serde_json::Value;

/// Text in a provider's value: a string as is, content blocks (`[{"type":"text","text":…}]`) as
/// their texts, anything else as compact JSON.
pub(super) fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.get("text").and_then(Value::as_str) {
                Some(text) => text.to_string(),
                None => text_of(item),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// A running task's record and transcript as events arrive.
#[derive(Debug)]
pub(crate) struct Fold {
    pub status: TaskStatus,
    pub transcript: Vec<TaskEvent>,
    /// The last thing the assistant said, the answer of providers with no closing result.
    last_text: Option<String>,
    /// The provider's final answer, once reported.
    result: Option<String>,
    /// The last error the provider reported since its last text.
    error: Option<String>,
    /// Cost reported as the run's total (Claude Code's closing result) rather than per step.
    total_cost: Option<f64>,
}

/// Why the node stopped a provider before it ended by itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    Cancelled,
    TimedOut(std::time::Duration),
    TooManyTurns(u32),
    OverBudget(f64),
}

impl Fold {
    pub(crate) fn new(status: TaskStatus) -> Self {
        Fold {
            status,
            transcript: Vec::new(),
            last_text: None,
            result: None,
            error: None,
            total_cost: None,
        }
    }

    /// Adds one event; returns whether the task's session id became known with it.
    pub(crate) fn apply(&mut self, event: TaskEvent) -> bool {
        let mut new_session = false;
        match &event {
            TaskEvent::Session { session_id } => {
                if self.status.session_id.as_deref() == Some(session_id.as_str()) {
                    // opencode repeats it on every line: kept once.
                    return false;
                }
                self.status.session_id = Some(session_id.clone());
                new_session = true;
            }
            TaskEvent::Turn => self.status.turns += 1,
            TaskEvent::AssistantText { text } => {
                self.last_text = Some(text.clone());
                self.error = None;
            }
            TaskEvent::ToolUse { .. } | TaskEvent::ToolResult { .. } => {}
            TaskEvent::Usage {
                input_tokens,
                output_tokens,
                cost_usd,
            } => {
                let usage = &mut self.status.usage;
                usage.input_tokens += input_tokens.unwrap_or(0);
                usage.output_tokens += output_tokens.unwrap_or(0);
                if let Some(cost) = cost_usd {
                    usage.cost_usd = Some(usage.cost_usd.unwrap_or(0.0) + cost);
                }
            }
            TaskEvent::Result {
                text,
                turns,
                cost_usd,
            } => {
                self.result = Some(text.clone());
                if let Some(turns) = turns {
                    self.status.turns = *turns;
                }
                if let Some(cost) = cost_usd {
                    self.total_cost = Some(*cost);
                }
            }
            TaskEvent::Error { kind, message } => {
                self.error = Some(if message.contains(kind.as_str()) {
                    message.clone()
                } else {
                    format!("{message} ({kind})")
                });
            }
        }
        let bytes = serde_json::to_vec(&event).map(|v| v.len()).unwrap_or(0);
        self.status.transcript_events += 1;
        self.status.transcript_bytes += bytes as u64;
        self.transcript.push(event);
        new_session
    }

    /// The cost so far as the provider reported it.
    pub(crate) fn cost(&self) -> Option<f64> {
        self.total_cost.or(self.status.usage.cost_usd)
    }

    /// Ends the record: `exit_ok` is whether the process exited 0, `stop` why the node stopped
    /// it, `stderr` the tail of what it wrote there (a provider's message when it could not
    /// even start a session, e.g. not logged in).
    pub(crate) fn finish(
        &mut self,
        exit_ok: bool,
        exit: &str,
        stop: Option<Stop>,
        stderr: &str,
        provider: &str,
    ) {
        if let Some(cost) = self.total_cost {
            self.status.usage.cost_usd = Some(cost);
        }
        self.status.answer = self.result.clone().or_else(|| self.last_text.clone());
        // A Rust provider's backtrace says nothing to the caller; the message before it does.
        let stderr = stderr
            .split("\nStack backtrace:")
            .next()
            .unwrap_or("")
            .trim();
        // What the provider said last, for a task the node had to stop.
        let last_word = self
            .error
            .clone()
            .or_else(|| stderr.lines().last().map(|l| tail(l, 500).to_string()))
            .map(|said| format!("; {provider} last said: {said}"))
            .unwrap_or_default();
        let (state, error) = match stop {
            Some(Stop::Cancelled) => (TaskState::Cancelled, Some("cancelled".to_string())),
            Some(Stop::TimedOut(limit)) => (
                TaskState::Failed,
                Some(format!(
                    "stopped after the wall-time limit of {limit:?}{last_word}"
                )),
            ),
            Some(Stop::TooManyTurns(limit)) => (
                TaskState::Failed,
                Some(format!("stopped at the limit of {limit} turns")),
            ),
            Some(Stop::OverBudget(limit)) => (
                TaskState::Failed,
                Some(format!("stopped at the budget of ${limit}")),
            ),
            None if self.result.is_some() && self.error.is_none() => (TaskState::Done, None),
            None if exit_ok && self.error.is_none() && self.last_text.is_some() => {
                (TaskState::Done, None)
            }
            None => {
                let message = match (&self.error, stderr.is_empty()) {
                    (Some(error), _) => error.clone(),
                    (None, false) => format!("{provider} {exit}: {}", tail(stderr, 2000)),
                    (None, true) => format!("{provider} {exit} without a result"),
                };
                (TaskState::Failed, Some(message))
            }
        };
        self.status.state = state;
        self.status.error = error;
    }
}

/// The last `max` bytes of `text`, on a character boundary.
pub(super) fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
