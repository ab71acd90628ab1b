//! A spec's `McpSurface` end to end: a read-only surface for `tag:prod` is applied with
//! `fleetctl apply`; a prod node's own MCP server then lists no write tools and refuses them,
//! and a dev node's MCP server that forwards a model's exec or write to a prod host (one call
//! with agent_id, or a fan-out) gets the prod host's refusal, while reads still work there and
//! writes still work on dev hosts. fleetctl, which is no model, still runs commands on prod.

use std::time::Duration;

use anyhow::Context;
use remote_agents_tests::fleet::{ENCRYPTION_KEY, NodeSpec, TestFleet};
use remote_agents_tests::node::McpProcess;
use serde_json::{Value, json};

const FLEET: &str = "\
apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: surfaces}
spec:
  hosts:
    - {name: prod-1, tags: [prod], mode: edit}
    - {name: prod-mcp, tags: [prod], mode: edit}
    - {name: dev-1, tags: [dev], mode: edit}
    - {name: dev-mcp, tags: [dev], mode: edit}
";

const SURFACE: &str = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: prod-read-only}
spec:
  target: tag:prod
  toolsets: [core, files, git, fleet]
  maxMode: plan
";

/// `remote-agents mcp` as a full node of the fleet's room, named `name`, with every toolset
/// selected (the surface narrows them where it applies).
async fn mcp_node(fleet: &TestFleet, name: &str) -> anyhow::Result<McpProcess> {
    let data_dir = fleet.dir.path().join(name);
    let data_dir = data_dir.to_string_lossy();
    McpProcess::start(
        &[
            "--relay",
            &fleet.relay_url,
            "--room",
            &fleet.room,
            "--name",
            name,
            "--mode",
            "edit",
            "--toolsets",
            "all",
            "--data-dir",
            &data_dir,
        ],
        &[("REMOTE_AGENTS_ENCRYPTION_KEY", ENCRYPTION_KEY)],
    )
    .await
}

async fn tool_names(mcp: &mut McpProcess) -> anyhow::Result<Vec<String>> {
    let id = mcp.send("tools/list", json!({})).await?;
    let listed = mcp.wait_for(id, Duration::from_secs(30)).await?;
    Ok(listed["result"]["tools"]
        .as_array()
        .context("no tools")?
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect())
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Calls a tool until its answer is not "no connected peer" (a node that just joined the room
/// may not see the others yet).
async fn call_when_connected(
    mcp: &mut McpProcess,
    tool: &str,
    arguments: Value,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let result = mcp.call_tool(tool, arguments.clone()).await?;
        let text = text_of(&result);
        if !text.contains("no connected peer") && !text.contains("no host matched") {
            return Ok(result);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{tool} never reached its host: {result}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_surface_for_prod_hides_and_refuses_writes_wherever_a_model_asks()
-> anyhow::Result<()> {
    let fleet = TestFleet::start(&[NodeSpec::bare("prod-1"), NodeSpec::bare("dev-1")]).await?;
    let mut prod_mcp = mcp_node(&fleet, "prod-mcp").await?;
    let mut dev_mcp = mcp_node(&fleet, "dev-mcp").await?;
    fleet
        .wait_for_hosts(["prod-1", "dev-1", "prod-mcp", "dev-mcp"])
        .await?;

    // Before any spec: no surface, every tool.
    assert!(tool_names(&mut prod_mcp).await?.contains(&"exec".into()));

    let spec = fleet.dir.path().join("spec");
    std::fs::create_dir_all(&spec)?;
    std::fs::write(spec.join("fleet.yaml"), FLEET)?;
    std::fs::write(spec.join("surfaces.yaml"), SURFACE)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    let (code, stdout, stderr) = fleet.fleetctl(&["keygen"]).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("4/4 hosts at generation 1"), "{stdout}");
    let (code, stdout, _) = fleet
        .fleetctl(&["explain", "prod-1", "-f", spec_arg])
        .await?;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("prod-read-only core,files,git,fleet max plan"),
        "{stdout}"
    );

    // (a) The prod node's own MCP server: reads of the surface's toolsets only.
    let prod_tools = tool_names(&mut prod_mcp).await?;
    for read in [
        "read_file",
        "list_dir",
        "get_info",
        "git_status",
        "fleet_read",
    ] {
        assert!(prod_tools.contains(&read.into()), "{read}: {prod_tools:?}");
    }
    for withheld in [
        "exec",
        "write_file",
        "set_mode",
        "git_commit",
        "fleet_exec",
        "fleet_write",
        "schedule_list",
        "spec_get",
        "send_file",
        "mapreduce",
    ] {
        assert!(
            !prod_tools.contains(&withheld.into()),
            "{withheld}: {prod_tools:?}"
        );
    }
    let refused = prod_mcp
        .call_tool("exec", json!({"argv": ["true"]}))
        .await?;
    assert_eq!(refused["isError"], true, "{refused}");
    let text = text_of(&refused);
    assert!(
        text.contains("McpSurface prod-read-only") && text.contains("host prod-mcp"),
        "{text}"
    );
    let refused = prod_mcp.call_tool("schedule_list", json!({})).await?;
    assert!(
        text_of(&refused).contains("`schedule` toolset, which McpSurface prod-read-only"),
        "{refused}"
    );

    // A dev node's MCP server lists everything: no surface selects it.
    let dev_tools = tool_names(&mut dev_mcp).await?;
    assert!(dev_tools.contains(&"exec".into()) && dev_tools.contains(&"write_file".into()));

    // (b) Forwarded to prod-1, a model's exec and write are refused by prod-1 itself.
    let work = tempfile::tempdir()?;
    let readable = work.path().join("readable.txt");
    std::fs::write(&readable, "hello from prod")?;
    let marker = work.path().join("written-by-a-model");
    let exec = call_when_connected(
        &mut dev_mcp,
        "exec",
        json!({"agent_id": "prod-1", "argv": ["touch", marker]}),
    )
    .await?;
    assert_eq!(exec["isError"], true, "{exec}");
    let text = text_of(&exec);
    assert!(
        text.contains("refused by policy")
            && text.contains("McpSurface prod-read-only")
            && text.contains("host prod-1")
            && text.contains("read-only for models"),
        "{text}"
    );
    let write = dev_mcp
        .call_tool(
            "write_file",
            json!({"agent_id": "prod-1", "path": marker, "content": "x"}),
        )
        .await?;
    assert_eq!(write["isError"], true, "{write}");
    assert!(
        text_of(&write).contains("McpSurface prod-read-only"),
        "{write}"
    );
    let schedule = dev_mcp
        .call_tool("schedule_list", json!({"agent_id": "prod-1"}))
        .await?;
    assert_eq!(schedule["isError"], true, "{schedule}");
    assert!(
        text_of(&schedule).contains("`schedule` toolset"),
        "{schedule}"
    );
    assert!(!marker.exists(), "a model wrote on prod-1");

    // Reads on prod-1 still work, and writes on dev-1.
    let read = dev_mcp
        .call_tool("read_file", json!({"agent_id": "prod-1", "path": readable}))
        .await?;
    assert_ne!(read["isError"], true, "{read}");
    assert_eq!(read["structuredContent"]["content"], "hello from prod");
    let dev_marker = work.path().join("written-on-dev");
    let dev_exec = call_when_connected(
        &mut dev_mcp,
        "exec",
        json!({"agent_id": "dev-1", "argv": ["touch", dev_marker]}),
    )
    .await?;
    assert_ne!(dev_exec["isError"], true, "{dev_exec}");
    assert!(dev_marker.exists());

    // A model's fan-out is marked too: prod-1 refuses its part, dev-1 runs it.
    let fanout = call_when_connected(
        &mut dev_mcp,
        "fleet_exec",
        json!({"target": "name:prod-1,name:dev-1", "argv": ["true"]}),
    )
    .await?;
    let folded = &fanout["structuredContent"];
    assert_eq!(folded["hosts"], 2, "{fanout}");
    assert_eq!(folded["ok"], 1, "{fanout}");
    let prod_group = folded["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["hosts"] == json!(["prod-1"]))
        .with_context(|| format!("no group for prod-1: {fanout}"))?;
    assert_ne!(prod_group["status"], "ok", "{fanout}");
    assert!(
        prod_group["error"]
            .as_str()
            .is_some_and(|e| e.contains("McpSurface prod-read-only")),
        "{fanout}"
    );

    // fleetctl is an operator's tool, not a model: the surface does not govern it.
    let (code, records) = fleet
        .fleetctl_json(&[
            "exec",
            "-t",
            "name:prod-1",
            "--",
            "touch",
            &marker.to_string_lossy(),
        ])
        .await?;
    assert_eq!(code, 0, "{records:?}");
    assert!(marker.exists());
    Ok(())
}
