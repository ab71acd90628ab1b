//! Test helpers: the checked-in vectors, and the two-peer transcript of
//! protocol/src/session/vectors.rs (`run_until`) rebuilt with the panel's own sessions.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fromHex, toHex } from "../src/bytes.ts";
import { keypairFromPrivate } from "../src/keys.ts";
import { defaultSessionConfig, type SessionConfig, Sessions } from "../src/session.ts";

export interface SideVector {
  static_private: string;
  static_public: string;
  peer_id: string;
  ephemeral_private: string;
  ephemeral_public: string;
  index: number;
  incarnation: string;
  announcement: string;
}

export interface HandshakeVector {
  name: string;
  psk_input: { encryption_key?: string; room_token?: string; room_name?: string };
  psk: string;
  unix_nanos: string;
  initiator: SideVector;
  responder: SideVector;
  request: string;
  reply: string;
  noise: Record<string, string>;
  frames: Array<{ sender: "initiator" | "responder"; what: string; hex: string }>;
}

export interface RejectionVector {
  name: string;
  handshake: string;
  after: string;
  at: "initiator" | "responder";
  elapsed_ms: number;
  hex: string;
  rejection: string;
  detail: string | null;
}

export const sessionVectors = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../schemas/session-vectors.json"), "utf8"),
) as {
  noise: { protocol_name: string; prologue: string; psk_position: number };
  constants: Record<string, unknown>;
  psk: {
    argon2id: { memory_kib: number; iterations: number; parallelism: number; version: number; output_len: number };
    from_room_token: Array<{ room_token: string; room_name: string; salt: string; psk: string }>;
    from_encryption_key: Array<{ encryption_key: string; psk: string }>;
  };
  handshakes: HandshakeVector[];
  transport: Array<Record<string, string> & { receiver_index: number }>;
  replay_window: Array<{ name: string; steps: Array<{ counter: string; accepted: boolean }> }>;
  rejections: RejectionVector[];
  messages: { announcements: Array<{ value: unknown; hex: string }>; envelopes: Array<{ value: unknown; hex: string }> };
};

export const frameVectors = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../schemas/frame-vectors.json"), "utf8"),
) as {
  key_proof: Record<string, string>;
  room_ids: Array<{ room_name: string; room_id: string }>;
  peer_ids: Array<{ public_key: string; peer_id: string }>;
};

/** The vectors' sessions are lazy (a node's), as in the Rust generator. */
export function vectorConfig(): SessionConfig {
  return { ...defaultSessionConfig(), eagerHandshakes: false };
}

export function sessionsFor(side: SideVector, psk: Uint8Array, unixNanos: bigint, now = 0): Sessions {
  return new Sessions(keypairFromPrivate(fromHex(side.static_private)), psk, fromHex(side.announcement), vectorConfig(), now, unixNanos, {
    ephemerals: [fromHex(side.ephemeral_private)],
    indexes: [side.index],
    incarnation: BigInt(side.incarnation),
  });
}

export const STEPS = [
  "initiator_hello",
  "responder_hello",
  "initiation",
  "response",
  "confirmation",
  "request",
  "reply",
] as const;

export interface Run {
  initiator: Sessions;
  responder: Sessions;
  frames: Array<{ sender: "initiator" | "responder"; what: string; frame: Uint8Array }>;
  now: number;
}

function onlyFrame(sessions: Sessions, what: string): Uint8Array {
  const out = sessions.pollTransmit();
  assert.ok(out, `${what}: no frame`);
  assert.equal(sessions.pollTransmit(), undefined, `${what}: one frame only`);
  return out.frame;
}

/**
 * The initiator (lower id) has a request for the responder before either knows the other; stops
 * once step `last` was delivered. Every delivery must succeed and hand over what the Rust run did.
 */
export function runUntil(vector: HandshakeVector, psk: Uint8Array, last: string): Run {
  const now = 0;
  const unixNanos = BigInt(vector.unix_nanos);
  const run: Run = {
    initiator: sessionsFor(vector.initiator, psk, unixNanos, now),
    responder: sessionsFor(vector.responder, psk, unixNanos, now),
    frames: [],
    now,
  };
  const initiatorId = run.initiator.localId;
  const responderId = run.responder.localId;
  assert.ok(initiatorId < responderId, "the lower peer id initiates");
  const request = fromHex(vector.request);
  const reply = fromHex(vector.reply);
  run.initiator.send(responderId, request, now);
  const pending = new Map<string, Uint8Array>([["initiator_hello", onlyFrame(run.initiator, "initiator hello")]]);
  for (const what of STEPS) {
    const frame = pending.get(what);
    assert.ok(frame, `${what} was not sent`);
    pending.delete(what);
    const sender = ["initiator_hello", "initiation", "confirmation", "request"].includes(what) ? "initiator" : "responder";
    const receiver = sender === "initiator" ? run.responder : run.initiator;
    const delivered = receiver.receive(frame, now);
    if (what === "request" || what === "reply") {
      assert.ok(delivered, `${what} delivered`);
      assert.equal(delivered.from, sender === "initiator" ? initiatorId : responderId);
      assert.equal(toHex(delivered.plaintext), toHex(what === "request" ? request : reply));
    } else {
      assert.equal(delivered, null, `${what} carries no plaintext`);
    }
    run.frames.push({ sender, what, frame });
    if (what === last) {
      return run;
    }
    switch (what) {
      case "initiator_hello":
        pending.set("responder_hello", onlyFrame(run.responder, "responder hello"));
        break;
      case "responder_hello":
        pending.set("initiation", onlyFrame(run.initiator, "initiation"));
        break;
      case "initiation":
        pending.set("response", onlyFrame(run.responder, "response"));
        break;
      case "response": {
        const confirmation = run.initiator.pollTransmit();
        const queued = run.initiator.pollTransmit();
        assert.ok(confirmation && queued);
        assert.equal(run.initiator.pollTransmit(), undefined);
        pending.set("confirmation", confirmation.frame);
        pending.set("request", queued.frame);
        break;
      }
      case "request":
        run.responder.send(initiatorId, reply, now);
        pending.set("reply", onlyFrame(run.responder, "reply"));
        break;
    }
  }
  throw new Error("the last step returns");
}
