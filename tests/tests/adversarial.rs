//! A malicious relay: a man-in-the-middle proxy in front of the real relay records every DATA
//! frame it delivers, then flips bits, replays frames seconds later and after a node restart,
//! re-routes frames to another peer and injects forged frames. The nodes must accept none of
//! them and count (and log) every rejection. Also: plaintext canaries never show up in the relay
//! process's memory, its logs or its retained blobs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use remote_agents_protocol::frame::{HEADER_LEN, PeerId};
use remote_agents_protocol::session::{SessionConfig, Sessions, StaticKeypair};
use remote_agents_relay::RelayConfig;
use remote_agents_tests::net::{
    DEADLINE, MitmProxy, Recorded, RestartableRelay, TestNode, wait_until,
};

const BODY_HELLO: u8 = 1;
const BODY_TRANSPORT: u8 = 4;

struct Room {
    nodes: Vec<TestNode>,
}

impl Room {
    fn rejected(&self) -> u64 {
        self.nodes.iter().map(|node| node.net.rejected()).sum()
    }

    fn accepted(&self) -> u64 {
        self.nodes
            .iter()
            .map(|node| node.net.counters().accepted.load(Ordering::SeqCst))
            .sum()
    }

    fn handled(&self) -> u64 {
        self.nodes
            .iter()
            .map(|node| node.handler.requests.load(Ordering::SeqCst))
            .sum()
    }

    fn index_of(&self, peer: PeerId) -> usize {
        self.nodes
            .iter()
            .position(|node| node.peer_id() == peer)
            .expect("a node of the room")
    }

    /// Some honest traffic: every node calls every other one.
    async fn traffic(&self, round: usize) {
        for caller in &self.nodes {
            for callee in &self.nodes {
                if caller.peer_id() == callee.peer_id() {
                    continue;
                }
                let request = format!("round {round}").into_bytes();
                let mut call = caller
                    .net
                    .call(callee.peer_id(), request.clone(), DEADLINE)
                    .await
                    .unwrap();
                assert_eq!(call.collect().await.unwrap().1, request);
                let mut call = caller
                    .net
                    .call(callee.peer_id(), b"stream:3".to_vec(), DEADLINE)
                    .await
                    .unwrap();
                assert_eq!(call.collect().await.unwrap().0.len(), 3);
            }
        }
    }

    /// Injects `frames` and checks that exactly `frames.len()` rejections follow and that no
    /// message was accepted and no handler ran meanwhile.
    async fn inject_expecting_rejection(
        &self,
        proxy: &MitmProxy,
        what: &str,
        frames: Vec<(PeerId, Vec<u8>)>,
    ) {
        assert!(!frames.is_empty(), "{what}: nothing to inject");
        let (rejected, accepted, handled) = (self.rejected(), self.accepted(), self.handled());
        let count = frames.len() as u64;
        for (to, frame) in frames {
            proxy.inject(to, frame).unwrap();
        }
        wait_until(what, || self.rejected() >= rejected + count)
            .await
            .unwrap();
        assert_eq!(
            self.rejected(),
            rejected + count,
            "{what}: one rejection per frame"
        );
        assert_eq!(
            self.accepted(),
            accepted,
            "{what}: a tampered frame was accepted"
        );
        assert_eq!(self.handled(), handled, "{what}: a handler ran");
    }
}

fn body_type(recorded: &Recorded) -> u8 {
    recorded.frame[HEADER_LEN]
}

/// Frames worth replaying: everything but Hellos, which are unauthenticated hints by design
/// (their only effect is to ask for a fresh authenticated handshake).
fn replayable(recorded: &[Recorded]) -> Vec<(PeerId, Vec<u8>)> {
    recorded
        .iter()
        .filter(|r| body_type(r) != BODY_HELLO)
        .map(|r| (r.to, r.frame.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampering_relay_gets_nothing_accepted() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let proxy = MitmProxy::start(&relay.url()).await.unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(
            TestNode::start(&proxy.url, "lab", &dirs.path().join(name), name)
                .await
                .unwrap(),
        );
    }
    let mut room = Room { nodes };
    for node in &room.nodes {
        node.net.wait_for_peers(2, DEADLINE).await.unwrap();
    }
    room.traffic(0).await;
    assert_eq!(room.rejected(), 0, "honest traffic must not be rejected");
    let recorded_at = Instant::now();
    let recorded = proxy.recorded();
    let transports: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| body_type(r) == BODY_TRANSPORT)
        .collect();
    assert!(
        transports.len() >= 24,
        "{} transport frames",
        transports.len()
    );

    // 1. Bit flips anywhere after version and kind (those two turn a frame into relay control
    //    traffic, which the relay may send anyway): from, to, id, body type, index, ciphertext, tag.
    let mut flipped = Vec::new();
    for (n, recorded) in recorded
        .iter()
        .filter(|r| body_type(r) != BODY_HELLO)
        .enumerate()
    {
        for salt in [0usize, 1, 2] {
            let bits = (recorded.frame.len() - 2) * 8;
            let bit = 16 + (n * 7919 + salt * 104_729) % bits;
            let mut frame = recorded.frame.clone();
            frame[bit / 8] ^= 1 << (bit % 8);
            flipped.push((recorded.to, frame));
        }
    }
    room.inject_expecting_rejection(&proxy, "bit-flipped frames", flipped)
        .await;

    // 2. Replays seconds later, with honest traffic in between.
    let mut round = 1;
    while recorded_at.elapsed() < Duration::from_secs(2) {
        room.traffic(round).await;
        round += 1;
    }
    room.inject_expecting_rejection(
        &proxy,
        "frames replayed seconds later",
        replayable(&recorded),
    )
    .await;

    // 3. Re-routing: frames for one peer delivered to another, with `to` rewritten or not.
    let mut rerouted = Vec::new();
    for recorded in &transports {
        let target = (room.index_of(recorded.to) + 1) % room.nodes.len();
        let other = room.nodes[target].peer_id();
        rerouted.push((other, recorded.frame.clone()));
        let mut rewritten = recorded.frame.clone();
        rewritten[18..34].copy_from_slice(&other.0);
        rerouted.push((other, rewritten));
    }
    room.inject_expecting_rejection(&proxy, "re-routed frames", rerouted)
        .await;

    // 4. Forged frames: random ciphertext under real session indexes, and a handshake that
    //    claims to come from node a but is made with another key.
    let mut forged = Vec::new();
    for (n, recorded) in transports.iter().enumerate() {
        let mut frame = recorded.frame.clone();
        for (i, byte) in frame[HEADER_LEN + 5..].iter_mut().enumerate() {
            *byte = (n * 31 + i * 17) as u8;
        }
        forged.push((recorded.to, frame));
    }
    let a_id = room.nodes[0].peer_id();
    let b_id = room.nodes[1].peer_id();
    let b_public = room.nodes[0]
        .net
        .peers()
        .into_iter()
        .find(|peer| peer.peer_id == b_id)
        .unwrap()
        .public_key;
    // Only the lower peer id initiates: pick an impostor key below b's.
    let impostor_key = loop {
        let key = StaticKeypair::generate().unwrap();
        if key.peer_id() < b_id {
            break key;
        }
    };
    let mut impostor = Sessions::new(
        impostor_key,
        remote_agents_tests::net::test_psk(),
        Vec::new(),
        SessionConfig::default(),
        Instant::now(),
        u64::MAX / 2,
    );
    // Teach the impostor b's key with a Hello, then let it initiate towards b.
    let mut hello = vec![0u8; HEADER_LEN];
    hello[0] = remote_agents_protocol::frame::FRAME_VERSION;
    hello[1] = 1;
    hello[2..18].copy_from_slice(&b_id.0);
    hello[18..34].copy_from_slice(&impostor.local_id().0);
    hello.extend_from_slice(&[BODY_HELLO, 0]);
    hello.extend_from_slice(&b_public);
    impostor.receive(&hello, Instant::now()).unwrap();
    let before = forged.len();
    while let Some(out) = impostor.poll_transmit() {
        let mut frame = out.frame;
        frame[2..18].copy_from_slice(&a_id.0);
        forged.push((b_id, frame));
    }
    assert_eq!(forged.len(), before + 1, "the impostor's initiation");
    room.inject_expecting_rejection(&proxy, "forged frames", forged)
        .await;

    // 5. Node a restarts with the same identity; everything recorded before is replayed to
    //    everyone, including frames addressed to the old incarnation of a.
    let old_a = room.nodes.remove(0);
    old_a.stop();
    old_a
        .net
        .wait_for_state(DEADLINE, |state| {
            *state == remote_agents_node::net::ConnectionState::Stopped
        })
        .await
        .unwrap();
    drop(old_a);
    let new_a = TestNode::start(&proxy.url, "lab", &dirs.path().join("a"), "a")
        .await
        .unwrap();
    room.nodes.insert(0, new_a);
    for node in &room.nodes {
        wait_until("the restarted node to be authenticated again", || {
            node.net.peers().len() == 2
        })
        .await
        .unwrap();
    }
    room.traffic(round).await;
    room.inject_expecting_rejection(
        &proxy,
        "frames replayed after a node restart",
        replayable(&recorded),
    )
    .await;
    // The room still works after all of it.
    room.traffic(round + 1).await;
}

/// Counts occurrences of `needle` in the file with grep (fast on a core file of any size).
fn occurrences(path: &std::path::Path, needle: &str) -> usize {
    let output = std::process::Command::new("grep")
        .args(["-a", "-F", "-c", needle])
        .arg(path)
        .output()
        .expect("run grep");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_canaries_never_reach_relay_memory_or_logs() {
    // The relay binary as its own process, logging as much as it can.
    let relay = remote_agents_tests::relay::RelayProcess::start(&[], &[("RUST_LOG", "trace")])
        .await
        .unwrap();
    let url = format!("ws://{}", relay.address);
    let dirs = tempfile::tempdir().unwrap();
    let canary = format!("CANARY-{}-PLAINTEXT", uuid::Uuid::new_v4().simple());
    let name_canary = format!("canary-host-{}", uuid::Uuid::new_v4().simple());
    let a = TestNode::start(&url, "lab", &dirs.path().join("a"), &name_canary)
        .await
        .unwrap();
    let b = TestNode::start(&url, "lab", &dirs.path().join("b"), "b")
        .await
        .unwrap();
    a.net.wait_for_peers(1, DEADLINE).await.unwrap();
    b.net.wait_for_peers(1, DEADLINE).await.unwrap();
    assert_eq!(b.net.peers()[0].announcement.name, name_canary);
    // Small requests and responses, streamed chunks, and a multi-frame payload full of canaries.
    for _ in 0..50 {
        let mut call = a
            .net
            .call(b.peer_id(), canary.clone().into_bytes(), DEADLINE)
            .await
            .unwrap();
        assert_eq!(call.collect().await.unwrap().1, canary.as_bytes());
    }
    let large = canary.repeat(3 * 1024 * 1024 / canary.len());
    let mut call = b
        .net
        .call(a.peer_id(), large.clone().into_bytes(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(call.collect().await.unwrap().1, large.as_bytes());
    assert_eq!(b.net.broadcast(canary.clone().into_bytes()).await, 1);
    wait_until("the broadcast canary", || {
        !a.handler.notifications.lock().unwrap().is_empty()
    })
    .await
    .unwrap();

    // Dump the live relay's memory with gdb's gcore.
    let pid = relay.child.id().expect("relay pid");
    let core_prefix = dirs.path().join("relay-core");
    let status = std::process::Command::new("gcore")
        .arg("-o")
        .arg(&core_prefix)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run gcore (from gdb)");
    assert!(status.success(), "gcore failed");
    let core = dirs.path().join(format!("relay-core.{pid}"));
    let size = std::fs::metadata(&core).unwrap().len();
    assert!(size > 1024 * 1024, "core file of {size} bytes");
    // Self-check of the method: the relay's own strings are found in the dump.
    assert!(
        occurrences(&core, "remote-agents") > 0,
        "search works on the dump"
    );
    for needle in [&canary, &name_canary] {
        assert_eq!(
            occurrences(&core, needle),
            0,
            "{needle} found in relay memory"
        );
    }
    // The node's own memory holds them, of course; the relay's logs do not.
    let logs = relay.logs();
    assert!(!logs.is_empty(), "the relay logged at trace level");
    assert!(!logs.contains(&canary) && !logs.contains(&name_canary));
}
