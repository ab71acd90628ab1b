//! Signed desired-state bundles (`ops::bundle`): what an operator signs, in the page. The
//! content is JSON; the signature is Ed25519 over `remote-agents desired-state bundle v1\0`
//! followed by exactly the JSON bytes sent (base64 in `content`), so the page need not write
//! the JSON as Rust would: nodes verify the bytes they receive, then parse them.

import { ed25519 } from "@noble/curves/ed25519.js";
import { concat, fromBase64, fromUtf8, toBase64, utf8 } from "./bytes.ts";
import { formatOperatorPublic, type OperatorKey } from "./operator.ts";

const SIGNING_LABEL = utf8("remote-agents desired-state bundle v1\0");

/** One spec file: its path (for diagnostics) and its text. */
export interface SpecFile {
  path: string;
  text: string;
}

/** `ops::bundle::BundleContent`: what an operator signs. */
export interface BundleContent {
  fleet: string;
  generation: number;
  revision: string;
  issued_at_ms: number;
  /** The signer's public key, `ed25519:<base64>`. */
  issuer: string;
  files: SpecFile[];
  window_override?: string;
}

/** `ops::bundle::SignedBundle`: base64 of the signed JSON, and of the signature. */
export interface SignedBundle {
  content: string;
  signature: string;
}

/** Signs `files` as generation `generation` of `fleet`, issued now by `key`. */
export function signBundle(
  key: OperatorKey,
  fields: { fleet: string; generation: number; revision: string; files: SpecFile[]; windowOverride?: string },
  nowMs = Date.now(),
): SignedBundle {
  const content: BundleContent = {
    fleet: fields.fleet,
    generation: fields.generation,
    revision: fields.revision,
    issued_at_ms: Math.floor(nowMs),
    issuer: formatOperatorPublic(key.publicKey),
    files: fields.files,
  };
  if (fields.windowOverride !== undefined && fields.windowOverride.trim().length > 0) {
    content.window_override = fields.windowOverride.trim();
  }
  const bytes = utf8(JSON.stringify(content));
  return { content: toBase64(bytes), signature: toBase64(ed25519.sign(concat(SIGNING_LABEL, bytes), key.seed)) };
}

/** What a bundle claims (its files included), read without checking the signature: for
 * showing, never for deciding (nodes verify). `null` when it is not a bundle's JSON. */
export function peekBundle(bundle: SignedBundle): BundleContent | null {
  const bytes = fromBase64(bundle.content);
  if (bytes === null) {
    return null;
  }
  try {
    const content = JSON.parse(fromUtf8(bytes)) as BundleContent;
    return Array.isArray(content.files) ? content : null;
  } catch {
    return null;
  }
}

/** Whether `bundle` carries a valid signature by the issuer it names (the check nodes make first). */
export function bundleSignatureHolds(bundle: SignedBundle): boolean {
  const bytes = fromBase64(bundle.content);
  const signature = fromBase64(bundle.signature);
  const content = bytes === null ? null : peekBundle(bundle);
  const issuer = content === null ? null : fromBase64(content.issuer.replace(/^ed25519:/, ""));
  if (bytes === null || signature === null || issuer === null || issuer.length !== 32) {
    return false;
  }
  return ed25519.verify(signature, concat(SIGNING_LABEL, bytes), issuer);
}
