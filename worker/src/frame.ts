//! The relay frame (protocol version 2) as described in schemas/frame.md: header layout, kinds,
//! error codes, close codes and the bodies the relay itself reads or writes. The only module of
//! the Worker that knows the byte layout; it is checked against schemas/frame-vectors.json.

export const PROTOCOL_VERSION = 2;
/** Most peers one PRESENCE frame carries (17 bytes each). */
export const PRESENCE_PAGE = 4096;
/** How long joins and leaves gather before subscribers get them as one PRESENCE frame. */
export const PRESENCE_BATCH_MS = 50;
export const HEADER_LEN = 42;
export const PEER_ID_LEN = 16;
export const MESSAGE_ID_LEN = 8;

const OFFSET_VERSION = 0;
const OFFSET_KIND = 1;
export const OFFSET_FROM = 2;
export const OFFSET_TO = 18;
export const OFFSET_ID = 34;

export const Kind = {
  Data: 0x01,
  Broadcast: 0x02,
  RetainPut: 0x03,
  RetainGet: 0x04,
  /** Peer → relay, first frame: the answer to CHALLENGE (static public key, then a tag). */
  Proof: 0x05,
  /** Peer → relay: a page of the room's presence after a cursor, optionally subscribing. */
  PresenceGet: 0x06,
  /** Relay → peer, first frame: how many other peers are present. */
  Welcome: 0x10,
  Error: 0x13,
  Ack: 0x14,
  Retained: 0x15,
  /** Relay → peer, first frame: a fresh X25519 public key the peer must answer with PROOF. */
  Challenge: 0x16,
  /** Relay → peer: a snapshot page (answering PRESENCE_GET) or a batch of joins and leaves. */
  Presence: 0x17,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

const KNOWN_KINDS: ReadonlySet<number> = new Set(Object.values(Kind));

/** Kinds a peer may send to the relay; the relay rejects the others with 400. */
export function isPeerKind(kind: number): boolean {
  return kind >= Kind.Data && kind <= Kind.PresenceGet;
}

export const ErrorCode = {
  Malformed: 400,
  UnknownPeer: 404,
  TooLarge: 413,
  RateLimited: 429,
  /** The room already keeps the maximum number of retained keys; the blob was not stored. */
  RetainedFull: 507,
} as const;

export const CloseCode = {
  MessageTooBig: 1009,
  Evicted: 4001,
  RoomFull: 4002,
  BadRequest: 4003,
  /** The connection did not prove the key its peer id hashes from; it never joined the room. */
  KeyProofFailed: 4004,
  /** The peer speaks another protocol version; the reason names both. */
  VersionMismatch: 4005,
  IdleTimeout: 4008,
  /** The peer did not read what the relay sent it (the Rust relay; workerd bounds its own). */
  SlowReader: 4009,
  RateLimited: 4029,
} as const;

/** The all-zero peer id: "broadcast" in `to`, "the relay" in `from`. */
export const ZERO_PEER: Uint8Array = new Uint8Array(PEER_ID_LEN);

export interface Frame {
  version: number;
  kind: number;
  from: Uint8Array;
  to: Uint8Array;
  /** Message id as an unsigned 64-bit integer. */
  id: bigint;
  body: Uint8Array;
}

/** Why bytes are not a frame; `id` is the offending frame's id, 0n when it could not be read. */
export class FrameError extends Error {
  constructor(
    message: string,
    readonly id: bigint,
  ) {
    super(message);
    this.name = "FrameError";
  }
}

/** Encodes a frame; `from` and `to` must be 16 bytes. */
export function encodeFrame(frame: Frame): Uint8Array {
  if (frame.from.length !== PEER_ID_LEN || frame.to.length !== PEER_ID_LEN) {
    throw new RangeError("peer ids are 16 bytes");
  }
  const out = new Uint8Array(HEADER_LEN + frame.body.length);
  const view = new DataView(out.buffer);
  out[OFFSET_VERSION] = frame.version;
  out[OFFSET_KIND] = frame.kind;
  out.set(frame.from, OFFSET_FROM);
  out.set(frame.to, OFFSET_TO);
  view.setBigUint64(OFFSET_ID, BigInt.asUintN(64, frame.id));
  out.set(frame.body, HEADER_LEN);
  return out;
}

/**
 * Decodes a frame sent by anyone: checks length, version and that the kind is known. Bodies are
 * not interpreted here (see the body helpers below). The returned arrays view `bytes`.
 */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length < HEADER_LEN) {
    throw new FrameError(`frame shorter than the ${HEADER_LEN}-byte header`, 0n);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const id = view.getBigUint64(OFFSET_ID);
  const version = bytes[OFFSET_VERSION]!;
  if (version !== PROTOCOL_VERSION) {
    throw new FrameError(
      `unsupported frame version ${version}: this side speaks protocol version ${PROTOCOL_VERSION}`,
      id,
    );
  }
  const kind = bytes[OFFSET_KIND]!;
  if (!KNOWN_KINDS.has(kind)) {
    throw new FrameError(`unknown frame kind 0x${kind.toString(16).padStart(2, "0")}`, id);
  }
  return {
    version,
    kind,
    from: bytes.subarray(OFFSET_FROM, OFFSET_TO),
    to: bytes.subarray(OFFSET_TO, OFFSET_ID),
    id,
    body: bytes.subarray(HEADER_LEN),
  };
}

/** Builds a relay → peer frame; `idBytes` is the 8-byte id field copied from a request. */
export function relayFrame(
  kind: number,
  to: Uint8Array,
  idBytes: Uint8Array,
  body: Uint8Array,
  from: Uint8Array = ZERO_PEER,
): Uint8Array {
  const out = new Uint8Array(HEADER_LEN + body.length);
  out[OFFSET_VERSION] = PROTOCOL_VERSION;
  out[OFFSET_KIND] = kind;
  out.set(from, OFFSET_FROM);
  out.set(to, OFFSET_TO);
  out.set(idBytes, OFFSET_ID);
  out.set(body, HEADER_LEN);
  return out;
}

export const ZERO_ID: Uint8Array = new Uint8Array(MESSAGE_ID_LEN);

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** `code:u16, message:utf8 rest`. */
export function encodeErrorBody(code: number, message: string): Uint8Array {
  const text = utf8.encode(message);
  const out = new Uint8Array(2 + text.length);
  new DataView(out.buffer).setUint16(0, code);
  out.set(text, 2);
  return out;
}

export function decodeErrorBody(body: Uint8Array): { code: number; message: string } {
  if (body.length < 2) throw new FrameError("error body shorter than its code", 0n);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return { code: view.getUint16(0), message: utf8Decoder.decode(body.subarray(2)) };
}

/** `present:u32`, how many other peers are in the room. */
export function encodeWelcomeBody(present: number): Uint8Array {
  return encodeCountBody(present);
}

export function decodeWelcomeBody(body: Uint8Array): number {
  if (body.length !== 4) throw new FrameError("not a 4-byte peer count", 0n);
  return new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(0);
}

/** `subscribe:u8 (0|1), after:16`, the body of PRESENCE_GET. */
export function decodePresenceGetBody(body: Uint8Array): { subscribe: boolean; after: Uint8Array } {
  if (body.length !== 17 || body[0]! > 1) {
    throw new FrameError("not a subscribe byte (0 or 1) and a 16-byte peer id", 0n);
  }
  return { subscribe: body[0] === 1, after: body.subarray(1) };
}

export function encodePresenceGetBody(subscribe: boolean, after: Uint8Array): Uint8Array {
  const out = new Uint8Array(17);
  out[0] = subscribe ? 1 : 0;
  out.set(after, 1);
  return out;
}

/** One change of a PRESENCE body: 1 joined, 2 left. */
export interface PresenceChange {
  joined: boolean;
  peer: Uint8Array;
}

export interface PresencePage {
  snapshot: boolean;
  more: boolean;
  changes: PresenceChange[];
}

/** `flags:u8 (1 snapshot, 2 more), count:u32`, then per change `1|2:u8, peer:16`. */
export function encodePresenceBody(page: PresencePage): Uint8Array {
  const out = new Uint8Array(5 + 17 * page.changes.length);
  out[0] = (page.snapshot ? 1 : 0) | (page.more ? 2 : 0);
  new DataView(out.buffer).setUint32(1, page.changes.length);
  page.changes.forEach((change, index) => {
    out[5 + 17 * index] = change.joined ? 1 : 2;
    out.set(change.peer, 6 + 17 * index);
  });
  return out;
}

export function decodePresenceBody(body: Uint8Array): PresencePage {
  if (body.length < 5) throw new FrameError("shorter than the flags and the count", 0n);
  const flags = body[0]!;
  if ((flags & ~3) !== 0) throw new FrameError("unknown flags", 0n);
  const count = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if (body.length !== 5 + 17 * count) throw new FrameError("count does not match the entries", 0n);
  const changes: PresenceChange[] = [];
  for (let index = 0; index < count; index++) {
    const tag = body[5 + 17 * index]!;
    if (tag !== 1 && tag !== 2) {
      throw new FrameError("an entry is neither joined (1) nor left (2)", 0n);
    }
    changes.push({ joined: tag === 1, peer: body.subarray(6 + 17 * index, 22 + 17 * index) });
  }
  return { snapshot: (flags & 1) !== 0, more: (flags & 2) !== 0, changes };
}

/** `count:u32`, the body of the ACK that ends a RETAIN_GET. */
export function encodeCountBody(count: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, count);
  return out;
}

/** `key_len:u8, key, blob:rest`, the body of RETAIN_PUT. */
export function decodeRetainBody(body: Uint8Array): { key: Uint8Array; blob: Uint8Array } {
  if (body.length < 1) throw new FrameError("retain body has no key length", 0n);
  const keyLen = body[0]!;
  if (body.length < 1 + keyLen) throw new FrameError("retain body shorter than its key", 0n);
  return { key: body.subarray(1, 1 + keyLen), blob: body.subarray(1 + keyLen) };
}

/** `key_len:u8, key` and nothing after it. */
export function decodeRetainGetBody(body: Uint8Array): Uint8Array {
  const { key, blob } = decodeRetainBody(body);
  if (blob.length !== 0) throw new FrameError("retain get body has bytes after the key", 0n);
  return key;
}

export function encodeRetainGetBody(key: Uint8Array): Uint8Array {
  return encodeRetainPutBody(key, new Uint8Array(0));
}

export function encodeRetainPutBody(key: Uint8Array, blob: Uint8Array): Uint8Array {
  if (key.length > 255) throw new RangeError("retain keys are at most 255 bytes");
  const out = new Uint8Array(1 + key.length + blob.length);
  out[0] = key.length;
  out.set(key, 1);
  out.set(blob, 1 + key.length);
  return out;
}

/** `key_len:u8, key, seq:u64, blob:rest`. */
export function encodeRetainedBody(key: Uint8Array, seq: bigint, blob: Uint8Array): Uint8Array {
  if (key.length > 255) throw new RangeError("retain keys are at most 255 bytes");
  const out = new Uint8Array(1 + key.length + 8 + blob.length);
  out[0] = key.length;
  out.set(key, 1);
  new DataView(out.buffer).setBigUint64(1 + key.length, seq);
  out.set(blob, 1 + key.length + 8);
  return out;
}

export function decodeRetainedBody(body: Uint8Array): {
  key: Uint8Array;
  seq: bigint;
  blob: Uint8Array;
} {
  const { key, blob: rest } = decodeRetainBody(body);
  if (rest.length < 8) throw new FrameError("retained body shorter than its sequence number", 0n);
  const seq = new DataView(rest.buffer, rest.byteOffset, rest.byteLength).getBigUint64(0);
  return { key, seq, blob: rest.subarray(8) };
}

/** A body parsed according to its frame kind (what the Rust codec's `Body` holds). */
export type Body =
  | { kind: typeof Kind.Data | typeof Kind.Broadcast; opaque: Uint8Array }
  | { kind: typeof Kind.RetainPut; key: Uint8Array; blob: Uint8Array }
  | { kind: typeof Kind.RetainGet; key: Uint8Array }
  | { kind: typeof Kind.PresenceGet; subscribe: boolean; after: Uint8Array }
  | { kind: typeof Kind.Welcome; present: number }
  | ({ kind: typeof Kind.Presence } & PresencePage)
  | { kind: typeof Kind.Error; code: number; message: string }
  /** Empty for RETAIN_PUT; `count` for the ACK that ends a RETAIN_GET. */
  | { kind: typeof Kind.Ack; count?: number }
  | { kind: typeof Kind.Retained; key: Uint8Array; seq: bigint; blob: Uint8Array }
  | { kind: typeof Kind.Challenge; publicKey: Uint8Array }
  | { kind: typeof Kind.Proof; publicKey: Uint8Array; mac: Uint8Array };

/** Parses the body of a decoded frame; throws FrameError (400) with the frame's id if bad. */
export function decodeBody(frame: Frame): Body {
  const { body, id } = frame;
  const bad = (message: string): never => {
    throw new FrameError(message, id);
  };
  try {
    switch (frame.kind) {
      case Kind.Data:
      case Kind.Broadcast:
        return { kind: frame.kind, opaque: body };
      case Kind.RetainPut:
        return { kind: Kind.RetainPut, ...decodeRetainBody(body) };
      case Kind.RetainGet:
        return { kind: Kind.RetainGet, key: decodeRetainGetBody(body) };
      case Kind.PresenceGet:
        return { kind: Kind.PresenceGet, ...decodePresenceGetBody(body) };
      case Kind.Welcome:
        return { kind: Kind.Welcome, present: decodeWelcomeBody(body) };
      case Kind.Presence:
        return { kind: Kind.Presence, ...decodePresenceBody(body) };
      case Kind.Error:
        return { kind: Kind.Error, ...decodeErrorBody(body) };
      case Kind.Ack:
        if (body.length === 0) return { kind: Kind.Ack };
        if (body.length !== 4) bad("an ack body is empty or a 4-byte count");
        return { kind: Kind.Ack, count: new DataView(body.buffer, body.byteOffset, 4).getUint32(0) };
      case Kind.Retained:
        return { kind: Kind.Retained, ...decodeRetainedBody(body) };
      case Kind.Challenge:
        if (body.length !== 32) bad("a challenge body is a 32-byte public key");
        return { kind: Kind.Challenge, publicKey: body };
      case Kind.Proof:
        if (body.length !== 64) bad("a proof body is a 32-byte public key and a 32-byte tag");
        return { kind: Kind.Proof, publicKey: body.subarray(0, 32), mac: body.subarray(32) };
      default:
        return bad(`unknown frame kind ${frame.kind}`);
    }
  } catch (error) {
    if (error instanceof FrameError && error.id !== id) throw new FrameError(error.message, id);
    if (error instanceof TypeError) throw new FrameError("error message is not utf-8", id);
    throw error;
  }
}

const ROOM_ID_LABEL = new TextEncoder().encode("remote-agents room v1\0");

/** SHA-256("remote-agents room v1\0" || room name) as 64 lowercase hex chars. */
export async function roomIdFromName(roomName: string): Promise<string> {
  const name = new TextEncoder().encode(roomName);
  const input = new Uint8Array(ROOM_ID_LABEL.length + name.length);
  input.set(ROOM_ID_LABEL);
  input.set(name, ROOM_ID_LABEL.length);
  return bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", input)));
}

/** The first 16 bytes of SHA-256 of a static X25519 public key, as 32 lowercase hex chars. */
export async function peerIdFromPublicKey(publicKey: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey));
  return bytesToHex(digest.subarray(0, PEER_ID_LEN));
}

const HEX_PEER = /^[0-9a-f]{32}$/;
const HEX_ROOM = /^[0-9a-f]{64}$/;

export function isPeerIdHex(text: string): boolean {
  return HEX_PEER.test(text);
}

export function isRoomIdHex(text: string): boolean {
  return HEX_ROOM.test(text);
}

export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new RangeError("not hex");
  const out = new Uint8Array(hex.length / 2);
  for (let index = 0; index < out.length; index++) {
    out[index] = parseInt(hex.slice(index * 2, index * 2 + 2), 16);
  }
  return out;
}

export function bytesToHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}
