//! Proof of key (schemas/frame.md "Proving the peer id") with WebCrypto, as the Rust
//! `protocol::key_proof`: the relay's CHALLENGE is a fresh X25519 public key; the peer's PROOF is
//! its static public key and HMAC-SHA256(key = X25519(challenge, static), message = label ||
//! room id || peer id || challenge public key || static public key). A peer id is the hash of a
//! static public key, so only the holder of its private half can take it.

/** Bytes of a peer id (frame.ts's PEER_ID_LEN; not imported so this module stands alone). */
const PEER_ID_LEN = 16;
export const PUBLIC_KEY_LEN = 32;
export const MAC_LEN = 32;
export const PROOF_LEN = PUBLIC_KEY_LEN + MAC_LEN;

const LABEL = new TextEncoder().encode("remote-agents key proof v1\0");

/** The relay's side of one connection's challenge. */
export interface Challenge {
  privateKey: Key;
  publicKey: Uint8Array;
}

/** A WebCrypto key, named so the module typechecks with both workers-types and Node's types. */
export type Key = Awaited<ReturnType<typeof crypto.subtle.importKey>>;

// The X25519 algorithm parameters; workers-types spells the `public` member differently from
// the WebCrypto standard that workerd and Node implement, hence the casts.
// `never` is accepted by each environment's overloads of deriveBits.
function x25519Derive(publicKey: Key): never {
  return { name: "X25519", public: publicKey } as never;
}

/** A fresh ephemeral X25519 key for one connection. */
export async function createChallenge(): Promise<Challenge> {
  const pair = (await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ])) as { publicKey: Key; privateKey: Key };
  const publicKey = new Uint8Array(
    (await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer,
  );
  return { privateKey: pair.privateKey, publicKey };
}

function provenMessage(
  roomId: Uint8Array,
  peer: Uint8Array,
  challengePublic: Uint8Array,
  staticPublic: Uint8Array,
): Uint8Array {
  const message = new Uint8Array(LABEL.length + roomId.length + peer.length + 2 * PUBLIC_KEY_LEN);
  let offset = 0;
  for (const part of [LABEL, roomId, peer, challengePublic, staticPublic]) {
    message.set(part, offset);
    offset += part.length;
  }
  return message;
}

/** X25519 of our private key and their raw public key; null for a low-order (all-zero) result. */
async function sharedSecret(privateKey: Key, publicKey: Uint8Array): Promise<Uint8Array | null> {
  try {
    const theirs = await crypto.subtle.importKey("raw", publicKey, { name: "X25519" }, false, []);
    const bits = new Uint8Array(await crypto.subtle.deriveBits(x25519Derive(theirs), privateKey, 256));
    return bits.every((byte) => byte === 0) ? null : bits;
  } catch {
    // WebCrypto refuses small-order points outright.
    return null;
  }
}

async function hmacKey(secret: Uint8Array, usage: "sign" | "verify"): Promise<Key> {
  return crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, [usage]);
}

/**
 * Checks a PROOF body for `peer` in the room `roomId` against `challenge`: null when it
 * verifies, otherwise why not (for logs; the peer only sees close code 4004).
 */
export async function verifyProof(
  challenge: Challenge,
  roomId: Uint8Array,
  peer: Uint8Array,
  proof: Uint8Array,
): Promise<string | null> {
  if (proof.length !== PROOF_LEN) return `proof is ${proof.length} bytes, not ${PROOF_LEN}`;
  const staticPublic = proof.slice(0, PUBLIC_KEY_LEN);
  const mac = proof.slice(PUBLIC_KEY_LEN);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", staticPublic));
  for (let index = 0; index < PEER_ID_LEN; index++) {
    if (digest[index] !== peer[index]) return "the public key does not hash to the claimed peer id";
  }
  const secret = await sharedSecret(challenge.privateKey, staticPublic);
  if (!secret) return "x25519 failed (a low-order key)";
  const message = provenMessage(roomId, peer, challenge.publicKey, staticPublic);
  const ok = await crypto.subtle.verify("HMAC", await hmacKey(secret, "verify"), mac, message);
  return ok ? null : "the proof's tag does not verify";
}

/** The peer's side (the nodes do this in Rust; the Worker's own tests use it): a PROOF body. */
export async function proveKey(
  staticPrivate: Key,
  staticPublic: Uint8Array,
  peer: Uint8Array,
  roomId: Uint8Array,
  challengePublic: Uint8Array,
): Promise<Uint8Array> {
  const secret = await sharedSecret(staticPrivate, challengePublic);
  if (!secret) throw new Error("x25519 failed (a low-order challenge)");
  const message = provenMessage(roomId, peer, challengePublic, staticPublic);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), message));
  const proof = new Uint8Array(PROOF_LEN);
  proof.set(staticPublic);
  proof.set(mac, PUBLIC_KEY_LEN);
  return proof;
}
