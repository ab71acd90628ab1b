//! The page's selectors against the cases of `spec::selector`'s own tests
//! (spec/src/selector.rs `grammar_matches_the_design`, `errors_carry_positions`), so a selector
//! picks the same hosts in the panel as in `fleetctl -t` and fails at the same character.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Selector, SelectorError, type SelectorHost } from "../src/ui/selector.ts";

function host(name: string, tags: string[], facts: Record<string, string> = {}): SelectorHost {
  return { name, tags, facts };
}

const web = (name: string) => host(name, ["web", "frontend"]);
const db = host("db-1", ["db"], { os: "linux", region: "eu" });
const mac = host("mac-1", ["desk"], { os: "macOS" });

test("the grammar matches the Rust parser's cases", () => {
  const cases: Array<[string, SelectorHost, boolean]> = [
    ["all", db, true],
    ["web", web("web-1"), true],
    ["tag:web", db, false],
    ["name:web-*", web("web-2"), true],
    ["name:web-[12]", web("web-3"), false],
    ["name:web-[12]", web("web-2"), true],
    ["name:web-?", web("web-2"), true],
    ["name:web-?", db, false],
    ["os:linux", db, true],
    ["os:macos", mac, true],
    ["fact:region=eu", db, true],
    ["fact:region=us", db, false],
    ["web,db", db, true],
    ["web & frontend", web("web-1"), true],
    ["web&db", web("web-1"), false],
    ["web,!web-3", web("web-3"), true],
    ["web,!name:web-3", web("web-3"), false],
    ["web,!name:web-3", web("web-2"), true],
    ["!db", db, false],
    ["!db", mac, true],
    ["web&!name:web-1", web("web-1"), false],
  ];
  for (const [text, target, expected] of cases) {
    assert.equal(Selector.parse(text).matches(target), expected, `${text} on ${target.name}`);
  }
});

test("errors carry the Rust parser's positions", () => {
  const cases: Array<[string, number]> = [
    ["", 0],
    ["web,", 4],
    ["web,,db", 4],
    ["tag:", 4],
    ["bogus:x", 0],
    ["fact:region", 11],
    ["fact:region=", 12],
    ["name:web-[", 5],
    ["tag:we$b", 6],
    ["web db", 4],
  ];
  for (const [text, position] of cases) {
    assert.throws(
      () => Selector.parse(text),
      (error: unknown) => error instanceof SelectorError && error.position === position,
      `${text} should fail at ${position}`,
    );
  }
  assert.throws(() => Selector.parse("web db"), /^SelectorError: unexpected `d` at character 5 \(expected `,` \(union\) or `&` \(all of\) between terms\)$/);
});
