//! The secure sessions between this peer and every other peer of the room: Noise
//! `Noise_IKpsk2_25519_AESGCM_SHA256` handshakes, AES-256-GCM transport with counter nonces and
//! the frame header as associated data, a replay window, rekeying and restarts. Sans-IO: frames
//! in, frames and events out; the caller supplies the clock.
//!
//! # Construction
//!
//! * **Handshake**: `snow` runs `Noise_IKpsk2_25519_AESGCM_SHA256` (ring's AES-GCM and SHA-256,
//!   curve25519-dalek for X25519). The initiator knows the responder's static key; the room PSK is
//!   mixed in at the end of the second message, so a handshake only completes between two holders
//!   of the room key, and every session has fresh ephemeral keys (forward secrecy). Handshake
//!   payloads carry the announcement (name, tags, facts, ...) encrypted; the first one also carries
//!   a strictly increasing timestamp, so a replayed first message is refused (as in WireGuard).
//! * **Transport**: snow 0.10's transport states take no associated data, so after the handshake
//!   we take Noise's `Split()` keys (`risky-raw-split`) and run the Noise AESGCM cipher ourselves
//!   with ring: `ENCRYPT(k, n, ad, plaintext)` with the 96-bit nonce `0x00000000 || n` (big
//!   endian, Noise's AESGCM encoding). The counter `n` is explicit: it is the frame header's `id`
//!   (Noise §11.4, "out-of-order transport messages"), so frames may arrive out of order. The
//!   associated data is the whole 42-byte frame header plus the 5-byte session prefix of the body,
//!   so flipping any header bit (version, kind, from, to, id) or re-routing a frame to another
//!   peer makes it fail authentication. One key never encrypts under a random nonce.
//! * **Replay window**: 4,032 counters wide (RFC 6479 style bitmap); duplicates and counters older
//!   than the window are rejected before decryption, and a counter is only marked after the frame
//!   authenticated, so forgeries cannot poison the window.
//! * **Rekey**: after `rekey_after_messages` frames or `rekey_after` time a fresh handshake runs
//!   (new ephemeral keys, not Noise's in-place REKEY, so rekeying also renews forward secrecy).
//!   The old session keeps receiving until the new one is confirmed and then for one more period
//!   as `previous`; sessions older than `reject_after` are never used.
//! * **Who initiates**: always the peer with the lower peer id, so two peers never race. The
//!   higher peer asks for a handshake with a `Hello` that carries its static public key (the
//!   peer id is only a hash of it): on presence, when it has something to send without a session,
//!   and when it wants a rekey. A `Hello` is only a hint: its key must hash to the sender's id and
//!   a forged one cannot complete a handshake without the room key.
//! * **Confirmation**: the responder keeps its new session pending until the first transport frame
//!   under it authenticates (the initiator sends an empty one right away), so a replayed first
//!   message never displaces a working session.
//! * **Restarts**: both handshake payloads carry the sender's random incarnation number. When a
//!   new session comes from a different incarnation, the old sessions are dropped at once (not
//!   kept as `previous`), so nothing sealed before a peer restarted is accepted afterwards; the
//!   restarted side itself has fresh session indexes and knows none of the old ones.
//!
//! # Body layout (inside a `DATA` frame, after the 42-byte header)
//!
//! | type | body |
//! |-----:|------|
//! | 1 Hello | `flags:u8` (bit 0: please reply with your own Hello), `static_public_key:[u8;32]` |
//! | 2 Initiation | `sender_index:u32`, Noise message 1 (payload: `timestamp:u64`, `incarnation:u64`, announcement) |
//! | 3 Response | `sender_index:u32`, `receiver_index:u32`, Noise message 2 (payload: `incarnation:u64`, announcement) |
//! | 4 Transport | `receiver_index:u32`, AES-256-GCM ciphertext + 16-byte tag; nonce = header `id` |

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::frame::{FrameKind, Header, MAX_FRAME_DEFAULT};
pub use crate::frame::{HEADER_LEN, PeerId, peer_id_from_public_key};
use crate::psk::Psk;

/// The Noise protocol name used for every handshake.
pub const NOISE_PARAMS: &str = "Noise_IKpsk2_25519_AESGCM_SHA256";
/// Overhead of a transport frame: header, body type, receiver index and tag.
pub const TRANSPORT_OVERHEAD: usize = HEADER_LEN + 5 + 16;
/// The largest plaintext that fits in one transport frame under the default cap.
pub const MAX_PLAINTEXT: usize = MAX_FRAME_DEFAULT - TRANSPORT_OVERHEAD;

const PROLOGUE: &[u8] = b"remote-agents session v1";

const TYPE_HELLO: u8 = 1;
const TYPE_INITIATION: u8 = 2;
const TYPE_RESPONSE: u8 = 3;
const TYPE_TRANSPORT: u8 = 4;
const HELLO_PLEASE_REPLY: u8 = 1;

const WINDOW_WORDS: usize = 64;
/// Counters older than this (relative to the highest seen) are rejected as too old.
pub const REPLAY_WINDOW: u64 = ((WINDOW_WORDS - 1) * 64) as u64;

/// A static X25519 keypair. `Debug` never prints the private half.
#[derive(Clone)]
pub struct StaticKeypair {
    pub private: [u8; 32],
    pub public: [u8; 32],
}

impl StaticKeypair {
    /// Generates a fresh keypair from the operating system's random source.
    pub fn generate() -> Result<Self, SessionError> {
        let builder = snow::Builder::new(noise_params());
        let keypair = builder.generate_keypair().map_err(noise_error)?;
        Self::from_private(&keypair.private)
    }

    /// Rebuilds a keypair from its 32 private bytes (the public half is derived).
    pub fn from_private(private: &[u8]) -> Result<Self, SessionError> {
        use snow::resolvers::CryptoResolver;
        let private: [u8; 32] = private
            .try_into()
            .map_err(|_| SessionError::Noise("static private key must be 32 bytes".into()))?;
        let mut dh = snow::resolvers::DefaultResolver
            .resolve_dh(&snow::params::DHChoice::Curve25519)
            .ok_or_else(|| SessionError::Noise("no x25519 implementation".into()))?;
        dh.set(&private);
        let public: [u8; 32] = dh
            .pubkey()
            .try_into()
            .map_err(|_| SessionError::Noise("x25519 public key length".into()))?;
        Ok(Self { private, public })
    }

    pub fn peer_id(&self) -> PeerId {
        peer_id_from_public_key(&self.public)
    }
}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StaticKeypair")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

fn noise_params() -> snow::params::NoiseParams {
    NOISE_PARAMS
        .parse()
        .expect("the constant noise protocol name parses")
}

fn noise_error(error: impl std::fmt::Display) -> SessionError {
    SessionError::Noise(error.to_string())
}

/// Tunables; the defaults follow WireGuard's timers.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Start a new handshake after this many frames sent under one session.
    pub rekey_after_messages: u64,
    /// Start a new handshake once a session is this old.
    pub rekey_after: Duration,
    /// Never send or accept under a session older than this.
    pub reject_after: Duration,
    /// Resend a Hello or Initiation when no answer came within this time.
    pub handshake_retry: Duration,
    /// Give up (and drop queued messages) after this many tries.
    pub handshake_attempts: u32,
    /// Messages held per peer while its handshake runs.
    pub max_queued_per_peer: usize,
    /// Start a handshake with every peer as soon as the relay says it is present. Peers that
    /// need to see the whole room (fleetctl, MCP nodes: `list_agents`, fan-out) are eager; nodes
    /// that only answer requests are lazy and handshake when an eager peer reaches out or when
    /// they first send to a peer, so a room of N answering nodes costs N handshakes per eager
    /// peer instead of N² in all.
    pub eager_handshakes: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            rekey_after_messages: 1 << 40,
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            handshake_retry: Duration::from_secs(2),
            handshake_attempts: 5,
            max_queued_per_peer: 1024,
            eager_handshakes: true,
        }
    }
}

/// Why an incoming frame was rejected. Every rejection is safe to count and log: none carries
/// payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("frame addressed to another peer")]
    NotForUs,
    #[error("no session with that index")]
    UnknownSession,
    #[error("frame sender does not match the session's peer")]
    PeerMismatch,
    #[error("replayed or too old counter")]
    Replay,
    #[error("authentication failed")]
    Authentication,
    #[error("session expired")]
    Expired,
    #[error("handshake rejected: {0}")]
    Handshake(String),
    #[error("stale handshake timestamp (replayed initiation)")]
    StaleHandshake,
}

/// Errors of local operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("noise: {0}")]
    Noise(String),
    #[error("plaintext of {0} bytes exceeds one frame; chunk it")]
    TooLarge(usize),
    #[error("queue for peer {0} is full")]
    QueueFull(String),
    #[error("cannot send to ourselves")]
    SelfPeer,
}

/// Something the caller should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session with `peer` is usable. `announcement` is what the peer sent in its handshake.
    Established {
        peer: PeerId,
        remote_static: [u8; 32],
        announcement: Vec<u8>,
    },
    /// The handshake with `peer` failed for good; `dropped` queued messages were discarded.
    HandshakeFailed { peer: PeerId, dropped: usize },
}

/// A frame to hand to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: PeerId,
    pub frame: Vec<u8>,
}

struct Transport {
    local_index: u32,
    remote_index: u32,
    send_key: LessSafeKey,
    receive_key: LessSafeKey,
    send_counter: u64,
    window: ReplayWindow,
    created: Instant,
    rekey_requested: bool,
}

struct PendingInitiation {
    handshake: snow::HandshakeState,
    local_index: u32,
}

struct PendingResponse {
    transport: Transport,
    remote_static: [u8; 32],
    announcement: Vec<u8>,
    incarnation: u64,
}

#[derive(Default)]
struct Attempt {
    started: Option<Instant>,
    last_try: Option<Instant>,
    tries: u32,
}

#[derive(Default)]
struct Peer {
    remote_static: Option<[u8; 32]>,
    current: Option<Transport>,
    previous: Option<Transport>,
    initiation: Option<PendingInitiation>,
    response: Option<PendingResponse>,
    last_initiation_timestamp: u64,
    /// The peer's process incarnation of its current session; a new one means it restarted.
    incarnation: Option<u64>,
    queue: VecDeque<Vec<u8>>,
    attempt: Attempt,
}

/// All sessions of one local peer.
pub struct Sessions {
    keypair: StaticKeypair,
    local_id: PeerId,
    psk: Psk,
    config: SessionConfig,
    announcement: Vec<u8>,
    peers: HashMap<PeerId, Peer>,
    indexes: HashMap<u32, PeerId>,
    outbox: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    rng: ring::rand::SystemRandom,
    clock_origin: Instant,
    clock_origin_unix_nanos: u64,
    last_timestamp: u64,
    handshake_frame_id: u64,
    incarnation: u64,
    /// Peers whose `attempt.started` is set: `next_timeout` runs on every turn of the node's
    /// event loop, and with a thousand established peers and none pending it must not scan them.
    attempts_in_progress: usize,
    /// Test-only: randomness the vectors fix so a whole handshake is reproducible byte for byte.
    #[cfg(test)]
    fixed: FixedRandomness,
}

/// Test-only (`session::vectors`): ephemeral keys and session indexes to use, in order, instead
/// of fresh random ones; empty queues draw randomness as in production.
#[cfg(test)]
#[derive(Default)]
struct FixedRandomness {
    ephemerals: VecDeque<[u8; 32]>,
    indexes: VecDeque<u32>,
}

impl Sessions {
    /// `now` and `unix_nanos` are the same moment on the monotonic and the wall clock; the
    /// wall clock only seeds the handshake timestamps, which then advance monotonically.
    pub fn new(
        keypair: StaticKeypair,
        psk: Psk,
        announcement: Vec<u8>,
        config: SessionConfig,
        now: Instant,
        unix_nanos: u64,
    ) -> Self {
        let local_id = keypair.peer_id();
        Self {
            keypair,
            local_id,
            psk,
            config,
            announcement,
            peers: HashMap::new(),
            indexes: HashMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            rng: ring::rand::SystemRandom::new(),
            clock_origin: now,
            clock_origin_unix_nanos: unix_nanos,
            last_timestamp: 0,
            handshake_frame_id: 0,
            attempts_in_progress: 0,
            #[cfg(test)]
            fixed: FixedRandomness::default(),
            incarnation: {
                use ring::rand::SecureRandom;
                let mut bytes = [0u8; 8];
                ring::rand::SystemRandom::new()
                    .fill(&mut bytes)
                    .expect("the system random source works");
                u64::from_be_bytes(bytes)
            },
        }
    }

    pub fn local_id(&self) -> PeerId {
        self.local_id
    }

    /// Replaces what later handshakes announce (already established peers keep the old one
    /// until the next rekey; send an explicit message for immediate updates).
    pub fn set_announcement(&mut self, announcement: Vec<u8>) {
        self.announcement = announcement;
    }

    /// Whether a confirmed session with `peer` exists.
    pub fn is_established(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers
            .get(peer)
            .and_then(|state| state.current.as_ref())
            .is_some_and(|transport| {
                now.duration_since(transport.created) < self.config.reject_after
            })
    }

    /// Next frame to send to the relay.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The relay told us `peer` is in the room (WELCOME or JOIN).
    pub fn peer_present(&mut self, peer: PeerId, now: Instant) {
        if peer == self.local_id || self.is_established(&peer, now) {
            return;
        }
        self.peers.entry(peer).or_default();
        if self.config.eager_handshakes {
            self.request_handshake(peer, now, false);
        }
    }

    /// Starts a handshake with a present `peer` now, even without eager handshakes (a node that
    /// is about to address the whole room needs to know who is in it). No-op when established.
    pub fn meet(&mut self, peer: PeerId, now: Instant) {
        if peer == self.local_id || self.is_established(&peer, now) {
            return;
        }
        self.request_handshake(peer, now, true);
    }

    /// The relay told us `peer` left: its sessions and queue go (the static key stays cached, and
    /// so does its last handshake timestamp, which keeps refusing replayed initiations).
    /// Returns how many queued messages were dropped.
    pub fn peer_left(&mut self, peer: &PeerId) -> usize {
        let Some(state) = self.peers.get_mut(peer) else {
            return 0;
        };
        let dropped = state.queue.len();
        if Self::clear_peer(state, &mut self.indexes) {
            self.attempts_in_progress -= 1;
        }
        dropped
    }

    /// The relay connection was lost: every session and queue goes; peers re-handshake when the
    /// relay reports them present again.
    pub fn reset(&mut self) {
        for state in self.peers.values_mut() {
            Self::clear_peer(state, &mut self.indexes);
        }
        self.attempts_in_progress = 0;
        self.outbox.clear();
    }

    /// Returns whether a handshake attempt was in progress.
    fn clear_peer(state: &mut Peer, indexes: &mut HashMap<u32, PeerId>) -> bool {
        for index in [
            state.current.as_ref().map(|t| t.local_index),
            state.previous.as_ref().map(|t| t.local_index),
            state.initiation.as_ref().map(|p| p.local_index),
            state.response.as_ref().map(|p| p.transport.local_index),
        ]
        .into_iter()
        .flatten()
        {
            indexes.remove(&index);
        }
        state.current = None;
        state.previous = None;
        state.initiation = None;
        state.response = None;
        state.queue.clear();
        std::mem::take(&mut state.attempt).started.is_some()
    }

    /// Encrypts `plaintext` for `peer`, or queues it until a handshake completes.
    pub fn send(
        &mut self,
        peer: PeerId,
        plaintext: &[u8],
        now: Instant,
    ) -> Result<(), SessionError> {
        if peer == self.local_id {
            return Err(SessionError::SelfPeer);
        }
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SessionError::TooLarge(plaintext.len()));
        }
        if self.is_established(&peer, now) {
            self.seal_to(peer, plaintext, now);
            return Ok(());
        }
        let limit = self.config.max_queued_per_peer;
        let state = self.peers.entry(peer).or_default();
        if state.queue.len() >= limit {
            return Err(SessionError::QueueFull(peer.to_hex()));
        }
        state.queue.push_back(plaintext.to_vec());
        self.request_handshake(peer, now, true);
        Ok(())
    }

    fn seal_to(&mut self, peer: PeerId, plaintext: &[u8], now: Instant) {
        let local_id = self.local_id;
        let config = self.config.clone();
        let Some(transport) = self
            .peers
            .get_mut(&peer)
            .and_then(|state| state.current.as_mut())
        else {
            return;
        };
        let frame = seal(local_id, peer, transport, plaintext);
        let wants_rekey = !transport.rekey_requested
            && (transport.send_counter >= config.rekey_after_messages
                || now.duration_since(transport.created) >= config.rekey_after);
        if wants_rekey {
            transport.rekey_requested = true;
        }
        self.outbox.push_back(Outgoing { to: peer, frame });
        if wants_rekey {
            self.request_handshake(peer, now, false);
        }
    }

    /// Starts (or nudges) a handshake with `peer` according to the lower-id-initiates rule.
    fn request_handshake(&mut self, peer: PeerId, now: Instant, please_reply: bool) {
        let retry = self.config.handshake_retry;
        let local_id = self.local_id;
        let state = self.peers.entry(peer).or_default();
        if let Some(last) = state.attempt.last_try
            && now.duration_since(last) < retry
        {
            return;
        }
        if state.attempt.started.is_none() {
            state.attempt.started = Some(now);
            self.attempts_in_progress += 1;
        }
        state.attempt.last_try = Some(now);
        state.attempt.tries += 1;
        if local_id < peer {
            if let Some(remote_static) = state.remote_static {
                self.initiate(peer, remote_static, now);
            }
            // Without its key (we restarted, or never met it) ask for its Hello.
            else {
                self.send_hello(peer, true);
            }
        } else {
            self.send_hello(peer, please_reply);
        }
    }

    fn next_handshake_frame_id(&mut self) -> u64 {
        self.handshake_frame_id = self.handshake_frame_id.wrapping_add(1);
        self.handshake_frame_id
    }

    fn send_hello(&mut self, peer: PeerId, please_reply: bool) {
        let mut body = Vec::with_capacity(34);
        body.push(TYPE_HELLO);
        body.push(if please_reply { HELLO_PLEASE_REPLY } else { 0 });
        body.extend_from_slice(&self.keypair.public);
        let id = self.next_handshake_frame_id();
        let frame = build_frame(self.local_id, peer, id, &body);
        self.outbox.push_back(Outgoing { to: peer, frame });
    }

    fn fresh_index(&mut self, peer: PeerId) -> u32 {
        use ring::rand::SecureRandom;
        #[cfg(test)]
        if let Some(index) = self.fixed.indexes.pop_front() {
            self.indexes.insert(index, peer);
            return index;
        }
        loop {
            let mut bytes = [0u8; 4];
            self.rng
                .fill(&mut bytes)
                .expect("the system random source works");
            let index = u32::from_be_bytes(bytes);
            if index != 0 && !self.indexes.contains_key(&index) {
                self.indexes.insert(index, peer);
                return index;
            }
        }
    }

    fn next_timestamp(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.clock_origin).as_nanos() as u64;
        let candidate = self.clock_origin_unix_nanos.saturating_add(elapsed);
        self.last_timestamp = candidate.max(self.last_timestamp + 1);
        self.last_timestamp
    }

    fn initiate(&mut self, peer: PeerId, remote_static: [u8; 32], now: Instant) {
        let timestamp = self.next_timestamp(now);
        let local_index = self.fresh_index(peer);
        #[cfg(test)]
        let fixed_ephemeral = self.fixed.ephemerals.pop_front();
        let result = (|| -> Result<(snow::HandshakeState, Vec<u8>), SessionError> {
            let builder = snow::Builder::new(noise_params());
            #[cfg(test)]
            let builder = match &fixed_ephemeral {
                Some(key) => builder.fixed_ephemeral_key_for_testing_only(key),
                None => builder,
            };
            let mut handshake = builder
                .prologue(PROLOGUE)
                .map_err(noise_error)?
                .local_private_key(&self.keypair.private)
                .map_err(noise_error)?
                .remote_public_key(&remote_static)
                .map_err(noise_error)?
                .psk(2, self.psk.as_bytes())
                .map_err(noise_error)?
                .build_initiator()
                .map_err(noise_error)?;
            let mut payload = Vec::with_capacity(16 + self.announcement.len());
            payload.extend_from_slice(&timestamp.to_be_bytes());
            payload.extend_from_slice(&self.incarnation.to_be_bytes());
            payload.extend_from_slice(&self.announcement);
            let mut message = vec![0u8; payload.len() + 256];
            let length = handshake
                .write_message(&payload, &mut message)
                .map_err(noise_error)?;
            message.truncate(length);
            Ok((handshake, message))
        })();
        let Ok((handshake, message)) = result else {
            self.indexes.remove(&local_index);
            return;
        };
        let mut body = Vec::with_capacity(5 + message.len());
        body.push(TYPE_INITIATION);
        body.extend_from_slice(&local_index.to_be_bytes());
        body.extend_from_slice(&message);
        let id = self.next_handshake_frame_id();
        let frame = build_frame(self.local_id, peer, id, &body);
        let state = self.peers.entry(peer).or_default();
        if let Some(old) = state.initiation.replace(PendingInitiation {
            handshake,
            local_index,
        }) {
            self.indexes.remove(&old.local_index);
        }
        self.outbox.push_back(Outgoing { to: peer, frame });
    }

    /// Handles one frame from the relay addressed to us (a `DATA` frame). Returns the decrypted
    /// application plaintext, if the frame carried one.
    pub fn receive(
        &mut self,
        frame: &[u8],
        now: Instant,
    ) -> Result<Option<(PeerId, Vec<u8>)>, Rejection> {
        if frame.len() < HEADER_LEN + 1 {
            return Err(Rejection::Malformed("short frame"));
        }
        let header = Header::decode(frame).map_err(|_| Rejection::Malformed("bad header"))?;
        if header.kind != FrameKind::Data {
            return Err(Rejection::Malformed("not a data frame"));
        }
        let (from, to) = (header.from, header.to);
        if to != self.local_id {
            return Err(Rejection::NotForUs);
        }
        if from == self.local_id {
            return Err(Rejection::PeerMismatch);
        }
        let body = &frame[HEADER_LEN..];
        match body[0] {
            TYPE_HELLO => self.receive_hello(from, body, now).map(|()| None),
            TYPE_INITIATION => self.receive_initiation(from, body, now).map(|()| None),
            TYPE_RESPONSE => self.receive_response(from, body, now).map(|()| None),
            TYPE_TRANSPORT => self.receive_transport(from, frame, now),
            _ => Err(Rejection::Malformed("unknown body type")),
        }
    }

    fn receive_hello(&mut self, from: PeerId, body: &[u8], now: Instant) -> Result<(), Rejection> {
        if body.len() != 34 {
            return Err(Rejection::Malformed("hello length"));
        }
        let please_reply = body[1] & HELLO_PLEASE_REPLY != 0;
        let remote_static: [u8; 32] = body[2..34].try_into().expect("32 bytes");
        if peer_id_from_public_key(&remote_static) != from {
            return Err(Rejection::PeerMismatch);
        }
        let local_id = self.local_id;
        let retry = self.config.handshake_retry;
        let state = self.peers.entry(from).or_default();
        state.remote_static = Some(remote_static);
        if local_id < from {
            // The peer asks for a (new) session: it restarted, lost its session or wants a rekey.
            // Answer at most once per retry period so replayed Hellos cannot cause a storm.
            let recently = state
                .attempt
                .last_try
                .is_some_and(|last| now.duration_since(last) < retry)
                && state.initiation.is_some();
            if !recently {
                state.attempt.last_try = Some(now);
                if state.attempt.started.is_none() {
                    state.attempt.started = Some(now);
                    self.attempts_in_progress += 1;
                }
                self.initiate(from, remote_static, now);
            }
        } else if please_reply {
            // The lower peer lacks our key or its session (it may have restarted while we still
            // hold the old one): answer with our Hello so it can initiate.
            self.request_handshake(from, now, false);
        }
        Ok(())
    }

    fn receive_initiation(
        &mut self,
        from: PeerId,
        body: &[u8],
        now: Instant,
    ) -> Result<(), Rejection> {
        if body.len() < 5 {
            return Err(Rejection::Malformed("initiation length"));
        }
        let remote_index = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes"));
        let message = &body[5..];
        let builder = snow::Builder::new(noise_params());
        #[cfg(test)]
        let fixed_ephemeral = self.fixed.ephemerals.pop_front();
        #[cfg(test)]
        let builder = match &fixed_ephemeral {
            Some(key) => builder.fixed_ephemeral_key_for_testing_only(key),
            None => builder,
        };
        let mut handshake = builder
            .prologue(PROLOGUE)
            .and_then(|builder| builder.local_private_key(&self.keypair.private))
            .and_then(|builder| builder.psk(2, self.psk.as_bytes()))
            .and_then(|builder| builder.build_responder())
            .map_err(|error| Rejection::Handshake(error.to_string()))?;
        let mut payload = vec![0u8; message.len()];
        let length = handshake
            .read_message(message, &mut payload)
            .map_err(|error| Rejection::Handshake(error.to_string()))?;
        payload.truncate(length);
        let remote_static: [u8; 32] = handshake
            .get_remote_static()
            .and_then(|key| key.try_into().ok())
            .ok_or(Rejection::Handshake("no remote static key".into()))?;
        if peer_id_from_public_key(&remote_static) != from {
            return Err(Rejection::PeerMismatch);
        }
        if payload.len() < 16 {
            return Err(Rejection::Malformed("initiation payload"));
        }
        let timestamp = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        let incarnation = u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes"));
        let announcement = payload[16..].to_vec();
        let local_id = self.local_id;
        {
            let state = self.peers.entry(from).or_default();
            if timestamp <= state.last_initiation_timestamp {
                return Err(Rejection::StaleHandshake);
            }
            // Both sides initiated at once (possible only around on-demand sends): the lower
            // id's initiation wins, so the higher side drops its own and answers.
            if state.initiation.is_some() && local_id < from {
                return Err(Rejection::Handshake(
                    "initiation collision, ours wins".into(),
                ));
            }
            state.last_initiation_timestamp = timestamp;
            state.remote_static = Some(remote_static);
        }
        let local_index = self.fresh_index(from);
        let mut response_payload = Vec::with_capacity(8 + self.announcement.len());
        response_payload.extend_from_slice(&self.incarnation.to_be_bytes());
        response_payload.extend_from_slice(&self.announcement);
        let mut message_out = vec![0u8; response_payload.len() + 256];
        let length = match handshake.write_message(&response_payload, &mut message_out) {
            Ok(length) => length,
            Err(error) => {
                self.indexes.remove(&local_index);
                return Err(Rejection::Handshake(error.to_string()));
            }
        };
        message_out.truncate(length);
        let (initiator_to_responder, responder_to_initiator) =
            handshake.dangerously_get_raw_split();
        let transport = Transport {
            local_index,
            remote_index,
            send_key: aead_key(&responder_to_initiator),
            receive_key: aead_key(&initiator_to_responder),
            send_counter: 0,
            window: ReplayWindow::default(),
            created: now,
            rekey_requested: false,
        };
        let mut body_out = Vec::with_capacity(9 + message_out.len());
        body_out.push(TYPE_RESPONSE);
        body_out.extend_from_slice(&local_index.to_be_bytes());
        body_out.extend_from_slice(&remote_index.to_be_bytes());
        body_out.extend_from_slice(&message_out);
        let id = self.next_handshake_frame_id();
        let frame = build_frame(local_id, from, id, &body_out);
        let state = self.peers.entry(from).or_default();
        if let Some(own) = state.initiation.take() {
            self.indexes.remove(&own.local_index);
        }
        if let Some(old) = state.response.replace(PendingResponse {
            transport,
            remote_static,
            announcement,
            incarnation,
        }) {
            self.indexes.remove(&old.transport.local_index);
        }
        self.outbox.push_back(Outgoing { to: from, frame });
        Ok(())
    }

    fn receive_response(
        &mut self,
        from: PeerId,
        body: &[u8],
        now: Instant,
    ) -> Result<(), Rejection> {
        if body.len() < 9 {
            return Err(Rejection::Malformed("response length"));
        }
        let remote_index = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes"));
        let receiver_index = u32::from_be_bytes(body[5..9].try_into().expect("4 bytes"));
        if self.indexes.get(&receiver_index) != Some(&from) {
            return Err(Rejection::UnknownSession);
        }
        let state = self.peers.get_mut(&from).ok_or(Rejection::UnknownSession)?;
        let Some(pending) = state
            .initiation
            .as_mut()
            .filter(|pending| pending.local_index == receiver_index)
        else {
            return Err(Rejection::UnknownSession);
        };
        let mut payload = vec![0u8; body.len()];
        let length = pending
            .handshake
            .read_message(&body[9..], &mut payload)
            .map_err(|error| Rejection::Handshake(error.to_string()))?;
        payload.truncate(length);
        if payload.len() < 8 {
            return Err(Rejection::Malformed("response payload"));
        }
        let incarnation = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        let announcement = payload[8..].to_vec();
        let mut pending = state.initiation.take().expect("checked above");
        let remote_static: [u8; 32] = pending
            .handshake
            .get_remote_static()
            .and_then(|key| key.try_into().ok())
            .ok_or(Rejection::Handshake("no remote static key".into()))?;
        let (initiator_to_responder, responder_to_initiator) =
            pending.handshake.dangerously_get_raw_split();
        let transport = Transport {
            local_index: pending.local_index,
            remote_index,
            send_key: aead_key(&initiator_to_responder),
            receive_key: aead_key(&responder_to_initiator),
            send_counter: 0,
            window: ReplayWindow::default(),
            created: now,
            rekey_requested: false,
        };
        self.promote(from, transport, remote_static, announcement, incarnation);
        // Confirm at once so the responder can start using the session.
        self.seal_to(from, &[], now);
        self.flush_queue(from, now);
        Ok(())
    }

    fn promote(
        &mut self,
        peer: PeerId,
        transport: Transport,
        remote_static: [u8; 32],
        announcement: Vec<u8>,
        incarnation: u64,
    ) {
        let state = self.peers.entry(peer).or_default();
        if let Some(old) = state.previous.take() {
            self.indexes.remove(&old.local_index);
        }
        let replaced = state.current.replace(transport);
        if state.incarnation == Some(incarnation) {
            // A rekey: frames already in flight under the old session still arrive.
            state.previous = replaced;
        } else if let Some(old) = replaced {
            // The peer restarted: nothing its old incarnation sealed is accepted any more.
            self.indexes.remove(&old.local_index);
        }
        state.incarnation = Some(incarnation);
        if std::mem::take(&mut state.attempt).started.is_some() {
            self.attempts_in_progress -= 1;
        }
        self.events.push_back(Event::Established {
            peer,
            remote_static,
            announcement,
        });
    }

    fn flush_queue(&mut self, peer: PeerId, now: Instant) {
        let queued: Vec<Vec<u8>> = self
            .peers
            .get_mut(&peer)
            .map(|state| state.queue.drain(..).collect())
            .unwrap_or_default();
        for plaintext in queued {
            self.seal_to(peer, &plaintext, now);
        }
    }

    fn receive_transport(
        &mut self,
        from: PeerId,
        frame: &[u8],
        now: Instant,
    ) -> Result<Option<(PeerId, Vec<u8>)>, Rejection> {
        let body = &frame[HEADER_LEN..];
        if body.len() < 5 + 16 {
            return Err(Rejection::Malformed("transport length"));
        }
        let index = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes"));
        match self.indexes.get(&index) {
            Some(owner) if *owner == from => {}
            Some(_) => return Err(Rejection::PeerMismatch),
            None => return Err(Rejection::UnknownSession),
        }
        let counter = Header::decode(frame)
            .map_err(|_| Rejection::Malformed("bad header"))?
            .id;
        let reject_after = self.config.reject_after;
        let state = self.peers.get_mut(&from).ok_or(Rejection::UnknownSession)?;
        let (transport, pending) = if state
            .current
            .as_ref()
            .is_some_and(|t| t.local_index == index)
        {
            (state.current.as_mut().expect("checked"), false)
        } else if state
            .previous
            .as_ref()
            .is_some_and(|t| t.local_index == index)
        {
            (state.previous.as_mut().expect("checked"), false)
        } else if state
            .response
            .as_ref()
            .is_some_and(|p| p.transport.local_index == index)
        {
            (
                &mut state.response.as_mut().expect("checked").transport,
                true,
            )
        } else {
            return Err(Rejection::UnknownSession);
        };
        if now.duration_since(transport.created) >= reject_after {
            return Err(Rejection::Expired);
        }
        if !transport.window.would_accept(counter) {
            return Err(Rejection::Replay);
        }
        let mut buffer = body[5..].to_vec();
        let plaintext_length = open(
            &transport.receive_key,
            counter,
            &frame[..HEADER_LEN + 5],
            &mut buffer,
        )?;
        transport.window.mark(counter);
        buffer.truncate(plaintext_length);
        if pending {
            let confirmed = state.response.take().expect("checked");
            self.promote(
                from,
                confirmed.transport,
                confirmed.remote_static,
                confirmed.announcement,
                confirmed.incarnation,
            );
            self.flush_queue(from, now);
        }
        if buffer.is_empty() {
            Ok(None)
        } else {
            Ok(Some((from, buffer)))
        }
    }

    /// When `handle_timeout` next has work to do.
    pub fn next_timeout(&self) -> Option<Instant> {
        debug_assert_eq!(
            self.attempts_in_progress,
            self.peers
                .values()
                .filter(|state| state.attempt.started.is_some())
                .count(),
            "attempts_in_progress out of step"
        );
        if self.attempts_in_progress == 0 {
            return None;
        }
        self.peers
            .values()
            .filter(|state| state.attempt.started.is_some())
            .filter_map(|state| state.attempt.last_try)
            .map(|last| last + self.config.handshake_retry)
            .min()
    }

    /// Retries handshakes whose answer is overdue and gives up after `handshake_attempts`;
    /// drops sessions past `reject_after`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let retry = self.config.handshake_retry;
        let attempts = self.config.handshake_attempts;
        let reject_after = self.config.reject_after;
        let mut retry_peers = Vec::new();
        let mut failed = Vec::new();
        for (peer, state) in &mut self.peers {
            for slot in [&mut state.current, &mut state.previous] {
                if slot
                    .as_ref()
                    .is_some_and(|t| now.duration_since(t.created) >= reject_after)
                    && let Some(old) = slot.take()
                {
                    self.indexes.remove(&old.local_index);
                }
            }
            if state.attempt.started.is_none() {
                continue;
            }
            let overdue = state
                .attempt
                .last_try
                .is_some_and(|last| now.duration_since(last) >= retry);
            if !overdue {
                continue;
            }
            if state.attempt.tries >= attempts {
                let dropped = state.queue.len();
                state.queue.clear();
                if let Some(pending) = state.initiation.take() {
                    self.indexes.remove(&pending.local_index);
                }
                state.attempt = Attempt::default();
                self.attempts_in_progress -= 1;
                failed.push((*peer, dropped));
            } else {
                retry_peers.push((*peer, !state.queue.is_empty()));
            }
        }
        for (peer, dropped) in failed {
            self.events
                .push_back(Event::HandshakeFailed { peer, dropped });
        }
        for (peer, please_reply) in retry_peers {
            self.request_handshake(peer, now, please_reply);
        }
    }
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte aes-256-gcm key"))
}

/// Noise's AESGCM nonce: 32 zero bits followed by the big-endian 64-bit counter.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn header(from: PeerId, to: PeerId, id: u64) -> [u8; HEADER_LEN] {
    Header::new(FrameKind::Data, from, to, id).to_bytes()
}

fn build_frame(from: PeerId, to: PeerId, id: u64, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&header(from, to, id));
    frame.extend_from_slice(body);
    frame
}

fn seal(from: PeerId, to: PeerId, transport: &mut Transport, plaintext: &[u8]) -> Vec<u8> {
    let counter = transport.send_counter;
    transport.send_counter += 1;
    let mut frame = Vec::with_capacity(TRANSPORT_OVERHEAD + plaintext.len());
    frame.extend_from_slice(&header(from, to, counter));
    frame.push(TYPE_TRANSPORT);
    frame.extend_from_slice(&transport.remote_index.to_be_bytes());
    frame.extend_from_slice(plaintext);
    let (associated, payload) = frame.split_at_mut(HEADER_LEN + 5);
    let tag = transport
        .send_key
        .seal_in_place_separate_tag(nonce(counter), Aad::from(&*associated), payload)
        .expect("aes-gcm seal of a frame-sized plaintext");
    frame.extend_from_slice(tag.as_ref());
    frame
}

fn open(
    key: &LessSafeKey,
    counter: u64,
    associated: &[u8],
    buffer: &mut [u8],
) -> Result<usize, Rejection> {
    key.open_in_place(nonce(counter), Aad::from(associated), buffer)
        .map(|plaintext| plaintext.len())
        .map_err(|_| Rejection::Authentication)
}

/// Sliding window of received counters (RFC 6479): a ring of 64-bit words, cleared word by
/// word as the highest counter advances.
struct ReplayWindow {
    /// One past the highest counter accepted; 0 before the first.
    next: u64,
    bits: [u64; WINDOW_WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            next: 0,
            bits: [0; WINDOW_WORDS],
        }
    }
}

impl ReplayWindow {
    fn would_accept(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        if self.next - counter > REPLAY_WINDOW {
            return false;
        }
        let word = (counter / 64) as usize % WINDOW_WORDS;
        self.bits[word] & (1 << (counter % 64)) == 0
    }

    fn mark(&mut self, counter: u64) {
        if counter >= self.next {
            let new_word = counter / 64;
            if self.next > 0 {
                let top_word = (self.next - 1) / 64;
                let advance = (new_word - top_word).min(WINDOW_WORDS as u64);
                for step in 1..=advance {
                    self.bits[((top_word + step) % WINDOW_WORDS as u64) as usize] = 0;
                }
            }
            self.next = counter + 1;
        }
        let word = (counter / 64) as usize % WINDOW_WORDS;
        self.bits[word] |= 1 << (counter % 64);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod vectors;
