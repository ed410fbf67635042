-- Tenant lifecycle in autocommit: create, get, update, status, list, drop. Each statement
-- commits, so the tenant database appears after the create; a drop is carried out after its
-- COMMIT (messiah_run_pending waits for it here).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS messiah CASCADE;
-- only to look into the tenant database from this test (messiah does not use dblink)
CREATE EXTENSION IF NOT EXISTS dblink;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '');
END $$;

-- leftovers of an interrupted earlier run would make the create fail with 42P04
SELECT count(*) AS leftover_databases FROM pg_database WHERE datname IN ('tenant_rg_acme', 'tenant_rg_beta');

SELECT jsonb_pretty(messiah_create_tenant('rg_acme', 'Acme Inc', 'rg-acme',
           contact_email => 'ops@acme.test', contact_name => 'Ann Admin',
           settings => '{"theme": {"color": "red", "dark": true}}',
           config => '{"supabase_project_id": "acmeproj", "supabase_url": "https://acmeproj.supabase.co",
                       "anon_key": "anon-acme", "service_key": "service-secret-acme", "plan": "pro"}')
       - 'id' - 'created_at' - 'updated_at') AS created;
SELECT datname FROM pg_database WHERE datname = 'tenant_rg_acme';
-- the tenant database is a clone of the template: the tenant schema is there
SELECT * FROM dblink(format('host=%s port=%s user=postgres dbname=tenant_rg_acme',
                            current_setting('unix_socket_directories'), current_setting('port')),
                     $$SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'$$)
         AS t(tables text);

-- the keys are stored encrypted, never returned but by messiah_get_secret
SELECT service_key LIKE 'msk1:%' AS sealed, strpos(service_key, 'service-secret-acme') = 0 AS no_clear_text
FROM messiah.tenant_supabase_configs WHERE tenant_id = 'rg_acme';
SELECT messiah_get_tenant('rg_acme')::text LIKE '%secret-acme%' AS key_leaked;
SELECT messiah_get_tenant('rg_acme') -> 'supabase' ->> 'service_key' AS service_key_shown;
SELECT messiah_get_secret('rg_acme', 'service_key') AS service_key, messiah_get_secret('rg_acme', 'anon_key') AS anon_key;
SELECT (messiah_get_tenant('rg_acme') ->> 'id') = id::text AS id_matches FROM messiah.tenants WHERE tenant_id = 'rg_acme';

-- a second tenant without config: supabase is null
SELECT messiah_create_tenant('rg_beta', 'Beta', 'rg-beta') - 'id' - 'created_at' - 'updated_at' AS created;
SELECT datname FROM pg_database WHERE datname = 'tenant_rg_beta';

-- duplicates
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_acme', 'Other', 'rg-other')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_gamma', 'Gamma', 'rg-acme')$$);
SELECT count(*) AS gamma_databases FROM pg_database WHERE datname = 'tenant_rg_gamma';

-- update: settings by JSON Merge Patch, contact cleared by null
SELECT jsonb_pretty(messiah_update_tenant('rg_acme',
           '{"name": "Acme Corporation", "contact_name": null,
             "settings": {"theme": {"dark": null, "font": "serif"}, "beta": true}}')
       - 'id' - 'created_at' - 'updated_at' - 'snapshot_version') AS updated;
-- the tenant database's copy of the row follows: a new version (from a sequence)
SELECT snapshot_version > 0 AS copy_version_bumped FROM messiah.tenants WHERE tenant_id = 'rg_acme';
SELECT t.updated_at > t.created_at AS updated_at_moved FROM messiah.tenants t WHERE tenant_id = 'rg_acme';
SELECT pg_temp.try($$SELECT messiah_update_tenant('rg_acme', '{"status": "inactive"}')$$);
SELECT pg_temp.try($$SELECT messiah_update_tenant('rg_acme', '{"slug": "rg-beta"}')$$);
SELECT pg_temp.try($$SELECT messiah_update_tenant('rg_acme', '{"contact_email": "nobody"}')$$);
SELECT pg_temp.try($$SELECT messiah_update_tenant('rg_nobody', '{"name": "x"}')$$);
SELECT messiah_update_tenant('rg_acme', '{"slug": "rg-acme-corp"}') ->> 'slug' AS new_slug;

-- status
SELECT messiah_set_tenant_status('rg_beta', 'suspended') ->> 'status' AS status;
SELECT pg_temp.try($$SELECT messiah_set_tenant_status('rg_beta', 'deleted')$$);
SELECT pg_temp.try($$SELECT messiah_set_tenant_status('rg_nobody', 'active')$$);

-- list (other tenants of this database, if any, are excluded by the rg_ filter)
SELECT t ->> 'tenant_id' AS tenant_id, t ->> 'status' AS status
FROM messiah_list_tenants() t WHERE t ->> 'tenant_id' LIKE 'rg\_%';
SELECT t ->> 'tenant_id' AS tenant_id FROM messiah_list_tenants(status => 'suspended') t WHERE t ->> 'tenant_id' LIKE 'rg\_%';
SELECT t ->> 'tenant_id' AS tenant_id FROM messiah_list_tenants(status => 'active') t WHERE t ->> 'tenant_id' LIKE 'rg\_%';
SELECT pg_temp.try($$SELECT * FROM messiah_list_tenants("limit" => 0)$$);
SELECT pg_temp.try($$SELECT * FROM messiah_list_tenants("offset" => -1)$$);
SELECT pg_temp.try($$SELECT * FROM messiah_list_tenants(status => 'gone')$$);

-- drop: the row is marked dropping at once; the database goes after COMMIT
SELECT messiah_drop_tenant('rg_beta');
SELECT messiah_run_pending(wait_ms => 10000) ->> 'pending' AS pending;
SELECT count(*) AS beta_databases FROM pg_database WHERE datname = 'tenant_rg_beta';
SELECT pg_temp.try($$SELECT messiah_get_tenant('rg_beta')$$);
SELECT pg_temp.try($$SELECT messiah_drop_tenant('rg_beta')$$);
-- a drop that rolls back keeps both
BEGIN;
SELECT messiah_drop_tenant('rg_acme');
ROLLBACK;
SELECT messiah_run_pending(wait_ms => 10000) ->> 'pending' AS pending;
SELECT messiah_get_tenant('rg_acme') ->> 'name' AS still_there;
SELECT datname FROM pg_database WHERE datname = 'tenant_rg_acme';
SELECT messiah_drop_tenant('rg_acme');
SELECT messiah_run_pending(wait_ms => 10000) ->> 'pending' AS pending;
SELECT count(*) AS acme_databases FROM pg_database WHERE datname = 'tenant_rg_acme';
SELECT count(*) AS configs_left FROM messiah.tenant_supabase_configs WHERE tenant_id = 'rg_acme';

-- nothing left behind
SELECT count(*) AS queued FROM messiah.outbox;
SELECT count(*) AS being_created FROM pg_database
WHERE datname LIKE 'messiah\_new\_' || left(messiah.installation_id()::text, 8) || '%';
SELECT * FROM messiah_reconcile() WHERE tenant_id LIKE 'rg\_%';
