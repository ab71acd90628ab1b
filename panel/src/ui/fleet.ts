//! The fleet view's model: every peer the room reported, what its handshake announced, what its
//! `get_info` answered (or the node's words when it refused), what its `desired_status` reports
//! (generation, Synced/OutOfSync, health), online or not, and the summary lines. Pure: the page
//! feeds it events and renders `hosts()` and `summary()`; the tests feed it too.

import type { Announcement } from "../message.ts";
import type { ObservedStatus } from "./desired.ts";

/** The modes in the order the summary counts them (`policy::Mode`). */
export const MODES = ["edit", "plan", "bypass", "disabled"] as const;

/** What `get_info` returns (`ops::InfoResult`), the fields the fleet view shows. */
export interface InfoResult {
  agent_id: string;
  name: string;
  tags: string[];
  version: string;
  facts: { os_family: string; distro: string; arch: string; hostname: string };
  configured_mode: string;
  effective_mode: string;
  drift: string[];
  accepts_commands: boolean;
}

export type HostPhase = "connecting" | "ready" | "error";

export interface Host {
  peerId: string;
  online: boolean;
  phase: HostPhase;
  name: string;
  tags: string[];
  /** OS family and distribution, e.g. `linux · debian 12`. */
  os: string;
  arch: string;
  mode: string;
  configuredMode: string;
  drift: string[];
  version: string;
  /** The facts selectors match (`os` is the OS family, as in `spec::selector`). */
  facts: Record<string, string>;
  /** Where reading this host failed, in the node's (or the session's) words. */
  error: string | null;
  /** What the host last reported about its desired state (kept while it is re-read). */
  desired: ObservedStatus | null;
  /** Where reading its desired state failed, in the node's words. */
  desiredError: string | null;
}

function blankHost(peerId: string): Host {
  return {
    peerId,
    online: true,
    phase: "connecting",
    name: "",
    tags: [],
    os: "",
    arch: "",
    mode: "",
    configuredMode: "",
    drift: [],
    version: "",
    facts: {},
    error: null,
    desired: null,
    desiredError: null,
  };
}

function osText(family: string | undefined, distro: string | undefined): string {
  return [family, distro].filter((part) => part !== undefined && part.length > 0).join(" · ");
}

export class Fleet {
  private readonly byPeer = new Map<string, Host>();
  /** Send-only peers (other panels, fleetctl): counted, not listed as hosts. */
  private readonly sendOnly = new Set<string>();
  /** Bumped on every join, so that answers to an earlier incarnation's reads are dropped. */
  private readonly generation = new Map<string, number>();

  /** A peer joined (or rejoined after a restart): read it afresh. Returns its generation. */
  joined(peerId: string): number {
    const generation = (this.generation.get(peerId) ?? 0) + 1;
    this.generation.set(peerId, generation);
    this.sendOnly.delete(peerId);
    const previous = this.byPeer.get(peerId);
    const host = previous ?? blankHost(peerId);
    host.online = true;
    host.phase = "connecting";
    host.error = null;
    this.byPeer.set(peerId, host);
    return generation;
  }

  /** A peer left the room: a host stays listed, offline, with what it last said. */
  left(peerId: string): void {
    this.generation.set(peerId, (this.generation.get(peerId) ?? 0) + 1);
    this.sendOnly.delete(peerId);
    const host = this.byPeer.get(peerId);
    if (host !== undefined) {
      host.online = false;
    }
  }

  /** The peer's current generation (bumped by every join and leave). */
  generationOf(peerId: string): number {
    return this.generation.get(peerId) ?? 0;
  }

  /** Whether `generation` is still the peer's current one (its answers still apply). */
  current(peerId: string, generation: number): boolean {
    return this.generation.get(peerId) === generation;
  }

  /** The handshake's announcement: a send-only peer is no host; a node shows what it announced. */
  announced(peerId: string, announcement: Announcement): void {
    if (!announcement.acceptsCommands) {
      this.byPeer.delete(peerId);
      this.sendOnly.add(peerId);
      return;
    }
    const host = this.byPeer.get(peerId);
    if (host === undefined) {
      return;
    }
    host.name = announcement.name;
    host.tags = [...announcement.tags];
    host.os = osText(announcement.facts.os_family, announcement.facts.distro);
    host.arch = announcement.facts.arch ?? "";
    host.mode = announcement.mode;
    host.facts = { ...announcement.facts, os: announcement.facts.os_family ?? "" };
  }

  /** The node's `get_info`: what the view shows once it answered. */
  informed(peerId: string, info: InfoResult): void {
    const host = this.byPeer.get(peerId);
    if (host === undefined) {
      return;
    }
    host.phase = "ready";
    host.error = null;
    host.name = info.name;
    host.tags = [...info.tags];
    host.os = osText(info.facts.os_family, info.facts.distro);
    host.arch = info.facts.arch;
    host.mode = info.effective_mode;
    host.configuredMode = info.configured_mode;
    host.drift = [...info.drift];
    host.version = info.version;
    host.facts = { ...host.facts, os: info.facts.os_family, arch: info.facts.arch, hostname: info.facts.hostname };
  }

  /** Reading the host failed: the reason is shown on its card. */
  failed(peerId: string, error: string): void {
    const host = this.byPeer.get(peerId);
    if (host === undefined) {
      return;
    }
    host.phase = "error";
    host.error = error;
  }

  /** The node's `desired_status`: shown on its card and counted in the summary. */
  observed(peerId: string, status: ObservedStatus): void {
    const host = this.byPeer.get(peerId);
    if (host !== undefined) {
      host.desired = status;
      host.desiredError = null;
    }
  }

  /** Reading the desired state failed: the reason is shown on the card (the last report stays). */
  observeFailed(peerId: string, error: string): void {
    const host = this.byPeer.get(peerId);
    if (host !== undefined) {
      host.desiredError = error;
    }
  }

  /** Every peer the fleet view knows forgets its session: after a reconnect the relay's snapshot
   * says again who is here (those not in it show offline). */
  disconnected(): void {
    for (const peerId of this.byPeer.keys()) {
      this.left(peerId);
    }
    for (const peerId of this.sendOnly) {
      this.generation.set(peerId, (this.generation.get(peerId) ?? 0) + 1);
    }
    this.sendOnly.clear();
  }

  /** The hosts, online first, then by name (then peer id, for nodes not yet named). */
  hosts(): Host[] {
    return [...this.byPeer.values()].sort(
      (a, b) =>
        Number(b.online) - Number(a.online) || a.name.localeCompare(b.name) || a.peerId.localeCompare(b.peerId),
    );
  }

  /**
   * The line a person reads at a glance: `3 hosts · 2 online · 1 offline · 1 edit · 1 plan ·
   * 1 Synced · 1 OutOfSync`. Modes count the online hosts that reported one, sync states and
   * `Degraded` the online hosts whose desired state reported one (a host without desired state
   * reports `Unknown`, which is not counted); zero counts are left out.
   */
  summary(): string {
    const hosts = [...this.byPeer.values()];
    const online = hosts.filter((host) => host.online);
    const parts = [plural(hosts.length, "host")];
    if (hosts.length > 0) {
      parts.push(`${online.length} online`);
    }
    if (online.length < hosts.length) {
      parts.push(`${hosts.length - online.length} offline`);
    }
    const modes = new Map<string, number>();
    for (const host of online) {
      if (host.mode.length > 0) {
        modes.set(host.mode, (modes.get(host.mode) ?? 0) + 1);
      }
    }
    const order = [...MODES, ...[...modes.keys()].filter((mode) => !(MODES as readonly string[]).includes(mode)).sort()];
    for (const mode of order) {
      const count = modes.get(mode);
      if (count !== undefined) {
        parts.push(`${count} ${mode}`);
      }
    }
    for (const [label, count] of [
      ["Synced", online.filter((host) => host.desired?.sync === "Synced").length],
      ["OutOfSync", online.filter((host) => host.desired?.sync === "OutOfSync").length],
      ["Degraded", online.filter((host) => host.desired?.health === "Degraded").length],
    ] as const) {
      if (count > 0) {
        parts.push(`${count} ${label}`);
      }
    }
    const errors = online.filter((host) => host.phase === "error").length;
    if (errors > 0) {
      parts.push(`${errors} unreadable`);
    }
    if (this.sendOnly.size > 0) {
      parts.push(plural(this.sendOnly.size, "send-only peer"));
    }
    return parts.join(" · ");
  }
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
