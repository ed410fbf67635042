-- Runs last in the extension script: objects that need the Rust functions, privileges and
-- comments.

-- Provisioning at COMMIT (DESIGN.md decision 3, mechanism (b)): a deferred constraint trigger
-- creates the database of an inserted tenant and drops the database of a deleted one, after
-- every statement of the transaction and only if it is about to commit.
CREATE FUNCTION messiah.tenants_provision() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- created and dropped in the same transaction: nothing to create
        IF EXISTS (SELECT 1 FROM messiah.tenants t WHERE t.id = NEW.id) THEN
            PERFORM messiah.create_tenant_database(NEW.tenant_id, NEW.database_name, NEW.server_conninfo);
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM messiah.detached_databases d WHERE d.database_name = OLD.database_name)
          AND NOT EXISTS (SELECT 1 FROM messiah.tenants t WHERE t.database_name = OLD.database_name) THEN
        PERFORM messiah.drop_tenant_database(OLD.database_name, OLD.server_conninfo);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER tenants_provision AFTER INSERT OR DELETE ON messiah.tenants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION messiah.tenants_provision();

-- pg_dump of the admin database must carry the catalog (extension member tables are
-- otherwise skipped).
SELECT pg_catalog.pg_extension_config_dump('messiah.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.tenant_supabase_configs', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.extension_field_definitions', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.extension_field_definitions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.detached_databases', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.fields_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.field_snapshot', '');

COMMENT ON FUNCTION @extschema@.messiah_create_tenant(text, text, text, text, text, jsonb, jsonb) IS
$$Creates a tenant. Args: tenant_id text (^[a-z][a-z0-9_]*$, <= 56 bytes), name text, slug text (a-z0-9 groups joined by '-', <= 63 bytes), contact_email text, contact_name text, settings jsonb object (unknown_custom_fields: reject|strip|allow), config jsonb (Supabase: supabase_project_id, supabase_url, anon_key, service_key, region, plan, is_active). Writes the catalog row now and creates database tenant_<tenant_id> from the template at COMMIT; a rollback leaves nothing. Returns the tenant as jsonb ("database" = database name). Errors: 22023 invalid argument, 22004 null, 23505 id/slug taken, 42P04 database exists (left untouched). Source: original design "Create tenant"; DESIGN.md decisions 3-4.$$;
COMMENT ON FUNCTION @extschema@.messiah_get_tenant(text) IS
$$Returns the tenant as jsonb (no secrets; Supabase service_key masked). Errors: 22023 invalid tenant_id, 42704 no such tenant.$$;
COMMENT ON FUNCTION @extschema@.messiah_list_tenants(text, bigint, bigint) IS
$$Tenants as jsonb rows ordered by tenant_id. Args: status text (active|inactive|suspended or null for all), offset bigint >= 0, limit bigint 1..1000 (default 100). Errors: 22023.$$;
COMMENT ON FUNCTION @extschema@.messiah_update_tenant(text, jsonb) IS
$$Updates name, slug, contact_email, contact_name and settings (merged by JSON Merge Patch, RFC 7396) from a jsonb patch; returns the tenant. Errors: 22023 unknown key or bad value, 23505 slug taken, 42704 no such tenant.$$;
COMMENT ON FUNCTION @extschema@.messiah_set_tenant_status(text, text) IS
$$Sets status to active, inactive or suspended (original design CHECK); returns the tenant. Errors: 22023 unknown status, 42704 no such tenant.$$;
COMMENT ON FUNCTION @extschema@.messiah_drop_tenant(text, boolean) IS
$$Deletes the tenant's catalog rows now and drops its database at COMMIT WITH (FORCE) (connected sessions are disconnected); keep_database => true keeps the database, recorded in messiah.detached_databases. Returns {"tenant_id","database","database_kept"}. Errors: 22023, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_reconcile(boolean) IS
$$Lists (repair => false) or fixes (repair => true) drift: orphan_database (named tenant_<id>, no catalog row; repair drops it when messiah created it for this admin database), missing_database (catalog row without database; repair recreates it empty), aborted_creation (swept from the provisioning journal), stale_template (a template database of an earlier build; repair drops it). Returns rows (kind, tenant_id, database_name, action).$$;
COMMENT ON FUNCTION messiah.sweep() IS
$$Drops tenant databases whose creating transaction aborted inside COMMIT (provisioning journal) and returns their names. Run by the sweeper background worker, messiah_create_tenant and messiah_reconcile(repair => true).$$;

-- Definition changes bump tenants.fields_version; at COMMIT the new snapshot is pushed into
-- the tenant database (DESIGN.md decision 5). Only the last bump of a transaction pushes.
CREATE FUNCTION messiah.tenants_push_fields() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM messiah.tenants t WHERE t.id = NEW.id AND t.fields_version = NEW.fields_version) THEN
        PERFORM messiah.push_field_snapshot(NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER tenants_push_fields AFTER UPDATE OF fields_version ON messiah.tenants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.fields_version IS DISTINCT FROM OLD.fields_version)
    EXECUTE FUNCTION messiah.tenants_push_fields();

COMMENT ON FUNCTION @extschema@.messiah_define_field(text, text, text, text, text, text, boolean, boolean, boolean, boolean, text, jsonb, jsonb) IS
$$Creates or updates (and reactivates) a custom-field definition; returns it as jsonb. Args: tenant_id, entity_table (clients|projects|activities), field_name (^[a-z][a-z0-9_]*$, <= 40 bytes, not a base column), field_type (text|number|boolean|date|json|select), display_name, description, is_required, is_searchable, is_filterable/is_sortable (keep an expression index on custom_fields -> field_name in the tenant database), default_value (text parsed as the type, must pass the rules), validation_rules (jsonb object; text: minLength, maxLength in code points, pattern (regex crate, unanchored), format email|uri|uuid; number: min, max, integer; date: min, max; json: schema (JSON Schema); select: options, multiple), ui_config (jsonb object). Enforced in the tenant database from the COMMIT on. Errors: 22023 naming the field, 22004 null, 42704 no such tenant. Source: original design extension_field_definitions; DESIGN.md decisions 5-6.$$;
COMMENT ON FUNCTION @extschema@.messiah_drop_field(text, text, text) IS
$$Deactivates a field definition (is_active = false; its index in the tenant database is dropped); stored values stay, new writes treat the key as unknown. Returns the definition. Errors: 22023, 22004, 42704 no such tenant or field.$$;
COMMENT ON FUNCTION @extschema@.messiah_list_fields(text, text) IS
$$A tenant's field definitions (active and inactive) as jsonb rows ordered by entity_table, field_name; entity_table null for all. Errors: 22023, 22004, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_validate_custom_fields(text, text, jsonb) IS
$$Validates a custom_fields document against the tenant's active definitions of entity_table as an INSERT would; returns a jsonb array of {"field","code","message"} (empty: valid). Codes: not_object, required, type, min_length, max_length, pattern, format, minimum, maximum, integer, date, schema, option, duplicate, unknown_field. Errors: 22023, 22004, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_apply_fields(text, text, jsonb) IS
$$The original design's applyFields: moves the keys of a flat record that are defined fields into custom_fields, keeps base columns, applies the unknown-field policy and defaults, validates; returns the record ready to insert. Errors: 23514 with every failing field in DETAIL, 22023, 22004, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_check_existing(text, text) IS
$$Checks the rows of the tenant's entity_table against the definitions as the calling transaction sees them (so a tightening can be planned inside a transaction that is then rolled back). Returns {"entity_table","checked","violations","sample":[{"id","errors"}]} (at most 10 samples). Errors: 22023, 22004, 42704, 08xxx naming the tenant database.$$;
COMMENT ON FUNCTION messiah.create_tenant_database(text, text, text) IS
$$Internal (deferred trigger at COMMIT, reconcile): journals, then CREATE DATABASE from the template and marks it with a comment naming its tenant and admin database. 42P04 if it exists.$$;
COMMENT ON FUNCTION messiah.drop_tenant_database(text, text) IS
$$Internal (deferred trigger at COMMIT): drops a deleted tenant's database WITH (FORCE) if it carries this admin database's marker; returns whether it dropped.$$;
COMMENT ON FUNCTION messiah.push_field_snapshot(text) IS
$$Internal (deferred trigger at COMMIT): installs the tenant's current definition snapshot in its database over dblink; a failure fails the COMMIT.$$;
COMMENT ON FUNCTION messiah.install_field_snapshot(text, bigint, jsonb) IS
$$Tenant side: replaces this database's copy of the definitions with a newer version (older or equal versions are ignored, returns false), keeps the field indexes, and invalidates every session's compiled copy at COMMIT. Errors: 22023 if the snapshot does not compile.$$;
COMMENT ON FUNCTION messiah.check_rows(text, jsonb, integer) IS
$$Tenant side: checks every row of entity_table against a definition snapshot; returns {"entity_table","checked","violations","sample"} with at most sample_size samples.$$;
COMMENT ON FUNCTION messiah.validate_local(text, jsonb) IS
$$Tenant side: validates custom_fields of entity_table against this database's installed copy (INSERT semantics); returns the jsonb array of errors.$$;
COMMENT ON FUNCTION messiah.tenants_provision() IS
$$Deferred constraint trigger on messiah.tenants: creates an inserted tenant's database and drops a deleted tenant's database at COMMIT (DESIGN.md decision 3).$$;
COMMENT ON FUNCTION messiah.tenants_push_fields() IS
$$Deferred constraint trigger on messiah.tenants.fields_version: pushes the definition snapshot into the tenant database at COMMIT (DESIGN.md decision 5).$$;

-- Last, so that it covers every function above. DESIGN.md decision 8: management functions are not executable by PUBLIC. Grant them to the
-- roles that administer tenants (e.g. GRANT EXECUTE ON FUNCTION messiah_create_tenant TO
-- service_role).
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
             AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah'
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

