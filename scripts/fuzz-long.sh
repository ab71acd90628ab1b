#!/usr/bin/env bash
# Longer runs of the stable-toolchain fuzz targets: the spec crate (YAML reader, KDL reader,
# selector parser) and the protocol crate (frame codec, session receive path, message decoders). Usage: scripts/fuzz-long.sh [SECONDS_PER_TARGET] (default 300).
# A failure prints the seed; replay it with FUZZ_SEED=<seed>.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SECONDS="${1:-300}"
cargo test --release -p remote-agents-spec --test fuzz -- --nocapture --test-threads 3
cargo test --release -p remote-agents-protocol --test fuzz -- --nocapture --test-threads 3
