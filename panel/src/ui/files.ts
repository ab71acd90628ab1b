//! The Files view's model, pure (no DOM, so the unit tests run it under Node): the search form's
//! arguments (`ops::FileSearchArgs`), which matches get a thumbnail, the chunked download
//! (`read_file` by ranges of at most 8 MiB, both encodings decoded to bytes, SHA-256 hashed as
//! the chunks arrive, a size change between chunks stops it), and the host-to-host copy the
//! page coordinates itself as `fleetctl cp HOST:PATH HOST:PATH` does (`node::transfer::
//! coordinate`): `transfer_source` on the source host names the destination's agent id and
//! answers a ticket, `transfer_receive` on the destination pulls with it, verifies SHA-256 end to
//! end and streams its progress (`{progress, total, message: "via relay"}`) as chunks of the call.
//! A node's `send_file` is no use here: it coordinates only for its own local callers (MCP, CLI)
//! and refuses a peer such as this page.

import { sha256 } from "@noble/hashes/sha2.js";
import { fromUtf8, toHex, utf8 } from "../bytes.ts";

/** `ops::SearchMatch`. */
export interface SearchMatch {
  path: string;
  size: number;
  modified_ms: number | null;
}

/** `ops::FileSearchResult`, the fields the view shows. */
export interface FileSearchResult {
  matches: SearchMatch[];
  truncated: boolean;
  truncated_reason?: string;
  searched_roots: string[];
}

/** `ops::FileThumbnailResult`. */
export interface FileThumbnailResult {
  path: string;
  size: number;
  format: string;
  width: number;
  height: number;
  thumbnail_width: number;
  thumbnail_height: number;
  mime_type: string;
  /** The thumbnail, base64. */
  data: string;
}

/** `ops::ReadFileResult`. */
export interface ReadFileResult {
  path: string;
  size: number;
  offset: number;
  length: number;
  encoding: "utf8" | "base64";
  content: string;
  eof: boolean;
}

/** `ops::FileStatResult`, the fields the download compares. */
export interface FileStatResult {
  path: string;
  size: number;
  modified_ms: number | null;
}

/** `ops::TransferSourceResult`. */
export interface TransferSourceResult {
  agent_id: string;
  path: string;
  size: number;
  modified_ms: number | null;
  ticket: string;
}

/** `ops::TransferReceiveResult`. */
export interface TransferReceiveResult {
  path: string;
  bytes: number;
  sha256: string;
  transfer_path: string;
  resumed_from: number;
}

/** `read_file` answers at most this many bytes per call (`ops::ReadFileArgs::length`). */
export const MAX_READ = 8 * 1024 * 1024;
/** What the download asks for per call: half the maximum, so one answer stays a modest message. */
export const DOWNLOAD_CHUNK = 4 * 1024 * 1024;
/** Reads a download keeps asked at once: the host reads ahead while the page decodes and hashes. */
export const DOWNLOAD_IN_FLIGHT = 2;
/** The longest edge of the thumbnails shown inline (twice their CSS size, for sharp screens). */
export const THUMBNAIL_SIZE = 192;

const IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "webp", "gif"];

/** Whether `file_thumbnail` is asked for this match: a PNG, JPEG, WebP or GIF by extension. */
export function isImagePath(path: string): boolean {
  const dot = path.lastIndexOf(".");
  return dot > path.lastIndexOf("/") && IMAGE_EXTENSIONS.includes(path.slice(dot + 1).toLowerCase());
}

/** The last part of a path: the download's file name. */
export function baseName(path: string): string {
  const name = path.replace(/[/\\]+$/, "").split(/[/\\]/).pop() ?? "";
  return name.length > 0 ? name : "download";
}

export interface SearchForm {
  name: string;
  content: string;
  imagesOnly: boolean;
  /** Folders, separated by commas or new lines; empty for the node's default roots. */
  roots: string;
}

/** The `file_search` arguments of the form, or what is missing (the node needs a criterion). */
export function searchArgs(form: SearchForm): { args: Record<string, unknown> } | { error: string } {
  const name = form.name.trim();
  const content = form.content;
  if (name.length === 0 && content.length === 0 && !form.imagesOnly) {
    return { error: "give a name pattern, a content text or tick images only" };
  }
  const args: Record<string, unknown> = {};
  if (name.length > 0) {
    args.name = name;
  }
  if (content.length > 0) {
    args.content = content;
  }
  if (form.imagesOnly) {
    args.images_only = true;
  }
  const roots = form.roots
    .split(/[,\n]/)
    .map((root) => root.trim())
    .filter((root) => root.length > 0);
  if (roots.length > 0) {
    args.roots = roots;
  }
  return { args };
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUES = (() => {
  const values = new Int16Array(128).fill(-1);
  for (let index = 0; index < BASE64.length; index++) {
    values[BASE64.charCodeAt(index)] = index;
  }
  return values;
})();

/** Decodes standard base64 with padding (as the node's `base64::STANDARD` writes it). */
export function decodeBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0) {
    throw new RangeError(`base64 of ${text.length} characters (not a multiple of 4)`);
  }
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - padding);
  let at = 0;
  for (let index = 0; index < text.length; index += 4) {
    let group = 0;
    for (let offset = 0; offset < 4; offset++) {
      const code = text.charCodeAt(index + offset);
      const last = index + 4 === text.length;
      if (last && code === 61 /* = */ && offset >= 4 - padding) {
        group <<= 6;
        continue;
      }
      const value = code < 128 ? (BASE64_VALUES[code] as number) : -1;
      if (value < 0) {
        throw new RangeError(`not base64 at character ${index + offset + 1}`);
      }
      group = (group << 6) | value;
    }
    out[at++] = (group >> 16) & 0xff;
    if (at < out.length) {
      out[at++] = (group >> 8) & 0xff;
    }
    if (at < out.length) {
      out[at++] = group & 0xff;
    }
  }
  return out;
}

/** The bytes a `read_file` answer carries, whichever encoding the node chose for them. */
export function chunkBytes(result: ReadFileResult): Uint8Array {
  const bytes = result.encoding === "base64" ? decodeBase64(result.content) : utf8(result.content);
  if (bytes.length !== result.length) {
    throw new Error(`read_file said ${result.length} bytes at offset ${result.offset} but carried ${bytes.length}`);
  }
  return bytes;
}

export interface DownloadOptions {
  /** One `read_file` of `length` bytes at `offset`, its non-ok outcome thrown in the node's words. */
  read: (offset: number, length: number) => Promise<ReadFileResult>;
  /** Takes each chunk's bytes, in order (the page wraps each in a Blob part). */
  sink: (bytes: Uint8Array) => void;
  /** Bytes so far of the total, after each chunk. */
  progress?: (done: number, total: number) => void;
  /** Bytes per call; default `DOWNLOAD_CHUNK`, at most `MAX_READ`. */
  chunk?: number;
  /** Reads asked at once; default `DOWNLOAD_IN_FLIGHT`. */
  inFlight?: number;
}

export interface Downloaded {
  size: number;
  /** SHA-256 of the bytes, hex. */
  sha256: string;
  /** The `read_file` calls it took. */
  calls: number;
}

/**
 * Reads a whole file by chunks, hashing as it goes, with `inFlight` reads asked ahead (so the
 * host reads the next chunk while this one is decoded and hashed; memory stays a few chunks).
 * Stops with an error when the file's size changes between chunks (it changed while it was
 * read) or an answer does not fit the request.
 */
export async function download(options: DownloadOptions): Promise<Downloaded> {
  const chunk = Math.min(Math.max(1, options.chunk ?? DOWNLOAD_CHUNK), MAX_READ);
  const inFlight = Math.max(1, options.inFlight ?? DOWNLOAD_IN_FLIGHT);
  const hash = sha256.create();
  const pending: Array<Promise<ReadFileResult>> = [];
  let asked = 0;
  let calls = 0;
  const ask = () => {
    const read = options.read(asked, chunk);
    // A read asked ahead whose answer is never awaited (an earlier one failed) must not be an
    // unhandled rejection; the one awaited still rejects.
    read.catch(() => {});
    pending.push(read);
    asked += chunk;
    calls++;
  };
  ask();
  let size: number | null = null;
  let offset = 0;
  for (;;) {
    const result = await (pending.shift() as Promise<ReadFileResult>);
    if (size === null) {
      size = result.size;
    } else if (result.size !== size) {
      throw new Error(
        `the file changed while it was read: its size went from ${size} to ${result.size} bytes at offset ${offset}; download it again`,
      );
    }
    while (pending.length < inFlight - 1 && asked < size) {
      ask();
    }
    if (result.offset !== offset) {
      throw new Error(`read_file answered offset ${result.offset} for offset ${offset}`);
    }
    const bytes = chunkBytes(result);
    if (bytes.length > chunk) {
      throw new Error(`read_file answered ${bytes.length} bytes for ${chunk} asked`);
    }
    hash.update(bytes);
    options.sink(bytes);
    offset += bytes.length;
    options.progress?.(offset, size);
    if (result.eof || offset >= size) {
      break;
    }
    if (bytes.length < chunk) {
      throw new Error(`read_file answered ${bytes.length} bytes at offset ${offset - bytes.length} of ${size}: the file changed while it was read`);
    }
    if (pending.length === 0) {
      ask();
    }
  }
  if (offset !== size) {
    throw new Error(`the file changed while it was read: ${offset} bytes read of the ${size} it had`);
  }
  return { size, sha256: toHex(hash.digest()), calls };
}

/** One progress report of a running operation (`node::ProgressChunk`). */
export interface ProgressReport {
  bytes: number;
  total: number | null;
  /** The byte path a transfer uses, from `via <path>`. */
  path: string | null;
}

/** A progress chunk's report, or null for a chunk that is not one. */
export function parseProgress(chunk: Uint8Array): ProgressReport | null {
  let value: unknown;
  try {
    value = JSON.parse(fromUtf8(chunk));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) {
    return null;
  }
  const report = value as { progress?: unknown; total?: unknown; message?: unknown };
  if (typeof report.progress !== "number") {
    return null;
  }
  const message = typeof report.message === "string" ? report.message : "";
  return {
    bytes: report.progress,
    total: typeof report.total === "number" ? report.total : null,
    path: message.startsWith("via ") ? message.slice(4) : null,
  };
}

/** Where a copy stands (the states of `ops::TransferState` it can reach, and `opening`); a move
 * goes on from `done` to `removing` the source and ends `moved`. */
export type CopyState = "opening" | "running" | "done" | "removing" | "moved" | "failed";

/** `ops::FileRemoveResult`. */
export interface FileRemoveResult {
  path: string;
  size: number;
  /** Where the source host kept the file before removing it (edit mode). */
  backup: string | null;
}

export interface CopyStatus {
  state: CopyState;
  /** The source's size, once the source host opened it. */
  size: number | null;
  bytesDone: number;
  /** Bytes per second since the destination started pulling. */
  rateBytesPerSec: number;
  /** The byte path in use: `direct` or `relay` (`local` within one host). */
  path: string | null;
  /** SHA-256 of the content, hex, verified at both ends. */
  sha256: string | null;
  /** Where the file landed, as the destination's gate resolved it. */
  landedAt: string | null;
  resumedFrom: number;
  /** For a move: where the source host kept the removed file (edit mode), once removed. */
  sourceBackup: string | null;
  error: string | null;
}

export interface CopyJob {
  fromName: string;
  fromPath: string;
  /** The destination's agent id (its peer id), which alone may pull with the ticket. */
  toAgentId: string;
  toName: string;
  toPath: string;
  /** A move: once the copy arrived verified, remove the source (only while it is as copied). */
  move?: boolean;
}

export interface CopySteps {
  /** `transfer_source` on the source host; a non-ok outcome thrown in the node's words. */
  source: (args: { path: string; to_agent_id: string }) => Promise<TransferSourceResult>;
  /** `transfer_receive` on the destination host, its progress chunks to `onChunk`. */
  receive: (args: Record<string, unknown>, onChunk: (chunk: Uint8Array) => void) => Promise<TransferReceiveResult>;
  /** `file_remove` on the source host (a move's second half). */
  remove?: (args: { path: string; expect_size: number; expect_modified_ms?: number }) => Promise<FileRemoveResult>;
  /** A clock in milliseconds. */
  now: () => number;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Copies `job.fromPath` on the source host to `job.toPath` on the destination, reporting each
 * change of its status to `update`; resolves with the final status (`done` or `failed`, the
 * error naming the end that failed, as the node's coordinator words it).
 */
export async function copy(job: CopyJob, steps: CopySteps, update: (status: CopyStatus) => void): Promise<CopyStatus> {
  const status: CopyStatus = {
    state: "opening",
    size: null,
    bytesDone: 0,
    rateBytesPerSec: 0,
    path: null,
    sha256: null,
    landedAt: null,
    resumedFrom: 0,
    sourceBackup: null,
    error: null,
  };
  const report = () => update({ ...status });
  const fail = (error: string) => {
    status.state = "failed";
    status.error = error;
    report();
    return { ...status };
  };
  report();
  let source: TransferSourceResult;
  try {
    source = await steps.source({ path: job.fromPath, to_agent_id: job.toAgentId });
  } catch (error) {
    return fail(`source ${job.fromName}:${job.fromPath}: ${message(error)}`);
  }
  status.state = "running";
  status.size = source.size;
  report();
  const started = steps.now();
  const rate = (bytes: number) => {
    const seconds = (steps.now() - started) / 1000;
    return seconds > 0 ? Math.max(0, bytes - status.resumedFrom) / seconds : 0;
  };
  const args = {
    path: job.toPath,
    from_agent_id: source.agent_id,
    from_path: source.path,
    ticket: source.ticket,
    size: source.size,
    modified_ms: source.modified_ms,
  };
  let received: TransferReceiveResult;
  try {
    received = await steps.receive(args, (chunk) => {
      const progress = parseProgress(chunk);
      if (progress === null || status.state !== "running") {
        return;
      }
      status.bytesDone = progress.bytes;
      if (progress.path !== null) {
        status.path = progress.path;
      }
      status.rateBytesPerSec = rate(progress.bytes);
      report();
    });
  } catch (error) {
    return fail(`destination ${job.toName}:${job.toPath}: ${message(error)}`);
  }
  status.state = "done";
  status.bytesDone = received.bytes;
  status.path = received.transfer_path;
  status.sha256 = received.sha256;
  status.landedAt = received.path;
  status.resumedFrom = received.resumed_from;
  status.rateBytesPerSec = rate(received.bytes);
  report();
  if (job.move !== true) {
    return { ...status };
  }
  if (steps.remove === undefined) {
    return fail("copied, but this page cannot remove the source");
  }
  status.state = "removing";
  report();
  try {
    // Only the file that was copied: the source host refuses if it changed since it opened it.
    const removed = await steps.remove({
      path: source.path,
      expect_size: source.size,
      ...(source.modified_ms === null ? {} : { expect_modified_ms: source.modified_ms }),
    });
    status.sourceBackup = removed.backup;
  } catch (error) {
    return fail(`copied to ${job.toName}:${received.path}, but the source was not removed: ${job.fromName}:${source.path}: ${message(error)}`);
  }
  status.state = "moved";
  report();
  return { ...status };
}

/** `2.5 MiB/s`. */
export function rateText(bytesPerSec: number, size: (bytes: number) => string): string {
  return `${size(Math.round(bytesPerSec))}/s`;
}

/** `2025-01-31 14:05` in the page's time zone, or `` for none. */
export function timeText(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) {
    return "";
  }
  const date = new Date(ms);
  const two = (value: number) => String(value).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}`;
}

/** `3 hosts: alpha, bravo, charlie` (at most `shown` names, then `…`). */
export function pickedText(names: string[], shown = 6): string {
  if (names.length === 0) {
    return "picks no reachable host";
  }
  const listed = names.slice(0, shown).join(", ") + (names.length > shown ? ", …" : "");
  return `picks ${names.length} host${names.length === 1 ? "" : "s"}: ${listed}`;
}
