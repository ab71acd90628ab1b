//! Planning and applying a spec from the Desired state view, end to end, in headless Chromium
//! against a real relay and three real nodes: `alpha` (edit), `charlie` (plan) and `delta`
//! (disabled, which takes no desired state). A spec pasted into the view is planned by the chosen
//! host (`desired_plan`: the page has no spec parser); Apply stays disabled without an operator key
//! and for text that was not planned as it stands; with the key (`fleetctl keygen`'s file, loaded
//! in the page) it signs the planned text as generation 1 and offers it to every host, whose
//! decisions show in their own words; the hosts then report generation 1, Synced, signed by that
//! key, and planning the applied text again changes nothing. The view's screenshot (after the
//! apply) goes to docs/screenshots/panel-desired.png; it fits a phone's width.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { card, childEnv, DEADLINE_MS, explain, Harness, nodeBinary, openView, screenshots, waitReady, watchProblems } from "./harness.ts";

const NODES = [
  { name: "alpha", mode: "edit", tags: "web" },
  { name: "charlie", mode: "plan", tags: "db" },
  { name: "delta", mode: "disabled", tags: "spare" },
] as const;

/** The fleet as it runs: applying it keeps every host's mode and tags. */
const SPEC = `apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: panel-demo}
spec:
  hosts:
    - {name: alpha, tags: [web], mode: edit}
    - {name: charlie, tags: [db], mode: plan}
    - {name: delta, tags: [spare], mode: disabled}
`;

const harness = new Harness("apply-room", "apply e2e token");
let panelUrl = "";
let operatorKeyFile = "";

before(async () => {
  await harness.startRelay();
  for (const node of NODES) {
    harness.startNode(node);
  }
  operatorKeyFile = join(harness.dir, "operator.key");
  harness.keygen(operatorKeyFile);
  [panelUrl] = await Promise.all([harness.startPanel(), harness.launchBrowser()]);
});

after(() => harness.stop());

test("a spec is planned by a host and applied only with an operator key, after its plan", async () => {
  const { context, page, problems } = await harness.newPage();
  try {
    await page.goto(panelUrl);
    await waitReady(page, ["alpha", "charlie"]);
    await explain(page, card(page, "delta").and(page.locator('[data-phase="error"]')).waitFor({ timeout: DEADLINE_MS }));
    const view = await openView(page, "desired");
    const summary = view.locator("#desired-summary");
    await explain(page, summary.filter({ hasText: /^3 hosts · 3 without desired state$/ }).waitFor({ timeout: DEADLINE_MS }));

    const text = view.locator("#desired-edit-text");
    const plan = view.locator("#desired-plan");
    const apply = view.locator("#desired-apply");
    const why = view.locator("#desired-apply-why");
    await text.fill(SPEC);
    assert.equal(await apply.isDisabled(), true);
    assert.equal(await why.innerText(), "load an operator key (top of the page) to apply");

    // The chosen host plans the text with its own parser; nothing is applied.
    assert.equal(await plan.innerText(), "Plan on alpha");
    await plan.click();
    const planText = view.locator("#desired-plan-result .desired-plan-text");
    await explain(page, planText.waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await view.locator(".desired-plan-title").innerText(), "Plan of fleet panel-demo by alpha, which applied no generation yet:");
    const planned = await planText.innerText();
    assert.match(planned, /\+ host alpha/);
    assert.match(planned, /\nPlan: \d+ to add, 0 to change, 0 to remove\.\n?$/);
    assert.equal(await apply.isDisabled(), true, "no key yet");

    // A spec with an error is the node's diagnostic, with its file and line.
    await text.fill(SPEC.replace("hosts:", "hostz:"));
    await plan.click();
    await explain(page, view.locator(".desired-plan-problem", { hasText: "desired_plan failed: the spec has errors; nothing can be applied:" }).waitFor({ timeout: DEADLINE_MS }));
    assert.match(await view.locator(".desired-plan-problem").innerText(), /\nfleet\.yaml:\d+:\d+: error\[/);
    await text.fill(SPEC);
    await plan.click();
    await explain(page, planText.waitFor({ timeout: DEADLINE_MS }));

    // The operator key: the page rejoins as the operator; Apply names what it does.
    await page.locator("#operator-key-file").setInputFiles(operatorKeyFile);
    const operator = page.locator("#operator-state");
    await explain(page, operator.filter({ hasText: /^acting as operator ed25519:/ }).waitFor({ timeout: DEADLINE_MS }));
    const operatorPublic = (await operator.getAttribute("data-operator")) ?? "";
    await explain(page, apply.filter({ hasText: "Apply as generation 1 to 3 hosts" }).and(page.locator(":enabled")).waitFor({ timeout: DEADLINE_MS }));
    // Text changed since the plan: no apply until it is planned again.
    await text.fill(`${SPEC}# edited\n`);
    assert.equal(await apply.isDisabled(), true);
    assert.equal(await why.innerText(), "plan the text as it stands first");
    await text.fill(SPEC);
    assert.equal(await apply.isDisabled(), false);

    await apply.click();
    const decisions = view.locator("#desired-apply-result .desired-decisions li");
    await explain(page, decisions.nth(2).waitFor({ timeout: DEADLINE_MS }));
    await explain(page, view.locator(".desired-plan-applied", { hasText: "Applied as generation 1; plan again before the next apply." }).waitFor({ timeout: DEADLINE_MS }));
    const decided: Array<[string, string]> = [];
    for (const line of await decisions.all()) {
      decided.push([(await line.getAttribute("data-host")) ?? "", (await line.getAttribute("data-decision")) ?? ""]);
    }
    assert.deepEqual(decided, [
      ["alpha", "new"],
      ["charlie", "new"],
      ["delta", "refused"],
    ]);
    assert.match(await decisions.filter({ hasText: /^alpha: / }).innerText(), /^alpha: new · now generation 1 \(revision sha256:[0-9a-f]{12}\) · Synced · Healthy$/);
    assert.equal(
      await decisions.filter({ hasText: /^delta: / }).innerText(),
      "delta: desired_offer refused: this node is disabled by its local config; it applies no desired state",
    );
    await explain(page, summary.filter({ hasText: /^3 hosts · generation 1 on 2 · 2 Synced · 1 without desired state$/ }).waitFor({ timeout: DEADLINE_MS }));

    // alpha's history: generation 1, signed by the key loaded in the page; its spec is the text.
    const generation = view.locator("#desired-history tbody tr");
    await explain(page, generation.first().waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await generation.count(), 1);
    assert.match(await generation.innerText(), new RegExp(`^1\\tsha256:[0-9a-f]{16}\\t.+\\t${operatorPublic.replace(/[+/=]/g, "\\$&")}$`));
    await explain(page, view.locator(".desired-spec-file pre", { hasText: "- {name: delta, tags: [spare], mode: disabled}" }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await apply.isDisabled(), true, "the plan was made against the generation before");
    await page.screenshot({ path: join(screenshots, "panel-desired.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = (await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
    assert.ok(overflow <= 0, `the Desired state view is ${overflow} px wider than a phone`);
    await page.setViewportSize({ width: 1280, height: 720 });
    await view.locator(".desired-spec-file .desired-edit-copy").click();
    assert.equal(await text.inputValue(), SPEC);
    await plan.click();
    await explain(page, planText.filter({ hasText: "No changes. The desired state matches." }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await why.innerText(), "nothing to apply: the text is the applied generation's");
    assert.equal(await apply.isDisabled(), true);

    // The page left the bundle at the relay, sealed to the room: a host that joins after every
    // host holding generation 1 is gone can only take it from there.
    assert.equal(await view.locator(".desired-retained").getAttribute("data-retained"), "true");
    for (const name of ["alpha", "charlie"]) {
      harness.nodes.get(name)?.kill("SIGKILL");
    }
    harness.startNode({ name: "foxtrot", mode: "edit", tags: "late" });
    const foxtrot = view.locator('#desired-table tr[data-host="foxtrot"]');
    await explain(
      page,
      (async () => {
        const until = Date.now() + DEADLINE_MS;
        // The node takes the relay's copy as it joins; Refresh re-reads every host's report.
        while (!/^foxtrot\t1 \(sha256:/.test((await foxtrot.innerText({ timeout: 1000 }).catch(() => "")) ?? "")) {
          assert.ok(Date.now() < until, "foxtrot never reported generation 1");
          await view.locator("#desired-refresh").click();
          await foxtrot.filter({ hasText: /\t1 \(sha256:/ }).waitFor({ timeout: 2000 }).catch(() => undefined);
        }
      })(),
    );
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
