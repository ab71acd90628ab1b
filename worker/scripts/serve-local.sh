#!/usr/bin/env bash
# Runs the Worker relay locally under workerd (no Cloudflare account, no internet).
#   scripts/serve-local.sh start STATE_DIR   bundle, start on a free 127.0.0.1 port, wait for
#                                            /healthz; prints the port and writes STATE_DIR/port
#   scripts/serve-local.sh stop STATE_DIR    SIGTERM to its process group, SIGKILL after 3 s
# Starts and stops on one STATE_DIR are serialised with flock(1) on STATE_DIR/lock.
# STATE_DIR keeps the Durable Object storage (retained blobs survive a stop/start), the pid, the
# port and workerd.log. PORT=N reuses a given port (a restart keeps the URL); RELAY_KEY and the
# limits of src/limits.ts are read from the environment.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:?usage: serve-local.sh start|stop STATE_DIR}"
state="${2:?usage: serve-local.sh start|stop STATE_DIR}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
# One start or stop at a time per STATE_DIR: two tests restarting a shared Worker at once would
# otherwise both bind PORT and one would die with "Address already in use".
exec 9>"$state/lock"
flock 9

stop() {
  [[ -f "$state/pid" ]] || return 0
  local pid
  pid="$(cat "$state/pid")"
  rm -f "$state/pid"
  # workerd runs in its own session (setsid), so its process group id is its pid.
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

case "$command" in
  stop)
    stop
    ;;
  start)
    stop
    "$here/node_modules/.bin/esbuild" "$here/src/index.ts" --bundle --format=esm \
      --platform=neutral --target=es2022 '--external:cloudflare:*' \
      --loader:.html=text --loader:.css=text --loader:.js=text \
      --outfile="$here/dist/worker.js" --log-level=warning
    mkdir -p "$state/storage"
    rm -f "$state/control" "$state/port"
    launch() {
      # Created here, not only by the background job's redirection, so the wait loop below never
      # reads a control file that does not exist yet (it would end the script under set -e).
      : >"$state/control"
      # The lock descriptor stays with this script, not with workerd.
      setsid "$here/node_modules/.bin/workerd" serve "$here/workerd.capnp" \
        -s "http=127.0.0.1:${PORT:-0}" -d "room-storage=$state/storage" --control-fd=3 \
        3>"$state/control" 9>&- >"$state/workerd.log" 2>&1 </dev/null &
      echo $! >"$state/pid"
    }
    launch
    # workerd reports the port it bound on the control descriptor; then /healthz must answer.
    port=""
    for _ in $(seq 200); do
      if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
        # A fixed PORT can be held for a moment by another process's outgoing connection (it is
        # in the ephemeral range); try again while the 10 s budget lasts.
        if [[ -n "${PORT:-}" ]] && grep -q "Address already in use" "$state/workerd.log"; then
          sleep 0.1
          launch
          continue
        fi
        echo "workerd exited; log:" >&2
        cat "$state/workerd.log" >&2
        exit 1
      fi
      port="$(sed -n 's/.*"socket":"http","port":\([0-9]*\).*/\1/p' "$state/control" | head -n1)"
      if [[ -n "$port" ]] && node -e '
          fetch(`http://127.0.0.1:${process.argv[1]}/healthz`)
            .then(async (r) => process.exit(r.ok && (await r.text()) === "ok" ? 0 : 1))
            .catch(() => process.exit(1));' "$port"; then
        echo "$port" >"$state/port"
        echo "$port"
        exit 0
      fi
      sleep 0.05
    done
    echo "workerd did not become ready within 10 s; log:" >&2
    cat "$state/workerd.log" >&2
    stop
    exit 1
    ;;
  *)
    echo "usage: serve-local.sh start|stop STATE_DIR" >&2
    exit 2
    ;;
esac
