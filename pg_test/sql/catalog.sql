-- The admin catalog: the original design's columns, defaults, checks and indexes, the
-- triggers that maintain it, and its privileges (DESIGN.md decisions 1 and 8).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS messiah CASCADE;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    -- a "Failing row contains (...)" DETAIL holds generated ids and timestamps: left out
    IF det LIKE 'Failing row contains%' THEN
        det := NULL;
    END IF;
    RETURN st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '');
END $$;

-- tables of the messiah schema
SELECT table_name FROM information_schema.tables
WHERE table_schema = 'messiah' ORDER BY table_name;

-- columns, types, nullability and defaults
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns
WHERE table_schema = 'messiah'
  AND table_name IN ('tenants', 'tenant_supabase_configs', 'extension_field_definitions')
ORDER BY table_name, ordinal_position;

-- constraints (checks, keys, foreign keys)
SELECT conrelid::regclass AS "table", conname, contype, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE conrelid IN ('messiah.tenants'::regclass, 'messiah.tenant_supabase_configs'::regclass,
                   'messiah.extension_field_definitions'::regclass)
ORDER BY 1, 2;

-- indexes
SELECT tablename, indexname, indexdef FROM pg_indexes
WHERE schemaname = 'messiah'
  AND tablename IN ('tenants', 'tenant_supabase_configs', 'extension_field_definitions')
ORDER BY tablename, indexname;

-- triggers on the catalog
SELECT tgrelid::regclass AS "table", tgname, tgdeferrable, tginitdeferred, tgenabled
FROM pg_trigger
WHERE tgrelid IN ('messiah.tenants'::regclass, 'messiah.tenant_supabase_configs'::regclass,
                  'messiah.extension_field_definitions'::regclass)
  AND NOT tgisinternal
ORDER BY 1, 2;

-- Direct writes (as the owner; the API is the normal path). A row inserted and removed in
-- one transaction never reaches the COMMIT-time provisioning.
BEGIN;
INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
VALUES ('rg_cat', 'Catalog', 'rg-cat', 'tenant_rg_cat', 1);
SELECT status, settings, snapshot_version, lifecycle, installation_id = messiah.installation_id() AS ours,
       contact_email IS NULL AS no_email,
       created_at = now() AS created_now, updated_at = now() AS updated_now
FROM messiah.tenants WHERE tenant_id = 'rg_cat';
-- updated_at is maintained by the trigger: set it to the past, then update another column
UPDATE messiah.tenants SET updated_at = '2000-01-01', created_at = '2000-01-01' WHERE tenant_id = 'rg_cat';
SELECT updated_at = now() AS updated_now, created_at AS created_kept FROM messiah.tenants WHERE tenant_id = 'rg_cat';
UPDATE messiah.tenants SET created_at = '2001-01-01' WHERE tenant_id = 'rg_cat';
UPDATE messiah.tenants SET name = 'Catalog 2' WHERE tenant_id = 'rg_cat';
SELECT name, updated_at = now() AS updated_now, updated_at > created_at AS updated_after_created
FROM messiah.tenants WHERE tenant_id = 'rg_cat';

-- the checks
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id, status)
                     VALUES ('rg_cat2', 'C', 'rg-cat2', 'tenant_rg_cat2', 1, 'deleted')$$);
SELECT pg_temp.try($$UPDATE messiah.tenants SET status = 'archived' WHERE tenant_id = 'rg_cat'$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
                     VALUES ('Bad-Id', 'C', 'rg-cat2', 'tenant_Bad-Id', 1)$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
                     VALUES ('rg_cat2', 'C', 'Bad Slug', 'tenant_rg_cat2', 1)$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
                     VALUES ('rg_cat2', ' ', 'rg-cat2', 'tenant_rg_cat2', 1)$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
                     VALUES ('rg_cat2', 'C', 'rg-cat2', 'tenant_other', 1)$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id, settings)
                     VALUES ('rg_cat2', 'C', 'rg-cat2', 'tenant_rg_cat2', 1, '[]')$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
                     VALUES ('rg_cat', 'C', 'rg-cat2', 'tenant_rg_cat', 1)$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenants (tenant_id, name, slug, database_name, server_id)
                     VALUES ('rg_cat2', 'C', 'rg-cat', 'tenant_rg_cat2', 1)$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenant_supabase_configs (tenant_id, supabase_project_id, supabase_url, anon_key, service_key, plan)
                     VALUES ('rg_cat', 'p', 'u', 'msk1:0123456789abcdef:AAAA', 'msk1:0123456789abcdef:BBBB', 'gold')$$);
SELECT pg_temp.try($$INSERT INTO messiah.tenant_supabase_configs (tenant_id, supabase_project_id, supabase_url, anon_key, service_key)
                     VALUES ('rg_nobody', 'p', 'u', 'msk1:0123456789abcdef:AAAA', 'msk1:0123456789abcdef:BBBB')$$);
SELECT pg_temp.try($$INSERT INTO messiah.extension_field_definitions (tenant_id, entity_table, field_name, field_type, display_name)
                     VALUES ('rg_cat', 'clients', 'f', 'money', 'F')$$);

-- tenant_id, database_name and server_id are immutable: 0A000
SELECT pg_temp.try($$UPDATE messiah.tenants SET tenant_id = 'rg_cat3', database_name = 'tenant_rg_cat3' WHERE tenant_id = 'rg_cat'$$);
SELECT pg_temp.try($$UPDATE messiah.tenants SET database_name = 'tenant_rg_cat_moved' WHERE tenant_id = 'rg_cat'$$);
SELECT pg_temp.try($$UPDATE messiah.tenants SET server_id = 2 WHERE tenant_id = 'rg_cat'$$);

-- keys in clear text are refused by the catalog itself
SELECT pg_temp.try($$INSERT INTO messiah.tenant_supabase_configs (tenant_id, supabase_project_id, supabase_url, anon_key, service_key)
                     VALUES ('rg_cat', 'p', 'u', 'msk1:0123456789abcdef:AAAA', 'sk_clear_text')$$);
-- defaults of the config table; delete cascades to it
INSERT INTO messiah.tenant_supabase_configs (tenant_id, supabase_project_id, supabase_url, anon_key, service_key)
VALUES ('rg_cat', 'p', 'u', 'msk1:0123456789abcdef:AAAA', 'msk1:0123456789abcdef:BBBB');
SELECT region, plan, is_active FROM messiah.tenant_supabase_configs WHERE tenant_id = 'rg_cat';
DELETE FROM messiah.tenants WHERE tenant_id = 'rg_cat';
SELECT count(*) AS configs_left FROM messiah.tenant_supabase_configs WHERE tenant_id = 'rg_cat';
COMMIT;
SELECT count(*) AS databases FROM pg_database WHERE datname = 'tenant_rg_cat';

-- privileges: no messiah function is executable by PUBLIC
SELECT count(*) > 10 AS has_extension_functions,
       count(*) FILTER (WHERE has_function_privilege('public', p.oid, 'execute')) AS public_executable
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah';
SELECT f AS function, has_function_privilege('public', f, 'execute') AS public_execute,
       p.prosecdef AS security_definer, p.proconfig
FROM unnest(ARRAY['messiah_create_tenant(text,text,text,text,text,jsonb,jsonb,text,text)',
                  'messiah_get_tenant(text)', 'messiah_list_tenants(text,bigint,bigint)',
                  'messiah_update_tenant(text,jsonb)', 'messiah_set_tenant_status(text,text)',
                  'messiah_drop_tenant(text,boolean)', 'messiah_reconcile(boolean,boolean)',
                  'messiah_get_secret(text,text)', 'messiah_run_pending(integer)',
                  'messiah.create_tenant_database(uuid)', 'messiah.tenants_provision()']::regprocedure[]) AS f
JOIN pg_proc p ON p.oid = f
ORDER BY f::text;
SELECT has_function_privilege('public', 'messiah_create_tenant(text,text,text,text,text,jsonb,jsonb,text,text)', 'execute');
SELECT has_schema_privilege('public', 'messiah', 'usage') AS public_schema_usage;
SELECT c.relname, has_table_privilege('public', c.oid, 'select') AS public_select
FROM pg_class c
WHERE c.relnamespace = 'messiah'::regnamespace AND c.relkind = 'r'
ORDER BY 1;

-- every SECURITY DEFINER function of the extension pins search_path
SELECT count(*) > 10 AS has_security_definer_functions,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                                          WHERE c = 'search_path=pg_catalog, pg_temp')) AS without_pinned_search_path
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah'
WHERE p.prosecdef;
