//! The panel as a peer of the room: one WebSocket to the relay (the key proof, then `DATA`
//! frames), the sessions with every peer it talks to, and the RPC the nodes speak inside them
//! (`protocol::message::Envelope`, requests and replies as the JSON of `ops::Envelope` and
//! `ops::Reply`). It is send-only (`--no-agent` semantics): requests from peers are answered
//! `NoHandler`. It works with the browser's `WebSocket` and with the `ws` package under Node.

import { concat, fromUtf8, toHex, utf8 } from "./bytes.ts";
import {
  decodeBody,
  decodeErrorBody,
  encodeRetainPutBody,
  decodeFrame,
  encodeFrame,
  encodePresenceGetBody,
  Kind,
  PROTOCOL_VERSION,
  ZERO_PEER,
} from "./frame.ts";
import { connectPath, generateKeypair, type PeerId, peerIdBytes, prove, type StaticKeypair } from "./keys.ts";
import {
  type Announcement,
  decodeAnnouncement,
  decodeEnvelope,
  emptyAnnouncement,
  encodeAnnouncement,
  encodeEnvelope,
  type Envelope,
  maxPart,
  parts,
  type RemoteFailure,
} from "./message.ts";
import { defaultSessionConfig, MAX_PLAINTEXT, Rejection, type SessionConfig, Sessions } from "./session.ts";

/** The part of the WebSocket API the peer uses (the browser's and the `ws` package's alike). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Opens a WebSocket to `url` offering `protocols` (empty: none). */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** The subprotocol the panel names when it presents a relay key (`remote_agents_relay::SUBPROTOCOL`). */
export const SUBPROTOCOL = "remote-agents";
/** A browser cannot send `Authorization` with a WebSocket: the relay key travels as a second
 * subprotocol, this prefix and the key's UTF-8 in lowercase hex (`KEY_SUBPROTOCOL_PREFIX`). */
export const KEY_SUBPROTOCOL_PREFIX = "remote-agents.relay-key.";

/** The subprotocols that present `relayKey` to the relay (none without a key). */
export function relayKeyProtocols(relayKey: string | undefined): string[] {
  return relayKey === undefined || relayKey.length === 0 ? [] : [SUBPROTOCOL, KEY_SUBPROTOCOL_PREFIX + toHex(utf8(relayKey))];
}

export interface PeerOptions {
  /** The relay's base URL, `ws://host:port` or `wss://…`, without a path. */
  relayUrl: string;
  roomName: string;
  /** The room key (`pskFromRoomToken` or `pskFromEncryptionKey`). */
  psk: Uint8Array;
  /** The relay's access key (`--relay-key`), if it requires one. */
  relayKey?: string;
  /** The peer's static key; a fresh one by default (a panel tab is a new peer each time). */
  keypair?: StaticKeypair;
  announcement?: Announcement;
  /** Opens the WebSocket; by default the platform's `WebSocket`. */
  webSocket?: WebSocketFactory;
  session?: Partial<SessionConfig>;
  /** A monotonic clock in milliseconds (`performance.now` by default). */
  clock?: () => number;
  /** Called for every refused frame (tampered, replayed, ...), which is otherwise dropped. */
  onRejection?: (rejection: Rejection, from: PeerId | null) => void;
  /** Called once when the connection ends: the relay closed it (also while joining) or `close`. */
  onClose?: (error: ConnectError) => void;
}

/** One join or leave in the room, as the relay reported it while presence is followed. */
export interface PresenceChange {
  joined: boolean;
  peer: PeerId;
}

/** A peer with an established session: its key and what it announced. */
export interface PeerInfo {
  peerId: PeerId;
  publicKey: Uint8Array;
  announcement: Announcement;
}

/** The result of a call: the streamed chunks, then the final response. */
export interface CallResult {
  chunks: Uint8Array[];
  response: Uint8Array;
}

/** How an operation ended on the node (`ops::Outcome`). */
export type Outcome =
  | { status: "ok"; result: unknown }
  | { status: "refused"; reason: string }
  | { status: "failed"; error: string }
  | { status: "outcome_unknown"; reason: string };

export class CallError extends Error {
  constructor(
    message: string,
    readonly failure: RemoteFailure | null = null,
  ) {
    super(message);
    this.name = "CallError";
  }
}

/** Why the connection to the relay ended or never started. */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly code: number | null = null,
  ) {
    super(message);
    this.name = "ConnectError";
  }
}

interface OutboundCall {
  peer: PeerId;
  sent: boolean;
  chunkParts: Uint8Array[];
  chunks: Uint8Array[];
  responseParts: Uint8Array[];
  resolve: (result: CallResult) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Takes each chunk as it arrives (progress reports) instead of collecting it for the result. */
  onChunk?: (chunk: Uint8Array) => void;
}

interface SnapshotRequest {
  subscribe: boolean;
  peers: PeerId[];
  resolve: (peers: PeerId[]) => void;
  reject: (error: Error) => void;
}

const DEFAULT_DEADLINE_MS = 30_000;

function defaultWebSocket(url: string, protocols: string[]): WebSocketLike {
  const constructor = (globalThis as { WebSocket?: new (url: string, protocols?: string[]) => WebSocketLike }).WebSocket;
  if (constructor === undefined) {
    throw new ConnectError("no WebSocket in this environment: pass `webSocket`");
  }
  return new constructor(url, protocols);
}

function messageBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) {
    return new Uint8Array(data);
  }
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  return null;
}

function frameOf(kind: number, from: Uint8Array, id: bigint, body: Uint8Array): Uint8Array {
  return encodeFrame({ version: PROTOCOL_VERSION, kind, from, to: ZERO_PEER, id, body });
}

export class Peer {
  readonly peerId: PeerId;
  private readonly sessions: Sessions;
  private readonly clock: () => number;
  private readonly known = new Map<PeerId, PeerInfo>();
  private readonly waiters = new Map<PeerId, Array<(info: PeerInfo) => void>>();
  private readonly calls = new Map<bigint, OutboundCall>();
  private readonly inbound = new Map<string, Uint8Array[]>();
  private readonly snapshots = new Map<bigint, SnapshotRequest>();
  /** Requests to the relay itself (RETAIN_PUT) awaiting their ACK or ERROR, by frame id. */
  private readonly relayReplies = new Map<bigint, (error: Error | null) => void>();
  /** The room's peers while presence is followed (`followPresence`), else null. */
  private present: Set<PeerId> | null = null;
  private following: Promise<void> = Promise.resolve();
  private readonly presenceWatchers = new Set<() => void>();
  private readonly presenceListeners = new Set<(changes: PresenceChange[]) => void>();
  private nextCall = 1n;
  private nextRelayId = 1n;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed: ConnectError | null = null;

  private constructor(
    private readonly socket: WebSocketLike,
    private readonly keypair: StaticKeypair,
    private readonly options: PeerOptions,
  ) {
    this.peerId = toHex(peerIdBytes(keypair.publicKey));
    this.clock = options.clock ?? (() => performance.now());
    const config = { ...defaultSessionConfig(), eagerHandshakes: false, ...options.session };
    const announcement = encodeAnnouncement(options.announcement ?? emptyAnnouncement());
    const now = this.clock();
    const unixNanos = BigInt(Date.now()) * 1_000_000n;
    this.sessions = new Sessions(keypair, options.psk, announcement, config, now, unixNanos);
  }

  /** Connects to the relay, proves the peer id's key and resolves once the relay welcomed it. */
  static connect(options: PeerOptions): Promise<Peer> {
    const keypair = options.keypair ?? generateKeypair();
    const url = options.relayUrl.replace(/\/+$/, "") + connectPath(options.roomName, keypair);
    const socket = (options.webSocket ?? defaultWebSocket)(url, relayKeyProtocols(options.relayKey));
    socket.binaryType = "arraybuffer";
    const peer = new Peer(socket, keypair, options);
    return new Promise((resolve, reject) => {
      let state: "challenge" | "welcome" | "open" = "challenge";
      socket.onerror = () => {};
      socket.onclose = (event) => {
        const error = new ConnectError(
          `relay closed the connection (${event.code}${event.reason ? `: ${event.reason}` : ""})`,
          event.code,
        );
        if (state !== "open") {
          reject(error);
        }
        peer.shutdown(error);
      };
      socket.onmessage = (event) => {
        const bytes = messageBytes(event.data);
        if (bytes === null) {
          return;
        }
        if (state === "open") {
          peer.onFrame(bytes);
          return;
        }
        try {
          const frame = decodeFrame(bytes);
          const body = decodeBody(frame);
          if (state === "challenge" && body.kind === Kind.Challenge) {
            const proof = prove(keypair, options.roomName, body.publicKey);
            socket.send(frameOf(Kind.Proof, peerIdBytes(keypair.publicKey), 0n, proof));
            state = "welcome";
          } else if (state === "welcome" && body.kind === Kind.Welcome) {
            state = "open";
            resolve(peer);
          } else {
            throw new ConnectError(`unexpected frame kind ${frame.kind} while joining`);
          }
        } catch (error) {
          reject(error);
          socket.close(1000, "join failed");
        }
      };
    });
  }

  /** The peers with an established session. */
  peers(): PeerInfo[] {
    return [...this.known.values()];
  }

  /** Resolves once a session with `peer` is established (starting a handshake if none is). */
  meet(peer: PeerId, timeoutMs = DEFAULT_DEADLINE_MS): Promise<PeerInfo> {
    if (this.sessions.isEstablished(peer, this.clock())) {
      const info = this.known.get(peer);
      if (info !== undefined) {
        return Promise.resolve(info);
      }
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new CallError(`no session with ${peer} within ${timeoutMs} ms`)), timeoutMs);
      const list = this.waiters.get(peer) ?? [];
      list.push((info) => {
        clearTimeout(timer);
        resolve(info);
      });
      this.waiters.set(peer, list);
      this.sessions.meet(peer, this.clock());
      this.pump();
    });
  }

  /** The room's peers (not this one), read page by page from the relay's presence snapshot. */
  roomPeers(): Promise<PeerId[]> {
    return this.snapshot(false);
  }

  /**
   * Follows the room's presence: reads the snapshot and subscribes to the relay's batches of
   * joins and leaves (protocol version 2). Resolves with the peers present once the snapshot is
   * read; `waitForPresence` then sees every change.
   */
  async followPresence(): Promise<ReadonlySet<PeerId>> {
    if (this.present === null) {
      // Batches that come while the pages are read apply in order with them (schemas/frame.md).
      this.present = new Set();
      this.following = this.snapshot(true).then(() => undefined);
    }
    await this.following;
    return this.present;
  }

  /** Resolves once `until` holds for the room's peers (following presence from now on). */
  async waitForPresence(
    until: (present: ReadonlySet<PeerId>) => boolean,
    timeoutMs = DEFAULT_DEADLINE_MS,
  ): Promise<ReadonlySet<PeerId>> {
    const present = await this.followPresence();
    if (until(present)) {
      return present;
    }
    return new Promise((resolve, reject) => {
      const watcher = () => {
        if (this.present !== null && until(this.present)) {
          clearTimeout(timer);
          this.presenceWatchers.delete(watcher);
          resolve(this.present);
        }
      };
      const timer = setTimeout(() => {
        this.presenceWatchers.delete(watcher);
        reject(new CallError(`the room did not reach the awaited presence within ${timeoutMs} ms`));
      }, timeoutMs);
      this.presenceWatchers.add(watcher);
    });
  }

  /**
   * Calls `listener` with every join and leave while presence is followed (`followPresence`),
   * the snapshot's peers included as joins, in the order the relay reported them: a leave and a
   * rejoin of the same peer in one batch (a restart) come as two changes. Returns the
   * unsubscribe function.
   */
  onPresence(listener: (changes: PresenceChange[]) => void): () => void {
    this.presenceListeners.add(listener);
    return () => this.presenceListeners.delete(listener);
  }

  /**
   * Sends `data` as one call to `peer` and collects its chunks and response; with `onChunk`,
   * each chunk goes there as it arrives (a long call's progress) and is not collected.
   */
  call(
    peer: PeerId,
    data: Uint8Array,
    deadlineMs = DEFAULT_DEADLINE_MS,
    onChunk?: (chunk: Uint8Array) => void,
  ): Promise<CallResult> {
    if (this.closed !== null) {
      return Promise.reject(this.closed);
    }
    const call = this.nextCall++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.calls.delete(call)) {
          this.sendEnvelope(peer, { type: "Cancel", call });
          reject(new CallError(`no answer from ${peer} within ${deadlineMs} ms`));
        }
      }, deadlineMs);
      const now = this.clock();
      this.calls.set(call, {
        peer,
        sent: this.sessions.isEstablished(peer, now),
        chunkParts: [],
        chunks: [],
        responseParts: [],
        resolve,
        reject,
        timer,
        ...(onChunk === undefined ? {} : { onChunk }),
      });
      try {
        for (const [part, more] of parts(data, maxPart(MAX_PLAINTEXT))) {
          this.sessions.send(
            peer,
            encodeEnvelope({ type: "Request", call, deadlineMs: BigInt(deadlineMs), data: part, more }),
            now,
          );
        }
      } catch (error) {
        this.finishCall(call, error as Error);
        return;
      }
      this.pump();
    });
  }

  /**
   * Runs one operation (`ops::Request` as JSON: `{ op, args }`) on the node `peer` and returns
   * its outcome. The node names the caller itself (this peer's authenticated id). `onChunk`
   * takes the progress reports the node streams meanwhile (JSON `{progress, total, message}`).
   */
  async request(
    peer: PeerId,
    request: { op: string; args?: object },
    deadlineMs = DEFAULT_DEADLINE_MS,
    onChunk?: (chunk: Uint8Array) => void,
  ): Promise<Outcome> {
    const id = crypto.randomUUID();
    const envelope = { id, caller: "", request: { op: request.op, args: request.args ?? {} } };
    const { response } = await this.call(peer, utf8(JSON.stringify(envelope)), deadlineMs, onChunk);
    const reply = JSON.parse(fromUtf8(response)) as { id: string; outcome: Outcome };
    if (reply.id !== id) {
      throw new CallError(`reply for request ${JSON.stringify(reply.id)}, not ${id}`);
    }
    return reply.outcome;
  }

  /** Leaves the room. */
  close(): void {
    this.socket.close(1000, "bye");
    this.shutdown(new ConnectError("closed by the panel"));
  }

  private shutdown(error: ConnectError): void {
    if (this.closed !== null) {
      return;
    }
    this.closed = error;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.sessions.reset();
    for (const call of [...this.calls.keys()]) {
      this.finishCall(call, error);
    }
    for (const snapshot of this.snapshots.values()) {
      snapshot.reject(error);
    }
    this.snapshots.clear();
    for (const reply of this.relayReplies.values()) {
      reply(error);
    }
    this.relayReplies.clear();
    this.options.onClose?.(error);
  }

  /**
   * Leaves `blob` at the relay under retained key `key` (RETAIN_PUT); resolves on its ACK and
   * rejects with the relay's ERROR (a full store, a blob over the cap). Seal it first (`blob.ts`):
   * the relay keeps what it is given for anyone in the room.
   */
  retainPut(key: Uint8Array, blob: Uint8Array, timeoutMs = DEFAULT_DEADLINE_MS): Promise<void> {
    if (this.closed !== null) {
      return Promise.reject(this.closed);
    }
    const id = this.nextRelayId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.relayReplies.delete(id);
        reject(new CallError(`the relay did not acknowledge the retained blob within ${timeoutMs} ms`));
      }, timeoutMs);
      this.relayReplies.set(id, (error) => {
        clearTimeout(timer);
        if (error === null) {
          resolve();
        } else {
          reject(error);
        }
      });
      this.socket.send(frameOf(Kind.RetainPut, peerIdBytes(this.keypair.publicKey), id, encodeRetainPutBody(key, blob)));
    });
  }

  private snapshot(subscribe: boolean): Promise<PeerId[]> {
    if (this.closed !== null) {
      return Promise.reject(this.closed);
    }
    return new Promise((resolve, reject) => {
      const id = this.nextRelayId++;
      this.snapshots.set(id, { subscribe, peers: [], resolve, reject });
      this.sendPresenceGet(id, subscribe, ZERO_PEER);
    });
  }

  private sendPresenceGet(id: bigint, subscribe: boolean, after: Uint8Array): void {
    this.socket.send(
      frameOf(Kind.PresenceGet, peerIdBytes(this.keypair.publicKey), id, encodePresenceGetBody(subscribe, after)),
    );
  }

  private notifyPresence(changes: PresenceChange[]): void {
    for (const watcher of [...this.presenceWatchers]) {
      watcher();
    }
    if (changes.length > 0) {
      for (const listener of [...this.presenceListeners]) {
        listener(changes);
      }
    }
  }

  /** A batch of joins and leaves from the relay, while presence is followed. */
  private onPresenceChanges(changes: Array<{ joined: boolean; peer: Uint8Array }>): void {
    if (this.present === null) {
      return;
    }
    const now = this.clock();
    // A batch pending when this peer subscribed may report its own join: it is not a room peer.
    const others = changes.filter((change) => toHex(change.peer) !== this.peerId);
    for (const change of others) {
      const peer = toHex(change.peer);
      if (change.joined) {
        this.present.add(peer);
        // A (re)join may be a restart that lost its sessions: start over with it.
        this.sessions.peerLeft(peer);
        this.known.delete(peer);
        this.sessions.peerPresent(peer, now);
      } else {
        this.present.delete(peer);
        this.sessions.peerLeft(peer);
        this.known.delete(peer);
      }
    }
    this.notifyPresence(others.map((change) => ({ joined: change.joined, peer: toHex(change.peer) })));
    this.pump();
  }

  private onFrame(bytes: Uint8Array): void {
    let frame;
    try {
      frame = decodeFrame(bytes);
    } catch {
      return;
    }
    const now = this.clock();
    if (frame.kind === Kind.Data) {
      try {
        const delivered = this.sessions.receive(bytes, now);
        if (delivered !== null) {
          this.onPlaintext(delivered.from, delivered.plaintext);
        }
      } catch (error) {
        if (!(error instanceof Rejection)) {
          throw error;
        }
        this.options.onRejection?.(error, toHex(frame.from));
      }
      this.pump();
      return;
    }
    if (frame.kind === Kind.Ack || frame.kind === Kind.Error) {
      // The answer to a request of ours to the relay itself; an ERROR about a DATA frame (a peer
      // not in the room) names no such request, and the call ends by its deadline.
      const reply = this.relayReplies.get(frame.id);
      if (reply !== undefined) {
        this.relayReplies.delete(frame.id);
        let error: Error | null = null;
        if (frame.kind === Kind.Error) {
          try {
            const body = decodeErrorBody(frame.body);
            error = new CallError(`the relay refused: ${body.message} (code ${body.code})`);
          } catch {
            error = new CallError("the relay refused with a malformed ERROR frame");
          }
        }
        reply(error);
      }
      return;
    }
    if (frame.kind !== Kind.Presence) {
      // WELCOME again, ...
      return;
    }
    let page;
    try {
      page = decodeBody(frame);
    } catch {
      return;
    }
    if (page.kind !== Kind.Presence) {
      return;
    }
    if (!page.snapshot) {
      this.onPresenceChanges(page.changes);
      return;
    }
    const snapshot = this.snapshots.get(frame.id);
    if (snapshot === undefined) {
      return;
    }
    for (const change of page.changes) {
      if (change.joined) {
        snapshot.peers.push(toHex(change.peer));
      }
    }
    if (snapshot.subscribe && this.present !== null) {
      const joined: PresenceChange[] = [];
      for (const peer of snapshot.peers.slice(snapshot.peers.length - page.changes.length)) {
        this.present.add(peer);
        this.sessions.peerPresent(peer, this.clock());
        joined.push({ joined: true, peer });
      }
      this.notifyPresence(joined);
      this.pump();
    }
    this.snapshots.delete(frame.id);
    const last = page.changes.at(-1);
    if (page.more && last !== undefined) {
      const id = this.nextRelayId++;
      this.snapshots.set(id, snapshot);
      this.sendPresenceGet(id, false, last.peer);
    } else {
      snapshot.resolve(snapshot.peers);
    }
  }

  private onPlaintext(peer: PeerId, plaintext: Uint8Array): void {
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(plaintext);
    } catch {
      return;
    }
    switch (envelope.type) {
      case "Announce": {
        const info = this.known.get(peer);
        if (info !== undefined) {
          info.announcement = envelope.announcement;
        }
        break;
      }
      case "Request": {
        // Send-only: collect the parts, then answer that no handler runs here.
        const key = `${peer}/${envelope.call}`;
        const collected = this.inbound.get(key) ?? [];
        collected.push(envelope.data);
        if (envelope.more) {
          this.inbound.set(key, collected);
        } else {
          this.inbound.delete(key);
          this.sendEnvelope(peer, { type: "Failure", call: envelope.call, failure: { type: "NoHandler" } });
        }
        break;
      }
      case "Direct":
        this.sendEnvelope(peer, { type: "Failure", call: envelope.call, failure: { type: "NoHandler" } });
        break;
      case "Chunk": {
        const call = this.calls.get(envelope.call);
        if (call?.peer === peer) {
          call.chunkParts.push(envelope.data);
          if (!envelope.more) {
            const chunk = concat(...call.chunkParts);
            call.chunkParts = [];
            if (call.onChunk === undefined) {
              call.chunks.push(chunk);
            } else {
              try {
                call.onChunk(chunk);
              } catch {
                // The listener's own failure is not the call's.
              }
            }
          }
        }
        break;
      }
      case "Response": {
        const call = this.calls.get(envelope.call);
        if (call?.peer === peer) {
          call.responseParts.push(envelope.data);
          if (!envelope.more) {
            this.calls.delete(envelope.call);
            clearTimeout(call.timer);
            call.resolve({ chunks: call.chunks, response: concat(...call.responseParts) });
          }
        }
        break;
      }
      case "Failure": {
        const call = this.calls.get(envelope.call);
        if (call?.peer === peer) {
          const failure = envelope.failure;
          const text = "message" in failure ? `${failure.type}: ${failure.message}` : failure.type;
          this.finishCall(envelope.call, new CallError(`call failed on ${peer}: ${text}`, failure));
        }
        break;
      }
      case "Cancel":
      case "Notify":
        break;
    }
  }

  private finishCall(call: bigint, error: Error): void {
    const outbound = this.calls.get(call);
    if (outbound !== undefined) {
      this.calls.delete(call);
      clearTimeout(outbound.timer);
      outbound.reject(error);
    }
  }

  private sendEnvelope(peer: PeerId, envelope: Envelope): void {
    try {
      this.sessions.send(peer, encodeEnvelope(envelope), this.clock());
    } catch {
      // A full queue or a closed peer: the caller's deadline reports it.
    }
    this.pump();
  }

  /** Hands the sessions' frames to the relay, reports their events and re-arms the timer. */
  private pump(): void {
    for (let event = this.sessions.pollEvent(); event !== undefined; event = this.sessions.pollEvent()) {
      if (event.type === "established") {
        let announcement: Announcement;
        try {
          announcement = decodeAnnouncement(event.announcement);
        } catch {
          announcement = emptyAnnouncement();
        }
        const info = { peerId: event.peer, publicKey: event.remoteStatic, announcement };
        this.known.set(event.peer, info);
        for (const call of this.calls.values()) {
          if (call.peer === event.peer) {
            call.sent = true;
          }
        }
        for (const waiter of this.waiters.get(event.peer) ?? []) {
          waiter(info);
        }
        this.waiters.delete(event.peer);
      } else {
        for (const [id, call] of [...this.calls]) {
          if (call.peer === event.peer && !call.sent) {
            this.finishCall(id, new CallError("no secure session with the peer (handshake failed)"));
          }
        }
      }
    }
    if (this.closed !== null) {
      return;
    }
    for (let out = this.sessions.pollTransmit(); out !== undefined; out = this.sessions.pollTransmit()) {
      this.socket.send(out.frame);
    }
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const due = this.sessions.nextTimeout();
    if (due !== null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.sessions.handleTimeout(this.clock());
        this.pump();
      }, Math.max(0, due - this.clock()));
    }
  }
}
