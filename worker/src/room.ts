//! One room of the relay as a Durable Object: presence of opaque peer ids, routing on the frame
//! header only (bodies are ciphertext it never reads), eviction, retained blobs in Durable Object
//! storage and the limits of schemas/frame.md. WebSockets are accepted through the Hibernation
//! API, so an idle room costs nothing and its state is rebuilt from the sockets' attachments.

import { DurableObject } from "cloudflare:workers";
import {
  CloseCode,
  ErrorCode,
  HEADER_LEN,
  Kind,
  MESSAGE_ID_LEN,
  OFFSET_FROM,
  OFFSET_ID,
  OFFSET_TO,
  PEER_ID_LEN,
  PRESENCE_BATCH_MS,
  PRESENCE_PAGE,
  PROTOCOL_VERSION,
  type PresenceChange,
  ZERO_ID,
  ZERO_PEER,
  bytesToHex,
  decodePresenceGetBody,
  decodeRetainBody,
  decodeRetainGetBody,
  encodeCountBody,
  encodeErrorBody,
  encodePresenceBody,
  encodeRetainedBody,
  encodeWelcomeBody,
  hexToBytes,
  isPeerIdHex,
  isPeerKind,
  isRoomIdHex,
  relayFrame,
} from "./frame";
import { type Challenge, createChallenge, verifyProof } from "./keyproof";
import { type LimitVars, type Limits, TokenBucket, limitsFrom } from "./limits";
import { CHALLENGE_HEADER, SUBPROTOCOL, offeredProtocols, wantsChallengeInHeader } from "./subprotocol";

export interface Env extends LimitVars {
  ROOMS: DurableObjectNamespace<Room>;
  /** Optional relay access key; when set, connections must send `Authorization: Bearer <key>`. */
  RELAY_KEY?: string | null;
}

/** What survives hibernation with each socket (serializeAttachment caps it at 16 KiB). */
interface Attachment {
  peer: string;
  evicted?: boolean;
  /** Still to prove its key: not in the room yet. */
  unproven?: boolean;
  /** Subscribed to the room's presence changes (PRESENCE_GET with the subscribe flag). */
  subscribed?: boolean;
}

/** In-memory state of one connection, rebuilt from its attachment after hibernation. */
interface Connection {
  peerHex: string;
  peer: Uint8Array;
  bucket: TokenBucket;
  evicted: boolean;
  /**
   * Set until the connection's PROOF verifies. `null` once hibernation lost the challenge's
   * private key (it lives in memory only): such a connection is refused and reconnects.
   */
  challenge?: Challenge | null;
  /** The room id the connection proves its key for. */
  roomId?: Uint8Array;
  /**
   * Whether it hears the room's joins and leaves. Only subscribers do: a room of N headless
   * peers reconnecting costs O(N) frames, not a JOIN to everyone for everyone.
   */
  subscribed: boolean;
}

const LOWER_HEX: string[] = Array.from({ length: 256 }, (_, byte) =>
  byte.toString(16).padStart(2, "0"),
);

/** Hex of the `to` field without allocating a subarray; the routing hot path. */
function peerHexAt(bytes: Uint8Array, offset: number): string {
  let hex = "";
  for (let index = offset; index < offset + PEER_ID_LEN; index++) hex += LOWER_HEX[bytes[index]!];
  return hex;
}

function isAllZero(bytes: Uint8Array, offset: number, length: number): boolean {
  for (let index = offset; index < offset + length; index++) if (bytes[index] !== 0) return false;
  return true;
}

export class Room extends DurableObject<Env> {
  private readonly limits: Limits;
  /** The current connection of each present peer. */
  private readonly peers = new Map<string, WebSocket>();
  private readonly connections = new Map<WebSocket, Connection>();
  /** Joins and leaves since the last batch went out, in order; sent every PRESENCE_BATCH_MS. */
  private pending: PresenceChange[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** How many present peers subscribed (kept, not counted per join: rooms are large). */
  private subscribers = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.limits = limitsFrom(env);
    // Runs again on every wake from hibernation: presence is whatever sockets are still open.
    for (const socket of ctx.getWebSockets()) this.connection(socket);
    ctx.storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS retained (
         key BLOB NOT NULL,
         seq INTEGER NOT NULL,
         blob BLOB NOT NULL,
         PRIMARY KEY (key, seq)
       )`,
    );
  }

  /** The connection state of a socket, rebuilding it from the attachment after hibernation. */
  private connection(socket: WebSocket): Connection | undefined {
    const known = this.connections.get(socket);
    if (known) return known;
    const attachment = socket.deserializeAttachment() as Attachment | null;
    if (!attachment || !isPeerIdHex(attachment.peer)) return undefined;
    const connection: Connection = {
      peerHex: attachment.peer,
      peer: hexToBytes(attachment.peer),
      bucket: new TokenBucket(this.limits.rateLimitPerSecond, this.limits.rateLimitBurst),
      evicted: attachment.evicted === true,
      subscribed: attachment.subscribed === true,
      ...(attachment.unproven === true ? { challenge: null } : {}),
    };
    this.connections.set(socket, connection);
    if (!connection.evicted && connection.challenge === undefined && socket.readyState === WebSocket.OPEN) {
      this.peers.set(connection.peerHex, socket);
      if (connection.subscribed) this.subscribers++;
    }
    return connection;
  }

  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const peerHex = url.searchParams.get("peer") ?? "";
    const roomHex = url.pathname.split("/").pop() ?? "";
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    if (!isPeerIdHex(peerHex) || !isRoomIdHex(roomHex)) {
      server.accept();
      server.close(CloseCode.BadRequest, "bad request: malformed room id or peer id");
      return new Response(null, { status: 101, webSocket: client });
    }
    if (!this.peers.has(peerHex) && this.peers.size >= this.limits.maxPeersPerRoom) {
      server.accept();
      server.close(CloseCode.RoomFull, "room full");
      return new Response(null, { status: 101, webSocket: client });
    }
    // The connection is not in the room until it proves the key its peer id hashes from
    // (CHALLENGE, then its PROOF in `admit`): until then it can evict nobody and sees nobody.
    const challenge = await createChallenge();
    this.ctx.acceptWebSocket(server, [peerHex]);
    server.serializeAttachment({ peer: peerHex, unproven: true } satisfies Attachment);
    const peer = hexToBytes(peerHex);
    this.connections.set(server, {
      peerHex,
      peer,
      bucket: new TokenBucket(this.limits.rateLimitPerSecond, this.limits.rateLimitBurst),
      evicted: false,
      subscribed: false,
      challenge,
      roomId: hexToBytes(roomHex),
    });
    const challengeFrame = relayFrame(Kind.Challenge, peer, ZERO_ID, challenge.publicKey);
    const headers = new Headers();
    // A peer that asks takes its challenge in the answer's header (one frame fewer per
    // connection, as the Rust relay does: schemas/frame.md "Proving the peer id").
    if (wantsChallengeInHeader(request)) headers.set(CHALLENGE_HEADER, bytesToHex(challengeFrame));
    else server.send(challengeFrame);
    // The panel offers subprotocols (to carry the relay key): name the plain one back.
    if (offeredProtocols(request).includes(SUBPROTOCOL)) headers.set("sec-websocket-protocol", SUBPROTOCOL);
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  /** Checks the first message of a connection as its PROOF, then puts the peer in the room. */
  private async admit(socket: WebSocket, connection: Connection, message: string | ArrayBuffer): Promise<void> {
    const { challenge, roomId } = connection;
    connection.challenge = null;
    let why: string | null = "the challenge was lost (the room hibernated); reconnect";
    if (challenge && roomId) {
      const bytes = typeof message === "string" ? null : new Uint8Array(message);
      if (bytes && bytes.length >= HEADER_LEN && bytes[0] !== PROTOCOL_VERSION) {
        this.closeQuietly(
          socket,
          CloseCode.VersionMismatch,
          `protocol version mismatch: the peer speaks ${bytes[0]}, this relay speaks ${PROTOCOL_VERSION}`,
        );
        return;
      }
      if (!bytes || bytes.length < HEADER_LEN || bytes[1] !== Kind.Proof) {
        why = "the first frame was not PROOF";
      } else {
        why = await verifyProof(challenge, roomId, connection.peer, bytes.subarray(HEADER_LEN));
      }
    }
    if (why !== null || socket.readyState !== WebSocket.OPEN) {
      this.closeQuietly(socket, CloseCode.KeyProofFailed, "key proof failed");
      return;
    }
    const { peerHex, peer } = connection;
    const previous = this.peers.get(peerHex);
    if (!previous && this.peers.size >= this.limits.maxPeersPerRoom) {
      this.closeQuietly(socket, CloseCode.RoomFull, "room full");
      return;
    }
    connection.challenge = undefined;
    socket.serializeAttachment({ peer: peerHex } satisfies Attachment);

    if (previous) {
      // The newest proven connection wins; the old one is told not to reconnect (no reconnect
      // fight) and its close must not announce a LEAVE for a peer that is still present.
      const old = this.connection(previous);
      if (old) {
        old.evicted = true;
        if (old.subscribed) this.subscribers--;
      }
      previous.serializeAttachment({ peer: peerHex, evicted: true } satisfies Attachment);
      try {
        previous.close(CloseCode.Evicted, "evicted: another connection joined with this peer id");
      } catch {
        // Already closing: nothing to tell it.
      }
    }

    const others = this.peers.size - (previous ? 1 : 0);
    this.peers.set(peerHex, socket);
    this.trySend(socket, relayFrame(Kind.Welcome, peer, ZERO_ID, encodeWelcomeBody(others)));
    // Recorded on a replacement too, as the Rust relay does: subscribers forget the old
    // connection's sessions.
    this.record({ joined: true, peer });
  }

  /** Keeps a join or leave for the next batch, if anyone listens. */
  private record(change: PresenceChange): void {
    if (this.subscribers === 0) return;
    this.pending.push(change);
    if (this.flushTimer === null) {
      this.flushTimer = setTimeout(() => this.flushPresence(), PRESENCE_BATCH_MS);
    }
  }

  /** Sends the gathered changes to every subscriber, PRESENCE_PAGE changes per frame. */
  private flushPresence(): void {
    this.flushTimer = null;
    const pending = this.pending;
    this.pending = [];
    const frames: Uint8Array[] = [];
    for (let start = 0; start < pending.length; start += PRESENCE_PAGE) {
      const changes = pending.slice(start, start + PRESENCE_PAGE);
      const body = encodePresenceBody({ snapshot: false, more: false, changes });
      frames.push(relayFrame(Kind.Presence, ZERO_PEER, ZERO_ID, body));
    }
    for (const socket of this.peers.values()) {
      if (!this.connection(socket)?.subscribed) continue;
      for (const frame of frames) this.trySend(socket, frame);
    }
  }

  /** PRESENCE_GET: one snapshot page (ascending peer ids after the cursor), maybe subscribing. */
  private presenceGet(socket: WebSocket, connection: Connection, bytes: Uint8Array, idBytes: Uint8Array): void {
    let request: { subscribe: boolean; after: Uint8Array };
    try {
      request = decodePresenceGetBody(bytes.subarray(HEADER_LEN));
    } catch (error) {
      this.sendError(socket, connection, idBytes, ErrorCode.Malformed, (error as Error).message);
      return;
    }
    if (request.subscribe && !connection.subscribed) {
      connection.subscribed = true;
      this.subscribers++;
      socket.serializeAttachment({ peer: connection.peerHex, subscribed: true } satisfies Attachment);
    }
    const after = bytesToHex(request.after);
    // Lowercase hex of equal length sorts as the bytes do.
    const ids = [...this.peers.keys()]
      .filter((hex) => hex > after && hex !== connection.peerHex)
      .sort();
    const page = ids.slice(0, PRESENCE_PAGE).map((hex) => ({ joined: true, peer: hexToBytes(hex) }));
    const body = encodePresenceBody({ snapshot: true, more: ids.length > PRESENCE_PAGE, changes: page });
    this.trySend(socket, relayFrame(Kind.Presence, connection.peer, idBytes, body));
  }

  override async webSocketMessage(socket: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const connection = this.connection(socket);
    if (!connection || connection.evicted) return;
    if (connection.challenge !== undefined) {
      await this.admit(socket, connection, message);
      return;
    }
    if (typeof message === "string") {
      this.sendError(socket, connection, ZERO_ID, ErrorCode.Malformed, "text messages are not frames");
      return;
    }
    if (message.byteLength > this.limits.maxFrameBytes) {
      // The Rust relay's WebSocket layer refuses such messages with 1009; do the same.
      this.closeQuietly(socket, CloseCode.MessageTooBig, "frame over the cap");
      return;
    }
    const bytes = new Uint8Array(message);
    const idBytes =
      bytes.length >= HEADER_LEN ? bytes.slice(OFFSET_ID, OFFSET_ID + MESSAGE_ID_LEN) : ZERO_ID;

    if (!connection.bucket.take()) {
      if (connection.bucket.persistentlyExceeded) {
        this.closeQuietly(socket, CloseCode.RateLimited, "rate limit exceeded persistently");
      } else {
        this.sendError(socket, connection, idBytes, ErrorCode.RateLimited, "rate limited");
      }
      return;
    }

    if (bytes.length < HEADER_LEN) {
      this.sendError(socket, connection, idBytes, ErrorCode.Malformed, "frame shorter than the header");
      return;
    }
    if (bytes[0] !== PROTOCOL_VERSION) {
      this.sendError(
        socket,
        connection,
        idBytes,
        ErrorCode.Malformed,
        `unsupported frame version ${bytes[0]}: this side speaks protocol version ${PROTOCOL_VERSION}`,
      );
      return;
    }
    const kind = bytes[1]!;
    if (!isPeerKind(kind)) {
      this.sendError(socket, connection, idBytes, ErrorCode.Malformed, `unknown frame kind ${kind}`);
      return;
    }
    // Nobody speaks for another peer: `from` is always the connection's own id.
    bytes.set(connection.peer, OFFSET_FROM);

    switch (kind) {
      case Kind.Data: {
        const target = this.peers.get(peerHexAt(bytes, OFFSET_TO));
        if (!target || !this.trySend(target, bytes)) {
          this.sendError(socket, connection, idBytes, ErrorCode.UnknownPeer, "destination peer not in the room");
        }
        return;
      }
      case Kind.Broadcast: {
        if (!isAllZero(bytes, OFFSET_TO, PEER_ID_LEN)) bytes.fill(0, OFFSET_TO, OFFSET_ID);
        for (const [otherHex, other] of this.peers) {
          if (otherHex !== connection.peerHex) this.trySend(other, bytes);
        }
        return;
      }
      case Kind.RetainPut:
        await this.retainPut(socket, connection, bytes, idBytes);
        return;
      case Kind.RetainGet:
        this.retainGet(socket, connection, bytes, idBytes);
        return;
      case Kind.Proof:
        this.sendError(socket, connection, idBytes, ErrorCode.Malformed, "the key was already proven on this connection");
        return;
      case Kind.PresenceGet:
        this.presenceGet(socket, connection, bytes, idBytes);
        return;
    }
  }

  private async retainPut(
    socket: WebSocket,
    connection: Connection,
    bytes: Uint8Array,
    idBytes: Uint8Array,
  ): Promise<void> {
    let key: Uint8Array;
    let blob: Uint8Array;
    try {
      ({ key, blob } = decodeRetainBody(bytes.subarray(HEADER_LEN)));
    } catch (error) {
      this.sendError(socket, connection, idBytes, ErrorCode.Malformed, (error as Error).message);
      return;
    }
    // Each kept blob is served back as a RETAINED frame, 8 bytes (the seq) longer than the put.
    if (bytes.length + 8 > this.limits.maxFrameBytes) {
      this.sendError(socket, connection, idBytes, ErrorCode.TooLarge, "retained frame would exceed the frame cap");
      return;
    }
    const sql = this.ctx.storage.sql;
    const keyBuffer = key.slice().buffer;
    const last = sql
      .exec<{ seq: number }>("SELECT MAX(seq) AS seq FROM retained WHERE key = ?", keyBuffer)
      .one().seq;
    if (last === null) {
      const keys = sql.exec<{ n: number }>("SELECT COUNT(DISTINCT key) AS n FROM retained").one().n;
      if (keys >= this.limits.retainedKeysPerRoom) {
        this.sendError(socket, connection, idBytes, ErrorCode.RetainedFull, "room holds the maximum number of retained keys");
        return;
      }
    }
    // The room's retained bytes (each blob, and each key once) are capped like the Rust relay's:
    // what the put adds, less the oldest blob it pushes out once the key holds its maximum.
    const used = sql
      .exec<{ n: number }>(
        `SELECT COALESCE(SUM(LENGTH(blob)), 0)
              + COALESCE((SELECT SUM(LENGTH(key)) FROM (SELECT DISTINCT key FROM retained)), 0) AS n
           FROM retained`,
      )
      .one().n;
    const kept = sql
      .exec<{ count: number; oldest: number | null }>(
        `SELECT COUNT(*) AS count,
                (SELECT LENGTH(blob) FROM retained WHERE key = ? ORDER BY seq ASC LIMIT 1) AS oldest
           FROM retained WHERE key = ?`,
        keyBuffer,
        keyBuffer,
      )
      .one();
    const added = blob.length + (last === null ? key.length : 0);
    const dropped = kept.count >= this.limits.retainedPerKey ? (kept.oldest ?? 0) : 0;
    if (added > dropped && used + added - dropped > this.limits.retainedBytesPerRoom) {
      this.sendError(socket, connection, idBytes, ErrorCode.RetainedFull, "retained store full: the room's retained bytes are at their cap");
      return;
    }
    const seq = (last ?? 0) + 1;
    sql.exec("INSERT INTO retained (key, seq, blob) VALUES (?, ?, ?)", keyBuffer, seq, blob.slice().buffer);
    sql.exec(
      "DELETE FROM retained WHERE key = ? AND seq <= ?",
      keyBuffer,
      seq - this.limits.retainedPerKey,
    );
    // The ACK promises durability: wait until the write is committed to disk.
    await this.ctx.storage.sync();
    this.trySend(socket, relayFrame(Kind.Ack, connection.peer, idBytes, new Uint8Array(0)));
  }

  private retainGet(
    socket: WebSocket,
    connection: Connection,
    bytes: Uint8Array,
    idBytes: Uint8Array,
  ): void {
    let key: Uint8Array;
    try {
      key = decodeRetainGetBody(bytes.subarray(HEADER_LEN));
    } catch (error) {
      this.sendError(socket, connection, idBytes, ErrorCode.Malformed, (error as Error).message);
      return;
    }
    const rows = this.ctx.storage.sql
      .exec<{ seq: number; blob: ArrayBuffer }>(
        "SELECT seq, blob FROM retained WHERE key = ? ORDER BY seq ASC",
        key.slice().buffer,
      )
      .toArray();
    for (const row of rows) {
      const body = encodeRetainedBody(key, BigInt(row.seq), new Uint8Array(row.blob));
      this.trySend(socket, relayFrame(Kind.Retained, connection.peer, idBytes, body));
    }
    this.trySend(socket, relayFrame(Kind.Ack, connection.peer, idBytes, encodeCountBody(rows.length)));
  }

  override async webSocketClose(socket: WebSocket, code: number, reason: string): Promise<void> {
    this.forget(socket);
    // Complete the closing handshake; 1005/1006 are reserved and cannot be sent back.
    const reply = code === 1005 || code === 1006 || code === 1015 ? 1000 : code;
    this.closeQuietly(socket, reply, reason);
  }

  override async webSocketError(socket: WebSocket): Promise<void> {
    this.forget(socket);
  }

  /** Drops a closed socket and records the leave if it was the peer's current connection. */
  private forget(socket: WebSocket): void {
    const connection = this.connection(socket);
    this.connections.delete(socket);
    if (!connection || this.peers.get(connection.peerHex) !== socket) return;
    this.peers.delete(connection.peerHex);
    if (connection.subscribed) this.subscribers--;
    this.record({ joined: false, peer: connection.peer });
    if (this.peers.size === 0) {
      // The last peer left: the retained blobs go after the TTL unless someone is back by then
      // (a later leave moves the alarm; `alarm` checks presence).
      void this.ctx.storage.setAlarm(Date.now() + this.limits.retainedTtlSeconds * 1000);
    }
  }

  /** The retained TTL ran out after the last peer left: drop the room's blobs if still empty. */
  override async alarm(): Promise<void> {
    if (this.peers.size > 0) return;
    this.ctx.storage.sql.exec("DELETE FROM retained");
  }

  private sendError(
    socket: WebSocket,
    connection: Connection,
    idBytes: Uint8Array,
    code: number,
    message: string,
  ): void {
    this.trySend(socket, relayFrame(Kind.Error, connection.peer, idBytes, encodeErrorBody(code, message)));
  }

  /** Sends unless the socket is already gone; a vanished receiver is not the sender's error. */
  private trySend(socket: WebSocket, frame: Uint8Array): boolean {
    try {
      socket.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  private closeQuietly(socket: WebSocket, code: number, reason: string): void {
    try {
      socket.close(code, reason);
    } catch {
      // Already closed.
    }
  }
}
