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
}

const vectors: Vectors = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../schemas/frame-vectors.json"), "utf8"),
);

const KIND_NAMES: Record<string, number> = {
  DATA: Kind.Data,
  BROADCAST: Kind.Broadcast,
  RETAIN_PUT: Kind.RetainPut,
  RETAIN_GET: Kind.RetainGet,
  WELCOME: Kind.Welcome,
  JOIN: Kind.Join,
  LEAVE: Kind.Leave,
  ERROR: Kind.Error,
  ACK: Kind.Ack,
  RETAINED: Kind.Retained,
};

/** The body in the vectors' JSON spelling: byte strings hex, u64 decimal strings. */
function bodyAsJson(body: Body): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(body)) {
    if (field === "kind") continue;
    if (value instanceof Uint8Array) json[field] = bytesToHex(value);
    else if (typeof value === "bigint") json[field] = value.toString();
    else if (Array.isArray(value)) json[field] = value.map((peer: Uint8Array) => bytesToHex(peer));
    else if (value !== undefined) json[field] = value;
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
