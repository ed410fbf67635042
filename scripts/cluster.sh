#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for messiah, run as the `postgres` OS user (Postgres refuses
# to run as root), on its own port and socket directory, with messiah preloaded.
#   cluster.sh start [--fresh]   start (or reuse) it; --fresh wipes it first; prints export lines
#   cluster.sh stop              stop it
#   cluster.sh env               print the export lines
# Environment: MESSIAH_CLUSTER_DIR (/tmp/messiah-cluster), MESSIAH_PORT (28815),
# MESSIAH_ADMIN_DB (messiah_admin; `none`: a server that only holds tenant databases, with no
# admin database, as the demo's second server), MESSIAH_MAX_CONNECTIONS (200; the test suites
# use 300: one test holds 110 sessions while others run).
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${MESSIAH_CLUSTER_DIR:-/tmp/messiah-cluster}
PORT=${MESSIAH_PORT:-28815}
ADMIN_DB=${MESSIAH_ADMIN_DB:-messiah_admin}
MAX_CONNECTIONS=${MESSIAH_MAX_CONNECTIONS:-200}
DATA=$BASE/data
SOCK=$BASE
as_pg() { runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"; }

print_env() {
    echo "export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres PGDATABASE=$ADMIN_DB"
}

case "${1:-start}" in
start)
    if [ "${2:-}" = "--fresh" ] && [ -d "$DATA" ]; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$BASE"
    fi
    mkdir -p "$BASE"
    chown postgres:postgres "$BASE"
    if [ ! -f "$BASE/messiah.key" ]; then
        # The key that encrypts secrets in the catalog: 32 random bytes in hex, readable only
        # by the server's OS user (README "Secrets").
        (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$BASE/messiah.key")
        chown postgres:postgres "$BASE/messiah.key"
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_pg "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 -A trust >/dev/null
        # Tenant application roles (README "Tenant roles") log in with their password, into
        # their own database only; initdb's trust lines below serve the postgres superuser.
        { cat "$ROOT/scripts/pg_hba_tenants.conf"; cat "$DATA/pg_hba.conf"; } >"$DATA/pg_hba.conf.new"
        mv "$DATA/pg_hba.conf.new" "$DATA/pg_hba.conf"
        chown postgres:postgres "$DATA/pg_hba.conf"
        cat >>"$DATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
shared_preload_libraries = 'messiah'
messiah.sweep_interval = 2000
messiah.key_file = '$BASE/messiah.key'
max_worker_processes = 32
max_connections = $MAX_CONNECTIONS
# tenants can be moved off this server (messiah_move_tenant: logical replication)
wal_level = logical
fsync = off
log_min_messages = warning
CONF
    fi
    # A cluster made before tenant moves existed: they need logical replication.
    grep -q '^wal_level = logical' "$DATA/postgresql.conf" || echo "wal_level = logical" >>"$DATA/postgresql.conf"
    # Always restart: a preloaded library is read at postmaster start only.
    if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w restart -l "$BASE/log" >/dev/null
    else
        as_pg "$BIN/pg_ctl" -D "$DATA" -w start -l "$BASE/log" >/dev/null
    fi
    psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }
    if [ "$ADMIN_DB" = none ]; then
        echo "export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres"
        exit 0
    fi
    if [ "$(psql_ -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$ADMIN_DB'")" = 0 ]; then
        psql_ -d postgres -c "CREATE DATABASE $ADMIN_DB"
    fi
    psql_ -d "$ADMIN_DB" -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS messiah CASCADE"
    print_env
    ;;
stop)
    if [ -f "$DATA/PG_VERSION" ]; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
    fi
    echo "stopped"
    ;;
env)
    print_env
    ;;
*)
    echo "usage: $0 start [--fresh] | stop | env" >&2
    exit 2
    ;;
esac
