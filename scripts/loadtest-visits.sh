#!/usr/bin/env bash
# Measures video visits through Bedside's SFU and, in the same run and with
# the same load, through Janus (Debian's `janus`, videoroom plugin),
# everything on this machine:
#   - a private PostgreSQL and `bedside serve` (release build, plain HTTP on
#     loopback, device ingest off: only visits are measured), its media on
#     one UDP port;
#   - a private Janus with only the videoroom plugin and the WebSocket
#     transport, ICE on this machine's own address;
#   - `loadtest visits` with the arguments given to this script
#     (e.g. --visits 50 --seconds 30 --runs 3 --json /tmp/visits.json).
# BEDSIDE_ONLY=1 leaves Janus out (quicker, for comparing changes to Bedside).
# ENGINE_FLOOR=1 runs Bedside with `visits.rtcp_feedback = false` (no NACK,
# RTCP reports or congestion feedback): what the SFU engine costs without
# them, to compare with ordinary runs alternated with it
# (docs/sfu-engine-notes.md §7).
# KEEP=1 keeps the work directory (logs, the JSON report); PROFILE=1 samples
# the bedside process with perf for 20 s of the first Bedside window and
# prints its hottest functions (needs linux-perf).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Janus keeps its feedback: a comparison with it would not be like for like.
if [ "${ENGINE_FLOOR:-0}" = 1 ] && [ "${BEDSIDE_ONLY:-0}" != 1 ]; then
    die "ENGINE_FLOOR=1 needs BEDSIDE_ONLY=1 (it is not a comparison with Janus)"
fi
install_base_packages
require_toolchains
[ "${BEDSIDE_ONLY:-0}" = 1 ] || apt_need janus janus

# Every participant has up to two connections, each with its own sockets
# on both ends of loopback.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

begin_loadtest bedside-visits

PG_PORT="$(free_port)"
PG_EXTRA_OPTS="$BEDSIDE_PG_SETTINGS -c max_connections=200" start_postgres "$WORK/pg" "$PG_PORT"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -c "CREATE DATABASE bedside" >/dev/null

prepare_loadtest_bedside "$PG_PORT" "127.0.0.1:$(free_port)"

if [ "${ENGINE_FLOOR:-0}" = 1 ]; then
    export BEDSIDE_VISITS__RTCP_FEEDBACK=false
    say "RTCP feedback off: measuring the SFU engine without NACK, reports or congestion feedback"
fi
say "starting bedside serve on http://127.0.0.1:$HTTP_PORT (media on $BEDSIDE_VISITS__MEDIA_UDP)"
start_bedside_serve

start_janus() {
    JANUS_PORT="$(free_port)"
    # libnice gathers no loopback candidates: Janus and its participants use
    # this machine's first IPv4 address (the packets still stay in the kernel).
    HOST_IP="$( (ip -4 -o addr show scope global 2>/dev/null || true) | awk '{ sub("/.*", "", $4); print $4; exit }')"
    [ -n "$HOST_IP" ] || HOST_IP="$( (hostname -I 2>/dev/null || true) | awk '{ print $1 }')"
    [ -n "$HOST_IP" ] || die "Janus needs a non-loopback IPv4 address on this machine"
    JANUS_LIB="$(dirname "$(dpkg -L janus | grep -m1 '/janus/plugins/libjanus_videoroom.so$')")/.."
    mkdir -p "$WORK/janus"
    # Only the videoroom plugin and the WebSocket transport are loaded.
    DISABLED_PLUGINS="$(cd "$JANUS_LIB/plugins" && ls libjanus_*.so | grep -v videoroom | paste -sd, -)"
    DISABLED_TRANSPORTS="$(cd "$JANUS_LIB/transports" && ls libjanus_*.so | grep -v websockets | paste -sd, -)"
    cat > "$WORK/janus/janus.jcfg" <<JCFG
general: {
    configs_folder = "$WORK/janus"
    plugins_folder = "$JANUS_LIB/plugins"
    transports_folder = "$JANUS_LIB/transports"
    events_folder = "$JANUS_LIB/events"
    loggers_folder = "$JANUS_LIB/loggers"
    debug_level = ${JANUS_DEBUG_LEVEL:-3}
    session_timeout = 120
}
media: {
    rtp_port_range = "30000-39999"
}
nat: {
    ice_enforce_list = "$HOST_IP"
    nice_debug = false
}
plugins: { disable = "$DISABLED_PLUGINS" }
transports: { disable = "$DISABLED_TRANSPORTS" }
events: { broadcast = false }
JCFG
    printf 'general: {\n}\n' > "$WORK/janus/janus.plugin.videoroom.jcfg"
    cat > "$WORK/janus/janus.transport.websockets.jcfg" <<JCFG
general: {
    json = "compact"
    ws = true
    ws_port = $JANUS_PORT
    ws_ip = "127.0.0.1"
    wss = false
}
admin: {
    admin_ws = false
    admin_wss = false
}
JCFG
    say "starting Janus $(janus --version 2>/dev/null | awk 'NR == 1 { print $4 }') on ws://127.0.0.1:$JANUS_PORT"
    janus --config="$WORK/janus/janus.jcfg" --configs-folder="$WORK/janus" --disable-colors \
        --disable-stdout --log-file="$WORK/janus.log" > /dev/null 2>&1 &
    JANUS_PID=$!
    PIDS+=("$JANUS_PID")
    deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$JANUS_PORT") 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] && kill -0 "$JANUS_PID" 2>/dev/null \
            || { tail -30 "$WORK/janus.log" >&2; die "Janus did not start"; }
        sleep 0.2
    done
}

JANUS_ARGS=()
if [ "${BEDSIDE_ONLY:-0}" != 1 ]; then
    start_janus
    JANUS_ARGS=(--janus "ws://127.0.0.1:$JANUS_PORT" --janus-pid "$JANUS_PID" --janus-peer-ip "$HOST_IP")
fi

if [ "${PROFILE:-0}" = 1 ]; then
    apt_need linux-perf perf
    # The first Bedside window starts after booking, connecting and a
    # warm-up; sample 20 s from then.
    ( sleep "${PROFILE_DELAY:-25}"; perf record ${PERF_CALL_GRAPH:--g} -p "$BEDSIDE_PID" -F 499 -o "$WORK/perf.data" -- sleep 20 >/dev/null 2>&1 ) &
    PIDS+=($!)
fi

say "loadtest visits $*"
"$LOADTEST" visits --base "http://127.0.0.1:$HTTP_PORT" --metrics "http://$METRICS_ADDR/metrics" \
    --bedside-pid "$BEDSIDE_PID" --admin-email loadtest.admin@bedside.test "${JANUS_ARGS[@]}" "$@"

if [ "${PROFILE:-0}" = 1 ]; then
    wait "${PIDS[-1]}" 2>/dev/null || true
    say "where bedside's CPU went (20 s of the first window)"
    perf report -i "$WORK/perf.data" --no-children -g none --sort dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -30
fi
