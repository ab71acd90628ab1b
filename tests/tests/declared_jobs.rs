//! Declared jobs act by themselves, end to end: three real nodes apply a spec with an
//! `on-apply` MapReduceJob; exactly one node (the lowest agent id) runs it, once for the
//! generation that added it; an unrelated change does not run it again; changing the job does.
//! The runs are listed fleet-wide by `fleetctl jobs --declared`. A `cron` job, on three nodes in
//! one process sharing a manual clock, runs once per slot fleet-wide.

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

type InProcessNode = (
    std::sync::Arc<remote_agents_node::node::Node>,
    remote_agents_node::mapreduce::trigger::TriggerRunner,
);

/// (host, trigger, result) of every declared run the nodes report, once `count` have ended.
async fn runs_in_process(
    nodes: &[InProcessNode],
    count: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = Vec::new();
        for (node, _) in nodes {
            for run in node.status().job_runs {
                all.push((node.settings().name.value.clone(), run.trigger, run.result));
            }
        }
        if all.len() >= count && all.iter().all(|(_, _, result)| result != "running") {
            all.sort_by(|a, b| a.1.cmp(&b.1));
            return Ok(all);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {count} runs: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three nodes in this process share one `ManualClock` (the schedule clock has no hook across
/// processes): a `cron` job runs once per slot fleet-wide, from the node with the lowest agent
/// id, and moving the clock within a slot runs nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cron_job_runs_once_per_slot_fleet_wide_on_a_manual_clock() -> anyhow::Result<()> {
    use remote_agents_node::config::{NodeFlags, Settings};
    use remote_agents_node::desired::{BundleContent, OperatorKey, SignedBundle, SpecFile};
    use remote_agents_node::schedule::{Clock, ManualClock, SystemClock};
    use remote_agents_tests::fleet::ENCRYPTION_KEY;
    use remote_agents_tests::net::RestartableRelay;

    let relay = RestartableRelay::start(remote_agents_relay::RelayConfig::default()).await?;
    let work = tempfile::tempdir()?;
    // Ten seconds into a five-minute slot's period, so the first slot is 4 min 50 s away.
    let start = SystemClock.now();
    let clock = ManualClock::new(start);
    let into_period = start.timestamp().rem_euclid(300) as u64;
    clock.advance(Duration::from_secs((300 - into_period + 10) % 300));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let mut nodes: Vec<InProcessNode> = Vec::new();
    for i in 1..=3 {
        let name = format!("cron-{i}");
        let flags = NodeFlags {
            relay: Some(relay.url()),
            room: Some("declared-cron".into()),
            name: Some(name.clone()),
            data_dir: Some(work.path().join(&name)),
            encryption_key: Some(ENCRYPTION_KEY.into()),
            ..NodeFlags::default()
        };
        let settings = Settings::resolve(&flags, &BTreeMap::<String, String>::new())?;
        nodes.push(remote_agents_node::service::start_with_clock(
            settings,
            std::sync::Arc::new(clock.clone()),
            shutdown.clone(),
        )?);
    }
    for (node, _) in &nodes {
        let net = node.net().context("connected")?;
        net.wait_for_peers(2, Duration::from_secs(30)).await?;
    }
    let key = OperatorKey::generate();
    let content = BundleContent {
        fleet: "cron".into(),
        generation: 1,
        revision: "r1".into(),
        issued_at_ms: 1,
        issuer: key.public(),
        files: vec![
            SpecFile {
                path: "fleet.yaml".into(),
                text: "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: cron}\n\
                       spec:\n  defaults: {mode: edit}\n"
                    .into(),
            },
            SpecFile {
                path: "jobs.yaml".into(),
                text: "apiVersion: remote-agents.dev/v1\nkind: MapReduceJob\n\
                       metadata: {name: tally}\nspec:\n  target: all\n  input: {items: [a, b, c]}\n  \
                       map: {command: [cat]}\n  reduce: {builtin: count}\n  trigger: cron\n  \
                       cron: '*/5 * * * *'\n"
                    .into(),
            },
        ],
        window_override: None,
        rollout: None,
    };
    let signed = SignedBundle::sign(&content, &key);
    for (node, _) in &nodes {
        node.offer_bundle(&signed, "request")
            .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
    }
    // Every runner has seen the job (its cursor starts at its first look).
    let moved = |by: u64| {
        clock.advance(Duration::from_secs(by));
        clock.now()
    };
    let seen = moved(1);
    for (_, runner) in &mut nodes {
        tokio::time::timeout(Duration::from_secs(30), runner.evaluated_at(seen)).await?;
    }

    let coordinator = nodes
        .iter()
        .min_by_key(|(node, _)| node.agent_id().to_string())
        .map(|(node, _)| node.settings().name.value.clone())
        .context("three nodes")?;

    // The first slot, then a move within the same slot's period, then the next slot.
    let slot = moved(289);
    for (_, runner) in &mut nodes {
        tokio::time::timeout(Duration::from_secs(30), runner.evaluated_at(slot)).await?;
    }
    let first = runs_in_process(&nodes, 1).await?;
    let within = moved(120);
    for (_, runner) in &mut nodes {
        tokio::time::timeout(Duration::from_secs(30), runner.evaluated_at(within)).await?;
    }
    let next = moved(180);
    for (_, runner) in &mut nodes {
        tokio::time::timeout(Duration::from_secs(30), runner.evaluated_at(next)).await?;
    }
    let both = runs_in_process(&nodes, 2).await?;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(both.len(), 2, "one run per slot, fleet-wide: {both:?}");
    for (host, trigger, result) in &both {
        assert_eq!(host, &coordinator, "{both:?}");
        assert!(trigger.starts_with("cron slot "), "{trigger}");
        assert_eq!(result, "complete: 3", "{both:?}");
    }
    assert_ne!(both[0].1, both[1].1, "two different slots: {both:?}");
    Ok(())
}
