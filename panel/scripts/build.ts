//! Builds the page into a folder (default `dist/`, which is checked in and embedded in the
//! `remote-agents` binary): `panel.js` bundled by esbuild from `src/ui/main.ts`, and
//! `index.html` copied from `src/ui/`, and `panel.css` from `src/ui/panel.css` followed by each view's `*-view.css`. Same inputs, same bytes, so
//! `check-dist.ts` can compare a fresh build with the checked-in one.

import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";

const PANEL = resolve(import.meta.dirname, "..");

/** The files of a build, in the order the binary embeds them. */
export const DIST_FILES = ["index.html", "panel.css", "panel.js"] as const;

export async function buildPanel(outdir: string): Promise<void> {
  mkdirSync(outdir, { recursive: true });
  await build({
    absWorkingDir: PANEL,
    entryPoints: ["src/ui/main.ts"],
    outfile: join(outdir, "panel.js"),
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    minify: true,
    charset: "utf8",
    legalComments: "eof",
    logLevel: "warning",
  });
  copyFileSync(join(PANEL, "src/ui/index.html"), join(outdir, "index.html"));
  // The page's style, then each view's own (`src/ui/*-view.css`, in name order) in one file.
  const ui = join(PANEL, "src/ui");
  const views = readdirSync(ui)
    .filter((name) => name.endsWith("-view.css"))
    .sort();
  const css = ["panel.css", ...views].map((name) => readFileSync(join(ui, name), "utf8"));
  writeFileSync(join(outdir, "panel.css"), css.join("\n"));
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  await buildPanel(resolve(process.argv[2] ?? join(PANEL, "dist")));
}
