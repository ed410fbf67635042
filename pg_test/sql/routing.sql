-- Routing into a tenant database (the original design's connector calls), run as the
-- tenant's application role: reads, inserts with top-level custom fields, merging updates,
-- deletes, parameters, argument errors, statements that try to leave the tenant, and the
-- status refusal. Needs the pg_hba lines of scripts/pg_hba_tenants.conf and messiah.key_file
-- (scripts/cluster.sh sets both).
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
    RETURN st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '');
END $$;

SELECT messiah_create_tenant('rg_route', 'Route', 'rg-route') ->> 'tenant_id' AS created;
SELECT messiah_define_field('rg_route', 'clients', 'country', 'select', 'Country',
           validation_rules => '{"options": ["Brazil", "Canada"]}') ->> 'field_name' AS defined;
SELECT messiah_define_field('rg_route', 'clients', 'tier', 'text', 'Tier') ->> 'field_name' AS defined;
-- the roles are set up and the field snapshot pushed after COMMIT
SELECT messiah_run_pending(wait_ms => 10000) ->> 'pending' AS pending;

-- an insert: "country" is a defined field given at the top level, moved into custom_fields
SELECT r - 'id' - 'created_at' - 'updated_at' AS inserted
FROM messiah_tenant_insert('rg_route', 'clients',
         '{"name": "Ana", "email": "ana@example.com", "country": "Brazil"}') AS r;
SELECT r - 'id' - 'created_at' - 'updated_at' AS inserted
FROM messiah_tenant_insert('rg_route', 'clients',
         '{"name": "Bo", "email": "bo@example.com", "custom_fields": {"country": "Canada", "tier": "gold"}}') AS r;
-- a value the definition refuses: messiah checks before sending, 23514 naming the field
SELECT pg_temp.try($$SELECT messiah_tenant_insert('rg_route', 'clients',
           '{"name": "Cy", "email": "cy@example.com", "country": "Peru"}')$$);

-- reads: one object per row, parameters bound to $1..$n (untyped: the server infers)
SELECT * FROM messiah_tenant_query('rg_route',
    'SELECT name, custom_fields->>''country'' AS country FROM clients WHERE name = $1', '["Ana"]');
SELECT * FROM messiah_tenant_query('rg_route',
    'SELECT count(*) AS n, $1::int + 1 AS next, $2::jsonb AS doc, $3::boolean AS flag, $4::text IS NULL AS is_null FROM clients',
    '[41, {"a": [1, 2]}, true, null]');
SELECT * FROM messiah_tenant_query('rg_route', 'SELECT id = $1 AS matches FROM clients WHERE false', '["7c9e6679-7425-40de-944b-e07fc1f90ae7"]');

-- update: custom_fields merged (RFC 7396: null removes a key), base columns set
SELECT r->>'name' AS name, r->>'phone' AS phone, r->'custom_fields' AS custom_fields
FROM messiah_tenant_update('rg_route', 'clients',
         '{"phone": "555", "custom_fields": {"tier": null, "country": "Brazil"}}',
         '{"email": "bo@example.com"}') AS r;
SELECT r->>'name' AS name, r->'custom_fields' AS custom_fields
FROM messiah_tenant_update('rg_route', 'clients', '{"tier": "silver"}', '{"name": "Ana"}') AS r;
-- nothing matches: no rows
SELECT count(*) AS updated FROM messiah_tenant_update('rg_route', 'clients', '{"phone": "1"}', '{"name": "Nobody"}');

-- argument errors, before anything is sent
SELECT pg_temp.try($$SELECT messiah_tenant_update('rg_route', 'clients', '{"phone": "1"}', '{}')$$);
SELECT pg_temp.try($$SELECT messiah_tenant_delete('rg_route', 'clients', '{}')$$);
SELECT pg_temp.try($$SELECT messiah_tenant_update('rg_route', 'clients', '{}', '{"name": "Ana"}')$$);
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'SELECT 1', '{"a": 1}')$$);
SELECT pg_temp.try($$SELECT messiah_tenant_insert('rg_route', 'clients', '[1]')$$);
SELECT pg_temp.try($$SELECT messiah_tenant_insert('rg_route', '', '{}')$$);
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_nobody', 'SELECT 1')$$);
-- the server's own errors
SELECT pg_temp.try($$SELECT messiah_tenant_insert('rg_route', 'nope', '{"a": 1}')$$);
SELECT pg_temp.try($$SELECT messiah_tenant_delete('rg_route', 'clients', '{"shoe_size": 1}')$$);
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'SELECT $1::int + $2::int', '[1]')$$);
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'SELECT $1::int', '[1, 2]')$$);

-- statements that try to leave the tenant: the application role may not
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'ALTER TABLE clients DISABLE TRIGGER ALL')$$);
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'SET ROLE postgres')$$);
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'UPDATE messiah.field_snapshot SET version = 0')$$);
SELECT * FROM messiah_tenant_query('rg_route', 'SELECT current_user AS u, session_user AS s');

-- delete: the count
SELECT messiah_tenant_delete('rg_route', 'clients', '{"name": "Ana"}') AS deleted;
SELECT * FROM messiah_tenant_query('rg_route', 'SELECT name FROM clients ORDER BY name');

-- suspended and inactive tenants are refused before any connection
SELECT messiah_set_tenant_status('rg_route', 'suspended') ->> 'status' AS status;
SELECT pg_temp.try($$SELECT * FROM messiah_tenant_query('rg_route', 'SELECT 1')$$);
SELECT pg_temp.try($$SELECT messiah_tenant_delete('rg_route', 'clients', '{"name": "Bo"}')$$);
SELECT messiah_set_tenant_status('rg_route', 'active') ->> 'status' AS status;
SELECT * FROM messiah_tenant_query('rg_route', 'SELECT count(*) AS n FROM clients');

-- connector types other than postgres: 0A000, nothing written
SELECT pg_temp.try($$SELECT messiah_create_tenant('rg_mongo', 'M', 'rg-mongo', connector_type => 'mongodb')$$);
SELECT count(*) AS written FROM messiah.tenants WHERE tenant_id = 'rg_mongo';

SELECT messiah_tenant_disconnect() >= 1 AS closed;
SELECT messiah_drop_tenant('rg_route') ->> 'database' AS dropped;
SELECT messiah_run_pending(wait_ms => 10000) ->> 'pending' AS pending;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname IN ('tenant_rg_route', 'owner_rg_route');
