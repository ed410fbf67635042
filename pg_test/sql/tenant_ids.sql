-- tenant_id and slug rules (DESIGN.md decision 4): every invalid class is refused with 22023
-- (or 22004 for null) before anything is written; SQL keywords are valid ids.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS messiah CASCADE;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '')
              || coalesce(' HINT: ' || nullif(hnt, ''), '');
END $$;

-- invalid tenant ids: 22023 naming the value and the rule
SELECT id, pg_temp.try(format('SELECT messiah_create_tenant(%L, %L, %L)', id, 'Name', 'rg-ids'))
FROM (VALUES ('acme-corp'), ('acme corp'), ('acme"corp'), ('acme''corp'), ('Acme'), ('acMe'),
             ('1acme'), ('_acme'), (''), ('são'), ('x''; DROP DATABASE postgres; --'),
             ('a host=evil'), ('acme;'), (repeat('a', 57))) AS t(id);

-- the 57-byte id is too long; 56 bytes is the maximum (tenant_ + 56 = 63 bytes)
SELECT octet_length(repeat('a', 56)) AS max_id_bytes,
       octet_length('tenant_' || repeat('a', 56)) AS max_database_name_bytes;
-- multibyte: 3 characters, 4 bytes, still invalid
SELECT length('são') AS chars, octet_length('são') AS bytes;

-- null arguments: 22004
SELECT pg_temp.try($$SELECT messiah_create_tenant(NULL, 'Name', 'rg-ids')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_null', NULL, 'rg-ids')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_null', 'Name', NULL)$$);
SELECT pg_temp.try($$SELECT messiah_get_tenant(NULL)$$);
-- blank name: 22023
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_blank', '   ', 'rg-ids')$$);

-- the same rule guards every function taking a tenant_id
SELECT pg_temp.try($$SELECT messiah_get_tenant('Acme')$$);
SELECT pg_temp.try($$SELECT messiah_drop_tenant('a host=evil')$$);
SELECT pg_temp.try($$SELECT messiah_set_tenant_status('acme-corp', 'active')$$);
SELECT pg_temp.try($$SELECT messiah_update_tenant('', '{}')$$);

-- valid ids (keywords, digits, underscores, 56 bytes) pass the rule: no such tenant (42704)
SELECT id, pg_temp.try(format('SELECT messiah_get_tenant(%L)', id))
FROM (VALUES ('select'), ('user'), ('table'), ('a'), ('a1_b2'), ('z_'), (repeat('a', 56))) AS t(id);

-- and can be created (rolled back: nothing remains)
BEGIN;
SELECT pg_temp.try($$SELECT messiah_create_tenant('select', 'Select', 'rg-ids-select')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('user', 'User', 'rg-ids-user')$$);
SELECT tenant_id, database_name FROM messiah.tenants WHERE tenant_id IN ('select', 'user') ORDER BY 1;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM messiah.tenants WHERE tenant_id IN ('select', 'user');
SELECT count(*) AS databases_after_rollback FROM pg_database WHERE datname IN ('tenant_select', 'tenant_user');

-- invalid slugs: 22023
SELECT slug, pg_temp.try(format('SELECT messiah_create_tenant(%L, %L, %L)', 'rg_ids_slug', 'Name', slug))
FROM (VALUES ('Acme'), ('acme_corp'), ('acme corp'), ('acme--corp'), ('-acme'), ('acme-'), (''),
             ('são-paulo'), ('acme.corp'), ('x''; DROP DATABASE postgres; --'),
             (repeat('a', 64))) AS t(slug);

-- valid slugs pass (rolled back)
BEGIN;
SELECT slug, pg_temp.try(format('SELECT messiah_create_tenant(%L, %L, %L)', 'rg_ids_s' || n, 'Name', slug))
FROM (VALUES (1, 'acme'), (2, '123'), (3, 'acme-corp-2'), (4, 'a-1-b'), (5, repeat('a', 63))) AS t(n, slug);
SELECT tenant_id, slug FROM messiah.tenants WHERE tenant_id LIKE 'rg\_ids\_s%' ORDER BY 1;
ROLLBACK;

-- contact_email, settings and config are checked too
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_mail', 'Name', 'rg-ids', contact_email => 'no-at-sign')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_set', 'Name', 'rg-ids', settings => '[1, 2]')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_set', 'Name', 'rg-ids', settings => '{"unknown_custom_fields": "keep"}')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_cfg', 'Name', 'rg-ids', config => '{"supabase_url": "x"}')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_cfg', 'Name', 'rg-ids', config => '{"surprise": 1}')$$);
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_ids_cfg', 'Name', 'rg-ids', config => '{"supabase_project_id": "p", "supabase_url": "u", "anon_key": "a", "service_key": "s", "plan": "gold"}')$$);

-- nothing was written by any failed call
SELECT count(*) AS tenants FROM messiah.tenants;
SELECT count(*) AS queued FROM messiah.outbox;
-- and the injection attempts did nothing
SELECT count(*) AS postgres_db FROM pg_database WHERE datname = 'postgres';
