#!/usr/bin/env bash
# Soak under load with faults: dnsperf UDP and TCP load, with and without ECS, against a
# release pooldns while the feed, the zone configuration and the GeoIP database are swapped
# for good and broken versions, SIGHUP comes in bursts, an HTTP feed flaps and the query
# log's disk fills up. See benches/soak.py for what is checked and printed.
#
#   benches/soak.sh                 # 10 minutes
#   benches/soak.sh --quick         # 1 minute
#   benches/soak.sh --duration 300 --servers 50000 --pooldns target/release/pooldns --keep
#
# Needs dnsperf (installed from Debian when missing) and, for the full-disk part, root (a
# 2 MiB tmpfs); exits 1 when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=600
SERVERS=20000
POOLDNS=
KEEP=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) DURATION=60 ;;
        --duration) DURATION=${2:?}; shift ;;
        --servers) SERVERS=${2:?}; shift ;;
        --pooldns) POOLDNS=${2:?}; shift ;;
        --keep) KEEP=(--keep) ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown option $1" >&2; exit 64 ;;
    esac
    shift
done

if ! command -v dnsperf >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null
fi
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ -z "$POOLDNS" ]; then
    cargo build --release --quiet --bin pooldns --example gen_feed
    POOLDNS=$TARGET/release/pooldns
else
    cargo build --release --quiet --example gen_feed
fi
exec python3 benches/soak.py --pooldns "$POOLDNS" --gen-feed "$TARGET/release/examples/gen_feed" \
    --duration "$DURATION" --servers "$SERVERS" "${KEEP[@]}"
