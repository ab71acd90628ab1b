//! Host→host transfer through a real relay (issue 15): `send_file` from one node process to
//! another, verified with SHA-256, followed with `transfer_get`/`transfer_list`; a destination
//! in plan mode refused with no file; and `fleetctl cp` host→host, local→host and host→local.
//! Two nodes on one machine reach each other directly (QUIC on the punched UDP path), so the
//! bytes take the direct path; a destination with `direct` off takes the relay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use remote_agents_node::transfer::sha256_file;
use remote_agents_tests::fleet::{NodeSpec, TestFleet};
use serde_json::{Value, json};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn home(fleet: &TestFleet, name: &str) -> PathBuf {
    fleet.dir.path().join("nodes").join(name)
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// The hidden temp files a write or transfer keeps beside its target.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".ra-tmp-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_file_crosses_directly_verified_and_fleetctl_cp_copies_all_three_ways()
-> anyhow::Result<()> {
    let fleet = TestFleet::start(&[
        NodeSpec::new("alpha", &[], "edit"),
        NodeSpec::new("beta", &[], "edit"),
        NodeSpec::new("gamma", &[], "plan"),
    ])
    .await?;
    let content = random_bytes(6 * 1024 * 1024 + 4321, 15);
    let source = home(&fleet, "alpha").join("src.bin");
    std::fs::write(&source, &content)?;
    let sha256 = sha256_file(&source)?;

    let mut mcp = fleet.start_mcp_operator().await?;
    // The MCP node joins the room in the background: wait until it sees the three hosts.
    fleet_seen_by(&mut mcp, &["alpha", "beta", "gamma"]).await?;

    // send_file alpha → beta, waiting for the end.
    let target = home(&fleet, "beta").join("dst.bin");
    let sent = mcp
        .call_tool(
            "send_file",
            json!({
                "from_agent_id": "alpha", "from_path": text(&source),
                "to_agent_id": "beta", "to_path": text(&target), "wait": true,
            }),
        )
        .await?;
    let status = &sent["structuredContent"];
    assert_eq!(status["state"], "done", "{sent}");
    assert_eq!(status["path"], "direct", "{sent}");
    assert_eq!(status["sha256"], sha256.as_str(), "{sent}");
    assert_eq!(status["bytes_done"], content.len() as u64);
    assert_eq!(status["size"], content.len() as u64);
    assert!(
        status["rate_bytes_per_sec"].as_f64().unwrap() > 0.0,
        "{sent}"
    );
    assert!(status["error"].is_null(), "{sent}");
    assert!(std::fs::read(&target)? == content, "beta's copy differs");
    assert!(temps(&home(&fleet, "beta")).is_empty());

    let id = status["transfer_id"].as_str().unwrap().to_string();
    let got = mcp
        .call_tool("transfer_get", json!({"transfer_id": id}))
        .await?;
    assert_eq!(&got["structuredContent"], status, "{got}");

    // Without wait: the record comes back at once, and transfer_get waits for the end.
    let again = home(&fleet, "beta").join("again.bin");
    let started = mcp
        .call_tool(
            "send_file",
            json!({
                "from_agent_id": "alpha", "from_path": text(&source),
                "to_agent_id": "beta", "to_path": text(&again),
            }),
        )
        .await?;
    let second = started["structuredContent"]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let waited = mcp
        .call_tool(
            "transfer_get",
            json!({"transfer_id": second, "wait_secs": 25}),
        )
        .await?;
    assert_eq!(waited["structuredContent"]["state"], "done", "{waited}");
    assert_eq!(waited["structuredContent"]["sha256"], sha256.as_str());
    assert!(std::fs::read(&again)? == content);
    let listed = mcp.call_tool("transfer_list", json!({})).await?;
    let ids: Vec<&str> = listed["structuredContent"]["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["transfer_id"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str(), id.as_str()], "{listed}");

    // A destination in plan mode refuses the write: a clear error, no file.
    let refused_target = home(&fleet, "gamma").join("dst.bin");
    let refused = mcp
        .call_tool(
            "send_file",
            json!({
                "from_agent_id": "alpha", "from_path": text(&source),
                "to_agent_id": "gamma", "to_path": text(&refused_target), "wait": true,
            }),
        )
        .await?;
    let status = &refused["structuredContent"];
    assert_eq!(status["state"], "failed", "{refused}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("refused") && error.contains("plan"),
        "{error}"
    );
    assert!(!refused_target.exists());
    assert!(temps(&home(&fleet, "gamma")).is_empty());

    // A missing source: a clear error naming it.
    let missing = mcp
        .call_tool(
            "send_file",
            json!({
                "from_agent_id": "alpha", "from_path": text(&home(&fleet, "alpha").join("nope")),
                "to_agent_id": "beta", "to_path": text(&home(&fleet, "beta").join("nope")),
                "wait": true,
            }),
        )
        .await?;
    let error = missing["structuredContent"]["error"].as_str().unwrap();
    assert!(
        error.contains("nope") && error.contains("does not exist"),
        "{error}"
    );
    assert!(!home(&fleet, "beta").join("nope").exists());

    // fleetctl cp HOST:PATH HOST:PATH.
    let copied = home(&fleet, "beta").join("cp.bin");
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "cp",
            &format!("alpha:{}", text(&source)),
            &format!("beta:{}", text(&copied)),
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&sha256) && stdout.contains("direct"),
        "{stdout}"
    );
    // Piped stderr: no progress line.
    assert!(!stderr.contains('\r'), "{stderr:?}");
    assert!(std::fs::read(&copied)? == content);

    // fleetctl cp LOCAL HOST:PATH: the destination pulls from fleetctl.
    let local = fleet.dir.path().join("local.bin");
    let local_content = random_bytes(3 * 1024 * 1024 + 5, 16);
    std::fs::write(&local, &local_content)?;
    let uploaded = home(&fleet, "beta").join("up.bin");
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "cp",
            "-o",
            "json",
            &text(&local),
            &format!("beta:{}", text(&uploaded)),
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let status: Value = serde_json::from_str(&stdout)?;
    assert_eq!(status["state"], "done");
    assert_eq!(status["sha256"], sha256_file(&local)?.as_str());
    assert!(std::fs::read(&uploaded)? == local_content);

    // fleetctl cp HOST:PATH LOCAL: fleetctl pulls, verifies and renames into place.
    let downloaded = fleet.dir.path().join("down.bin");
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "cp",
            &format!("alpha:{}", text(&source)),
            &text(&downloaded),
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(std::fs::read(&downloaded)? == content);
    assert!(temps(fleet.dir.path()).is_empty());

    // fleetctl cp to a plan-mode host: exit 2 with the refusal, no file.
    let (code, _, stderr) = fleet
        .fleetctl(&[
            "cp",
            &text(&local),
            &format!("gamma:{}", text(&refused_target)),
        ])
        .await?;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("plan"), "{stderr}");
    assert!(!refused_target.exists());
    Ok(())
}

/// Where the direct path is off (UDP known not to pass), the same transfer goes through the
/// relay and arrives verified, for `send_file` and for `fleetctl cp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_direct_path_off_the_bytes_cross_the_relay_verified() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&[
        NodeSpec::new("alpha", &[], "edit"),
        NodeSpec::new("beta", &[], "edit").with_env("REMOTE_AGENTS_DIRECT", "false"),
    ])
    .await?;
    let content = random_bytes(3 * 1024 * 1024 + 77, 17);
    let source = home(&fleet, "alpha").join("src.bin");
    std::fs::write(&source, &content)?;
    let sha256 = sha256_file(&source)?;

    let mut mcp = fleet.start_mcp_operator().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let target = home(&fleet, "beta").join("dst.bin");
    // The MCP node joins the room in the background: until it sees both hosts, send_file fails
    // naming the one it cannot reach.
    let sent = loop {
        let sent = mcp
            .call_tool(
                "send_file",
                json!({
                    "from_agent_id": "alpha", "from_path": text(&source),
                    "to_agent_id": "beta", "to_path": text(&target), "wait": true,
                }),
            )
            .await?;
        if sent["structuredContent"]["state"] == "done" {
            break sent;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sent}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = &sent["structuredContent"];
    assert_eq!(status["path"], "relay", "{sent}");
    assert_eq!(status["sha256"], sha256.as_str(), "{sent}");
    assert!(std::fs::read(&target)? == content, "beta's copy differs");
    assert!(temps(&home(&fleet, "beta")).is_empty());

    let copied = home(&fleet, "beta").join("cp.bin");
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "cp",
            "-o",
            "json",
            &format!("alpha:{}", text(&source)),
            &format!("beta:{}", text(&copied)),
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let status: Value = serde_json::from_str(&stdout)?;
    assert_eq!(status["path"], "relay", "{stdout}");
    assert_eq!(status["sha256"], sha256.as_str(), "{stdout}");
    assert!(std::fs::read(&copied)? == content);

    // The other way, beta is the source: it refuses alpha's direct offer, so alpha pulls through
    // the relay at once rather than from a connection nobody on beta answers.
    let back = home(&fleet, "alpha").join("back.bin");
    let started = std::time::Instant::now();
    let sent = mcp
        .call_tool(
            "send_file",
            json!({
                "from_agent_id": "beta", "from_path": text(&target),
                "to_agent_id": "alpha", "to_path": text(&back), "wait": true,
            }),
        )
        .await?;
    let status = &sent["structuredContent"];
    assert_eq!(status["state"], "done", "{sent}");
    assert_eq!(status["path"], "relay", "{sent}");
    assert_eq!(status["sha256"], sha256.as_str(), "{sent}");
    assert!(std::fs::read(&back)? == content);
    // Well under the direct path's 60 s pull timeout: the refusal is immediate.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// `fleetctl cp FILE -t SELECTOR:PATH` and MCP `fleet_send`: one file to many hosts, the hosts
/// forwarding it to each other as it arrives, so the origin sends it about twice however many
/// hosts there are. A host that refuses (plan mode) is `denied` in its record; the hosts it was
/// to serve fall back to the origin and still get the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upload_reaches_many_hosts_through_each_other() -> anyhow::Result<()> {
    let mut nodes: Vec<NodeSpec> = (1..=7)
        .map(|i| NodeSpec::new(&format!("w{i}"), &["web"], "edit"))
        .collect();
    // w2 is the origin's second child: w5 and w6 were to pull from it.
    nodes[1] = NodeSpec::new("w2", &["web"], "plan");
    let fleet = TestFleet::start(&nodes).await?;
    let content = random_bytes(5 * 1024 * 1024 + 999, 18);
    let local = fleet.dir.path().join("upload.bin");
    std::fs::write(&local, &content)?;
    let sha256 = sha256_file(&local)?;
    let size = content.len() as u64;

    // Every web host but w2: the origin (fleetctl) sends the file to two hosts only.
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "cp",
            "-o",
            "json",
            &text(&local),
            "-t",
            "web&!name:w2:swarm.bin",
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let result: Value = serde_json::from_str(&stdout)?;
    let records = result["records"].as_array().unwrap();
    let hosts: Vec<&str> = records.iter().filter_map(|r| r["host"].as_str()).collect();
    assert_eq!(hosts, ["w1", "w3", "w4", "w5", "w6", "w7"], "{stdout}");
    for record in records {
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(
            record["stdout"],
            format!("{size} bytes, sha256 {sha256}\n"),
            "{record}"
        );
        let host = record["host"].as_str().unwrap();
        assert!(
            std::fs::read(home(&fleet, host).join("swarm.bin"))? == content,
            "{host}"
        );
        assert!(temps(&home(&fleet, host)).is_empty(), "{host}");
    }
    let sent = result["bytes_sent_from_here"].as_u64().unwrap();
    assert!(
        sent <= 2 * size,
        "the origin sent {sent} bytes for a {size}-byte file to 6 hosts: {stdout} {stderr}\n{}",
        ["w1", "w3", "w4", "w5", "w6", "w7"]
            .map(|h| fleet.node_log(h))
            .join("\n")
    );

    // With w2 (plan mode) in the target: it is denied, and the two hosts below it in the tree
    // fall back to the origin, which then sends about three copies.
    let (code, stdout, stderr) = fleet
        .fleetctl(&["cp", "-o", "json", &text(&local), "-t", "web:again.bin"])
        .await?;
    assert_eq!(code, 1, "one host is denied: {stdout}\n{stderr}");
    let result: Value = serde_json::from_str(&stdout)?;
    for record in result["records"].as_array().unwrap() {
        let host = record["host"].as_str().unwrap();
        if host == "w2" {
            assert_eq!(record["status"], "denied", "{record}");
            assert!(
                record["error"].as_str().unwrap().contains("plan"),
                "{record}"
            );
            assert!(!home(&fleet, host).join("again.bin").exists());
        } else {
            assert_eq!(record["status"], "ok", "{record}");
            assert!(
                std::fs::read(home(&fleet, host).join("again.bin"))? == content,
                "{host}"
            );
        }
    }
    let sent = result["bytes_sent_from_here"].as_u64().unwrap();
    assert!(sent <= 3 * size, "{sent} bytes sent for {size}");
    // Kept like any fan-out: `fleetctl jobs` lists it.
    let (code, jobs, _) = fleet.fleetctl(&["jobs"]).await?;
    assert_eq!(code, 0);
    assert!(jobs.contains("cp ") && jobs.contains("again.bin"), "{jobs}");

    // MCP fleet_send from a host's file: folded into one group of identical results.
    let source = home(&fleet, "w1").join("swarm.bin");
    let mut mcp = fleet.start_mcp_operator().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let sent = mcp
            .call_tool(
                "fleet_send",
                json!({
                    "target": "web&!name:w2", "from_agent_id": "w1",
                    "from_path": text(&source), "to_path": "mcp.bin",
                }),
            )
            .await?;
        let groups = sent["structuredContent"]["groups"].as_array().cloned();
        let hosts_ok = groups
            .as_ref()
            .and_then(|g| g.first())
            .and_then(|g| g["hosts"].as_array())
            .map_or(0, |h| h.len());
        if hosts_ok == 6 {
            break sent;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sent}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let group = &sent["structuredContent"]["groups"][0];
    assert_eq!(group["status"], "ok", "{sent}");
    assert_eq!(
        group["stdout"],
        format!("{size} bytes, sha256 {sha256}\n"),
        "{sent}"
    );
    for host in ["w1", "w3", "w4", "w5", "w6", "w7"] {
        assert!(
            std::fs::read(home(&fleet, host).join("mcp.bin"))? == content,
            "{host}"
        );
    }
    Ok(())
}

/// Through a real MCP client over stdio: a waiting `send_file` with a progress token reports
/// bytes of the total and the path in use before its result; cancelling a waiting `send_file`
/// (`notifications/cancelled`) stops both ends, leaving no file and no temp at the destination,
/// and `transfer_get` reads `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_sees_transfer_progress_and_cancels_a_transfer() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&[
        NodeSpec::new("alpha", &[], "edit"),
        NodeSpec::new("beta", &[], "edit"),
    ])
    .await?;
    let content = random_bytes(8 * 1024 * 1024, 19);
    let source = home(&fleet, "alpha").join("src.bin");
    std::fs::write(&source, &content)?;
    let mut mcp = fleet.start_mcp_operator().await?;
    fleet_seen_by(&mut mcp, &["alpha", "beta"]).await?;

    let target = home(&fleet, "beta").join("dst.bin");
    let id = send_waiting(&mut mcp, &source, &target, "copy").await?;
    let mut progress = Vec::new();
    let response = loop {
        let message = mcp.next_message(Duration::from_secs(60)).await?;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "copy");
            progress.push(message["params"].clone());
        } else if message["id"] == json!(id) {
            break message;
        }
    };
    assert_eq!(
        response["result"]["structuredContent"]["state"], "done",
        "{response}"
    );
    // The last report names the path the record ends on (direct here, unless the punched path
    // could not be set up in time on a loaded machine: then the relay).
    let size = content.len() as f64;
    let via = format!(
        "via {}",
        response["result"]["structuredContent"]["path"]
            .as_str()
            .unwrap_or_default()
    );
    assert!(
        progress.iter().any(|p| p["total"].as_f64() == Some(size)
            && p["progress"].as_f64() == Some(size)
            && p["message"] == via.as_str()),
        "{via}: {progress:?}"
    );
    assert!(std::fs::read(&target)? == content);

    // A sparse 64 GiB source: still running when the client cancels after the first report.
    let huge = home(&fleet, "alpha").join("huge.bin");
    std::fs::File::create(&huge)?.set_len(64 << 30)?;
    let huge_target = home(&fleet, "beta").join("huge.bin");
    let id = send_waiting(&mut mcp, &huge, &huge_target, "huge").await?;
    loop {
        let message = mcp.next_message(Duration::from_secs(60)).await?;
        if message["method"] == "notifications/progress"
            && message["params"]["progress"].as_f64().unwrap_or(0.0) > 0.0
        {
            break;
        }
        assert!(message["id"] != json!(id), "the transfer ended: {message}");
    }
    mcp.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await?;
    let listed = mcp.call_tool("transfer_list", json!({})).await?;
    let huge_id = listed["structuredContent"]["transfers"][0]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = mcp
        .call_tool(
            "transfer_get",
            json!({"transfer_id": huge_id, "wait_secs": 30}),
        )
        .await?;
    assert_eq!(got["structuredContent"]["state"], "cancelled", "{got}");
    assert!(!huge_target.exists());
    // The coordinator's record ends when its call to beta is cancelled; beta then stops pulling
    // and removes its partial file a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !temps(&home(&fleet, "beta")).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "beta kept a partial file: {:?}",
            temps(&home(&fleet, "beta"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Starts a waiting `send_file` from alpha's `from` to beta's `to` with a progress token, and
/// returns its JSON-RPC id.
async fn send_waiting(
    mcp: &mut remote_agents_tests::node::McpProcess,
    from: &Path,
    to: &Path,
    token: &str,
) -> anyhow::Result<u64> {
    mcp.send(
        "tools/call",
        json!({
            "name": "send_file",
            "arguments": {
                "from_agent_id": "alpha", "from_path": text(from),
                "to_agent_id": "beta", "to_path": text(to), "wait": true,
            },
            "_meta": {"progressToken": token},
        }),
    )
    .await
}

/// Waits until the MCP node sees every host in `names`.
async fn fleet_seen_by(
    mcp: &mut remote_agents_tests::node::McpProcess,
    names: &[&str],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agents = mcp.call_tool("list_agents", json!({})).await?;
        let seen: Vec<&str> = agents["structuredContent"]["agents"]
            .as_array()
            .map(|a| a.iter().filter_map(|a| a["name"].as_str()).collect())
            .unwrap_or_default();
        if names.iter().all(|n| seen.contains(n)) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the MCP node never saw every host: {agents}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A destination node killed (SIGKILL) in the middle of a transfer leaves no file at the target,
/// only its temp file; started again, the same copy resumes after the whole chunks it had
/// written and ends with the source's SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_killed_mid_transfer_resumes_after_what_it_wrote() -> anyhow::Result<()> {
    let beta = NodeSpec::new("beta", &[], "edit");
    let mut fleet = TestFleet::start(&[NodeSpec::new("alpha", &[], "edit"), beta.clone()]).await?;
    let content = random_bytes(96 * 1024 * 1024 + 5, 19);
    let source = home(&fleet, "alpha").join("big.bin");
    std::fs::write(&source, &content)?;
    let sha256 = sha256_file(&source)?;
    let target = home(&fleet, "beta").join("big.bin");
    let copy = [
        "cp".to_string(),
        "-o".into(),
        "json".into(),
        format!("alpha:{}", text(&source)),
        format!("beta:{}", text(&target)),
    ];
    let copy: Vec<&str> = copy.iter().map(String::as_str).collect();

    let mut first = fleet.fleetctl_command(&copy)?.spawn()?;
    // Killed once it has written 16 MiB, long before the end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let temp_size = |fleet: &TestFleet| -> anyhow::Result<u64> {
        Ok(std::fs::read_dir(home(fleet, "beta"))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".ra-tmp-"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum())
    };
    const CHUNK: u64 = 512 * 1024;
    while temp_size(&fleet)? < 16 * 1024 * 1024 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "beta wrote nothing in 60 s; its log:\n{}",
            fleet.node_log("beta")
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    fleet.kill("beta").await?;
    let written = temp_size(&fleet)?;
    assert!(written < content.len() as u64, "killed after the end");
    let status = tokio::time::timeout(Duration::from_secs(60), first.wait()).await??;
    assert!(
        !status.success(),
        "the copy whose destination died succeeded"
    );
    assert!(!target.exists(), "a partial file at the target");
    assert_eq!(temps(&home(&fleet, "beta")).len(), 1);

    fleet.start_node(&beta)?;
    fleet.wait_for_hosts(["beta"]).await?;
    let (code, stdout, stderr) = fleet.fleetctl(&copy).await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let status: Value = serde_json::from_str(&stdout)?;
    assert_eq!(status["sha256"], sha256.as_str(), "{stdout}");
    // Every whole chunk the killed node wrote (a torn last write is pulled again).
    assert_eq!(
        status["resumed_from"].as_u64(),
        Some(written - written % CHUNK),
        "{written} bytes were written before the kill: {stdout}"
    );
    assert!(std::fs::read(&target)? == content, "beta's copy differs");
    assert!(temps(&home(&fleet, "beta")).is_empty());
    Ok(())
}
