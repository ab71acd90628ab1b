#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer) of the targets in fuzz/: the YAML and KDL
# readers, selectors, the frame codec, the session receive path, message decoding, bundle
# decoding, MCP tool arguments and the relay's frame handling. On the stable toolchain
# (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags).
#
#   scripts/fuzz-cargo.sh                 build every target, run each for 10 s (FUZZ_CARGO_SECONDS)
#   scripts/fuzz-cargo.sh --long 3600     the total time split evenly over the targets, one after
#                                         the other
#   scripts/fuzz-cargo.sh --targets a,b   only these targets (with either mode)
#
# Every mode ends with a table per target: executions, executions per second, coverage (cov:
# edges, ft: features), corpus size and the result. Any crash, panic, leak, timeout or
# out-of-memory fails the run (after every target has had its turn) and names the reproducer
# under fuzz/artifacts/<target>/; replay it with `cargo fuzz run <target> <file>` (with
# RUSTC_BOOTSTRAP=1), fix it, and add it to fuzz/corpus/<target>/.
#
# The checked-in seeds (fuzz/corpus/<target>) and dictionaries (fuzz/dict/<target>.dict), both
# written by fuzz/seeds.py, are only read; what the fuzzer finds accumulates in
# ~/.cache/remote-agents/fuzz-corpus/<target>, so later runs start from there.
#
# FUZZ_SANITIZER=none builds without AddressSanitizer, and FUZZ_CODEGEN_UNITS=16 splits codegen
# (cargo-fuzz's default is 1): both make the cold build faster, and find less or run slower;
# every Rust crate here forbids unsafe code, so ASan mostly guards the C dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/remote-agents/fuzz-target}"
export CARGO_TERM_COLOR=never
work="${FUZZ_CORPUS_DIR:-$HOME/.cache/remote-agents/fuzz-corpus}"
sanitizer="${FUZZ_SANITIZER:-address}"
# The same flags for build and run, or `cargo fuzz run` rebuilds.
flags=(-s "$sanitizer")
[ -z "${FUZZ_CODEGEN_UNITS:-}" ] || flags+=(--codegen-units "$FUZZ_CODEGEN_UNITS")
total=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --long) total="${2:?--long needs a number of seconds}"; shift 2 ;;
    --targets) only="${2:?--targets needs a comma-separated list}"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "fuzz-cargo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

if [ -n "$only" ]; then
  IFS=, read -r -a targets <<<"$only"
else
  mapfile -t targets < <(cargo fuzz list)
fi
if [ -n "$total" ]; then
  seconds=$(( total / ${#targets[@]} ))
  [ "$seconds" -ge 1 ] || seconds=1
else
  seconds="${FUZZ_CARGO_SECONDS:-10}"
fi

build_started=$(date +%s)
if [ -n "$only" ]; then
  for target in "${targets[@]}"; do
    cargo fuzz build "${flags[@]}" "$target"
  done
else
  cargo fuzz build "${flags[@]}" # one cargo build: the targets compile in parallel
fi
echo "built ${#targets[@]} targets in $(( $(date +%s) - build_started )) s (${flags[*]})"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  echo "fuzzing $target for $seconds s"
  dictionary=()
  [ ! -f "fuzz/dict/$target.dict" ] || dictionary=(-dict="fuzz/dict/$target.dict")
  # -timeout: one input running this long is a hang; -rss_limit_mb: libFuzzer's default, said
  # out loud (a parser that needs more for a few KB of input is a bug).
  if cargo fuzz run "${flags[@]}" "$target" "$work/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      ${dictionary[@]+"${dictionary[@]}"} \
      >"$logs/$target.log" 2>&1; then
    echo ok >"$logs/$target.result"
  else
    failed+=("$target")
    echo FAILED >"$logs/$target.result"
    # The crash report: libFuzzer's summary and the reproducer it wrote.
    grep -E 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY|Test unit written|==[0-9]+==' \
      "$logs/$target.log" | head -20 || true
  fi
done

printf '\n%-18s %8s %12s %10s %8s %8s %8s %10s  %s\n' \
  target seconds execs exec/s cov ft corpus peak_mb result
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  # The last status line (`#N DONE cov: X ft: Y corp: Z/…`) holds the final figures.
  status=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1 || true)
  field() { sed -n "s/.* $1: \([0-9]*\).*/\1/p" <<<"$status"; }
  printf '%-18s %8s %12s %10s %8s %8s %8s %10s  %s\n' "$target" "$seconds" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(field cov)" "$(field ft)" "$(find "$work/$target" -type f | wc -l)" \
    "$(stat peak_rss_mb)" "$(cat "$logs/$target.result")"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (reproducers under fuzz/artifacts/)" >&2
  exit 1
fi
