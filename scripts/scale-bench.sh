#!/usr/bin/env bash
# Issue 19's figures for 10,000 nodes, in one run on this machine (not part of ./test.sh):
#   1. reconnect-bench: 10,000 nodes in one room back after a relay restart (target <= 10 s) and
#      the relay frames per reconnected node (target <= 3);
#   2. fanout-bench: fan-out of `exec true` to 10,000 full simulated nodes against the process
#      spawn floor measured in the same run (target <= 2x);
#   3. apply-bench: a signed desired-state apply to 10,000 nodes against the same fan-out with a
#      trivial request (target <= 3x).
# Each part starts its own relay and nodes (the simulated nodes keep their stores in /dev/shm),
# one after the other, so they do not share the two cores.
#
#   scripts/scale-bench.sh [NODES]      NODES defaults to 10000; needs ~8 GiB of free memory
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remote-agents/target}"
cargo build --release --locked -p remote-agents-tests \
  --bin reconnect-bench --bin fanout-bench --bin apply-bench --bin sim-nodes >&2
bin="$CARGO_TARGET_DIR/release"
echo "== scale-bench: $nodes nodes, $(nproc) cores, $(date -u +%FT%TZ)"
echo "== 1. reconnect after a relay restart"
"$bin/reconnect-bench" --nodes "$nodes" --room-size "$nodes"
echo "== 2. fan-out exec true"
"$bin/fanout-bench" --nodes "$nodes" --repeat 2 2> >(grep -v "nodes connected after" >&2)
echo "== 3. apply"
"$bin/apply-bench" --nodes "$nodes" --repeat 2 --idle-secs 15 2> >(grep -v "nodes connected after" >&2)
