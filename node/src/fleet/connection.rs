//! A caller's side of the fleet: a send-only connection to the room (fleetctl, or a node's own
//! for watch mode and the MCP spec tools) and one fan-out of a request to the hosts a selector
//! picks, returning the finished job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use remote_agents_spec::{HostFacts, Selector};
use tokio_util::sync::CancellationToken;

use super::fanout::FanoutOptions;
use super::inventory::Inventory;
use super::jobs::{self, Job};
use super::remote::{NetCaller, resolve_targets};
use crate::client::Client;
use crate::config::Settings;
use crate::identity::Identity;
use crate::journal::now_ms;
use crate::net::Net;
use remote_agents_ops::Request;

/// fleetctl's own state folder: identity and job history, beside (not inside) a node's.
pub fn fleetctl_dir(settings: &Settings) -> anyhow::Result<PathBuf> {
    let dir = settings.data_dir.value.join("fleetctl");
    crate::config::ensure_data_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// A send-only connection to the room.
pub struct Connection {
    pub net: Net,
    pub agent_id: String,
    /// The room key, for sealing what fleetctl leaves at the relay.
    pub psk: remote_agents_protocol::psk::Psk,
    _shutdown: tokio_util::sync::DropGuard,
}

impl Connection {
    /// Joins the room as a send-only peer and waits until the peers present have completed their
    /// handshakes (or `timeout`).
    pub async fn open(
        settings: &Settings,
        dir: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let identity = Identity::load_or_create(dir)?;
        let agent_id = identity.agent_id();
        // Bound to the operator key, so nodes of a fleet that lists operators know who asks.
        let operator = crate::desired::operator::configured_key(settings)?
            .map(|key| key.bind(&identity.public_key()));
        let announcement = remote_agents_protocol::message::Announcement {
            name: format!("fleetctl-{}", &agent_id[..8.min(agent_id.len())]),
            tags: Vec::new(),
            facts: BTreeMap::new(),
            mode: "disabled".into(),
            accepts_commands: false,
            operator,
        };
        let config = crate::node::net_config(settings, announcement)?.context(
            "no relay configured: pass --relay, --room and --token (or set REMOTE_AGENTS_RELAY, \
             REMOTE_AGENTS_ROOM, REMOTE_AGENTS_TOKEN)",
        )?;
        let shutdown = CancellationToken::new();
        let psk = config.psk.clone();
        let net = Net::start(&identity, config, None, shutdown.clone());
        net.wait_settled(timeout).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the relay within {}: {e}",
                humantime::format_duration(timeout)
            )
        })?;
        Ok(Connection {
            net,
            psk,
            agent_id: identity.agent_id(),
            _shutdown: shutdown.drop_guard(),
        })
    }

    /// A connection a node already holds (watch mode and the MCP spec tools publish over the
    /// node's own relay connection); dropping it leaves that connection running.
    pub fn of_node(net: Net, agent_id: String, psk: remote_agents_protocol::psk::Psk) -> Self {
        Connection {
            net,
            agent_id,
            psk,
            _shutdown: CancellationToken::new().drop_guard(),
        }
    }
}

/// What one fan-out does: which hosts, what to send them, and how.
pub struct FanoutPlan<'a> {
    pub selector: &'a Selector,
    /// Hosts expected to match even when offline (reported `unreachable`).
    pub expected: &'a [HostFacts],
    pub request: Request,
    /// Per-OS-family replacement requests, keyed by the `os` fact.
    pub per_os: BTreeMap<String, Request>,
    pub options: &'a FanoutOptions,
    /// A one-line description for the job history, e.g. `exec uptime`.
    pub summary: String,
    /// Whether a model asked for it (a node's MCP fleet tools): each host then applies its
    /// McpSurface to the request.
    pub on_behalf_of_model: bool,
    /// The reason given to act inside closed change windows (`fleetctl --override-window`),
    /// which each host records in its audit log.
    pub window_override: Option<String>,
}

/// Fans one request out to the hosts the plan's selector picks and returns the finished job.
pub async fn fan_out(net: &Net, caller_id: &str, plan: FanoutPlan<'_>) -> Job {
    let FanoutPlan {
        selector,
        expected,
        request,
        per_os,
        options,
        summary,
        on_behalf_of_model,
        window_override,
    } = plan;
    let targets = resolve_targets(selector, &net.peers(), expected);
    let op_id = jobs::new_op_id();
    let caller = Arc::new(NetCaller {
        client: Client::new(
            net.clone(),
            remote_agents_ops::Caller::Fleet {
                caller: caller_id.to_string(),
            },
        )
        .on_behalf_of_model(on_behalf_of_model)
        .window_override(window_override),
        op_id: op_id.clone(),
        request,
        per_os,
    });
    let started_ms = now_ms();
    let report = super::fanout::run(targets, caller, options).await;
    Job {
        op_id,
        summary,
        target: selector.as_str().to_string(),
        started_ms,
        finished_ms: now_ms(),
        report,
        trigger: None,
        outcome: None,
    }
}

/// The inventory the spec files at `paths` declare (`fleetctl -f`); `None` when no path is
/// given.
pub fn declared_inventory(paths: &[PathBuf]) -> anyhow::Result<Option<Inventory>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let files = crate::sources::read_paths(paths)?;
    let (model, diagnostics) = remote_agents_spec::load(&files);
    if remote_agents_spec::has_errors(&diagnostics) {
        let listed: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow::bail!("--spec: the spec files have errors:\n{}", listed.join("\n"));
    }
    Ok(Some(Inventory::of_model(&model, None)))
}
