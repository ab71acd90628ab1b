//! opencode's chats: its SQLite database `$XDG_DATA_HOME/opencode/opencode.db` (by default
//! `~/.local/share/opencode/`), as its migrations make it: `session` (`id` — what
//! `opencode run --session` and so `task_dispatch` `resume` take — `title`, `directory`,
//! `time_created`, `time_updated` in milliseconds), `message` (`id`, `session_id`,
//! `time_created`, `data`: the message's JSON with its `role`) and `part` (`id`, `message_id`,
//! `session_id`, `data`: `{type: text, text}`, `{type: tool, tool, state: {input, output}}`, and
//! steps, reasoning and files, not shown). Any `opencode*.db` in that folder is read (opencode
//! names a database per release channel).

use std::path::{Path, PathBuf};

use remote_agents_ops::{ChatProvider, ChatSummary};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use super::{ChatSources, Collector, Found, Scan, files_in, open_database, tool_text};

const PROVIDER: ChatProvider = ChatProvider::Opencode;

fn databases(sources: &ChatSources) -> Vec<PathBuf> {
    files_in(&sources.data_home.join("opencode"))
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("opencode") && name.ends_with(".db")
        })
        .collect()
}

pub(super) fn list(scan: &mut Scan<'_>, sources: &ChatSources, chats: &mut Vec<Found>) {
    for path in databases(sources) {
        let Some(db) = open_database(scan, PROVIDER, &path) else {
            continue;
        };
        if let Err(e) = list_database(&db, &path, chats) {
            scan.skip(PROVIDER, &path, format!("not an opencode database: {e}"));
        }
    }
}

fn list_database(db: &Connection, path: &Path, chats: &mut Vec<Found>) -> rusqlite::Result<()> {
    let mut sessions = db.prepare(
        "SELECT s.id, s.title, s.directory, s.time_updated,
                (SELECT count(*) FROM message m WHERE m.session_id = s.id)
         FROM session s",
    )?;
    let rows = sessions.query_map([], |row| {
        Ok(ChatSummary {
            provider: PROVIDER,
            session_id: row.get(0)?,
            title: super::title_of(&row.get::<_, String>(1)?),
            cwd: row.get(2)?,
            updated_at_ms: row
                .get::<_, Option<i64>>(3)?
                .and_then(|t| u64::try_from(t).ok()),
            messages: row.get::<_, i64>(4)?.try_into().unwrap_or(0),
            resumable: PROVIDER.resumable(),
            path: path.display().to_string(),
        })
    })?;
    // Read them all before adding any: a database that fails halfway adds nothing.
    let found: Vec<ChatSummary> = rows.collect::<rusqlite::Result<_>>()?;
    chats.extend(found);
    Ok(())
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
        match read_session(&db, &path, session_id, &mut collector) {
            Ok(Some(chat)) => return Some((chat, collector)),
            Ok(None) => {}
            Err(e) => scan.skip(PROVIDER, &path, format!("not an opencode database: {e}")),
        }
    }
    None
}

fn read_session(
    db: &Connection,
    path: &Path,
    session_id: &str,
    collector: &mut Collector,
) -> rusqlite::Result<Option<ChatSummary>> {
    let Some((title, cwd, updated)) = db
        .query_row(
            "SELECT title, directory, time_updated FROM session WHERE id = ?1",
            [session_id],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut messages = db.prepare(
        "SELECT id, time_created, data FROM message WHERE session_id = ?1
         ORDER BY time_created, id",
    )?;
    let mut parts = db.prepare("SELECT data FROM part WHERE message_id = ?1 ORDER BY id")?;
    let mut rows = messages.query([session_id])?;
    while let Some(row) = rows.next()? {
        let message_id: String = row.get(0)?;
        let at = row
            .get::<_, Option<i64>>(1)?
            .and_then(|t| u64::try_from(t).ok());
        let data: Value = serde_json::from_str(&row.get::<_, String>(2)?).unwrap_or(Value::Null);
        let role = data
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("assistant")
            .to_string();
        let mut text = String::new();
        let mut part_rows = parts.query([&message_id])?;
        while let Some(part) = part_rows.next()? {
            let part: Value =
                serde_json::from_str(&part.get::<_, String>(0)?).unwrap_or(Value::Null);
            match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    }
                }
                Some("tool") => {
                    // What was written before the call comes before it.
                    collector.push(&role, &std::mem::take(&mut text), at, None);
                    let name = part.get("tool").and_then(Value::as_str).unwrap_or("tool");
                    let state = part.get("state").unwrap_or(&Value::Null);
                    let mut call = state.get("input").map(tool_text).unwrap_or_default();
                    let output = state
                        .get("output")
                        .or_else(|| state.get("error"))
                        .map(tool_text)
                        .unwrap_or_default();
                    if !output.is_empty() {
                        call.push_str("\n→ ");
                        call.push_str(&output);
                    }
                    collector.push("tool", &call, at, Some(name));
                }
                _ => {}
            }
        }
        collector.push(&role, &text, at, None);
    }
    let mut chat = super::summary(
        PROVIDER,
        session_id.to_string(),
        Some(title),
        cwd,
        updated.and_then(|t| u64::try_from(t).ok()),
        collector,
        path,
    );
    chat.messages = db.query_row(
        "SELECT count(*) FROM message WHERE session_id = ?1",
        [session_id],
        |row| Ok(row.get::<_, i64>(0)?.try_into().unwrap_or(0)),
    )?;
    Ok(Some(chat))
}
