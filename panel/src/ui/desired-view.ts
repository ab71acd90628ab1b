//! The Desired state view: for the hosts a selector picks, what each reports about its desired
//! state (`desired_status`: generation, Synced/OutOfSync, health, mode, conditions, drift) in a
//! table under a summary line, and for one chosen host the generations it accepted
//! (`desired_history`: revision, time, who signed) and the applied spec's files as the signed
//! bundle holds them (`desired_get`), so a person can read what the fleet runs.
//!
//! A spec pasted or edited in the view (or a copy of the applied one) is planned by the chosen
//! host (`desired_plan`: the page has no spec parser, the node's checks it and plans it against
//! the generation it applied); "Apply" then signs exactly the planned text as the next generation
//! with the operator key loaded in this tab (../bundle.ts) and offers it (`desired_offer`) to
//! every host answering, each host's decision shown in its own words. Apply stays disabled
//! without a key, before a plan of the text as it stands, and when the plan changes nothing.
//! Everything else is a read: it starts when the view is shown, after every reconnect while it
//! is, and on "Refresh"; what it showed stays meanwhile.

import { DESIRED_KEY } from "../blob.ts";
import { peekBundle, type SignedBundle, signBundle } from "../bundle.ts";
import { utf8 } from "../bytes.ts";
import { formatOperatorPublic } from "../operator.ts";
import type { App } from "./app.ts";
import { button, element, errorText, outcomeProblem } from "./dom.ts";
import {
  contentRevision,
  type DesiredOfferResult,
  type DesiredPlanResult,
  desiredSummary,
  desiredText,
  type HistoryEntry,
  nextGeneration,
  type ObservedStatus,
  shortRevision,
} from "./desired.ts";
import type { Host } from "./fleet.ts";
import { Selector } from "./selector.ts";

/** What the view last heard from one host (kept while it is read again). */
type Report = { status: ObservedStatus; error: null } | { status: ObservedStatus | null; error: string };

/** How many hosts an apply offers the bundle to at once. */
const OFFER_CONCURRENCY = 32;
/** An offer verifies, stores and reconciles before it answers. */
const OFFER_DEADLINE_MS = 60_000;

/** A plan the chosen host made of the text as it was then (apply signs only that text). */
interface Planned {
  path: string;
  text: string;
  host: string;
  result: DesiredPlanResult;
}

function hostLabel(host: Host): string {
  return host.name || `${host.peerId.slice(0, 12)}…`;
}

function when(ms: number): string {
  return ms > 0 ? new Date(ms).toLocaleString() : "";
}

/** Whether a host answers requests now: online and read, or online and refused to be read (a
 * disabled node still answers `desired_status`, which is metadata about the node). */
function answering(host: Host): boolean {
  return host.online && host.phase !== "connecting";
}

function statusRow(host: Host, report: Report | undefined): HTMLTableRowElement {
  const name = hostLabel(host);
  const row = element("tr", { "data-host": name, "data-online": String(host.online) });
  const cell = (text: string, attributes: Record<string, string> = {}) => element("td", attributes, text);
  const head = element("th", { scope: "row" }, name);
  if (!host.online) {
    head.append(element("span", { class: "muted desired-offline" }, " offline: its last report"));
  }
  row.append(head);
  if (report === undefined) {
    row.append(cell("reading…", { colspan: "6", class: "muted" }));
    return row;
  }
  const status = report.status;
  if (status === null) {
    row.append(element("td", { colspan: "6", class: "error" }, report.error ?? ""));
    return row;
  }
  row.dataset.sync = status.sync;
  const none = status.sync === "Unknown" && status.observed_generation === 0;
  const revision = status.revision === null ? "" : ` (${shortRevision(status.revision)})`;
  const conditions = element(
    "ul",
    { class: "desired-conditions" },
    ...status.conditions.map((condition) =>
      element(
        "li",
        { "data-type": condition.type },
        `${condition.type}: ${condition.status ? "yes" : "no"} · ${condition.reason}`,
        condition.message.length > 0 ? ` — ${condition.message}` : "",
      ),
    ),
  );
  const drift = status.drift.map((item) => `${item.kind}: ${item.message}${item.expires_at_ms === null ? "" : ` (until ${when(item.expires_at_ms)})`}`);
  row.append(
    cell(none ? "none" : `${status.observed_generation}${revision}`, { class: "desired-generation" }),
    cell(status.sync, { class: `desired-sync sync-${status.sync}` }),
    cell(status.health, { class: `desired-health health-${status.health}` }),
    cell(status.mode === status.desired_mode ? status.mode : `${status.mode} (spec: ${status.desired_mode})`),
    element("td", { class: "desired-conditions-cell" }, conditions),
    cell(drift.length === 0 ? "none" : drift.join("; "), { class: drift.length === 0 ? "muted" : "drift" }),
  );
  if (report.error !== null) {
    // The last report stays; why reading it again failed goes under the host's name.
    row.firstElementChild?.append(element("p", { class: "error" }, report.error));
  }
  return row;
}

export function mountDesiredView(app: App, root: HTMLElement): void {
  const selectorInput = element("input", {
    id: "desired-selector",
    type: "text",
    value: "all",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "desired-picked",
  });
  const picked = element("p", { id: "desired-picked", class: "muted desired-picked" });
  const summary = element("p", { id: "desired-summary", class: "summary", "aria-live": "polite" });
  const body = element("tbody", {});
  const table = element(
    "table",
    { id: "desired-table", class: "list desired-table" },
    element(
      "thead",
      {},
      element(
        "tr",
        {},
        ...["Host", "Generation", "Sync", "Health", "Mode", "Conditions", "Drift"].map((title) => element("th", { scope: "col" }, title)),
      ),
    ),
    body,
  );
  const hostChoice = element("select", { id: "desired-host" });
  const history = element("div", { id: "desired-history", class: "desired-history" });
  const spec = element("div", { id: "desired-spec", class: "desired-spec" });
  const refresh = button("Refresh", { id: "desired-refresh" }, () => readAll());
  const specPath = element("input", { id: "desired-edit-path", type: "text", value: "fleet.yaml", spellcheck: "false" });
  const specText = element("textarea", {
    id: "desired-edit-text",
    rows: "12",
    spellcheck: "false",
    placeholder: "apiVersion: remote-agents.dev/v1\nkind: Fleet\n…  (paste a spec, or edit a copy of the applied one above)",
  });
  const planButton = element("button", { id: "desired-plan", type: "button" }, "Plan");
  const applyButton = element("button", { id: "desired-apply", type: "button", class: "primary" }, "Apply");
  const applyWhy = element("span", { id: "desired-apply-why", class: "muted" });
  const planResult = element("div", { id: "desired-plan-result", class: "desired-plan-result" });
  const applyResult = element("div", { id: "desired-apply-result", class: "desired-apply-result" });

  root.append(
    element(
      "div",
      { class: "form-row" },
      element("label", {}, "Hosts (selector)", selectorInput),
      refresh,
    ),
    picked,
    summary,
    element("div", { class: "desired-table-wrap" }, table),
    element("h3", { class: "desired-subtitle" }, "History and applied spec of one host"),
    element("div", { class: "form-row" }, element("label", {}, "Host", hostChoice)),
    history,
    spec,
    element("h3", { class: "desired-subtitle" }, "Plan and apply a spec"),
    element("div", { class: "form-row" }, element("label", { class: "desired-path-label" }, "File name", specPath)),
    specText,
    element("div", { class: "form-row desired-actions" }, planButton, applyButton, applyWhy),
    planResult,
    applyResult,
    element(
      "p",
      { class: "note", id: "desired-plan-note" },
      "The chosen host plans the text with its own spec parser; Apply signs that text as the next generation with the operator key loaded in this tab. From a terminal: ",
      element("code", {}, "fleetctl diff -f SPEC"),
      " and ",
      element("code", {}, "fleetctl apply -f SPEC"),
      ".",
    ),
  );

  const reports = new Map<string, Report>();
  /** The reads in flight, so a burst of fleet changes asks each host once. */
  const reading = new Set<string>();
  /** The session generation (`Fleet.generationOf`) each host was last asked in: a host that
   * rejoined (after a restart, or the page's reconnect) is asked again. */
  const askedIn = new Map<string, number>();
  let chosen = "";
  let personChose = false;
  let planned: Planned | null = null;
  let planning = false;
  let applying = false;
  let historyRead = 0;

  /** The hosts the selector picks: those answering now, and those that went offline (the relay
   * went away, or the node stopped) after they reported, shown with their last report. */
  const currentPick = (): { hosts: Host[] } | { error: string } => {
    try {
      const selector = Selector.parse(selectorInput.value);
      return {
        hosts: app.fleet.hosts().filter((host) => (answering(host) || reports.has(host.peerId)) && selector.matches(host)),
      };
    } catch (error) {
      return { error: errorText(error) };
    }
  };

  /** Whether the view is on screen (main.ts hides the sections of other tabs). */
  const visible = () => !root.hidden;

  const render = () => {
    const pick = currentPick();
    if ("error" in pick) {
      picked.className = "error desired-picked";
      picked.textContent = `selector: ${pick.error}`;
      return;
    }
    picked.className = "muted desired-picked";
    picked.textContent = pick.hosts.length === 0 ? "picks no host (online hosts only)" : `picks ${pick.hosts.map(hostLabel).join(", ")}`;
    const statuses: ObservedStatus[] = [];
    let unreadable = 0;
    for (const host of pick.hosts) {
      const report = reports.get(host.peerId);
      if (report?.status != null && report.error === null) {
        statuses.push(report.status);
      } else if (report !== undefined) {
        unreadable++;
      }
    }
    const waiting = pick.hosts.length - statuses.length - unreadable;
    const offline = pick.hosts.filter((host) => !host.online).length;
    summary.textContent =
      desiredSummary(statuses, unreadable) +
      (waiting > 0 ? ` · ${waiting} reading…` : "") +
      (offline > 0 ? ` · ${offline} offline (last report)` : "");
    body.replaceChildren(...pick.hosts.map((host) => statusRow(host, reports.get(host.peerId))));
    // The first picked host until a person chooses one, which stays chosen while it is picked.
    const names = pick.hosts.map(hostLabel);
    const previous = chosen;
    if (!personChose || !names.includes(chosen)) {
      personChose = personChose && names.includes(chosen);
      chosen = names[0] ?? "";
    }
    hostChoice.replaceChildren(...names.map((name) => element("option", { value: name }, name)));
    hostChoice.value = chosen;
    if (chosen !== previous && visible()) {
      void readChosen();
    }
    renderActions();
  };

  /** The answering hosts' last reports: what the next generation must be newer than. */
  const answeringStatuses = (): ObservedStatus[] =>
    app.fleet
      .hosts()
      .filter(answering)
      .flatMap((host) => {
        const status = reports.get(host.peerId)?.status;
        return status === null || status === undefined ? [] : [status];
      });

  /** The plan's buttons: Plan needs text and a chosen host; Apply a key, a plan of this text, and
   * something to change. Apply's label says what it does; the reason it cannot shows beside it. */
  const renderActions = () => {
    const hasText = specText.value.trim().length > 0 && specPath.value.trim().length > 0;
    planButton.textContent = chosen.length > 0 ? `Plan on ${chosen}` : "Plan";
    planButton.disabled = planning || !hasText || chosen.length === 0;
    const key = app.operator();
    const current = planned !== null && planned.text === specText.value && planned.path === specPath.value.trim();
    const targets = app.fleet.hosts().filter(answering).length;
    let why = "";
    if (key === null) {
      why = "load an operator key (top of the page) to apply";
    } else if (!current) {
      why = "plan the text as it stands first";
    } else if (planned?.result.unchanged === true) {
      why = "nothing to apply: the text is the applied generation's";
    }
    const generation = current && planned !== null ? nextGeneration(answeringStatuses(), planned.result.generation) : null;
    applyButton.textContent =
      generation === null ? "Apply" : `Apply as generation ${generation} to ${targets} host${targets === 1 ? "" : "s"}`;
    applyButton.disabled = applying || why.length > 0 || targets === 0;
    applyWhy.textContent = applying ? "applying…" : why;
  };

  const plan = async () => {
    const host = app.fleet.hosts().find((candidate) => hostLabel(candidate) === chosen);
    if (host === undefined) {
      return;
    }
    const path = specPath.value.trim();
    const text = specText.value;
    planned = null;
    planning = true;
    planResult.replaceChildren(element("p", { class: "muted" }, `${chosen} is planning…`));
    renderActions();
    const outcome = await app
      .request(host.peerId, "desired_plan", { files: [{ path, text }] })
      .catch((error: unknown) => ({ status: "failed" as const, error: errorText(error) }))
      .finally(() => {
        planning = false;
      });
    if (outcome.status !== "ok") {
      planResult.replaceChildren(element("pre", { class: "output error desired-plan-problem" }, outcomeProblem("desired_plan", outcome) ?? ""));
      renderActions();
      return;
    }
    const result = outcome.result as DesiredPlanResult;
    planned = { path, text, host: chosen, result };
    const against =
      result.generation === 0
        ? "which applied no generation yet"
        : `against its generation ${result.generation}${result.revision === null ? "" : ` (revision ${shortRevision(result.revision)})`}`;
    planResult.replaceChildren(
      element("p", { class: "desired-plan-title" }, `Plan of fleet ${result.fleet || "(unnamed)"} by ${chosen}, ${against}:`),
      element("pre", { class: "output desired-plan-text" }, result.text),
      ...result.warnings.map((warning) => element("p", { class: "drift" }, warning)),
    );
    renderActions();
  };

  const apply = async () => {
    const key = app.operator();
    const made = planned;
    if (key === null || made === null || made.text !== specText.value || made.path !== specPath.value.trim()) {
      renderActions();
      return;
    }
    const targets = app.fleet.hosts().filter(answering);
    const generation = nextGeneration(answeringStatuses(), made.result.generation);
    const bundle = signBundle(key, {
      fleet: made.result.fleet,
      generation,
      revision: contentRevision(made.result.spec_hash),
      files: [{ path: made.path, text: made.text }],
    });
    applying = true;
    renderActions();
    const decisions = element("ul", { class: "list desired-decisions" });
    applyResult.replaceChildren(
      element(
        "p",
        {},
        `Generation ${generation} (planned by ${made.host}), signed by `,
        element("code", { class: "desired-issuer" }, formatOperatorPublic(key.publicKey)),
        `, offered to ${targets.length} hosts:`,
      ),
      decisions,
    );
    // Left at the relay first, sealed to the room, as fleetctl does: hosts offline now (or
    // that miss the offer) take it from there when they come back.
    const retained = element("p", { class: "note desired-retained" }, "leaving the bundle at the relay…");
    applyResult.append(retained);
    try {
      await app.retain(DESIRED_KEY, utf8(JSON.stringify(bundle)));
      retained.textContent = "Left at the relay (sealed to the room) for hosts that are offline now.";
      retained.dataset.retained = "true";
    } catch (error) {
      retained.textContent = `The relay did not keep the bundle (${errorText(error)}); hosts offline now will take it from a peer.`;
      retained.dataset.retained = "false";
    }
    let next = 0;
    const offerNext = async (): Promise<void> => {
      while (next < targets.length) {
        const host = targets[next++] as Host;
        const name = hostLabel(host);
        let line: string;
        let decision: string;
        try {
          const outcome = await app.request(host.peerId, "desired_offer", { bundle }, OFFER_DEADLINE_MS);
          if (outcome.status === "ok") {
            const answer = outcome.result as DesiredOfferResult;
            decision = answer.decision;
            reports.set(host.peerId, { status: answer.status, error: null });
            line = `${name}: ${answer.decision}${answer.reason === undefined ? "" : `: ${answer.reason}`} · now ${desiredText(answer.status)}`;
          } else {
            decision = outcome.status;
            line = `${name}: ${outcomeProblem("desired_offer", outcome)}`;
          }
        } catch (error) {
          decision = "error";
          line = `${name}: ${errorText(error)}`;
        }
        decisions.append(element("li", { "data-host": name, "data-decision": decision }, line));
      }
    };
    await Promise.all(Array.from({ length: Math.min(OFFER_CONCURRENCY, targets.length) }, offerNext));
    // Answers came in as hosts finished; once all are in, they read best by name.
    decisions.replaceChildren(
      ...Array.from(decisions.children).sort((a, b) => (a.getAttribute("data-host") ?? "").localeCompare(b.getAttribute("data-host") ?? "")),
    );
    applying = false;
    // The plan was made against the generation before: the next apply needs a new one.
    planned = null;
    planResult.prepend(element("p", { class: "note desired-plan-applied" }, `Applied as generation ${generation}; plan again before the next apply.`));
    render();
    void readChosen();
  };

  const readStatus = async (host: Host) => {
    if (reading.has(host.peerId) || !answering(host)) {
      return;
    }
    reading.add(host.peerId);
    askedIn.set(host.peerId, app.fleet.generationOf(host.peerId));
    try {
      const status = await app.result<ObservedStatus>(host.peerId, "desired_status");
      reports.set(host.peerId, { status, error: null });
    } catch (error) {
      reports.set(host.peerId, { status: reports.get(host.peerId)?.status ?? null, error: errorText(error) });
    } finally {
      reading.delete(host.peerId);
    }
    render();
  };

  /** Reads the picked hosts' status again, and the chosen host's history. */
  const readAll = async () => {
    const pick = currentPick();
    if ("error" in pick) {
      render();
      return;
    }
    await Promise.all([...pick.hosts.map(readStatus), readChosen()]);
  };

  /** Reads the picked hosts not asked yet in their current session. */
  const readMissing = () => {
    const pick = currentPick();
    if (!("error" in pick)) {
      for (const host of pick.hosts) {
        if (askedIn.get(host.peerId) !== app.fleet.generationOf(host.peerId)) {
          void readStatus(host);
        }
      }
    }
  };

  const readChosen = async () => {
    const host = app.fleet.hosts().find((candidate) => hostLabel(candidate) === chosen);
    if (host === undefined) {
      history.replaceChildren();
      spec.replaceChildren();
      return;
    }
    if (!answering(host)) {
      // Offline: what was read before stays until the host answers again.
      return;
    }
    const read = ++historyRead;
    history.dataset.host = chosen;
    const [entries, bundle] = await Promise.allSettled([
      app.result<HistoryEntry[]>(host.peerId, "desired_history"),
      app.result<SignedBundle>(host.peerId, "desired_get"),
    ]);
    if (read !== historyRead) {
      return;
    }
    if (entries.status === "rejected") {
      history.replaceChildren(element("p", { class: "error" }, errorText(entries.reason)));
    } else if (entries.value.length === 0) {
      history.replaceChildren(element("p", { class: "muted" }, `${chosen} accepted no generation yet`));
    } else {
      history.replaceChildren(
        element(
          "table",
          { class: "list" },
          element("thead", {}, element("tr", {}, ...["Generation", "Revision", "Issued", "Signed by"].map((title) => element("th", { scope: "col" }, title)))),
          element(
            "tbody",
            {},
            ...[...entries.value]
              .sort((a, b) => b.generation - a.generation)
              .map((entry) =>
                element(
                  "tr",
                  {},
                  element("td", {}, String(entry.generation)),
                  element("td", {}, entry.revision),
                  element("td", {}, when(entry.issued_at_ms)),
                  element("td", { class: "desired-issuer" }, entry.issuer),
                ),
              ),
          ),
        ),
      );
    }
    if (bundle.status === "rejected") {
      spec.replaceChildren(element("p", { class: "muted desired-spec-problem" }, errorText(bundle.reason)));
      return;
    }
    const content = peekBundle(bundle.value);
    if (content === null) {
      spec.replaceChildren(element("p", { class: "error" }, `the bundle ${chosen} holds is not a bundle's JSON`));
      return;
    }
    spec.replaceChildren(
      element(
        "p",
        {},
        `Applied: fleet ${content.fleet}, generation ${content.generation}, revision ${content.revision}, issued ${when(content.issued_at_ms)} by `,
        element("code", { class: "desired-issuer" }, content.issuer),
      ),
      ...content.files.map((file) => {
        // Copying into the editor changes nothing on any host: it is the start of a plan.
        const edit = button("Edit a copy", { class: "desired-edit-copy" }, () => {
          specPath.value = file.path;
          specText.value = file.text;
          renderActions();
        });
        return element(
          "div",
          { class: "result desired-spec-file" },
          element("div", { class: "desired-spec-head" }, element("strong", {}, file.path), edit),
          element("pre", { class: "output" }, file.text),
        );
      }),
    );
  };

  new MutationObserver(() => {
    if (visible()) {
      void readAll();
    }
  }).observe(root, { attributes: true, attributeFilter: ["hidden"] });
  app.onConnected(() => {
    if (visible()) {
      void readAll();
    }
  });
  app.onChange(() => {
    render();
    if (visible()) {
      readMissing();
    }
  });
  selectorInput.addEventListener("input", () => {
    render();
    readMissing();
  });
  planButton.addEventListener("click", () => void plan());
  applyButton.addEventListener("click", () => void apply());
  specText.addEventListener("input", renderActions);
  specPath.addEventListener("input", renderActions);
  hostChoice.addEventListener("change", () => {
    chosen = hostChoice.value;
    personChose = true;
    renderActions();
    void readChosen();
  });
  render();
}
