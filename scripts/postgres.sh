#!/usr/bin/env bash
# A throw-away local PostgreSQL for the tests, from Debian's packages.
#
#   scripts/postgres.sh [start]   install if missing, create the cluster once, start it if stopped,
#                                 make the user and database, print the SQLAlchemy URL on stdout
#   scripts/postgres.sh url       print the URL (does not start anything)
#   scripts/postgres.sh status    exit 0 when running
#   scripts/postgres.sh stop      stop it (the data stays; `start` again reuses it)
#   scripts/postgres.sh destroy   stop it and delete its folder
#
# Idempotent. The cluster is private to this checkout: its own folder (RAWINFER_PG_DIR, default
# /tmp/rawinfer-pg-<hash of the checkout path>), its own port (RAWINFER_PG_PORT, else a free port
# chosen once and kept in the folder), listening on 127.0.0.1 only. As root, the server runs as
# Debian's `postgres` user (PostgreSQL refuses to run as root); otherwise as the caller. Tuned
# for tests: fsync off. The database user `rawinfer` (password `rawinfer`, CREATEDB so tests can
# make a database each) owns the database `rawinfer_test`. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CMD=${1:-start}
DIR=${RAWINFER_PG_DIR:-/tmp/rawinfer-pg-$(printf %s "$REPO" | sha1sum | cut -c1-10)}
DATA=$DIR/data
USER_NAME=rawinfer
PASSWORD=rawinfer
DB=rawinfer_test
log() { echo "postgres.sh: $*" >&2; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

install() {
  [ -n "$(pg_bin)" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "PostgreSQL is not installed and this is not root: apt-get install postgresql"; exit 1
  fi
  log "apt-get install postgresql"
  apt-get update -qq >&2
  # the package's own cluster is not used; policy-rc.d keeps it from starting where services can
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  [ -n "$(pg_bin)" ] || { log "postgresql installed but no initdb found"; exit 1; }
}

as_pg() {  # run a server tool as the cluster's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

port() {
  if [ -n "${RAWINFER_PG_PORT:-}" ]; then echo "$RAWINFER_PG_PORT"
  elif [ -f "$DIR/port" ]; then cat "$DIR/port"
  else free_port | tee "$DIR/port"; fi
}

url() { echo "postgresql+psycopg://$USER_NAME:$PASSWORD@127.0.0.1:$(cat "$DIR/port")/$DB"; }

running() { [ -f "$DATA/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_admin() {  # psql as the superuser over the cluster's own socket
  as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$(cat "$DIR/port")" -U postgres -d postgres "$@"
}

start() {
  install
  local bin; bin=$(pg_bin)
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  local p; p=$(port); echo "$p" > "$DIR/port"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "initdb $DATA"
    as_pg "$bin/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
    cat >> "$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
  fi
  if ! running; then
    if [ -z "${RAWINFER_PG_PORT:-}" ] && ! port_free "$p"; then
      p=$(free_port); echo "$p" > "$DIR/port"; log "the kept port was taken; using $p"
    fi
    log "starting on 127.0.0.1:$p"
    as_pg "$bin/pg_ctl" -D "$DATA" -l "$DIR/server.log" -o "-p $p" -w -t 60 start >/dev/null \
      || { tail -n 20 "$DIR/server.log" >&2; exit 1; }
  fi
  psql_admin <<EOF
SELECT 'CREATE ROLE $USER_NAME LOGIN CREATEDB PASSWORD ''$PASSWORD'''
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$USER_NAME') \gexec
SELECT 'CREATE DATABASE $DB OWNER $USER_NAME'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
EOF
  url
}

case "$CMD" in
  start) start ;;
  url) [ -f "$DIR/port" ] || { log "not set up: run scripts/postgres.sh start"; exit 1; }; url ;;
  status) running ;;
  stop)
    if running; then log "stopping"; as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi ;;
  destroy)
    if running; then as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null; fi
    rm -rf "$DIR" ;;
  *) echo "usage: $0 [start|url|status|stop|destroy]" >&2; exit 2 ;;
esac
