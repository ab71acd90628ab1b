//! One peer's WebSocket: a reader that routes each frame on its header and a writer that drains
//! the peer's outbox in batches, pings, and enforces the idle limit. Both run in one task.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use remote_agents_protocol::frame::{
    self, Body, FrameKind, Header, PeerId, RoomId, close_code, error_code,
};
use remote_agents_protocol::key_proof::{Challenge, KeyProofError};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cluster::Cluster;
use crate::metrics::Rejection;
use crate::outbox::{Drained, Outbox};
use crate::read_ahead::ReadAhead;
use crate::room::Room;
use crate::{JoinRefused, LiveConnection, Relay, error_frame};

type Socket = WebSocketStream<ReadAhead<TokioIo<Upgraded>>>;

/// How long a closing connection waits for the other side before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

async fn close_now(socket: Socket, code: u16, reason: &'static str) {
    close_with(socket, code, reason.to_string()).await;
}

async fn close_with(mut socket: Socket, code: u16, reason: String) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.close(Some(frame))).await;
}

/// Runs one connection from the upgrade to the end.
pub(crate) async fn run(
    relay: Arc<Relay>,
    socket: Socket,
    room_id: Option<RoomId>,
    peer: Option<PeerId>,
    sent_challenge: Option<Challenge>,
) {
    let _live = LiveConnection::new(&relay);
    let (Some(room_id), Some(peer)) = (room_id, peer) else {
        relay.metrics.reject(Rejection::BadRequest);
        close_now(socket, close_code::BAD_REQUEST, "bad room id or peer id").await;
        return;
    };
    let mut socket = socket;
    relay
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    // Boxed: the proof's state is needed once, not for the whole life of the connection.
    if let Err(why) = Box::pin(prove_key(
        &relay,
        &mut socket,
        room_id,
        peer,
        sent_challenge,
    ))
    .await
    {
        if let ProofRefused::Version(version) = why {
            relay.metrics.reject(Rejection::Malformed);
            tracing::info!(%room_id, %peer, version, "refused a peer of another protocol version");
            let reason = format!(
                "protocol version mismatch: the peer speaks {version}, this relay speaks {}",
                frame::FRAME_VERSION
            );
            close_with(socket, close_code::VERSION_MISMATCH, reason).await;
            return;
        }
        relay.metrics.reject(Rejection::KeyProofFailed);
        tracing::info!(%room_id, %peer, %why, "refused a connection that did not prove its peer id");
        close_now(socket, close_code::KEY_PROOF_FAILED, "key proof failed").await;
        return;
    }
    let connection = relay.next_connection.fetch_add(1, Ordering::Relaxed);
    let outbox = Arc::new(Outbox::new(relay.config.max_queued_bytes));
    let room = match relay.join(room_id, peer, connection, &outbox) {
        Ok(room) => room,
        Err(JoinRefused::RoomFull) => {
            close_now(socket, close_code::ROOM_FULL, "room full").await;
            return;
        }
    };
    tracing::debug!(%room_id, %peer, "peer joined");
    let (sink, stream) = socket.split();
    let last_activity = Activity::new();
    // The futures are written inline, not bound to locals first: a moved-from local still takes
    // room in the connection's task, and that task is most of an idle connection's memory.
    tokio::select! {
        _ = async {
            tokio::join!(
                async {
                    read_loop(&relay, (room_id, &room), peer, &outbox, stream, &last_activity).await;
                    outbox.finish();
                },
                async {
                    write_loop(&relay, &outbox, sink, &last_activity).await;
                    outbox.finish();
                },
            )
        } => {}
        _ = async {
            outbox.wait_finished().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => {}
    }
    if outbox.was_slow_reader() {
        relay.metrics.reject(Rejection::SlowReader);
        tracing::info!(%room_id, %peer, "closed a connection that did not read what it was sent");
    }
    relay.leave(room_id, &room, peer, connection);
    tracing::debug!(%room_id, %peer, "peer left");
}

/// Why a connection did not prove the key of its peer id.
#[derive(Debug, thiserror::Error)]
enum ProofRefused {
    #[error("no proof within {0:?}")]
    Timeout(Duration),
    #[error("the connection ended before its proof")]
    Ended,
    #[error("the first frame was {0}, not PROOF")]
    NotProof(String),
    #[error("the peer speaks protocol version {0}")]
    Version(u8),
    #[error(transparent)]
    Invalid(#[from] KeyProofError),
}

/// Sends `CHALLENGE` (unless the upgrade's answer carried it: `sent_challenge`) and waits for a
/// `PROOF` that the connection holds the private key its claimed peer id hashes from. Nothing
/// else is accepted first: until this succeeds the connection is not in the room, so it can
/// neither evict the peer it claims to be nor learn who is present.
async fn prove_key(
    relay: &Relay,
    socket: &mut Socket,
    room_id: RoomId,
    peer: PeerId,
    sent_challenge: Option<Challenge>,
) -> Result<(), ProofRefused> {
    let challenge = match sent_challenge {
        Some(challenge) => challenge,
        None => {
            let challenge = Challenge::new()?;
            let challenge_frame = frame::Frame::challenge(peer, challenge.public_key()).encode();
            if socket.send(Message::Binary(challenge_frame)).await.is_err() {
                return Err(ProofRefused::Ended);
            }
            relay
                .metrics
                .key_proof_frames
                .fetch_add(1, Ordering::Relaxed);
            challenge
        }
    };
    let timeout = relay.config.proof_timeout;
    let proof = tokio::time::timeout(timeout, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    relay
                        .metrics
                        .key_proof_frames
                        .fetch_add(1, Ordering::Relaxed);
                    return match frame::Frame::decode(bytes) {
                        Ok(received) if received.header.kind == FrameKind::Proof => {
                            Ok(received.body)
                        }
                        Ok(received) => {
                            Err(ProofRefused::NotProof(received.header.kind.to_string()))
                        }
                        Err(frame::FrameError::Version(version)) => {
                            Err(ProofRefused::Version(version))
                        }
                        Err(error) => Err(ProofRefused::NotProof(error.to_string())),
                    };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(ProofRefused::NotProof("a text message".into()));
                }
                Some(Ok(_)) | Some(Err(_)) | None => return Err(ProofRefused::Ended),
            }
        }
    })
    .await
    .map_err(|_| ProofRefused::Timeout(timeout))??;
    challenge.verify(&room_id, &peer, &proof)?;
    Ok(())
}

/// When the peer last sent anything; shared by the reader (which touches it) and the writer
/// (which enforces the idle limit). An atomic offset from the start keeps the future `Send`.
struct Activity {
    start: Instant,
    offset_millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            offset_millis: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let millis = self.start.elapsed().as_millis() as u64;
        self.offset_millis.store(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.offset_millis.load(Ordering::Relaxed))
    }
}

struct RateGate {
    limiter: DefaultDirectRateLimiter,
    /// Drops tolerated within one second before the connection is closed with 4029.
    persistent_limit: u32,
    window_start: Instant,
    dropped_in_window: u32,
}

impl RateGate {
    fn new(per_second: u32, burst: u32) -> Option<RateGate> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Some(RateGate {
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            persistent_limit: per_second.get().max(1000),
            window_start: Instant::now(),
            dropped_in_window: 0,
        })
    }

    /// `Ok` to admit the frame, `Err(true)` when this drop makes the abuse persistent.
    fn admit(&mut self) -> Result<(), bool> {
        if self.limiter.check().is_ok() {
            return Ok(());
        }
        let now = Instant::now();
        if now.duration_since(self.window_start) > Duration::from_secs(1) {
            self.window_start = now;
            self.dropped_in_window = 0;
        }
        self.dropped_in_window += 1;
        Err(self.dropped_in_window > self.persistent_limit)
    }
}

async fn read_loop(
    relay: &Relay,
    (room_id, room): (RoomId, &Arc<Room>),
    peer: PeerId,
    outbox: &Outbox,
    mut stream: futures_util::stream::SplitStream<Socket>,
    last_activity: &Activity,
) {
    let mut rate = RateGate::new(relay.config.rate_per_second, relay.config.rate_burst);
    while let Some(message) = stream.next().await {
        last_activity.touch();
        if outbox.is_closing() {
            break;
        }
        match message {
            Ok(Message::Binary(bytes)) => {
                relay.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                relay
                    .metrics
                    .bytes_in
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if let Some(gate) = rate.as_mut()
                    && let Err(persistent) = gate.admit()
                {
                    relay.metrics.reject(Rejection::RateLimited);
                    if persistent {
                        outbox.close(close_code::RATE_LIMITED, "rate limit exceeded persistently");
                        break;
                    }
                    outbox.push_now(error_frame(
                        peer,
                        frame::offending_id(&bytes),
                        error_code::RATE_LIMITED,
                        "rate limited",
                    ));
                    continue;
                }
                // Boxed: routing a frame needs ~0.5 KB of future state that an idle
                // connection would otherwise carry all the time.
                Box::pin(handle_frame(relay, (room_id, room), peer, outbox, bytes)).await;
            }
            Ok(Message::Text(_)) => {
                relay.metrics.reject(Rejection::Malformed);
                outbox.push_now(error_frame(
                    peer,
                    0,
                    error_code::MALFORMED,
                    "text messages are not frames",
                ));
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(WsError::Capacity(_)) => {
                relay.metrics.reject(Rejection::Oversize);
                outbox.close(close_code::TOO_BIG, "frame over the cap");
                break;
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "read failed");
                break;
            }
        }
    }
}

/// Routes one frame. Only the header is read for `DATA` and `BROADCAST`; their bodies are
/// forwarded untouched and never logged.
async fn handle_frame(
    relay: &Relay,
    (room_id, room): (RoomId, &Arc<Room>),
    peer: PeerId,
    outbox: &Outbox,
    bytes: Bytes,
) {
    let reply_error = |code: u16, message: &str, why: Rejection| {
        relay.metrics.reject(why);
        outbox.push_now(error_frame(
            peer,
            frame::offending_id(&bytes),
            code,
            message,
        ));
    };
    let header = match Header::decode(&bytes) {
        Ok(header) => header,
        Err(error) => {
            return reply_error(error.error_code(), &error.to_string(), Rejection::Malformed);
        }
    };
    if !header.kind.is_peer_to_relay() {
        return reply_error(
            error_code::MALFORMED,
            &format!("{} is sent by the relay, not to it", header.kind),
            Rejection::Malformed,
        );
    }
    match header.kind {
        FrameKind::Data => {
            let target = {
                let mut state = room.lock();
                flush_presence_before(relay, &mut state, &peer);
                state
                    .members
                    .get(&header.to)
                    .map(|member| member.outbox.clone())
            };
            let Some(target) = target else {
                // Cluster hook: the destination may be on another instance.
                if let Some(cluster) = &relay.cluster
                    && let Some(sent) = cluster
                        .forward(
                            room_id,
                            header.to,
                            stamp(bytes.clone(), &header, peer, None),
                            relay.config.slow_reader_timeout,
                        )
                        .await
                {
                    count_forwarded(relay, sent, &bytes);
                    return;
                }
                return reply_error(
                    error_code::NOT_FOUND,
                    "destination peer not in the room",
                    Rejection::NotFound,
                );
            };
            let forwarded = stamp(bytes, &header, peer, None);
            forward(relay, &target, forwarded).await;
        }
        FrameKind::Broadcast => {
            let targets: Vec<Arc<Outbox>> = {
                let mut state = room.lock();
                flush_presence_before(relay, &mut state, &peer);
                state
                    .members
                    .iter()
                    .filter(|(other, _)| **other != peer)
                    .map(|(_, member)| member.outbox.clone())
                    .collect()
            };
            let forwarded = stamp(bytes, &header, peer, Some(PeerId::ZERO));
            for target in targets {
                forward(relay, &target, forwarded.clone()).await;
            }
            // Cluster hook: and to the room's peers on other instances.
            if let Some(cluster) = &relay.cluster {
                for other in cluster.remote_peers(&room_id) {
                    let stall = relay.config.slow_reader_timeout;
                    if let Some(sent) = cluster
                        .forward(room_id, other, forwarded.clone(), stall)
                        .await
                    {
                        count_forwarded(relay, sent, &forwarded);
                    }
                }
            }
        }
        FrameKind::Proof => {
            reply_error(
                error_code::MALFORMED,
                "the key was already proven on this connection",
                Rejection::Malformed,
            );
        }
        FrameKind::PresenceGet => {
            let Ok(Body::PresenceGet { subscribe, after }) =
                Body::decode(header.kind, &bytes.slice(frame::HEADER_LEN..))
            else {
                return reply_error(
                    error_code::MALFORMED,
                    "bad PRESENCE_GET body: not a subscribe byte and a 16-byte peer id",
                    Rejection::Malformed,
                );
            };
            // The page is queued under the room lock, as batches are: a change this page
            // misses comes in a later batch, and one it already shows comes again, in order,
            // so a subscriber applying both ends where the room is.
            let mut state = room.lock();
            if subscribe {
                state.subscribe(&peer);
            }
            // Cluster hook: the snapshot also lists the room's peers on other instances.
            let remote = relay.cluster.as_ref().map_or_else(Vec::new, |cluster| {
                cluster.remote_page(&room_id, &after, frame::PRESENCE_PAGE + 1, |other| {
                    *other != peer && !state.members.contains_key(other)
                })
            });
            let page = state.snapshot_page(&peer, &after, &remote);
            outbox.push_now(frame::Frame::presence(peer, header.id, &page).encode());
            drop(state);
            relay
                .metrics
                .presence_frames
                .fetch_add(1, Ordering::Relaxed);
        }
        FrameKind::RetainPut | FrameKind::RetainGet => {
            let body = match Body::decode(header.kind, &bytes.slice(frame::HEADER_LEN..)) {
                Ok(body) => body,
                Err(error) => {
                    return reply_error(
                        error_code::MALFORMED,
                        &error.to_string(),
                        Rejection::Malformed,
                    );
                }
            };
            if let Some(cluster) = &relay.cluster {
                // Cluster hook: retained blobs live in the cluster's key-value bucket.
                cluster_retained(relay, cluster, room_id, peer, outbox, header.id, body).await;
            } else {
                retained(relay, room, peer, outbox, header.id, body);
            }
        }
        _ => unreachable_kind(relay, peer, outbox, header.id),
    }
}

/// Kinds the relay receives are checked by `is_peer_to_relay` before routing; this answers
/// anything else as malformed instead of panicking should the two ever disagree.
fn unreachable_kind(relay: &Relay, peer: PeerId, outbox: &Outbox, id: u64) {
    relay.metrics.reject(Rejection::Malformed);
    outbox.push_now(error_frame(
        peer,
        id,
        error_code::MALFORMED,
        "unexpected kind",
    ));
}

fn retained(relay: &Relay, room: &Room, peer: PeerId, outbox: &Outbox, id: u64, body: Body) {
    match body {
        Body::RetainPut { key, blob } => {
            let stored = room.lock().retain(&key, &blob, &relay.retain_limits());
            match stored {
                Ok(_) => {
                    outbox.push_now(frame::Frame::ack(peer, id, Bytes::new()).encode());
                }
                Err(full) => {
                    relay.metrics.reject(Rejection::RetainedFull);
                    outbox.push_now(error_frame(
                        peer,
                        id,
                        error_code::RETAINED_FULL,
                        full.message(),
                    ));
                }
            }
        }
        Body::RetainGet { key } => {
            let blobs = room.lock().retained(&key);
            for (seq, blob) in &blobs {
                match frame::Frame::retained(peer, id, &key, *seq, blob) {
                    Ok(frame) => {
                        outbox.push_now(frame.encode());
                    }
                    Err(error) => tracing::warn!(%error, "retained blob could not be framed"),
                }
            }
            outbox.push_now(
                frame::Frame::ack(peer, id, frame::retain_get_ack_body(blobs.len() as u32))
                    .encode(),
            );
        }
        _ => unreachable_kind(relay, peer, outbox, id),
    }
}

/// `RETAIN_PUT` and `RETAIN_GET` in cluster mode: the same answers as [`retained`], from the
/// JetStream bucket every instance shares.
async fn cluster_retained(
    relay: &Relay,
    cluster: &Cluster,
    room_id: RoomId,
    peer: PeerId,
    outbox: &Outbox,
    id: u64,
    body: Body,
) {
    match body {
        Body::RetainPut { key, blob } => match cluster.retain(&room_id, &key, blob).await {
            Ok(_) => {
                outbox.push_now(frame::Frame::ack(peer, id, Bytes::new()).encode());
            }
            Err(message) => {
                relay.metrics.reject(Rejection::RetainedFull);
                outbox.push_now(error_frame(peer, id, error_code::RETAINED_FULL, &message));
            }
        },
        Body::RetainGet { key } => match cluster.retained(&room_id, &key).await {
            Ok(blobs) => {
                for (seq, blob) in &blobs {
                    match frame::Frame::retained(peer, id, &key, *seq, blob) {
                        Ok(frame) => {
                            outbox.push_now(frame.encode());
                        }
                        Err(error) => tracing::warn!(%error, "retained blob could not be framed"),
                    }
                }
                outbox.push_now(
                    frame::Frame::ack(peer, id, frame::retain_get_ack_body(blobs.len() as u32))
                        .encode(),
                );
            }
            Err(message) => {
                outbox.push_now(error_frame(peer, id, error_code::RETAINED_FULL, &message));
            }
        },
        _ => unreachable_kind(relay, peer, outbox, id),
    }
}

fn count_forwarded(relay: &Relay, sent: bool, bytes: &Bytes) {
    if sent {
        relay
            .metrics
            .frames_forwarded
            .fetch_add(1, Ordering::Relaxed);
        relay
            .metrics
            .bytes_forwarded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
}

/// Sets `from` to the connection's peer id (and `to`, for broadcasts) in place. Honest senders
/// already wrote both, so the usual case forwards the received bytes without a copy.
fn stamp(bytes: Bytes, header: &Header, peer: PeerId, to: Option<PeerId>) -> Bytes {
    let from_ok = header.from == peer;
    let to_ok = to.is_none_or(|to| header.to == to);
    if from_ok && to_ok {
        return bytes;
    }
    let mut owned = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    frame::overwrite_from(&mut owned, &peer);
    if let Some(to) = to {
        frame::overwrite_to(&mut owned, &to);
    }
    owned.freeze()
}

/// A frame from a peer whose join or leave is still in the room's pending batch sends the
/// batch first: subscribers then hear of a newcomer before its handshake reaches them.
fn flush_presence_before(relay: &Relay, state: &mut crate::room::RoomState, sender: &PeerId) {
    let queued = state.flush_before_frame_from(sender);
    relay
        .metrics
        .presence_frames
        .fetch_add(queued, Ordering::Relaxed);
}

async fn forward(relay: &Relay, target: &Outbox, bytes: Bytes) {
    let length = bytes.len() as u64;
    if target
        .push_wait(
            bytes,
            relay.config.queue_budget,
            relay.config.slow_reader_timeout,
        )
        .await
    {
        relay
            .metrics
            .frames_forwarded
            .fetch_add(1, Ordering::Relaxed);
        relay
            .metrics
            .bytes_forwarded
            .fetch_add(length, Ordering::Relaxed);
    }
}

async fn write_loop(
    relay: &Relay,
    outbox: &Outbox,
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    last_activity: &Activity,
) {
    let ping_interval = relay.config.ping_interval;
    let idle_timeout = relay.config.idle_timeout;
    let mut next_ping = Instant::now() + ping_interval;
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    loop {
        match outbox.drain_into(&mut batch) {
            Drained::Frames => {
                relay
                    .metrics
                    .frames_out
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for frame in batch.drain(..) {
                    if sink.feed(Message::Binary(frame)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
                // Give back what a burst grew (the join storm of a big room leaves ~100 presence
                // frames' worth): the batch and the queue swap places, so an unshrunk batch would
                // stay with an idle connection for good. Regrowing costs a few reallocations
                // per burst, nothing next to the writes.
                if batch.capacity() > 16 {
                    batch = VecDeque::new();
                }
                continue;
            }
            Drained::Close(close) => {
                let frame = CloseFrame {
                    code: CloseCode::from(close.code),
                    reason: close.reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            Drained::Finished => {
                let _ = sink.close().await;
                return;
            }
            Drained::Empty => {}
        }
        let idle_deadline = last_activity.last() + idle_timeout;
        tokio::select! {
            _ = outbox.writer_wakeup() => {}
            _ = tokio::time::sleep_until(next_ping.min(idle_deadline)) => {
                let now = Instant::now();
                if now >= last_activity.last() + idle_timeout {
                    relay.metrics.reject(Rejection::IdleTimeout);
                    outbox.close(close_code::IDLE_TIMEOUT, "idle timeout");
                } else if now >= next_ping {
                    next_ping = now + ping_interval;
                    if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
