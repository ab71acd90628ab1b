//! The page: reads the room from the URL fragment, derives the room key in the browser, joins the
//! room as a send-only peer (`App`, which rejoins by itself after the relay goes away) and shows
//! one view at a time from the tab bar. Reads start when a view is opened; nothing that changes a
//! host runs without a click on a button that says what it does.

import { pskFromEncryptionKey, pskFromRoomToken } from "../psk.ts";
import { App, type ConnectionState } from "./app.ts";
import { byId, element, errorText } from "./dom.ts";
import { mountFleetView } from "./fleet-view.ts";
import { parseFragment } from "./fragment.ts";
import { mountOperatorKey } from "./operator-key.ts";
import { mountRunView } from "./run-view.ts";
import { mountFilesView } from "./files-view.ts";
import { mountChatsView } from "./chats-view.ts";
import { mountTasksView } from "./tasks-view.ts";
import { mountDesiredView } from "./desired-view.ts";

/** The views in tab order: `id` names the tab (`#tab-ID`) and its section (`#view-ID`). */
const VIEWS: Array<{ id: string; title: string; mount: (app: App, root: HTMLElement) => void }> = [
  { id: "fleet", title: "Fleet", mount: mountFleetView },
  { id: "run", title: "Run", mount: mountRunView },
  { id: "files", title: "Files", mount: mountFilesView },
  { id: "chats", title: "Chats", mount: mountChatsView },
  { id: "tasks", title: "Tasks", mount: mountTasksView },
  { id: "desired", title: "Desired state", mount: mountDesiredView },
];

/** The connection line under the title; `state` styles it (and tests wait on it). */
function showStatus(state: ConnectionState, text: string): void {
  const status = byId("status");
  status.dataset.state = state;
  status.textContent = text;
}

/** The tab bar and one section per view; only the selected one shows. */
function buildViews(app: App): void {
  const tabs = byId("tabs");
  const main = byId("views");
  const select = (id: string) => {
    for (const view of VIEWS) {
      const selected = view.id === id;
      byId(`tab-${view.id}`).setAttribute("aria-selected", String(selected));
      byId(`view-${view.id}`).hidden = !selected;
    }
  };
  for (const view of VIEWS) {
    const tab = element("button", { type: "button", role: "tab", id: `tab-${view.id}`, "aria-controls": `view-${view.id}` }, view.title);
    tab.addEventListener("click", () => select(view.id));
    tabs.append(tab);
    const section = element(
      "section",
      { id: `view-${view.id}`, role: "tabpanel", "aria-labelledby": `tab-${view.id}`, class: "view" },
      element("h2", { class: "section-title" }, view.title),
    );
    main.append(section);
    view.mount(app, section);
  }
  select("fleet");
}

async function start(): Promise<void> {
  // A page the relay serves (the Worker) needs no `relay=`: its own origin is the relay.
  const ownRelay = window.location.origin.replace(/^http/, "ws");
  const parsed = parseFragment(window.location.hash, ownRelay);
  if ("error" in parsed) {
    showStatus(
      "error",
      `${parsed.error}: open the URL \`remote-agents panel\` prints (…/#relay=…&room=…&token=…), or the relay's own address with #room=…&token=…`,
    );
    return;
  }
  const { target } = parsed;
  byId("room").textContent = target.room;
  document.title = `${target.room} · remote-agents`;
  let psk: Uint8Array;
  try {
    if (target.secret.kind === "token") {
      showStatus("working", "deriving the room key from the token (Argon2id, in this tab)…");
      psk = await pskFromRoomToken(target.secret.token, target.room);
    } else {
      psk = pskFromEncryptionKey(target.secret.key);
    }
  } catch (error) {
    showStatus("error", `the room secret in the page's address is unusable: ${errorText(error)}`);
    return;
  }
  const app = new App({ target, psk, status: showStatus });
  buildViews(app);
  mountOperatorKey(app, byId("operator"));
  await app.start();
}

void start();
