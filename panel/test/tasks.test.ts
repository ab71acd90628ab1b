//! The Chats and Tasks views' pure parts: chats and tasks from many hosts as one list, a task's
//! events folded into the lines the page shows, and the wording of times and records.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type ChatSummary,
  cut,
  durationText,
  eventLines,
  firstLine,
  mergeChats,
  mergeTasks,
  providerName,
  type TaskEvent,
  taskFacts,
  taskOutcome,
  taskProviderOf,
  type TaskStatus,
  timeText,
} from "../src/ui/tasks.ts";

const alpha = { name: "alpha", peerId: "p-alpha" };
const bravo = { name: "bravo", peerId: "p-bravo" };

function chat(session_id: string, updated_at_ms: number | undefined, provider: ChatSummary["provider"] = "claude"): ChatSummary {
  return {
    provider,
    session_id,
    title: session_id,
    messages: 2,
    resumable: taskProviderOf(provider) !== null,
    path: `/home/u/${session_id}`,
    ...(updated_at_ms === undefined ? {} : { updated_at_ms }),
  };
}

function task(task_id: string, state: TaskStatus["state"], started_at_ms: number): TaskStatus {
  return {
    task_id,
    agent_id: "a",
    provider: "claude",
    state,
    mode: "edit (claude --permission-mode acceptEdits)",
    session_id: null,
    answer: null,
    error: null,
    turns: 0,
    usage: { input_tokens: 0, output_tokens: 0, cost_usd: null },
    duration_ms: 0,
    started_at_ms,
    finished_at_ms: null,
    prompt: "p",
    transcript_events: 0,
    transcript_bytes: 0,
  };
}

test("every host's chats are one list, newest first, each labelled with its host", () => {
  const merged = mergeChats([
    { host: alpha, chats: [chat("a-new", 300), chat("a-old", 100), chat("a-undated", undefined, "zed")] },
    { host: bravo, chats: [chat("b-mid", 200, "codex"), chat("b-same", 300, "opencode")] },
  ]);
  assert.deepEqual(
    merged.map(({ host, chat }) => `${host.name}:${chat.session_id}`),
    ["alpha:a-new", "bravo:b-same", "bravo:b-mid", "alpha:a-old", "alpha:a-undated"],
  );
  assert.deepEqual(mergeChats([]), []);
});

test("running tasks come first, then the newest", () => {
  const merged = mergeTasks([
    { host: alpha, tasks: [task("a2", "done", 50), task("a1", "running", 10)] },
    { host: bravo, tasks: [task("b1", "failed", 40), task("b2", "running", 30)] },
  ]);
  assert.deepEqual(
    merged.map(({ task }) => task.task_id),
    ["b2", "a1", "a2", "b1"],
  );
});

test("a Claude Code stream's events read as lines: turns numbered, tools in one line, usage left out", () => {
  const events: TaskEvent[] = [
    { type: "session", session_id: "5f0f" },
    { type: "turn" },
    { type: "usage", input_tokens: 1520, output_tokens: 38 },
    { type: "assistant_text", text: "I'll look at the failing test first." },
    { type: "tool_use", id: "t1", name: "Bash", input: { command: "cargo test -p calc", description: "Run the tests" } },
    { type: "tool_result", id: "t1", output: "test result: FAILED", is_error: false },
    { type: "turn" },
    { type: "tool_use", id: "t2", name: "Edit", input: { old: "a", new: "b" } },
    { type: "tool_result", id: "t2", output: "permission denied", is_error: true },
    { type: "result", text: "The test is wrong.", turns: 2, cost_usd: 0.02 },
    { type: "error", kind: "error_max_turns", message: "stopped" },
    { type: "error", kind: "error", message: "Invalid API key · Please run /login (error)" },
  ];
  assert.deepEqual(eventLines(events), [
    { kind: "session", text: "session 5f0f" },
    { kind: "turn", text: "turn 1" },
    { kind: "text", text: "I'll look at the failing test first." },
    { kind: "tool", text: "Bash cargo test -p calc" },
    { kind: "tool-result", text: "test result: FAILED" },
    { kind: "turn", text: "turn 2" },
    { kind: "tool", text: 'Edit {"old":"a","new":"b"}' },
    { kind: "tool-error", text: "permission denied" },
    { kind: "result", text: "The test is wrong." },
    { kind: "error", text: "stopped (error_max_turns)" },
    { kind: "error", text: "Invalid API key · Please run /login (error)" },
  ]);
});

test("long texts are cut with a marker; prompts shortened to their first line", () => {
  assert.equal(cut("abcdef", 10), "abcdef");
  assert.equal(cut("abcdef", 3), "abc… (3 more characters)");
  assert.equal(firstLine("  fix the bug\nand more", 80), "fix the bug");
  assert.equal(firstLine("x".repeat(10), 4), "xxxx…");
  const [line] = eventLines([{ type: "tool_result", id: "t", output: "y".repeat(5000), is_error: false }]);
  assert.ok(line !== undefined && line.text.endsWith("… (3000 more characters)"), line?.text);
});

test("times, durations, providers and a record's facts as people read them", () => {
  assert.equal(durationText(850), "850 ms");
  assert.equal(durationText(14_210), "14.2 s");
  assert.equal(durationText(184_000), "3 min 04 s");
  assert.equal(durationText(7_500_000), "2 h 05 min");
  assert.equal(timeText(Date.UTC(2025, 2, 1, 10, 0, 9)), "2025-03-01 10:00 UTC");
  assert.equal(timeText(undefined), "unknown time");
  assert.equal(providerName("claude"), "Claude Code");
  assert.equal(providerName("kilo"), "Kilo Code");
  assert.equal(providerName("newtool"), "newtool");
  assert.equal(taskProviderOf("codex"), "codex");
  assert.equal(taskProviderOf("cline"), null);
  const done: TaskStatus = {
    ...task("t", "done", 0),
    turns: 3,
    duration_ms: 14_210,
    usage: { input_tokens: 6620, output_tokens: 205, cost_usd: 0.0213 },
    answer: "The test is wrong.",
  };
  assert.equal(taskFacts(done), "done · 3 turns · 14.2 s · $0.0213 · 6620 in / 205 out tokens");
  assert.deepEqual(taskOutcome(done), { kind: "answer", text: "The test is wrong." });
  assert.deepEqual(taskOutcome({ ...done, state: "cancelled", error: "cancelled" }), { kind: "error", text: "cancelled" });
  assert.deepEqual(taskOutcome(task("r", "running", 0)), { kind: "running", text: "" });
});
