//! Zed's agent threads: the SQLite database `$XDG_DATA_HOME/zed/threads/threads.db` (by default
//! `~/.local/share/zed/`; `~/Library/Application Support/Zed/` on macOS), table `threads` (`id`,
//! `summary`, `updated_at` as RFC 3339 text, `data_type` `json` or `zstd`, `data`: the thread's
//! JSON, zstd-compressed when `data_type` says so). The JSON is Zed's `DbThread` (version 0.3:
//! `messages` of `{"User": {content: [{"Text": …}, {"Mention": …}]}}` and
//! `{"Agent": {content: [{"Text": …}, {"ToolUse": {name, input}}], tool_results}}`) or the older
//! `SerializedThread` (0.1, 0.2: `{role, segments: [{type: text, text}], tool_uses,
//! tool_results}`). Zed threads cannot be continued from outside Zed: they are read-only.

use std::io::Read;
use std::path::{Path, PathBuf};

use remote_agents_ops::{ChatProvider, ChatSummary};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use super::{
    ChatSources, Collector, Found, MAX_JSON_FILE, Scan, open_database, parse_time_ms, summary,
    tool_text,
};

const PROVIDER: ChatProvider = ChatProvider::Zed;

fn databases(sources: &ChatSources) -> Vec<PathBuf> {
    [
        sources.data_home.join("zed/threads/threads.db"),
        sources
            .home
            .join("Library/Application Support/Zed/threads/threads.db"),
    ]
    .into_iter()
    .filter(|p| std::fs::symlink_metadata(p).is_ok())
    .collect()
}

/// One row of `threads`.
struct Row {
    id: String,
    summary: String,
    updated_at: String,
    data_type: String,
    data: Vec<u8>,
}

const COLUMNS: &str = "SELECT id, summary, updated_at, data_type, data FROM threads";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        summary: r.get(1)?,
        updated_at: r.get(2)?,
        data_type: r.get(3)?,
        // Zed writes a blob; a text value (a thread written as json by hand) reads the same.
        data: match r.get_ref(4)? {
            rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
            rusqlite::types::ValueRef::Text(t) => t.to_vec(),
            _ => Vec::new(),
        },
    })
}

/// A thread's JSON, decompressed within `MAX_JSON_FILE` bytes.
fn thread_json(row: &Row) -> Result<Value, String> {
    let bytes = match row.data_type.as_str() {
        "json" => row.data.clone(),
        "zstd" => {
            let mut out = Vec::new();
            zstd::Decoder::new(row.data.as_slice())
                .map_err(|e| format!("cannot decompress: {e}"))?
                .take(MAX_JSON_FILE + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot decompress: {e}"))?;
            if out.len() as u64 > MAX_JSON_FILE {
                return Err(format!("larger than {MAX_JSON_FILE} bytes decompressed"));
            }
            out
        }
        other => return Err(format!("unknown data_type {other:?}")),
    };
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
}

pub(super) fn list(scan: &mut Scan<'_>, sources: &ChatSources, chats: &mut Vec<Found>) {
    for path in databases(sources) {
        let Some(db) = open_database(scan, PROVIDER, &path) else {
            continue;
        };
        // One thread at a time: a database's compressed threads are never all held at once.
        let listed = db.prepare(COLUMNS).and_then(|mut statement| {
            let mut rows = statement.query([])?;
            while let Some(found) = rows.next()? {
                let found = row(found)?;
                let mut collector = Collector::counting();
                match read_thread(&found, &mut collector) {
                    Ok(()) => chats.push(chat_of(&found, &collector, &path)),
                    Err(reason) => {
                        scan.skip(PROVIDER, &path, format!("thread {}: {reason}", found.id))
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = listed {
            scan.skip(PROVIDER, &path, format!("not a Zed threads database: {e}"));
        }
    }
}

pub(super) fn get(
    scan: &mut Scan<'_>,
    sources: &ChatSources,
    session_id: &str,
    mut collector: Collector,
) -> Option<(ChatSummary, Collector)> {
    for path in databases(sources) {
        let Some(db) = open_database(scan, PROVIDER, &path) else {
            continue;
        };
        match one_row(&db, session_id) {
            Ok(Some(row)) => match read_thread(&row, &mut collector) {
                Ok(()) => return Some((chat_of(&row, &collector, &path), collector)),
                Err(reason) => scan.skip(PROVIDER, &path, format!("thread {}: {reason}", row.id)),
            },
            Ok(None) => {}
            Err(e) => scan.skip(PROVIDER, &path, format!("not a Zed threads database: {e}")),
        }
    }
    None
}

fn one_row(db: &Connection, id: &str) -> rusqlite::Result<Option<Row>> {
    db.query_row(&format!("{COLUMNS} WHERE id = ?1"), [id], row)
        .optional()
}

fn chat_of(row: &Row, collector: &Collector, path: &Path) -> ChatSummary {
    summary(
        PROVIDER,
        row.id.clone(),
        Some(row.summary.clone()),
        None,
        parse_time_ms(&row.updated_at),
        collector,
        path,
    )
}

fn read_thread(row: &Row, collector: &mut Collector) -> Result<(), String> {
    let thread = thread_json(row)?;
    let Some(messages) = thread.get("messages").and_then(Value::as_array) else {
        return Err("no messages array: not a Zed thread".into());
    };
    for message in messages {
        if let Some(user) = message.get("User") {
            collector.push("user", &zed_text(user), None, None);
        } else if let Some(agent) = message.get("Agent") {
            collector.push("assistant", &zed_text(agent), None, None);
            for block in agent
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(tool) = block.get("ToolUse") {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or("tool");
                    let input = tool.get("input").map(tool_text).unwrap_or_default();
                    collector.push("tool", &input, None, Some(name));
                }
            }
            for result in agent
                .get("tool_results")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.values())
            {
                let name = result
                    .get("tool_name")
                    .and_then(Value::as_str)
                    .unwrap_or("tool");
                let content = result.get("content").unwrap_or(&Value::Null);
                let text = content
                    .get("Text")
                    .and_then(Value::as_str)
                    .map_or_else(|| tool_text(content), str::to_string);
                collector.push("tool", &text, None, Some(name));
            }
        } else if let Some(role) = message.get("role").and_then(Value::as_str) {
            // The older SerializedThread.
            let text = message
                .get("segments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|s| s.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|s| s.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n");
            collector.push(role, &text, None, None);
            for tool in message
                .get("tool_uses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = tool.get("name").and_then(Value::as_str).unwrap_or("tool");
                let input = tool.get("input").map(tool_text).unwrap_or_default();
                collector.push("tool", &input, None, Some(name));
            }
        }
    }
    Ok(())
}

/// The text blocks of a version 0.3 message's `content` (`{"Text": …}`), joined.
fn zed_text(message: &Value) -> String {
    message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("Text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}
