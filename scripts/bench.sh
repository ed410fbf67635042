#!/usr/bin/env bash
# Benchmarks (not tests): figures side by side in one run, as ratios to a baseline.
#  1. messiah_create_tenant (catalog row + CREATE DATABASE at COMMIT) p50/p95 over N tenants,
#     next to a bare CREATE DATABASE ... TEMPLATE of the same template (WAL_LOG and FILE_COPY).
#  2. 100,000 inserts into clients with five validated custom fields: messiah's trigger vs no
#     trigger vs an equivalent PL/pgSQL trigger.
# Uses a release build in a fresh throwaway cluster.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${BENCH_TENANTS:-100}
ROWS=${BENCH_ROWS:-100000}
REPS=${BENCH_REPS:-5}
make -s -C "$ROOT" install RELEASE=1
eval "$("$ROOT/scripts/cluster.sh" start --fresh | grep '^export')"
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
times_of() { grep -o 'Time: [0-9.]* ms' | awk '{print $2}'; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.1f", a[i]}'; }
# Runs a psql script (extra arguments go to psql) in which "\echo <key>" precedes each timed
# statement; appends each time (ms) to $tmp/<key>.t.
timed() {
    local file=$1; shift
    psql_ "$@" -f "$file" 2>/dev/null | awk -v dir="$tmp" '/^[a-z_]+$/ {t=$1} /^Time: .* ms/ && t != "" {print $2 > (dir "/" t ".t"); t=""}'
}
# Prints p50, p95 and the p50 ratio to the baseline key for each "key:label".
rows() {
    local base; base=$(pct 0.5 <"$tmp/$1.t"); shift
    for kl in "$@"; do
        local k=${kl%%:*} label=${kl#*:}
        local p50 p95; p50=$(pct 0.5 <"$tmp/$k.t"); p95=$(pct 0.95 <"$tmp/$k.t")
        printf "%-46s %9s %9s %11.2fx\n" "$label" "$p50" "$p95" "$(echo "$p50 / $base" | bc -l)"
    done
}

echo "== provisioning: $N tenants =="
psql_ -c "SELECT messiah_create_tenant('bench_warm', 'warm', 'bench-warm')" >/dev/null
TPL=$(psql_ -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'messiah\_template\_%' AND datistemplate")
tmp=$(mktemp -d)
# messiah and the bare CREATE DATABASE interleaved, so that both see the same cluster state
# (CREATE DATABASE time drifts as the cluster fills and checkpoints). One session: messiah's dblink connection is reused, as
# in an application's connection pool.
{
    echo '\timing on'
    for i in $(seq 1 "$N"); do
        echo '\echo create'
        echo "SELECT 1 FROM messiah_create_tenant('bench_$i', 'Bench $i', 'bench-$i');"
        echo '\echo bare_wal'
        echo "CREATE DATABASE bare_wal_$i TEMPLATE $TPL STRATEGY WAL_LOG;"
    done
    # FILE_COPY checkpoints twice per database, which slows whatever runs next: measured
    # after the others, not interleaved with them.
    for i in $(seq 1 "$N"); do
        echo '\echo bare_copy'
        echo "CREATE DATABASE bare_copy_$i TEMPLATE $TPL STRATEGY FILE_COPY;"
    done
} >"$tmp/create.sql"
timed "$tmp/create.sql"
printf "%-46s %9s %9s %12s\n" "" "p50 ms" "p95 ms" "p50 ratio"
rows bare_wal "bare_wal:CREATE DATABASE ... STRATEGY WAL_LOG (baseline)" \
    "bare_copy:CREATE DATABASE ... STRATEGY FILE_COPY" "create:messiah_create_tenant (WAL_LOG, at COMMIT)"
for i in $(seq 1 "$N"); do echo "DROP DATABASE bare_wal_$i; DROP DATABASE bare_copy_$i;"; done | psql_ >/dev/null

# A cluster in use has dirty buffers; FILE_COPY checkpoints them (twice) on every CREATE
# DATABASE, WAL_LOG does not. Same clones with 16 MB of table updates before each one.
D=${BENCH_DIRTY_TENANTS:-20}
psql_ -c "CREATE TABLE bench_filler AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 60000) g" >/dev/null
{
    echo '\timing on'
    for i in $(seq 1 "$D"); do
        echo "UPDATE bench_filler SET pad = pad;"
        echo '\echo dirty_wal'
        echo "CREATE DATABASE dirty_wal_$i TEMPLATE $TPL STRATEGY WAL_LOG;"
        echo "UPDATE bench_filler SET pad = pad;"
        echo '\echo dirty_copy'
        echo "CREATE DATABASE dirty_copy_$i TEMPLATE $TPL STRATEGY FILE_COPY;"
    done
} >"$tmp/dirty.sql"
timed "$tmp/dirty.sql"
echo "with 16 MB of table updates before each clone ($D each, interleaved):"
rows dirty_wal "dirty_wal:  CREATE DATABASE ... STRATEGY WAL_LOG" "dirty_copy:  CREATE DATABASE ... STRATEGY FILE_COPY"
for i in $(seq 1 "$D"); do echo "DROP DATABASE dirty_wal_$i; DROP DATABASE dirty_copy_$i;"; done | psql_ >/dev/null
psql_ -c "DROP TABLE bench_filler" >/dev/null

echo
echo "== $ROWS inserts into clients with five validated custom fields (median of $REPS) =="
psql_ <<'SQL' >/dev/null
SELECT messiah_define_field('bench_warm', 'clients', 'company', 'text', 'Company', validation_rules => '{"maxLength": 80}');
SELECT messiah_define_field('bench_warm', 'clients', 'country', 'select', 'Country', validation_rules => '{"options": ["Brazil", "Canada", "USA", "Germany", "India"]}');
SELECT messiah_define_field('bench_warm', 'clients', 'postal_code', 'text', 'Postal code', validation_rules => '{"pattern": "^[0-9]{5}$"}');
SELECT messiah_define_field('bench_warm', 'clients', 'total', 'number', 'Total', validation_rules => '{"min": 0}');
SELECT messiah_define_field('bench_warm', 'clients', 'since', 'date', 'Since', validation_rules => '{"min": "2000-01-01"}');
SQL
psql_ -d tenant_bench_warm <<'SQL' >/dev/null
CREATE TABLE bare_clients (LIKE clients INCLUDING ALL);
CREATE TABLE plpgsql_clients (LIKE clients INCLUDING ALL);
CREATE FUNCTION plpgsql_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE cf jsonb := NEW.custom_fields; errs text[] := '{}'; k text;
BEGIN
  IF jsonb_typeof(cf) <> 'object' THEN RAISE EXCEPTION 'custom_fields must be an object' USING ERRCODE = '23514'; END IF;
  FOR k IN SELECT jsonb_object_keys(cf) LOOP
    IF k NOT IN ('company', 'country', 'postal_code', 'total', 'since') THEN errs := errs || (k || ' unknown'); END IF;
  END LOOP;
  IF cf ? 'company' AND (jsonb_typeof(cf->'company') <> 'string' OR char_length(cf->>'company') > 80) THEN errs := errs || 'company'::text; END IF;
  IF cf ? 'country' AND (jsonb_typeof(cf->'country') <> 'string' OR (cf->>'country') NOT IN ('Brazil', 'Canada', 'USA', 'Germany', 'India')) THEN errs := errs || 'country'::text; END IF;
  IF cf ? 'postal_code' AND (jsonb_typeof(cf->'postal_code') <> 'string' OR (cf->>'postal_code') !~ '^[0-9]{5}$') THEN errs := errs || 'postal_code'::text; END IF;
  IF cf ? 'total' AND (jsonb_typeof(cf->'total') <> 'number' OR (cf->'total')::numeric < 0) THEN errs := errs || 'total'::text; END IF;
  IF cf ? 'since' AND (jsonb_typeof(cf->'since') <> 'string' OR (cf->>'since') !~ '^\d{4}-\d{2}-\d{2}$' OR (cf->>'since')::date < '2000-01-01') THEN errs := errs || 'since'::text; END IF;
  IF cardinality(errs) > 0 THEN RAISE EXCEPTION 'invalid: %', errs USING ERRCODE = '23514'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER plpgsql_check BEFORE INSERT OR UPDATE ON plpgsql_clients FOR EACH ROW EXECUTE FUNCTION plpgsql_check();
-- The same three without indexes, to show the triggers' own cost (the provisioned clients
-- table has a GIN index on custom_fields and a unique index on email, which dominate).
CREATE TABLE bare_noidx (LIKE clients INCLUDING DEFAULTS);
CREATE TABLE messiah_noidx (LIKE clients INCLUDING DEFAULTS);
CREATE TRIGGER messiah_noidx BEFORE INSERT OR UPDATE ON messiah_noidx FOR EACH ROW EXECUTE FUNCTION messiah.enforce_custom_fields('clients');
CREATE TABLE plpgsql_noidx (LIKE clients INCLUDING DEFAULTS);
CREATE TRIGGER plpgsql_check BEFORE INSERT OR UPDATE ON plpgsql_noidx FOR EACH ROW EXECUTE FUNCTION plpgsql_check();
SQL
{
    echo '\timing on'
    for r in $(seq 1 "$REPS"); do
        for t in bare_clients clients plpgsql_clients bare_noidx messiah_noidx plpgsql_noidx; do
            echo "TRUNCATE $t CASCADE;"
            echo "\\echo $t"
            echo "INSERT INTO $t (name, email, custom_fields) SELECT 'Client ' || i, 'c' || i || '@example.com', jsonb_build_object('company', 'Company ' || i, 'country', 'Brazil', 'postal_code', lpad((i % 100000)::text, 5, '0'), 'total', (i % 1000) + 0.5, 'since', '2020-01-01') FROM generate_series(1, $ROWS) i;"
        done
    done
} >"$tmp/insert.sql"
timed "$tmp/insert.sql" -d tenant_bench_warm
median() { pct 0.5 <"$tmp/$1.t"; }
report() {
    local base; base=$(median "$1")
    printf "%-44s %12s %12s %9s\n" "$4" "median ms" "us per row" "ratio"
    for t in "$1" "$2" "$3"; do
        case $t in
            bare_*) label="  no trigger (baseline)";;
            clients|messiah_*) label="  messiah trigger";;
            plpgsql_*) label="  equivalent PL/pgSQL trigger";;
        esac
        m=$(median "$t")
        printf "%-44s %12s %12.2f %8.2fx\n" "$label" "$m" "$(echo "$m * 1000 / $ROWS" | bc -l)" "$(echo "$m / $base" | bc -l)"
    done
}
report bare_clients clients plpgsql_clients "clients as provisioned (GIN + unique email):"
report bare_noidx messiah_noidx plpgsql_noidx "same columns, no indexes (trigger cost alone):"
rm -rf "$tmp"
