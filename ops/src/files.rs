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
    /// Directories to search; default: Pictures, Documents, Downloads, Desktop, then home.
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
