//! Claude Code's chats: `~/.claude/projects/<the cwd with `/` as `-`>/<session id>.jsonl`, one
//! JSON object a line. `type` `user` and `assistant` lines carry a `message` (`role`, `content`:
//! a string or blocks — `text`, `tool_use` with `name` and `input`, `tool_result` with
//! `tool_use_id` and `content`), a `timestamp`, the `sessionId` and the `cwd`; `summary` lines
//! carry the title Claude Code gave the chat. The file's name is the session id that
//! `claude --resume` (and so `task_dispatch` `resume`) takes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use remote_agents_ops::{ChatProvider, ChatSummary};
use serde_json::Value;

use super::{
    ChatSources, Collector, Found, Scan, files_in, folders_in, modified_ms, parse_time_ms,
    read_jsonl, summary, text_of_content, tool_text,
};

const PROVIDER: ChatProvider = ChatProvider::Claude;

fn projects(sources: &ChatSources) -> PathBuf {
    sources.claude_home.join("projects")
}

/// Every transcript file: `*.jsonl` one folder down.
fn transcripts(sources: &ChatSources) -> Vec<PathBuf> {
    folders_in(&projects(sources))
        .into_iter()
        .flat_map(|folder| files_in(&folder))
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .collect()
}

pub(super) fn list(scan: &mut Scan<'_>, sources: &ChatSources, chats: &mut Vec<Found>) {
    for path in transcripts(sources) {
        if let Some((chat, _)) = read(scan, &path, Collector::counting()) {
            chats.push(chat);
        }
    }
}

pub(super) fn get(
    scan: &mut Scan<'_>,
    sources: &ChatSources,
    session_id: &str,
    collector: Collector,
) -> Option<(ChatSummary, Collector)> {
    let name = format!("{session_id}.jsonl");
    let path = folders_in(&projects(sources))
        .into_iter()
        .map(|folder| folder.join(&name))
        .find(|p| p.is_file())?;
    read(scan, &path, collector)
}

/// What the lines of one transcript say beyond its messages.
#[derive(Default)]
struct Meta {
    json_lines: usize,
    summary: Option<String>,
    cwd: Option<String>,
    /// Tool names by their call id, to label the results.
    tools: HashMap<String, String>,
}

fn read(
    scan: &mut Scan<'_>,
    path: &Path,
    collector: Collector,
) -> Option<(ChatSummary, Collector)> {
    let mut meta = Meta::default();
    let (collector, metadata) = read_jsonl(scan, PROVIDER, path, collector, |line, collector| {
        if let Some(line) = line.filter(Value::is_object) {
            meta.json_lines += 1;
            parse_line(&line, &mut meta, collector);
        }
    })?;
    if meta.json_lines == 0 {
        scan.skip(
            PROVIDER,
            path,
            "not a Claude Code transcript: no line is a JSON object",
        );
        return None;
    }
    if collector.total == 0 && meta.summary.is_none() {
        // Only bookkeeping lines (a file-history snapshot): no chat to show.
        return None;
    }
    let session_id = path.file_stem()?.to_string_lossy().into_owned();
    let chat = summary(
        PROVIDER,
        session_id,
        meta.summary,
        meta.cwd,
        collector
            .last_timestamp_ms
            .or_else(|| modified_ms(&metadata)),
        &collector,
        path,
    );
    Some((chat, collector))
}

fn parse_line(line: &Value, meta: &mut Meta, collector: &mut Collector) {
    let kind = line.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "summary" {
        if meta.summary.is_none() {
            meta.summary = line
                .get("summary")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        return;
    }
    if kind != "user" && kind != "assistant" {
        return;
    }
    if meta.cwd.is_none() {
        meta.cwd = line.get("cwd").and_then(Value::as_str).map(str::to_string);
    }
    // Claude Code's own notes to the model (command caveats), not what anyone wrote.
    if line.get("isMeta").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(message) = line.get("message") else {
        return;
    };
    let at = line
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_time_ms);
    let role = message.get("role").and_then(Value::as_str).unwrap_or(kind);
    let content = message.get("content").unwrap_or(&Value::Null);
    collector.push(role, &text_of_content(content), at, None);
    for block in content.as_array().into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).unwrap_or("tool");
                if let Some(id) = block.get("id").and_then(Value::as_str) {
                    meta.tools.insert(id.to_string(), name.to_string());
                }
                let input = block.get("input").map(tool_text).unwrap_or_default();
                collector.push("tool", &input, at, Some(name));
            }
            Some("tool_result") => {
                let name = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .and_then(|id| meta.tools.get(id))
                    .map_or("tool", String::as_str)
                    .to_string();
                let output = block.get("content").map(tool_text).unwrap_or_default();
                collector.push("tool", &output, at, Some(&name));
            }
            _ => {}
        }
    }
}
