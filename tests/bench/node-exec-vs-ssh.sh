#!/usr/bin/env bash
# Benchmark: `exec true` on a peer through the relay vs `ssh 127.0.0.1 true` over a reused
# ControlMaster connection. Starts a throwaway sshd on 127.0.0.1 (own host key, own authorized
# key file, nothing in ~/.ssh is touched; creates a `ra-bench` user with /bin/sh if missing) and runs the node-bench program against it.
# Needs openssh-server (`apt-get install openssh-server`). Not part of test.sh: benchmarks print
# ratios, they do not gate.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remote-agents/target}"
profile="${PROFILE:-debug}"
cargo build $([ "$profile" = release ] && echo --release) -p remote-agents -p remote-agents-tests --bin remote-agents --bin node-bench
state="$(mktemp -d)"
trap 'kill "$(cat "$state/sshd.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$state"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$state/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$state/client_key"
cp "$state/client_key.pub" "$state/authorized_keys"
chmod 600 "$state/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$state/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $state/host_key
AuthorizedKeysFile $state/authorized_keys
PidFile $state/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
EOF
# A plain user whose shell is /bin/sh: root's login environment here makes every ssh command
# several times slower, which would flatter the ratio.
user=ra-bench
id "$user" >/dev/null 2>&1 || useradd --no-create-home --home-dir /tmp --shell /bin/sh "$user"
# "*" = no password but not locked: sshd without PAM refuses locked ("!") accounts.
usermod -p "*" "$user"
chmod 755 "$state"; chmod 644 "$state/authorized_keys"
mkdir -p /run/sshd
/usr/sbin/sshd -f "$state/sshd_config" -E "$state/sshd.log"
for _ in $(seq 50); do [ -s "$state/sshd.pid" ] && break; sleep 0.1; done
"$CARGO_TARGET_DIR/$profile/node-bench" --calls "${CALLS:-200}" \
  --ssh "$user@127.0.0.1 -p $port -i $state/client_key"
