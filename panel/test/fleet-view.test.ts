//! The page's pure parts: the URL fragment it reads the room from, and the fleet model behind
//! the view (hosts, online/offline, send-only peers, desired state, the summary lines).

import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyAnnouncement } from "../src/message.ts";
import { Fleet, type InfoResult } from "../src/ui/fleet.ts";
import { formatFragment, parseFragment } from "../src/ui/fragment.ts";
import { observed } from "./observed.ts";

test("the fragment round-trips the room, token and a cluster's relays", () => {
  // What `remote-agents panel` prints (daemon/src/panel.rs percent-encodes every reserved byte).
  const parsed = parseFragment("#relay=ws%3A%2F%2F127.0.0.1%3A4000&room=my%20room&token=a%2Bb%2Fc%3D%26d");
  assert.deepEqual(parsed, {
    target: { relays: ["ws://127.0.0.1:4000"], room: "my room", secret: { kind: "token", token: "a+b/c=&d" } },
  });
  const target = { relays: ["wss://a.example", "wss://b.example"], room: "r", secret: { kind: "key" as const, key: "5a".repeat(32) } };
  assert.deepEqual(parseFragment(formatFragment(target)), { target });
  const keyed = { ...target, relayKey: "relay key&=+" };
  assert.deepEqual(parseFragment(formatFragment(keyed)), { target: keyed });
});

test("a fragment missing what the page needs says what is missing", () => {
  assert.deepEqual(parseFragment(""), { error: "the page's address names no relay, no room, no token (or key)" });
  assert.deepEqual(parseFragment("#relay=ws://r&room=x"), { error: "the page's address names no token (or key)" });
  // Served by the relay itself: its origin stands in for a missing relay=, never for a given one.
  const own = parseFragment("#room=x&token=t", "wss://relay.example");
  assert.ok("target" in own);
  assert.deepEqual(own.target.relays, ["wss://relay.example"]);
  const given = parseFragment("#relay=ws://r&room=x&token=t", "wss://relay.example");
  assert.ok("target" in given);
  assert.deepEqual(given.target.relays, ["ws://r"]);
  assert.deepEqual(parseFragment("#relay=http://r&room=x&token=t"), {
    error: 'relay "http://r" is not a ws:// or wss:// URL',
  });
});

function info(name: string, mode: string): InfoResult {
  return {
    agent_id: name,
    name,
    tags: [name.slice(0, 1)],
    version: "0.1.0",
    facts: { os_family: "linux", distro: "debian 12", arch: "x86_64", hostname: name },
    configured_mode: mode,
    effective_mode: mode,
    drift: [],
    accepts_commands: true,
  };
}

test("the summary counts hosts, online and offline, modes, errors and send-only peers", () => {
  const fleet = new Fleet();
  assert.equal(fleet.summary(), "0 hosts");
  for (const [peer, mode] of [
    ["a", "edit"],
    ["b", "edit"],
    ["c", "plan"],
  ] as const) {
    fleet.joined(peer);
    fleet.announced(peer, { ...emptyAnnouncement(), name: peer, mode, acceptsCommands: true });
    fleet.informed(peer, info(peer, mode));
  }
  assert.equal(fleet.summary(), "3 hosts · 3 online · 2 edit · 1 plan");
  fleet.joined("panel");
  fleet.announced("panel", emptyAnnouncement());
  fleet.left("b");
  assert.equal(fleet.summary(), "3 hosts · 2 online · 1 offline · 1 edit · 1 plan · 1 send-only peer");
  assert.deepEqual(
    fleet.hosts().map((host) => [host.name, host.online]),
    [
      ["a", true],
      ["c", true],
      ["b", false],
    ],
  );
  fleet.joined("d");
  fleet.failed("d", "get_info refused: mode disabled allows no reads");
  assert.equal(fleet.summary(), "4 hosts · 3 online · 1 offline · 1 edit · 1 plan · 1 unreadable · 1 send-only peer");
  assert.equal(fleet.hosts().find((host) => host.peerId === "d")?.error, "get_info refused: mode disabled allows no reads");
});

test("answers for an earlier incarnation of a host are dropped", () => {
  const fleet = new Fleet();
  const first = fleet.joined("a");
  fleet.left("a");
  const second = fleet.joined("a");
  assert.equal(fleet.current("a", first), false);
  assert.equal(fleet.current("a", second), true);
  assert.equal(fleet.hosts()[0]?.phase, "connecting");
});

test("the summary counts Synced, OutOfSync and Degraded hosts, never hosts without desired state", () => {
  const fleet = new Fleet();
  for (const peer of ["a", "b", "c", "d"]) {
    fleet.joined(peer);
    fleet.announced(peer, { ...emptyAnnouncement(), name: peer, mode: "edit", acceptsCommands: true });
    fleet.informed(peer, info(peer, "edit"));
  }
  fleet.observed("a", observed("a"));
  assert.equal(fleet.summary(), "4 hosts · 4 online · 4 edit");
  fleet.observed("b", observed("b", { observed_generation: 4, revision: "abc", sync: "Synced" }));
  fleet.observed("c", observed("c", { observed_generation: 4, revision: "abc", sync: "Synced" }));
  fleet.observed("d", observed("d", { observed_generation: 3, revision: "old", sync: "OutOfSync", health: "Degraded" }));
  assert.equal(fleet.summary(), "4 hosts · 4 online · 4 edit · 2 Synced · 1 OutOfSync · 1 Degraded");
  // An offline host's last report is kept on its card but not counted.
  fleet.left("d");
  assert.equal(fleet.summary(), "4 hosts · 3 online · 1 offline · 3 edit · 2 Synced");
  assert.equal(fleet.hosts().find((host) => host.name === "d")?.desired?.sync, "OutOfSync");
  // A failed read keeps the last report and says why.
  fleet.observeFailed("b", "desired_status failed: busy");
  const b = fleet.hosts().find((host) => host.name === "b");
  assert.equal(b?.desired?.sync, "Synced");
  assert.equal(b?.desiredError, "desired_status failed: busy");
});
