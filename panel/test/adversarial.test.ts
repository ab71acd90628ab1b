//! The cases of the Rust adversarial suites (protocol/src/session/tests.rs and
//! tests/tests/adversarial.rs) against the panel's session: every flipped bit, replays of
//! transport and handshake frames, re-routed and spoofed frames, forged ciphertext, a wrong room
//! key, a restarted peer's old frames, reordering within the window. The frames come from the
//! Rust-generated transcript (schemas/session-vectors.json) where the case allows, so what is
//! refused is what a Rust node sends; the rest run two panel sessions against each other.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fromHex, toHex, u32be } from "../src/bytes.ts";
import { HEADER_LEN } from "../src/frame.ts";
import { generateKeypair, type PeerId, type StaticKeypair } from "../src/keys.ts";
import { pskFromEncryptionKey } from "../src/psk.ts";
import {
  BodyType,
  defaultSessionConfig,
  Rejection,
  REPLAY_WINDOW,
  type SessionConfig,
  Sessions,
} from "../src/session.ts";
import { type HandshakeVector, runUntil, sessionVectors } from "./support.ts";

const explicit = sessionVectors.handshakes[0] as HandshakeVector;
const explicitPsk = pskFromEncryptionKey(explicit.psk_input.encryption_key as string);

function rejects(action: () => unknown, what: string): Rejection {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof Rejection, `${what}: not rejected (${String(caught)})`);
  return caught;
}

/** Two panel peers in memory with frames passed by hand (the Rust unit tests' `Pair`). */
class Pair {
  now = 0;
  a: Sessions;
  b: Sessions;

  constructor(
    readonly aKey: StaticKeypair,
    readonly bKey: StaticKeypair,
    config: SessionConfig = defaultSessionConfig(),
    bPsk: Uint8Array = explicitPsk,
  ) {
    this.a = new Sessions(aKey, explicitPsk, new Uint8Array(0), config, 0, 1_000n);
    this.b = new Sessions(bKey, bPsk, new Uint8Array(0), config, 0, 1_000n);
  }

  static random(config?: SessionConfig, bPsk?: Uint8Array): Pair {
    return new Pair(generateKeypair(), generateKeypair(), config, bPsk);
  }

  /** Delivers frames both ways until both outboxes are empty. */
  pump(): { atA: Uint8Array[]; atB: Uint8Array[]; rejected: Rejection[] } {
    const result = { atA: [] as Uint8Array[], atB: [] as Uint8Array[], rejected: [] as Rejection[] };
    for (let round = 0; round < 100; round++) {
      let moved = false;
      for (const [from, to, sink] of [
        [this.a, this.b, result.atB],
        [this.b, this.a, result.atA],
      ] as const) {
        for (let out = from.pollTransmit(); out !== undefined; out = from.pollTransmit()) {
          moved = true;
          try {
            const delivered = to.receive(out.frame, this.now);
            if (delivered !== null) {
              sink.push(delivered.plaintext);
            }
          } catch (error) {
            assert.ok(error instanceof Rejection, String(error));
            result.rejected.push(error);
          }
        }
      }
      if (!moved) {
        break;
      }
    }
    return result;
  }

  connect(): void {
    this.a.peerPresent(this.b.localId, this.now);
    this.b.peerPresent(this.a.localId, this.now);
    assert.deepEqual(this.pump().rejected, []);
    assert.ok(this.a.isEstablished(this.b.localId, this.now));
    assert.ok(this.b.isEstablished(this.a.localId, this.now));
  }

  sealAToB(plaintext: Uint8Array): Uint8Array {
    this.a.send(this.b.localId, plaintext, this.now);
    const out = this.a.pollTransmit();
    assert.ok(out);
    assert.equal(out.frame[HEADER_LEN], BodyType.Transport);
    return out.frame;
  }
}

test("every flipped bit of a Rust-sealed frame is rejected, and the window is not poisoned", () => {
  const reference = runUntil(explicit, explicitPsk, "reply");
  const request = reference.frames.find((step) => step.what === "request")?.frame as Uint8Array;
  const run = runUntil(explicit, explicitPsk, "confirmation");
  for (let bit = 0; bit < request.length * 8; bit++) {
    const tampered = request.slice();
    tampered[bit >> 3] = (tampered[bit >> 3] as number) ^ (1 << (bit & 7));
    rejects(() => run.responder.receive(tampered, run.now), `bit ${bit}`);
  }
  const delivered = run.responder.receive(request, run.now);
  assert.equal(toHex(delivered?.plaintext ?? new Uint8Array(0)), explicit.request);
});

test("every frame of the Rust transcript replayed afterwards yields nothing", () => {
  const run = runUntil(explicit, explicitPsk, "reply");
  for (const step of run.frames) {
    if (step.frame[HEADER_LEN] === BodyType.Hello) {
      // Hellos are unauthenticated hints by design: at most they ask for a fresh handshake.
      continue;
    }
    const target = step.sender === "initiator" ? run.responder : run.initiator;
    const rejection = rejects(() => target.receive(step.frame, run.now), step.what);
    assert.ok(["Replay", "StaleHandshake", "UnknownSession"].includes(rejection.kind), rejection.message);
  }
  // The session still works, and its new frames are refused when replayed in turn.
  run.initiator.send(run.responder.localId, Uint8Array.of(1), run.now);
  const out = run.initiator.pollTransmit();
  assert.ok(out);
  assert.deepEqual(run.responder.receive(out.frame, run.now)?.plaintext, Uint8Array.of(1));
  assert.equal(rejects(() => run.responder.receive(out.frame, run.now), "new frame replayed").kind, "Replay");
});

test("replayed frames between two panel peers are rejected", () => {
  const pair = Pair.random();
  pair.connect();
  const frame = pair.sealAToB(Uint8Array.of(7));
  assert.ok(pair.b.receive(frame, pair.now));
  assert.equal(rejects(() => pair.b.receive(frame, pair.now), "replay").kind, "Replay");
  assert.equal(rejects(() => pair.b.receive(frame, pair.now), "replay").kind, "Replay");
});

test("reordered frames within the window are accepted and older ones are not", () => {
  const pair = Pair.random();
  pair.connect();
  const frames = Array.from({ length: 200 }, (_, i) => pair.sealAToB(u32be(i)));
  for (let i = frames.length - 1; i >= 0; i--) {
    assert.deepEqual(pair.b.receive(frames[i] as Uint8Array, pair.now)?.plaintext, u32be(i));
  }
  const late = pair.sealAToB(Uint8Array.of(1));
  const newer = Array.from({ length: Number(REPLAY_WINDOW) + 10 }, () => pair.sealAToB(Uint8Array.of(2)));
  assert.ok(pair.b.receive(newer.at(-1) as Uint8Array, pair.now));
  assert.equal(rejects(() => pair.b.receive(late, pair.now), "too old").kind, "Replay");
  assert.ok(pair.b.receive(newer[20] as Uint8Array, pair.now));
  assert.ok(pair.b.receive(newer[15] as Uint8Array, pair.now));
});

test("a wrong room key never establishes and the handshake gives up", () => {
  const config = { ...defaultSessionConfig(), handshakeAttempts: 3 };
  const pair = Pair.random(config, fromHex("a5".repeat(32)));
  const b = pair.b.localId;
  pair.a.peerPresent(b, pair.now);
  pair.b.peerPresent(pair.a.localId, pair.now);
  pair.a.send(b, Uint8Array.of(9), pair.now);
  const first = pair.pump();
  assert.deepEqual(first.atB, []);
  assert.ok(first.rejected.length > 0);
  assert.ok(first.rejected.every((rejection) => rejection.kind === "Handshake"), first.rejected.join());
  assert.ok(!pair.a.isEstablished(b, pair.now) && !pair.b.isEstablished(pair.a.localId, pair.now));
  let failed: { peer: PeerId; dropped: number } | null = null;
  for (let round = 0; round < 10 && failed === null; round++) {
    pair.now += config.handshakeRetryMs;
    pair.a.handleTimeout(pair.now);
    pair.b.handleTimeout(pair.now);
    assert.deepEqual(pair.pump().atB, []);
    for (let event = pair.a.pollEvent(); event !== undefined; event = pair.a.pollEvent()) {
      if (event.type === "handshakeFailed") {
        failed = { peer: event.peer, dropped: event.dropped };
      }
    }
  }
  assert.deepEqual(failed, { peer: b, dropped: 1 });
});

test("a frame re-routed to another peer or claiming another sender is rejected", () => {
  const keys = [generateKeypair(), generateKeypair(), generateKeypair()];
  const nodes = keys.map((key) => new Sessions(key, explicitPsk, new Uint8Array(0), defaultSessionConfig(), 0, 1n));
  const ids = nodes.map((node) => node.localId);
  const hub = nodes[0] as Sessions;
  for (const target of [1, 2]) {
    hub.send(ids[target] as PeerId, Uint8Array.of(0), 0);
    for (let round = 0; round < 10; round++) {
      for (let out = hub.pollTransmit(); out !== undefined; out = hub.pollTransmit()) {
        try {
          nodes[ids.indexOf(out.to)]?.receive(out.frame, 0);
        } catch {
          // Handshake races are settled by the lower id; the rounds finish them.
        }
      }
      for (const index of [1, 2]) {
        const node = nodes[index] as Sessions;
        for (let out = node.pollTransmit(); out !== undefined; out = node.pollTransmit()) {
          try {
            hub.receive(out.frame, 0);
          } catch {
            // As above.
          }
        }
      }
    }
  }
  hub.send(ids[1] as PeerId, Uint8Array.of(1, 2, 3), 0);
  const frame = hub.pollTransmit()?.frame as Uint8Array;
  const rerouted = frame.slice();
  rerouted.set(fromHex(ids[2] as string), 18);
  rejects(() => nodes[2]?.receive(rerouted, 0), "re-routed");
  const spoofed = frame.slice();
  spoofed.set(fromHex(ids[2] as string), 2);
  rejects(() => nodes[1]?.receive(spoofed, 0), "spoofed sender");
  assert.deepEqual(nodes[1]?.receive(frame, 0)?.plaintext, Uint8Array.of(1, 2, 3));
});

test("random ciphertext under a real session index is rejected", () => {
  const pair = Pair.random();
  pair.connect();
  const frame = pair.sealAToB(new Uint8Array(40));
  for (let i = HEADER_LEN + 5; i < frame.length; i++) {
    frame[i] = (i * 17) & 0xff;
  }
  assert.equal(rejects(() => pair.b.receive(frame, pair.now), "forged").kind, "Authentication");
});

test("frames of a restarted peer's old incarnation are rejected", () => {
  const pair = Pair.random();
  pair.connect();
  const delivered = pair.sealAToB(Uint8Array.of(1));
  assert.ok(pair.b.receive(delivered, pair.now));
  const withheld = pair.sealAToB(Uint8Array.of(2));
  // a restarts with the same identity; b only learns of it through the new handshake.
  pair.now += 1_000;
  pair.a = new Sessions(pair.aKey, explicitPsk, new Uint8Array(0), defaultSessionConfig(), pair.now, 2_000_000_000n);
  pair.a.peerPresent(pair.b.localId, pair.now);
  pair.b.peerPresent(pair.a.localId, pair.now);
  assert.deepEqual(pair.pump().rejected, []);
  assert.ok(pair.b.isEstablished(pair.a.localId, pair.now));
  assert.equal(rejects(() => pair.b.receive(delivered, pair.now), "old delivered").kind, "UnknownSession");
  assert.equal(rejects(() => pair.b.receive(withheld, pair.now), "old withheld").kind, "UnknownSession");
  assert.ok(pair.b.receive(pair.sealAToB(Uint8Array.of(3)), pair.now));
});

test("rekeying after a number of messages loses none of them", () => {
  const pair = Pair.random({ ...defaultSessionConfig(), rekeyAfterMessages: 10n });
  pair.connect();
  const received: number[] = [];
  const indexes = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const frame = pair.sealAToB(u32be(i));
    indexes.add(toHex(frame.subarray(HEADER_LEN + 1, HEADER_LEN + 5)));
    received.push(new DataView((pair.b.receive(frame, pair.now)?.plaintext as Uint8Array).buffer).getUint32(0));
    const { atB, rejected } = pair.pump();
    assert.deepEqual(rejected, []);
    received.push(...atB.map((bytes) => new DataView(bytes.buffer).getUint32(0)));
  }
  assert.deepEqual(received, Array.from({ length: 50 }, (_, i) => i));
  assert.ok(indexes.size >= 4, `sessions used: ${indexes.size}`);
});

test("a session past reject_after is refused and a fresh handshake replaces it", () => {
  const config = defaultSessionConfig();
  const pair = Pair.random(config);
  pair.connect();
  pair.now += config.rekeyAfterMs + 1_000;
  assert.ok(pair.b.receive(pair.sealAToB(Uint8Array.of(1)), pair.now), "the old session still works");
  pair.pump();
  pair.now += config.rejectAfterMs - config.rekeyAfterMs;
  assert.ok(pair.b.receive(pair.sealAToB(Uint8Array.of(2)), pair.now), "the new session works");
});
