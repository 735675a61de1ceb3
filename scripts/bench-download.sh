#!/usr/bin/env bash
# Download benchmark: one file (default 1 GiB) fetched by one peer from 1 sharer and from 3
# sharers, with this project (3-node tracker cluster + peer daemons) and, in the same run, with
# aria2c + opentracker (the anchor: a BitTorrent client and tracker) on the same file, with the
# same piece size (512 KiB), all on 127.0.0.1. Prints a markdown report with medians and ratios.
#
#   scripts/bench-download.sh                 # 1 GiB, 3 runs of each
#   SIZE_MIB=256 RUNS=5 scripts/bench-download.sh
#   BIN=/path/to/other/build NO_BUILD=1 scripts/bench-download.sh   # binaries built elsewhere
#
# Needs aria2c, opentracker and mktorrent (Debian: apt-get install aria2 opentracker mktorrent).
# Every figure is a whole process, start to exit: `peer download` (blocking until the file is
# complete, whole-file SHA-1 checked and renamed) against `aria2c --seed-time=0` (exits when
# the file is complete). Everything is in the page cache: this measures the software, not disks.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
for tool in aria2c opentracker mktorrent; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install aria2 opentracker mktorrent)" >&2; exit 2; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p tracker-node -p peer
BIN=${BIN:-$PWD/target/release}
WORK=$(mktemp -d -t p2p-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

BASE=$((20000 + RANDOM % 20000))
cat >"$WORK/cluster.toml" <<EOF
[cluster]
heartbeat_ms = 50
election_timeout_ms = [150, 300]
EOF
for id in 1 2 3; do
  cat >>"$WORK/cluster.toml" <<EOF

[[node]]
id = $id
api = "127.0.0.1:$((BASE + id))"
raft = "127.0.0.1:$((BASE + 10 + id))"
data_dir = "$WORK/node-$id"
EOF
done
export PEER_CLUSTER=$WORK/cluster.toml
for id in 1 2 3; do
  "$BIN/tracker-node" run --config "$WORK/cluster.toml" --id $id 2>"$WORK/node-$id.log" & PIDS+=($!)
done

peer() { local who=$1; shift; PEER_HOME=$WORK/$who "$BIN/peer" "$@"; }
start_daemon() {
  PEER_HOME=$WORK/$1 "$BIN/peer" daemon >"$WORK/$1.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 1 200); do [ -S "$WORK/$1/daemon.sock" ] && return 0; sleep 0.05; done
  echo "daemon $1 did not start" >&2; exit 1
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "preparing a ${SIZE_MIB} MiB file and its torrent..." >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/file.bin"
SHA=$(sha1sum "$WORK/file.bin" | cut -d' ' -f1)
mktorrent -l 19 -a "http://127.0.0.1:$((BASE + 50))/announce" -o "$WORK/file.torrent" "$WORK/file.bin" >/dev/null

# This project: alice owns the group and shares; s2, s3 join and share the same bytes; bob fetches.
for who in alice s2 s3 bob; do start_daemon $who; done
for who in alice s2 s3 bob; do
  echo pw-$who | peer $who --timeout 20 register $who --password-stdin >/dev/null
  echo pw-$who | peer $who login $who --password-stdin >/dev/null
done
peer alice create-group bench >/dev/null
for who in s2 s3 bob; do peer $who join-group bench >/dev/null; peer alice accept-request bench $who >/dev/null; done
mkdir -p "$WORK/share-alice" && ln "$WORK/file.bin" "$WORK/share-alice/file.bin"
peer alice upload "$WORK/share-alice/file.bin" bench >/dev/null

ours() {
  local dest=$WORK/dl-ours-$1
  rm -rf "$dest"; mkdir -p "$dest"
  local t0=$(($(date +%s%N) / 1000000))
  peer bob download bench file.bin "$dest" >/dev/null
  local t1=$(($(date +%s%N) / 1000000))
  [ "$(sha1sum "$dest/file.bin" | cut -d' ' -f1)" = "$SHA" ] || { echo "ours: SHA-1 mismatch" >&2; exit 1; }
  peer bob stop-share bench file.bin >/dev/null
  rm -rf "$dest"
  MS=$((t1 - t0))
}

# The anchor: opentracker on loopback, aria2c seeders, one aria2c leecher.
# Debian's opentracker serves only whitelisted torrents; it chroots to -d, so the list's path is
# given inside that directory.
mkdir -p "$WORK/ot" && chmod 755 "$WORK" "$WORK/ot"
aria2c -S "$WORK/file.torrent" | awk '/Info Hash/ {print $3}' >"$WORK/ot/whitelist"
opentracker -i 127.0.0.1 -p $((BASE + 50)) -P $((BASE + 50)) -d "$WORK/ot" -w /whitelist >"$WORK/opentracker.log" 2>&1 & PIDS+=($!)
ARIA_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
  --check-certificate=false --console-log-level=warn --summary-interval=0 --download-result=hide
  --file-allocation=falloc --bt-max-peers=0)
aria_seed() {
  local n=$1
  mkdir -p "$WORK/seed-$n" && ln -f "$WORK/file.bin" "$WORK/seed-$n/file.bin"
  aria2c "${ARIA_COMMON[@]}" --dir="$WORK/seed-$n" --listen-port=$((BASE + 60 + n)) \
    --bt-seed-unverified=true --check-integrity=false --seed-ratio=0.0 \
    "$WORK/file.torrent" >"$WORK/seed-$n.log" 2>&1 & PIDS+=($!)
  SEEDERS+=($!)
}
theirs() {
  local dest=$WORK/dl-aria-$1
  rm -rf "$dest"; mkdir -p "$dest"
  local t0=$(($(date +%s%N) / 1000000))
  aria2c "${ARIA_COMMON[@]}" --dir="$dest" --listen-port=$((BASE + 70)) --seed-time=0 \
    "$WORK/file.torrent" >"$WORK/leech.log" 2>&1 || { echo "aria2c leecher failed:" >&2; cat "$WORK/leech.log" "$WORK"/seed-*.log >&2; exit 1; }
  local t1=$(($(date +%s%N) / 1000000))
  [ "$(sha1sum "$dest/file.bin" | cut -d' ' -f1)" = "$SHA" ] || { echo "aria2c: SHA-1 mismatch" >&2; exit 1; }
  rm -rf "$dest"
  MS=$((t1 - t0))
}
SEEDERS=()
aria_seed 1
sleep 1 # let the seeder announce once before the first leecher asks

declare -A RESULT
measure() { # label sharers
  local label=$1 ours_ms=() theirs_ms=() ratios=()
  for r in $(seq 1 "$RUNS"); do
    local a b
    ours "$label-$r"; a=$MS
    theirs "$label-$r"; b=$MS
    ours_ms+=("$a"); theirs_ms+=("$b")
    ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')")
    echo "  $label run $r: ours ${a} ms, aria2c ${b} ms" >&2
  done
  RESULT[$label]="$(printf '%s\n' "${ours_ms[@]}" | median) $(printf '%s\n' "${theirs_ms[@]}" | median) $(printf '%s\n' "${ratios[@]}" | median) $(printf '%s\n' "${ours_ms[@]}" | sort -n | tr '\n' ' ')/ $(printf '%s\n' "${theirs_ms[@]}" | sort -n | tr '\n' ' ')"
}

echo "1 sharer..." >&2
measure one
echo "3 sharers..." >&2
for who in s2 s3; do
  mkdir -p "$WORK/share-$who" && ln "$WORK/file.bin" "$WORK/share-$who/file.bin"
  peer $who upload "$WORK/share-$who/file.bin" bench >/dev/null
done
aria_seed 2; aria_seed 3
sleep 1
measure three

echo "## Download of a ${SIZE_MIB} MiB file on 127.0.0.1 ($(nproc) cores), ${RUNS} runs each, whole-process wall time"
echo
echo "| sharers | this project, median | aria2c + opentracker, median | ratio (ours/aria2c), median of pairs | all runs ms (ours / aria2c) |"
echo "|---|---|---|---|---|"
for label in one three; do
  read -r o t ratio rest <<<"${RESULT[$label]}"
  n=$([ $label = one ] && echo 1 || echo 3)
  echo "| $n | $o ms | $t ms | $ratio | $rest |"
done
