#!/usr/bin/env bash
# The npm packages as a user gets them: packs the main package and this platform's package from
# the binaries in BIN_DIR (scripts/npm-pack.sh), installs both tarballs offline into an empty
# prefix, and runs the three commands through npx and the shim: --version, then the MCP Python
# SDK client's whole check against `remote-agents mcp` over stdio (tools/list first), a SIGTERM
# to the shim that must stop the node it started, and the main package alone, which must fail
# naming the platform; install-mcp through the shim registers the shim, which then serves MCP.
#
#   tests/npm/npm_test.sh BIN_DIR PYTHON      (PYTHON: the venv with the `mcp` SDK)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin_dir="$1" python="$2"
work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
fail() { echo "npm test: $*" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
platform="$(node -e 'console.log(`${process.platform}-${process.arch}`)')"
mapfile -t tarballs < <(scripts/npm-pack.sh --bin-dir "$bin_dir" --out "$work/out")
[ "${#tarballs[@]}" = 2 ] || fail "npm-pack.sh made ${#tarballs[@]} tarballs, expected 2"

# Both tarballs, offline: the other platforms' optional packages are skipped, nothing is fetched.
mkdir "$work/prefix" && echo '{}' >"$work/prefix/package.json"
(cd "$work/prefix" && npm install --offline --no-audit --no-fund --loglevel=error "${tarballs[@]}" >/dev/null)
for name in remote-agents fleetctl remote-agents-relay; do
  got="$(cd "$work/prefix" && npx --offline "$name" --version)"
  [ "$got" = "$name $version" ] || fail "npx $name --version printed '$got', expected '$name $version'"
done
echo "ok   npx --offline remote-agents, fleetctl and remote-agents-relay --version print $version"

# The MCP server through the shim: the SDK starts `<prefix>/node_modules/.bin/remote-agents mcp`.
"$python" tests/mcp/mcp_client_test.py "$work/prefix/node_modules/.bin/remote-agents" \
  || fail "the MCP client check through the npm shim failed"

# SIGTERM to the shim reaches the node it started, which stops cleanly (exit 0), and the shim
# exits with the node's status.
shim="$work/prefix/node_modules/.bin/remote-agents"
"$shim" run --data-dir "$work/node" --name npm-shim 2>"$work/run.err" &
shim_pid=$!
pids+=("$shim_pid")
binary="$work/prefix/node_modules/remote-agents-$platform/bin/remote-agents"
deadline=$((SECONDS + 30))
# Started: the binary runs and has logged its agent id (it opened its store, after it began
# catching SIGTERM; a signal before that would test the shell's start-up, not the node).
until pgrep -f "^$binary run --data-dir $work/node" >/dev/null && grep -q 'agent_id=' "$work/run.err"; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the node never started through the shim: $(cat "$work/run.err")"
  sleep 0.1
done
kill -TERM "$shim_pid"
status=0
wait "$shim_pid" || status=$?
[ "$status" = 0 ] || fail "the shim exited with $status after SIGTERM, expected the node's clean 0"
deadline=$((SECONDS + 10))
while pgrep -f "^$binary run --data-dir $work/node" >/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the node outlived the shim's SIGTERM"
  sleep 0.1
done
echo "ok   SIGTERM to the shim stops the node, and the shim exits with its status (0)"

# install-mcp run through the shim registers the shim's script, whose path survives an npm
# upgrade (the platform package's binary path may not), and the registered command serves MCP.
HOME="$work/home" "$shim" install-mcp --client cursor --data-dir "$work/mcp-node" >/dev/null
registered="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mcpServers"]["remote-agents"]["command"])' "$work/home/.cursor/mcp.json")"
case "$registered" in
  "$work/prefix/node_modules/remote-agents/bin/remote-agents.js" | "$shim") ;;
  *) fail "install-mcp through the shim registered '$registered', expected the shim's script" ;;
esac
# Keeps stdin open until the answer to tools/list is read: EOF would end the session first.
reply="$(timeout 60 python3 - "$registered" "$work/mcp-node" <<'PY'
import json, subprocess, sys
node = subprocess.Popen([sys.argv[1], "mcp", "--data-dir", sys.argv[2]], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
for message in ({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                            "clientInfo": {"name": "npm-test", "version": "1"}}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}):
    node.stdin.write(json.dumps(message) + "\n")
    node.stdin.flush()
for line in node.stdout:
    if json.loads(line).get("id") == 2:
        print(line.strip())
        break
node.stdin.close()
node.wait()
PY
)"
case "$reply" in *'"name":"exec"'*) ;; *) fail "the registered command did not list tools: $reply" ;; esac
echo "ok   install-mcp through the shim registers $registered, which lists the tools"

# The main package alone: a clear error naming the platform, exit 1.
mkdir "$work/alone" && echo '{}' >"$work/alone/package.json"
(cd "$work/alone" && npm install --offline --no-audit --no-fund --loglevel=error "${tarballs[0]}" >/dev/null)
status=0
(cd "$work/alone" && npx --offline remote-agents --version) 2>"$work/alone.err" || status=$?
[ "$status" = 1 ] || fail "the main package alone exited $status, expected 1"
grep -q "binary package for $platform (remote-agents-$platform) is not installed" "$work/alone.err" \
  || fail "the main package alone said: $(cat "$work/alone.err")"
echo "ok   the main package alone fails naming $platform: $(cat "$work/alone.err")"
