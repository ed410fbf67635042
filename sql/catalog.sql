-- messiah admin catalog (the original design's tables, ../shared/SEED.md "Admin catalog"),
-- plus the columns and tables provisioning needs. Loaded by extension_sql_file! (src/lib.rs).

CREATE SCHEMA IF NOT EXISTS messiah;
REVOKE ALL ON SCHEMA messiah FROM PUBLIC;

CREATE FUNCTION messiah.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION messiah.touch_updated_at() IS
  'BEFORE UPDATE trigger: sets updated_at to now() (transaction start time), as the original design keeps updated_at.';

CREATE TABLE messiah.tenants (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text NOT NULL UNIQUE
                    -- DESIGN.md decision 4: the same rule messiah_create_tenant checks (22023),
                    -- kept here too so a direct INSERT cannot bypass it.
                    CONSTRAINT tenants_tenant_id_format
                    CHECK (tenant_id ~ '^[a-z][a-z0-9_]*$' AND octet_length(tenant_id) <= 56),
    name            text NOT NULL CONSTRAINT tenants_name_not_blank CHECK (btrim(name) <> ''),
    slug            text NOT NULL UNIQUE
                    CONSTRAINT tenants_slug_format
                    CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND octet_length(slug) <= 63),
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'inactive', 'suspended')),
    contact_email   text,
    contact_name    text,
    settings        jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT tenants_settings_object CHECK (jsonb_typeof(settings) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- added by messiah: where the tenant's database lives
    database_name   text NOT NULL UNIQUE
                    CONSTRAINT tenants_database_name_rule CHECK (database_name = 'tenant_' || tenant_id),
    server_conninfo text NOT NULL,
    -- bumped on every change of the tenant's field definitions or unknown-field policy;
    -- the version of the definition snapshot copied into the tenant database
    fields_version  bigint NOT NULL DEFAULT 0
);
CREATE INDEX tenants_status_idx ON messiah.tenants (status);
CREATE INDEX tenants_slug_idx ON messiah.tenants (slug);
COMMENT ON TABLE messiah.tenants IS
  'Tenant catalog (original design). One row per tenant; its database is database_name on the server reached by server_conninfo.';
COMMENT ON COLUMN messiah.tenants.server_conninfo IS
  'libpq key/value conninfo of the server holding the tenant database, without dbname (GUC messiah.server_conninfo at creation time). May hold a password: never returned by messiah_* functions.';

CREATE TRIGGER tenants_touch BEFORE UPDATE ON messiah.tenants
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();

CREATE TABLE messiah.tenant_supabase_configs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text REFERENCES messiah.tenants (tenant_id) ON DELETE CASCADE,
    supabase_project_id text NOT NULL,
    supabase_url        text NOT NULL,
    anon_key            text NOT NULL,
    service_key         text NOT NULL,
    region              text DEFAULT 'us-east-1',
    plan                text DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'team', 'enterprise')),
    is_active           boolean DEFAULT true,
    created_at          timestamptz DEFAULT now(),
    updated_at          timestamptz DEFAULT now()
);
CREATE INDEX tenant_supabase_configs_tenant_id_idx ON messiah.tenant_supabase_configs (tenant_id);
CREATE TRIGGER tenant_supabase_configs_touch BEFORE UPDATE ON messiah.tenant_supabase_configs
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();
COMMENT ON TABLE messiah.tenant_supabase_configs IS
  'Supabase project of a tenant (original design). service_key is a secret: messiah_* functions return it masked.';

CREATE TABLE messiah.extension_field_definitions (
    id               bigserial PRIMARY KEY,
    tenant_id        text REFERENCES messiah.tenants (tenant_id) ON DELETE CASCADE,
    entity_table     text NOT NULL,
    field_name       text NOT NULL,
    field_type       text CHECK (field_type IN ('text', 'number', 'boolean', 'date', 'json', 'select')),
    display_name     text NOT NULL,
    description      text,
    is_required      boolean DEFAULT false,
    is_searchable    boolean DEFAULT true,
    is_filterable    boolean DEFAULT true,
    is_sortable      boolean DEFAULT false,
    default_value    text,
    validation_rules jsonb DEFAULT '{}',
    ui_config        jsonb DEFAULT '{}',
    is_active        boolean DEFAULT true,
    created_at       timestamptz DEFAULT now(),
    updated_at       timestamptz DEFAULT now(),
    UNIQUE (tenant_id, entity_table, field_name)
);
CREATE INDEX extension_field_definitions_tenant_entity_idx
    ON messiah.extension_field_definitions (tenant_id, entity_table);
CREATE TRIGGER extension_field_definitions_touch BEFORE UPDATE ON messiah.extension_field_definitions
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();
COMMENT ON TABLE messiah.extension_field_definitions IS
  'Typed custom-field definitions per tenant and entity table (original design). Enforced inside each tenant database from a copy (DESIGN.md decision 5).';

-- Provisioning journal: one row per CREATE DATABASE issued for a tenant, written over a
-- separate connection (so it survives the creating transaction's abort) before the
-- database is created. A row whose creating transaction aborted, and whose database has
-- no committed catalog row, marks a database to drop (DESIGN.md decision 3).
CREATE TABLE messiah.provisioning_journal (
    database_name   text NOT NULL,
    server_conninfo text NOT NULL,
    creating_xid    xid8 NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (database_name, creating_xid)
);
COMMENT ON TABLE messiah.provisioning_journal IS
  'Databases being created by a transaction that has not yet committed; swept by messiah.sweep() when that transaction aborted.';

-- Databases kept by messiah_drop_tenant(keep_database => true): no longer tenants, but
-- not orphans either, so messiah_reconcile(repair => true) leaves them alone.
CREATE TABLE messiah.detached_databases (
    database_name   text PRIMARY KEY,
    tenant_id       text NOT NULL,
    detached_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE messiah.detached_databases IS
  'Tenant databases detached from the catalog by messiah_drop_tenant(keep_database => true).';

-- Versions of definition snapshots (tenants.fields_version). A sequence, because its values
-- are never reused after a rollback: see src/fields_api.rs bump_version.
CREATE SEQUENCE messiah.fields_version_seq;

REVOKE ALL ON ALL TABLES IN SCHEMA messiah FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA messiah FROM PUBLIC;
