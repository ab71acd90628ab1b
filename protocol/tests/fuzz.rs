//! Stable-toolchain fuzzing of every parser of untrusted wire input: the frame codec (what the
//! relay decodes from any peer), the secure session's receive path (what a node decodes from the
//! relay) and the encrypted message decoders. Random and mutated inputs for `FUZZ_SECONDS` each
//! (default 2), asserting that nothing panics and that no mutated frame is ever accepted as
//! something it was not. A failure prints the seed (`FUZZ_SEED` replays it).

use std::time::Instant;

use remote_agents_protocol::frame::{Frame, Header, PeerId, PresenceChange, PresencePage};
use remote_agents_protocol::message::{Announcement, Envelope};
use remote_agents_protocol::psk::Psk;
use remote_agents_protocol::session::{SessionConfig, Sessions, StaticKeypair};

use remote_agents_testkit::{Rng, budget};

/// Flips, overwrites, truncates or extends a valid input.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] = rng.next_u64() as u8;
            }
            2 => out.truncate(rng.below(out.len() + 1)),
            _ => {
                let extra = rng.bytes(16);
                out.extend_from_slice(&extra);
            }
        }
    }
    out
}

fn peer(byte: u8) -> PeerId {
    PeerId([byte; 16])
}

#[test]
fn the_frame_codec_never_panics_on_random_or_mutated_frames() {
    let mut rng = Rng::from_env();
    let valid: Vec<Vec<u8>> = vec![
        Frame::welcome(peer(1), 2).encode().to_vec(),
        Frame::presence(
            PeerId::ZERO,
            0,
            &PresencePage {
                snapshot: false,
                more: false,
                changes: vec![
                    PresenceChange::Joined(peer(2)),
                    PresenceChange::Left(peer(3)),
                ],
            },
        )
        .encode()
        .to_vec(),
        Frame::presence_get(3, true, peer(4)).encode().to_vec(),
        Frame::retain_get(7, b"desired").unwrap().encode().to_vec(),
    ];
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = if rng.below(2) == 0 {
            rng.bytes(128)
        } else {
            let base = &valid[rng.below(valid.len())];
            mutate(&mut rng, base)
        };
        let _ = Header::decode(&input);
        if let Ok(frame) = Frame::decode(bytes::Bytes::from(input)) {
            let _ = frame.body();
        }
        runs += 1;
    }
    assert!(runs > 100, "only {runs} inputs in the budget");
}

fn sessions(keypair: StaticKeypair, name: &str, now: Instant) -> Sessions {
    Sessions::new(
        keypair,
        Psk::from_bytes(&[9u8; 32]).unwrap(),
        name.as_bytes().to_vec(),
        SessionConfig::default(),
        now,
        1,
    )
}

#[test]
fn the_session_never_accepts_a_mutated_frame_and_never_panics() {
    let mut rng = Rng::from_env();
    let now = Instant::now();
    let mut a = sessions(StaticKeypair::generate().unwrap(), "a", now);
    let mut b = sessions(StaticKeypair::generate().unwrap(), "b", now);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    a.peer_present(b_id, now);
    b.peer_present(a_id, now);
    // Run the handshake, keeping every frame either side sent as material to mutate.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for _ in 0..20 {
        while let Some(out) = a.poll_transmit() {
            seen.push(out.frame.clone());
            let _ = b.receive(&out.frame, now);
        }
        while let Some(out) = b.poll_transmit() {
            seen.push(out.frame.clone());
            let _ = a.receive(&out.frame, now);
        }
    }
    assert!(a.is_established(&b_id, now) && b.is_established(&a_id, now));
    a.send(b_id, b"the real message", now).unwrap();
    let data = a.poll_transmit().unwrap().frame;
    seen.push(data.clone());

    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = if rng.below(4) == 0 {
            rng.bytes(256)
        } else {
            let base = &seen[rng.below(seen.len())];
            mutate(&mut rng, base)
        };
        if input == data {
            continue;
        }
        // Mutations of the data frame (or of handshake frames, or noise) never decrypt.
        if let Ok(Some((_, plaintext))) = b.receive(&input, now) {
            panic!("accepted a mutated frame as {plaintext:?}");
        }
        // Keep b's outbox from growing with answers to replayed handshakes.
        while b.poll_transmit().is_some() {}
        runs += 1;
    }
    assert!(runs > 100, "only {runs} inputs in the budget");
    // The untouched frame still gets through: the fuzzing did not break the session.
    assert_eq!(
        b.receive(&data, now).unwrap().map(|(_, p)| p),
        Some(b"the real message".to_vec())
    );
}

#[test]
fn message_decoders_never_panic() {
    let mut rng = Rng::from_env();
    let announcement = Announcement {
        name: "web-1".into(),
        tags: vec!["web".into()],
        ..Announcement::default()
    }
    .encode();
    let deadline = Instant::now() + budget();
    while Instant::now() < deadline {
        let input = if rng.below(2) == 0 {
            rng.bytes(128)
        } else {
            mutate(&mut rng, &announcement)
        };
        let _ = Envelope::decode(&input);
        let _ = Announcement::decode(&input);
    }
}
