# Shared shell helpers for scripts/start.sh and scripts/test.sh.
# Sourced, not run. Everything here is idempotent.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "run as root (needed: $*)"; fi
}

APT_UPDATED=0
# apt_need PACKAGE COMMAND_OR_PATH...: installs PACKAGE when any of the
# commands or paths is missing.
apt_need() {
    local package="$1"; shift
    local missing=0 probe
    for probe in "$@"; do
        if [[ "$probe" == /* ]]; then [ -e "$probe" ] || missing=1; else command -v "$probe" >/dev/null 2>&1 || missing=1; fi
    done
    [ "$missing" -eq 0 ] && return 0
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "installing $package"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}

pg_bin() {
    local v
    for v in 17 16 15; do
        [ -x "/usr/lib/postgresql/$v/bin/$1" ] && { echo "/usr/lib/postgresql/$v/bin/$1"; return; }
    done
    command -v "$1" || die "PostgreSQL tool $1 not found"
}

# Common packages both scripts need.
install_base_packages() {
    apt_need ca-certificates /etc/ssl/certs
    apt_need postgresql /usr/lib/postgresql
    apt_need mosquitto mosquitto
    apt_need mosquitto-clients mosquitto_pub
    require_mosquitto_2_0_13
    apt_need openssl openssl
    apt_need procps pgrep
    apt_need build-essential cc
    apt_need pkg-config pkg-config
    # libopus for the visit load test is built from source.
    apt_need cmake cmake
}

# The broker's version, or nothing when it is not installed (Debian puts it
# in /usr/sbin, which a non-root PATH may lack; `mosquitto -h` exits non-zero).
mosquitto_version() {
    local bin
    bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    [ -x "$bin" ] || return 0
    { "$bin" -h 2>/dev/null || true; } | awk 'NR == 1 { print $3 }'
}

# Mosquitto 2.0.13 or newer. Before it (Debian 12 ships 2.0.11) the broker
# does not keep its in-flight window once messages queue for a client: each
# PUBACK moves up to a window's worth more in flight ("various fixes around
# inflight quota management", 2.0.13), so a gateway that is behind gets its
# whole backlog at once (437,916 unacknowledged messages against a window of
# 4000, measured) and slows down further, and those messages count against
# max_queued_messages. Debian 12 has a fixed Mosquitto in bookworm-backports.
require_mosquitto_2_0_13() {
    [ -n "$(mosquitto_version)" ] || die "Mosquitto is not installed (apt-get install mosquitto)"
    version_at_least "$(mosquitto_version)" 2.0.13 && return 0
    local codename=""
    [ -r /etc/os-release ] && codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ "$codename" = bookworm ] \
        || die "Mosquitto $(mosquitto_version) is too old: Bedside needs 2.0.13 or newer (see docs/devices.md)"
    if ! grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        say "adding Debian's bookworm-backports (for Mosquitto 2.0.13 or newer)"
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            | as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
    say "installing Mosquitto from bookworm-backports (Debian 12's $(mosquitto_version) mishandles its in-flight window)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        -t bookworm-backports mosquitto mosquitto-clients >/dev/null
    version_at_least "$(mosquitto_version)" 2.0.13 || die "Mosquitto is still $(mosquitto_version) after installing from bookworm-backports"
}

version_at_least() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$2" ]; }

# Rust 1.88+ and Node.js 20.19+. Debian 12's own packages are older
# (rustc 1.63, nodejs 18), so when missing or too old they come from their
# projects: rustup for Rust, the official Node.js 20 binaries (checksum
# verified) for Node.
require_toolchains() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v cargo >/dev/null || ! version_at_least "$(rustc --version | awk '{print $2}')" 1.88.0; then
        if command -v rustup >/dev/null; then
            say "updating Rust with rustup"
            rustup toolchain install stable --profile minimal && rustup default stable
        else
            say "installing Rust with rustup"
            apt_need curl curl
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
            . "$HOME/.cargo/env"
        fi
    fi
    version_at_least "$(rustc --version | awk '{print $2}')" 1.88.0 || die "Rust 1.88 or newer is needed"
    if ! command -v node >/dev/null || ! version_at_least "$(node --version | tr -d v)" 20.19.0; then
        install_node20
    fi
    version_at_least "$(node --version | tr -d v)" 20.19.0 || die "Node.js 20.19 or newer is needed"
}

# geckodriver (Firefox's WebDriver server) for the Firefox end-to-end test:
# not in Debian, so from crates.io, built with cargo (about 1.5 minutes on
# two cores) into cargo's bin directory. A pinned version, so a new release
# cannot break a clean run.
GECKODRIVER_VERSION=0.37.1
ensure_geckodriver() {
    if command -v geckodriver >/dev/null && geckodriver --version | head -1 | grep -q " $GECKODRIVER_VERSION"; then
        return 0
    fi
    say "installing geckodriver $GECKODRIVER_VERSION with cargo"
    cargo install --locked --quiet geckodriver --version "$GECKODRIVER_VERSION"
}

install_node20() {
    say "installing Node.js 20 (official binaries) into /usr/local"
    apt_need curl curl
    apt_need xz-utils xz
    local arch base tarball tmp
    case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) die "no Node.js binaries for $(uname -m)" ;; esac
    base="https://nodejs.org/dist/latest-v20.x"
    tmp="$(mktemp -d)"
    curl -fsSL "$base/SHASUMS256.txt" -o "$tmp/SHASUMS256.txt"
    tarball="$(grep -o "node-v20[0-9.]*-linux-$arch.tar.xz" "$tmp/SHASUMS256.txt" | head -1)"
    [ -n "$tarball" ] || die "cannot find the Node.js 20 download"
    curl -fsSL "$base/$tarball" -o "$tmp/$tarball"
    (cd "$tmp" && grep " $tarball\$" SHASUMS256.txt | sha256sum -c --quiet -) || die "Node.js download failed its checksum"
    as_root tar -xJf "$tmp/$tarball" -C /usr/local --strip-components=1 --exclude=CHANGELOG.md --exclude=LICENSE --exclude=README.md
    rm -rf "$tmp"
    hash -r
}

# wait_for_port PORT SECONDS: true once something listens on 127.0.0.1:PORT.
# The Python tools of the tests, from PyPI, pinned in
# tests/tools/requirements.txt, in a virtualenv under target/ (rebuilt when
# the pins change): fhir.resources 6.1.0 (the independent FHIR R4 4.0.1
# validator), aiosmtpd (a real SMTP server for the reminders) and icalendar
# (an independent reader of the calendar feeds); and from npm, panva's
# oidc-provider (the OpenID Connect provider of the sign-in tests).
ensure_test_tools() {
    (cd "$ROOT/tests/tools/oidc" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    local venv="$ROOT/target/test-tools" requirements="$ROOT/tests/tools/requirements.txt"
    if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/requirements.txt"; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || apt_need python3 python3
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_need python3-venv /usr/share/doc/python3-venv
    say "installing the tests' Python tools (PyPI) into target/test-tools"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
}

wait_for_port() {
    local port="$1" deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# The PostgreSQL settings Bedside's set-up runs with, and so the ones the
# device load test measures. At 10,000 readings a second most of the WAL is
# full-page images written after each checkpoint: compressing them and
# checkpointing less often (bigger max_wal_size, 15 min) cuts WAL volume and
# the latency spikes checkpoints cause. The default 128 MB of shared buffers
# cannot hold the hot pages of the readings' two indexes once a few million
# readings are stored; 1 GB can. Durability settings stay at their safe
# defaults (fsync, synchronous_commit, full_page_writes on). Lock waits
# longer than a second are logged: none belongs on the ingest path.
BEDSIDE_PG_SETTINGS="-c shared_buffers=1GB -c wal_compression=lz4 -c max_wal_size=4GB -c checkpoint_timeout=15min -c log_lock_waits=on"

# start_postgres DIR PORT: a private cluster in DIR (initdb on first use),
# run as the postgres user because PostgreSQL refuses root. Trust auth on
# loopback only. Idempotent: a cluster already running in DIR is reused.
start_postgres() {
    local dir="$1" port="$2"
    mkdir -p "$dir"
    local owner=""
    if [ "$(id -u)" -eq 0 ]; then owner=postgres; chown postgres:postgres "$dir"; fi
    run_pg() { if [ -n "$owner" ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        say "initialising a private PostgreSQL cluster in $dir"
        run_pg "$(pg_bin initdb)" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if run_pg "$(pg_bin pg_ctl)" -D "$dir/data" status >/dev/null 2>&1; then
        return 0
    fi
    say "starting PostgreSQL on 127.0.0.1:$port"
    run_pg "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 ${PG_EXTRA_OPTS:-}" start >/dev/null \
        || { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
}

stop_postgres() {
    local dir="$1"
    [ -f "$dir/data/PG_VERSION" ] || return 0
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$(pg_bin pg_ctl)" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    else
        "$(pg_bin pg_ctl)" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || shuf -i 20000-60000 -n 1
}

# start_mosquitto DIR PORT: Mosquitto from Bedside's shipped configuration
# (deploy/mosquitto/mosquitto.conf.in), its state, password and ACL files in
# DIR/mosquitto. A broker already running there is reloaded instead
# (SIGHUP: it rereads the password and ACL files).
start_mosquitto() {
    local dir="$1" port="$2"
    mkdir -p "$dir/mosquitto/db"
    sed -e "s|@DATA_DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@BIND@|127.0.0.1|g" \
        "$ROOT/deploy/mosquitto/mosquitto.conf.in" > "$dir/mosquitto/mosquitto.conf"
    if [ -n "${MOSQUITTO_QUIET:-}" ]; then
        sed -i 's/^connection_messages true/connection_messages false/' "$dir/mosquitto/mosquitto.conf"
    fi
    if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
        # Mosquitto started by root drops to the mosquitto user, who must own
        # its state. Its password and ACL files are for it alone (Mosquitto
        # 2.0.16+ warns that future versions refuse files others can read);
        # `bedside devices sync` keeps their owner and mode when it rewrites them.
        chown -R mosquitto:mosquitto "$dir/mosquitto"
        chmod 0640 "$dir/mosquitto/passwd" "$dir/mosquitto/acl" 2>/dev/null || true
    fi
    local pidfile="$dir/mosquitto/mosquitto.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill -HUP "$(cat "$pidfile")"
    else
        mosquitto -d -c "$dir/mosquitto/mosquitto.conf"
        wait_for_port "$port" 10 || { tail -20 "$dir/mosquitto/mosquitto.log" >&2 || true; die "Mosquitto did not start"; }
    fi
}

# What the load-test scripts share: a work directory ($WORK), processes to
# stop at exit ($PIDS, plus any Mosquitto and PostgreSQL started in $WORK),
# and release builds of bedside and loadtest ($BEDSIDE, $LOADTEST).
# KEEP=1 keeps the work directory (logs, reports) instead of removing it.
begin_loadtest() {
    WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
    chmod 755 "$WORK"
    PIDS=()
    trap end_loadtest EXIT
    say "building bedside and loadtest (release)"
    cargo build --release --locked -p bedside-server -p bedside-loadtest
    BEDSIDE="$ROOT/target/release/bedside"
    LOADTEST="$ROOT/target/release/loadtest"
}

end_loadtest() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pidfile in "$WORK"/*/mosquitto/mosquitto.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    stop_postgres "$WORK/pg"
    if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}

# Prepares a load test's `bedside serve` on the private database at port $1,
# its media on $2: plain HTTP on a free loopback port (sets HTTP_PORT and
# METRICS_ADDR), device ingest off, per-client rate limits out of the way
# (a load generator is one address), migrated, and an admin to book and
# read with (LOADTEST_ADMIN_PASSWORD).
prepare_loadtest_bedside() {
    local pg_port="$1" media="$2"
    HTTP_PORT="$(free_port)"
    METRICS_ADDR="127.0.0.1:$(free_port)"
    export BEDSIDE_DATA_DIR="$WORK/data"
    export BEDSIDE_DATABASE__URL="postgres://postgres@127.0.0.1:$pg_port/bedside"
    export BEDSIDE_HTTP__ADDR="127.0.0.1:$HTTP_PORT"
    export BEDSIDE_METRICS__ADDR="$METRICS_ADDR"
    export BEDSIDE_VISITS__MEDIA_UDP="$media"
    export BEDSIDE_INGEST__ENABLED=false
    export BEDSIDE_PUBLIC_BASE_URL="http://127.0.0.1:$HTTP_PORT"
    export BEDSIDE_HTTP__RATE_LIMIT_PER_SECOND=100000 BEDSIDE_HTTP__RATE_LIMIT_BURST=100000
    export BEDSIDE_LOG__FILTER="${BEDSIDE_LOG__FILTER:-warn}"
    export LOADTEST_ADMIN_PASSWORD="loadtest-admin-password"
    say "migrating and creating the load test's admin"
    "$BEDSIDE" migrate >/dev/null
    echo "$LOADTEST_ADMIN_PASSWORD" | "$BEDSIDE" users create --role admin \
        --email loadtest.admin@bedside.test --name "Load Test Admin" >/dev/null
}

# Starts `$BEDSIDE serve` in the background (log in $WORK/bedside.log, pid in
# $BEDSIDE_PID and $PIDS) and waits until $HTTP_PORT answers /readyz.
start_bedside_serve() {
    "$BEDSIDE" serve > "$WORK/bedside.log" 2>&1 &
    BEDSIDE_PID=$!
    PIDS+=("$BEDSIDE_PID")
    local deadline=$((SECONDS + 60))
    until curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { tail -30 "$WORK/bedside.log" >&2; die "bedside did not become ready"; }
        sleep 0.5
    done
}
