//! The self-hosted relay: rooms of opaque peers, routing on the frame header only (bodies are
//! ciphertext it never parses), presence, retained blobs, limits, `/healthz` and `/metrics`.
//! Invariants: the relay never reads a `DATA`/`BROADCAST` body and never logs payload bytes.

mod connection;
mod metrics;
mod outbox;
mod read_ahead;
mod room;

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
            read_buffer_size: 2048,
            write_buffer_size: 16 * 1024,
        }
    }
}

impl RelayConfig {
    fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_write_buffer_size(self.write_buffer_size + 2 * self.max_frame + 1024)
            .max_message_size(Some(self.max_frame))
            .max_frame_size(Some(self.max_frame))
    }
}

/// Errors that stop the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("serving http failed")]
    Serve(#[source] std::io::Error),
}

/// The relay's shared state: rooms by id, counters, configuration.
pub(crate) struct Relay {
    config: RelayConfig,
    rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
    metrics: Metrics,
    next_connection: AtomicU64,
    /// Connections still running, so shutdown can wait for their close frames to go out.
    live_connections: tokio::sync::watch::Sender<usize>,
}

/// Why a peer could not join.
pub(crate) enum JoinRefused {
    RoomFull,
}

impl Relay {
    fn new(config: RelayConfig) -> Self {
        Relay {
            config,
            rooms: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            next_connection: AtomicU64::new(1),
            live_connections: tokio::sync::watch::Sender::new(0),
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
        drop(rooms);
        let present: Vec<PeerId> = state
            .members
            .keys()
            .copied()
            .filter(|other| *other != peer)
            .collect();
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
        let leave = Frame::leave(peer).encode();
        for member in state.members.values() {
            member.outbox.push_now(leave.clone());
        }
        if state.is_unused() {
            drop(state);
            rooms.remove(&room_id);
            self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
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
    let relay = Arc::new(Relay::new(config));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .route("/v1/rooms/{room_id}", get(upgrade))
        .with_state(relay.clone());
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        // Frames are latency-sensitive and already batched by the writer.
        let _ = tcp.set_nodelay(true);
    });
    let closing = relay.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.close_all();
        })
        .await
        .map_err(RelayError::Serve)?;
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
