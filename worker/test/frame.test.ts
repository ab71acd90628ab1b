//! The frame codec on its own: layout of each relay body and the header checks of frame.md.
//! The byte-exact agreement with the Rust codec is checked in vectors.test.ts.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  FrameError,
  HEADER_LEN,
  Kind,
  ZERO_ID,
  ZERO_PEER,
  decodeErrorBody,
  decodeFrame,
  decodeRetainBody,
  decodeRetainedBody,
  decodePresenceBody,
  decodePresenceGetBody,
  decodeWelcomeBody,
  encodeCountBody,
  encodePresenceBody,
  encodePresenceGetBody,
  encodeErrorBody,
  encodeFrame,
  encodeRetainPutBody,
  encodeRetainedBody,
  encodeWelcomeBody,
  hexToBytes,
  bytesToHex,
  relayFrame,
} from "../src/frame.ts";

const peerA = hexToBytes("00112233445566778899aabbccddeeff");
const peerB = hexToBytes("ffeeddccbbaa99887766554433221100");

test("header layout: version, kind, from, to, big-endian id, body", () => {
  const bytes = encodeFrame({
    version: 2,
    kind: Kind.Data,
    from: peerA,
    to: peerB,
    id: 0x0102030405060708n,
    body: new Uint8Array([0xaa, 0xbb]),
  });
  assert.equal(
    bytesToHex(bytes),
    "0201" + bytesToHex(peerA) + bytesToHex(peerB) + "0102030405060708" + "aabb",
  );
  const frame = decodeFrame(bytes);
  assert.equal(frame.id, 0x0102030405060708n);
  assert.deepEqual(frame.body, new Uint8Array([0xaa, 0xbb]));
  assert.deepEqual(frame.from, peerA);
  assert.deepEqual(frame.to, peerB);
});

test("the largest id survives the round trip", () => {
  const id = 0xffff_ffff_ffff_ffffn;
  const bytes = encodeFrame({ version: 2, kind: Kind.Ack, from: ZERO_PEER, to: peerA, id, body: new Uint8Array() });
  assert.equal(bytes.length, HEADER_LEN);
  assert.equal(decodeFrame(bytes).id, id);
});

test("short header, wrong version and unknown kind are frame errors with the readable id", () => {
  assert.throws(() => decodeFrame(new Uint8Array(41)), (error: FrameError) => error.id === 0n);
  const bytes = encodeFrame({ version: 2, kind: Kind.Data, from: peerA, to: peerB, id: 5n, body: new Uint8Array() });
  bytes[0] = 1;
  // A peer of version 1 is told both versions.
  assert.throws(
    () => decodeFrame(bytes),
    (error: FrameError) =>
      error.id === 5n && error.message === "unsupported frame version 1: this side speaks protocol version 2",
  );
  bytes[0] = 2;
  bytes[1] = 0x11;
  assert.throws(() => decodeFrame(bytes), (error: FrameError) => error.id === 5n);
});

test("relay bodies round-trip", () => {
  assert.equal(decodeWelcomeBody(encodeWelcomeBody(2)), 2);
  assert.equal(bytesToHex(encodeWelcomeBody(0)), "00000000");
  assert.throws(() => decodeWelcomeBody(new Uint8Array([0, 0, 1])));

  assert.deepEqual(decodePresenceGetBody(encodePresenceGetBody(true, peerA)), { subscribe: true, after: peerA });
  assert.throws(() => decodePresenceGetBody(new Uint8Array(17).fill(2)));
  const page = { snapshot: false, more: true, changes: [{ joined: true, peer: peerA }, { joined: false, peer: peerB }] };
  const presence = encodePresenceBody(page);
  assert.equal(bytesToHex(presence), "0200000002" + "01" + bytesToHex(peerA) + "02" + bytesToHex(peerB));
  assert.deepEqual(decodePresenceBody(presence), page);
  assert.throws(() => decodePresenceBody(new Uint8Array([0, 0, 0, 0, 1])));

  assert.deepEqual(decodeErrorBody(encodeErrorBody(404, "destination peer not in the room")), {
    code: 404,
    message: "destination peer not in the room",
  });
  assert.equal(bytesToHex(encodeErrorBody(429, "")), "01ad");

  const key = new TextEncoder().encode("k");
  const put = encodeRetainPutBody(key, new Uint8Array([7, 8]));
  assert.equal(bytesToHex(put), "016b0708");
  assert.deepEqual(decodeRetainBody(put), { key, blob: new Uint8Array([7, 8]) });
  assert.throws(() => decodeRetainBody(new Uint8Array([3, 1])));
  assert.throws(() => decodeRetainBody(new Uint8Array()));

  const retained = encodeRetainedBody(key, 9n, new Uint8Array([1]));
  assert.equal(bytesToHex(retained), "016b" + "0000000000000009" + "01");
  assert.deepEqual(decodeRetainedBody(retained), { key, seq: 9n, blob: new Uint8Array([1]) });
  assert.equal(bytesToHex(encodeCountBody(4)), "00000004");
});

test("relay frames copy the request id bytes verbatim", () => {
  const id = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const frame = decodeFrame(relayFrame(Kind.Ack, peerA, id, encodeCountBody(0)));
  assert.equal(frame.id, 0x0102030405060708n);
  assert.deepEqual(frame.from, ZERO_PEER);
  assert.deepEqual(decodeFrame(relayFrame(Kind.Welcome, peerA, ZERO_ID, new Uint8Array(4))).to, peerA);
});
