#!/usr/bin/env bash
# Start a throw-away PostgreSQL 15 on a loopback port (idempotent) and print the test URL:
#   eval "$(bash .ci/start-postgres.sh)"
# Settings: PG_BIN, FACEATLAS_PG_DATA (cluster dir), FACEATLAS_PG_PORT, FACEATLAS_PG_DB.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
DATA="${FACEATLAS_PG_DATA:-/tmp/faceatlas-pg}"
PORT="${FACEATLAS_PG_PORT:-54329}"
DB="${FACEATLAS_PG_DB:-faceatlas_test}"
PG_USER=postgres

as_postgres() {
    if [ "$(id -u)" = "0" ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

if [ ! -s "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = "0" ] && chown "$PG_USER" "$DATA"
    chmod 700 "$DATA"
    as_postgres "$PG_BIN/initdb" -D "$DATA" -U "$PG_USER" --auth=trust -E UTF8 >/dev/null
fi

if ! as_postgres "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
        -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi

if ! as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$PG_USER" "$DB"
fi

echo "export FACEATLAS_TEST_PG_URL=postgresql+psycopg://$PG_USER@127.0.0.1:$PORT/$DB"
