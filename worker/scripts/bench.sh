#!/usr/bin/env bash
# Message rate per room through the local Worker (workerd) next to the Rust relay, same run,
# same client (scripts/bench.mjs). Builds the Rust relay in release mode unless RELAY_BIN is set.
#   scripts/bench.sh [--count N] [--size BYTES] [--rounds R]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
if [[ -z "${RELAY_BIN:-}" ]]; then
  (cd "$root" && cargo build --release --locked -p remote-agents-relay >&2)
  target="${CARGO_TARGET_DIR:-$root/target}"
  RELAY_BIN="$target/release/remote-agents-relay"
fi
state="$(mktemp -d)"
relay_pid=""
cleanup() {
  "$here/scripts/serve-local.sh" stop "$state/worker" || true
  if [[ -n "$relay_pid" ]]; then kill -TERM "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true; fi
  rm -rf "$state"
}
trap cleanup EXIT

worker_port="$("$here/scripts/serve-local.sh" start "$state/worker")"
"$RELAY_BIN" --bind 127.0.0.1:0 >"$state/relay.out" 2>"$state/relay.err" &
relay_pid=$!
relay_address=""
for _ in $(seq 200); do
  relay_address="$(sed -n 's/^listening on //p' "$state/relay.out" | head -n1)"
  [[ -n "$relay_address" ]] && break
  kill -0 "$relay_pid" 2>/dev/null || { cat "$state/relay.err" >&2; exit 1; }
  sleep 0.05
done
[[ -n "$relay_address" ]] || { echo "the Rust relay did not report its address" >&2; exit 1; }

node --import tsx "$here/scripts/bench.mjs" "$@" "rust-relay=ws://$relay_address" "worker=ws://127.0.0.1:$worker_port"
