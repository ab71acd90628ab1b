//! The browser panel's page (`panel/dist/`, built and checked in there), bundled into the Worker
//! as text so a fleet on Cloudflare is watched from the relay's own address with no local
//! install: `https://<worker>/#room=…&token=…` (the page takes its own origin as the relay when
//! the fragment names none). The same headers as `remote-agents panel` sends: the page may load
//! only itself and talk only to relays.
import css from "../../panel/dist/panel.css";
import html from "../../panel/dist/index.html";
// A built file TypeScript would read as JavaScript; esbuild and wrangler import it as text.
// @ts-expect-error TS7016 (no declaration file for a relative .js import)
import scriptText from "../../panel/dist/panel.js";

const script: string = scriptText;

const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const FILES: ReadonlyMap<string, { body: string; type: string }> = new Map([
  ["/", { body: html, type: "text/html; charset=utf-8" }],
  ["/index.html", { body: html, type: "text/html; charset=utf-8" }],
  ["/panel.js", { body: script, type: "text/javascript; charset=utf-8" }],
  ["/panel.css", { body: css, type: "text/css; charset=utf-8" }],
]);

/** The page's file at `pathname` (GET or HEAD), or undefined: everything else is the relay's. */
export function panelFile(request: Request, pathname: string): Response | undefined {
  const file = FILES.get(pathname);
  if (!file || (request.method !== "GET" && request.method !== "HEAD")) return undefined;
  return new Response(request.method === "HEAD" ? null : file.body, {
    headers: {
      "content-type": file.type,
      "content-security-policy": CONTENT_SECURITY_POLICY,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cache-control": "no-cache",
    },
  });
}
