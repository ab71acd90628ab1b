//! The messages peers exchange inside the sessions (`protocol::message`), in postcard's encoding:
//! unsigned integers as LEB128 varints, enum variants by index, strings and byte fields with a
//! varint length, `Option` as a 0/1 byte, maps as a count and key/value pairs in key order.

import { concat, fromUtf8, utf8 } from "./bytes.ts";

/** Room left in a frame for the envelope around a payload part (as `message::ENVELOPE_SLACK`). */
const ENVELOPE_SLACK = 64;

export interface OperatorBinding {
  /** The Ed25519 public key (32 bytes). */
  key: Uint8Array;
  /** The Ed25519 signature over `operatorBindingMessage` of the peer's static key (64 bytes). */
  signature: Uint8Array;
}

/** What a peer tells the others about itself (inside the encryption only). */
export interface Announcement {
  name: string;
  tags: string[];
  facts: Record<string, string>;
  mode: string;
  acceptsCommands: boolean;
  operator: OperatorBinding | null;
}

export type RemoteFailure =
  | { type: "Handler"; message: string }
  | { type: "DeadlineExceeded" }
  | { type: "NoHandler" }
  | { type: "Malformed"; message: string };

export type Envelope =
  | { type: "Announce"; announcement: Announcement }
  | { type: "Request"; call: bigint; deadlineMs: bigint; data: Uint8Array; more: boolean }
  | { type: "Chunk"; call: bigint; data: Uint8Array; more: boolean }
  | { type: "Response"; call: bigint; data: Uint8Array; more: boolean }
  | { type: "Failure"; call: bigint; failure: RemoteFailure }
  | { type: "Cancel"; call: bigint }
  | { type: "Notify"; id: bigint; data: Uint8Array; more: boolean }
  | { type: "Direct"; call: bigint; deadlineMs: bigint; offer: Uint8Array };

const ENVELOPE_TYPES = [
  "Announce",
  "Request",
  "Chunk",
  "Response",
  "Failure",
  "Cancel",
  "Notify",
  "Direct",
] as const;
const FAILURE_TYPES = ["Handler", "DeadlineExceeded", "NoHandler", "Malformed"] as const;

/** Why bytes are not a message. */
export class MessageError extends Error {
  constructor(message: string) {
    super(`malformed message: ${message}`);
    this.name = "MessageError";
  }
}

export function emptyAnnouncement(): Announcement {
  return { name: "", tags: [], facts: {}, mode: "", acceptsCommands: false, operator: null };
}

/** The bytes an operator signs to bind its key to a peer's static key. */
export function operatorBindingMessage(staticPublicKey: Uint8Array): Uint8Array {
  return concat(utf8("remote-agents operator binding v1\0"), staticPublicKey);
}

class Writer {
  private parts: Uint8Array[] = [];

  varint(value: bigint | number): this {
    let rest = BigInt(value);
    if (rest < 0n || rest > 0xffff_ffff_ffff_ffffn) {
      throw new RangeError("varint out of the u64 range");
    }
    const bytes: number[] = [];
    do {
      let byte = Number(rest & 0x7fn);
      rest >>= 7n;
      if (rest !== 0n) {
        byte |= 0x80;
      }
      bytes.push(byte);
    } while (rest !== 0n);
    this.parts.push(Uint8Array.from(bytes));
    return this;
  }

  bool(value: boolean): this {
    this.parts.push(Uint8Array.of(value ? 1 : 0));
    return this;
  }

  bytes(value: Uint8Array): this {
    this.varint(value.length);
    this.parts.push(value);
    return this;
  }

  string(value: string): this {
    return this.bytes(utf8(value));
  }

  finish(): Uint8Array {
    return concat(...this.parts);
  }
}

class Reader {
  private at = 0;

  constructor(private readonly input: Uint8Array) {}

  /** An unsigned varint of at most `bits` bits (postcard refuses overlong encodings). */
  varint(bits: 32 | 64 = 64): bigint {
    let value = 0n;
    const maxBytes = Math.ceil(bits / 7);
    for (let index = 0; index < maxBytes; index++) {
      const byte = this.byte();
      value |= BigInt(byte & 0x7f) << BigInt(7 * index);
      if ((byte & 0x80) === 0) {
        if (index === maxBytes - 1 && byte >> (bits - 7 * index) !== 0) {
          throw new MessageError("varint overflow");
        }
        return value;
      }
    }
    throw new MessageError("varint too long");
  }

  length(): number {
    const length = this.varint(64);
    if (length > BigInt(this.input.length - this.at)) {
      throw new MessageError("length beyond the input");
    }
    return Number(length);
  }

  byte(): number {
    const byte = this.input[this.at];
    if (byte === undefined) {
      throw new MessageError("unexpected end of input");
    }
    this.at++;
    return byte;
  }

  bool(): boolean {
    const byte = this.byte();
    if (byte > 1) {
      throw new MessageError("bad bool");
    }
    return byte === 1;
  }

  bytes(): Uint8Array {
    const length = this.length();
    const out = this.input.slice(this.at, this.at + length);
    this.at += length;
    return out;
  }

  string(): string {
    try {
      return fromUtf8(this.bytes());
    } catch (error) {
      if (error instanceof MessageError) {
        throw error;
      }
      throw new MessageError("invalid utf-8");
    }
  }

  variant<T extends readonly string[]>(names: T): T[number] {
    const index = this.varint(32);
    const name = names[Number(index)];
    if (name === undefined) {
      throw new MessageError("unknown variant");
    }
    return name;
  }
}

/** Rust orders `String` keys by their UTF-8 bytes. */
function byteOrder(a: string, b: string): number {
  const left = utf8(a);
  const right = utf8(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    if (left[i] !== right[i]) {
      return (left[i] as number) - (right[i] as number);
    }
  }
  return left.length - right.length;
}

function writeAnnouncement(writer: Writer, announcement: Announcement): void {
  writer.string(announcement.name).varint(announcement.tags.length);
  for (const tag of announcement.tags) {
    writer.string(tag);
  }
  const keys = Object.keys(announcement.facts).sort(byteOrder);
  writer.varint(keys.length);
  for (const key of keys) {
    writer.string(key).string(announcement.facts[key] as string);
  }
  writer.string(announcement.mode).bool(announcement.acceptsCommands);
  if (announcement.operator === null) {
    writer.bool(false);
  } else {
    writer.bool(true).bytes(announcement.operator.key).bytes(announcement.operator.signature);
  }
}

function readAnnouncement(reader: Reader): Announcement {
  const name = reader.string();
  const tags: string[] = [];
  for (let count = reader.length(); count > 0; count--) {
    tags.push(reader.string());
  }
  const facts: Record<string, string> = {};
  for (let count = reader.length(); count > 0; count--) {
    const key = reader.string();
    facts[key] = reader.string();
  }
  const mode = reader.string();
  const acceptsCommands = reader.bool();
  const operator = reader.bool() ? { key: reader.bytes(), signature: reader.bytes() } : null;
  return { name, tags, facts, mode, acceptsCommands, operator };
}

export function encodeAnnouncement(announcement: Announcement): Uint8Array {
  const writer = new Writer();
  writeAnnouncement(writer, announcement);
  return writer.finish();
}

export function decodeAnnouncement(bytes: Uint8Array): Announcement {
  return readAnnouncement(new Reader(bytes));
}

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const writer = new Writer().varint(ENVELOPE_TYPES.indexOf(envelope.type));
  switch (envelope.type) {
    case "Announce":
      writeAnnouncement(writer, envelope.announcement);
      break;
    case "Request":
      writer.varint(envelope.call).varint(envelope.deadlineMs).bytes(envelope.data);
      writer.bool(envelope.more);
      break;
    case "Chunk":
    case "Response":
      writer.varint(envelope.call).bytes(envelope.data).bool(envelope.more);
      break;
    case "Failure": {
      const failure = envelope.failure;
      writer.varint(envelope.call).varint(FAILURE_TYPES.indexOf(failure.type));
      if (failure.type === "Handler" || failure.type === "Malformed") {
        writer.string(failure.message);
      }
      break;
    }
    case "Cancel":
      writer.varint(envelope.call);
      break;
    case "Notify":
      writer.varint(envelope.id).bytes(envelope.data).bool(envelope.more);
      break;
    case "Direct":
      writer.varint(envelope.call).varint(envelope.deadlineMs).bytes(envelope.offer);
      break;
  }
  return writer.finish();
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  const reader = new Reader(bytes);
  const type = reader.variant(ENVELOPE_TYPES);
  switch (type) {
    case "Announce":
      return { type, announcement: readAnnouncement(reader) };
    case "Request":
      return {
        type,
        call: reader.varint(),
        deadlineMs: reader.varint(),
        data: reader.bytes(),
        more: reader.bool(),
      };
    case "Chunk":
    case "Response":
      return { type, call: reader.varint(), data: reader.bytes(), more: reader.bool() };
    case "Failure": {
      const call = reader.varint();
      const failureType = reader.variant(FAILURE_TYPES);
      const failure: RemoteFailure =
        failureType === "Handler" || failureType === "Malformed"
          ? { type: failureType, message: reader.string() }
          : { type: failureType };
      return { type, call, failure };
    }
    case "Cancel":
      return { type, call: reader.varint() };
    case "Notify":
      return { type, id: reader.varint(), data: reader.bytes(), more: reader.bool() };
    case "Direct":
      return { type, call: reader.varint(), deadlineMs: reader.varint(), offer: reader.bytes() };
  }
}

/** The largest payload part one envelope carries so the sealed frame stays within the cap. */
export function maxPart(maxPlaintext: number): number {
  return maxPlaintext - ENVELOPE_SLACK;
}

/** Splits `data` into parts of at most `partSize` bytes with their `more` flags; empty data is
 * one empty final part (as `message::parts`). */
export function parts(data: Uint8Array, partSize: number): Array<[Uint8Array, boolean]> {
  const count = Math.max(1, Math.ceil(data.length / partSize));
  const out: Array<[Uint8Array, boolean]> = [];
  for (let index = 0; index < count; index++) {
    out.push([data.subarray(index * partSize, (index + 1) * partSize), index + 1 < count]);
  }
  return out;
}
