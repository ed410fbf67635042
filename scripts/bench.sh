#!/usr/bin/env bash
# Benchmarks (not tests): figures side by side in one run, as ratios to a baseline, on the
# release build that `make install` gives users, in a fresh throwaway cluster.
#  1. messiah_create_tenant (catalog row + CREATE DATABASE at COMMIT) p50/p95 over N tenants,
#     next to a bare CREATE DATABASE ... TEMPLATE of the same template (WAL_LOG and FILE_COPY).
#  2. The trigger against its floor: ROWS inserts into index-free copies of clients with five
#     validated custom fields: no trigger, a no-op C trigger (bench/noop_trigger.c), a no-op
#     PL/pgSQL trigger, equivalent PL/pgSQL checks, messiah. REPS interleaved rounds, medians.
#  3. Indexes that earn their cost: inserts into the provisioned clients table with five fields
#     of default flags, next to the seed's indexes alone and to the earlier design's five hash
#     indexes.
#  4. Writers while a filterable + sortable field is defined behind a transaction left idle:
#     per-insert latency of a writer at 50 inserts/s, and when the index becomes valid.
#  5. Routing: a one-row statement through messiah_tenant_query on a warm connection, next to
#     the same statement over a named dblink connection and over a direct session into the
#     tenant database (pgbench -r per-statement latency, ROUTE_ROUNDS interleaved rounds of
#     ROUTE_SECONDS each, medians).
#  6. The catalog cache: the routed statement with messiah.catalog_cache off and on; the
#     lookup alone (messiah.route_lookup) off and on; the result cache: a routed read without
#     max_age, with max_age 0 (read-only, refreshed) and served from the cache.
#  7. Health: messiah_health() over BENCH_HEALTH_TENANTS (1000) tenants on two servers, then
#     with the second server stopped.
#  8. Migrations: messiah_migrate_tenants() over the same tenants with nothing to do, with one
#     trivial migration, and with nothing to do again.
#  9. A move of a tenant with BENCH_MOVE_ROWS (100000) rows to the second server and back, a
#     routed writer running: copy time and cutover time (the time its writes waited).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${BENCH_TENANTS:-100}
ROWS=${BENCH_ROWS:-100000}
REPS=${BENCH_REPS:-9}
make -s -C "$ROOT" install
make -s -C "$ROOT/bench" install >/dev/null
eval "$("$ROOT/scripts/cluster.sh" start --fresh | grep '^export')"
PGBIN=$(/usr/lib/postgresql/15/bin/pg_config --bindir)
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
# (CREATE DATABASE time drifts as the cluster fills and checkpoints). One session, as from an
# application's connection pool.
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
echo "== the trigger against its floor: $ROWS inserts, five validated custom fields, no indexes (median of $REPS interleaved rounds) =="
psql_ <<'SQL' >/dev/null
SELECT messiah_define_field('bench_warm', 'clients', 'company', 'text', 'Company', validation_rules => '{"maxLength": 80}');
SELECT messiah_define_field('bench_warm', 'clients', 'country', 'select', 'Country', validation_rules => '{"options": ["Brazil", "Canada", "USA", "Germany", "India"]}');
SELECT messiah_define_field('bench_warm', 'clients', 'postal_code', 'text', 'Postal code', validation_rules => '{"pattern": "^[0-9]{5}$"}');
SELECT messiah_define_field('bench_warm', 'clients', 'total', 'number', 'Total', validation_rules => '{"min": 0}');
SELECT messiah_define_field('bench_warm', 'clients', 'since', 'date', 'Since', validation_rules => '{"min": "2000-01-01"}');
SELECT messiah_run_pending(wait_ms => 30000);
SQL
psql_ -d tenant_bench_warm -v rows="$ROWS" <<'SQL' >/dev/null
-- the rows, generated once (ids included: gen_random_uuid() per row would add its own cost
-- and noise): every variant inserts the same ones, with a 20-digit number
CREATE TABLE src AS
SELECT gen_random_uuid() AS id, 'Client ' || i AS name, 'c' || i || '@example.com' AS email,
       jsonb_build_object('company', 'Company ' || i, 'country', (ARRAY['Brazil', 'Canada', 'USA', 'Germany', 'India'])[1 + i % 5],
                          'postal_code', lpad((i % 100000)::text, 5, '0'),
                          'total', 12345678901234567890 + i, 'since', '2020-01-01') AS custom_fields
FROM generate_series(1, :rows) i;
CREATE FUNCTION noop_c() RETURNS trigger LANGUAGE c AS 'noop_trigger', 'messiah_bench_noop_trigger';
CREATE FUNCTION noop_plpgsql() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
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
CREATE TABLE t_bare (LIKE clients INCLUDING DEFAULTS) WITH (autovacuum_enabled = false);
CREATE TABLE t_noop_c (LIKE t_bare INCLUDING ALL) WITH (autovacuum_enabled = false);
CREATE TABLE t_noop_plpgsql (LIKE t_bare INCLUDING ALL) WITH (autovacuum_enabled = false);
CREATE TABLE t_plpgsql_checks (LIKE t_bare INCLUDING ALL) WITH (autovacuum_enabled = false);
CREATE TABLE t_messiah (LIKE t_bare INCLUDING ALL) WITH (autovacuum_enabled = false);
CREATE TRIGGER t BEFORE INSERT OR UPDATE ON t_noop_c FOR EACH ROW EXECUTE FUNCTION noop_c();
CREATE TRIGGER t BEFORE INSERT OR UPDATE ON t_noop_plpgsql FOR EACH ROW EXECUTE FUNCTION noop_plpgsql();
CREATE TRIGGER t BEFORE INSERT OR UPDATE ON t_plpgsql_checks FOR EACH ROW EXECUTE FUNCTION plpgsql_check();
CREATE TRIGGER t BEFORE INSERT OR UPDATE ON t_messiah FOR EACH ROW EXECUTE FUNCTION messiah.enforce_custom_fields('clients');
-- the seed's indexes alone (primary key, unique email, GIN on custom_fields), no trigger
CREATE TABLE seed_only (LIKE clients INCLUDING ALL) WITH (autovacuum_enabled = false);
-- the earlier design: five default fields added five hash indexes
CREATE TABLE five_hash (LIKE clients INCLUDING ALL) WITH (autovacuum_enabled = false);
CREATE TRIGGER t BEFORE INSERT OR UPDATE ON five_hash FOR EACH ROW EXECUTE FUNCTION messiah.enforce_custom_fields('clients');
CREATE INDEX ON five_hash USING hash ((custom_fields->'company'));
CREATE INDEX ON five_hash USING hash ((custom_fields->'country'));
CREATE INDEX ON five_hash USING hash ((custom_fields->'postal_code'));
CREATE INDEX ON five_hash USING hash ((custom_fields->'total'));
CREATE INDEX ON five_hash USING hash ((custom_fields->'since'));
ALTER TABLE clients SET (autovacuum_enabled = false);
VACUUM ANALYZE src;
SQL
# every round runs each variant once, in a rotated order, so that drift (checkpoints, WAL
# recycling, the other core's load) falls on all of them alike
FLOOR="t_bare t_noop_c t_noop_plpgsql t_plpgsql_checks t_messiah"
INDEXED="seed_only clients five_hash"
{
    echo '\timing on'
    all=($FLOOR $INDEXED)
    for r in $(seq 1 "$REPS"); do
        for k in $(seq 0 $((${#all[@]} - 1))); do
            t=${all[$(((k + r) % ${#all[@]}))]}
            echo "TRUNCATE $t CASCADE;"
            echo "\\echo $t"
            echo "INSERT INTO $t (id, name, email, custom_fields) SELECT id, name, email, custom_fields FROM src;"
        done
    done
} >"$tmp/insert.sql"
timed "$tmp/insert.sql" -d tenant_bench_warm
median() { pct 0.5 <"$tmp/$1.t"; }
us() { echo "$1 * 1000 / $ROWS" | bc -l; }
base=$(median t_bare); noop=$(median t_noop_c)
printf "%-44s %10s %11s %15s %16s\n" "" "median ms" "us per row" "us/row over bare" "over no-op C"
for t in $FLOOR; do
    case $t in
        t_bare) label="no trigger (baseline)";;
        t_noop_c) label="no-op C trigger (the floor)";;
        t_noop_plpgsql) label="no-op PL/pgSQL trigger";;
        t_plpgsql_checks) label="equivalent PL/pgSQL checks";;
        t_messiah) label="messiah's trigger";;
    esac
    m=$(median "$t")
    printf "%-44s %10s %11.2f %+15.2f %+16.2f\n" "$label" "$m" "$(us "$m")" "$(us "($m - $base)")" "$(us "($m - $noop)")"
done
echo "(pg_jsonschema's jsonb_matches_compiled_schema CHECK, measured elsewhere on this workload: +1.76 us/row over bare)"

echo
echo "== indexes that earn their cost: $ROWS inserts into the provisioned clients table (median of $REPS) =="
seed=$(median seed_only)
printf "%-62s %10s %11s %8s\n" "" "median ms" "us per row" "ratio"
for t in $INDEXED; do
    case $t in
        seed_only) label="seed's indexes only, no fields (baseline)";;
        clients) label="five fields, default flags, validated (messiah)";;
        five_hash) label="the same + five hash indexes (the earlier default)";;
    esac
    m=$(median "$t")
    printf "%-62s %10s %11.2f %7.2fx\n" "$label" "$m" "$(us "$m")" "$(echo "$m / $seed" | bc -l)"
done

echo
echo "== writers while a filterable + sortable field is defined behind an idle transaction =="
# a writer inserting every 20 ms (pgbench at 50 transactions/s, per-statement latencies logged)
cat >"$tmp/writer.sql" <<'SQL'
INSERT INTO clients (name, custom_fields) VALUES ('writer', '{"company": "w"}');
SQL
PGOPTIONS="-c client_min_messages=warning" psql_ -d tenant_bench_warm -c "TRUNCATE clients CASCADE" >/dev/null
# a session that wrote to the table and stays idle in its transaction for 5 s
psql_ -d tenant_bench_warm -c "BEGIN; INSERT INTO clients (name) VALUES ('idle'); SELECT pg_sleep(5); COMMIT;" >/dev/null &
idle=$!
sleep 0.5
(cd "$tmp" && "$PGBIN/pgbench" -n -R 50 -T 9 -c 1 -f writer.sql -l --log-prefix=writer tenant_bench_warm >/dev/null 2>&1) &
writer=$!
sleep 1
start=$(date +%s%N)
psql_ -c "SELECT messiah_define_field('bench_warm', 'clients', 'rank', 'number', 'Rank', is_filterable => true, is_sortable => true)" >/dev/null
defined=$(( ($(date +%s%N) - start) / 1000000 ))
wait "$idle"
ended=$(date +%s%N)
valid=""
for _ in $(seq 1 600); do
    v=$(psql_ -d tenant_bench_warm -Atc "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE '%rank%' AND i.indisvalid AND i.indisready")
    if [ "$v" -ge 1 ]; then valid=$(( ($(date +%s%N) - ended) / 1000000 )); break; fi
    sleep 0.1
done
wait "$writer"
# pgbench's per-transaction log: the third field is the latency in microseconds
cat "$tmp"/writer.* | awk '{print $3 / 1000}' >"$tmp/writer.t"
printf "writer: %s inserts, p50 %s ms, p99 %s ms, worst %s ms\n" "$(wc -l <"$tmp/writer.t")" \
    "$(pct 0.5 <"$tmp/writer.t")" "$(pct 0.99 <"$tmp/writer.t")" "$(pct 1 <"$tmp/writer.t")"
echo "messiah_define_field returned in $defined ms (the index is built after COMMIT, by the executor)"
echo "index valid ${valid:-(not within 60 s)} ms after the idle transaction ended"

echo
R=${BENCH_ROUTE_ROUNDS:-5}
S=${BENCH_ROUTE_SECONDS:-4}
echo "== routing: one-row statement, warm connections (pgbench -r, median of $R rounds of $S s) =="
psql_ -d tenant_bench_warm -c "INSERT INTO clients (name, email) VALUES ('Routed', 'routed@example.com')" >/dev/null
psql_ -c "CREATE EXTENSION IF NOT EXISTS dblink" >/dev/null
STMT="SELECT name, email FROM clients WHERE email = 'routed@example.com'"
QSTMT=${STMT//\'/\'\'}
echo "$STMT;" >"$tmp/direct.sql"
echo "SELECT * FROM messiah_tenant_query('bench_warm', '$QSTMT');" >"$tmp/routed.sql"
cat >"$tmp/dblink.sql" <<SQL
SELECT CASE WHEN 'bench' = ANY (coalesce(dblink_get_connections(), '{}')) THEN 'OK' ELSE dblink_connect('bench', 'host=$PGHOST port=$PGPORT user=postgres dbname=tenant_bench_warm') END;
SELECT * FROM dblink('bench', '$QSTMT') AS t(name text, email text);
SQL
# the routed call's result, checked once
got=$(psql_ -Atc "SELECT * FROM messiah_tenant_query('bench_warm', '$QSTMT')")
[ "$got" = '{"name": "Routed", "email": "routed@example.com"}' ] || { echo "routed result: $got" >&2; exit 1; }
# pgbench -r prints "latency_ms ... statement" per command; the line of the measured statement
lat() { awk -v pat="$2" '/statement latencies/ {on=1; next} on && index($0, pat) {print $1}' "$1"; }
# R interleaved rounds of S seconds: for each "key:pattern[:database]", pgbench runs $tmp/key.sql
# and appends the latency of the statement matching pattern to $tmp/key.t
rounds() {
    for r in $(seq 1 "$R"); do
        for spec in "$@"; do
            IFS=: read -r key pat db <<<"$spec"
            "$PGBIN/pgbench" -n -r -T "$S" -c 1 -f "$tmp/$key.sql" $db >"$tmp/out" 2>&1
            lat "$tmp/out" "$pat" >>"$tmp/$key.t"
        done
    done
}
rounds "direct:SELECT name:tenant_bench_warm" "dblink:FROM dblink(" "routed:messiah_tenant_query"
med() { sort -n "$tmp/$1.t" | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }
d=$(med direct) b=$(med dblink) m=$(med routed)
printf "%-58s %9s %11s\n" "" "ms/call" "ratio"
printf "%-58s %9.3f %10.2fx\n" "direct session into the tenant database (baseline)" "$d" 1
printf "%-58s %9.3f %10.2fx\n" "dblink, named connection, from the admin database" "$b" "$(echo "$b / $d" | bc -l)"
printf "%-58s %9.3f %10.2fx\n" "messiah_tenant_query (as the tenant's role, pooled)" "$m" "$(echo "$m / $d" | bc -l)"
printf "messiah_tenant_query - dblink: %+.3f ms per call (target: at most +0.1)\n" "$(echo "$m - $b" | bc -l)"

echo
echo "== catalog cache: the routed statement with messiah.catalog_cache off and on (median of $R rounds of $S s) =="
printf 'SET messiah.catalog_cache = off;\nSELECT * FROM messiah_tenant_query('"'"'bench_warm'"'"', '"'"'%s'"'"');\n' "$QSTMT" >"$tmp/uncached.sql"
printf 'SET messiah.catalog_cache = on;\nSELECT * FROM messiah_tenant_query('"'"'bench_warm'"'"', '"'"'%s'"'"');\n' "$QSTMT" >"$tmp/cached.sql"
rounds "uncached:messiah_tenant_query" "cached:messiah_tenant_query"
u=$(med uncached) k=$(med cached)
printf "%-58s %9s %11s\n" "" "ms/call" "ratio"
printf "%-58s %9.3f %10.2fx\n" "catalog read on every call (catalog_cache off, baseline)" "$u" 1
printf "%-58s %9.3f %10.2fx\n" "catalog cache (on, the default)" "$k" "$(echo "$k / $u" | bc -l)"
printf "messiah_tenant_query with the cache - dblink: %+.3f ms per call\n" "$(echo "$k - $b" | bc -l)"

echo
echo "== catalog lookup alone: messiah.route_lookup() with messiah.catalog_cache off and on (median of $R rounds of $S s) =="
printf 'SET messiah.catalog_cache = off;\nSELECT messiah.route_lookup('"'"'bench_warm'"'"');\n' >"$tmp/lookup_off.sql"
printf 'SET messiah.catalog_cache = on;\nSELECT messiah.route_lookup('"'"'bench_warm'"'"');\n' >"$tmp/lookup_on.sql"
rounds "lookup_off:route_lookup" "lookup_on:route_lookup"
lo=$(med lookup_off) ln=$(med lookup_on)
printf "%-58s %9s %11s\n" "" "ms/call" "ratio"
printf "%-58s %9.3f %10.2fx\n" "uncached lookup: the catalog read (baseline)" "$lo" 1
printf "%-58s %9.3f %10.2fx\n" "cached lookup (per-backend catalog cache)" "$ln" "$(echo "$ln / $lo" | bc -l)"

echo
echo "== result cache: the routed read with max_age (median of $R rounds of $S s) =="
printf "SELECT * FROM messiah_tenant_query('bench_warm', '%s', max_age => '10 minutes');\n" "$QSTMT" >"$tmp/rc_hit.sql"
printf "SELECT * FROM messiah_tenant_query('bench_warm', '%s', max_age => '0');\n" "$QSTMT" >"$tmp/rc_refresh.sql"
got=$(psql_ -Atc "SELECT * FROM messiah_tenant_query('bench_warm', '$QSTMT', max_age => '10 minutes')")
[ "$got" = '{"name": "Routed", "email": "routed@example.com"}' ] || { echo "cached result: $got" >&2; exit 1; }
cp "$tmp/routed.sql" "$tmp/rc_none.sql"
rounds "rc_none:messiah_tenant_query" "rc_refresh:messiah_tenant_query" "rc_hit:messiah_tenant_query"
n0=$(med rc_none) n1=$(med rc_refresh) n2=$(med rc_hit)
printf "%-58s %9s %11s\n" "" "ms/call" "ratio"
printf "%-58s %9.3f %10.2fx\n" "no max_age: runs in the tenant database (baseline)" "$n0" 1
printf "%-58s %9.3f %10.2fx\n" "max_age 0: runs READ ONLY and refreshes the entry" "$n1" "$(echo "$n1 / $n0" | bc -l)"
printf "%-58s %9.3f %10.2fx\n" "max_age 10 minutes: served from the result cache" "$n2" "$(echo "$n2 / $n0" | bc -l)"
psql_ -Atc "SELECT 'result cache: ' || string_agg(replace(metric, 'messiah_cache_', '') || ' ' || value, ', ') FROM messiah_metrics('messiah_cache_')"

echo
H=${BENCH_HEALTH_TENANTS:-1000}
echo "== health: messiah_health() over $H tenants on two servers (password logins, max_connections 200 each) =="
SECOND_DIR=/tmp/messiah-bench-second SECOND_PORT=28827
MESSIAH_CLUSTER_DIR=$SECOND_DIR MESSIAH_PORT=$SECOND_PORT MESSIAH_ADMIN_DB=none "$ROOT/scripts/cluster.sh" start --fresh >/dev/null
psql_ -c "SELECT messiah_add_server('bench2', 'host=$SECOND_DIR port=$SECOND_PORT user=postgres')" >/dev/null
have=$(psql_ -Atc "SELECT count(*) FROM messiah.tenants")
need=$((H - have)); [ "$need" -lt 0 ] && need=0
{
    for i in $(seq 1 "$need"); do
        srv=local; [ $((i % 2)) = 0 ] && srv=bench2
        echo "SELECT 1 FROM messiah_create_tenant('bench_h_$i', 'Health $i', 'bench-h-$i', server => '$srv');"
    done
} | psql_ >/dev/null
psql_ -c "SELECT messiah_run_pending(wait_ms => 900000)" >/dev/null
echo "$(psql_ -Atc "SELECT count(*) FROM messiah.tenants") tenants: $(psql_ -Atc "SELECT count(*) FROM messiah.tenants WHERE server_id = (SELECT id FROM messiah.servers WHERE name = 'bench2')") on the second server"
# timed_statuses FROM: the call's wall time and its rows counted by status
timed_statuses() {
    local t0 t1 out
    t0=$(date +%s%N)
    out=$(psql_ -Atc "SELECT status || ' ' || count(*) FROM $1 GROUP BY status ORDER BY status" | tr '\n' ',')
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000000 )) ms ($out)"
}
health_run() { timed_statuses "messiah_health() WHERE kind = 'tenant'"; }
# the floor: 1,000 fresh SCRAM logins by pgbench -C (a role and database of the tenant roles'
# pg_hba group, so the same authentication as a tenant's application role), 4 clients
psql_ -c "CREATE ROLE bench_scram LOGIN PASSWORD 'bench-scram'" -c "CREATE DATABASE bench_scram OWNER bench_scram" \
      -c "GRANT messiah_tenant_roles TO bench_scram" >/dev/null
echo "SELECT 1;" >"$tmp/one.sql"
floor=$(PGPASSWORD=bench-scram "$PGBIN/pgbench" -n -C -c 4 -j 4 -t 250 -f "$tmp/one.sql" -U bench_scram bench_scram 2>&1 |
    awk '/^tps/ {printf "%.0f", $3}')
psql_ -c "DROP DATABASE bench_scram" -c "DROP ROLE bench_scram" >/dev/null
echo "floor: pgbench -C, 1000 SCRAM logins and SELECT 1, 4 clients: $floor logins/s ($((1000 * 1000 / floor)) ms for 1000)"
for r in 1 2 3; do echo "both servers up, run $r: $(health_run)"; done
MESSIAH_CLUSTER_DIR=$SECOND_DIR MESSIAH_PORT=$SECOND_PORT "$ROOT/scripts/cluster.sh" stop >/dev/null
echo "second server stopped (health_timeout $(psql_ -Atc "SHOW messiah.health_timeout")): $(health_run)"
MESSIAH_CLUSTER_DIR=$SECOND_DIR MESSIAH_PORT=$SECOND_PORT MESSIAH_ADMIN_DB=none "$ROOT/scripts/cluster.sh" start >/dev/null

echo
echo "== migrations and upgrades: messiah_migrate_tenants() and messiah_upgrade_tenants() over the same $H tenants (concurrency 4, the default) =="
mig_run() { timed_statuses "messiah_migrate_tenants()"; }
echo "nothing to do (no migration registered; each database asked): $(mig_run)"
psql_ -c "SELECT messiah_add_migration(1, 'ALTER TABLE clients ADD COLUMN bench_note text')" >/dev/null
echo "one trivial migration (ALTER TABLE clients ADD COLUMN), each in its own transaction: $(mig_run)"
echo "nothing to do again (every database at version 1): $(mig_run)"
up_run() { timed_statuses "messiah_upgrade_tenants()"; }
echo "messiah_upgrade_tenants(), nothing to do (every database at $(psql_ -Atc "SELECT extversion FROM pg_extension WHERE extname = 'messiah'"); each asked): $(up_run)"
echo "(django-tenants' migrate_schemas: 12 minutes for 900 tenants with nothing to do, as its users report)"

echo
MOVE_ROWS=${BENCH_MOVE_ROWS:-100000}
echo "== a move: bench_move with $MOVE_ROWS validated rows from the local server to the second one and back, a writer running =="
psql_ -c "SELECT 1 FROM messiah_create_tenant('bench_move', 'Move', 'bench-move', server => 'local')" \
      -c "SELECT messiah_run_pending(wait_ms => 60000)" -c "SELECT count(*) FROM messiah_migrate_tenants()" >/dev/null
psql_ -d tenant_bench_move -c "INSERT INTO clients (name, email)
      SELECT 'Client ' || i, 'c' || i || '@example.com' FROM generate_series(1, $MOVE_ROWS) i" >/dev/null
# a routed writer, one insert after another, for the whole move: its slowest call is the time
# its writes waited at cutover
cat >"$tmp/move_writer.sql" <<'SQL'
SELECT messiah_tenant_insert('bench_move', 'clients', jsonb_build_object('name', 'writer', 'email', 'w' || random() || '@example.com'));
SQL
"$PGBIN/pgbench" -n -c 1 -T 600 -l --log-prefix="$tmp/move_writer" -f "$tmp/move_writer.sql" >/dev/null 2>&1 &
writer=$!
sleep 1
for to in bench2 local; do
    psql_ -Atc "SELECT 'to ' || (r->>'to') || ': copy ' || round((r->>'copy_ms')::numeric) || ' ms, cutover (writes waited) '
                || round((r->>'cutover_ms')::numeric, 1) || ' ms' FROM messiah_move_tenant('bench_move', '$to') r"
    psql_ -c "SELECT messiah_run_pending(wait_ms => 60000)" >/dev/null
done
kill "$writer" 2>/dev/null; wait "$writer" 2>/dev/null || true
# pgbench -l: one line per transaction, the 3rd field its latency in microseconds
written=$(cat "$tmp"/move_writer* 2>/dev/null | awk '{n++; if ($3 > m) m = $3} END {printf "%d %.1f", n, m / 1000}')
rows=$(psql_ -Atc "SELECT r->>'n' FROM messiah_tenant_query('bench_move', 'SELECT count(*) AS n FROM clients') r")
echo "writer: ${written% *} routed inserts during the moves, slowest ${written#* } ms; rows after: $rows (= $MOVE_ROWS + $((rows - MOVE_ROWS)) written)"
rm -rf "$tmp"
# the bench's tenants go, so that the cluster is left as `make cluster` gives it
psql_ -c "SELECT count(messiah_drop_tenant(tenant_id)) FROM messiah.tenants WHERE tenant_id LIKE 'bench\_%'" >/dev/null
psql_ -c "SELECT messiah_run_pending(wait_ms => 300000)" >/dev/null
psql_ -c "SELECT messiah_drop_server('bench2')" >/dev/null
MESSIAH_CLUSTER_DIR=$SECOND_DIR MESSIAH_PORT=$SECOND_PORT "$ROOT/scripts/cluster.sh" stop >/dev/null
rm -rf "$SECOND_DIR"
psql_ -c "DROP EXTENSION IF EXISTS dblink" >/dev/null
