#!/usr/bin/env bash
# Download benchmark: one random file (default 1 GiB) in three shapes, each run with this project
# (3-node tracker cluster + peer daemons), with rqbit (the anchor) and with aria2c, the two
# BitTorrent clients behind opentracker, all in the same sitting, on the same file, with the same
# piece size (512 KiB), everything on 127.0.0.1:
#
#   1 -> 1   one sharer, one downloader
#   1 -> 3   one sharer, three downloaders started together; time until all three have the file
#   4 -> 1   four sharers, one downloader
#
# Prints a markdown report: medians, the median of the per-run ratios ours/rqbit, each shape
# against the machine's floor (`bench floor`: the least time any client needs here), and the pieces
# the original sharer served (this project: the `pieces_served` of its daemon's "served a peer"
# log lines; rqbit: `uploaded_bytes` of its HTTP API; aria2c: `uploadLength` of its JSON-RPC;
# both divided by the piece length), as a multiple of the file's piece count.
#
#   scripts/bench-download.sh                 # 1 GiB, 3 runs of each
#   SIZE_MIB=256 RUNS=5 scripts/bench-download.sh
#   BIN=/path/to/other/build NO_BUILD=1 scripts/bench-download.sh   # binaries built elsewhere
#   RQBIT=/path/to/rqbit scripts/bench-download.sh                  # rqbit not on PATH
#   TIMEOUT_S=600 scripts/bench-download.sh   # bound of each download process (default 60 + SIZE_MIB/4)
#   KEEP_WORK=1 scripts/bench-download.sh      # keep the work folder (daemon and client logs)
#   SHAPES="1to1 4to1" NO_ARIA2C=1 RUNS=5 scripts/bench-download.sh   # a repeat sitting of some
#                                               # shapes against rqbit only (aria2c columns show -)
#   PROFILE=1 scripts/bench-download.sh      # one more run of each shape for ours and rqbit, not timed,
#                                               # under `perf record -e cpu-clock -a` (the whole machine):
#                                               # where the CPU goes, by kind of work (needs perf: Debian linux-perf)
#   TMPDIR=/dev/shm scripts/bench-download.sh # files in RAM: without it the written gigabytes can
#                                               # reach the kernel's dirty limit and the disk sets the pace
#   BIN=DIR NO_BUILD=1 ...   with DIR from `cargo build --release -p peer -p tracker-node --features
#                            peer/null-cipher-for-bench`: what the channel's encryption costs (BENCH.md)
#
# Needs aria2c, opentracker, mktorrent, curl (Debian: apt-get install aria2 opentracker mktorrent
# curl) and rqbit (cargo install rqbit --locked --version 9.1.0; the figures in docs/BENCH.md are
# from 9.1.0). Every figure is a whole process, start to exit: `peer download` (blocking until the
# file is complete, every piece verified and renamed), `rqbit download --exit-on-finish` and
# `aria2c --seed-time=0` (each exits when the file is complete); for 1 -> 3, from the start of the
# three processes to the exit of the last. Each run does ours, rqbit, aria2c in turn. Everything is
# in the page cache: this measures the software, not disks. Only processes this script started are
# stopped (PIDS).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
SHAPES=${SHAPES:-1to1 1to3 4to1}
for shape in $SHAPES; do
  case $shape in 1to1 | 1to3 | 4to1) ;; *) echo "SHAPES: unknown shape $shape (1to1, 1to3, 4to1)" >&2; exit 2 ;; esac
done
TOOLS=(ours rqbit)
[ -n "${NO_ARIA2C:-}" ] || TOOLS+=(aria2c)
with_aria2c() { [[ " ${TOOLS[*]} " == *" aria2c "* ]]; }
TIMEOUT_S=${TIMEOUT_S:-$((60 + SIZE_MIB / 4))}
missing=()
for tool in aria2c opentracker mktorrent curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (Debian: apt-get install aria2 opentracker mktorrent curl)" >&2
  exit 2
fi
if [ -n "${PROFILE:-}" ] && ! command -v perf >/dev/null; then
  echo "missing: perf (Debian: apt-get install linux-perf), which PROFILE=1 needs" >&2
  exit 2
fi
RQBIT=${RQBIT:-$(command -v rqbit || true)}
if [ -z "$RQBIT" ] || [ ! -x "$RQBIT" ]; then
  echo "missing: rqbit (cargo install rqbit --locked --version 9.1.0 --root DIR, then put DIR/bin on PATH or set RQBIT=DIR/bin/rqbit)" >&2
  exit 2
fi
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p tracker-node -p peer -p bench
BIN=${BIN:-$PWD/target/release}
WORK=$(mktemp -d -t p2p-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK (logs)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# Private copies, so that a build finishing meanwhile does not mix old daemons with new clients.
mkdir -p "$WORK/bin" && cp "$BIN/tracker-node" "$BIN/peer" "$BIN/bench" "$WORK/bin/" && BIN=$WORK/bin
fail() { echo "$*" >&2; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# The whole machine's busy CPU time so far, in ms (every core's user, nice, system, irq, softirq,
# steal from /proc/stat: all but idle and iowait).
CLK_TCK=$(getconf CLK_TCK)
busy_ms() { awk -v hz="$CLK_TCK" '$1 == "cpu" {print int(($2 + $3 + $4 + $7 + $8 + $9) * 1000 / hz); exit}' /proc/stat; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Ports: tracker nodes BASE+1..3 (raft +11..13), opentracker +50, aria2c seeders +61..64 (their
# JSON-RPC +81..84), aria2c leechers +71..73, rqbit seeders +101..104 (HTTP API +111..114), rqbit
# leechers +121..123 (no HTTP API).
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
  fail "daemon $1 did not start"
}

echo "preparing a ${SIZE_MIB} MiB file and its torrent (rqbit: $("$RQBIT" --version 2>/dev/null | head -1))..." >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/file.bin"
SHA=$(sha1sum "$WORK/file.bin" | cut -d' ' -f1)
PIECE_BYTES=$((512 * 1024))
PIECES=$(((SIZE_MIB * 1024 * 1024 + PIECE_BYTES - 1) / PIECE_BYTES))
# Two torrents of the same file, one per BitTorrent client: their info hashes differ (mktorrent's
# source string), so rqbit and aria2c peers never join each other's swarm on the one tracker.
mktorrent -l 19 -a "http://127.0.0.1:$((BASE + 50))/announce" -o "$WORK/file.torrent" "$WORK/file.bin" >/dev/null
mktorrent -l 19 -a "http://127.0.0.1:$((BASE + 50))/announce" -s rqbit-bench -o "$WORK/rq.torrent" "$WORK/file.bin" >/dev/null
infohash() { aria2c -S "$1" | awk '/Info Hash/ {print $3}'; }
INFOHASH=$(infohash "$WORK/rq.torrent")
[ "$INFOHASH" != "$(infohash "$WORK/file.torrent")" ] || fail "the two torrents have the same info hash"
check_sha() { [ "$(sha1sum "$2" | cut -d' ' -f1)" = "$SHA" ] || fail "$1: SHA-1 mismatch ($2)"; }

# This project: alice owns the group and shares; s2..s4 join and share the same bytes (4 -> 1);
# bob, carol, dave fetch.
SHARERS_OURS=(alice s2 s3 s4)
LEECHERS=(bob carol dave)
for who in "${SHARERS_OURS[@]}" "${LEECHERS[@]}"; do start_daemon "$who"; done
for who in "${SHARERS_OURS[@]}" "${LEECHERS[@]}"; do
  echo "pw-$who" | peer "$who" --timeout 20 register "$who" --password-stdin >/dev/null
  echo "pw-$who" | peer "$who" login "$who" --password-stdin >/dev/null
done
peer alice create-group bench >/dev/null
for who in s2 s3 s4 "${LEECHERS[@]}"; do
  peer "$who" join-group bench >/dev/null
  peer alice accept-request bench "$who" >/dev/null
done
share_ours() {
  mkdir -p "$WORK/share-$1" && ln -f "$WORK/file.bin" "$WORK/share-$1/file.bin"
  peer "$1" upload "$WORK/share-$1/file.bin" bench >/dev/null
}
share_ours alice

# opentracker on loopback for both BitTorrent clients. Debian's opentracker serves only
# whitelisted torrents; it chroots to -d, so the list's path is given inside that directory.
mkdir -p "$WORK/ot" && chmod 755 "$WORK" "$WORK/ot"
{ infohash "$WORK/file.torrent"; echo "$INFOHASH"; } >"$WORK/ot/whitelist"
opentracker -i 127.0.0.1 -p $((BASE + 50)) -P $((BASE + 50)) -d "$WORK/ot" -w /whitelist >"$WORK/opentracker.log" 2>&1 & PIDS+=($!)

# aria2c seeders, with JSON-RPC on loopback only to read how much each uploaded.
ARIA_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
  --check-certificate=false --console-log-level=warn --summary-interval=0 --download-result=hide
  --file-allocation=falloc --bt-max-peers=0)
aria_seed() {
  local n=$1
  mkdir -p "$WORK/seed-$n" && ln -f "$WORK/file.bin" "$WORK/seed-$n/file.bin"
  aria2c "${ARIA_COMMON[@]}" --dir="$WORK/seed-$n" --listen-port=$((BASE + 60 + n)) \
    --bt-seed-unverified=true --check-integrity=false --seed-ratio=0.0 \
    --enable-rpc --rpc-listen-port=$((BASE + 80 + n)) \
    "$WORK/file.torrent" >"$WORK/seed-$n.log" 2>&1 & PIDS+=($!)
}

# rqbit: `rqbit download` is stateless (no session persistence); each instance has its own
# folder (also as HOME/XDG dirs), listen port and HTTP API port; no DHT, LSD, UPnP: peers come
# from the torrent's tracker only. A seeder is `rqbit download` (no --exit-on-finish) on a folder
# that holds the complete file: it checks it, then seeds until stopped. rqbit 9.1 announces port
# 4240 when it listens on a loopback address unless --announce-port is given.
RQ_COMMON=(--disable-dht --disable-dht-persistence --disable-lsd --disable-upnp-port-forward
  --listen-ip 127.0.0.1)
rq_home() { # dir -> RQENV: env(1) arguments giving rqbit a HOME and XDG dirs of its own
  mkdir -p "$1/home"
  RQENV=(env HOME="$1/home" XDG_CONFIG_HOME="$1/home/config" XDG_CACHE_HOME="$1/home/cache" XDG_DATA_HOME="$1/home/data")
}
rq_stats() { curl -sf --max-time 2 "http://127.0.0.1:$((BASE + 110 + $1))/torrents/$INFOHASH/stats/v1" || true; }
rq_seed() {
  local n=$1 d=$WORK/rq-seed-$1
  mkdir -p "$d/out" && ln -f "$WORK/file.bin" "$d/out/file.bin"
  rq_home "$d"
  "${RQENV[@]}" "$RQBIT" "${RQ_COMMON[@]}" --listen-port $((BASE + 100 + n)) --announce-port $((BASE + 100 + n)) --http-api-listen-addr "127.0.0.1:$((BASE + 110 + n))" \
    download --overwrite -o "$d/out" "$WORK/rq.torrent" >"$d/log" 2>&1 & PIDS+=($!)
}
rq_wait_seeding() { # n: until its check is done and it has every piece
  for _ in $(seq 1 $((TIMEOUT_S * 5))); do
    rq_stats "$1" | grep -q '"finished":true' && rq_stats "$1" | grep -q '"state":"live"' && return 0
    sleep 0.2
  done
  cat "$WORK/rq-seed-$1/log" >&2; fail "rqbit seeder $1 did not start seeding"
}

# Counters, cumulative since each sharer started; a run's figure is after - before.
# ours: pieces (sum of pieces_served in the daemon's log); rqbit, aria2c: bytes uploaded.
count_ours() { grep -o 'pieces_served=[0-9]*' "$WORK/$1.log" | awk -F= '{s += $2} END {print s + 0}'; }
count_rqbit() { rq_stats "$1" | grep -o '"uploaded_bytes":[0-9]*' | awk -F: '{print $2 + 0; exit}' | grep . || echo 0; }
count_aria2c() {
  curl -sf --max-time 2 -d '{"jsonrpc":"2.0","id":"b","method":"aria2.tellActive","params":[["uploadLength"]]}' \
    "http://127.0.0.1:$((BASE + 80 + $1))/jsonrpc" | grep -o '"uploadLength":"[0-9]*"' | tr -dc '0-9\n' | head -1 | grep . || echo 0
}
sharer_ids() { # tool shape
  local n=1
  [ "$2" = 4to1 ] && n=4
  if [ "$1" = ours ]; then echo "${SHARERS_OURS[@]:0:$n}"; else seq 1 "$n" | tr '\n' ' '; fi
}
snapshot() { # tool shape -> the counters of the shape's sharers, space-separated
  local out=() s
  for s in $(sharer_ids "$1" "$2"); do out+=("$("count_$1" "$s")"); done
  echo "${out[*]}"
}
# This project logs a connection's pieces when the connection ends: wait until the counters
# have moved and stopped moving (3 equal readings 0.2 s apart; at most 5 s).
settled_snapshot() { # tool shape before
  local prev="" cur same=0
  for _ in $(seq 1 25); do
    cur=$(snapshot "$1" "$2")
    if [ "$cur" = "$prev" ] && [ "$cur" != "$3" ]; then same=$((same + 1)); else same=0; fi
    [ $same -ge 2 ] && break
    prev=$cur; sleep 0.2
  done
  echo "$cur"
}
# per-sharer delta as a multiple of the file's pieces: "a" or "a+b+c+d=sum"
served_multiple() { # tool before after
  local unit=1
  [ "$1" = ours ] || unit=$PIECE_BYTES
  paste -d' ' <(tr ' ' '\n' <<<"$2") <(tr ' ' '\n' <<<"$3") |
    awk -v u="$unit" -v p="$PIECES" '{x = ($2 - $1) / u / p; t += x; printf "%s%.2f", (NR > 1 ? "+" : ""), x}
      END {if (NR > 1) printf "=%.2f", t; print ""}'
}

# One timed run: tool shape run -> MS (wall time) and SERVED (per-sharer multiples).
run_one() {
  local tool=$1 shape=$2 r=$3 n=1 k pids=() dests=() before after t0 t1
  [ "$shape" = 1to3 ] && n=3
  before=$(snapshot "$tool" "$shape")
  local c0 c1
  c0=$(busy_ms)
  t0=$(now_ms)
  for k in $(seq 1 "$n"); do
    local dest=$WORK/dl-$tool-$k log=$WORK/dl-$tool-$k.log
    rm -rf "$dest"; mkdir -p "$dest"
    case $tool in
      ours) timeout -k 10 "$TIMEOUT_S" env PEER_HOME="$WORK/${LEECHERS[$((k - 1))]}" "$BIN/peer" download bench file.bin "$dest" >"$log" 2>&1 & ;;
      rqbit) rq_home "$WORK/rq-leech-$k"
        timeout -k 10 "$TIMEOUT_S" "${RQENV[@]}" "$RQBIT" "${RQ_COMMON[@]}" --listen-port $((BASE + 120 + k)) --announce-port $((BASE + 120 + k)) \
          download --disable-http-api --exit-on-finish -o "$dest" "$WORK/rq.torrent" >"$log" 2>&1 & ;;
      aria2c) timeout -k 10 "$TIMEOUT_S" aria2c "${ARIA_COMMON[@]}" --dir="$dest" --listen-port=$((BASE + 70 + k)) --seed-time=0 \
        "$WORK/file.torrent" >"$log" 2>&1 & ;;
    esac
    pids+=($!); PIDS+=($!); dests+=("$dest")
  done
  local failed=0
  for k in "${!pids[@]}"; do wait "${pids[$k]}" || failed=$((k + 1)); done
  t1=$(now_ms)
  if [ -n "${PERF_PID:-}" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=; fi
  c1=$(busy_ms)
  if [ $failed -ne 0 ]; then
    echo "$tool $shape run $r: downloader $failed failed (or exceeded ${TIMEOUT_S} s):" >&2
    tail -n 20 "$WORK/dl-$tool-$failed.log" >&2; exit 1
  fi
  MS=$((t1 - t0))
  CPU_MS=$((c1 - c0))
  after=$(settled_snapshot "$tool" "$shape" "$before")
  SERVED=$(served_multiple "$tool" "$before" "$after")
  for k in $(seq 1 "$n"); do
    check_sha "$tool" "${dests[$((k - 1))]}/file.bin"
    [ "$tool" = ours ] && peer "${LEECHERS[$((k - 1))]}" stop-share bench file.bin >/dev/null
    rm -rf "${dests[$((k - 1))]}"
  done
  return 0
}

declare -A TIMES SERVED_ALL CPU
measure() { # shape
  local shape=$1 r tool line ratios=()
  for r in $(seq 1 "$RUNS"); do
    line="  $shape run $r:"
    local o=0 q=0
    for tool in "${TOOLS[@]}"; do
      run_one "$tool" "$shape" "$r"
      TIMES[$shape,$tool]+="$MS "
      CPU[$shape,$tool]+="$CPU_MS "
      SERVED_ALL[$shape,$tool]+="$SERVED "
      [ $tool = ours ] && o=$MS
      [ $tool = rqbit ] && q=$MS
      line+=" $tool ${MS} ms (served ${SERVED}x)"
    done
    ratios+=("$(awk -v a="$o" -v b="$q" 'BEGIN {printf "%.2f", a / b}')")
    echo "$line" >&2
  done
  TIMES[$shape,ratio]="$(printf '%s\n' "${ratios[@]}" | median)"
  [ -n "${PROFILE:-}" ] || return 0
  for tool in ours rqbit; do # one more run each, sampled and not timed
    start_profile "$WORK/profile-$shape-$tool.data"
    run_one "$tool" "$shape" profiled # stops perf (PERF_PID) when its downloads end
  done
}

# Samples per second on each core while profiling: one sample stands for 1/PROFILE_HZ core-seconds.
PROFILE_HZ=999
# Starts perf on the whole machine with its events off, then turns them on through its control
# fifo and waits (at most 10 s) for its "ack": sampling is on before the first downloader starts.
start_profile() { # output file -> PERF_PID
  local ctl=$WORK/perf.ctl ack=$WORK/perf.ack ctl_fd ack_fd line=
  rm -f "$ctl" "$ack" && mkfifo "$ctl" "$ack"
  perf record -q -e cpu-clock -F "$PROFILE_HZ" -a -D -1 --control "fifo:$ctl,$ack" -o "$1" >/dev/null 2>&1 &
  PERF_PID=$!; PIDS+=($PERF_PID)
  exec {ctl_fd}<>"$ctl" {ack_fd}<>"$ack" # read-write: opening does not wait for perf
  echo enable >&"$ctl_fd"
  read -r -t 10 line <&"$ack_fd" || true
  exec {ctl_fd}>&- {ack_fd}<&-
  [ "$line" = ack ] || fail "perf did not start sampling within 10 s (see: perf record --control)"
}
# The profile of one run (shape tool) by kind of work: "kind<TAB>samples" lines. Symbols are
# sorted into the steps of moving a byte (as `bench floor` names them) and the rest. rqbit hashes
# with OpenSSL's libcrypto, whose symbols Debian strips: its samples there count as SHA-1 (rqbit
# encrypts nothing, and this project does not link libcrypto).
profile_kinds() {
  perf report -i "$WORK/profile-$1-$2.data" --no-children --sort dso,sym -n --stdio 2>/dev/null |
    awk '$1 ~ /%$/ && $4 ~ /^\[.\]$/ {
      n = $2; s = $0; sub(/^[^]]*\] /, "", s)
      if (s ~ /safe_halt|default_idle|cpuidle|poll_idle|mwait|cpu_idle/) k = "idle"
      else if (s ~ /[Ss][Hh][Aa]1|sha1/ || $3 ~ /^libcrypto/) k = "SHA-1"
      else if (s ~ /[Aa][Ee][Ss]|gcm|[Gg][Hh][Aa][Ss][Hh]/) k = "AES-GCM"
      else if ($4 == "[.]" && s ~ /memmove|memcpy/) k = "copies in the process (memmove)"
      else if ($4 == "[k]" && s ~ /copy_to_iter|copy_from_iter|copy_folio|copy_page|copy_user|movs/) k = "copies by the kernel (socket, page cache)"
      else if ($4 == "[k]") k = "rest of the kernel (TCP, pages, wake-ups)"
      else k = "rest of the process"
      t[k] += n
    } END {for (k in t) print k "\t" t[k]}'
}

# The original sharer of each tool (ours: alice's share above).
if with_aria2c; then aria_seed 1; fi
rq_seed 1
rq_wait_seeding 1
sleep 1 # let the seeders announce once before the first leecher asks

for shape in 1to1 1to3 4to1; do
  [[ " $SHAPES " == *" $shape "* ]] || continue
  if [ $shape = 4to1 ]; then
    echo "4 -> 1: three more sharers..." >&2
    for who in s2 s3 s4; do share_ours "$who"; done
    for n in 2 3 4; do
      if with_aria2c; then aria_seed "$n"; fi
      rq_seed "$n"
    done
    for n in 2 3 4; do rq_wait_seeding "$n"; done
    sleep 1
  else
    echo "${shape/to/ -> }..." >&2
  fi
  measure $shape
done

# The machine's floor, in the same sitting and the same folder: each step of moving a byte
# (read, AES-GCM, loopback TCP, SHA-1, write) alone on one core, summed per shape over the cores.
echo "floor..." >&2
FLOOR_REPORT=$("$BIN/bench" floor --size-mib "$SIZE_MIB" --dir "$WORK" 2>/dev/null)
declare -A FLOOR FLOOR_PLAIN
while read -r shape enc plain; do # from its rows "| 1 -> 3 | 2439 ms | 2128 ms |"
  FLOOR[$shape]=$enc; FLOOR_PLAIN[$shape]=$plain
done < <(awk -F' *[|] *' '$2 ~ /^[0-9] -> [0-9]$/ {gsub(/ -> /, "to", $2); print $2, $3 + 0, $4 + 0}' <<<"$FLOOR_REPORT")

# A tool left out (NO_ARIA2C) shows "-".
med() { tr ' ' '\n' <<<"$1" | grep . | median | grep . || echo -; }
sorted() { tr ' ' '\n' <<<"$1" | grep . | sort -n | tr '\n' ' ' | sed 's/ $//' | grep . || echo -; }
first_med() { tr ' ' '\n' <<<"$1" | grep . | cut -d+ -f1 | cut -d= -f1 | median | grep . || echo -; } # the original sharer's, median of runs
unit() { if [ "$1" = - ]; then echo -; else echo "$1$2"; fi; } # figure unit -> "figure unit", or "-"
gib_delivered() { # shape -> GiB that reach downloaders in one run (1 -> 3 delivers the file three times)
  awk -v m="$SIZE_MIB" -v c="$([ "$1" = 1to3 ] && echo 3 || echo 1)" 'BEGIN {print m / 1024 * c}'
}
echo "## Download of a ${SIZE_MIB} MiB file ($PIECES pieces of 512 KiB) on 127.0.0.1 ($(nproc) cores), ${RUNS} runs each, whole-process wall time"
echo
echo "This project against rqbit ($("$RQBIT" --version 2>/dev/null | head -1)) and aria2c ($(aria2c --version | head -1)) with opentracker, same file, same sitting."
echo
echo "| shape | this project, median | rqbit, median | aria2c, median | ours/rqbit, median of pairs | original sharer's pieces served, x file (ours, rqbit; aria2c) | all runs ms (ours / rqbit / aria2c) |"
echo "|---|---|---|---|---|---|---|"
for shape in $SHAPES; do
  name=${shape/to/ -> }
  printf '| %s | %s ms | %s ms | %s | %s | %sx, %sx; %s | %s / %s / %s |\n' "$name" \
    "$(med "${TIMES[$shape,ours]}")" "$(med "${TIMES[$shape,rqbit]}")" "$(unit "$(med "${TIMES[$shape,aria2c]:-}")" " ms")" \
    "${TIMES[$shape,ratio]}" \
    "$(first_med "${SERVED_ALL[$shape,ours]}")" "$(first_med "${SERVED_ALL[$shape,rqbit]}")" "$(unit "$(first_med "${SERVED_ALL[$shape,aria2c]:-}")" x)" \
    "$(sorted "${TIMES[$shape,ours]}")" "$(sorted "${TIMES[$shape,rqbit]}")" "$(sorted "${TIMES[$shape,aria2c]:-}")"
done
echo
echo "Against the machine's floor (\`bench floor\`, below): the least time any client needs here, encrypted (this project) and plain (BitTorrent). The 2x goal needs this project's time at half rqbit's."
echo
echo "| shape | floor encrypted / plain | this project / floor | rqbit / plain floor | half of rqbit / floor |"
echo "|---|---|---|---|---|"
for shape in $SHAPES; do
  o=$(med "${TIMES[$shape,ours]}"); q=$(med "${TIMES[$shape,rqbit]}")
  awk -v n="${shape/to/ -> }" -v f="${FLOOR[$shape]}" -v p="${FLOOR_PLAIN[$shape]}" -v o="$o" -v q="$q" \
    'BEGIN {printf "| %s | %d / %d ms | %.2f | %.2f | %.2f |\n", n, f, p, o / f, q / p, q / 2 / f}'
done
echo
echo "CPU of the whole machine from the start of a run to the end of its last download (all processes: sharers, downloaders, trackers), in core-seconds per GiB delivered (1 -> 3 delivers the file three times), medians; beside it, one transfer at the floor (\`bench floor\`'s row, the sum of the bare steps):"
echo
echo "| shape | this project | rqbit | ours/rqbit | floor: one transfer encrypted / plain |"
echo "|---|---|---|---|---|"
ENC=$(awk -F' *[|] *' '$2 ~ /one transfer, encrypted/ {print $3 + 0}' <<<"$FLOOR_REPORT")
PLAIN=$(awk -F' *[|] *' '$2 ~ /one transfer, plain/ {print $3 + 0}' <<<"$FLOOR_REPORT")
for shape in $SHAPES; do
  o=$(med "${CPU[$shape,ours]}"); q=$(med "${CPU[$shape,rqbit]}")
  awk -v n="${shape/to/ -> }" -v o="$o" -v q="$q" -v g="$(gib_delivered "$shape")" -v e="$ENC" -v p="$PLAIN" \
    'BEGIN {printf "| %s | %.2f | %.2f | %.2f | %.2f / %.2f |\n", n, o / 1000 / g, q / 1000 / g, o / q, e, p}'
done
echo
echo "$FLOOR_REPORT"
echo
echo "Pieces served by each sharer per run, as a multiple of the file's $PIECES pieces (4 -> 1: the four sharers' shares and their sum; runs separated by spaces):"
echo
echo "| shape | this project | rqbit | aria2c |"
echo "|---|---|---|---|"
for shape in $SHAPES; do
  a=${SERVED_ALL[$shape,aria2c]:--}
  echo "| ${shape/to/ -> } | ${SERVED_ALL[$shape,ours]% } | ${SERVED_ALL[$shape,rqbit]% } | ${a% } |"
done
if [ -n "${PROFILE:-}" ]; then
  echo
  echo "Where the CPU goes: one more run of each shape per tool, not timed, the whole machine sampled (\`perf record -e cpu-clock -F $PROFILE_HZ -a\`), in core-seconds per GiB delivered (idle left out):"
  echo
  KINDS=("SHA-1" "AES-GCM" "copies in the process (memmove)" "copies by the kernel (socket, page cache)" "rest of the kernel (TCP, pages, wake-ups)" "rest of the process")
  header="| shape, tool |"; rule="|---|"
  for k in "${KINDS[@]}"; do header+=" $k |"; rule+="---|"; done
  echo "$header all busy |"; echo "$rule---|"
  # The samples of the kinds an awk condition picks, as core-seconds per GiB delivered.
  per_gib() { awk -F'\t' -v hz=$PROFILE_HZ -v g="$gib" "$1"' {x += $2} END {printf "%.2f", x / hz / g}'; }
  for shape in $SHAPES; do
    gib=$(gib_delivered "$shape")
    for tool in ours rqbit; do
      kinds=$(profile_kinds "$shape" "$tool")
      row="| ${shape/to/ -> }, $tool |"
      for k in "${KINDS[@]}"; do row+=" $(per_gib "\$1 == \"$k\"" <<<"$kinds") |"; done
      echo "$row $(per_gib '$1 != "idle"' <<<"$kinds") |"
    done
  done
fi
echo
[[ " $SHAPES " == *" 1to3 "* ]] || exit 0
o=$(first_med "${SERVED_ALL[1to3,ours]}")
echo "Goal (1 -> 3, original sharer at most 1.15x the file): this project $o x, $(awk -v x="$o" 'BEGIN {print (x <= 1.15 ? "met" : "NOT met")}')."
