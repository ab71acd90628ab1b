//! A host's local AI-chat history as values, read-only: `chat_list` pages through the chats the
//! AI tools on a host keep on disk (Claude Code, opencode, Codex, Cline, Roo, Kilo, Zed), newest
//! first, and `chat_get` reads one chat's messages. A chat of a resumable provider (claude,
//! opencode, codex) is continued with `task_dispatch` and its `session_id` as `resume`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;
use crate::task::TaskProvider;

/// Chats a `chat_list` page holds when `limit` is absent, and at most.
pub const DEFAULT_CHAT_PAGE: usize = 50;
pub const MAX_CHAT_PAGE: usize = 500;
/// Messages a `chat_get` page holds when `limit` is absent, and at most.
pub const DEFAULT_CHAT_MESSAGES: usize = 100;
pub const MAX_CHAT_MESSAGES: usize = 1000;
/// Bytes of message text a `chat_get` answer carries when `max_bytes` is absent, and at most.
pub const DEFAULT_CHAT_BYTES: usize = 256 * 1024;
pub const MAX_CHAT_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of one message's text kept; the rest is cut with a marker.
pub const MAX_CHAT_MESSAGE_BYTES: usize = 32 * 1024;

/// The AI tools whose chats a host keeps and `chat_list` reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChatProvider {
    /// Claude Code: `~/.claude/projects/<folder>/<session>.jsonl`.
    Claude,
    /// opencode: its SQLite database (`~/.local/share/opencode/opencode.db`).
    Opencode,
    /// Codex CLI: `~/.codex/sessions/YYYY/MM/DD/rollout-…-<session>.jsonl`.
    Codex,
    /// Cline (VS Code extension `saoudrizwan.claude-dev`): its task folders.
    Cline,
    /// Roo Code (`rooveterinaryinc.roo-cline`): its task folders.
    Roo,
    /// Kilo Code (`kilocode.kilo-code`): its task folders.
    Kilo,
    /// Zed's agent threads: `~/.local/share/zed/threads/threads.db`.
    Zed,
}

impl ChatProvider {
    pub const ALL: [ChatProvider; 7] = [
        ChatProvider::Claude,
        ChatProvider::Opencode,
        ChatProvider::Codex,
        ChatProvider::Cline,
        ChatProvider::Roo,
        ChatProvider::Kilo,
        ChatProvider::Zed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatProvider::Claude => "claude",
            ChatProvider::Opencode => "opencode",
            ChatProvider::Codex => "codex",
            ChatProvider::Cline => "cline",
            ChatProvider::Roo => "roo",
            ChatProvider::Kilo => "kilo",
            ChatProvider::Zed => "zed",
        }
    }

    /// The task provider that continues this provider's chats (`task_dispatch` with `resume`),
    /// where there is one; the others' chats are read-only.
    pub fn task_provider(self) -> Option<TaskProvider> {
        match self {
            ChatProvider::Claude => Some(TaskProvider::Claude),
            ChatProvider::Opencode => Some(TaskProvider::Opencode),
            ChatProvider::Codex => Some(TaskProvider::Codex),
            ChatProvider::Cline | ChatProvider::Roo | ChatProvider::Kilo | ChatProvider::Zed => {
                None
            }
        }
    }

    pub fn resumable(self) -> bool {
        self.task_provider().is_some()
    }
}

impl std::fmt::Display for ChatProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChatProvider {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        ChatProvider::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown chat provider {text:?}: expected one of {}",
                    ChatProvider::ALL.map(ChatProvider::as_str).join(", ")
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatListArgs {
    /// Run on this peer instead of the local node (see list_agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only this provider's chats: claude, opencode, codex, cline, roo, kilo or zed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ChatProvider>,
    /// Chats per page, newest first (default 50, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Chats to pass over first: the previous page's `next_offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatGetArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub provider: ChatProvider,
    /// The chat's `session_id` as chat_list shows it.
    pub session_id: String,
    /// Messages to pass over first: the previous page's `next_offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Messages per page (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Bytes of message text per page (default 256 KiB, at most 4 MiB); one message's text is
    /// cut at 32 KiB with a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
}

/// One chat as `chat_list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatSummary {
    pub provider: ChatProvider,
    /// The provider's own id of the chat; for a resumable one, what `task_dispatch` takes as
    /// `resume` (with the same provider).
    pub session_id: String,
    /// The provider's title or summary, else the first thing the user asked (one line, cut to
    /// 120 characters).
    pub title: String,
    /// The folder the chat worked in, where the provider records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// When the chat last changed, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<u64>,
    /// Messages of the user and the assistant in it.
    pub messages: u64,
    /// Whether `task_dispatch` can continue it (claude, opencode, codex); the others are
    /// read-only.
    pub resumable: bool,
    /// The file it was read from (a database holds many chats).
    pub path: String,
}

/// A file or record that was not read, and why (corrupt, unknown format, outside the roots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatSkipped {
    pub provider: ChatProvider,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatListResult {
    /// This page, newest first.
    pub chats: Vec<ChatSummary>,
    /// Chats found in all (every page).
    pub total: usize,
    /// The `offset` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// What was not read, and why (at most 50 named; `skipped_more` counts the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<ChatSkipped>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_more: usize,
    /// Chat files left out because the host's path deny list or hard limits cover them (not
    /// named, as listings leave such names out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hidden: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// `user`, `assistant`, `tool` (a tool's call or its result) or the provider's own role.
    pub role: String,
    pub text: String,
    /// Milliseconds since the Unix epoch, where the provider records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    /// The tool called or answering, for tool messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatGetResult {
    pub chat: ChatSummary,
    /// This page of messages, oldest first (tool calls and results included).
    pub messages: Vec<ChatMessage>,
    /// Messages in the chat in all, tool messages included.
    pub total_messages: usize,
    /// The `offset` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// Whether a message's text was cut or the page stopped at `max_bytes`.
    pub truncated: bool,
}

impl Summary for ChatListArgs {
    fn summary(&self, op: &str) -> String {
        match self.provider {
            Some(provider) => format!("{op} {provider}"),
            None => op.to_string(),
        }
    }
}

impl Summary for ChatGetArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {} {}", self.provider, self.session_id)
    }
}
