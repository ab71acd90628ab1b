//! The panel served by the Worker relay (issue 17, item 2: "the same assets deploy with the
//! Worker relay"), in headless Chromium: the local Worker under workerd (`worker/scripts/
//! serve-local.sh`, the bundle test.sh's worker steps use), two real `remote-agents run` nodes
//! joined to it, and the page opened at the Worker's own address with only `#room=…&token=…`: it
//! takes its origin as the relay, derives the room key in the tab and lists both nodes with
//! their modes. No local `remote-agents panel`, as for a fleet on Cloudflare. No fixed ports
//! (workerd reports the port it bound), no sleeps. Needs `cd worker && npm ci` (test.sh runs it
//! first) and the debug binaries as fleet.test.ts does.

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { childEnv } from "./harness.ts";

const DEADLINE_MS = 30_000;
const TOKEN = "worker panel token";
const ROOM = "worker-fleet";
const NODES = [
  { name: "echo", mode: "edit", tags: "web" },
  { name: "foxtrot", mode: "plan", tags: "db" },
] as const;

const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/remote-agents/target");
const nodeBinary = process.env.REMOTE_AGENTS_BIN || join(targetDir, "debug/remote-agents");
const chromiumBinary = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const serveLocal = resolve(import.meta.dirname, "../../../worker/scripts/serve-local.sh");

const dir = mkdtempSync(join(tmpdir(), "panel-worker-e2e-"));
const workerState = join(dir, "worker");
const children: ChildProcess[] = [];
let browser: Browser | null = null;
let origin = "";

function serve(command: "start" | "stop"): string {
  return execFileSync(serveLocal, [command, workerState], { encoding: "utf8" }).trim();
}

before(async () => {
  assert.ok(existsSync(nodeBinary), `${nodeBinary} is missing: run \`cargo build --workspace --bins --locked\``);
  assert.ok(existsSync(chromiumBinary), `${chromiumBinary} is missing: apt-get install chromium (or set CHROMIUM_BIN)`);
  assert.ok(
    existsSync(resolve(import.meta.dirname, "../../../worker/node_modules/.bin/workerd")),
    "the Worker's npm packages are missing: cd worker && npm ci",
  );
  origin = `http://127.0.0.1:${serve("start")}`;
  const relay = origin.replace(/^http/, "ws");
  for (const node of NODES) {
    const args = ["run", "--relay", relay, "--room", ROOM, "--token", TOKEN, "--name", node.name];
    args.push("--mode", node.mode, "--tags", node.tags, "--data-dir", join(dir, node.name, "data"));
    const child = spawn(nodeBinary, args, {
      env: childEnv(join(dir, node.name, "home")),
      stdio: ["ignore", "ignore", openSync(join(dir, `${node.name}.log`), "w")],
    });
    children.push(child);
  }
  browser = await chromium.launch({ executablePath: chromiumBinary, headless: true });
});

after(async () => {
  await browser?.close();
  for (const child of children) {
    child.kill("SIGKILL");
  }
  serve("stop");
  rmSync(dir, { recursive: true, force: true });
});

test("the Worker serves the panel, which finds the room through the Worker itself", async () => {
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  try {
    const response = await page.goto(`${origin}/#room=${encodeURIComponent(ROOM)}&token=${encodeURIComponent(TOKEN)}`);
    assert.ok(response);
    assert.match(response.headers()["content-security-policy"] ?? "", /^default-src 'none'/);
    try {
      for (const node of NODES) {
        const host = page.locator(`article.host[data-name="${node.name}"]`);
        await host.and(page.locator('[data-phase="ready"]')).waitFor({ timeout: DEADLINE_MS });
        assert.equal(await host.getAttribute("data-mode"), node.mode);
        assert.equal(await host.getAttribute("data-online"), "true");
      }
      await page
        .locator("#summary")
        .filter({ hasText: /^2 hosts · 2 online · 1 edit · 1 plan$/ })
        .waitFor({ timeout: DEADLINE_MS });
    } catch (error) {
      const shown = await page.locator("body").innerText().catch(() => "(no page)");
      const logs = NODES.map((node) => `${node.name}: ${readFileSync(join(dir, `${node.name}.log`), "utf8").slice(-2000)}`);
      throw new Error(`${(error as Error).message}\nthe page showed:\n${shown}\n${logs.join("\n")}`);
    }
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
