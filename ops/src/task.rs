//! Autonomous tasks as values: `task_dispatch` hands a prompt to a host's own AI CLI (Claude
//! Code, opencode, Codex), which runs it with that host's credentials; `task_get`, `task_wait`,
//! `task_list` and `task_cancel` follow it. The one event model every provider's stream is
//! parsed into (`TaskEvent`) is here too, since a caller may ask for the transcript. What a
//! caller gets by default is short — the final answer, status, turns, duration, cost and the
//! provider's session id — which is the point: the caller's context stays small.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

/// Wall time of a task when `timeout_secs` is absent (the host's limit may be lower).
pub const DEFAULT_TASK_TIMEOUT_SECS: f64 = 1800.0;

/// The AI command-line programs a host can run a task with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskProvider {
    /// Claude Code (`claude -p … --output-format stream-json`).
    Claude,
    /// opencode (`opencode run --format json`).
    Opencode,
    /// Codex CLI (`codex exec --json`).
    Codex,
}

impl TaskProvider {
    pub const ALL: [TaskProvider; 3] = [
        TaskProvider::Claude,
        TaskProvider::Opencode,
        TaskProvider::Codex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskProvider::Claude => "claude",
            TaskProvider::Opencode => "opencode",
            TaskProvider::Codex => "codex",
        }
    }

    /// The program the provider is started as, looked up on the host's `PATH`.
    pub fn program(self) -> &'static str {
        self.as_str()
    }
}

impl std::fmt::Display for TaskProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskProvider {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        TaskProvider::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| format!("unknown provider {text:?}: expected claude, opencode or codex"))
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Running,
    /// The provider reported a final answer.
    Done,
    /// The provider reported an error, stopped at a limit, or could not start.
    Failed,
    /// Stopped by `task_cancel` or by cancelling a waiting call.
    Cancelled,
    /// The node stopped while it ran: never run again; resume it with its session id.
    Interrupted,
}

impl TaskState {
    pub fn is_finished(self) -> bool {
        self != TaskState::Running
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Interrupted => "interrupted",
        }
    }
}

/// One event of a provider's stream, in the one model all providers are parsed into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    /// The provider started (or resumed) its session.
    Session { session_id: String },
    /// A model turn began (one model call: Claude Code's assistant message, opencode's step,
    /// one Codex agent step — a command, file change, tool call or message). `max_turns`
    /// counts these.
    Turn,
    /// Text the assistant wrote.
    AssistantText { text: String },
    /// The assistant called a tool.
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    /// What a tool answered.
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
    },
    /// What a model call used (added up into the task's usage).
    Usage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_tokens: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_tokens: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The provider's final answer.
    Result {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turns: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The provider reported an error (`kind` is its own name for it, e.g. `error_max_turns`).
    Error { kind: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDispatchArgs {
    /// Run on this peer instead of the local node (see list_agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The AI CLI to run: claude, opencode or codex (installed and logged in on that host).
    pub provider: TaskProvider,
    /// What to ask.
    pub prompt: String,
    /// Working directory (beneath an allowed root); default: the home directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The provider's model name (default: the provider's own default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Model turns at most (the host's limit may be lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Seconds of wall time before the provider's process group is killed; default 1800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// US dollars the task may cost at most, as the provider reports cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Continue this earlier session of the same provider (a task's `session_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// Tools the provider may use without asking (Claude Code only), e.g. `Bash(git log:*)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// Tools the provider may not use (Claude Code only), added to the host's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disallowed_tools: Vec<String>,
    /// Wait for the task to end and answer with its result (progress is reported per turn);
    /// default false: answer at once with the task id (follow it with task_wait).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`: include the full transcript in the answer.
    #[serde(default)]
    pub transcript: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskGetArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub task_id: String,
    /// Include the full transcript (every event the provider reported).
    #[serde(default)]
    pub transcript: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskWaitArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub task_id: String,
    /// Wait at most this many seconds (default 600); the task keeps running past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<f64>,
    /// Include the full transcript.
    #[serde(default)]
    pub transcript: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// At most this many, newest first (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCancelArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub task_id: String,
}

/// Tokens and cost as the provider reported them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars, where the provider reports cost (Claude Code, opencode).
    pub cost_usd: Option<f64>,
}

/// One task as its host records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskStatus {
    pub task_id: String,
    /// The host that ran it.
    pub agent_id: String,
    pub provider: TaskProvider,
    pub state: TaskState,
    /// The host's mode the provider was started under, and how it was mapped.
    pub mode: String,
    /// The provider's session id: continue it with task_dispatch `resume`.
    pub session_id: Option<String>,
    /// The final answer (or, failing one, the last text the assistant wrote).
    pub answer: Option<String>,
    pub error: Option<String>,
    pub turns: u32,
    pub usage: TaskUsage,
    pub duration_ms: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// The first line of the prompt, cut to 120 characters.
    pub prompt: String,
    /// Events kept in the host's transcript, and their size in bytes as JSON.
    pub transcript_events: u64,
    pub transcript_bytes: u64,
    /// Lines of the provider's stream that were not JSON (skipped, never fatal).
    #[serde(default)]
    pub skipped_lines: u64,
    /// The full transcript, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Vec<TaskEvent>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskListResult {
    /// Newest first, without transcripts.
    pub tasks: Vec<TaskStatus>,
}

/// The first line of a prompt, cut to `max` characters, for records and the audit log.
pub fn prompt_summary(prompt: &str, max: usize) -> String {
    let line = prompt.lines().next().unwrap_or("").trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

impl Summary for TaskDispatchArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op} {}{}: {}",
            self.provider,
            self.resume
                .as_deref()
                .map(|s| format!(" resume {s}"))
                .unwrap_or_default(),
            prompt_summary(&self.prompt, 80)
        )
    }
}

impl Summary for TaskGetArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.task_id)
    }
}

impl Summary for TaskWaitArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.task_id)
    }
}

impl Summary for TaskListArgs {
    fn summary(&self, op: &str) -> String {
        op.to_string()
    }
}

impl Summary for TaskCancelArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.task_id)
    }
}
