//! The panel's session client: a browser (or Node) peer of the room that speaks the relay frames
//! and the Noise IKpsk2 + AES-256-GCM sessions of the Rust nodes.

export * from "./bytes.ts";
export * from "./keys.ts";
export * from "./message.ts";
export * from "./noise.ts";
export * from "./peer.ts";
export * from "./psk.ts";
export * from "./session.ts";
