#!/usr/bin/env bash
# The monitor's cost at pool scale: probes per second, CPU and memory of `pooldns monitor`
# with a large registry (default 100,000 servers), all answered by one chronyd.
#
# In a network namespace it creates (deleted on exit), 10.100.0.0/15 is routed to loopback
# as local addresses, so every registered address is a live NTP server: one chronyd bound to
# the wildcard address answers from whichever address was asked. The monitor (release build)
# probes them for DURATION seconds; the script reads its CPU time from /proc/PID/stat, its
# RSS from /proc/PID/status and its probe counts from /metrics, inside the namespace.
#
#   benches/monitor.sh [--servers N] [--rate PROBES_PER_S] [--interval SECS] [--duration SECS]
#
# Needs root, iproute2, chrony and python3. Run it on a quiet machine; CPU time is what
# counts, not wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

servers=100000
rate=2000
interval=60
duration=90
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

bin=target/release/pooldns
[ -x "$bin" ] || cargo build --release
ns="pdmon-bench-$$"
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  [ -n "${monitor_pid:-}" ] && kill "$monitor_pid" 2>/dev/null || true
  [ -n "${chrony_pid:-}" ] && kill "$chrony_pid" 2>/dev/null || true
  sleep 0.5
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" route add local 10.100.0.0/15 dev lo

cat > "$work/chrony.conf" <<EOF
local stratum 2
allow
port 123
cmdport 0
pidfile $work/chronyd.pid
EOF
ip netns exec "$ns" chronyd -x -d -f "$work/chrony.conf" >"$work/chrony.log" 2>&1 &
chrony_pid=$!

python3 - "$servers" >"$work/registry.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
servers = [{"id": i + 1, "ip": f"10.{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}",
            "netspeed": 1000, "country": "de"} for i in range(n)]
json.dump({"servers": servers}, sys.stdout)
EOF
echo synchronised >"$work/clock"

POOLDNS_MONITOR_CLOCK_FILE="$work/clock" ip netns exec "$ns" "$bin" monitor \
  --servers "$work/registry.json" --out "$work/feed.json" --state "$work/state.json" \
  --http 127.0.0.1:8054 --interval "${interval}s" --max-rate "$rate" \
  2>"$work/monitor.log" &
monitor_pid=$!

metrics() {
  ip netns exec "$ns" python3 -c '
import urllib.request
t = urllib.request.urlopen("http://127.0.0.1:8054/metrics", timeout=10).read().decode()
ok = sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith("pooldns_monitor_probes_total"))
print(int(ok))'
}
cpu() { awk '{print $14 + $15}' "/proc/$monitor_pid/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$monitor_pid/status"; }

for _ in $(seq 100); do metrics >/dev/null 2>&1 && break; sleep 0.2; done
tick=$(getconf CLK_TCK)
# Warm up past the first interval's ramp, then measure.
sleep 10
p0=$(metrics); c0=$(cpu); t0=$(date +%s.%N)
sleep "$duration"
p1=$(metrics); c1=$(cpu); t1=$(date +%s.%N)
python3 - "$p0" "$p1" "$c0" "$c1" "$t0" "$t1" "$tick" "$(rss)" "$servers" "$rate" <<'EOF'
import sys
p0, p1, c0, c1 = map(float, sys.argv[1:5])
t0, t1, tick, rss, n, rate = map(float, sys.argv[5:11])
wall = t1 - t0
probes = (p1 - p0) / wall
cpu = (c1 - c0) / tick
print(f"servers {int(n)}, max-rate {rate:.0f}/s, measured {wall:.0f} s")
print(f"probes/s          {probes:.0f}")
print(f"CPU               {cpu:.2f} s in {wall:.0f} s = {100 * cpu / wall:.1f} % of one core")
print(f"probes per CPU-s  {(p1 - p0) / cpu:.0f}" if cpu > 0 else "probes per CPU-s  -")
print(f"RSS               {rss / 1024:.0f} MiB")
EOF
ip netns exec "$ns" python3 -c '
import urllib.request
t = urllib.request.urlopen("http://127.0.0.1:8054/metrics", timeout=10).read().decode()
print("\n".join(l for l in t.splitlines() if l.startswith("pooldns_monitor_probes_total") and not l.endswith(" 0")))'
# Stopping saves the state file: how long that takes and how large it is.
s0=$(date +%s.%N)
kill -TERM "$monitor_pid"
wait "$monitor_pid" || true
s1=$(date +%s.%N)
monitor_pid=
python3 - "$s0" "$s1" "$(stat -c %s "$work/state.json")" "$(stat -c %s "$work/feed.json")" <<'EOF'
import sys
s0, s1, state, feed = map(float, sys.argv[1:])
print(f"stop (state save) {s1 - s0:.1f} s; state file {state / 2**20:.0f} MiB; feed {feed / 2**20:.1f} MiB")
EOF
