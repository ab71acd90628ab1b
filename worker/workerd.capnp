# The Worker relay under workerd, offline and without an account (scripts/serve-local.sh runs it).
# The socket address and the Durable Object storage folder are overridden on the command line:
#   workerd serve workerd.capnp -s http=127.0.0.1:0 -d room-storage=/some/dir --control-fd=3
# Variables come from the environment of workerd: RELAY_KEY and the limits of src/limits.ts.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .relay),
    (name = "room-storage", disk = (path = "/nonexistent-overridden-with-d", writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:0", http = (), service = "main"),
  ],
);

const relay :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "dist/worker.js"),
  ],
  compatibilityDate = "2026-04-01",
  durableObjectNamespaces = [
    (className = "Room", uniqueKey = "remote-agents-room", enableSql = true),
  ],
  # Retained blobs live on disk so a restarted relay still has every acknowledged blob.
  durableObjectStorage = (localDisk = "room-storage"),
  bindings = [
    (name = "ROOMS", durableObjectNamespace = "Room"),
    (name = "RELAY_KEY", fromEnvironment = "RELAY_KEY"),
    (name = "MAX_FRAME_BYTES", fromEnvironment = "MAX_FRAME_BYTES"),
    (name = "MAX_PEERS_PER_ROOM", fromEnvironment = "MAX_PEERS_PER_ROOM"),
    (name = "RETAINED_PER_KEY", fromEnvironment = "RETAINED_PER_KEY"),
    (name = "RETAINED_KEYS_PER_ROOM", fromEnvironment = "RETAINED_KEYS_PER_ROOM"),
    (name = "RETAINED_BYTES_PER_ROOM", fromEnvironment = "RETAINED_BYTES_PER_ROOM"),
    (name = "RETAINED_TTL_SECONDS", fromEnvironment = "RETAINED_TTL_SECONDS"),
    (name = "RATE_LIMIT_PER_SECOND", fromEnvironment = "RATE_LIMIT_PER_SECOND"),
    (name = "RATE_LIMIT_BURST", fromEnvironment = "RATE_LIMIT_BURST"),
  ],
);
