#!/usr/bin/env bash
# The versioned upgrade, end to end (`make upgrade`, part of `make test`):
#  1. builds the real 0.1.0 from its git tag (cargo pgrx package; cached in /tmp between runs)
#     and installs its files over the system PostgreSQL's;
#  2. starts a throwaway cluster (messiah preloaded), creates an admin database at 0.1.0,
#     tenants, fields and rows;
#  3. installs this build's Debian package over it (one $libdir/messiah for every version) and
#     restarts: every database is still on 0.1.0's SQL and now calls this library; routed
#     reads and writes, trigger validation and a new tenant must work before any ALTER
#     EXTENSION;
#  4. ALTER EXTENSION messiah UPDATE, then compares every extension member (pg_depend
#     deptype 'e': functions by pg_get_functiondef, tables, columns, constraints, indexes,
#     triggers, comments, grants; scripts/extension_members.sql) with a fresh install: they must
#     be identical;
#  5. messiah_upgrade_tenants() while a writer inserts into a tenant the whole time (no insert
#     may fail); the upgraded tenant databases' messiah_tenant members must equal those of a
#     tenant created at the new version; a migration then runs on every tenant;
#  6. runs the whole integration suite against the upgraded cluster.
# Whatever happens, this build's package is installed again at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
OLD=0.1.0
# the tag, or the commit it names when a clone came without tags
OLD_REV=$(git -C "$ROOT" rev-parse -q --verify "refs/tags/$OLD^{commit}" || echo 49a8c8e548e9ce440a49ad6078c2765a51618626)
NEW=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
DIR=/tmp/messiah-upgrade
PORT=28824
BUILD=/tmp/messiah-$OLD-build
EXT=$("$PG_CONFIG" --sharedir)/extension
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
val() { psql_ -At "$@"; }
die() { echo "upgrade test: $*" >&2; exit 1; }
cluster() { MESSIAH_CLUSTER_DIR=$DIR MESSIAH_PORT=$PORT MESSIAH_MAX_CONNECTIONS=300 "$ROOT/scripts/cluster.sh" "$@" >/dev/null; }
step() { echo "== $*"; }

finish() {
    cluster stop || true
    # this build's package again, whatever happened
    "$ROOT/scripts/package.sh" --install >/dev/null
}
trap finish EXIT

step "building $OLD ($OLD_REV) from its tag"
if [ ! -f "$BUILD/built-$OLD_REV" ]; then
    rm -rf "$BUILD/src" "$BUILD/pkg"
    mkdir -p "$BUILD/src"
    git -C "$ROOT" archive "$OLD_REV" | tar -x -C "$BUILD/src"
    (cd "$BUILD/src" && CARGO_TARGET_DIR="$BUILD/target" cargo pgrx package --pg-config "$PG_CONFIG" \
        --out-dir "$BUILD/pkg" >"$BUILD/build.log" 2>&1) || { tail -30 "$BUILD/build.log"; die "the $OLD build failed"; }
    touch "$BUILD/built-$OLD_REV"
fi
step "installing $OLD's files"
cp -a "$BUILD/pkg/usr/." /usr/
sed "s/@VERSION@/$OLD/" "$BUILD/src/messiah_tenant.control.in" >"$EXT/messiah_tenant.control"
cp "$BUILD/src/sql/messiah_tenant.sql" "$EXT/messiah_tenant--$OLD.sql"

step "an admin database, tenants, fields and rows at $OLD"
cluster start --fresh
[ "$(val -d messiah_admin -c "SELECT extversion FROM pg_extension WHERE extname = 'messiah'")" = "$OLD" ] || die "not at $OLD"
psql_ -d messiah_admin >/dev/null <<'SQL'
SELECT messiah_create_tenant('up_a', 'A', 'up-a');
SELECT messiah_create_tenant('up_b', 'B', 'up-b');
SELECT messiah_define_field('up_a', 'clients', 'score', 'number', 'Score', validation_rules => '{"min": 0}');
SELECT messiah_define_field('up_b', 'clients', 'score', 'number', 'Score', validation_rules => '{"min": 0}');
SELECT messiah_run_pending(wait_ms => 30000);
SELECT messiah_tenant_insert('up_a', 'clients', '{"name": "old", "score": 1}');
SELECT messiah_tenant_insert('up_b', 'clients', '{"name": "old", "score": 1}');
SQL

step "installing $NEW's package over it and restarting: every database is still on $OLD's SQL"
"$ROOT/scripts/package.sh" --install >/dev/null
# every C symbol the old SQL names is still in the library, with its old signature kept (the
# SQL of every database not yet updated calls them)
symbols=$(nm -D --defined-only "$("$PG_CONFIG" --pkglibdir)/messiah.so" | awk '{print $3}')
for sym in $(grep -ho "AS 'MODULE_PATHNAME', '[A-Za-z0-9_]*'" "$BUILD/pkg$EXT/messiah--$OLD.sql" "$BUILD/src/sql/messiah_tenant.sql" \
             | sed "s/.*, '\(.*\)'/\1/" | sort -u); do
    grep -qx "$sym" <<<"$symbols" || die "the $NEW library lacks $OLD's symbol $sym"
done
cluster start
[ "$(val -d messiah_admin -c "SELECT extversion FROM pg_extension WHERE extname = 'messiah'")" = "$OLD" ] || die "the admin database moved by itself"
[ "$(val -d tenant_up_a -c "SELECT extversion FROM pg_extension WHERE extname = 'messiah_tenant'")" = "$OLD" ] || die "tenant_up_a moved by itself"
psql_ -d messiah_admin >/dev/null <<'SQL'
SELECT messiah_tenant_insert('up_a', 'clients', '{"name": "new library", "score": 2}');
SELECT count(*) FROM messiah_tenant_query('up_a', 'SELECT name FROM clients');
SELECT messiah_define_field('up_a', 'clients', 'tier', 'text', 'Tier');
SELECT messiah_create_tenant('up_c', 'C', 'up-c');
SELECT messiah_run_pending(wait_ms => 30000);
SELECT messiah_tenant_insert('up_c', 'clients', '{"name": "created before the update"}');
SQL
[ "$(val -d messiah_admin -c "SELECT count(*) FROM messiah_tenant_query('up_a', 'SELECT name FROM clients')")" = 2 ] || die "routed read"
out=$(psql_ -d messiah_admin -c "SELECT messiah_tenant_insert('up_a', 'clients', '{\"name\": \"bad\", \"score\": -1}')" 2>&1 || true)
grep -q "violates" <<<"$out" || die "a bad routed write was not refused: $out"
out=$(psql_ -d tenant_up_b -v VERBOSITY=verbose -c "INSERT INTO clients (name, custom_fields) VALUES ('bad', '{\"score\": -1}')" 2>&1 || true)
grep -q "23514" <<<"$out" || die "the $OLD trigger under the $NEW library did not refuse a bad row: $out"
psql_ -d tenant_up_b -c "INSERT INTO clients (name, custom_fields) VALUES ('direct', '{\"score\": 5}')" >/dev/null

step "ALTER EXTENSION messiah UPDATE, and every member compared with a fresh $NEW install"
psql_ -d messiah_admin -c "ALTER EXTENSION messiah UPDATE" >/dev/null
[ "$(val -d messiah_admin -c "SELECT extversion FROM pg_extension WHERE extname = 'messiah'")" = "$NEW" ] || die "not at $NEW"
psql_ -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS messiah_fresh" -c "CREATE DATABASE messiah_fresh" >/dev/null
psql_ -d messiah_fresh -c "SET client_min_messages = warning; CREATE EXTENSION messiah" >/dev/null
psql_ -d messiah_admin -v ext=messiah -f "$ROOT/scripts/extension_members.sql" >"$DIR/upgraded.members"
psql_ -d messiah_fresh -v ext=messiah -f "$ROOT/scripts/extension_members.sql" >"$DIR/fresh.members"
[ "$(wc -l <"$DIR/fresh.members")" -gt 50 ] || die "the member listing is too short"
diff -u "$DIR/fresh.members" "$DIR/upgraded.members" || die "the upgraded extension differs from a fresh $NEW install (above)"
echo "$(wc -l <"$DIR/fresh.members") members identical"
psql_ -d postgres -c "DROP DATABASE messiah_fresh" >/dev/null

step "messiah_upgrade_tenants() while a writer inserts into tenant_up_a the whole time"
writer() {
    local n=0 failed=0
    while [ ! -f "$DIR/stop-writer" ]; do
        n=$((n + 1))
        psql_ -d tenant_up_a -c "INSERT INTO clients (name, custom_fields) VALUES ('writer $n', '{\"score\": $n}')" \
            >/dev/null 2>>"$DIR/writer.err" || failed=$((failed + 1))
    done
    echo "$n $failed" >"$DIR/writer.out"
}
rm -f "$DIR/stop-writer" "$DIR/writer.err"
writer &
sleep 1
report=$(val -d messiah_admin -F ' ' -c "SELECT tenant_id, from_version, to_version, status FROM messiah_upgrade_tenants() ORDER BY 1")
sleep 1
touch "$DIR/stop-writer"
wait
read -r written failed <"$DIR/writer.out"
echo "$report"
echo "writer: $written inserts, $failed failed"
[ "$failed" = 0 ] || { cat "$DIR/writer.err"; die "the writer failed during the upgrade"; }
expected="up_a $OLD $NEW ok
up_b $OLD $NEW ok
up_c $NEW $NEW ok"
[ "$report" = "$expected" ] || die "unexpected report"
[ "$(val -d messiah_admin -c "SELECT string_agg(extension_version, ',' ORDER BY tenant_id) FROM messiah.tenants")" = "$NEW,$NEW,$NEW" ] \
    || die "the catalog does not record the versions"
[ "$(val -d messiah_admin -c "SELECT count(*) FROM messiah_upgrade_tenants() WHERE message = 'nothing to do'")" = 3 ] \
    || die "a re-run found something to do"
# (each tenant's own application role is named in the grants: named alike here)
psql_ -d tenant_up_a -v ext=messiah_tenant -f "$ROOT/scripts/extension_members.sql" | sed 's/tenant_up_a/TENANT/g' >"$DIR/tenant_upgraded.members"
psql_ -d tenant_up_c -v ext=messiah_tenant -f "$ROOT/scripts/extension_members.sql" | sed 's/tenant_up_c/TENANT/g' >"$DIR/tenant_fresh.members"
diff -u "$DIR/tenant_fresh.members" "$DIR/tenant_upgraded.members" || die "an upgraded tenant database differs from one created at $NEW"
echo "messiah_tenant: $(wc -l <"$DIR/tenant_fresh.members") members identical"

step "a migration on every tenant (the new version's grants on the upgraded ones)"
psql_ -d messiah_admin >/dev/null <<'SQL'
SELECT messiah_run_pending(wait_ms => 30000);
SELECT messiah_add_migration(1, 'CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)');
SQL
[ "$(val -d messiah_admin -c "SELECT string_agg(tenant_id || ' ' || status || ' ' || to_version, ',' ORDER BY 1) FROM messiah_migrate_tenants()")" \
    = "up_a ok 1,up_b ok 1,up_c ok 1" ] || die "the migration did not apply everywhere"
psql_ -d messiah_admin -c "SELECT messiah_tenant_insert('up_a', 'notes', '{\"body\": \"after the upgrade\"}')" >/dev/null

step "the integration suite against the upgraded cluster"
(cd "$ROOT" && MESSIAH_TEST_HOST=$DIR MESSIAH_TEST_PORT=$PORT \
    cargo test --features integration --test integration -- --test-threads=4 >"$DIR/integration.log" 2>&1) || {
    grep -E "^test .*FAILED|panicked at" -A3 "$DIR/integration.log"
    die "the integration suite failed on the upgraded cluster (log: $DIR/integration.log)"
}
grep "^test result" "$DIR/integration.log"
echo "upgrade test: passed"
