#!/usr/bin/env bash
# Measures the FHIR API over a patient with a long history, everything on
# this machine:
#   - a private PostgreSQL with the settings scripts/start.sh uses (durable);
#   - `bedside serve` (release build, plain HTTP on loopback, ingest off);
#   - `loadtest fhir seed` (READINGS, default 1,000,000: heart rate and SpO2
#     every 30 s back from now, bulk-loaded), then `loadtest fhir run` with
#     the arguments given to this script (e.g. --seconds 20 --runs 3).
# KEEP=1 keeps the work directory.
#
#   scripts/loadtest-fhir.sh --seconds 20 --runs 3 --json /tmp/fhir.json
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

READINGS="${READINGS:-1000000}"
install_base_packages
require_toolchains

begin_loadtest bedside-fhir

PG_PORT="$(free_port)"
PG_EXTRA_OPTS="$BEDSIDE_PG_SETTINGS" start_postgres "$WORK/pg" "$PG_PORT"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -c "CREATE DATABASE bedside" >/dev/null

prepare_loadtest_bedside "$PG_PORT" "127.0.0.1:0"

say "starting bedside serve on http://127.0.0.1:$HTTP_PORT"
start_bedside_serve

say "seeding a patient with $READINGS readings"
PATIENT="$("$LOADTEST" fhir seed --readings "$READINGS")"

say "loadtest fhir run $*"
"$LOADTEST" fhir run --base "http://127.0.0.1:$HTTP_PORT" --patient "$PATIENT" \
    --server-pid "$BEDSIDE_PID" "$@"
