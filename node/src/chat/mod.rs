//! The host's local AI-chat history, read-only: the chats Claude Code (`claude`), Codex
//! (`codex`), opencode (`opencode`), Cline, Roo and Kilo (`vscode`: VS Code extensions' task
//! folders) and Zed (`zed`) keep in the node user's home, listed newest first and read a page at
//! a time (`chat_list`, `chat_get` in `node::operations`).
//!
//! Every file is read through the policy gate like `read_file`: resolved beneath a root, judged
//! by the deny and allow lists, opened without following links and judged again by what was
//! opened. A file the deny list or a hard limit covers is left out unnamed (counted in
//! `hidden`), as listings leave such names out; any other file that cannot be read — outside the
//! roots, not the format it should be, a truncated database — is skipped with its reason and
//! never stops the rest. SQLite databases are opened read-only, so an application holding them
//! is not disturbed. Nothing is written, and memory stays bounded: lines are read one at a time
//! up to `MAX_LINE`, a message's text is cut at `MAX_CHAT_MESSAGE_BYTES` and a page stops at its
//! byte budget.

mod claude;
mod codex;
mod opencode;
mod vscode;
mod zed;

#[cfg(test)]
mod tests;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use remote_agents_ops::{
    ChatGetArgs, ChatGetResult, ChatListArgs, ChatListResult, ChatMessage, ChatProvider,
    ChatSkipped, ChatSummary, DEFAULT_CHAT_BYTES, DEFAULT_CHAT_MESSAGES, DEFAULT_CHAT_PAGE,
    MAX_CHAT_BYTES, MAX_CHAT_MESSAGE_BYTES, MAX_CHAT_MESSAGES, MAX_CHAT_PAGE,
};

use crate::policy::{Intent, Mode, OpenError, Policy};

/// A JSONL line longer than this is skipped unparsed.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// A JSON file (a VS Code task's history) larger than this is skipped.
const MAX_JSON_FILE: u64 = 256 * 1024 * 1024;
/// Skipped files named in one answer; the rest are counted.
const SKIPPED_NAMED: usize = 50;
/// Characters of a title.
const TITLE_CHARS: usize = 120;

/// Where the node user's AI tools keep their chats: the home folder, the XDG data and config
/// folders (`~/.local/share`, `~/.config`), Claude Code's (`~/.claude`) and Codex's (`~/.codex`)
/// folders, unless the environment says otherwise. Tests give a temporary home.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSources {
    pub home: PathBuf,
    pub data_home: PathBuf,
    pub config_home: PathBuf,
    pub claude_home: PathBuf,
    pub codex_home: PathBuf,
}

impl ChatSources {
    /// The default folders beneath `home`.
    pub fn for_home(home: &Path) -> Self {
        ChatSources {
            home: home.to_path_buf(),
            data_home: home.join(".local/share"),
            config_home: home.join(".config"),
            claude_home: home.join(".claude"),
            codex_home: home.join(".codex"),
        }
    }

    /// `home`'s folders, with `XDG_DATA_HOME` and `XDG_CONFIG_HOME` (opencode and Zed follow
    /// them), `CLAUDE_CONFIG_DIR` and `CODEX_HOME` where the node's environment sets them.
    pub fn from_env(home: &Path) -> Self {
        let mut sources = Self::for_home(home);
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        if let Some(data) = absolute("XDG_DATA_HOME") {
            sources.data_home = data;
        }
        if let Some(config) = absolute("XDG_CONFIG_HOME") {
            sources.config_home = config;
        }
        if let Some(claude) = absolute("CLAUDE_CONFIG_DIR") {
            sources.claude_home = claude;
        }
        if let Some(codex) = absolute("CODEX_HOME") {
            sources.codex_home = codex;
        }
        sources
    }
}

/// What one listing or read has met: the gate it reads through, and what it did not read.
pub(crate) struct Scan<'a> {
    policy: &'a Policy,
    mode: Mode,
    skipped: Vec<ChatSkipped>,
    skipped_more: usize,
    hidden: usize,
}

impl<'a> Scan<'a> {
    fn new(policy: &'a Policy, mode: Mode) -> Self {
        Scan {
            policy,
            mode,
            skipped: Vec::new(),
            skipped_more: 0,
            hidden: 0,
        }
    }

    /// Records a file that was not read and why.
    fn skip(&mut self, provider: ChatProvider, path: &Path, reason: impl Into<String>) {
        if self.skipped.len() < SKIPPED_NAMED {
            self.skipped.push(ChatSkipped {
                provider,
                path: path.display().to_string(),
                reason: reason.into(),
            });
        } else {
            self.skipped_more += 1;
        }
    }

    /// Opens `path` for reading through the gate. `None` (recorded as hidden or skipped) when the
    /// gate refuses it or it cannot be opened; the path returned is the one the gate approved
    /// (symlinks resolved), which a database is then opened by.
    fn open(
        &mut self,
        provider: ChatProvider,
        path: &Path,
    ) -> Option<(std::fs::File, std::fs::Metadata, PathBuf)> {
        if self.policy.entry_hidden(self.mode, path, None) {
            self.hidden += 1;
            return None;
        }
        let resolved = match self.policy.resolve(self.mode, path, Intent::Read) {
            Ok(resolved) => resolved,
            Err(refusal) => {
                self.skip(provider, path, refusal.reason);
                return None;
            }
        };
        if self
            .policy
            .entry_hidden(self.mode, &resolved.absolute, None)
        {
            self.hidden += 1;
            return None;
        }
        match resolved.open_read() {
            Ok((file, metadata)) if metadata.is_file() => {
                Some((file, metadata, resolved.absolute.clone()))
            }
            Ok(_) => {
                self.skip(provider, path, "not a regular file");
                None
            }
            Err(OpenError::Refused(_)) => {
                self.hidden += 1;
                None
            }
            Err(OpenError::Io(e)) => {
                self.skip(provider, path, format!("cannot open: {e}"));
                None
            }
        }
    }

    /// Reads a whole JSON file through the gate (at most `MAX_JSON_FILE`). `None` when it is
    /// not there (silently), refused, too large or not JSON (recorded).
    fn read_json(&mut self, provider: ChatProvider, path: &Path) -> Option<serde_json::Value> {
        if std::fs::symlink_metadata(path).is_err() {
            return None;
        }
        let (file, metadata, _) = self.open(provider, path)?;
        if metadata.len() > MAX_JSON_FILE {
            self.skip(
                provider,
                path,
                format!(
                    "{} bytes: larger than the {MAX_JSON_FILE} bytes read at most",
                    metadata.len()
                ),
            );
            return None;
        }
        match serde_json::from_reader(BufReader::new(file)) {
            Ok(value) => Some(value),
            Err(e) => {
                self.skip(provider, path, format!("not JSON: {e}"));
                None
            }
        }
    }
}

/// The messages of one chat as a provider reads them, kept only within a page: counts every
/// message, keeps those from `offset` on until `limit` messages or `max_bytes` of text, and
/// remembers the first thing the user asked for a title. Memory stays bounded whatever the
/// transcript's size.
pub(crate) struct Collector {
    offset: usize,
    limit: usize,
    max_bytes: usize,
    kept: Vec<ChatMessage>,
    bytes: usize,
    /// Messages seen, tool messages included.
    total: usize,
    /// Messages of the user and the assistant.
    conversational: u64,
    truncated: bool,
    first_user_text: Option<String>,
    last_timestamp_ms: Option<u64>,
}

impl Collector {
    /// Keeps nothing: counts and a title, for a listing.
    fn counting() -> Self {
        Self::page(0, 0, 0)
    }

    fn page(offset: usize, limit: usize, max_bytes: usize) -> Self {
        Collector {
            offset,
            limit,
            max_bytes,
            kept: Vec::new(),
            bytes: 0,
            total: 0,
            conversational: 0,
            truncated: false,
            first_user_text: None,
            last_timestamp_ms: None,
        }
    }

    /// One message, in the chat's order. Empty texts are passed over.
    fn push(&mut self, role: &str, text: &str, timestamp_ms: Option<u64>, tool: Option<&str>) {
        let text = text.trim();
        if text.is_empty() && tool.is_none() {
            return;
        }
        if let Some(at) = timestamp_ms {
            self.last_timestamp_ms = Some(self.last_timestamp_ms.map_or(at, |t| t.max(at)));
        }
        if role == "user" || role == "assistant" {
            self.conversational += 1;
        }
        if role == "user" && tool.is_none() && self.first_user_text.is_none() {
            self.first_user_text = Some(title_of(text));
        }
        let index = self.total;
        self.total += 1;
        if index < self.offset || self.kept.len() >= self.limit || self.bytes >= self.max_bytes {
            if index >= self.offset && self.kept.len() < self.limit {
                // Within the page's count but past its bytes.
                self.truncated = true;
            }
            return;
        }
        let budget = (self.max_bytes - self.bytes).min(MAX_CHAT_MESSAGE_BYTES);
        if text.len() > budget && budget < 256 {
            // Too little room left to show a useful part of it: the page ends before it.
            self.truncated = true;
            self.bytes = self.max_bytes;
            return;
        }
        let (text, cut) = cut_text(text, budget);
        self.truncated |= cut;
        self.bytes += text.len();
        self.kept.push(ChatMessage {
            role: role.to_string(),
            text,
            timestamp_ms,
            tool: tool.map(str::to_string),
        });
    }

    /// The page as an answer, for `chat`.
    fn into_result(self, chat: ChatSummary) -> ChatGetResult {
        let end = self.offset + self.kept.len();
        ChatGetResult {
            chat,
            next_offset: (end < self.total).then_some(end),
            total_messages: self.total,
            truncated: self.truncated,
            messages: self.kept,
        }
    }
}

/// `text` cut to at most `budget` bytes on a character boundary, with a marker saying how much
/// was left out, and whether it was cut.
fn cut_text(text: &str, budget: usize) -> (String, bool) {
    if text.len() <= budget {
        return (text.to_string(), false);
    }
    let marker_room = 64.min(budget);
    let mut end = budget - marker_room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (
        format!("{}… [cut: {} more bytes]", &text[..end], text.len() - end),
        true,
    )
}

/// A title from a text: its first non-empty line, cut to `TITLE_CHARS` characters.
fn title_of(text: &str) -> String {
    remote_agents_ops::prompt_summary(text.trim_start(), TITLE_CHARS)
}

/// An RFC 3339 time (`2025-01-02T03:04:05.678Z`) in milliseconds since the Unix epoch.
fn parse_time_ms(text: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

/// A file's modification time in milliseconds since the Unix epoch.
fn modified_ms(metadata: &std::fs::Metadata) -> Option<u64> {
    let modified = metadata.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Calls `each` with every line of `reader` parsed as JSON (`None` for a line that is not, or
/// longer than `MAX_LINE`, which is never held in memory whole); blank lines are passed over.
fn for_each_json_line(
    reader: impl std::io::Read,
    mut each: impl FnMut(Option<serde_json::Value>),
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    let mut too_long = false;
    let mut finish = |line: &mut Vec<u8>, too_long: &mut bool| {
        if *too_long {
            each(None);
        } else if !line.iter().all(u8::is_ascii_whitespace) {
            each(serde_json::from_slice(line).ok());
        }
        line.clear();
        *too_long = false;
    };
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            finish(&mut line, &mut too_long);
            return Ok(());
        }
        let (chunk, used, ended) = match buffer.iter().position(|b| *b == b'\n') {
            Some(i) => (&buffer[..i], i + 1, true),
            None => (buffer, buffer.len(), false),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if ended {
            finish(&mut line, &mut too_long);
        }
    }
}

/// The text of a content value in the Anthropic style most providers share: a string, or an
/// array of blocks of which the `text` ones count.
fn text_of_content(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(blocks) => blocks
            .iter()
            .filter(|b| {
                matches!(
                    b.get("type").and_then(|t| t.as_str()),
                    Some("text" | "input_text" | "output_text")
                )
            })
            .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The text of a tool's input or result, for a tool message: a string as it is, anything else
/// as compact JSON.
fn tool_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => {
            let text = text_of_content(other);
            if text.is_empty() {
                other.to_string()
            } else {
                text
            }
        }
    }
}

/// The regular files directly in `dir` (not following links), sorted; nothing when it is not
/// there.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    entries(dir, |t| t.is_file())
}

/// The folders directly in `dir` (not following links), sorted.
fn folders_in(dir: &Path) -> Vec<PathBuf> {
    entries(dir, |t| t.is_dir())
}

fn entries(dir: &Path, keep: impl Fn(&std::fs::FileType) -> bool) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| keep(&t)))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// A session id as callers give it: one plain name, never a path.
fn plain_id(session_id: &str) -> Result<&str, String> {
    let plain = !session_id.is_empty()
        && session_id.len() <= 256
        && !session_id.contains(['/', '\\', '\0'])
        && session_id != "."
        && session_id != "..";
    if plain {
        Ok(session_id)
    } else {
        Err(format!(
            "{session_id:?} is not a session id; chat_list shows them"
        ))
    }
}

/// One chat found by a listing.
pub(crate) type Found = ChatSummary;

/// Every chat of `provider` (or of all), newest first, one page of them.
pub fn list(
    policy: &Policy,
    mode: Mode,
    sources: &ChatSources,
    args: &ChatListArgs,
) -> ChatListResult {
    let mut scan = Scan::new(policy, mode);
    let mut chats: Vec<Found> = Vec::new();
    for provider in ChatProvider::ALL {
        if args.provider.is_some_and(|p| p != provider) {
            continue;
        }
        match provider {
            ChatProvider::Claude => claude::list(&mut scan, sources, &mut chats),
            ChatProvider::Codex => codex::list(&mut scan, sources, &mut chats),
            ChatProvider::Opencode => opencode::list(&mut scan, sources, &mut chats),
            ChatProvider::Cline | ChatProvider::Roo | ChatProvider::Kilo => {
                vscode::list(&mut scan, sources, provider, &mut chats)
            }
            ChatProvider::Zed => zed::list(&mut scan, sources, &mut chats),
        }
    }
    // Newest first; chats without a time last; ties in a stable order.
    chats.sort_by(|a, b| {
        b.updated_at_ms
            .cmp(&a.updated_at_ms)
            .then_with(|| a.provider.cmp(&b.provider))
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    let total = chats.len();
    let offset = args.offset.unwrap_or(0).min(total);
    let limit = args
        .limit
        .unwrap_or(DEFAULT_CHAT_PAGE)
        .clamp(1, MAX_CHAT_PAGE);
    let page: Vec<Found> = chats.into_iter().skip(offset).take(limit).collect();
    let end = offset + page.len();
    ChatListResult {
        chats: page,
        total,
        next_offset: (end < total).then_some(end),
        skipped: scan.skipped,
        skipped_more: scan.skipped_more,
        hidden: scan.hidden,
    }
}

/// One chat's messages, a page of them. An unknown session, or one the gate hides, is an error
/// naming it; a chat that cannot be read is an error saying why.
pub fn get(
    policy: &Policy,
    mode: Mode,
    sources: &ChatSources,
    args: &ChatGetArgs,
) -> Result<ChatGetResult, String> {
    let session_id = plain_id(&args.session_id)?;
    let mut scan = Scan::new(policy, mode);
    let collector = Collector::page(
        args.offset.unwrap_or(0),
        args.limit
            .unwrap_or(DEFAULT_CHAT_MESSAGES)
            .clamp(1, MAX_CHAT_MESSAGES),
        args.max_bytes
            .unwrap_or(DEFAULT_CHAT_BYTES)
            .clamp(1024, MAX_CHAT_BYTES),
    );
    let found = match args.provider {
        ChatProvider::Claude => claude::get(&mut scan, sources, session_id, collector),
        ChatProvider::Codex => codex::get(&mut scan, sources, session_id, collector),
        ChatProvider::Opencode => opencode::get(&mut scan, sources, session_id, collector),
        ChatProvider::Cline | ChatProvider::Roo | ChatProvider::Kilo => {
            vscode::get(&mut scan, sources, args.provider, session_id, collector)
        }
        ChatProvider::Zed => zed::get(&mut scan, sources, session_id, collector),
    };
    match found {
        Some((chat, collector)) => Ok(collector.into_result(chat)),
        None => {
            let why = scan
                .skipped
                .first()
                .map(|s| format!(": {} was not read ({})", s.path, s.reason))
                .unwrap_or_default();
            Err(format!(
                "no {} chat `{session_id}` on this host{why}; chat_list shows them",
                args.provider
            ))
        }
    }
}

/// A summary from what a provider read and what the collector counted.
fn summary(
    provider: ChatProvider,
    session_id: String,
    title: Option<String>,
    cwd: Option<String>,
    updated_at_ms: Option<u64>,
    collector: &Collector,
    path: &Path,
) -> ChatSummary {
    let title = title
        .map(|t| title_of(&t))
        .filter(|t| !t.is_empty())
        .or_else(|| collector.first_user_text.clone())
        .unwrap_or_default();
    ChatSummary {
        provider,
        resumable: provider.resumable(),
        session_id,
        title,
        cwd,
        updated_at_ms,
        messages: collector.conversational,
        path: path.display().to_string(),
    }
}

/// Reads a JSONL transcript through the gate, handing each line (`None`: not JSON) and the
/// collector to `parse`; `None` when the gate refused it or it could not be read (recorded).
fn read_jsonl(
    scan: &mut Scan<'_>,
    provider: ChatProvider,
    path: &Path,
    mut collector: Collector,
    mut parse: impl FnMut(Option<serde_json::Value>, &mut Collector),
) -> Option<(Collector, std::fs::Metadata)> {
    let (file, metadata, _) = scan.open(provider, path)?;
    if let Err(e) = for_each_json_line(file, |line| parse(line, &mut collector)) {
        scan.skip(provider, path, format!("cannot read: {e}"));
        return None;
    }
    Some((collector, metadata))
}

/// Opens a provider's SQLite database through the gate, read-only: no write, no journal, no
/// lock that holds the application up (it may be running). A database in WAL mode whose shared
/// memory file a read-only connection cannot make is opened `immutable` instead (what its
/// write-ahead log holds beyond the last checkpoint is then not seen). `None` when the gate
/// refused it or it is not a readable database (recorded).
fn open_database(
    scan: &mut Scan<'_>,
    provider: ChatProvider,
    path: &Path,
) -> Option<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    // The gate approves (and the identity check judges) the file; SQLite opens the same path.
    let (_file, _metadata, approved) = scan.open(provider, path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let check = |connection: rusqlite::Connection| {
        connection.busy_timeout(std::time::Duration::from_millis(500))?;
        connection.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok::<_, rusqlite::Error>(connection)
    };
    let first = rusqlite::Connection::open_with_flags(&approved, flags).and_then(check);
    let error = match first {
        Ok(connection) => return Some(connection),
        Err(error) => error,
    };
    let uri = format!(
        "file:{}?immutable=1",
        approved
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23")
    );
    match rusqlite::Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI)
        .and_then(check)
    {
        Ok(connection) => Some(connection),
        Err(_) => {
            scan.skip(
                provider,
                path,
                format!("not a readable SQLite database: {error}"),
            );
            None
        }
    }
}
