//! The page's connection end to end, in headless Chromium against a real relay and a real node:
//! - operator keys: a fleet whose applied spec lists an operator refuses the keyless page (the
//!   node's words on the card); loading a key file that is not that operator's is refused too;
//!   loading the operator's own key (`fleetctl keygen`'s file, picked in the page) makes the page
//!   rejoin as that operator and the host reads;
//! - a relay restart: the page shows that it is rejoining, keeps what it showed, rejoins by
//!   itself when the relay is back on its address, and reads the host again.
//! No fixed ports (the relay's port is the one the OS gave it, reused for its restart), no sleeps.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { card, childEnv, DEADLINE_MS, explain, Harness, nodeBinary, waitReady, watchProblems } from "./harness.ts";

const harness = new Harness("locked-fleet", "connection e2e token");
const fleetctl = nodeBinary.replace(/remote-agents$/, "fleetctl");
let panelUrl = "";
let operatorKey = "";
let strangerKey = "";

before(async () => {
  await harness.startRelay();
  harness.startNode({ name: "alpha", mode: "edit", tags: "web" });
  operatorKey = join(harness.dir, "alice.key");
  strangerKey = join(harness.dir, "mallory.key");
  const alice = harness.keygen(operatorKey);
  harness.keygen(strangerKey);
  const spec = join(harness.dir, "spec");
  mkdirSync(spec);
  writeFileSync(
    join(spec, "fleet.yaml"),
    [
      "apiVersion: remote-agents.dev/v1",
      "kind: Fleet",
      "metadata: {name: locked}",
      "spec:",
      "  operators:",
      `    - {name: alice, key: "${alice}"}`,
      "  hosts:",
      "    - {name: alpha, tags: [web]}",
      "",
    ].join("\n"),
  );
  // Signed by alice and published; --wait returns once alpha holds it.
  const connect = ["--relay", harness.relayUrl, "--room", harness.room, "--token", harness.token];
  execFileSync(fleetctl, ["apply", "-f", spec, "--operator-key", operatorKey, "--wait", "--timeout", "60s", ...connect], {
    env: childEnv(join(harness.dir, "fleetctl-home")),
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  [panelUrl] = await Promise.all([harness.startPanel(), harness.launchBrowser()]);
});

after(() => harness.stop());

test("a locked fleet reads only for its operator's key, and the page rejoins after a relay restart", async () => {
  const { context, page, problems } = await harness.newPage();
  try {
    await page.goto(panelUrl);
    const alpha = card(page, "alpha");
    // Keyless: the node's own words on the card.
    await explain(page, alpha.and(page.locator('[data-phase="error"]')).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(
      await alpha.locator(".error").innerText(),
      "get_info refused: not authorized: this fleet lists operators and the caller proved no operator key; read needs one (fleetctl --operator-key, or REMOTE_AGENTS_OPERATOR_KEY)",
    );

    // A key that is not in the spec: the page acts for it, the node refuses it by name.
    await page.locator("#operator-key-file").setInputFiles(strangerKey);
    const state = page.locator("#operator-state");
    await explain(page, state.filter({ hasText: /^acting as operator ed25519:/ }).waitFor({ timeout: DEADLINE_MS }));
    const stranger = (await state.getAttribute("data-operator")) ?? "";
    await explain(page, alpha.locator(".error").filter({ hasText: `${stranger} is not an operator of this fleet` }).waitFor({ timeout: DEADLINE_MS }));

    // Not a key file at all: refused in the page, nothing changes.
    const notAKey = join(harness.dir, "notes.txt");
    writeFileSync(notAKey, "hello\n");
    await page.locator("#operator-key-file").setInputFiles(notAKey);
    await explain(page, page.locator("#operator-error").filter({ hasText: /^notes\.txt: not an operator key: expected one line/ }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await state.getAttribute("data-operator"), stranger);

    // The operator's key: the host reads.
    await page.locator("#operator-key-file").setInputFiles(operatorKey);
    await explain(page, state.filter({ hasNotText: stranger }).filter({ hasText: /^acting as operator ed25519:/ }).waitFor({ timeout: DEADLINE_MS }));
    await waitReady(page, ["alpha"]);
    // The applied spec sets no mode for alpha, so its default (plan) now governs the host.
    assert.equal(await alpha.getAttribute("data-mode"), "plan");

    // The relay restarts on the same address: the page says it is rejoining, keeps the card,
    // and is back by itself with the operator key still in use.
    const relayAddress = harness.relayUrl.replace(/^ws:\/\//, "");
    const relay = harness.children.find((child) => child.spawnargs.includes("--bind") && child.spawnargs[0]?.endsWith("remote-agents-relay"));
    assert.ok(relay);
    relay.kill("SIGKILL");
    await explain(page, page.locator("#status").filter({ hasText: /rejoining|cannot join/ }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await alpha.count(), 1, "the card stays while the relay is away");
    await harness.startRelay(["--bind", relayAddress], "relay-restarted");
    await explain(page, page.locator("#status").filter({ hasText: /^connected as / }).waitFor({ timeout: DEADLINE_MS }));
    await waitReady(page, ["alpha"]);
    assert.match((await state.innerText()) ?? "", /^acting as operator ed25519:/);
    assert.deepEqual(problems.filter((problem) => !problem.includes("WebSocket")), []);
  } finally {
    await context.close();
  }
});
