//! Rollouts end to end (`kind: Rollout`, examples/staged-fleet): `fleetctl apply --wait` moves a
//! generation through the canary and then the rest, hosts outside a wave never take its
//! generation, and a canary that fails its check halts the rollout and is rolled back to the
//! previous generation while the other hosts never see the new one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use remote_agents_tests::fleet::TestFleet;

use crate::desired::{status, three_web_hosts};

fn staged_fleet() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../examples/staged-fleet")
}

/// examples/staged-fleet copied where the test may edit it, with its check writing `probe`.
fn spec_copy(fleet: &TestFleet) -> anyhow::Result<(PathBuf, PathBuf)> {
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    for entry in std::fs::read_dir(staged_fleet())? {
        let path = entry?.path();
        std::fs::copy(&path, spec.join(path.file_name().context("file name")?))?;
    }
    let probe = fleet.dir.path().join("probe");
    edit(
        &spec.join("rollout.yaml"),
        "/tmp/.remote-agents-rollout-check",
        probe.to_str().context("utf-8 path")?,
    )?;
    Ok((spec, probe))
}

fn edit(path: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    anyhow::ensure!(text.contains(from), "{} has no `{from}`", path.display());
    std::fs::write(path, text.replace(from, to))?;
    Ok(())
}

/// The generations `host` accepted, oldest first (its own history, asked directly).
async fn accepted_generations(fleet: &TestFleet, host: &str) -> anyhow::Result<Vec<u64>> {
    let outcome = fleet
        .call(
            host,
            serde_json::json!({"op": "desired_history", "args": {}}),
        )
        .await?;
    let entries = outcome["result"]
        .as_array()
        .with_context(|| format!("no history from {host}: {outcome}"))?;
    Ok(entries
        .iter()
        .filter_map(|e| e["generation"].as_u64())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_moves_through_the_canary_then_the_rest() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    let (code, _, stderr) = fleet.fleetctl(&["keygen"]).await?;
    anyhow::ensure!(code == 0, "keygen failed: {stderr}");
    let (spec, probe) = spec_copy(&fleet)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;

    // A dry run shows the waves the hosts split into (the canary by the tag the spec declares
    // for it, before any node runs the spec), and publishes nothing.
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--dry-run"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("  wave 1/2 canary: web-1\n"), "{stdout}");
    assert!(
        stdout.contains("  wave 2/2 rest: web-2, web-3\n"),
        "{stdout}"
    );
    assert!(
        status(&fleet)
            .await?
            .values()
            .all(|s| s["observed_generation"] == 0)
    );

    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The waves as they went: the canary alone at generation 1, then everyone at 2.
    assert!(
        stdout.contains("Rollout canary-first: 2 waves."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Wave 1/2 canary: publishing generation 1 to web-1."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Wave 1 canary: 1 passed, 0 failed."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Wave 2/2 rest: publishing generation 2 to web-2, web-3."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Wave 2 rest: 2 passed, 0 failed."),
        "{stdout}"
    );
    assert!(
        stdout.contains("tmp-writable ok"),
        "the check ran on each host: {stdout}"
    );
    assert!(
        stdout.contains("Rollout canary-first completed: 2 waves, every host at generation 2."),
        "{stdout}"
    );
    assert!(probe.exists(), "the check ran through the hosts' exec path");

    let now = status(&fleet).await?;
    for host in ["web-1", "web-2", "web-3"] {
        let s = &now[host];
        assert_eq!(s["observed_generation"], 2, "{host}: {s}");
        assert_eq!(s["sync"], "Synced", "{host}: {s}");
        assert_eq!(s["health"], "Healthy", "{host}: {s}");
    }
    // The canary took both generations; the others were outside wave 1 and never took it.
    assert_eq!(accepted_generations(&fleet, "web-1").await?, [1, 2]);
    assert_eq!(accepted_generations(&fleet, "web-2").await?, [2]);
    assert_eq!(accepted_generations(&fleet, "web-3").await?, [2]);

    // The same spec again: nothing to roll out.
    let (code, stdout, stderr) = fleet.fleetctl(&["apply", "-f", spec_arg, "--wait"]).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("No changes"), "{stdout}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_canary_halts_the_rollout_and_is_rolled_back() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    let (code, _, stderr) = fleet.fleetctl(&["keygen"]).await?;
    anyhow::ensure!(code == 0, "keygen failed: {stderr}");
    let (spec, _) = spec_copy(&fleet)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let before = status(&fleet).await?;
    let good_hash = before["web-1"]["spec_hash"].clone();
    assert_eq!(before["web-1"]["mode"], "edit");

    // The new generation puts every host in plan mode, where the check (a write) cannot pass:
    // the canary takes it, fails, and the rollout halts and rolls it back.
    edit(&spec.join("fleet.yaml"), "mode: edit", "mode: plan")?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 3, "a halted rollout exits 3: {stdout}{stderr}");
    assert!(
        stdout.contains("Wave 1/2 canary: publishing generation 3 to web-1."),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED: check `tmp-writable`"), "{stdout}");
    assert!(
        stdout.contains("Wave 1 canary: 0 passed, 1 failed."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Halted: 1 failed host(s) reached the failure threshold (1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Rolling back web-1 to generation 2's spec as generation 4."),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "Rollout canary-first halted at wave 1/2 (canary); the hosts that took \
                         it were rolled back to generation 2's spec as generation 4."
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Wave 2/2"),
        "the next wave never started: {stdout}"
    );

    let now = status(&fleet).await?;
    // The canary runs the previous spec again, in a generation of its own.
    assert_eq!(now["web-1"]["observed_generation"], 4, "{:?}", now["web-1"]);
    assert_eq!(now["web-1"]["spec_hash"], good_hash);
    assert_eq!(
        now["web-1"]["mode"], "edit",
        "the rollback reverted the mode"
    );
    assert_eq!(now["web-1"]["sync"], "Synced");
    assert_eq!(accepted_generations(&fleet, "web-1").await?, [1, 2, 3, 4]);
    // The other hosts never took generation 3 (nor the canary's rollback).
    for host in ["web-2", "web-3"] {
        assert_eq!(
            now[host]["observed_generation"], 2,
            "{host}: {:?}",
            now[host]
        );
        assert_eq!(now[host]["spec_hash"], good_hash, "{host}");
        assert_eq!(now[host]["mode"], "edit", "{host}");
        assert_eq!(now[host]["health"], "Healthy", "{host}");
        assert_eq!(accepted_generations(&fleet, host).await?, [2], "{host}");
        // Its status says a newer generation went out without it.
        let waiting = now[host]["conditions"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["type"] == "RolloutWave"))
            .with_context(|| format!("{host} has no RolloutWave condition: {:?}", now[host]))?;
        assert!(
            waiting["message"]
                .as_str()
                .unwrap_or_default()
                .ends_with("this host stays at generation 2"),
            "{host}: {waiting}"
        );
    }

    // As JSON the report says the same.
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "-o", "json"])
        .await?;
    assert_eq!(code, 3, "{stdout}{stderr}");
    // The plan comes first, as with every apply; the report is the JSON after it.
    let json = &stdout[stdout.find("\n{").map_or(0, |i| i + 1)..];
    let report: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("not JSON: {stdout}"))?;
    assert_eq!(report["outcome"], "halted", "{report}");
    assert_eq!(report["waves"][0]["hosts"][0]["host"], "web-1", "{report}");
    assert_eq!(report["rollback"]["to_generation"], 4, "{report}");
    assert_eq!(
        report["rollback"]["hosts"][0]["result"], "rolled-back",
        "{report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failure_in_the_last_wave_rolls_every_host_back() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    let (code, _, stderr) = fleet.fleetctl(&["keygen"]).await?;
    anyhow::ensure!(code == 0, "keygen failed: {stderr}");
    let (spec, probe) = spec_copy(&fleet)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let good_hash = status(&fleet).await?["web-1"]["spec_hash"].clone();

    // A check that fails only where the host's home holds `broken` (checks run in the host's
    // home): on web-2, which is in the last wave, after the canary passed.
    std::fs::write(
        remote_agents_tests::fleet::node_dir(&fleet, "web-2").join("broken"),
        "",
    )?;
    edit(
        &spec.join("rollout.yaml"),
        &format!("command: [touch, {}]", probe.display()),
        "command: [test, \"!\", -e, broken]",
    )?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("Wave 1 canary: 1 passed, 0 failed."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Wave 2 rest: 1 passed, 1 failed."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Rolling back web-1, web-2, web-3 to generation 2's spec as generation 5."),
        "{stdout}"
    );
    let now = status(&fleet).await?;
    for host in ["web-1", "web-2", "web-3"] {
        assert_eq!(
            now[host]["observed_generation"], 5,
            "{host}: {:?}",
            now[host]
        );
        assert_eq!(now[host]["spec_hash"], good_hash, "{host}");
    }
    assert_eq!(
        accepted_generations(&fleet, "web-1").await?,
        [1, 2, 3, 4, 5]
    );
    assert_eq!(accepted_generations(&fleet, "web-2").await?, [2, 4, 5]);
    Ok(())
}
