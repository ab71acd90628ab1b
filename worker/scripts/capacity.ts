#!/usr/bin/env -S node --import tsx
//! How much one room's Durable Object holds under local workerd (issue 19, item 3): peers join
//! one room in steps up to `--peers` (each answering the relay's CHALLENGE with a real key
//! proof), and at each step the run measures, with that many peers present:
//!   - joins per second (connect, CHALLENGE, PROOF, WELCOME) of the step's newcomers,
//!   - a newcomer's paged presence snapshot (PRESENCE_GET until no page follows),
//!   - one BROADCAST to the whole room: time until every peer has it (deliveries per second),
//!   - DATA A → B, 1 KiB frames: messages per second with the room that full,
//!   - workerd's resident memory (VmRSS), and per peer.
//! Past the room cap (`MAX_PEERS_PER_ROOM`, 10,000 by default) a join closes with 4002; the run
//! ends by checking that. Single-threaded isolate: every figure is one core's work.
//!
//!   cd worker && npm ci && node --import tsx scripts/capacity.ts [--peers 10000] [--steps 4]
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import {
  CloseCode,
  Kind,
  ZERO_PEER,
  bytesToHex,
  decodeFrame,
  decodePresenceBody,
  encodeFrame,
  encodePresenceGetBody,
  type Frame,
  PROTOCOL_VERSION,
} from "../src/frame.ts";
import { type Key, proveKey } from "../src/keyproof.ts";

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}
const total = option("peers", 10_000);
const steps = option("steps", 4);
const dataCount = option("data", 20_000);
/** Joins in flight at once (a mass reconnect's nodes back off with jitter; this is a burst). */
const inFlight = option("in-flight", 200);

const workerDir = join(import.meta.dirname, "..");
const state = mkdtempSync(join(tmpdir(), "ra-worker-capacity-"));
const serve = (command: "start" | "stop") =>
  execFileSync(join(workerDir, "scripts/serve-local.sh"), [command, state], {
    encoding: "utf8",
    env: { ...process.env, MAX_PEERS_PER_ROOM: String(total + 2) },
  }).trim();
const port = serve("start");
const workerdPid = readFileSync(join(state, "pid"), "utf8").trim();
const room = bytesToHex(crypto.getRandomValues(new Uint8Array(32)));

/** Resident memory of workerd and its children, in MiB. */
function workerdMiB(): number {
  const pids = [workerdPid];
  try {
    pids.push(
      ...execFileSync("pgrep", ["-g", workerdPid], { encoding: "utf8" })
        .split("\n")
        .filter((p) => p && p !== workerdPid),
    );
  } catch {
    // no children
  }
  let kib = 0;
  for (const pid of pids) {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    kib += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  }
  return kib / 1024;
}

/** One peer: its socket and the frames it has not consumed. */
class Peer {
  frames: Frame[] = [];
  closed: number | undefined;
  onFrame: ((frame: Frame) => void) | undefined;
  private waiters: (() => void)[] = [];
  constructor(
    readonly socket: WebSocket,
    readonly id: Uint8Array,
  ) {
    socket.on("message", (data: Buffer) => {
      const frame = decodeFrame(new Uint8Array(data));
      if (this.onFrame) this.onFrame(frame);
      else this.frames.push(frame);
      this.wake();
    });
    socket.on("close", (code: number) => {
      this.closed = code;
      this.wake();
    });
  }
  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
  async next(kind: number, deadlineMs = 60_000): Promise<Frame> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const index = this.frames.findIndex((frame) => frame.kind === kind);
      if (index >= 0) return this.frames.splice(0, index + 1)[index]!;
      if (this.closed !== undefined) throw new Error(`closed ${this.closed} before kind ${kind}`);
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
  send(kind: number, to: Uint8Array, id: bigint, body: Uint8Array) {
    this.socket.send(encodeFrame({ version: PROTOCOL_VERSION, kind, from: this.id, to, id, body }));
  }
}

/** Joins the room with a fresh key, answering the CHALLENGE; resolves on WELCOME. */
async function joinRoom(): Promise<Peer> {
  const pair = (await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"])) as {
    publicKey: Key;
    privateKey: Key;
  };
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const id = new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey)).slice(0, 16);
  const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/${room}?peer=${bytesToHex(id)}`, {
    perMessageDeflate: false,
  });
  const peer = new Peer(socket, id);
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  const challenge = await peer.next(Kind.Challenge);
  peer.send(
    Kind.Proof,
    ZERO_PEER,
    0n,
    await proveKey(pair.privateKey, publicKey, id, hexBytes(room), challenge.body),
  );
  await peer.next(Kind.Welcome);
  return peer;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!.map((byte) => Number.parseInt(byte, 16)));
}

/** Joins `count` peers, `inFlight` at a time; returns them and the seconds it took. */
async function joinMany(count: number): Promise<{ peers: Peer[]; seconds: number }> {
  const started = performance.now();
  const peers: Peer[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (next < count) {
        next++;
        peers.push(await joinRoom());
      }
    }),
  );
  return { peers, seconds: (performance.now() - started) / 1000 };
}

/** A newcomer's full paged snapshot: seconds, and the peers it listed. */
async function snapshot(): Promise<{ seconds: number; listed: number; pages: number }> {
  const newcomer = await joinRoom();
  const started = performance.now();
  let after = ZERO_PEER;
  let listed = 0;
  let pages = 0;
  for (let id = 1n; ; id++) {
    newcomer.send(Kind.PresenceGet, ZERO_PEER, id, encodePresenceGetBody(false, after));
    const page = decodePresenceBody((await newcomer.next(Kind.Presence)).body);
    pages++;
    listed += page.changes.length;
    if (!page.more || page.changes.length === 0) break;
    after = page.changes[page.changes.length - 1]!.peer;
  }
  const seconds = (performance.now() - started) / 1000;
  newcomer.socket.close();
  await new Promise((resolve) => newcomer.socket.once("close", resolve));
  return { seconds, listed, pages };
}

/** One BROADCAST from `peers[0]`: seconds until every other peer has it. */
async function broadcast(peers: Peer[]): Promise<number> {
  let waiting = peers.length - 1;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${waiting} peers never got the broadcast`)), 120_000);
    for (const peer of peers.slice(1)) {
      peer.frames = [];
      peer.onFrame = (frame) => {
        if (frame.kind !== Kind.Broadcast) return;
        peer.onFrame = undefined;
        if (--waiting === 0) {
          clearTimeout(timer);
          resolve();
        }
      };
    }
  });
  const started = performance.now();
  peers[0]!.send(Kind.Broadcast, ZERO_PEER, 7n, new Uint8Array(256));
  await done;
  return (performance.now() - started) / 1000;
}

/** DATA from `a` to `b`, `count` frames of 1 KiB: messages per second. */
async function data(a: Peer, b: Peer, count: number): Promise<number> {
  let received = 0;
  const done = new Promise<void>((resolve) => {
    b.onFrame = (frame) => {
      if (frame.kind === Kind.Data && ++received === count) {
        b.onFrame = undefined;
        resolve();
      }
    };
  });
  const started = performance.now();
  const body = new Uint8Array(1024 - 42);
  for (let sent = 0; sent < count; sent++) {
    a.send(Kind.Data, b.id, BigInt(sent), body);
    if (a.socket.bufferedAmount > 4 << 20) {
      while (a.socket.bufferedAmount > 1 << 20) await new Promise((resolve) => setImmediate(resolve));
    }
  }
  await done;
  return count / ((performance.now() - started) / 1000);
}

try {
  const idle = workerdMiB();
  console.log(`one room on local workerd (port ${port}); workerd idle: ${idle.toFixed(0)} MiB`);
  console.log(
    "peers   joins/s   snapshot (pages)     broadcast to all     DATA 1 KiB A->B   workerd RSS  per peer",
  );
  const peers: Peer[] = [];
  for (let step = 1; step <= steps; step++) {
    const target = Math.round((total * step) / steps);
    const joined = await joinMany(target - peers.length);
    peers.push(...joined.peers);
    const view = await snapshot();
    if (view.listed !== peers.length) throw new Error(`the snapshot listed ${view.listed} of ${peers.length}`);
    const spread = await broadcast(peers);
    const rate = await data(peers[0]!, peers[1]!, dataCount);
    const rss = workerdMiB();
    console.log(
      `${String(peers.length).padStart(6)} ${Math.round(joined.peers.length / joined.seconds)
        .toString()
        .padStart(8)}   ${view.seconds.toFixed(3)} s (${view.pages})`.padEnd(40) +
        `${spread.toFixed(3)} s (${Math.round((peers.length - 1) / spread)}/s)`.padEnd(21) +
        `${Math.round(rate)} msg/s`.padEnd(18) +
        `${rss.toFixed(0)} MiB`.padStart(11) +
        `${(((rss - idle) * 1024) / peers.length).toFixed(1)} KiB`.padStart(10),
    );
  }
  // Past the cap: the relay refuses the next peer with 4002 (room full). The cap here is
  // total + 2 (the snapshot newcomers came and went), so fill it and try once more.
  peers.push(...(await joinMany(2)).peers);
  const refused = await joinRoom().then(
    () => "joined",
    (error: Error) => error.message,
  );
  console.log(
    `past the cap (${total + 2} peers): a newcomer ${refused.includes(String(CloseCode.RoomFull)) ? `is closed with ${CloseCode.RoomFull} (room full)` : refused}`,
  );
  for (const peer of peers) peer.socket.terminate();
} finally {
  serve("stop");
  rmSync(state, { recursive: true, force: true });
}
