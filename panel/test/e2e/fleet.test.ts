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
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";

const DEADLINE_MS = 30_000;
const TOKEN = "panel e2e token+/=&";
const NODES = [
  { name: "alpha", mode: "edit", tags: "web,eu" },
  { name: "bravo", mode: "edit", tags: "db,us" },
  { name: "charlie", mode: "plan", tags: "ci" },
  // Refuses every request, get_info included: its card shows the node's reason.
  { name: "delta", mode: "disabled", tags: "spare" },
] as const;
const READABLE = NODES.filter((node) => node.mode !== "disabled");

const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/remote-agents/target");
const nodeBinary = process.env.REMOTE_AGENTS_BIN || join(targetDir, "debug/remote-agents");
const relayBinary = process.env.REMOTE_AGENTS_RELAY_BIN || join(targetDir, "debug/remote-agents-relay");
const chromiumBinary = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const screenshots = resolve(import.meta.dirname, "../../../docs/screenshots");

const dir = mkdtempSync(join(tmpdir(), "panel-e2e-"));
/** The relay is this test's own, so a fixed, readable room name (it shows in the screenshots). */
const room = "demo-fleet";
const children: ChildProcess[] = [];
const nodes = new Map<string, ChildProcess>();
let browser: Browser | null = null;
let panelUrl = "";

function deadline<T>(what: string, promise: Promise<T>, ms = DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The environment of a child: its own HOME, none of the caller's REMOTE_AGENTS_* settings. */
function childEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, RUST_LOG: "info" };
  for (const name of Object.keys(env)) {
    if (name.startsWith("REMOTE_AGENTS_")) {
      delete env[name];
    }
  }
  return env;
}

/** Starts `binary` and resolves with the first stdout line `pick` accepts. */
function startAndRead(
  what: string,
  binary: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  pick: (line: string) => string | null,
): Promise<string> {
  const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", openSync(join(dir, `${what}.log`), "w")] });
  children.push(child);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const found = new Promise<string>((resolve, reject) => {
    lines.on("line", (line) => {
      const value = pick(line);
      if (value !== null) {
        resolve(value);
      }
    });
    child.on("exit", (code) => reject(new Error(`${what} exited (${code}): ${log(what)}`)));
    child.on("error", reject);
  });
  return deadline(`${what}'s first line`, found);
}

function log(what: string): string {
  const path = join(dir, `${what}.log`);
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

function startNode(node: (typeof NODES)[number], relayUrl: string): void {
  const args = ["run", "--relay", relayUrl, "--room", room, "--token", TOKEN];
  args.push("--name", node.name, "--mode", node.mode, "--tags", node.tags, "--data-dir", join(dir, node.name, "data"));
  const child = spawn(nodeBinary, args, {
    env: childEnv(join(dir, node.name, "home")),
    stdio: ["ignore", "ignore", openSync(join(dir, `${node.name}.log`), "w")],
  });
  children.push(child);
  nodes.set(node.name, child);
}

function card(page: Page, name: string) {
  return page.locator(`article.host[data-name="${name}"]`);
}

/** Fails with what the page showed, so a timeout says more than "not found". */
async function explain<T>(page: Page, promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    const shown = await page
      .locator("body")
      .innerText()
      .catch(() => "(no page)");
    throw new Error(`${(error as Error).message}\nthe page showed:\n${shown}`);
  }
}

before(async () => {
  for (const binary of [nodeBinary, relayBinary]) {
    assert.ok(
      existsSync(binary),
      `${binary} is missing: run \`cargo build --workspace --bins --locked\` (or set REMOTE_AGENTS_BIN and REMOTE_AGENTS_RELAY_BIN)`,
    );
  }
  assert.ok(existsSync(chromiumBinary), `${chromiumBinary} is missing: apt-get install chromium (or set CHROMIUM_BIN)`);
  const relayAddress = await startAndRead(
    "relay",
    relayBinary,
    ["--bind", "127.0.0.1:0"],
    childEnv(join(dir, "relay-home")),
    (line) => (line.startsWith("listening on ") ? line.slice("listening on ".length).trim() : null),
  );
  const relayUrl = `ws://${relayAddress}`;
  for (const node of NODES) {
    startNode(node, relayUrl);
  }
  const panelArgs = ["panel", "--no-open", "--bind", "127.0.0.1:0", "--relay", relayUrl, "--room", room];
  panelArgs.push("--token", TOKEN);
  [panelUrl, browser] = await Promise.all([
    startAndRead("panel", nodeBinary, panelArgs, childEnv(join(dir, "panel-home")), (line) =>
      line.startsWith("http://") ? line.trim() : null,
    ),
    chromium.launch({ executablePath: chromiumBinary, headless: true }),
  ]);
  mkdirSync(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close();
  for (const child of children) {
    child.kill("SIGKILL");
  }
  rmSync(dir, { recursive: true, force: true });
});

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
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") {
      problems.push(`console error: ${message.text()}`);
    }
  });
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
    for (const node of READABLE) {
      await explain(phonePage, card(phonePage, node.name).and(phonePage.locator('[data-phase="ready"]')).waitFor({ timeout: DEADLINE_MS }));
    }
    // One column at phone width: nothing wider than the screen.
    const overflow = (await phonePage.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
    await phonePage.screenshot({ path: join(screenshots, "panel-fleet-phone.png"), fullPage: true });
    await phone.close();

    // A node stops: the relay reports its leave and the view shows it offline, live.
    const bravo = nodes.get("bravo");
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
