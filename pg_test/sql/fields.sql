-- Extension fields (DESIGN.md decisions 5 and 6): definitions are checked when written
-- (22023 naming the field, 42704 unknown tenant or field), and messiah_validate_custom_fields
-- returns every error of a document as a JSON array, from the admin catalog.
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

-- the errors of a document, one row each (no rows: valid)
CREATE FUNCTION pg_temp.errors(doc jsonb, entity text DEFAULT 'clients')
RETURNS TABLE (field text, code text, message text) LANGUAGE sql AS $$
    SELECT e ->> 'field', e ->> 'code', e ->> 'message'
    FROM jsonb_array_elements(messiah_validate_custom_fields('rg_fields', entity, doc)) AS e
$$;

-- leftovers of an interrupted earlier run would make the create fail with 42P04
SELECT count(*) AS leftover_databases FROM pg_database WHERE datname = 'tenant_rg_fields';
SELECT messiah_create_tenant('rg_fields', 'Fields', 'rg-fields') ->> 'database' AS database;

-- definition-time errors: 22023 naming the field; nothing is written
SELECT label, pg_temp.try(format('SELECT messiah_define_field(%L, %L, %s)', 'rg_fields', 'clients', args)) AS result
FROM (VALUES
    ('rule key typo',         $a$'code', 'text', 'Code', validation_rules => '{"minLenght": 3}'$a$),
    ('rule of another type',  $a$'code', 'text', 'Code', validation_rules => '{"min": 3}'$a$),
    ('negative maxLength',    $a$'code', 'text', 'Code', validation_rules => '{"maxLength": -1}'$a$),
    ('min above max',         $a$'total', 'number', 'Total', validation_rules => '{"min": 5, "max": 1}'$a$),
    ('bad regex',             $a$'code', 'text', 'Code', validation_rules => '{"pattern": "["}'$a$),
    ('unknown format',        $a$'site', 'text', 'Site', validation_rules => '{"format": "url"}'$a$),
    ('select without options',$a$'kind', 'select', 'Kind'$a$),
    ('empty options',         $a$'kind', 'select', 'Kind', validation_rules => '{"options": []}'$a$),
    ('duplicate options',     $a$'kind', 'select', 'Kind', validation_rules => '{"options": ["a", "b", "a"]}'$a$),
    ('rules not an object',   $a$'total', 'number', 'Total', validation_rules => '[1]'$a$),
    ('bad JSON Schema',       $a$'meta', 'json', 'Meta', validation_rules => '{"schema": {"type": 5}}'$a$),
    ('default not a number',  $a$'total', 'number', 'Total', default_value => 'abc'$a$),
    ('default breaks rules',  $a$'total', 'number', 'Total', default_value => '1', validation_rules => '{"min": 5}'$a$),
    ('default not an option', $a$'kind', 'select', 'Kind', default_value => 'c', validation_rules => '{"options": ["a", "b"]}'$a$),
    ('default not boolean',   $a$'vip', 'boolean', 'VIP', default_value => 'yes'$a$),
    ('default not a date',    $a$'born', 'date', 'Born', default_value => '2023-02-29'$a$),
    ('date rule not a date',  $a$'born', 'date', 'Born', validation_rules => '{"min": "2024-02-30"}'$a$),
    ('uppercase name',        $a$'Total', 'number', 'Total'$a$),
    ('leading digit',         $a$'1total', 'number', 'Total'$a$),
    ('hyphen in name',        $a$'to-tal', 'number', 'Total'$a$),
    ('base column',           $a$'email', 'text', 'E-mail'$a$),
    ('41 bytes',              format('%L, ''text'', ''Long''', repeat('a', 41))),
    ('unknown type',          $a$'total', 'money', 'Total'$a$),
    ('blank display name',    $a$'total', 'number', '  '$a$),
    ('ui_config not object',  $a$'total', 'number', 'Total', ui_config => '"wide"'$a$)
) AS t(label, args);

-- other arguments
SELECT pg_temp.try($$SELECT messiah_define_field('rg_fields', 'invoices', 'amount', 'number', 'Amount')$$);
SELECT pg_temp.try($$SELECT messiah_define_field('rg_fields_nosuch', 'clients', 'total', 'number', 'Total')$$);
SELECT pg_temp.try($$SELECT messiah_define_field('RG', 'clients', 'total', 'number', 'Total')$$);
SELECT pg_temp.try($$SELECT messiah_drop_field('rg_fields', 'clients', 'nope')$$);
SELECT pg_temp.try($$SELECT messiah_validate_custom_fields('rg_fields', 'invoices', '{}')$$);
SELECT pg_temp.try($$SELECT messiah_validate_custom_fields('rg_fields_nosuch', 'clients', '{}')$$);

SELECT count(*) AS definitions FROM messiah.extension_field_definitions WHERE tenant_id = 'rg_fields';
SELECT snapshot_version FROM messiah.tenants WHERE tenant_id = 'rg_fields';

-- valid definitions (40 bytes is the longest name)
SELECT d ->> 'field_name' AS field_name, d ->> 'field_type' AS field_type,
       d ->> 'is_required' AS required, d ->> 'default_value' AS default_value,
       d -> 'validation_rules' AS rules, d ->> 'is_active' AS active
FROM (VALUES
    (messiah_define_field('rg_fields', 'clients', 'code', 'text', 'Code',
         validation_rules => '{"minLength": 2, "maxLength": 3, "pattern": "^[A-Za-zã]+$"}')),
    (messiah_define_field('rg_fields', 'clients', 'mail', 'text', 'Mail',
         validation_rules => '{"format": "email"}')),
    (messiah_define_field('rg_fields', 'clients', 'total', 'number', 'Total',
         validation_rules => '{"min": 0, "max": 100, "integer": true}')),
    (messiah_define_field('rg_fields', 'clients', 'big', 'number', 'Big')),
    (messiah_define_field('rg_fields', 'clients', 'vip', 'boolean', 'VIP', default_value => 'false')),
    (messiah_define_field('rg_fields', 'clients', 'born', 'date', 'Born',
         validation_rules => '{"min": "2000-01-01"}')),
    (messiah_define_field('rg_fields', 'clients', 'meta', 'json', 'Meta',
         validation_rules => '{"schema": {"type": "object", "required": ["a"]}}')),
    (messiah_define_field('rg_fields', 'clients', 'tier', 'select', 'Tier', is_required => true,
         default_value => 'silver', validation_rules => '{"options": ["gold", "silver"]}')),
    (messiah_define_field('rg_fields', 'clients', 'tags', 'select', 'Tags',
         default_value => '["a"]', validation_rules => '{"options": ["a", "b"], "multiple": true}')),
    (messiah_define_field('rg_fields', 'clients', 'level', 'number', 'Level', is_required => true)),
    (messiah_define_field('rg_fields', 'projects', repeat('p', 40), 'text', 'Forty', is_filterable => false))
) AS t(d);

SELECT f ->> 'entity_table' AS entity_table, f ->> 'field_name' AS field_name,
       f ->> 'is_active' AS active, f ->> 'is_filterable' AS filterable
FROM messiah_list_fields('rg_fields') AS f;

-- valid documents: no errors
SELECT doc, messiah_validate_custom_fields('rg_fields', 'clients', doc::jsonb) AS errors
FROM (VALUES
    ('{"level": 1}'),
    ('{"level": 1, "tier": "gold", "code": "São", "mail": "ann@example.com", "total": 100}'),
    ('{"level": -1e400, "big": 1e400, "vip": true, "born": "2024-02-29", "meta": {"a": null}}'),
    ('{"level": 0, "tags": ["b", "a"], "code": null, "tier": "silver"}'),
    ('{"level": 0, "tags": []}')
) AS t(doc);

-- every error of a document, sorted by field
SELECT * FROM pg_temp.errors('{"code": "Sãoo1", "mail": "x", "total": "5", "big": "1", "vip": 1,
    "born": "2023-02-29", "meta": {"b": 1}, "tier": "bronze", "tags": ["a", "a", "c"], "zzz": true}');

-- one at a time
SELECT doc, e.* FROM (VALUES
    ('{"level": 1, "code": "São!"}'),
    ('{"level": 1, "code": "a"}'),
    ('{"level": 1, "code": 5}'),
    ('{"level": "5"}'),
    ('{"level": 1, "total": 1e400}'),
    ('{"level": 1, "total": -0.5}'),
    ('{"level": 1, "total": 2.5}'),
    ('{"level": 1, "total": 100.0}'),
    ('{"level": 1, "vip": "true"}'),
    ('{"level": 1, "vip": null}'),
    ('{"level": 1, "born": "2024-02-30"}'),
    ('{"level": 1, "born": "1999-12-31"}'),
    ('{"level": 1, "born": "2024-2-29"}'),
    ('{"level": 1, "born": 20240229}'),
    ('{"level": 1, "tier": null}'),
    ('{"level": null}'),
    ('{"level": 1, "tier": ["gold"]}'),
    ('{"level": 1, "tags": "a"}'),
    ('{"level": 1, "meta": [1]}')
) AS t(doc), LATERAL pg_temp.errors(doc::jsonb) AS e;

-- not an object; SQL NULL (INSERT semantics: defaults apply, required without default fails)
SELECT * FROM pg_temp.errors('[1, 2]');
SELECT * FROM pg_temp.errors('"text"');
SELECT * FROM pg_temp.errors('null');
SELECT * FROM pg_temp.errors(NULL);
SELECT * FROM pg_temp.errors('{}');
-- an entity table without definitions still rejects unknown keys
SELECT * FROM pg_temp.errors('{"x": 1}', 'activities');
SELECT * FROM pg_temp.errors('{}', 'activities');

-- messiah_apply_fields: a flat record becomes base columns + custom_fields with defaults
SELECT messiah_apply_fields('rg_fields', 'clients',
    '{"name": "Acme", "email": "ops@acme.test", "level": 3, "code": "ABC"}') AS record;
SELECT pg_temp.try($$SELECT messiah_apply_fields('rg_fields', 'clients', '{"name": "Acme", "level": "3", "colour": "red"}')$$);
SELECT pg_temp.try($$SELECT messiah_apply_fields('rg_fields', 'clients', '[1]')$$);

-- unknown keys follow settings.unknown_custom_fields
SELECT messiah_update_tenant('rg_fields', '{"settings": {"unknown_custom_fields": "strip"}}') -> 'settings' AS settings;
SELECT * FROM pg_temp.errors('{"level": 1, "zzz": true}');
SELECT messiah_apply_fields('rg_fields', 'clients', '{"name": "Acme", "level": 3, "colour": "red"}') AS record;
SELECT messiah_update_tenant('rg_fields', '{"settings": {"unknown_custom_fields": "allow"}}') -> 'settings' AS settings;
SELECT * FROM pg_temp.errors('{"level": 1, "zzz": true}');
SELECT messiah_apply_fields('rg_fields', 'clients', '{"name": "Acme", "level": 3, "colour": "red"}') AS record;
SELECT messiah_update_tenant('rg_fields', '{"settings": {"unknown_custom_fields": null}}') -> 'settings' AS settings;
SELECT * FROM pg_temp.errors('{"level": 1, "zzz": true}');

-- a dropped field is unknown; defining it again reactivates it
SELECT messiah_drop_field('rg_fields', 'clients', 'code') ->> 'is_active' AS active;
SELECT * FROM pg_temp.errors('{"level": 1, "code": "ab"}');
SELECT f ->> 'field_name' AS field_name, f ->> 'is_active' AS active
FROM messiah_list_fields('rg_fields', 'clients') AS f WHERE f ->> 'field_name' = 'code';
SELECT messiah_define_field('rg_fields', 'clients', 'code', 'text', 'Code') ->> 'is_active' AS active;
SELECT * FROM pg_temp.errors('{"level": 1, "code": "abcdef"}');

-- cleanup: the tenant database is dropped at COMMIT
SELECT messiah_drop_tenant('rg_fields') ->> 'database' AS dropped;
SELECT messiah_run_pending(wait_ms => 10000) ->> 'pending' AS pending;
SELECT count(*) AS databases_left FROM pg_database WHERE datname = 'tenant_rg_fields';
SELECT count(*) AS definitions_left FROM messiah.extension_field_definitions WHERE tenant_id = 'rg_fields';
