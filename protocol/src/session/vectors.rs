//! Generates schemas/session-vectors.json from this session and fails when the checked-in file
//! is stale (`UPDATE_SCHEMAS=1` rewrites it). The browser panel's TypeScript session (`panel/`)
//! reproduces every vector byte for byte: the room key (Argon2id), whole handshakes with fixed
//! keys, sealed transport frames, the replay window, the rejections, and the postcard messages
//! carried inside. The key proof a peer answers the relay's `CHALLENGE` with is a frame vector
//! (`schemas/frame-vectors.json`, `key_proof`).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::Digest;

use super::*;
use crate::message::{Announcement, Envelope, OperatorBinding, RemoteFailure};

/// The wall clock the vectors' sessions start at (2026-01-01T00:00:00Z in nanoseconds), so the
/// first initiation's timestamp is exactly this.
const UNIX_NANOS: u64 = 1_767_225_600_000_000_000;

/// Static keys of the two peers: the initiator's peer id is the lower one (checked by a test).
const INITIATOR_PRIVATE: [u8; 32] = [0x42; 32];
const RESPONDER_PRIVATE: [u8; 32] = [0x21; 32];

/// The explicit room key of the first handshake (the end-to-end tests' `ENCRYPTION_KEY`).
const EXPLICIT_KEY: [u8; 32] = [0x5a; 32];
/// The room token and name of the second handshake (its key is stretched with Argon2id).
const ROOM_TOKEN: &str = "correct horse battery staple";
const ROOM_NAME: &str = "ops";

fn keypair(private: &[u8; 32]) -> StaticKeypair {
    StaticKeypair::from_private(private).expect("32-byte key")
}

fn hex_string(bytes: &[u8]) -> Value {
    Value::String(hex::encode(bytes))
}

/// Everything that makes one handshake between the two fixed peers reproducible.
struct Case {
    name: &'static str,
    psk: Psk,
    psk_description: Value,
    initiator: Side,
    responder: Side,
    request: Vec<u8>,
    reply: Vec<u8>,
}

struct Side {
    private: [u8; 32],
    ephemeral: [u8; 32],
    index: u32,
    incarnation: u64,
    announcement: Vec<u8>,
}

impl Side {
    fn keypair(&self) -> StaticKeypair {
        keypair(&self.private)
    }

    fn sessions(&self, psk: &Psk, now: Instant) -> Sessions {
        let mut sessions = Sessions::new(
            self.keypair(),
            psk.clone(),
            self.announcement.clone(),
            SessionConfig {
                eager_handshakes: false,
                ..SessionConfig::default()
            },
            now,
            UNIX_NANOS,
        );
        sessions.incarnation = self.incarnation;
        sessions.fixed.ephemerals.push_back(self.ephemeral);
        sessions.fixed.indexes.push_back(self.index);
        sessions
    }

    fn describe(&self) -> Value {
        let keys = self.keypair();
        let ephemeral = keypair(&self.ephemeral);
        json!({
            "static_private": hex_string(&keys.private),
            "static_public": hex_string(&keys.public),
            "peer_id": keys.peer_id().to_hex(),
            "ephemeral_private": hex_string(&self.ephemeral),
            "ephemeral_public": hex_string(&ephemeral.public),
            "index": self.index,
            "incarnation": self.incarnation.to_string(),
            "announcement": hex_string(&self.announcement),
        })
    }
}

fn operator_announcement() -> Announcement {
    Announcement {
        name: "panel".into(),
        tags: vec!["browser".into(), "é".into()],
        facts: BTreeMap::from([
            ("os".to_string(), "linux".to_string()),
            ("arch".to_string(), "x86_64".to_string()),
        ]),
        mode: String::new(),
        accepts_commands: false,
        operator: Some(OperatorBinding {
            key: vec![0x0b; 32],
            signature: vec![0x5e; 64],
        }),
    }
}

fn node_announcement() -> Announcement {
    Announcement {
        name: "web-1".into(),
        tags: vec!["web".into()],
        facts: BTreeMap::from([("os".to_string(), "linux".to_string())]),
        mode: "plan".into(),
        accepts_commands: true,
        operator: None,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "explicit key, empty announcements",
            psk: Psk::from_bytes(&EXPLICIT_KEY).expect("32 bytes"),
            psk_description: json!({ "encryption_key": hex_string(&EXPLICIT_KEY) }),
            initiator: Side {
                private: INITIATOR_PRIVATE,
                ephemeral: [0x31; 32],
                index: 0x0102_0304,
                incarnation: 7,
                announcement: Vec::new(),
            },
            responder: Side {
                private: RESPONDER_PRIVATE,
                ephemeral: [0x52; 32],
                index: 0xfffe_fdfc,
                incarnation: u64::MAX,
                announcement: Vec::new(),
            },
            request: b"request".to_vec(),
            reply: b"reply".to_vec(),
        },
        Case {
            name: "room token, announcements and an RPC",
            psk: Psk::from_room_token(ROOM_TOKEN, ROOM_NAME).expect("argon2id"),
            psk_description: json!({ "room_token": ROOM_TOKEN, "room_name": ROOM_NAME }),
            initiator: Side {
                private: INITIATOR_PRIVATE,
                ephemeral: [0x33; 32],
                index: 1,
                incarnation: 0x0123_4567_89ab_cdef,
                announcement: operator_announcement().encode(),
            },
            responder: Side {
                private: RESPONDER_PRIVATE,
                ephemeral: [0x54; 32],
                index: 0x8000_0000,
                incarnation: 0,
                announcement: node_announcement().encode(),
            },
            request: Envelope::Request {
                call: 1,
                deadline_ms: 30_000,
                data: br#"{"id":"r1","caller":"unstated","request":{"op":"get_info","args":{}}}"#
                    .to_vec(),
                more: false,
            }
            .encode(),
            reply: Envelope::Response {
                call: 1,
                data: br#"{"id":"r1","outcome":{"status":"ok","result":{}}}"#.to_vec(),
                more: false,
            }
            .encode(),
        },
    ]
}

/// One frame of a transcript: who sent it and which step it is.
struct Step {
    sender: &'static str,
    what: &'static str,
    frame: Vec<u8>,
}

/// The steps of a transcript, in order.
const STEPS: [&str; 7] = [
    "initiator_hello",
    "responder_hello",
    "initiation",
    "response",
    "confirmation",
    "request",
    "reply",
];

/// A handshake run through the real `Sessions` of both peers.
struct Run {
    initiator: Sessions,
    responder: Sessions,
    steps: Vec<Step>,
    now: Instant,
}

fn only_frame(sessions: &mut Sessions, what: &str) -> Vec<u8> {
    let out = sessions
        .poll_transmit()
        .unwrap_or_else(|| panic!("{what}: no frame"));
    assert!(sessions.poll_transmit().is_none(), "{what}: one frame only");
    out.frame
}

fn run(case: &Case) -> Run {
    run_until(case, "reply")
}

/// The initiator (lower id) has a request for the responder before either knows the other:
/// Hello (please reply) → Hello → Initiation → Response → the empty confirmation and the queued
/// request → the reply. Stops once step `last` has been delivered to its receiver.
fn run_until(case: &Case, last: &str) -> Run {
    assert!(STEPS.contains(&last), "{last} is a step");
    let now = Instant::now();
    let mut run = Run {
        initiator: case.initiator.sessions(&case.psk, now),
        responder: case.responder.sessions(&case.psk, now),
        steps: Vec::new(),
        now,
    };
    let (initiator_id, responder_id) = (run.initiator.local_id(), run.responder.local_id());
    assert!(initiator_id < responder_id, "the lower peer id initiates");
    run.initiator
        .send(responder_id, &case.request, now)
        .unwrap();
    let mut pending = vec![(
        "initiator_hello",
        only_frame(&mut run.initiator, "initiator hello"),
    )];
    for what in STEPS {
        let frame = match pending.iter().position(|(name, _)| *name == what) {
            Some(at) => pending.remove(at).1,
            None => panic!("{what} was not sent"),
        };
        let sender = if matches!(
            what,
            "initiator_hello" | "initiation" | "confirmation" | "request"
        ) {
            "initiator"
        } else {
            "responder"
        };
        let (receiver, sender_id) = if sender == "initiator" {
            (&mut run.responder, initiator_id)
        } else {
            (&mut run.initiator, responder_id)
        };
        let delivered = receiver.receive(&frame, now);
        let expected = match what {
            "request" => Some((sender_id, case.request.clone())),
            "reply" => Some((sender_id, case.reply.clone())),
            _ => None,
        };
        assert_eq!(delivered, Ok(expected), "{what}");
        run.steps.push(Step {
            sender,
            what,
            frame,
        });
        if what == last {
            return run;
        }
        match what {
            "initiator_hello" => pending.push((
                "responder_hello",
                only_frame(&mut run.responder, "responder hello"),
            )),
            "responder_hello" => {
                pending.push(("initiation", only_frame(&mut run.initiator, "initiation")))
            }
            "initiation" => pending.push(("response", only_frame(&mut run.responder, "response"))),
            "response" => {
                let confirmation = run.initiator.poll_transmit().expect("confirmation");
                let request = run.initiator.poll_transmit().expect("queued request");
                assert!(run.initiator.poll_transmit().is_none());
                pending.push(("confirmation", confirmation.frame));
                pending.push(("request", request.frame));
            }
            "request" => {
                run.responder.send(initiator_id, &case.reply, now).unwrap();
                pending.push(("reply", only_frame(&mut run.responder, "reply")));
            }
            _ => {}
        }
    }
    unreachable!("the last step returns")
}

impl Run {
    fn frame(&self, what: &str) -> Vec<u8> {
        self.steps
            .iter()
            .find(|step| step.what == what)
            .unwrap_or_else(|| panic!("no {what} step"))
            .frame
            .clone()
    }
}

/// The same handshake with snow alone, to record what `Sessions` keeps inside: the handshake
/// hash and the two `Split()` keys. Its messages must equal the transcript's.
fn noise_details(case: &Case, run: &Run) -> Value {
    let initiator_keys = case.initiator.keypair();
    let responder_keys = case.responder.keypair();
    let mut initiator = snow::Builder::new(noise_params())
        .fixed_ephemeral_key_for_testing_only(&case.initiator.ephemeral)
        .prologue(PROLOGUE)
        .and_then(|builder| builder.local_private_key(&initiator_keys.private))
        .and_then(|builder| builder.remote_public_key(&responder_keys.public))
        .and_then(|builder| builder.psk(2, case.psk.as_bytes()))
        .and_then(|builder| builder.build_initiator())
        .unwrap();
    let mut responder = snow::Builder::new(noise_params())
        .fixed_ephemeral_key_for_testing_only(&case.responder.ephemeral)
        .prologue(PROLOGUE)
        .and_then(|builder| builder.local_private_key(&responder_keys.private))
        .and_then(|builder| builder.psk(2, case.psk.as_bytes()))
        .and_then(|builder| builder.build_responder())
        .unwrap();
    let initiation = run.frame("initiation");
    let response = run.frame("response");
    let message_1 = &initiation[HEADER_LEN + 5..];
    let message_2 = &response[HEADER_LEN + 9..];
    let mut buffer = vec![0u8; 65_535];
    let mut plaintext = vec![0u8; 65_535];
    // The first payload (timestamp, incarnation, announcement) is what the transcript's frame
    // carries: decrypt it with the responder, then check the initiator writes the same bytes.
    let length = responder.read_message(message_1, &mut plaintext).unwrap();
    let payload_1_plain = plaintext[..length].to_vec();
    let length = initiator
        .write_message(&payload_1_plain, &mut buffer)
        .unwrap();
    assert_eq!(&buffer[..length], message_1, "snow alone writes message 1");
    let mut payload_2_plain = Vec::with_capacity(8 + case.responder.announcement.len());
    payload_2_plain.extend_from_slice(&case.responder.incarnation.to_be_bytes());
    payload_2_plain.extend_from_slice(&case.responder.announcement);
    let length = responder
        .write_message(&payload_2_plain, &mut buffer)
        .unwrap();
    assert_eq!(&buffer[..length], message_2, "snow alone writes message 2");
    let length = initiator.read_message(message_2, &mut plaintext).unwrap();
    assert_eq!(&plaintext[..length], &payload_2_plain[..]);
    let handshake_hash = initiator.get_handshake_hash().to_vec();
    assert_eq!(handshake_hash, responder.get_handshake_hash());
    let (initiator_to_responder, responder_to_initiator) = initiator.dangerously_get_raw_split();
    assert_eq!(
        (initiator_to_responder, responder_to_initiator),
        responder.dangerously_get_raw_split()
    );
    json!({
        "message_1": hex_string(message_1),
        "payload_1": hex_string(&payload_1_plain),
        "timestamp": UNIX_NANOS.to_string(),
        "message_2": hex_string(message_2),
        "payload_2": hex_string(&payload_2_plain),
        "handshake_hash": hex_string(&handshake_hash),
        "initiator_to_responder_key": hex_string(&initiator_to_responder),
        "responder_to_initiator_key": hex_string(&responder_to_initiator),
    })
}

fn handshake_vector(case: &Case) -> Value {
    let run = run(case);
    json!({
        "name": case.name,
        "psk_input": case.psk_description,
        "psk": hex_string(case.psk.as_bytes()),
        "unix_nanos": UNIX_NANOS.to_string(),
        "initiator": case.initiator.describe(),
        "responder": case.responder.describe(),
        "request": hex_string(&case.request),
        "reply": hex_string(&case.reply),
        "noise": noise_details(case, &run),
        "frames": run.steps.iter().map(|step| json!({
            "sender": step.sender,
            "what": step.what,
            "hex": hex_string(&step.frame),
        })).collect::<Vec<_>>(),
    })
}

fn rejection_name(rejection: &Rejection) -> (&'static str, Value) {
    match rejection {
        Rejection::Malformed(detail) => ("Malformed", json!(detail)),
        Rejection::NotForUs => ("NotForUs", Value::Null),
        Rejection::UnknownSession => ("UnknownSession", Value::Null),
        Rejection::PeerMismatch => ("PeerMismatch", Value::Null),
        Rejection::Replay => ("Replay", Value::Null),
        Rejection::Authentication => ("Authentication", Value::Null),
        Rejection::Expired => ("Expired", Value::Null),
        Rejection::Handshake(_) => ("Handshake", Value::Null),
        Rejection::StaleHandshake => ("StaleHandshake", Value::Null),
    }
}

fn flip(frame: &[u8], byte: usize, bit: u8) -> Vec<u8> {
    let mut frame = frame.to_vec();
    frame[byte] ^= 1 << bit;
    frame
}

/// One frame a peer must refuse: delivered to `at` in a fresh run of the first handshake that
/// stopped after step `after` (so one case never changes the state another sees), `elapsed_ms`
/// after the run.
struct RejectionCase {
    name: String,
    after: &'static str,
    at: &'static str,
    elapsed_ms: u64,
    frame: Vec<u8>,
}

impl RejectionCase {
    fn new(name: impl Into<String>, at: &'static str, frame: Vec<u8>) -> Self {
        RejectionCase {
            name: name.into(),
            after: "reply",
            at,
            elapsed_ms: 0,
            frame,
        }
    }

    /// A tampered copy of the request, delivered before the request itself (so the counter is
    /// still fresh and what refuses the frame is the tampering, not the replay window).
    fn before_request(name: impl Into<String>, frame: Vec<u8>) -> Self {
        RejectionCase {
            after: "confirmation",
            ..RejectionCase::new(name, "responder", frame)
        }
    }
}

/// Frames the first handshake's peers must refuse, with what `receive` answers. The same kinds
/// of frames as the end-to-end adversarial suite (tests/tests/adversarial.rs): bit flips in every
/// field, replays, re-routing, forgeries, a wrong room key, and a session past its age.
fn rejection_vectors() -> Vec<Value> {
    let case = &cases()[0];
    let reference = run(case);
    let request = reference.frame("request");
    let reply = reference.frame("reply");
    let initiation = reference.frame("initiation");
    let responder_hello = reference.frame("responder_hello");
    let initiator_id = reference.initiator.local_id();
    let responder_id = reference.responder.local_id();
    let third = keypair(&[0x77; 32]).peer_id();
    let tag_start = request.len() - 16;

    let mut cases = vec![
        RejectionCase::new("request replayed", "responder", request.clone()),
        RejectionCase::new(
            "confirmation replayed",
            "responder",
            reference.frame("confirmation"),
        ),
        RejectionCase::new("reply replayed", "initiator", reply.clone()),
        RejectionCase::new("initiation replayed", "responder", initiation.clone()),
        RejectionCase::new(
            "response replayed",
            "initiator",
            reference.frame("response"),
        ),
        RejectionCase::before_request(
            "request truncated below a tag",
            request[..HEADER_LEN + 5 + 15].to_vec(),
        ),
        RejectionCase::before_request(
            "request with its body cut off",
            request[..HEADER_LEN].to_vec(),
        ),
    ];
    for (field, byte, bit) in [
        ("version", 0, 1),
        ("kind", 1, 1),
        ("from", 2, 0),
        ("from", 17, 7),
        ("to", 18, 0),
        ("to", 33, 7),
        ("id, the counter", 34, 0),
        ("id, the counter", 41, 1),
        ("body type", HEADER_LEN, 0),
        ("body type", HEADER_LEN, 2),
        ("receiver index", HEADER_LEN + 1, 7),
        ("receiver index", HEADER_LEN + 4, 0),
        ("ciphertext", HEADER_LEN + 5, 0),
        ("ciphertext", tag_start - 1, 7),
        ("tag", tag_start, 0),
        ("tag", request.len() - 1, 7),
    ] {
        cases.push(RejectionCase::before_request(
            format!("request with bit {bit} of byte {byte} flipped ({field})"),
            flip(&request, byte, bit),
        ));
    }
    let mut rerouted = request.clone();
    rerouted[18..34].copy_from_slice(&third.0);
    cases.push(RejectionCase::before_request(
        "request re-routed to a third peer",
        rerouted,
    ));
    let mut spoofed = request.clone();
    spoofed[2..18].copy_from_slice(&third.0);
    cases.push(RejectionCase::before_request(
        "request claiming a third peer as sender",
        spoofed,
    ));
    let mut reflected = reply.clone();
    reflected[2..18].copy_from_slice(&initiator_id.0);
    reflected[18..34].copy_from_slice(&responder_id.0);
    cases.push(RejectionCase::new(
        "reply reflected back to its sender",
        "responder",
        reflected,
    ));
    let mut forged = request.clone();
    for (i, byte) in forged[HEADER_LEN + 5..].iter_mut().enumerate() {
        *byte = (i * 17) as u8;
    }
    cases.push(RejectionCase::before_request(
        "random ciphertext under the real session index",
        forged,
    ));

    // A frame sealed after the transcript, delivered once the session is past `reject_after`.
    let mut late_run = run(case);
    late_run
        .initiator
        .send(responder_id, b"late", late_run.now)
        .unwrap();
    cases.push(RejectionCase {
        elapsed_ms: SessionConfig::default().reject_after.as_millis() as u64,
        ..RejectionCase::new(
            "a valid frame after reject_after",
            "responder",
            only_frame(&mut late_run.initiator, "late"),
        )
    });

    // The responder's key with another room key answers the initiation: the psk is mixed in by
    // the second message, so the initiator refuses the response.
    let wrong_psk = Psk::from_bytes(&[0xa5; 32]).expect("32 bytes");
    let mut outsider = case.responder.sessions(&wrong_psk, reference.now);
    assert_eq!(outsider.receive(&initiation, reference.now), Ok(None));
    cases.push(RejectionCase {
        after: "initiation",
        ..RejectionCase::new(
            "response made with another room key",
            "initiator",
            only_frame(&mut outsider, "outsider response"),
        )
    });

    // An impostor with the room key but its own static key claims the initiator's peer id.
    let impostor_private = (0x80u8..)
        .map(|seed| [seed; 32])
        .find(|private| keypair(private).peer_id() < responder_id)
        .expect("a key below the responder's id");
    let mut impostor = Side {
        private: impostor_private,
        ephemeral: [0x66; 32],
        index: 5,
        incarnation: 5,
        announcement: Vec::new(),
    }
    .sessions(&case.psk, reference.now);
    impostor.clock_origin_unix_nanos = UNIX_NANOS + 1_000_000;
    let mut hello_to_impostor = responder_hello.clone();
    hello_to_impostor[18..34].copy_from_slice(&impostor.local_id().0);
    assert_eq!(
        impostor.receive(&hello_to_impostor, reference.now),
        Ok(None)
    );
    let mut impostor_initiation = only_frame(&mut impostor, "impostor initiation");
    impostor_initiation[2..18].copy_from_slice(&initiator_id.0);
    cases.push(RejectionCase::new(
        "initiation by another key claiming the initiator's id",
        "responder",
        impostor_initiation,
    ));

    cases
        .into_iter()
        .map(|rejection_case| {
            let RejectionCase {
                name,
                after,
                at,
                elapsed_ms,
                frame,
            } = rejection_case;
            let mut fresh = run_until(case, after);
            let now = fresh.now + Duration::from_millis(elapsed_ms);
            let target = match at {
                "responder" => &mut fresh.responder,
                _ => &mut fresh.initiator,
            };
            let rejection = target
                .receive(&frame, now)
                .expect_err(&format!("{name}: must be rejected"));
            let (kind, detail) = rejection_name(&rejection);
            json!({
                "name": name,
                "handshake": case.name,
                "after": after,
                "at": at,
                "elapsed_ms": elapsed_ms,
                "hex": hex_string(&frame),
                "rejection": kind,
                "detail": detail,
            })
        })
        .collect()
}

/// Transport frames sealed by `seal` with a fixed key, at chosen counters.
fn transport_vectors() -> Vec<Value> {
    let key = [0x3c; 32];
    let from = keypair(&INITIATOR_PRIVATE).peer_id();
    let to = keypair(&RESPONDER_PRIVATE).peer_id();
    let plaintexts: [(&str, u64, &[u8]); 5] = [
        ("empty (a confirmation)", 0, b""),
        ("first message", 1, b"hello, node"),
        ("counter past one byte", 256, &[0u8; 40]),
        ("counter past 32 bits", 1 << 32, b"\x00\xff"),
        ("largest counter a window accepts", u64::MAX - 1, b"last"),
    ];
    plaintexts
        .iter()
        .map(|(name, counter, plaintext)| {
            let mut transport = Transport {
                local_index: 9,
                remote_index: 0xa1b2_c3d4,
                send_key: aead_key(&key),
                receive_key: aead_key(&key),
                send_counter: *counter,
                window: ReplayWindow::default(),
                created: Instant::now(),
                rekey_requested: false,
            };
            let frame = seal(from, to, &mut transport, plaintext);
            json!({
                "name": name,
                "key": hex_string(&key),
                "from": from.to_hex(),
                "to": to.to_hex(),
                "receiver_index": transport.remote_index,
                "counter": counter.to_string(),
                "nonce": hex_string(nonce(*counter).as_ref()),
                "plaintext": hex_string(plaintext),
                "associated_data": hex_string(&frame[..HEADER_LEN + 5]),
                "hex": hex_string(&frame),
            })
        })
        .collect()
}

/// Sequences of counters offered to a fresh window: whether each is accepted (it is then marked,
/// as after a frame that authenticated).
fn replay_window_vectors() -> Vec<Value> {
    let window = REPLAY_WINDOW;
    let sequences: Vec<(&str, Vec<u64>)> = vec![
        ("in order, then duplicates", vec![0, 1, 2, 2, 0, 3]),
        (
            "out of order within a word",
            vec![5, 3, 4, 3, 0, 63, 64, 62],
        ),
        (
            "a jump past the window and the edge",
            vec![
                10,
                window + 10,
                10,
                11,
                window + 9,
                window + 10,
                window + 11,
            ],
        ),
        (
            "words cleared as the window slides",
            vec![0, 64, 128, 4096, 4095, 4096 + 64 * 63, 4096, 4096 + 1, 128],
        ),
        ("a jump of many windows", vec![1, 1 << 40, 1, (1 << 40) - 1]),
        (
            "the largest counters",
            vec![u64::MAX, u64::MAX - 1, u64::MAX - 1, u64::MAX - 2, u64::MAX],
        ),
    ];
    sequences
        .into_iter()
        .map(|(name, counters)| {
            let mut replay = ReplayWindow::default();
            let steps: Vec<Value> = counters
                .iter()
                .map(|&counter| {
                    let accepted = replay.would_accept(counter);
                    if accepted {
                        replay.mark(counter);
                    }
                    json!({ "counter": counter.to_string(), "accepted": accepted })
                })
                .collect();
            json!({ "name": name, "steps": steps })
        })
        .collect()
}

fn announcement_json(announcement: &Announcement) -> Value {
    json!({
        "name": announcement.name,
        "tags": announcement.tags,
        "facts": announcement.facts,
        "mode": announcement.mode,
        "accepts_commands": announcement.accepts_commands,
        "operator": announcement.operator.as_ref().map(|binding| json!({
            "key": hex_string(&binding.key),
            "signature": hex_string(&binding.signature),
        })),
    })
}

/// The envelope as the panel's codec spells it: `{ "type": variant, ...fields }`, u64s as
/// decimal strings and byte fields as hex.
fn envelope_json(envelope: &Envelope) -> Value {
    match envelope {
        Envelope::Announce(announcement) => {
            json!({ "type": "Announce", "announcement": announcement_json(announcement) })
        }
        Envelope::Request {
            call,
            deadline_ms,
            data,
            more,
        } => json!({
            "type": "Request",
            "call": call.to_string(),
            "deadline_ms": deadline_ms.to_string(),
            "data": hex_string(data),
            "more": more,
        }),
        Envelope::Chunk { call, data, more } => json!({
            "type": "Chunk", "call": call.to_string(), "data": hex_string(data), "more": more,
        }),
        Envelope::Response { call, data, more } => json!({
            "type": "Response", "call": call.to_string(), "data": hex_string(data), "more": more,
        }),
        Envelope::Failure { call, failure } => {
            let (kind, message) = match failure {
                RemoteFailure::Handler(message) => ("Handler", Some(message)),
                RemoteFailure::DeadlineExceeded => ("DeadlineExceeded", None),
                RemoteFailure::NoHandler => ("NoHandler", None),
                RemoteFailure::Malformed(message) => ("Malformed", Some(message)),
            };
            json!({
                "type": "Failure",
                "call": call.to_string(),
                "failure": { "type": kind, "message": message },
            })
        }
        Envelope::Cancel { call } => json!({ "type": "Cancel", "call": call.to_string() }),
        Envelope::Notify { id, data, more } => json!({
            "type": "Notify", "id": id.to_string(), "data": hex_string(data), "more": more,
        }),
        Envelope::Direct {
            call,
            deadline_ms,
            offer,
        } => json!({
            "type": "Direct",
            "call": call.to_string(),
            "deadline_ms": deadline_ms.to_string(),
            "offer": hex_string(offer),
        }),
    }
}

fn message_vectors() -> Value {
    let announcements = [
        Announcement::default(),
        operator_announcement(),
        node_announcement(),
    ];
    let envelopes = [
        Envelope::Announce(node_announcement()),
        Envelope::Request {
            call: 0,
            deadline_ms: 0,
            data: Vec::new(),
            more: false,
        },
        Envelope::Request {
            call: u64::MAX,
            deadline_ms: 127,
            data: vec![0xab; 200],
            more: true,
        },
        Envelope::Chunk {
            call: 128,
            data: b"chunk".to_vec(),
            more: true,
        },
        Envelope::Response {
            call: 1 << 35,
            data: b"{}".to_vec(),
            more: false,
        },
        Envelope::Failure {
            call: 3,
            failure: RemoteFailure::Handler("boom é".into()),
        },
        Envelope::Failure {
            call: 4,
            failure: RemoteFailure::DeadlineExceeded,
        },
        Envelope::Failure {
            call: 5,
            failure: RemoteFailure::NoHandler,
        },
        Envelope::Failure {
            call: 6,
            failure: RemoteFailure::Malformed("bad".into()),
        },
        Envelope::Cancel { call: 16_384 },
        Envelope::Notify {
            id: 2,
            data: b"note".to_vec(),
            more: false,
        },
        Envelope::Direct {
            call: 7,
            deadline_ms: 4000,
            offer: vec![1, 2, 3],
        },
    ];
    json!({
        "announcements": announcements.iter().map(|announcement| json!({
            "value": announcement_json(announcement),
            "hex": hex_string(&announcement.encode()),
        })).collect::<Vec<_>>(),
        "envelopes": envelopes.iter().map(|envelope| json!({
            "value": envelope_json(envelope),
            "hex": hex_string(&envelope.encode()),
        })).collect::<Vec<_>>(),
    })
}

/// Blobs sealed for the relay's retained store (`crate::blob`), which the panel seals when it
/// applies a generation: the PSK, the retained key as associated data, the salt, the plaintext
/// and the sealed bytes (salt ‖ ciphertext ‖ tag).
fn sealed_blob_vectors() -> Value {
    let psk = Psk::from_bytes(&EXPLICIT_KEY).expect("32-byte key");
    let cases: [(&[u8], [u8; crate::blob::SALT_LEN], &[u8]); 3] = [
        (
            b"desired",
            [0x11; 32],
            br#"{"content":"e30=","signature":"AA=="}"#,
        ),
        (b"desired", [0x22; 32], b""),
        (b"another key", [0x11; 32], "é\0 bytes".as_bytes()),
    ];
    Value::Array(
        cases
            .iter()
            .map(|(label, salt, plaintext)| {
                json!({
                    "psk": hex_string(psk.as_bytes()),
                    "label": hex_string(label),
                    "salt": hex_string(salt),
                    "plaintext": hex_string(plaintext),
                    "sealed": hex_string(&crate::blob::seal(&psk, label, *salt, plaintext)),
                })
            })
            .collect(),
    )
}

fn psk_vectors() -> Value {
    let tokens = [
        (ROOM_TOKEN, ROOM_NAME),
        ("hunter2", "fleet/prod é"),
        ("t", ""),
    ];
    let explicit_keys = [EXPLICIT_KEY, [0u8; 32]];
    json!({
        "argon2id": {
            "version": 19,
            "memory_kib": argon2::Params::DEFAULT_M_COST,
            "iterations": argon2::Params::DEFAULT_T_COST,
            "parallelism": argon2::Params::DEFAULT_P_COST,
            "output_len": crate::psk::PSK_LEN,
            "salt": "SHA-256(\"remote-agents psk salt v1\\0\" || room name as UTF-8)",
        },
        "from_room_token": tokens.iter().map(|(token, room)| {
            let salt = sha2::Sha256::new()
                .chain_update(b"remote-agents psk salt v1\0")
                .chain_update(room.as_bytes())
                .finalize();
            json!({
                "room_token": token,
                "room_name": room,
                "salt": hex_string(&salt),
                "psk": hex_string(Psk::from_room_token(token, room).unwrap().as_bytes()),
            })
        }).collect::<Vec<_>>(),
        "from_encryption_key": explicit_keys.iter().map(|key| json!({
            "encryption_key": hex_string(key),
            "psk": hex_string(Psk::from_bytes(key).unwrap().as_bytes()),
        })).collect::<Vec<_>>(),
    })
}

fn document() -> String {
    let session_config = SessionConfig::default();
    let value = json!({
        "description": "Test vectors for the secure session (protocol/src/session.rs), generated by protocol/src/session/vectors.rs (UPDATE_SCHEMAS=1 cargo test -p remote-agents-protocol). u64 values are decimal strings; byte strings are lowercase hex. The key proof answering the relay's CHALLENGE is in frame-vectors.json (key_proof).",
        "noise": {
            "protocol_name": NOISE_PARAMS,
            "prologue": hex_string(PROLOGUE),
            "psk_position": 2,
        },
        "constants": {
            "header_len": HEADER_LEN,
            "transport_overhead": TRANSPORT_OVERHEAD,
            "max_plaintext": MAX_PLAINTEXT,
            "replay_window": REPLAY_WINDOW,
            "window_words": WINDOW_WORDS,
            "body_types": {
                "hello": TYPE_HELLO,
                "initiation": TYPE_INITIATION,
                "response": TYPE_RESPONSE,
                "transport": TYPE_TRANSPORT,
            },
            "hello_please_reply": HELLO_PLEASE_REPLY,
            "rekey_after_messages": session_config.rekey_after_messages.to_string(),
            "rekey_after_ms": session_config.rekey_after.as_millis() as u64,
            "reject_after_ms": session_config.reject_after.as_millis() as u64,
            "handshake_retry_ms": session_config.handshake_retry.as_millis() as u64,
            "handshake_attempts": session_config.handshake_attempts,
            "max_queued_per_peer": session_config.max_queued_per_peer,
        },
        "psk": psk_vectors(),
        "handshakes": cases().iter().map(handshake_vector).collect::<Vec<_>>(),
        "transport": transport_vectors(),
        "replay_window": replay_window_vectors(),
        "rejections": rejection_vectors(),
        "messages": message_vectors(),
        "sealed_blobs": sealed_blob_vectors(),
    });
    serde_json::to_string_pretty(&value).expect("json") + "\n"
}

#[test]
fn the_initiators_key_has_the_lower_peer_id() {
    assert!(keypair(&INITIATOR_PRIVATE).peer_id() < keypair(&RESPONDER_PRIVATE).peer_id());
}

#[test]
fn handshakes_are_reproducible() {
    for case in cases() {
        let first: Vec<Vec<u8>> = run(&case).steps.into_iter().map(|s| s.frame).collect();
        let second: Vec<Vec<u8>> = run(&case).steps.into_iter().map(|s| s.frame).collect();
        assert_eq!(first, second, "{}", case.name);
    }
}

#[test]
fn schemas_session_vectors_json_is_up_to_date() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../schemas/session-vectors.json");
    let expected = document();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(path, &expected).expect("write schemas/session-vectors.json");
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "schemas/session-vectors.json is stale; regenerate with \
         UPDATE_SCHEMAS=1 cargo test -p remote-agents-protocol"
    );
}
