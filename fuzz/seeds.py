#!/usr/bin/env python3
"""Writes the checked-in seed corpora under fuzz/corpus/<target>/ from the repository's own
examples, spec fixtures and frame vectors, plus a few hand-written inputs for the targets whose
input format is the harness's own (scripts, length-prefixed frames), and the libFuzzer
dictionaries fuzz/dict/<target>.dict (syntax, field names taken from the schemas and argument
structs, and numbers at the edges, which mutation alone reaches slowly). Run from anywhere:
`python3 fuzz/seeds.py`; it rewrites the seeds it owns (named seed-*) and keeps other files
(reproducers of crashes, added by hand)."""

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
               "examples/staged-fleet", "examples/staged-fleet-kdl",
               "spec/tests/fixtures/broken"]
    for folder in folders:
        for path in sorted((ROOT / folder).glob(f"*.{extension}")):
            yield f"{pathlib.Path(folder).name}-{path.name}", path.read_text()


def frames():
    vectors = json.loads((ROOT / "schemas/frame-vectors.json").read_text())
    for vector in vectors["frames"]:
        yield re.sub(r"[^A-Za-z0-9_.]+", "-", vector["name"]).strip("-"), bytes.fromhex(vector["hex"])


def header(kind, to=b"\0" * 16, frame_id=1):
    return bytes([2, kind]) + b"\x11" * 16 + to + struct.pack(">Q", frame_id)


def length_prefixed(*frames):
    return b"".join(struct.pack(">H", len(f)) + f for f in frames)


def postcard_str(text):
    data = text.encode()
    return bytes([len(data)]) + data


def schema_fields():
    fields = set()

    def walk(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "properties" and isinstance(inner, dict):
                    fields.update(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    for path in sorted((ROOT / "schemas").glob("*.schema.json")):
        walk(json.loads(path.read_text()))
    return sorted(fields)


def argument_fields():
    """Field names of the MCP tools' and the RPC's argument structs (`pub name:` lines)."""
    sources = sorted((ROOT / "ops/src").glob("*.rs")) + [
        ROOT / "node/src/fleet/tools.rs", ROOT / "mcp/src/spec_tools.rs",
        ROOT / "node/src/mapreduce/tool.rs"]
    fields = set()
    for source in sources:
        fields.update(re.findall(r"^\s+pub (\w+):", source.read_text(), re.M))
    ops = re.findall(r'^\s+\w+ = "(\w+)" \(', (ROOT / "ops/src/operation.rs").read_text(), re.M)
    return sorted(fields), sorted(set(ops))


# Numbers at the edges of f64, u64, u32 and usize, and ones that are not numbers.
EDGE_NUMBERS = ["0", "-0", "-1", "0.5", "1e300", "-1e300", "1e-300", "1e308", "4294967296",
                "18446744073709551615", "18446744073709551616", "9223372036854775808",
                "9007199254740993", "86401", "31622401", "16777217"]


def write_dict(target, tokens):
    folder = ROOT / "fuzz" / "dict"
    folder.mkdir(parents=True, exist_ok=True)
    escaped = []
    for token in tokens:
        text = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else
                       "".join(f"\\x{b:02x}" for b in c.encode()) for c in token)
        escaped.append(f'"{text}"')
    (folder / f"{target}.dict").write_text(
        "# Written by fuzz/seeds.py; libFuzzer splices these tokens into inputs.\n"
        + "\n".join(escaped) + "\n")


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

    yaml_syntax = ["---\n", "- ", ": ", "&a ", "*a", "<<: *a", "!!str ", "!!binary ", "[", "]",
                   "{", "}", "'", '"', "|\n", ">-\n", "#", "\t", "\n  ", "~", "null", "true",
                   "*/5 * * * *", "@daily", "name:web-*", "tag:", "fact:os=linux", "os:linux"]
    kdl_syntax = ["{", "}", ";", "=", "#true", "#false", "#null", "#inf", "#nan", "/-", "//",
                  "/*", "*/", 'r#"', '"#', '"""', "\\", "(t)", "0x", "1_000", "\n"]
    fields = schema_fields()
    write_dict("spec_yaml", yaml_syntax + [f"{f}: " for f in fields] + EDGE_NUMBERS)
    write_dict("spec_kdl", kdl_syntax + fields + EDGE_NUMBERS)
    write_dict("spec_selector", ["all", "name:", "tag:", "os:", "fact:", "=", ",", "&", "!",
                                 "*", "?", "[", "]", "{", "}", "\\", "\n"])
    arguments, ops = argument_fields()
    json_syntax = ["{", "}", "[", "]", ":", ",", '"', "true", "false", "null", '\\u0000',
                   '\\ud800']
    write_dict("daemon_tool_args", json_syntax + [f'"{f}":' for f in arguments]
               + [f'"{op}"' for op in ops] + ['"op":', '"args":', '"base64"', '"utf8"']
               + EDGE_NUMBERS)
    write_dict("daemon_bundle", json_syntax + ['"content":', '"signature":', '"files":',
                                               '"path":', '"text":', '"generation":',
                                               '"issuer":', '"revision":']
               + [f"{f}: " for f in fields] + yaml_syntax + EDGE_NUMBERS)

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
