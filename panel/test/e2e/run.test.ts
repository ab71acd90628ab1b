//! The Run and Desired state views end to end, in headless Chromium against a real relay and five
//! real nodes: `alpha` and `bravo` (edit, tag web), `charlie` (plan, tag db: its commands run in a
//! read-only sandbox), `delta` (disabled: it refuses every request) and `echo` (edit, applying a
//! spec from a folder it watches: generation 1). Each node has its own HOME and a policy that
//! grants the shell.
//! - Run: a command on `all` folds the four that printed the same into one group and shows
//!   delta's refusal, in the node's words, as its own; output that differs per host (`echo $HOME`
//!   through the shell) does not fold; a write on `db` shows what plan mode's sandbox made of it
//!   (and the file does not exist); the job history lists the runs newest first and reopens the
//!   first; a relay restart keeps it all; a slow run shows its progress and whom it waits for.
//! - Desired state: the table lists every node with what it reports (echo Synced at generation
//!   1, the rest without desired state), the chosen host's history, and keeps the last reports,
//!   marked offline, while the relay is away; Apply stays disabled without an operator key. The
//!   fleet cards carry the same facts and the summary counts echo as Synced.
//! The Run view's screenshot goes to docs/screenshots/ (the Desired state view's is taken by
//! desired-apply.test.ts, after an apply); both views fit a phone's width. No fixed ports
//! (the restarted relay reuses the port the OS gave the first), no sleeps.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Page } from "playwright-core";
import {
  card,
  childEnv,
  DEADLINE_MS,
  deadline,
  explain,
  Harness,
  openView,
  relayBinary,
  screenshots,
  waitReady,
  watchProblems,
} from "./harness.ts";

const NODES = [
  { name: "alpha", mode: "edit", tags: "web" },
  { name: "bravo", mode: "edit", tags: "web" },
  { name: "charlie", mode: "plan", tags: "db" },
  { name: "delta", mode: "disabled", tags: "spare" },
  // Applies a spec from a folder it watches (`--spec`): generation 1, which it keeps to itself.
  { name: "echo", mode: "edit", tags: "spec" },
] as const;
const READABLE = NODES.filter((node) => node.mode !== "disabled").map((node) => node.name);
/** The nodes that run from local config only (no spec applied). */
const WITHOUT_SPEC = ["alpha", "bravo", "charlie", "delta"];
/** spec/src/gate.rs: what a disabled node answers to every request. */
const DISABLED_REFUSAL =
  "the node is in disabled mode and rejects every request; its operator must change the mode in its configuration";
/** node/src/node.rs `status`: the Reconciled condition of a node that never took a bundle. */
const NO_BUNDLE = "no bundle applied yet; running from local config";

/** The spec `echo` watches: itself, as it was started. */
const SPEC = `apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: panel-demo}
spec:
  hosts:
    - {name: echo, tags: [spec], mode: edit}
`;

const harness = new Harness("run-room", "run e2e token");
let panelUrl = "";
const homes = new Map<string, string>();

before(async () => {
  await harness.startRelay();
  // `exec` through `/bin/sh -c` is off unless the node's policy grants it.
  const config = join(harness.dir, "policy.toml");
  writeFileSync(config, "[policy]\nallow_shell = true\n");
  const spec = join(harness.dir, "fleet-spec");
  mkdirSync(spec);
  writeFileSync(join(spec, "fleet.yaml"), SPEC);
  for (const node of NODES) {
    homes.set(node.name, harness.home(node.name));
    const watch = node.name === "echo" ? ["--spec", spec] : [];
    harness.startNode({ ...node, args: ["--config", config, ...watch] });
  }
  [panelUrl] = await Promise.all([harness.startPanel(), harness.launchBrowser()]);
});

after(() => harness.stop());

/** The groups of the run on show: [hosts, kind, status] each, largest first. */
async function groups(page: Page): Promise<Array<[string, string, string]>> {
  const blocks = page.locator("#run-current .run-group");
  const found: Array<[string, string, string]> = [];
  for (const block of await blocks.all()) {
    found.push([
      (await block.getAttribute("data-hosts")) ?? "",
      (await block.getAttribute("data-kind")) ?? "",
      await block.locator(".run-status").innerText(),
    ]);
  }
  return found;
}

/** Types a run into the form, clicks the button (checking its label) and waits for the end. */
async function run(page: Page, selector: string, command: string, shell: boolean, hosts: number): Promise<void> {
  await page.locator("#run-selector").fill(selector);
  await page.locator("#run-command").fill(command);
  await page.locator("#run-shell").setChecked(shell);
  const start = page.locator("#run-start");
  assert.equal(await start.innerText(), `Run on ${hosts} host${hosts === 1 ? "" : "s"}`);
  const before = await page.locator("#run-history .run-job").count();
  await start.click();
  await explain(page, page.locator(`#run-current .run-job-result[data-job="${before + 1}"][data-state="done"]`).waitFor({ timeout: DEADLINE_MS }));
}

/** Kills the relay, waits for the page to notice, runs `whileAway`, starts a relay on the same
 * address (the one the page and the nodes know) and waits for the page to be connected again. */
async function restartRelay(page: Page, whileAway: () => Promise<void> = async () => {}): Promise<void> {
  const relay = harness.children.find((child) => child.spawnargs[0] === relayBinary && child.exitCode === null && child.signalCode === null);
  assert.ok(relay !== undefined, "a relay runs");
  const exited = new Promise((resolve) => relay.once("exit", resolve));
  relay.kill("SIGKILL");
  await deadline("the relay's exit", exited);
  await explain(page, page.locator('#status:not([data-state="connected"])').waitFor({ timeout: DEADLINE_MS }));
  await whileAway();
  const address = new URL(harness.relayUrl).host;
  await harness.startAndRead("relay-again", relayBinary, ["--bind", address], childEnv(join(harness.dir, "relay-home")), (line) =>
    line.startsWith("listening on ") ? line : null,
  );
  await explain(page, page.locator('#status[data-state="connected"]').waitFor({ timeout: DEADLINE_MS }));
}

async function assertFitsPhone(page: Page, what: string): Promise<void> {
  const overflow = (await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
  assert.ok(overflow <= 0, `${what} is ${overflow} px wider than a phone`);
}

test("a command runs on the picked hosts only on a click, its results folded, kept in the job history", async () => {
  const { context, page, problems } = await harness.newPage();
  try {
    await page.goto(panelUrl);
    await waitReady(page, READABLE);
    await explain(page, card(page, "delta").and(page.locator('[data-phase="error"]')).waitFor({ timeout: DEADLINE_MS }));
    // The fleet cards carry each node's desired state as it reports it; only echo applied a
    // spec, so only echo counts (Synced) in the summary.
    for (const name of ["alpha", "bravo", "charlie"]) {
      await explain(page, card(page, name).and(page.locator('[data-sync="Unknown"]')).waitFor({ timeout: DEADLINE_MS }));
      assert.match(await card(page, name).locator(".facts").innerText(), /desired\s+no desired state\n/);
    }
    await explain(page, card(page, "echo").and(page.locator('[data-sync="Synced"]')).waitFor({ timeout: DEADLINE_MS }));
    assert.match(
      await card(page, "echo").locator(".facts").innerText(),
      /desired\s+generation 1 \(revision sha256:[0-9a-f]{12}\) · Synced · Healthy/,
    );
    assert.equal(await card(page, "echo").locator(".badge.sync-Synced").innerText(), "Synced");
    assert.equal(await page.locator("#summary").innerText(), "5 hosts · 5 online · 3 edit · 1 plan · 1 disabled · 1 Synced · 1 unreadable");

    const view = await openView(page, "run");
    // A selector that does not parse names the character at fault, and nothing can run.
    await page.locator("#run-command").fill("echo hello");
    await page.locator("#run-selector").fill("web,$");
    assert.equal(
      await page.locator("#run-picked").innerText(),
      "selector: `$` is not allowed in a tag at character 5 (expected letters, digits, `-`, `_` or `.`)",
    );
    assert.equal(await page.locator("#run-start").isDisabled(), true);
    await page.locator("#run-selector").fill("web");
    assert.equal(await page.locator("#run-picked").innerText(), "picks 2 hosts: alpha, bravo");
    // A quote left open is shown, not guessed at.
    await page.locator("#run-command").fill("echo 'hello");
    assert.match(await page.locator("#run-command-problem").innerText(), /^the ' at character 6 is never closed/);
    assert.equal(await page.locator("#run-start").isDisabled(), true);
    // Nothing ran yet: typing is not a click.
    assert.equal(await page.locator("#run-history .run-job").count(), 0);

    // The disabled node is picked (it is in the room) and its refusal is a group of its own.
    await run(page, "all", "echo hello", false, 5);
    assert.deepEqual(await groups(page), [
      ["alpha,bravo,charlie,echo", "ok", "exit 0"],
      ["delta", "refused", "refused"],
    ]);
    const same = view.locator(".run-group").nth(0);
    assert.equal(await same.locator(".run-stdout pre").innerText(), "hello\n");
    assert.deepEqual(await same.locator(".run-hosts li").allInnerTexts(), ["alpha", "bravo", "charlie", "echo"]);
    // charlie ran it in plan mode's sandbox, and the group says so.
    assert.equal(await same.locator(".run-sandbox summary").innerText(), "charlie ran it in a sandbox");
    await same.locator(".run-sandbox summary").click();
    assert.match(await same.locator(".run-sandbox").innerText(), /read-only/);
    assert.equal(await view.locator(".run-group").nth(1).locator(".run-problem").innerText(), DISABLED_REFUSAL);
    assert.equal(await view.locator("#run-current .run-counts").innerText(), "4 ok · 0 failed · 1 refused");

    // Output that differs per host does not fold: each node has its own HOME.
    await run(page, "web,db", "echo $HOME", true, 3);
    assert.deepEqual(await groups(page), [
      ["alpha", "ok", "exit 0"],
      ["bravo", "ok", "exit 0"],
      ["charlie", "ok", "exit 0"],
    ]);
    for (const name of ["alpha", "bravo", "charlie"]) {
      const group = view.locator(`.run-group[data-hosts="${name}"]`);
      assert.equal(await group.locator(".run-stdout pre").innerText(), `${homes.get(name)}\n`);
    }

    // A write in plan mode: the command runs, inside a read-only sandbox, and fails there.
    await run(page, "db", "touch ~/x", true, 1);
    assert.deepEqual(await groups(page), [["charlie", "nonzero", "exit 1"]]);
    const charlie = view.locator('.run-group[data-hosts="charlie"]');
    assert.match(await charlie.locator(".run-stderr pre").innerText(), /^touch: cannot touch '.*\/x': (Read-only file system|Permission denied)\n$/);
    assert.equal(existsSync(join(homes.get("charlie") as string, "x")), false, "plan mode wrote nothing");
    assert.equal(await view.locator("#run-current .run-counts").innerText(), "0 ok · 1 failed · 0 refused");

    // The job history: newest first; reopening the first run shows its groups again.
    const history = view.locator("#run-history .run-job");
    assert.equal(await history.count(), 3);
    const entries = await history.allInnerTexts();
    assert.match(entries[0] ?? "", /^sh -c touch ~\/x on db · .* · 0 ok · 1 failed · 0 refused$/);
    assert.match(entries[1] ?? "", /^sh -c echo \$HOME on web,db · .* · 3 ok · 0 failed · 0 refused$/);
    assert.match(entries[2] ?? "", /^echo hello on all · .* · (\d+ ms|\d+\.\d s) · 4 ok · 0 failed · 1 refused$/);
    await history.nth(2).click();
    await explain(page, view.locator('#run-current .run-job-result[data-job="1"]').waitFor({ timeout: DEADLINE_MS }));
    assert.deepEqual(await groups(page), [
      ["alpha,bravo,charlie,echo", "ok", "exit 0"],
      ["delta", "refused", "refused"],
    ]);
    assert.equal(await history.nth(2).getAttribute("aria-current"), "true");
    await page.screenshot({ path: join(screenshots, "panel-run.png"), fullPage: true });

    await page.setViewportSize({ width: 390, height: 844 });
    await assertFitsPhone(page, "the Run view");

    // The relay goes away and comes back on the same address: the page rejoins by itself and
    // the view keeps the groups it shows and the job history; nothing runs again.
    assert.deepEqual(problems, []);
    await restartRelay(page);
    await page.locator("#run-selector").fill("all");
    await explain(page, page.locator("#run-picked", { hasText: "picks 5 hosts" }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await history.count(), 3);
    assert.deepEqual(await groups(page), [
      ["alpha,bravo,charlie,echo", "ok", "exit 0"],
      ["delta", "refused", "refused"],
    ]);
    // A run that takes a while shows its progress and whom it waits for; the button says it runs.
    await page.locator("#run-selector").fill("web");
    await page.locator("#run-command").fill("sleep 2 && echo slow");
    await page.locator("#run-shell").setChecked(true);
    await page.locator("#run-start").click();
    await explain(page, view.locator("#run-current .run-progress", { hasText: "0 done · 2 running · 0 pending" }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await view.locator("#run-current .run-waiting").innerText(), "waiting for alpha, bravo");
    assert.equal(await page.locator("#run-start").innerText(), "Running on 2 hosts…");
    assert.equal(await page.locator("#run-start").isDisabled(), true);
    await explain(page, view.locator('#run-current .run-job-result[data-job="4"][data-state="done"]').waitFor({ timeout: DEADLINE_MS }));
    assert.deepEqual(await groups(page), [["alpha,bravo", "ok", "exit 0"]]);
    assert.equal(await view.locator(".run-group .run-stdout pre").innerText(), "slow\n");
    assert.equal(await page.locator("#run-start").innerText(), "Run on 2 hosts");

    // While the relay was away, Chromium logged its refused WebSocket connects; nothing else.
    assert.deepEqual(problems.filter((problem) => !/WebSocket connection to '.*' failed/.test(problem)), []);
  } finally {
    await context.close();
  }
});

test("the desired state view lists what every node reports, and one node's history", async () => {
  const { context, page, problems } = await harness.newPage();
  try {
    await page.goto(panelUrl);
    await waitReady(page, READABLE);
    await explain(page, card(page, "delta").and(page.locator('[data-phase="error"]')).waitFor({ timeout: DEADLINE_MS }));
    const view = await openView(page, "desired");
    // desired_status is metadata about the node: even the disabled one answers it.
    const summary = view.locator("#desired-summary");
    const everyHost = /^5 hosts · generation 1 on 1 · 1 Synced · 4 without desired state$/;
    await explain(page, summary.filter({ hasText: everyHost }).waitFor({ timeout: DEADLINE_MS }));
    const rows = view.locator("#desired-table tbody tr");
    const listed: Array<string | null> = [];
    for (const row of await rows.all()) {
      listed.push(await row.getAttribute("data-host"));
    }
    assert.deepEqual(listed, ["alpha", "bravo", "charlie", "delta", "echo"]);
    for (const node of NODES.filter((node) => WITHOUT_SPEC.includes(node.name))) {
      const row = view.locator(`#desired-table tr[data-host="${node.name}"]`);
      assert.equal(await row.getAttribute("data-sync"), "Unknown");
      assert.equal(await row.locator(".desired-generation").innerText(), "none");
      assert.equal(await row.locator(".desired-health").innerText(), "Healthy");
      assert.equal(
        await row.locator('.desired-conditions li[data-type="Reconciled"]').innerText(),
        `Reconciled: no · NoDesiredState — ${NO_BUNDLE}`,
      );
      assert.match(await row.innerText(), new RegExp(`\\b${node.mode}\\b`));
    }
    // echo converged to the spec it watches.
    const echo = view.locator('#desired-table tr[data-host="echo"]');
    assert.equal(await echo.getAttribute("data-sync"), "Synced");
    assert.match(await echo.locator(".desired-generation").innerText(), /^1 \(sha256:[0-9a-f]{12}\)$/);
    assert.match(await echo.locator('.desired-conditions li[data-type="Reconciled"]').innerText(), /^Reconciled: yes · Converged — generation 1 \(revision sha256:[0-9a-f]{16}\)$/);
    // The chosen host's history and applied spec, in the node's words.
    assert.equal(await view.locator("#desired-host").inputValue(), "alpha");
    await explain(page, view.locator("#desired-history", { hasText: "alpha accepted no generation yet" }).waitFor({ timeout: DEADLINE_MS }));
    await explain(page, view.locator("#desired-spec", { hasText: "desired_get failed: this node has no desired state yet" }).waitFor({ timeout: DEADLINE_MS }));
    await view.locator("#desired-host").selectOption("delta");
    await explain(page, view.locator("#desired-history", { hasText: "delta accepted no generation yet" }).waitFor({ timeout: DEADLINE_MS }));
    // echo's generation: its revision, when and who signed it (the node's own local key); the
    // bundle itself it keeps to itself, and says so.
    await view.locator("#desired-host").selectOption("echo");
    const generation = view.locator("#desired-history tbody tr");
    await explain(page, generation.first().waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await generation.count(), 1);
    assert.match(await generation.innerText(), /^1\tsha256:[0-9a-f]{16}\t.+\ted25519:\S+$/);
    await explain(page, view.locator("#desired-spec", { hasText: "desired_get failed: this node runs a spec from its own watched source, which it does not share" }).waitFor({ timeout: DEADLINE_MS }));
    // A narrower pick narrows the table and the summary.
    await view.locator("#desired-selector").fill("web");
    await explain(page, summary.filter({ hasText: /^2 hosts · 2 without desired state$/ }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await rows.count(), 2);
    await view.locator("#desired-selector").fill("all");
    await explain(page, summary.filter({ hasText: everyHost }).waitFor({ timeout: DEADLINE_MS }));
    // Plan needs text; Apply needs an operator key (and a plan of the text as it stands).
    const planButton = view.locator("#desired-plan");
    const applyButton = view.locator("#desired-apply");
    assert.equal(await planButton.innerText(), "Plan on alpha");
    assert.equal(await planButton.isDisabled(), true);
    await view.locator("#desired-edit-text").fill(SPEC);
    assert.equal(await planButton.isDisabled(), false);
    assert.equal(await applyButton.isDisabled(), true);
    assert.equal(await view.locator("#desired-apply-why").innerText(), "load an operator key (top of the page) to apply");

    // While the relay is away the table keeps every host's last report, marked offline; once
    // the page has rejoined, each host is read again as it answers.
    await restartRelay(page, async () => {
      await explain(page, summary.filter({ hasText: / · 5 offline \(last report\)$/ }).waitFor({ timeout: DEADLINE_MS }));
      assert.equal(await rows.count(), 5);
      assert.equal(await view.locator('#desired-table tr[data-host="echo"]').getAttribute("data-sync"), "Synced");
    });
    await explain(page, summary.filter({ hasText: everyHost }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await view.locator('#desired-table tr[data-online="true"]').count(), 5);

    await page.setViewportSize({ width: 390, height: 844 });
    await assertFitsPhone(page, "the Desired state view");
    assert.deepEqual(problems.filter((problem) => !/WebSocket connection to '.*' failed/.test(problem)), []);
  } finally {
    await context.close();
  }
});
