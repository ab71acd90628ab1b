"""The MCP desired-state tools driven by the official MCP Python SDK (2.x) client.

Starts a relay (remote-agents-relay), one headless node `web-1`, a git spec repository, and
`remote-agents mcp --spec-repo REPO` as the SDK's stdio server; then, as a model would: changes
web-1's mode with spec_edit (a git commit appears), plans with spec_plan, applies with
spec_apply, and checks with fleet_status that web-1 converged.

usage: mcp_spec_test.py BIN_DIR   (the folder holding remote-agents and remote-agents-relay)
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

passed = 0
failed = 0

FLEET = """apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: python-sdk-fleet}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: web-1, tags: [web]}
"""


def check(condition, what):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok: {what}")
    else:
        failed += 1
        print(f"FAILED: {what}")


def git(repo, *args):
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
         "-c", "commit.gpgsign=false", "-C", repo, *args],
        check=True, capture_output=True, text=True).stdout.strip()


def start_relay(bin_dir, work):
    out = open(os.path.join(work, "relay.out"), "w+")
    relay = subprocess.Popen([os.path.join(bin_dir, "remote-agents-relay"), "--bind", "127.0.0.1:0"],
                             stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        out.seek(0)
        for line in out.read().splitlines():
            if line.startswith("listening on "):
                return relay, "ws://" + line[len("listening on "):].strip()
        time.sleep(0.1)
    relay.kill()
    raise RuntimeError("the relay did not start")


async def plan_until_web_is_seen(session):
    deadline = time.time() + 30
    while True:
        result = await session.call_tool("spec_plan", {})
        content = result.structured_content or {}
        if not result.is_error and "web-1" in content.get("live_hosts", {}):
            return content
        if time.time() > deadline:
            raise RuntimeError(f"spec_plan never saw web-1: {result}")
        await asyncio.sleep(0.2)


async def exercise(session, repo):
    tools = {t.name: t for t in (await session.list_tools()).tools}
    for name in ("spec_get", "spec_plan", "fleet_status"):
        check(name in tools and tools[name].annotations.read_only_hint is True,
              f"{name} is listed as read-only")
    for name in ("spec_edit", "spec_apply"):
        check(name in tools and tools[name].annotations.read_only_hint is False,
              f"{name} is listed as writing")

    first = await plan_until_web_is_seen(session)
    result = await session.call_tool("spec_apply", {
        "plan_id": first["plan_id"], "plan_hash": first["plan_hash"], "wait_secs": 20})
    check(not result.is_error and result.structured_content["converged"],
          f"the initial spec applies and web-1 converges: {result.structured_content}")

    # The spec puts every host it does not name, this controller too, in plan mode, where
    # spec_edit (a commit on this machine's disk) is refused; an operator lifts it to edit.
    before = git(repo, "rev-parse", "HEAD")
    result = await session.call_tool("spec_edit", {
        "change": {"op": "set_mode", "host": "web-1", "mode": "edit"}})
    check(result.is_error and "plan mode" in str(result.content)
          and git(repo, "rev-parse", "HEAD") == before,
          f"spec_edit is refused while the controller is in plan mode: {result.content}")
    result = await session.call_tool("set_mode", {"mode": "edit"})
    check(not result.is_error, f"set_mode edit lifts the controller: {result.content}")

    result = await session.call_tool("spec_edit", {
        "change": {"op": "set_mode", "host": "web-1", "mode": "edit"}})
    check(not result.is_error, f"spec_edit sets web-1's mode: {result.content}")
    commit = result.structured_content["commit"]
    check(git(repo, "rev-parse", "HEAD") == commit != before,
          "spec_edit made a git commit on the checked-out branch")
    check("mode: edit" in git(repo, "show", "HEAD:fleet.yaml"), "the commit holds the new mode")

    plan = (await session.call_tool("spec_plan", {})).structured_content
    check(plan["next_generation"] == 2 and "web-1" in plan["text"],
          f"spec_plan shows the change: {plan['text']!r}")
    altered = await session.call_tool("spec_apply", {
        "plan_id": plan["plan_id"], "plan_hash": "0" * 64})
    check(altered.is_error, "an altered plan hash is refused")
    result = await session.call_tool("spec_apply", {
        "plan_id": plan["plan_id"], "plan_hash": plan["plan_hash"], "wait_secs": 20})
    check(not result.is_error and result.structured_content["generation"] == 2
          and result.structured_content["converged"],
          f"spec_apply publishes generation 2: {result.structured_content}")

    status = (await session.call_tool("fleet_status", {"target": "web"})).structured_content
    web = [h for h in status["hosts"] if h["host"] == "web-1"]
    check(len(web) == 1 and web[0]["mode"] == "edit" and web[0]["observed_generation"] == 2
          and web[0]["sync"] == "Synced",
          f"fleet_status: web-1 converged to edit mode: {status['summary']}")

    resource = await session.read_resource("fleet://observed/hosts/web-1")
    observed = json.loads(resource.contents[0].text)
    check(observed["mode"] == "edit", "resource fleet://observed/hosts/web-1 shows edit mode")
    resource = await session.read_resource("fleet://desired")
    check(json.loads(resource.contents[0].text)["generation"] == 2,
          "resource fleet://desired is generation 2")


async def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    bin_dir = sys.argv[1]
    work = tempfile.mkdtemp(prefix="ra-mcp-spec-")
    repo = os.path.join(work, "fleet-repo")
    os.makedirs(repo)
    git(repo, "init", "-q", "-b", "main")
    with open(os.path.join(repo, "fleet.yaml"), "w") as f:
        f.write(FLEET)
    git(repo, "add", "fleet.yaml")
    git(repo, "commit", "-q", "-m", "initial fleet")

    relay, url = start_relay(bin_dir, work)
    net = ["--relay", url, "--room", "python-spec", "--encryption-key", secrets.token_hex(32)]
    env = dict(os.environ, RUST_LOG="warn")
    node = subprocess.Popen([os.path.join(bin_dir, "remote-agents"), "run", *net, "--name", "web-1",
                             "--data-dir", os.path.join(work, "web-1")], env=env)
    try:
        params = StdioServerParameters(
            command=os.path.join(bin_dir, "remote-agents"),
            args=["mcp", *net, "--name", "mcp-ctl", "--data-dir", os.path.join(work, "mcp"),
                  "--spec-repo", repo, "--toolsets", "all"],
            env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await exercise(session, repo)
    finally:
        node.terminate()
        relay.terminate()
        node.wait()
        relay.wait()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
