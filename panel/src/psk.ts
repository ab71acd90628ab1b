//! The room's pre-shared key, as `protocol::psk`: Argon2id of the room token salted by SHA-256 of
//! a label and the room name (m = 19 MiB, t = 2, p = 1, the argon2 crate's defaults), or an
//! explicit 32-byte `encryption_key` (hex or base64, as the node reads its setting). Mixed into
//! every handshake; never sent anywhere.

import { argon2idAsync } from "@noble/hashes/argon2.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, fromHex, utf8 } from "./bytes.ts";

export const PSK_LEN = 32;
export const ARGON2ID = { m: 19 * 1024, t: 2, p: 1, version: 0x13, dkLen: PSK_LEN } as const;
const SALT_LABEL = utf8("remote-agents psk salt v1\0");

export function pskSalt(roomName: string): Uint8Array {
  return sha256(concat(SALT_LABEL, utf8(roomName)));
}

/** Stretches a room token into the room key (about a second: it is meant to be slow). */
export async function pskFromRoomToken(roomToken: string, roomName: string): Promise<Uint8Array> {
  if (roomToken.length === 0) {
    throw new RangeError("room token is empty");
  }
  return argon2idAsync(utf8(roomToken), pskSalt(roomName), ARGON2ID);
}

/** An explicit key: 32 bytes, given as hex or standard base64 (the node's `encryption_key`). */
export function pskFromEncryptionKey(text: string): Uint8Array {
  const trimmed = text.trim();
  let bytes: Uint8Array;
  if (/^([0-9a-fA-F]{2})*$/.test(trimmed)) {
    bytes = fromHex(trimmed);
  } else if (/^[A-Za-z0-9+/]*={0,2}$/.test(trimmed) && trimmed.length % 4 === 0) {
    bytes = Uint8Array.from(atob(trimmed), (char) => char.charCodeAt(0));
  } else {
    throw new RangeError("encryption key is neither hex nor base64");
  }
  return pskFromBytes(bytes);
}

export function pskFromBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== PSK_LEN) {
    throw new RangeError(`encryption key must be 32 bytes, got ${bytes.length}`);
  }
  return bytes.slice();
}
