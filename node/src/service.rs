//! The node as a long-running service: opening it, connecting it to its relay, and starting
//! what runs beside the requests (the reconcile controller, the desired-state follower, peer
//! announcements, watch mode, the schedule runner, the declared jobs' trigger runner) until
//! SIGINT or SIGTERM. What starts here stops when [`Running`] is dropped.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::node::Node;
use crate::runtime;

/// Connects the node to its relay, when one is configured, and starts what follows the room:
/// the desired-state follower (nodes that take commands) and the announcements of this node's
/// mode and tags.
fn start_net(node: &Arc<Node>, shutdown: CancellationToken, eager: bool) -> anyhow::Result<()> {
    let Some((net, psk)) = node.connect(shutdown.clone(), eager)? else {
        return Ok(());
    };
    if !node.settings().no_agent.value {
        // A node that serves requests is a transfer source: destinations may pull over a
        // direct path as well as through the relay.
        if node.settings().direct.value {
            runtime::spawn(crate::transfer::direct::serve(
                net.clone(),
                node.transfers().clone(),
                shutdown.clone(),
            ));
        }
        runtime::spawn(crate::sync::distribute::follow(
            node.clone(),
            net.clone(),
            psk,
            shutdown.clone(),
        ));
    }
    runtime::spawn(node.clone().keep_announced(net, shutdown));
    Ok(())
}

/// Opens a node and connects it to its relay inside this process (the demo and simulations of
/// many nodes use this); it stays connected until `shutdown` fires.
pub fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Arc<Node>> {
    let (node, _) = start_with_clock(settings, Arc::new(crate::schedule::SystemClock), shutdown)?;
    Ok(node)
}

/// [`start`] with the schedule runner and the declared jobs' trigger runner on `clock` (tests
/// run several nodes on one `ManualClock`); also returns the trigger runner, whose passes
/// tests wait for.
pub fn start_with_clock(
    settings: Settings,
    clock: Arc<dyn crate::schedule::Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<Node>, crate::mapreduce::trigger::TriggerRunner)> {
    let node = Node::open(settings)?;
    crate::desired::controller::start(node.clone(), shutdown.clone());
    crate::schedule::start(&node, clock.clone(), shutdown.clone());
    let triggers = crate::mapreduce::trigger::start(&node, clock, shutdown.clone());
    start_net(&node, shutdown, false)?;
    Ok((node, triggers))
}

/// How a node runs: headless, or behind an MCP server whose spec tools plan and apply its spec
/// source (so that source is not also applied automatically on every commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Headless,
    Mcp,
}

/// A running node: its reconcile controller, net, schedules and (headless) watch mode stop when
/// this is dropped.
pub struct Running {
    pub node: Arc<Node>,
    _stop: tokio_util::sync::DropGuard,
}

/// Opens the node and starts its reconcile controller, net, watch mode (headless only) and
/// schedule runner.
pub fn launch(settings: Settings, role: Role) -> anyhow::Result<Running> {
    let node = Node::open(settings)?;
    let shutdown = CancellationToken::new();
    crate::desired::controller::start(node.clone(), shutdown.clone());
    start_net(&node, shutdown.clone(), role == Role::Mcp)?;
    if role == Role::Headless {
        crate::sync::watch::start(&node, shutdown.clone())?;
    }
    crate::schedule::start(
        &node,
        Arc::new(crate::schedule::SystemClock),
        shutdown.clone(),
    );
    crate::mapreduce::trigger::start(
        &node,
        Arc::new(crate::schedule::SystemClock),
        shutdown.clone(),
    );
    Ok(Running {
        node,
        _stop: shutdown.drop_guard(),
    })
}

/// Resolves on SIGINT or SIGTERM. Both are caught from this call on (not from the first poll),
/// so a process calls it before its slow start: a supervisor's SIGTERM that comes while the node
/// opens its store is then a clean stop, not death by the default action.
pub fn terminated() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Runs a headless node until SIGINT or SIGTERM (caught from before the node opens).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let stop = terminated()?;
    let _running = launch(settings, Role::Headless)?;
    stop.await;
    Ok(())
}
