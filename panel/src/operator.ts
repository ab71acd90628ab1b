//! Operator keys in the panel (`ops::operator`): the key file's one line
//! `ed25519-secret:<base64 of the 32-byte seed>` (what `fleetctl keygen` writes), the public key
//! as the spec lists it (`ed25519:<base64>`), and the binding the peer announces inside its
//! encrypted handshake: the operator's Ed25519 signature over `operatorBindingMessage` of the
//! peer's Noise static key. Nodes then authorize the peer as that operator
//! (`ops::operator::bound_operator`). The seed stays in the tab's memory only.

import { ed25519 } from "@noble/curves/ed25519.js";
import { fromBase64, toBase64 } from "./bytes.ts";
import { type OperatorBinding, operatorBindingMessage } from "./message.ts";

const SECRET_PREFIX = "ed25519-secret:";

export interface OperatorKey {
  seed: Uint8Array;
  publicKey: Uint8Array;
}

/** The key a key file's text holds, or why it is not one (as `OperatorKey::from_secret_line`). */
export function parseOperatorKey(text: string): OperatorKey | { error: string } {
  const line = text.trim();
  const expected = "expected one line `ed25519-secret:<base64 of 32 bytes>` (the file `fleetctl keygen` writes)";
  if (!line.startsWith(SECRET_PREFIX)) {
    return { error: `not an operator key: ${expected}` };
  }
  const seed = fromBase64(line.slice(SECRET_PREFIX.length));
  if (seed === null || seed.length !== 32) {
    return { error: `not an operator key: ${expected}` };
  }
  return { seed, publicKey: ed25519.getPublicKey(seed) };
}

/** `ed25519:<base64>`: the public key as the spec's `operators[].key` writes it. */
export function formatOperatorPublic(publicKey: Uint8Array): string {
  return `ed25519:${toBase64(publicKey)}`;
}

/** The proof that the operator stands behind the peer whose Noise static key is `staticPublic`. */
export function bindOperator(key: OperatorKey, staticPublic: Uint8Array): OperatorBinding {
  return { key: key.publicKey, signature: ed25519.sign(operatorBindingMessage(staticPublic), key.seed) };
}
