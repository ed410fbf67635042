#!/usr/bin/env bash
# Runs the isolation specs in pg_test/isolation/specs (expected output in
# pg_test/isolation/expected) with PostgreSQL's own pg_isolation_regress against the running
# messiah cluster (scripts/cluster.sh). Usage: scripts/isolation.sh [spec ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ISO=${PG_ISOLATION_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/pg_isolation_regress}
HOST=${MESSIAH_TEST_HOST:-/tmp/messiah-cluster}
PORT=${MESSIAH_TEST_PORT:-28815}
OUT=${MESSIAH_ISOLATION_OUT:-/tmp/messiah-isolation}
if [ "$#" -gt 0 ]; then
    specs=("$@")
else
    specs=()
    for f in pg_test/isolation/specs/*.spec; do
        specs+=("$(basename "$f" .spec)")
    done
fi
rm -rf "$OUT"
mkdir -p "$OUT"
status=0
"$ISO" --host="$HOST" --port="$PORT" --user=postgres \
    --bindir=/usr/lib/postgresql/15/bin \
    --inputdir=pg_test/isolation --outputdir="$OUT" --dbname=messiah_isolation \
    "${specs[@]}" || status=$?
if [ "$status" -ne 0 ]; then
    [ -f "$OUT/regression.diffs" ] && { echo "---- $OUT/regression.diffs ----"; cat "$OUT/regression.diffs"; }
    exit "$status"
fi
