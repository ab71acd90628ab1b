//! Identities and names as the Rust `protocol` spells them: static X25519 keypairs, peer ids
//! (the first 16 bytes of SHA-256 of a static public key), room ids (SHA-256 of a label and the
//! room name) and the key proof that answers the relay's CHALLENGE (`protocol::key_proof`).

import { x25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { concat, equal, toHex, utf8 } from "./bytes.ts";

export const PUBLIC_KEY_LEN = 32;
export const PEER_ID_LEN = 16;
export const PROOF_LEN = 64;

const ROOM_ID_LABEL = utf8("remote-agents room v1\0");
const PROOF_LABEL = utf8("remote-agents key proof v1\0");

/** A static X25519 keypair. The private half never leaves the page. */
export interface StaticKeypair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/** Rebuilds a keypair from its 32 private bytes (any 32 bytes; X25519 clamps them). */
export function keypairFromPrivate(privateKey: Uint8Array): StaticKeypair {
  if (privateKey.length !== 32) {
    throw new RangeError("static private key must be 32 bytes");
  }
  return { privateKey: privateKey.slice(), publicKey: x25519.getPublicKey(privateKey) };
}

/** A fresh keypair from the platform's random source (crypto.getRandomValues). */
export function generateKeypair(): StaticKeypair {
  return keypairFromPrivate(randomBytes(32));
}

/** X25519; throws on an all-zero result (a low-order public key). */
export function diffieHellman(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return x25519.getSharedSecret(privateKey, publicKey);
}

/** A peer id as 32 lowercase hex characters (the form of the connect URL and of maps here). */
export type PeerId = string;

export function peerIdBytes(publicKey: Uint8Array): Uint8Array {
  return sha256(publicKey).slice(0, PEER_ID_LEN);
}

export function peerIdFromPublicKey(publicKey: Uint8Array): PeerId {
  return toHex(peerIdBytes(publicKey));
}

export function roomIdBytes(roomName: string): Uint8Array {
  return sha256(concat(ROOM_ID_LABEL, utf8(roomName)));
}

/** The path a peer upgrades to a WebSocket: `/v1/rooms/{room_id}?peer={peer_id}`. */
export function connectPath(roomName: string, keypair: StaticKeypair): string {
  return `/v1/rooms/${toHex(roomIdBytes(roomName))}?peer=${peerIdFromPublicKey(keypair.publicKey)}`;
}

/**
 * The PROOF body answering the CHALLENGE body `challenge` for this room: the static public key
 * and HMAC-SHA256(key = X25519(static, challenge), label || room id || peer id || challenge ||
 * static public key). Throws on a malformed or low-order challenge (an honest relay never sends
 * one).
 */
export function prove(keypair: StaticKeypair, roomName: string, challenge: Uint8Array): Uint8Array {
  if (challenge.length !== PUBLIC_KEY_LEN) {
    throw new RangeError(`challenge is ${challenge.length} bytes, not ${PUBLIC_KEY_LEN}`);
  }
  const shared = diffieHellman(keypair.privateKey, challenge);
  if (equal(shared, new Uint8Array(32))) {
    throw new RangeError("low-order challenge");
  }
  const message = concat(
    PROOF_LABEL,
    roomIdBytes(roomName),
    peerIdBytes(keypair.publicKey),
    challenge,
    keypair.publicKey,
  );
  return concat(keypair.publicKey, hmac(sha256, shared, message));
}
