#!/usr/bin/env bash
# Runs every test of Bedside: formatting and lints, the Rust unit and
# integration tests (real PostgreSQL and Mosquitto), the web client's unit
# tests, and the browser end-to-end tests (Debian's Chromium and Firefox
# ESR, headless).
# Installs what is missing first. Starts a private PostgreSQL cluster on a
# free port for the run and removes it afterwards.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

install_base_packages
apt_need chromium /usr/bin/chromium
# The second browser engine of the video-visit test, driven through geckodriver.
apt_need firefox-esr /usr/bin/firefox-esr
# A real TURN server for the TURN credentials test.
apt_need coturn turnserver
apt_need coreutils stdbuf
require_toolchains
ensure_geckodriver
ensure_test_tools

PG_DIR="$(mktemp -d /tmp/bedside-test-pg.XXXXXX)"
chmod 755 "$PG_DIR"
PG_PORT="$(free_port)"
cleanup() { stop_postgres "$PG_DIR"; rm -rf "$PG_DIR"; }
trap cleanup EXIT
PG_EXTRA_OPTS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start_postgres "$PG_DIR" "$PG_PORT"
export BEDSIDE_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
# A clean clone gains nothing from incremental caches, which roughly double
# the size of target/ (CI once ran out of disk).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

say "web client: unit tests and the browser end-to-end test"
cd web-client
npm install --no-audit --no-fund --loglevel=error
npm run typecheck --silent
npm test
BEDSIDE_BIN="$ROOT/target/debug/bedside" npm run e2e
