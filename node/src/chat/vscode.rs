//! The chats of the VS Code agent extensions Cline (`saoudrizwan.claude-dev`), Roo Code
//! (`rooveterinaryinc.roo-cline`) and Kilo Code (`kilocode.kilo-code`): one folder per task in
//! the extension's global storage, `<config>/Code/User/globalStorage/<extension>/tasks/<task
//! id>/` (also under `Code - Insiders`, `VSCodium`, `Cursor` and `Windsurf`, under
//! `~/Library/Application Support` on macOS, and the Cline CLI's `~/.cline/data/tasks/`). A
//! task folder holds `api_conversation_history.json`, the messages sent to the model
//! (Anthropic style: `role`, `content` as a string or blocks, Roo adds `ts`), and
//! `ui_messages.json`, what the extension showed (`{ts, type: say|ask, say|ask, text}`, the first
//! `say: task` being the prompt). Neither extension can be continued from outside VS Code, so
//! their chats are read-only.

use std::path::{Path, PathBuf};

use remote_agents_ops::{ChatProvider, ChatSummary};
use serde_json::Value;

use super::{
    ChatSources, Collector, Found, Scan, folders_in, modified_ms, summary, text_of_content,
    tool_text,
};

/// The editors whose global storage the extensions may live in.
const EDITORS: [&str; 5] = ["Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf"];

fn extension_id(provider: ChatProvider) -> &'static str {
    match provider {
        ChatProvider::Roo => "rooveterinaryinc.roo-cline",
        ChatProvider::Kilo => "kilocode.kilo-code",
        _ => "saoudrizwan.claude-dev",
    }
}

/// Every folder that holds `provider`'s task folders.
fn task_roots(sources: &ChatSources, provider: ChatProvider) -> Vec<PathBuf> {
    let config_roots = [
        sources.config_home.clone(),
        sources.home.join("Library/Application Support"),
    ];
    let mut roots: Vec<PathBuf> = config_roots
        .iter()
        .flat_map(|config| EDITORS.iter().map(move |editor| config.join(editor)))
        .map(|editor| {
            editor
                .join("User/globalStorage")
                .join(extension_id(provider))
                .join("tasks")
        })
        .collect();
    if provider == ChatProvider::Cline {
        roots.push(sources.home.join(".cline/data/tasks"));
    }
    roots
}

pub(super) fn list(
    scan: &mut Scan<'_>,
    sources: &ChatSources,
    provider: ChatProvider,
    chats: &mut Vec<Found>,
) {
    for root in task_roots(sources, provider) {
        for folder in folders_in(&root) {
            if let Some((chat, _)) = read(scan, provider, &folder, Collector::counting()) {
                chats.push(chat);
            }
        }
    }
}

pub(super) fn get(
    scan: &mut Scan<'_>,
    sources: &ChatSources,
    provider: ChatProvider,
    session_id: &str,
    collector: Collector,
) -> Option<(ChatSummary, Collector)> {
    let folder = task_roots(sources, provider)
        .into_iter()
        .map(|root| root.join(session_id))
        .find(|folder| folder.is_dir())?;
    read(scan, provider, &folder, collector)
}

/// The prompt inside Cline's `<task>…</task>` wrapping of the first user message.
fn unwrap_task(text: &str) -> &str {
    let trimmed = text.trim_start();
    match trimmed.strip_prefix("<task>") {
        Some(rest) => rest.split("</task>").next().unwrap_or(rest).trim(),
        None => text,
    }
}

fn read(
    scan: &mut Scan<'_>,
    provider: ChatProvider,
    folder: &Path,
    mut collector: Collector,
) -> Option<(ChatSummary, Collector)> {
    let history_path = folder.join("api_conversation_history.json");
    let ui_path = folder.join("ui_messages.json");
    let history = scan.read_json(provider, &history_path);
    let ui = scan.read_json(provider, &ui_path);
    // A folder with neither file readable is not a chat (or was skipped with its reason).
    let (shown_path, metadata) = match (&history, &ui) {
        (Some(_), _) => (&history_path, std::fs::symlink_metadata(&history_path).ok()),
        (None, Some(_)) => (&ui_path, std::fs::symlink_metadata(&ui_path).ok()),
        (None, None) => return None,
    };
    let ui_messages: &[Value] = ui
        .as_ref()
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let history_messages = history.as_ref().and_then(Value::as_array);
    if history.is_some() && history_messages.is_none() {
        scan.skip(
            provider,
            &history_path,
            "not a task history: the JSON is not an array of messages",
        );
        return None;
    }
    let title = ui_messages
        .iter()
        .find(|m| m.get("say").and_then(Value::as_str) == Some("task"))
        .and_then(|m| m.get("text").and_then(Value::as_str))
        .map(str::to_string);
    let last_ui_ts = ui_messages
        .iter()
        .filter_map(|m| m.get("ts").and_then(Value::as_u64))
        .max();
    match history_messages {
        Some(messages) => {
            for message in messages {
                push_api_message(message, &mut collector);
            }
        }
        None => {
            for message in ui_messages {
                push_ui_message(message, &mut collector);
            }
        }
    }
    let session_id = folder.file_name()?.to_string_lossy().into_owned();
    let updated = last_ui_ts
        .or(collector.last_timestamp_ms)
        .or_else(|| metadata.as_ref().and_then(modified_ms));
    let title = title.or_else(|| {
        collector
            .first_user_text
            .as_deref()
            .map(|t| unwrap_task(t).to_string())
    });
    let chat = summary(
        provider, session_id, title, None, updated, &collector, shown_path,
    );
    Some((chat, collector))
}

/// One message of `api_conversation_history.json`.
fn push_api_message(message: &Value, collector: &mut Collector) {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let at = message.get("ts").and_then(Value::as_u64);
    let content = message.get("content").unwrap_or(&Value::Null);
    let text = text_of_content(content);
    let text = if role == "user" {
        unwrap_task(&text)
    } else {
        &text
    };
    collector.push(role, text, at, None);
    for block in content.as_array().into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).unwrap_or("tool");
                let input = block.get("input").map(tool_text).unwrap_or_default();
                collector.push("tool", &input, at, Some(name));
            }
            Some("tool_result") => {
                let output = block.get("content").map(tool_text).unwrap_or_default();
                collector.push("tool", &output, at, Some("tool"));
            }
            _ => {}
        }
    }
}

/// One message of `ui_messages.json`, where there is no API history.
fn push_ui_message(message: &Value, collector: &mut Collector) {
    let at = message.get("ts").and_then(Value::as_u64);
    let text = message.get("text").and_then(Value::as_str).unwrap_or("");
    let say = message.get("say").and_then(Value::as_str);
    let ask = message.get("ask").and_then(Value::as_str);
    match (say, ask) {
        (Some("task" | "user_feedback"), _) => collector.push("user", text, at, None),
        (Some("text" | "completion_result"), _) | (_, Some("followup" | "completion_result")) => {
            collector.push("assistant", text, at, None)
        }
        (Some("tool" | "command" | "command_output"), _) | (_, Some("tool" | "command")) => {
            collector.push("tool", text, at, Some(say.or(ask).unwrap_or("tool")))
        }
        _ => {}
    }
}
