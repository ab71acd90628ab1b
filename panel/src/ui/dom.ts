//! The few DOM helpers every view uses: building elements, finding the page's fixed parts, and
//! one wording of an operation's outcome, so a refusal reads the same in every view.

import type { Outcome } from "../peer.ts";

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

export function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (node === null) {
    throw new Error(`the page has no #${id}`);
  }
  return node;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A button that runs `action` on click, disabled while it runs (nothing runs without a click). */
export function button(label: string, attributes: Record<string, string>, action: () => Promise<void> | void): HTMLButtonElement {
  const node = element("button", { type: "button", ...attributes }, label);
  node.addEventListener("click", () => {
    node.disabled = true;
    void Promise.resolve()
      .then(action)
      .finally(() => {
        node.disabled = false;
      });
  });
  return node;
}

/** How an operation that did not succeed ended, in the node's own words (`op refused: …`). */
export function outcomeProblem(op: string, outcome: Outcome): string | null {
  switch (outcome.status) {
    case "ok":
      return null;
    case "refused":
      return `${op} refused: ${outcome.reason}`;
    case "failed":
      return `${op} failed: ${outcome.error}`;
    case "outcome_unknown":
      return `${op} outcome unknown: ${outcome.reason}`;
  }
}

/** `1.5 MiB`, `312 B`: sizes as people read them. */
export function byteSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
