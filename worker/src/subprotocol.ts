//! The WebSocket subprotocols of the browser panel, which cannot send an `Authorization` header
//! with a WebSocket: it offers `remote-agents` and, for a relay with a key, the key as a second
//! subprotocol; the relay checks that one and names the first back (as the Rust relay does). And
//! the header a (non-browser) peer takes its key challenge in.

/** The subprotocol the browser panel names; the relay names it back (a browser that offered
 * subprotocols fails a connection whose answer names none). */
export const SUBPROTOCOL = "remote-agents";
/** A browser cannot send `Authorization` with a WebSocket: the panel offers the relay key as a
 * subprotocol, this prefix and the key's UTF-8 in lowercase hex (as the Rust relay reads it). */
export const KEY_SUBPROTOCOL_PREFIX = "remote-agents.relay-key.";

/** The subprotocols a request offers (`Sec-WebSocket-Protocol`, comma-separated). */
export function offeredProtocols(request: Request): string[] {
  return (request.headers.get("sec-websocket-protocol") ?? "")
    .split(",")
    .map((protocol) => protocol.trim())
    .filter((protocol) => protocol.length > 0);
}

/** The header a peer asks for its key challenge in (value `header`) and the relay answers it in
 * (the encoded CHALLENGE frame in lowercase hex), instead of a CHALLENGE frame. */
export const CHALLENGE_HEADER = "remote-agents-challenge";

/** Whether the request asks for the challenge in the upgrade's answer. */
export function wantsChallengeInHeader(request: Request): boolean {
  return (request.headers.get(CHALLENGE_HEADER) ?? "")
    .split(",")
    .some((value) => value.trim().toLowerCase() === "header");
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

