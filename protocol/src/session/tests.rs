//! Unit tests of the session state machine: two in-memory peers, frames passed by hand.

use super::*;

fn psk(token: &str) -> Psk {
    // Explicit keys keep the tests fast; Argon2 derivation is tested in `psk`.
    let mut key = [0u8; 32];
    for (slot, byte) in key.iter_mut().zip(token.bytes().cycle()) {
        *slot = byte;
    }
    Psk::from_bytes(&key).unwrap()
}

fn node(
    keypair: StaticKeypair,
    token: &str,
    name: &str,
    config: SessionConfig,
    now: Instant,
) -> Sessions {
    let unix_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    Sessions::new(
        keypair,
        psk(token),
        name.as_bytes().to_vec(),
        config,
        now,
        unix_nanos,
    )
}

struct Pair {
    a: Sessions,
    b: Sessions,
    a_key: StaticKeypair,
    b_key: StaticKeypair,
    now: Instant,
}

impl Pair {
    fn new(config: SessionConfig, b_token: &str) -> Self {
        let now = Instant::now();
        let a_key = StaticKeypair::generate().unwrap();
        let b_key = StaticKeypair::generate().unwrap();
        Pair {
            a: node(a_key.clone(), "room token", "a", config.clone(), now),
            b: node(b_key.clone(), b_token, "b", config, now),
            a_key,
            b_key,
            now,
        }
    }

    /// Delivers frames both ways until both outboxes are empty; returns what each side received.
    fn pump(&mut self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Rejection>) {
        let (mut at_a, mut at_b, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..100 {
            let mut moved = false;
            while let Some(out) = self.a.poll_transmit() {
                moved = true;
                match self.b.receive(&out.frame, self.now) {
                    Ok(Some((_, plaintext))) => at_b.push(plaintext),
                    Ok(None) => {}
                    Err(rejection) => rejected.push(rejection),
                }
            }
            while let Some(out) = self.b.poll_transmit() {
                moved = true;
                match self.a.receive(&out.frame, self.now) {
                    Ok(Some((_, plaintext))) => at_a.push(plaintext),
                    Ok(None) => {}
                    Err(rejection) => rejected.push(rejection),
                }
            }
            if !moved {
                break;
            }
        }
        (at_a, at_b, rejected)
    }

    fn connect(&mut self) {
        self.a.peer_present(self.b.local_id(), self.now);
        self.b.peer_present(self.a.local_id(), self.now);
        let (_, _, rejected) = self.pump();
        assert!(rejected.is_empty(), "{rejected:?}");
        assert!(self.a.is_established(&self.b.local_id(), self.now));
        assert!(self.b.is_established(&self.a.local_id(), self.now));
    }

    /// Seals one message from a to b and returns the frame without delivering it.
    fn seal_a_to_b(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.a.send(self.b.local_id(), plaintext, self.now).unwrap();
        // The data frame comes first; a rekey may queue a handshake frame behind it.
        let out = self.a.poll_transmit().expect("a frame");
        assert_eq!(out.frame[HEADER_LEN], TYPE_TRANSPORT);
        out.frame
    }
}

fn established_events(sessions: &mut Sessions) -> Vec<Vec<u8>> {
    let mut announcements = Vec::new();
    while let Some(event) = sessions.poll_event() {
        if let Event::Established { announcement, .. } = event {
            announcements.push(announcement);
        }
    }
    announcements
}

#[test]
fn keypair_round_trips_through_its_private_half() {
    let keypair = StaticKeypair::generate().unwrap();
    let again = StaticKeypair::from_private(&keypair.private).unwrap();
    assert_eq!(keypair.public, again.public);
    assert_eq!(keypair.peer_id(), peer_id_from_public_key(&keypair.public));
    assert!(!format!("{keypair:?}").contains(&hex::encode(keypair.private)));
}

#[test]
fn handshake_establishes_both_sides_and_carries_announcements() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    pair.connect();
    assert_eq!(established_events(&mut pair.a), vec![b"b".to_vec()]);
    assert_eq!(established_events(&mut pair.b), vec![b"a".to_vec()]);
    let b = pair.b.local_id();
    let a = pair.a.local_id();
    pair.a.send(b, b"ping", pair.now).unwrap();
    pair.b.send(a, b"pong", pair.now).unwrap();
    let (at_a, at_b, rejected) = pair.pump();
    assert_eq!(at_b, vec![b"ping".to_vec()]);
    assert_eq!(at_a, vec![b"pong".to_vec()]);
    assert!(rejected.is_empty());
}

#[test]
fn messages_sent_before_the_handshake_are_queued_and_delivered_in_order() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    let (a, b) = (pair.a.local_id(), pair.b.local_id());
    // Both sides send first, with no presence events at all: on-demand handshakes.
    pair.a.send(b, b"one", pair.now).unwrap();
    pair.a.send(b, b"two", pair.now).unwrap();
    pair.b.send(a, b"three", pair.now).unwrap();
    let (at_a, at_b, rejected) = pair.pump();
    assert_eq!(at_b, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(at_a, vec![b"three".to_vec()]);
    assert!(rejected.is_empty(), "{rejected:?}");
}

#[test]
fn every_flipped_bit_in_header_or_body_is_rejected() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    pair.connect();
    let frame = pair.seal_a_to_b(b"the canary is safe");
    for bit in 0..frame.len() * 8 {
        let mut tampered = frame.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let result = pair.b.receive(&tampered, pair.now);
        assert!(
            result.is_err(),
            "bit {bit} flipped was accepted: {result:?}"
        );
    }
    // The untouched frame still authenticates: rejections did not poison the replay window.
    let (peer, plaintext) = pair.b.receive(&frame, pair.now).unwrap().unwrap();
    assert_eq!(peer, pair.a.local_id());
    assert_eq!(plaintext, b"the canary is safe");
}

#[test]
fn replayed_frames_are_rejected() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    pair.connect();
    let frame = pair.seal_a_to_b(b"once");
    assert!(pair.b.receive(&frame, pair.now).unwrap().is_some());
    assert_eq!(pair.b.receive(&frame, pair.now), Err(Rejection::Replay));
    assert_eq!(pair.b.receive(&frame, pair.now), Err(Rejection::Replay));
}

#[test]
fn reordered_frames_within_the_window_are_accepted_and_older_ones_are_not() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    pair.connect();
    let frames: Vec<Vec<u8>> = (0..200u32)
        .map(|i| pair.seal_a_to_b(&i.to_be_bytes()))
        .collect();
    for (i, frame) in frames.iter().enumerate().rev() {
        let (_, plaintext) = pair.b.receive(frame, pair.now).unwrap().unwrap();
        assert_eq!(plaintext, (i as u32).to_be_bytes());
    }
    let late = pair.seal_a_to_b(b"late");
    let newer: Vec<Vec<u8>> = (0..REPLAY_WINDOW + 10)
        .map(|_| pair.seal_a_to_b(b"x"))
        .collect();
    assert!(
        pair.b
            .receive(newer.last().unwrap(), pair.now)
            .unwrap()
            .is_some()
    );
    assert_eq!(pair.b.receive(&late, pair.now), Err(Rejection::Replay));
    // Frames just inside the window still pass, out of order.
    assert!(pair.b.receive(&newer[20], pair.now).unwrap().is_some());
    assert!(pair.b.receive(&newer[15], pair.now).unwrap().is_some());
}

#[test]
fn wrong_psk_never_establishes_and_gives_up() {
    let config = SessionConfig {
        handshake_attempts: 3,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config.clone(), "another token");
    let b = pair.b.local_id();
    pair.a.peer_present(b, pair.now);
    pair.b.peer_present(pair.a.local_id(), pair.now);
    pair.a.send(b, b"secret", pair.now).unwrap();
    let (_, at_b, rejected) = pair.pump();
    assert!(at_b.is_empty());
    assert!(!rejected.is_empty());
    assert!(!pair.a.is_established(&b, pair.now));
    assert!(!pair.b.is_established(&pair.a.local_id(), pair.now));
    let mut failed = None;
    for _ in 0..10 {
        pair.now += config.handshake_retry;
        pair.a.handle_timeout(pair.now);
        pair.b.handle_timeout(pair.now);
        let (_, at_b, _) = pair.pump();
        assert!(at_b.is_empty());
        while let Some(event) = pair.a.poll_event() {
            if let Event::HandshakeFailed { peer, dropped } = event {
                failed = Some((peer, dropped));
            }
        }
        if failed.is_some() {
            break;
        }
    }
    assert_eq!(failed, Some((b, 1)));
}

#[test]
fn rekey_after_messages_runs_a_new_handshake_without_losing_messages() {
    let config = SessionConfig {
        rekey_after_messages: 10,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config, "room token");
    pair.connect();
    established_events(&mut pair.a);
    established_events(&mut pair.b);
    let b = pair.b.local_id();
    let mut received = Vec::new();
    let mut indexes = std::collections::BTreeSet::new();
    for i in 0..50u32 {
        let frame = pair.seal_a_to_b(&i.to_be_bytes());
        indexes.insert(u32::from_be_bytes(
            frame[HEADER_LEN + 1..HEADER_LEN + 5].try_into().unwrap(),
        ));
        received.push(pair.b.receive(&frame, pair.now).unwrap().unwrap().1);
        let (_, at_b, rejected) = pair.pump();
        assert!(rejected.is_empty(), "{rejected:?}");
        received.extend(at_b);
    }
    let expected: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(received, expected);
    assert!(indexes.len() >= 4, "sessions used: {indexes:?}");
    assert!(established_events(&mut pair.a).len() >= 3);
    assert!(pair.a.is_established(&b, pair.now));
}

#[test]
fn rekey_after_time() {
    let config = SessionConfig::default();
    let mut pair = Pair::new(config.clone(), "room token");
    pair.connect();
    established_events(&mut pair.a);
    pair.now += config.rekey_after + Duration::from_secs(1);
    let frame = pair.seal_a_to_b(b"old session still fine");
    assert!(pair.b.receive(&frame, pair.now).unwrap().is_some());
    pair.pump();
    assert_eq!(established_events(&mut pair.a).len(), 1);
    // Past the old session's reject_after only the new session works.
    pair.now += config.reject_after - config.rekey_after;
    let frame = pair.seal_a_to_b(b"new session");
    assert!(pair.b.receive(&frame, pair.now).unwrap().is_some());
}

#[test]
fn frames_of_a_restarted_peer_s_old_incarnation_are_rejected() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    pair.connect();
    let delivered = pair.seal_a_to_b(b"before restart, delivered");
    assert!(pair.b.receive(&delivered, pair.now).unwrap().is_some());
    let withheld = pair.seal_a_to_b(b"before restart, withheld");
    // a restarts with the same identity; b only learns of it through the new handshake.
    pair.now += Duration::from_secs(1);
    pair.a = node(
        pair.a_key.clone(),
        "room token",
        "a",
        SessionConfig::default(),
        pair.now,
    );
    pair.a.peer_present(pair.b.local_id(), pair.now);
    pair.b.peer_present(pair.a.local_id(), pair.now);
    let (_, _, rejected) = pair.pump();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert!(pair.b.is_established(&pair.a.local_id(), pair.now));
    assert_eq!(
        pair.b.receive(&delivered, pair.now),
        Err(Rejection::UnknownSession)
    );
    assert_eq!(
        pair.b.receive(&withheld, pair.now),
        Err(Rejection::UnknownSession)
    );
    let fresh = pair.seal_a_to_b(b"after restart");
    assert!(pair.b.receive(&fresh, pair.now).unwrap().is_some());
    let _ = &pair.b_key;
}

#[test]
fn replayed_handshake_messages_do_not_disturb_the_session() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    let (a, b) = (pair.a.local_id(), pair.b.local_id());
    // Capture the whole handshake.
    pair.a.peer_present(b, pair.now);
    pair.b.peer_present(a, pair.now);
    let mut captured = Vec::new();
    for _ in 0..10 {
        while let Some(out) = pair.a.poll_transmit() {
            captured.push(out.frame.clone());
            let _ = pair.b.receive(&out.frame, pair.now);
        }
        while let Some(out) = pair.b.poll_transmit() {
            captured.push(out.frame.clone());
            let _ = pair.a.receive(&out.frame, pair.now);
        }
    }
    assert!(pair.a.is_established(&b, pair.now) && pair.b.is_established(&a, pair.now));
    for frame in &captured {
        let target = if frame[18..34] == a.0 {
            &mut pair.a
        } else {
            &mut pair.b
        };
        let result = target.receive(frame, pair.now);
        assert!(!matches!(result, Ok(Some(_))), "replay produced a message");
    }
    // Replayed Hellos may trigger a fresh handshake: let it finish and check traffic still flows.
    pair.pump();
    pair.a.send(b, b"still works", pair.now).unwrap();
    let (_, at_b, _) = pair.pump();
    assert_eq!(at_b, vec![b"still works".to_vec()]);
}

#[test]
fn a_frame_re_routed_to_another_peer_is_rejected() {
    let now = Instant::now();
    let config = SessionConfig::default();
    let keys: Vec<StaticKeypair> = (0..3).map(|_| StaticKeypair::generate().unwrap()).collect();
    let mut nodes: Vec<Sessions> = keys
        .iter()
        .map(|key| node(key.clone(), "room token", "n", config.clone(), now))
        .collect();
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.local_id()).collect();
    // Establish 0<->1 and 0<->2.
    for target in [1, 2] {
        nodes[0].send(ids[target], b"hi", now).unwrap();
        for _ in 0..10 {
            while let Some(out) = nodes[0].poll_transmit() {
                let index = ids.iter().position(|id| *id == out.to).unwrap();
                let _ = nodes[index].receive(&out.frame, now);
            }
            for index in [1, 2] {
                while let Some(out) = nodes[index].poll_transmit() {
                    let _ = nodes[0].receive(&out.frame, now);
                }
            }
        }
    }
    nodes[0].send(ids[1], b"for one only", now).unwrap();
    let frame = nodes[0].poll_transmit().unwrap().frame;
    // The relay rewrites `to` (and could rewrite `from`): node 2 must refuse it either way.
    let mut rerouted = frame.clone();
    rerouted[18..34].copy_from_slice(&ids[2].0);
    assert!(nodes[2].receive(&rerouted, now).is_err());
    // Claiming to come from node 2 towards node 1 fails as well.
    let mut spoofed = frame.clone();
    spoofed[2..18].copy_from_slice(&ids[2].0);
    assert!(nodes[1].receive(&spoofed, now).is_err());
    assert!(nodes[1].receive(&frame, now).unwrap().is_some());
}

#[test]
fn oversized_plaintext_is_refused_locally() {
    let mut pair = Pair::new(SessionConfig::default(), "room token");
    pair.connect();
    let b = pair.b.local_id();
    let result = pair.a.send(b, &vec![0u8; MAX_PLAINTEXT + 1], pair.now);
    assert_eq!(result, Err(SessionError::TooLarge(MAX_PLAINTEXT + 1)));
    pair.a.send(b, &vec![0u8; MAX_PLAINTEXT], pair.now).unwrap();
    let frame = pair.a.poll_transmit().unwrap().frame;
    assert_eq!(frame.len(), MAX_FRAME_DEFAULT);
}

#[test]
fn lazy_peers_handshake_only_when_an_eager_peer_reaches_out_or_on_first_send() {
    let lazy = SessionConfig {
        eager_handshakes: false,
        ..SessionConfig::default()
    };
    // Two lazy peers present to each other exchange nothing.
    let mut pair = Pair::new(lazy.clone(), "room token");
    pair.a.peer_present(pair.b.local_id(), pair.now);
    pair.b.peer_present(pair.a.local_id(), pair.now);
    assert!(pair.a.poll_transmit().is_none() && pair.b.poll_transmit().is_none());
    // The first message starts the handshake and is delivered once it completes.
    let b = pair.b.local_id();
    pair.a.send(b, b"first", pair.now).unwrap();
    let (_, at_b, rejected) = pair.pump();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(at_b, vec![b"first".to_vec()]);

    // An eager peer meets a lazy one, whichever has the lower peer id (both orders covered).
    let mut orders_seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let now = Instant::now();
        let eager_key = StaticKeypair::generate().unwrap();
        let quiet_key = StaticKeypair::generate().unwrap();
        let order = eager_key.peer_id() < quiet_key.peer_id();
        if !orders_seen.insert(order) {
            continue;
        }
        let eager = node(
            eager_key.clone(),
            "room token",
            "eager",
            SessionConfig::default(),
            now,
        );
        let quiet = node(quiet_key.clone(), "room token", "quiet", lazy.clone(), now);
        let mut pair = Pair {
            a: eager,
            b: quiet,
            a_key: eager_key,
            b_key: quiet_key,
            now,
        };
        pair.a.peer_present(pair.b.local_id(), pair.now);
        pair.b.peer_present(pair.a.local_id(), pair.now);
        let (_, _, rejected) = pair.pump();
        assert!(rejected.is_empty(), "{rejected:?}");
        assert!(
            pair.a.is_established(&pair.b.local_id(), pair.now),
            "eager lower: {order}"
        );
        assert!(
            pair.b.is_established(&pair.a.local_id(), pair.now),
            "eager lower: {order}"
        );
        if orders_seen.len() == 2 {
            break;
        }
    }
    assert_eq!(orders_seen.len(), 2);
}

#[test]
fn a_lazy_peer_that_meets_the_room_authenticates_both_sides_without_a_message() {
    let lazy = SessionConfig {
        eager_handshakes: false,
        ..SessionConfig::default()
    };
    // Both id orders: the lower id initiates, the higher one asks for an initiation.
    for meets_first in [true, false] {
        let mut pair = Pair::new(lazy.clone(), "room token");
        let (a, b) = (pair.a.local_id(), pair.b.local_id());
        pair.a.peer_present(b, pair.now);
        pair.b.peer_present(a, pair.now);
        if meets_first {
            pair.a.meet(b, pair.now);
        } else {
            pair.b.meet(a, pair.now);
        }
        let (at_a, at_b, rejected) = pair.pump();
        assert!(rejected.is_empty(), "{rejected:?}");
        assert!(at_a.is_empty() && at_b.is_empty());
        assert!(
            pair.a.is_established(&b, pair.now),
            "a meets: {meets_first}"
        );
        assert!(
            pair.b.is_established(&a, pair.now),
            "a meets: {meets_first}"
        );
        let mut established = 0;
        for events in [&mut pair.a, &mut pair.b] {
            while let Some(event) = events.poll_event() {
                established += usize::from(matches!(event, Event::Established { .. }));
            }
        }
        assert_eq!(established, 2);
        // Meeting an established peer sends nothing.
        pair.a.meet(b, pair.now);
        assert!(pair.a.poll_transmit().is_none());
    }
}
