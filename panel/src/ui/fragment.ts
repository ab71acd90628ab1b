//! Where the page finds its room: the URL fragment `#relay=…&room=…&token=…` (or `key=…`, an
//! explicit 32-byte encryption key, instead of the token; `relay_key=…` for a relay that requires
//! one), as `remote-agents panel` prints it.
//! Browsers never send the fragment to a server, so the room token stays in this tab; the room
//! key is derived from it here (`pskFromRoomToken`). Pure: no DOM, so the tests run it in Node.
//! A page served by the relay (the Worker) may leave `relay=` out: it is then the page's origin.

/** The room secret: a token to stretch with Argon2id, or the explicit key itself. */
export type RoomSecret = { kind: "token"; token: string } | { kind: "key"; key: string };

export interface PanelTarget {
  /** The relay URLs to try in turn (`--relay` may name a cluster's instances, comma-separated). */
  relays: string[];
  room: string;
  secret: RoomSecret;
  /** The relay's access key (`relay_key=`), for a relay started with `--relay-key`. */
  relayKey?: string;
}

/** Reads the fragment (`location.hash`, with or without its `#`); an error names what is missing.
 * Without `relay=`, `ownRelay` is taken: the page's own origin as a WebSocket URL, for a page the
 * relay itself serves (the Worker does, so `https://<worker>/#room=…&token=…` is enough). */
export function parseFragment(
  hash: string,
  ownRelay?: string,
): { target: PanelTarget } | { error: string } {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const relays = (params.get("relay") ?? ownRelay ?? "")
    .split(",")
    .map((relay) => relay.trim())
    .filter((relay) => relay.length > 0);
  const room = params.get("room") ?? "";
  const token = params.get("token") ?? "";
  const key = params.get("key") ?? "";
  const missing = [];
  if (relays.length === 0) {
    missing.push("relay");
  }
  if (room.length === 0) {
    missing.push("room");
  }
  if (token.length === 0 && key.length === 0) {
    missing.push("token (or key)");
  }
  if (missing.length > 0) {
    return { error: `the page's address names no ${missing.join(", no ")}` };
  }
  for (const relay of relays) {
    if (!/^wss?:\/\//.test(relay)) {
      return { error: `relay ${JSON.stringify(relay)} is not a ws:// or wss:// URL` };
    }
  }
  const secret: RoomSecret = key.length > 0 ? { kind: "key", key } : { kind: "token", token };
  const relayKey = params.get("relay_key") ?? "";
  return { target: relayKey.length > 0 ? { relays, room, secret, relayKey } : { relays, room, secret } };
}

/** The fragment for `target` (what `remote-agents panel` appends to its URL). */
export function formatFragment(target: PanelTarget): string {
  const params = new URLSearchParams();
  params.set("relay", target.relays.join(","));
  params.set("room", target.room);
  if (target.secret.kind === "token") {
    params.set("token", target.secret.token);
  } else {
    params.set("key", target.secret.key);
  }
  if (target.relayKey !== undefined && target.relayKey.length > 0) {
    params.set("relay_key", target.relayKey);
  }
  return `#${params.toString()}`;
}
