-- messiah_tenant: the objects messiah keeps inside each tenant database (DESIGN.md decisions 5,
-- 8 and 10) and nothing else: no admin API, no dblink. Installed in each server's template
-- database, so every tenant database is created with it. The C functions are in messiah's
-- library ($libdir/messiah), which every server that holds tenant databases needs.
\echo Use "CREATE EXTENSION messiah_tenant" to load this file. \quit

CREATE SCHEMA messiah;
REVOKE ALL ON SCHEMA messiah FROM PUBLIC;

-- The catalog copy (one row), replaced as a whole by messiah.install_snapshot() over a
-- maintenance connection from the admin installation that manages this tenant. Triggers
-- validate from it, so the tenant database keeps enforcing its fields when the admin database
-- is unreachable; messiah_adopt_database() reads the tenant row and definitions back from it.
CREATE TABLE messiah.field_snapshot (
    singleton       boolean PRIMARY KEY DEFAULT true CONSTRAINT field_snapshot_one_row CHECK (singleton),
    tenant_id       text NOT NULL,
    installation_id uuid NOT NULL,
    version         bigint NOT NULL,
    snapshot        jsonb NOT NULL,
    installed_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON messiah.field_snapshot FROM PUBLIC;
COMMENT ON TABLE messiah.field_snapshot IS
  'Copy of this tenant''s catalog row and field definitions, version-stamped, naming the admin installation that manages it; written only by messiah.install_snapshot().';

-- The copy's version, for health checks made as the tenant's application role (which has no
-- right on the copy itself): one connection per tenant checks both that the role can log in
-- and that the copy is current.
CREATE FUNCTION messiah.field_snapshot_version() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.version FROM messiah.field_snapshot s
$$;
REVOKE ALL ON FUNCTION messiah.field_snapshot_version() FROM PUBLIC;
COMMENT ON FUNCTION messiah.field_snapshot_version() IS
  'The version of this database''s catalog copy (NULL when none is installed); executable by the tenant''s application role, for messiah_health().';

CREATE FUNCTION messiah.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION messiah.touch_updated_at() IS
  'BEFORE UPDATE trigger of the tenant tables: sets updated_at to now().';

-- BEFORE INSERT OR UPDATE row trigger on the tenant tables (src/tenant_side/enforce.rs).
CREATE FUNCTION messiah.enforce_custom_fields() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'messiah_enforce_custom_fields';
COMMENT ON FUNCTION messiah.enforce_custom_fields() IS
  'Trigger (argument: entity table name): validates custom_fields against this database''s copy of the tenant''s field definitions (23514 with every failing field in DETAIL), applies defaults on INSERT, strips unknown keys under policy strip. DESIGN.md decisions 5-6.';

CREATE FUNCTION messiah.install_snapshot(installation_id uuid, tenant_id text, version bigint, snapshot jsonb, force boolean)
    RETURNS text STRICT VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'install_snapshot_wrapper';
COMMENT ON FUNCTION messiah.install_snapshot(uuid, text, bigint, jsonb, boolean) IS
  'Replaces the catalog copy with a newer version (returns installed; an older or equal version is ignored: unchanged). Refuses (55000) a snapshot from another installation than the one named by the copy unless force (creation, takeover, adoption). 22023 if the snapshot does not compile. Invalidates every session''s compiled copy at COMMIT.';

CREATE FUNCTION messiah.check_rows(entity_table text, snapshot jsonb, sample_size integer)
    RETURNS jsonb STRICT VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'check_rows_wrapper';
COMMENT ON FUNCTION messiah.check_rows(text, jsonb, integer) IS
  'Checks every row of entity_table against a definition snapshot, reading rows in batches through a cursor; returns {"entity_table","checked","violations","sample"} with at most sample_size samples.';

CREATE FUNCTION messiah.validate_local(entity_table text, custom_fields jsonb)
    RETURNS jsonb STABLE SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'validate_local_wrapper';
COMMENT ON FUNCTION messiah.validate_local(text, jsonb) IS
  'Validates custom_fields of entity_table against this database''s installed copy (INSERT semantics); returns the jsonb array of errors.';

-- JSON Merge Patch (RFC 7396) of jsonb values, for routed updates of custom_fields
-- (messiah_tenant_update): objects merge recursively, null removes a key, anything else
-- replaces. The tenant's application role may execute it (granted per tenant).
CREATE FUNCTION messiah.jsonb_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    v jsonb;
    result jsonb;
BEGIN
    IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
        RETURN patch;
    END IF;
    result := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::jsonb END;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(patch) e LOOP
        IF jsonb_typeof(v) = 'null' THEN
            result := result - k;
        ELSE
            result := jsonb_set(result, ARRAY[k], messiah.jsonb_merge_patch(result -> k, v));
        END IF;
    END LOOP;
    RETURN result;
END $$;
COMMENT ON FUNCTION messiah.jsonb_merge_patch(jsonb, jsonb) IS
  'JSON Merge Patch (RFC 7396): target patched by patch. Used by routed updates to merge custom_fields.';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA messiah FROM PUBLIC;

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
