//! The Worker relay under workerd, driven over real WebSockets on 127.0.0.1: presence, routing,
//! `from` overwriting, errors, eviction, retained blobs across a restart, the relay key. The
//! shared Rust conformance suite (tests/tests/relay_conformance.rs) covers the contract in full;
//! these tests keep the Worker checkable with npm alone.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import {
  ErrorCode,
  Kind,
  ZERO_PEER,
  bytesToHex,
  decodeErrorBody,
  decodeFrame,
  decodeRetainedBody,
  decodePresenceBody,
  decodeWelcomeBody,
  encodePresenceGetBody,
  PROTOCOL_VERSION,
  encodeFrame,
  encodeRetainGetBody,
  encodeRetainPutBody,
  type Frame,
  hexToBytes,
} from "../src/frame.ts";
import { type Key, proveKey } from "../src/keyproof.ts";

const workerDir = join(import.meta.dirname, "..");
const state = mkdtempSync(join(tmpdir(), "ra-worker-test-"));
let port = "";

function serve(command: "start" | "stop", env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(join(workerDir, "scripts/serve-local.sh"), [command, state], {
    env: { ...process.env, ...env },
    encoding: "utf8",
  }).trim();
}

before(() => {
  port = serve("start");
});
after(() => {
  serve("stop");
  rmSync(state, { recursive: true, force: true });
});

/** A connected peer that queues every frame and close it receives. */
class Peer {
  readonly frames: Frame[] = [];
  closed: { code: number; reason: string } | undefined;
  private waiters: (() => void)[] = [];

  private constructor(
    readonly socket: WebSocket,
    readonly id: Uint8Array,
  ) {
    socket.on("message", (data: Buffer) => {
      this.frames.push(decodeFrame(new Uint8Array(data)));
      this.wake();
    });
    socket.on("close", (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
  }

  /** Connects as `identity` and answers the relay's CHALLENGE with a proof of its key. */
  static async connect(room: string, identity?: Identity, headers: Record<string, string> = {}) {
    const me = identity ?? (await newIdentity());
    const peer = await Peer.connectUnproven(room, me.id, headers);
    // A relay that refuses at once (room full) closes instead; the test reads that close.
    const deadline = Date.now() + 5000;
    let challenge: Frame | undefined;
    while (!(challenge = peer.frames.find((frame) => frame.kind === Kind.Challenge))) {
      if (peer.closed || peer.socket.readyState !== WebSocket.OPEN) return peer;
      if (Date.now() > deadline) throw new Error("no CHALLENGE within 5 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    peer.frames.splice(peer.frames.indexOf(challenge), 1);
    const proof = await proveKey(me.privateKey, me.publicKey, me.id, hexToBytes(room), challenge.body);
    peer.send(Kind.Proof, ZERO_PEER, 0n, proof);
    return peer;
  }

  /** Connects claiming `id` without proving anything (the CHALLENGE is the first frame queued). */
  static async connectUnproven(room: string, id: Uint8Array, headers: Record<string, string> = {}) {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/${room}?peer=${bytesToHex(id)}`, {
      headers,
    });
    const peer = new Peer(socket, id);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    return peer;
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Waits, with a deadline, for the next frame of `kind`, dropping other kinds before it. */
  async next(kind: number, deadlineMs = 5000): Promise<Frame> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const index = this.frames.findIndex((frame) => frame.kind === kind);
      if (index >= 0) return this.frames.splice(0, index + 1)[index]!;
      if (this.closed) throw new Error(`closed ${this.closed.code} before kind ${kind}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame of kind ${kind} within ${deadlineMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * The close code the relay sent. `ws` reports a close only once TCP ends, and workerd ends the
   * TCP of a socket closed from another socket's event (eviction) only when the room hibernates,
   * ~10 s later; a node acts on the Close frame, so once the handshake has started (CLOSING) the
   * test drops TCP itself and `ws` reports the code from the received Close frame.
   */
  async closedWith(deadlineMs = 5000): Promise<number> {
    const deadline = Date.now() + deadlineMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error("not closed in time");
      if (this.socket.readyState === WebSocket.CLOSING) this.socket.terminate();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.closed.code;
  }

  send(kind: number, to: Uint8Array, id: bigint, body: Uint8Array = new Uint8Array(0), from = this.id) {
    this.socket.send(encodeFrame({ version: PROTOCOL_VERSION, kind, from, to, id, body }));
  }

  close() {
    this.socket.close();
  }
}

const newRoom = () => randomBytes(32).toString("hex");

/** A peer's static X25519 key and the peer id it hashes to. */
interface Identity {
  privateKey: Key;
  publicKey: Uint8Array;
  id: Uint8Array;
}

async function newIdentity(): Promise<Identity> {
  const pair = (await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"])) as {
    publicKey: Key;
    privateKey: Key;
  };
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey));
  return { privateKey: pair.privateKey, publicKey, id: digest.slice(0, 16) };
}

test("welcome, subscribed presence, data with from overwritten, broadcast, leave", async () => {
  const room = newRoom();
  const a = await Peer.connect(room);
  assert.equal(decodeWelcomeBody((await a.next(Kind.Welcome)).body), 0);
  a.send(Kind.PresenceGet, ZERO_PEER, 3n, encodePresenceGetBody(true, ZERO_PEER));
  const snapshot = await a.next(Kind.Presence);
  assert.equal(snapshot.id, 3n);
  assert.deepEqual(decodePresenceBody(snapshot.body), { snapshot: true, more: false, changes: [] });
  const b = await Peer.connect(room);
  const welcome = await b.next(Kind.Welcome);
  assert.deepEqual(welcome.to, new Uint8Array(b.id));
  assert.equal(decodeWelcomeBody(welcome.body), 1);
  assert.deepEqual(decodePresenceBody((await a.next(Kind.Presence)).body).changes, [
    { joined: true, peer: new Uint8Array(b.id) },
  ]);

  a.send(Kind.Data, b.id, 7n, new TextEncoder().encode("hello"), randomBytes(16));
  const data = await b.next(Kind.Data);
  assert.equal(data.id, 7n);
  assert.deepEqual(data.from, new Uint8Array(a.id));
  assert.equal(new TextDecoder().decode(data.body), "hello");

  b.send(Kind.Broadcast, randomBytes(16), 8n, new Uint8Array([1, 2, 3]));
  const broadcast = await a.next(Kind.Broadcast);
  assert.deepEqual(broadcast.to, ZERO_PEER);
  assert.deepEqual(broadcast.from, new Uint8Array(b.id));

  b.close();
  assert.deepEqual(decodePresenceBody((await a.next(Kind.Presence)).body).changes, [
    { joined: false, peer: new Uint8Array(b.id) },
  ]);
  // b never subscribed: it heard of nobody after its WELCOME.
  assert.ok(!b.frames.some((frame) => frame.kind === Kind.Presence));
  a.close();
});

test("errors keep the connection open", async () => {
  const a = await Peer.connect(newRoom());
  await a.next(Kind.Welcome);
  a.send(Kind.Data, randomBytes(16), 42n);
  let error = await a.next(Kind.Error);
  assert.equal(error.id, 42n);
  assert.equal(decodeErrorBody(error.body).code, ErrorCode.UnknownPeer);

  a.socket.send(new Uint8Array(10));
  error = await a.next(Kind.Error);
  assert.equal(error.id, 0n);
  assert.equal(decodeErrorBody(error.body).code, ErrorCode.Malformed);

  a.send(0x7f, ZERO_PEER, 9n);
  error = await a.next(Kind.Error);
  assert.equal(error.id, 9n);
  assert.equal(decodeErrorBody(error.body).code, ErrorCode.Malformed);

  a.socket.send(new Uint8Array(1024 * 1024 + 1));
  assert.equal(await a.closedWith(), 1009);
});

test("a second connection with the same peer id evicts the first with 4001", async () => {
  const room = newRoom();
  const identity = await newIdentity();
  const id = identity.id;
  const first = await Peer.connect(room, identity);
  await first.next(Kind.Welcome);
  const observer = await Peer.connect(room);
  await observer.next(Kind.Welcome);
  observer.send(Kind.PresenceGet, ZERO_PEER, 1n, encodePresenceGetBody(true, ZERO_PEER));
  assert.equal(decodePresenceBody((await observer.next(Kind.Presence)).body).changes.length, 1);
  const second = await Peer.connect(room, identity);
  await second.next(Kind.Welcome);
  assert.equal(await first.closedWith(), 4001);
  // The peer is still present: a DATA to it reaches the new connection.
  observer.send(Kind.Data, id, 1n, new Uint8Array([9]));
  assert.deepEqual((await second.next(Kind.Data)).body, new Uint8Array([9]));
  // No leave for a peer that never left; a repeated join (as the Rust relay sends) is harmless.
  const changes = decodePresenceBody((await observer.next(Kind.Presence)).body).changes;
  assert.deepEqual(changes, [{ joined: true, peer: new Uint8Array(id) }]);
  second.close();
  observer.close();
});

test("a connection that cannot prove a present peer's key is refused with 4004 and evicts nobody", async () => {
  const room = newRoom();
  const victim = await Peer.connect(room);
  await victim.next(Kind.Welcome);
  const friend = await Peer.connect(room);
  await friend.next(Kind.Welcome);
  const attacker = await newIdentity();
  // A proof by the attacker's own key, claiming the victim's id.
  const intruder = await Peer.connectUnproven(room, victim.id);
  const challenge = await intruder.next(Kind.Challenge);
  const proof = await proveKey(attacker.privateKey, attacker.publicKey, victim.id, hexToBytes(room), challenge.body);
  intruder.send(Kind.Proof, ZERO_PEER, 0n, proof);
  assert.equal(await intruder.closedWith(), 4004);
  // Any other first frame.
  const rude = await Peer.connectUnproven(room, victim.id);
  await rude.next(Kind.Challenge);
  rude.send(Kind.Data, friend.id, 1n, new Uint8Array([1]));
  assert.equal(await rude.closedWith(), 4004);
  // The victim is still the one reached, and nobody saw it leave or rejoin.
  friend.send(Kind.Data, victim.id, 2n, new Uint8Array([2]));
  assert.equal((await victim.next(Kind.Data)).id, 2n);
  assert.ok(!victim.closed);
  assert.ok(!friend.frames.some((frame) => frame.kind === Kind.Presence));
  victim.close();
  friend.close();
});

test("malformed room or peer id closes with 4003", async () => {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/nothex?peer=00`);
  const code = await new Promise<number>((resolve) => socket.on("close", resolve));
  assert.equal(code, 4003);
});

test("retained blobs: newest 4 per key, oldest first, kept across a restart", async () => {
  const room = newRoom();
  const key = new TextEncoder().encode("desired");
  const a = await Peer.connect(room);
  await a.next(Kind.Welcome);
  for (let index = 1n; index <= 6n; index++) {
    a.send(Kind.RetainPut, ZERO_PEER, index, encodeRetainPutBody(key, new Uint8Array([Number(index)])));
    assert.equal((await a.next(Kind.Ack)).id, index);
  }
  a.close();

  serve("stop");
  port = serve("start", { PORT: port });

  const b = await Peer.connect(room);
  await b.next(Kind.Welcome);
  b.send(Kind.RetainGet, ZERO_PEER, 98n, encodeRetainPutBody(key, new Uint8Array([1])));
  const malformed = await b.next(Kind.Error);
  assert.equal(malformed.id, 98n);
  assert.equal(decodeErrorBody(malformed.body).code, ErrorCode.Malformed);
  b.send(Kind.RetainGet, ZERO_PEER, 99n, encodeRetainGetBody(key));
  const blobs: number[] = [];
  const seqs: bigint[] = [];
  for (let index = 0; index < 4; index++) {
    const retained = await b.next(Kind.Retained);
    assert.equal(retained.id, 99n);
    const body = decodeRetainedBody(retained.body);
    assert.deepEqual(body.key, key);
    blobs.push(body.blob[0]!);
    seqs.push(body.seq);
  }
  assert.deepEqual(blobs, [3, 4, 5, 6]);
  assert.deepEqual(seqs, [3n, 4n, 5n, 6n]);
  const ack = await b.next(Kind.Ack);
  assert.equal(ack.id, 99n);
  assert.deepEqual(ack.body, new Uint8Array([0, 0, 0, 4]));
  b.close();
});

test("retained bytes over the room's cap get 507; a replacement under a full key still fits", async () => {
  serve("stop");
  port = serve("start", { RETAINED_BYTES_PER_ROOM: "100" });
  try {
    const a = await Peer.connect(newRoom());
    await a.next(Kind.Welcome);
    const put = (id: bigint, key: string, size: number) =>
      a.send(Kind.RetainPut, ZERO_PEER, id, encodeRetainPutBody(new TextEncoder().encode(key), new Uint8Array(size)));
    // 1 key byte + 4 blobs of 20 = 81 of 100.
    for (let id = 1n; id <= 4n; id++) {
      put(id, "k", 20);
      assert.equal((await a.next(Kind.Ack)).id, id);
    }
    put(5n, "j", 20);
    const error = await a.next(Kind.Error);
    assert.equal(error.id, 5n);
    assert.equal(decodeErrorBody(error.body).code, ErrorCode.RetainedFull);
    // A fifth blob under "k" pushes out its oldest: the room stays at 81.
    put(6n, "k", 20);
    assert.equal((await a.next(Kind.Ack)).id, 6n);
    a.close();
  } finally {
    serve("stop");
    port = serve("start");
  }
});

test("a room's retained blobs are dropped the retained TTL after its last peer left", async () => {
  serve("stop");
  port = serve("start", { RETAINED_TTL_SECONDS: "1" });
  try {
    const room = newRoom();
    const key = new TextEncoder().encode("desired");
    const writer = await Peer.connect(room);
    await writer.next(Kind.Welcome);
    writer.send(Kind.RetainPut, ZERO_PEER, 1n, encodeRetainPutBody(key, new Uint8Array([1])));
    await writer.next(Kind.Ack);
    writer.close();
    // Each look joins the room and leaves it again, which restarts the TTL: look less often
    // than the TTL, until the deadline.
    const deadline = Date.now() + 15_000;
    for (let look = 1n; ; look++) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const reader = await Peer.connect(room);
      await reader.next(Kind.Welcome);
      reader.send(Kind.RetainGet, ZERO_PEER, look, encodeRetainGetBody(key));
      const count = (await reader.next(Kind.Ack)).body[3];
      reader.close();
      if (count === 0) break;
      assert.ok(Date.now() < deadline, "the idle room's blobs were never dropped");
    }
  } finally {
    serve("stop");
    port = serve("start");
  }
});

test("limits come from the environment: room full is 4002, one key too many is 507", async () => {
  serve("stop");
  port = serve("start", { RETAINED_KEYS_PER_ROOM: "2", MAX_PEERS_PER_ROOM: "1" });
  try {
    const room = newRoom();
    const a = await Peer.connect(room);
    await a.next(Kind.Welcome);
    const refused = await Peer.connect(room);
    assert.equal(await refused.closedWith(), 4002);
    for (const [id, key] of [[1n, "one"], [2n, "two"], [3n, "one"]] as const) {
      a.send(Kind.RetainPut, ZERO_PEER, id, encodeRetainPutBody(new TextEncoder().encode(key), new Uint8Array([1])));
      assert.equal((await a.next(Kind.Ack)).id, id);
    }
    a.send(Kind.RetainPut, ZERO_PEER, 4n, encodeRetainPutBody(new TextEncoder().encode("three"), new Uint8Array([1])));
    const error = await a.next(Kind.Error);
    assert.equal(error.id, 4n);
    assert.equal(decodeErrorBody(error.body).code, ErrorCode.RetainedFull);
    a.close();
  } finally {
    serve("stop");
    port = serve("start");
  }
});

test("a relay key refuses connections without it with 401", async () => {
  serve("stop");
  port = serve("start", { RELAY_KEY: "sesame" });
  try {
    const status = await new Promise<number>((resolve) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/${newRoom()}?peer=${"a".repeat(32)}`);
      socket.on("unexpected-response", (_request, response) => resolve(response.statusCode ?? 0));
      socket.on("open", () => resolve(101));
    });
    assert.equal(status, 401);
    const peer = await Peer.connect(newRoom(), undefined, { authorization: "Bearer sesame" });
    await peer.next(Kind.Welcome);
    peer.close();
    // A browser (the panel) presents the key as a subprotocol, hex of its UTF-8; the relay
    // names the plain subprotocol back and never echoes the key.
    const offer = (key: string) =>
      new Promise<{ status: number; protocol: string }>((resolve) => {
        const keyHex = Buffer.from(key, "utf8").toString("hex");
        const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/${newRoom()}?peer=${"b".repeat(32)}`, [
          "remote-agents",
          `remote-agents.relay-key.${keyHex}`,
        ]);
        socket.on("unexpected-response", (_request, response) => resolve({ status: response.statusCode ?? 0, protocol: "" }));
        socket.on("open", () => {
          resolve({ status: 101, protocol: socket.protocol });
          socket.close();
        });
      });
    assert.deepEqual(await offer("sesame"), { status: 101, protocol: "remote-agents" });
    assert.equal((await offer("sesame?")).status, 401);
  } finally {
    serve("stop");
    port = serve("start");
  }
});

test("the browser panel's page is served beside the relay; other paths stay 404", async () => {
  const page = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(page.headers.get("content-security-policy") ?? "", /^default-src 'none'; script-src 'self'/);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  assert.match(await page.text(), /<script src="\/?panel\.js"/);
  for (const [path, type] of [
    ["/panel.js", "text/javascript; charset=utf-8"],
    ["/panel.css", "text/css; charset=utf-8"],
  ] as const) {
    const file = await fetch(`http://127.0.0.1:${port}${path}`);
    assert.equal(file.status, 200, path);
    assert.equal(file.headers.get("content-type"), type, path);
    assert.ok((await file.text()).length > 1000, path);
  }
  for (const path of ["/panel.js.map", "/v1", "/admin"]) {
    const missing = await fetch(`http://127.0.0.1:${port}${path}`);
    assert.equal(missing.status, 404, path);
    await missing.body?.cancel();
  }
  const post = await fetch(`http://127.0.0.1:${port}/`, { method: "POST" });
  assert.equal(post.status, 404);
  await post.body?.cancel();
});
