//! The Chats and Tasks views' pure parts: the JSON of the `ops` crate's chat and task operations
//! (ops/src/chat.rs, ops/src/task.rs) as types, one list of chats or tasks from every host's
//! answer (newest first, each labelled with its host), a task's events folded into lines a person
//! reads, and the wording of times, durations, costs and providers. No DOM, no I/O: the views
//! render these and the unit tests feed them.

/** The AI tools whose chats `chat_list` reads (`ops::ChatProvider`). */
export const CHAT_PROVIDERS = ["claude", "opencode", "codex", "cline", "roo", "kilo", "zed"] as const;
export type ChatProvider = (typeof CHAT_PROVIDERS)[number];

/** The AI CLIs `task_dispatch` runs (`ops::TaskProvider`). */
export type TaskProvider = "claude" | "opencode" | "codex";

/** `ops::ChatSummary`. */
export interface ChatSummary {
  provider: ChatProvider;
  session_id: string;
  title: string;
  cwd?: string;
  updated_at_ms?: number;
  messages: number;
  resumable: boolean;
  path: string;
}

/** `ops::ChatListResult`. */
export interface ChatListResult {
  chats: ChatSummary[];
  total: number;
  next_offset?: number;
  skipped?: Array<{ provider: ChatProvider; path: string; reason: string }>;
  skipped_more?: number;
  hidden?: number;
}

/** `ops::ChatMessage`. */
export interface ChatMessage {
  role: string;
  text: string;
  timestamp_ms?: number;
  tool?: string;
}

/** `ops::ChatGetResult`. */
export interface ChatGetResult {
  chat: ChatSummary;
  messages: ChatMessage[];
  total_messages: number;
  next_offset?: number;
  truncated: boolean;
}

/** `ops::TaskEvent`, tagged by `type`. */
export type TaskEvent =
  | { type: "session"; session_id: string }
  | { type: "turn" }
  | { type: "assistant_text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: unknown }
  | { type: "tool_result"; id: string; output: string; is_error: boolean }
  | { type: "usage"; input_tokens?: number; output_tokens?: number; cost_usd?: number }
  | { type: "result"; text: string; turns?: number; cost_usd?: number }
  | { type: "error"; kind: string; message: string };

export type TaskState = "running" | "done" | "failed" | "cancelled" | "interrupted";

/** `ops::TaskStatus`: one task as its host records it. */
export interface TaskStatus {
  task_id: string;
  agent_id: string;
  provider: TaskProvider;
  state: TaskState;
  mode: string;
  session_id: string | null;
  answer: string | null;
  error: string | null;
  turns: number;
  usage: { input_tokens: number; output_tokens: number; cost_usd: number | null };
  duration_ms: number;
  started_at_ms: number;
  finished_at_ms: number | null;
  prompt: string;
  transcript_events: number;
  transcript_bytes: number;
  skipped_lines?: number;
  transcript?: TaskEvent[];
}

/** `ops::TaskListResult`. */
export interface TaskListResult {
  tasks: TaskStatus[];
}

/** The names the tools go by, for labels. */
const PROVIDER_NAMES: Record<string, string> = {
  claude: "Claude Code",
  opencode: "opencode",
  codex: "Codex",
  cline: "Cline",
  roo: "Roo Code",
  kilo: "Kilo Code",
  zed: "Zed",
};

/** `Claude Code` for `claude`; an unknown provider as the node named it. */
export function providerName(provider: string): string {
  return PROVIDER_NAMES[provider] ?? provider;
}

/** The task provider that continues a chat of `provider` (`ChatProvider::task_provider`). */
export function taskProviderOf(provider: string): TaskProvider | null {
  return provider === "claude" || provider === "opencode" || provider === "codex" ? provider : null;
}

/** A host as the lists label it: its name, and the peer id requests go to. */
export interface HostLabel {
  name: string;
  peerId: string;
}

/** A chat labelled with the host that keeps it. */
export interface HostChat {
  host: HostLabel;
  chat: ChatSummary;
}

/** A task labelled with the host that runs it. */
export interface HostTask {
  host: HostLabel;
  task: TaskStatus;
}

/** Every host's chats as one list, newest first (chats without a time last), then by host name
 * so the order is stable across refreshes. */
export function mergeChats(pages: ReadonlyArray<{ host: HostLabel; chats: readonly ChatSummary[] }>): HostChat[] {
  const all = pages.flatMap(({ host, chats }) => chats.map((chat) => ({ host, chat })));
  return all.sort(
    (a, b) =>
      (b.chat.updated_at_ms ?? -1) - (a.chat.updated_at_ms ?? -1) ||
      a.host.name.localeCompare(b.host.name) ||
      a.chat.session_id.localeCompare(b.chat.session_id),
  );
}

/** Every host's tasks as one list: running ones first, then newest first. */
export function mergeTasks(lists: ReadonlyArray<{ host: HostLabel; tasks: readonly TaskStatus[] }>): HostTask[] {
  const all = lists.flatMap(({ host, tasks }) => tasks.map((task) => ({ host, task })));
  return all.sort(
    (a, b) =>
      Number(b.task.state === "running") - Number(a.task.state === "running") ||
      b.task.started_at_ms - a.task.started_at_ms ||
      a.host.name.localeCompare(b.host.name),
  );
}

/** What one line of a task's event log shows. `kind` styles it (and tests find it by it). */
export interface EventLine {
  kind: "session" | "turn" | "text" | "tool" | "tool-result" | "tool-error" | "result" | "error";
  text: string;
}

/** Characters of a tool's input or output a line keeps: the log is a view, the record has all. */
export const MAX_EVENT_TEXT = 2000;

/** A task's events as lines a person reads: usage events are left out (the record adds them
 * up), turns are numbered, tool calls show their input in one line, long texts are cut. */
export function eventLines(events: readonly TaskEvent[]): EventLine[] {
  const lines: EventLine[] = [];
  let turn = 0;
  for (const event of events) {
    switch (event.type) {
      case "session":
        lines.push({ kind: "session", text: `session ${event.session_id}` });
        break;
      case "turn":
        turn++;
        lines.push({ kind: "turn", text: `turn ${turn}` });
        break;
      case "assistant_text":
        lines.push({ kind: "text", text: cut(event.text, MAX_EVENT_TEXT) });
        break;
      case "tool_use":
        lines.push({ kind: "tool", text: `${event.name || "tool"} ${cut(toolInput(event.input), MAX_EVENT_TEXT)}`.trim() });
        break;
      case "tool_result":
        lines.push({ kind: event.is_error ? "tool-error" : "tool-result", text: cut(event.output, MAX_EVENT_TEXT) });
        break;
      case "usage":
        break;
      case "result":
        lines.push({ kind: "result", text: cut(event.text, MAX_EVENT_TEXT) });
        break;
      case "error":
        lines.push({ kind: "error", text: event.message.includes(event.kind) ? event.message : `${event.message} (${event.kind})` });
        break;
    }
  }
  return lines;
}

/** A tool's input in one line: a command or a path as itself, anything else as compact JSON. */
function toolInput(input: unknown): string {
  if (typeof input === "string") {
    return input;
  }
  if (input !== null && typeof input === "object") {
    const fields = input as Record<string, unknown>;
    for (const key of ["command", "file_path", "path", "pattern", "url"]) {
      const value = fields[key];
      if (typeof value === "string") {
        return value;
      }
    }
  }
  return input === undefined || input === null ? "" : JSON.stringify(input);
}

/** `text` cut to `max` characters with a marker saying how much was left out. */
export function cut(text: string, max: number): string {
  if (text.length <= max) {
    return text;
  }
  return `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

/** The first line of `text`, cut to `max` characters. */
export function firstLine(text: string, max: number): string {
  const line = (text.split("\n")[0] ?? "").trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** `850 ms`, `14.2 s`, `3 min 04 s`, `2 h 05 min`. */
export function durationText(ms: number): string {
  if (ms < 1000) {
    return `${Math.round(ms)} ms`;
  }
  const seconds = ms / 1000;
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const whole = Math.floor(seconds);
  if (whole < 3600) {
    return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  }
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
}

/** `2025-03-01 10:00 UTC`: one clock for every host (each may keep its own time zone). */
export function timeText(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) {
    return "unknown time";
  }
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** The record's numbers in one line: `done · 3 turns · 14.2 s · $0.0213 · 6620 in / 205 out`. */
export function taskFacts(task: TaskStatus): string {
  const parts: string[] = [task.state, `${task.turns} turn${task.turns === 1 ? "" : "s"}`, durationText(task.duration_ms)];
  if (task.usage.cost_usd !== null && task.usage.cost_usd !== undefined) {
    parts.push(`$${task.usage.cost_usd.toFixed(4)}`);
  }
  if (task.usage.input_tokens > 0 || task.usage.output_tokens > 0) {
    parts.push(`${task.usage.input_tokens} in / ${task.usage.output_tokens} out tokens`);
  }
  if ((task.skipped_lines ?? 0) > 0) {
    parts.push(`${task.skipped_lines} unreadable lines skipped`);
  }
  return parts.join(" · ");
}

/** What a host's mode lets a task do, in words (the node maps it onto the provider's own
 * permission flags; the record's `mode` says how). */
export function modeMeaning(mode: string): string {
  switch (mode) {
    case "plan":
      return "plan mode: read-only, the task may read and plan but not change files or run commands that change the host";
    case "edit":
      return "edit mode: the task may edit files, within the host's deny lists";
    case "bypass":
      return "bypass mode: the task runs without the host's permission checks";
    case "disabled":
      return "disabled mode: the host refuses every request, tasks included";
    case "":
      return "mode not yet read";
    default:
      return `${mode} mode`;
  }
}

/** How a task ended, for its closing line: the answer, or the error in the node's words. */
export function taskOutcome(task: TaskStatus): { kind: "running" | "answer" | "error"; text: string } {
  if (task.state === "running") {
    return { kind: "running", text: "" };
  }
  if (task.state === "done") {
    return { kind: "answer", text: task.answer ?? "" };
  }
  return { kind: "error", text: task.error ?? task.state };
}
