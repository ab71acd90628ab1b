//! How bundles travel. fleetctl leaves the newest bundle, sealed to the room, in the relay's
//! retained store and offers it to every node directly. A node that (re)connects fetches the
//! retained copy; when the relay has none or an older one (it restarted, or lost it) the node
//! puts its own back, and when the node has none at all it asks a few peers. So nodes converge
//! even when the relay forgot everything, as long as one peer remembers.

use std::sync::Arc;
use std::time::Duration;

use remote_agents_protocol::blob;
use remote_agents_protocol::psk::Psk;

use crate::client::{self, Client};
use crate::net::{CallError, ConnectionState, Net};
use crate::node::Node;
use remote_agents_ops::bundle::SignedBundle;
use remote_agents_ops::operation::DesiredGet;
use remote_agents_ops::{Caller, DesiredGetArgs};

/// The retained-store key of the desired state (the relay sees only this label and ciphertext).
pub const RETAINED_KEY: &[u8] = b"desired";
/// How many peers a node with no bundle asks, at most, when the relay has none either.
const PEERS_TO_ASK: usize = 3;
/// It stops after this many peers answered with a bundle.
const PEER_ANSWERS: usize = 2;
/// How long one peer may take to hand over its bundle.
const PEER_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Catch-ups after a reconnect whose relay copy was missing or stale, spaced out so that
/// peers still reconnecting can restore the relay's copy meanwhile.
const CATCH_UP_RETRIES: [u64; 4] = [1, 3, 10, 30];

fn random_salt() -> [u8; blob::SALT_LEN] {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; blob::SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("the operating system's random source works");
    salt
}

/// Leaves `bundle` at the relay, sealed to the room.
pub async fn publish_retained(
    net: &Net,
    psk: &Psk,
    bundle: &SignedBundle,
) -> Result<(), CallError> {
    let sealed = blob::seal(psk, RETAINED_KEY, random_salt(), &bundle.to_json());
    net.retain_put(RETAINED_KEY, sealed).await
}

/// The bundles the relay keeps (oldest first); blobs that do not open or parse are skipped
/// (someone without the room key, or garbage).
pub async fn fetch_retained(net: &Net, psk: &Psk) -> Result<Vec<SignedBundle>, CallError> {
    let blobs = net.retain_get(RETAINED_KEY).await?;
    Ok(blobs
        .iter()
        .filter_map(|sealed| blob::open(psk, RETAINED_KEY, sealed).ok())
        .filter_map(|json| SignedBundle::from_json(&json).ok())
        .collect())
}

/// The generation a bundle claims, without judging it (0 when unreadable); a false claim only
/// decides whether the bundle is offered, and the offer verifies it.
fn generation_of(bundle: &SignedBundle) -> u64 {
    bundle.peek_generation()
}

/// Asks one peer for the bundle it applied.
pub async fn fetch_from_peer(
    net: &Net,
    peer: remote_agents_protocol::frame::PeerId,
    revision: Option<String>,
) -> Result<SignedBundle, client::CallError> {
    Client::new(net.clone(), Caller::Unstated)
        .call_with::<DesiredGet>(
            peer,
            client::new_request_id(),
            DesiredGetArgs {
                revision,
                agent_id: None,
            },
            PEER_FETCH_TIMEOUT,
        )
        .await
}

/// One catch-up after (re)connecting: take the relay's copy, ask peers when the relay has none
/// or an older one than this node (it restarted or lost it: peers may know better than both),
/// and restore the relay's copy from the newest bundle known. Returns true when the relay
/// already held a copy at least as new as this node's — when it did not, a peer that is
/// still reconnecting may hold a newer one, so the caller tries again a little later.
pub async fn catch_up(node: &Arc<Node>, net: &Net, psk: &Psk, ask_peers: bool) -> bool {
    let retained = match fetch_retained(net, psk).await {
        Ok(bundles) => bundles,
        Err(error) => {
            tracing::debug!(%error, "cannot read the relay's retained desired state");
            return false;
        }
    };
    let mut relay_newest = 0;
    for bundle in &retained {
        let generation = generation_of(bundle);
        relay_newest = relay_newest.max(generation);
        // The relay keeps a few older copies too; those are history here, not news (offering
        // them would only record a "stale" refusal).
        if generation <= node.desired().generation() {
            continue;
        }
        if let Err(refusal) = node.offer_bundle(bundle, "relay") {
            tracing::debug!(%refusal, "retained bundle not applied");
        }
    }
    let settled = relay_newest > 0 && relay_newest >= node.desired().generation();
    if settled {
        return true;
    }
    // Only a node with nothing asks its peers, and only once per connection: in a fresh room
    // nobody has a bundle yet, and a thousand nodes asking each other would be a storm.
    let mut peers = if ask_peers && node.desired().current().is_none() {
        // A headless node does not follow presence: this asks the relay for the room once.
        net.room_peers().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    fastrand::shuffle(&mut peers);
    let mut answers = 0;
    for peer in peers.into_iter().take(PEERS_TO_ASK) {
        match fetch_from_peer(net, peer, None).await {
            Ok(bundle) if generation_of(&bundle) <= node.desired().generation() => answers += 1,
            Ok(bundle) => {
                answers += 1;
                if let Err(refusal) = node.offer_bundle(&bundle, "peer") {
                    tracing::debug!(%peer, %refusal, "peer's bundle not applied");
                }
                if answers >= PEER_ANSWERS {
                    break;
                }
            }
            Err(error) => tracing::debug!(%peer, %error, "peer gave no bundle"),
        }
    }
    if let Some(current) = node.desired().current()
        && current.content.generation > relay_newest
        && !node.is_local_only(&current)
        && let Err(error) = publish_retained(net, psk, &current.signed).await
    {
        tracing::debug!(%error, "cannot restore the desired state at the relay");
    }
    false
}

/// Runs [`catch_up`] every time the node (re)connects to the relay, and when a closed change
/// window of the applied spec lets this host change again (a generation it held back is taken
/// then), until `shutdown`.
pub async fn follow(
    node: Arc<Node>,
    net: Net,
    psk: Psk,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut state = net.watch_state();
    'connections: loop {
        if *state.borrow_and_update() == ConnectionState::Connected {
            // Retries read the relay again (cheap): a peer that reconnects meanwhile restores
            // the newest copy there.
            let mut retries = CATCH_UP_RETRIES.iter();
            let mut first = true;
            while !catch_up(&node, &net, &psk, std::mem::take(&mut first)).await {
                let Some(seconds) = retries.next() else { break };
                let generation = node.desired().generation();
                // Jittered, so a room that reconnects together does not ask together.
                let delay = Duration::from_millis(seconds * 500 + fastrand::u64(..seconds * 1000));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {
                        // A newer generation arrived meanwhile (an apply offered it, and put it
                        // at the relay first): nothing is left to catch up with.
                        if node.desired().generation() > generation {
                            break;
                        }
                    }
                    changed = state.changed() => {
                        if changed.is_err() { return }
                        // Reconnected (or lost): start over from the new state.
                        continue 'connections;
                    }
                }
            }
        }
        // A newer generation a closed change window held back is taken once the window lets
        // this host change again: the relay's copy is read then, as after a reconnect.
        let reopens = node
            .change_window_closed()
            .and_then(|closed| closed.until)
            .and_then(|until| (until - chrono::Utc::now()).to_std().ok());
        let window_reopened = async {
            match reopens {
                // A moment after the boundary, so the window reads as open.
                Some(wait) => tokio::time::sleep(wait + Duration::from_millis(200)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
            // Round the loop: connected, it catches up with the relay again.
            _ = window_reopened => {}
        }
    }
}
