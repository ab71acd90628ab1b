//! The node's connection manager and RPC over the relay: one WebSocket to the relay, Noise
//! sessions with every peer of the room (`protocol::session`), a presence table of authenticated
//! peers and what they announced, request/response calls with ids, deadlines, cancellation and
//! streamed chunks, broadcast, and reconnection with full-jitter exponential backoff.
//!
//! Payloads are opaque bytes: the node defines its request and response types and encodes them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use futures_util::future::BoxFuture;
//! use remote_agents_node::identity::Identity;
//! use remote_agents_node::net::{Handler, Net, NetConfig, PeerInfo, Responder};
//! use remote_agents_protocol::psk::Psk;
//! use tokio_util::sync::CancellationToken;
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn handle(
//!         &self,
//!         _from: PeerInfo,
//!         request: Vec<u8>,
//!         mut responder: Responder,
//!         cancel: CancellationToken,
//!     ) -> BoxFuture<'static, ()> {
//!         Box::pin(async move {
//!             // Stream as many chunks as needed, watching `cancel`, then answer once.
//!             if cancel.is_cancelled() {
//!                 return;
//!             }
//!             let _ = responder.chunk(b"progress").await;
//!             responder.respond(&request).await;
//!         })
//!     }
//! }
//!
//! # async fn example() -> anyhow::Result<()> {
//! let identity = Identity::load_or_create("/var/lib/remote-agents".as_ref())?;
//! let psk = Psk::from_room_token("room token", "lab")?;
//! let config = NetConfig::new("ws://127.0.0.1:8080", "lab", psk);
//! let shutdown = CancellationToken::new();
//! let net = Net::start(&identity, config, Some(Arc::new(Echo)), shutdown.clone());
//! let peer = net.wait_for_peers(1, Duration::from_secs(10)).await?[0].peer_id;
//! let mut call = net.call(peer, b"hello".to_vec(), Duration::from_secs(5)).await?;
//! let (chunks, response) = call.collect().await?;
//! # Ok(()) }
//! ```

pub mod direct;
mod driver;

pub use driver::{ConnectError, ReconnectBackoff, RelaySocket, connect_relay};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use remote_agents_protocol::frame::PeerId;
use remote_agents_protocol::message::{
    Announcement, AnswerPart, Envelope, RemoteFailure, encode_answer_part, parts,
};
use remote_agents_protocol::psk::Psk;
use remote_agents_protocol::session::SessionConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;

/// How to reach the room.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// `ws://host:port` (or `wss://`) of the relay, without the `/v1/rooms/...` path.
    pub relay_url: String,
    pub room_name: String,
    pub psk: Psk,
    /// Optional relay access key, sent as `Authorization: Bearer`.
    pub relay_key: Option<String>,
    pub announcement: Announcement,
    pub session: SessionConfig,
    /// Full-jitter exponential backoff between reconnection attempts: the n-th wait is uniform
    /// in `[0, min(reconnect_max, reconnect_min * 2^n))`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Largest reassembled request, chunk or response accepted from a peer.
    pub max_message: usize,
    /// Largest WebSocket message read from the relay.
    pub max_frame: usize,
    /// The direct data channel to peers (`direct`): socket, reflector, timeouts.
    pub direct: direct::DirectConfig,
    /// Follow the room's presence from the start: ask the relay for the peers present (paged)
    /// and subscribe to its batched joins and leaves at every connect. Callers that address the
    /// room (fleetctl, MCP nodes) do; headless nodes do not (`Node::connect`), so a mass
    /// reconnect of N of them costs the relay O(N) frames, and start following only when a
    /// duty needs the room (`Net::follow_presence`, `Net::meet_present`).
    pub subscribe_presence: bool,
}

impl NetConfig {
    pub fn new(relay_url: impl Into<String>, room_name: impl Into<String>, psk: Psk) -> Self {
        Self {
            relay_url: relay_url.into(),
            room_name: room_name.into(),
            psk,
            relay_key: None,
            announcement: Announcement::default(),
            session: SessionConfig::default(),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            max_message: 256 * 1024 * 1024,
            max_frame: remote_agents_protocol::frame::MAX_FRAME_DEFAULT,
            direct: direct::DirectConfig::default(),
            subscribe_presence: true,
        }
    }
}

/// An authenticated peer: its key proved in a handshake, and what it announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The peer id as hex: the peer's stable agent id.
    pub agent_id: String,
    pub public_key: [u8; 32],
    pub announcement: Announcement,
}

/// The relay connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected,
    /// Another connection with our peer id replaced us (close 4001); we do not reconnect.
    Evicted,
    /// The relay refused the request itself (close 4003); we do not reconnect.
    GaveUp(String),
    Stopped,
}

/// Why a call failed. `Unreachable` means the request certainly did not run; `OutcomeUnknown`
/// means it was sent and may have run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("deadline exceeded")]
    DeadlineExceeded,
    #[error("remote failure: {0}")]
    Remote(RemoteFailure),
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("the node is shutting down")]
    Shutdown,
}

/// One item of a call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A streamed chunk, with the boundaries the callee gave it.
    Chunk(Vec<u8>),
    /// The final response; nothing follows it.
    Response(Vec<u8>),
}

/// Handles requests from other peers. Implemented by the node.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. Stream chunks with `responder.chunk`, finish with
    /// `responder.respond` or `responder.fail`; dropping the responder without either reports a
    /// failure to the caller. `cancel` fires when the caller cancels, the deadline passes or the
    /// node shuts down.
    fn handle(
        &self,
        from: PeerInfo,
        request: Vec<u8>,
        responder: Responder,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()>;

    /// A one-way message (`Net::broadcast` / `Net::notify`). Must not block.
    fn notify(&self, from: &PeerInfo, message: Vec<u8>) {
        let _ = (from, message);
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Frames or messages refused: failed authentication, replays, unknown sessions, forged
    /// handshakes, malformed envelopes, unauthenticated broadcasts. Each is also logged.
    pub rejected: AtomicU64,
    /// Connection attempts to the relay (successful or not).
    pub connect_attempts: AtomicU64,
    /// Successful connections (WELCOME received).
    pub connections: AtomicU64,
    /// Authenticated application messages received.
    pub accepted: AtomicU64,
}

pub(crate) enum Command {
    Call {
        peer: PeerId,
        call: u64,
        deadline: Instant,
        request: Vec<u8>,
        events: mpsc::UnboundedSender<Result<CallEvent, CallError>>,
        /// A direct-path offer (`Envelope::Direct`) rather than a request for the handler.
        direct: bool,
    },
    Cancel {
        call: u64,
    },
    /// An encoded envelope for an established peer (replies never wait for a handshake).
    Reply {
        peer: PeerId,
        envelope: Vec<u8>,
    },
    InboundDone {
        peer: PeerId,
        call: u64,
    },
    Broadcast {
        message: Vec<u8>,
        sent: oneshot::Sender<usize>,
    },
    Notify {
        peer: PeerId,
        message: Vec<u8>,
        sent: oneshot::Sender<Result<(), CallError>>,
    },
    Announce(Announcement),
    /// Start handshakes with every peer present that has no session yet (following presence
    /// first if this node did not).
    MeetPresent,
    /// Follow the room's presence from now on; with `meet_everyone`, handshake with every peer
    /// that is or becomes present.
    FollowPresence {
        meet_everyone: bool,
    },
    /// The peers in the room, from the relay's snapshot (or this node's table if it follows).
    RoomPeers {
        done: oneshot::Sender<Result<Vec<PeerId>, CallError>>,
    },
    /// Leave a blob in the relay's retained store (already sealed by the caller).
    RetainPut {
        key: Vec<u8>,
        blob: Vec<u8>,
        done: oneshot::Sender<Result<(), CallError>>,
    },
    /// Fetch the blobs the relay keeps under a key, oldest first.
    RetainGet {
        key: Vec<u8>,
        done: oneshot::Sender<Result<Vec<Vec<u8>>, CallError>>,
    },
}

pub(crate) struct Shared {
    pub(crate) local_id: PeerId,
    pub(crate) presence: watch::Sender<BTreeMap<PeerId, PeerInfo>>,
    /// Peers the relay says are in the room, authenticated or not yet.
    pub(crate) present: watch::Sender<std::collections::BTreeSet<PeerId>>,
    /// Whether `present` is the whole room: connected, and either following presence with its
    /// snapshot read, or not following (then `present` is empty by design).
    pub(crate) presence_known: watch::Sender<bool>,
    /// Whether the node follows presence (the driver's choice, readable by handles).
    pub(crate) follows: std::sync::atomic::AtomicBool,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) counters: NetCounters,
    next_call: AtomicU64,
    pub(crate) direct: direct::DirectState,
}

/// A handle to the connection manager; cheap to clone.
#[derive(Clone)]
pub struct Net {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl Net {
    /// Starts the connection manager on the current tokio runtime. It runs until `shutdown`
    /// fires or the relay evicts us.
    pub fn start(
        identity: &Identity,
        config: NetConfig,
        handler: Option<Arc<dyn Handler>>,
        shutdown: CancellationToken,
    ) -> Net {
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let shared = Arc::new(Shared {
            local_id: identity.peer_id(),
            presence: watch::Sender::new(BTreeMap::new()),
            present: watch::Sender::new(std::collections::BTreeSet::new()),
            presence_known: watch::Sender::new(false),
            follows: std::sync::atomic::AtomicBool::new(config.subscribe_presence),
            state: watch::Sender::new(ConnectionState::Connecting),
            counters: NetCounters::default(),
            next_call: AtomicU64::new(1),
            direct: direct::DirectState::new(config.direct.clone()),
        });
        let driver = driver::Driver::new(
            identity,
            config,
            handler,
            shared.clone(),
            commands_tx.clone(),
            commands_rx,
            shutdown,
        );
        crate::runtime::spawn(driver.run());
        Net {
            shared,
            commands: commands_tx,
        }
    }

    pub fn local_id(&self) -> PeerId {
        self.shared.local_id
    }

    /// The authenticated peers right now.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.presence.borrow().values().cloned().collect()
    }

    /// One authenticated peer, without copying the whole presence table (fan-outs look up
    /// one peer per host: cloning every peer per host was quadratic in the room size).
    pub fn peer(&self, peer_id: &PeerId) -> Option<PeerInfo> {
        self.shared.presence.borrow().get(peer_id).cloned()
    }

    /// How many peers are authenticated right now.
    pub fn peer_count(&self) -> usize {
        self.shared.presence.borrow().len()
    }

    /// Watches the presence table.
    pub fn watch_peers(&self) -> watch::Receiver<BTreeMap<PeerId, PeerInfo>> {
        self.shared.presence.subscribe()
    }

    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    pub fn counters(&self) -> &NetCounters {
        &self.shared.counters
    }

    /// Frames and messages rejected so far.
    pub fn rejected(&self) -> u64 {
        self.shared.counters.rejected.load(Ordering::Relaxed)
    }

    /// Waits until at least `count` peers are authenticated, or fails after `timeout`.
    pub async fn wait_for_peers(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<PeerInfo>, CallError> {
        let mut receiver = self.shared.presence.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|peers| peers.len() >= count))
            .await
            .map_err(|_| CallError::DeadlineExceeded)?
            .map_err(|_| CallError::Shutdown)?;
        Ok(self.peers())
    }

    /// Waits until the relay connection is up and every peer present in the room has finished
    /// its handshake, so `peers()` is the whole room. Fails when not connected within `timeout`;
    /// once connected, returns after at most `timeout` in all with the number of present peers
    /// still not authenticated (e.g. a peer with another room token), which callers may report.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<usize, CallError> {
        let deadline = Instant::now() + timeout;
        self.wait_for_state(timeout, |state| *state == ConnectionState::Connected)
            .await?;
        let mut known = self.shared.presence_known.subscribe();
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(remaining, known.wait_for(|known| *known))
            .await
            .map_err(|_| CallError::DeadlineExceeded)?
            .map_err(|_| CallError::Shutdown)?;
        let mut present = self.shared.present.subscribe();
        let mut presence = self.shared.presence.subscribe();
        loop {
            let missing = {
                let present = present.borrow_and_update();
                let peers = presence.borrow_and_update();
                present.iter().filter(|p| !peers.contains_key(p)).count()
            };
            if missing == 0 {
                return Ok(0);
            }
            tokio::select! {
                changed = present.changed() => changed.map_err(|_| CallError::Shutdown)?,
                changed = presence.changed() => changed.map_err(|_| CallError::Shutdown)?,
                _ = tokio::time::sleep_until(deadline) => return Ok(missing),
            }
        }
    }

    /// Handshakes with every peer in the room and waits (up to `timeout`) until each is
    /// authenticated. A node without eager handshakes knows only the peers it has talked to;
    /// it calls this before addressing the whole room. Returns how many are still missing.
    pub async fn meet_present(&self, timeout: Duration) -> Result<usize, CallError> {
        self.start_following();
        self.commands
            .send(Command::MeetPresent)
            .await
            .map_err(|_| CallError::Shutdown)?;
        self.wait_settled(timeout).await
    }

    /// Waits until the connection state satisfies `predicate`, or fails after `timeout`.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        predicate: impl FnMut(&ConnectionState) -> bool,
    ) -> Result<ConnectionState, CallError> {
        let mut receiver = self.shared.state.subscribe();
        let state = tokio::time::timeout(timeout, receiver.wait_for(predicate))
            .await
            .map_err(|_| CallError::DeadlineExceeded)?
            .map_err(|_| CallError::Shutdown)?;
        Ok(state.clone())
    }

    /// Sends `request` to `peer` and returns the stream of its answer. The call fails with
    /// `DeadlineExceeded` after `timeout`; dropping the stream early cancels the call on the
    /// callee.
    pub async fn call(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<CallStream, CallError> {
        self.start_call(peer, request, timeout, false).await
    }

    /// Sends a direct-path offer and waits for the peer's offer back.
    pub(crate) async fn direct_call(
        &self,
        peer: PeerId,
        offer: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let mut call = self.start_call(peer, offer, timeout, true).await?;
        let (_chunks, answer) = call.collect().await?;
        Ok(answer)
    }

    async fn start_call(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        timeout: Duration,
        direct: bool,
    ) -> Result<CallStream, CallError> {
        let call = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Call {
                peer,
                call,
                deadline,
                request,
                events: events_tx,
                direct,
            })
            .await
            .map_err(|_| CallError::Shutdown)?;
        Ok(CallStream {
            call,
            deadline,
            events: events_rx,
            commands: self.commands.clone(),
            finished: false,
        })
    }

    /// Sends a one-way message to every authenticated peer; returns how many it went to.
    pub async fn broadcast(&self, message: Vec<u8>) -> usize {
        let (sent_tx, sent_rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Broadcast {
                message,
                sent: sent_tx,
            })
            .await
            .is_err()
        {
            return 0;
        }
        sent_rx.await.unwrap_or(0)
    }

    /// Sends a one-way message to one authenticated peer.
    pub async fn notify(&self, peer: PeerId, message: Vec<u8>) -> Result<(), CallError> {
        let (sent_tx, sent_rx) = oneshot::channel();
        self.commands
            .send(Command::Notify {
                peer,
                message,
                sent: sent_tx,
            })
            .await
            .map_err(|_| CallError::Shutdown)?;
        sent_rx.await.map_err(|_| CallError::Shutdown)?
    }

    /// Leaves `blob` at the relay under `key` (the relay keeps the newest few per key for
    /// peers that join later). The relay sees the blob: seal it first (`protocol::blob`).
    pub async fn retain_put(&self, key: &[u8], blob: Vec<u8>) -> Result<(), CallError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::RetainPut {
                key: key.to_vec(),
                blob,
                done,
            })
            .await
            .map_err(|_| CallError::Shutdown)?;
        answer.await.map_err(|_| CallError::Shutdown)?
    }

    /// The blobs the relay keeps under `key`, oldest first (empty when none, e.g. after the
    /// relay restarted).
    pub async fn retain_get(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, CallError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::RetainGet {
                key: key.to_vec(),
                done,
            })
            .await
            .map_err(|_| CallError::Shutdown)?;
        answer.await.map_err(|_| CallError::Shutdown)?
    }

    /// Peers the relay says are in the room, authenticated or not yet. Empty on a node that
    /// does not follow presence: ask [`Net::room_peers`] there.
    pub fn present_peers(&self) -> Vec<PeerId> {
        self.shared.present.borrow().iter().copied().collect()
    }

    /// The peers in the room: this node's table when it follows presence, otherwise a one-off
    /// snapshot from the relay (paged; it does not subscribe).
    pub async fn room_peers(&self) -> Result<Vec<PeerId>, CallError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::RoomPeers { done })
            .await
            .map_err(|_| CallError::Shutdown)?;
        answer.await.map_err(|_| CallError::Shutdown)?
    }

    /// Starts following the room's presence (a snapshot, then batched joins and leaves), for a
    /// node that did not from the start and now has a duty that reads it; with
    /// `meet_everyone`, it also handshakes with every peer that is or becomes present, so their
    /// announcements are known. Idempotent; kept across reconnects.
    pub async fn follow_presence(&self, meet_everyone: bool) {
        self.start_following();
        let _ = self
            .commands
            .send(Command::FollowPresence { meet_everyone })
            .await;
    }

    /// Whether `peer` may be in the room: authenticated, or present, or (on a node that does not
    /// follow presence) anyone, since such a node cannot tell.
    pub fn may_be_present(&self, peer: &PeerId) -> bool {
        self.peer(peer).is_some()
            || self.shared.present.borrow().contains(peer)
            || !self.follows_presence()
    }

    /// Marks presence unknown until the driver has read the snapshot, so a `wait_settled`
    /// right after cannot pass on the table of a node that did not follow presence.
    fn start_following(&self) {
        if !self.shared.follows.swap(true, Ordering::Relaxed) {
            self.shared.presence_known.send_replace(false);
        }
    }

    /// Whether this node's table of present peers is the whole room right now: it follows
    /// presence, is connected, and has read the relay's snapshot.
    pub fn presence_settled(&self) -> bool {
        self.follows_presence() && *self.shared.presence_known.borrow()
    }

    /// Whether this node follows the room's presence.
    pub fn follows_presence(&self) -> bool {
        self.shared.follows.load(Ordering::Relaxed)
    }

    /// Changes what this node announces and tells every authenticated peer.
    pub async fn announce(&self, announcement: Announcement) {
        let _ = self.commands.send(Command::Announce(announcement)).await;
    }
}

/// The answer to one call: chunks, then a final response or an error.
pub struct CallStream {
    call: u64,
    deadline: Instant,
    events: mpsc::UnboundedReceiver<Result<CallEvent, CallError>>,
    commands: mpsc::Sender<Command>,
    finished: bool,
}

impl CallStream {
    /// The next chunk or the final response; `None` after the final response or an error.
    pub async fn next(&mut self) -> Option<Result<CallEvent, CallError>> {
        if self.finished {
            return None;
        }
        let event = match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => Err(CallError::Shutdown),
            Err(_) => Err(CallError::DeadlineExceeded),
        };
        if !matches!(event, Ok(CallEvent::Chunk(_))) {
            self.finished = true;
        }
        if matches!(event, Err(CallError::DeadlineExceeded)) {
            self.send_cancel();
        }
        Some(event)
    }

    /// Collects every chunk and the final response.
    pub async fn collect(&mut self) -> Result<(Vec<Vec<u8>>, Vec<u8>), CallError> {
        let mut chunks = Vec::new();
        while let Some(event) = self.next().await {
            match event? {
                CallEvent::Chunk(chunk) => chunks.push(chunk),
                CallEvent::Response(response) => return Ok((chunks, response)),
            }
        }
        Err(CallError::Shutdown)
    }

    /// Cancels the call: the callee's handler sees its cancellation token fire.
    pub fn cancel(mut self) {
        self.send_cancel();
    }

    fn send_cancel(&mut self) {
        self.finished = true;
        let _ = self.commands.try_send(Command::Cancel { call: self.call });
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if !self.finished {
            self.send_cancel();
        }
    }
}

/// The callee's side of one call.
pub struct Responder {
    peer: PeerId,
    call: u64,
    deadline: Instant,
    commands: mpsc::Sender<Command>,
    finished: bool,
}

/// The caller is gone (connection lost or node shutting down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the caller can no longer be reached")]
pub struct Disconnected;

impl Responder {
    /// Sends one streamed chunk (split into parts if it exceeds one frame).
    pub async fn chunk(&mut self, data: &[u8]) -> Result<(), Disconnected> {
        for (part, more) in parts(data) {
            let envelope = encode_answer_part(AnswerPart::Chunk, self.call, part, more);
            self.send_encoded(envelope).await?;
        }
        Ok(())
    }

    /// Sends the final response.
    pub async fn respond(mut self, data: &[u8]) {
        self.finished = true;
        for (part, more) in parts(data) {
            let envelope = encode_answer_part(AnswerPart::Response, self.call, part, more);
            if self.send_encoded(envelope).await.is_err() {
                return;
            }
        }
    }

    /// Reports a failure to the caller.
    pub async fn fail(mut self, message: impl Into<String>) {
        self.finished = true;
        let envelope = Envelope::Failure {
            call: self.call,
            failure: RemoteFailure::Handler(message.into()),
        };
        let _ = self.send(envelope).await;
    }

    async fn send(&self, envelope: Envelope) -> Result<(), Disconnected> {
        self.send_encoded(envelope.encode()).await
    }

    async fn send_encoded(&self, envelope: Vec<u8>) -> Result<(), Disconnected> {
        self.commands
            .send(Command::Reply {
                peer: self.peer,
                envelope,
            })
            .await
            .map_err(|_| Disconnected)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let failure = if Instant::now() >= self.deadline {
            RemoteFailure::DeadlineExceeded
        } else {
            RemoteFailure::Handler("handler ended without a response".into())
        };
        let envelope = Envelope::Failure {
            call: self.call,
            failure,
        };
        let _ = self.commands.try_send(Command::Reply {
            peer: self.peer,
            envelope: envelope.encode(),
        });
    }
}

#[cfg(test)]
mod tests;
