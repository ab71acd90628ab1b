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
    PING_INTERVAL_SECS_DEFAULT, PROOF_TIMEOUT_SECS_DEFAULT, PeerId, RATE_BURST_DEFAULT,
    RATE_PER_SECOND_DEFAULT, RoomId,
};
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

/// The relay's shared state: rooms by id, counters, configuration.
pub(crate) struct Relay {
    config: RelayConfig,
    rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
    metrics: Metrics,
    next_connection: AtomicU64,
    /// Connections still running, so shutdown can wait for their close frames to go out.
    live_connections: tokio::sync::watch::Sender<usize>,
    /// The other instances, in cluster mode.
    cluster: Option<Arc<cluster::Cluster>>,
}

/// Why a peer could not join.
pub(crate) enum JoinRefused {
    RoomFull,
}

impl Relay {
    fn new(config: RelayConfig, cluster: Option<Arc<cluster::Cluster>>) -> Self {
        Relay {
            config,
            rooms: Mutex::new(HashMap::new()),
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

    /// Puts `peer` into the room: evicts an older connection with the same peer id (close 4001),
    /// sends `WELCOME` to the newcomer and `JOIN` to the others. Both are queued under the room
    /// lock, so no forwarded frame can overtake them.
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
        let mut present: Vec<PeerId> = state
            .members
            .keys()
            .copied()
            .filter(|other| *other != peer)
            .collect();
        // Cluster hook: the newcomer also sees the room's peers on other instances.
        if let Some(cluster) = &self.cluster {
            cluster.local_joined(room_id, peer, connection, outbox);
            present.extend(
                cluster
                    .remote_peers(&room_id)
                    .into_iter()
                    .filter(|other| *other != peer && !state.members.contains_key(other)),
            );
        }
        outbox.push_now(Frame::welcome(peer, &present).encode());
        let join = Frame::join(peer).encode();
        for (other, member) in &state.members {
            if *other != peer {
                member.outbox.push_now(join.clone());
            }
        }
        state.members.insert(
            peer,
            room::Member {
                connection,
                outbox: outbox.clone(),
            },
        );
        drop(state);
        Ok(room)
    }

    /// Takes `peer` out of the room if this connection still holds its place (an evicted
    /// connection does not) and tells the others with `LEAVE`.
    pub(crate) fn leave(&self, room_id: RoomId, room: &Room, peer: PeerId, connection: u64) {
        let mut rooms = self.rooms();
        let mut state = room.lock();
        let holds_place = state
            .members
            .get(&peer)
            .is_some_and(|member| member.connection == connection);
        if !holds_place {
            return;
        }
        state.members.remove(&peer);
        self.metrics.peers.fetch_sub(1, Ordering::Relaxed);
        // Cluster hook: a peer that moved to another instance has not left the room.
        let moved = self.cluster.as_ref().is_some_and(|cluster| {
            cluster.local_left(room_id, peer, connection);
            cluster.is_remote(&room_id, &peer)
        });
        if !moved {
            let leave = Frame::leave(peer).encode();
            for member in state.members.values() {
                member.outbox.push_now(leave.clone());
            }
        }
        if state.is_unused() {
            drop(state);
            rooms.remove(&room_id);
            self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
        } else if state.members.is_empty() {
            state.empty_since = Some(std::time::Instant::now());
        }
    }

    /// Cluster hook: `peer` joined the room on another instance; the local members hear `JOIN`.
    pub(crate) fn remote_joined(&self, room_id: RoomId, peer: PeerId) {
        self.tell_room(room_id, peer, Frame::join(peer).encode());
    }

    /// Cluster hook: `peer` left the room on another instance (or its instance died).
    pub(crate) fn remote_left(&self, room_id: RoomId, peer: PeerId) {
        self.tell_room(room_id, peer, Frame::leave(peer).encode());
    }

    fn tell_room(&self, room_id: RoomId, about: PeerId, presence: Bytes) {
        let room = self.rooms().get(&room_id).cloned();
        if let Some(room) = room {
            for (member, local) in &room.lock().members {
                if *member != about {
                    local.outbox.push_now(presence.clone());
                }
            }
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
    if let Some(key) = &relay.config.relay_key {
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(offered.as_bytes(), key.as_bytes()) {
            relay.metrics.reject(Rejection::Unauthorized);
            return (StatusCode::UNAUTHORIZED, "relay key required").into_response();
        }
    }
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
                connection::run(relay, websocket, room_id, peer).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// An encoded `ERROR` frame.
pub(crate) fn error_frame(to: PeerId, id: u64, code: u16, message: &str) -> Bytes {
    Frame::error(to, id, code, message).encode()
}
