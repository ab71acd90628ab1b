#!/usr/bin/env node
// Message rate per room through one or more relays, measured in the same run: peers A and B join
// a fresh room on each relay, A sends N DATA frames to B as fast as the socket drains, and B
// counts them. Prints msgs/s and MB/s per relay and the ratio of each to the first.
//   node --import tsx scripts/bench.mjs [--count N] [--size BYTES] [--rounds R] NAME=ws://127.0.0.1:PORT ...
// A relay started with a key needs RELAY_KEY in the environment.
import { randomBytes } from "node:crypto";
import WebSocket from "ws";
// Run with `node --import tsx` (scripts/bench.sh does): the key proof is the Worker's own code.
import { proveKey } from "../src/keyproof.ts";

const HEADER_LEN = 42;
const KIND_DATA = 0x01;
const KIND_WELCOME = 0x10;
const KIND_ERROR = 0x13;
const KIND_PROOF = 0x05;
const KIND_CHALLENGE = 0x16;
const PROTOCOL_VERSION = 2;

function parseArgs(argv) {
  const options = { count: 100_000, size: 1024, rounds: 3, relays: [] };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === "--count") options.count = Number(argv[++index]);
    else if (arg === "--size") options.size = Number(argv[++index]);
    else if (arg === "--rounds") options.rounds = Number(argv[++index]);
    else if (arg.includes("=")) {
      const [name, url] = arg.split(/=(.*)/s);
      options.relays.push({ name, url });
    } else throw new Error(`unexpected argument ${arg}`);
  }
  if (options.relays.length === 0) throw new Error("name at least one relay: NAME=ws://...");
  if (!(options.size >= HEADER_LEN)) throw new Error(`--size must be at least ${HEADER_LEN}`);
  return options;
}

/** A fresh X25519 key and the peer id it hashes to (the relay checks the two match). */
async function newIdentity() {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const id = Buffer.from(new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey)).slice(0, 16));
  return { privateKey: pair.privateKey, publicKey, id };
}

/** Joins `room` as `me`: answers the relay's CHALLENGE with a proof of the key, then waits for
 * WELCOME so both peers are surely present. */
function connect(url, room, me) {
  const headers = process.env.RELAY_KEY ? { authorization: `Bearer ${process.env.RELAY_KEY}` } : {};
  const socket = new WebSocket(`${url}/v1/rooms/${room}?peer=${me.id.toString("hex")}`, {
    headers,
    perMessageDeflate: false,
  });
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.on("message", async function first(data) {
      if (data[1] === KIND_CHALLENGE) {
        const proof = await proveKey(me.privateKey, me.publicKey, me.id, Buffer.from(room, "hex"), data.subarray(HEADER_LEN));
        const frame = Buffer.alloc(HEADER_LEN + proof.length);
        frame[0] = PROTOCOL_VERSION;
        frame[1] = KIND_PROOF;
        me.id.copy(frame, 2);
        frame.set(proof, HEADER_LEN);
        socket.send(frame);
        return;
      }
      socket.off("message", first);
      if (data[1] !== KIND_WELCOME) reject(new Error(`expected WELCOME, got kind ${data[1]}`));
      else resolve(socket);
    });
  });
}

async function measure(url, count, size) {
  const room = randomBytes(32).toString("hex");
  const meA = await newIdentity();
  const meB = await newIdentity();
  const [idA, idB] = [meA.id, meB.id];
  const a = await connect(url, room, meA);
  const b = await connect(url, room, meB);

  const frame = Buffer.alloc(size);
  frame[0] = PROTOCOL_VERSION;
  frame[1] = KIND_DATA;
  idA.copy(frame, 2);
  idB.copy(frame, 18);

  let received = 0;
  let started = 0;
  const done = new Promise((resolve, reject) => {
    b.on("message", (data) => {
      if (data[1] !== KIND_DATA) return;
      received += 1;
      if (received === count) resolve(performance.now());
    });
    a.on("message", (data) => {
      if (data[1] === KIND_ERROR) reject(new Error(`relay error ${data.readUInt16BE(HEADER_LEN)}`));
    });
    b.on("close", (code) => reject(new Error(`receiver closed with ${code}`)));
    setTimeout(() => reject(new Error(`only ${received} of ${count} frames within 120 s`)), 120_000).unref();
  });

  started = performance.now();
  for (let sent = 0; sent < count; sent++) {
    frame.writeBigUInt64BE(BigInt(sent), 34);
    a.send(frame);
    // Keep the client's own buffer bounded so the relay, not the client's memory, sets the pace.
    if (a.bufferedAmount > 4 * 1024 * 1024) {
      while (a.bufferedAmount > 1024 * 1024) await new Promise((resolve) => setImmediate(resolve));
    }
  }
  const finished = await done;
  a.close();
  b.close();
  const seconds = (finished - started) / 1000;
  return { seconds, rate: count / seconds, megabytes: (count * size) / seconds / 1e6 };
}

const options = parseArgs(process.argv.slice(2));
// Rounds alternate between the relays so a busy machine slows each of them alike; the median
// round of each relay is reported.
for (const relay of options.relays) {
  // A short warm-up so JIT and connection setup don't count.
  await measure(relay.url, Math.min(2000, options.count), options.size);
  relay.rounds = [];
}
for (let round = 0; round < options.rounds; round++) {
  for (const relay of options.relays) {
    relay.rounds.push(await measure(relay.url, options.count, options.size));
  }
}
const median = (rounds) => [...rounds].sort((a, b) => a.rate - b.rate)[Math.floor(rounds.length / 2)];
const results = options.relays.map((relay) => ({ ...relay, ...median(relay.rounds) }));
const base = results[0];
console.log(
  `DATA frames A -> B, ${options.count} x ${options.size} bytes, one room per relay, ` +
    `median of ${options.rounds} alternating rounds`,
);
for (const result of results) {
  console.log(
    `${result.name.padEnd(12)} ${Math.round(result.rate).toString().padStart(9)} msgs/s ` +
      `${result.megabytes.toFixed(1).padStart(8)} MB/s  ${result.seconds.toFixed(2)} s  ` +
      `ratio to ${base.name}: ${(result.rate / base.rate).toFixed(3)}`,
  );
}
