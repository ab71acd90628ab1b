//! The self-hosted relay: rooms of opaque peers, routing on the frame header only (bodies are
//! ciphertext it never parses), presence, retained blobs, limits, `/healthz` and `/metrics`.
//! Invariants: the relay never reads a `DATA`/`BROADCAST` body and never logs payload bytes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod connection;
mod metrics;
mod outbox;
mod read_ahead;
mod reflector;
mod room;

pub use cluster::ClusterError;
pub use reflector::serve_reflector;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use remote_agents_protocol::frame::{
    self, Frame, IDLE_TIMEOUT_SECS_DEFAULT, MAX_FRAME_DEFAULT, MAX_PEERS_DEFAULT,
    PING_INTERVAL_SECS_DEFAULT, PRESENCE_BATCH_MILLIS, PROOF_TIMEOUT_SECS_DEFAULT, PeerId,
    PresenceChange, RATE_BURST_DEFAULT, RATE_PER_SECOND_DEFAULT, RoomId,
};
use remote_agents_protocol::key_proof::Challenge;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::metrics::{Metrics, Rejection};
use crate::outbox::Outbox;
use crate::read_ahead::ReadAhead;
use crate::room::Room;

/// Everything the relay can be told; defaults are the contract's (schemas/frame.md "Limits").
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Cap on a whole frame (header + body); larger WebSocket messages close with 1009.
    pub max_frame: usize,
    /// Peers per room; one more is refused with close code 4002.
    pub max_peers: usize,
    /// Sustained frames per second per connection; 0 turns rate limiting off.
    pub rate_per_second: u32,
    /// Frames a connection may send in a burst above the sustained rate.
    pub rate_burst: u32,
    /// When set, peers must send `Authorization: Bearer <key>` or get HTTP 401.
    pub relay_key: Option<String>,
    /// How often the relay pings each connection.
    pub ping_interval: Duration,
    /// No frame and no pong for this long closes the connection with 4008.
    pub idle_timeout: Duration,
    /// Bytes of forwarded frames queued for one receiver before senders wait for it.
    pub queue_budget: usize,
    /// Bytes of retained blobs (and their keys) one room may keep; a put beyond gets `ERROR 507`.
    pub retained_bytes_per_room: usize,
    /// Bytes of retained blobs the whole relay may keep; a put beyond gets `ERROR 507`.
    pub retained_bytes_total: usize,
    /// A room's retained blobs are dropped this long after its last peer left.
    pub retained_ttl: Duration,
    /// Bytes of relay-made frames (replies, presence) queued for one connection; a connection
    /// that lets more pile up is not reading and is closed with 4009.
    pub max_queued_bytes: usize,
    /// A sender that waited this long for a receiver's queue to drain closes the receiver with
    /// 4009 (it stopped reading) instead of waiting for good.
    pub slow_reader_timeout: Duration,
    /// Connections (upgraded WebSockets) the relay serves at once; more get HTTP 503.
    pub max_connections: usize,
    /// Time a client has to send its whole HTTP request head before the socket is dropped.
    pub header_read_timeout: Duration,
    /// How long a new connection has to answer `CHALLENGE` with its `PROOF` before it is
    /// closed with 4004.
    pub proof_timeout: Duration,
    /// tungstenite read chunk; its buffer is allocated up front per connection, so it dominates
    /// idle memory (the default 128 KiB would cost ~135 KB per connection). The socket itself is
    /// read 64 KiB at a time through `read_ahead`, whose buffer exists only while data flows, so
    /// a small chunk here costs no extra system calls.
    pub read_buffer_size: usize,
    /// Bytes tungstenite collects before writing to the socket; writes are also flushed when a
    /// connection's queue drains.
    pub write_buffer_size: usize,
    /// Cluster mode: the NATS server(s) (`nats://host:port`, several separated by commas)
    /// through which this instance shares rooms, presence and retained blobs with the other
    /// instances (`cluster`). `None`, the default, is a single relay that needs no NATS.
    pub cluster: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_frame: MAX_FRAME_DEFAULT,
            max_peers: MAX_PEERS_DEFAULT,
            rate_per_second: RATE_PER_SECOND_DEFAULT,
            rate_burst: RATE_BURST_DEFAULT,
            relay_key: None,
            ping_interval: Duration::from_secs(PING_INTERVAL_SECS_DEFAULT),
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS_DEFAULT),
            queue_budget: 4 * MAX_FRAME_DEFAULT,
            proof_timeout: Duration::from_secs(PROOF_TIMEOUT_SECS_DEFAULT),
            retained_bytes_per_room: frame::RETAINED_BYTES_PER_ROOM_DEFAULT,
            retained_bytes_total: RETAINED_BYTES_TOTAL_DEFAULT,
            retained_ttl: Duration::from_secs(frame::RETAINED_TTL_SECS_DEFAULT),
            max_queued_bytes: 8 * MAX_FRAME_DEFAULT,
            slow_reader_timeout: Duration::from_secs(20),
            max_connections: MAX_CONNECTIONS_DEFAULT,
            header_read_timeout: Duration::from_secs(10),
            read_buffer_size: 2048,
            write_buffer_size: 16 * 1024,
            cluster: None,
        }
    }
}

/// Default cap on the retained bytes of the whole relay: 256 MiB.
pub const RETAINED_BYTES_TOTAL_DEFAULT: usize = 256 << 20;

/// Default cap on concurrent connections (about what one process may hold in descriptors).
pub const MAX_CONNECTIONS_DEFAULT: usize = 20_000;

/// Bytes `read_ahead` may hold for one connection while data flows.
const READ_AHEAD_BYTES: usize = 64 * 1024;

impl RelayConfig {
    fn max_write_buffer(&self) -> usize {
        self.write_buffer_size + 2 * self.max_frame + 1024
    }

    fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_write_buffer_size(self.max_write_buffer())
            .max_message_size(Some(self.max_frame))
            .max_frame_size(Some(self.max_frame))
    }

    /// The most one connection can hold: socket read-ahead, tungstenite's read chunk and one
    /// message being assembled, its write buffer, and the send queue (which refuses more than
    /// the larger of its two limits, plus the frame that crossed it).
    pub fn bytes_per_connection(&self) -> usize {
        READ_AHEAD_BYTES
            + self.read_buffer_size
            + self.max_frame
            + self.max_write_buffer()
            + self.max_queued_bytes.max(self.queue_budget)
            + self.max_frame
    }

    /// The relay's memory ceiling for this configuration (buffers and retained blobs; the
    /// program itself and per-task bookkeeping come on top), as the line printed at start.
    pub fn memory_ceiling(&self) -> String {
        let per_connection = self.bytes_per_connection();
        let connections = per_connection.saturating_mul(self.max_connections);
        format!(
            "memory ceiling: {} ({} per connection for {} connections, {} retained)",
            mebibytes(connections.saturating_add(self.retained_bytes_total)),
            mebibytes(per_connection),
            self.max_connections,
            mebibytes(self.retained_bytes_total),
        )
    }
}

fn mebibytes(bytes: usize) -> String {
    let mib = bytes as f64 / (1 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Errors that stop the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("serving http failed")]
    Serve(#[source] std::io::Error),
    #[error("cluster mode could not start")]
    Cluster(#[from] ClusterError),
}

/// Removes rooms whose last peer left more than `retained_ttl` ago, with their retained blobs,
/// so a room an attacker filled and left does not hold memory for good.
async fn sweep_expired_rooms(relay: Arc<Relay>) {
    let ttl = relay.config.retained_ttl;
    let every = (ttl / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        relay.expire_rooms(std::time::Instant::now());
    }
}

/// Sends each room's gathered joins and leaves to its subscribers once per batch window. One
/// task for the relay, and it only touches rooms that changed since its last pass.
async fn flush_presence(relay: Arc<Relay>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(PRESENCE_BATCH_MILLIS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        relay.flush_dirty_rooms();
    }
}

/// The relay's shared state: rooms by id, counters, configuration.
pub(crate) struct Relay {
    config: RelayConfig,
    rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
    /// Rooms with presence changes not yet sent to their subscribers.
    dirty_rooms: Mutex<Vec<Arc<Room>>>,
    metrics: Metrics,
    next_connection: AtomicU64,
    /// Connections still running, so shutdown can wait for their close frames to go out.
    live_connections: tokio::sync::watch::Sender<usize>,
    /// The other instances, in cluster mode.
    cluster: Option<Arc<cluster::Cluster>>,
    /// The relay key as a browser offers it (lowercase hex of its UTF-8, after
    /// [`KEY_SUBPROTOCOL_PREFIX`]), made once.
    relay_key_hex: Option<String>,
}

/// Why a peer could not join.
pub(crate) enum JoinRefused {
    RoomFull,
}

impl Relay {
    fn new(config: RelayConfig, cluster: Option<Arc<cluster::Cluster>>) -> Self {
        Relay {
            relay_key_hex: config.relay_key.as_ref().map(hex::encode),
            config,
            rooms: Mutex::new(HashMap::new()),
            dirty_rooms: Mutex::new(Vec::new()),
            metrics: Metrics::default(),
            next_connection: AtomicU64::new(1),
            live_connections: tokio::sync::watch::Sender::new(0),
            cluster,
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Arc<Room>>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues `room` for the presence flusher.
    fn mark_dirty(&self, room: &Arc<Room>) {
        self.dirty_rooms
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(room.clone());
    }

    /// Sends every dirty room's pending presence changes to its subscribers.
    fn flush_dirty_rooms(&self) {
        let dirty = std::mem::take(
            &mut *self
                .dirty_rooms
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        for room in dirty {
            let queued = room.lock().flush_presence();
            self.metrics
                .presence_frames
                .fetch_add(queued, Ordering::Relaxed);
        }
    }

    /// Puts `peer` into the room: evicts an older connection with the same peer id (close 4001),
    /// sends `WELCOME` (the number of other peers present) to the newcomer and records the join
    /// for the room's presence subscribers, who get it in the next batch. Nobody else hears of
    /// it: peers that need to know who is present subscribe (`PRESENCE_GET`).
    pub(crate) fn join(
        &self,
        room_id: RoomId,
        peer: PeerId,
        connection: u64,
        outbox: &Arc<Outbox>,
    ) -> Result<Arc<Room>, JoinRefused> {
        let mut rooms = self.rooms();
        let room = rooms
            .entry(room_id)
            .or_insert_with(|| {
                self.metrics.rooms.fetch_add(1, Ordering::Relaxed);
                Arc::new(Room::default())
            })
            .clone();
        let mut state = room.lock();
        if let Some(previous) = state.members.get(&peer) {
            previous.outbox.close(frame::close_code::EVICTED, "evicted");
            if previous.subscribed {
                state.subscribers -= 1;
            }
            self.metrics.reject(Rejection::Evicted);
            tracing::info!(%room_id, %peer, "evicted an older connection with the same peer id");
        } else if state.members.len() >= self.config.max_peers {
            let unused = state.is_unused();
            drop(state);
            if unused {
                rooms.remove(&room_id);
                self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
            }
            self.metrics.reject(Rejection::RoomFull);
            return Err(JoinRefused::RoomFull);
        } else {
            self.metrics.peers.fetch_add(1, Ordering::Relaxed);
        }
        state.empty_since = None;
        drop(rooms);
        let mut others = state.members.len() - usize::from(state.members.contains_key(&peer));
        // Cluster hook: the newcomer's count includes the room's peers on other instances, and
        // the others hear of it through the cluster.
        if let Some(cluster) = &self.cluster {
            cluster.local_joined(room_id, peer, connection, outbox);
            others += cluster.remote_count(&room_id, |other| {
                *other != peer && !state.members.contains_key(other)
            });
        }
        outbox.push_now(Frame::welcome(peer, others as u32).encode());
        self.metrics.presence_frames.fetch_add(1, Ordering::Relaxed);
        state.members.insert(
            peer,
            room::Member {
                connection,
                outbox: outbox.clone(),
                subscribed: false,
            },
        );
        // Recorded on a replacement too: subscribers forget the old connection's sessions.
        let dirty = state.record(PresenceChange::Joined(peer));
        drop(state);
        if dirty {
            self.mark_dirty(&room);
        }
        Ok(room)
    }

    /// Takes `peer` out of the room if this connection still holds its place (an evicted
    /// connection does not) and records the leave for the room's subscribers.
    pub(crate) fn leave(&self, room_id: RoomId, room: &Arc<Room>, peer: PeerId, connection: u64) {
        let mut rooms = self.rooms();
        let mut state = room.lock();
        let holds_place = state
            .members
            .get(&peer)
            .is_some_and(|member| member.connection == connection);
        if !holds_place {
            return;
        }
        if state
            .members
            .remove(&peer)
            .is_some_and(|member| member.subscribed)
        {
            state.subscribers -= 1;
        }
        self.metrics.peers.fetch_sub(1, Ordering::Relaxed);
        // Cluster hook: a peer that moved to another instance has not left the room.
        let moved = self.cluster.as_ref().is_some_and(|cluster| {
            cluster.local_left(room_id, peer, connection);
            cluster.is_remote(&room_id, &peer)
        });
        if !moved && state.record(PresenceChange::Left(peer)) {
            self.mark_dirty(room);
        }
        if state.is_unused() {
            drop(state);
            rooms.remove(&room_id);
            self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
        } else if state.members.is_empty() {
            state.empty_since = Some(std::time::Instant::now());
        }
    }

    /// Cluster hook: `peer` joined the room on another instance; the local presence
    /// subscribers hear of it in the next batch, as of a local join.
    pub(crate) fn remote_joined(&self, room_id: RoomId, peer: PeerId) {
        self.record_remote(room_id, PresenceChange::Joined(peer));
    }

    /// Cluster hook: `peer` left the room on another instance (or its instance died).
    pub(crate) fn remote_left(&self, room_id: RoomId, peer: PeerId) {
        self.record_remote(room_id, PresenceChange::Left(peer));
    }

    /// Cluster hook: a frame from `sender` on another instance is about to be queued here; the
    /// room's pending batch goes first if it names `sender` (as for a local sender).
    pub(crate) fn flush_presence_before_remote_frame(&self, room_id: RoomId, sender: &PeerId) {
        let room = self.rooms().get(&room_id).cloned();
        let Some(room) = room else {
            return;
        };
        let queued = room.lock().flush_before_frame_from(sender);
        self.metrics
            .presence_frames
            .fetch_add(queued, Ordering::Relaxed);
    }

    fn record_remote(&self, room_id: RoomId, change: PresenceChange) {
        let room = self.rooms().get(&room_id).cloned();
        let Some(room) = room else {
            return;
        };
        let mut state = room.lock();
        // A peer that is (again) connected here is announced by its local join, not by this.
        let (PresenceChange::Joined(peer) | PresenceChange::Left(peer)) = change;
        if matches!(change, PresenceChange::Left(_)) && state.members.contains_key(&peer) {
            return;
        }
        let dirty = state.record(change);
        drop(state);
        if dirty {
            self.mark_dirty(&room);
        }
    }

    /// Cluster hook: a newer connection with `peer`'s id joined on another instance; the local
    /// `connection` is evicted (close 4001) as a local duplicate would be.
    pub(crate) fn evict_for_cluster(&self, room_id: RoomId, peer: PeerId, connection: u64) {
        let room = self.rooms().get(&room_id).cloned();
        if let Some(room) = room
            && let Some(member) = room.lock().members.get(&peer)
            && member.connection == connection
        {
            member.outbox.close(frame::close_code::EVICTED, "evicted");
            self.metrics.reject(Rejection::Evicted);
            tracing::info!(%room_id, %peer, "evicted a connection: the same peer id joined on another instance");
        }
    }

    /// Drops every room whose last peer left at least `retained_ttl` before `now`.
    fn expire_rooms(&self, now: std::time::Instant) {
        let ttl = self.config.retained_ttl;
        let mut rooms = self.rooms();
        rooms.retain(|room_id, room| {
            let mut state = room.lock();
            let expired = state.members.is_empty()
                && state
                    .empty_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= ttl);
            if expired {
                let freed = state.clear_retained();
                self.metrics
                    .retained_bytes
                    .fetch_sub(freed as u64, Ordering::Relaxed);
                self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(%room_id, freed, "dropped the retained blobs of a room idle past its ttl");
            }
            !expired
        });
    }

    /// The limits a put into a room's retained store must respect.
    pub(crate) fn retain_limits(&self) -> room::RetainLimits<'_> {
        room::RetainLimits {
            bytes_per_room: self.config.retained_bytes_per_room,
            bytes_total: self.config.retained_bytes_total,
            total: &self.metrics.retained_bytes,
        }
    }

    /// Closes every connection with 1001 (going away), for shutdown.
    fn close_all(&self) {
        let rooms: Vec<Arc<Room>> = self.rooms().values().cloned().collect();
        for room in rooms {
            for member in room.lock().members.values() {
                member.outbox.close(1001, "relay shutting down");
            }
        }
    }
}

/// Serves the relay on `listener` until `shutdown` resolves, then closes every connection
/// with 1001 and returns.
pub async fn serve(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    serve_when_ready(listener, config, shutdown, || {}).await
}

/// Like [`serve`], calling `ready` once the relay takes connections: at once for one relay,
/// after joining the other instances in cluster mode (the binary prints its readiness line
/// there, so "listening" means "in the cluster").
pub async fn serve_when_ready(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(),
) -> Result<(), RelayError> {
    let cluster = match &config.cluster {
        Some(url) => Some(cluster::Cluster::connect(url, &config).await?),
        None => None,
    };
    let relay = Arc::new(Relay::new(config, cluster.clone()));
    let cluster_task = match &cluster {
        Some(cluster) => Some(cluster.start(relay.clone()).await?),
        None => None,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .route("/v1/rooms/{room_id}", get(upgrade))
        .with_state(relay.clone());
    let sweeper = tokio::spawn(sweep_expired_rooms(relay.clone()));
    let presence = tokio::spawn(flush_presence(relay.clone()));
    ready();
    // Our own accept loop rather than `axum::serve`: it gives hyper a timer, so a client that
    // never finishes its request head (slowloris) is dropped after `header_read_timeout`
    // instead of holding a socket and its buffers for good.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(relay.config.header_read_timeout);
    let service = hyper_util::service::TowerToHyperService::new(app);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, usually: give connections a moment to end rather
                    // than spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Frames are latency-sensitive and already batched by the writer.
        let _ = tcp.set_nodelay(true);
        let connection = http
            .serve_connection(TokioIo::new(tcp), service.clone())
            .with_upgrades();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http connection ended");
            }
        });
    }
    sweeper.abort();
    presence.abort();
    if let Some(task) = cluster_task {
        task.abort();
    }
    if let Some(cluster) = &cluster {
        cluster.goodbye().await;
    }
    relay.close_all();
    // Upgraded connections live outside axum: give their close frames time to go out.
    let mut live = relay.live_connections.subscribe();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, live.wait_for(|count| *count == 0)).await;
    Ok(())
}

/// How long shutdown waits for connections to finish their close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Counts a connection as live for as long as it exists.
pub(crate) struct LiveConnection<'relay>(&'relay Relay);

impl<'relay> LiveConnection<'relay> {
    pub(crate) fn new(relay: &'relay Relay) -> Self {
        relay.live_connections.send_modify(|count| *count += 1);
        LiveConnection(relay)
    }
}

impl Drop for LiveConnection<'_> {
    fn drop(&mut self) {
        self.0.live_connections.send_modify(|count| *count -= 1);
    }
}

async fn metrics_text(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        relay.metrics.render(),
    )
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// Compares without an early exit so response timing does not reveal how much of a guessed
/// key was right.
/// The WebSocket subprotocol browsers name (the panel): the relay then names it in its answer.
pub const SUBPROTOCOL: &str = "remote-agents";
/// A browser cannot send an `Authorization` header with a WebSocket, so the panel offers the
/// relay key as a second subprotocol, this prefix and the key's UTF-8 bytes in lowercase hex
/// (subprotocols are tokens). It travels where the header would, inside the same TLS.
pub const KEY_SUBPROTOCOL_PREFIX: &str = "remote-agents.relay-key.";

/// The subprotocols a WebSocket request offers (`Sec-WebSocket-Protocol`, comma-separated, in
/// one or several headers).
fn offered_protocols(headers: &axum::http::HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
        .collect()
}

fn same_secret(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn peer_from_query(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("peer="))
}

/// `GET /v1/rooms/{room_id}?peer=...`: checks the relay key, then upgrades by hand (rather than
/// through axum's `ws` feature) so the WebSocket is tungstenite configured exactly as we say.
async fn upgrade(
    State(relay): State<Arc<Relay>>,
    Path(room_text): Path<String>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if *relay.live_connections.borrow() >= relay.config.max_connections {
        relay.metrics.reject(Rejection::TooManyConnections);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "relay at its connection limit",
        )
            .into_response();
    }
    let protocols = offered_protocols(headers);
    if let (Some(key), Some(key_hex)) = (&relay.config.relay_key, &relay.relay_key_hex) {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let presented = match bearer {
            Some(offered) => same_secret(offered.as_bytes(), key.as_bytes()),
            None => protocols.iter().any(|protocol| {
                protocol
                    .strip_prefix(KEY_SUBPROTOCOL_PREFIX)
                    .is_some_and(|hex| same_secret(hex.as_bytes(), key_hex.as_bytes()))
            }),
        };
        if !presented {
            relay.metrics.reject(Rejection::Unauthorized);
            return (StatusCode::UNAUTHORIZED, "relay key required").into_response();
        }
    }
    let names_subprotocol = protocols.contains(&SUBPROTOCOL);
    let is_websocket = header_is(headers, header::CONNECTION, "upgrade")
        && header_is(headers, header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|version| version == "13");
    let Some(accept) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_websocket)
        .map(|key| derive_accept_key(key.as_bytes()))
    else {
        return (StatusCode::UPGRADE_REQUIRED, "websocket upgrade required").into_response();
    };
    let room_id = room_text.parse::<RoomId>().ok();
    let peer = peer_from_query(request.uri().query()).and_then(|text| text.parse::<PeerId>().ok());
    // The challenge in the answer's header when the peer asks for it (and its ids parse: a
    // malformed request is closed after the upgrade, with no challenge at all).
    let header_challenge = match (peer, room_id.is_some()) {
        (Some(peer), true)
            if header_is(
                headers,
                header::HeaderName::from_static(frame::CHALLENGE_HEADER),
                frame::CHALLENGE_IN_HEADER,
            ) =>
        {
            match Challenge::new() {
                Ok(challenge) => {
                    let encoded = Frame::challenge(peer, challenge.public_key()).encode();
                    Some((challenge, hex::encode(encoded)))
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot draw a key challenge");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            }
        }
        _ => None,
    };
    let (sent_challenge, challenge_text) = header_challenge.unzip();
    let on_upgrade = hyper::upgrade::on(&mut request);
    let websocket_config = relay.config.websocket_config();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let websocket = WebSocketStream::from_raw_socket(
                    ReadAhead::new(TokioIo::new(upgraded)),
                    Role::Server,
                    Some(websocket_config),
                )
                .await;
                connection::run(relay, websocket, room_id, peer, sent_challenge).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if names_subprotocol {
        // A browser that offered subprotocols fails the connection unless one is chosen; the
        // key-carrying one is never echoed back.
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    }
    if let Some(text) = challenge_text {
        response = response.header(frame::CHALLENGE_HEADER, text);
    }
    response
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// An encoded `ERROR` frame.
pub(crate) fn error_frame(to: PeerId, id: u64, code: u16, message: &str) -> Bytes {
    Frame::error(to, id, code, message).encode()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use remote_agents_protocol::frame::{Body, FrameKind, PresenceChange};

    use super::*;
    use crate::outbox::Drained;

    fn drain(outbox: &Outbox) -> Vec<Frame> {
        let mut batch = VecDeque::new();
        let mut frames = Vec::new();
        while let Drained::Frames = outbox.drain_into(&mut batch) {
            frames.extend(
                batch
                    .drain(..)
                    .map(|bytes| Frame::decode(bytes).expect("relay frames decode")),
            );
        }
        frames
    }

    fn peer(index: usize) -> PeerId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(index as u64 + 1).to_be_bytes());
        PeerId(id)
    }

    /// A newcomer's first frame (its handshake) must not overtake the batch announcing it: a
    /// subscriber that heard the join later would drop the session just made with it.
    #[test]
    fn a_frame_from_a_peer_whose_join_is_pending_sends_the_batch_first() {
        let relay = Relay::new(RelayConfig::default(), None);
        let room_id = frame::room_id_from_name("order");
        let subscriber_box = Arc::new(Outbox::new(1 << 20));
        let room = relay
            .join(room_id, peer(0), 0, &subscriber_box)
            .unwrap_or_else(|_| panic!("room has space"));
        room.lock().subscribe(&peer(0));
        let newcomer_box = Arc::new(Outbox::new(1 << 20));
        relay
            .join(room_id, peer(1), 1, &newcomer_box)
            .unwrap_or_else(|_| panic!("room has space"));
        drain(&subscriber_box);
        // A frame from someone else leaves the batch to the flusher.
        assert_eq!(room.lock().flush_before_frame_from(&peer(0)), 0);
        assert!(drain(&subscriber_box).is_empty());
        assert_eq!(room.lock().flush_before_frame_from(&peer(1)), 1);
        let frames = drain(&subscriber_box);
        let Ok(Body::Presence(page)) = frames[0].body() else {
            panic!("expected the presence batch, got {frames:?}");
        };
        assert_eq!(page.changes, [PresenceChange::Joined(peer(1))]);
        // Sent once: the flusher finds nothing left, and a second frame sends nothing.
        relay.flush_dirty_rooms();
        assert_eq!(room.lock().flush_before_frame_from(&peer(1)), 0);
        assert!(drain(&subscriber_box).is_empty());
    }

    /// The presence cost of a room of `nodes` headless peers and one subscriber (fleetctl)
    /// that all join, all leave (the relay restarts) and all join again: every frame the
    /// relay queues, counted per receiver. Version 1 sent a JOIN to every peer present and a
    /// LEAVE to every peer remaining, ~N² frames per mass reconnect; now a headless peer gets
    /// its `WELCOME` and nothing else, and the subscriber one batch per flush.
    #[test]
    fn a_mass_reconnect_costs_o_n_presence_frames_not_o_n_squared() {
        let nodes = 500;
        let relay = Relay::new(RelayConfig::default(), None);
        let room_id = frame::room_id_from_name("presence");
        let subscriber = peer(nodes);
        let subscriber_box = Arc::new(Outbox::new(64 << 20));
        let room = relay
            .join(room_id, subscriber, 0, &subscriber_box)
            .unwrap_or_else(|_| panic!("room has space"));
        room.lock().subscribe(&subscriber);
        let mut frames_to_headless = 0;
        let mut subscriber_frames = Vec::new();
        for round in 0..2 {
            let outboxes: Vec<Arc<Outbox>> = (0..nodes)
                .map(|_| Arc::new(Outbox::new(64 << 20)))
                .collect();
            for (index, outbox) in outboxes.iter().enumerate() {
                let connection = (round * nodes + index + 1) as u64;
                let _ = relay.join(room_id, peer(index), connection, outbox);
                // A flush every 50 joins: the batches of a reconnect spread over time.
                if index % 50 == 49 {
                    relay.flush_dirty_rooms();
                }
            }
            relay.flush_dirty_rooms();
            for outbox in &outboxes {
                let frames = drain(outbox);
                assert_eq!(frames.len(), 1, "a headless peer hears only its WELCOME");
                assert_eq!(frames[0].header.kind, FrameKind::Welcome);
                frames_to_headless += frames.len();
            }
            subscriber_frames.extend(drain(&subscriber_box));
            for (index, _) in outboxes.iter().enumerate() {
                let connection = (round * nodes + index + 1) as u64;
                relay.leave(room_id, &room, peer(index), connection);
            }
            relay.flush_dirty_rooms();
            subscriber_frames.extend(drain(&subscriber_box));
        }
        assert_eq!(frames_to_headless, 2 * nodes);
        // The subscriber: its WELCOME, 10 batches of joins per round and one of leaves.
        assert_eq!(subscriber_frames.len(), 1 + 2 * (10 + 1));
        let mut joined = 0;
        let mut left = 0;
        for frame in &subscriber_frames[1..] {
            let Ok(Body::Presence(page)) = frame.body() else {
                panic!("a subscriber gets PRESENCE batches: {frame:?}");
            };
            for change in page.changes {
                match change {
                    PresenceChange::Joined(_) => joined += 1,
                    PresenceChange::Left(_) => left += 1,
                }
            }
        }
        assert_eq!((joined, left), (2 * nodes, 2 * nodes));
        assert_eq!(
            relay.metrics.presence_frames.load(Ordering::Relaxed) as usize,
            1 + 2 * nodes + 2 * (10 + 1)
        );
    }

    #[test]
    fn snapshot_pages_list_every_other_peer_once_in_id_order() {
        let relay = Relay::new(RelayConfig::default(), None);
        let room_id = frame::room_id_from_name("pages");
        let count = frame::PRESENCE_PAGE + 10;
        let mut room = None;
        for index in 0..count {
            let outbox = Arc::new(Outbox::new(1 << 20));
            room = relay.join(room_id, peer(index), index as u64, &outbox).ok();
        }
        let room = room.expect("joined");
        let asking = peer(3);
        let state = room.lock();
        let first = state.snapshot_page(&asking, &PeerId::ZERO, &[]);
        assert!(first.snapshot && first.more);
        assert_eq!(first.changes.len(), frame::PRESENCE_PAGE);
        let PresenceChange::Joined(last) = first.changes[first.changes.len() - 1] else {
            panic!("snapshots list joins");
        };
        let second = state.snapshot_page(&asking, &last, &[]);
        assert!(!second.more);
        let mut seen: Vec<PeerId> = first
            .changes
            .iter()
            .chain(&second.changes)
            .map(|change| match change {
                PresenceChange::Joined(peer) => *peer,
                PresenceChange::Left(peer) => panic!("left {peer} in a snapshot"),
            })
            .collect();
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(!seen.contains(&asking));
        seen.push(asking);
        seen.sort();
        assert_eq!(seen, (0..count).map(peer).collect::<Vec<_>>());
    }
}
