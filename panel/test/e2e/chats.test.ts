//! The Chats and Tasks views end to end, in headless Chromium: a real relay, two real nodes —
//! `alpha` in `edit` mode and `charlie` in `plan` mode — each with Claude Code transcripts planted
//! in its HOME before it starts (`~/.claude/projects/<cwd with / as ->/<session id>.jsonl`, the
//! format node/src/chat/claude.rs reads), and a stand-in `claude` first on their PATH that behaves
//! like Claude Code's `-p --output-format stream-json`: it writes down its argv and the prompt,
//! prints the `system` init line with the resumed session id and a first assistant message with a
//! tool call, waits for the test's go-ahead (so the page is seen streaming while the task runs),
//! then the tool's result, the closing message and the `result` line.
//!
//! The page must list every host's chats in one list, newest first, labelled with host and
//! provider; open one and show its messages; continue it on its host with `--resume <its
//! session>` in the host's mode (`acceptEdits` on alpha, `plan` on charlie, as recorded by the
//! stand-in), streaming the events and ending with the answer; and the Tasks view must list the
//! tasks, the finished one `done`, the running one cancelled by a click. Screenshots go to
//! docs/screenshots/panel-chats.png and panel-tasks.png; both views are checked at phone width.

import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Page } from "playwright-core";
import { DEADLINE_MS, explain, Harness, openView, screenshots, waitReady, watchProblems } from "./harness.ts";

const TOKEN = "panel chats e2e token";
const room = "demo-chats";
const harness = new Harness(room, TOKEN);
let panelUrl = "";

/** The chats planted: alpha's newest (continued in edit mode), charlie's (continued in plan
 * mode), and an older one of alpha's whose title comes from Claude Code's `summary` line. */
const ALPHA_SESSION = "0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411";
const ALPHA_OLD_SESSION = "1c4d9b63-82d5-4b66-c8a7-4f3a0e1d5522";
const CHARLIE_SESSION = "7e2f0c41-93e6-4c77-a9b8-5a4b1f2e6633";
const ANSWER = "Vacuum the journal: journalctl --vacuum-size=1G frees 38 GB.";

function transcript(session: string, cwd: string, asked: Date, question: string, reply: string, summary?: string): string {
  const answered = new Date(asked.getTime() + 9_000);
  const lines: object[] = [];
  if (summary !== undefined) {
    lines.push({ type: "summary", summary, leafUuid: "l1" });
  }
  lines.push(
    { type: "user", sessionId: session, cwd, timestamp: asked.toISOString(), message: { role: "user", content: question } },
    {
      type: "assistant",
      sessionId: session,
      cwd,
      timestamp: answered.toISOString(),
      message: { role: "assistant", content: [{ type: "text", text: reply }] },
    },
  );
  return lines.map((line) => `${JSON.stringify(line)}\n`).join("");
}

/** Plants a Claude Code chat in `home`, worked on in `home/proj` (which exists, so a task can
 * run there). */
function plantChat(home: string, session: string, asked: string, question: string, reply: string, summary?: string): void {
  const cwd = join(home, "proj");
  mkdirSync(cwd, { recursive: true });
  const folder = join(home, ".claude/projects", cwd.replaceAll("/", "-"));
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, `${session}.jsonl`), transcript(session, cwd, new Date(asked), question, reply, summary));
}

/** The stand-in `claude`: Claude Code's stream-json lines, the session being the one `--resume`
 * names; between the first turn and the rest it waits (at most 45 s) for `$HOME/go`. */
const FAKE_CLAUDE = `#!/bin/sh
printf '%s\\n' "$@" > "$HOME/claude-argv"
cat > "$HOME/claude-prompt"
session=new-session
previous=
for argument in "$@"; do
  if [ "$previous" = "--resume" ]; then session="$argument"; fi
  previous="$argument"
done
cat <<EOF
{"type":"system","subtype":"init","cwd":"$PWD","session_id":"$session","tools":["Bash","Read"],"model":"claude-sonnet-4-5"}
{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Reading the notes again."}],"usage":{"input_tokens":100,"output_tokens":10}},"session_id":"$session"}
{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"df -h /var"}}],"usage":{"input_tokens":100,"output_tokens":20}},"session_id":"$session"}
EOF
waited=0
while [ ! -e "$HOME/go" ] && [ "$waited" -lt 900 ]; do
  sleep 0.05
  waited=$((waited + 1))
done
cat <<EOF
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"/dev/sda1  40G  39G  1G  98% /var"}]},"session_id":"$session"}
{"type":"assistant","message":{"id":"msg_2","type":"message","role":"assistant","content":[{"type":"text","text":"The journal is still the culprit."}],"usage":{"input_tokens":200,"output_tokens":30}},"session_id":"$session"}
{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"${ANSWER}","session_id":"$session","total_cost_usd":0.0042,"usage":{"input_tokens":300,"output_tokens":40}}
EOF
`;

const NODES = [
  { name: "alpha", mode: "edit", tags: "dev" },
  { name: "charlie", mode: "plan", tags: "ci" },
] as const;

before(async () => {
  await harness.startRelay();
  const bin = join(harness.dir, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "claude"), FAKE_CLAUDE);
  chmodSync(join(bin, "claude"), 0o755);
  const alphaHome = harness.home("alpha");
  plantChat(alphaHome, ALPHA_SESSION, "2025-03-02T10:00:00Z", "Why is the disk full?", "/var/log holds 40 GB of journal.");
  plantChat(alphaHome, ALPHA_OLD_SESSION, "2025-03-01T10:00:00Z", "Rotate the nginx logs", "Done: logrotate runs daily.", "Nginx log rotation");
  const charlieHome = harness.home("charlie");
  plantChat(charlieHome, CHARLIE_SESSION, "2025-03-01T12:00:00Z", "Why is CI slow?", "The cache is cold on every run.");
  for (const node of NODES) {
    const home = harness.home(node.name);
    harness.startNode({
      ...node,
      env: {
        PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        // The chats the node reads are the planted ones only, whatever the caller's settings.
        CLAUDE_CONFIG_DIR: join(home, ".claude"),
        CODEX_HOME: join(home, ".codex"),
        XDG_DATA_HOME: join(home, ".local/share"),
        XDG_CONFIG_HOME: join(home, ".config"),
      },
    });
  }
  [panelUrl] = await Promise.all([harness.startPanel(), harness.launchBrowser()]);
});

after(() => harness.stop());

/** What the stand-in recorded on `host`: its argv, one argument a line. */
function recordedArgv(host: string): string {
  const path = join(harness.home(host), "claude-argv");
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

async function noWiderThanPhone(page: Page, what: string): Promise<void> {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = (await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
  assert.ok(overflow <= 0, `the ${what} is ${overflow} px wider than a phone`);
  await page.setViewportSize({ width: 1280, height: 720 });
}

test("chats of every host are listed, read, continued in each host's mode; tasks listed and cancelled", async () => {
  const { context, page, problems } = await harness.newPage();
  try {
    await page.goto(panelUrl);
    await waitReady(page, NODES.map((node) => node.name));

    // The list reads itself when the view opens: every host's chats, newest first.
    const chats = await openView(page, "chats");
    const rows = chats.locator("#chat-list .chat-row");
    await explain(page, rows.nth(2).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await rows.count(), 3);
    const listed = await rows.evaluateAll((items) =>
      items.map((item) => [item.getAttribute("data-host"), item.getAttribute("data-provider"), item.getAttribute("data-session")].join(" ")),
    );
    assert.deepEqual(listed, [
      `alpha claude ${ALPHA_SESSION}`,
      `charlie claude ${CHARLIE_SESSION}`,
      `alpha claude ${ALPHA_OLD_SESSION}`,
    ]);
    const first = rows.first();
    assert.equal(await first.locator(".chat-host").innerText(), "alpha");
    assert.equal(await first.locator(".chat-provider").innerText(), "Claude Code");
    assert.equal(await first.locator(".chat-open").innerText(), "Why is the disk full?");
    assert.match(await first.locator(".chat-row-meta").innerText(), /^2025-03-02 10:00 UTC · 2 messages · resumable · /);
    assert.equal(await rows.nth(2).locator(".chat-open").innerText(), "Nginx log rotation");
    assert.match(await chats.locator(".chats-status").innerText(), /^3 chats on 2 of 2 hosts/);

    // Open alpha's chat: its messages, and the box that continues it in alpha's mode.
    await first.locator(".chat-open").click();
    const detail = chats.locator(`.chat-detail[data-session="${ALPHA_SESSION}"]`);
    const messages = detail.locator(".message");
    await explain(page, messages.nth(1).waitFor({ timeout: DEADLINE_MS }));
    assert.deepEqual(await messages.evaluateAll((items) => items.map((item) => item.getAttribute("data-role"))), ["user", "assistant"]);
    assert.deepEqual(await messages.locator(".message-text").allInnerTexts(), ["Why is the disk full?", "/var/log holds 40 GB of journal."]);
    assert.equal(await detail.locator(".continue-mode").getAttribute("data-mode"), "edit");

    // Continue it: the task runs with --resume <the chat's session>, and its events stream in
    // while it runs (the stand-in waits for the go-ahead after its first turn).
    await detail.locator(".continue-prompt").fill("Is it still full?\nCheck /var again.");
    await detail.getByRole("button", { name: "Continue on alpha" }).click();
    const record = detail.locator(".task-record");
    await explain(page, record.locator(".event-tool", { hasText: "Bash df -h /var" }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await record.getAttribute("data-state"), "running");
    assert.ok(await record.getByRole("button", { name: "Cancel task on alpha" }).isVisible(), "a running task offers Cancel");
    // The init line's session is the resumed one, which the record already carries: no event.
    assert.deepEqual(await record.locator(".event").allTextContents(), [
      "turn 1",
      "Reading the notes again.",
      "Bash df -h /var",
    ]);
    // The stand-in writes its argv before its first line, so it is there once events show.
    const alphaArgv = recordedArgv("alpha");
    assert.ok(alphaArgv.includes(`--resume\n${ALPHA_SESSION}\n`), alphaArgv);
    assert.ok(alphaArgv.includes("--permission-mode\nacceptEdits\n"), alphaArgv);
    assert.equal(readFileSync(join(harness.home("alpha"), "claude-prompt"), "utf8"), "Is it still full?\nCheck /var again.");
    writeFileSync(join(harness.home("alpha"), "go"), "");
    await explain(page, record.and(page.locator('[data-state="done"]')).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await record.locator(".task-answer").innerText(), ANSWER);
    assert.deepEqual((await record.locator(".event").allTextContents()).slice(3), [
      "/dev/sda1  40G  39G  1G  98% /var",
      "turn 2",
      "The journal is still the culprit.",
    ]);
    assert.match(await record.locator(".task-facts").innerText(), /^done · 2 turns · .* · \$0\.0042 · 300 in \/ 40 out tokens$/);
    assert.match(await record.locator(".task-meta").innerText(), /mode edit \(claude --permission-mode acceptEdits\)/);
    assert.ok(await record.getByRole("button", { name: "Cancel task on alpha" }).isHidden(), "a finished task offers no Cancel");
    await noWiderThanPhone(page, "Chats view");
    await page.screenshot({ path: join(screenshots, "panel-chats.png"), fullPage: true });

    // charlie is in plan mode: its task runs with Claude Code's plan permission mode.
    await rows.nth(1).locator(".chat-open").click();
    const planDetail = chats.locator(`.chat-detail[data-session="${CHARLIE_SESSION}"]`);
    await explain(page, planDetail.locator(".message").nth(1).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await planDetail.locator(".continue-mode").getAttribute("data-mode"), "plan");
    assert.match(await planDetail.locator(".continue-mode").innerText(), /charlie is in plan mode: read-only/);
    // A folder outside the host's roots: the node refuses, and the box says so in its words.
    const planProblem = planDetail.locator(".continue .error");
    await planDetail.locator(".continue-prompt").fill("Why is CI still slow?");
    await planDetail.locator(".continue-cwd").fill("/nonexistent-root/ci");
    await planDetail.getByRole("button", { name: "Continue on charlie" }).click();
    await explain(page, planProblem.filter({ hasText: /^charlie: task_dispatch refused: / }).waitFor({ timeout: DEADLINE_MS }));
    assert.match(await planProblem.innerText(), /^charlie: task_dispatch refused: \/nonexistent-root\/ci is outside the roots this node allows/);
    assert.equal(await planDetail.locator(".continue-prompt").inputValue(), "Why is CI still slow?", "a refused prompt is kept");
    assert.equal(recordedArgv("charlie"), "", "a refused task starts nothing");
    await planDetail.locator(".continue-cwd").fill(join(harness.home("charlie"), "proj"));
    await planDetail.getByRole("button", { name: "Continue on charlie" }).click();
    const planRecord = planDetail.locator(".task-record");
    await explain(page, planRecord.locator(".event-tool").waitFor({ timeout: DEADLINE_MS }));
    assert.match(await planRecord.locator(".task-meta").innerText(), /mode plan \(claude --permission-mode plan\)/);
    const charlieArgv = recordedArgv("charlie");
    assert.ok(charlieArgv.includes("--permission-mode\nplan\n"), charlieArgv);
    assert.ok(charlieArgv.includes(`--resume\n${CHARLIE_SESSION}\n`), charlieArgv);

    // The Tasks view: charlie's task running (first), alpha's done.
    const tasks = await openView(page, "tasks");
    const taskRows = tasks.locator("#task-list .task-row");
    const tasksStatus = tasks.locator(".tasks-status");
    await explain(page, taskRows.nth(1).waitFor({ timeout: DEADLINE_MS }));
    const charlieRow = tasks.locator('.task-row[data-host="charlie"]');
    const alphaRow = tasks.locator('.task-row[data-host="alpha"]');
    const listedTasks = () =>
      taskRows.evaluateAll((items) => items.map((item) => `${item.getAttribute("data-host")} ${item.getAttribute("data-state")}`));
    assert.deepEqual(await listedTasks(), ["charlie running", "alpha done"], "running tasks come first");
    assert.equal(await alphaRow.locator(".task-prompt").innerText(), "Is it still full?");
    assert.equal(await alphaRow.locator(".task-provider").innerText(), "Claude Code");
    assert.match(await charlieRow.locator(".task-row-meta").innerText(), /plan \(claude --permission-mode plan\)$/);

    // The relay restarts on the same address while charlie's task runs: the views keep what
    // they show while the page rejoins, the list then refreshes by itself, and the chat's record
    // of the task goes on following it.
    const relayAddress = harness.relayUrl.replace(/^ws:\/\//, "");
    const relay = harness.children.find((child) => child.spawnargs[0]?.endsWith("remote-agents-relay"));
    assert.ok(relay);
    relay.kill("SIGKILL");
    await explain(page, page.locator("#status").filter({ hasText: /rejoining|cannot join/ }).waitFor({ timeout: DEADLINE_MS }));
    await explain(page, tasksStatus.filter({ hasText: /not connected to the relay|no reachable host/ }).waitFor({ timeout: DEADLINE_MS }));
    assert.deepEqual(await listedTasks(), ["charlie running", "alpha done"], "the tasks stay while the relay is away");
    await harness.startRelay(["--bind", relayAddress], "relay-restarted");
    await explain(page, page.locator("#status").filter({ hasText: /^connected as / }).waitFor({ timeout: DEADLINE_MS }));
    await explain(page, tasksStatus.filter({ hasText: /^2 tasks on 2 of 2 hosts · 1 running/ }).waitFor({ timeout: DEADLINE_MS }));

    // Cancel charlie's task by a click on the button naming its host.
    await charlieRow.getByRole("button", { name: "Cancel on charlie" }).click();
    await explain(page, tasks.locator('.task-row[data-host="charlie"][data-state="cancelled"]').waitFor({ timeout: DEADLINE_MS }));
    // The chat's own record of it (in the Chats view, hidden now) follows to the same end.
    await explain(page, planRecord.and(page.locator('[data-state="cancelled"]')).waitFor({ state: "attached", timeout: DEADLINE_MS }));
    assert.equal(await planRecord.locator(".task-error").textContent(), "cancelled");

    // Opening a finished task shows its record and events as the chat did.
    await alphaRow.getByRole("button", { name: "Open" }).click();
    const opened = tasks.locator(".task-detail .task-record");
    await explain(page, opened.locator(".event").nth(5).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await opened.locator(".task-answer").innerText(), ANSWER);
    assert.equal(await opened.locator(".event").count(), 6);
    assert.deepEqual(await listedTasks(), ["charlie cancelled", "alpha done"]);
    assert.match(await tasksStatus.innerText(), /^2 tasks on 2 of 2 hosts$/);
    await noWiderThanPhone(page, "Tasks view");
    await page.screenshot({ path: join(screenshots, "panel-tasks.png"), fullPage: true });

    // The Chats view kept its list and the open chat across the reconnect.
    await openView(page, "chats");
    assert.equal(await rows.count(), 3, "the chats stay across the reconnect");
    assert.equal(await planDetail.locator(".message").count(), 2, "the open chat stays");
    // The browser reports the relay's dropped WebSocket as a console error; nothing else may.
    assert.deepEqual(problems.filter((problem) => !problem.includes("WebSocket")), []);
  } finally {
    await context.close();
  }
});
