//! The panel's peer against the real Rust binaries: a `remote-agents-relay` on 127.0.0.1 port 0
//! and a `remote-agents run` node, as the end-to-end tests start them. The TypeScript peer
//! completes handshakes with the node in both roles (the lower peer id initiates, so the panel's
//! key decides its role), runs the read-only operations `get_info` and `list_agents` through
//! the session (the node lists the panel by the announcement it decrypted), refuses a tampered
//! and a replayed copy of the node's real reply, and refuses the node's response under a wrong
//! room key. The binaries come from `REMOTE_AGENTS_BIN` / `REMOTE_AGENTS_RELAY_BIN`, else
//! `$CARGO_TARGET_DIR/debug` (default `~/.cache/remote-agents/target`), as test.sh builds them.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { HEADER_LEN, Kind } from "../src/frame.ts";
import { generateKeypair, type PeerId, peerIdFromPublicKey, type StaticKeypair } from "../src/keys.ts";
import { emptyAnnouncement } from "../src/message.ts";
import { ConnectError, KEY_SUBPROTOCOL_PREFIX, Peer, type PeerOptions, relayKeyProtocols, SUBPROTOCOL, type WebSocketLike } from "../src/peer.ts";
import { pskFromEncryptionKey } from "../src/psk.ts";
import { BodyType, type Rejection } from "../src/session.ts";

/** The end-to-end tests' explicit room key (tests/src/fleet.rs `ENCRYPTION_KEY`). */
const ENCRYPTION_KEY = "5a".repeat(32);
const NODE_NAME = "interop-node";
/** How long any one expected event may take before the test fails (no fixed sleeps). */
const DEADLINE_MS = 30_000;

const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/remote-agents/target");
const nodeBinary = process.env.REMOTE_AGENTS_BIN || join(targetDir, "debug/remote-agents");
const relayBinary = process.env.REMOTE_AGENTS_RELAY_BIN || join(targetDir, "debug/remote-agents-relay");

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "panel-interop-"));
const room = `panel-interop-${crypto.randomUUID()}`;
let relayUrl = "";
let nodeId: PeerId = "";

function deadline<T>(what: string, promise: Promise<T>, ms = DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function nodeLog(): string {
  return existsSync(join(dir, "node.log")) ? readFileSync(join(dir, "node.log"), "utf8") : "";
}

/** Starts the relay on port 0 and reads the address it bound from its first stdout line. */
async function startRelay(extra: string[] = []): Promise<string> {
  const relay = spawn(relayBinary, ["--bind", "127.0.0.1:0", ...extra], { stdio: ["ignore", "pipe", "ignore"] });
  children.push(relay);
  const lines = createInterface({ input: relay.stdout as NodeJS.ReadableStream });
  const address = new Promise<string>((resolve, reject) => {
    lines.on("line", (line) => {
      if (line.startsWith("listening on ")) {
        resolve(line.slice("listening on ".length).trim());
      }
    });
    relay.on("exit", (code) => reject(new Error(`the relay exited (${code}) before listening`)));
    relay.on("error", reject);
  });
  return `ws://${await deadline("the relay's address", address)}`;
}

function startNode(): void {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: join(dir, "home"), RUST_LOG: "info" };
  delete env.REMOTE_AGENTS_CONFIG;
  const args = ["run", "--relay", relayUrl, "--room", room, "--encryption-key", ENCRYPTION_KEY];
  args.push("--name", NODE_NAME, "--data-dir", join(dir, "data"));
  const node = spawn(nodeBinary, args, {
    env,
    stdio: ["ignore", "ignore", openSync(join(dir, "node.log"), "w")],
  });
  children.push(node);
}

/** A socket of the `ws` package that records the session body types going each way and can
 * tamper with what arrives. */
class TappedSocket implements WebSocketLike {
  readonly sent: number[] = [];
  readonly received: number[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** Given each arriving DATA frame, returns the frames to deliver instead. */
  intercept: (frame: Uint8Array) => Uint8Array[] = (frame) => [frame];

  constructor(private readonly socket: WebSocket) {
    socket.binaryType = "arraybuffer";
    socket.onopen = (event) => this.onopen?.(event);
    socket.onclose = (event) => this.onclose?.({ code: event.code, reason: event.reason });
    socket.onerror = (event) => this.onerror?.(event);
    socket.onmessage = (event) => {
      const frame = new Uint8Array(event.data as ArrayBuffer);
      if (frame[1] !== Kind.Data || frame.length <= HEADER_LEN) {
        this.onmessage?.({ data: event.data });
        return;
      }
      this.received.push(frame[HEADER_LEN] as number);
      for (const delivered of this.intercept(frame)) {
        this.onmessage?.({ data: delivered.slice().buffer });
      }
    };
  }

  get binaryType(): string {
    return this.socket.binaryType;
  }

  set binaryType(_: string) {
    // Always array buffers (set above).
  }

  get readyState(): number {
    return this.socket.readyState;
  }

  send(data: Uint8Array): void {
    if (data[1] === Kind.Data && data.length > HEADER_LEN) {
      this.sent.push(data[HEADER_LEN] as number);
    }
    this.socket.send(data);
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason);
  }
}

/** A keypair whose peer id makes the panel the initiator (below the node's id) or the responder. */
function keypairFor(role: "initiator" | "responder"): StaticKeypair {
  for (;;) {
    const keypair = generateKeypair();
    if (peerIdFromPublicKey(keypair.publicKey) < nodeId === (role === "initiator")) {
      return keypair;
    }
  }
}

async function connect(
  name: string,
  options: Partial<PeerOptions> = {},
): Promise<{ peer: Peer; socket: TappedSocket; rejections: Array<[Rejection, PeerId | null]> }> {
  let socket: TappedSocket | null = null;
  const rejections: Array<[Rejection, PeerId | null]> = [];
  const peer = await deadline(
    `${name} joining the room`,
    Peer.connect({
      relayUrl,
      roomName: room,
      psk: pskFromEncryptionKey(ENCRYPTION_KEY),
      announcement: { ...emptyAnnouncement(), name, tags: ["panel"] },
      webSocket: (url, protocols) => {
        socket = new TappedSocket(new WebSocket(url, protocols));
        return socket;
      },
      onRejection: (rejection, from) => rejections.push([rejection, from]),
      ...options,
    }),
  );
  return { peer, socket: socket as unknown as TappedSocket, rejections };
}

before(async () => {
  for (const binary of [nodeBinary, relayBinary]) {
    assert.ok(
      existsSync(binary),
      `${binary} is missing: run \`cargo build --workspace --bins --locked\` (or set REMOTE_AGENTS_BIN and REMOTE_AGENTS_RELAY_BIN)`,
    );
  }
  relayUrl = await startRelay();
  // Watch the room before the node joins, so its join arrives as an event.
  const { peer: observer } = await connect("panel-observer");
  await observer.followPresence();
  startNode();
  const present = await deadline(
    `the node joining the room (its log: ${join(dir, "node.log")})`,
    observer.waitForPresence((peers) => peers.size >= 1, DEADLINE_MS),
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${nodeLog()}`);
  });
  nodeId = [...present][0] as PeerId;
  observer.close();
});

after(() => {
  for (const child of children) {
    child.kill("SIGKILL");
  }
  rmSync(dir, { recursive: true, force: true });
});

for (const role of ["initiator", "responder"] as const) {
  test(`the panel as ${role} of the handshake runs get_info and list_agents on a Rust node`, async () => {
    const name = `panel-${role}`;
    const { peer, socket, rejections } = await connect(name, { keypair: keypairFor(role) });
    try {
      const info = await deadline("get_info", peer.request(nodeId, { op: "get_info" }));
      assert.equal(info.status, "ok", JSON.stringify(info));
      const result = (info as { result: { name: string; agent_id: string; accepts_commands: boolean } }).result;
      assert.equal(result.name, NODE_NAME);
      assert.equal(result.agent_id, nodeId);
      assert.equal(result.accepts_commands, true);
      if (role === "initiator") {
        assert.ok(socket.sent.includes(BodyType.Initiation), `sent ${socket.sent}`);
        assert.ok(socket.received.includes(BodyType.Response), `received ${socket.received}`);
        assert.ok(!socket.received.includes(BodyType.Initiation));
      } else {
        assert.ok(socket.received.includes(BodyType.Initiation), `received ${socket.received}`);
        assert.ok(socket.sent.includes(BodyType.Response), `sent ${socket.sent}`);
        assert.ok(!socket.sent.includes(BodyType.Initiation));
      }
      // The node's announcement, decrypted from its handshake payload.
      const node = peer.peers().find((known) => known.peerId === nodeId);
      assert.equal(node?.announcement.name, NODE_NAME);
      assert.equal(node?.announcement.acceptsCommands, true);
      // And the panel's, as the node decrypted it from ours.
      const listed = await deadline("list_agents", peer.request(nodeId, { op: "list_agents" }));
      assert.equal(listed.status, "ok", JSON.stringify(listed));
      const agents = (listed as { result: { agents: Array<Record<string, unknown>> } }).result.agents;
      const panel = agents.find((agent) => agent.agent_id === peer.peerId);
      assert.deepEqual(
        panel && [panel.name, panel.tags, panel.accepts_commands, panel.local],
        [name, ["panel"], false, false],
        JSON.stringify(agents),
      );
      assert.deepEqual(rejections, [], "honest traffic is never rejected");
    } finally {
      peer.close();
    }
  });
}

test("a tampered and a replayed copy of the node's real reply are rejected; the reply still lands", async () => {
  const { peer, socket, rejections } = await connect("panel-tamper", { keypair: keypairFor("initiator") });
  try {
    await deadline("a session", peer.meet(nodeId));
    // The node's next transport frame with a payload (its reply) arrives three times: with one
    // bit of its ciphertext flipped, as sent, and again.
    let tampered = false;
    socket.intercept = (frame) => {
      if (tampered || frame[HEADER_LEN] !== BodyType.Transport || frame.length <= HEADER_LEN + 5 + 16) {
        return [frame];
      }
      tampered = true;
      const flipped = frame.slice();
      flipped[HEADER_LEN + 5] = (flipped[HEADER_LEN + 5] as number) ^ 1;
      return [flipped, frame, frame];
    };
    const info = await deadline("get_info", peer.request(nodeId, { op: "get_info" }));
    assert.equal(info.status, "ok");
    assert.ok(tampered);
    assert.deepEqual(
      rejections.map(([rejection, from]) => [rejection.kind, from]),
      [
        ["Authentication", nodeId],
        ["Replay", nodeId],
      ],
    );
  } finally {
    peer.close();
  }
});

test("with another room key the panel refuses the node's response and no session forms", async () => {
  let onRejection: (rejection: Rejection) => void = () => {};
  const rejected = new Promise<Rejection>((resolve) => {
    onRejection = resolve;
  });
  const { peer } = await connect("panel-wrong-key", {
    keypair: keypairFor("initiator"),
    psk: new Uint8Array(32).fill(0xa5),
    onRejection: (rejection) => onRejection(rejection),
  });
  try {
    const call = peer.request(nodeId, { op: "get_info" });
    call.catch(() => {});
    const rejection = await deadline("the node's response", rejected);
    assert.equal(rejection.kind, "Handshake");
    assert.equal(peer.peers().length, 0, "no session");
    peer.close();
    await assert.rejects(call, /closed by the panel/);
  } finally {
    peer.close();
  }
});

test("a relay with a relay key admits the panel that presents it as a subprotocol, and only it", async () => {
  const keyed = await startRelay(["--relay-key", "panel relay key/+="]);
  const join = (relayKey: string | undefined) =>
    Peer.connect({
      relayUrl: keyed,
      roomName: room,
      psk: pskFromEncryptionKey(ENCRYPTION_KEY),
      relayKey,
      webSocket: (url, protocols) => {
        const socket = new WebSocket(url, protocols);
        socket.on("upgrade", (response) => {
          // The relay names the plain subprotocol, never echoing the one with the key.
          assert.equal(response.headers["sec-websocket-protocol"], SUBPROTOCOL);
        });
        return socket as unknown as WebSocketLike;
      },
    });
  await assert.rejects(deadline("a keyless join", join(undefined)), ConnectError);
  await assert.rejects(deadline("a join with a wrong key", join("not the key")), ConnectError);
  const peer = await deadline("a join with the key", join("panel relay key/+="));
  try {
    assert.deepEqual(relayKeyProtocols("k"), [SUBPROTOCOL, `${KEY_SUBPROTOCOL_PREFIX}6b`]);
    assert.deepEqual(await deadline("the room's peers", peer.roomPeers()), []);
  } finally {
    peer.close();
  }
});
