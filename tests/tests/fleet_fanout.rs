//! Fleet fan-out end to end: real node processes behind a relay, `fleetctl exec|write|jobs`
//! targeting tags, names, OS and `&`/`!` selectors; folded output; rolling runs that halt;
//! offline and killed hosts reported, never dropped.

use std::time::Duration;

use remote_agents_tests::fleet::{NodeSpec, TestFleet, node_dir, statuses};
use remote_agents_tests::net::wait_until;

fn example_fleet_nodes() -> Vec<NodeSpec> {
    vec![
        NodeSpec::new("web-1", &["web", "frontend"], "edit"),
        NodeSpec::new("web-2", &["web", "frontend"], "edit"),
        NodeSpec::new("web-3", &["web", "frontend"], "edit"),
        NodeSpec::new("api-1", &["api", "backend"], "edit"),
        NodeSpec::new("api-2", &["api", "backend"], "edit"),
        NodeSpec::new("db-1", &["db", "backend"], "plan"),
        NodeSpec::new("db-2", &["db", "backend"], "plan"),
        NodeSpec::new("build-1", &["ci"], "bypass"),
        NodeSpec::new("build-2", &["ci"], "bypass"),
        NodeSpec::new("lab-1", &["lab"], "edit"),
    ]
}

fn examples_fleet() -> String {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../examples/fleet")
    .display()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_targets_folds_halts_and_reports_every_host() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&example_fleet_nodes()).await?;
    let echo_name = ["sh", "-c", "echo $TEST_NODE_NAME"];

    // By tag.
    let (code, records) = fleet
        .fleetctl_json(&[&["exec", "-t", "web", "--"][..], &echo_name].concat())
        .await?;
    assert_eq!(code, 0);
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        ["web-1", "web-2", "web-3"]
    );
    assert_eq!(records["web-2"]["stdout"], "web-2\n");
    assert_eq!(records["web-2"]["exit"], 0);

    // `&` and `!`: backends that are not databases.
    let (code, records) = fleet
        .fleetctl_json(&[&["exec", "-t", "backend&!db", "--"][..], &echo_name].concat())
        .await?;
    assert_eq!(code, 0);
    assert_eq!(records.keys().collect::<Vec<_>>(), ["api-1", "api-2"]);

    // By OS family (every node here is Linux) and by name glob, unioned with `,`.
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "os:linux&!db", "--", "true"])
        .await?;
    assert_eq!(code, 0);
    assert_eq!(records.len(), 8);
    let (_, records) = fleet
        .fleetctl_json(&["exec", "-t", "name:build-*,lab", "--", "true"])
        .await?;
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        ["build-1", "build-2", "lab-1"]
    );

    // A target that matches nothing is an error, not a silent success.
    let (code, _, stderr) = fleet
        .fleetctl(&["exec", "-t", "os:macos", "--", "true"])
        .await?;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no host matched"), "{stderr}");

    // Writes on hosts in `plan` mode are denied; the others write; exit status says not all ok.
    let (code, records) = fleet
        .fleetctl_json(&["write", "-t", "backend", "notes.txt", "--content", "hello"])
        .await?;
    assert_eq!(code, 1);
    let by_host = statuses(&records);
    assert_eq!(by_host["api-1"], "ok");
    assert_eq!(by_host["db-1"], "denied");
    assert_eq!(by_host["db-2"], "denied");
    assert!(
        records["db-1"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("plan")
    );
    assert_eq!(
        std::fs::read_to_string(node_dir(&fleet, "api-2").join("notes.txt"))?,
        "hello"
    );
    assert!(!node_dir(&fleet, "db-1").join("notes.txt").exists());

    // Folding: two distinct outputs over eight hosts give exactly two groups.
    let (code, stdout, _) = fleet
        .fleetctl(&[
            "exec",
            "-t",
            "!db",
            "--",
            "sh",
            "-c",
            "case $TEST_NODE_NAME in web-*) echo front;; *) echo other;; esac",
        ])
        .await?;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("web-[1-3] (3) ok exit 0\nfront\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("api-[1-2],build-[1-2],lab-1 (5) ok exit 0\nother\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("8 hosts, all ok; 5 identical, 3 differ in 1 other group"),
        "{stdout}"
    );

    // Rolling run: batches of 2 in host order (api-1, api-2, build-1, …); api-1 fails and
    // --max-fail 0 halts every later batch.
    let (code, records) = fleet
        .fleetctl_json(&[
            "exec",
            "-t",
            "!db",
            "--batch",
            "2",
            "--max-fail",
            "0",
            "--",
            "sh",
            "-c",
            "test \"$TEST_NODE_NAME\" != api-1",
        ])
        .await?;
    assert_eq!(code, 1);
    let by_host = statuses(&records);
    assert_eq!(by_host["api-1"], "failed");
    assert_eq!(by_host["api-2"], "ok");
    for host in ["build-1", "build-2", "lab-1", "web-1", "web-2", "web-3"] {
        assert_eq!(by_host[host], "skipped", "{host}");
    }

    // A host the spec declares but that is not running is reported unreachable.
    let spec = examples_fleet();
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "desk,ci", "-f", &spec, "--", "true"])
        .await?;
    assert_eq!(code, 1);
    let by_host = statuses(&records);
    assert_eq!(by_host["mac-1"], "unreachable");
    assert_eq!(by_host["build-1"], "ok");

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_command_is_outcome_unknown_and_the_job_is_kept() -> anyhow::Result<()> {
    let mut fleet = TestFleet::start(&[
        NodeSpec::new("build-1", &["ci"], "bypass"),
        NodeSpec::new("build-2", &["ci"], "bypass"),
        NodeSpec::new("build-3", &["ci"], "bypass"),
    ])
    .await?;
    let started_marker = node_dir(&fleet, "build-1").join("started");
    let running = fleet
        .fleetctl_command(&[
            "exec",
            "-t",
            "ci",
            "--timeout",
            "60s",
            "-o",
            "json",
            "--",
            "sh",
            "-c",
            "case $TEST_NODE_NAME in build-1) touch $HOME/started; sleep 30;; esac",
        ])?
        .spawn()?;
    wait_until("build-1 to start its command", || started_marker.exists()).await?;
    fleet.kill("build-1").await?;
    let output =
        tokio::time::timeout(Duration::from_secs(60), running.wait_with_output()).await??;
    assert_eq!(output.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let records = value["records"].as_array().cloned().unwrap_or_default();
    let status_of = |host: &str| {
        records
            .iter()
            .find(|r| r["host"] == host)
            .map(|r| r["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status_of("build-1").as_deref(), Some("outcome_unknown"));
    assert_eq!(status_of("build-2").as_deref(), Some("ok"));
    assert_eq!(status_of("build-3").as_deref(), Some("ok"));

    // The job is in the history and can be fetched in full.
    let op_id = value["op_id"].as_str().unwrap_or_default().to_string();
    let (code, stdout, _) = fleet.fleetctl(&["jobs", "-o", "json"]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains(&op_id), "{stdout}");
    let (code, stdout, _) = fleet.fleetctl(&["jobs", &op_id[..16]]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains("outcome_unknown"), "{stdout}");
    Ok(())
}

/// Fifty nodes: five roles of ten, one role in `plan` mode.
fn fifty_nodes() -> Vec<NodeSpec> {
    let roles = [
        ("web", "frontend", "edit"),
        ("api", "backend", "edit"),
        ("db", "backend", "plan"),
        ("build", "ci", "bypass"),
        ("lab", "lab", "edit"),
    ];
    (1..=10)
        .flat_map(|i| {
            roles.iter().map(move |(role, group, mode)| {
                NodeSpec::new(&format!("{role}-{i}"), &[role, group], mode)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_nodes_with_five_killed_mid_run_report_every_host() -> anyhow::Result<()> {
    let mut fleet = TestFleet::start(&fifty_nodes()).await?;

    // Every host answers; identical output folds into one group.
    let (code, stdout, stderr) = fleet
        .fleetctl(&["exec", "-t", "all&!db", "--", "echo", "same"])
        .await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("40 hosts, all ok; 40 identical"),
        "{stdout}"
    );

    // Writes: the ten `plan` hosts are denied, the other backends write.
    let (code, records) = fleet
        .fleetctl_json(&["write", "-t", "backend", "fifty.txt", "--content", "x"])
        .await?;
    assert_eq!(code, 1);
    let by_host = statuses(&records);
    assert_eq!(by_host.values().filter(|s| *s == "denied").count(), 10);
    assert_eq!(by_host.values().filter(|s| *s == "ok").count(), 10);
    assert!(
        by_host
            .iter()
            .filter(|(h, _)| h.starts_with("db-"))
            .all(|(_, s)| s == "denied")
    );

    // Five lab hosts are killed while their command runs: each is reported, none dropped.
    let markers: Vec<_> = (1..=5)
        .map(|i| node_dir(&fleet, &format!("lab-{i}")).join("started"))
        .collect();
    let spec = examples_fleet();
    let running = fleet
        .fleetctl_command(&[
            "exec",
            "-t",
            "lab",
            "--timeout",
            "60s",
            "-o",
            "json",
            "-f",
            &spec,
            "--",
            "sh",
            "-c",
            "case $TEST_NODE_NAME in lab-[1-5]) touch $HOME/started; sleep 30;; esac",
        ])?
        .spawn()?;
    wait_until("lab-1..5 to start", || markers.iter().all(|m| m.exists())).await?;
    for i in 1..=5 {
        fleet.kill(&format!("lab-{i}")).await?;
    }
    let output =
        tokio::time::timeout(Duration::from_secs(60), running.wait_with_output()).await??;
    assert_eq!(output.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let records = value["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 10, "every lab host has a record");
    for record in &records {
        let host = record["host"].as_str().unwrap_or_default();
        let n: u32 = host.trim_start_matches("lab-").parse()?;
        let expected = if n <= 5 { "outcome_unknown" } else { "ok" };
        assert_eq!(record["status"], expected, "{host}");
    }

    // With the five gone and no spec naming them, `lab` matches the five live hosts.
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "lab", "--", "true"])
        .await?;
    assert_eq!(code, 0);
    assert_eq!(records.len(), 5);

    // A rolling run over the rest halts at its failure threshold (10% of 45 = 5 failures).
    let (code, value) = fleet
        .fleetctl_json(&[
            "exec",
            "-t",
            "!db",
            "--batch",
            "10",
            "--max-fail",
            "10%",
            "--",
            "sh",
            "-c",
            "case $TEST_NODE_NAME in api-*) exit 1;; esac",
        ])
        .await?;
    assert_eq!(code, 1);
    let by_host = statuses(&value);
    // Natural host order starts with api-1..api-10: the first batch fails wholesale.
    assert_eq!(by_host.values().filter(|s| *s == "failed").count(), 10);
    assert_eq!(by_host.values().filter(|s| *s == "skipped").count(), 25);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_a_whole_fleet_on_loopback_and_cleans_up() -> anyhow::Result<()> {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(remote_agents_tests::node::node_binary()?)
            .arg("demo")
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("10 nodes connected through the relay"),
        "{stdout}"
    );
    // Commands run everywhere: plan hosts run them read-only, in their sandbox.
    assert!(
        stdout.contains("api-[1-2],build-[1-2],db-[1-2],mac-1,web-[1-3] (10) ok exit 0"),
        "{stdout}"
    );
    // The written file reads back identically everywhere.
    assert!(
        stdout.contains("10 hosts, all ok; 10 identical"),
        "{stdout}"
    );
    let work = stdout
        .lines()
        .find_map(|l| l.split("everything was in ").nth(1))
        .and_then(|rest| rest.split(" and is removed").next())
        .expect("the demo names its folder");
    assert!(
        !std::path::Path::new(work).exists(),
        "{work} was left behind"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_keeps_working_across_a_relay_restart() -> anyhow::Result<()> {
    let mut fleet = TestFleet::start(&[
        NodeSpec::new("app-1", &["app"], "edit"),
        NodeSpec::new("app-2", &["app"], "edit"),
        NodeSpec::new("app-3", &["app"], "edit"),
    ])
    .await?;
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "app", "--", "echo", "before"])
        .await?;
    assert_eq!(code, 0);
    assert_eq!(records.len(), 3);

    fleet.restart_relay().await?;

    // Nodes reconnect with jittered backoff; until they are all back a fan-out reports the
    // missing ones rather than hanging. Retry until all three answer, within a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, stdout, stderr) = fleet
            .fleetctl(&["exec", "-t", "app", "-o", "json", "--", "echo", "after"])
            .await?;
        if code == 0 {
            let value: serde_json::Value = serde_json::from_str(&stdout)?;
            let records = value["records"].as_array().cloned().unwrap_or_default();
            if records.len() == 3 {
                assert!(records.iter().all(|r| r["stdout"] == "after\n"));
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not come back: {stdout}\n{stderr}"
        );
    }

    // The request acknowledged before the restart is still in the history.
    let (code, stdout, _) = fleet.fleetctl(&["jobs", "-o", "json"]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains("exec echo before"), "{stdout}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_fans_out_with_fleet_exec_and_fetches_the_job() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&[
        NodeSpec::new("web-1", &["web"], "edit"),
        NodeSpec::new("web-2", &["web"], "edit"),
        NodeSpec::new("db-1", &["db"], "plan"),
    ])
    .await?;
    let mut mcp = fleet.start_mcp_operator().await?;
    // db-1 is in plan mode: it runs the command read-only, so the write fails there only.
    let marker = fleet.dir.path().join("written");
    let write = format!("echo written > '{}'", marker.display());

    // The MCP node joins the room in the background: retry until all three hosts answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        let result = mcp
            .call_tool(
                "fleet_exec",
                serde_json::json!({"target": "all", "argv": ["sh", "-c", write]}),
            )
            .await?;
        if result["structuredContent"]["hosts"] == 3 {
            break result;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fleet never complete: {result}"
        );
    };
    let folded = &result["structuredContent"];
    assert_eq!(
        folded["summary"],
        "3 hosts, 2 ok, 1 not ok; 2 identical, 1 differ in 1 other group"
    );
    assert_eq!(folded["groups"][0]["host_set"], "web-[1-2]");
    assert_eq!(folded["groups"][0]["stdout"], "");
    assert_eq!(folded["groups"][1]["host_set"], "db-1");
    assert_eq!(folded["groups"][1]["status"], "failed");
    // The summary line comes first, so a model reads it before the groups.
    assert_eq!(result["content"][0]["text"], folded["summary"]);

    let op_id = folded["op_id"].as_str().unwrap_or_default().to_string();
    let job = mcp
        .call_tool(
            "job_get",
            serde_json::json!({"op_id": op_id, "hosts": ["db-1"]}),
        )
        .await?;
    let records = job["structuredContent"]["job"]["report"]["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "failed");
    assert_ne!(records[0]["exit_code"], 0, "{records:?}");
    let list = mcp.call_tool("job_list", serde_json::json!({})).await?;
    assert!(
        list["structuredContent"]["jobs"]
            .as_array()
            .is_some_and(|j| !j.is_empty())
    );

    // Bad arguments are tool errors a model can act on.
    let bad = mcp
        .call_tool(
            "fleet_exec",
            serde_json::json!({"target": "web&&", "argv": ["true"]}),
        )
        .await?;
    assert_eq!(bad["isError"], true);
    assert!(
        bad["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("target"),
        "{bad}"
    );
    Ok(())
}

const DECLARED_WEB: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: inventory}
spec:
  defaults: {mode: edit}
  hosts:
    - {name: web-1, tags: [web]}
    - {name: web-2, tags: [web]}
    - {name: web-3, tags: [web]}
";

/// Once a spec is applied it is the inventory, without `-f`: a declared host that is offline is
/// `unreachable` (it used to vanish from the result unless `-f` named the spec), and a
/// connected host that no declaration covers is marked `undeclared` — in fleetctl's records and
/// text, and in the MCP fan-out tools' folded result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declared_host_that_is_offline_is_unreachable_without_dash_f() -> anyhow::Result<()> {
    let nodes = [
        NodeSpec::new("web-1", &["web"], "edit"),
        NodeSpec::new("web-2", &["web"], "edit"),
        NodeSpec::new("web-3", &["web"], "edit"),
        NodeSpec::new("stray-1", &["web"], "edit"),
    ];
    let mut fleet = TestFleet::start(&nodes).await?;
    let (code, _, stderr) = fleet.fleetctl(&["keygen"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    std::fs::write(spec.join("fleet.yaml"), DECLARED_WEB)?;
    let spec_arg = spec.display().to_string();
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", &spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    fleet.kill("web-3").await?;
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "web", "--", "true"])
        .await?;
    assert_eq!(code, 1, "{records:?}");
    let by_host = statuses(&records);
    assert_eq!(by_host["web-3"], "unreachable", "{records:?}");
    assert_eq!(by_host["web-1"], "ok");
    assert_eq!(by_host["stray-1"], "ok");
    assert_eq!(records["stray-1"]["undeclared"], true, "{records:?}");
    assert!(records["web-1"].get("undeclared").is_none(), "{records:?}");
    assert!(records["web-3"].get("undeclared").is_none(), "{records:?}");

    let (code, stdout, _) = fleet.fleetctl(&["exec", "-t", "web", "--", "true"]).await?;
    assert_eq!(code, 1);
    assert!(
        stdout.contains("web-3 (1) unreachable")
            && stdout.contains("not declared in the spec: stray-1"),
        "{stdout}"
    );

    // The MCP fan-out tools use the applied spec too (this send-only node follows none of its
    // own: it asks the nodes). It joins the room in the background: until it sees every live
    // host, the declared ones it does not see yet count as unreachable too, so retry until the
    // three live hosts answer.
    let mut mcp = fleet.start_mcp_operator().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let folded = loop {
        let result = mcp
            .call_tool(
                "fleet_exec",
                serde_json::json!({"target": "web", "argv": ["true"]}),
            )
            .await?;
        let folded = result["structuredContent"].clone();
        if folded["hosts"] == 4 && folded["ok"] == 3 {
            break folded;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fleet never complete: {result}"
        );
    };
    let unreachable = folded["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|group| group["status"] == "unreachable");
    assert_eq!(
        unreachable.map(|group| group["host_set"].clone()),
        Some(serde_json::json!("web-3")),
        "{folded}"
    );
    assert_eq!(folded["undeclared"], "stray-1", "{folded}");

    // With every node offline no node can hand over what it applied: the relay's retained copy
    // is the inventory, and every declared host is reported.
    drop(mcp);
    for host in ["web-1", "web-2", "stray-1"] {
        fleet.kill(host).await?;
    }
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "web", "--", "true"])
        .await?;
    assert_eq!(code, 1, "{records:?}");
    assert_eq!(
        statuses(&records).into_iter().collect::<Vec<_>>(),
        [
            ("web-1", "unreachable"),
            ("web-2", "unreachable"),
            ("web-3", "unreachable")
        ]
        .map(|(host, status)| (host.to_string(), status.to_string()))
    );
    Ok(())
}
