//! The node end to end: the real `remote-agents mcp` over stdio, killed with SIGKILL in the
//! middle of 200 writes; every file must be exactly an old or a new version afterwards, and the
//! journal must report what a crash interrupted instead of running it again.

use std::path::Path;
use std::time::Duration;

use remote_agents_tests::node::{McpProcess, node_binary};
use serde_json::json;

const FILES: usize = 20;
const WRITES: usize = 200;
const BODY: usize = 64 * 1024;

/// Version `v` of file `f`: a header plus 64 KiB of one letter, so a torn mix is detectable.
fn content(file: usize, version: usize) -> String {
    let letter = (b'a' + (version % 26) as u8) as char;
    format!(
        "file {file} version {version}\n{}",
        letter.to_string().repeat(BODY)
    )
}

/// Returns the version a file holds, or why it is torn.
fn version_of(path: &Path, file: usize) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (header, body) = text
        .split_once('\n')
        .ok_or_else(|| format!("{}: no header ({} bytes)", path.display(), text.len()))?;
    let version: usize = header
        .strip_prefix(&format!("file {file} version "))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{}: bad header {header:?}", path.display()))?;
    if text != content(file, version) {
        return Err(format!(
            "{}: torn: header says version {version} but the body differs ({} bytes)",
            path.display(),
            body.len()
        ));
    }
    Ok(version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_writes_leaves_every_file_old_or_new() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = std::fs::canonicalize(tmp.path())?;
    let files = work.join("files");
    let data = work.join("data");
    std::fs::create_dir_all(&files)?;
    std::fs::write(
        work.join("config.toml"),
        format!("[policy]\nroots = [\"{}\"]\n", files.display()),
    )?;
    for f in 0..FILES {
        std::fs::write(files.join(format!("f{f}")), content(f, 0))?;
    }
    let data_arg = data.display().to_string();
    let config_arg = work.join("config.toml").display().to_string();
    // bypass: no backups, so the test measures the atomic write path itself.
    let args = [
        "--data-dir",
        data_arg.as_str(),
        "--config",
        config_arg.as_str(),
        "--mode",
        "bypass",
    ];
    let mut node = McpProcess::start(&args, &[]).await?;

    // Pipeline all 200 writes (10 versions of each of the 20 files), then kill the node once a
    // quarter of them have been answered, so many are in flight at the moment of the kill.
    for w in 0..WRITES {
        let (file, version) = (w % FILES, w / FILES + 1);
        node.send_tool(
            "write_file",
            json!({
                "path": files.join(format!("f{file}")).display().to_string(),
                "content": content(file, version),
            }),
        )
        .await?;
    }
    let mut answered = 0;
    while answered < WRITES / 4 {
        let response = node.next_response(Duration::from_secs(60)).await?;
        assert_eq!(
            response["result"]["isError"],
            json!(false),
            "a write failed: {response}"
        );
        answered += 1;
    }
    node.child.start_kill()?;
    let status = node.child.wait().await?;
    assert!(!status.success(), "the node should have died of SIGKILL");

    let mut versions = Vec::new();
    for f in 0..FILES {
        let version = version_of(&files.join(format!("f{f}")), f).map_err(anyhow::Error::msg)?;
        assert!(version <= WRITES / FILES, "file {f} has version {version}");
        versions.push(version);
    }
    assert!(
        versions.iter().any(|v| *v > 0),
        "no write landed before the kill: {versions:?}"
    );

    // After a restart the journal turns whatever was running into outcome_unknown (never a
    // silent re-run), and the audit log lists every request with its caller and decision.
    let records = audit_records(&[&["--limit", "1000"][..], &args[..]].concat())?;
    let ok = records.iter().filter(|r| r["result"] == "ok").count();
    assert!(
        ok >= answered,
        "{ok} ok records for {answered} answered writes"
    );
    assert!(records.iter().all(|r| r["caller"] == "mcp:local"));
    for r in records.iter().filter(|r| r["result"] == "outcome_unknown") {
        assert_eq!(r["decision"], "recovered after restart", "{r}");
    }

    // A write killed between its temp file and the rename left `.NAME.ra-tmp-*` beside its
    // file for good; the next start removes them, although `remote-agents audit` above was the
    // one that recovered the journal.
    let temp_files = || -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&files)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.contains(".ra-tmp-") {
                names.push(name);
            }
        }
        Ok(names)
    };
    let before = temp_files()?;
    eprintln!("temp files the kill left: {before:?}");
    let restarted = McpProcess::start(&args, &[]).await?;
    let after = temp_files()?;
    assert!(
        after.is_empty(),
        "temp files left after a restart: {after:?} (before it: {before:?})"
    );
    drop(restarted);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_refuses_writes_and_runs_exec_read_only_over_mcp() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = std::fs::canonicalize(tmp.path())?;
    let data = work.join("data").display().to_string();
    let target = work.join("x.txt").display().to_string();
    let mut node = McpProcess::start(&["--data-dir", &data, "--mode", "plan"], &[]).await?;
    let result = node
        .call_tool("write_file", json!({"path": target, "content": "no"}))
        .await?;
    assert_eq!(result["isError"], json!(true));
    assert!(result.to_string().contains("plan mode"), "{result}");
    // Commands run, inside the read-only sandbox: the write fails and nothing changes.
    let result = node
        .call_tool("exec", json!({"argv": ["touch", target]}))
        .await?;
    assert_eq!(result["isError"], json!(false), "{result}");
    assert_ne!(
        result["structuredContent"]["exit_code"],
        json!(0),
        "{result}"
    );
    assert!(!Path::new(&target).exists());
    let result = node.call_tool("list_agents", json!({})).await?;
    assert_eq!(result["isError"], json!(false));
    assert_eq!(result["structuredContent"]["agents"][0]["mode"], "plan");
    let result = node
        .call_tool(
            "exec",
            json!({"argv": ["true"], "agent_id": "someone-else"}),
        )
        .await?;
    assert_eq!(result["isError"], json!(true));
    assert!(
        result.to_string().contains("no relay connection"),
        "{result}"
    );

    // The audit log is readable while the node runs: who asked what, and the refusals.
    let records = audit_records(&["--data-dir", &data])?;
    // `-o json` is `--json`; `-o yaml` shows the same records.
    let output = |format: &str| -> anyhow::Result<String> {
        let audit = std::process::Command::new(node_binary()?)
            .args(["audit", "-o", format, "--data-dir", &data])
            .output()?;
        anyhow::ensure!(audit.status.success(), "audit -o {format}: {audit:?}");
        Ok(String::from_utf8(audit.stdout)?)
    };
    let json_lines: Vec<serde_json::Value> = output("json")?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(json_lines.len(), records.len());
    let yaml = output("yaml")?;
    assert_eq!(yaml.matches("request_id:").count(), records.len(), "{yaml}");
    let refused: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| {
            r["decision"]
                .as_str()
                .is_some_and(|d| d.starts_with("refused"))
        })
        .collect();
    assert!(
        refused.iter().any(|r| r["op"] == "write_file")
            && records
                .iter()
                .any(|r| r["op"] == "exec" && r["decision"] == "allowed (mode plan)"),
        "{records:#?}"
    );
    assert!(
        records.iter().all(|r| r["caller"] == "mcp:local"),
        "{records:#?}"
    );
    Ok(())
}

/// The audit records `remote-agents audit --json ARGS` prints.
fn audit_records(args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let audit = std::process::Command::new(node_binary()?)
        .args(["audit", "--json"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        audit.status.success(),
        "remote-agents audit: {}",
        String::from_utf8_lossy(&audit.stderr)
    );
    Ok(String::from_utf8(audit.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// Polls `list_agents` on `node` until an agent named `name` shows up.
async fn wait_for_agent(node: &mut McpProcess, name: &str) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let result = node.call_tool("list_agents", json!({})).await?;
        if let Some(agent) = result["structuredContent"]["agents"]
            .as_array()
            .and_then(|agents| agents.iter().find(|a| a["name"] == name))
        {
            return Ok(agent.clone());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "agent {name} never appeared: {result}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_through_the_relay_runs_exec_and_writes_under_its_own_policy() -> anyhow::Result<()>
{
    let relay = remote_agents_tests::relay::TestRelay::start().await?;
    let tmp = tempfile::tempdir()?;
    let work = std::fs::canonicalize(tmp.path())?;
    let b_data = work.join("b").display().to_string();
    let a_data = work.join("a").display().to_string();
    let room = format!("room-{}", uuid::Uuid::new_v4().simple());
    let common = [
        "--relay",
        relay.url.as_str(),
        "--room",
        room.as_str(),
        "--token",
        "e2e-token",
    ];
    let mut b = tokio::process::Command::new(node_binary()?)
        .arg("run")
        .args(common)
        .args(["--name", "node-b", "--tags", "e2e", "--data-dir", &b_data])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let mut a_args = common.to_vec();
    a_args.extend(["--name", "node-a", "--data-dir", &a_data]);
    let mut a = McpProcess::start(&a_args, &[]).await?;

    let agent = wait_for_agent(&mut a, "node-b").await?;
    assert_eq!(agent["local"], json!(false));
    assert_eq!(agent["tags"], json!(["e2e"]));
    assert_eq!(agent["accepts_commands"], json!(true));
    let b_id = agent["agent_id"].as_str().unwrap_or_default().to_string();

    let info = a.call_tool("get_info", json!({"agent_id": b_id})).await?;
    assert_eq!(info["structuredContent"]["name"], "node-b", "{info}");

    let result = a
        .call_tool(
            "exec",
            json!({"agent_id": "node-b", "argv": ["sh", "-c", "echo $0", "remote"]}),
        )
        .await?;
    assert_eq!(result["isError"], json!(false), "{result}");
    assert_eq!(result["structuredContent"]["stdout"], "remote\n");

    let target = work.join("written-remotely.txt").display().to_string();
    let result = a
        .call_tool(
            "write_file",
            json!({"agent_id": b_id, "path": target, "content": "over the relay"}),
        )
        .await?;
    assert_eq!(result["isError"], json!(false), "{result}");
    assert_eq!(std::fs::read_to_string(&target)?, "over the relay");
    let result = a
        .call_tool("read_file", json!({"agent_id": b_id, "path": target}))
        .await?;
    assert_eq!(result["structuredContent"]["content"], "over the relay");

    // Plan mode on B (B's own policy): A's write is refused by B with B's reason.
    let result = a
        .call_tool(
            "set_mode",
            json!({"agent_id": b_id, "mode": "plan", "ttl_secs": 60}),
        )
        .await?;
    assert_eq!(result["isError"], json!(false), "{result}");
    // B re-announces its mode, so A's list_agents stops showing the stale `edit`.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let agent = wait_for_agent(&mut a, "node-b").await?;
        if agent["mode"] == "plan" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node-b's new mode never reached node-a: {agent}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = a
        .call_tool(
            "write_file",
            json!({"agent_id": b_id, "path": target, "content": "refused"}),
        )
        .await?;
    assert_eq!(result["isError"], json!(true));
    assert!(result.to_string().contains("plan mode"), "{result}");
    assert_eq!(std::fs::read_to_string(&target)?, "over the relay");
    // A itself is still in edit mode: the override lives on B only.
    let local = a.call_tool("get_info", json!({})).await?;
    assert_eq!(local["structuredContent"]["effective_mode"], "edit");

    let result = a
        .call_tool(
            "exec",
            json!({"agent_id": "no-such-node", "argv": ["true"]}),
        )
        .await?;
    assert_eq!(result["isError"], json!(true));
    assert!(result.to_string().contains("list_agents"), "{result}");
    b.start_kill()?;
    Ok(())
}

fn process_alive(pattern: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_exec_reports_progress_and_cancellation_kills_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data").display().to_string();
    let mut node = McpProcess::start(&["--data-dir", &data], &[]).await?;
    let marker = format!("ra-cancel-{}", uuid::Uuid::new_v4().simple());
    let id = node
        .send(
            "tools/call",
            json!({
                "name": "exec",
                "arguments": {"argv": ["sh", "-c", "sleep 60", marker]},
                "_meta": {"progressToken": "long-exec"},
            }),
        )
        .await?;
    // The first progress notification arrives about a second in.
    loop {
        let message = node.next_message(Duration::from_secs(10)).await?;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "long-exec");
            assert!(
                message["params"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("running")
            );
            break;
        }
        assert!(
            message.get("id") != Some(&json!(id)),
            "exec ended early: {message}"
        );
    }
    assert!(process_alive(&marker), "the command is not running");
    node.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_alive(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "cancellation did not kill the command"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_exec_relays_progress_and_cancellation_kills_it_on_the_peer()
-> anyhow::Result<()> {
    let relay = remote_agents_tests::relay::TestRelay::start().await?;
    let tmp = tempfile::tempdir()?;
    let b_data = tmp.path().join("b").display().to_string();
    let a_data = tmp.path().join("a").display().to_string();
    let room = format!("room-{}", uuid::Uuid::new_v4().simple());
    let common = [
        "--relay",
        relay.url.as_str(),
        "--room",
        room.as_str(),
        "--token",
        "e2e-token",
    ];
    let mut b = tokio::process::Command::new(node_binary()?)
        .arg("run")
        .args(common)
        .args(["--name", "node-b", "--data-dir", &b_data])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let mut a_args = common.to_vec();
    a_args.extend(["--name", "node-a", "--data-dir", &a_data]);
    let mut a = McpProcess::start(&a_args, &[]).await?;
    wait_for_agent(&mut a, "node-b").await?;

    let marker = format!("ra-forward-cancel-{}", uuid::Uuid::new_v4().simple());
    let id = a
        .send(
            "tools/call",
            json!({
                "name": "exec",
                "arguments": {"agent_id": "node-b", "argv": ["sh", "-c", "sleep 60", marker]},
                "_meta": {"progressToken": "forwarded"},
            }),
        )
        .await?;
    // node-b's progress comes back through the relay as RPC chunks and out as MCP progress.
    loop {
        let message = a.next_message(Duration::from_secs(10)).await?;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "forwarded");
            assert!(
                message["params"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("running"),
                "{message}"
            );
            break;
        }
        assert!(
            message.get("id") != Some(&json!(id)),
            "the forwarded exec ended early: {message}"
        );
    }
    assert!(
        process_alive(&marker),
        "the command is not running on node-b"
    );
    // Cancelling on node-a cancels the RPC, which kills the process group on node-b.
    a.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_alive(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "cancellation did not reach node-b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same for a fan-out: cancelling fleet_exec stops the command on the hosts it reached.
    let marker = format!("ra-fleet-cancel-{}", uuid::Uuid::new_v4().simple());
    let id = a
        .send_tool(
            "fleet_exec",
            json!({"target": "name:node-b", "argv": ["sh", "-c", "sleep 60", marker]}),
        )
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !process_alive(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "fleet_exec never started the command on node-b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_alive(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "cancelling fleet_exec did not stop the command on node-b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.start_kill()?;
    Ok(())
}
