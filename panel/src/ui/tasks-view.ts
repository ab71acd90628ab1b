//! The Tasks view: the autonomous tasks (`task_dispatch`) in flight and recent ones across the
//! hosts a selector picks, from `task_list` on each: state, provider, host, the prompt's first
//! line, when it started and how long it ran. The list reads itself when the view is shown and
//! refreshes while a task runs; cancelling takes a click on a button naming the host. Opening a
//! task follows its record live (`followTask`, which the Chats view uses for the tasks it starts
//! too): its events as they come, then the answer or the error in the node's words.

import { type App, listWhenShown, pickForListing, shown } from "./app.ts";
import { button, element, errorText, outcomeProblem } from "./dom.ts";
import {
  durationText,
  eventLines,
  firstLine,
  type HostLabel,
  type HostTask,
  mergeTasks,
  providerName,
  taskFacts,
  taskOutcome,
  type TaskListResult,
  type TaskStatus,
  timeText,
} from "./tasks.ts";

/** How long the node holds one `task_wait` while following a task: the page's refresh rate,
 * without a timer of its own (the call returns at once when the task ends). */
const FOLLOW_WAIT_SECS = 1;
/** How long a request may take beyond the node's own wait. */
const FOLLOW_DEADLINE_MS = 15_000;
/** `task_cancel` waits up to 30 s on the node for the task to read `cancelled`. */
const CANCEL_DEADLINE_MS = 45_000;
/** How often the list re-reads itself while a task in it runs and the view is shown. */
const LIST_REFRESH_MS = 2_000;
/** Lines of a task's event log the page keeps; the host keeps the whole transcript. */
const MAX_SHOWN_EVENTS = 1_000;

/** A task being followed: its element, and `stop` when the view lets go of it. */
export interface TaskFollower {
  element: HTMLElement;
  stop(): void;
}

/** Resolves at the next (re)join of the room, or after `ms`, whichever comes first. */
function nextConnection(app: App, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      unsubscribe();
      clearTimeout(timer);
      resolve();
    };
    const unsubscribe = app.onConnected(done);
    const timer = setTimeout(done, ms);
  });
}

/**
 * Shows `initial` (a task of `host`) and follows it until it ends: `task_wait` with a short wait
 * reads the record, `task_get` with the transcript fetches the events whenever there are new ones,
 * and the log grows as they come. A lost relay only pauses it (what it shows stays); a node's
 * failure ends it with the node's words. A running task has a Cancel button naming the host.
 */
export function followTask(app: App, host: HostLabel, initial: TaskStatus, onUpdate?: (task: TaskStatus) => void): TaskFollower {
  let stopped = false;
  let current = initial;
  let shownEvents = 0;
  let knownEvents = 0;
  const title = element("h3", { class: "task-title" }, `Task on ${host.name}`);
  const state = element("span", { class: "badge task-state" });
  const meta = element("p", { class: "task-meta muted" });
  const facts = element("p", { class: "task-facts" });
  const session = element("p", { class: "task-session muted" });
  const events = element("ol", { class: "task-events", "aria-live": "polite" });
  const ending = element("div", { class: "task-end" });
  const progress = element("p", { class: "note task-progress", role: "status" });
  const problem = element("p", { class: "error task-problem", role: "alert", hidden: "" });
  const cancel = button(`Cancel task on ${host.name}`, { class: "danger task-cancel" }, async () => {
    problem.hidden = true;
    try {
      const outcome = await app.request(host.peerId, "task_cancel", { task_id: current.task_id }, CANCEL_DEADLINE_MS);
      const refused = outcomeProblem("task_cancel", outcome);
      if (refused !== null || outcome.status !== "ok") {
        showProblem(refused ?? "task_cancel");
        return;
      }
      render(outcome.result as TaskStatus);
    } catch (error) {
      showProblem(`task_cancel on ${host.name}: ${errorText(error)}`);
    }
  });
  const record = element(
    "article",
    { class: "task-record", "data-host": host.name, "data-task-id": initial.task_id },
    element("header", {}, title, state),
    meta,
    facts,
    session,
    element("h4", { class: "task-events-title" }, "Events"),
    events,
    ending,
    progress,
    problem,
    element("div", { class: "form-row" }, cancel),
  );

  function showProblem(text: string): void {
    problem.textContent = text;
    problem.hidden = false;
  }

  function render(task: TaskStatus): void {
    current = task;
    record.dataset.state = task.state;
    state.textContent = task.state;
    state.className = `badge task-state state-${task.state}`;
    meta.textContent = [
      providerName(task.provider),
      `mode ${task.mode}`,
      `started ${timeText(task.started_at_ms)}`,
      `task ${task.task_id}`,
    ].join(" · ");
    facts.textContent = taskFacts(task);
    session.textContent = task.session_id === null ? "" : `session ${task.session_id} (continue it from the Chats view)`;
    const outcome = taskOutcome(task);
    cancel.hidden = outcome.kind !== "running";
    if (outcome.kind === "answer") {
      ending.replaceChildren(element("h4", {}, "Answer"), element("pre", { class: "output task-answer" }, outcome.text));
    } else if (outcome.kind === "error") {
      // The node's words; the state in front unless they are just the state (`cancelled`).
      const text = outcome.text === task.state ? outcome.text : `${task.state}: ${outcome.text}`;
      ending.replaceChildren(element("p", { class: "error task-error", role: "alert" }, text));
    } else {
      ending.replaceChildren();
    }
    onUpdate?.(task);
  }

  /** Appends the events past those shown (the transcript only grows while a task runs). */
  function renderEvents(task: TaskStatus): void {
    const lines = eventLines(task.transcript ?? []);
    for (const line of lines.slice(shownEvents, MAX_SHOWN_EVENTS)) {
      // The final answer shows once, under the log, as the task's ending.
      if (line.kind !== "result") {
        events.append(element("li", { class: `event event-${line.kind}` }, line.text));
      }
    }
    if (lines.length > MAX_SHOWN_EVENTS && shownEvents <= MAX_SHOWN_EVENTS) {
      events.append(element("li", { class: "event note" }, `${lines.length - MAX_SHOWN_EVENTS} more events: the host keeps them`));
    }
    shownEvents = Math.max(shownEvents, Math.min(lines.length, MAX_SHOWN_EVENTS + 1));
    knownEvents = task.transcript_events;
  }

  async function follow(): Promise<void> {
    let fetchedOnce = false;
    while (!stopped) {
      try {
        const waited = await app.request(
          host.peerId,
          "task_wait",
          { task_id: current.task_id, wait_secs: FOLLOW_WAIT_SECS },
          FOLLOW_DEADLINE_MS,
        );
        if (stopped) {
          return;
        }
        if (waited.status === "outcome_unknown") {
          progress.textContent = `${outcomeProblem("task_wait", waited)}; asking again`;
          continue;
        }
        if (waited.status !== "ok") {
          // The node's own answer (an unknown task, a refusal): following cannot go on.
          showProblem(outcomeProblem("task_wait", waited) ?? "task_wait");
          progress.textContent = "";
          return;
        }
        let task = waited.result as TaskStatus;
        if (!fetchedOnce || task.transcript_events !== knownEvents) {
          const got = await app.request(host.peerId, "task_get", { task_id: task.task_id, transcript: true }, FOLLOW_DEADLINE_MS);
          if (stopped) {
            return;
          }
          if (got.status === "ok") {
            task = got.result as TaskStatus;
            renderEvents(task);
            fetchedOnce = true;
          } else {
            // The record still shows; the events could not be read (the node says why).
            showProblem(outcomeProblem("task_get", got) ?? "task_get");
            if (task.state !== "running") {
              render(task);
              progress.textContent = "";
              return;
            }
          }
        }
        render(task);
        if (task.state !== "running" && task.transcript_events === knownEvents) {
          progress.textContent = "";
          return;
        }
        progress.textContent = task.state === "running" ? `running on ${host.name}, following its events…` : "";
      } catch (error) {
        if (stopped) {
          return;
        }
        // The relay went away or the host did not answer in time: keep what is shown and ask
        // again once the page has rejoined (or in a little while).
        progress.textContent = `${host.name}: ${errorText(error)}; following again once it answers`;
        await nextConnection(app, app.connected() ? 2_000 : 30_000);
      }
    }
  }

  render(initial);
  progress.textContent = initial.state === "running" ? `running on ${host.name}, following its events…` : "reading its events…";
  void follow();
  return {
    element: record,
    stop: () => {
      stopped = true;
    },
  };
}

export function mountTasksView(app: App, root: HTMLElement): void {
  const selector = element("input", { id: "tasks-selector", type: "text", value: "all", spellcheck: "false", autocomplete: "off" });
  const list = element("ul", { class: "task-list", id: "task-list" });
  const status = element("p", { class: "tasks-status muted", "aria-live": "polite" });
  const errors = element("div", { class: "tasks-errors" });
  const detail = element("div", { class: "task-detail" });
  let follower: TaskFollower | null = null;
  /** The peers the last listing asked, to list again when the selection's hosts change. */
  let listedPeers = "";
  let listedSelector = "";
  let listing: Promise<void> | null = null;
  let again = false;
  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
  let rows: HostTask[] = [];
  /** Tasks whose Cancel is under way, and what the node said when one did not stop, by
   * `peer/task`: kept across the list's refreshes. */
  const cancelling = new Set<string>();
  const rowProblems = new Map<string, string>();

  const listButton = button("List tasks", { class: "primary", id: "tasks-list" }, () => list_());

  root.append(
    element("p", { class: "muted" }, "Autonomous tasks on each host: running ones refresh live. Start one from a chat in the Chats view."),
    element("div", { class: "form-row" }, element("label", {}, "Hosts (selector)", selector), listButton),
    status,
    errors,
    list,
    detail,
  );

  function open(entry: HostTask): void {
    follower?.stop();
    follower = followTask(app, entry.host, entry.task);
    detail.replaceChildren(follower.element);
    follower.element.scrollIntoView({ block: "nearest" });
  }

  function row(entry: HostTask): HTMLElement {
    const { host, task } = entry;
    const item = element(
      "li",
      { class: "task-row", "data-host": host.name, "data-task-id": task.task_id, "data-state": task.state },
      element(
        "div",
        { class: "task-row-head" },
        element("span", { class: `badge task-state state-${task.state}` }, task.state),
        element("strong", { class: "task-host" }, host.name),
        element("span", { class: "task-provider" }, providerName(task.provider)),
        element("span", { class: "task-prompt" }, firstLine(task.prompt, 100) || "(no prompt)"),
      ),
      element(
        "div",
        { class: "task-row-meta muted" },
        [`started ${timeText(task.started_at_ms)}`, durationText(task.duration_ms), `${task.turns} turn${task.turns === 1 ? "" : "s"}`, task.mode].join(" · "),
      ),
    );
    const key = `${host.peerId}/${task.task_id}`;
    const actions = element("div", { class: "task-row-actions" }, button("Open", { class: "task-open" }, () => open(entry)));
    if (task.state === "running") {
      const cancel = button(`Cancel on ${host.name}`, { class: "danger task-cancel" }, async () => {
        // The list re-renders while the node stops the task (up to 30 s): the row remembers.
        cancelling.add(key);
        rowProblems.delete(key);
        cancel.textContent = `Cancelling on ${host.name}…`;
        try {
          const outcome = await app.request(host.peerId, "task_cancel", { task_id: task.task_id }, CANCEL_DEADLINE_MS);
          const refused = outcomeProblem("task_cancel", outcome);
          if (refused !== null) {
            rowProblems.set(key, refused);
          }
        } catch (error) {
          rowProblems.set(key, `task_cancel on ${host.name}: ${errorText(error)}`);
        } finally {
          cancelling.delete(key);
        }
        await list_();
      });
      if (cancelling.has(key)) {
        cancel.disabled = true;
        cancel.textContent = `Cancelling on ${host.name}…`;
      }
      actions.append(cancel);
    }
    item.append(actions);
    const problem = rowProblems.get(key);
    if (problem !== undefined) {
      item.append(element("p", { class: "error", role: "alert" }, problem));
    }
    return item;
  }

  function render(): void {
    list.replaceChildren(...rows.map(row));
  }

  /** While a listed task runs and the view is shown, the list reads itself again shortly — also
   * after a listing that could not reach the hosts (the page rejoining), so it resumes by itself. */
  function scheduleRefresh(): void {
    clearTimeout(refreshTimer);
    if (rows.some((entry) => entry.task.state === "running")) {
      refreshTimer = setTimeout(() => {
        if (shown(root)) {
          void list_();
        }
      }, LIST_REFRESH_MS);
    }
  }

  /** `task_list` on every picked host; one host's failure is shown on its own line. */
  async function listOnce(): Promise<void> {
    const hosts = pickForListing(app, selector.value, status, errors);
    if (hosts === null) {
      return;
    }
    status.textContent = `listing tasks on ${hosts.map((host) => host.name).join(", ")}…`;
    const answers = await Promise.all(
      hosts.map(async (host) => {
        const label = { name: host.name, peerId: host.peerId };
        try {
          const result = await app.result<TaskListResult>(host.peerId, "task_list", { limit: 50 });
          return { host: label, tasks: result.tasks, error: null };
        } catch (error) {
          return { host: label, tasks: [], error: errorText(error) };
        }
      }),
    );
    const failed = answers.filter((answer) => answer.error !== null);
    // A host that could not answer keeps the tasks it showed before (a reconnect is no reason
    // to blank what the view shows); the others show what they answered now.
    // Hosts listed before that are not reachable now (the page is rejoining, or they left) keep
    // theirs too, as long as the selector is the same.
    const previous = (peerId: string) => rows.filter((entry) => entry.host.peerId === peerId).map((entry) => entry.task);
    const absent =
      selector.value === listedSelector
        ? [...new Map(rows.map((entry) => [entry.host.peerId, entry.host])).values()].filter(
            (label) => !hosts.some((host) => host.peerId === label.peerId),
          )
        : [];
    rows = mergeTasks([
      ...answers.map((answer) => ({ host: answer.host, tasks: answer.error === null ? answer.tasks : previous(answer.host.peerId) })),
      ...absent.map((label) => ({ host: label, tasks: previous(label.peerId) })),
    ]);
    listedSelector = selector.value;
    listedPeers = [...answers.map((answer) => answer.host.peerId), ...absent.map((label) => label.peerId)].sort().join(",");
    errors.replaceChildren(
      ...failed.map((answer) => element("p", { class: "error", role: "alert", "data-host": answer.host.name }, `${answer.host.name}: ${answer.error}`)),
      ...absent.map((label) => element("p", { class: "note", "data-host": label.name }, `${label.name}: not reachable now; showing the tasks it listed before`)),
    );
    const running = rows.filter((entry) => entry.task.state === "running").length;
    status.textContent =
      `${rows.length} task${rows.length === 1 ? "" : "s"} on ${answers.length - failed.length} of ${answers.length} host${answers.length === 1 ? "" : "s"}` +
      (running > 0 ? ` · ${running} running (refreshing live)` : "") +
      (rows.length === 0 ? ": no task has run on them yet" : "");
    render();
  }

  /** One listing at a time; a request while one runs lists once more after it. */
  async function list_(): Promise<void> {
    if (listing !== null) {
      again = true;
      return listing;
    }
    listing = (async () => {
      try {
        do {
          again = false;
          await listOnce();
        } while (again);
      } finally {
        listing = null;
        scheduleRefresh();
      }
    })();
    return listing;
  }

  listWhenShown(app, root, selector, () => listedPeers, { onShown: () => void list_(), onNewHosts: () => void list_() });
  selector.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      listButton.click();
    }
  });
}
