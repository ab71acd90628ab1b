//! What nodes report about their desired state, as the page reads it: `desired_status`
//! (`ops::ObservedStatus`) in a few words and as a summary line, `desired_history` entries, a
//! node's plan of spec files (`desired_plan`) and its decision on an offered bundle
//! (`desired_offer`), and the generation and revision an apply from the page signs. Pure: the
//! fleet cards, the Desired state view and the tests use it (bundles themselves: ../bundle.ts).

/** What `desired_status` returns (`ops::ObservedStatus`), the fields the page shows. */
export interface ObservedStatus {
  host: string;
  agent_id: string;
  /** The generation the host converged to (0: none). */
  observed_generation: number;
  revision: string | null;
  spec_hash: string | null;
  /** `Unknown`: no desired state yet. */
  sync: "Synced" | "OutOfSync" | "Unknown";
  health: "Healthy" | "Degraded";
  mode: string;
  desired_mode: string;
  tags: string[];
  schedules: string[];
  jobs: string[];
  conditions: Array<{ type: string; status: boolean; reason: string; message: string }>;
  drift: Array<{ kind: string; message: string; expires_at_ms: number | null }>;
  last_changes: number;
  reconciled_at_ms: number;
}

/** `ops::bundle::HistoryEntry`: one generation a node accepted. */
export interface HistoryEntry {
  generation: number;
  revision: string;
  hash: string;
  spec_hash: string;
  issuer: string;
  issued_at_ms: number;
}

/** `ops::DesiredPlanResult`: spec files checked by a node's spec parser and planned against the
 * generation it applied (nothing applied). */
export interface DesiredPlanResult {
  /** The Fleet document's `metadata.name` (a bundle's `fleet`). */
  fleet: string;
  /** The generation the node applied; 0 for none. */
  generation: number;
  revision: string | null;
  spec_hash: string;
  /** Whether the files are the applied generation's, byte for byte. */
  unchanged: boolean;
  /** Terraform-style text: `+ ~ -` items, the effects on declared hosts, the `Plan:` line. */
  text: string;
  add: number;
  change: number;
  remove: number;
  unknown: number;
  /** `file:line:col: message` each. */
  warnings: string[];
}

/** `ops::DesiredOfferResult`: what a node decided about an offered bundle, and its status after. */
export interface DesiredOfferResult {
  /** `new`, `current`, `outside-wave` or `refused`. */
  decision: string;
  reason?: string;
  status: ObservedStatus;
}

/** The generation an apply publishes: one past the newest that any host reported or the plan
 * was made against (nodes refuse a generation older than the one they hold). */
export function nextGeneration(statuses: readonly ObservedStatus[], planned: number): number {
  return Math.max(planned, ...statuses.map((status) => status.observed_generation)) + 1;
}

/** The revision of spec files that come from no git commit: `sha256:` and 16 hex digits of their
 * hash, as a node's watched folder names its generations. */
export function contentRevision(specHash: string): string {
  return `sha256:${specHash.slice(0, 16)}`;
}

/** A revision as people quote it: a git commit's first 12 hex digits, `sha256:` and the first
 * 12 of a content hash. */
export function shortRevision(revision: string): string {
  const hash = /^(sha256:)?([0-9a-f]{13,})$/.exec(revision);
  return hash === null ? revision : `${hash[1] ?? ""}${(hash[2] as string).slice(0, 12)}`;
}

/** A host's desired state in a few words: `generation 4 (revision abc123) · Synced · Healthy`,
 * or `no desired state` for a node that never took a spec (its conditions say more). */
export function desiredText(status: ObservedStatus): string {
  if (status.sync === "Unknown" && status.observed_generation === 0) {
    return "no desired state";
  }
  const revision = status.revision === null ? "" : ` (revision ${shortRevision(status.revision)})`;
  return `generation ${status.observed_generation}${revision} · ${status.sync} · ${status.health}`;
}

/**
 * The desired-state view's line: `3 hosts · generation 4 on 2 · generation 3 on 1 · 2 Synced ·
 * 1 OutOfSync · 1 Degraded`, hosts without desired state as `2 without desired state`, and the
 * hosts whose status could not be read as `1 unreadable`. Generations newest first.
 */
export function desiredSummary(statuses: readonly ObservedStatus[], unreadable = 0): string {
  const parts = [plural(statuses.length + unreadable, "host")];
  const generations = new Map<number, number>();
  let without = 0;
  for (const status of statuses) {
    if (status.sync === "Unknown" && status.observed_generation === 0) {
      without++;
    } else {
      generations.set(status.observed_generation, (generations.get(status.observed_generation) ?? 0) + 1);
    }
  }
  for (const generation of [...generations.keys()].sort((a, b) => b - a)) {
    parts.push(`generation ${generation} on ${generations.get(generation)}`);
  }
  const count = (label: string, matches: (status: ObservedStatus) => boolean) => {
    const found = statuses.filter(matches).length;
    if (found > 0) {
      parts.push(`${found} ${label}`);
    }
  };
  count("Synced", (status) => status.sync === "Synced");
  count("OutOfSync", (status) => status.sync === "OutOfSync");
  count("Degraded", (status) => status.health === "Degraded");
  if (without > 0) {
    parts.push(`${without} without desired state`);
  }
  if (unreadable > 0) {
    parts.push(`${unreadable} unreadable`);
  }
  return parts.join(" · ");
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
