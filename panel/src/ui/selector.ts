//! Target selectors in the page, the grammar of `spec::selector` (the one `fleetctl -t` and the
//! spec take), so a person picks hosts here as in the CLI:
//!
//! ```text
//! selector := item ("," item)*     union; an item that is only `!term` removes its hosts instead
//! item     := factor ("&" factor)*  all of the factors must hold
//! factor   := "!"? term
//! term     := "all" | "name:" GLOB | "tag:" TAG | TAG | "os:" FAMILY | "fact:" KEY "=" VALUE
//! ```
//! A selector with only exclusions starts from `all`. Name globs take `*`, `?`, `[…]` and `{a,b}`;
//! `os:` compares without case. Errors carry the same positions as the Rust parser's. Pure.

/** What a selector is matched against. */
export interface SelectorHost {
  name: string;
  tags: readonly string[];
  /** `os` is the OS family. */
  facts: Readonly<Record<string, string>>;
}

type Term =
  | { kind: "all" }
  | { kind: "name"; pattern: RegExp }
  | { kind: "tag"; tag: string }
  | { kind: "os"; family: string }
  | { kind: "fact"; key: string; value: string };

interface Factor {
  negated: boolean;
  term: Term;
}

/** A selector that does not parse: the message, the 0-based character position at fault, and
 * what was expected there (as `spec::selector::SelectorError`). */
export class SelectorError extends Error {
  constructor(
    readonly reason: string,
    readonly position: number,
    readonly expected: string,
  ) {
    super(`${reason} at character ${position + 1} (expected ${expected})`);
    this.name = "SelectorError";
  }
}

const EXPECTED_TERM = "a term: all, name:GLOB, tag:TAG, a bare tag, os:FAMILY or fact:KEY=VALUE";

function isWordChar(char: string): boolean {
  return /^[\p{L}\p{N}_.-]$/u.test(char);
}

function isSpace(char: string | undefined): boolean {
  return char !== undefined && /^\s$/u.test(char);
}

/** A name glob (`*`, `?`, `[…]`, `[!…]`, `{a,b}`) as a whole-name regular expression. */
function globToRegExp(glob: string, position: number): RegExp {
  let source = "^";
  const chars = Array.from(glob);
  let braces = 0;
  for (let index = 0; index < chars.length; index++) {
    const char = chars[index] as string;
    if (char === "*") {
      source += ".*";
    } else if (char === "?") {
      source += ".";
    } else if (char === "[") {
      const end = chars.indexOf("]", index + 2);
      if (end < 0) {
        throw new SelectorError("bad glob: unclosed character class", position, "a glob such as web-*");
      }
      let body = chars.slice(index + 1, end).join("");
      body = body.startsWith("!") ? `^${body.slice(1)}` : body;
      source += `[${body.replace(/[\\\]]/g, "\\$&")}]`;
      index = end;
    } else if (char === "{") {
      braces++;
      source += "(?:";
    } else if (char === "}" && braces > 0) {
      braces--;
      source += ")";
    } else if (char === "," && braces > 0) {
      source += "|";
    } else if (char === "\\" && index + 1 < chars.length) {
      index++;
      source += (chars[index] as string).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    } else {
      source += char.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    }
  }
  if (braces > 0) {
    throw new SelectorError("bad glob: unclosed alternates", position, "a glob such as web-*");
  }
  return new RegExp(`${source}$`, "u");
}

function parseTerm(word: string, start: number): Term {
  const fail = (offset: number, reason: string, expected: string): never => {
    throw new SelectorError(reason, start + offset, expected);
  };
  if (word.length === 0) {
    fail(0, "missing term", EXPECTED_TERM);
  }
  const checkWord = (text: string, offset: number, what: string): string => {
    if (text.length === 0) {
      fail(offset, `empty ${what}`, EXPECTED_TERM);
    }
    const chars = Array.from(text);
    const bad = chars.findIndex((char) => !isWordChar(char));
    if (bad >= 0) {
      fail(offset + bad, `\`${chars[bad]}\` is not allowed in a ${what}`, "letters, digits, `-`, `_` or `.`");
    }
    return text;
  };
  if (word === "all") {
    return { kind: "all" };
  }
  const colon = word.indexOf(":");
  if (colon < 0) {
    return { kind: "tag", tag: checkWord(word, 0, "tag") };
  }
  const prefix = word.slice(0, colon);
  const rest = word.slice(colon + 1);
  const offset = Array.from(prefix).length + 1;
  switch (prefix) {
    case "name":
      if (rest.length === 0) {
        fail(offset, "empty name glob", "a host name or glob");
      }
      return { kind: "name", pattern: globToRegExp(rest, start + offset) };
    case "tag":
      return { kind: "tag", tag: checkWord(rest, offset, "tag") };
    case "os":
      return { kind: "os", family: checkWord(rest, offset, "os family").toLowerCase() };
    case "fact": {
      const equals = rest.indexOf("=");
      if (equals < 0) {
        fail(offset + Array.from(rest).length, "fact term without `=`", "fact:KEY=VALUE");
      }
      const key = checkWord(rest.slice(0, equals), offset, "fact key");
      const value = rest.slice(equals + 1);
      if (value.length === 0) {
        fail(offset + Array.from(key).length + 1, "empty fact value", "fact:KEY=VALUE");
      }
      return { kind: "fact", key, value };
    }
    default:
      return fail(0, `unknown term kind \`${prefix}:\``, EXPECTED_TERM);
  }
}

function holds(term: Term, host: SelectorHost): boolean {
  switch (term.kind) {
    case "all":
      return true;
    case "name":
      return term.pattern.test(host.name);
    case "tag":
      return host.tags.includes(term.tag);
    case "os":
      return (host.facts.os ?? "").toLowerCase() === term.family;
    case "fact":
      return host.facts[term.key] === term.value;
  }
}

/** A parsed selector. */
export class Selector {
  private constructor(
    readonly source: string,
    /** Items that add hosts (each an all-of list of factors). */
    private readonly including: Factor[][],
    /** Items that are a lone `!term`: they remove hosts. */
    private readonly excluding: Factor[],
  ) {}

  /** Parses `text` as `spec::selector` does; the error names the character at fault. */
  static parse(text: string): Selector {
    const chars = Array.from(text);
    if (text.trim().length === 0) {
      throw new SelectorError("empty selector", 0, EXPECTED_TERM);
    }
    const items: Factor[][] = [];
    let item: Factor[] = [];
    let position = 0;
    const skipSpace = () => {
      while (position < chars.length && isSpace(chars[position])) {
        position++;
      }
    };
    for (;;) {
      skipSpace();
      let negated = false;
      if (chars[position] === "!") {
        negated = true;
        position++;
        skipSpace();
      }
      const start = position;
      // A term runs to the next separator or whitespace.
      while (position < chars.length && ![",", "&", "!"].includes(chars[position] as string) && !isSpace(chars[position])) {
        position++;
      }
      item.push({ negated, term: parseTerm(chars.slice(start, position).join(""), start) });
      skipSpace();
      const next = chars[position];
      if (next === undefined) {
        items.push(item);
        break;
      }
      if (next === ",") {
        items.push(item);
        item = [];
        position++;
      } else if (next === "&") {
        position++;
      } else {
        throw new SelectorError(`unexpected \`${next}\``, position, "`,` (union) or `&` (all of) between terms");
      }
    }
    const isExclusion = (factors: Factor[]) => factors.length === 1 && (factors[0] as Factor).negated;
    return new Selector(
      text,
      items.filter((factors) => !isExclusion(factors)),
      items.filter(isExclusion).map((factors) => factors[0] as Factor),
    );
  }

  matches(host: SelectorHost): boolean {
    const matches = (factor: Factor) => holds(factor.term, host) !== factor.negated;
    const included = this.including.length === 0 || this.including.some((factors) => factors.every(matches));
    return included && this.excluding.every(matches);
  }
}
