//! Codex CLI's chats: `~/.codex/sessions/YYYY/MM/DD/rollout-<time>-<session id>.jsonl` (and
//! `~/.codex/archived_sessions/`), which newer Codex versions compress to `.jsonl.zst`. Each line
//! is `{timestamp, type, payload}`: the first `session_meta` (`payload.id`, the session id
//! `codex exec resume` and so `task_dispatch` `resume` take; `payload.cwd`), then
//! `response_item`s — `message` (`role`, `content` of `input_text`/`output_text` blocks),
//! `function_call` (`name`, `arguments`), `function_call_output` (`call_id`, `output`) and
//! others — beside `event_msg`s that repeat them for the interface. Older rollouts have no
//! envelope: a first line `{id, timestamp, …}` and the items themselves. The user messages Codex
//! writes itself (`<environment_context>`, the AGENTS.md instructions) and `developer` messages
//! are not shown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use remote_agents_ops::{ChatProvider, ChatSummary};
use serde_json::Value;

use super::{
    ChatSources, Collector, Found, Scan, files_in, folders_in, for_each_json_line, modified_ms,
    parse_time_ms, summary, text_of_content, tool_text,
};

const PROVIDER: ChatProvider = ChatProvider::Codex;

/// Every rollout file: three folders down in `sessions`, directly in `archived_sessions`.
fn rollouts(sources: &ChatSources) -> Vec<PathBuf> {
    let codex = &sources.codex_home;
    let mut found: Vec<PathBuf> = folders_in(&codex.join("sessions"))
        .iter()
        .flat_map(|year| folders_in(year))
        .flat_map(|month| folders_in(&month))
        .flat_map(|day| files_in(&day))
        .collect();
    found.extend(files_in(&codex.join("archived_sessions")));
    found.retain(|path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("rollout-") && (name.ends_with(".jsonl") || name.ends_with(".jsonl.zst"))
    });
    found
}

/// The session id a rollout's name ends with (`rollout-2025-05-07T17-24-21-<uuid>.jsonl`).
fn id_in_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".jsonl.zst")
        .or_else(|| name.strip_suffix(".jsonl"))?;
    let id = stem.get(stem.len().checked_sub(36)?..)?;
    (id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4).then(|| id.to_string())
}

pub(super) fn list(scan: &mut Scan<'_>, sources: &ChatSources, chats: &mut Vec<Found>) {
    for path in rollouts(sources) {
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
    let path = rollouts(sources)
        .into_iter()
        .find(|p| id_in_name(p).as_deref() == Some(session_id))?;
    read(scan, &path, collector)
}

#[derive(Default)]
struct Meta {
    json_lines: usize,
    session_id: Option<String>,
    cwd: Option<String>,
    tools: HashMap<String, String>,
}

fn read(
    scan: &mut Scan<'_>,
    path: &Path,
    mut collector: Collector,
) -> Option<(ChatSummary, Collector)> {
    let (file, metadata, _) = scan.open(PROVIDER, path)?;
    let mut meta = Meta::default();
    let mut each = |line: Option<Value>| {
        if let Some(line) = line.filter(Value::is_object) {
            meta.json_lines += 1;
            parse_line(&line, &mut meta, &mut collector);
        }
    };
    let compressed = path.extension().is_some_and(|e| e == "zst");
    let read = if compressed {
        zstd::Decoder::new(file).and_then(|decoder| for_each_json_line(decoder, &mut each))
    } else {
        for_each_json_line(file, &mut each)
    };
    if let Err(e) = read {
        scan.skip(PROVIDER, path, format!("cannot read: {e}"));
        return None;
    }
    if meta.json_lines == 0 {
        scan.skip(
            PROVIDER,
            path,
            "not a Codex rollout: no line is a JSON object",
        );
        return None;
    }
    let Some(session_id) = meta.session_id.take().or_else(|| id_in_name(path)) else {
        scan.skip(
            PROVIDER,
            path,
            "not a Codex rollout: no session_meta line and no session id in its name",
        );
        return None;
    };
    let chat = summary(
        PROVIDER,
        session_id,
        None,
        meta.cwd,
        collector
            .last_timestamp_ms
            .or_else(|| modified_ms(&metadata)),
        &collector,
        path,
    );
    Some((chat, collector))
}

/// Text Codex puts into the user's turn itself.
fn injected(text: &str) -> bool {
    let text = text.trim_start();
    text.starts_with("<environment_context>")
        || text.starts_with("<user_instructions>")
        || text.starts_with("# AGENTS.md instructions")
}

fn parse_line(line: &Value, meta: &mut Meta, collector: &mut Collector) {
    let at = line
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_time_ms);
    let (kind, item) = match line.get("type").and_then(Value::as_str) {
        Some("session_meta") => {
            let payload = line.get("payload").unwrap_or(&Value::Null);
            meta.session_id = payload
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string);
            meta.cwd = payload
                .get("cwd")
                .and_then(Value::as_str)
                .map(str::to_string);
            return;
        }
        Some("response_item") => {
            let payload = line.get("payload").unwrap_or(&Value::Null);
            (payload.get("type").and_then(Value::as_str), payload)
        }
        // An older rollout: the items themselves.
        Some(kind) => (Some(kind), line),
        None => {
            // An older rollout's first line: `{id, timestamp, instructions}`.
            if meta.session_id.is_none()
                && let Some(id) = line.get("id").and_then(Value::as_str)
            {
                meta.session_id = Some(id.to_string());
            }
            return;
        }
    };
    match kind {
        Some("message") => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("");
            if role != "user" && role != "assistant" {
                return;
            }
            let text = text_of_content(item.get("content").unwrap_or(&Value::Null));
            if role == "user" && injected(&text) {
                return;
            }
            collector.push(role, &text, at, None);
        }
        Some("function_call" | "custom_tool_call") => {
            let name = item.get("name").and_then(Value::as_str).unwrap_or("tool");
            if let Some(id) = item.get("call_id").and_then(Value::as_str) {
                meta.tools.insert(id.to_string(), name.to_string());
            }
            let input = item
                .get("arguments")
                .or_else(|| item.get("input"))
                .map(tool_text)
                .unwrap_or_default();
            collector.push("tool", &input, at, Some(name));
        }
        Some("function_call_output" | "custom_tool_call_output") => {
            let name = item
                .get("call_id")
                .and_then(Value::as_str)
                .and_then(|id| meta.tools.get(id))
                .map_or("tool", String::as_str)
                .to_string();
            let output = match item.get("output") {
                Some(Value::Object(o)) => o.get("content").map(tool_text).unwrap_or_default(),
                Some(other) => tool_text(other),
                None => String::new(),
            };
            collector.push("tool", &output, at, Some(&name));
        }
        _ => {}
    }
}
