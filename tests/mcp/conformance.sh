#!/usr/bin/env bash
# Runs the official MCP conformance suite (npm @modelcontextprotocol/conformance) against
# `remote-agents mcp --http` on a free loopback port.
#
# Usage: tests/mcp/conformance.sh BINARY [extra args for `conformance server`, e.g. --scenario X]
#
# The suite and a Node 22 binary (it refuses Node 20) are pinned by conformance/package-lock.json
# and installed with `npm ci` under ~/.cache/remote-agents/conformance, again only when the lock
# file changes. conformance/expected-failures.yml lists every scenario the product does not serve,
# each with its reason; the suite exits non-zero on any other failure and on a listed scenario
# that starts passing (a stale baseline).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
binary=${1:?usage: conformance.sh BINARY [conformance server args]}
shift
cache="${XDG_CACHE_HOME:-$HOME/.cache}/remote-agents/conformance"

mkdir -p "$cache"
if ! cmp -s "$here/conformance/package-lock.json" "$cache/package-lock.json" \
  || [ ! -x "$cache/node_modules/.bin/node" ]; then
  cp "$here/conformance/package.json" "$here/conformance/package-lock.json" "$cache/"
  (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error)
fi
node="$cache/node_modules/.bin/node"
suite="$cache/node_modules/@modelcontextprotocol/conformance/dist/index.js"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh local-only node in edit mode with its own data dir; port 0 and the stderr line give
# the URL. The suite's client cannot send an Authorization header (its `server` command takes
# only --url), so this node runs without the bearer token: --http-insecure-no-auth, for test
# suites only. Test the token itself in tests/tests/mcp_http.rs and mcp_client_test.py.
RUST_LOG=${RUST_LOG:-warn} "$binary" mcp --http 127.0.0.1:0 --http-insecure-no-auth \
  --data-dir "$work/data" \
  2>"$work/server.log" &
server_pid=$!
url=
for _ in $(seq 1 200); do
  url=$(sed -n 's/^remote-agents: mcp http listening on //p' "$work/server.log" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$url" ]; then
  echo "conformance: remote-agents mcp --http did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
echo "conformance: suite $("$node" "$suite" --version) on node $("$node" --version) against $url"

# --suite all: the pending scenarios too (server-sse-polling, json-schema-2020-12).
status=0
"$node" "$suite" server --url "$url" --suite all \
  --expected-failures "$here/conformance/expected-failures.yml" \
  --output-dir "$work/results" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "conformance: server log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
