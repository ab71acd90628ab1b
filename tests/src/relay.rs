//! Relay test helpers: a relay to talk to (the one named by `REMOTE_AGENTS_TEST_RELAY_URL`, or
//! the Rust relay started in-process on 127.0.0.1:0) and a small frame-level client. Nothing here
//! reaches into relay internals, so the same tests run against the Worker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use remote_agents_protocol::frame::{
    self, Body, Frame, FrameKind, Header, PeerId, PresenceChange, RoomId, connect_path,
};
use remote_agents_protocol::key_proof;
use remote_agents_protocol::session::StaticKeypair;
use remote_agents_relay::RelayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The environment variable naming an external relay (e.g. `ws://127.0.0.1:8787`).
pub const RELAY_URL_ENV: &str = "REMOTE_AGENTS_TEST_RELAY_URL";

/// How long a test waits for any one expected event before failing.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// The limits of the relay under test: the in-process config, or for an external relay the
/// contract defaults unless `REMOTE_AGENTS_TEST_RELAY_{MAX_FRAME,MAX_PEERS,RATE,IDLE_SECS,KEY,RETAINED_BYTES_PER_ROOM}`
/// say how it was started.
#[derive(Clone, Debug)]
pub struct RelayLimits {
    pub max_frame: usize,
    pub max_peers: usize,
    pub rate_per_second: u32,
    pub idle_timeout: Duration,
    pub relay_key: Option<String>,
    pub retained_bytes_per_room: usize,
}

impl RelayLimits {
    fn from_config(config: &RelayConfig) -> Self {
        RelayLimits {
            max_frame: config.max_frame,
            max_peers: config.max_peers,
            rate_per_second: config.rate_per_second,
            idle_timeout: config.idle_timeout,
            relay_key: config.relay_key.clone(),
            retained_bytes_per_room: config.retained_bytes_per_room,
        }
    }

    fn from_env() -> anyhow::Result<Self> {
        fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
            match std::env::var(name) {
                Ok(text) => text
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name} is not a number: {text}")),
                Err(_) => Ok(default),
            }
        }
        Ok(RelayLimits {
            max_frame: number(
                "REMOTE_AGENTS_TEST_RELAY_MAX_FRAME",
                frame::MAX_FRAME_DEFAULT,
            )?,
            max_peers: number(
                "REMOTE_AGENTS_TEST_RELAY_MAX_PEERS",
                frame::MAX_PEERS_DEFAULT,
            )?,
            rate_per_second: number(
                "REMOTE_AGENTS_TEST_RELAY_RATE",
                frame::RATE_PER_SECOND_DEFAULT,
            )?,
            idle_timeout: Duration::from_secs(number(
                "REMOTE_AGENTS_TEST_RELAY_IDLE_SECS",
                frame::IDLE_TIMEOUT_SECS_DEFAULT,
            )?),
            relay_key: std::env::var("REMOTE_AGENTS_TEST_RELAY_KEY")
                .ok()
                .filter(|key| !key.is_empty()),
            retained_bytes_per_room: number(
                "REMOTE_AGENTS_TEST_RELAY_RETAINED_BYTES_PER_ROOM",
                frame::RETAINED_BYTES_PER_ROOM_DEFAULT,
            )?,
        })
    }
}

/// A relay for one test. Dropping it stops an in-process relay.
pub struct TestRelay {
    /// Base URL, `ws://host:port`, without a path.
    pub url: String,
    limits: RelayLimits,
    external: bool,
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestRelay {
    /// The external relay if the environment names one, otherwise a Rust relay with defaults.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(RelayConfig::default()).await
    }

    /// Like [`TestRelay::start`], but an in-process relay gets `config`. An external relay keeps
    /// whatever it was started with, described by the environment (see [`RelayLimits`]).
    pub async fn start_with(config: RelayConfig) -> anyhow::Result<Self> {
        if let Ok(url) = std::env::var(RELAY_URL_ENV) {
            return Ok(TestRelay {
                url: url.trim_end_matches('/').to_owned(),
                limits: RelayLimits::from_env()?,
                external: true,
                _stop: None,
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = RelayLimits::from_config(&config);
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = remote_agents_relay::serve(listener, config, shutdown).await {
                eprintln!("in-process relay stopped: {error}");
            }
        });
        Ok(TestRelay {
            url: format!("ws://{address}"),
            limits,
            external: false,
            _stop: Some(stop),
        })
    }

    pub fn limits(&self) -> &RelayLimits {
        &self.limits
    }

    pub fn is_external(&self) -> bool {
        self.external
    }

    /// `host:port` of the relay, for tests that speak raw TCP to it.
    pub fn socket_address(&self) -> anyhow::Result<String> {
        let rest = self
            .url
            .strip_prefix("ws://")
            .context("only ws:// relay URLs are supported in tests")?;
        Ok(rest.split('/').next().unwrap_or(rest).to_owned())
    }

    /// `GET path` over plain HTTP/1.1: the status code and the body.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let address = self.socket_address()?;
        let mut stream = TcpStream::connect(&address).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tokio::time::timeout(EVENT_DEADLINE, stream.read_to_end(&mut response))
            .await
            .context("http response deadline")??;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("no http status")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((status, dechunk(&body)))
    }

    fn request(
        &self,
        path: &str,
        key: Option<&str>,
    ) -> anyhow::Result<tungstenite::handshake::client::Request> {
        let mut request = format!("{}{}", self.url, path).into_client_request()?;
        if let Some(key) = key {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {key}").parse()?);
        }
        Ok(request)
    }

    /// Connects `peer` (made by [`random_peer`]) to `room`, with the relay key if the relay has
    /// one, and proves the peer's key. A relay that closes instead (room full, say) leaves the
    /// close for the client's next event.
    pub async fn connect(&self, room: &RoomId, peer: PeerId) -> anyhow::Result<RelayClient> {
        let (mut client, challenge) = self.connect_unproven(room, peer).await?;
        if let Some(challenge) = challenge {
            let proof = key_proof::prove(&keypair_of(&peer)?, room, &challenge)?;
            client.send(&Frame::proof(peer, proof)).await?;
        }
        Ok(client)
    }

    /// Connects `peer` to `room` and reads the relay's `CHALLENGE` without answering it: the
    /// challenge key, or `None` if the relay closed first (the close is the client's next event).
    pub async fn connect_unproven(
        &self,
        room: &RoomId,
        peer: PeerId,
    ) -> anyhow::Result<(RelayClient, Option<[u8; key_proof::PUBLIC_KEY_LEN]>)> {
        let mut client = self
            .connect_path(
                &connect_path(room, &peer),
                peer,
                self.limits.relay_key.as_deref(),
            )
            .await?;
        match client.next_event().await? {
            Event::Frame(frame) => match frame.body()? {
                Body::Challenge(challenge) if frame.header.to == peer => {
                    Ok((client, Some(challenge)))
                }
                other => bail!("expected a CHALLENGE to {peer} first, got {other:?}"),
            },
            Event::Closed(code) => {
                client.pending_close = Some(code);
                Ok((client, None))
            }
        }
    }

    /// Connects `peer` to `room` asking for the key challenge in the upgrade's answer
    /// (`remote-agents-challenge: header`): the client, and the answer's challenge header
    /// decoded as a frame (`None` when the answer had none). The proof is left to the caller.
    pub async fn connect_with_header_challenge(
        &self,
        room: &RoomId,
        peer: PeerId,
    ) -> anyhow::Result<(RelayClient, Option<Frame>)> {
        let mut request =
            self.request(&connect_path(room, &peer), self.limits.relay_key.as_deref())?;
        request
            .headers_mut()
            .insert(frame::CHALLENGE_HEADER, frame::CHALLENGE_IN_HEADER.parse()?);
        let (websocket, response) =
            tokio::time::timeout(EVENT_DEADLINE, tokio_tungstenite::connect_async(request))
                .await
                .context("connect deadline")??;
        let challenge = match response.headers().get(frame::CHALLENGE_HEADER) {
            Some(value) => Some(Frame::decode(Bytes::from(hex::decode(value.to_str()?)?))?),
            None => None,
        };
        let client = RelayClient {
            peer,
            websocket,
            pending_close: None,
            presence: std::collections::VecDeque::new(),
        };
        Ok((client, challenge))
    }

    /// Connects to an arbitrary path (for malformed-id tests) with an explicit key; the key
    /// proof is left to the caller.
    pub async fn connect_path(
        &self,
        path: &str,
        peer: PeerId,
        key: Option<&str>,
    ) -> anyhow::Result<RelayClient> {
        let request = self.request(path, key)?;
        // Small read buffers: some tests open thousands of connections.
        let config = WebSocketConfig::default()
            .read_buffer_size(8192)
            .max_message_size(Some(64 << 20));
        let (websocket, _) = tokio::time::timeout(
            EVENT_DEADLINE,
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await
        .context("connect deadline")??;
        Ok(RelayClient {
            peer,
            websocket,
            pending_close: None,
            presence: std::collections::VecDeque::new(),
        })
    }

    /// The HTTP status of a connection attempt that the relay refuses before the upgrade.
    pub async fn refused_status(
        &self,
        room: &RoomId,
        peer: PeerId,
        key: Option<&str>,
    ) -> anyhow::Result<u16> {
        let request = self.request(&connect_path(room, &peer), key)?;
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => bail!("the relay accepted the connection"),
            Err(tungstenite::Error::Http(response)) => Ok(response.status().as_u16()),
            Err(error) => Err(error.into()),
        }
    }

    /// Opens a raw TCP connection and performs the upgrade by hand, so the test controls every
    /// byte afterwards (e.g. never answering pings).
    pub async fn connect_raw(&self, room: &RoomId, peer: PeerId) -> anyhow::Result<RawSocket> {
        let address = self.socket_address()?;
        let mut stream = TcpStream::connect(&address).await?;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            connect_path(room, &peer)
        );
        if let Some(key) = &self.limits.relay_key {
            request.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(EVENT_DEADLINE, stream.read_u8())
                .await
                .context("upgrade response deadline")??;
            head.push(byte);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            bail!("upgrade refused: {}", String::from_utf8_lossy(&head));
        }
        let mut socket = RawSocket { stream };
        // Prove the key by hand too: the relay's first frame is the CHALLENGE.
        let challenge = loop {
            let frame = socket
                .read_frame(EVENT_DEADLINE)
                .await?
                .context("the relay closed before its challenge")?;
            if frame.opcode == 0x2 {
                break Frame::decode(Bytes::from(frame.payload))?;
            }
            if frame.opcode == 0x8 {
                bail!("the relay closed before its challenge");
            }
        };
        let Body::Challenge(challenge) = challenge.body()? else {
            bail!("expected a CHALLENGE first, got {challenge:?}");
        };
        let proof = key_proof::prove(&keypair_of(&peer)?, room, &challenge)?;
        socket
            .write_binary(&Frame::proof(peer, proof).encode())
            .await?;
        Ok(socket)
    }
}

fn dechunk(body: &str) -> String {
    // Enough of chunked decoding for small bodies: drop size lines, keep data lines.
    if body.starts_with(|c: char| c.is_ascii_hexdigit()) && body.contains("\r\n") {
        let mut out = String::new();
        let mut lines = body.split("\r\n");
        while let Some(size) = lines.next() {
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                return body.to_owned();
            };
            if size == 0 {
                break;
            }
            out.push_str(lines.next().unwrap_or(""));
        }
        return out;
    }
    body.to_owned()
}

/// A random room id, so every test has a room of its own on a shared relay.
pub fn random_room() -> RoomId {
    frame::room_id_from_name(&format!("conformance-{}", uuid::Uuid::new_v4()))
}

/// The keys behind the peer ids [`random_peer`] handed out, so `connect` can prove them.
static PEER_KEYS: LazyLock<Mutex<HashMap<PeerId, StaticKeypair>>> = LazyLock::new(Default::default);

/// A fresh peer identity: a new static key, remembered so [`TestRelay::connect`] can prove it,
/// and its peer id.
pub fn random_peer() -> PeerId {
    let keypair = StaticKeypair::generate().expect("x25519 key generation");
    let peer = keypair.peer_id();
    PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(peer, keypair);
    peer
}

/// The key of a peer id made by [`random_peer`].
pub fn keypair_of(peer: &PeerId) -> anyhow::Result<StaticKeypair> {
    PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .get(peer)
        .cloned()
        .with_context(|| format!("peer {peer} was not made by random_peer, so its key is unknown"))
}

/// What a client saw next.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// The relay closed the WebSocket, with this close code if it sent one.
    Closed(Option<u16>),
}

/// Whether `frame` is a batch of presence changes (not a snapshot page answering a request).
fn is_presence_batch(frame: &Frame) -> bool {
    frame.header.kind == FrameKind::Presence
        && frame
            .body()
            .is_ok_and(|body| matches!(body, Body::Presence(page) if !page.snapshot))
}

/// One peer connected to the relay, speaking frames.
pub struct RelayClient {
    pub peer: PeerId,
    websocket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// A close the relay sent while `connect` waited for the challenge, reported next.
    pending_close: Option<Option<u16>>,
    /// Presence changes of the batches received so far and not yet read (`recv_join`,
    /// `recv_leave`): `recv` sets batches aside, since they come whenever the relay flushes.
    presence: std::collections::VecDeque<PresenceChange>,
}

impl RelayClient {
    pub async fn send(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.send_bytes(frame.encode()).await
    }

    pub async fn send_bytes(&mut self, bytes: Bytes) -> anyhow::Result<()> {
        self.websocket.send(Message::Binary(bytes)).await?;
        Ok(())
    }

    /// Queues without flushing; pair with [`RelayClient::flush`] to send a burst.
    pub async fn feed_bytes(&mut self, bytes: Bytes) -> anyhow::Result<()> {
        self.websocket.feed(Message::Binary(bytes)).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.websocket.flush().await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.websocket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// `DATA` to `to` (with `from` set honestly).
    pub async fn send_data(&mut self, to: PeerId, id: u64, body: &[u8]) -> anyhow::Result<()> {
        let header = Header::new(FrameKind::Data, self.peer, to, id);
        self.send(&Frame::new(header, Bytes::copy_from_slice(body)))
            .await
    }

    /// `BROADCAST` to the room.
    pub async fn send_broadcast(&mut self, id: u64, body: &[u8]) -> anyhow::Result<()> {
        let header = Header::new(FrameKind::Broadcast, self.peer, PeerId::ZERO, id);
        self.send(&Frame::new(header, Bytes::copy_from_slice(body)))
            .await
    }

    /// The next frame or close within `within`; pings and pongs are skipped (and answered).
    pub async fn next_event_within(&mut self, within: Duration) -> anyhow::Result<Event> {
        if let Some(code) = self.pending_close.take() {
            return Ok(Event::Closed(code));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.websocket.next())
                .await
                .with_context(|| format!("no frame from the relay within {within:?}"))?;
            match next {
                Some(Ok(Message::Binary(bytes))) => {
                    return Ok(Event::Frame(
                        Frame::decode(bytes).context("the relay sent a malformed frame")?,
                    ));
                }
                Some(Ok(Message::Close(close))) => {
                    return Ok(Event::Closed(close.map(|close| close.code.into())));
                }
                Some(Ok(Message::Text(text))) => bail!("the relay sent a text message: {text}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Event::Closed(None)),
            }
        }
    }

    pub async fn next_event(&mut self) -> anyhow::Result<Event> {
        self.next_event_within(EVENT_DEADLINE).await
    }

    /// The next frame that is not a presence batch (those are set aside for `recv_join` and
    /// `recv_leave`); fails if the connection closes first.
    pub async fn recv(&mut self) -> anyhow::Result<Frame> {
        loop {
            match self.next_event().await? {
                Event::Frame(frame) if is_presence_batch(&frame) => {
                    let Body::Presence(page) = frame.body()? else {
                        bail!("bad PRESENCE body");
                    };
                    self.presence.extend(page.changes);
                }
                Event::Frame(frame) => return Ok(frame),
                Event::Closed(code) => bail!("the relay closed the connection (code {code:?})"),
            }
        }
    }

    /// The next presence change about another peer, reading batches as needed (a subscriber's
    /// own join may come in a batch too; it is skipped).
    pub async fn recv_change(&mut self) -> anyhow::Result<PresenceChange> {
        loop {
            while let Some(change) = self.presence.pop_front() {
                let (PresenceChange::Joined(peer) | PresenceChange::Left(peer)) = change;
                if peer != self.peer {
                    return Ok(change);
                }
            }
            match self.next_event().await? {
                Event::Frame(frame) if is_presence_batch(&frame) => {
                    let Body::Presence(page) = frame.body()? else {
                        bail!("bad PRESENCE body");
                    };
                    self.presence.extend(page.changes);
                }
                Event::Frame(frame) => bail!("expected a PRESENCE batch, got {frame:?}"),
                Event::Closed(code) => bail!("the relay closed the connection (code {code:?})"),
            }
        }
    }

    /// The next change, which must be a join: the peer that joined.
    pub async fn recv_join(&mut self) -> anyhow::Result<PeerId> {
        match self.recv_change().await? {
            PresenceChange::Joined(peer) => Ok(peer),
            other => bail!("expected a join, got {other:?}"),
        }
    }

    /// The next change, which must be a leave: the peer that left.
    pub async fn recv_leave(&mut self) -> anyhow::Result<PeerId> {
        match self.recv_change().await? {
            PresenceChange::Left(peer) => Ok(peer),
            other => bail!("expected a leave, got {other:?}"),
        }
    }

    /// Takes the presence changes received and not read yet, in order (none read from the
    /// socket by this call): after [`RelayClient::recv`], those that came before its frame.
    pub fn take_changes(&mut self) -> Vec<PresenceChange> {
        self.presence.drain(..).collect()
    }

    /// Presence changes received and not read yet (none read from the socket by this call).
    pub fn unread_changes(&self) -> usize {
        self.presence.len()
    }

    /// The next frame, which must be of `kind`.
    pub async fn recv_kind(&mut self, kind: FrameKind) -> anyhow::Result<Frame> {
        let frame = self.recv().await?;
        if frame.header.kind != kind {
            bail!("expected {kind}, got {:?}", frame);
        }
        Ok(frame)
    }

    /// Reads the `WELCOME` only (a headless peer, which does not follow presence) and returns
    /// how many other peers it says are present.
    pub async fn welcome_count(&mut self) -> anyhow::Result<u32> {
        let frame = self.recv_kind(FrameKind::Welcome).await?;
        if frame.header.to != self.peer {
            bail!(
                "WELCOME addressed to {} instead of {}",
                frame.header.to,
                self.peer
            );
        }
        match frame.body()? {
            Body::Welcome { present } => Ok(present),
            other => bail!("WELCOME with body {other:?}"),
        }
    }

    /// Reads the `WELCOME`, then subscribes to the room's presence and reads its snapshot page
    /// by page (`PRESENCE_GET`); returns the peers present, as a peer that follows presence
    /// (fleetctl, an MCP node) sees them. Their number is the WELCOME's count.
    pub async fn welcome(&mut self) -> anyhow::Result<Vec<PeerId>> {
        self.welcome_count().await?;
        self.snapshot(true).await
    }

    /// Reads the room's presence page by page without subscribing.
    pub async fn welcome_snapshot_unsubscribed(&mut self) -> anyhow::Result<Vec<PeerId>> {
        self.snapshot(false).await
    }

    /// Skips frames until the relay closes; returns the close code and reason.
    pub async fn closed_with_reason(&mut self) -> anyhow::Result<(Option<u16>, String)> {
        loop {
            let next = tokio::time::timeout(EVENT_DEADLINE, self.websocket.next())
                .await
                .context("no close from the relay")?;
            match next {
                Some(Ok(Message::Close(close))) => {
                    return Ok(close
                        .map(|close| (Some(close.code.into()), close.reason.to_string()))
                        .unwrap_or((None, String::new())));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok((None, String::new())),
            }
        }
    }

    /// Reads the room's presence page by page; `subscribe` on the first request.
    pub async fn snapshot(&mut self, subscribe: bool) -> anyhow::Result<Vec<PeerId>> {
        let mut peers = Vec::new();
        let mut after = PeerId::ZERO;
        for request in 1u64.. {
            let id = 0x5eed_0000 + request;
            self.send(&Frame::presence_get(id, subscribe, after))
                .await?;
            let frame = self.recv_kind(FrameKind::Presence).await?;
            let Body::Presence(page) = frame.body()? else {
                bail!("bad PRESENCE body");
            };
            if frame.header.id != id || !page.snapshot || frame.header.to != self.peer {
                bail!(
                    "expected snapshot page {id} for {}, got {frame:?}",
                    self.peer
                );
            }
            for change in page.changes {
                match change {
                    PresenceChange::Joined(peer) => {
                        if peer <= after {
                            bail!("snapshot page out of order: {peer} after {after}");
                        }
                        after = peer;
                        peers.push(peer);
                    }
                    PresenceChange::Left(peer) => bail!("a snapshot lists {peer} as left"),
                }
            }
            if !page.more {
                break;
            }
        }
        Ok(peers)
    }

    /// Reads the next frame, which must be `ERROR`: its id and code.
    pub async fn recv_error(&mut self) -> anyhow::Result<(u64, u16, String)> {
        let frame = self.recv_kind(FrameKind::Error).await?;
        match frame.body()? {
            Body::Error { code, message } => Ok((frame.header.id, code, message)),
            other => bail!("ERROR with body {other:?}"),
        }
    }

    /// Skips frames until the relay closes; returns the close code.
    pub async fn closed(&mut self) -> anyhow::Result<Option<u16>> {
        loop {
            if let Event::Closed(code) = self.next_event().await? {
                return Ok(code);
            }
        }
    }

    /// Closes politely.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.websocket.close(None).await?;
        // Drain until the relay answers the close, so the LEAVE is already under way.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(EVENT_DEADLINE, self.websocket.next()).await
        {}
        Ok(())
    }
}

/// A WebSocket the test reads by hand: it never answers pings (tungstenite always would).
pub struct RawSocket {
    stream: TcpStream,
}

/// One WebSocket frame read by [`RawSocket`].
#[derive(Debug)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawSocket {
    /// Reads the next server frame (unmasked, as servers send them) within `within`.
    pub async fn read_frame(&mut self, within: Duration) -> anyhow::Result<Option<RawFrame>> {
        let read = async {
            let mut head = [0u8; 2];
            if self.stream.read_exact(&mut head).await.is_err() {
                return Ok::<_, anyhow::Error>(None);
            }
            let opcode = head[0] & 0x0f;
            let length = match head[1] & 0x7f {
                126 => self.stream.read_u16().await? as usize,
                127 => self.stream.read_u64().await? as usize,
                short => short as usize,
            };
            let mut payload = vec![0u8; length];
            self.stream.read_exact(&mut payload).await?;
            Ok(Some(RawFrame { opcode, payload }))
        };
        tokio::time::timeout(within, read)
            .await
            .with_context(|| format!("no websocket frame within {within:?}"))?
    }

    /// Reads frames (ignoring data and pings) until a close frame; returns its code.
    pub async fn close_code(&mut self, within: Duration) -> anyhow::Result<Option<u16>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await? {
                None => return Ok(None),
                Some(frame) if frame.opcode == 0x8 => {
                    return Ok(frame
                        .payload
                        .get(..2)
                        .map(|code| u16::from_be_bytes([code[0], code[1]])));
                }
                Some(_) => continue,
            }
        }
    }

    /// Writes one binary WebSocket frame, masked as clients must (with an all-zero mask).
    pub async fn write_binary(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut head = vec![0x82u8];
        match payload.len() {
            length @ 0..=125 => head.push(0x80 | length as u8),
            length @ 126..=0xffff => {
                head.push(0x80 | 126);
                head.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                head.push(0x80 | 127);
                head.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        head.extend_from_slice(&[0; 4]);
        self.stream.write_all(&head).await?;
        self.stream.write_all(payload).await?;
        Ok(())
    }

    pub fn local_address(&self) -> std::io::Result<SocketAddr> {
        self.stream.local_addr()
    }
}

/// The `remote-agents-relay` binary: `REMOTE_AGENTS_RELAY_BIN`, or the one cargo built next to
/// this test binary (built on demand when missing).
pub fn relay_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(path) = std::env::var("REMOTE_AGENTS_RELAY_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash> → target/<profile>/remote-agents-relay
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .context("test binary has no target dir")?;
    let binary = profile_dir.join("remote-agents-relay");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "remote-agents-relay",
                "--bin",
                "remote-agents-relay",
            ])
            .status()?;
        if !status.success() {
            bail!("cargo build of remote-agents-relay failed");
        }
    }
    Ok(binary)
}

/// The relay binary running as its own process on 127.0.0.1:0.
pub struct RelayProcess {
    pub child: tokio::process::Child,
    pub address: SocketAddr,
    /// Everything the relay wrote to stderr so far is collected here by a background task.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl RelayProcess {
    /// Starts `remote-agents-relay --bind 127.0.0.1:0 ARGS` and waits for its readiness line.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(relay_binary()?)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start remote-agents-relay")?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        tokio::spawn({
            let collected = collected.clone();
            async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut text = collected
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let address = loop {
            let line = tokio::time::timeout(EVENT_DEADLINE, lines.next_line())
                .await
                .context("relay readiness line deadline")??
                .context("relay exited before printing its address")?;
            if let Some(address) = line.strip_prefix("listening on ") {
                break address.trim().parse()?;
            }
        };
        Ok(RelayProcess {
            child,
            address,
            stderr: collected,
        })
    }

    /// A [`TestRelay`] handle that talks to this process (limits as given to `start`).
    pub fn handle(&self, limits: RelayLimits) -> TestRelay {
        TestRelay {
            url: format!("ws://{}", self.address),
            limits,
            external: true,
            _stop: None,
        }
    }

    /// What the relay logged so far.
    pub fn logs(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

impl RelayLimits {
    /// The limits of a relay started with defaults.
    pub fn defaults() -> Self {
        RelayLimits::from_config(&RelayConfig::default())
    }
}
