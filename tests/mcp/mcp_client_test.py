"""Drives `remote-agents mcp` with the official MCP Python SDK client (2.x API).

Usage: python mcp_client_test.py BINARY [--http] [--agent-id ID] [-- extra args for `remote-agents mcp`]

Lists tools, runs exec (and a long one that must report progress), writes then reads a file,
switches the target node to plan mode and checks that a write is refused with a clear reason
and an exec runs read-only (a `touch` fails and creates nothing, a `cat` still reads). With
--agent-id every call goes to that peer through the relay instead of the local node.

By default the SDK starts the node as a stdio server. With --http the script starts
`remote-agents mcp --http 127.0.0.1:0`, reads the URL from its stderr and the bearer token from
the node's data dir (mcp-http.token), and runs the same checks twice over Streamable HTTP, with
`Authorization: Bearer <token>` on every request: once with the SDK's default negotiation (it
probes the stateless 2026-07-28 protocol) and once forcing the 2025-11-25 initialize handshake
(`mode="legacy"`). A client without the token is refused.
Prints a `N passed, N failed` line and exits non-zero when anything failed.
"""

import asyncio
import base64
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request

from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

EXPECTED_TOOLS = {
    "exec", "read_file", "write_file", "list_dir", "file_stat", "file_search", "get_info",
    "set_mode", "git_status", "git_pull", "git_commit", "git_push", "list_agents",
}

# A 64×32 solid red PNG (made with Python's zlib) for file_thumbnail.
RED_64_BY_32_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAgCAIAAAAt/+nTAAAAN0lEQVR42u3PQQkAAAgEsItz/VMYyww+hcE"
    "KLNO+FgEBAQEBAQEBAQEBAQEBAQEBAQEBAQGBqwVH+cB5rlzNGwAAAABJRU5ErkJggg=="
)

passed = 0
failed = 0


def check(condition, what):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")


def text_of(result):
    return " ".join(getattr(block, "text", "") for block in result.content)


async def exercise(session, target, agent_id, path):
    """The checks, against a ClientSession (stdio) or a Client (HTTP): both have list_tools and
    call_tool with the same shapes."""
    if agent_id:
        # The peer may still be connecting through the relay: wait for it to show up.
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            agents = await session.call_tool("list_agents", {})
            found = [a for a in agents.structured_content["agents"]
                     if agent_id in (a["agent_id"], a["name"])]
            if found:
                check(not found[0]["local"], f"list_agents shows the peer {agent_id}")
                break
            if asyncio.get_running_loop().time() > deadline:
                check(False, f"peer {agent_id} appeared in list_agents within 30 s")
                return
            await asyncio.sleep(0.05)

    listed = await session.list_tools()
    tools = {t.name: t for t in listed.tools}
    check(EXPECTED_TOOLS <= set(tools), f"tools/list has every tool ({len(tools)} listed)")
    check(tools["exec"].annotations.read_only_hint is False
          and tools["exec"].annotations.destructive_hint is True,
          "exec is annotated as not read-only and destructive")
    check(tools["read_file"].annotations.read_only_hint is True,
          "read_file is annotated read-only")
    check(all(t.input_schema.get("additionalProperties") is False for t in listed.tools),
          "every input schema rejects unknown fields")

    info = await session.call_tool("get_info", {**target})
    check(not info.is_error and info.structured_content["facts"]["os_family"],
          f"get_info answers ({text_of(info)[:60]!r}...)")
    if agent_id:
        check(agent_id in (info.structured_content["name"], info.structured_content["agent_id"]),
              f"get_info answers from the peer {agent_id}, not the local node")

    result = await session.call_tool("exec", {**target, "argv": ["echo", "hello from mcp"]})
    sc = result.structured_content or {}
    check(not result.is_error and sc.get("exit_code") == 0
          and sc.get("stdout") == "hello from mcp\n",
          f"exec echo returns stdout and exit code 0 ({sc.get('stdout')!r})")

    # exec reports progress about every second while the command runs; the notifications must
    # reach the client on every transport, and from a peer through the relay too.
    updates = []

    async def on_progress(progress, total, message):
        updates.append((progress, message))

    result = await session.call_tool("exec", {**target, "argv": ["sleep", "2.5"]},
                                     progress_callback=on_progress)
    check(not result.is_error and len(updates) >= 1,
          f"a 2.5 s exec sends progress notifications ({len(updates)} received: {updates[:1]})")

    result = await session.call_tool("write_file", {**target, "path": path, "content": "written by the python sdk\n"})
    check(not result.is_error and result.structured_content["bytes_written"] == 26,
          f"write_file writes 26 bytes ({text_of(result)[:80]!r})")
    result = await session.call_tool("read_file", {**target, "path": path})
    check(not result.is_error
          and result.structured_content["content"] == "written by the python sdk\n",
          "read_file returns what write_file wrote")

    # file_thumbnail answers with an image content block the SDK parses as ImageContent.
    png_path = path + ".png"
    result = await session.call_tool("write_file", {**target, "path": png_path,
                                                    "content": RED_64_BY_32_PNG,
                                                    "encoding": "base64"})
    check(not result.is_error, f"write_file writes a PNG ({text_of(result)[:80]!r})")
    result = await session.call_tool("file_thumbnail", {**target, "path": png_path,
                                                        "max_size": 16, "format": "png"})
    images = [block for block in result.content if getattr(block, "type", "") == "image"]
    size = None
    if images and images[0].mime_type == "image/png":
        thumbnail = base64.b64decode(images[0].data)
        size = struct.unpack(">II", thumbnail[16:24]) if thumbnail[:8] == b"\x89PNG\r\n\x1a\n" else None
    check(not result.is_error and size == (16, 8) and "64×32" in text_of(result),
          f"file_thumbnail returns a 16×8 image/png content block ({size}, {text_of(result)[:90]!r})")

    result = await session.call_tool("list_dir", {**target, "path": "/", "recursive": True})
    check(result.is_error and "recursive" in text_of(result),
          "an unknown argument is an isError result naming it")

    result = await session.call_tool("set_mode", {**target, "mode": "plan", "ttl_secs": 600, "reason": "python sdk test"})
    check(not result.is_error and result.structured_content["effective_mode"] == "plan",
          "set_mode plan takes effect")
    result = await session.call_tool("write_file", {**target, "path": path, "content": "must not land"})
    check(result.is_error and "plan mode" in text_of(result),
          f"write_file is refused in plan mode ({text_of(result)[:90]!r})")
    # Plan mode runs commands read-only under Landlock: `touch` runs, fails, and creates nothing.
    result = await session.call_tool("exec", {**target, "argv": ["touch", path + ".exec"]})
    out = result.structured_content or {}
    check(not result.is_error and out.get("exit_code") not in (None, 0)
          and out.get("sandbox") and not os.path.exists(path + ".exec"),
          f"exec runs read-only in plan mode: touch fails and creates nothing ({text_of(result)[:120]!r})")
    result = await session.call_tool("exec", {**target, "argv": ["cat", path]})
    out = result.structured_content or {}
    check(not result.is_error and out.get("exit_code") == 0
          and out.get("stdout") == "written by the python sdk\n",
          f"exec still reads in plan mode ({text_of(result)[:120]!r})")
    result = await session.call_tool("read_file", {**target, "path": path})
    check(not result.is_error
          and result.structured_content["content"] == "written by the python sdk\n",
          "reads still work in plan mode and the refused write did not land")
    info = await session.call_tool("get_info", {**target})
    check(any("overridden to plan" in d for d in info.structured_content["drift"]),
          "the override is reported as drift")
    result = await session.call_tool("set_mode", {**target, "mode": "edit"})
    check(not result.is_error and result.structured_content["effective_mode"] == "edit",
          "set_mode back to the configured mode clears the override")


async def start_http_server(binary, extra, env):
    """Starts `remote-agents mcp --http 127.0.0.1:0` and returns (process, url) once it listens."""
    process = await asyncio.create_subprocess_exec(
        binary, "mcp", "--http", "127.0.0.1:0", *extra,
        env=env, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    prefix = "remote-agents: mcp http listening on "

    async def read_url():
        while True:
            line = await process.stderr.readline()
            if not line:
                raise RuntimeError("remote-agents mcp --http exited before listening")
            text = line.decode(errors="replace").rstrip()
            if text.startswith(prefix):
                return text[len(prefix):]
            print(f"server: {text}", file=sys.stderr)

    url = await asyncio.wait_for(read_url(), timeout=30)

    async def drain():
        # Keeps the pipe from filling up (and blocking the server) while the checks run.
        while await process.stderr.readline():
            pass

    drainer = asyncio.get_running_loop().create_task(drain())
    return process, url, drainer


async def main():
    args = sys.argv[1:]
    if not args:
        print("usage: mcp_client_test.py BINARY [--http] [--agent-id ID] [-- mcp args]")
        return 2
    binary = args.pop(0)
    agent_id = None
    http = False
    extra = []
    while args:
        arg = args.pop(0)
        if arg == "--agent-id":
            agent_id = args.pop(0)
        elif arg == "--http":
            http = True
        elif arg == "--":
            extra = args
            break
    work = tempfile.mkdtemp(prefix="ra-mcp-")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    if not any(a.startswith("--data-dir") for a in extra):
        extra = ["--data-dir", os.path.join(work, "data")] + extra
    target = {"agent_id": agent_id} if agent_id else {}
    # Files go under the temp dir, which is an allowed root by default on the target node.
    path = os.path.join(tempfile.gettempdir(), f"ra-mcp-{os.getpid()}-{os.urandom(4).hex()}.txt")

    if not http:
        params = StdioServerParameters(command=binary, args=["mcp", *extra], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await exercise(session, target, agent_id, path)
    else:
        process, url, _drainer = await start_http_server(binary, extra, env)
        print(f"server: {url}")
        data_dir = extra[extra.index("--data-dir") + 1]
        with open(os.path.join(data_dir, "mcp-http.token")) as f:
            headers = {"Authorization": f"Bearer {f.read().strip()}"}
        try:
            try:
                async def without_token():
                    async with Client(url, mode="legacy") as client:
                        await client.list_tools()
                await asyncio.wait_for(without_token(), timeout=20)
                check(False, "a client without the bearer token is refused")
            except Exception as e:  # noqa: BLE001 - the SDK reports the 401 as an MCPError
                check(not isinstance(e, asyncio.TimeoutError),
                      f"a client without the bearer token is refused ({repr(e)[:120]})")
            # What the SDK saw: the HTTP status, without and with a wrong token.
            for authorization in (None, "Bearer wrong"):
                request = urllib.request.Request(url, method="POST", data=b"{}", headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json, text/event-stream",
                    **({"Authorization": authorization} if authorization else {})})
                try:
                    status = urllib.request.urlopen(request, timeout=20).status
                except urllib.error.HTTPError as e:
                    status = e.code
                check(status == 401, f"a request with authorization {authorization!r} gets 401 ({status})")
            for mode, expect_version in (("auto", None), ("legacy", "2025-11-25")):
                async with create_mcp_http_client(headers=headers) as http:
                    transport = streamable_http_client(url, http_client=http)
                    async with Client(transport, mode=mode) as client:
                        version = client.protocol_version
                        check(expect_version is None or version == expect_version,
                              f"mode={mode}: negotiated protocol {version}")
                        await exercise(client, target, agent_id, f"{path}.{mode}")
        finally:
            process.terminate()
            code = await process.wait()
        check(code == 0, f"remote-agents mcp --http stops cleanly on SIGTERM (exit {code})")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
