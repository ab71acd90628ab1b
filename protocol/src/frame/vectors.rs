//! Generates schemas/frame-vectors.json from this codec and fails when the checked-in file is
//! stale (`UPDATE_SCHEMAS=1` rewrites it). The Worker relay decodes and encodes the same vectors.

use bytes::Bytes;
use serde_json::{Value, json};

use super::*;

fn peer(seed: u8) -> PeerId {
    let mut id = [0u8; 16];
    for (index, byte) in id.iter_mut().enumerate() {
        *byte = seed.wrapping_mul(16).wrapping_add(index as u8);
    }
    PeerId(id)
}

/// The fixed keys of the key-proof vector: the relay's challenge key and the proving peer's
/// static key (X25519 private keys are any 32 bytes).
const CHALLENGE_PRIVATE: [u8; 32] = [0x11; 32];
const STATIC_PRIVATE: [u8; 32] = [0x22; 32];
const PROOF_ROOM: &str = "ops";

fn keypair(private: &[u8; 32]) -> crate::session::StaticKeypair {
    crate::session::StaticKeypair::from_private(private).expect("32-byte key")
}

fn challenge_key() -> [u8; 32] {
    keypair(&CHALLENGE_PRIVATE).public
}

fn proving_peer() -> PeerId {
    keypair(&STATIC_PRIVATE).peer_id()
}

fn proof() -> [u8; crate::key_proof::PROOF_LEN] {
    crate::key_proof::prove(
        &keypair(&STATIC_PRIVATE),
        &room_id_from_name(PROOF_ROOM),
        &challenge_key(),
    )
    .expect("the vector's keys are not low-order")
}

/// The typed view of a body, as the vectors spell it (ids and u64s as decimal strings because
/// JSON numbers lose precision above 2^53 in JavaScript).
fn typed_body(frame: &Frame) -> Value {
    match frame.body().expect("vector frames are valid") {
        Body::Data(bytes) | Body::Broadcast(bytes) => json!({ "opaque": hex::encode(bytes) }),
        Body::RetainPut { key, blob } => {
            json!({ "key": hex::encode(key), "blob": hex::encode(blob) })
        }
        Body::RetainGet { key } => json!({ "key": hex::encode(key) }),
        Body::PresenceGet { subscribe, after } => {
            json!({ "subscribe": subscribe, "after": after.to_hex() })
        }
        Body::Welcome { present } => json!({ "present": present }),
        Body::Presence(page) => json!({
            "snapshot": page.snapshot,
            "more": page.more,
            "changes": page.changes.iter().map(|change| match change {
                PresenceChange::Joined(peer) => json!({ "joined": peer.to_hex() }),
                PresenceChange::Left(peer) => json!({ "left": peer.to_hex() }),
            }).collect::<Vec<_>>(),
        }),
        Body::Error { code, message } => json!({ "code": code, "message": message }),
        Body::Ack(bytes) if bytes.is_empty() => json!({}),
        Body::Ack(bytes) => json!({ "count": parse_retain_get_ack(&bytes).expect("count") }),
        Body::Retained { key, seq, blob } => json!({
            "key": hex::encode(key),
            "seq": seq.to_string(),
            "blob": hex::encode(blob),
        }),
        Body::Challenge(public_key) => json!({ "public_key": hex::encode(public_key) }),
        Body::Proof(bytes) => json!({
            "public_key": hex::encode(&bytes[..32]),
            "mac": hex::encode(&bytes[32..]),
        }),
    }
}

fn vector(name: &str, frame: &Frame) -> Value {
    let encoded = frame.encode();
    json!({
        "name": name,
        "kind": frame.header.kind.name(),
        "kind_byte": frame.header.kind as u8,
        "from": frame.header.from.to_hex(),
        "to": frame.header.to.to_hex(),
        "id": frame.header.id.to_string(),
        "body_hex": hex::encode(&frame.body),
        "body": typed_body(frame),
        "hex": hex::encode(&encoded),
    })
}

fn valid_frames() -> Vec<(&'static str, Frame)> {
    let data = |kind, from, to, id, body: &'static [u8]| {
        Frame::new(Header::new(kind, from, to, id), Bytes::from_static(body))
    };
    vec![
        (
            "data",
            data(
                FrameKind::Data,
                peer(1),
                peer(2),
                1,
                b"\x00\x01ciphertext\xff",
            ),
        ),
        (
            "data with empty body and the largest id",
            data(FrameKind::Data, peer(1), peer(2), u64::MAX, b""),
        ),
        (
            "broadcast as sent (to ignored by the relay)",
            data(FrameKind::Broadcast, peer(1), peer(3), 2, b"hello room"),
        ),
        (
            "broadcast as forwarded (to zeroed)",
            data(
                FrameKind::Broadcast,
                peer(1),
                PeerId::ZERO,
                2,
                b"hello room",
            ),
        ),
        (
            "retain_put",
            Frame::retain_put(3, b"desired", b"\x01\x02\x03").unwrap(),
        ),
        (
            "retain_put with empty blob",
            Frame::retain_put(4, b"k", b"").unwrap(),
        ),
        ("retain_get", Frame::retain_get(5, b"desired").unwrap()),
        ("welcome to an empty room", Frame::welcome(peer(1), 0)),
        ("welcome with two peers present", Frame::welcome(peer(1), 2)),
        (
            "presence_get subscribing from the start",
            Frame::presence_get(6, true, PeerId::ZERO),
        ),
        (
            "presence_get of the next page",
            Frame::presence_get(7, false, peer(3)),
        ),
        (
            "presence snapshot page with more to come",
            Frame::presence(
                peer(1),
                6,
                &PresencePage {
                    snapshot: true,
                    more: true,
                    changes: vec![
                        PresenceChange::Joined(peer(2)),
                        PresenceChange::Joined(peer(3)),
                    ],
                },
            ),
        ),
        (
            "presence batch of changes",
            Frame::presence(
                PeerId::ZERO,
                0,
                &PresencePage {
                    snapshot: false,
                    more: false,
                    changes: vec![
                        PresenceChange::Joined(peer(4)),
                        PresenceChange::Left(peer(2)),
                    ],
                },
            ),
        ),
        (
            "error 404",
            Frame::error(peer(1), 1, error_code::NOT_FOUND, "peer not in room"),
        ),
        (
            "error 400 with unreadable id",
            Frame::error(peer(1), 0, error_code::MALFORMED, "short header"),
        ),
        (
            "error 429",
            Frame::error(peer(1), 7, error_code::RATE_LIMITED, "rate limited"),
        ),
        ("ack of retain_put", Frame::ack(peer(1), 3, Bytes::new())),
        (
            "ack of retain_get",
            Frame::ack(peer(1), 5, retain_get_ack_body(2)),
        ),
        (
            "retained",
            Frame::retained(peer(1), 5, b"desired", 1, b"\x01\x02\x03").unwrap(),
        ),
        (
            "retained with large seq",
            Frame::retained(peer(1), 5, b"desired", 1 << 40, b"").unwrap(),
        ),
        ("challenge", Frame::challenge(peer(1), challenge_key())),
        ("proof", Frame::proof(proving_peer(), proof())),
    ]
}

/// Byte strings that are not valid frames, each with the error code a relay answers and the id
/// that answer carries.
fn invalid_frames() -> Vec<(&'static str, Vec<u8>)> {
    let header = |kind: u8, id: u64| {
        let mut bytes = Header::new(FrameKind::Data, peer(1), peer(2), id).to_bytes();
        bytes[1] = kind;
        bytes.to_vec()
    };
    let with_body = |kind: u8, id: u64, body: &[u8]| {
        let mut bytes = header(kind, id);
        bytes.extend_from_slice(body);
        bytes
    };
    let mut wrong_version = header(0x01, 11);
    wrong_version[0] = 1;
    vec![
        ("empty", Vec::new()),
        ("short header (41 bytes)", header(0x01, 12)[..41].to_vec()),
        ("wrong version", wrong_version),
        ("unknown kind 0x00", header(0x00, 13)),
        ("unknown kind 0x07", header(0x07, 14)),
        ("unknown kind 0x11 (JOIN of version 1)", header(0x11, 15)),
        (
            "retain_put key longer than body",
            with_body(0x03, 16, &[9, b'a', b'b']),
        ),
        ("retain_put without key length", with_body(0x03, 17, &[])),
        (
            "retain_get with bytes after the key",
            with_body(0x04, 18, &[1, b'k', b'x']),
        ),
        ("proof without its tag", with_body(0x05, 19, &[7; 32])),
        (
            "presence_get with a short cursor",
            with_body(0x06, 20, &[1, 0, 0]),
        ),
    ]
}

fn invalid_vector(name: &str, bytes: &[u8]) -> Value {
    let error = Header::decode(bytes)
        .and_then(|header| Body::decode(header.kind, &Bytes::copy_from_slice(&bytes[HEADER_LEN..])))
        .expect_err("invalid vectors must not decode");
    json!({
        "name": name,
        "hex": hex::encode(bytes),
        "error": error.to_string(),
        "error_code": error.error_code(),
        "id": offending_id(bytes).to_string(),
    })
}

fn document() -> String {
    let rooms = ["ops", "", "fleet/prod é"];
    let keys: [&[u8]; 2] = [&[0u8; 32], &[9u8; 32]];
    let value = json!({
        "description": "Test vectors for schemas/frame.md, generated by protocol/src/frame/vectors.rs (UPDATE_SCHEMAS=1 cargo test -p remote-agents-protocol). u64 values are decimal strings; byte strings are lowercase hex.",
        "version": FRAME_VERSION,
        "header_len": HEADER_LEN,
        "max_frame_default": MAX_FRAME_DEFAULT,
        "room_ids": rooms.iter().map(|name| json!({
            "room_name": name,
            "room_id": room_id_from_name(name).to_hex(),
        })).collect::<Vec<_>>(),
        "peer_ids": keys.iter().map(|key| json!({
            "public_key": hex::encode(key),
            "peer_id": peer_id_from_public_key(key).to_hex(),
        })).collect::<Vec<_>>(),
        "frames": valid_frames().iter().map(|(name, frame)| vector(name, frame)).collect::<Vec<_>>(),
        "key_proof": {
            "description": "PROOF body = static_public || HMAC-SHA256(key = X25519(challenge_private, static_public), message = \"remote-agents key proof v1\\0\" || room_id || peer_id || challenge_public || static_public)",
            "room_name": PROOF_ROOM,
            "room_id": room_id_from_name(PROOF_ROOM).to_hex(),
            "challenge_private": hex::encode(CHALLENGE_PRIVATE),
            "challenge_public": hex::encode(challenge_key()),
            "static_private": hex::encode(STATIC_PRIVATE),
            "static_public": hex::encode(keypair(&STATIC_PRIVATE).public),
            "peer_id": proving_peer().to_hex(),
            "proof": hex::encode(proof()),
        },
        "invalid": invalid_frames().iter().map(|(name, bytes)| invalid_vector(name, bytes)).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&value).expect("json") + "\n"
}

#[test]
fn every_kind_has_a_vector() {
    let frames = valid_frames();
    for kind in FrameKind::ALL {
        assert!(
            frames.iter().any(|(_, frame)| frame.header.kind == kind),
            "no vector for {kind}"
        );
    }
}

#[test]
fn vectors_decode_back_to_their_frames() {
    for (name, frame) in valid_frames() {
        let decoded =
            Frame::decode(frame.encode()).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(decoded, frame, "{name}");
        decoded
            .body()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
}

#[test]
fn schemas_frame_vectors_json_is_up_to_date() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../schemas/frame-vectors.json");
    let expected = document();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(path, &expected).expect("write schemas/frame-vectors.json");
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "schemas/frame-vectors.json is stale; regenerate with \
         UPDATE_SCHEMAS=1 cargo test -p remote-agents-protocol"
    );
}
