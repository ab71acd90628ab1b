//! The Files view end to end, in headless Chromium against a real relay and three real nodes:
//! `alpha` (edit) holds a planted PNG in ~/photos and 50 MiB of random bytes in ~/big, `bravo`
//! (edit) receives a copy, `charlie` (plan) refuses one. Cases: a refused search shows each
//! host's refusal under its name; an images-only search finds the PNG and shows its thumbnail
//! (a data: URL that decoded); the 50 MiB file downloads through the browser in chunks with
//! progress and the saved file's SHA-256 is the planted one's (and the page shows it); a copy
//! from alpha to bravo shows live progress, the path it took and ends `done`, the file on bravo's
//! disk with the same SHA-256; a copy to charlie shows the plan-mode refusal in the node's
//! words. The page works at phone width. Screenshot: docs/screenshots/panel-files.png.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { crc32, deflateSync } from "node:zlib";
import type { Locator, Page } from "playwright-core";
import { DEADLINE_MS, explain, Harness, openView, screenshots, waitReady, watchProblems } from "./harness.ts";

const TOKEN = "panel files e2e token";
const NODES = [
  { name: "alpha", mode: "edit", tags: "photos" },
  { name: "bravo", mode: "edit", tags: "backup" },
  { name: "charlie", mode: "plan", tags: "ci" },
] as const;
const BIG_MIB = 50;
/** The 50 MiB download and copy: seconds here (the page decrypts and hashes in JavaScript, the
 * nodes are debug builds), more on a loaded machine. */
const BIG_DEADLINE_MS = 120_000;

const harness = new Harness("demo-files", TOKEN);
let panelUrl = "";
let pngPath = "";
let bigPath = "";
let bigSha = "";

/** A valid 64×48 RGB PNG: a colour gradient, written by hand (signature, IHDR, IDAT, IEND). */
function png(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter, not interlaced
  const rows = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3);
    rows[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      rows.set([Math.round((255 * x) / width), Math.round((255 * y) / height), 160], row + 1 + x * 3);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

before(async () => {
  const home = harness.home("alpha");
  mkdirSync(join(home, "photos"), { recursive: true });
  mkdirSync(join(home, "big"), { recursive: true });
  pngPath = join(home, "photos", "sunset.png");
  writeFileSync(pngPath, png(64, 48));
  // Pseudo-random bytes (not zeros: a chunk mix-up must change the hash), written in pieces.
  const big = Buffer.concat(Array.from({ length: BIG_MIB }, () => randomBytes(1024 * 1024)));
  bigPath = join(home, "big", "data.bin");
  writeFileSync(bigPath, big);
  bigSha = sha256(big);
  await harness.startRelay();
  for (const node of NODES) {
    harness.startNode(node);
  }
  [panelUrl] = await Promise.all([harness.startPanel(), harness.launchBrowser()]);
});

after(() => harness.stop());

/** One host's group of search results. */
function group(page: Page, name: string): Locator {
  return page.locator(`.files-host[data-name="${name}"]`);
}

/** A match in a host's group, by its full path. */
function match(page: Page, host: string, path: string): Locator {
  return group(page, host).locator(`.files-match[data-path="${path}"]`);
}

/** Runs a search from the form and waits until every picked host answered. */
async function search(page: Page, form: { selector?: string; name?: string; images?: boolean; roots?: string }, hosts: readonly string[]): Promise<void> {
  await page.locator("#files-selector").fill(form.selector ?? "all");
  await page.locator("#files-name").fill(form.name ?? "");
  await page.locator("#files-content").fill("");
  await page.locator("#files-roots").fill(form.roots ?? "");
  await page.locator("#files-images").setChecked(form.images ?? false);
  await page.locator("#files-search").click();
  for (const host of hosts) {
    await explain(page, group(page, host).and(page.locator(':not([data-state="searching"])')).waitFor({ timeout: DEADLINE_MS }));
  }
}

/** Records every value `attribute` of the element `css` takes (and its progress bar's), into `window[key]`. */
async function record(page: Page, key: string, css: string, attribute: string): Promise<void> {
  await page.evaluate(`(() => {
    const target = document.querySelector(${JSON.stringify(css)});
    const seen = [];
    window[${JSON.stringify(key)}] = seen;
    const note = () => seen.push(target.getAttribute(${JSON.stringify(attribute)}) + "|" + (target.querySelector("progress")?.getAttribute("value") ?? ""));
    new MutationObserver(note).observe(target, { attributes: true, subtree: true, childList: true, characterData: true });
  })()`);
}

async function recorded(page: Page, key: string): Promise<Array<{ state: string; value: number }>> {
  const seen = (await page.evaluate(`window[${JSON.stringify(key)}]`)) as string[];
  return seen.map((entry) => {
    const [state, value] = entry.split("|");
    return { state: state ?? "", value: Number(value) };
  });
}

test("files: search with thumbnails, a 50 MiB download, copies to an edit and a plan host", async () => {
  const { context, page, problems } = await harness.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  try {
    await page.goto(panelUrl);
    await waitReady(page, NODES.map((node) => node.name));
    await openView(page, "files");
    await explain(page, page.locator("#files-picked").filter({ hasText: "picks 3 hosts: alpha, bravo, charlie" }).waitFor({ timeout: DEADLINE_MS }));
    await page.locator("#files-selector").fill("name:a*");
    await explain(page, page.locator("#files-picked").filter({ hasText: "picks 1 host: alpha" }).waitFor({ timeout: DEADLINE_MS }));
    await page.locator("#files-selector").fill("bogus:x");
    await explain(page, page.locator("#files-picked.error").filter({ hasText: "unknown term kind `bogus:`" }).waitFor({ timeout: DEADLINE_MS }));

    // A root outside what the nodes allow: each host's refusal, in its words, under its name.
    await search(page, { roots: "/etc", name: "*.conf" }, ["alpha", "bravo", "charlie"]);
    for (const node of NODES) {
      const refusal = group(page, node.name).locator(".files-host-error");
      assert.match(await refusal.innerText(), /^file_search refused: \/etc is outside the roots this node allows \(/);
      assert.equal(await group(page, node.name).getAttribute("data-state"), "error");
    }

    // Images only, every host: alpha's PNG with its thumbnail, the others found none.
    await search(page, { images: true }, ["alpha", "bravo", "charlie"]);
    const image = match(page, "alpha", pngPath);
    await explain(page, image.locator("img.thumb").waitFor({ timeout: DEADLINE_MS }));
    // The test's own types have no DOM: the image is typed by what is read of it.
    type Image = { decode(): Promise<void>; src: string; naturalWidth: number; naturalHeight: number };
    const thumb = await image
      .locator("img.thumb")
      .evaluate((img: Image) => img.decode().then(() => ({ src: img.src.slice(0, 30), width: img.naturalWidth, height: img.naturalHeight })));
    assert.match(thumb.src, /^data:image\/(png|jpeg);base64,/);
    assert.deepEqual([thumb.width, thumb.height], [64, 48], "a small image is not enlarged");
    assert.match(await group(page, "alpha").locator(".files-host-status").innerText(), /^1 match in /);
    assert.match(await image.locator(".files-facts").innerText(), /^\d+(\.\d)? KiB|^\d+ B/);
    for (const other of ["bravo", "charlie"]) {
      assert.match(await group(page, other).locator(".files-host-status").innerText(), /^0 matches in /);
    }

    // By name: the image and the big file.
    await search(page, { name: "{*.png,*.bin}" }, ["alpha", "bravo", "charlie"]);
    await explain(page, match(page, "alpha", pngPath).locator("img.thumb").waitFor({ timeout: DEADLINE_MS }));
    const big = match(page, "alpha", bigPath);
    await explain(page, big.waitFor({ timeout: DEADLINE_MS }));
    assert.match(await big.locator(".files-facts").innerText(), /^50 MiB/);
    assert.equal(await big.locator(".thumb-slot").count(), 0, "no thumbnail for a .bin");

    // Download 50 MiB in chunks: progress shown, the saved file is the planted one.
    await record(page, "downloadStates", `.files-match[data-path="${bigPath}"] .download-status`, "data-state");
    const downloading = page.waitForEvent("download", { timeout: BIG_DEADLINE_MS });
    const started = Date.now();
    await big.locator("button.download").click();
    const file = await downloading;
    assert.equal(file.suggestedFilename(), "data.bin");
    const saved = join(harness.dir, "downloaded.bin");
    await file.saveAs(saved);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(sha256(readFileSync(saved)), bigSha, "the downloaded bytes are the planted file's");
    const downloadStatus = big.locator(".download-status");
    await explain(page, downloadStatus.and(page.locator('[data-state="done"]')).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await big.locator(".download-status-sha").getAttribute("data-sha256"), bigSha);
    assert.match(await big.locator(".download-status-sha").innerText(), new RegExp(`sha256 ${bigSha}`));
    assert.match(await big.locator(".download-status-line").innerText(), /^50 MiB \(52428800 bytes\) downloaded in 13 chunks$/);
    const downloadSteps = await recorded(page, "downloadStates");
    const values = downloadSteps.filter((step) => step.state === "running").map((step) => step.value);
    assert.ok(new Set(values).size >= 10, `progress moved chunk by chunk: ${JSON.stringify(values)}`);
    console.log(`download of ${BIG_MIB} MiB through the page: ${seconds.toFixed(1)} s`);

    // Copy alpha → bravo: live progress, the path taken, done, the same bytes on bravo's disk.
    const landing = join(harness.home("bravo"), "data-copy.bin");
    const copy = big.locator(".files-copy");
    await copy.locator("select.copy-to").selectOption({ label: "bravo (edit)" });
    await copy.locator("input.copy-path").fill(landing);
    assert.equal(await copy.locator("button.copy").innerText(), "Send copy to bravo");
    await record(page, "copyStates", `.files-match[data-path="${bigPath}"] .copy-status`, "data-state");
    await copy.locator("button.copy").click();
    const copyStatus = copy.locator(".copy-status");
    await explain(page, copyStatus.and(page.locator('[data-state="done"]')).waitFor({ timeout: BIG_DEADLINE_MS }));
    assert.equal(await copy.locator(".copy-state").innerText(), "done");
    assert.match(await copy.locator(".copy-via").innerText(), /^via (direct|relay)$/);
    assert.equal(await copy.locator(".copy-status-sha").getAttribute("data-sha256"), bigSha);
    assert.match(await copy.locator(".copy-status-line").innerText(), new RegExp(`^alpha → bravo · 50 MiB of 50 MiB · .+/s · at ${landing}$`));
    assert.equal(await copy.locator(".copy-status-error").innerText(), "");
    assert.equal(sha256(readFileSync(landing)), bigSha, "bravo holds the same bytes");
    const copySteps = (await recorded(page, "copyStates")).map((step) => step.state);
    assert.ok(copySteps.includes("opening") && copySteps.includes("running"), JSON.stringify([...new Set(copySteps)]));

    // Copy to charlie (plan mode): refused, the reason in the node's words, right there.
    const imageCopy = match(page, "alpha", pngPath).locator(".files-copy");
    await imageCopy.locator("select.copy-to").selectOption({ label: "charlie (plan)" });
    assert.equal(await imageCopy.locator("button.copy").innerText(), "Send copy to charlie");
    await imageCopy.locator("button.copy").click();
    await explain(page, imageCopy.locator('.copy-status[data-state="failed"]').waitFor({ timeout: DEADLINE_MS }));
    assert.equal(
      await imageCopy.locator(".copy-status-error").innerText(),
      `destination charlie:${pngPath}: transfer_receive refused: the node is in plan mode (read-only): writes are refused; ask its operator to switch to edit mode (set_mode) if this change is intended`,
    );
    assert.equal(await imageCopy.locator(".copy-state").innerText(), "failed");

    // Phone width: the same view in one column, nothing wider than the screen.
    const { context: phone, page: phonePage } = await harness.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
    await phonePage.goto(panelUrl);
    await waitReady(phonePage, NODES.map((node) => node.name));
    await openView(phonePage, "files");
    await search(phonePage, { selector: "name:alpha", name: "{*.png,*.bin}" }, ["alpha"]);
    await explain(phonePage, match(phonePage, "alpha", pngPath).locator("img.thumb").waitFor({ timeout: DEADLINE_MS }));
    const overflow = (await phonePage.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
    assert.ok(overflow <= 0, `the files view is ${overflow} px wider than a phone`);
    await phone.close();

    // Move alpha → bravo: the copy, then alpha removes its file (only the file it copied) and,
    // in edit mode, keeps it as a backup; bravo holds the same bytes.
    const pngSha = sha256(readFileSync(pngPath));
    const moved = join(harness.home("bravo"), "sunset.png");
    await imageCopy.locator("select.copy-to").selectOption({ label: "bravo (edit)" });
    await imageCopy.locator("input.copy-path").fill(moved);
    assert.equal(await imageCopy.locator("button.move").innerText(), "Move to bravo");
    await imageCopy.locator("button.move").click();
    await explain(page, imageCopy.locator('.copy-status[data-state="moved"]').waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await imageCopy.locator(".copy-state").innerText(), "moved");
    assert.equal(await imageCopy.locator(".copy-status-sha").getAttribute("data-sha256"), pngSha);
    const line = await imageCopy.locator(".copy-status-line").innerText();
    const backup = /removed from alpha \(kept as a backup at (.+)\)$/.exec(line)?.[1];
    assert.ok(backup, line);
    assert.equal(sha256(readFileSync(moved)), pngSha, "bravo holds the moved file");
    assert.equal(existsSync(pngPath), false, "alpha no longer has it");
    assert.equal(sha256(readFileSync(backup)), pngSha, "alpha kept it as a backup (edit mode)");
    await page.screenshot({ path: join(screenshots, "panel-files.png"), fullPage: true });

    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
