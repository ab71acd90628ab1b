//! Schedules end to end: `fleetctl schedule add|list|remove` fanned out to a target selector on
//! real node processes; an every-second cron line runs on exactly the targeted nodes, shows in
//! their run history, and stops when removed.

use std::collections::BTreeMap;
use std::path::Path;

use remote_agents_tests::fleet::{NodeSpec, TestFleet, node_dir};
use remote_agents_tests::net::wait_until;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `fleetctl schedule list -t all -o json`: host → its `ScheduleListResult`.
async fn list(fleet: &TestFleet) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let (code, records) = fleet
        .fleetctl_json(&["schedule", "list", "-t", "all", "--runs", "20"])
        .await?;
    anyhow::ensure!(code == 0, "schedule list failed: {records:?}");
    records
        .into_iter()
        .map(|(host, record)| {
            let stdout = record["stdout"].as_str().unwrap_or_default();
            Ok((host, serde_json::from_str(stdout)?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_added_to_a_target_runs_only_there_and_stops_when_removed() -> anyhow::Result<()>
{
    let fleet = TestFleet::start(&[
        NodeSpec::new("sched-a", &["web"], "edit"),
        NodeSpec::new("sched-b", &["web"], "edit"),
        NodeSpec::new("sched-c", &["db"], "edit"),
    ])
    .await?;
    let ticks = |host: &str| lines(&node_dir(&fleet, host).join("ticks"));
    let witness = |host: &str| lines(&node_dir(&fleet, host).join("witness")).len();

    // Every second (a leading seconds field); commands run in each node's home directory.
    for (name, file) in [("tick", "ticks"), ("witness", "witness")] {
        let line = format!("echo $REMOTE_AGENTS_SCHEDULE_SLOT >> {file}");
        let (code, records) = fleet
            .fleetctl_json(&[
                "schedule",
                "add",
                "-t",
                "web",
                name,
                "--cron",
                "* * * * * *",
                "--",
                "sh",
                "-c",
                &line,
            ])
            .await?;
        assert_eq!(code, 0, "{records:?}");
        assert_eq!(records.keys().collect::<Vec<_>>(), ["sched-a", "sched-b"]);
    }

    wait_until("ticks on both web nodes", || {
        ticks("sched-a").len() >= 2 && ticks("sched-b").len() >= 2
    })
    .await?;
    let history = list(&fleet).await?;
    for host in ["sched-a", "sched-b"] {
        let schedules = history[host]["schedules"].as_array().unwrap();
        let tick = schedules.iter().find(|s| s["name"] == "tick").unwrap();
        assert_eq!(tick["source"], "imperative");
        assert!(
            tick["issuer"].as_str().unwrap().starts_with("peer:"),
            "{tick}"
        );
        let runs = tick["recent_runs"].as_array().unwrap();
        assert!(
            runs.iter()
                .any(|r| r["outcome"] == "ok" && r["exit_code"] == 0),
            "{host}: {runs:?}"
        );
        // Imperative schedules are drift: the spec does not hold them.
        assert_eq!(history[host]["drift"].as_array().unwrap().len(), 2);
    }
    assert_eq!(history["sched-c"]["schedules"], serde_json::json!([]));
    assert!(!node_dir(&fleet, "sched-c").join("ticks").exists());

    let (code, records) = fleet
        .fleetctl_json(&["schedule", "remove", "-t", "web", "tick"])
        .await?;
    assert_eq!(code, 0, "{records:?}");
    assert!(
        records["sched-a"]["stdout"]
            .as_str()
            .unwrap()
            .contains("\"removed\": true")
    );

    // The witness keeps firing; two of its slots after the removal settle any tick that was
    // starting at that moment, two more show the runner alive while tick stays still.
    let settle: BTreeMap<&str, usize> = ["sched-a", "sched-b"]
        .into_iter()
        .map(|h| (h, witness(h) + 2))
        .collect();
    wait_until("the witness firing after the removal", || {
        settle.iter().all(|(h, n)| witness(h) >= *n)
    })
    .await?;
    let after_removal: BTreeMap<&str, Vec<String>> = ["sched-a", "sched-b"]
        .into_iter()
        .map(|h| (h, ticks(h)))
        .collect();
    let more: BTreeMap<&str, usize> = ["sched-a", "sched-b"]
        .into_iter()
        .map(|h| (h, witness(h) + 2))
        .collect();
    wait_until("two more witness slots", || {
        more.iter().all(|(h, n)| witness(h) >= *n)
    })
    .await?;
    for host in ["sched-a", "sched-b"] {
        let now = ticks(host);
        assert_eq!(
            now, after_removal[host],
            "{host} kept ticking after removal"
        );
        let mut unique = now.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), now.len(), "{host} ran a slot twice: {now:?}");
    }
    let history = list(&fleet).await?;
    let names: Vec<&str> = history["sched-a"]["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["witness"]);
    Ok(())
}
