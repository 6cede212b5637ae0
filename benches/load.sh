#!/usr/bin/env bash
# Load benchmark of pooldns with dnsperf: throughput, latency, lost queries and the server's own
# CPU per query, over UDP and TCP, with a realistic pool query mix and a 100,000-server feed;
# optionally side by side with NSD and Knot DNS serving an equivalent static zone, gdnsd with its
# geoip and weighted plugins answering the same names per query (gdnsd-geo), and a trivial UDP
# echo server, the floor (--compare), and a reload-under-load run (--reload). See
# benches/README.md.
#
#   benches/load.sh [--compare] [--reload] [--duration S] [--servers N] [--quick] ...
#
# Everything runs on 127.0.0.1 in a temp dir; every child process is stopped on exit.
# Exit status: 0 = done; 1 = pooldns (or NSD/Knot/gdnsd) failed to start or died, or a tool is
# missing; 2 = the reload run found a lost or wrong answer or missed a target; 64 = bad usage.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LB="$ROOT/benches/load/lb.py"

DURATION=15          # seconds per saturating dnsperf run
RATE_DURATION=       # seconds per fixed-rate run (default: min(DURATION, 10))
SERVERS=100000       # servers in the generated feed
RATE=20000           # offered queries/s of the fixed-rate run
RATES=               # --rates LIST: several fixed-rate runs (rate-5000, rate-20000, ...)
CLIENTS=16           # dnsperf -c
OUTSTANDING=200      # dnsperf -q (Knot's default socket buffers overflow from about 300 on)
THREADS=1            # dnsperf -T
WORKERS=$(nproc)     # UDP workers of every server (pooldns --udp-workers, NSD server-count,
                     # Knot udp-workers, gdnsd udp_threads)
REPEAT=1             # repetitions of every run (the tables show the median)
RELOAD_EVERY=3       # seconds between feed rewrites in --reload
COMPARE=0
NO_ECHO=0            # --no-echo: --compare without the udp_echo floor
SCALING=0            # --scaling N: also a second pooldns with an N-server feed
ZONES=0              # --zones: also a pooldns in balance.mode = "zones" (pd-zones)
RRL=0                # --rrl: also a pooldns with response rate limiting on (pd-rrl)
DNSSEC=0             # --dnssec: also a pooldns serving the zone signed (pd-signed)
RELOAD=0
QUICK=0
KEEP=0
RUNS="udp,udp-ecs,tcp,rate,rate-ecs"
PREBUILT=            # --pooldns BIN: use this binary instead of building
BASELINE=            # --baseline BIN: also this pooldns binary (pd-base), e.g. an older build

usage() {
    cat <<EOF
usage: benches/load.sh [options]

  --compare          also run NSD and Knot DNS on an equivalent static zone, gdnsd with its
                     geoip and weighted plugins on the same names answered per query
                     (gdnsd-geo: a GeoIP lookup and a weighted pick of 4 per query), and the
                     trivial UDP echo server examples/udp_echo (the floor; UDP runs only),
                     same load, and print the ratios (installs nsd, knot and gdnsd from
                     Debian when missing)
  --no-echo          with --compare: leave out the echo server (and do not build udp_echo)
  --scaling N        also run a second pooldns with an N-server feed (e.g. 1000) under the same
                     load: the ratio pooldns / pd-N of q/CPU-s shows how the per-query cost
                     grows with the pool
  --zones            also run a second pooldns with the same feed in balance.mode = "zones"
                     (pd-zones): the ratio pooldns / pd-zones of q/CPU-s is what the serving
                     plan costs per query (the bundled configuration is in plan mode)
  --rrl              also run a second pooldns with the same feed and [rrl]
                     responses_per_second = 1000000 (pd-rrl): every answer is accounted and
                     none is limited, so pd-rrl / pooldns of q/CPU-s is what the accounting
                     costs per query
  --dnssec           also run a second pooldns serving the zone signed (pd-signed, keys made by
                     pooldns keygen), and the runs udp-do and udp-nodo (the same queries, all
                     with EDNS, with and without DO): pd-signed's DO=1 / DO=0 q/CPU-s is what
                     signed answers cost
  --reload           also run reload under load (of pd-signed with --dnssec): rewrite the feed every ${RELOAD_EVERY} s while dnsperf
                     runs; report build time, swap time, RSS, lost and wrong answers
  --duration S       seconds per saturating run (default $DURATION; the reload run takes 2 x S)
  --rate-duration S  seconds per fixed-rate run (default min(S, 10))
  --servers N        servers in the generated feed (default $SERVERS)
  --rate Q           offered queries/s of the fixed-rate run (default $RATE)
  --rates LIST       several fixed-rate runs, one per rate of LIST (e.g. 5000,20000,50000),
                     shown as rate-5000 etc.; overrides --rate
  --clients N        dnsperf -c (default $CLIENTS)
  --outstanding N    dnsperf -q (default $OUTSTANDING)
  --threads N        dnsperf -T (default $THREADS)
  --workers N        UDP workers of every server (default: nproc = $WORKERS)
  --repeat N         run everything N times, interleaved; tables show medians (default 1)
  --runs LIST        which runs, of udp,udp-ecs,tcp,rate,rate-ecs (default all; rate-ecs is
                     the fixed-rate run with the ECS query file)
  --quick            smoke test: 3 s runs (reload 9 s)
  --keep             keep the temp dir (logs, dnsperf outputs, zone, feeds)
  --baseline BIN     also run this pooldns binary (pd-base; an older build, say) with the same
                     feed, configuration and load: pooldns / pd-base is the change's effect
  --pooldns BIN      use this pooldns binary instead of 'cargo build --release' (gen_feed and
                     udp_echo are taken from BIN's directory's examples/ when they are there)
  -h, --help         this text
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --compare) COMPARE=1 ;;
        --no-echo) NO_ECHO=1 ;;
        --reload) RELOAD=1 ;;
        --scaling) SCALING=${2:?}; shift ;;
        --zones) ZONES=1 ;;
        --rrl) RRL=1 ;;
        --dnssec) DNSSEC=1 ;;
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --duration) DURATION=${2:?}; shift ;;
        --rate-duration) RATE_DURATION=${2:?}; shift ;;
        --servers) SERVERS=${2:?}; shift ;;
        --rate) RATE=${2:?}; shift ;;
        --rates) RATES=${2:?}; shift ;;
        --clients) CLIENTS=${2:?}; shift ;;
        --outstanding) OUTSTANDING=${2:?}; shift ;;
        --threads) THREADS=${2:?}; shift ;;
        --workers) WORKERS=${2:?}; shift ;;
        --repeat) REPEAT=${2:?}; shift ;;
        --runs) RUNS=${2:?}; shift ;;
        --pooldns) PREBUILT=${2:?}; shift ;;
        --baseline) BASELINE=${2:?}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "load.sh: unknown option $1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
for v in DURATION SERVERS RATE CLIENTS OUTSTANDING THREADS WORKERS REPEAT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: --${v,,} needs a positive integer" >&2; exit 64; }
done
if [ -n "$RATES" ]; then
    IFS=, read -r -a RATE_LIST <<< "$RATES"
    for r in "${RATE_LIST[@]}"; do
        [[ $r =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: --rates needs positive integers, comma-separated" >&2; exit 64; }
    done
fi
if [ "$QUICK" = 1 ]; then
    DURATION=3
    RATE_DURATION=3
fi
RATE_DURATION=${RATE_DURATION:-$(( DURATION < 10 ? DURATION : 10 ))}
RELOAD_DURATION=$(( 2 * DURATION < 9 ? 9 : 2 * DURATION ))

log() { printf '%s\n' "$*"; }
die() { printf 'load.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------
# Tools (Debian packages; apt-get update at most once)

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
    [ "$(id -u)" = 0 ] || die "$* missing and not root: install them (apt-get install $*)"
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # Do not let the packages start their system services (NSD, Knot and gdnsd would take
    # port 53).
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || {
        [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        die "apt-get install $* failed"
    }
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

command -v python3 >/dev/null || apt_install python3
command -v dnsperf >/dev/null || apt_install dnsperf
NSD=$(command -v nsd || echo /usr/sbin/nsd)
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
GDNSD=$(command -v gdnsd || echo /usr/sbin/gdnsd)
if [ "$COMPARE" = 1 ]; then
    missing=()
    [ -x "$NSD" ] || missing+=(nsd)
    [ -x "$KNOTD" ] || missing+=(knot)
    [ -x "$GDNSD" ] || missing+=(gdnsd)
    [ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
fi
command -v cargo >/dev/null || die "cargo not found"

# ------------------------------------------------------------------------------------------
# Temp dir, child processes, cleanup

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pooldns-load.XXXXXX")
CHILDREN=()
forget() {  # pid: a child that has been waited for; never signal its (reusable) pid again
    local keep=() p
    for p in "${CHILDREN[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    CHILDREN=("${keep[@]}")
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${CHILDREN[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------------------
# Build, feed, queries

cd "$ROOT"
if [ -n "$PREBUILT" ]; then
    [ -x "$PREBUILT" ] || die "--pooldns $PREBUILT: not an executable"
    POOLDNS=$(cd "$(dirname "$PREBUILT")" && pwd)/$(basename "$PREBUILT")
    GEN_FEED=$(dirname "$POOLDNS")/examples/gen_feed
    if [ ! -x "$GEN_FEED" ]; then
        log "building gen_feed (release)"
        cargo build --release --quiet --example gen_feed
        GEN_FEED=
    fi
    UDP_ECHO=$(dirname "$POOLDNS")/examples/udp_echo
    if [ "$COMPARE" = 1 ] && [ "$NO_ECHO" = 0 ] && [ ! -x "$UDP_ECHO" ]; then
        log "building udp_echo (release)"
        cargo build --release --quiet --example udp_echo
        UDP_ECHO=
    fi
else
    log "building pooldns (release)"
    extra_examples=()
    [ "$COMPARE" = 1 ] && [ "$NO_ECHO" = 0 ] && extra_examples+=(--example udp_echo)
    cargo build --release --quiet --bin pooldns --example gen_feed "${extra_examples[@]}"
    POOLDNS=
    GEN_FEED=
    UDP_ECHO=
fi
if [ -z "$POOLDNS" ] || [ -z "$GEN_FEED" ] || [ -z "$UDP_ECHO" ]; then
    TARGET=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    POOLDNS=${POOLDNS:-$TARGET/release/pooldns}
    GEN_FEED=${GEN_FEED:-$TARGET/release/examples/gen_feed}
    UDP_ECHO=${UDP_ECHO:-$TARGET/release/examples/udp_echo}
fi
CONFIG="$ROOT/zones/pool.ntp.org.toml"
GEOIP="$ROOT/data/dbip-country.mmdb"

log "generating a feed of $SERVERS servers"
"$GEN_FEED" --servers "$SERVERS" --seed 1 > "$TMP/feed-a.json"
cp "$TMP/feed-a.json" "$TMP/feed.json"
if [ "$SCALING" != 0 ]; then
    [[ $SCALING =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: --scaling needs a positive integer" >&2; exit 64; }
    "$GEN_FEED" --servers "$SCALING" --seed 1 > "$TMP/feed-small.json"
fi
if [ "$RELOAD" = 1 ]; then
    "$GEN_FEED" --servers "$SERVERS" --seed 2 --serial 1763802000 > "$TMP/feed-b.json"
fi
log "query files: $(python3 "$LB" queries "$TMP/q" --count 100000)"

# ------------------------------------------------------------------------------------------
# Servers

declare -A PORT PID

wait_ready() {  # name pid port logfile
    local name=$1 pid=$2 port=$3 logfile=$4
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; its log:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        python3 "$LB" probe "$port" && return 0
        sleep 0.1
    done
    log "$name does not answer on 127.0.0.1:$port after 30 s; its log:"
    tail -n 20 "$logfile" >&2 || true
    return 1
}

track() {  # name pid port logfile: stopped on exit; waits until it answers
    local name=$1 pid=$2 port=$3 logfile=$4
    CHILDREN+=("$pid")
    wait_ready "$name" "$pid" "$port" "$logfile" || die "$name failed to start"
    PORT[$name]=$port
    PID[$name]=$pid
}

start_pooldns() {  # name feed [config [binary]]
    local name=$1 feed=$2 config=${3:-$CONFIG} bin=${4:-$POOLDNS} port
    port=$(python3 "$LB" freeport) || die "no free port"
    # No HTTP status listener (it has a fixed default port and is not what is measured).
    local extra=()
    "$bin" serve --help 2>/dev/null | grep -q -- '--http' && extra+=(--http none)
    "$bin" serve --help 2>/dev/null | grep -q -- '--state-dir' && extra+=(--state-dir none)
    NO_COLOR=1 RUST_LOG=info "$bin" serve --config "$config" --feed "$feed" \
        --geoip "$GEOIP" --listen "127.0.0.1:$port" --udp-workers "$WORKERS" "${extra[@]}" \
        > "$TMP/$name.out" 2> "$TMP/$name.log" &
    track "$name" $! "$port" "$TMP/$name.log"
    log "$name: pid ${PID[$name]} on 127.0.0.1:$port, $WORKERS UDP workers; $(sed 's/\x1b\[[0-9;]*m//g' \
        "$TMP/$name.log" | grep -o 'eligible_v4=[0-9]* eligible_v6=[0-9]*.*build_ms=[0-9]*' | head -1) ms"
}

start_static() {  # nsd|knot
    local name=$1 port dir="$TMP/$1"
    port=$(python3 "$LB" freeport) || die "no free port"
    mkdir -p "$dir"
    sed -e "s|@DIR@|$dir|g; s|@PORT@|$port|g; s|@ZONE@|$TMP/pool.ntp.org.zone|g; s|@WORKERS@|$WORKERS|g" \
        "$ROOT/benches/load/$name.conf.in" > "$dir/$name.conf"
    if [ "$name" = nsd ]; then
        "$NSD" -d -c "$dir/nsd.conf" > "$dir/log" 2>&1 &
    else
        "$KNOTD" -c "$dir/knot.conf" > "$dir/log" 2>&1 &
    fi
    track "$name" $! "$port" "$dir/log"
    log "$name: pid ${PID[$name]} on 127.0.0.1:$port, $WORKERS UDP workers"
}

# gdnsd with its geoip and weighted plugins (benches/load/lb.py gdnsd writes the configuration,
# the zone and a copy of the GeoIP database in the shape gdnsd reads). It runs in the
# foreground ("start") as the current user, its run and state directories in the temp dir.
start_gdnsd() {
    local name=gdnsd-geo port dir="$TMP/gdnsd"
    port=$(python3 "$LB" freeport) || die "no free port"
    log "gdnsd configuration: $(python3 "$LB" gdnsd --feed "$TMP/feed-a.json" --config "$CONFIG" \
        --names "$TMP/q/names.json" --geoip "$GEOIP" --countries "$ROOT/src/continent.rs" \
        --dir "$dir" --port "$port" --workers "$WORKERS")"
    "$GDNSD" -c "$dir" start > "$dir/log" 2>&1 &
    track "$name" $! "$port" "$dir/log"
    log "$name: pid ${PID[$name]} on 127.0.0.1:$port, $WORKERS UDP threads"
}

# The floor: a trivial recvmmsg/sendmmsg loop that sends every query back with QR set
# (examples/udp_echo.rs). UDP only; it answers any probe.
start_echo() {
    local name=echo port
    port=$(python3 "$LB" freeport) || die "no free port"
    "$UDP_ECHO" --listen "127.0.0.1:$port" --workers "$WORKERS" > "$TMP/$name.log" 2>&1 &
    track "$name" $! "$port" "$TMP/$name.log"
    log "$name: pid ${PID[$name]} on 127.0.0.1:$port, $WORKERS UDP workers (examples/udp_echo, UDP only)"
}

start_pooldns pooldns "$TMP/feed.json"
SERVER_LIST=(pooldns)
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || die "--baseline $BASELINE: not an executable"
    start_pooldns pd-base "$TMP/feed.json" "$CONFIG" "$BASELINE"
    SERVER_LIST+=(pd-base)
fi
if [ "$SCALING" != 0 ]; then
    start_pooldns "pd-$SCALING" "$TMP/feed-small.json"
    SERVER_LIST+=("pd-$SCALING")
fi
if [ "$ZONES" = 1 ]; then
    grep -q '^mode = "plan"' "$CONFIG" || die "$CONFIG is not in plan mode: nothing to compare"
    sed 's/^mode = "plan"/mode = "zones"/' "$CONFIG" > "$TMP/zones.toml"
    start_pooldns pd-zones "$TMP/feed.json" "$TMP/zones.toml"
    SERVER_LIST+=(pd-zones)
fi
if [ "$RRL" = 1 ]; then
    grep -q '^\[rrl\]' "$CONFIG" && die "$CONFIG already has an [rrl] table: nothing to compare"
    { cat "$CONFIG"; printf '\n[rrl]\nresponses_per_second = 1000000\n'; } > "$TMP/rrl.toml"
    start_pooldns pd-rrl "$TMP/feed.json" "$TMP/rrl.toml"
    SERVER_LIST+=(pd-rrl)
fi
if [ "$DNSSEC" = 1 ]; then
    grep -q '^\[dnssec\]' "$CONFIG" && die "$CONFIG already has a [dnssec] table"
    mkdir -p "$TMP/keys"
    "$POOLDNS" keygen --dir "$TMP/keys" --ksk > /dev/null
    "$POOLDNS" keygen --dir "$TMP/keys" > /dev/null
    sed "s|^geoip = .*|geoip = \"$GEOIP\"|" "$CONFIG" > "$TMP/signed.toml"
    printf '\n[dnssec]\nkeys = "%s"\n' "$TMP/keys" >> "$TMP/signed.toml"
    start_pooldns pd-signed "$TMP/feed.json" "$TMP/signed.toml"
    SERVER_LIST+=(pd-signed)
    case ",$RUNS," in *,udp-do,*) ;; *) RUNS="$RUNS,udp-do,udp-nodo" ;; esac
fi
if [ "$COMPARE" = 1 ]; then
    log "static zone for NSD and Knot: $(python3 "$LB" zone --feed "$TMP/feed-a.json" \
        --config "$CONFIG" --names "$TMP/q/names.json" --out "$TMP/pool.ntp.org.zone")"
    start_static nsd
    start_static knot
    start_gdnsd
    SERVER_LIST+=(nsd knot gdnsd-geo)
    python3 "$LB" equivalence --names "$TMP/q/names.json" --server "pooldns=${PORT[pooldns]}" \
        --server "nsd=${PORT[nsd]}" --server "knot=${PORT[knot]}" \
        --server "gdnsd-geo=${PORT[gdnsd-geo]}" \
        || die "NSD, Knot or gdnsd do not answer like pooldns (rcode or record count); see above"
    # Not in the equivalence check: it answers with the query itself.
    if [ "$NO_ECHO" = 0 ]; then
        start_echo
        SERVER_LIST+=(echo)
    fi
fi

# ------------------------------------------------------------------------------------------
# Runs

RUNS_JSON="$TMP/runs.jsonl"
: > "$RUNS_JSON"

measure() {  # server run rep [rate] -- dnsperf args
    local server=$1 run=$2 rep=$3 rate=$4
    shift 5
    local rate_args=()
    [ -n "$rate" ] && rate_args=(--rate "$rate")
    # In the background and waited for, so that a signal is handled at once (the trap stops
    # this measurement, which stops its dnsperf, and then the servers).
    python3 "$LB" measure --pid "${PID[$server]}" --server "$server" --run "$run" --rep "$rep" \
        "${rate_args[@]}" --out "$TMP/dnsperf-$run-$server-$rep.txt" --runs "$RUNS_JSON" -- \
        dnsperf -B -s 127.0.0.1 -p "${PORT[$server]}" -T "$THREADS" -c "$CLIENTS" \
        -q "$OUTSTANDING" -t 2 "$@" &
    local mpid=$!
    CHILDREN+=("$mpid")
    local status=0
    wait "$mpid" || status=$?
    forget "$mpid"
    [ "$status" = 0 ] || die "$server died during the $run run (see $TMP/dnsperf-$run-$server-$rep.txt)"
}

one_run() {  # run server rep
    local run=$1 server=$2 rep=$3
    if [ "$server" = echo ] && [ "$run" = tcp ]; then
        log "  tcp        echo      skipped (the echo server is UDP only)"
        return 0
    fi
    case "$run" in
        udp) measure "$server" udp "$rep" "" -- -d "$TMP/q/mix.bin" -l "$DURATION" ;;
        udp-ecs) measure "$server" udp-ecs "$rep" "" -- -d "$TMP/q/ecs.bin" -l "$DURATION" ;;
        tcp) measure "$server" tcp "$rep" "" -- -m tcp -d "$TMP/q/mix.bin" -l "$DURATION" ;;
        udp-do) measure "$server" udp-do "$rep" "" -- -d "$TMP/q/do.bin" -l "$DURATION" ;;
        udp-nodo) measure "$server" udp-nodo "$rep" "" -- -d "$TMP/q/nodo.bin" -l "$DURATION" ;;
        rate) measure "$server" rate "$rep" "$RATE" -- -d "$TMP/q/mix.bin" \
                  -l "$RATE_DURATION" -Q "$RATE" -v ;;
        rate-ecs) measure "$server" rate-ecs "$rep" "$RATE" -- -d "$TMP/q/ecs.bin" \
                  -l "$RATE_DURATION" -Q "$RATE" -v ;;
        rate-ecs-*) measure "$server" "$run" "$rep" "${run#rate-ecs-}" -- -d "$TMP/q/ecs.bin" \
                  -l "$RATE_DURATION" -Q "${run#rate-ecs-}" -v ;;
        rate-*) measure "$server" "$run" "$rep" "${run#rate-}" -- -d "$TMP/q/mix.bin" \
                  -l "$RATE_DURATION" -Q "${run#rate-}" -v ;;
        *) die "unknown run $run (use udp,udp-ecs,tcp,rate,rate-ecs,udp-do,udp-nodo)" ;;
    esac
}

log ""
log "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$PREBUILT" ]; then
    POOLDNS_VERSION="$("$POOLDNS" --version 2>/dev/null | head -1) ($POOLDNS)"
else
    POOLDNS_VERSION="$("$POOLDNS" --version 2>/dev/null | head -1) ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
fi
log "versions: dnsperf $(dnsperf -h 2>&1 | grep -m1 '^Version' | cut -d' ' -f2 || true); $POOLDNS_VERSION$(
    [ "$COMPARE" = 1 ] && printf '; %s; %s; %s' "$("$NSD" -v 2>&1 | head -1)" \
        "$("$KNOTD" -V 2>&1 | head -1)" "$("$GDNSD" -h 2>&1 | grep -m1 '^gdnsd version')"
    [ "$COMPARE" = 1 ] && [ "$NO_ECHO" = 0 ] && printf '; udp_echo (%s)' "$UDP_ECHO")"
log "dnsperf -T $THREADS -c $CLIENTS -q $OUTSTANDING -t 2, binary query files (-B), ${DURATION} s saturating runs, ${RATE_DURATION} s at ${RATES:-$RATE} q/s; $REPEAT repetition(s)"
IFS=, read -r -a RUN_LIST <<< "$RUNS"
if [ -n "$RATES" ]; then    # the rate run, once per rate
    expanded=()
    for run in "${RUN_LIST[@]}"; do
        if [ "$run" = rate ] || [ "$run" = rate-ecs ]; then
            for r in "${RATE_LIST[@]}"; do expanded+=("$run-$r"); done
        else
            expanded+=("$run")
        fi
    done
    RUN_LIST=("${expanded[@]}")
fi
for rep in $(seq "$REPEAT"); do
    order=("${SERVER_LIST[@]}")
    # Alternate the order between repetitions so that slow drifts in the machine's other
    # load do not always favour the same server.
    if [ $((rep % 2)) = 0 ]; then
        order=()
        for ((i = ${#SERVER_LIST[@]} - 1; i >= 0; i--)); do order+=("${SERVER_LIST[$i]}"); done
    fi
    for run in "${RUN_LIST[@]}"; do
        for server in "${order[@]}"; do
            one_run "$run" "$server" "$rep"
        done
    done
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$LB" report "$RUNS_JSON"

# ------------------------------------------------------------------------------------------
# Reload under load

STATUS=0
if [ "$RELOAD" = 1 ]; then
    log ""
    log "reload under load: ${RELOAD_DURATION} s of dnsperf against pooldns, the feed rewritten every ${RELOAD_EVERY} s"
    # With --dnssec the signed server is the one measured (both reload the same feed).
    target=pooldns
    [ "$DNSSEC" = 1 ] && target=pd-signed
    log "  measured: $target"
    pid=${PID[$target]}
    rss_sampler() {
        while kill -0 "$pid" 2>/dev/null; do
            awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{print r, h}' "/proc/$pid/status" || true
            sleep 0.25
        done
    }
    rss_sampler > "$TMP/rss.txt" &
    RSS_PID=$!
    CHILDREN+=("$RSS_PID")
    python3 "$LB" swapper --feed "$TMP/feed.json" --source "$TMP/feed-a.json" \
        --source "$TMP/feed-b.json" --every "$RELOAD_EVERY" --duration $((RELOAD_DURATION - 1)) \
        --log "$TMP/swaps.txt" &
    SWAP_PID=$!
    CHILDREN+=("$SWAP_PID")
    python3 "$LB" check --port "${PORT[$target]}" --feed "$TMP/feed-a.json" \
        --feed "$TMP/feed-b.json" --config "$CONFIG" --duration "$RELOAD_DURATION" \
        --rate 1000 > "$TMP/check.json" &
    CHECK_PID=$!
    CHILDREN+=("$CHECK_PID")
    measure "$target" reload 1 "" -- -d "$TMP/q/mix.bin" -l "$RELOAD_DURATION" -S 1
    wait "$SWAP_PID" || die "the feed swapper failed"
    forget "$SWAP_PID"
    wait "$CHECK_PID" || die "the answer check failed to run"
    forget "$CHECK_PID"
    sleep 1.5      # the last rename's reload
    kill "$RSS_PID" 2>/dev/null || true
    wait "$RSS_PID" 2>/dev/null || true
    forget "$RSS_PID"
    signed_flag=()
    [ "$target" = pd-signed ] && signed_flag=(--signed)
    python3 "$LB" reload-report "${signed_flag[@]}" --log "$TMP/$target.log" --swaps "$TMP/swaps.txt" \
        --rss "$TMP/rss.txt" --runs "$RUNS_JSON" --check "$TMP/check.json" \
        --servers "$SERVERS" --every "$RELOAD_EVERY" || STATUS=2
fi

kill -0 "${PID[pooldns]}" 2>/dev/null || die "pooldns is gone at the end"
exit "$STATUS"
