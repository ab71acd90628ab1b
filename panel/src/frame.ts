//! The relay frame (schemas/frame.md): the panel uses the Worker relay's codec as is, so the two
//! TypeScript peers of the relay protocol share one implementation of the byte layout, checked
//! against schemas/frame-vectors.json by both packages' tests.

export * from "../../worker/src/frame.ts";
