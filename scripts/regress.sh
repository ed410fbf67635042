#!/usr/bin/env bash
# Runs the pg_regress suites in pg_test/ (sql/*.sql, expected/*.out) against the running
# messiah cluster (scripts/cluster.sh). Usage: scripts/regress.sh [suite ...]
# (default: every pg_test/sql/*.sql). Prints regression.diffs and exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_REGRESS=${PG_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress}
HOST=${MESSIAH_TEST_HOST:-/tmp/messiah-cluster}
PORT=${MESSIAH_TEST_PORT:-28815}
OUT=${MESSIAH_REGRESS_OUT:-/tmp/messiah-regress}
if [ "$#" -gt 0 ]; then
    suites=("$@")
else
    suites=()
    for f in pg_test/sql/*.sql; do
        suites+=("$(basename "$f" .sql)")
    done
fi
rm -rf "$OUT"
mkdir -p "$OUT"
status=0
"$PG_REGRESS" --host="$HOST" --port="$PORT" --user=postgres \
    --bindir=/usr/lib/postgresql/15/bin \
    --inputdir=pg_test --outputdir="$OUT" --dbname=messiah_regress \
    "${suites[@]}" || status=$?
if [ "$status" -ne 0 ]; then
    if [ -f "$OUT/regression.diffs" ]; then
        echo "---- $OUT/regression.diffs ----"
        cat "$OUT/regression.diffs"
    fi
    exit "$status"
fi
