-- Catalog reads and guards written in SQL; the provisioning and validation logic is Rust.

-- A tenant as the messiah_* functions return it: catalog columns, the database name, the
-- server's name, the lifecycle, and the Supabase config without its keys (DESIGN.md
-- decision 8: secrets are read only with messiah_get_secret()).
CREATE FUNCTION messiah.tenant_json(t messiah.tenants) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'id', t.id,
        'tenant_id', t.tenant_id,
        'name', t.name,
        'slug', t.slug,
        'status', t.status,
        'contact_email', t.contact_email,
        'contact_name', t.contact_name,
        'settings', t.settings,
        'database', t.database_name,
        'server', (SELECT s.name FROM messiah.servers s WHERE s.id = t.server_id),
        'lifecycle', t.lifecycle,
        'snapshot_version', t.snapshot_version,
        'connector_type', t.connector_type,
        'schema', t.schema_name,
        'roles', jsonb_build_object('application', 'tenant_' || t.tenant_id, 'owner', t.owner_role),
        'limits', jsonb_build_object(
            'statement_timeout_ms', t.statement_timeout_ms,
            'connection_limit', t.connection_limit,
            'temp_file_limit_kb', t.temp_file_limit_kb),
        'created_at', t.created_at,
        'updated_at', t.updated_at,
        'supabase', (
            SELECT jsonb_build_object(
                'supabase_project_id', c.supabase_project_id,
                'supabase_url', c.supabase_url,
                'anon_key', '********',
                'service_key', '********',
                'region', c.region,
                'plan', c.plan,
                'is_active', c.is_active)
            FROM messiah.tenant_supabase_configs c
            WHERE c.tenant_id = t.tenant_id
            ORDER BY c.created_at DESC
            LIMIT 1))
$$;
COMMENT ON FUNCTION messiah.tenant_json(messiah.tenants) IS
  'The jsonb form of a tenant returned by messiah_* functions: catalog columns, "database", "server", "lifecycle", "supabase" (keys masked) or null. Never a secret or a conninfo.';

-- tenant_id, database_name, server_id and creating_xid identify the tenant's database:
-- changing them would point the catalog at another database, so they are immutable, except
-- server_id and creating_xid in the cutover of messiah_move_tenant, which marks its
-- transaction with messiah_internal.moving = the tenant's id.
CREATE FUNCTION messiah.tenants_guard() RETURNS trigger
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
CREATE TRIGGER tenants_guard BEFORE UPDATE ON messiah.tenants
    FOR EACH ROW EXECUTE FUNCTION messiah.tenants_guard();

-- The catalog copy kept in a tenant database (DESIGN.md decisions 5 and 10), as seen by the
-- calling transaction: the versioned field definitions (all of them, with every column, so
-- an orphan can be adopted back) and the tenant's own row without secrets.
CREATE FUNCTION messiah.snapshot_json(p_tenant_id text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'version', t.snapshot_version,
        'policy', coalesce(t.settings ->> 'unknown_custom_fields', 'reject'),
        'fields', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'entity_table', d.entity_table, 'field_name', d.field_name,
                       'field_type', d.field_type, 'display_name', d.display_name,
                       'description', d.description,
                       'is_required', coalesce(d.is_required, false),
                       'is_searchable', coalesce(d.is_searchable, false),
                       'is_filterable', coalesce(d.is_filterable, false),
                       'is_sortable', coalesce(d.is_sortable, false),
                       'default_value', d.default_value,
                       'validation_rules', coalesce(d.validation_rules, '{}'),
                       'ui_config', coalesce(d.ui_config, '{}'),
                       'is_active', coalesce(d.is_active, false))
                   ORDER BY d.entity_table, d.field_name)
            FROM messiah.extension_field_definitions d
            WHERE d.tenant_id = t.tenant_id), '[]'::jsonb),
        'tenant', jsonb_build_object(
            'tenant_id', t.tenant_id, 'name', t.name, 'slug', t.slug, 'status', t.status,
            'contact_email', t.contact_email, 'contact_name', t.contact_name,
            'settings', t.settings, 'created_at', t.created_at))
    FROM messiah.tenants t WHERE t.tenant_id = p_tenant_id
$$;
COMMENT ON FUNCTION messiah.snapshot_json(text) IS
  'Catalog copy {"version","policy","fields":[...],"tenant":{...}} of a tenant, as installed in its database.';
