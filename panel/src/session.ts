//! The secure sessions between this peer and every other peer of the room, as the Rust
//! `protocol::session` runs them (read its module comment for the why): Noise
//! `Noise_IKpsk2_25519_AESGCM_SHA256` handshakes whose payloads carry a timestamp, the sender's
//! incarnation and its announcement; AES-256-GCM transport under the `Split()` keys with the frame
//! header's `id` as the counter nonce and the 42-byte header plus the 5-byte body prefix as
//! associated data; a 4,032-counter replay window (RFC 6479) marked only after a frame
//! authenticated; the lower peer id initiates, the higher asks with a `Hello`; the responder's
//! session is confirmed by the first transport frame; rekeying, expiry and restarts
//! (incarnations). Sans-IO: frames in, frames and events out; the caller supplies the clock
//! (milliseconds of a monotonic clock) and the wall clock at start.
//!
//! Body layout (inside a `DATA` frame, after the header):
//!
//! | type | body |
//! |-----:|------|
//! | 1 Hello | `flags:u8` (bit 0: please reply with your own Hello), `static_public_key:[u8;32]` |
//! | 2 Initiation | `sender_index:u32`, Noise message 1 (payload: `timestamp:u64`, `incarnation:u64`, announcement) |
//! | 3 Response | `sender_index:u32`, `receiver_index:u32`, Noise message 2 (payload: `incarnation:u64`, announcement) |
//! | 4 Transport | `receiver_index:u32`, AES-256-GCM ciphertext + 16-byte tag; nonce = header `id` |

import { randomBytes } from "@noble/hashes/utils.js";
import { decodeFrame, encodeFrame, HEADER_LEN, Kind, PROTOCOL_VERSION } from "./frame.ts";
import { concat, fromHex, readU32be, readU64be, toHex, u32be, u64be, utf8 } from "./bytes.ts";
import { type PeerId, peerIdFromPublicKey, type StaticKeypair } from "./keys.ts";
import { decrypt, encrypt, Handshake, HandshakeError } from "./noise.ts";

export { NOISE_PARAMS } from "./noise.ts";

export const PROLOGUE = utf8("remote-agents session v1");
/** The relay's default frame cap. */
export const MAX_FRAME_DEFAULT = 1024 * 1024;
/** Overhead of a transport frame: header, body type, receiver index and tag. */
export const TRANSPORT_OVERHEAD = HEADER_LEN + 5 + 16;
/** The largest plaintext that fits in one transport frame under the default cap. */
export const MAX_PLAINTEXT = MAX_FRAME_DEFAULT - TRANSPORT_OVERHEAD;

export const BodyType = { Hello: 1, Initiation: 2, Response: 3, Transport: 4 } as const;
const HELLO_PLEASE_REPLY = 1;
const WINDOW_WORDS = 64;
/** Counters older than this (relative to the highest seen) are rejected as too old. */
export const REPLAY_WINDOW = BigInt((WINDOW_WORDS - 1) * 64);
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** Tunables; the defaults are the Rust `SessionConfig`'s (WireGuard's timers). */
export interface SessionConfig {
  rekeyAfterMessages: bigint;
  rekeyAfterMs: number;
  rejectAfterMs: number;
  handshakeRetryMs: number;
  handshakeAttempts: number;
  maxQueuedPerPeer: number;
  /** Handshake with every peer the relay reports present (a panel that lists the room). */
  eagerHandshakes: boolean;
}

export function defaultSessionConfig(): SessionConfig {
  return {
    rekeyAfterMessages: 1n << 40n,
    rekeyAfterMs: 120_000,
    rejectAfterMs: 180_000,
    handshakeRetryMs: 2_000,
    handshakeAttempts: 5,
    maxQueuedPerPeer: 1024,
    eagerHandshakes: true,
  };
}

export type RejectionKind =
  | "Malformed"
  | "NotForUs"
  | "UnknownSession"
  | "PeerMismatch"
  | "Replay"
  | "Authentication"
  | "Expired"
  | "Handshake"
  | "StaleHandshake";

/** Why an incoming frame was rejected (the Rust `Rejection`); never carries payload bytes. */
export class Rejection extends Error {
  constructor(
    readonly kind: RejectionKind,
    readonly detail: string | null = null,
  ) {
    super(detail === null ? kind : `${kind}: ${detail}`);
    this.name = "Rejection";
  }
}

/** Errors of local operations (the Rust `SessionError`). */
export class SessionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionError";
  }
}

export type SessionEvent =
  | {
      type: "established";
      peer: PeerId;
      remoteStatic: Uint8Array;
      /** What the peer announced in its handshake (postcard `Announcement`). */
      announcement: Uint8Array;
    }
  | { type: "handshakeFailed"; peer: PeerId; dropped: number };

/** A frame to hand to the relay. */
export interface Outgoing {
  to: PeerId;
  frame: Uint8Array;
}

/**
 * Randomness the test vectors fix so whole handshakes are reproducible byte for byte (the Rust
 * side's test-only `FixedRandomness`); production leaves it out and draws fresh values.
 */
export interface FixedRandomness {
  ephemerals?: Uint8Array[];
  indexes?: number[];
  incarnation?: bigint;
}

/** Sliding window of received counters (RFC 6479), exactly as the Rust `ReplayWindow`. */
export class ReplayWindow {
  /** One past the highest counter accepted; 0 before the first. */
  private next = 0n;
  private readonly bits = new BigUint64Array(WINDOW_WORDS);

  wouldAccept(counter: bigint): boolean {
    if (counter === U64_MAX) {
      return false;
    }
    if (counter >= this.next) {
      return true;
    }
    if (this.next - counter > REPLAY_WINDOW) {
      return false;
    }
    const word = Number((counter / 64n) % BigInt(WINDOW_WORDS));
    return ((this.bits[word] as bigint) & (1n << counter % 64n)) === 0n;
  }

  mark(counter: bigint): void {
    if (counter >= this.next) {
      const newWord = counter / 64n;
      if (this.next > 0n) {
        const topWord = (this.next - 1n) / 64n;
        const advance = newWord - topWord < BigInt(WINDOW_WORDS) ? newWord - topWord : BigInt(WINDOW_WORDS);
        for (let step = 1n; step <= advance; step++) {
          this.bits[Number((topWord + step) % BigInt(WINDOW_WORDS))] = 0n;
        }
      }
      this.next = counter + 1n;
    }
    const word = Number((counter / 64n) % BigInt(WINDOW_WORDS));
    this.bits[word] = (this.bits[word] as bigint) | (1n << counter % 64n);
  }
}

/** One direction pair of transport keys with its counters. */
export interface Transport {
  localIndex: number;
  remoteIndex: number;
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
  sendCounter: bigint;
  window: ReplayWindow;
  createdMs: number;
  rekeyRequested: boolean;
}

export function newTransport(
  localIndex: number,
  remoteIndex: number,
  sendKey: Uint8Array,
  receiveKey: Uint8Array,
  createdMs: number,
): Transport {
  return {
    localIndex,
    remoteIndex,
    sendKey,
    receiveKey,
    sendCounter: 0n,
    window: new ReplayWindow(),
    createdMs,
    rekeyRequested: false,
  };
}

function header(from: PeerId, to: PeerId, id: bigint): Uint8Array {
  return encodeFrame({
    version: PROTOCOL_VERSION,
    kind: Kind.Data,
    from: fromHex(from),
    to: fromHex(to),
    id,
    body: new Uint8Array(0),
  });
}

function buildFrame(from: PeerId, to: PeerId, id: bigint, body: Uint8Array): Uint8Array {
  return concat(header(from, to, id), body);
}

/** Seals `plaintext` as the next transport frame from `from` to `to` under `transport`. */
export function seal(from: PeerId, to: PeerId, transport: Transport, plaintext: Uint8Array): Uint8Array {
  const counter = transport.sendCounter;
  transport.sendCounter += 1n;
  const associated = concat(header(from, to, counter), Uint8Array.of(BodyType.Transport), u32be(transport.remoteIndex));
  return concat(associated, encrypt(transport.sendKey, counter, associated, plaintext));
}

interface PendingInitiation {
  handshake: Handshake;
  localIndex: number;
}

interface PendingResponse {
  transport: Transport;
  remoteStatic: Uint8Array;
  announcement: Uint8Array;
  incarnation: bigint;
}

interface Attempt {
  startedMs: number | null;
  lastTryMs: number | null;
  tries: number;
}

interface PeerState {
  remoteStatic: Uint8Array | null;
  current: Transport | null;
  previous: Transport | null;
  initiation: PendingInitiation | null;
  response: PendingResponse | null;
  lastInitiationTimestamp: bigint;
  /** The peer's process incarnation of its current session; a new one means it restarted. */
  incarnation: bigint | null;
  queue: Uint8Array[];
  attempt: Attempt;
}

function newAttempt(): Attempt {
  return { startedMs: null, lastTryMs: null, tries: 0 };
}

function newPeerState(): PeerState {
  return {
    remoteStatic: null,
    current: null,
    previous: null,
    initiation: null,
    response: null,
    lastInitiationTimestamp: 0n,
    incarnation: null,
    queue: [],
    attempt: newAttempt(),
  };
}

function randomU64(): bigint {
  return readU64be(randomBytes(8), 0);
}

/** All sessions of one local peer. */
export class Sessions {
  readonly localId: PeerId;
  private readonly peers = new Map<PeerId, PeerState>();
  private readonly indexes = new Map<number, PeerId>();
  private readonly outbox: Outgoing[] = [];
  private readonly events: SessionEvent[] = [];
  private lastTimestamp = 0n;
  private handshakeFrameId = 0n;
  private readonly incarnation: bigint;
  private attemptsInProgress = 0;
  private readonly fixedEphemerals: Uint8Array[];
  private readonly fixedIndexes: number[];

  /**
   * `nowMs` and `unixNanos` are the same moment on the monotonic and the wall clock; the wall
   * clock only seeds the handshake timestamps, which then advance monotonically.
   */
  constructor(
    private readonly keypair: StaticKeypair,
    private readonly psk: Uint8Array,
    private announcement: Uint8Array,
    private readonly config: SessionConfig,
    private readonly clockOriginMs: number,
    private readonly clockOriginUnixNanos: bigint,
    fixed: FixedRandomness = {},
  ) {
    if (psk.length !== 32) {
      throw new SessionError("psk must be 32 bytes");
    }
    this.localId = peerIdFromPublicKey(keypair.publicKey);
    this.incarnation = fixed.incarnation ?? randomU64();
    this.fixedEphemerals = [...(fixed.ephemerals ?? [])];
    this.fixedIndexes = [...(fixed.indexes ?? [])];
  }

  /** Replaces what later handshakes announce. */
  setAnnouncement(announcement: Uint8Array): void {
    this.announcement = announcement;
  }

  /** Whether a confirmed session with `peer` exists. */
  isEstablished(peer: PeerId, nowMs: number): boolean {
    const current = this.peers.get(peer)?.current;
    return current != null && nowMs - current.createdMs < this.config.rejectAfterMs;
  }

  /** The peer's static public key, once a Hello or handshake told it. */
  remoteStatic(peer: PeerId): Uint8Array | null {
    return this.peers.get(peer)?.remoteStatic ?? null;
  }

  /** Next frame to send to the relay. */
  pollTransmit(): Outgoing | undefined {
    return this.outbox.shift();
  }

  /** Next event for the caller. */
  pollEvent(): SessionEvent | undefined {
    return this.events.shift();
  }

  /** The relay said `peer` is in the room. */
  peerPresent(peer: PeerId, nowMs: number): void {
    if (peer === this.localId || this.isEstablished(peer, nowMs)) {
      return;
    }
    this.entry(peer);
    if (this.config.eagerHandshakes) {
      this.requestHandshake(peer, nowMs, false);
    }
  }

  /** Starts a handshake with a present `peer` now, even without eager handshakes. */
  meet(peer: PeerId, nowMs: number): void {
    if (peer === this.localId || this.isEstablished(peer, nowMs)) {
      return;
    }
    this.requestHandshake(peer, nowMs, true);
  }

  /** The relay said `peer` left: its sessions and queue go. Returns how many queued messages
   * were dropped. */
  peerLeft(peer: PeerId): number {
    const state = this.peers.get(peer);
    if (state === undefined) {
      return 0;
    }
    const dropped = state.queue.length;
    if (this.clearPeer(state)) {
      this.attemptsInProgress--;
    }
    return dropped;
  }

  /** The relay connection was lost: every session and queue goes. */
  reset(): void {
    for (const state of this.peers.values()) {
      this.clearPeer(state);
    }
    this.attemptsInProgress = 0;
    this.outbox.length = 0;
  }

  /** Encrypts `plaintext` for `peer`, or queues it until a handshake completes. */
  send(peer: PeerId, plaintext: Uint8Array, nowMs: number): void {
    if (peer === this.localId) {
      throw new SessionError("cannot send to ourselves");
    }
    if (plaintext.length > MAX_PLAINTEXT) {
      throw new SessionError(`plaintext of ${plaintext.length} bytes exceeds one frame; chunk it`);
    }
    if (this.isEstablished(peer, nowMs)) {
      this.sealTo(peer, plaintext, nowMs);
      return;
    }
    const state = this.entry(peer);
    if (state.queue.length >= this.config.maxQueuedPerPeer) {
      throw new SessionError(`queue for peer ${peer} is full`);
    }
    state.queue.push(plaintext.slice());
    this.requestHandshake(peer, nowMs, true);
  }

  /**
   * Handles one `DATA` frame from the relay addressed to us. Returns the decrypted application
   * plaintext, if the frame carried one; throws a `Rejection` for anything refused.
   */
  receive(frame: Uint8Array, nowMs: number): { from: PeerId; plaintext: Uint8Array } | null {
    if (frame.length < HEADER_LEN + 1) {
      throw new Rejection("Malformed", "short frame");
    }
    let kind: number;
    let from: PeerId;
    let to: PeerId;
    try {
      const decoded = decodeFrame(frame);
      kind = decoded.kind;
      from = toHex(decoded.from);
      to = toHex(decoded.to);
    } catch {
      throw new Rejection("Malformed", "bad header");
    }
    if (kind !== Kind.Data) {
      throw new Rejection("Malformed", "not a data frame");
    }
    if (to !== this.localId) {
      throw new Rejection("NotForUs");
    }
    if (from === this.localId) {
      throw new Rejection("PeerMismatch");
    }
    const body = frame.subarray(HEADER_LEN);
    switch (body[0]) {
      case BodyType.Hello:
        this.receiveHello(from, body, nowMs);
        return null;
      case BodyType.Initiation:
        this.receiveInitiation(from, body, nowMs);
        return null;
      case BodyType.Response:
        this.receiveResponse(from, body, nowMs);
        return null;
      case BodyType.Transport:
        return this.receiveTransport(from, frame, nowMs);
      default:
        throw new Rejection("Malformed", "unknown body type");
    }
  }

  /** When `handleTimeout` next has work to do (milliseconds on the caller's clock). */
  nextTimeout(): number | null {
    if (this.attemptsInProgress === 0) {
      return null;
    }
    let earliest: number | null = null;
    for (const state of this.peers.values()) {
      if (state.attempt.startedMs !== null && state.attempt.lastTryMs !== null) {
        const due = state.attempt.lastTryMs + this.config.handshakeRetryMs;
        earliest = earliest === null ? due : Math.min(earliest, due);
      }
    }
    return earliest;
  }

  /** Retries handshakes whose answer is overdue and gives up after `handshakeAttempts`; drops
   * sessions past `rejectAfterMs`. */
  handleTimeout(nowMs: number): void {
    const retryPeers: Array<[PeerId, boolean]> = [];
    const failed: Array<[PeerId, number]> = [];
    for (const [peer, state] of this.peers) {
      for (const slot of ["current", "previous"] as const) {
        const transport = state[slot];
        if (transport !== null && nowMs - transport.createdMs >= this.config.rejectAfterMs) {
          state[slot] = null;
          this.indexes.delete(transport.localIndex);
        }
      }
      if (state.attempt.startedMs === null) {
        continue;
      }
      const lastTry = state.attempt.lastTryMs;
      if (lastTry === null || nowMs - lastTry < this.config.handshakeRetryMs) {
        continue;
      }
      if (state.attempt.tries >= this.config.handshakeAttempts) {
        const dropped = state.queue.length;
        state.queue = [];
        if (state.initiation !== null) {
          this.indexes.delete(state.initiation.localIndex);
          state.initiation = null;
        }
        state.attempt = newAttempt();
        this.attemptsInProgress--;
        failed.push([peer, dropped]);
      } else {
        retryPeers.push([peer, state.queue.length > 0]);
      }
    }
    for (const [peer, dropped] of failed) {
      this.events.push({ type: "handshakeFailed", peer, dropped });
    }
    for (const [peer, pleaseReply] of retryPeers) {
      this.requestHandshake(peer, nowMs, pleaseReply);
    }
  }

  private entry(peer: PeerId): PeerState {
    let state = this.peers.get(peer);
    if (state === undefined) {
      state = newPeerState();
      this.peers.set(peer, state);
    }
    return state;
  }

  /** Returns whether a handshake attempt was in progress. */
  private clearPeer(state: PeerState): boolean {
    for (const index of [
      state.current?.localIndex,
      state.previous?.localIndex,
      state.initiation?.localIndex,
      state.response?.transport.localIndex,
    ]) {
      if (index !== undefined) {
        this.indexes.delete(index);
      }
    }
    state.current = null;
    state.previous = null;
    state.initiation = null;
    state.response = null;
    state.queue = [];
    const wasStarted = state.attempt.startedMs !== null;
    state.attempt = newAttempt();
    return wasStarted;
  }

  private sealTo(peer: PeerId, plaintext: Uint8Array, nowMs: number): void {
    const transport = this.peers.get(peer)?.current;
    if (transport == null) {
      return;
    }
    const frame = seal(this.localId, peer, transport, plaintext);
    const wantsRekey =
      !transport.rekeyRequested &&
      (transport.sendCounter >= this.config.rekeyAfterMessages ||
        nowMs - transport.createdMs >= this.config.rekeyAfterMs);
    if (wantsRekey) {
      transport.rekeyRequested = true;
    }
    this.outbox.push({ to: peer, frame });
    if (wantsRekey) {
      this.requestHandshake(peer, nowMs, false);
    }
  }

  /** Starts (or nudges) a handshake with `peer` according to the lower-id-initiates rule. */
  private requestHandshake(peer: PeerId, nowMs: number, pleaseReply: boolean): void {
    const state = this.entry(peer);
    const lastTry = state.attempt.lastTryMs;
    if (lastTry !== null && nowMs - lastTry < this.config.handshakeRetryMs) {
      return;
    }
    if (state.attempt.startedMs === null) {
      state.attempt.startedMs = nowMs;
      this.attemptsInProgress++;
    }
    state.attempt.lastTryMs = nowMs;
    state.attempt.tries++;
    if (this.localId < peer) {
      if (state.remoteStatic !== null) {
        this.initiate(peer, state.remoteStatic, nowMs);
      } else {
        // Without its key (we restarted, or never met it) ask for its Hello.
        this.sendHello(peer, true);
      }
    } else {
      this.sendHello(peer, pleaseReply);
    }
  }

  private nextHandshakeFrameId(): bigint {
    this.handshakeFrameId = BigInt.asUintN(64, this.handshakeFrameId + 1n);
    return this.handshakeFrameId;
  }

  private sendHello(peer: PeerId, pleaseReply: boolean): void {
    const body = concat(
      Uint8Array.of(BodyType.Hello, pleaseReply ? HELLO_PLEASE_REPLY : 0),
      this.keypair.publicKey,
    );
    const frame = buildFrame(this.localId, peer, this.nextHandshakeFrameId(), body);
    this.outbox.push({ to: peer, frame });
  }

  private freshIndex(peer: PeerId): number {
    const fixed = this.fixedIndexes.shift();
    if (fixed !== undefined) {
      this.indexes.set(fixed, peer);
      return fixed;
    }
    for (;;) {
      const index = readU32be(randomBytes(4), 0);
      if (index !== 0 && !this.indexes.has(index)) {
        this.indexes.set(index, peer);
        return index;
      }
    }
  }

  private nextTimestamp(nowMs: number): bigint {
    const elapsedNanos = BigInt(Math.max(0, Math.floor((nowMs - this.clockOriginMs) * 1_000_000)));
    const sum = this.clockOriginUnixNanos + elapsedNanos;
    const candidate = sum > U64_MAX ? U64_MAX : sum;
    const next = this.lastTimestamp + 1n;
    this.lastTimestamp = candidate > next ? candidate : next;
    return this.lastTimestamp;
  }

  private handshake(initiator: boolean, remoteStatic?: Uint8Array): Handshake {
    const options = {
      keypair: this.keypair,
      psk: this.psk,
      prologue: PROLOGUE,
      remoteStatic,
      ephemeralPrivate: this.fixedEphemerals.shift(),
    };
    return initiator ? Handshake.initiator(options) : Handshake.responder(options);
  }

  private initiate(peer: PeerId, remoteStatic: Uint8Array, nowMs: number): void {
    const timestamp = this.nextTimestamp(nowMs);
    const localIndex = this.freshIndex(peer);
    let handshake: Handshake;
    let message: Uint8Array;
    try {
      handshake = this.handshake(true, remoteStatic);
      message = handshake.writeMessage(concat(u64be(timestamp), u64be(this.incarnation), this.announcement));
    } catch {
      this.indexes.delete(localIndex);
      return;
    }
    const body = concat(Uint8Array.of(BodyType.Initiation), u32be(localIndex), message);
    const frame = buildFrame(this.localId, peer, this.nextHandshakeFrameId(), body);
    const state = this.entry(peer);
    if (state.initiation !== null) {
      this.indexes.delete(state.initiation.localIndex);
    }
    state.initiation = { handshake, localIndex };
    this.outbox.push({ to: peer, frame });
  }

  private receiveHello(from: PeerId, body: Uint8Array, nowMs: number): void {
    if (body.length !== 34) {
      throw new Rejection("Malformed", "hello length");
    }
    const pleaseReply = ((body[1] as number) & HELLO_PLEASE_REPLY) !== 0;
    const remoteStatic = body.slice(2, 34);
    if (peerIdFromPublicKey(remoteStatic) !== from) {
      throw new Rejection("PeerMismatch");
    }
    const state = this.entry(from);
    state.remoteStatic = remoteStatic;
    if (this.localId < from) {
      // The peer asks for a (new) session: answer at most once per retry period so replayed
      // Hellos cannot cause a storm.
      const lastTry = state.attempt.lastTryMs;
      const recently =
        lastTry !== null && nowMs - lastTry < this.config.handshakeRetryMs && state.initiation !== null;
      if (!recently) {
        state.attempt.lastTryMs = nowMs;
        if (state.attempt.startedMs === null) {
          state.attempt.startedMs = nowMs;
          this.attemptsInProgress++;
        }
        this.initiate(from, remoteStatic, nowMs);
      }
    } else if (pleaseReply) {
      // The lower peer lacks our key or its session: answer with our Hello so it can initiate.
      this.requestHandshake(from, nowMs, false);
    }
  }

  private receiveInitiation(from: PeerId, body: Uint8Array, nowMs: number): void {
    if (body.length < 5) {
      throw new Rejection("Malformed", "initiation length");
    }
    const remoteIndex = readU32be(body, 1);
    const handshake = this.handshake(false);
    let payload: Uint8Array;
    try {
      payload = handshake.readMessage(body.subarray(5));
    } catch (error) {
      throw new Rejection("Handshake", (error as Error).message);
    }
    const remoteStatic = handshake.remoteStatic;
    if (remoteStatic === null) {
      throw new Rejection("Handshake", "no remote static key");
    }
    if (peerIdFromPublicKey(remoteStatic) !== from) {
      throw new Rejection("PeerMismatch");
    }
    if (payload.length < 16) {
      throw new Rejection("Malformed", "initiation payload");
    }
    const timestamp = readU64be(payload, 0);
    const incarnation = readU64be(payload, 8);
    const announcement = payload.slice(16);
    const state = this.entry(from);
    if (timestamp <= state.lastInitiationTimestamp) {
      throw new Rejection("StaleHandshake");
    }
    // Both sides initiated at once: the lower id's initiation wins, so the higher side drops its
    // own and answers.
    if (state.initiation !== null && this.localId < from) {
      throw new Rejection("Handshake", "initiation collision, ours wins");
    }
    state.lastInitiationTimestamp = timestamp;
    state.remoteStatic = remoteStatic;
    const localIndex = this.freshIndex(from);
    let message: Uint8Array;
    try {
      message = handshake.writeMessage(concat(u64be(this.incarnation), this.announcement));
    } catch (error) {
      this.indexes.delete(localIndex);
      throw new Rejection("Handshake", (error as Error).message);
    }
    const [initiatorToResponder, responderToInitiator] = handshake.split();
    const transport = newTransport(localIndex, remoteIndex, responderToInitiator, initiatorToResponder, nowMs);
    const responseBody = concat(Uint8Array.of(BodyType.Response), u32be(localIndex), u32be(remoteIndex), message);
    const frame = buildFrame(this.localId, from, this.nextHandshakeFrameId(), responseBody);
    if (state.initiation !== null) {
      this.indexes.delete(state.initiation.localIndex);
      state.initiation = null;
    }
    if (state.response !== null) {
      this.indexes.delete(state.response.transport.localIndex);
    }
    state.response = { transport, remoteStatic, announcement, incarnation };
    this.outbox.push({ to: from, frame });
  }

  private receiveResponse(from: PeerId, body: Uint8Array, nowMs: number): void {
    if (body.length < 9) {
      throw new Rejection("Malformed", "response length");
    }
    const remoteIndex = readU32be(body, 1);
    const receiverIndex = readU32be(body, 5);
    if (this.indexes.get(receiverIndex) !== from) {
      throw new Rejection("UnknownSession");
    }
    const state = this.peers.get(from);
    const pending = state?.initiation;
    if (state === undefined || pending == null || pending.localIndex !== receiverIndex) {
      throw new Rejection("UnknownSession");
    }
    let payload: Uint8Array;
    try {
      payload = pending.handshake.readMessage(body.subarray(9));
    } catch (error) {
      throw new Rejection("Handshake", error instanceof HandshakeError ? error.message : String(error));
    }
    if (payload.length < 8) {
      throw new Rejection("Malformed", "response payload");
    }
    const incarnation = readU64be(payload, 0);
    const announcement = payload.slice(8);
    state.initiation = null;
    const remoteStatic = pending.handshake.remoteStatic as Uint8Array;
    const [initiatorToResponder, responderToInitiator] = pending.handshake.split();
    const transport = newTransport(pending.localIndex, remoteIndex, initiatorToResponder, responderToInitiator, nowMs);
    this.promote(from, transport, remoteStatic, announcement, incarnation);
    // Confirm at once so the responder can start using the session.
    this.sealTo(from, new Uint8Array(0), nowMs);
    this.flushQueue(from, nowMs);
  }

  private promote(
    peer: PeerId,
    transport: Transport,
    remoteStatic: Uint8Array,
    announcement: Uint8Array,
    incarnation: bigint,
  ): void {
    const state = this.entry(peer);
    if (state.previous !== null) {
      this.indexes.delete(state.previous.localIndex);
      state.previous = null;
    }
    const replaced = state.current;
    state.current = transport;
    if (state.incarnation === incarnation) {
      // A rekey: frames already in flight under the old session still arrive.
      state.previous = replaced;
    } else if (replaced !== null) {
      // The peer restarted: nothing its old incarnation sealed is accepted any more.
      this.indexes.delete(replaced.localIndex);
    }
    state.incarnation = incarnation;
    const wasStarted = state.attempt.startedMs !== null;
    state.attempt = newAttempt();
    if (wasStarted) {
      this.attemptsInProgress--;
    }
    this.events.push({ type: "established", peer, remoteStatic, announcement });
  }

  private flushQueue(peer: PeerId, nowMs: number): void {
    const state = this.peers.get(peer);
    if (state === undefined) {
      return;
    }
    const queued = state.queue;
    state.queue = [];
    for (const plaintext of queued) {
      this.sealTo(peer, plaintext, nowMs);
    }
  }

  private receiveTransport(
    from: PeerId,
    frame: Uint8Array,
    nowMs: number,
  ): { from: PeerId; plaintext: Uint8Array } | null {
    const body = frame.subarray(HEADER_LEN);
    if (body.length < 5 + 16) {
      throw new Rejection("Malformed", "transport length");
    }
    const index = readU32be(body, 1);
    const owner = this.indexes.get(index);
    if (owner === undefined) {
      throw new Rejection("UnknownSession");
    }
    if (owner !== from) {
      throw new Rejection("PeerMismatch");
    }
    const counter = readU64be(frame, 34);
    const state = this.peers.get(from);
    if (state === undefined) {
      throw new Rejection("UnknownSession");
    }
    let transport: Transport;
    let pending = false;
    if (state.current?.localIndex === index) {
      transport = state.current;
    } else if (state.previous?.localIndex === index) {
      transport = state.previous;
    } else if (state.response?.transport.localIndex === index) {
      transport = state.response.transport;
      pending = true;
    } else {
      throw new Rejection("UnknownSession");
    }
    if (nowMs - transport.createdMs >= this.config.rejectAfterMs) {
      throw new Rejection("Expired");
    }
    if (!transport.window.wouldAccept(counter)) {
      throw new Rejection("Replay");
    }
    let plaintext: Uint8Array;
    try {
      plaintext = decrypt(transport.receiveKey, counter, frame.subarray(0, HEADER_LEN + 5), body.subarray(5));
    } catch {
      throw new Rejection("Authentication");
    }
    transport.window.mark(counter);
    if (pending && state.response !== null) {
      const confirmed = state.response;
      state.response = null;
      this.promote(from, confirmed.transport, confirmed.remoteStatic, confirmed.announcement, confirmed.incarnation);
      this.flushQueue(from, nowMs);
    }
    return plaintext.length === 0 ? null : { from, plaintext };
  }
}
