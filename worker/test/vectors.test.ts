//! The frame codec against schemas/frame-vectors.json, generated from the Rust codec: every
//! vector decodes to the stated fields and body, encodes back to the same bytes, and every
//! invalid vector is refused with the stated error code and id.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  type Body,
  ErrorCode,
  FrameError,
  HEADER_LEN,
  Kind,
  PROTOCOL_VERSION,
  bytesToHex,
  decodeBody,
  decodeFrame,
  encodeFrame,
  hexToBytes,
  peerIdFromPublicKey,
  roomIdFromName,
} from "../src/frame.ts";
import { type Key, proveKey, verifyProof } from "../src/keyproof.ts";

interface FrameVector {
  name: string;
  hex: string;
  kind: string;
  kind_byte: number;
  from: string;
  to: string;
  id: string;
  body_hex: string;
  body: Record<string, unknown>;
}

interface InvalidVector {
  name: string;
  hex: string;
  id: string;
  error_code: number;
}

interface Vectors {
  version: number;
  header_len: number;
  max_frame_default: number;
  frames: FrameVector[];
  invalid: InvalidVector[];
  peer_ids: { public_key: string; peer_id: string }[];
  room_ids: { room_name: string; room_id: string }[];
  key_proof: {
    room_id: string;
    challenge_private: string;
    challenge_public: string;
    static_private: string;
    static_public: string;
    peer_id: string;
    proof: string;
  };
}

const vectors: Vectors = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../schemas/frame-vectors.json"), "utf8"),
);

const KIND_NAMES: Record<string, number> = {
  DATA: Kind.Data,
  BROADCAST: Kind.Broadcast,
  RETAIN_PUT: Kind.RetainPut,
  RETAIN_GET: Kind.RetainGet,
  PRESENCE_GET: Kind.PresenceGet,
  WELCOME: Kind.Welcome,
  PRESENCE: Kind.Presence,
  ERROR: Kind.Error,
  ACK: Kind.Ack,
  RETAINED: Kind.Retained,
  CHALLENGE: Kind.Challenge,
  PROOF: Kind.Proof,
};

/** The body in the vectors' JSON spelling: byte strings hex, u64 decimal strings. */
function bodyAsJson(body: Body): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(body)) {
    if (field === "kind") continue;
    // The vectors spell fields in snake_case (`public_key`), TypeScript in camelCase.
    const name = field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
    if (value instanceof Uint8Array) json[name] = bytesToHex(value);
    else if (typeof value === "bigint") json[name] = value.toString();
    else if (field === "changes") {
      json[name] = (value as { joined: boolean; peer: Uint8Array }[]).map((change) =>
        change.joined ? { joined: bytesToHex(change.peer) } : { left: bytesToHex(change.peer) },
      );
    } else if (Array.isArray(value)) json[name] = value.map((peer: Uint8Array) => bytesToHex(peer));
    else if (value !== undefined) json[name] = value;
  }
  return json;
}

test("constants match the Rust codec", () => {
  assert.equal(vectors.version, PROTOCOL_VERSION);
  assert.equal(vectors.header_len, HEADER_LEN);
  assert.equal(vectors.max_frame_default, 1024 * 1024);
  assert.ok(vectors.frames.length > 0 && vectors.invalid.length > 0);
});

for (const vector of vectors.frames) {
  test(`frame vector: ${vector.name}`, () => {
    const bytes = hexToBytes(vector.hex);
    const frame = decodeFrame(bytes);
    assert.equal(frame.kind, vector.kind_byte);
    assert.equal(frame.kind, KIND_NAMES[vector.kind]);
    assert.equal(bytesToHex(frame.from), vector.from);
    assert.equal(bytesToHex(frame.to), vector.to);
    assert.equal(frame.id, BigInt(vector.id));
    assert.equal(bytesToHex(frame.body), vector.body_hex);
    assert.deepEqual(bodyAsJson(decodeBody(frame)), vector.body);
    assert.equal(bytesToHex(encodeFrame(frame)), vector.hex);
  });
}

for (const vector of vectors.invalid) {
  test(`invalid vector: ${vector.name}`, () => {
    assert.throws(
      () => decodeBody(decodeFrame(hexToBytes(vector.hex))),
      (error: unknown) => {
        assert.ok(error instanceof FrameError, String(error));
        assert.equal(error.id, BigInt(vector.id));
        // Every codec error is a malformed frame; over-cap messages close with 1009 instead.
        assert.equal(vector.error_code, ErrorCode.Malformed);
        return true;
      },
    );
  });
}

test("peer ids and room ids hash as the Rust codec does", async () => {
  for (const { public_key, peer_id } of vectors.peer_ids) {
    assert.equal(await peerIdFromPublicKey(hexToBytes(public_key)), peer_id);
  }
  for (const { room_name, room_id } of vectors.room_ids) {
    assert.equal(await roomIdFromName(room_name), room_id);
  }
});

/** An X25519 private key from its raw 32 bytes and public half (WebCrypto imports JWK). */
async function x25519Private(privateHex: string, publicHex: string): Promise<Key> {
  const base64url = (hex: string) => Buffer.from(hex, "hex").toString("base64url");
  return crypto.subtle.importKey(
    "jwk",
    { kty: "OKP", crv: "X25519", d: base64url(privateHex), x: base64url(publicHex) },
    { name: "X25519" },
    false,
    ["deriveBits"],
  );
}

test("the key proof vector verifies, and is what a peer with that key proves", async () => {
  const v = vectors.key_proof;
  const challenge = {
    privateKey: await x25519Private(v.challenge_private, v.challenge_public),
    publicKey: hexToBytes(v.challenge_public),
  };
  const room = hexToBytes(v.room_id);
  const peer = hexToBytes(v.peer_id);
  assert.equal(await peerIdFromPublicKey(hexToBytes(v.static_public)), v.peer_id);
  assert.equal(await verifyProof(challenge, room, peer, hexToBytes(v.proof)), null);
  const staticPrivate = await x25519Private(v.static_private, v.static_public);
  const proof = await proveKey(staticPrivate, hexToBytes(v.static_public), peer, room, challenge.publicKey);
  assert.equal(bytesToHex(proof), v.proof);
  // One flipped bit of the tag, or another room, and it does not verify.
  const tampered = hexToBytes(v.proof);
  tampered[63]! ^= 1;
  assert.notEqual(await verifyProof(challenge, room, peer, tampered), null);
  assert.notEqual(await verifyProof(challenge, new Uint8Array(32), peer, hexToBytes(v.proof)), null);
});
