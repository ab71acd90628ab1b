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
