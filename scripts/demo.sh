#!/usr/bin/env bash
# The whole story on this machine, with the shipped cluster.toml (ports 7001-7003, 7101-7103):
# a three-node tracker cluster, two peers (alice and bob), the original system's workflow, and
# the tracker leader killed (SIGKILL) in the middle of bob's download. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
echo "== building (release)"
cargo build --release --quiet -p tracker-node -p peer
BIN=$ROOT/target/release
WORK=$(mktemp -d -t p2p-demo.XXXXXX)
declare -A NODE_PID=()
PEER_PIDS=()

cleanup() {
  for pid in "${PEER_PIDS[@]}" "${NODE_PID[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The shipped cluster file, with its data under the demo's temporary folder.
cp cluster.toml "$WORK/cluster.toml"
export PEER_CLUSTER=$WORK/cluster.toml

start_node() {
  "$BIN/tracker-node" run --config "$WORK/cluster.toml" --id "$1" 2>>"$WORK/node-$1.log" &
  NODE_PID[$1]=$!
}

leader() {
  "$BIN/tracker-node" status --config "$WORK/cluster.toml" --json 2>/dev/null \
    | tr '{' '\n' | grep '"role":"leader"' | sed -E 's/.*"id":([0-9]+).*/\1/' | head -n1
}

wait_leader() {
  for _ in $(seq 1 200); do
    l=$(leader || true)
    if [ -n "$l" ]; then echo "$l"; return 0; fi
    sleep 0.05
  done
  echo "no leader elected; logs in $WORK" >&2; return 1
}

echo "== starting the tracker cluster (3 nodes)"
for id in 1 2 3; do start_node "$id"; done
L=$(wait_leader)
"$BIN/tracker-node" status --config "$WORK/cluster.toml"

peer_alice() { PEER_HOME=$WORK/alice "$BIN/peer" "$@"; }
peer_bob() { PEER_HOME=$WORK/bob "$BIN/peer" "$@"; }

echo "== starting two peer daemons"
PEER_HOME=$WORK/alice "$BIN/peer" daemon >"$WORK/alice.log" 2>&1 & PEER_PIDS+=($!)
PEER_HOME=$WORK/bob "$BIN/peer" daemon >"$WORK/bob.log" 2>&1 & PEER_PIDS+=($!)
for _ in $(seq 1 100); do
  [ -S "$WORK/alice/daemon.sock" ] && [ -S "$WORK/bob/daemon.sock" ] && break
  sleep 0.05
done

echo "== a 256 MiB file to share"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$WORK/document.pdf"

echo "== alice: create_user, login, create_group, upload_file"
echo alice-pw | peer_alice register alice --password-stdin
echo alice-pw | peer_alice login alice --password-stdin
peer_alice create_group dev_team
peer_alice upload_file "$WORK/document.pdf" dev_team

echo "== bob: create_user, login, join_group; alice: list_requests, accept_request"
echo bob-pw | peer_bob register bob --password-stdin
echo bob-pw | peer_bob login bob --password-stdin
peer_bob join_group dev_team
peer_alice list_requests dev_team
peer_alice accept_request dev_team bob
peer_bob list_files dev_team

echo "== bob: download_file; the tracker leader (node $L) is killed during the download"
mkdir -p "$WORK/downloads"
peer_bob download_file dev_team document.pdf "$WORK/downloads/" --detach
kill -9 "${NODE_PID[$L]}"
wait "${NODE_PID[$L]}" 2>/dev/null || true
echo "   killed node $L (SIGKILL)"
for _ in $(seq 1 600); do
  state=$(peer_bob show_downloads --all)
  case "$state" in *"[C]"*|*"[F]"*) break ;; esac
  sleep 0.1
done
peer_bob show_downloads --all
NEW=$(wait_leader)
echo "   new leader: node $NEW"
"$BIN/tracker-node" status --config "$WORK/cluster.toml"

echo "== checking the file"
A=$(sha1sum "$WORK/document.pdf" | cut -d' ' -f1)
B=$(sha1sum "$WORK/downloads/document.pdf" | cut -d' ' -f1)
echo "   original   $A"
echo "   downloaded $B"
[ "$A" = "$B" ] || { echo "MISMATCH"; exit 1; }

echo "== the killed node restarts and catches up"
start_node "$L"
for _ in $(seq 1 200); do
  n=$("$BIN/tracker-node" status --config "$WORK/cluster.toml" --json | tr '{' '\n' | grep -c '"reachable":true' || true)
  [ "$n" -ge 3 ] && break
  sleep 0.05
done
peer_bob list_files dev_team
echo "== done: the download finished across a leader failover and the file matches"
