//! Autonomous tasks end to end: `fleetctl task run -t SELECTOR` runs one prompt with each
//! targeted host's AI CLI (here a stand-in `claude` first on the nodes' PATH that replays a
//! recorded stream and writes down its argv): per-host records, identical answers folded, each
//! host's mode mapped onto the provider's, a `disabled` host refused; `task list` then shows the
//! record on the host.

use remote_agents_tests::fleet::{NodeSpec, TestFleet};

/// A folder holding the stand-in `claude`: it writes its argv to `$HOME/claude-argv` (each node
/// has its own HOME) and replays the recorded successful run.
fn stand_in() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../node/tests/fixtures/tasks/claude-success.jsonl");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$HOME/claude-argv\"\ncat > /dev/null\ncat {}\n",
        fixture.display()
    );
    let path = dir.path().join("claude");
    std::fs::write(&path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

#[tokio::test]
async fn a_task_runs_on_many_hosts_in_each_hosts_mode_and_folds() -> anyhow::Result<()> {
    let bin = stand_in()?;
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let nodes = [
        NodeSpec::new("ai-1", &["ai"], "plan").with_env("PATH", &path),
        NodeSpec::new("ai-2", &["ai"], "edit").with_env("PATH", &path),
        NodeSpec::new("ai-3", &["ai"], "disabled").with_env("PATH", &path),
    ];
    let fleet = TestFleet::start(&nodes).await?;
    let (code, records) = fleet
        .fleetctl_json(&[
            "task",
            "run",
            "-t",
            "ai",
            "--provider",
            "claude",
            "--max-turns",
            "5",
            "Why does the div_by_zero test fail?",
        ])
        .await?;
    assert_eq!(code, 1, "ai-3 is disabled: {records:?}");
    let answer = "The test `div_by_zero` unwraps `div(1, 0)`, which is `None` by design: the \
                  function is right and the test is wrong. It should assert `div(1, 0) == None`.\n";
    for host in ["ai-1", "ai-2"] {
        let record = &records[host];
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(record["stdout"], answer, "{record}");
        let detail = record["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("done · 3 turns")
                && detail.contains("session 5f0f7c1e-2b7a-4d62-9a51-0c9b1f3e7a10"),
            "{detail}"
        );
    }
    let refused = &records["ai-3"];
    assert_ne!(refused["status"], "ok");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled"),
        "{refused}"
    );
    // Each host started the provider in its own mode.
    let argv = |host: &str| {
        std::fs::read_to_string(
            fleet
                .dir
                .path()
                .join("nodes")
                .join(host)
                .join("claude-argv"),
        )
        .unwrap_or_default()
    };
    assert!(
        argv("ai-1").contains("--permission-mode\nplan\n"),
        "{}",
        argv("ai-1")
    );
    assert!(
        argv("ai-2").contains("--permission-mode\nacceptEdits\n"),
        "{}",
        argv("ai-2")
    );
    assert!(argv("ai-1").contains("--max-turns\n5\n"));
    assert!(
        argv("ai-3").is_empty(),
        "the disabled host started its provider"
    );

    // The text view folds the two identical answers into one group.
    let (_, text, _) = fleet
        .fleetctl(&[
            "task",
            "run",
            "-t",
            "ai&!name:ai-3",
            "--provider",
            "claude",
            "Why does the div_by_zero test fail?",
        ])
        .await?;
    assert!(text.contains("ai-[1-2]"), "{text}");

    // The host keeps the records: task list shows both runs, newest first.
    let (code, records) = fleet
        .fleetctl_json(&["task", "list", "-t", "name:ai-1"])
        .await?;
    assert_eq!(code, 0);
    let list: serde_json::Value =
        serde_json::from_str(records["ai-1"]["stdout"].as_str().unwrap())?;
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{list}");
    assert_eq!(tasks[0]["state"], "done");
    assert_eq!(tasks[0]["mode"], "plan (claude --permission-mode plan)");
    Ok(())
}

/// Over MCP: a waiting `task_dispatch` reports progress per turn, and cancelling the call
/// stops the task — the provider's whole process group is killed and the record reads
/// `cancelled` with its session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_reports_progress_per_turn_and_cancelling_kills_it() -> anyhow::Result<()> {
    use remote_agents_tests::node::McpProcess;
    use serde_json::json;
    use std::time::Duration;

    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../node/tests/fixtures/tasks/claude-hang.jsonl");
    let pid_file = tmp.path().join("sleep.pid");
    let script = format!(
        "#!/bin/sh\ncat > /dev/null\ncat {}\nsleep 600 &\necho $! > {}\nwait\n",
        fixture.display(),
        pid_file.display()
    );
    std::fs::write(bin.join("claude"), script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("claude"), std::fs::Permissions::from_mode(0o755))?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let data = tmp.path().join("data").display().to_string();
    let mut node = McpProcess::start(
        &["--data-dir", &data, "--toolsets", "core,tasks"],
        &[("PATH", &path)],
    )
    .await?;
    let id = node
        .send(
            "tools/call",
            json!({
                "name": "task_dispatch",
                "arguments": {"provider": "claude", "prompt": "sleep on it", "wait": true},
                "_meta": {"progressToken": "task"},
            }),
        )
        .await?;
    loop {
        let message = node.next_message(Duration::from_secs(20)).await?;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "task");
            assert_eq!(message["params"]["message"], "claude turn 1", "{message}");
            break;
        }
        assert!(
            message.get("id") != Some(&json!(id)),
            "the task ended early: {message}"
        );
    }
    let mut pid = String::new();
    for _ in 0..500 {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if !pid.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let proc = format!("/proc/{}", pid.trim());
    assert!(
        std::path::Path::new(&proc).exists(),
        "the provider's child is not running"
    );
    node.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the task was not stopped"
        );
        let result = node.call_tool("task_list", json!({})).await?;
        let text = result["structuredContent"].clone();
        if text["tasks"][0]["state"] != "running" {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(listed["tasks"][0]["state"], "cancelled", "{listed}");
    assert_eq!(
        listed["tasks"][0]["session_id"],
        "c0ffee00-1111-4222-8333-444455556666"
    );
    // The sleep the provider started is gone (or a zombie awaiting its new parent).
    let gone = std::fs::read_to_string(format!("{proc}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true);
    assert!(gone, "the provider's child survived the cancel");
    Ok(())
}

/// A node killed (SIGKILL) while its task runs: started again on the same data dir, the task
/// reads `interrupted` with the provider's session id to resume it by, and is not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_interrupted_by_a_node_crash_reads_interrupted_with_its_session()
-> anyhow::Result<()> {
    use remote_agents_tests::node::McpProcess;
    use serde_json::json;
    use std::time::Duration;

    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../node/tests/fixtures/tasks/claude-hang.jsonl");
    let runs = tmp.path().join("runs");
    let pid_file = tmp.path().join("sleep.pid");
    // Each start of the provider adds a line to `runs`: a rerun after the crash would show.
    let script = format!(
        "#!/bin/sh\necho run >> {}\ncat > /dev/null\ncat {}\nsleep 600 &\necho $! > {}\nwait\n",
        runs.display(),
        fixture.display(),
        pid_file.display()
    );
    std::fs::write(bin.join("claude"), script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("claude"), std::fs::Permissions::from_mode(0o755))?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let data = tmp.path().join("data").display().to_string();
    let args = ["--data-dir", data.as_str(), "--toolsets", "core,tasks"];
    let mut node = McpProcess::start(&args, &[("PATH", &path)]).await?;
    let started = node
        .call_tool(
            "task_dispatch",
            json!({"provider": "claude", "prompt": "sleep on it"}),
        )
        .await?;
    let task_id = started["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until the record carries the session the provider named.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "no session recorded");
        let got = node
            .call_tool("task_get", json!({"task_id": task_id}))
            .await?;
        if got["structuredContent"]["session_id"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.child.kill().await?;
    // What the crash left running of the provider is not the node's any more.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    let mut node = McpProcess::start(&args, &[("PATH", &path)]).await?;
    let got = node
        .call_tool("task_get", json!({"task_id": task_id}))
        .await?;
    let record = &got["structuredContent"];
    assert_eq!(record["state"], "interrupted", "{record}");
    assert_eq!(record["session_id"], "c0ffee00-1111-4222-8333-444455556666");
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not run again"),
        "{record}"
    );
    assert_eq!(std::fs::read_to_string(&runs)?.lines().count(), 1);
    Ok(())
}
