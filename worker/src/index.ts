//! The Worker entry: `/healthz`, the browser panel's page (`panel`), the optional relay key, and
//! routing of `/v1/rooms/{room_id}?peer=...` to the room's own Durable Object
//! (`idFromName(room_id)`).

import { CloseCode, isPeerIdHex, isRoomIdHex } from "./frame";
import { panelFile } from "./panel";
import { KEY_SUBPROTOCOL_PREFIX, hex, offeredProtocols } from "./subprotocol";
import type { Env } from "./room";

export { Room } from "./room";

const ROOM_PATH = /^\/v1\/rooms\/([^/]*)$/;

/** Accepts the upgrade only to close it with a code the node understands (4003: give up). */
function closeWith(code: number, reason: string): Response {
  const pair = new WebSocketPair();
  pair[1].accept();
  pair[1].close(code, reason);
  return new Response(null, { status: 101, webSocket: pair[0] });
}

/** Compares without an early exit so the key cannot be guessed byte by byte from timings. */
function sameKey(given: string, expected: string): boolean {
  const encoder = new TextEncoder();
  const a = encoder.encode(given);
  const b = encoder.encode(expected);
  let difference = a.length ^ b.length;
  for (let index = 0; index < b.length; index++) difference |= (a[index] ?? 0) ^ b[index]!;
  return difference === 0;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") {
      return new Response("ok", { headers: { "content-type": "text/plain" } });
    }
    const match = ROOM_PATH.exec(url.pathname);
    if (!match) return panelFile(request, url.pathname) ?? new Response("not found", { status: 404 });

    if (env.RELAY_KEY) {
      const authorization = request.headers.get("authorization");
      const presented =
        authorization !== null
          ? sameKey(authorization, `Bearer ${env.RELAY_KEY}`)
          : offeredProtocols(request).some(
              (protocol) =>
                protocol.startsWith(KEY_SUBPROTOCOL_PREFIX) &&
                sameKey(protocol.slice(KEY_SUBPROTOCOL_PREFIX.length), hex(new TextEncoder().encode(env.RELAY_KEY!))),
            );
      if (!presented) {
        return new Response("unauthorized", {
          status: 401,
          headers: { "www-authenticate": "Bearer" },
        });
      }
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a websocket upgrade", { status: 426 });
    }
    const roomId = match[1]!;
    const peer = url.searchParams.get("peer") ?? "";
    if (!isRoomIdHex(roomId) || !isPeerIdHex(peer)) {
      return closeWith(CloseCode.BadRequest, "bad request: malformed room id or peer id");
    }
    const room = env.ROOMS.get(env.ROOMS.idFromName(roomId));
    return room.fetch(request);
  },
} satisfies ExportedHandler<Env>;
