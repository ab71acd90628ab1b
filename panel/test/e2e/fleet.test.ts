//! The fleet view end to end, in headless Chromium (Debian's `chromium`, driven by
//! playwright-core: no browser download): a real `remote-agents-relay` on 127.0.0.1 port 0, four
//! real `remote-agents run` nodes with different tags (two in `edit` mode, one in `plan`, one in
//! `disabled`, which refuses even `get_info`) and `remote-agents panel --no-open`, whose printed
//! URL the browser opens. The page derives the room key from the token in its fragment, joins as
//! a send-only peer and must list every node with its mode and the summary counts, the disabled
//! node with its refusal in the node's own words; a node that stops must show offline.
//! Screenshots at desktop and phone width go to docs/screenshots/. No fixed ports, no sleeps:
//! every wait is for a line, a selector or a text, with a deadline. Binaries as in
//! interop.test.ts; the browser from `CHROMIUM_BIN`, else /usr/bin/chromium.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { card, DEADLINE_MS, explain, Harness, screenshots, waitReady, watchProblems } from "./harness.ts";

const TOKEN = "panel e2e token+/=&";
const NODES = [
  { name: "alpha", mode: "edit", tags: "web,eu" },
  { name: "bravo", mode: "edit", tags: "db,us" },
  { name: "charlie", mode: "plan", tags: "ci" },
  // Refuses every request, get_info included: its card shows the node's reason.
  { name: "delta", mode: "disabled", tags: "spare" },
] as const;
const READABLE = NODES.filter((node) => node.mode !== "disabled");

/** The relay is this test's own, so a fixed, readable room name (it shows in the screenshots). */
const room = "demo-fleet";
const harness = new Harness(room, TOKEN);
let panelUrl = "";

before(async () => {
  await harness.startRelay();
  for (const node of NODES) {
    harness.startNode(node);
  }
  [panelUrl] = await Promise.all([harness.startPanel(), harness.launchBrowser()]);
});

after(() => harness.stop());

test("the printed URL carries the room in its fragment only", () => {
  const url = new URL(panelUrl);
  assert.equal(url.hostname, "127.0.0.1");
  assert.equal(url.pathname, "/");
  assert.equal(url.search, "");
  const fragment = new URLSearchParams(url.hash.slice(1));
  assert.equal(fragment.get("room"), room);
  assert.equal(fragment.get("token"), TOKEN);
  assert.match(fragment.get("relay") ?? "", /^ws:\/\/127\.0\.0\.1:\d+$/);
});

test("the fleet view lists every node with its mode, live, at desktop and phone width", async () => {
  const browser = harness.browser;
  assert.ok(browser);
  const { context, page, problems } = await harness.newPage();
  const requests: string[] = [];
  page.on("request", (request) => requests.push(request.url()));
  try {
    await page.goto(panelUrl);
    // Every node read through its session: its name, mode and tags from get_info.
    for (const node of READABLE) {
      const host = card(page, node.name);
      await explain(page, host.and(page.locator('[data-phase="ready"]')).waitFor({ timeout: DEADLINE_MS }));
      assert.equal(await host.getAttribute("data-mode"), node.mode);
      assert.equal(await host.getAttribute("data-online"), "true");
      assert.deepEqual(await host.locator(".tags li").allInnerTexts(), node.tags.split(","));
      assert.match(await host.locator(".facts").innerText(), /linux/);
    }
    // The disabled node: named and moded by its handshake's announcement, its refusal verbatim.
    const delta = card(page, "delta");
    await explain(page, delta.and(page.locator('[data-phase="error"]')).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await delta.getAttribute("data-mode"), "disabled");
    assert.equal(
      await delta.locator(".error").innerText(),
      "get_info refused: the node is in disabled mode and rejects every request; its operator must change the mode in its configuration",
    );
    const summary = page.locator("#summary");
    await explain(page, summary.filter({ hasText: /^4 hosts · 4 online · 2 edit · 1 plan · 1 disabled · 1 unreadable$/ }).waitFor({ timeout: DEADLINE_MS }));
    assert.match(await page.locator("#status").innerText(), /^connected as /);
    assert.equal(await page.locator("article.host").count(), NODES.length, "only the nodes are hosts");

    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
    const phonePage = await phone.newPage();
    await phonePage.goto(panelUrl);
    await explain(
      phonePage,
      // The desktop tab is in the room too: a send-only peer, counted, not listed.
      phonePage
        .locator("#summary")
        .filter({ hasText: /^4 hosts · 4 online · 2 edit · 1 plan · 1 disabled · 1 unreadable · 1 send-only peer$/ }).waitFor({ timeout: DEADLINE_MS }),
    );
    await waitReady(phonePage, READABLE.map((node) => node.name));
    // One column at phone width: nothing wider than the screen.
    const overflow = (await phonePage.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
    await phonePage.screenshot({ path: join(screenshots, "panel-fleet-phone.png"), fullPage: true });
    await phone.close();

    // A node stops: the relay reports its leave and the view shows it offline, live.
    const bravo = harness.nodes.get("bravo");
    assert.ok(bravo);
    bravo.kill("SIGTERM");
    await explain(
      page,
      card(page, "bravo").and(page.locator('[data-online="false"]')).waitFor({ timeout: DEADLINE_MS }),
    );
    await explain(
      page,
      summary.filter({ hasText: /^4 hosts · 3 online · 1 offline · 1 edit · 1 plan · 1 disabled · 1 unreadable$/ }).waitFor({ timeout: DEADLINE_MS }),
    );
    assert.equal(await card(page, "bravo").locator(".badge.offline").innerText(), "offline");
    await page.screenshot({ path: join(screenshots, "panel-fleet.png"), fullPage: true });

    // Only the three embedded files were fetched over HTTP; the fragment went nowhere.
    const http = requests.filter((url) => url.startsWith("http"));
    assert.deepEqual(
      http.map((url) => new URL(url).pathname).sort(),
      ["/", "/panel.css", "/panel.js"],
      JSON.stringify(http),
    );
    for (const url of http) {
      assert.ok(!url.includes(encodeURIComponent(TOKEN)) && !url.includes("token"), url);
    }
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
