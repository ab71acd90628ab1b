//! The operations a node performs, as values: the request enum that travels over the net RPC
//! (and that the MCP tools build), each operation's arguments and results, and the outcome a
//! node returns. Local and remote execution share this one shape: MCP tool → `Request` →
//! either this node's `Node::handle` or the same call on the peer named by `agent_id`.
//!
//! Argument structs double as MCP input schemas, so each rejects unknown fields
//! (`deny_unknown_fields`, which schemars renders as `additionalProperties: false`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::Mode;

/// Runs a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Run on this peer instead of the local node (see list_agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Program and arguments, run without a shell, e.g. ["ls", "-la", "/tmp"]. With shell=true,
    /// the elements are joined by spaces and passed to `/bin/sh -c`.
    pub argv: Vec<String>,
    /// Run through `/bin/sh -c` (only where the node's policy grants a shell).
    #[serde(default)]
    pub shell: bool,
    /// Working directory (must be beneath an allowed root); default: the home directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text written to the program's standard input (then closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Seconds before the whole process group is killed; default 60, at most 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Bytes kept of stdout and of stderr each; default 1048576, at most 67108864. More output
    /// sets `truncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<usize>,
}

/// The result of `exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecResult {
    /// Exit code, or null when killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// How `stdout` is written: utf8 (the text as is), or base64 for binary output (not UTF-8,
    /// or so full of control bytes such as NUL that JSON would escape it six-fold).
    #[serde(default, skip_serializing_if = "Encoding::is_utf8")]
    pub stdout_encoding: Encoding,
    /// How `stderr` is written, like `stdout_encoding`.
    #[serde(default, skip_serializing_if = "Encoding::is_utf8")]
    pub stderr_encoding: Encoding,
    /// True when stdout or stderr was longer than max_output_bytes and was cut.
    pub truncated: bool,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration_ms: u64,
    /// How the command was confined, when it was (plan mode: a read-only Landlock sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

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
#[serde(deny_unknown_fields)]
pub struct GitRepoArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Path of the repository's work tree.
    pub repo: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitRemoteArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub repo: String,
    /// Remote name; default "origin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Branch; default the current branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitCommitArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub repo: String,
    pub message: String,
    /// Paths (relative to the work tree) to stage first; default: every change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitFileStatus {
    pub path: String,
    /// e.g. "new", "modified", "deleted", "renamed", "untracked", "conflicted".
    pub status: String,
    pub staged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitStatusResult {
    pub repo: String,
    pub branch: Option<String>,
    pub head: Option<String>,
    pub upstream: Option<String>,
    pub ahead: usize,
    pub behind: usize,
    pub files: Vec<GitFileStatus>,
    pub clean: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitActionResult {
    pub repo: String,
    /// What happened, e.g. "fast-forwarded main to 1a2b3c4", "already up to date".
    pub summary: String,
    pub head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetModeArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub mode: Mode,
    /// Seconds until the override lapses and the configured mode applies again; default 3600,
    /// at most 31622400 (366 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Why; recorded in the audit log and reported with the drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A live mode override (imperative, with an expiry; reported as drift).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModeOverride {
    pub mode: Mode,
    pub set_by: String,
    pub reason: Option<String>,
    pub set_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SetModeResult {
    pub configured_mode: Mode,
    pub effective_mode: Mode,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InfoResult {
    pub agent_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub version: String,
    pub facts: crate::facts::Facts,
    pub configured_mode: Mode,
    pub effective_mode: Mode,
    pub mode_override: Option<ModeOverride>,
    /// Differences between configured and live state, in words.
    pub drift: Vec<String>,
    pub accepts_commands: bool,
    pub roots: Vec<String>,
    pub relay: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSummary {
    pub agent_id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// Platform facts as advertised (see get_info for typed values).
    pub facts: BTreeMap<String, String>,
    pub mode: Mode,
    pub accepts_commands: bool,
    /// True for the node answering this request.
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListAgentsResult {
    pub agents: Vec<AgentSummary>,
    /// Why the list holds only this node, when it does.
    pub note: Option<String>,
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

/// One operation. Adjacently tagged so that the argument structs keep rejecting unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum Request {
    Exec(ExecArgs),
    ReadFile(ReadFileArgs),
    WriteFile(WriteFileArgs),
    ListDir(PathArgs),
    FileStat(PathArgs),
    FileSearch(FileSearchArgs),
    GitStatus(GitRepoArgs),
    GitPull(GitRemoteArgs),
    GitCommit(GitCommitArgs),
    GitPush(GitRemoteArgs),
    GetInfo(AgentArgs),
    SetMode(SetModeArgs),
    ListAgents(AgentArgs),
    Backups(BackupsArgs),
    ScheduleAdd(crate::schedule::ScheduleAddArgs),
    ScheduleRemove(crate::schedule::ScheduleRemoveArgs),
    ScheduleList(crate::schedule::ScheduleListArgs),
    /// A signed desired-state bundle for this node to verify and apply.
    DesiredOffer(DesiredOfferArgs),
    /// This node's observed desired-state status.
    DesiredStatus(AgentArgs),
    /// A kept bundle (the applied one, or one by generation/revision), for peers that missed it
    /// and for `rollback`.
    DesiredGet(DesiredGetArgs),
    /// The generations this node accepted.
    DesiredHistory(AgentArgs),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredOfferArgs {
    pub bundle: crate::desired::SignedBundle,
    /// Also remove imperative changes the spec does not hold (schedules added by hand).
    #[serde(default)]
    pub prune: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredGetArgs {
    /// Generation number, revision or hash prefix; the applied bundle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The answer to a `DesiredOffer`: what the node decided and its status after reconciling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredOfferResult {
    /// `new`, `current` or `refused`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: crate::desired::ObservedStatus,
}

impl Request {
    /// The operation's name (also its MCP tool name).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::ReadFile(_) => "read_file",
            Request::WriteFile(_) => "write_file",
            Request::ListDir(_) => "list_dir",
            Request::FileStat(_) => "file_stat",
            Request::FileSearch(_) => "file_search",
            Request::GitStatus(_) => "git_status",
            Request::GitPull(_) => "git_pull",
            Request::GitCommit(_) => "git_commit",
            Request::GitPush(_) => "git_push",
            Request::GetInfo(_) => "get_info",
            Request::SetMode(_) => "set_mode",
            Request::ListAgents(_) => "list_agents",
            Request::Backups(_) => "backups",
            Request::ScheduleAdd(_) => "schedule_add",
            Request::ScheduleRemove(_) => "schedule_remove",
            Request::ScheduleList(_) => "schedule_list",
            Request::DesiredOffer(_) => "desired_offer",
            Request::DesiredStatus(_) => "desired_status",
            Request::DesiredGet(_) => "desired_get",
            Request::DesiredHistory(_) => "desired_history",
        }
    }

    /// Whether the operation only reads: running it twice changes nothing, so it needs no
    /// crash-safe "started" record before it runs (only its audit record after).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::ReadFile(_)
                | Request::ListDir(_)
                | Request::FileStat(_)
                | Request::FileSearch(_)
                | Request::GitStatus(_)
                | Request::GetInfo(_)
                | Request::ListAgents(_)
                | Request::Backups(_)
                | Request::ScheduleList(_)
                | Request::DesiredStatus(_)
                | Request::DesiredGet(_)
                | Request::DesiredHistory(_)
        )
    }

    /// Whether running this request twice has the effect of running it once: reads, and a
    /// desired-state offer (offering a generation the node holds answers `current`). Such a
    /// request is audited but not journaled; a retried id simply runs again.
    pub fn is_idempotent(&self) -> bool {
        self.is_read_only() || matches!(self, Request::DesiredOffer(_))
    }

    /// Whether a crash while this request runs must be reported as `outcome_unknown`, which
    /// takes a durable `started` record before it runs. Not for idempotent requests (rerunning
    /// is harmless; adopting a bundle is one atomic commit of its own, so after a crash the
    /// node's generation says exactly whether it took effect).
    pub fn needs_started_record(&self) -> bool {
        !self.is_idempotent()
    }

    /// What an operator must be allowed to do for this request, once the fleet lists
    /// operators. `None`: authorised by other means (a bundle carries its own signature).
    pub fn capability(&self) -> Option<remote_agents_spec::Capability> {
        use remote_agents_spec::Capability;
        Some(match self {
            // A bundle carries its own operator signature, and any member of the room may pass
            // on the bundles it holds (they are signed; only room members can read them).
            Request::DesiredOffer(_) | Request::DesiredGet(_) => return None,
            Request::Exec(_) => Capability::Exec,
            Request::WriteFile(_) => Capability::Write,
            Request::GitPull(_) | Request::GitCommit(_) | Request::GitPush(_) => Capability::Git,
            Request::SetMode(_) => Capability::Admin,
            Request::ScheduleAdd(_) | Request::ScheduleRemove(_) => Capability::Schedule,
            Request::ReadFile(_)
            | Request::ListDir(_)
            | Request::FileStat(_)
            | Request::FileSearch(_)
            | Request::GitStatus(_)
            | Request::GetInfo(_)
            | Request::ListAgents(_)
            | Request::Backups(_)
            | Request::ScheduleList(_)
            | Request::DesiredStatus(_)
            | Request::DesiredHistory(_) => Capability::Read,
        })
    }

    /// The peer this request is addressed to, if not the local node.
    pub fn agent_id(&self) -> Option<&str> {
        match self {
            Request::Exec(a) => a.agent_id.as_deref(),
            Request::ReadFile(a) => a.agent_id.as_deref(),
            Request::WriteFile(a) => a.agent_id.as_deref(),
            Request::ListDir(a) | Request::FileStat(a) => a.agent_id.as_deref(),
            Request::FileSearch(a) => a.agent_id.as_deref(),
            Request::GitStatus(a) => a.agent_id.as_deref(),
            Request::GitPull(a) | Request::GitPush(a) => a.agent_id.as_deref(),
            Request::GitCommit(a) => a.agent_id.as_deref(),
            Request::GetInfo(a) | Request::ListAgents(a) => a.agent_id.as_deref(),
            Request::SetMode(a) => a.agent_id.as_deref(),
            Request::Backups(a) => a.agent_id.as_deref(),
            Request::ScheduleAdd(a) => a.agent_id.as_deref(),
            Request::ScheduleRemove(a) => a.agent_id.as_deref(),
            Request::ScheduleList(a) => a.agent_id.as_deref(),
            Request::DesiredOffer(a) => a.agent_id.as_deref(),
            Request::DesiredGet(a) => a.agent_id.as_deref(),
            Request::DesiredStatus(a) | Request::DesiredHistory(a) => a.agent_id.as_deref(),
        }
    }

    /// The same request with `agent_id` cleared: what is sent to the peer it names, so that the
    /// peer runs it itself rather than forwarding it again.
    pub fn without_agent_id(mut self) -> Self {
        match &mut self {
            Request::Exec(a) => a.agent_id = None,
            Request::ReadFile(a) => a.agent_id = None,
            Request::WriteFile(a) => a.agent_id = None,
            Request::ListDir(a) | Request::FileStat(a) => a.agent_id = None,
            Request::FileSearch(a) => a.agent_id = None,
            Request::GitStatus(a) => a.agent_id = None,
            Request::GitPull(a) | Request::GitPush(a) => a.agent_id = None,
            Request::GitCommit(a) => a.agent_id = None,
            Request::GetInfo(a) | Request::ListAgents(a) => a.agent_id = None,
            Request::SetMode(a) => a.agent_id = None,
            Request::Backups(a) => a.agent_id = None,
            Request::ScheduleAdd(a) => a.agent_id = None,
            Request::ScheduleRemove(a) => a.agent_id = None,
            Request::ScheduleList(a) => a.agent_id = None,
            Request::DesiredOffer(a) => a.agent_id = None,
            Request::DesiredGet(a) => a.agent_id = None,
            Request::DesiredStatus(a) | Request::DesiredHistory(a) => a.agent_id = None,
        }
        self
    }

    /// A short description for the audit log (never file contents or stdin).
    pub fn summary(&self) -> String {
        match self {
            Request::Exec(a) => format!(
                "exec{} {}",
                if a.shell { " (shell)" } else { "" },
                a.argv.join(" ")
            ),
            Request::ReadFile(a) => format!("read_file {}", a.path),
            Request::WriteFile(a) => format!("write_file {} ({} chars)", a.path, a.content.len()),
            Request::ListDir(a) => format!("list_dir {}", a.path),
            Request::FileStat(a) => format!("file_stat {}", a.path),
            Request::FileSearch(a) => format!(
                "file_search name={} content={} images_only={}",
                a.name.as_deref().unwrap_or("*"),
                a.content.as_deref().unwrap_or("-"),
                a.images_only
            ),
            Request::GitStatus(a) => format!("git_status {}", a.repo),
            Request::GitPull(a) => format!("git_pull {}", a.repo),
            Request::GitCommit(a) => format!("git_commit {}: {}", a.repo, a.message),
            Request::GitPush(a) => format!("git_push {}", a.repo),
            Request::GetInfo(_) => "get_info".to_string(),
            Request::SetMode(a) => format!("set_mode {}", a.mode),
            Request::ListAgents(_) => "list_agents".to_string(),
            Request::Backups(_) => "backups".to_string(),
            Request::ScheduleAdd(a) => format!(
                "schedule_add {} `{}`: {}",
                a.name,
                a.cron,
                a.shell.clone().unwrap_or_else(|| a.command.join(" "))
            ),
            Request::ScheduleRemove(a) => format!("schedule_remove {}", a.name),
            Request::ScheduleList(_) => "schedule_list".to_string(),
            // The claim only: verifying (signature + spec load) happens once, in the offer.
            Request::DesiredOffer(a) => match a.bundle.peek() {
                Some(c) => format!(
                    "desired_offer generation {} revision {} by {}",
                    c.generation, c.revision, c.issuer
                ),
                None => "desired_offer (unreadable bundle)".to_string(),
            },
            Request::DesiredStatus(_) => "desired_status".to_string(),
            Request::DesiredGet(a) => format!(
                "desired_get {}",
                a.revision.as_deref().unwrap_or("(applied)")
            ),
            Request::DesiredHistory(_) => "desired_history".to_string(),
        }
    }
}

/// A request with its identity and its caller, as journaled and as sent over the RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per request; a repeated id returns the stored outcome instead of running again.
    pub id: String,
    /// Who asked: `mcp:local`, or the authenticated peer id for remote requests.
    pub caller: String,
    pub request: Request,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The operation ran; `result` is its result struct as JSON.
    Ok { result: serde_json::Value },
    /// The policy gate refused it; nothing ran.
    Refused { reason: String },
    /// It ran (or tried to) and failed.
    Failed { error: String },
    /// A crash interrupted it after it started: it may or may not have taken effect, and it is
    /// not run again.
    OutcomeUnknown { reason: String },
}

impl Outcome {
    pub fn ok<T: Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(result) => Outcome::Ok { result },
            Err(e) => Outcome::Failed {
                error: format!("cannot encode result: {e}"),
            },
        }
    }

    pub fn failed(error: impl std::fmt::Display) -> Self {
        Outcome::Failed {
            error: error.to_string(),
        }
    }

    /// One word for the audit log.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
            Outcome::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }
}

/// The reply to an `Envelope` over the RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub outcome: Outcome,
}

/// The longest `timeout_secs` a request may ask for (exec, a schedule's runs): one day. A
/// longer run is better started as a service; the cap keeps every deadline computable.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// The most bytes of stdout and of stderr an exec may keep (`max_output_bytes`): 64 MiB each,
/// the map output cap of `mapreduce`, the largest user (1 GiB of output took a node to 23.5 GB).
/// The whole result is held in memory and sent as one message, so it must stay bounded.
pub const MAX_OUTPUT_BYTES: usize = crate::mapreduce::DEFAULT_MAX_OUTPUT;
/// The longest `ttl_secs` of a mode override or an imperative schedule: 366 days.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

/// Checks a number of seconds a request gives for a timeout: finite, above zero and at most
/// [`MAX_TIMEOUT_SECS`]. The error names `field` and the allowed range.
pub fn timeout_from_secs(field: &str, secs: f64) -> Result<std::time::Duration, String> {
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!(
            "{field} must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECS} (one \
             day), got {secs}"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{field}: {e}"))
}

/// Checks a `ttl_secs`: at most [`MAX_TTL_SECS`] (366 days).
pub fn ttl_from_secs(field: &str, secs: u64) -> Result<std::time::Duration, String> {
    if secs > MAX_TTL_SECS {
        return Err(format!(
            "{field} must be at most {MAX_TTL_SECS} seconds (366 days), got {secs}"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Checks a number of seconds for a wait that is not a command's timeout (a fan-out's per-host
/// wait or deadline, a CLI duration): finite, not negative, at most [`MAX_TTL_SECS`], so that
/// adding it to the clock can never overflow.
pub fn duration_from_secs(field: &str, secs: f64) -> Result<std::time::Duration, String> {
    if !(secs.is_finite() && secs >= 0.0 && secs <= MAX_TTL_SECS as f64) {
        return Err(format!(
            "{field} must be a number of seconds from 0 to {MAX_TTL_SECS} (366 days), got {secs}"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{field}: {e}"))
}

/// Checks a `max_output_bytes`: at most [`MAX_OUTPUT_BYTES`].
pub fn max_output_bytes(field: &str, bytes: usize) -> Result<usize, String> {
    if bytes > MAX_OUTPUT_BYTES {
        return Err(format!(
            "{field} must be at most {MAX_OUTPUT_BYTES} (64 MiB), got {bytes}; read large \
             output from a file with read_file instead"
        ));
    }
    Ok(bytes)
}

impl ExecArgs {
    /// The run's timeout: `timeout_secs` checked, or the default.
    pub fn timeout(&self) -> Result<std::time::Duration, String> {
        match self.timeout_secs {
            Some(secs) => timeout_from_secs("timeout_secs", secs),
            None => Ok(crate::exec::DEFAULT_TIMEOUT),
        }
    }

    /// The bytes kept of each stream: `max_output_bytes` checked, or the default.
    pub fn max_output(&self) -> Result<usize, String> {
        match self.max_output_bytes {
            Some(bytes) => max_output_bytes("max_output_bytes", bytes),
            None => Ok(crate::exec::DEFAULT_MAX_OUTPUT),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let request = Request::Exec(ExecArgs {
            agent_id: Some("peer".into()),
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(1.5),
            max_output_bytes: None,
        });
        let envelope = Envelope {
            id: "r1".into(),
            caller: "mcp:local".into(),
            request: request.clone(),
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert!(text.contains("\"op\":\"exec\""), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(request.without_agent_id().agent_id(), None);
    }

    /// `timeout_secs=1e300` panicked in `Duration::from_secs_f64`; NaN, infinities, negative
    /// numbers and zero are refused too, each naming the field and the range.
    #[test]
    fn timeouts_out_of_range_are_errors_naming_the_field() {
        for bad in [
            1e300,
            f64::NAN,
            f64::INFINITY,
            -1.0,
            0.0,
            MAX_TIMEOUT_SECS + 1.0,
        ] {
            let err = timeout_from_secs("timeout_secs", bad).unwrap_err();
            assert!(
                err.contains("timeout_secs") && err.contains("86400"),
                "{err}"
            );
        }
        assert_eq!(
            timeout_from_secs("timeout_secs", 1.5),
            Ok(std::time::Duration::from_millis(1500))
        );
        let args = ExecArgs {
            agent_id: None,
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(1e300),
            max_output_bytes: Some(usize::MAX),
        };
        assert!(args.timeout().is_err());
        assert!(args.max_output().unwrap_err().contains("max_output_bytes"));
    }

    /// `set_mode ttl_secs=2^64-1` wrapped around to an override that expired at once.
    #[test]
    fn ttls_beyond_a_year_are_errors_naming_the_field() {
        let err = ttl_from_secs("ttl_secs", u64::MAX).unwrap_err();
        assert!(err.contains("ttl_secs"), "{err}");
        assert!(ttl_from_secs("ttl_secs", MAX_TTL_SECS).is_ok());
        assert!(max_output_bytes("max_output_bytes", MAX_OUTPUT_BYTES).is_ok());
        assert!(max_output_bytes("max_output_bytes", MAX_OUTPUT_BYTES + 1).is_err());
    }

    #[test]
    fn unknown_argument_fields_are_rejected() {
        let text = r#"{"op":"read_file","args":{"path":"/tmp/x","bogus":1}}"#;
        let err = serde_json::from_str::<Request>(text).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let schema = serde_json::to_value(schemars::schema_for!(ReadFileArgs)).unwrap();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    }
}
