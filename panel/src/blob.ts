//! Sealed blobs for the relay's retained store (`protocol::blob`): the panel leaves the bundle
//! it applies at the relay, sealed to the room, so hosts offline at the moment take it when they
//! come back, as from fleetctl. Each blob gets its own key, HKDF-SHA256 of the room PSK with a
//! fresh random 32-byte salt (info `remote-agents retained blob v1`), then AES-256-GCM with a
//! zero nonce (sound because the key seals exactly one message) and the retained key's name as
//! associated data. Layout: salt ‖ ciphertext ‖ tag. Checked against the Rust vectors in
//! schemas/session-vectors.json (`sealed_blobs`).

import { gcm } from "@noble/ciphers/aes.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { concat, utf8 } from "./bytes.ts";

export const SALT_LEN = 32;
const TAG_LEN = 16;
const INFO = utf8("remote-agents retained blob v1");
const ZERO_NONCE = new Uint8Array(12);

/** The retained key desired-state bundles are left under (`sync::distribute::RETAINED_KEY`). */
export const DESIRED_KEY = utf8("desired");

function blobKey(psk: Uint8Array, salt: Uint8Array): Uint8Array {
  return hkdf(sha256, psk, salt, INFO, 32);
}

/** Seals `plaintext` for the retained key `label`; `salt` is fresh randomness (tests fix it). */
export function sealBlob(psk: Uint8Array, label: Uint8Array, plaintext: Uint8Array, salt: Uint8Array = randomBytes(SALT_LEN)): Uint8Array {
  if (salt.length !== SALT_LEN) {
    throw new RangeError(`a blob's salt is ${SALT_LEN} bytes`);
  }
  return concat(salt, gcm(blobKey(psk, salt), ZERO_NONCE, label).encrypt(plaintext));
}

/** Opens a blob sealed under the same PSK and label; throws when it does not authenticate. */
export function openBlob(psk: Uint8Array, label: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed.length < SALT_LEN + TAG_LEN) {
    throw new RangeError(`sealed blob is ${sealed.length} bytes, shorter than its salt and tag`);
  }
  const salt = sealed.subarray(0, SALT_LEN);
  return gcm(blobKey(psk, salt), ZERO_NONCE, label).decrypt(sealed.subarray(SALT_LEN));
}
