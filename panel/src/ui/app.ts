//! The page's connection to the room and what every view shares: the one `Peer` (replaced by a
//! new one when the relay goes away: the page rejoins by itself, with backoff, and the views keep
//! what they show), the fleet model fed by presence, host selection by selector, and one
//! `request` that meets the host and runs an operation. Views never hold the `Peer` itself.

import { CallError, type ConnectError, type Outcome, Peer, type PresenceChange } from "../peer.ts";
import { generateKeypair, type StaticKeypair } from "../keys.ts";
import { type Announcement, emptyAnnouncement } from "../message.ts";
import { bindOperator, type OperatorKey } from "../operator.ts";
import { sealBlob } from "../blob.ts";
import type { Rejection } from "../session.ts";
import { Fleet, type Host, type InfoResult } from "./fleet.ts";
import type { PanelTarget } from "./fragment.ts";
import { element, errorText, outcomeProblem } from "./dom.ts";
import { Selector } from "./selector.ts";

/** How long one host may take to complete its handshake and answer a quick read. */
export const READ_DEADLINE_MS = 15_000;
/** The waits between attempts to rejoin after the relay went away (the last one repeats). */
const RECONNECT_BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

export type ConnectionState = "working" | "connected" | "error";

export interface AppOptions {
  target: PanelTarget;
  psk: Uint8Array;
  /** The connection line: what is happening now. */
  status: (state: ConnectionState, text: string) => void;
}

export class App {
  readonly fleet = new Fleet();
  private current: Peer | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly connectedListeners = new Set<() => void>();
  /** The last handshake each peer's frames were refused for (a wrong room token looks like this). */
  private readonly handshakeRefusals = new Map<string, string>();
  private announcement: Announcement = { ...emptyAnnouncement(), name: "browser panel", tags: ["panel"] };
  /** The tab's Noise static key: new for each operator identity, so nodes meet it afresh. */
  private keypair: StaticKeypair = generateKeypair();
  private operatorKey: OperatorKey | null = null;
  /** Bumped by every (re)connection, so that a stale peer's close starts nothing. */
  private incarnation = 0;
  private reconnects = 0;

  constructor(private readonly options: AppOptions) {}

  /** The hosts that take requests now: online, read, and accepting commands. */
  reachable(): Host[] {
    return this.fleet.hosts().filter((host) => host.online && host.phase === "ready");
  }

  /** The reachable hosts `selector` picks (throws `SelectorError` naming the character at fault). */
  select(selector: string): Host[] {
    const parsed = Selector.parse(selector);
    return this.reachable().filter((host) => parsed.matches(host));
  }

  /**
   * The reachable hosts `selector` picks, or what to tell the person instead: the selector's
   * error (naming the character at fault), or why no host is picked (none matches yet, or the
   * page is rejoining and shows what it last read).
   */
  pick(selector: string): { hosts: Host[] } | { selectorError: string } | { none: string } {
    let hosts: Host[];
    try {
      hosts = this.select(selector);
    } catch (error) {
      return { selectorError: `selector: ${errorText(error)}` };
    }
    if (hosts.length > 0) {
      return { hosts };
    }
    return {
      none: this.connected()
        ? `no reachable host matches \`${selector}\` (yet: hosts are listed as they are read)`
        : "not connected to the relay: the page is rejoining; the list keeps what it last showed",
    };
  }

  /** A host by peer id or name. */
  host(nameOrPeer: string): Host | undefined {
    return this.fleet.hosts().find((host) => host.peerId === nameOrPeer || host.name === nameOrPeer);
  }

  /** Calls `listener` whenever the fleet changes (joins, leaves, reads); returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` after every (re)connection, so views refresh what they show. */
  onConnected(listener: () => void): () => void {
    this.connectedListeners.add(listener);
    return () => this.connectedListeners.delete(listener);
  }

  /** Whether a peer is joined now. */
  connected(): boolean {
    return this.current !== null;
  }

  /**
   * Runs `op` on the host `peerId` (meeting it first); a lost connection is an error. `onChunk`
   * takes the progress reports the node streams while the operation runs.
   */
  async request(
    peerId: string,
    op: string,
    args: object = {},
    deadlineMs = READ_DEADLINE_MS,
    onChunk?: (chunk: Uint8Array) => void,
  ): Promise<Outcome> {
    const peer = this.current;
    if (peer === null) {
      throw new CallError("not connected to the relay (the page is rejoining): try again in a moment");
    }
    await peer.meet(peerId, Math.min(deadlineMs, READ_DEADLINE_MS));
    return peer.request(peerId, { op, args }, deadlineMs, onChunk);
  }

  /** `request` whose non-ok outcome is thrown in the node's words (`op refused: …`). */
  async result<T>(
    peerId: string,
    op: string,
    args: object = {},
    deadlineMs = READ_DEADLINE_MS,
    onChunk?: (chunk: Uint8Array) => void,
  ): Promise<T> {
    const outcome = await this.request(peerId, op, args, deadlineMs, onChunk);
    const problem = outcomeProblem(op, outcome);
    if (problem !== null || outcome.status !== "ok") {
      throw new Error(problem ?? op);
    }
    return outcome.result as T;
  }

  /**
   * Leaves `plaintext` at the relay under the retained key `key`, sealed to the room (the relay
   * keeps ciphertext only): how a generation the page applies reaches hosts offline now.
   */
  async retain(key: Uint8Array, plaintext: Uint8Array): Promise<void> {
    const peer = this.current;
    if (peer === null) {
      throw new CallError("not connected to the relay (the page is rejoining): try again in a moment");
    }
    await peer.retainPut(key, sealBlob(this.options.psk, key, plaintext));
  }

  /** Joins the room (trying each relay in turn, retrying with backoff) and follows presence. */
  async start(): Promise<void> {
    const incarnation = ++this.incarnation;
    for (let attempt = 0; ; attempt++) {
      try {
        const peer = await this.join(incarnation);
        if (incarnation !== this.incarnation) {
          peer.close();
          return;
        }
        this.current = peer;
        this.options.status("connected", `connected as ${peer.peerId.slice(0, 12)}… (send-only, end-to-end encrypted)`);
        peer.onPresence((changes) => this.onPresence(peer, changes));
        try {
          await peer.followPresence();
        } catch (error) {
          this.options.status("error", `cannot read who is in the room: ${errorText(error)}`);
        }
        this.changed();
        for (const listener of this.connectedListeners) {
          listener();
        }
        return;
      } catch (error) {
        if (incarnation !== this.incarnation) {
          return;
        }
        const wait = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)] as number;
        this.options.status(
          "error",
          `cannot join the room: ${errorText(error)}; trying again in ${(wait / 1000).toFixed(wait < 1000 ? 2 : 0)} s`,
        );
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  /**
   * Acts for the operator `key` from now on (or for no one with `null`): the page rejoins as a
   * new peer whose announcement carries the key's binding to its new static key, so nodes whose
   * spec lists that operator authorize it for what the spec allows it.
   */
  async useOperator(key: OperatorKey | null): Promise<void> {
    this.operatorKey = key;
    this.keypair = generateKeypair();
    this.announcement = {
      ...this.announcement,
      operator: key === null ? null : bindOperator(key, this.keypair.publicKey),
    };
    await this.rejoin();
  }

  /** The operator key loaded in this tab, if any. */
  operator(): OperatorKey | null {
    return this.operatorKey;
  }

  /** Rejoins now as a new peer (the old connection closed, the fleet read afresh). */
  async rejoin(): Promise<void> {
    const peer = this.current;
    this.current = null;
    this.incarnation++;
    peer?.close();
    this.fleet.disconnected();
    this.changed();
    await this.start();
  }

  /** How many times the page rejoined after losing the relay. */
  reconnectCount(): number {
    return this.reconnects;
  }

  private async join(incarnation: number): Promise<Peer> {
    const { target, psk } = this.options;
    let last: unknown = null;
    for (const relayUrl of target.relays) {
      this.options.status("working", `joining room ${target.room} on ${relayUrl}…`);
      try {
        let peer: Peer | null = null;
        peer = await Peer.connect({
          relayUrl,
          roomName: target.room,
          psk,
          relayKey: target.relayKey,
          announcement: this.announcement,
          keypair: this.keypair,
          onClose: (error) => this.onClose(incarnation, peer, error),
          onRejection: (rejection, from) => this.noteRejection(rejection, from),
        });
        return peer;
      } catch (error) {
        last = error;
      }
    }
    throw last;
  }

  /** The relay closed the connection: keep what the views show, mark hosts offline, rejoin. */
  private onClose(incarnation: number, peer: Peer | null, error: ConnectError): void {
    if (incarnation !== this.incarnation || peer === null || this.current !== peer) {
      return;
    }
    this.current = null;
    this.fleet.disconnected();
    this.changed();
    this.reconnects++;
    this.options.status("working", `${error.message}: rejoining; the views keep what the fleet last reported`);
    void this.start();
  }

  private noteRejection(rejection: Rejection, from: string | null): void {
    if (from !== null && rejection.kind === "Handshake" && !(rejection.detail ?? "").includes("collision")) {
      this.handshakeRefusals.set(from, rejection.message);
    }
  }

  private onPresence(peer: Peer, changes: PresenceChange[]): void {
    if (this.current !== peer) {
      return;
    }
    for (const change of changes) {
      if (change.joined) {
        this.handshakeRefusals.delete(change.peer);
        const generation = this.fleet.joined(change.peer);
        void this.readHost(peer, change.peer, generation);
      } else {
        this.fleet.left(change.peer);
      }
    }
    this.changed();
  }

  /** The handshake's announcement, then `get_info`: errors land on the host's card. */
  private async readHost(peer: Peer, peerId: string, generation: number): Promise<void> {
    const fleet = this.fleet;
    try {
      const met = await peer.meet(peerId, READ_DEADLINE_MS);
      if (!fleet.current(peerId, generation)) {
        return;
      }
      fleet.announced(peerId, met.announcement);
      this.changed();
      if (!met.announcement.acceptsCommands) {
        return;
      }
      const outcome = await peer.request(peerId, { op: "get_info" }, READ_DEADLINE_MS);
      if (!fleet.current(peerId, generation)) {
        return;
      }
      const problem = outcomeProblem("get_info", outcome);
      if (outcome.status === "ok") {
        fleet.informed(peerId, outcome.result as InfoResult);
      } else {
        fleet.failed(peerId, problem ?? "get_info");
      }
    } catch (error) {
      if (!fleet.current(peerId, generation)) {
        return;
      }
      const refusal = this.handshakeRefusals.get(peerId);
      const why = refusal === undefined ? "" : ` (its handshake was refused: ${refusal}; is the room token right?)`;
      fleet.failed(peerId, `${error instanceof CallError ? error.message : `cannot read this host: ${errorText(error)}`}${why}`);
    }
    this.changed();
  }

  private changed(): void {
    for (const listener of this.listeners) {
      listener();
    }
  }
}

/**
 * The hosts `selector` picks for a listing view, or `null` after telling the person why there
 * are none: the selector's error in `errors`, or the reason in `status` (the list keeps what it
 * showed).
 */
export function pickForListing(app: App, selector: string, status: HTMLElement, errors: HTMLElement): Host[] | null {
  const picked = app.pick(selector);
  if ("selectorError" in picked) {
    status.textContent = "";
    errors.replaceChildren(element("p", { class: "error", role: "alert" }, picked.selectorError));
    return null;
  }
  if ("none" in picked) {
    status.textContent = picked.none;
    return null;
  }
  return picked.hosts;
}

/** Whether a view's section is on screen (the tab bar hides the sections of the other views). */
export function shown(root: HTMLElement): boolean {
  return !root.hidden;
}

/**
 * Reads need no click: runs `onShown` whenever the view's section `root` is shown, and, while it
 * shows, `onNewHosts` when the selector picks a host the view has not listed yet (`listedPeers`:
 * their peer ids sorted and joined by commas). Hosts are read a little after each (re)join; hosts
 * that go away (a relay restart) and come back keep what they showed.
 */
export function listWhenShown(
  app: App,
  root: HTMLElement,
  selector: HTMLInputElement,
  listedPeers: () => string,
  handlers: { onShown: () => void; onNewHosts: () => void },
): void {
  new MutationObserver(() => {
    if (shown(root)) {
      handlers.onShown();
    }
  }).observe(root, { attributes: true, attributeFilter: ["hidden"] });
  app.onChange(() => {
    if (!shown(root)) {
      return;
    }
    let peers: string[];
    try {
      peers = app.select(selector.value).map((host) => host.peerId);
    } catch {
      return;
    }
    const listed = new Set(listedPeers().split(","));
    if (peers.some((peer) => !listed.has(peer))) {
      handlers.onNewHosts();
    }
  });
}
