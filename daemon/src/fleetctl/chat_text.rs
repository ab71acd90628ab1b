//! How `fleetctl chat` shows a host's answer as text: a page of chats as a table, one chat as
//! its transcript. The host answers with JSON (kept as is by `-o json`); this turns it into
//! what a person reads.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use remote_agents_node::fleet::{HostRecord, HostStatus};
use remote_agents_ops::{ChatGetResult, ChatListResult, Request};

/// Replaces an ok chat record's JSON output with its text; other records are left alone.
pub fn render(request: &Request, record: &mut HostRecord) {
    if record.status != HostStatus::Ok {
        return;
    }
    let text = match request {
        Request::ChatList(_) => serde_json::from_str::<ChatListResult>(&record.stdout)
            .ok()
            .map(|page| list_text(&page)),
        Request::ChatGet(_) => serde_json::from_str::<ChatGetResult>(&record.stdout)
            .ok()
            .map(|chat| get_text(&chat, &record.host)),
        _ => None,
    };
    if let Some(text) = text {
        record.stdout = text;
    }
}

/// Minutes are enough to tell chats apart in a list.
fn when(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => {
            let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
                .to_string();
            // 2025-03-05T12:00:00Z → 2025-03-05 12:00
            text.get(..16).unwrap_or(&text).replacen('T', " ", 1)
        }
        None => "-".repeat(16),
    }
}

pub fn list_text(page: &ChatListResult) -> String {
    let mut out = String::new();
    if page.chats.is_empty() {
        out.push_str("no chats\n");
    } else {
        let _ = writeln!(
            out,
            "{:<16}  {:<8}  {:<36}  {:>5}  TITLE",
            "UPDATED (UTC)", "PROVIDER", "SESSION", "MSGS"
        );
    }
    for chat in &page.chats {
        let _ = writeln!(
            out,
            "{:<16}  {:<8}  {:<36}  {:>5}  {}{}",
            when(chat.updated_at_ms),
            chat.provider.as_str(),
            chat.session_id,
            chat.messages,
            chat.title,
            if chat.resumable { "" } else { "  (read-only)" },
        );
    }
    let shown = page.chats.len();
    match page.next_offset {
        Some(next) => {
            let _ = writeln!(
                out,
                "{shown} of {} chats; the next page: --offset {next}",
                page.total
            );
        }
        None => {
            let _ = writeln!(out, "{shown} of {} chats", page.total);
        }
    }
    for skipped in &page.skipped {
        let _ = writeln!(
            out,
            "skipped {} {}: {}",
            skipped.provider, skipped.path, skipped.reason
        );
    }
    if page.skipped_more > 0 {
        let _ = writeln!(out, "skipped {} more", page.skipped_more);
    }
    if page.hidden > 0 {
        let _ = writeln!(
            out,
            "{} chat files hidden by the host's path policy",
            page.hidden
        );
    }
    out
}

pub fn get_text(chat: &ChatGetResult, host: &str) -> String {
    let summary = &chat.chat;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} · {} · {} messages{}",
        summary.provider,
        summary.session_id,
        summary.title,
        summary.messages,
        summary
            .cwd
            .as_deref()
            .map(|cwd| format!(" · {cwd}"))
            .unwrap_or_default()
    );
    if summary.resumable {
        let _ = writeln!(
            out,
            "continue it: fleetctl task run -t name:{host} --provider {} --resume {}{} PROMPT",
            summary.provider,
            summary.session_id,
            summary
                .cwd
                .as_deref()
                .map(|cwd| format!(" --cwd {cwd}"))
                .unwrap_or_default()
        );
    } else {
        out.push_str("read-only: this provider's chats cannot be continued from here\n");
    }
    for message in &chat.messages {
        let who = match &message.tool {
            Some(tool) => format!("{} {tool}", message.role),
            None => message.role.clone(),
        };
        let at = message
            .timestamp_ms
            .map(|ms| format!("[{}] ", when(Some(ms))))
            .unwrap_or_default();
        let _ = writeln!(out, "\n{at}{who}:\n{}", message.text);
    }
    let end = chat.next_offset.unwrap_or(chat.total_messages);
    let _ = write!(out, "\nmessages up to {end} of {}", chat.total_messages);
    if let Some(next) = chat.next_offset {
        let _ = write!(out, "; the next page: --offset {next}");
    }
    if chat.truncated {
        out.push_str(" (cut to the page's byte budget)");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use remote_agents_ops::{ChatMessage, ChatProvider, ChatSkipped, ChatSummary};

    use super::*;

    fn chat(provider: ChatProvider, session_id: &str, title: &str) -> ChatSummary {
        ChatSummary {
            provider,
            session_id: session_id.into(),
            title: title.into(),
            cwd: Some("/work/app".into()),
            updated_at_ms: Some(1_741_176_000_000),
            messages: 4,
            resumable: provider.resumable(),
            path: "/home/me/.claude/projects/-work-app/s.jsonl".into(),
        }
    }

    #[test]
    fn a_page_of_chats_reads_as_a_table_with_what_was_skipped() {
        let page = ChatListResult {
            chats: vec![
                chat(ChatProvider::Claude, "0b3c8a52", "Fix the login bug"),
                chat(ChatProvider::Zed, "5d8f4c2e", "Borrow error"),
            ],
            total: 3,
            next_offset: Some(2),
            skipped: vec![ChatSkipped {
                provider: ChatProvider::Codex,
                path: "/home/me/.codex/sessions/x.jsonl".into(),
                reason: "not a Codex rollout".into(),
            }],
            skipped_more: 0,
            hidden: 1,
        };
        assert_eq!(
            list_text(&page),
            "UPDATED (UTC)     PROVIDER  SESSION                                MSGS  TITLE\n\
             2025-03-05 12:00  claude    0b3c8a52                                  4  Fix the login bug\n\
             2025-03-05 12:00  zed       5d8f4c2e                                  4  Borrow error  (read-only)\n\
             2 of 3 chats; the next page: --offset 2\n\
             skipped codex /home/me/.codex/sessions/x.jsonl: not a Codex rollout\n\
             1 chat files hidden by the host's path policy\n"
        );
    }

    #[test]
    fn a_chat_reads_as_its_transcript_with_how_to_continue_it() {
        let result = ChatGetResult {
            chat: chat(ChatProvider::Claude, "0b3c8a52", "Fix the login bug"),
            messages: vec![
                ChatMessage {
                    role: "user".into(),
                    text: "Fix the login bug".into(),
                    timestamp_ms: Some(1_741_176_000_000),
                    tool: None,
                },
                ChatMessage {
                    role: "tool".into(),
                    text: "fn login() {}".into(),
                    timestamp_ms: None,
                    tool: Some("Read".into()),
                },
            ],
            total_messages: 5,
            next_offset: Some(2),
            truncated: false,
        };
        assert_eq!(
            get_text(&result, "web-1"),
            "claude 0b3c8a52 · Fix the login bug · 4 messages · /work/app\n\
             continue it: fleetctl task run -t name:web-1 --provider claude --resume 0b3c8a52 \
             --cwd /work/app PROMPT\n\
             \n[2025-03-05 12:00] user:\nFix the login bug\n\
             \ntool Read:\nfn login() {}\n\
             \nmessages up to 2 of 5; the next page: --offset 2\n"
        );
    }
}
