//! The connection manager's one task: owns the relay WebSocket and the sans-IO sessions, and
//! runs one `select!` over relay frames, commands from handles and session timers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::BackoffBuilder;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use remote_agents_protocol::frame::{
    Body, CHALLENGE_HEADER, CHALLENGE_IN_HEADER, FRAME_VERSION, Frame, FrameError, FrameKind,
    Header, PeerId, PresenceChange, close_code, connect_path, room_id_from_name,
};
use remote_agents_protocol::key_proof;
use remote_agents_protocol::message::{Announcement, Envelope, RemoteFailure, parts};
use remote_agents_protocol::session::{Event, Sessions, StaticKeypair};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::{
    CallError, CallEvent, Command, ConnectionState, Handler, NetConfig, PeerInfo, Responder, Shared,
};
use crate::identity::Identity;

/// A WebSocket to the relay.
pub type RelaySocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why connecting to the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad relay url {url}")]
    Url {
        url: String,
        #[source]
        source: tungstenite::Error,
    },
    #[error("relay refused the connection with http {0}")]
    Refused(u16),
    #[error("cannot connect to the relay")]
    WebSocket(#[source] tungstenite::Error),
    #[error("the relay closed the connection ({code}: {reason}) before we proved our key")]
    ClosedBeforeProof { code: u16, reason: String },
    #[error("the relay sent no key challenge within {0:?}; is it older than this node?")]
    NoChallenge(Duration),
    #[error("the relay's first frame was not a key challenge: {0}")]
    BadChallenge(String),
    #[error(
        "protocol version mismatch: the relay speaks version {relay}, this node speaks \
         version {node}; run the same release on both"
    )]
    Version { relay: u8, node: u8 },
    #[error("cannot answer the relay's key challenge")]
    Proof(#[source] remote_agents_protocol::key_proof::KeyProofError),
}

impl ConnectError {
    /// The close code of a relay that refused us during the key proof, if that is what happened.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ConnectError::ClosedBeforeProof { code, .. } => Some(*code),
            ConnectError::Version { .. } => Some(close_code::VERSION_MISMATCH),
            _ => None,
        }
    }
}

/// The relays of a `relay_url` setting: one URL, or several separated by commas (the instances
/// of a relay cluster, tried in turn).
pub(crate) fn relay_urls(setting: &str) -> Vec<String> {
    let urls: Vec<String> = setting
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        vec![setting.to_owned()]
    } else {
        urls
    }
}

/// How long the node waits for the relay's `CHALLENGE` after the upgrade.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the WebSocket `{relay_url}/v1/rooms/{room_id}?peer={peer_id}`, with the relay key as
/// a bearer token when one is set, and answers the relay's `CHALLENGE` with a `PROOF` that we
/// hold `keypair` (the peer id is its hash); the next frame is then `WELCOME`. `read_buffer`
/// tunes tungstenite's per-connection buffer (small for idle fleets, large for throughput).
pub async fn connect_relay(
    relay_url: &str,
    room_name: &str,
    keypair: &StaticKeypair,
    relay_key: Option<&str>,
    max_frame: usize,
    read_buffer: usize,
) -> Result<RelaySocket, ConnectError> {
    let peer = keypair.peer_id();
    let room_id = room_id_from_name(room_name);
    let url = format!(
        "{}{}",
        relay_url.trim_end_matches('/'),
        connect_path(&room_id, &peer)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|source| ConnectError::Url {
            url: url.clone(),
            source,
        })?;
    if let Some(key) = relay_key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| ConnectError::Refused(401))?;
        request.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame + 1024))
        .max_frame_size(Some(max_frame + 1024))
        .read_buffer_size(read_buffer)
        .write_buffer_size(WRITE_BUFFER);
    // Ask for the challenge in the upgrade's answer: one frame fewer per connection.
    request.headers_mut().insert(
        CHALLENGE_HEADER,
        tungstenite::http::HeaderValue::from_static(CHALLENGE_IN_HEADER),
    );
    let (mut socket, response) =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok(connected) => connected,
            Err(tungstenite::Error::Http(response)) => {
                return Err(ConnectError::Refused(response.status().as_u16()));
            }
            Err(error) => return Err(ConnectError::WebSocket(error)),
        };
    let challenge = match response.headers().get(CHALLENGE_HEADER) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| hex::decode(text).ok())
            .map(Bytes::from)
            .ok_or_else(|| {
                ConnectError::BadChallenge(format!("{CHALLENGE_HEADER} header is not hex"))
            })?,
        // A relay that does not put it in the header sends it as the first frame.
        None => first_frame(&mut socket).await?,
    };
    let challenge_key = match Frame::decode(challenge).map(|frame| frame.body()) {
        Ok(Ok(Body::Challenge(public_key))) => public_key,
        Err(FrameError::Version(relay)) => {
            return Err(ConnectError::Version {
                relay,
                node: FRAME_VERSION,
            });
        }
        Ok(Ok(other)) => return Err(ConnectError::BadChallenge(other.kind().to_string())),
        Ok(Err(error)) | Err(error) => return Err(ConnectError::BadChallenge(error.to_string())),
    };
    let proof = key_proof::prove(keypair, &room_id, &challenge_key).map_err(ConnectError::Proof)?;
    socket
        .send(Message::Binary(Frame::proof(peer, proof).encode()))
        .await
        .map_err(ConnectError::WebSocket)?;
    Ok(socket)
}

/// The relay's first binary frame on `socket` (its `CHALLENGE`), or why none came.
async fn first_frame(socket: &mut RelaySocket) -> Result<Bytes, ConnectError> {
    tokio::time::timeout(CHALLENGE_TIMEOUT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(ConnectError::ClosedBeforeProof { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(ConnectError::WebSocket(error)),
                None => {
                    return Err(ConnectError::ClosedBeforeProof {
                        code: 1006,
                        reason: "stream ended".into(),
                    });
                }
            }
        }
    })
    .await
    .map_err(|_| ConnectError::NoChallenge(CHALLENGE_TIMEOUT))?
}

/// Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter"):
/// backon yields the capped exponential schedule, each wait is uniform in `[0, step)`.
pub struct ReconnectBackoff {
    minimum: Duration,
    maximum: Duration,
    schedule: backon::ExponentialBackoff,
}

impl ReconnectBackoff {
    pub fn new(minimum: Duration, maximum: Duration) -> Self {
        Self {
            minimum,
            maximum,
            schedule: Self::schedule(minimum, maximum),
        }
    }

    fn schedule(minimum: Duration, maximum: Duration) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(minimum)
            .with_max_delay(maximum)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.schedule.next().unwrap_or(self.maximum);
        step.mul_f64(fastrand::f64())
    }

    /// Starts over after a connection that worked.
    pub fn reset(&mut self) {
        self.schedule = Self::schedule(self.minimum, self.maximum);
    }
}

/// Most relay frames, or most commands, handled in one pass of the driver loop before its
/// writes are flushed: enough to batch a fan-out's burst, few enough to keep timers and the
/// other direction responsive.
const BATCH: usize = 64;

/// Bytes of outgoing frames tungstenite collects before it writes to the socket; the loop
/// flushes after every pass, so this only merges the frames of one pass into fewer writes.
const WRITE_BUFFER: usize = 64 * 1024;

/// How long a handler may keep running after its deadline fired its cancellation token.
const HANDLER_GRACE: Duration = Duration::from_secs(2);

enum Ended {
    Shutdown,
    Closed(u16, String),
    Lost(String),
}

struct OutboundCall {
    peer: PeerId,
    events: mpsc::UnboundedSender<Result<CallEvent, CallError>>,
    /// Whether the request may have reached the callee (decides unreachable vs outcome unknown).
    sent: bool,
    chunk: Vec<u8>,
    response: Vec<u8>,
}

struct InboundCall {
    cancel: CancellationToken,
    request: Vec<u8>,
    deadline_ms: u64,
    started: bool,
}

pub(crate) struct Driver {
    identity: Identity,
    config: NetConfig,
    handler: Option<Arc<dyn Handler>>,
    shared: Arc<Shared>,
    commands_tx: mpsc::Sender<Command>,
    commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
    sessions: Sessions,
    /// Peers the relay says are in the room.
    present: HashSet<PeerId>,
    // The authenticated peers live in `shared.presence` only: it is edited in place, since
    // copying a thousand-peer table on every announcement made a fleet-wide apply O(n^3).
    calls: HashMap<u64, OutboundCall>,
    inbound: HashMap<(PeerId, u64), InboundCall>,
    notifications: HashMap<(PeerId, u64), Vec<u8>>,
    next_notification: u64,
    /// Frames for the relay itself (retained store requests), sent with the session frames.
    relay_frames: Vec<Bytes>,
    /// Retained-store requests waiting for the relay's answer, by frame id.
    retain_waiters: HashMap<u64, RetainWaiter>,
    next_relay_request: u64,
    /// Whether this node follows the room's presence (subscribed at every connect): nodes that
    /// address the room do; headless nodes do not until a duty needs it, and then know only
    /// the peers they talked to (`present` stays empty and calls go to any peer id).
    follow_presence: bool,
    /// Whether every peer that becomes present is also met (handshaken) at once, for a lazy
    /// node that needs the announcements of the whole room (a declared job's coordinator rule).
    meet_everyone: bool,
    /// The snapshot being read page by page, if any.
    snapshot: Option<Snapshot>,
    /// Callers waiting for a one-off list of the room (`Command::RoomPeers`).
    room_waiters: Vec<tokio::sync::oneshot::Sender<Result<Vec<PeerId>, CallError>>>,
    /// Whether the connection is up (WELCOME seen) in this `serve`.
    welcomed: bool,
    /// When each peer's current session was established: a join that arrives in a batch after
    /// we already met that peer is the same incarnation, not a rejoin (see `REJOIN_GRACE`).
    established_at: HashMap<PeerId, Instant>,
}

/// A join for a peer whose session is younger than this is the delayed news of the join we
/// already met it after (batches go out every 50 ms; handshakes through the relay are faster),
/// so its session is kept. An older session belongs to a previous incarnation that rejoined
/// without leaving (it evicted its own stale connection) and is forgotten.
const REJOIN_GRACE: Duration = Duration::from_secs(1);

/// A presence snapshot being read from the relay page by page.
struct Snapshot {
    /// The id of the `PRESENCE_GET` whose page is awaited.
    request: u64,
    /// Whether it subscribes (the node follows presence) or only lists the room once.
    subscribe: bool,
    /// The peers of the pages so far.
    peers: Vec<PeerId>,
}

/// A retained-store request in flight at the relay.
enum RetainWaiter {
    Put(tokio::sync::oneshot::Sender<Result<(), CallError>>),
    /// The blobs received so far (oldest first) and where to send them at the closing `ACK`.
    Get(
        Vec<Vec<u8>>,
        tokio::sync::oneshot::Sender<Result<Vec<Vec<u8>>, CallError>>,
    ),
}

impl RetainWaiter {
    fn fail(self, error: CallError) {
        match self {
            RetainWaiter::Put(done) => {
                let _ = done.send(Err(error));
            }
            RetainWaiter::Get(_, done) => {
                let _ = done.send(Err(error));
            }
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

impl Driver {
    pub(crate) fn new(
        identity: &Identity,
        config: NetConfig,
        handler: Option<Arc<dyn Handler>>,
        shared: Arc<Shared>,
        commands_tx: mpsc::Sender<Command>,
        commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Self {
        let sessions = Sessions::new(
            identity.keypair().clone(),
            config.psk.clone(),
            config.announcement.encode(),
            config.session.clone(),
            Instant::now().into_std(),
            unix_nanos(),
        );
        let follow_presence = config.subscribe_presence;
        Self {
            identity: identity.clone(),
            config,
            handler,
            shared,
            commands_tx,
            commands,
            shutdown,
            sessions,
            present: HashSet::new(),
            calls: HashMap::new(),
            inbound: HashMap::new(),
            notifications: HashMap::new(),
            next_notification: 1,
            relay_frames: Vec::new(),
            retain_waiters: HashMap::new(),
            next_relay_request: 1,
            follow_presence,
            meet_everyone: false,
            snapshot: None,
            room_waiters: Vec::new(),
            welcomed: false,
            established_at: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut backoff =
            ReconnectBackoff::new(self.config.reconnect_min, self.config.reconnect_max);
        // Several relays (instances of one relay cluster, `ws://a,ws://b`): connect to the first,
        // and after a lost connection or a failed attempt try the next, round the list.
        let relays = relay_urls(&self.config.relay_url);
        let mut relay_index = 0;
        loop {
            let relay_url = relays[relay_index % relays.len()].clone();
            relay_index += 1;
            if self.shutdown.is_cancelled() {
                break;
            }
            self.shared.state.send_replace(ConnectionState::Connecting);
            self.shared
                .counters
                .connect_attempts
                .fetch_add(1, Ordering::Relaxed);
            let connected = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                connected = connect_relay(
                    &relay_url,
                    &self.config.room_name,
                    self.identity.keypair(),
                    self.config.relay_key.as_deref(),
                    self.config.max_frame,
                    64 * 1024,
                ) => connected,
            };
            match connected {
                Ok(socket) => {
                    // Stay with the relay that answered for the next attempt too: a relay that
                    // closed the connection (idle, restart) is usually back first.
                    relay_index -= 1;
                    let started = Instant::now();
                    let ended = self.serve(socket, &mut backoff).await;
                    self.connection_lost(&ended);
                    match ended {
                        Ended::Shutdown => break,
                        Ended::Closed(code, reason) if code == close_code::EVICTED => {
                            tracing::warn!(code, %reason, "evicted by another connection with our peer id; not reconnecting");
                            self.shared.state.send_replace(ConnectionState::Evicted);
                            self.idle_until_shutdown().await;
                            return;
                        }
                        Ended::Closed(code, reason) if code == close_code::BAD_REQUEST => {
                            tracing::error!(code, %reason, "relay refused our request; not reconnecting");
                            self.shared
                                .state
                                .send_replace(ConnectionState::GaveUp(reason));
                            self.idle_until_shutdown().await;
                            return;
                        }
                        Ended::Closed(code, reason) => {
                            tracing::info!(code, %reason, connected_for = ?started.elapsed(), "relay closed the connection");
                            // 1001: the relay is going away (shutting down); try the next one.
                            if code == 1001 {
                                relay_index += 1;
                            }
                        }
                        Ended::Lost(reason) => {
                            tracing::info!(%reason, relay = %relay_url, connected_for = ?started.elapsed(), "relay connection lost");
                            // A relay whose socket died is likely gone (a dead cluster
                            // instance): the next attempt goes to the next relay in the list.
                            relay_index += 1;
                        }
                    }
                }
                Err(error) if error.close_code() == Some(close_code::BAD_REQUEST) => {
                    tracing::error!(%error, "relay refused our request; not reconnecting");
                    self.shared
                        .state
                        .send_replace(ConnectionState::GaveUp(error.to_string()));
                    self.idle_until_shutdown().await;
                    return;
                }
                Err(error) if error.close_code() == Some(close_code::VERSION_MISMATCH) => {
                    // Not fatal: one side is usually being upgraded; keep trying, loudly.
                    tracing::error!(%error, relay = %self.config.relay_url, "cannot join the room; retrying");
                }
                Err(error) if error.close_code() == Some(close_code::KEY_PROOF_FAILED) => {
                    tracing::warn!(%error, relay = %relay_url, "the relay did not accept our key proof; retrying");
                }
                Err(error) => {
                    tracing::debug!(error = %error, relay = %relay_url, "cannot connect to the relay");
                }
            }
            let delay = backoff.next_delay();
            if !self.wait_disconnected(delay).await {
                break;
            }
        }
        self.connection_lost(&Ended::Shutdown);
        self.shared.direct.close();
        self.shared.state.send_replace(ConnectionState::Stopped);
    }

    /// Waits `delay` before the next attempt, failing whatever is asked meanwhile.
    /// Returns false on shutdown.
    async fn wait_disconnected(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.refuse(command),
                    None => return false,
                },
            }
        }
    }

    async fn idle_until_shutdown(&mut self) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                command = self.commands.recv() => match command {
                    Some(command) => self.refuse(command),
                    None => return,
                },
            }
        }
    }

    fn refuse(&mut self, command: Command) {
        match command {
            Command::Call { events, .. } => {
                let _ = events.send(Err(CallError::Unreachable(
                    "not connected to the relay".into(),
                )));
            }
            Command::Broadcast { sent, .. } => {
                let _ = sent.send(0);
            }
            Command::Notify { sent, .. } => {
                let _ = sent.send(Err(CallError::Unreachable(
                    "not connected to the relay".into(),
                )));
            }
            Command::Announce(announcement) => self.set_announcement(announcement),
            Command::InboundDone { peer, call } => {
                self.inbound.remove(&(peer, call));
            }
            Command::Cancel { call } => {
                self.calls.remove(&call);
            }
            Command::Reply { .. } => {}
            Command::MeetPresent | Command::FollowPresence { .. } => self.follow(command),
            Command::RoomPeers { done } => {
                let _ = done.send(Err(CallError::Unreachable(
                    "not connected to the relay".into(),
                )));
            }
            Command::RetainPut { done, .. } => {
                let _ = done.send(Err(CallError::Unreachable(
                    "not connected to the relay".into(),
                )));
            }
            Command::RetainGet { done, .. } => {
                let _ = done.send(Err(CallError::Unreachable(
                    "not connected to the relay".into(),
                )));
            }
        }
    }

    async fn serve(&mut self, socket: RelaySocket, backoff: &mut ReconnectBackoff) -> Ended {
        let (mut sink, mut stream) = socket.split();
        loop {
            let timer = self
                .sessions
                .next_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Shutdown;
                }
                message = stream.next() => {
                    if let Some(ended) = self.on_message(message, backoff) {
                        return ended;
                    }
                    // Frames that are already readable are handled before writing, so a burst
                    // (a fan-out's answers, its requests on a node) costs one flush, not one each.
                    for _ in 1..BATCH {
                        let Some(message) = stream.next().now_or_never() else {
                            break;
                        };
                        if let Some(ended) = self.on_message(message, backoff) {
                            return ended;
                        }
                    }
                }
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.on_command(command);
                        for _ in 1..BATCH {
                            let Ok(command) = self.commands.try_recv() else {
                                break;
                            };
                            self.on_command(command);
                        }
                    }
                    None => return Ended::Shutdown,
                },
                _ = tokio::time::sleep_until(timer) => {
                    self.sessions.handle_timeout(Instant::now().into_std());
                }
            }
            self.drain_events();
            let mut wrote = false;
            for frame in std::mem::take(&mut self.relay_frames) {
                wrote = true;
                if let Err(error) = sink.feed(Message::Binary(frame)).await {
                    return Ended::Lost(error.to_string());
                }
            }
            while let Some(outgoing) = self.sessions.poll_transmit() {
                wrote = true;
                if let Err(error) = sink.feed(Message::Binary(outgoing.frame.into())).await {
                    return Ended::Lost(error.to_string());
                }
            }
            if wrote && let Err(error) = sink.flush().await {
                return Ended::Lost(error.to_string());
            }
        }
    }

    /// Handles one message from the relay; `Some` when the connection is over.
    fn on_message(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
        backoff: &mut ReconnectBackoff,
    ) -> Option<Ended> {
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                if self.on_frame(bytes) {
                    backoff.reset();
                }
                // A handshake completed by this frame must register the peer before the next
                // frame of the same batch (often the first request on the new session).
                self.drain_events();
                None
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                Some(Ended::Closed(code, reason))
            }
            Some(Ok(_)) => None,
            Some(Err(error)) => Some(Ended::Lost(error.to_string())),
            None => Some(Ended::Lost("stream ended".into())),
        }
    }

    fn reject(&self, peer: Option<PeerId>, reason: &dyn std::fmt::Display) {
        self.shared
            .counters
            .rejected
            .fetch_add(1, Ordering::Relaxed);
        match peer {
            Some(peer) => tracing::warn!(%peer, %reason, "rejected frame"),
            None => tracing::warn!(%reason, "rejected frame"),
        }
    }

    /// Handles one frame from the relay; returns true for WELCOME.
    fn on_frame(&mut self, bytes: Bytes) -> bool {
        let now = Instant::now().into_std();
        // Data frames go to the sessions as received: the header bytes are the associated data.
        if let Ok(header) = Header::decode(&bytes)
            && header.kind == FrameKind::Data
        {
            match self.sessions.receive(&bytes, now) {
                Ok(Some((peer, plaintext))) => self.on_plaintext(peer, plaintext),
                Ok(None) => {}
                Err(rejection) => self.reject(Some(header.from), &rejection),
            }
            return false;
        }
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(error) => {
                self.reject(None, &error);
                return false;
            }
        };
        let from = frame.header.from;
        match frame.header.kind {
            FrameKind::Data => {}
            FrameKind::Welcome => {
                let Ok(Body::Welcome { .. }) = frame.body() else {
                    self.reject(None, &"malformed welcome");
                    return false;
                };
                self.shared
                    .counters
                    .connections
                    .fetch_add(1, Ordering::Relaxed);
                self.welcomed = true;
                if self.follow_presence {
                    // Connected only once the room's members are known (the snapshot's last
                    // page), so `wait_settled` never sees a connected, empty room that is not.
                    self.request_snapshot(true, PeerId::ZERO);
                } else {
                    if !self.room_waiters.is_empty() {
                        self.request_snapshot(false, PeerId::ZERO);
                    }
                    self.shared.presence_known.send_replace(true);
                    self.shared.state.send_replace(ConnectionState::Connected);
                }
                return true;
            }
            FrameKind::Presence => {
                let Ok(Body::Presence(page)) = frame.body() else {
                    self.reject(None, &"malformed presence");
                    return false;
                };
                if page.snapshot {
                    self.on_snapshot_page(frame.header.id, page, now);
                } else if self.follow_presence {
                    self.on_presence_changes(page.changes, now);
                }
            }
            FrameKind::Error => {
                if let Ok(Body::Error { code, message }) = frame.body() {
                    tracing::debug!(code, %message, id = frame.header.id, "relay error");
                    if let Some(waiter) = self.retain_waiters.remove(&frame.header.id) {
                        waiter.fail(CallError::Unreachable(format!(
                            "the relay refused the retained-store request: {code} {message}"
                        )));
                    }
                }
            }
            FrameKind::Broadcast => {
                // We never send relay broadcasts: a BROADCAST body is not authenticated.
                self.reject(Some(from), &"unauthenticated broadcast frame");
            }
            FrameKind::Ack => match self.retain_waiters.remove(&frame.header.id) {
                Some(RetainWaiter::Put(done)) => {
                    let _ = done.send(Ok(()));
                }
                Some(RetainWaiter::Get(blobs, done)) => {
                    let _ = done.send(Ok(blobs));
                }
                None => {}
            },
            FrameKind::Retained => {
                if let Some(RetainWaiter::Get(blobs, _)) =
                    self.retain_waiters.get_mut(&frame.header.id)
                    && let Ok(Body::Retained { blob, .. }) = frame.body()
                {
                    blobs.push(blob.to_vec());
                }
            }
            FrameKind::RetainPut
            | FrameKind::RetainGet
            | FrameKind::Proof
            | FrameKind::PresenceGet => {
                self.reject(None, &"peer-to-relay frame kind from the relay");
            }
            FrameKind::Challenge => {
                // The challenge was answered in `connect_relay`; a second one means nothing.
                self.reject(None, &"key challenge after the key was proven");
            }
        }
        false
    }

    /// Drops `peer`'s sessions and fails its calls; the caller publishes `present` (a batch of
    /// changes publishes once).
    fn forget_peer(&mut self, peer: PeerId, reason: &str) {
        self.present.remove(&peer);
        self.established_at.remove(&peer);
        self.sessions.peer_left(&peer);
        self.shared
            .presence
            .send_if_modified(|peers| peers.remove(&peer).is_some());
        let failed: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, call)| call.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            if let Some(call) = self.calls.remove(&id) {
                let error = if call.sent {
                    CallError::OutcomeUnknown(format!("{reason} after the request was sent"))
                } else {
                    CallError::Unreachable(reason.to_string())
                };
                let _ = call.events.send(Err(error));
            }
        }
    }

    fn connection_lost(&mut self, ended: &Ended) {
        let reason = match ended {
            Ended::Shutdown => "the node is shutting down".to_string(),
            Ended::Closed(code, _) => format!("relay closed the connection ({code})"),
            Ended::Lost(reason) => format!("relay connection lost: {reason}"),
        };
        self.sessions.reset();
        self.present.clear();
        self.publish_present();
        self.welcomed = false;
        self.snapshot = None;
        self.established_at.clear();
        self.shared.presence_known.send_replace(false);
        for waiter in self.room_waiters.drain(..) {
            let _ = waiter.send(Err(CallError::Unreachable(reason.clone())));
        }
        self.shared.presence.send_if_modified(|peers| {
            let had_peers = !peers.is_empty();
            peers.clear();
            had_peers
        });
        for (_, call) in self.calls.drain() {
            let error = if matches!(ended, Ended::Shutdown) {
                CallError::Shutdown
            } else if call.sent {
                CallError::OutcomeUnknown(format!("{reason} after the request was sent"))
            } else {
                CallError::Unreachable(reason.clone())
            };
            let _ = call.events.send(Err(error));
        }
        self.inbound.retain(|_, inbound| inbound.started);
        self.notifications.clear();
        self.relay_frames.clear();
        for (_, waiter) in self.retain_waiters.drain() {
            waiter.fail(CallError::Unreachable(reason.clone()));
        }
    }

    fn publish_present(&self) {
        self.shared
            .present
            .send_replace(self.present.iter().copied().collect());
    }

    /// The ids of the authenticated peers.
    fn peer_ids(&self) -> Vec<PeerId> {
        self.shared.presence.borrow().keys().copied().collect()
    }

    /// One authenticated peer's record (a copy: the presence table is not held while it is used).
    fn peer_info(&self, peer: &PeerId) -> Option<PeerInfo> {
        self.shared.presence.borrow().get(peer).cloned()
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.sessions.poll_event() {
            match event {
                Event::Established {
                    peer,
                    remote_static,
                    announcement,
                } => {
                    let announcement =
                        Announcement::decode(&announcement).unwrap_or_else(|error| {
                            tracing::warn!(%peer, %error, "undecodable announcement");
                            Announcement::default()
                        });
                    let info = PeerInfo {
                        peer_id: peer,
                        agent_id: peer.to_hex(),
                        public_key: remote_static,
                        announcement,
                    };
                    let name = info.announcement.name.clone();
                    let new = self.shared.presence.send_if_modified(|peers| {
                        peers.get(&peer) != Some(&info) && {
                            peers.insert(peer, info);
                            true
                        }
                    });
                    if new {
                        tracing::info!(%peer, %name, "secure session established");
                    }
                    self.established_at.insert(peer, Instant::now());
                    // The relay just forwarded this peer's frames: it is in the room, whether
                    // or not the batch saying so has come yet.
                    if self.follow_presence && self.present.insert(peer) {
                        self.publish_present();
                    }
                    // Queued requests were flushed with the new session.
                    for call in self.calls.values_mut().filter(|call| call.peer == peer) {
                        call.sent = true;
                    }
                }
                Event::HandshakeFailed { peer, dropped } => {
                    tracing::warn!(%peer, dropped, "handshake failed");
                    let failed: Vec<u64> = self
                        .calls
                        .iter()
                        .filter(|(_, call)| call.peer == peer && !call.sent)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in failed {
                        if let Some(call) = self.calls.remove(&id) {
                            let _ = call.events.send(Err(CallError::Unreachable(
                                "no secure session with the peer (handshake failed)".into(),
                            )));
                        }
                    }
                }
            }
        }
    }

    fn send_envelope(&mut self, peer: PeerId, envelope: &[u8]) -> bool {
        match self
            .sessions
            .send(peer, envelope, Instant::now().into_std())
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%peer, %error, "cannot send");
                false
            }
        }
    }

    fn set_announcement(&mut self, announcement: Announcement) {
        self.config.announcement = announcement;
        self.sessions
            .set_announcement(self.config.announcement.encode());
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Call {
                peer,
                call,
                deadline,
                request,
                events,
                direct,
            } => {
                // Only a node that follows presence knows who is absent; any other sends, and
                // a peer not in the room is a call that gets no answer before its deadline.
                if self.follow_presence && !self.present.contains(&peer) {
                    let _ = events.send(Err(CallError::Unreachable(format!(
                        "peer {peer} is not in the room"
                    ))));
                    return;
                }
                if request.len() > self.config.max_message {
                    let _ = events.send(Err(CallError::TooLarge(request.len())));
                    return;
                }
                let deadline_ms = deadline.saturating_duration_since(now).as_millis() as u64;
                let established = self.sessions.is_established(&peer, now.into_std());
                let envelopes: Vec<Vec<u8>> = if direct {
                    vec![
                        Envelope::Direct {
                            call,
                            deadline_ms,
                            offer: request,
                        }
                        .encode(),
                    ]
                } else {
                    parts(&request)
                        .map(|(part, more)| {
                            Envelope::Request {
                                call,
                                deadline_ms,
                                data: part.to_vec(),
                                more,
                            }
                            .encode()
                        })
                        .collect()
                };
                for envelope in envelopes {
                    if !self.send_envelope(peer, &envelope) {
                        let _ = events.send(Err(CallError::Unreachable(
                            "cannot queue the request for the peer".into(),
                        )));
                        return;
                    }
                }
                self.calls.insert(
                    call,
                    OutboundCall {
                        peer,
                        events,
                        sent: established,
                        chunk: Vec::new(),
                        response: Vec::new(),
                    },
                );
            }
            Command::Cancel { call } => {
                if let Some(outbound) = self.calls.remove(&call)
                    && self.sessions.is_established(&outbound.peer, now.into_std())
                {
                    let envelope = Envelope::Cancel { call }.encode();
                    self.send_envelope(outbound.peer, &envelope);
                }
            }
            Command::Reply { peer, envelope } => {
                if self.sessions.is_established(&peer, now.into_std()) {
                    self.send_envelope(peer, &envelope);
                }
            }
            Command::InboundDone { peer, call } => {
                self.inbound.remove(&(peer, call));
            }
            Command::Broadcast { message, sent } => {
                let targets = self.peer_ids();
                let mut count = 0;
                for peer in targets {
                    if self.notify(peer, &message) {
                        count += 1;
                    }
                }
                let _ = sent.send(count);
            }
            Command::Notify {
                peer,
                message,
                sent,
            } => {
                let known = self.shared.presence.borrow().contains_key(&peer);
                let result = if known && self.notify(peer, &message) {
                    Ok(())
                } else {
                    Err(CallError::Unreachable(format!(
                        "no secure session with peer {peer}"
                    )))
                };
                let _ = sent.send(result);
            }
            Command::RetainPut { key, blob, done } => {
                let id = self.next_relay_request;
                self.next_relay_request += 1;
                match Frame::retain_put(id, &key, &blob) {
                    Ok(frame) => {
                        self.relay_frames.push(frame.encode());
                        self.retain_waiters.insert(id, RetainWaiter::Put(done));
                    }
                    Err(error) => {
                        let _ = done.send(Err(CallError::Unreachable(format!(
                            "cannot frame the retained blob: {error}"
                        ))));
                    }
                }
            }
            Command::RetainGet { key, done } => {
                let id = self.next_relay_request;
                self.next_relay_request += 1;
                match Frame::retain_get(id, &key) {
                    Ok(frame) => {
                        self.relay_frames.push(frame.encode());
                        self.retain_waiters
                            .insert(id, RetainWaiter::Get(Vec::new(), done));
                    }
                    Err(error) => {
                        let _ = done.send(Err(CallError::Unreachable(format!(
                            "cannot frame the retained-store request: {error}"
                        ))));
                    }
                }
            }
            Command::MeetPresent | Command::FollowPresence { .. } => self.follow(command),
            Command::RoomPeers { done } => {
                if self.follow_presence && self.snapshot.is_none() {
                    let _ = done.send(Ok(self.present.iter().copied().collect()));
                } else {
                    self.room_waiters.push(done);
                    if self.welcomed && self.snapshot.is_none() {
                        self.request_snapshot(false, PeerId::ZERO);
                    }
                }
            }
            Command::Announce(announcement) => {
                self.set_announcement(announcement.clone());
                let envelope = Envelope::Announce(announcement).encode();
                let targets = self.peer_ids();
                for peer in targets {
                    self.send_envelope(peer, &envelope);
                }
            }
        }
    }

    /// Starts following presence (`FollowPresence`, or `MeetPresent`, which also meets every
    /// peer present); a node already following meets the peers it knows at once.
    fn follow(&mut self, command: Command) {
        let meet_now = match command {
            Command::MeetPresent => true,
            Command::FollowPresence { meet_everyone } => {
                self.meet_everyone |= meet_everyone;
                meet_everyone
            }
            _ => return,
        };
        if !self.follow_presence {
            self.follow_presence = true;
            self.shared.follows.store(true, Ordering::Relaxed);
            // `MeetPresent` before the snapshot: meet whoever it lists.
            self.meet_everyone |= meet_now;
            if self.welcomed {
                self.shared.presence_known.send_replace(false);
                if self.snapshot.is_none() {
                    self.request_snapshot(true, PeerId::ZERO);
                }
            }
            return;
        }
        if meet_now {
            let now = Instant::now().into_std();
            for peer in self.present.iter().copied().collect::<Vec<_>>() {
                self.sessions.meet(peer, now);
            }
        }
    }

    /// Asks the relay for the page of the room after `after`.
    fn request_snapshot(&mut self, subscribe: bool, after: PeerId) {
        let id = self.next_relay_request;
        self.next_relay_request += 1;
        self.relay_frames
            .push(Frame::presence_get(id, subscribe, after).encode());
        match &mut self.snapshot {
            Some(snapshot) if after != PeerId::ZERO => snapshot.request = id,
            _ => {
                self.snapshot = Some(Snapshot {
                    request: id,
                    subscribe,
                    peers: Vec::new(),
                });
            }
        }
    }

    fn on_snapshot_page(
        &mut self,
        id: u64,
        page: remote_agents_protocol::frame::PresencePage,
        now: std::time::Instant,
    ) {
        let Some(snapshot) = self.snapshot.as_mut().filter(|s| s.request == id) else {
            return;
        };
        let mut last = None;
        for change in page.changes {
            if let PresenceChange::Joined(peer) = change {
                last = Some(peer);
                if peer != self.shared.local_id {
                    snapshot.peers.push(peer);
                }
            }
        }
        let subscribe = snapshot.subscribe;
        if page.more
            && let Some(last) = last
        {
            self.request_snapshot(subscribe, last);
            return;
        }
        let Some(snapshot) = self.snapshot.take() else {
            return;
        };
        if snapshot.subscribe {
            for peer in &snapshot.peers {
                self.present.insert(*peer);
                self.sessions.peer_present(*peer, now);
                if self.meet_everyone {
                    self.sessions.meet(*peer, now);
                }
            }
            self.publish_present();
            self.shared.presence_known.send_replace(true);
            self.shared.state.send_replace(ConnectionState::Connected);
        }
        for waiter in self.room_waiters.drain(..) {
            let _ = waiter.send(Ok(snapshot.peers.clone()));
        }
        // The node started following while a one-off listing was under way: subscribe now.
        if !snapshot.subscribe && self.follow_presence {
            self.request_snapshot(true, PeerId::ZERO);
        }
    }

    /// A batch of joins and leaves, in the order they happened.
    fn on_presence_changes(&mut self, changes: Vec<PresenceChange>, now: std::time::Instant) {
        for change in changes {
            match change {
                PresenceChange::Joined(peer) if peer != self.shared.local_id => {
                    // A peer that rejoins may have restarted: forget its old sessions.
                    let stale = self
                        .established_at
                        .get(&peer)
                        .is_some_and(|at| at.elapsed() >= REJOIN_GRACE);
                    if stale {
                        self.forget_peer(peer, "peer rejoined the room");
                    }
                    self.present.insert(peer);
                    self.sessions.peer_present(peer, now);
                    if self.meet_everyone {
                        self.sessions.meet(peer, now);
                    }
                }
                PresenceChange::Joined(_) => {}
                PresenceChange::Left(peer) => self.forget_peer(peer, "peer left the room"),
            }
        }
        self.publish_present();
    }

    fn notify(&mut self, peer: PeerId, message: &[u8]) -> bool {
        let id = self.next_notification;
        self.next_notification += 1;
        parts(message).all(|(part, more)| {
            let envelope = Envelope::Notify {
                id,
                data: part.to_vec(),
                more,
            }
            .encode();
            self.send_envelope(peer, &envelope)
        })
    }

    fn on_plaintext(&mut self, peer: PeerId, plaintext: Vec<u8>) {
        let envelope = match Envelope::decode(&plaintext) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.reject(Some(peer), &error);
                return;
            }
        };
        self.shared
            .counters
            .accepted
            .fetch_add(1, Ordering::Relaxed);
        let max_message = self.config.max_message;
        match envelope {
            Envelope::Announce(announcement) => {
                self.shared
                    .presence
                    .send_if_modified(|peers| match peers.get_mut(&peer) {
                        Some(info) => {
                            info.announcement = announcement;
                            true
                        }
                        None => false,
                    });
            }
            Envelope::Request {
                call,
                deadline_ms,
                data,
                more,
            } => {
                let entry = self
                    .inbound
                    .entry((peer, call))
                    .or_insert_with(|| InboundCall {
                        cancel: self.shutdown.child_token(),
                        request: Vec::new(),
                        deadline_ms,
                        started: false,
                    });
                if entry.started {
                    tracing::debug!(%peer, call, "duplicate request part ignored");
                    return;
                }
                if entry.request.len() + data.len() > max_message {
                    self.inbound.remove(&(peer, call));
                    let envelope = Envelope::Failure {
                        call,
                        failure: RemoteFailure::Malformed("request too large".into()),
                    }
                    .encode();
                    self.send_envelope(peer, &envelope);
                    return;
                }
                entry.request.extend_from_slice(&data);
                if !more {
                    self.start_handler(peer, call);
                }
            }
            Envelope::Direct {
                call,
                deadline_ms,
                offer,
            } => self.start_direct_answer(peer, call, deadline_ms, offer),
            Envelope::Chunk { call, data, more } => {
                if let Some(outbound) = self.calls.get_mut(&call).filter(|c| c.peer == peer) {
                    outbound.chunk.extend_from_slice(&data);
                    if outbound.chunk.len() > max_message {
                        let outbound = self.calls.remove(&call).expect("present");
                        let _ = outbound
                            .events
                            .send(Err(CallError::TooLarge(outbound.chunk.len())));
                    } else if !more {
                        let chunk = std::mem::take(&mut outbound.chunk);
                        let _ = outbound.events.send(Ok(CallEvent::Chunk(chunk)));
                    }
                }
            }
            Envelope::Response { call, data, more } => {
                if let Some(outbound) = self.calls.get_mut(&call).filter(|c| c.peer == peer) {
                    if outbound.response.is_empty() {
                        // A one-part answer (most: a part is nearly a whole frame) moves.
                        outbound.response = data;
                    } else {
                        outbound.response.extend_from_slice(&data);
                    }
                    if outbound.response.len() > max_message {
                        let outbound = self.calls.remove(&call).expect("present");
                        let _ = outbound
                            .events
                            .send(Err(CallError::TooLarge(outbound.response.len())));
                    } else if !more {
                        let outbound = self.calls.remove(&call).expect("present");
                        let _ = outbound
                            .events
                            .send(Ok(CallEvent::Response(outbound.response)));
                    }
                }
            }
            Envelope::Failure { call, failure } => {
                if self.calls.get(&call).is_some_and(|c| c.peer == peer) {
                    let outbound = self.calls.remove(&call).expect("present");
                    // Whichever side noticed the deadline first, the caller sees one error.
                    let error = match failure {
                        RemoteFailure::DeadlineExceeded => CallError::DeadlineExceeded,
                        failure => CallError::Remote(failure),
                    };
                    let _ = outbound.events.send(Err(error));
                }
            }
            Envelope::Cancel { call } => {
                if let Some(inbound) = self.inbound.remove(&(peer, call)) {
                    inbound.cancel.cancel();
                }
            }
            Envelope::Notify { id, data, more } => {
                let buffer = self.notifications.entry((peer, id)).or_default();
                buffer.extend_from_slice(&data);
                if buffer.len() > max_message {
                    self.notifications.remove(&(peer, id));
                } else if !more {
                    let message = self.notifications.remove(&(peer, id)).unwrap_or_default();
                    if let (Some(handler), Some(info)) = (&self.handler, self.peer_info(&peer)) {
                        handler.notify(&info, message);
                    }
                }
            }
        }
    }

    /// Answers a direct-path offer in a task of its own: the direct layer, not the node's
    /// request handler, owns these, so even a send-only node can be the answering side.
    fn start_direct_answer(&mut self, peer: PeerId, call: u64, deadline_ms: u64, offer: Vec<u8>) {
        let Some(info) = self.peer_info(&peer) else {
            return;
        };
        let responder = Responder {
            peer,
            call,
            deadline: Instant::now() + Duration::from_millis(deadline_ms),
            commands: self.commands_tx.clone(),
            finished: false,
        };
        let net = super::Net {
            shared: self.shared.clone(),
            commands: self.commands_tx.clone(),
        };
        crate::runtime::spawn(super::direct::answer(net, info, offer, responder));
    }

    fn start_handler(&mut self, peer: PeerId, call: u64) {
        let Some(inbound) = self.inbound.get_mut(&(peer, call)) else {
            return;
        };
        inbound.started = true;
        let request = std::mem::take(&mut inbound.request);
        let deadline = Duration::from_millis(inbound.deadline_ms);
        let cancel = inbound.cancel.clone();
        let (Some(handler), Some(info)) = (self.handler.clone(), self.peer_info(&peer)) else {
            self.inbound.remove(&(peer, call));
            let envelope = Envelope::Failure {
                call,
                failure: RemoteFailure::NoHandler,
            }
            .encode();
            self.send_envelope(peer, &envelope);
            return;
        };
        let responder = Responder {
            peer,
            call,
            deadline: Instant::now() + deadline,
            commands: self.commands_tx.clone(),
            finished: false,
        };
        let commands = self.commands_tx.clone();
        crate::runtime::spawn(async move {
            let mut handling = handler.handle(info, request, responder, cancel.clone());
            tokio::select! {
                () = &mut handling => {}
                () = tokio::time::sleep(deadline) => {
                    // Past the deadline: fire the token and give the handler a grace period to
                    // stop on its own; dropping it then drops its responder, which reports the
                    // deadline to the caller.
                    cancel.cancel();
                    let _ = tokio::time::timeout(HANDLER_GRACE, handling).await;
                }
            }
            let _ = commands.send(Command::InboundDone { peer, call }).await;
        });
    }
}
