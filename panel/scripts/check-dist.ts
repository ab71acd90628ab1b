//! Fails when the checked-in `dist/` differs from a fresh build of the sources (as the Rust
//! tests fail on stale `schemas/` vectors): the `remote-agents` binary embeds `dist/`, so a
//! stale one ships an old page. Builds into a temporary folder; `dist/` is never written here.

import { readFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildPanel, DIST_FILES } from "./build.ts";

const dist = resolve(import.meta.dirname, "../dist");
const fresh = mkdtempSync(join(tmpdir(), "panel-dist-"));
try {
  await buildPanel(fresh);
  const problems: string[] = [];
  for (const file of DIST_FILES) {
    const checkedIn = join(dist, file);
    if (!existsSync(checkedIn)) {
      problems.push(`panel/dist/${file} is missing`);
    } else if (!readFileSync(checkedIn).equals(readFileSync(join(fresh, file)))) {
      problems.push(`panel/dist/${file} differs from a fresh build`);
    }
  }
  const extra = existsSync(dist) ? readdirSync(dist).filter((file) => !(DIST_FILES as readonly string[]).includes(file)) : [];
  for (const file of extra) {
    problems.push(`panel/dist/${file} is not part of the build`);
  }
  if (problems.length > 0) {
    console.error(`${problems.join("\n")}\nregenerate with: cd panel && npm run build`);
    process.exitCode = 1;
  } else {
    console.log(`panel/dist matches a fresh build (${DIST_FILES.join(", ")})`);
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
