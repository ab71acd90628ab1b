//! Counters the relay keeps and their Prometheus text rendering for `GET /metrics`. Hand-rolled
//! atomics rather than the global `metrics` recorder so several relays in one test process each
//! count only their own traffic.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why the relay refused a frame or a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rejection {
    Malformed,
    NotFound,
    RateLimited,
    RetainedFull,
    Oversize,
    RoomFull,
    BadRequest,
    Unauthorized,
    Evicted,
    IdleTimeout,
    /// The connection did not prove the key of the peer id it claimed.
    KeyProofFailed,
    /// The peer did not read what the relay sent it fast enough; its connection was closed.
    SlowReader,
    /// The relay was at its connection limit.
    TooManyConnections,
}

impl Rejection {
    const ALL: [Rejection; 13] = [
        Rejection::Malformed,
        Rejection::NotFound,
        Rejection::RateLimited,
        Rejection::RetainedFull,
        Rejection::Oversize,
        Rejection::RoomFull,
        Rejection::BadRequest,
        Rejection::Unauthorized,
        Rejection::Evicted,
        Rejection::IdleTimeout,
        Rejection::KeyProofFailed,
        Rejection::SlowReader,
        Rejection::TooManyConnections,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::NotFound => "not_found",
            Rejection::RateLimited => "rate_limited",
            Rejection::RetainedFull => "retained_full",
            Rejection::Oversize => "oversize",
            Rejection::RoomFull => "room_full",
            Rejection::BadRequest => "bad_request",
            Rejection::Unauthorized => "unauthorized",
            Rejection::Evicted => "evicted",
            Rejection::IdleTimeout => "idle_timeout",
            Rejection::KeyProofFailed => "key_proof_failed",
            Rejection::SlowReader => "slow_reader",
            Rejection::TooManyConnections => "too_many_connections",
        }
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub rooms: AtomicI64,
    pub peers: AtomicI64,
    pub connections_total: AtomicU64,
    pub frames_in: AtomicU64,
    /// `CHALLENGE` frames sent and `PROOF` frames received: the key proof, before the
    /// connection is in a room (so in neither `frames_in` nor `frames_out`). A peer that takes
    /// its challenge in the upgrade's header costs one, not two.
    pub key_proof_frames: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_forwarded: AtomicU64,
    /// Frames the relay wrote to peers' sockets, whatever their kind (forwarded, replies,
    /// presence): what a mass reconnect costs is read off this one.
    pub frames_out: AtomicU64,
    /// `WELCOME` and `PRESENCE` frames queued: the room's presence as the relay tells it.
    pub presence_frames: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    /// Bytes kept in every room's retained store; also the counter the total cap is held to.
    pub retained_bytes: AtomicU64,
    rejections: [AtomicU64; 13],
}

impl Metrics {
    pub(crate) fn reject(&self, why: Rejection) {
        let index = Rejection::ALL
            .iter()
            .position(|candidate| candidate.label() == why.label())
            .expect("every rejection is listed");
        self.rejections[index].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "relay_rooms",
            "rooms with peers or retained blobs",
            self.rooms.load(Ordering::Relaxed),
        );
        gauge(
            "relay_peers",
            "connected peers",
            self.peers.load(Ordering::Relaxed),
        );
        gauge(
            "relay_retained_bytes",
            "bytes of retained blobs and keys kept in all rooms",
            self.retained_bytes.load(Ordering::Relaxed) as i64,
        );
        let counters = [
            (
                "relay_connections_total",
                "websocket connections accepted",
                &self.connections_total,
            ),
            ("relay_frames_in_total", "frames received", &self.frames_in),
            (
                "relay_key_proof_frames_total",
                "CHALLENGE frames sent and PROOF frames received",
                &self.key_proof_frames,
            ),
            (
                "relay_bytes_in_total",
                "bytes received in frames",
                &self.bytes_in,
            ),
            (
                "relay_frames_forwarded_total",
                "frames queued to a receiving peer",
                &self.frames_forwarded,
            ),
            (
                "relay_bytes_forwarded_total",
                "bytes queued to receiving peers",
                &self.bytes_forwarded,
            ),
            (
                "relay_frames_out_total",
                "frames written to peers (forwarded, replies and presence)",
                &self.frames_out,
            ),
            (
                "relay_presence_frames_total",
                "WELCOME and PRESENCE frames queued to peers",
                &self.presence_frames,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP relay_rejections_total frames or connections refused, by reason\n# TYPE relay_rejections_total counter"
        );
        for (why, value) in Rejection::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(
                out,
                "relay_rejections_total{{reason=\"{}\"}} {}",
                why.label(),
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
