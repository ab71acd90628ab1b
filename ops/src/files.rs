//! The file operations: read, write, list, stat, search, and the backups writes keep.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

/// Content encodings for file contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

impl Encoding {
    pub fn is_utf8(&self) -> bool {
        *self == Encoding::Utf8
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Absolute path, or relative to the home directory.
    pub path: String,
    /// Byte offset to start at; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Bytes to read; default (and maximum) 8388608.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadFileResult {
    pub path: String,
    /// Total size of the file in bytes.
    pub size: u64,
    pub offset: u64,
    /// Bytes returned.
    pub length: u64,
    /// utf8 when the bytes are valid UTF-8, otherwise base64.
    pub encoding: Encoding,
    pub content: String,
    /// True when the read reached the end of the file.
    pub eof: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub path: String,
    /// The new content of the whole file.
    pub content: String,
    /// How `content` is encoded; default utf8.
    #[serde(default)]
    pub encoding: Encoding,
    /// Create missing parent directories.
    #[serde(default)]
    pub create_dirs: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WriteFileResult {
    pub path: String,
    pub bytes_written: u64,
    /// Where the previous version was kept (edit mode), if the file existed.
    pub backup: Option<String>,
}

/// Remove one file (the second half of a move: after its copy arrived verified elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRemoveArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// A regular file beneath an allowed root; folders are refused.
    pub path: String,
    /// Remove only if the file still has this size in bytes (what was copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_size: Option<u64>,
    /// Remove only if the file's modification time is still this (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_modified_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileRemoveResult {
    pub path: String,
    /// The size of the file removed.
    pub size: u64,
    /// Where the file was kept before it was removed (edit mode).
    pub backup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DirEntry {
    pub name: String,
    pub kind: FileKind,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub modified_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListDirResult {
    pub path: String,
    pub entries: Vec<DirEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileStatResult {
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits in octal, e.g. "644".
    pub mode: String,
    pub modified_ms: Option<u64>,
    /// For a symlink, where it points (not followed).
    pub symlink_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSearchArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Directories to search; default: see above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    /// Glob on the file name, e.g. "*.pdf" or "report-202?-*".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Regular expression searched in file contents (text files up to 10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Only image files (png, jpg, jpeg, gif, webp, heic, bmp, tiff, svg).
    #[serde(default)]
    pub images_only: bool,
    /// Include hidden files and folders.
    #[serde(default)]
    pub include_hidden: bool,
    /// Stop after this many matches; default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<usize>,
    /// If nothing is found, ask the host's AI CLI (read-only; needs `task`).
    // Its answer is checked path by path against the host's policy (`file_search.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ai_fallback: bool,
    /// claude, opencode or codex; default: the first installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub ai_provider: Option<crate::TaskProvider>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchMatch {
    pub path: String,
    pub size: u64,
    pub modified_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileSearchResult {
    pub matches: Vec<SearchMatch>,
    /// True when max_results or the time budget stopped the search early.
    pub truncated: bool,
    /// Why the search stopped early: `max results` or `time budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
    pub searched_roots: Vec<String>,
    // What found the matches: the walk (`search`) or the ai_fallback task (`ai`); absent when
    // nothing was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub found_by: Option<FoundBy>,
    // The ai_fallback task, when the walk found nothing and it ran: described to models as an
    // object only (`AiSearch`'s fields are in the README), to keep the default tool list small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub ai: Option<AiSearch>,
}

/// How long a `file_search`'s AI fallback may run (bounded further by the host's task limits).
pub const AI_SEARCH_TIMEOUT_SECS: f64 = 300.0;
/// Turns the AI fallback may take, unless the host's task limits allow fewer.
pub const AI_SEARCH_MAX_TURNS: u32 = 30;

// What found a search's matches. (Comments, not doc comments, on these result types: the MCP
// tool list carries every doc comment to the model, and its default list must stay small.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    // The deterministic walk of the roots.
    Search,
    // The host's AI CLI, asked because the walk found nothing.
    Ai,
}

// The AI fallback of a `file_search`: the task it ran (`task_get` reads its record and
// transcript), its answer, why it found nothing (`error`: the task failed, or no AI CLI is
// installed), and the paths it named that are not in `matches`, each with the policy's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AiSearch {
    #[schemars(with = "String")]
    pub provider: crate::TaskProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedPath>,
}

// A path an AI named that the host does not hand out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RejectedPath {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupRecord {
    pub seq: u64,
    pub at_ms: u64,
    pub path: String,
    pub backup_path: String,
    pub size: u64,
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupsResult {
    pub backups: Vec<BackupRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupsArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only backups of this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Summary for ReadFileArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.path)
    }
}

impl Summary for WriteFileArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {} ({} chars)", self.path, self.content.len())
    }
}

impl Summary for FileRemoveArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.path)
    }
}

impl Summary for PathArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.path)
    }
}

impl Summary for FileSearchArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op} name={} content={} images_only={}",
            self.name.as_deref().unwrap_or("*"),
            self.content.as_deref().unwrap_or("-"),
            self.images_only
        )
    }
}

impl Summary for BackupsArgs {
    fn summary(&self, op: &str) -> String {
        op.to_string()
    }
}
