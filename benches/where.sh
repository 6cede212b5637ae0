#!/usr/bin/env bash
# Where a query's server CPU goes at a fixed rate: for each pooldns binary given, one run
# without a profiler for the CPU per query (utime+stime from /proc) and the context switches
# per query (every thread's voluntary + involuntary switches), then one run under
# `perf record -g` for the split of that CPU between receiving (recvmmsg, including going to
# sleep and waking), sending (sendmmsg, including loopback delivery and waking the client),
# other system calls and user space. Prints a Markdown table (benches/README.md has one).
#
#   benches/where.sh [--rate Q] [--seconds S] [--workers N] [--servers N] [--ecs]
#                    [--label NAME=BIN]... [--args NAME="serve flags"]...
#
# Default: the release build as "pooldns", 20,000 q/s, 8 s per run, one UDP worker per
# core, a 100,000-server feed, the load.sh query mix. Needs dnsperf and perf (linux-perf).
# Everything runs on 127.0.0.1; every child is stopped on exit.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LB="$ROOT/benches/load/lb.py"
RATE=20000
SECONDS_PER_RUN=8
WORKERS=$(nproc)
SERVERS=100000
QFILE=mix.bin
LABELS=()
declare -A BIN ARGS

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=${2:?}; shift ;;
        --seconds) SECONDS_PER_RUN=${2:?}; shift ;;
        --workers) WORKERS=${2:?}; shift ;;
        --servers) SERVERS=${2:?}; shift ;;
        --ecs) QFILE=ecs.bin ;;
        --label) LABELS+=("${2%%=*}"); BIN[${2%%=*}]=${2#*=}; shift ;;
        --args) ARGS[${2%%=*}]=${2#*=}; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "where.sh: unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
for tool in dnsperf perf python3; do
    command -v "$tool" >/dev/null || { echo "where.sh: $tool not found" >&2; exit 1; }
done
cd "$ROOT"
if [ ${#LABELS[@]} = 0 ]; then
    cargo build --release --quiet --bin pooldns --example gen_feed
    LABELS=(pooldns)
    BIN[pooldns]=$ROOT/target/release/pooldns
fi
GEN_FEED=$ROOT/target/release/examples/gen_feed
[ -x "$GEN_FEED" ] || cargo build --release --quiet --example gen_feed

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pooldns-where.XXXXXX")
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
"$GEN_FEED" --servers "$SERVERS" --seed 1 > "$TMP/feed.json"
python3 "$LB" queries "$TMP/q" --count 100000 > /dev/null

start() {  # label
    local port
    port=$(python3 "$LB" freeport)
    # shellcheck disable=SC2086 # the extra flags are words
    RUST_LOG=warn "${BIN[$1]}" serve --config "$ROOT/zones/pool.ntp.org.toml" \
        --feed "$TMP/feed.json" --geoip "$ROOT/data/dbip-country.mmdb" \
        --listen "127.0.0.1:$port" --udp-workers "$WORKERS" --http none --state-dir none \
        ${ARGS[$1]:-} > "$TMP/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 300); do
        python3 "$LB" probe "$port" && { PORT=$port; return 0; }
        sleep 0.1
    done
    echo "where.sh: $1 does not answer" >&2
    exit 1
}
stop() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
switches() {
    cat /proc/"$SERVER"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v + n}'
}
load() {  # seconds
    dnsperf -B -s 127.0.0.1 -p "$PORT" -T 1 -c 16 -q 200 -t 2 -d "$TMP/q/$QFILE" -l "$1" \
        -Q "$RATE" > "$TMP/dnsperf.txt" 2>&1
}

printf '| %s | %s | %s | %s | %s | %s | %s |\n' "server" "µs CPU/query" \
    "switches/query" "receive µs" "send µs" "other syscalls µs" "user space µs (of which pooldns code)"
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for label in "${LABELS[@]}"; do
    start "$label"
    c0=$(cpu_ticks); s0=$(switches)
    load "$SECONDS_PER_RUN"
    c1=$(cpu_ticks); s1=$(switches)
    done_q=$(awk '/Queries completed/{print $3}' "$TMP/dnsperf.txt")
    stop
    start "$label"
    load $((SECONDS_PER_RUN + 2)) &
    LOADER=$!
    sleep 1
    perf record -F 999 -g -p "$SERVER" -o "$TMP/perf.data" -- sleep "$SECONDS_PER_RUN" \
        > /dev/null 2>&1
    wait "$LOADER"
    stop
    perf report -i "$TMP/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' > "$TMP/report.txt" || true
    python3 - "$label" "$c0" "$c1" "$s0" "$s1" "$done_q" "$TMP/report.txt" <<'EOF'
import re, sys
label, c0, c1, s0, s1, done, report = sys.argv[1:]
us = (int(c1) - int(c0)) * 10000 / int(done)  # clock ticks of 10 ms
sw = (int(s1) - int(s0)) / int(done)
children, own = {}, {}
for line in open(report):
    m = re.match(r'\s+([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(\S+)', line)
    if m:
        children[m.group(4)] = float(m.group(1))
        if m.group(3) == '.':
            own[m.group(4)] = float(m.group(2))
recv = children.get('__x64_sys_recvmmsg', 0)
send = children.get('__x64_sys_sendmmsg', 0)
other = max(0.0, children.get('do_syscall_64', 0) - recv - send)
user = sum(own.values())
ours = sum(v for k, v in own.items() if k.startswith('pooldns::'))
total = recv + send + other + user or 100
f = lambda p: us * p / total  # noqa: E731
print(f"| {label} | {us:.2f} | {sw:.2f} | {f(recv):.2f} | {f(send):.2f} | {f(other):.2f} "
      f"| {f(user):.2f} ({f(ours):.2f}) |")
EOF
done
echo
echo "$RATE q/s, $SECONDS_PER_RUN s per run, $WORKERS UDP workers, $SERVERS servers, query file $QFILE; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
