//! The secure session's receive path (`Sessions::receive`): what a node does with every frame
//! the relay hands it. Each input is a script run against a fresh, established pair of sessions
//! `a` → `b`: raw frames, real frames of `a` with bytes patched, replays of real frames, and the
//! clock moving on. Nothing panics; `b` accepts only unmodified frames `a` really sent, each once.
//!
//! Script ops (the op byte modulo 4): 0 `len bytes…` a raw frame; 1 `index offset:u16 len
//! bytes…` a real frame with `bytes` written at `offset`; 2 `index` a real frame replayed;
//! 3 `seconds` the clock advances and timers run.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use remote_agents_protocol::psk::Psk;
use remote_agents_protocol::session::{SessionConfig, Sessions, StaticKeypair};

const MESSAGES: [&[u8]; 2] = [b"first message", b"second message"];
/// `a`'s frames kept as material; older ones are dropped past this.
const KEEP: usize = 64;

fn sessions(private: u8, now: Instant) -> Sessions {
    Sessions::new(
        StaticKeypair::from_private(&[private; 32]).expect("32 private bytes"),
        Psk::from_bytes(&[9u8; 32]).expect("32-byte room key"),
        vec![private],
        SessionConfig::default(),
        now,
        1,
    )
}

struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn bytes(&mut self, len: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut a = sessions(1, now);
    let mut b = sessions(2, now);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    a.peer_present(b_id, now);
    b.peer_present(a_id, now);
    // Frames `a` sent, as material for the script; those carrying MESSAGES are `sent`.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for _ in 0..8 {
        while let Some(out) = a.poll_transmit() {
            seen.push(out.frame.clone());
            let _ = b.receive(&out.frame, now);
        }
        while let Some(out) = b.poll_transmit() {
            let _ = a.receive(&out.frame, now);
        }
    }
    assert!(a.is_established(&b_id, now) && b.is_established(&a_id, now));
    let mut sent: HashSet<Vec<u8>> = HashSet::new();
    for message in MESSAGES {
        a.send(b_id, message, now)
            .expect("send on an established session");
        while let Some(out) = a.poll_transmit() {
            sent.insert(out.frame.clone());
            seen.push(out.frame);
        }
    }
    let mut accepted: HashSet<Vec<u8>> = HashSet::new();

    let mut script = Script(data);
    while let Some(op) = script.byte() {
        let frame: Vec<u8> = match op % 4 {
            0 => {
                let len = script.byte().unwrap_or(0) as usize;
                script.bytes(len).to_vec()
            }
            1 => {
                let index = script.byte().unwrap_or(0) as usize;
                let offset =
                    u16::from_be_bytes([script.byte().unwrap_or(0), script.byte().unwrap_or(0)])
                        as usize;
                let len = script.byte().unwrap_or(0) as usize;
                let patch = script.bytes(len);
                let mut frame = seen[index % seen.len()].clone();
                let at = offset.min(frame.len());
                let end = (at + patch.len()).min(frame.len());
                frame[at..end].copy_from_slice(&patch[..end - at]);
                frame
            }
            2 => seen[script.byte().unwrap_or(0) as usize % seen.len()].clone(),
            _ => {
                now += Duration::from_secs(script.byte().unwrap_or(0) as u64);
                a.handle_timeout(now);
                b.handle_timeout(now);
                let _ = (a.next_timeout(), b.next_timeout());
                continue;
            }
        };
        if let Ok(Some((from, plaintext))) = b.receive(&frame, now) {
            assert!(
                sent.contains(&frame),
                "accepted a frame `a` never sent, as {plaintext:?}"
            );
            assert!(accepted.insert(frame), "accepted a replayed frame twice");
            assert_eq!(from, a_id);
            assert!(MESSAGES.contains(&plaintext.as_slice()));
        }
        // `b` answers (handshakes, rejections) go to `a`; what `a` sends becomes material.
        while let Some(out) = b.poll_transmit() {
            let _ = a.receive(&out.frame, now);
        }
        while let Some(out) = a.poll_transmit() {
            if seen.len() >= KEEP {
                seen.remove(0);
            }
            seen.push(out.frame);
        }
        while b.poll_event().is_some() {}
        while a.poll_event().is_some() {}
    }
});
