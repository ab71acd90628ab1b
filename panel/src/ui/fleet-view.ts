//! The fleet view: one card per host (name, tags, OS, mode, online, drift, its desired state —
//! generation, Synced/OutOfSync, health — and the node's words when it refused to be read) and the
//! summary line, re-rendered on every change of the fleet. A host's desired state is read once its
//! `get_info` answered, and again while the view is shown (when it is opened, then every
//! `DESIRED_REFRESH_MS`), since an apply changes it without the host leaving the room.

import type { App } from "./app.ts";
import { element, errorText } from "./dom.ts";
import { desiredText, type ObservedStatus } from "./desired.ts";
import type { Host } from "./fleet.ts";

/** How often the shown view re-reads every host's desired state; a large fleet is read less
 * often (`DESIRED_REFRESH_PER_HOST_MS` each), so that a tab never asks more than 50 a second. */
const DESIRED_REFRESH_MS = 20_000;
const DESIRED_REFRESH_PER_HOST_MS = 20;

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
  const desired = host.desired;
  if (desired !== null && desired.sync !== "Unknown") {
    badges.append(element("span", { class: `badge sync sync-${desired.sync}` }, desired.sync));
  }
  if (desired?.health === "Degraded") {
    badges.append(element("span", { class: "badge health-Degraded" }, desired.health));
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
  if (desired !== null) {
    fact("desired", desiredText(desired));
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
      "data-sync": host.desired?.sync ?? "",
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
  if (host.desiredError !== null) {
    card.append(element("p", { class: "error" }, host.desiredError));
  }
  return card;
}

export function mountFleetView(app: App, root: HTMLElement): void {
  const summary = element("p", { id: "summary", class: "summary", "aria-live": "polite" });
  const list = element("div", { id: "hosts", class: "hosts" });
  root.append(summary, list);
  // The session generation each host's desired state was last asked for, and the reads in flight.
  const desiredAsked = new Map<string, number>();
  const desiredReading = new Set<string>();
  const readDesired = (host: Host, again: boolean) => {
    const { peerId } = host;
    const generation = app.fleet.generationOf(peerId);
    if ((desiredAsked.get(peerId) === generation && !again) || desiredReading.has(peerId)) {
      return;
    }
    desiredAsked.set(peerId, generation);
    desiredReading.add(peerId);
    void app.result<ObservedStatus>(peerId, "desired_status").then(
      (status) => {
        if (app.fleet.current(peerId, generation)) {
          app.fleet.observed(peerId, status);
          render();
        }
      },
      (error: unknown) => {
        if (app.fleet.current(peerId, generation)) {
          app.fleet.observeFailed(peerId, errorText(error));
          render();
        }
      },
    ).finally(() => desiredReading.delete(peerId));
  };
  const readAllDesired = () => {
    for (const host of app.fleet.hosts()) {
      if (host.online && host.phase === "ready") {
        readDesired(host, true);
      }
    }
  };
  const render = () => {
    summary.textContent = app.fleet.summary();
    const hosts = app.fleet.hosts();
    for (const host of hosts) {
      if (host.online && host.phase === "ready") {
        readDesired(host, false);
      }
    }
    list.replaceChildren(...hosts.map(hostCard));
    if (hosts.length === 0) {
      list.append(element("p", { class: "note" }, "No host in the room yet: nodes appear here as they join."));
    }
  };
  app.onChange(render);
  render();
  // main.ts shows one view at a time by `hidden`: re-read when the view is opened, and while shown.
  new MutationObserver(() => {
    if (!root.hidden) {
      readAllDesired();
    }
  }).observe(root, { attributes: true, attributeFilter: ["hidden"] });
  const refresh = () => {
    if (!root.hidden && app.connected()) {
      readAllDesired();
    }
    const hosts = app.fleet.hosts().length;
    setTimeout(refresh, Math.max(DESIRED_REFRESH_MS, hosts * DESIRED_REFRESH_PER_HOST_MS));
  };
  setTimeout(refresh, DESIRED_REFRESH_MS);
}
