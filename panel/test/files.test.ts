//! The Files view's pure parts: the search form's arguments, base64 and UTF-8 chunks decoded to
//! the exact bytes, the chunked download (hash, progress, a file that changes under it) and the
//! copy the page coordinates (its states, progress from the destination's chunks, each end's
//! refusal in the node's words).

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { test } from "node:test";
import {
  baseName,
  copy,
  type CopyStatus,
  type FileRemoveResult,
  decodeBase64,
  download,
  isImagePath,
  parseProgress,
  pickedText,
  type ReadFileResult,
  searchArgs,
} from "../src/ui/files.ts";

test("the form becomes file_search arguments, and a search without a criterion is caught", () => {
  assert.deepEqual(searchArgs({ name: "", content: "", imagesOnly: false, roots: "" }), {
    error: "give a name pattern, a content text or tick images only",
  });
  assert.deepEqual(searchArgs({ name: " *.png ", content: "", imagesOnly: false, roots: "" }), { args: { name: "*.png" } });
  assert.deepEqual(searchArgs({ name: "", content: "TODO ", imagesOnly: true, roots: " ~/photos, /srv\n/data ,," }), {
    args: { content: "TODO ", images_only: true, roots: ["~/photos", "/srv", "/data"] },
  });
});

test("images are told by extension; names and picked hosts read well", () => {
  assert.ok(isImagePath("/home/a/photos/Cat.PNG"));
  assert.ok(isImagePath("x.jpeg") && isImagePath("x.jpg") && isImagePath("x.webp") && isImagePath("x.gif"));
  assert.ok(!isImagePath("/home/a/notes.txt"));
  assert.ok(!isImagePath("/home/a/png"));
  assert.ok(!isImagePath("/home/a.png/readme"));
  assert.equal(baseName("/home/a/big/data.bin"), "data.bin");
  assert.equal(baseName("C:\\Users\\a\\x.txt"), "x.txt");
  assert.equal(baseName("/"), "download");
  assert.equal(pickedText([]), "picks no reachable host");
  assert.equal(pickedText(["alpha"]), "picks 1 host: alpha");
  assert.equal(pickedText(["a", "b", "c"], 2), "picks 3 hosts: a, b, …");
});

test("base64 decodes to the exact bytes, every padding, and refuses what is not base64", () => {
  for (let length = 0; length < 70; length++) {
    const bytes = randomBytes(length);
    assert.deepEqual(decodeBase64(bytes.toString("base64")), new Uint8Array(bytes), `length ${length}`);
  }
  assert.throws(() => decodeBase64("abc"), /multiple of 4/);
  assert.throws(() => decodeBase64("ab!d"), /not base64 at character 3/);
  assert.throws(() => decodeBase64("a=bc"), /not base64/);
  assert.throws(() => decodeBase64("ab==abcd"), /not base64/);
});

/** A host's `read_file` over `file` (as fs::read_file answers: utf8 when the range is valid UTF-8). */
function reader(file: () => Buffer, calls: Array<[number, number]> = []) {
  return async (offset: number, length: number): Promise<ReadFileResult> => {
    calls.push([offset, length]);
    const whole = file();
    const bytes = whole.subarray(offset, offset + Math.min(length, 8 * 1024 * 1024));
    const text = new TextDecoder("utf-8", { fatal: true });
    let encoding: "utf8" | "base64" = "utf8";
    let content: string;
    try {
      content = text.decode(bytes);
    } catch {
      encoding = "base64";
      content = bytes.toString("base64");
    }
    return { path: "/f", size: whole.length, offset, length: bytes.length, encoding, content, eof: offset + bytes.length >= whole.length };
  };
}

test("a download reads by chunks, decodes both encodings and hashes the whole", async () => {
  // Text (utf8 answers, one multi-byte character cut by a chunk edge → that chunk is base64) then binary.
  const file = Buffer.concat([Buffer.from("héllo wörld ".repeat(1000)), randomBytes(30_000)]);
  const calls: Array<[number, number]> = [];
  const parts: Uint8Array[] = [];
  const progress: number[] = [];
  const done = await download({
    read: reader(() => file, calls),
    sink: (bytes) => parts.push(bytes),
    progress: (bytes, total) => {
      assert.equal(total, file.length);
      progress.push(bytes);
    },
    chunk: 4099,
  });
  assert.equal(done.size, file.length);
  assert.equal(done.sha256, createHash("sha256").update(file).digest("hex"));
  assert.deepEqual(Buffer.concat(parts), file);
  assert.equal(done.calls, Math.ceil(file.length / 4099));
  assert.equal(calls[1]?.[0], 4099);
  assert.equal(progress.at(-1), file.length);
  assert.ok(progress.every((value, index) => index === 0 || value > (progress[index - 1] as number)));
});

test("an empty file downloads in one call; the chunk is capped at 8 MiB", async () => {
  const calls: Array<[number, number]> = [];
  const done = await download({ read: reader(() => Buffer.alloc(0), calls), sink: () => {}, chunk: 64 * 1024 * 1024 });
  assert.deepEqual(done, { size: 0, sha256: createHash("sha256").digest("hex"), calls: 1 });
  assert.deepEqual(calls, [[0, 8 * 1024 * 1024]]);
});

test("a file whose size changes between chunks stops the download with the reason", async () => {
  let file = randomBytes(10_000);
  let reads = 0;
  const read = reader(() => file);
  await assert.rejects(
    download({
      read: async (offset, length) => {
        if (++reads === 2) {
          file = Buffer.concat([file, Buffer.from("more")]);
        }
        return read(offset, length);
      },
      sink: () => {},
      chunk: 4000,
    }),
    /the file changed while it was read: its size went from 10000 to 10004 bytes at offset 4000/,
  );
  // An answer whose content does not match its length is refused, not hashed.
  await assert.rejects(
    download({
      read: async () => ({ path: "/f", size: 3, offset: 0, length: 3, encoding: "utf8", content: "ab", eof: true }),
      sink: () => {},
    }),
    /read_file said 3 bytes at offset 0 but carried 2/,
  );
});

test("progress chunks are read, other chunks ignored", () => {
  const chunk = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  assert.deepEqual(parseProgress(chunk({ progress: 1024, total: 4096, message: "via relay" })), { bytes: 1024, total: 4096, path: "relay" });
  assert.deepEqual(parseProgress(chunk({ progress: 5, total: null, message: "" })), { bytes: 5, total: null, path: null });
  assert.equal(parseProgress(chunk({ line: "x" })), null);
  assert.equal(parseProgress(new Uint8Array([0xff, 0x00])), null);
});

const JOB = { fromName: "alpha", fromPath: "/a/data.bin", toAgentId: "b".repeat(32), toName: "bravo", toPath: "data.bin" };
const SOURCE = { agent_id: "a".repeat(32), path: "/a/data.bin", size: 4096, modified_ms: 7, ticket: "t".repeat(64) };

test("a copy opens the source for the destination, follows its progress and ends done with the SHA-256", async () => {
  let clock = 0;
  const statuses: CopyStatus[] = [];
  let received: Record<string, unknown> = {};
  const final = await copy(
    JOB,
    {
      source: async (args) => {
        assert.deepEqual(args, { path: "/a/data.bin", to_agent_id: "b".repeat(32) });
        return SOURCE;
      },
      receive: async (args, onChunk) => {
        received = args;
        clock = 1000;
        onChunk(new TextEncoder().encode(JSON.stringify({ progress: 2048, total: 4096, message: "via direct" })));
        clock = 2000;
        return { path: "/b/data.bin", bytes: 4096, sha256: "ab".repeat(32), transfer_path: "direct", resumed_from: 0 };
      },
      now: () => clock,
    },
    (status) => statuses.push(status),
  );
  assert.deepEqual(received, {
    path: "data.bin",
    from_agent_id: "a".repeat(32),
    from_path: "/a/data.bin",
    ticket: "t".repeat(64),
    size: 4096,
    modified_ms: 7,
  });
  assert.deepEqual(
    statuses.map((status) => [status.state, status.bytesDone, status.path]),
    [
      ["opening", 0, null],
      ["running", 0, null],
      ["running", 2048, "direct"],
      ["done", 4096, "direct"],
    ],
  );
  assert.equal(statuses[2]?.rateBytesPerSec, 2048);
  assert.equal(final.sha256, "ab".repeat(32));
  assert.equal(final.landedAt, "/b/data.bin");
  assert.equal(final.rateBytesPerSec, 2048);
  assert.equal(final.error, null);
});

test("a refusal at either end fails the copy with the node's words and where", async () => {
  const refusedAt = async (end: "source" | "destination") =>
    copy(
      JOB,
      {
        source: async () => {
          if (end === "source") {
            throw new Error("transfer_source refused: /a/data.bin is outside the roots this node allows");
          }
          return SOURCE;
        },
        receive: async () => {
          throw new Error("transfer_receive refused: the node is in plan mode (read-only): writes are refused");
        },
        now: () => 0,
      },
      () => {},
    );
  const source = await refusedAt("source");
  assert.equal(source.state, "failed");
  assert.equal(source.error, "source alpha:/a/data.bin: transfer_source refused: /a/data.bin is outside the roots this node allows");
  const destination = await refusedAt("destination");
  assert.equal(destination.state, "failed");
  assert.equal(destination.size, 4096);
  assert.equal(
    destination.error,
    "destination bravo:data.bin: transfer_receive refused: the node is in plan mode (read-only): writes are refused",
  );
});

test("a move removes the source only after the verified copy, naming the file as it was copied", async () => {
  const move = (removal: () => Promise<FileRemoveResult>) => {
    const removals: unknown[] = [];
    const statuses: string[] = [];
    const done = copy(
      { ...JOB, move: true },
      {
        source: async () => SOURCE,
        receive: async () => ({ path: "/b/data.bin", bytes: 4096, sha256: "ab".repeat(32), transfer_path: "relay", resumed_from: 0 }),
        remove: async (args) => {
          removals.push(args);
          return removal();
        },
        now: () => 0,
      },
      (status) => statuses.push(status.state),
    );
    return done.then((final) => ({ final, removals, statuses }));
  };
  const moved = await move(async () => ({ path: "/a/data.bin", size: 4096, backup: "/data/backups/1-x-data.bin" }));
  assert.deepEqual(moved.removals, [{ path: "/a/data.bin", expect_size: 4096, expect_modified_ms: 7 }]);
  assert.deepEqual(moved.statuses, ["opening", "running", "done", "removing", "moved"]);
  assert.equal(moved.final.sourceBackup, "/data/backups/1-x-data.bin");
  assert.equal(moved.final.sha256, "ab".repeat(32));

  const kept = await move(async () => {
    throw new Error("file_remove failed: /a/data.bin is 5000 bytes, not the 4096 expected: it changed, so it was not removed");
  });
  assert.equal(kept.final.state, "failed");
  assert.equal(
    kept.final.error,
    "copied to bravo:/b/data.bin, but the source was not removed: alpha:/a/data.bin: file_remove failed: /a/data.bin is 5000 bytes, not the 4096 expected: it changed, so it was not removed",
  );

  // A failed copy never reaches the removal.
  const removals: unknown[] = [];
  const failed = await copy(
    { ...JOB, move: true },
    {
      source: async () => SOURCE,
      receive: async () => {
        throw new Error("transfer_receive failed: disk full");
      },
      remove: async (args) => {
        removals.push(args);
        return { path: "", size: 0, backup: null };
      },
      now: () => 0,
    },
    () => {},
  );
  assert.equal(failed.state, "failed");
  assert.deepEqual(removals, []);
});
