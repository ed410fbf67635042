-- messiah admin catalog (the original design's tables, ../shared/SEED.md "Admin catalog"),
-- plus what provisioning, servers, ownership and the outbox need. Loaded first by
-- extension_sql_file! (src/lib.rs).

-- The engine reads jsonb keys and text as UTF-8: the admin database must be UTF8 (tenant
-- databases and templates are always created UTF8).
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'messiah needs a UTF8 database; this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0, then CREATE EXTENSION messiah there.';
    END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS messiah;
REVOKE ALL ON SCHEMA messiah FROM PUBLIC;

CREATE FUNCTION messiah.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION messiah.touch_updated_at() IS
  'BEFORE UPDATE trigger: sets updated_at to now() (transaction start time), as the original design keeps updated_at.';

-- The identity of this admin installation (DESIGN.md decision 10): generated at CREATE
-- EXTENSION, named by every tenant database's marker. Deliberately not in
-- pg_extension_config_dump: a restored dump gets a new identity, so a copy never manages the
-- original's tenant databases until told to take over (messiah_takeover).
CREATE TABLE messiah.installation (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT installation_one_row CHECK (singleton),
    id         uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO messiah.installation DEFAULT VALUES;
COMMENT ON TABLE messiah.installation IS
  'Identity of this admin installation; not dumped, so a restored copy gets its own.';

CREATE FUNCTION messiah.installation_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT i.id FROM messiah.installation i
$$;
COMMENT ON FUNCTION messiah.installation_id() IS 'The id of this admin installation.';

-- Servers that hold tenant databases (DESIGN.md decision 9). `local` is this cluster,
-- registered at CREATE EXTENSION (sql/finalize.sql) and never dumped (a restore registers its
-- own cluster). conninfo is libpq keyword/value without a password: passwords come from the
-- password file of the server's OS user (libpq's passfile).
CREATE TABLE messiah.servers (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE
               CONSTRAINT servers_name_format
               CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]*$' AND pg_catalog.octet_length(name) OPERATOR(pg_catalog.<=) 63),
    conninfo   text NOT NULL,
    status     text NOT NULL DEFAULT 'active'
               CONSTRAINT servers_status CHECK (status IN ('active', 'draining', 'offline')),
    capacity   integer CONSTRAINT servers_capacity CHECK (capacity IS NULL OR capacity >= 0),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TRIGGER servers_touch BEFORE UPDATE ON messiah.servers
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();
COMMENT ON TABLE messiah.servers IS
  'Servers that hold tenant databases; local is the cluster of this admin database.';

CREATE TABLE messiah.tenants (
    id              uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
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
    -- a supabase tenant lives in a schema of the project's existing database (named by its
    -- server's conninfo): many may share it, and it is never messiah's to create or drop
    database_name   text NOT NULL
                    CONSTRAINT tenants_database_name_rule
                    CHECK (connector_type = 'supabase' OR database_name = 'tenant_' || tenant_id),
    -- the schema of the tenant's tables: public in a provisioned database; tenant_<id> in a
    -- Supabase project's database (a schema its REST API does not expose)
    schema_name     text NOT NULL DEFAULT 'public'
                    CONSTRAINT tenants_schema_name_rule
                    CHECK (schema_name = CASE connector_type WHEN 'supabase' THEN 'tenant_' || tenant_id
                                                             ELSE 'public' END),
    server_id       bigint NOT NULL REFERENCES messiah.servers (id),
    -- version of the catalog copy (field definitions, unknown-field policy, tenant row) in
    -- the tenant database; from a sequence, so it never goes back
    snapshot_version bigint NOT NULL DEFAULT 0,
    -- what is in flight (DESIGN.md decision 3): provisioning (inserted, database created at
    -- COMMIT), ready, dropping (drop committed, database dropped by the executor)
    lifecycle       text NOT NULL DEFAULT 'provisioning'
                    CONSTRAINT tenants_lifecycle CHECK (lifecycle IN ('provisioning', 'ready', 'dropping')),
    -- the installation that manages this tenant (a restored copy's rows name the original)
    installation_id uuid NOT NULL DEFAULT messiah.installation_id(),
    -- the (sub)transaction that inserted the row, as named in the database's marker
    creating_xid    xid8,
    -- how the tenant's database is reached (the original design's connector types):
    -- postgres = a database messiah provisioned on a registered server; supabase = a schema
    -- in an existing Supabase project's database (no messiah library there: messiah validates
    -- routed writes before sending them)
    connector_type  text NOT NULL DEFAULT 'postgres'
                    CONSTRAINT tenants_connector_type CHECK (connector_type IN ('postgres', 'supabase')),
    -- limits of the tenant's application role (NULL: the server's own setting)
    statement_timeout_ms integer DEFAULT 30000
                    CONSTRAINT tenants_statement_timeout CHECK (statement_timeout_ms > 0),
    connection_limit integer NOT NULL DEFAULT 20
                    CONSTRAINT tenants_connection_limit CHECK (connection_limit >= -1),
    temp_file_limit_kb bigint DEFAULT 1048576
                    CONSTRAINT tenants_temp_file_limit CHECK (temp_file_limit_kb >= -1),
    -- the application role's password is derived (never stored) from key credential_key_id
    -- of messiah.key_file and this version; a rotation bumps the version
    credential_version integer NOT NULL DEFAULT 1,
    credential_key_id text,
    -- the tenant's roles on its server: the application role (LOGIN) is named like its
    -- database; the owner role (NOLOGIN) owns the tenant's tables
    owner_role      text NOT NULL GENERATED ALWAYS AS ('owner_' || tenant_id) STORED,
    -- the highest tenant schema migration applied in its database, as the last
    -- messiah_migrate_tenants found it there (the database's own record is the truth)
    migration_version bigint NOT NULL DEFAULT 0,
    migrated_at     timestamptz,
    -- the messiah_tenant extension version in its database, as the last
    -- messiah_upgrade_tenants found it (NULL: not looked at yet)
    extension_version text
);
-- one provisioned tenant per database name (supabase tenants share their project's database)
CREATE UNIQUE INDEX tenants_database_name_key ON messiah.tenants (database_name)
    WHERE connector_type = 'postgres';
CREATE INDEX tenants_status_idx ON messiah.tenants (status);
CREATE INDEX tenants_slug_idx ON messiah.tenants (slug);
CREATE INDEX tenants_server_idx ON messiah.tenants (server_id);
COMMENT ON TABLE messiah.tenants IS
  'Tenant catalog (original design). One row per tenant; its database is database_name on server server_id.';
COMMENT ON COLUMN messiah.tenants.lifecycle IS
  'provisioning (database created at COMMIT) | ready | dropping (database dropped after COMMIT by the executor).';

CREATE TRIGGER tenants_touch BEFORE UPDATE ON messiah.tenants
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();

-- anon_key and service_key hold ciphertext (src/secrets): msk1:<key id>:<base64>. The CHECK
-- refuses clear text written directly.
CREATE TABLE messiah.tenant_supabase_configs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text REFERENCES messiah.tenants (tenant_id) ON DELETE CASCADE,
    supabase_project_id text NOT NULL,
    supabase_url        text NOT NULL,
    anon_key            text NOT NULL CONSTRAINT anon_key_sealed CHECK (anon_key ~ '^msk1:[0-9a-f]{16}:'),
    service_key         text NOT NULL CONSTRAINT service_key_sealed CHECK (service_key ~ '^msk1:[0-9a-f]{16}:'),
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
  'Supabase project of a tenant (original design). anon_key and service_key are encrypted (messiah.key_file); read them with messiah_get_secret().';

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

-- The outbox (DESIGN.md decision 3): remote actions written by the transaction that decides
-- them, so they commit or abort with the catalog change, and carried out after COMMIT by the
-- executor (a background worker per admin database, or the next messiah call). Not dumped:
-- a restored copy must not carry out the original's pending actions.
CREATE TABLE messiah.outbox (
    id              bigserial PRIMARY KEY,
    action          text NOT NULL CONSTRAINT outbox_action
                    CHECK (action IN ('drop_database', 'push_snapshot', 'claim_database', 'apply_roles')),
    tenant_id       text NOT NULL,
    server_id       bigint NOT NULL,
    database_name   text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    last_error      text
);
CREATE INDEX outbox_due_idx ON messiah.outbox (next_attempt_at);
CREATE INDEX outbox_tenant_idx ON messiah.outbox (tenant_id, action);
COMMENT ON TABLE messiah.outbox IS
  'Remote actions committed with a catalog change and carried out after COMMIT (drop_database, push_snapshot, claim_database, apply_roles).';

-- Databases kept by messiah_drop_tenant(keep_database => true): no longer tenants, but
-- not orphans either, so messiah_reconcile(repair => true) leaves them alone.
CREATE TABLE messiah.detached_databases (
    database_name   text PRIMARY KEY,
    tenant_id       text NOT NULL,
    detached_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE messiah.detached_databases IS
  'Tenant databases detached from the catalog by messiah_drop_tenant(keep_database => true).';

-- Roles given the management API by messiah_grant_admin(); every extension version's script
-- re-grants its functions to them (src/security/grants.rs).
CREATE TABLE messiah.admin_roles (
    role_name  name PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE messiah.admin_roles IS
  'Roles granted the management functions with messiah_grant_admin().';

-- Tenant schema migrations (messiah_add_migration): applied in ascending version order to
-- every tenant database by messiah_migrate_tenants, and to each server's template, so new
-- tenants start with all of them (src/fleet/migrations.rs).
CREATE TABLE messiah.migrations (
    version     bigint PRIMARY KEY CONSTRAINT migrations_version CHECK (version > 0),
    sql         text NOT NULL,
    checksum    text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE messiah.migrations IS
  'Tenant schema migrations (version, SQL, sha256 checksum); immutable once applied in any tenant database.';

-- Versions of catalog copies (tenants.snapshot_version). A sequence, because its values
-- are never reused after a rollback.
CREATE SEQUENCE messiah.snapshot_version_seq;

REVOKE ALL ON ALL TABLES IN SCHEMA messiah FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA messiah FROM PUBLIC;
