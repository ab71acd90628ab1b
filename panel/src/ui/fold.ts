//! What the Run view computes without the DOM: the argv of a command line typed as a person types
//! it into a shell (simple quoting only), and the per-host results of one run folded into groups
//! of hosts that answered the same (exit status, stdout, stderr, or the same refusal), largest
//! group first, so a thousand identical answers read as one. Pure: the view and the tests feed it.

/** What `exec` returns (`ops::ExecResult`); `stdout`/`stderr` are base64 when their encoding says so. */
export interface ExecResult {
  exit_code: number | null;
  signal: number | null;
  stdout: string;
  stderr: string;
  stdout_encoding?: "utf8" | "base64";
  stderr_encoding?: "utf8" | "base64";
  truncated: boolean;
  timed_out: boolean;
  cancelled: boolean;
  duration_ms: number;
  /** How the command was confined (plan mode: a read-only sandbox). */
  sandbox?: string;
}

/** How one host's run ended: the node's outcome, or the page's own error (no session, no relay). */
export type HostAnswer =
  | { status: "ok"; result: ExecResult }
  | { status: "refused"; reason: string }
  | { status: "failed"; error: string }
  | { status: "outcome_unknown"; reason: string }
  | { status: "error"; error: string };

export interface HostRun {
  host: string;
  answer: HostAnswer;
}

/** `refused` and `failed` runs never started or never finished on the host; `ok` exited 0. */
export type GroupKind = "ok" | "nonzero" | "refused" | "failed";

/** One stream of output as the view shows it: text, or how much binary output there was. */
export interface StreamText {
  text: string;
  /** Bytes of binary output (sent base64), or null for text. */
  binaryBytes: number | null;
}

/** Hosts that answered the same. */
export interface ResultGroup {
  /** Sorted host names. */
  hosts: string[];
  kind: GroupKind;
  /** `exit 0`, `exit 2`, `killed by signal 9`, `timed out`, `refused`, `failed`, … */
  status: string;
  /** The node's (or the page's) words for a refusal or failure; null for a program that ran. */
  problem: string | null;
  stdout: StreamText;
  stderr: StreamText;
  /** Whether the output was cut at `max_output_bytes`. */
  truncated: boolean;
  /** The hosts of the group that ran the command confined, by how they confined it. */
  confined: Array<{ how: string; hosts: string[] }>;
}

export interface RunCounts {
  ok: number;
  failed: number;
  refused: number;
}

/** Bytes a base64 text decodes to, without decoding it. */
export function base64Bytes(text: string): number {
  const clean = text.replace(/\s/g, "");
  const padding = clean.endsWith("==") ? 2 : clean.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((clean.length * 3) / 4) - padding);
}

function stream(text: string, encoding: "utf8" | "base64" | undefined): StreamText {
  return encoding === "base64" ? { text: "", binaryBytes: base64Bytes(text) } : { text, binaryBytes: null };
}

function exitStatus(result: ExecResult): string {
  if (result.timed_out) {
    return `timed out${result.signal === null ? "" : ` (killed by signal ${result.signal})`}`;
  }
  if (result.cancelled) {
    return "cancelled";
  }
  if (result.exit_code !== null) {
    return `exit ${result.exit_code}`;
  }
  if (result.signal !== null) {
    return `killed by signal ${result.signal}`;
  }
  return "no exit status";
}

/** The group one answer belongs to (without its hosts), and the key equal answers share. */
function describe(answer: HostAnswer): { key: string; group: Omit<ResultGroup, "hosts" | "confined"> } {
  const none: StreamText = { text: "", binaryBytes: null };
  switch (answer.status) {
    case "ok": {
      const result = answer.result;
      const status = exitStatus(result);
      const stdout = stream(result.stdout, result.stdout_encoding);
      const stderr = stream(result.stderr, result.stderr_encoding);
      // The sandbox is not part of the key: a plan-mode host that printed the same as an edit-mode
      // one answered the same, and the group names which of its hosts were confined.
      const key = JSON.stringify([
        "ran",
        status,
        result.stdout,
        result.stdout_encoding ?? "utf8",
        result.stderr,
        result.stderr_encoding ?? "utf8",
        result.truncated,
      ]);
      const kind: GroupKind = result.exit_code === 0 && !result.timed_out && !result.cancelled ? "ok" : "nonzero";
      return { key, group: { kind, status, problem: null, stdout, stderr, truncated: result.truncated } };
    }
    case "refused":
      return {
        key: JSON.stringify(["refused", answer.reason]),
        group: { kind: "refused", status: "refused", problem: answer.reason, stdout: none, stderr: none, truncated: false },
      };
    case "failed":
      return {
        key: JSON.stringify(["failed", answer.error]),
        group: { kind: "failed", status: "failed", problem: answer.error, stdout: none, stderr: none, truncated: false },
      };
    case "outcome_unknown":
      return {
        key: JSON.stringify(["unknown", answer.reason]),
        group: { kind: "failed", status: "outcome unknown", problem: answer.reason, stdout: none, stderr: none, truncated: false },
      };
    case "error":
      return {
        key: JSON.stringify(["error", answer.error]),
        group: { kind: "failed", status: "not run", problem: answer.error, stdout: none, stderr: none, truncated: false },
      };
  }
}

/** Folds the runs into groups of hosts that answered the same: the largest group first, then by
 * the first host's name (so the order is stable from one run to the next). */
export function foldRuns(runs: readonly HostRun[]): ResultGroup[] {
  const groups = new Map<string, ResultGroup>();
  for (const run of runs) {
    const { key, group } = describe(run.answer);
    let folded = groups.get(key);
    if (folded === undefined) {
      folded = { ...group, hosts: [], confined: [] };
      groups.set(key, folded);
    }
    folded.hosts.push(run.host);
    const how = run.answer.status === "ok" ? run.answer.result.sandbox : undefined;
    if (how !== undefined) {
      const same = folded.confined.find((confined) => confined.how === how);
      if (same === undefined) {
        folded.confined.push({ how, hosts: [run.host] });
      } else {
        same.hosts.push(run.host);
      }
    }
  }
  const byName = (a: string, b: string) => a.localeCompare(b);
  for (const group of groups.values()) {
    group.hosts.sort(byName);
    for (const confined of group.confined) {
      confined.hosts.sort(byName);
    }
  }
  return [...groups.values()].sort(
    (a, b) => b.hosts.length - a.hosts.length || byName(a.hosts[0] ?? "", b.hosts[0] ?? ""),
  );
}

/** How many hosts exited 0, failed (ran and failed, or could not be run) and refused. */
export function countRuns(runs: readonly HostRun[]): RunCounts {
  const counts: RunCounts = { ok: 0, failed: 0, refused: 0 };
  for (const { answer } of runs) {
    if (answer.status === "refused") {
      counts.refused++;
    } else if (answer.status === "ok" && describe(answer).group.kind === "ok") {
      counts.ok++;
    } else {
      counts.failed++;
    }
  }
  return counts;
}

/** Why a command line does not split. */
export class CommandLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandLineError";
  }
}

/**
 * Splits a command line into argv as a POSIX shell splits simple quoting: whitespace separates
 * words; `'…'` keeps everything literally; `"…"` keeps everything but `\"`, `\\`, `` \` `` and `\$`,
 * which lose their backslash; a backslash outside quotes keeps the next character. Nothing is
 * expanded (no `$VAR`, `~`, globs or pipes: those need the "through /bin/sh" box).
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  const chars = Array.from(line);
  for (let index = 0; index < chars.length; index++) {
    const char = chars[index] as string;
    if (/\s/u.test(char)) {
      if (inWord) {
        words.push(word);
        word = "";
        inWord = false;
      }
      continue;
    }
    inWord = true;
    if (char === "'") {
      const end = chars.indexOf("'", index + 1);
      if (end < 0) {
        throw new CommandLineError(`the ' at character ${index + 1} is never closed`);
      }
      word += chars.slice(index + 1, end).join("");
      index = end;
    } else if (char === '"') {
      let closed = false;
      const start = index;
      for (index++; index < chars.length; index++) {
        const inner = chars[index] as string;
        if (inner === '"') {
          closed = true;
          break;
        }
        const next = chars[index + 1];
        if (inner === "\\" && next !== undefined && ['"', "\\", "`", "$"].includes(next)) {
          word += next;
          index++;
        } else {
          word += inner;
        }
      }
      if (!closed) {
        throw new CommandLineError(`the " at character ${start + 1} is never closed`);
      }
    } else if (char === "\\") {
      const next = chars[index + 1];
      if (next === undefined) {
        throw new CommandLineError(`the line ends with a lone \\ at character ${index + 1}`);
      }
      word += next;
      index++;
    } else {
      word += char;
    }
  }
  if (inWord) {
    words.push(word);
  }
  return words;
}
