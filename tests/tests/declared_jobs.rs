//! Declared jobs act by themselves, end to end: three real nodes apply a spec with an
//! `on-apply` MapReduceJob; exactly one node (the lowest agent id) runs it, once for the
//! generation that added it; an unrelated change does not run it again; changing the job does.
//! The runs are listed fleet-wide by `fleetctl jobs --declared`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use remote_agents_tests::fleet::{NodeSpec, TestFleet};

const FLEET: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: jobs}
spec:
  defaults: {mode: edit}
  hosts:
    - {name: node-1}
    - {name: node-2}
    - {name: node-3}
";

fn census(items: &str) -> String {
    format!(
        "apiVersion: remote-agents.dev/v1
kind: MapReduceJob
metadata: {{name: census}}
spec:
  target: all
  input: {{items: [{items}]}}
  map: {{command: [cat]}}
  reduce: {{builtin: count}}
  trigger: on-apply
"
    )
}

/// Writes the spec folder and applies it, waiting for every node.
async fn apply(fleet: &TestFleet, fleet_yaml: &str, job_yaml: &str) -> anyhow::Result<()> {
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    std::fs::write(spec.join("fleet.yaml"), fleet_yaml)?;
    std::fs::write(spec.join("jobs.yaml"), job_yaml)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    anyhow::ensure!(code == 0, "apply failed: {stdout}{stderr}");
    Ok(())
}

/// The declared runs across the fleet, oldest first, once none is `running` and there are
/// at least `count`.
async fn runs(fleet: &TestFleet, count: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, stdout, stderr) = fleet
            .fleetctl(&["jobs", "--declared", "-o", "json"])
            .await?;
        anyhow::ensure!(
            code == 0,
            "fleetctl jobs --declared failed: {stdout}{stderr}"
        );
        let mut list: Vec<serde_json::Value> =
            serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))?;
        if list.len() >= count && list.iter().all(|run| run["result"] != "running") {
            list.reverse();
            return Ok(list);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {count} finished runs: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_on_apply_job_runs_once_per_generation_that_changes_it_on_one_node() -> anyhow::Result<()>
{
    let nodes: Vec<NodeSpec> = (1..=3)
        .map(|i| NodeSpec::bare(&format!("node-{i}")))
        .collect();
    let fleet = TestFleet::start(&nodes).await?;
    let (code, _, stderr) = fleet.fleetctl(&["keygen"]).await?;
    anyhow::ensure!(code == 0, "keygen failed: {stderr}");

    apply(&fleet, FLEET, &census("a, b, c")).await?;
    let first = runs(&fleet, 1).await?;
    // The coordinator is the node with the lowest agent id.
    let (code, stdout, _) = fleet.fleetctl(&["status", "-o", "json"]).await?;
    assert_eq!(code, 0, "{stdout}");
    let statuses: Vec<serde_json::Value> = serde_json::from_str(&stdout)?;
    let ids: BTreeMap<String, String> = statuses
        .iter()
        .map(|s| {
            (
                s["agent_id"].as_str().unwrap_or_default().to_string(),
                s["host"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let coordinator = ids.values().next().context("three hosts")?.clone();
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0]["host"], coordinator.as_str(), "{first:#?}");
    assert_eq!(first[0]["job"], "census");
    assert_eq!(first[0]["trigger"], "on-apply gen 1");
    // Every host mapped its share of the three items, the coordinator included.
    assert_eq!(first[0]["result"], "complete: 3", "{first:#?}");

    // An unrelated change (a rule) is a new generation; the job is the same.
    let with_rule = format!(
        "{FLEET}  rules:\n    - {{target: name:node-3, policy: {{paths: {{deny: [/nothing-here/**]}}}}}}\n"
    );
    apply(&fleet, &with_rule, &census("a, b, c")).await?;
    // The job changes: it runs once more.
    apply(&fleet, &with_rule, &census("a, b, c, d")).await?;
    let all = runs(&fleet, 2).await?;
    let seen: Vec<(String, String, String)> = all
        .iter()
        .map(|run| {
            (
                run["host"].as_str().unwrap_or_default().to_string(),
                run["trigger"].as_str().unwrap_or_default().to_string(),
                run["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                coordinator.clone(),
                "on-apply gen 1".to_string(),
                "complete: 3".to_string()
            ),
            (
                coordinator.clone(),
                "on-apply gen 3".to_string(),
                "complete: 4".to_string()
            ),
        ],
        "{all:#?}"
    );
    Ok(())
}
