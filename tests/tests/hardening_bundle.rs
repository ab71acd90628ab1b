//! Issue 12, item 1 end to end: a room member without an operator key leaves a sealed bundle
//! whose spec is a YAML alias bomb at the relay. Every node that (re)connects fetched and
//! parsed it and died (SIGABRT); now a node with operators refuses it unread, a node with
//! none (trust on first use) refuses it within the parser's limits, and both keep serving.

use std::time::Duration;

use remote_agents_node::desired::{BundleContent, OperatorKey, SignedBundle, SpecFile};
use remote_agents_tests::fleet::{NodeSpec, TestFleet};

/// A Fleet document whose spec is a 9^9-value alias bomb, declaring its signer as operator so
/// that a node trusting on first use has a reason to read it.
fn bomb_spec(signer: &OperatorKey) -> String {
    let mut text = format!(
        "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {{name: small}}\nspec:\n  \
         operators:\n    - {{name: mallory, key: \"{}\"}}\n  hosts:\n    - {{name: web-1}}\n  \
         bomb:\n    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        signer.public()
    );
    for level in 1..9 {
        let items = vec![format!("*a{}", level - 1); 9].join(", ");
        text.push_str(&format!("    a{level}: &a{level} [{items}]\n"));
    }
    text
}

/// Polls `read` until its text contains `wanted`.
async fn wait_for<F: std::future::Future<Output = anyhow::Result<String>>>(
    host: &str,
    wanted: &str,
    mut read: impl FnMut() -> F,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = read().await?;
        if text.contains(wanted) {
            return Ok(text);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{host} never reported `{wanted}`: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alias_bomb_left_at_the_relay_is_refused_and_restarted_nodes_keep_serving()
-> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let operator_path = keys.path().join("operator.key");
    let operator = remote_agents_node::desired::operator::create_key(&operator_path)?;
    let nodes = [
        // Operators in its config: the bomb's signer is not one of them.
        NodeSpec::bare("web-1").with_args(&["--operators", &operator.public()]),
        // No operators anywhere: the first bundle's own operator list decides.
        NodeSpec::bare("web-2"),
    ];
    let mut fleet = TestFleet::start(&nodes).await?;
    let mallory = OperatorKey::generate();
    let bomb = SignedBundle::sign(
        &BundleContent {
            fleet: "small".into(),
            generation: 1,
            revision: "bomb".into(),
            issued_at_ms: 1,
            issuer: mallory.public(),
            files: vec![SpecFile {
                path: "fleet.yaml".into(),
                text: bomb_spec(&mallory),
            }],
            window_override: None,
            rollout: None,
        },
        &mallory,
    );
    fleet.retain_bundle(&bomb).await?;
    // Restarted nodes fetch the relay's copy as they connect (before the fix: SIGABRT, every
    // restart).
    for node in &nodes {
        fleet.kill(&node.name).await?;
        fleet.start_node(node)?;
    }
    // web-1 answers only its operator, so its refusal is read from its log.
    let web1 = wait_for("web-1", "not an operator allowed", || async {
        Ok(fleet.node_log("web-1"))
    })
    .await?;
    assert!(!web1.contains("too-large"), "refused unread: {web1}");
    let web2 = wait_for("web-2", "too-large", || async {
        let outcome = fleet
            .call(
                "web-2",
                serde_json::json!({"op": "desired_status", "args": {}}),
            )
            .await?;
        Ok(outcome.to_string())
    })
    .await?;
    assert!(web2.contains("alias"), "{web2}");
    for node in &nodes {
        assert!(fleet.is_running(&node.name), "{} exited", node.name);
    }
    // Both still run requests.
    let key = operator_path.to_str().expect("utf-8 path");
    let (code, records) = fleet
        .fleetctl_json(&["exec", "--operator-key", key, "-t", "all", "--", "true"])
        .await?;
    assert_eq!(code, 0, "{records:?}");
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.values().all(|r| r["status"] == "ok"), "{records:?}");
    Ok(())
}
