//! The page's pure parts: the URL fragment it reads the room from, and the fleet model behind
//! the view (hosts, online/offline, send-only peers, the summary line).

import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyAnnouncement } from "../src/message.ts";
import { Fleet, type InfoResult } from "../src/ui/fleet.ts";
import { formatFragment, parseFragment } from "../src/ui/fragment.ts";

test("the fragment round-trips the room, token and a cluster's relays", () => {
  // What `remote-agents panel` prints (daemon/src/panel.rs percent-encodes every reserved byte).
  const parsed = parseFragment("#relay=ws%3A%2F%2F127.0.0.1%3A4000&room=my%20room&token=a%2Bb%2Fc%3D%26d");
  assert.deepEqual(parsed, {
    target: { relays: ["ws://127.0.0.1:4000"], room: "my room", secret: { kind: "token", token: "a+b/c=&d" } },
  });
  const target = { relays: ["wss://a.example", "wss://b.example"], room: "r", secret: { kind: "key" as const, key: "5a".repeat(32) } };
  assert.deepEqual(parseFragment(formatFragment(target)), { target });
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
