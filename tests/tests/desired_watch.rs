//! Watch mode: a node started with `--spec-repo` applies new commits of a git repository
//! within seconds and keeps the last good generation when a commit is broken; a node started
//! with `--spec DIR` re-applies when the folder's files change (idempotency of the same content
//! is a unit test of `DesiredState::apply_local`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use remote_agents_tests::fleet::{NodeSpec, TestFleet};
use serde_json::{Value, json};

const FLEET: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: watched}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: watcher, tags: [gitops], mode: MODE}
    - {name: folder-watcher, tags: [local], mode: MODE}
";

fn fleet_text(mode: &str) -> String {
    FLEET.replace("MODE", mode)
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn commit(repo: &Path, text: &str, message: &str) -> anyhow::Result<()> {
    std::fs::write(repo.join("fleet.yaml"), text)?;
    git(repo, &["add", "fleet.yaml"])?;
    git(repo, &["commit", "-q", "-m", message])
}

/// The node's observed desired-state status.
async fn status(fleet: &TestFleet, host: &str) -> anyhow::Result<Value> {
    let outcome = fleet
        .call(host, json!({"op": "desired_status", "args": {}}))
        .await?;
    outcome
        .get("result")
        .cloned()
        .with_context(|| format!("{host} gave no status: {outcome}"))
}

/// Polls `host`'s status until `check` holds; fails with the last status after `within`.
async fn wait_status(
    fleet: &TestFleet,
    host: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = status(fleet, host).await?;
        if check(&last) {
            return Ok(last);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "{host}: {what} not seen within {within:?}; last status: {last:#}\nlog:\n{}",
                fleet.node_log(host)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn source_condition(status: &Value) -> Option<&Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "SpecSource")
}

#[tokio::test]
async fn a_watching_node_applies_commits_and_keeps_the_last_good_generation() -> anyhow::Result<()>
{
    let work = tempfile::tempdir()?;
    let repo = work.path().join("fleet-repo");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    commit(&repo, &fleet_text("plan"), "plan everywhere")?;
    let folder = work.path().join("fleet-folder");
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join("fleet.yaml"), fleet_text("plan"))?;

    let repo_arg = repo.display().to_string();
    let folder_arg = folder.display().to_string();
    // With an operator key the watcher is a GitOps controller: it publishes what it applies.
    let key = work.path().join("operator.key");
    remote_agents_node::desired::operator::create_key(&key)?;
    let key_arg = key.display().to_string();
    // A long interval: the commit must be noticed through the repository's refs, not a poll.
    let mut fleet = TestFleet::start(&[NodeSpec::bare("watcher").with_args(&[
        "--spec-repo",
        &repo_arg,
        "--branch",
        "main",
        "--spec-interval",
        "60s",
        "--operator-key",
        &key_arg,
    ])])
    .await?;

    let first = wait_status(
        &fleet,
        "watcher",
        Duration::from_secs(20),
        "generation 1",
        |s| s["observed_generation"] == 1 && s["mode"] == "plan",
    )
    .await?;
    assert_eq!(first["tags"], json!(["gitops"]), "{first:#}");
    assert_eq!(source_condition(&first).unwrap()["status"], true);

    // A follower joins once generation 1 is at the relay, so it takes that copy and has no
    // reason to ask a peer or read the relay again: generation 2 can reach it only through the
    // controller's offer, which must find it although the two headless nodes never talked.
    fleet.start_node(&NodeSpec::bare("follower"))?;
    wait_status(
        &fleet,
        "follower",
        Duration::from_secs(20),
        "generation 1",
        |s| s["observed_generation"] == 1,
    )
    .await?;

    // A commit changing the host's mode is applied within seconds.
    let started = std::time::Instant::now();
    commit(&repo, &fleet_text("edit"), "edit mode")?;
    let second = wait_status(
        &fleet,
        "watcher",
        Duration::from_secs(10),
        "mode edit",
        |s| s["observed_generation"] == 2 && s["mode"] == "edit",
    )
    .await?;
    eprintln!("commit applied after {:?}", started.elapsed());
    assert_eq!(second["sync"], "Synced");
    // A node with no spec source of its own gets the generation the controller published.
    wait_status(
        &fleet,
        "follower",
        Duration::from_secs(10),
        "the published generation 2",
        |s| s["observed_generation"] == 2,
    )
    .await?;

    // A broken commit is reported and generation 2 stays in force.
    commit(
        &repo,
        &fleet_text("edit").replace("hosts:", "hostz:"),
        "broken",
    )?;
    let broken = wait_status(
        &fleet,
        "watcher",
        Duration::from_secs(10),
        "the broken commit reported",
        |s| source_condition(s).is_some_and(|c| c["status"] == false),
    )
    .await?;
    let condition = source_condition(&broken).unwrap();
    assert_eq!(condition["reason"], "InvalidRevision", "{broken:#}");
    assert!(
        condition["message"].as_str().unwrap().contains("hostz"),
        "{condition:#}"
    );
    assert_eq!(broken["observed_generation"], 2);
    assert_eq!(broken["mode"], "edit");
    assert_eq!(broken["health"], "Degraded");
    assert!(
        fleet
            .node_log("watcher")
            .contains("previous generation stays in force"),
        "the broken commit is logged"
    );

    // The next good commit is applied and clears the report.
    commit(&repo, &fleet_text("bypass"), "fixed")?;
    let fixed = wait_status(
        &fleet,
        "watcher",
        Duration::from_secs(10),
        "generation 3",
        |s| s["observed_generation"] == 3 && s["mode"] == "bypass",
    )
    .await?;
    assert_eq!(source_condition(&fixed).unwrap()["status"], true);
    assert_eq!(fixed["health"], "Healthy", "{fixed:#}");
    let follower = status(&fleet, "follower").await?;
    assert!(
        follower["observed_generation"] == 2 || follower["observed_generation"] == 3,
        "the broken commit was never published: {follower:#}"
    );

    // The folder watcher, with a bystander: a spec applied from a node's own folder without an
    // operator key is that node's business and is not passed on (no relay copy, no peer
    // hand-over), so it never competes with the fleet's operators.
    drop(fleet);
    let fleet = TestFleet::start(&[
        NodeSpec::bare("folder-watcher").with_args(&["--spec", &folder_arg]),
        NodeSpec::bare("bystander"),
    ])
    .await?;
    wait_status(
        &fleet,
        "folder-watcher",
        Duration::from_secs(20),
        "generation 1",
        |s| s["observed_generation"] == 1 && s["mode"] == "plan",
    )
    .await?;
    std::fs::write(folder.join("fleet.yaml"), fleet_text("edit"))?;
    wait_status(
        &fleet,
        "folder-watcher",
        Duration::from_secs(10),
        "mode edit from the folder",
        |s| s["observed_generation"] == 2 && s["mode"] == "edit",
    )
    .await?;
    let bystander = status(&fleet, "bystander").await?;
    assert_eq!(
        bystander["observed_generation"], 0,
        "a local-key bundle reached a peer: {bystander:#}"
    );
    Ok(())
}

/// The MCP spec tools end to end: an MCP client changes a host's mode with `spec_edit` (a git
/// commit appears), plans it with `spec_plan`, applies it with `spec_apply`, and the host
/// converges; stale and altered plans are refused.
#[tokio::test]
async fn an_mcp_client_edits_plans_and_applies_the_spec() -> anyhow::Result<()> {
    use remote_agents_tests::fleet::ENCRYPTION_KEY;
    use remote_agents_tests::node::McpProcess;

    let work = tempfile::tempdir()?;
    let repo = work.path().join("fleet-repo");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    commit(
        &repo,
        "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: mcp-fleet}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: web-1, tags: [web]}
",
        "initial fleet",
    )?;
    let fleet = TestFleet::start(&[NodeSpec::bare("web-1")]).await?;
    let repo_arg = repo.display().to_string();
    let data_dir = work.path().join("mcp-data");
    let data_arg = data_dir.display().to_string();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home)?;
    let home_arg = home.display().to_string();
    let mut mcp = McpProcess::start(
        &[
            "--relay",
            &fleet.relay_url,
            "--room",
            &fleet.room,
            "--encryption-key",
            ENCRYPTION_KEY,
            "--name",
            "mcp-ctl",
            "--data-dir",
            &data_arg,
            "--spec-repo",
            &repo_arg,
        ],
        &[("HOME", home_arg.as_str())],
    )
    .await?;

    let tools = {
        let id = mcp.send("tools/list", json!({})).await?;
        mcp.wait_for(id, Duration::from_secs(20)).await?
    };
    let annotations = |name: &str| -> Value {
        tools["result"]["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name))
            .map(|t| t["annotations"].clone())
            .unwrap_or(Value::Null)
    };
    for read_only in ["spec_get", "spec_plan", "fleet_status"] {
        assert_eq!(annotations(read_only)["readOnlyHint"], true, "{read_only}");
    }
    for writes in ["spec_edit", "spec_apply"] {
        assert_eq!(annotations(writes)["readOnlyHint"], false, "{writes}");
    }

    // The MCP node connects in the background: plan until it sees web-1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let plan = mcp.call_tool("spec_plan", json!({})).await?;
        let content = &plan["structuredContent"];
        if content["live_hosts"].get("web-1").is_some() {
            break content.clone();
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "spec_plan never saw web-1: {plan:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first["next_generation"], 1, "{first:#}");
    let applied = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": first["plan_id"], "plan_hash": first["plan_hash"], "wait_secs": 20}),
        )
        .await?;
    assert_ne!(applied["isError"], true, "{applied:#}");
    assert_eq!(
        applied["structuredContent"]["converged"], true,
        "{applied:#}"
    );

    // The spec puts every host it does not name, this controller too, in plan mode, where
    // spec_edit (a commit on this machine's disk) is refused; an operator lifts it to edit.
    let refused = mcp
        .call_tool(
            "spec_edit",
            json!({"change": {"op": "set_mode", "host": "web-1", "mode": "edit"}}),
        )
        .await?;
    assert_eq!(refused["isError"], true, "{refused:#}");
    assert!(refused.to_string().contains("plan mode"), "{refused:#}");
    let lifted = mcp.call_tool("set_mode", json!({"mode": "edit"})).await?;
    assert_ne!(lifted["isError"], true, "{lifted:#}");

    // spec_edit: web-1 to edit mode, as a git commit.
    let head_before = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", "HEAD"])
        .output()?;
    let edit = mcp
        .call_tool(
            "spec_edit",
            json!({"change": {"op": "set_mode", "host": "web-1", "mode": "edit"}}),
        )
        .await?;
    assert_ne!(edit["isError"], true, "{edit:#}");
    let commit_id = edit["structuredContent"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    let log = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["log", "-1", "--format=%H %s"])
        .output()?;
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(log.starts_with(&commit_id), "{log}");
    assert_ne!(
        String::from_utf8_lossy(&head_before.stdout).trim(),
        commit_id
    );
    assert!(log.contains("web-1"), "{log}");
    let porcelain = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["status", "--porcelain"])
        .output()?;
    assert!(
        porcelain.stdout.is_empty(),
        "the work tree is clean after the commit"
    );

    // A plan, then another commit: the plan is stale and refused.
    let plan = mcp.call_tool("spec_plan", json!({})).await?["structuredContent"].clone();
    assert_eq!(plan["next_generation"], 2, "{plan:#}");
    assert!(plan["text"].as_str().unwrap().contains("web-1"), "{plan:#}");
    let on_branch = mcp
        .call_tool(
            "spec_edit",
            json!({"change": {"op": "add_tag", "host": "web-1", "tag": "canary"}, "branch": "ai/canary"}),
        )
        .await?;
    assert_ne!(on_branch["isError"], true, "{on_branch:#}");
    assert_eq!(on_branch["structuredContent"]["branch"], "ai/canary");
    // A change on another branch does not touch what main says: the plan is still fresh, but an
    // altered hash or an unknown id is refused.
    let altered = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": plan["plan_id"], "plan_hash": "0".repeat(64)}),
        )
        .await?;
    assert_eq!(altered["isError"], true, "{altered:#}");
    let unknown = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": "no-such-plan", "plan_hash": plan["plan_hash"]}),
        )
        .await?;
    assert_eq!(unknown["isError"], true, "{unknown:#}");
    commit(
        &repo,
        &std::fs::read_to_string(repo.join("fleet.yaml"))?.replace("mcp-fleet", "mcp-fleet-2"),
        "rename the fleet",
    )?;
    let stale = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": plan["plan_id"], "plan_hash": plan["plan_hash"]}),
        )
        .await?;
    assert_eq!(stale["isError"], true, "{stale:#}");
    assert!(stale.to_string().contains("stale plan"), "{stale:#}");

    // A fresh plan applies, and web-1 converges to edit mode.
    let plan = mcp.call_tool("spec_plan", json!({})).await?["structuredContent"].clone();
    let applied = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": plan["plan_id"], "plan_hash": plan["plan_hash"], "wait_secs": 20}),
        )
        .await?;
    assert_ne!(applied["isError"], true, "{applied:#}");
    let generation = applied["structuredContent"]["generation"].clone();
    assert_eq!(generation, 2, "{applied:#}");
    let web = status(&fleet, "web-1").await?;
    assert_eq!(web["mode"], "edit", "{web:#}");
    assert_eq!(web["observed_generation"], 2);
    // fleet_status shows it too; a reused plan id is refused.
    let fleet_status = mcp
        .call_tool("fleet_status", json!({"target": "web"}))
        .await?;
    let hosts = fleet_status["structuredContent"]["hosts"]
        .as_array()
        .unwrap();
    let web = hosts.iter().find(|h| h["host"] == "web-1").unwrap();
    assert_eq!(web["mode"], "edit");
    assert_eq!(web["sync"], "Synced");
    // The resources: the applied desired state, and a host's observed status.
    let id = mcp
        .send("resources/read", json!({"uri": "fleet://desired"}))
        .await?;
    let desired = mcp.wait_for(id, Duration::from_secs(20)).await?;
    let text = desired["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let desired: Value = serde_json::from_str(text).with_context(|| format!("{desired:#}"))?;
    assert_eq!(desired["generation"], 2, "{desired:#}");
    let id = mcp
        .send(
            "resources/read",
            json!({"uri": "fleet://observed/hosts/web-1"}),
        )
        .await?;
    let observed = mcp.wait_for(id, Duration::from_secs(20)).await?;
    let text = observed["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let observed: Value = serde_json::from_str(text).with_context(|| format!("{observed:#}"))?;
    assert_eq!(observed["mode"], "edit", "{observed:#}");
    let reused = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": plan["plan_id"], "plan_hash": plan["plan_hash"]}),
        )
        .await?;
    assert_eq!(reused["isError"], true, "{reused:#}");
    let effective = mcp.call_tool("spec_get", json!({"host": "web-1"})).await?;
    assert_eq!(
        effective["structuredContent"]["effective"]["mode"]["value"], "edit",
        "{effective:#}"
    );

    // A spec that declares a Rollout is fleetctl apply's to move through its waves: spec_apply
    // refuses it rather than publish to every host at once.
    commit(
        &repo,
        &format!(
            "{}---\napiVersion: remote-agents.dev/v1\nkind: Rollout\nmetadata: {{name: canary-first}}\n\
             spec:\n  waves:\n    - {{name: canary, target: \"name:web-1\"}}\n",
            std::fs::read_to_string(repo.join("fleet.yaml"))?
        ),
        "a rollout",
    )?;
    let plan = mcp.call_tool("spec_plan", json!({})).await?["structuredContent"].clone();
    let refused = mcp
        .call_tool(
            "spec_apply",
            json!({"plan_id": plan["plan_id"], "plan_hash": plan["plan_hash"]}),
        )
        .await?;
    assert_eq!(refused["isError"], true, "{refused:#}");
    assert!(
        refused.to_string().contains("Rollout `canary-first`")
            && refused.to_string().contains("fleetctl apply"),
        "{refused:#}"
    );
    assert_eq!(status(&fleet, "web-1").await?["observed_generation"], 2);

    Ok(())
}
