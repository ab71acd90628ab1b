//! The Run view: a selector (with a live count and the names of the hosts it picks), a command
//! (split into argv as a shell splits simple quoting, or run through `/bin/sh -c`), a timeout and
//! one button, "Run on N hosts": only its click runs anything. `exec` goes to every picked host at
//! once, at most `CONCURRENCY` at a time, with a progress line; the answers are folded (fold.ts)
//! into groups of hosts that answered the same, refusals in the node's own words. Every run of
//! this tab is kept in memory only (never in storage: commands and output may be secret) in the
//! job history, newest first; a click shows a run's groups again. A relay reconnect keeps it all.
//!
//! Picked hosts are the online ones that were read or refused to be read: a disabled node is in
//! the room, and a person running a command on `all` expects to see that it refused.

import type { App } from "./app.ts";
import { element, errorText } from "./dom.ts";
import type { Host } from "./fleet.ts";
import {
  CommandLineError,
  countRuns,
  type ExecResult,
  foldRuns,
  type HostAnswer,
  type HostRun,
  type ResultGroup,
  type StreamText,
  splitCommandLine,
} from "./fold.ts";
import { Selector } from "./selector.ts";

/** How many hosts run at once: enough for a fleet to answer quickly, few enough for one tab. */
const CONCURRENCY = 32;
/** Time the answer may take beyond the command's own timeout (meeting the host, the output). */
const ANSWER_MARGIN_MS = 30_000;
const DEFAULT_TIMEOUT_SECS = 60;
/** `ops::limits`: the longest timeout a node takes. */
const MAX_TIMEOUT_SECS = 86_400;

interface Job {
  id: number;
  selector: string;
  command: string;
  shell: boolean;
  argv: string[];
  startedAt: number;
  /** When the last host answered; null while the job runs. */
  finishedAt: number | null;
  /** The picked hosts' names, in the order they were picked. */
  hosts: string[];
  /** The hosts whose answer is awaited now (a slow host shows by name). */
  running: Set<string>;
  runs: HostRun[];
}

/** How often a running job's progress and groups are drawn again. */
const RENDER_EVERY_MS = 100;
/** How many of the awaited hosts the progress line names. */
const NAMED_WAITING = 8;

/** The name a host is shown by (a node not yet named: its peer id). */
function hostLabel(host: Host): string {
  return host.name || `${host.peerId.slice(0, 12)}…`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** `40 ms`, `2.5 s`, `73 s`: a duration as people read it. */
function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** The online hosts `selector` picks: read ones and those that refused to be read. */
function pickHosts(app: App, selector: Selector): Host[] {
  return app.fleet
    .hosts()
    .filter((host) => host.online && host.phase !== "connecting" && selector.matches(host));
}

/** Runs `work` on every item, at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function streamBlock(label: string, output: StreamText, extraClass = ""): HTMLElement | null {
  if (output.binaryBytes !== null) {
    return element("p", { class: `run-binary ${extraClass}` }, `${label}: ${output.binaryBytes} bytes of binary output`);
  }
  if (output.text.length === 0) {
    return null;
  }
  return element(
    "div",
    { class: `run-stream ${extraClass}` },
    element("span", { class: "run-stream-label muted" }, label),
    element("pre", { class: "output" }, output.text),
  );
}

function groupBlock(group: ResultGroup): HTMLElement {
  const block = element(
    "article",
    { class: "result run-group", "data-kind": group.kind, "data-hosts": group.hosts.join(",") },
    element(
      "header",
      { class: "run-group-head" },
      element("strong", { class: "run-group-count" }, plural(group.hosts.length, "host")),
      element("span", { class: `run-status run-status-${group.kind}` }, group.status),
    ),
    element("ul", { class: "tags run-hosts" }, ...group.hosts.map((name) => element("li", {}, name))),
  );
  if (group.problem !== null) {
    block.append(element("p", { class: "error run-problem" }, group.problem));
  }
  const stdout = streamBlock("stdout", group.stdout, "run-stdout");
  const stderr = streamBlock("stderr", group.stderr, "run-stderr");
  if (stdout !== null) {
    block.append(stdout);
  }
  if (stderr !== null) {
    block.append(stderr);
  }
  if (group.problem === null && stdout === null && stderr === null) {
    block.append(element("p", { class: "muted run-empty" }, "no output"));
  }
  if (group.truncated) {
    block.append(element("p", { class: "note" }, "output cut at the node's limit (max_output_bytes)"));
  }
  // How a plan-mode host confined the command is the node's long description: one line names
  // the hosts, a click shows the rest.
  for (const confined of group.confined) {
    block.append(
      element(
        "details",
        { class: "note run-sandbox" },
        element("summary", {}, `${confined.hosts.join(", ")} ran it in a sandbox`),
        confined.how,
      ),
    );
  }
  return block;
}

function countsText(job: Job): string {
  const counts = countRuns(job.runs);
  return `${counts.ok} ok · ${counts.failed} failed · ${counts.refused} refused`;
}

function commandText(job: Job): string {
  return job.shell ? `sh -c ${job.command}` : job.command;
}

/** A job's heading, progress and folded groups (so far, while it runs). */
function jobBlock(job: Job): HTMLElement {
  const done = job.runs.length;
  const pending = job.hosts.length - done - job.running.size;
  const finished = job.finishedAt !== null;
  const block = element(
    "div",
    { class: "run-job-result", "data-job": String(job.id), "data-state": finished ? "done" : "running" },
    element(
      "p",
      { class: "run-job-title" },
      element("code", {}, commandText(job)),
      ` on ${job.selector} · ${plural(job.hosts.length, "host")} · started ${new Date(job.startedAt).toLocaleTimeString()}`,
      finished ? ` · took ${duration((job.finishedAt as number) - job.startedAt)}` : "",
    ),
  );
  if (!finished) {
    block.append(
      element("progress", { max: String(Math.max(1, job.hosts.length)), value: String(done) }),
      element("p", { class: "run-progress muted", "aria-live": "polite" }, `${done} done · ${job.running.size} running · ${pending} pending`),
    );
    const waiting = [...job.running];
    if (waiting.length > 0) {
      const more = waiting.length > NAMED_WAITING ? ` and ${waiting.length - NAMED_WAITING} more` : "";
      block.append(element("p", { class: "run-waiting muted" }, `waiting for ${waiting.slice(0, NAMED_WAITING).join(", ")}${more}`));
    }
  }
  block.append(element("p", { class: "run-counts" }, countsText(job)));
  const groups = foldRuns(job.runs);
  block.append(element("div", { class: "run-groups" }, ...groups.map(groupBlock)));
  if (job.hosts.length === 0) {
    block.append(element("p", { class: "note" }, "the selector picked no host"));
  }
  return block;
}

export function mountRunView(app: App, root: HTMLElement): void {
  const selectorInput = element("input", {
    id: "run-selector",
    type: "text",
    value: "all",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "run-picked",
  });
  const timeoutInput = element("input", {
    id: "run-timeout",
    type: "number",
    min: "1",
    max: String(MAX_TIMEOUT_SECS),
    step: "1",
    value: String(DEFAULT_TIMEOUT_SECS),
  });
  const commandInput = element("input", {
    id: "run-command",
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "uname -a",
    "aria-describedby": "run-command-problem",
  });
  const shellBox = element("input", { id: "run-shell", type: "checkbox" });
  const picked = element("p", { id: "run-picked", class: "run-picked", "aria-live": "polite" });
  const commandProblem = element("p", { id: "run-command-problem", class: "error", hidden: "" });
  const runButton = element("button", { id: "run-start", type: "button", class: "primary" }, "Run");
  const current = element("div", { id: "run-current", class: "run-current" });
  const history = element("ol", { id: "run-history", class: "run-history" });

  root.append(
    element(
      "div",
      { class: "form-row" },
      element("label", { class: "run-selector-label" }, "Hosts (selector)", selectorInput),
      element("label", { class: "run-timeout-label" }, "Timeout (s)", timeoutInput),
    ),
    picked,
    element("div", { class: "form-row" }, element("label", {}, "Command", commandInput)),
    element(
      "div",
      { class: "form-row run-actions" },
      element("label", { class: "run-shell-label" }, shellBox, "through /bin/sh (pipes, $VARS, ~)"),
      runButton,
    ),
    commandProblem,
    current,
    element("h3", { class: "run-history-title" }, "Job history"),
    history,
  );

  const jobs: Job[] = [];
  let shownJob: Job | null = null;
  let running: Job | null = null;

  /** The hosts the selector picks now, or why it does not parse. */
  const currentPick = (): { hosts: Host[] } | { error: string } => {
    try {
      return { hosts: pickHosts(app, Selector.parse(selectorInput.value)) };
    } catch (error) {
      return { error: errorText(error) };
    }
  };

  /** The argv the command field says, or why it does not split. */
  const currentArgv = (): { argv: string[] } | { error: string } => {
    const text = commandInput.value.trim();
    if (text.length === 0) {
      return { error: "type a command to run" };
    }
    if (shellBox.checked) {
      return { argv: [text] };
    }
    try {
      return { argv: splitCommandLine(text) };
    } catch (error) {
      return { error: error instanceof CommandLineError ? `${error.message} (or tick "through /bin/sh")` : errorText(error) };
    }
  };

  const currentTimeout = (): number | null => {
    const value = Number(timeoutInput.value);
    return Number.isFinite(value) && value > 0 && value <= MAX_TIMEOUT_SECS ? value : null;
  };

  const renderForm = () => {
    const pick = currentPick();
    if ("error" in pick) {
      picked.className = "run-picked error";
      picked.textContent = `selector: ${pick.error}`;
    } else {
      picked.className = "run-picked muted";
      const names = pick.hosts.map(hostLabel);
      picked.textContent =
        names.length === 0 ? "picks no host (online hosts only)" : `picks ${plural(names.length, "host")}: ${names.join(", ")}`;
    }
    const argv = currentArgv();
    // An empty field is not a mistake yet; only a line that does not split is shown as one.
    const showProblem = "error" in argv && commandInput.value.trim().length > 0;
    commandProblem.hidden = !showProblem;
    commandProblem.textContent = showProblem && "error" in argv ? argv.error : "";
    const timeout = currentTimeout();
    const count = "hosts" in pick ? pick.hosts.length : 0;
    runButton.textContent = running !== null ? `Running on ${plural(running.hosts.length, "host")}…` : `Run on ${plural(count, "host")}`;
    runButton.disabled = running !== null || "error" in pick || count === 0 || "error" in argv || timeout === null;
    runButton.title = timeout === null ? `the timeout must be between 1 and ${MAX_TIMEOUT_SECS} seconds` : "";
  };

  const renderHistory = () => {
    history.replaceChildren(
      ...[...jobs].reverse().map((job) => {
        const finished = job.finishedAt !== null;
        const entry = element(
          "button",
          { type: "button", class: "run-job", "data-job": String(job.id), "aria-current": String(job === shownJob) },
          element("code", {}, commandText(job)),
          element(
            "span",
            { class: "muted" },
            ` on ${job.selector} · ${new Date(job.startedAt).toLocaleTimeString()} · ${
              finished ? duration((job.finishedAt as number) - job.startedAt) : "running"
            } · ${countsText(job)}`,
          ),
        );
        entry.addEventListener("click", () => {
          shownJob = job;
          renderJob();
          renderHistory();
        });
        return element("li", {}, entry);
      }),
    );
    if (jobs.length === 0) {
      history.append(element("li", { class: "muted" }, "no run yet in this tab"));
    }
  };

  const renderJob = () => {
    current.replaceChildren(...(shownJob === null ? [] : [jobBlock(shownJob)]));
  };

  const changed = (job: Job) => {
    if (job === shownJob) {
      renderJob();
    }
    renderHistory();
  };
  // A thousand hosts answer within moments of each other: their answers are drawn at most every
  // RENDER_EVERY_MS (folding and drawing every group once per answer would be quadratic).
  let drawPending: ReturnType<typeof setTimeout> | null = null;
  const changedSoon = (job: Job) => {
    if (drawPending === null) {
      drawPending = setTimeout(() => {
        drawPending = null;
        changed(job);
      }, RENDER_EVERY_MS);
    }
  };

  const start = async () => {
    const pick = currentPick();
    const argv = currentArgv();
    const timeout = currentTimeout();
    if (running !== null || "error" in pick || "error" in argv || timeout === null || pick.hosts.length === 0) {
      renderForm();
      return;
    }
    const job: Job = {
      id: jobs.length + 1,
      selector: selectorInput.value.trim(),
      command: commandInput.value.trim(),
      shell: shellBox.checked,
      argv: argv.argv,
      startedAt: Date.now(),
      finishedAt: null,
      hosts: pick.hosts.map(hostLabel),
      running: new Set(),
      runs: [],
    };
    jobs.push(job);
    shownJob = job;
    running = job;
    renderForm();
    changed(job);
    const args = { argv: job.argv, shell: job.shell, timeout_secs: timeout };
    await pool(pick.hosts, CONCURRENCY, async (host) => {
      job.running.add(hostLabel(host));
      changedSoon(job);
      let answer: HostAnswer;
      try {
        const outcome = await app.request(host.peerId, "exec", args, timeout * 1000 + ANSWER_MARGIN_MS);
        answer = outcome.status === "ok" ? { status: "ok", result: outcome.result as ExecResult } : outcome;
      } catch (error) {
        answer = { status: "error", error: errorText(error) };
      }
      job.running.delete(hostLabel(host));
      job.runs.push({ host: hostLabel(host), answer });
      changedSoon(job);
    });
    job.finishedAt = Date.now();
    running = null;
    if (drawPending !== null) {
      clearTimeout(drawPending);
      drawPending = null;
    }
    changed(job);
    renderForm();
  };

  runButton.addEventListener("click", () => void start());
  for (const input of [selectorInput, commandInput, timeoutInput, shellBox]) {
    input.addEventListener("input", renderForm);
  }
  app.onChange(renderForm);
  renderForm();
  renderHistory();
}
