#!/usr/bin/env python3
"""Writes the checked-in seed corpora under fuzz/corpus/<target>/ from the repository's own
examples, spec fixtures and frame vectors, plus a few hand-written inputs for the targets whose
input format is the harness's own (scripts, length-prefixed frames). Run from anywhere:
`python3 fuzz/seeds.py`; it rewrites the seeds it owns (named seed-*) and keeps other files
(reproducers of fixed crashes, added by hand)."""

import base64
import json
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / f"seed-{name}").write_bytes(data)


def spec_files(extension):
    folders = ["examples/fleet", "examples/fleet-kdl", "examples/secure-fleet",
               "spec/tests/fixtures/broken"]
    for folder in folders:
        for path in sorted((ROOT / folder).glob(f"*.{extension}")):
            yield f"{pathlib.Path(folder).name}-{path.name}", path.read_text()


def frames():
    vectors = json.loads((ROOT / "schemas/frame-vectors.json").read_text())
    for vector in vectors["frames"]:
        yield re.sub(r"[^A-Za-z0-9_.]+", "-", vector["name"]).strip("-"), bytes.fromhex(vector["hex"])


def header(kind, to=b"\0" * 16, frame_id=1):
    return bytes([1, kind]) + b"\x11" * 16 + to + struct.pack(">Q", frame_id)


def length_prefixed(*frames):
    return b"".join(struct.pack(">H", len(f)) + f for f in frames)


def postcard_str(text):
    data = text.encode()
    return bytes([len(data)]) + data


def main():
    for name, text in spec_files("yaml"):
        write("spec_yaml", name, text)
    for name, text in spec_files("kdl"):
        write("spec_kdl", name, text)

    for i, text in enumerate([
        "all",
        "web,!name:web-3\nweb-3 web\nweb-1 web os=linux",
        "tag:db & os:linux\ndb-1 db os=linux",
        "fact:region=eu,name:lab-[0-9]*\nlab-7 region=eu",
        "!db & name:{a,b}*",
    ]):
        write("spec_selector", str(i), text)

    for name, data in frames():
        write("protocol_frame", name, data)

    # Scripts: 0 raw frame, 1 patched real frame, 2 replayed real frame, 3 clock.
    for i, script in enumerate([
        bytes([2, 0, 2, 255]),  # the first handshake frame again; the last data frame again
        bytes([1, 255, 0, 60, 4, 1, 2, 3, 4]),  # a data frame with its ciphertext changed
        bytes([1, 254, 0, 1, 1, 0x7f]),  # a real frame with another kind byte
        bytes([3, 120, 2, 255, 3, 255, 3, 255]),  # time passes (timers, rekey)
        bytes([0, 47]) + header(1) + b"\x01\0\0\0\0",  # a raw DATA frame
    ]):
        write("protocol_session", str(i), script)

    announcement = (postcard_str("web-1") + bytes([1]) + postcard_str("web") + bytes([1])
                    + postcard_str("os") + postcard_str("linux") + postcard_str("plan")
                    + bytes([1, 0]))
    write("protocol_message", "announcement", announcement)
    write("protocol_message", "envelope-announce", bytes([0]) + announcement)
    write("protocol_message", "envelope-request", bytes([1, 1, 0xe8, 0x07, 2]) + b"hi" + bytes([0]))
    write("protocol_message", "envelope-failure", bytes([4, 9, 1]))
    write("protocol_message", "blob", b"\x42" * 32 + b"\x00" * 24)

    fleet = (ROOT / "examples/fleet/fleet.yaml").read_text()
    schedules = (ROOT / "examples/fleet/schedules.yaml").read_text()
    content = {
        "fleet": "demo", "generation": 3, "revision": "sha256:00", "issued_at_ms": 1,
        "issuer": "ed25519:" + base64.b64encode(b"\1" * 32).decode(),
        "files": [{"path": "fleet.yaml", "text": fleet},
                  {"path": "schedules.yaml", "text": schedules}],
    }
    write("daemon_bundle", "content", json.dumps(content))
    content_bytes = json.dumps(content).encode()
    signed = {"content": base64.b64encode(content_bytes).decode(),
              "signature": base64.b64encode(b"\0" * 64).decode()}
    write("daemon_bundle", "signed", json.dumps(signed))

    for name, value in {
        "envelope": {"id": "r1", "caller": "mcp:local",
                     "request": {"op": "exec", "args": {"argv": ["true"], "timeout_secs": 1.5}}},
        "exec": {"argv": ["uname", "-a"], "shell": False, "timeout_secs": 30,
                 "max_output_bytes": 1024, "env": {"A": "b"}},
        "write-file": {"path": "/tmp/x", "content": "aGk=", "encoding": "base64",
                       "create_dirs": True},
        "file-search": {"name": "*.rs", "content": "fn\\s+main", "max_results": 5},
        "schedule-add": {"op": "schedule_add",
                         "args": {"name": "backup", "cron": "*/5 * * * *",
                                  "command": ["true"], "timeout_secs": 60, "ttl_secs": 3600}},
        "set-mode": {"op": "set_mode", "args": {"mode": "edit", "ttl_secs": 60}},
        "fleet-exec": {"target": "web&!db", "batch": "10%", "max_fail": "1",
                       "argv": ["true"], "per_os": {"linux": ["uname"]}},
        "mapreduce": {"target": "all", "input": {"files": ["/data/*.txt"]}, "partitions": 4,
                      "map": {"command": ["wc", "-w"]}, "reduce": {"builtin": "sum"},
                      "timeout_secs": 10},
        "spec-edit": {"change": {"op": "add_schedule", "name": "tick", "target": "web",
                                 "cron": "*/5 * * * *", "command": ["true"]},
                      "message": "edit"},
    }.items():
        write("daemon_tool_args", name, json.dumps(value))

    b = b"\xbb" * 16
    write("relay_frames", "data-to-b", length_prefixed(header(1, b) + b"ciphertext"))
    write("relay_frames", "broadcast", length_prefixed(header(2) + b"hello room"))
    put = header(3, frame_id=3) + b"\x07desired" + b"\1\2\3"
    get = header(4, frame_id=4) + b"\x07desired"
    write("relay_frames", "put-then-get", length_prefixed(put, get))
    write("relay_frames", "data-to-absent-peer", length_prefixed(header(1, b"\xcc" * 16)))
    write("relay_frames", "relay-kind", length_prefixed(header(0x10) + b"\0\0\0\0"))
    write("relay_frames", "short", length_prefixed(b"\1\1\0"))


if __name__ == "__main__":
    main()
