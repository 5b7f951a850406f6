#!/usr/bin/env bash
# Measures the vitals pipeline under a swarm of home devices, everything on
# this machine:
#   - a private PostgreSQL with the settings scripts/start.sh uses (durable:
#     fsync and synchronous commit on, so the figures are what a clinic
#     would get; see BEDSIDE_PG_SETTINGS in scripts/lib.sh) and commit
#     timestamps tracked (publish→commit of every reading, read afterwards);
#   - Mosquitto from Bedside's shipped configuration (deploy/mosquitto), with
#     the password and ACL files `bedside devices sync` writes;
#   - a second Mosquitto from the same configuration for the pass-through
#     ceiling (its load never reaches Bedside's gateway);
#   - `bedside serve` (release build, plain HTTP on loopback) with ingest on;
#   - `loadtest devices seed`, then `loadtest devices run` with the
#     arguments given to this script (e.g. --rate 10000 --seconds 60).
# DEVICES (default 10000) sets the swarm's size; KEEP=1 keeps the work
# directory (logs, the JSON report) instead of removing it; PROFILE=1 samples
# every process with perf for 20 s of the publishing window and prints where
# the CPU went (needs linux-perf).
#
#   scripts/loadtest-devices.sh --rate 10000 --seconds 60 --json /tmp/devices.json
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DEVICES="${DEVICES:-10000}"
install_base_packages
require_toolchains

# Every device is a connection, on both ends of loopback: the load test and
# Mosquitto each need an open file per device, and a few hundred more.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((DEVICES + 500)) ] \
    || die "the open-file limit ($(ulimit -n)) is too low for $DEVICES devices"

begin_loadtest bedside-loadtest

PG_PORT="$(free_port)"
# Commit timestamps give every reading's publish→commit time after the run.
# pg_stat_statements is the database side of the profile printed at the end.
PG_EXTRA_OPTS="$BEDSIDE_PG_SETTINGS -c track_commit_timestamp=on -c max_connections=200 -c shared_preload_libraries=pg_stat_statements" \
    start_postgres "$WORK/pg" "$PG_PORT"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -c "CREATE DATABASE bedside" >/dev/null
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -d bedside -c "CREATE EXTENSION pg_stat_statements" >/dev/null

MQTT_PORT="$(free_port)"
PASSTHROUGH_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
export BEDSIDE_DATA_DIR="$WORK/data"
export BEDSIDE_DATABASE__URL="postgres://postgres@127.0.0.1:$PG_PORT/bedside"
export BEDSIDE_HTTP__ADDR="127.0.0.1:$HTTP_PORT"
export BEDSIDE_METRICS__ADDR="127.0.0.1:$(free_port)"
export BEDSIDE_VISITS__MEDIA_UDP="127.0.0.1:0"
export BEDSIDE_MQTT__URL="mqtt://127.0.0.1:$MQTT_PORT"
export BEDSIDE_MQTT__BROKER_PID_FILE="$WORK/data/mosquitto/mosquitto.pid"
export BEDSIDE_PUBLIC_BASE_URL="http://127.0.0.1:$HTTP_PORT"
export BEDSIDE_LOG__FILTER="${BEDSIDE_LOG__FILTER:-warn}"
export LOADTEST_CLINICIAN_PASSWORD="loadtest-clinician-password"

say "migrating, creating the clinician and $DEVICES devices"
"$BEDSIDE" migrate >/dev/null
echo "$LOADTEST_CLINICIAN_PASSWORD" | "$BEDSIDE" users create --role clinician \
    --email loadtest.clinician@bedside.test --name "Dr. Load Test" >/dev/null
"$LOADTEST" devices seed --devices "$DEVICES" --out "$WORK/devices.json"
"$BEDSIDE" devices sync >/dev/null

# 10,000 connect and disconnect lines in the broker's log are no use here.
export MOSQUITTO_QUIET=1

say "starting Mosquitto (Bedside's) on $MQTT_PORT and a pass-through one on $PASSTHROUGH_PORT"
start_mosquitto "$WORK/data" "$MQTT_PORT"
PASSTHROUGH_PASSWORD="$(openssl rand -hex 16)"
mkdir -p "$WORK/passthrough/mosquitto"
touch "$WORK/passthrough/mosquitto/passwd"
chmod 600 "$WORK/passthrough/mosquitto/passwd"
mosquitto_passwd -b "$WORK/passthrough/mosquitto/passwd" loadtest "$PASSTHROUGH_PASSWORD" 2>/dev/null
printf 'user loadtest\ntopic readwrite loadtest/passthrough/#\n' > "$WORK/passthrough/mosquitto/acl"
start_mosquitto "$WORK/passthrough" "$PASSTHROUGH_PORT"
export LOADTEST_PASSTHROUGH_PASSWORD="$PASSTHROUGH_PASSWORD"

say "starting bedside serve on http://127.0.0.1:$HTTP_PORT"
start_bedside_serve

psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -d bedside -c "SELECT pg_stat_statements_reset()" >/dev/null
PROFILE_ARGS=()
if [ "${PROFILE:-0}" = 1 ]; then
    apt_need linux-perf perf
    PROFILE_ARGS=(--profile-command "perf record -a -g -e cpu-clock -F 199 -o $WORK/perf.data -- sleep 20 2>/dev/null")
fi
say "loadtest devices run $*"
"$LOADTEST" devices run --devices-file "$WORK/devices.json" \
    --mqtt-port "$MQTT_PORT" --base "http://127.0.0.1:$HTTP_PORT" \
    --passthrough-port "$PASSTHROUGH_PORT" "${PROFILE_ARGS[@]}" "$@"

say "Bedside's own ingest and alert metrics after the run"
curl -fsS "http://$BEDSIDE_METRICS__ADDR/metrics" \
    | grep -E '^bedside_(ingest|alert)_' | grep -v '_bucket' || true
say "alert evaluations that changed an alert (cumulative buckets, seconds)"
curl -fsS "http://$BEDSIDE_METRICS__ADDR/metrics" \
    | grep -E '^bedside_alert_evaluation_seconds_bucket.*outcome="changed"' || true

say "the database's profile: statements by total time during the run"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bedside -P pager=off -c "
    SELECT round(total_exec_time::numeric / 1000, 2) AS total_s, calls,
           round(mean_exec_time::numeric, 2) AS mean_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 10"

if [ "${PROFILE:-0}" = 1 ]; then
    say "the CPU profile: by process, then the hottest functions"
    perf report -i "$WORK/perf.data" --no-children -g none --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
    perf report -i "$WORK/perf.data" --no-children -g none --sort comm,dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
fi
