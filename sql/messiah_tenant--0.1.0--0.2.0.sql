-- messiah_tenant 0.1.0 -> 0.2.0, run in each tenant database by messiah_upgrade_tenants()
-- (ALTER EXTENSION messiah_tenant UPDATE TO '0.2.0'): the validation counters' reader and the
-- record of tenant schema migrations. Hand-kept: checked against a database created at 0.2.0
-- by scripts/upgrade_test.sh.
\echo Use "ALTER EXTENSION messiah_tenant UPDATE TO '0.2.0'" to load this file. \quit

-- The server's validation counters (shared memory, since the server started), for the admin
-- installation's messiah_metrics() and messiah_tenant_stats(): not for the tenant's roles.
CREATE FUNCTION messiah.validation_counters(
    OUT database_oid oid, OUT table_name text, OUT rows_validated bigint, OUT rows_rejected bigint)
    RETURNS SETOF record VOLATILE SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'validation_counters_wrapper';
REVOKE ALL ON FUNCTION messiah.validation_counters() FROM PUBLIC;
COMMENT ON FUNCTION messiah.validation_counters() IS
  'Rows the custom-field trigger validated and rejected, per table of every database of this server (database_oid, schema.table), since the server started. 55000 when messiah is not in shared_preload_libraries here. For the admin installation''s messiah_metrics(); not granted to tenant roles.';

-- Tenant schema migrations applied here (messiah_migrate_tenants in the admin database):
-- this database's own record, so that "nothing to do" is verified here, not read from the
-- admin catalog. Written only by messiah.run_migration().
CREATE TABLE messiah.applied_migrations (
    version     bigint PRIMARY KEY CONSTRAINT applied_migrations_version CHECK (version > 0),
    checksum    text NOT NULL,
    description text,
    applied_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    duration_ms double precision NOT NULL
);
REVOKE ALL ON messiah.applied_migrations FROM PUBLIC;
COMMENT ON TABLE messiah.applied_migrations IS
  'Tenant schema migrations applied in this database (version, sha256 of the SQL), written by messiah.run_migration().';

CREATE FUNCTION messiah.migration_version() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(max(m.version), 0) FROM messiah.applied_migrations m
$$;
REVOKE ALL ON FUNCTION messiah.migration_version() FROM PUBLIC;
COMMENT ON FUNCTION messiah.migration_version() IS
  'The highest migration version applied in this database (0: none).';

CREATE FUNCTION messiah.run_migration(version bigint, sql text, checksum text, description text, run_as text)
    RETURNS text VOLATILE SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'run_migration_wrapper';
REVOKE ALL ON FUNCTION messiah.run_migration(bigint, text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION messiah.run_migration(bigint, text, text, text, text) IS
  'Applies one tenant schema migration in this database, in the calling transaction: sql runs as role run_as (the tenant''s owner role; messiah_migrator in a template) inside a security-restricted operation (SET ROLE and SET SESSION AUTHORIZATION are refused, as in REFRESH MATERIALIZED VIEW), with search_path = public, then is recorded in messiah.applied_migrations. Returns applied, or unchanged when this version is already applied with this checksum. Errors: 55000 the version is applied with another checksum, or is below one applied here (out of order); 42704 no such role; the migration''s own errors.';
