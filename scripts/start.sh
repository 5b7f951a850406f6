#!/usr/bin/env bash
# Runs Bedside on this machine with a demo clinic:
#   installs what is missing (Debian packages, npm dependencies), starts a
#   private PostgreSQL and a private Mosquitto (Bedside's broker
#   configuration), builds the server and the web client, generates a
#   self-signed TLS certificate when none is configured, migrates, seeds the
#   demo clinic, prints the URLs and sign-ins, and runs `bedside serve` in
#   the foreground (Ctrl-C stops it; PostgreSQL and Mosquitto keep running
#   for the next start).
#
# Knobs (environment): BEDSIDE_DATA_DIR (default /var/lib/bedside as root,
# where the postgres and mosquitto users can reach it, else ./.bedside), BEDSIDE_PG_PORT
# (5433), BEDSIDE_MQTT_PORT (1884), BEDSIDE_HTTPS_PORT (8443),
# BEDSIDE_METRICS_PORT (9464), BEDSIDE_MEDIA_PORT (40000, UDP: video visits;
# with BEDSIDE_BIND=0.0.0.0 set BEDSIDE_VISITS__MEDIA_ANNOUNCE_IP to the address
# browsers reach), BEDSIDE_BIND (127.0.0.1; 0.0.0.0 to reach it
# from other machines), BEDSIDE_HOSTNAME (localhost), and any BEDSIDE_<SECTION>__<KEY>.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [ "$(id -u)" -eq 0 ]; then DEFAULT_DATA=/var/lib/bedside; else DEFAULT_DATA="$ROOT/.bedside"; fi
DATA="${BEDSIDE_DATA_DIR:-$DEFAULT_DATA}"
PG_PORT="${BEDSIDE_PG_PORT:-5433}"
MQTT_PORT="${BEDSIDE_MQTT_PORT:-1884}"
HTTPS_PORT="${BEDSIDE_HTTPS_PORT:-8443}"
METRICS_PORT="${BEDSIDE_METRICS_PORT:-9464}"
MEDIA_PORT="${BEDSIDE_MEDIA_PORT:-40000}"
BIND="${BEDSIDE_BIND:-127.0.0.1}"
HOST="${BEDSIDE_HOSTNAME:-localhost}"
mkdir -p "$DATA"
chmod 755 "$DATA"

install_base_packages
require_toolchains

PG_EXTRA_OPTS="$BEDSIDE_PG_SETTINGS" start_postgres "$DATA/pg" "$PG_PORT"
PSQL=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'bedside'")" != "1" ]; then
    "${PSQL[@]}" -c "CREATE DATABASE bedside"
fi

say "building bedside (release)"
cargo build --release --locked -p bedside-server
BEDSIDE="$ROOT/target/release/bedside"

say "building the web client"
(cd web-client && npm install --no-audit --no-fund --loglevel=error && npm run build --silent)

if [ -z "${BEDSIDE_HTTP__TLS_CERT:-}" ]; then
    if [ ! -f "$DATA/tls/cert.pem" ]; then
        say "generating a self-signed certificate for $HOST"
        mkdir -p "$DATA/tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
            -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,DNS:localhost,IP:127.0.0.1" \
            -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
            -keyout "$DATA/tls/key.pem" -out "$DATA/tls/cert.pem" 2>/dev/null
        chmod 600 "$DATA/tls/key.pem"
    fi
    export BEDSIDE_HTTP__TLS_CERT="$DATA/tls/cert.pem" BEDSIDE_HTTP__TLS_KEY="$DATA/tls/key.pem"
fi

export BEDSIDE_DATA_DIR="$DATA"
export BEDSIDE_DATABASE__URL="${BEDSIDE_DATABASE__URL:-postgres://postgres@127.0.0.1:$PG_PORT/bedside}"
export BEDSIDE_HTTP__ADDR="${BEDSIDE_HTTP__ADDR:-$BIND:$HTTPS_PORT}"
export BEDSIDE_METRICS__ADDR="${BEDSIDE_METRICS__ADDR:-127.0.0.1:$METRICS_PORT}"
export BEDSIDE_VISITS__MEDIA_UDP="${BEDSIDE_VISITS__MEDIA_UDP:-$BIND:$MEDIA_PORT}"
export BEDSIDE_HTTP__WEB_ROOT="${BEDSIDE_HTTP__WEB_ROOT:-$ROOT/web-client/dist}"
export BEDSIDE_MQTT__URL="${BEDSIDE_MQTT__URL:-mqtt://127.0.0.1:$MQTT_PORT}"
export BEDSIDE_PUBLIC_BASE_URL="${BEDSIDE_PUBLIC_BASE_URL:-https://$HOST:$HTTPS_PORT}"
export BEDSIDE_MQTT__BROKER_PID_FILE="${BEDSIDE_MQTT__BROKER_PID_FILE:-$DATA/mosquitto/mosquitto.pid}"

say "migrating and seeding the demo clinic"
"$BEDSIDE" migrate >/dev/null
DEMO_OUTPUT="$("$BEDSIDE" demo)"

say "starting Mosquitto on 127.0.0.1:$MQTT_PORT"
start_mosquitto "$DATA" "$MQTT_PORT"

cat <<INFO

$DEMO_OUTPUT

  Bedside       $BEDSIDE_PUBLIC_BASE_URL/login
  API document  $BEDSIDE_PUBLIC_BASE_URL/api/v1/openapi.json
  Metrics       http://$BEDSIDE_METRICS__ADDR/metrics
  Video media   UDP $BEDSIDE_VISITS__MEDIA_UDP (the one port to open for video visits)
  MQTT broker   $BEDSIDE_MQTT__URL (devices authenticate; see \`bedside devices provision --help\`)

  The certificate is self-signed ($DATA/tls/cert.pem). Accept the browser's
  warning once, or trust it: Chromium/Chrome on Linux:
    certutil -d sql:\$HOME/.pki/nssdb -A -t "C,," -n bedside -i $DATA/tls/cert.pem
  system-wide on Debian:
    cp $DATA/tls/cert.pem /usr/local/share/ca-certificates/bedside.crt && update-ca-certificates

INFO
say "simulated devices (log: $DATA/simulate.log)"
"$BEDSIDE" simulate > "$DATA/simulate.log" 2>&1 &
SIMULATOR=$!
trap 'kill $SIMULATOR 2>/dev/null || true' EXIT

say "bedside serve (Ctrl-C to stop)"
"$BEDSIDE" serve
