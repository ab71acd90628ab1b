//! The chat history end to end: a Claude Code transcript in a node user's home is listed by
//! `fleetctl chat list HOST` (as a table, and as the host's JSON with `--json`) with the session
//! id `task_dispatch` resumes, and read back by `fleetctl chat get HOST claude SESSION`.

use remote_agents_tests::fleet::{NodeSpec, TestFleet};
use serde_json::json;

const SESSION: &str = "0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411";

#[tokio::test]
async fn a_hosts_claude_chat_is_listed_and_read_through_fleetctl() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&[NodeSpec::new("chat-1", &["ai"], "plan")]).await?;
    let home = fleet.dir.path().join("nodes").join("chat-1");
    let transcript = home
        .join(".claude/projects/-work-app")
        .join(format!("{SESSION}.jsonl"));
    std::fs::create_dir_all(transcript.parent().unwrap())?;
    let lines = [
        json!({"type": "user", "sessionId": SESSION, "cwd": "/work/app",
               "timestamp": "2025-03-01T10:00:00.000Z",
               "message": {"role": "user", "content": "Why is the disk full?"}}),
        json!({"type": "assistant", "sessionId": SESSION, "timestamp": "2025-03-01T10:00:09.000Z",
               "message": {"role": "assistant",
                           "content": [{"type": "text", "text": "/var/log holds 40 GB of journal."}]}}),
    ];
    std::fs::write(
        &transcript,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )?;

    let (code, records) = fleet.fleetctl_json(&["chat", "list", "chat-1"]).await?;
    assert_eq!(code, 0, "{records:?}");
    let page: serde_json::Value =
        serde_json::from_str(records["chat-1"]["stdout"].as_str().unwrap())?;
    assert_eq!(page["total"], 1, "{page}");
    let chat = &page["chats"][0];
    assert_eq!(chat["provider"], "claude");
    assert_eq!(chat["session_id"], SESSION);
    assert_eq!(chat["title"], "Why is the disk full?");
    assert_eq!(chat["cwd"], "/work/app");
    assert_eq!(chat["resumable"], true);
    assert_eq!(chat["messages"], 2);

    let (code, text, stderr) = fleet.fleetctl(&["chat", "list", "-t", "ai"]).await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(&format!(
            "2025-03-01 10:00  claude    {SESSION}      2  Why is the disk full?"
        )),
        "{text}"
    );

    let (code, json_text, stderr) = fleet
        .fleetctl(&["chat", "get", "chat-1", "claude", SESSION, "--json"])
        .await?;
    assert_eq!(code, 0, "{stderr}");
    let job: serde_json::Value = serde_json::from_str(&json_text)?;
    let got: serde_json::Value =
        serde_json::from_str(job["records"][0]["stdout"].as_str().unwrap())?;
    assert_eq!(got["total_messages"], 2);
    assert_eq!(got["messages"][1]["role"], "assistant");
    assert_eq!(
        got["messages"][1]["text"],
        "/var/log holds 40 GB of journal."
    );

    let (code, text, stderr) = fleet
        .fleetctl(&["chat", "get", "chat-1", "claude", SESSION])
        .await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(&format!(
            "continue it: fleetctl task run -t name:chat-1 --provider claude --resume {SESSION} \
             --cwd /work/app PROMPT"
        )),
        "{text}"
    );
    assert!(
        text.contains("[2025-03-01 10:00] assistant:\n/var/log holds 40 GB of journal."),
        "{text}"
    );

    // An unknown session is the host's failure, naming it.
    let (code, records) = fleet
        .fleetctl_json(&["chat", "get", "chat-1", "codex", SESSION])
        .await?;
    assert_eq!(code, 1);
    let error = records["chat-1"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("no codex chat"), "{error}");
    Ok(())
}
