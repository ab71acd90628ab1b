//! Publishing desired state from a caller (fleetctl, watch mode, the MCP spec tools): sign,
//! leave the sealed bundle at the relay, offer it to every node, and follow the hosts until they
//! report the generation; and the live fleet's snapshot of statuses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use remote_agents_ops::bundle::{BundleContent, SignedBundle, SpecFile, VerifiedBundle};
use remote_agents_ops::status::{ObservedStatus, SyncState};
use remote_agents_ops::{AgentArgs, DesiredOfferArgs, DesiredOfferResult, Request};
use remote_agents_spec::{FleetModel, HostFacts, Selector};

use super::distribute::{fetch_from_peer, fetch_retained, publish_retained};
use crate::desired::OperatorKey;
use crate::fleet::HostStatus;
use crate::fleet::connection::{Connection, FanoutPlan, fan_out};
use crate::fleet::fanout::FanoutOptions;
use crate::fleet::inventory::Inventory;
use crate::journal::now_ms;
use crate::node::Node;

/// What the live fleet reports: every host's status, and the newest applied bundle.
pub struct Snapshot {
    /// host → status, or why it gave none.
    pub hosts: BTreeMap<String, Result<ObservedStatus, String>>,
    pub newest: Option<VerifiedBundle>,
}

impl Snapshot {
    pub fn generation(&self) -> u64 {
        self.newest.as_ref().map_or(0, |b| b.content.generation)
    }
}

fn quiet_options(timeout: Duration) -> FanoutOptions {
    FanoutOptions {
        per_host_timeout: timeout,
        ..FanoutOptions::default()
    }
}

/// Asks every node (and every host the spec declares, reported when absent) for its status.
pub async fn snapshot(connection: &Connection, expected: &[HostFacts]) -> anyhow::Result<Snapshot> {
    let all = Selector::parse("all").expect("`all` is a selector");
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &all,
            expected,
            request: Request::DesiredStatus(AgentArgs { agent_id: None }),
            per_os: BTreeMap::new(),
            options: &quiet_options(Duration::from_secs(15)),
            summary: "desired_status".into(),
            // Desired state travels signed by an operator; the hosts judge the signer.
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    let mut hosts = BTreeMap::new();
    let mut newest: Option<(u64, String)> = None;
    for record in job.report.records {
        let status = if record.status == HostStatus::Ok {
            serde_json::from_str::<ObservedStatus>(&record.stdout)
                .map_err(|e| format!("malformed status: {e}"))
        } else {
            Err(record
                .error
                .clone()
                .unwrap_or_else(|| record.status.as_str().to_string()))
        };
        if let (Ok(status), Some(agent)) = (&status, &record.agent_id)
            && newest
                .as_ref()
                .is_none_or(|(g, _)| status.observed_generation > *g)
            && status.observed_generation > 0
        {
            newest = Some((status.observed_generation, agent.clone()));
        }
        hosts.insert(record.host, status);
    }
    let newest = match newest {
        Some((_, agent)) => {
            let peer = connection
                .net
                .peers()
                .into_iter()
                .find(|p| p.agent_id == agent)
                .map(|p| p.peer_id);
            match peer {
                Some(peer) => fetch_from_peer(&connection.net, peer, None)
                    .await
                    .ok()
                    .and_then(|b| b.verify().ok()),
                None => None,
            }
        }
        None => None,
    };
    Ok(Snapshot { hosts, newest })
}

/// The applied bundle as a caller without desired state of its own (fleetctl, a `--no-agent`
/// node) learns it: the one a connected node applied, since a node applies only bundles whose
/// signer it trusts; or, when no node hands one over (all offline, or none has one yet), the
/// newest the relay retains. Bundles are verified as `snapshot` verifies them (signature, then
/// the spec within its limits); `None` when nothing verifiable was found, e.g. before the first
/// apply.
pub async fn applied_bundle(connection: &Connection) -> Option<VerifiedBundle> {
    /// Nodes asked at most, one after the other until one hands over its bundle (a node that
    /// has none yet answers with an error). One answer is enough: a bundle can be megabytes,
    /// and a node that lags a generation behind still declares nearly the same hosts.
    const NODES_TO_ASK: usize = 3;
    let mut nodes: Vec<_> = connection
        .net
        .peers()
        .into_iter()
        .filter(|peer| peer.announcement.accepts_commands)
        .collect();
    // Spread the questions over the fleet rather than always asking the same nodes.
    fastrand::shuffle(&mut nodes);
    /// How long one node may take to hand its bundle over: a hung node must not hold up every
    /// fan-out by the RPC deadline; the relay's copy is the fallback.
    const ASK_TIMEOUT: Duration = Duration::from_secs(2);
    for peer in nodes.into_iter().take(NODES_TO_ASK) {
        let asked = fetch_from_peer(&connection.net, peer.peer_id, None);
        match tokio::time::timeout(ASK_TIMEOUT, asked).await {
            Ok(Ok(bundle)) => match bundle.verify() {
                Ok(bundle) => return Some(bundle),
                Err(error) => tracing::debug!(peer = %peer.agent_id, %error, "bundle refused"),
            },
            Ok(Err(error)) => tracing::debug!(peer = %peer.agent_id, %error, "no applied bundle"),
            Err(_) => tracing::debug!(peer = %peer.agent_id, "no bundle within {ASK_TIMEOUT:?}"),
        }
    }
    match fetch_retained(&connection.net, &connection.psk).await {
        Ok(retained) => retained
            .iter()
            .filter_map(|bundle| bundle.verify().ok())
            .max_by_key(|bundle| bundle.content.generation),
        Err(error) => {
            tracing::debug!(%error, "cannot read the relay's retained desired state");
            None
        }
    }
}

/// The inventory of a node's fan-outs (the MCP fleet tools): the spec the node applied, or,
/// on a send-only node (`--no-agent`), which follows no desired state, the newest applied
/// bundle the relay or the nodes hold. `None` before any apply or without a relay connection.
pub async fn node_inventory(node: &Node) -> Option<Inventory> {
    if let Some(bundle) = node.desired().current() {
        return Some(Inventory::of_bundle(&bundle));
    }
    let connection = Connection::of_node(node.net()?, node.agent_id().to_string(), node.psk()?);
    applied_bundle(&connection)
        .await
        .map(|bundle| Inventory::of_bundle(&bundle))
}

/// The revision of the files under `path`: the git commit when they are committed and clean,
/// else `sha256:` of their content.
pub fn revision_of(path: &Path, files: &[SpecFile]) -> String {
    let content = format!(
        "sha256:{}",
        &remote_agents_ops::bundle::spec_hash(files)[..16]
    );
    let Ok(repo) = git2::Repository::discover(path) else {
        return content;
    };
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return content;
    };
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true);
    if let (Some(workdir), Ok(absolute)) = (repo.workdir(), std::fs::canonicalize(path))
        && let Ok(relative) = absolute
            .strip_prefix(std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_path_buf()))
        && !relative.as_os_str().is_empty()
    {
        options.pathspec(relative);
    }
    match repo.statuses(Some(&mut options)) {
        Ok(statuses) if statuses.is_empty() => head.id().to_string(),
        _ => content,
    }
}

pub fn expected_hosts(model: &FleetModel) -> Vec<HostFacts> {
    model
        .fleet()
        .map(|(_, fleet)| {
            fleet
                .spec
                .hosts
                .iter()
                .filter(|h| !h.name.contains(['*', '?', '[', '{']))
                .map(|h| HostFacts {
                    name: h.name.clone(),
                    tags: h.tags.iter().cloned().collect(),
                    facts: h.facts.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Per-host outcome of publishing one generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostResult {
    pub host: String,
    /// `applied`, `current`, `refused`, `unreachable`, `timeout`.
    pub result: String,
    pub generation: u64,
    pub sync: Option<SyncState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Signs `files` as `generation`, leaves it at the relay, offers it to every node and, with
/// `wait`, polls until every targeted host reports it. Returns per-host results.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    connection: &Connection,
    key: &OperatorKey,
    fleet: String,
    files: Vec<SpecFile>,
    revision: String,
    generation: u64,
    expected: &[HostFacts],
    prune: bool,
    wait: Option<Duration>,
    window_override: Option<String>,
) -> anyhow::Result<Vec<HostResult>> {
    let content = BundleContent {
        fleet,
        generation,
        revision,
        issued_at_ms: now_ms(),
        issuer: key.public(),
        files,
        window_override,
        rollout: None,
    };
    let signed = SignedBundle::sign(&content, key);
    // Fail here, with the same reasons a node would give, rather than on every node.
    signed.verify().context("the bundle does not verify")?;
    publish_signed(connection, &signed, generation, expected, prune, wait).await
}

/// Leaves an already signed bundle at the relay, offers it to every node and, with `wait`,
/// polls until every targeted host reports `generation`. Also used by nodes that apply from a
/// local source and publish (watch mode, the MCP spec tools).
pub async fn publish_signed(
    connection: &Connection,
    signed: &SignedBundle,
    generation: u64,
    expected: &[HostFacts],
    prune: bool,
    wait: Option<Duration>,
) -> anyhow::Result<Vec<HostResult>> {
    if let Err(e) = publish_retained(&connection.net, &connection.psk, signed).await {
        tracing::warn!(
            "the relay did not keep the bundle ({e}); nodes offline now will get it from a peer"
        );
    }
    let all = Selector::parse("all").expect("`all` is a selector");
    let started = tokio::time::Instant::now();
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &all,
            expected,
            request: Request::DesiredOffer(DesiredOfferArgs {
                bundle: signed.clone(),
                prune,
                agent_id: None,
            }),
            per_os: BTreeMap::new(),
            options: &quiet_options(Duration::from_secs(30)),
            summary: format!("apply generation {generation}"),
            // Desired state travels signed by an operator; the hosts judge the signer.
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    let mut results: BTreeMap<String, HostResult> = BTreeMap::new();
    for record in job.report.records {
        let result = match record.status {
            HostStatus::Ok => match serde_json::from_str::<DesiredOfferResult>(&record.stdout) {
                Ok(offer) => HostResult {
                    host: record.host.clone(),
                    result: match offer.decision.as_str() {
                        "new" => "applied".into(),
                        other => other.into(),
                    },
                    generation: offer.status.observed_generation,
                    sync: Some(offer.status.sync),
                    detail: offer.reason.or_else(|| {
                        (!offer.status.drift.is_empty()).then(|| {
                            offer
                                .status
                                .drift
                                .iter()
                                .map(|d| d.message.clone())
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                    }),
                },
                Err(e) => HostResult {
                    host: record.host.clone(),
                    result: "failed".into(),
                    generation: 0,
                    sync: None,
                    detail: Some(format!("malformed answer: {e}")),
                },
            },
            other => HostResult {
                host: record.host.clone(),
                result: other.as_str().to_string(),
                generation: 0,
                sync: None,
                detail: record.error.clone(),
            },
        };
        results.insert(record.host, result);
    }
    if let Some(timeout) = wait {
        // Hosts that were offline catch up from the relay or a peer when they come back.
        while results
            .values()
            .any(|r| r.generation < generation && r.result != "refused")
            && started.elapsed() < timeout
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let snapshot = snapshot(connection, expected).await?;
            for (host, status) in snapshot.hosts {
                if let Ok(status) = status
                    && status.observed_generation >= generation
                {
                    results.insert(
                        host.clone(),
                        HostResult {
                            host,
                            result: "applied".into(),
                            generation: status.observed_generation,
                            sync: Some(status.sync),
                            detail: None,
                        },
                    );
                }
            }
        }
        for result in results.values_mut() {
            if result.generation < generation && result.result != "refused" {
                result.result = "timeout".into();
            }
        }
    }
    Ok(results.into_values().collect())
}
