//! The relay's frame handling: frames sent by a room member to an in-process relay (the real
//! `remote_agents_relay::serve` on 127.0.0.1:0, reached through the conformance suite's client,
//! so the harness follows whatever joining a room takes). Peer `a` sends each input's frames;
//! peer `b` is in the room to receive what is routed. After the frames, `a` sends a marker
//! `RETAIN_GET` and waits for its `ACK`: the relay handles one connection's frames in order, so
//! then every frame was handled. A panic anywhere in the relay aborts (libFuzzer's panic hook).
//!
//! Input: frames, each `len:u16 (big-endian)` then its bytes. A `to` of all `0xBB` bytes is
//! replaced by `b`'s peer id, so seeds and found inputs name `b` whatever its id is.
#![no_main]

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use remote_agents_protocol::frame::{self, Frame, FrameKind, PeerId, RoomId};
use remote_agents_relay::RelayConfig;
use remote_agents_tests::relay::{Event, RelayClient, TestRelay, random_peer, random_room};

/// `to` in a fuzz input that stands for peer `b`.
const PLACEHOLDER_B: PeerId = PeerId([0xBB; 16]);
/// How long one input may take before the harness calls the relay stuck.
const MARKER_DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    runtime: tokio::runtime::Runtime,
    relay: TestRelay,
    room: RoomId,
    a: Option<RelayClient>,
    b_id: PeerId,
    next_marker: u64,
}

impl Harness {
    fn start() -> Harness {
        // One thread: the relay's tasks and the clients interleave the same way on every run.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let config = RelayConfig {
            // The fuzzer sends as fast as it can: no rate limit, and no idle timeout while
            // libFuzzer is between inputs and the runtime does not run.
            rate_per_second: 0,
            ping_interval: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(7200),
            ..RelayConfig::default()
        };
        let room = random_room();
        let (relay, b_id) = runtime.block_on(async {
            let relay = TestRelay::start_with(config).await.expect("relay starts");
            let mut b = relay.connect(&room, random_peer()).await.expect("b joins");
            b.welcome().await.expect("b is welcomed");
            let b_id = b.peer;
            // `b` reads everything routed to it, so the relay never waits on a full queue.
            tokio::spawn(async move {
                while let Ok(event) = b.next_event_within(Duration::from_secs(86_400)).await {
                    if matches!(event, Event::Closed(_)) {
                        break;
                    }
                }
            });
            (relay, b_id)
        });
        Harness {
            runtime,
            relay,
            room,
            a: None,
            b_id,
            next_marker: 1 << 63,
        }
    }

    fn run(&mut self, data: &[u8]) {
        let marker_id = self.next_marker;
        self.next_marker += 1;
        let mut frames = Vec::new();
        let mut rest = data;
        while rest.len() >= 2 {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let body = &rest[2..];
            let (frame, after) = body.split_at(len.min(body.len()));
            let mut frame = frame.to_vec();
            if frame.len() >= frame::HEADER_LEN && frame[18..34] == PLACEHOLDER_B.0 {
                frame::overwrite_to(&mut frame, &self.b_id);
            }
            frames.push(Bytes::from(frame));
            rest = after;
        }
        let Harness {
            runtime,
            relay,
            room,
            a,
            ..
        } = self;
        runtime.block_on(async {
            let mut client = match a.take() {
                Some(client) => client,
                None => {
                    let mut client = relay.connect(room, random_peer()).await.expect("a joins");
                    client.welcome().await.expect("a is welcomed");
                    client
                }
            };
            for bytes in frames {
                if client.feed_bytes(bytes).await.is_err() {
                    return; // The relay closed the connection: the next input reconnects.
                }
            }
            let marker = Frame::retain_get(marker_id, b"fuzz-marker").expect("a small key");
            if client.feed_bytes(marker.encode()).await.is_err() || client.flush().await.is_err() {
                return;
            }
            loop {
                match client.next_event_within(MARKER_DEADLINE).await {
                    Ok(Event::Frame(frame))
                        if frame.header.kind == FrameKind::Ack && frame.header.id == marker_id =>
                    {
                        *a = Some(client);
                        return;
                    }
                    Ok(Event::Frame(_)) => continue,
                    Ok(Event::Closed(_)) => return,
                    Err(error) => panic!("the relay did not answer the marker: {error}"),
                }
            }
        });
    }
}

fuzz_target!(|data: &[u8]| {
    static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);
    let mut harness = HARNESS.lock().unwrap_or_else(|poison| poison.into_inner());
    harness.get_or_insert_with(Harness::start).run(data);
});
