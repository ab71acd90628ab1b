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
