//! The page: reads the room from the URL fragment, derives the room key in the browser, joins the
//! room as a send-only peer and renders the fleet view, live as hosts join and leave. It only
//! reads (the handshake's announcement and `get_info`); nothing that changes a host runs here.

import { pskFromEncryptionKey, pskFromRoomToken } from "../psk.ts";
import { CallError, type ConnectError, Peer, type PresenceChange } from "../peer.ts";
import { emptyAnnouncement } from "../message.ts";
import type { Rejection } from "../session.ts";
import { Fleet, type Host, type InfoResult } from "./fleet.ts";
import { type PanelTarget, parseFragment } from "./fragment.ts";

/** How long one host may take to complete its handshake and answer `get_info`. */
const READ_DEADLINE_MS = 15_000;

function element<K extends keyof HTMLElementTagNameMap>(
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

function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (node === null) {
    throw new Error(`the page has no #${id}`);
  }
  return node;
}

/** The connection line under the title; `state` styles it (and tests wait on it). */
function showStatus(state: "working" | "connected" | "error", text: string): void {
  const status = byId("status");
  status.dataset.state = state;
  status.textContent = text;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function hostCard(host: Host): HTMLElement {
  const title = element("h2", { class: "host-name" }, host.name || `${host.peerId.slice(0, 12)}…`);
  const badges = element(
    "div",
    { class: "badges" },
    element("span", { class: `badge ${host.online ? "online" : "offline"}` }, host.online ? "online" : "offline"),
  );
  if (host.mode.length > 0) {
    badges.append(element("span", { class: `badge mode mode-${host.mode}` }, host.mode));
  }
  const facts = element("dl", { class: "facts" });
  const fact = (term: string, value: string) => {
    if (value.length > 0) {
      facts.append(element("dt", {}, term), element("dd", {}, value));
    }
  };
  fact("OS", [host.os, host.arch].filter((part) => part.length > 0).join(" · "));
  if (host.configuredMode.length > 0 && host.configuredMode !== host.mode) {
    fact("configured", host.configuredMode);
  }
  fact("version", host.version);
  fact("peer", host.peerId.slice(0, 16));
  const card = element(
    "article",
    {
      class: `host${host.online ? "" : " is-offline"}`,
      "data-peer": host.peerId,
      "data-name": host.name,
      "data-mode": host.mode,
      "data-online": String(host.online),
      "data-phase": host.phase,
    },
    element("header", {}, title, badges),
  );
  if (host.tags.length > 0) {
    card.append(element("ul", { class: "tags" }, ...host.tags.map((tag) => element("li", {}, tag))));
  }
  card.append(facts);
  for (const drift of host.drift) {
    card.append(element("p", { class: "drift" }, drift));
  }
  if (host.phase === "connecting" && host.online) {
    card.append(element("p", { class: "note" }, "reading…"));
  }
  if (host.error !== null) {
    card.append(element("p", { class: "error", role: "alert" }, host.error));
  }
  return card;
}

function render(fleet: Fleet): void {
  byId("summary").textContent = fleet.summary();
  const hosts = fleet.hosts();
  const list = byId("hosts");
  list.replaceChildren(...hosts.map(hostCard));
  if (hosts.length === 0) {
    list.append(element("p", { class: "note" }, "No host in the room yet: nodes appear here as they join."));
  }
}

/**
 * The last handshake each peer's frames were refused for (a wrong room token or key looks like
 * this), to say why no session formed. A collision of two initiations is normal and left out.
 */
const handshakeRefusals = new Map<string, string>();

function noteRejection(rejection: Rejection, from: string | null): void {
  if (from !== null && rejection.kind === "Handshake" && !(rejection.detail ?? "").includes("collision")) {
    handshakeRefusals.set(from, rejection.message);
  }
}

/** The handshake's announcement, then `get_info`: errors land on the host's card. */
async function readHost(peer: Peer, fleet: Fleet, peerId: string, generation: number): Promise<void> {
  try {
    const met = await peer.meet(peerId, READ_DEADLINE_MS);
    if (!fleet.current(peerId, generation)) {
      return;
    }
    fleet.announced(peerId, met.announcement);
    render(fleet);
    if (!met.announcement.acceptsCommands) {
      return;
    }
    const outcome = await peer.request(peerId, { op: "get_info" }, READ_DEADLINE_MS);
    if (!fleet.current(peerId, generation)) {
      return;
    }
    switch (outcome.status) {
      case "ok":
        fleet.informed(peerId, outcome.result as InfoResult);
        break;
      case "refused":
        fleet.failed(peerId, `get_info refused: ${outcome.reason}`);
        break;
      case "failed":
        fleet.failed(peerId, `get_info failed: ${outcome.error}`);
        break;
      case "outcome_unknown":
        fleet.failed(peerId, `get_info outcome unknown: ${outcome.reason}`);
        break;
    }
  } catch (error) {
    if (!fleet.current(peerId, generation)) {
      return;
    }
    const refusal = handshakeRefusals.get(peerId);
    const why = refusal === undefined ? "" : ` (its handshake was refused: ${refusal}; is the room token right?)`;
    fleet.failed(peerId, `${error instanceof CallError ? error.message : `cannot read this host: ${errorText(error)}`}${why}`);
  }
  render(fleet);
}

/** Tries the relays in turn; the last one's error if none lets the panel in. */
async function join(target: PanelTarget, psk: Uint8Array, onClose: (error: ConnectError) => void): Promise<Peer> {
  let last: unknown = null;
  for (const relayUrl of target.relays) {
    showStatus("working", `joining room ${target.room} on ${relayUrl}…`);
    try {
      return await Peer.connect({
        relayUrl,
        roomName: target.room,
        psk,
        announcement: { ...emptyAnnouncement(), name: "browser panel", tags: ["panel"] },
        onClose,
        onRejection: noteRejection,
      });
    } catch (error) {
      last = error;
    }
  }
  throw last;
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
    render(new Fleet());
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
  const fleet = new Fleet();
  let open = false;
  let peer: Peer;
  try {
    peer = await join(target, psk, (error) => {
      if (open) {
        showStatus("error", `${error.message}: the view below is what the fleet last reported`);
        byId("reconnect").hidden = false;
      }
    });
  } catch (error) {
    showStatus("error", `cannot join the room: ${errorText(error)}`);
    byId("reconnect").hidden = false;
    return;
  }
  open = true;
  showStatus("connected", `connected as ${peer.peerId.slice(0, 12)}… (send-only, end-to-end encrypted)`);
  const onChanges = (changes: PresenceChange[]) => {
    for (const change of changes) {
      if (change.joined) {
        handshakeRefusals.delete(change.peer);
        const generation = fleet.joined(change.peer);
        void readHost(peer, fleet, change.peer, generation);
      } else {
        fleet.left(change.peer);
      }
    }
    render(fleet);
  };
  peer.onPresence(onChanges);
  try {
    await peer.followPresence();
  } catch (error) {
    showStatus("error", `cannot read who is in the room: ${errorText(error)}`);
  }
  render(fleet);
}

byId("reconnect").addEventListener("click", () => window.location.reload());
void start();
