//! What every end-to-end test of the page needs: real binaries (a `remote-agents-relay` on
//! 127.0.0.1 port 0, `remote-agents run` nodes, `remote-agents panel`), Debian's headless
//! `chromium` through playwright-core, and waits that all have deadlines and say what the page
//! showed when they expire. No fixed ports, no sleeps. Each test file makes its own `Harness`
//! (its own temporary folder, relay and room) and calls `stop` in `after`.
//!
//! Binaries: `$CARGO_TARGET_DIR/debug` (default ~/.cache/remote-agents/target), or
//! `REMOTE_AGENTS_BIN` / `REMOTE_AGENTS_RELAY_BIN`; the browser from `CHROMIUM_BIN`, else
//! /usr/bin/chromium. With `PANEL_ASSETS=dist` (or a folder `node --import tsx scripts/build.ts
//! DIR` built) the panel serves that build with `--assets`, so a change to the page needs no Rust
//! rebuild; without it, the copy embedded in the binary (what CI checks).

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { type Browser, type BrowserContext, type BrowserContextOptions, chromium, type Locator, type Page } from "playwright-core";

export const DEADLINE_MS = 30_000;

const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/remote-agents/target");
export const nodeBinary = process.env.REMOTE_AGENTS_BIN || join(targetDir, "debug/remote-agents");
export const relayBinary = process.env.REMOTE_AGENTS_RELAY_BIN || join(targetDir, "debug/remote-agents-relay");
export const chromiumBinary = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
/** Where the test runs write the README's screenshots. */
export const screenshots = resolve(import.meta.dirname, "../../../docs/screenshots");
const distDir = resolve(import.meta.dirname, "../../dist");

/** The environment of a child: its own HOME, none of the caller's REMOTE_AGENTS_* settings. */
export function childEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, RUST_LOG: "info" };
  for (const name of Object.keys(env)) {
    if (name.startsWith("REMOTE_AGENTS_")) {
      delete env[name];
    }
  }
  return { ...env, ...extra };
}

/** `promise`, or an error naming `what` after `ms`. */
export function deadline<T>(what: string, promise: Promise<T>, ms = DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Fails with what the page showed, so a timeout says more than "not found". */
export async function explain<T>(page: Page, promise: Promise<T>): Promise<T> {
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

/** A host's card in the fleet view. */
export function card(page: Page, name: string): Locator {
  return page.locator(`article.host[data-name="${name}"]`);
}

/** Waits until every named host's card is read (`get_info` answered). */
export async function waitReady(page: Page, names: readonly string[]): Promise<void> {
  for (const name of names) {
    await explain(page, card(page, name).and(page.locator('[data-phase="ready"]')).waitFor({ timeout: DEADLINE_MS }));
  }
}

/** Page errors and console errors, to assert none happened. */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") {
      problems.push(`console error: ${message.text()}`);
    }
  });
  return problems;
}

export interface NodeOptions {
  name: string;
  mode: string;
  tags: string;
  /** More `remote-agents run` arguments. */
  args?: string[];
  /** More environment variables. */
  env?: NodeJS.ProcessEnv;
}

export class Harness {
  readonly dir: string;
  readonly children: ChildProcess[] = [];
  readonly nodes = new Map<string, ChildProcess>();
  relayUrl = "";
  browser: Browser | null = null;

  constructor(
    readonly room: string,
    readonly token: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "panel-e2e-"));
    for (const binary of [nodeBinary, relayBinary]) {
      assert.ok(
        existsSync(binary),
        `${binary} is missing: run \`cargo build --workspace --bins --locked\` (or set REMOTE_AGENTS_BIN and REMOTE_AGENTS_RELAY_BIN)`,
      );
    }
    assert.ok(existsSync(chromiumBinary), `${chromiumBinary} is missing: apt-get install chromium (or set CHROMIUM_BIN)`);
  }

  /** A node's HOME (created): plant its files (chats, images) there before `startNode`. */
  home(name: string): string {
    const home = join(this.dir, name, "home");
    mkdirSync(home, { recursive: true });
    return home;
  }

  log(what: string): string {
    const path = join(this.dir, `${what}.log`);
    return existsSync(path) ? readFileSync(path, "utf8") : "";
  }

  /** Starts `binary` and resolves with the first stdout line `pick` accepts. */
  startAndRead(what: string, binary: string, args: string[], env: NodeJS.ProcessEnv, pick: (line: string) => string | null): Promise<string> {
    const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", openSync(join(this.dir, `${what}.log`), "w")] });
    this.children.push(child);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const found = new Promise<string>((resolve, reject) => {
      lines.on("line", (line) => {
        const value = pick(line);
        if (value !== null) {
          resolve(value);
        }
      });
      child.on("exit", (code) => reject(new Error(`${what} exited (${code}): ${this.log(what)}`)));
      child.on("error", reject);
    });
    return deadline(`${what}'s first line`, found);
  }

  /** Starts the relay on 127.0.0.1 port 0 (or the `--bind` in `args`, to restart one on the
   * address the OS gave it first); `args` adds flags. Returns its ws:// URL. */
  async startRelay(args: string[] = [], what = "relay"): Promise<string> {
    const bind = args.includes("--bind") ? [] : ["--bind", "127.0.0.1:0"];
    const address = await this.startAndRead(what, relayBinary, [...bind, ...args], childEnv(join(this.dir, "relay-home")), (line) =>
      line.startsWith("listening on ") ? line.slice("listening on ".length).trim() : null,
    );
    this.relayUrl = `ws://${address}`;
    return this.relayUrl;
  }

  /** Starts `remote-agents run` in the room with its own HOME and data folder. */
  startNode(node: NodeOptions): ChildProcess {
    const args = ["run", "--relay", this.relayUrl, "--room", this.room, "--token", this.token];
    args.push("--name", node.name, "--mode", node.mode, "--tags", node.tags, "--data-dir", join(this.dir, node.name, "data"));
    args.push(...(node.args ?? []));
    const child = spawn(nodeBinary, args, {
      env: childEnv(this.home(node.name), node.env),
      stdio: ["ignore", "ignore", openSync(join(this.dir, `${node.name}.log`), "a")],
    });
    this.children.push(child);
    this.nodes.set(node.name, child);
    return child;
  }

  /** Starts `remote-agents panel --no-open` for the room; returns the URL it printed. */
  startPanel(extra: string[] = []): Promise<string> {
    const args = ["panel", "--no-open", "--bind", "127.0.0.1:0", "--relay", this.relayUrl, "--room", this.room, "--token", this.token];
    const assets = process.env.PANEL_ASSETS;
    if (assets !== undefined && assets.length > 0) {
      args.push("--assets", assets === "dist" ? distDir : resolve(assets));
    }
    return this.startAndRead("panel", nodeBinary, [...args, ...extra], childEnv(join(this.dir, "panel-home")), (line) =>
      line.startsWith("http://") ? line.trim() : null,
    );
  }

  async launchBrowser(): Promise<Browser> {
    mkdirSync(screenshots, { recursive: true });
    this.browser = await chromium.launch({ executablePath: chromiumBinary, headless: true });
    return this.browser;
  }

  /** A fresh browser context (1280×720 unless `options` says otherwise) and page, with its page
   * and console errors collected for the test to assert none happened. */
  async newPage(options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
    assert.ok(this.browser, "launchBrowser first");
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 720 }, ...options });
    const page = await context.newPage();
    return { context, page, problems: watchProblems(page) };
  }

  /** `fleetctl keygen --out PATH`: writes an operator key file; returns the public key it printed. */
  keygen(path: string): string {
    const fleetctl = nodeBinary.replace(/remote-agents$/, "fleetctl");
    const out = execFileSync(fleetctl, ["keygen", "--out", path], {
      env: childEnv(join(this.dir, "fleetctl-home")),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    const key = /ed25519:[A-Za-z0-9+/=]+/.exec(out)?.[0];
    assert.ok(key, `fleetctl keygen printed no public key: ${out}`);
    return key;
  }

  async stop(): Promise<void> {
    await this.browser?.close();
    for (const child of this.children) {
      child.kill("SIGKILL");
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Opens view `id` from the tab bar. */
export async function openView(page: Page, id: string): Promise<Locator> {
  await page.locator(`#tab-${id}`).click();
  const view = page.locator(`#view-${id}`);
  await view.waitFor({ state: "visible", timeout: DEADLINE_MS });
  return view;
}
