//! The relay frame (schemas/frame.md): the 42-byte routing header, the frame kinds, the typed
//! bodies of the relay's control frames, and the room/peer id helpers. The only code in Rust that
//! knows the framing. Sans-IO and zero-copy: decoding a `Bytes` slices it, never copies the body.

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

// The sizes of the key proof's frame bodies (`CHALLENGE`, `PROOF`); `crate::key_proof` makes
// and checks what they carry.
/// Length of an X25519 public key, the `CHALLENGE` body.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of the HMAC-SHA256 tag in a `PROOF` body.
pub const MAC_LEN: usize = 32;

/// Length of a `PROOF` body: the static public key, then the tag.
pub const PROOF_LEN: usize = PUBLIC_KEY_LEN + MAC_LEN;

/// The frame format version carried in byte 0 of every header. Version 2: presence by
/// subscription (`PRESENCE_GET`, `PRESENCE`) instead of a `JOIN`/`LEAVE` to every peer.
pub const FRAME_VERSION: u8 = 2;

/// The HTTP header that carries the key challenge in the upgrade itself, saving a frame per
/// connection (a mass reconnect of N nodes costs N fewer relay frames). A peer asks with the
/// request header `remote-agents-challenge: header`; a relay that knows it answers the 101
/// with `remote-agents-challenge: <the encoded CHALLENGE frame in lowercase hex>` and sends no
/// `CHALLENGE` frame. A relay that does not know it ignores the request header and sends the
/// frame, so a peer takes the header when it is there and reads the frame otherwise.
pub const CHALLENGE_HEADER: &str = "remote-agents-challenge";
/// The value of [`CHALLENGE_HEADER`] in a request: "put the challenge in your answer".
pub const CHALLENGE_IN_HEADER: &str = "header";

/// Most peers one `PRESENCE` frame carries (17 bytes each: about 68 KiB): a snapshot of a
/// 10,000-peer room is three pages.
pub const PRESENCE_PAGE: usize = 4096;

/// How long the relay gathers joins and leaves before it sends them to the room's subscribers
/// as one `PRESENCE` frame each: a mass reconnect of N peers costs each subscriber a frame per
/// window, not one per peer.
pub const PRESENCE_BATCH_MILLIS: u64 = 50;

/// Length of the routing header that precedes every body.
pub const HEADER_LEN: usize = 42;

/// Default cap on a whole frame (header + body): 1 MiB.
pub const MAX_FRAME_DEFAULT: usize = 1 << 20;

/// Default number of peers one room admits before refusing with close code 4002: a fleet of
/// 10,000 hosts and room beside them for the operators, panels and MCP nodes that follow it (at
/// exactly 10,000 the fleet's own `fleetctl` was the one turned away).
pub const MAX_PEERS_DEFAULT: usize = 10_240;

/// Blobs the relay keeps per retained key (the newest ones).
pub const RETAINED_PER_KEY: usize = 4;

/// Distinct retained keys per room; a put of a new key beyond this gets `ERROR 507`.
pub const RETAINED_KEYS_PER_ROOM: usize = 64;

/// Default sustained rate limit per connection, in frames per second (0 = off).
pub const RATE_PER_SECOND_DEFAULT: u32 = 100_000;

/// Default burst the rate limiter admits above the sustained rate.
pub const RATE_BURST_DEFAULT: u32 = 200_000;

/// Default interval between the relay's WebSocket pings, in seconds.
pub const PING_INTERVAL_SECS_DEFAULT: u64 = 20;

/// Default idle limit in seconds: no frame and no pong for this long closes with 4008.
pub const IDLE_TIMEOUT_SECS_DEFAULT: u64 = 60;

/// Default cap on the retained bytes (blobs and keys) of one room: 16 MiB.
pub const RETAINED_BYTES_PER_ROOM_DEFAULT: usize = 16 << 20;

/// Default time a room's retained blobs outlive its last peer, in seconds (one day).
pub const RETAINED_TTL_SECS_DEFAULT: u64 = 24 * 60 * 60;

/// Default time a new connection has to answer `CHALLENGE` with `PROOF`, in seconds.
pub const PROOF_TIMEOUT_SECS_DEFAULT: u64 = 10;

/// The domain label hashed in front of a room name to make its room id.
const ROOM_ID_LABEL: &[u8] = b"remote-agents room v1\0";

/// Codes carried in `ERROR` frames; the connection stays open after each of them.
pub mod error_code {
    /// Malformed frame: short header, wrong version, unknown kind, bad body.
    pub const MALFORMED: u16 = 400;
    /// The destination peer is not in the room.
    pub const NOT_FOUND: u16 = 404;
    /// The frame is over the cap.
    pub const TOO_LARGE: u16 = 413;
    /// Rate limited; the frame was dropped.
    pub const RATE_LIMITED: u16 = 429;
    /// The room already keeps the maximum number of retained keys; the blob was not stored.
    pub const RETAINED_FULL: u16 = 507;
}

/// WebSocket close codes the relay uses.
pub mod close_code {
    /// A WebSocket message over the frame cap.
    pub const TOO_BIG: u16 = 1009;
    /// Another connection joined with the same peer id; the evicted node must not reconnect.
    pub const EVICTED: u16 = 4001;
    /// The room is full.
    pub const ROOM_FULL: u16 = 4002;
    /// The peer speaks another protocol version than the relay; the reason names both.
    pub const VERSION_MISMATCH: u16 = 4005;
    /// The room id or peer id in the request is malformed.
    pub const BAD_REQUEST: u16 = 4003;
    /// The connection did not prove the key its peer id is derived from (no `PROOF` in time,
    /// another frame first, or a proof that does not verify); it never joined the room.
    pub const KEY_PROOF_FAILED: u16 = 4004;
    /// No frame and no pong within the idle limit.
    pub const IDLE_TIMEOUT: u16 = 4008;
    /// The peer did not read what the relay sent it: its queue overflowed or stalled a sender.
    pub const SLOW_READER: u16 = 4009;
    /// Rate limit exceeded persistently.
    pub const RATE_LIMITED: u16 = 4029;
}

/// Everything that can be wrong with bytes claimed to be a frame or a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader { len: usize },
    #[error("unsupported frame version {0}: this side speaks protocol version {FRAME_VERSION}")]
    Version(u8),
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("frame is {len} bytes, over the cap of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bad {kind} body: {reason}")]
    BadBody {
        kind: FrameKind,
        reason: &'static str,
    },
    #[error("bad id: {0}")]
    BadId(&'static str),
}

impl FrameError {
    /// The `ERROR` code a relay answers this with.
    pub fn error_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } => error_code::TOO_LARGE,
            _ => error_code::MALFORMED,
        }
    }
}

/// An opaque peer id: the first 16 bytes of SHA-256 of the peer's static X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(pub [u8; 16]);

impl PeerId {
    /// The all-zero id: "broadcast" in `to`, "the relay itself" in `from`.
    pub const ZERO: PeerId = PeerId([0; 16]);

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// 32 lowercase hex characters, the form used in the connect URL.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.to_hex())
    }
}

impl FromStr for PeerId {
    type Err = FrameError;

    /// Accepts exactly 32 lowercase hex characters (the contract spells ids lowercase, and one
    /// spelling per id keeps two connections with "different" ids from being the same peer).
    fn from_str(text: &str) -> Result<Self, FrameError> {
        parse_lower_hex::<16>(text)
            .map(PeerId)
            .ok_or(FrameError::BadId(
                "peer id must be 32 lowercase hex characters",
            ))
    }
}

/// An opaque room id: SHA-256("remote-agents room v1\0" || room name).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub [u8; 32]);

impl RoomId {
    /// 64 lowercase hex characters, the form used in the connect URL.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.to_hex())
    }
}

impl FromStr for RoomId {
    type Err = FrameError;

    fn from_str(text: &str) -> Result<Self, FrameError> {
        parse_lower_hex::<32>(text)
            .map(RoomId)
            .ok_or(FrameError::BadId(
                "room id must be 64 lowercase hex characters",
            ))
    }
}

fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The room id of a room name. The name is not secret; the room token is never an input, so the
/// relay gets no oracle to test token guesses against.
pub fn room_id_from_name(room_name: &str) -> RoomId {
    let mut hasher = Sha256::new();
    hasher.update(ROOM_ID_LABEL);
    hasher.update(room_name.as_bytes());
    RoomId(hasher.finalize().into())
}

/// The peer id of a static X25519 public key: the first 16 bytes of its SHA-256.
pub fn peer_id_from_public_key(public_key: &[u8]) -> PeerId {
    let digest: [u8; 32] = Sha256::digest(public_key).into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    PeerId(id)
}

/// The path a peer upgrades to a WebSocket: `/v1/rooms/{room_id}?peer={peer_id}`.
pub fn connect_path(room: &RoomId, peer: &PeerId) -> String {
    format!("/v1/rooms/{}?peer={}", room.to_hex(), peer.to_hex())
}

/// The kind byte of a frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum FrameKind {
    /// Peer → peer via the relay: opaque body for `to` only.
    Data = 0x01,
    /// Peer → every other peer in the room: opaque body.
    Broadcast = 0x02,
    /// Peer → relay: keep a blob under a key.
    RetainPut = 0x03,
    /// Peer → relay: send back the blobs kept under a key.
    RetainGet = 0x04,
    /// Peer → relay, first frame: the answer to `CHALLENGE` proving the peer id's key.
    Proof = 0x05,
    /// Peer → relay: one page of the room's presence (peers after a cursor), optionally
    /// subscribing to its batched changes.
    PresenceGet = 0x06,
    /// Relay → peer, first frame: how many other peers are present.
    Welcome = 0x10,
    /// Relay → peer: a page of the room's presence (answering `PRESENCE_GET`) or a batch of
    /// joins and leaves (to subscribers).
    Presence = 0x17,
    /// Relay → peer: the frame with this id was refused.
    Error = 0x13,
    /// Relay → peer: the frame with this id was handled.
    Ack = 0x14,
    /// Relay → peer: one kept blob, in answer to `RETAIN_GET`.
    Retained = 0x15,
    /// Relay → peer, first frame: a fresh X25519 public key the peer must answer with `PROOF`.
    Challenge = 0x16,
}

impl FrameKind {
    pub const ALL: [FrameKind; 12] = [
        FrameKind::Data,
        FrameKind::Broadcast,
        FrameKind::RetainPut,
        FrameKind::RetainGet,
        FrameKind::Proof,
        FrameKind::PresenceGet,
        FrameKind::Welcome,
        FrameKind::Presence,
        FrameKind::Error,
        FrameKind::Ack,
        FrameKind::Retained,
        FrameKind::Challenge,
    ];

    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }

    /// The name used in schemas/frame.md (`DATA`, `RETAIN_PUT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Data => "DATA",
            FrameKind::Broadcast => "BROADCAST",
            FrameKind::RetainPut => "RETAIN_PUT",
            FrameKind::RetainGet => "RETAIN_GET",
            FrameKind::Proof => "PROOF",
            FrameKind::PresenceGet => "PRESENCE_GET",
            FrameKind::Welcome => "WELCOME",
            FrameKind::Presence => "PRESENCE",
            FrameKind::Error => "ERROR",
            FrameKind::Ack => "ACK",
            FrameKind::Retained => "RETAINED",
            FrameKind::Challenge => "CHALLENGE",
        }
    }

    /// Whether a peer may send this kind to the relay (the others only flow relay → peer).
    pub fn is_peer_to_relay(self) -> bool {
        matches!(
            self,
            FrameKind::Data
                | FrameKind::Broadcast
                | FrameKind::RetainPut
                | FrameKind::RetainGet
                | FrameKind::Proof
                | FrameKind::PresenceGet
        )
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The 42-byte routing header. The version is implied: only [`FRAME_VERSION`] decodes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    pub kind: FrameKind,
    pub from: PeerId,
    pub to: PeerId,
    pub id: u64,
}

impl Header {
    pub fn new(kind: FrameKind, from: PeerId, to: PeerId, id: u64) -> Self {
        Header { kind, from, to, id }
    }

    /// The header's 42 bytes. These are also what nodes bind as AEAD associated data.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FRAME_VERSION;
        out[1] = self.kind as u8;
        out[2..18].copy_from_slice(&self.from.0);
        out[18..34].copy_from_slice(&self.to.0);
        out[34..42].copy_from_slice(&self.id.to_be_bytes());
        out
    }

    /// Reads the header at the start of `bytes` (the body, if any, follows it).
    pub fn decode(bytes: &[u8]) -> Result<Header, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::ShortHeader { len: bytes.len() });
        }
        if bytes[0] != FRAME_VERSION {
            return Err(FrameError::Version(bytes[0]));
        }
        let kind = FrameKind::from_u8(bytes[1]).ok_or(FrameError::UnknownKind(bytes[1]))?;
        Ok(Header {
            kind,
            from: PeerId(bytes[2..18].try_into().expect("16 bytes")),
            to: PeerId(bytes[18..34].try_into().expect("16 bytes")),
            id: read_id(bytes),
        })
    }
}

fn read_id(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[34..42].try_into().expect("8 bytes"))
}

/// The id an `ERROR` reply to these bytes carries: the frame's id when the header is long enough
/// to hold one (even if its version or kind is wrong), otherwise 0.
pub fn offending_id(bytes: &[u8]) -> u64 {
    if bytes.len() >= HEADER_LEN {
        read_id(bytes)
    } else {
        0
    }
}

/// Overwrites `from` in an encoded frame in place. The relay calls this on every frame it
/// forwards so a peer cannot speak as another; it never needs to decode the body to do it.
pub fn overwrite_from(frame: &mut [u8], from: &PeerId) {
    frame[2..18].copy_from_slice(&from.0);
}

/// Overwrites `to` in an encoded frame in place (the relay zeroes it on forwarded broadcasts).
pub fn overwrite_to(frame: &mut [u8], to: &PeerId) {
    frame[18..34].copy_from_slice(&to.0);
}

/// A header and its body. The body is a `Bytes` slice of the received message: no copy.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Frame {
    pub header: Header,
    pub body: Bytes,
}

impl Frame {
    pub fn new(header: Header, body: impl Into<Bytes>) -> Self {
        Frame {
            header,
            body: body.into(),
        }
    }

    /// Decodes a whole frame, slicing the body out of `bytes` without copying.
    pub fn decode(bytes: Bytes) -> Result<Frame, FrameError> {
        let header = Header::decode(&bytes)?;
        Ok(Frame {
            header,
            body: bytes.slice(HEADER_LEN..),
        })
    }

    /// Like [`Frame::decode`], refusing frames over `max_frame` bytes.
    pub fn decode_capped(bytes: Bytes, max_frame: usize) -> Result<Frame, FrameError> {
        if bytes.len() > max_frame {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max: max_frame,
            });
        }
        Frame::decode(bytes)
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_slice(&self.header.to_bytes());
        out.put_slice(&self.body);
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// The body parsed according to the kind. `DATA` and `BROADCAST` stay opaque bytes.
    pub fn body(&self) -> Result<Body, FrameError> {
        Body::decode(self.header.kind, &self.body)
    }

    /// `WELCOME` to `to`: how many other peers are in the room (who they are is a
    /// `PRESENCE_GET` away, for the peers that need to know).
    pub fn welcome(to: PeerId, present: u32) -> Frame {
        Frame::new(
            Header::new(FrameKind::Welcome, PeerId::ZERO, to, 0),
            Body::Welcome { present }.encode(),
        )
    }

    /// `PRESENCE_GET` with id `id`: the page of peers after `after` (zero: from the start),
    /// subscribing to the room's batched presence changes when `subscribe` is set.
    pub fn presence_get(id: u64, subscribe: bool, after: PeerId) -> Frame {
        Frame::new(
            Header::new(FrameKind::PresenceGet, PeerId::ZERO, PeerId::ZERO, id),
            Body::PresenceGet { subscribe, after }.encode(),
        )
    }

    /// `PRESENCE` to `to` (zero for a batch: the same bytes go to every subscriber).
    pub fn presence(to: PeerId, id: u64, page: &PresencePage) -> Frame {
        Frame::new(
            Header::new(FrameKind::Presence, PeerId::ZERO, to, id),
            Body::Presence(page.clone()).encode(),
        )
    }

    /// `ERROR` to `to` about the frame with id `id`.
    pub fn error(to: PeerId, id: u64, code: u16, message: &str) -> Frame {
        Frame::new(
            Header::new(FrameKind::Error, PeerId::ZERO, to, id),
            Body::Error {
                code,
                message: message.to_owned(),
            }
            .encode(),
        )
    }

    /// `ACK` to `to` for the frame with id `id`, with a body as stated per request.
    pub fn ack(to: PeerId, id: u64, body: impl Into<Bytes>) -> Frame {
        Frame::new(Header::new(FrameKind::Ack, PeerId::ZERO, to, id), body)
    }

    /// `RETAIN_PUT` of `blob` under `key`.
    pub fn retain_put(id: u64, key: &[u8], blob: &[u8]) -> Result<Frame, FrameError> {
        let body = Body::RetainPut {
            key: Bytes::copy_from_slice(key),
            blob: Bytes::copy_from_slice(blob),
        };
        Ok(Frame::new(
            Header::new(FrameKind::RetainPut, PeerId::ZERO, PeerId::ZERO, id),
            body.try_encode()?,
        ))
    }

    /// `CHALLENGE` to `to`, the claimed peer id: the relay's fresh X25519 public key.
    pub fn challenge(to: PeerId, public_key: [u8; PUBLIC_KEY_LEN]) -> Frame {
        Frame::new(
            Header::new(FrameKind::Challenge, PeerId::ZERO, to, 0),
            Bytes::copy_from_slice(&public_key),
        )
    }

    /// `PROOF` from `from`: its static public key and the tag (see `key_proof::prove`).
    pub fn proof(from: PeerId, proof: [u8; PROOF_LEN]) -> Frame {
        Frame::new(
            Header::new(FrameKind::Proof, from, PeerId::ZERO, 0),
            Bytes::copy_from_slice(&proof),
        )
    }

    /// `RETAIN_GET` of the blobs under `key`.
    pub fn retain_get(id: u64, key: &[u8]) -> Result<Frame, FrameError> {
        let body = Body::RetainGet {
            key: Bytes::copy_from_slice(key),
        };
        Ok(Frame::new(
            Header::new(FrameKind::RetainGet, PeerId::ZERO, PeerId::ZERO, id),
            body.try_encode()?,
        ))
    }

    /// `RETAINED` to `to`: one kept blob in answer to the `RETAIN_GET` with id `id`.
    pub fn retained(
        to: PeerId,
        id: u64,
        key: &[u8],
        seq: u64,
        blob: &[u8],
    ) -> Result<Frame, FrameError> {
        let body = Body::Retained {
            key: Bytes::copy_from_slice(key),
            seq,
            blob: Bytes::copy_from_slice(blob),
        };
        Ok(Frame::new(
            Header::new(FrameKind::Retained, PeerId::ZERO, to, id),
            body.try_encode()?,
        ))
    }
}

/// A body parsed according to its frame kind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// Opaque ciphertext for one peer.
    Data(Bytes),
    /// Opaque ciphertext for every other peer.
    Broadcast(Bytes),
    RetainPut {
        key: Bytes,
        blob: Bytes,
    },
    RetainGet {
        key: Bytes,
    },
    /// A page of presence and whether to subscribe to its changes.
    PresenceGet {
        subscribe: bool,
        after: PeerId,
    },
    /// How many other peers were in the room when this peer joined.
    Welcome {
        present: u32,
    },
    Presence(PresencePage),
    Error {
        code: u16,
        message: String,
    },
    /// Empty for `RETAIN_PUT`; `count:u32` for `RETAIN_GET`.
    Ack(Bytes),
    Retained {
        key: Bytes,
        seq: u64,
        blob: Bytes,
    },
    /// The relay's fresh X25519 public key.
    Challenge([u8; PUBLIC_KEY_LEN]),
    /// The peer's static public key followed by its tag; checked by `key_proof::Challenge`.
    Proof(Bytes),
}

impl Body {
    pub fn kind(&self) -> FrameKind {
        match self {
            Body::Data(_) => FrameKind::Data,
            Body::Broadcast(_) => FrameKind::Broadcast,
            Body::RetainPut { .. } => FrameKind::RetainPut,
            Body::RetainGet { .. } => FrameKind::RetainGet,
            Body::PresenceGet { .. } => FrameKind::PresenceGet,
            Body::Welcome { .. } => FrameKind::Welcome,
            Body::Presence(_) => FrameKind::Presence,
            Body::Error { .. } => FrameKind::Error,
            Body::Ack(_) => FrameKind::Ack,
            Body::Retained { .. } => FrameKind::Retained,
            Body::Challenge(_) => FrameKind::Challenge,
            Body::Proof(_) => FrameKind::Proof,
        }
    }

    /// Parses `body` as the body of a frame of `kind`.
    pub fn decode(kind: FrameKind, body: &Bytes) -> Result<Body, FrameError> {
        let bad = |reason| FrameError::BadBody { kind, reason };
        Ok(match kind {
            FrameKind::Data => Body::Data(body.clone()),
            FrameKind::Broadcast => Body::Broadcast(body.clone()),
            FrameKind::RetainPut => {
                let (key, rest) = split_key(body).ok_or(bad("key longer than the body"))?;
                Body::RetainPut { key, blob: rest }
            }
            FrameKind::RetainGet => {
                let (key, rest) = split_key(body).ok_or(bad("key longer than the body"))?;
                if !rest.is_empty() {
                    return Err(bad("bytes after the key"));
                }
                Body::RetainGet { key }
            }
            FrameKind::PresenceGet => {
                if body.len() != 17 || body[0] > 1 {
                    return Err(bad("not a subscribe byte (0 or 1) and a 16-byte peer id"));
                }
                Body::PresenceGet {
                    subscribe: body[0] == 1,
                    after: PeerId(body[1..17].try_into().expect("16 bytes")),
                }
            }
            FrameKind::Welcome => Body::Welcome {
                present: u32::from_be_bytes(
                    body[..]
                        .try_into()
                        .map_err(|_| bad("not a 4-byte peer count"))?,
                ),
            },
            FrameKind::Presence => Body::Presence(PresencePage::decode(body).map_err(bad)?),
            FrameKind::Error => {
                if body.len() < 2 {
                    return Err(bad("shorter than the code"));
                }
                let code = u16::from_be_bytes([body[0], body[1]]);
                let message = std::str::from_utf8(&body[2..])
                    .map_err(|_| bad("message is not utf-8"))?
                    .to_owned();
                Body::Error { code, message }
            }
            FrameKind::Ack => Body::Ack(body.clone()),
            FrameKind::Retained => {
                let (key, rest) = split_key(body).ok_or(bad("key longer than the body"))?;
                if rest.len() < 8 {
                    return Err(bad("shorter than the sequence number"));
                }
                let seq = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
                Body::Retained {
                    key,
                    seq,
                    blob: rest.slice(8..),
                }
            }
            FrameKind::Challenge => Body::Challenge(
                body[..]
                    .try_into()
                    .map_err(|_| bad("not a 32-byte public key"))?,
            ),
            FrameKind::Proof => {
                if body.len() != PROOF_LEN {
                    return Err(bad("not a 32-byte public key and a 32-byte tag"));
                }
                Body::Proof(body.clone())
            }
        })
    }

    /// Encodes the body; fails only for a retained key longer than 255 bytes.
    pub fn try_encode(&self) -> Result<Bytes, FrameError> {
        let key_len = |key: &Bytes| {
            u8::try_from(key.len()).map_err(|_| FrameError::BadBody {
                kind: self.kind(),
                reason: "key longer than 255 bytes",
            })
        };
        let mut out = BytesMut::new();
        match self {
            Body::Data(bytes) | Body::Broadcast(bytes) | Body::Ack(bytes) | Body::Proof(bytes) => {
                return Ok(bytes.clone());
            }
            Body::RetainPut { key, blob } => {
                out.put_u8(key_len(key)?);
                out.put_slice(key);
                out.put_slice(blob);
            }
            Body::RetainGet { key } => {
                out.put_u8(key_len(key)?);
                out.put_slice(key);
            }
            Body::PresenceGet { subscribe, after } => {
                out.put_u8(u8::from(*subscribe));
                out.put_slice(&after.0);
            }
            Body::Welcome { present } => out.put_u32(*present),
            Body::Presence(page) => page.encode_into(&mut out),
            Body::Error { code, message } => {
                out.put_u16(*code);
                out.put_slice(message.as_bytes());
            }
            Body::Retained { key, seq, blob } => {
                out.put_u8(key_len(key)?);
                out.put_slice(key);
                out.put_u64(*seq);
                out.put_slice(blob);
            }
            Body::Challenge(public_key) => out.put_slice(public_key),
        }
        Ok(out.freeze())
    }

    /// Encodes a body that cannot fail (any but a retain body with an over-long key).
    pub fn encode(&self) -> Bytes {
        self.try_encode()
            .expect("only retain bodies with keys over 255 bytes fail to encode")
    }
}

/// A change in a room's presence, as a `PRESENCE` body lists it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PresenceChange {
    Joined(PeerId),
    Left(PeerId),
}

/// The body of a `PRESENCE` frame: a page of a snapshot (joins only, ascending ids; `more`
/// when another page follows after the last id) or a batch of changes in the order they
/// happened (`snapshot` false).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PresencePage {
    pub snapshot: bool,
    pub more: bool,
    pub changes: Vec<PresenceChange>,
}

const PRESENCE_SNAPSHOT: u8 = 1;
const PRESENCE_MORE: u8 = 2;
const PRESENCE_JOINED: u8 = 1;
const PRESENCE_LEFT: u8 = 2;

impl PresencePage {
    fn decode(body: &[u8]) -> Result<PresencePage, &'static str> {
        if body.len() < 5 {
            return Err("shorter than the flags and the count");
        }
        let flags = body[0];
        if flags & !(PRESENCE_SNAPSHOT | PRESENCE_MORE) != 0 {
            return Err("unknown flags");
        }
        let count = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
        let entries = &body[5..];
        if entries.len() != count.saturating_mul(17) {
            return Err("count does not match the entries");
        }
        let changes = entries
            .chunks_exact(17)
            .map(|entry| {
                let peer = PeerId(entry[1..].try_into().expect("16 bytes"));
                match entry[0] {
                    PRESENCE_JOINED => Ok(PresenceChange::Joined(peer)),
                    PRESENCE_LEFT => Ok(PresenceChange::Left(peer)),
                    _ => Err("an entry is neither joined (1) nor left (2)"),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PresencePage {
            snapshot: flags & PRESENCE_SNAPSHOT != 0,
            more: flags & PRESENCE_MORE != 0,
            changes,
        })
    }

    fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(5 + 17 * self.changes.len());
        let mut flags = 0;
        if self.snapshot {
            flags |= PRESENCE_SNAPSHOT;
        }
        if self.more {
            flags |= PRESENCE_MORE;
        }
        out.put_u8(flags);
        out.put_u32(self.changes.len() as u32);
        for change in &self.changes {
            let (tag, peer) = match change {
                PresenceChange::Joined(peer) => (PRESENCE_JOINED, peer),
                PresenceChange::Left(peer) => (PRESENCE_LEFT, peer),
            };
            out.put_u8(tag);
            out.put_slice(&peer.0);
        }
    }
}

/// The body of the `ACK` that closes a `RETAIN_GET` answer: how many `RETAINED` frames preceded it.
pub fn retain_get_ack_body(count: u32) -> Bytes {
    Bytes::copy_from_slice(&count.to_be_bytes())
}

/// Reads the count out of a `RETAIN_GET` `ACK` body.
pub fn parse_retain_get_ack(body: &[u8]) -> Result<u32, FrameError> {
    body.try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| FrameError::BadBody {
            kind: FrameKind::Ack,
            reason: "a RETAIN_GET ack body is a 4-byte count",
        })
}

fn split_key(body: &Bytes) -> Option<(Bytes, Bytes)> {
    let (&key_len, _) = body.split_first()?;
    let end = 1 + key_len as usize;
    if body.len() < end {
        return None;
    }
    Some((body.slice(1..end), body.slice(end..)))
}

#[cfg(test)]
mod vectors;

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(byte: u8) -> PeerId {
        PeerId([byte; 16])
    }

    #[test]
    fn header_round_trips_and_is_42_bytes() {
        let header = Header::new(FrameKind::Data, peer(1), peer(2), 0x0102_0304_0506_0708);
        let bytes = header.to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(bytes[0], FRAME_VERSION);
        assert_eq!(bytes[1], 0x01);
        assert_eq!(&bytes[34..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Header::decode(&bytes), Ok(header));
    }

    #[test]
    fn decode_slices_the_body_without_copying() {
        let frame = Frame::new(
            Header::new(FrameKind::Broadcast, peer(3), PeerId::ZERO, 9),
            &b"ciphertext"[..],
        );
        let encoded = frame.encode();
        let decoded = Frame::decode(encoded.clone()).unwrap();
        assert_eq!(decoded, frame);
        assert_eq!(decoded.body.as_ptr(), encoded[HEADER_LEN..].as_ptr());
    }

    #[test]
    fn malformed_frames_are_refused_with_400_and_their_id_when_readable() {
        assert_eq!(
            Header::decode(&[1; 41]),
            Err(FrameError::ShortHeader { len: 41 })
        );
        let mut bytes = Header::new(FrameKind::Data, peer(1), peer(2), 77).to_bytes();
        bytes[0] = 1;
        let error = Header::decode(&bytes).unwrap_err();
        assert_eq!(error, FrameError::Version(1));
        // A peer of another version is told both versions.
        assert_eq!(
            error.to_string(),
            "unsupported frame version 1: this side speaks protocol version 2"
        );
        assert_eq!(offending_id(&bytes), 77);
        bytes[0] = FRAME_VERSION;
        bytes[1] = 0x09;
        let error = Header::decode(&bytes).unwrap_err();
        assert_eq!(error, FrameError::UnknownKind(0x09));
        assert_eq!(error.error_code(), 400);
        assert_eq!(offending_id(&bytes[..20]), 0);
    }

    #[test]
    fn cap_is_enforced_with_413() {
        let frame = Frame::new(
            Header::new(FrameKind::Data, peer(1), peer(2), 1),
            vec![0u8; 100],
        );
        let error = Frame::decode_capped(frame.encode(), 100).unwrap_err();
        assert_eq!(error.error_code(), 413);
        assert!(Frame::decode_capped(frame.encode(), 142).is_ok());
    }

    #[test]
    fn typed_bodies_round_trip() {
        let bodies = [
            Body::Data(Bytes::from_static(b"x")),
            Body::Broadcast(Bytes::new()),
            Body::RetainPut {
                key: Bytes::from_static(b"desired"),
                blob: Bytes::from_static(b"blob"),
            },
            Body::RetainGet {
                key: Bytes::from_static(b"desired"),
            },
            Body::PresenceGet {
                subscribe: true,
                after: peer(1),
            },
            Body::Welcome { present: 2 },
            Body::Presence(PresencePage {
                snapshot: false,
                more: false,
                changes: vec![
                    PresenceChange::Joined(peer(1)),
                    PresenceChange::Left(peer(2)),
                ],
            }),
            Body::Error {
                code: 404,
                message: "no such peer".into(),
            },
            Body::Ack(retain_get_ack_body(3)),
            Body::Retained {
                key: Bytes::from_static(b"k"),
                seq: 5,
                blob: Bytes::from_static(b"b"),
            },
            Body::Challenge([4; 32]),
            Body::Proof(Bytes::from_static(&[5; 64])),
        ];
        for body in bodies {
            let encoded = body.encode();
            assert_eq!(Body::decode(body.kind(), &encoded), Ok(body));
        }
    }

    #[test]
    fn bad_bodies_are_refused() {
        let cases: [(FrameKind, &[u8]); 10] = [
            (FrameKind::Challenge, &[1; 31]),
            (FrameKind::Proof, &[1; 65]),
            (FrameKind::RetainPut, &[5, b'a']),
            (FrameKind::RetainGet, &[1, b'a', b'b']),
            (FrameKind::Welcome, &[0, 0, 1]),
            (FrameKind::PresenceGet, &[2; 17]),
            (FrameKind::Presence, &[0, 0, 0, 0, 1]),
            (FrameKind::Presence, &[4, 0, 0, 0, 0]),
            (FrameKind::Error, &[1]),
            (FrameKind::Retained, &[1, b'k', 0, 0]),
        ];
        for (kind, body) in cases {
            let error = Body::decode(kind, &Bytes::copy_from_slice(body)).unwrap_err();
            assert!(
                matches!(error, FrameError::BadBody { .. }),
                "{kind}: {error}"
            );
        }
        let key = vec![0u8; 256];
        assert!(Frame::retain_get(1, &key).is_err());
    }

    #[test]
    fn ids_parse_only_in_their_lowercase_hex_form() {
        let room = room_id_from_name("ops");
        assert_eq!(room.to_hex().parse::<RoomId>(), Ok(room));
        assert!(room.to_hex().to_uppercase().parse::<RoomId>().is_err());
        let peer_id = peer_id_from_public_key(&[7; 32]);
        assert_eq!(peer_id.to_hex().parse::<PeerId>(), Ok(peer_id));
        assert!("00".parse::<PeerId>().is_err());
        assert_eq!(
            connect_path(&room, &peer_id),
            format!("/v1/rooms/{}?peer={}", room.to_hex(), peer_id.to_hex())
        );
    }

    #[test]
    fn from_and_to_are_overwritten_in_place() {
        let mut bytes = BytesMut::from(
            &Frame::new(
                Header::new(FrameKind::Broadcast, peer(9), peer(8), 1),
                &b"b"[..],
            )
            .encode()[..],
        );
        overwrite_from(&mut bytes, &peer(1));
        overwrite_to(&mut bytes, &PeerId::ZERO);
        let header = Header::decode(&bytes).unwrap();
        assert_eq!((header.from, header.to), (peer(1), PeerId::ZERO));
    }
}
