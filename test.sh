#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every check and test.
# CI (.ci/run) calls exactly this. Build artifacts live outside the clone so repeated runs are fast.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remote-agents/target}"
export CARGO_TERM_COLOR=never
step() { printf '\n=== %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "rust tests"
cargo test --workspace --locked

# --- The node's MCP server (issue 4) driven by the official MCP Python SDK client -----------------
# A virtualenv under ~/.cache keeps the install fast on reruns; `mcp` 2.x is the SDK's current API.
step "node: MCP Python SDK client against remote-agents mcp (local node)"
(
  venv="$HOME/.cache/remote-agents/venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c 'import mcp' 2>/dev/null \
    || "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2,<3'
  "$venv/bin/python" tests/mcp/mcp_client_test.py "$CARGO_TARGET_DIR/debug/remote-agents"
)

# --- Worker relay (worker/, issue 8): the Cloudflare Worker under workerd, offline ----------------
# npm ci installs workerd and esbuild from the npm registry (no account, no internet beyond it).
step "worker: npm ci"
(cd worker && npm ci --prefer-offline --no-audit --no-fund --cache "$HOME/.npm")

step "worker: typecheck"
(cd worker && npm run --silent typecheck)

step "worker: unit tests (frame vectors) and its own tests under workerd"
(cd worker && npm test)

step "worker: relay conformance suite against the local Worker"
(
  worker_state="$(mktemp -d)"
  trap 'worker/scripts/serve-local.sh stop "$worker_state"; rm -rf "$worker_state"' EXIT
  worker_port="$(worker/scripts/serve-local.sh start "$worker_state")"
  REMOTE_AGENTS_TEST_RELAY_URL="ws://127.0.0.1:$worker_port" \
    cargo test --locked -p remote-agents-tests --test e2e relay_conformance
)
