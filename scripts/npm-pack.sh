#!/usr/bin/env bash
# Builds the npm packages for the platform this runs on: the main package `remote-agents` (the
# JS shim, npm/remote-agents) and `remote-agents-<os>-<cpu>` with this machine's binaries
# (stripped), versions taken from the workspace Cargo.toml. The other platforms' packages are
# built the same way on their own machines by .github/workflows/npm-release.yml.
#
#   scripts/npm-pack.sh [--bin-dir DIR] [--out DIR]
#     --bin-dir  where remote-agents, fleetctl and remote-agents-relay are (default: cargo build
#                --release into $CARGO_TARGET_DIR or target/, then its release folder)
#     --out      where the two .tgz files go (default: target/npm)
# Prints the paths of the two tarballs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="" out="target/npm"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "npm-pack.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  cargo build --release --locked -p remote-agents -p remote-agents-relay --bins
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
[ -n "$version" ] || { echo "npm-pack.sh: no version in the workspace Cargo.toml" >&2; exit 2; }
# Node's names for this machine, which the shim looks up at run time.
read -r os cpu < <(node -e 'console.log(process.platform, process.arch)')
platform_pkg="remote-agents-$os-$cpu"
exe=""; [ "$os" = win32 ] && exe=".exe"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# The platform package: its package.json and the three binaries.
mkdir -p "$stage/platform/bin"
for name in remote-agents fleetctl remote-agents-relay; do
  [ -x "$bin_dir/$name$exe" ] || { echo "npm-pack.sh: $bin_dir/$name$exe is missing" >&2; exit 2; }
  strip -o "$stage/platform/bin/$name$exe" "$bin_dir/$name$exe" 2>/dev/null \
    || cp "$bin_dir/$name$exe" "$stage/platform/bin/$name$exe"
done
# The main package: the shim, with every platform as an optional dependency of this version.
cp -r npm/remote-agents "$stage/main"
VERSION="$version" PLATFORM_PKG="$platform_pkg" OS="$os" CPU="$cpu" STAGE="$stage" node -e '
  const fs = require("fs");
  const { VERSION, PLATFORM_PKG, OS, CPU, STAGE } = process.env;
  const write = (file, json) => fs.writeFileSync(file, JSON.stringify(json, null, 2) + "\n");
  const platform = JSON.parse(fs.readFileSync("npm/platform/package.json", "utf8"));
  delete platform["//"];
  Object.assign(platform, { name: PLATFORM_PKG, version: VERSION, os: [OS], cpu: [CPU] });
  write(`${STAGE}/platform/package.json`, platform);
  const main = JSON.parse(fs.readFileSync(`${STAGE}/main/package.json`, "utf8"));
  delete main["//"];
  main.version = VERSION;
  const platforms = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64", "win32-x64"];
  main.optionalDependencies = Object.fromEntries(
    platforms.map((p) => [`remote-agents-${p}`, VERSION]));
  write(`${STAGE}/main/package.json`, main);
'
(cd "$stage/platform" && npm pack --silent --pack-destination "$out" >/dev/null)
(cd "$stage/main" && npm pack --silent --pack-destination "$out" >/dev/null)
echo "$out/remote-agents-$version.tgz"
echo "$out/$platform_pkg-$version.tgz"
