//! Operator keys in the panel: the key file line `fleetctl keygen` writes, the public key as the
//! spec lists it, and the binding's Ed25519 signature, checked against RFC 8032's first test
//! vector (the same seed gives the same public key in `ring`, which the nodes verify with) and
//! against the binding message's layout. That nodes accept the binding is proved end to end in
//! test/e2e/operator.test.ts.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../src/bytes.ts";
import { operatorBindingMessage } from "../src/message.ts";
import { bindOperator, formatOperatorPublic, parseOperatorKey } from "../src/operator.ts";

const RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

test("a key file line gives the seed and its public key", () => {
  const line = `ed25519-secret:${Buffer.from(fromHex(RFC8032_SEED)).toString("base64")}\n`;
  const key = parseOperatorKey(line);
  assert.ok(!("error" in key));
  assert.equal(toHex(key.seed), RFC8032_SEED);
  assert.equal(toHex(key.publicKey), RFC8032_PUBLIC);
  assert.equal(formatOperatorPublic(key.publicKey), `ed25519:${Buffer.from(fromHex(RFC8032_PUBLIC)).toString("base64")}`);
});

test("anything else is refused with what a key file holds", () => {
  for (const text of ["", "ed25519:AAAA", "ed25519-secret:AAAA", "ed25519-secret:not base64!", `ed25519-secret:${"A".repeat(44)}x`]) {
    const key = parseOperatorKey(text);
    assert.ok("error" in key, JSON.stringify(text));
    assert.match(key.error, /expected one line `ed25519-secret:<base64 of 32 bytes>`/);
  }
});

test("the binding signs the peer's static key under the binding prefix, for that key only", () => {
  const key = parseOperatorKey(`ed25519-secret:${Buffer.from(fromHex(RFC8032_SEED)).toString("base64")}`);
  assert.ok(!("error" in key));
  const staticKey = new Uint8Array(32).fill(7);
  const binding = bindOperator(key, staticKey);
  assert.deepEqual(binding.key, key.publicKey);
  const message = operatorBindingMessage(staticKey);
  assert.equal(Buffer.from(message.subarray(0, 34)).toString("latin1"), "remote-agents operator binding v1\0");
  assert.ok(ed25519.verify(binding.signature, message, key.publicKey));
  assert.ok(!ed25519.verify(binding.signature, operatorBindingMessage(new Uint8Array(32).fill(8)), key.publicKey));
  // Deterministic (RFC 8032): the same key and static key sign alike.
  assert.deepEqual(bindOperator(key, staticKey).signature, binding.signature);
});
