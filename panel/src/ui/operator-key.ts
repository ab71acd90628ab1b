//! The operator key control in the page's header: without a key the page is a keyless peer
//! (a fleet whose spec lists operators refuses it, in the nodes' words on each card); loading a
//! key file (`fleetctl keygen`'s `operator.key`) makes the page rejoin as that operator. The key
//! is read by the browser from the chosen file and kept in this tab's memory only: never stored,
//! never sent (only its public half and a signature travel, inside the encrypted handshakes).

import type { App } from "./app.ts";
import { element, errorText } from "./dom.ts";
import { formatOperatorPublic, parseOperatorKey } from "../operator.ts";

export function mountOperatorKey(app: App, root: HTMLElement): void {
  const input = element("input", { type: "file", id: "operator-key-file", class: "visually-hidden", "aria-label": "operator key file" });
  const load = element("label", { for: "operator-key-file", class: "button-like", id: "operator-load" }, "Load operator key…");
  const state = element("span", { id: "operator-state", class: "muted" }, "no operator key: acting as a keyless peer");
  const forget = element("button", { type: "button", id: "operator-forget", hidden: "" }, "Forget key");
  const problem = element("span", { id: "operator-error", class: "error", role: "alert" });
  root.append(load, input, state, forget, problem);

  const show = () => {
    const key = app.operator();
    state.textContent = key === null ? "no operator key: acting as a keyless peer" : `acting as operator ${formatOperatorPublic(key.publicKey)}`;
    state.dataset.operator = key === null ? "" : formatOperatorPublic(key.publicKey);
    forget.hidden = key === null;
  };
  input.addEventListener("change", () => {
    const file = input.files?.[0];
    input.value = "";
    if (file === undefined) {
      return;
    }
    problem.textContent = "";
    void file
      .text()
      .then(async (text) => {
        const key = parseOperatorKey(text);
        if ("error" in key) {
          problem.textContent = `${file.name}: ${key.error}`;
          return;
        }
        await app.useOperator(key);
        show();
      })
      .catch((error: unknown) => {
        problem.textContent = `${file.name}: ${errorText(error)}`;
      });
  });
  forget.addEventListener("click", () => {
    problem.textContent = "";
    void app.useOperator(null).then(show);
  });
  show();
}
