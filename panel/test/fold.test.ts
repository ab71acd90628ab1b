//! The Run view's pure parts: a command line split into argv as a shell splits simple quoting,
//! and per-host results folded into groups of hosts that answered the same.

import assert from "node:assert/strict";
import { test } from "node:test";
import { base64Bytes, countRuns, type ExecResult, foldRuns, type HostRun, splitCommandLine } from "../src/ui/fold.ts";

function ran(host: string, fields: Partial<ExecResult>): HostRun {
  const result: ExecResult = {
    exit_code: 0,
    signal: null,
    stdout: "",
    stderr: "",
    truncated: false,
    timed_out: false,
    cancelled: false,
    duration_ms: 3,
    ...fields,
  };
  return { host, answer: { status: "ok", result } };
}

const DISABLED = "the node is in disabled mode and rejects every request; its operator must change the mode in its configuration";

test("hosts that answered the same fold into one group, the largest first", () => {
  const runs: HostRun[] = [
    ran("charlie", { stdout: "hello\n", sandbox: "landlock (read-only)", duration_ms: 9 }),
    ran("golf", { stdout: "hello\n", sandbox: "landlock (read-only)" }),
    { host: "delta", answer: { status: "refused", reason: DISABLED } },
    ran("alpha", { stdout: "hello\n" }),
    ran("echo", { stdout: "hello\n", exit_code: 1 }),
    ran("bravo", { stdout: "hello\n", duration_ms: 40 }),
    { host: "foxtrot", answer: { status: "refused", reason: DISABLED } },
  ];
  const groups = foldRuns(runs);
  assert.deepEqual(
    groups.map((group) => [group.hosts, group.kind, group.status, group.stdout.text, group.problem]),
    [
      [["alpha", "bravo", "charlie", "golf"], "ok", "exit 0", "hello\n", null],
      [["delta", "foxtrot"], "refused", "refused", "", DISABLED],
      [["echo"], "nonzero", "exit 1", "hello\n", null],
    ],
  );
  // The sandbox does not split a group; the group says which of its hosts were confined.
  assert.deepEqual(groups[0]?.confined, [{ how: "landlock (read-only)", hosts: ["charlie", "golf"] }]);
  assert.deepEqual(countRuns(runs), { ok: 4, failed: 1, refused: 2 });
});

test("different output, signals, timeouts and page errors are groups of their own", () => {
  const groups = foldRuns([
    ran("a", { stdout: "/home/a\n" }),
    ran("b", { stdout: "/home/b\n" }),
    ran("c", { exit_code: null, signal: 9 }),
    ran("d", { exit_code: null, signal: 9, timed_out: true }),
    ran("e", { stderr: "oops\n", exit_code: 0 }),
    { host: "f", answer: { status: "error", error: "not connected to the relay" } },
    { host: "g", answer: { status: "failed", error: "cannot spawn: no such file" } },
  ]);
  assert.deepEqual(
    groups.map((group) => [group.hosts.join(","), group.kind, group.status]),
    [
      ["a", "ok", "exit 0"],
      ["b", "ok", "exit 0"],
      ["c", "nonzero", "killed by signal 9"],
      ["d", "nonzero", "timed out (killed by signal 9)"],
      ["e", "ok", "exit 0"],
      ["f", "failed", "not run"],
      ["g", "failed", "failed"],
    ],
  );
});

test("binary output is counted, not shown, and the same bytes fold together", () => {
  // "AAEC/w==" is the four bytes 00 01 02 ff.
  const groups = foldRuns([
    ran("a", { stdout: "AAEC/w==", stdout_encoding: "base64" }),
    ran("b", { stdout: "AAEC/w==", stdout_encoding: "base64" }),
    ran("c", { stdout: "AAEC/w==" }),
  ]);
  assert.equal(groups.length, 2);
  assert.deepEqual(groups[0]?.hosts, ["a", "b"]);
  assert.deepEqual(groups[0]?.stdout, { text: "", binaryBytes: 4 });
  assert.deepEqual(groups[1]?.stdout, { text: "AAEC/w==", binaryBytes: null });
  assert.equal(base64Bytes(""), 0);
  assert.equal(base64Bytes("aGk="), 2);
  assert.equal(base64Bytes("aGVsbG8h"), 6);
});

test("a command line splits as a shell splits simple quoting", () => {
  assert.deepEqual(splitCommandLine("echo hello"), ["echo", "hello"]);
  assert.deepEqual(splitCommandLine("  ls   -la  /tmp "), ["ls", "-la", "/tmp"]);
  assert.deepEqual(splitCommandLine(`grep -r 'a b' "c \\"d\\" \\$e \\n" f\\ g`), ["grep", "-r", "a b", 'c "d" $e \\n', "f g"]);
  assert.deepEqual(splitCommandLine(`echo '' ""`), ["echo", "", ""]);
  assert.deepEqual(splitCommandLine(`a'b'"c"d`), ["abcd"]);
  // Nothing is expanded: that is what "through /bin/sh" is for.
  assert.deepEqual(splitCommandLine("echo $HOME ~ *"), ["echo", "$HOME", "~", "*"]);
  assert.deepEqual(splitCommandLine(""), []);
  assert.throws(() => splitCommandLine("echo 'oops"), /the ' at character 6 is never closed/);
  assert.throws(() => splitCommandLine('echo "oops'), /the " at character 6 is never closed/);
  assert.throws(() => splitCommandLine("echo \\"), /lone \\ at character 6/);
});
