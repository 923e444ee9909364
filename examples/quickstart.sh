#!/usr/bin/env bash
# zomg quickstart: from a fresh Debian 12 machine to a running box, in one command.
#
#   sudo bash examples/quickstart.sh
#
# Installs the system packages, builds zomg, starts zomg-server in the background, builds
# the default base (box-base, Debian bookworm via debootstrap; a few minutes the first
# time), creates a first box and runs commands in it. Safe to run again: every step is
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${ZOMG_DATA_DIR:-/var/lib/zomg}
LOG=${ZOMG_SERVER_LOG:-$DATA_DIR/server.log}
BIN=${ZOMG_BIN_DIR:-/usr/local/bin}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "quickstart needs root (btrfs, loop devices, runc): run it with sudo" >&2
  exit 1
fi

say "System packages"
packages=(btrfs-progs runc tini debootstrap iproute2 ca-certificates)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "all installed"
fi

say "Building zomg (release)"
cargo build --release -q -p zomg-cli -p zomg-server
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
install -m 0755 "$target/release/zomg" "$target/release/zomg-server" "$BIN/"
echo "installed $BIN/zomg and $BIN/zomg-server"

say "Starting zomg-server"
mkdir -p "$DATA_DIR"
# A server still running an earlier build (its executable was just replaced) is restarted
# on the new one; boxes keep running across server restarts.
healthy() { curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1; }
running_pid=$(ss -Hltnp 'sport = :7070' 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true)
if [ -n "$running_pid" ] && healthy &&
  [ "$(readlink "/proc/$running_pid/exe")" != "$BIN/zomg-server" ]; then
  echo "restarting the server (pid $running_pid) on the new build"
  kill -TERM "$running_pid"
  for _ in $(seq 1 100); do
    kill -0 "$running_pid" 2>/dev/null || break
    sleep 0.1
  done
fi
if healthy; then
  echo "already running on http://127.0.0.1:7070"
else
  ZOMG_DATA_DIR="$DATA_DIR" nohup "$BIN/zomg-server" serve >>"$LOG" 2>&1 &
  for _ in $(seq 1 100); do
    healthy && break
    sleep 0.1
  done
  healthy || { echo "server did not start; see $LOG" >&2; exit 1; }
  echo "listening on http://127.0.0.1:7070 (log: $LOG)"
fi

say "Default base box-base"
if ZOMG_DATA_DIR="$DATA_DIR" "$BIN/zomg-server" base list | grep -q '^box-base:latest'; then
  echo "already built"
else
  ZOMG_DATA_DIR="$DATA_DIR" "$BIN/zomg-server" base bootstrap box-base
fi

say "A first box"
# zomg names the project after the git repository you stand in; the quickstart's box lives
# in the `default` project, so run the CLI from the home directory.
cd "$HOME"
export ZOMG_PROJECT=default
if "$BIN/zomg" show first >/dev/null 2>&1; then
  "$BIN/zomg" resume first >/dev/null
  echo "box first exists"
else
  "$BIN/zomg" create first
fi
"$BIN/zomg" list

say "Running code in it"
"$BIN/zomg" exec first -- bash -c 'echo "hello from $(hostname)"; uname -sr'
"$BIN/zomg" exec - -- python3 --version

cat <<'NEXT'

Next (inside a git repository zomg uses the repository's name as the project:
add -p default there, or use zomg list -a to see every project):
  zomg list                      # your boxes
  zomg show first                # everything about one box
  zomg exec first -- ls /        # run a command (exit code passes through)
  zomg console first             # a login shell
  zomg stop first; zomg resume first
  zomg rm -f first               # delete it
NEXT
