//! What nodes report about their desired state, as the page shows it: a host's status in a few
//! words, the Desired state view's summary line; and what an apply from the page signs.

import assert from "node:assert/strict";
import { test } from "node:test";
import { bundleSignatureHolds, peekBundle, signBundle } from "../src/bundle.ts";
import { parseOperatorKey } from "../src/operator.ts";
import { contentRevision, desiredSummary, desiredText, nextGeneration, shortRevision } from "../src/ui/desired.ts";
import { observed } from "./observed.ts";

test("a host's desired state in a few words, and the desired-state view's line", () => {
  assert.equal(desiredText(observed("a")), "no desired state");
  assert.equal(
    desiredText(observed("b", { observed_generation: 4, revision: "0123456789abcdef", sync: "OutOfSync", health: "Degraded" })),
    "generation 4 (revision 0123456789ab) · OutOfSync · Degraded",
  );
  assert.equal(
    desiredText(observed("c", { observed_generation: 1, revision: `sha256:${"ab".repeat(32)}`, sync: "Synced" })),
    "generation 1 (revision sha256:abababababab) · Synced · Healthy",
  );
  assert.equal(shortRevision("v1.2"), "v1.2");
  assert.equal(desiredSummary([]), "0 hosts");
  assert.equal(
    desiredSummary([
      observed("a", { observed_generation: 4, sync: "Synced" }),
      observed("b", { observed_generation: 4, sync: "Synced" }),
      observed("c", { observed_generation: 3, sync: "OutOfSync" }),
    ]),
    "3 hosts · generation 4 on 2 · generation 3 on 1 · 2 Synced · 1 OutOfSync",
  );
  assert.equal(desiredSummary([observed("a"), observed("b")], 1), "3 hosts · 2 without desired state · 1 unreadable");
});

test("an apply signs the generation after the newest any host holds, named by its content", () => {
  assert.equal(nextGeneration([], 0), 1);
  assert.equal(nextGeneration([observed("a", { observed_generation: 4 }), observed("b", { observed_generation: 2 })], 3), 5);
  assert.equal(nextGeneration([observed("a")], 7), 8);
  assert.equal(contentRevision("bc9e68f3d52d02e6a1b2c3d4e5f6"), "sha256:bc9e68f3d52d02e6");
});

test("a bundle the page signs reads back as the spec files it holds, its signature valid", () => {
  const key = parseOperatorKey(`ed25519-secret:${Buffer.alloc(32, 7).toString("base64")}`);
  assert.ok(!("error" in key));
  const files = [{ path: "fleet.yaml", text: "kind: Fleet\n# café ✓\n" }];
  const bundle = signBundle(key, { fleet: "demo", generation: 3, revision: "sha256:ab12", files }, 1_700_000_000_000);
  assert.deepEqual(peekBundle(bundle)?.files, files);
  assert.equal(peekBundle(bundle)?.generation, 3);
  assert.equal(bundleSignatureHolds(bundle), true);
});
