-- messiah 0.1.0 -> 0.2.0, run by ALTER EXTENSION messiah UPDATE (hand-kept: checked against a
-- fresh 0.2.0 install by scripts/upgrade_test.sh, which compares every extension member).
-- 0.2.0 adds the routed result cache (messiah_tenant_query's max_age), metrics
-- (messiah_metrics, messiah_tenant_stats, messiah_cache_clear), tenant schema migrations and
-- tenant upgrades. The library keeps 0.1.0's symbols, so a database still on 0.1.0's SQL keeps
-- working with the 0.2.0 library until this script runs.
\echo Use "ALTER EXTENSION messiah UPDATE TO '0.2.0'" to load this file. \quit

-- the catalog: migration and extension versions per tenant, the registered migrations
ALTER TABLE messiah.tenants
    ADD COLUMN migration_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN migrated_at timestamptz,
    ADD COLUMN extension_version text;
CREATE TABLE messiah.migrations (
    version     bigint PRIMARY KEY CONSTRAINT migrations_version CHECK (version > 0),
    sql         text NOT NULL,
    checksum    text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE messiah.migrations IS
  'Tenant schema migrations (version, SQL, sha256 checksum); immutable once applied in any tenant database.';
REVOKE ALL ON messiah.migrations FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('messiah.migrations', '');

-- messiah_tenant_query gains max_age: 0.1.0's three-argument function goes (its symbol stays
-- in the library for databases not yet updated)
DROP FUNCTION @extschema@.messiah_tenant_query(text, text, jsonb);

-- messiah::routing::messiah_tenant_query
CREATE  FUNCTION "messiah_tenant_query"(
	"tenant_id" TEXT, /* Option < & str > */
	"query" TEXT, /* Option < & str > */
	"params" jsonb DEFAULT '[]', /* Option < JsonbArg > */
	"max_age" interval DEFAULT NULL /* Option < pgrx :: datum :: Interval > */
) RETURNS SETOF jsonb /* JsonB */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_tenant_query_v2_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_tenant_query(text, text, jsonb, interval) IS
$$Runs one statement in the tenant's database as its application role and returns one jsonb object per row (booleans, numbers (exact), json/jsonb as JSON; other types as text). Args: tenant_id, query text, params jsonb array bound to $1..$n (scalars untyped so the server infers them, objects/arrays as jsonb, null as NULL), max_age interval (default NULL: not cached). Each call is its own transaction in the tenant database (autocommit) and the session is reset after it (DISCARD ALL); a supabase tenant's statements are read-only (writes: messiah_tenant_insert/_update/_delete). With max_age, a result of the same tenant, statement and parameters at most max_age old is served from the routed result cache shared by the cluster's sessions (messiah.result_cache_size, least recently used out first); otherwise the statement runs in a READ ONLY transaction (a write is 25006) and its result is cached. Routed writes (insert, update, delete, a query without max_age), status changes, moves and drops of the tenant invalidate its entries; writes made directly in the tenant's database do NOT (max_age bounds the staleness then). The original design cached for 600 s. Without messiah preloaded nothing is cached (NOTICE). Errors: 55000 tenant not active/ready or its server offline, 22004 params null, 22023 params not an array or max_age negative, 54000 more than 65535 params, or over messiah.route_max_rows / route_max_bytes (remote statement cancelled; DETAIL says when it had already completed and committed), 57014 the tenant's statement timeout, 25006 a write with max_age, and the server's own (42P02, 42P18, 42501 ...) with a CONTEXT naming tenant and server. Source: original design "Connectors" (query) and "Cache".$$;

-- messiah::monitor::messiah_metrics
CREATE  FUNCTION "messiah_metrics"(
	"metric_prefix" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"metric" TEXT,  /* String */
	"labels" jsonb,  /* pgrx :: JsonB */
	"value" double precision,  /* f64 */
	"help" TEXT,  /* String */
	"type" TEXT  /* String */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_metrics_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_metrics(text) IS
$$The fleet's metrics, one row per sample: metric (Prometheus name in base units: seconds, bytes; counters end in _total), labels (jsonb object), value (double precision), help, type (counter|gauge). metric_prefix (default NULL: all) returns, and gathers, only the families whose name starts with it. Families: messiah_tenants{status,server} (catalog); messiah_provisionings_started_total, _failed_total, messiah_provisioning_duration_seconds_sum/_count; messiah_routed_calls_total{tenant}, messiah_routed_errors_total{tenant}, messiah_routed_duration_seconds_sum/_count{tenant}; messiah_cache_hits_total, _misses_total, _evictions_total, messiah_cache_entries, messiah_cache_bytes, messiah_cache_capacity_bytes; messiah_sweeper_runs_total, messiah_sweeper_last_run_timestamp_seconds, messiah_sweeper_databases_swept_total (shared memory of this cluster, since it started; per admin database except the cache, which is cluster-wide); messiah_field_validations_total{tenant,table}, messiah_field_rejections_total{tenant,table} (counted by the trigger on each tenant's server, gathered from every registered server not offline over one maintenance connection each; messiah_server_counters_up{server} says whether that worked); messiah_counter_overflow_total. Without messiah in shared_preload_libraries only messiah_tenants is returned (NOTICE). Never raises for an unreachable server (NOTICE). Source: original design "next steps: metrics"; Prometheus naming practices.$$;

-- messiah::monitor::messiah_tenant_stats
CREATE  FUNCTION "messiah_tenant_stats"() RETURNS TABLE (
	"tenant_id" TEXT,  /* String */
	"server" TEXT,  /* String */
	"status" TEXT,  /* String */
	"routed_calls" bigint,  /* i64 */
	"routed_errors" bigint,  /* i64 */
	"routed_seconds" double precision,  /* f64 */
	"rows_validated" bigint,  /* i64 */
	"rows_rejected" bigint,  /* i64 */
	"database_size_bytes" bigint  /* Option < i64 > */
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_tenant_stats_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_tenant_stats() IS
$$One row per ready tenant: tenant_id, server, status, routed_calls, routed_errors, routed_seconds (summed duration, s), rows_validated, rows_rejected (by the tenant's trigger on its server since that server started), database_size_bytes (pg_database_size; NULL for a supabase tenant or an unreadable server). The citus_stat_tenants idea, per database. Counters are 0 without messiah preloaded (NOTICE).$$;

-- messiah::cache::messiah_cache_clear
CREATE  FUNCTION "messiah_cache_clear"(
	"tenant_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_cache_clear_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_cache_clear(text) IS
$$Empties the routed result cache for one tenant of this admin database, or for all its tenants when tenant_id is NULL (default); returns the entries removed. Other admin databases' entries are untouched. 0 without messiah preloaded. Errors: 22023 invalid tenant_id.$$;

-- messiah::cache::messiah::route_lookup
CREATE  FUNCTION messiah."route_lookup"(
	"tenant_id" TEXT /* & str */
) RETURNS jsonb /* Option < pgrx :: JsonB > */
STRICT STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'route_lookup_wrapper';
COMMENT ON FUNCTION messiah.route_lookup(text) IS
$$Internal (diagnosis; the benchmark of the lookup alone): the catalog entry a routed call uses for tenant_id, through the per-backend catalog cache when messiah.catalog_cache is on: {"tenant_id","server","database","status","lifecycle","row_version"} or NULL. Opens no connection. Not granted.$$;

-- messiah::fleet::messiah_add_migration
CREATE  FUNCTION "messiah_add_migration"(
	"version" bigint, /* Option < i64 > */
	"sql" TEXT, /* Option < & str > */
	"description" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* JsonB */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_add_migration_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_add_migration(bigint, text, text) IS
$$Registers tenant schema migration version (bigint >= 1): sql (<= 1 MiB; statements a transaction may hold, so no CREATE INDEX CONCURRENTLY), description. Applied in ascending version order to every tenant database by messiah_migrate_tenants, as the tenant's owner role inside a security-restricted operation (it can change the tenant's schema and nothing else; what it creates never runs as a superuser: messiah_move_tenant refuses triggers enabled ALWAYS or REPLICA and constraints, indexes and defaults calling the tenant's own functions, which PG15's replication would run as one), and to each server's template (new tenants start with every migration). The same SQL again changes nothing. Returns {"version","checksum" (sha256 of sql),"description"}. Errors: 22004, 22023 version < 1 or empty sql, 54000 sql too large, 55000 the version is applied in a tenant database with other SQL (immutable: register a new version), or is not above the highest version applied somewhere (as the catalog last recorded it; messiah_migrate_tenants reports a database whose applied SQL differs).$$;

-- messiah::fleet::messiah_migrate_tenants
CREATE  FUNCTION "messiah_migrate_tenants"(
	"concurrency" INT DEFAULT 4, /* Option < i32 > */
	"target_version" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"tenant_id" TEXT,  /* String */
	"from_version" bigint,  /* Option < i64 > */
	"to_version" bigint,  /* Option < i64 > */
	"status" TEXT,  /* String */
	"message" TEXT,  /* String */
	"duration_ms" double precision  /* f64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_migrate_tenants_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_migrate_tenants(integer, bigint) IS
$$Applies the pending tenant schema migrations (up to target_version; default all) to every ready tenant database, at most concurrency (default 4) at once over asynchronous connections: each database is asked its version (nothing is read from the catalog), then gets its pending migrations, each in its own transaction, under lock_timeout = messiah.migration_lock_timeout (a migration never queues the tenant's writers for long: it fails and a re-run retries it). Rebuilds the templates. One row per tenant: tenant_id, from_version, to_version (read from its database), status ok|failed|skipped (supabase tenant, offline server, another installation's), message, duration_ms. A failure stops that tenant at its previous version and not the others; a re-run does only what is left. A database that applied a version with other SQL than the catalog's, or a version the catalog does not have, is failed with the reason (verified in the database: its checksum). Applied migrations stay committed in the tenant databases whatever this call's transaction does. Errors: 22004, 22023 concurrency < 1 or target_version < 1, 55P03 another run in progress.$$;

-- messiah::fleet::messiah_list_migrations
CREATE  FUNCTION "messiah_list_migrations"(
	"tenant_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"tenant_id" TEXT,  /* String */
	"server" TEXT,  /* String */
	"migration_version" bigint,  /* i64 */
	"latest_version" bigint,  /* i64 */
	"pending" bigint,  /* i64 */
	"migrated_at" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_list_migrations_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_list_migrations(text) IS
$$Where every ready tenant (or one) stands: tenant_id, server, migration_version (as the last messiah_migrate_tenants found it in its database), latest_version (highest registered), pending (registered versions above its own), migrated_at. Errors: 22023 invalid tenant_id.$$;

-- messiah::fleet::messiah_upgrade_tenants
CREATE  FUNCTION "messiah_upgrade_tenants"(
	"concurrency" INT DEFAULT 4 /* Option < i32 > */
) RETURNS TABLE (
	"tenant_id" TEXT,  /* String */
	"from_version" TEXT,  /* Option < String > */
	"to_version" TEXT,  /* Option < String > */
	"status" TEXT,  /* String */
	"message" TEXT,  /* String */
	"duration_ms" double precision  /* f64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_upgrade_tenants_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_upgrade_tenants(integer) IS
$$Brings every ready tenant database's messiah_tenant extension to this admin database's version (ALTER EXTENSION messiah_tenant UPDATE TO <version>, with the upgrade scripts the package ships; run it after ALTER EXTENSION messiah UPDATE here), at most concurrency (default 4) databases at once over asynchronous connections, under messiah.migration_lock_timeout; re-applies each upgraded tenant's roles and grants after COMMIT; records each tenant's version in the catalog (tenants.extension_version); rebuilds the templates. One row per tenant: tenant_id, from_version, to_version (read from its database), status ok|failed|skipped, message, duration_ms. A failure is recorded and the others continue; a re-run does only what is left; the tenants keep working meanwhile (no lock on their tables). Errors: 22004, 22023 concurrency < 1, 55P03 another run in progress.$$;

-- messiah::fleet::messiah_move_tenant
CREATE  FUNCTION "messiah_move_tenant"(
	"tenant_id" TEXT, /* Option < & str > */
	"to_server" TEXT, /* Option < & str > */
	"keep_source" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* JsonB */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_move_tenant_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_move_tenant(text, text, boolean) IS
$$Moves a tenant's database to server to_server (NULL: the placement policy's choice) with PostgreSQL logical replication: a copy from the target's template under a temporary name, a publication of schema public on the source and a subscription on the target, the initial copy while the tenant works, the catalog copy and field indexes installed; then the cutover: new routed calls wait (every routed call takes the tenant's move lock shared; at most messiah.move_cutover_timeout for calls in flight), the tenant's sessions on the source end and its role loses LOGIN there, the target catches up to the source's WAL position, sequences are set (PG15 does not replicate them), subscription, slot and publication go, the copy is renamed tenant_<id>, the catalog points to the target and the roles are made there; all effective at COMMIT. The source database is dropped after COMMIT (with the tenant's roles there), or kept and marked with keep_source. Returns {"tenant_id","from","to","copy_ms","cutover_ms","source"}. Needs wal_level = logical on the source and a superuser conninfo for the target (PG15 CREATE SUBSCRIPTION). A failure leaves the tenant on its source, working; what could not be removed goes with messiah_reconcile(repair => true) (kind move_leftover, and the copy as an aborted creation). Errors: 25001 moving off this admin database's own server in a transaction that has already written (its replication slot would wait for it), 22023 already there, 42704, 55000 (not ready, target not active, wal_level, tables without primary key, tenant behind the current extension or migration version, code of the tenant's that the replication would run as a superuser: triggers enabled ALWAYS or REPLICA, constraints, indexes or defaults calling its own functions; copy failed), 42501 target user not superuser, 42P04 target has a database of that name, 53400 no room, 55P03 routed calls in flight past the cutover timeout, 57014 messiah.move_timeout or cancel.$$;

-- messiah::fleet::messiah_drain_server
CREATE  FUNCTION "messiah_drain_server"(
	"name" TEXT, /* Option < & str > */
	"keep_source" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"tenant_id" TEXT,  /* String */
	"to_server" TEXT,  /* Option < String > */
	"status" TEXT,  /* String */
	"message" TEXT,  /* String */
	"copy_ms" double precision,  /* Option < f64 > */
	"cutover_ms" double precision  /* Option < f64 > */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'messiah_drain_server_wrapper';
COMMENT ON FUNCTION @extschema@.messiah_drain_server(text, boolean) IS
$$Moves every ready tenant off server name: marks it draining (no new tenants), then moves each tenant (messiah_move_tenant with the placement policy's target), each in its own transaction over a connection of this backend to this admin database, so each cutover commits on its own and a failure does not stop the others. One row per tenant: tenant_id, to_server, status moved|failed, message, copy_ms, cutover_ms. Errors: 42704 no such server, 55000 the local server is not registered.$$;

-- the catalog's guard lets a move's cutover change server_id and creating_xid
CREATE OR REPLACE FUNCTION messiah.tenants_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
       OR NEW.database_name IS DISTINCT FROM OLD.database_name
       OR ((NEW.server_id IS DISTINCT FROM OLD.server_id
            OR NEW.creating_xid IS DISTINCT FROM OLD.creating_xid)
           AND current_setting('messiah_internal.moving', true) IS DISTINCT FROM OLD.tenant_id) THEN
        RAISE EXCEPTION 'tenant_id, database_name, server_id and creating_xid of tenant "%" cannot be changed', OLD.tenant_id
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'They name the tenant''s database.',
                  HINT = 'Create a new tenant and move the data instead.';
    END IF;
    RETURN NEW;
END $$;

COMMENT ON FUNCTION @extschema@.messiah_reconcile(boolean, boolean) IS
$$Lists (repair => false) or fixes (repair => true) drift, as rows (kind, tenant_id, database_name, action, server). Kinds: aborted_creation (repair drops it: proven garbage of this installation), orphan_database (no catalog row: always left alone, reported with size and, with deep, row counts), missing_database (repair recreates it empty), snapshot_drift (deep: the tenant database's catalog copy differs; repair installs the catalog's), foreign_tenant (another installation manages the row), owned_elsewhere (the database names another installation), stale_template (repair drops it), pending_action (a queued remote action that failed; repair runs it), move_leftover (a failed move's replication slot or publication on its source; repair drops it; a move's copy on the target is an aborted creation). Without repair or deep, local databases are read from the shared catalogs only (no connection).$$;

-- as at the end of every version's script (sql/finalize.sql): nothing is executable by
-- PUBLIC, and the roles granted the management API get the new functions too
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
             AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
SELECT messiah.regrant_admins();
