//! The declarative fleet end to end: `fleetctl apply` converges real node processes to
//! examples/fleet, a second apply changes nothing, a changed rule reconverges only the hosts it
//! matches, offline nodes catch up from the relay or (after the relay lost everything) from
//! peers, bad bundles are refused by every node, drift shows and is reverted, and a fleet that
//! lists operators obeys only them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use remote_agents_node::desired::{BundleContent, OperatorKey, SignedBundle, SpecFile};
use remote_agents_tests::fleet::{NodeSpec, TestFleet};

fn examples_fleet() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../examples/fleet")
}

/// A copy of a spec folder the test may edit.
fn copy_spec(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().context("file name")?))?;
        }
    }
    Ok(())
}

/// Three bare nodes, web-1 to web-3.
pub(crate) fn three_web_hosts() -> Vec<NodeSpec> {
    ["web-1", "web-2", "web-3"]
        .iter()
        .map(|name| NodeSpec::bare(name))
        .collect()
}

/// Host → status JSON from `fleetctl status -o json`.
pub(crate) async fn status(
    fleet: &TestFleet,
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let (code, stdout, stderr) = fleet.fleetctl(&["status", "-o", "json"]).await?;
    anyhow::ensure!(code == 0, "fleetctl status failed: {stdout}{stderr}");
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))?;
    Ok(list
        .into_iter()
        .map(|s| (s["host"].as_str().unwrap_or_default().to_string(), s))
        .collect())
}

/// Polls `fleetctl status` until `condition` holds for the map (or a generous deadline).
async fn wait_status(
    fleet: &TestFleet,
    what: &str,
    condition: impl Fn(&BTreeMap<String, serde_json::Value>) -> bool,
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = status(fleet).await?;
        if condition(&now) {
            return Ok(now);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn generation(status: &serde_json::Value) -> u64 {
    status["observed_generation"].as_u64().unwrap_or(0)
}

async fn keygen(fleet: &TestFleet) -> anyhow::Result<String> {
    let (code, stdout, stderr) = fleet.fleetctl(&["keygen"]).await?;
    anyhow::ensure!(code == 0, "keygen failed: {stderr}");
    Ok(stdout.trim().to_string())
}

fn twenty_hosts() -> Vec<NodeSpec> {
    let mut nodes: Vec<NodeSpec> = [
        "web-1", "web-2", "web-3", "api-1", "api-2", "db-1", "db-2", "build-1", "build-2", "mac-1",
    ]
    .iter()
    .map(|name| NodeSpec::bare(name))
    .collect();
    nodes.extend((1..=10).map(|i| NodeSpec::bare(&format!("lab-{i}"))));
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_converges_twenty_nodes_is_idempotent_and_reverts_drift() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&twenty_hosts()).await?;
    keygen(&fleet).await?;
    let spec = fleet.dir.path().join("repo");
    copy_spec(&examples_fleet(), &spec)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;

    // Dry run: a plan, nothing published.
    let (code, stdout, _) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--dry-run"])
        .await?;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("Plan: "), "{stdout}");
    assert!(stdout.contains("dry run"), "{stdout}");
    assert!(status(&fleet).await?.values().all(|s| generation(s) == 0));

    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("20/20 hosts at generation 1"), "{stdout}");
    let now = status(&fleet).await?;
    assert_eq!(now.len(), 20);
    for (host, s) in &now {
        assert_eq!(generation(s), 1, "{host}: {s}");
        assert_eq!(s["sync"], "Synced", "{host}: {s}");
    }
    // Nodes started with no flags take their tags and mode from the spec.
    assert_eq!(now["web-1"]["mode"], "edit");
    assert_eq!(now["build-2"]["mode"], "bypass");
    assert_eq!(now["db-1"]["mode"], "plan");
    assert_eq!(now["lab-7"]["tags"], serde_json::json!(["lab"]));
    assert_eq!(now["api-1"]["tags"], serde_json::json!(["api", "backend"]));
    assert!(
        now["web-1"]["schedules"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("rotate-logs"))
    );
    // The live mode is enforced: plan-mode hosts refuse writes.
    let (code, records) = fleet
        .fleetctl_json(&["write", "-t", "name:db-1", "x.txt", "--content", "x"])
        .await?;
    assert_eq!(code, 1);
    assert_eq!(records["db-1"]["status"], "denied");

    // A second apply of the same spec changes nothing and publishes nothing.
    let (code, stdout, _) = fleet.fleetctl(&["apply", "-f", spec_arg, "--wait"]).await?;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("No changes"), "{stdout}");
    let (code, stdout, _) = fleet.fleetctl(&["diff", "-f", spec_arg]).await?;
    assert_eq!(code, 0, "diff of an applied spec: {stdout}");

    // Changing one rule reconverges only the hosts it matches.
    let fleet_yaml = spec.join("fleet.yaml");
    let text = std::fs::read_to_string(&fleet_yaml)?;
    std::fs::write(
        &fleet_yaml,
        text.replace(
            "target: tag:ci\n      mode: bypass",
            "target: tag:ci\n      mode: edit",
        ),
    )?;
    let (code, stdout, _) = fleet.fleetctl(&["diff", "-f", spec_arg]).await?;
    assert_eq!(code, 1, "diff of a changed spec: {stdout}");
    let (code, stdout, stderr) = fleet.fleetctl(&["apply", "-f", spec_arg, "--wait"]).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("~ Rule ci-bypass"), "{stdout}");
    let now = status(&fleet).await?;
    let changed: Vec<&str> = now
        .iter()
        .filter(|(_, s)| s["last_changes"].as_u64() != Some(0))
        .map(|(h, _)| h.as_str())
        .collect();
    assert_eq!(changed, vec!["build-1", "build-2"]);
    assert!(now.values().all(|s| generation(s) == 2));
    assert_eq!(now["build-1"]["mode"], "edit");

    // Drift: set_mode by hand shows in status and diff, and the next apply reverts it.
    let outcome = fleet
        .call(
            "web-1",
            serde_json::json!({"op": "set_mode", "args": {"mode": "bypass", "reason": "debugging"}}),
        )
        .await?;
    assert_eq!(outcome["status"], "ok", "{outcome}");
    let now = status(&fleet).await?;
    assert_eq!(now["web-1"]["sync"], "OutOfSync");
    assert_eq!(now["web-1"]["mode"], "bypass");
    assert!(
        now["web-1"]["drift"][0]["message"]
            .as_str()
            .unwrap()
            .contains("debugging")
    );
    let (code, stdout, _) = fleet.fleetctl(&["status"]).await?;
    assert_eq!(code, 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("web-1") && l.contains("OutOfSync") && l.contains("bypass")),
        "{stdout}"
    );
    let (code, stdout, _) = fleet.fleetctl(&["diff", "-f", spec_arg]).await?;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("web-1: drift"), "{stdout}");
    let (code, stdout, _) = fleet.fleetctl(&["apply", "-f", spec_arg, "--wait"]).await?;
    assert_eq!(code, 0, "{stdout}");
    let now = status(&fleet).await?;
    assert_eq!(now["web-1"]["sync"], "Synced");
    assert_eq!(now["web-1"]["mode"], "edit");
    assert_eq!(generation(&now["web-1"]), 3);

    // An override also reverts by itself at its expiry.
    let outcome = fleet
        .call(
            "web-2",
            serde_json::json!({"op": "set_mode", "args": {"mode": "plan", "ttl_secs": 1}}),
        )
        .await?;
    assert_eq!(outcome["status"], "ok", "{outcome}");
    wait_status(&fleet, "web-2's override to expire", |now| {
        now.get("web-2")
            .is_some_and(|s| s["sync"] == "Synced" && s["mode"] == "edit")
    })
    .await?;

    // History and rollback.
    let (code, stdout, _) = fleet.fleetctl(&["history", "-o", "json"]).await?;
    assert_eq!(code, 0);
    let history: Vec<serde_json::Value> = serde_json::from_str(&stdout)?;
    assert_eq!(
        history.iter().map(generation_of).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let (code, stdout, stderr) = fleet.fleetctl(&["rollback", "--to", "1", "--wait"]).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let now = status(&fleet).await?;
    assert!(now.values().all(|s| generation(s) == 4));
    assert_eq!(
        now["build-1"]["mode"], "bypass",
        "generation 1's content is back"
    );

    let (code, stdout, _) = fleet.fleetctl(&["get", "schedules", "-o", "json"]).await?;
    assert_eq!(code, 0);
    let schedules: Vec<serde_json::Value> = serde_json::from_str(&stdout)?;
    let backup = schedules
        .iter()
        .find(|s| s["name"] == "backup-db")
        .context("backup-db listed")?;
    assert_eq!(backup["hosts"], "db-1,db-2");
    Ok(())
}

fn generation_of(entry: &serde_json::Value) -> u64 {
    entry["generation"].as_u64().unwrap_or(0)
}

const SMALL_FLEET: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: small}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: web-1, tags: [web]}
    - {name: web-2, tags: [web]}
    - {name: web-3, tags: [web]}
  rules:
    - {target: tag:web, mode: MODE}
";

fn write_small(dir: &Path, mode: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("fleet.yaml"), SMALL_FLEET.replace("MODE", mode))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_node_catches_up_from_the_relay_and_after_a_relay_restart() -> anyhow::Result<()>
{
    let nodes = three_web_hosts();
    let mut fleet = TestFleet::start(&nodes).await?;
    keygen(&fleet).await?;
    let spec = fleet.dir.path().join("repo");
    let spec_arg = spec.to_str().context("utf-8 path")?.to_string();

    // web-3 is down during the apply: --wait reports it and fails.
    fleet.kill("web-3").await?;
    write_small(&spec, "edit")?;
    let (code, stdout, _) = fleet
        .fleetctl(&["apply", "-f", &spec_arg, "--wait", "--timeout", "2s"])
        .await?;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("2/3 hosts at generation 1"), "{stdout}");
    // It comes back and takes the bundle the relay kept.
    fleet.start_node(&nodes[2])?;
    wait_status(&fleet, "web-3 to catch up from the relay", |now| {
        now.get("web-3")
            .is_some_and(|s| generation(s) == 1 && s["mode"] == "edit")
    })
    .await?;

    // Down again for generation 2; then the relay restarts and forgets its retained store.
    fleet.kill("web-3").await?;
    write_small(&spec, "bypass")?;
    let (code, stdout, _) = fleet
        .fleetctl(&["apply", "-f", &spec_arg, "--timeout", "2s"])
        .await?;
    assert_eq!(code, 0, "{stdout}");
    fleet.restart_relay().await?;
    fleet.start_node(&nodes[2])?;
    // Only the peers remember generation 2 now (they hand it over or restore the relay's copy).
    let now = wait_status(&fleet, "web-3 to catch up from its peers", |now| {
        now.get("web-3")
            .is_some_and(|s| generation(s) == 2 && s["mode"] == "bypass")
    })
    .await?;
    assert!(now.values().all(|s| s["sync"] == "Synced"), "{now:#?}");
    Ok(())
}

/// Offers a hand-made bundle to every host from the observer; returns host → decision.
async fn offer_everywhere(
    fleet: &TestFleet,
    bundle: &SignedBundle,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for host in ["web-1", "web-2", "web-3"] {
        let outcome = fleet
            .call(
                host,
                serde_json::json!({"op": "desired_offer", "args": {"bundle": bundle}}),
            )
            .await?;
        let decision = outcome["result"]["decision"].as_str().unwrap_or_default();
        let reason = outcome["result"]["reason"].as_str().unwrap_or_default();
        out.insert(host.to_string(), format!("{decision}: {reason}"));
    }
    Ok(out)
}

fn bundle_content(key: &OperatorKey, generation: u64, text: &str) -> BundleContent {
    BundleContent {
        fleet: "small".into(),
        generation,
        revision: format!("test-{generation}"),
        issued_at_ms: 1,
        issuer: key.public(),
        files: vec![SpecFile {
            path: "fleet.yaml".into(),
            text: text.into(),
        }],
        window_override: None,
        rollout: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_bundles_are_refused_and_only_operators_command() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    let alice_public = keygen(&fleet).await?;
    let alice_path = fleet.dir.path().join("config/remote-agents/operator.key");
    let alice = remote_agents_node::desired::operator::load_key(&alice_path)?;
    assert_eq!(alice.public(), alice_public);
    let mallory = OperatorKey::generate();
    let locked = SMALL_FLEET.replace("MODE", "edit").replace(
        "  defaults:",
        &format!("  operators:\n    - {{name: alice, key: \"{alice_public}\"}}\n  defaults:"),
    );
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    std::fs::write(spec.join("fleet.yaml"), &locked)?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec.to_str().unwrap(), "--wait"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Tampered: a valid signature over other bytes.
    let good = SignedBundle::sign(&bundle_content(&alice, 5, &locked), &alice);
    let other = SignedBundle::sign(
        &bundle_content(&alice, 5, &locked.replace("edit", "bypass")),
        &alice,
    );
    let tampered = SignedBundle {
        content: other.content.clone(),
        signature: good.signature.clone(),
    };
    // Unsigned.
    let unsigned = SignedBundle {
        content: good.content.clone(),
        signature: String::new(),
    };
    // Signed by a key the fleet does not list (even though the bundle lists it).
    let takeover = locked.replace(&alice_public, &mallory.public());
    let wrong_signer = SignedBundle::sign(&bundle_content(&mallory, 5, &takeover), &mallory);
    for (what, bundle, expected) in [
        ("tampered", &tampered, "does not verify"),
        ("unsigned", &unsigned, "does not verify"),
        ("wrong signer", &wrong_signer, "not an operator"),
    ] {
        let decisions = offer_everywhere(&fleet, bundle).await?;
        for (host, decision) in &decisions {
            assert!(
                decision.starts_with("refused") && decision.contains(expected),
                "{what} on {host}: {decision}"
            );
        }
    }
    // Older: alice moves the fleet to generation 5, then offers generation 4.
    let decisions = offer_everywhere(&fleet, &good).await?;
    assert!(
        decisions.values().all(|d| d.starts_with("new")),
        "{decisions:?}"
    );
    let older = SignedBundle::sign(&bundle_content(&alice, 4, &locked), &alice);
    let decisions = offer_everywhere(&fleet, &older).await?;
    for (host, decision) in &decisions {
        assert!(
            decision.starts_with("refused") && decision.contains("older"),
            "older on {host}: {decision}"
        );
    }
    let now = status(&fleet).await?;
    for (host, s) in &now {
        assert_eq!(generation(s), 5, "{host}");
        assert_eq!(s["health"], "Degraded", "{host}: the refusal is reported");
    }

    // Commands: the observer proved no operator key, mallory is not listed, alice is.
    let outcome = fleet
        .call(
            "web-1",
            serde_json::json!({"op": "exec", "args": {"argv": ["true"]}}),
        )
        .await?;
    assert_eq!(outcome["status"], "refused", "{outcome}");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("not authorized")
    );
    let (code, records) = fleet
        .fleetctl_json(&["exec", "-t", "web", "--", "true"])
        .await?;
    assert_eq!(code, 0, "alice's fleetctl may exec: {records:?}");
    let mallory_path = fleet.dir.path().join("mallory.key");
    remote_agents_node::desired::operator::create_key(&mallory_path)?;
    let (code, records) = fleet
        .fleetctl_json(&[
            "exec",
            "--operator-key",
            mallory_path.to_str().unwrap(),
            "-t",
            "web",
            "--",
            "true",
        ])
        .await?;
    assert_eq!(code, 1);
    assert!(
        records.values().all(|r| r["status"] == "denied"),
        "{records:?}"
    );
    Ok(())
}

/// SMALL_FLEET in edit mode with a policy test that does not hold: web hosts are in edit mode
/// and nothing keeps them from writing /etc.
const FAILING_POLICY_TEST: &str = "  tests:
    - name: web-stays-read-only
      target: tag:web
      unwritable: [\"/etc/**\"]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_policy_test_fails_validate_and_blocks_apply_with_its_line() -> anyhow::Result<()>
{
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    let alice_public = keygen(&fleet).await?;
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    let failing = format!(
        "{}{FAILING_POLICY_TEST}",
        SMALL_FLEET.replace("MODE", "edit")
    );
    let fleet_yaml = spec.join("fleet.yaml");
    std::fs::write(&fleet_yaml, &failing)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    // The `/etc/**` item of the test: line 15, column 20.
    let at = format!("{}:15:20", fleet_yaml.display());

    let (code, stdout, stderr) = fleet.fleetctl(&["validate", "-f", spec_arg]).await?;
    assert_ne!(
        code, 0,
        "validate of a failing policy test: {stdout}{stderr}"
    );
    let output = format!("{stdout}{stderr}");
    assert!(
        output.contains(&format!("{at}: error[policy-test-failed]"))
            && output.contains("expected no write of `/etc/**` on `tag:web`")
            && output.contains("on web-1: /etc/x may be written"),
        "{output}"
    );

    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "10s"])
        .await?;
    assert_ne!(code, 0, "apply of a failing policy test: {stdout}{stderr}");
    assert!(
        stderr.contains(&at) && stderr.contains("nothing was applied"),
        "{stdout}{stderr}"
    );
    assert!(
        status(&fleet).await?.values().all(|s| generation(s) == 0),
        "no node took the refused spec"
    );

    // A node that is handed such a bundle anyway (signed by the fleet's own operator) refuses
    // it with the same diagnostic: the tests are part of validation wherever a spec is loaded.
    let alice_path = fleet.dir.path().join("config/remote-agents/operator.key");
    let alice = remote_agents_node::desired::operator::load_key(&alice_path)?;
    assert_eq!(alice.public(), alice_public);
    let bundle = SignedBundle::sign(&bundle_content(&alice, 1, &failing), &alice);
    for (host, decision) in offer_everywhere(&fleet, &bundle).await? {
        assert!(
            decision.starts_with("refused")
                && decision.contains("fleet.yaml:15:20")
                && decision.contains("policy-test-failed"),
            "{host}: {decision}"
        );
    }

    // Made to hold (web hosts may write, but not /etc), the same test lets the apply through.
    let passing = failing.replace(
        "    - {target: tag:web, mode: edit}\n",
        "    - {target: tag:web, mode: edit, policy: {paths: {deny: [\"/etc/**\"]}}}\n",
    );
    assert_ne!(passing, failing);
    std::fs::write(&fleet_yaml, &passing)?;
    let (code, stdout, stderr) = fleet.fleetctl(&["validate", "-f", spec_arg]).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("3/3 hosts at generation"), "{stdout}");
    Ok(())
}

/// A deny window that is open at every moment (it starts each minute and lasts an hour), so
/// the test needs no clock of its own: the window's arithmetic at chosen moments is tested in
/// the spec crate (`spec/tests/windows.rs`).
const ALWAYS_FROZEN: &str = "---
apiVersion: remote-agents.dev/v1
kind: Window
metadata: {name: freeze}
spec:
  target: all
  action: deny
  cron: \"* * * * *\"
  duration: 1h
  timeZone: Europe/Berlin
";

/// The audit records of a node of the fleet, by `remote-agents audit --json`.
fn node_audit(fleet: &TestFleet, name: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let data_dir = fleet.dir.path().join("data").join(name);
    let audit = std::process::Command::new(remote_agents_tests::node::node_binary()?)
        .args(["audit", "--json", "--limit", "1000", "--data-dir"])
        .arg(&data_dir)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deny_window_refuses_exec_and_apply_until_overridden_with_a_reason() -> anyhow::Result<()>
{
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    keygen(&fleet).await?;
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    // The window comes with generation 1; it holds back what comes after.
    let frozen = format!("{}{ALWAYS_FROZEN}", SMALL_FLEET.replace("MODE", "edit"));
    std::fs::write(spec.join("fleet.yaml"), &frozen)?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");

    // MCP exec on a frozen host: refused, naming the window and when it closes.
    let mut mcp = fleet.start_mcp_operator().await?;
    fleet.wait_for_hosts(["web-1"]).await?;
    let exec = |extra: serde_json::Value| {
        let mut arguments = serde_json::json!({"agent_id": "web-1", "argv": ["true"]});
        arguments
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        arguments
    };
    let mut refused = serde_json::Value::Null;
    // The operator's MCP node may take a moment to see web-1.
    for _ in 0..100 {
        refused = mcp.call_tool("exec", exec(serde_json::json!({}))).await?;
        if !refused.to_string().contains("cannot reach agent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused["isError"], true, "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("change window `freeze` (deny) is open until")
            && text.contains("override_window"),
        "{text}"
    );
    // With a reason it runs, and web-1's audit log records the override and its reason.
    let ran = mcp
        .call_tool(
            "exec",
            exec(serde_json::json!({"override_window": "hotfix INC-42"})),
        )
        .await?;
    assert_ne!(ran["isError"], true, "{ran}");
    assert_eq!(ran["structuredContent"]["exit_code"], 0, "{ran}");
    let audit = node_audit(&fleet, "web-1")?;
    let decisions: Vec<&str> = audit
        .iter()
        .filter(|r| r["op"] == "exec")
        .filter_map(|r| r["decision"].as_str())
        .collect();
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with("refused: change window `freeze`")),
        "{decisions:#?}"
    );
    assert!(
        decisions
            .iter()
            .any(|d| d.contains("change window `freeze` overridden: hotfix INC-42")),
        "{decisions:#?}"
    );

    // The same from fleetctl: exec refused in the window, and run with --override-window.
    let (code, stdout, stderr) = fleet
        .fleetctl(&["exec", "-t", "name:web-1", "--", "true"])
        .await?;
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("change window `freeze` (deny) is open until")
            && stdout.contains("--override-window"),
        "{stdout}{stderr}"
    );
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "exec",
            "-t",
            "name:web-1",
            "--override-window",
            "hotfix INC-43",
            "--",
            "true",
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        node_audit(&fleet, "web-1")?
            .iter()
            .any(|r| r["op"] == "exec"
                && r["decision"].as_str().is_some_and(
                    |d| d.contains("change window `freeze` overridden: hotfix INC-43")
                )),
        "web-1's audit log has no fleetctl override"
    );

    // fleetctl status shows the closed window and the override that went through.
    let (code, stdout, _) = fleet.fleetctl(&["status"]).await?;
    assert_eq!(code, 0, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("web-1"))
        .with_context(|| stdout.clone())?;
    assert!(
        line.contains("closed: change window `freeze` (deny) is open until")
            && line.contains("last override: change window `freeze` overridden: hotfix INC-43"),
        "{stdout}"
    );

    // fleetctl apply of a change: every host refuses it with the window's reason.
    let changed = frozen.replace("mode: edit", "mode: bypass");
    std::fs::write(spec.join("fleet.yaml"), &changed)?;
    let (code, stdout, stderr) = fleet.fleetctl(&["apply", "-f", spec_arg]).await?;
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("change window `freeze` (deny) is open until")
            && stdout.contains("--override-window"),
        "{stdout}{stderr}"
    );
    let now = status(&fleet).await?;
    assert!(
        now.values()
            .all(|s| generation(s) == 1 && s["mode"] == "edit"),
        "{now:#?}"
    );
    // With a reason signed into the bundle it goes through, and the offer's audit says why.
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "apply",
            "-f",
            spec_arg,
            "--override-window",
            "release 1.2",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let now = status(&fleet).await?;
    assert!(now.values().all(|s| s["mode"] == "bypass"), "{now:#?}");
    let audit = node_audit(&fleet, "web-2")?;
    assert!(
        audit.iter().any(|r| r["op"] == "desired_offer"
            && r["decision"].as_str().is_some_and(|d| d.contains(
                "change window `freeze` overridden by the bundle's signer: release 1.2"
            ))),
        "{audit:#?}"
    );
    Ok(())
}

/// A generation a deny window held back is taken by itself once the window ends: nobody
/// applies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generation_held_back_by_a_window_is_taken_when_the_window_ends() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&three_web_hosts()).await?;
    keygen(&fleet).await?;
    let spec = fleet.dir.path().join("repo");
    std::fs::create_dir_all(&spec)?;
    let spec_arg = spec.to_str().context("utf-8 path")?;
    // A one-off deny window from a minute ago to a few seconds from now (UTC).
    let at = |offset: chrono::Duration| {
        (chrono::Utc::now() + offset)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let window = format!(
        "---\napiVersion: remote-agents.dev/v1\nkind: Window\nmetadata: {{name: freeze}}\n\
         spec:\n  target: all\n  action: deny\n  start: \"{}\"\n  end: \"{}\"\n",
        at(chrono::Duration::minutes(-1)),
        at(chrono::Duration::seconds(6)),
    );
    let frozen = format!("{}{window}", SMALL_FLEET.replace("MODE", "edit"));
    std::fs::write(spec.join("fleet.yaml"), &frozen)?;
    let (code, stdout, stderr) = fleet
        .fleetctl(&["apply", "-f", spec_arg, "--wait", "--timeout", "60s"])
        .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");

    std::fs::write(
        spec.join("fleet.yaml"),
        frozen.replace("mode: edit", "mode: bypass"),
    )?;
    let (code, stdout, stderr) = fleet.fleetctl(&["apply", "-f", spec_arg]).await?;
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("change window `freeze` (deny) is open until"),
        "{stdout}{stderr}"
    );
    let now = status(&fleet).await?;
    assert!(now.values().all(|s| generation(s) == 1), "{now:#?}");

    // The window ends six seconds after it was written; wait_status allows thirty.
    wait_status(&fleet, "every host to take generation 2", |now| {
        now.len() == 3
            && now
                .values()
                .all(|s| generation(s) == 2 && s["mode"] == "bypass")
    })
    .await?;
    Ok(())
}
