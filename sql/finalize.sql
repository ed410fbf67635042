-- Runs last in the extension script: objects that need the Rust functions, privileges and
-- comments.

-- Provisioning at COMMIT (DESIGN.md decision 3): a deferred constraint trigger creates the
-- database of a tenant inserted by messiah_create_tenant, after every statement of the
-- transaction and only if it is about to commit. Rows loaded by a restore arrive as 'ready'
-- and create nothing.
CREATE FUNCTION messiah.tenants_provision() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- created and dropped in the same transaction: nothing to create
    IF EXISTS (SELECT 1 FROM messiah.tenants t
               WHERE t.id OPERATOR(pg_catalog.=) NEW.id
                 AND t.lifecycle OPERATOR(pg_catalog.=) 'provisioning') THEN
        PERFORM messiah.create_tenant_database(NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER tenants_provision AFTER INSERT ON messiah.tenants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.lifecycle = 'provisioning')
    EXECUTE FUNCTION messiah.tenants_provision();

-- This cluster, as the server `local` (never dumped: a restore registers its own cluster).
SELECT messiah.register_local_server();

-- pg_dump of the admin database carries the catalog (extension member tables are otherwise
-- skipped). Not dumped on purpose: messiah.installation (identity), messiah.outbox (pending
-- remote actions of the original), the local server row.
SELECT pg_catalog.pg_extension_config_dump('messiah.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.tenant_supabase_configs', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.extension_field_definitions', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.extension_field_definitions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.detached_databases', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.admin_roles', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.migrations', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.snapshot_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('messiah.servers', 'WHERE name <> ''local''');
SELECT pg_catalog.pg_extension_config_dump('messiah.servers_id_seq', '');

-- The per-backend catalog cache (src/cache/catalog.rs) is emptied in every session when a
-- statement that wrote one of these tables commits: a relcache invalidation, sent by
-- Postgres at COMMIT and never at abort.
CREATE FUNCTION messiah.catalog_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'messiah_catalog_changed';
COMMENT ON FUNCTION messiah.catalog_changed() IS
$$Statement-level trigger on the catalog tables the per-backend catalog cache reads: registers a relcache invalidation of messiah.tenants, which Postgres delivers to every session when the transaction commits (never when it aborts); each session then empties its cache. src/cache/catalog.rs.$$;
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON messiah.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION messiah.catalog_changed();
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON messiah.servers
    FOR EACH STATEMENT EXECUTE FUNCTION messiah.catalog_changed();
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON messiah.installation
    FOR EACH STATEMENT EXECUTE FUNCTION messiah.catalog_changed();
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON messiah.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION messiah.catalog_changed();
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON messiah.extension_field_definitions
    FOR EACH STATEMENT EXECUTE FUNCTION messiah.catalog_changed();

-- DROP EXTENSION messiah (or DROP SCHEMA messiah) while tenants exist is refused
-- (src/security/ddl_guard.rs): it would orphan every tenant database.
CREATE FUNCTION messiah.ddl_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'messiah_ddl_guard';
CREATE EVENT TRIGGER messiah_ddl_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION messiah.ddl_guard();
COMMENT ON FUNCTION messiah.ddl_guard() IS
$$Event trigger (ddl_command_start): refuses DROP EXTENSION messiah and DROP SCHEMA messiah while tenants exist (2BP01), since the tenant databases would be orphaned. DESIGN.md decision 10.$$;

-- Secrets never reach the server log (DESIGN.md decision 8): an error raised inside these
-- functions does not log the calling statement, which may carry a secret as a literal.
-- log_min_error_statement is superuser-only, so only a superuser-owned function can carry it.
ALTER FUNCTION @extschema@.messiah_create_tenant(text, text, text, text, text, jsonb, jsonb, text, text)
    SET log_min_error_statement = panic;
ALTER FUNCTION @extschema@.messiah_set_supabase_config(text, jsonb)
    SET log_min_error_statement = panic;

-- Every exposed function and internal function carries a COMMENT: argument shapes, units,
-- errors with SQLSTATEs and the source of the behaviour (messiah_openapi() publishes them).
COMMENT ON FUNCTION @extschema@.messiah_create_tenant(text, text, text, text, text, jsonb, jsonb, text, text) IS
$$Creates a tenant. Args: tenant_id text (^[a-z][a-z0-9_]*$, <= 56 bytes), name text (<= 200 code points, no control characters), slug text (a-z0-9 groups joined by '-', <= 63 bytes), contact_email text (WHATWG e-mail, <= 254 bytes), contact_name text (<= 200 code points), settings jsonb object (<= 64 KiB; unknown_custom_fields: reject|strip|allow), config jsonb (Supabase: supabase_project_id, supabase_url, anon_key, service_key (encrypted at rest), region, plan, is_active; <= 4 KiB each), server text (a registered server; null: the active server with the fewest tenants under its capacity), connector_type text (postgres, the default: database tenant_<tenant_id> provisioned on the server; supabase: schema tenant_<tenant_id> in the existing database of a Supabase project registered as server (its conninfo dbname), needs server and config, validated by messiah before routed writes are sent; anything else 0A000 before anything is written). Writes the catalog row now and, after COMMIT, the tenant's application and owner roles (and a supabase tenant's schema and tables) and creates database tenant_<tenant_id> from the template at COMMIT; a rollback or a failed COMMIT leaves nothing. Returns the tenant as jsonb. Errors: 22023 invalid argument, 54000 too large, 22004 null, 23505 id/slug taken, 55006 still being dropped, 42P04 database exists (left untouched), 42704/55000/53400 server, F0000 no key file for a config. Errors raised inside never log the calling statement (log_min_error_statement). Source: original design "Create tenant"; DESIGN.md decisions 3, 4, 8.$$;
COMMENT ON FUNCTION @extschema@.messiah_get_tenant(text) IS
$$Returns the tenant as jsonb (no secrets; Supabase keys masked). Errors: 22023 invalid tenant_id, 42704 no such tenant (or being dropped).$$;
COMMENT ON FUNCTION @extschema@.messiah_list_tenants(text, bigint, bigint) IS
$$Tenants as jsonb rows ordered by tenant_id, those being dropped excluded. Args: status text (active|inactive|suspended or null for all), offset bigint >= 0, limit bigint 1..1000 (default 100). Errors: 22023.$$;
COMMENT ON FUNCTION @extschema@.messiah_update_tenant(text, jsonb) IS
$$Updates name, slug, contact_email, contact_name and settings (merged by JSON Merge Patch, RFC 7396) from a jsonb patch (<= 64 KiB); the tenant database's copy of the row follows after COMMIT. Returns the tenant. Errors: 22023 unknown key or bad value, 54000 too large, 23505 slug taken, 42704 no such tenant, 55000 managed by another installation.$$;
COMMENT ON FUNCTION @extschema@.messiah_set_tenant_status(text, text) IS
$$Sets status to active, inactive or suspended (original design CHECK); returns the tenant. Not active: routed calls are refused at once (55000), and after COMMIT the tenant's application role loses LOGIN and its sessions are ended (messiah's maintenance connections still work); active restores access. Errors: 22023 unknown status, 42704 no such tenant, 55000 managed by another installation.$$;
COMMENT ON FUNCTION @extschema@.messiah_set_tenant_limits(text, bigint, bigint, bigint) IS
$$Sets the limits of the tenant's application role (which routed calls log in as); null keeps a value. Args: statement_timeout_ms (ms, 0 = none), connection_limit (sessions, -1 = none), temp_file_limit_kb (kB, -1 = none). Applied to the role after COMMIT. Returns the tenant. Errors: 22023 out of range, 42704 no such tenant, 55000 managed by another installation.$$;
COMMENT ON FUNCTION @extschema@.messiah_rotate_tenant_credentials(text) IS
$$Derives a new password for the tenant's application role from the current key of messiah.key_file (HMAC-SHA256; never stored) and sets it (as a SCRAM verifier) after COMMIT. Returns the tenant. Errors: F0000 no usable key file, 42704 no such tenant, 55000 managed by another installation.$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_query(text, text, jsonb, interval) IS
$$Runs one statement in the tenant's database as its application role and returns one jsonb object per row (booleans, numbers (exact), json/jsonb as JSON; other types as text). Args: tenant_id, query text, params jsonb array bound to $1..$n (scalars untyped so the server infers them, objects/arrays as jsonb, null as NULL), max_age interval (default NULL: not cached). Each call is its own transaction in the tenant database (autocommit) and the session is reset after it (DISCARD ALL); a supabase tenant's statements are read-only (writes: messiah_tenant_insert/_update/_delete). With max_age, a result of the same tenant, statement and parameters at most max_age old is served from the routed result cache shared by the cluster's sessions (messiah.result_cache_size, least recently used out first); otherwise the statement runs in a READ ONLY transaction (a write is 25006) and its result is cached. Routed writes (insert, update, delete, a query without max_age), status changes, moves and drops of the tenant invalidate its entries; writes made directly in the tenant's database do NOT (max_age bounds the staleness then). The original design cached for 600 s. Without messiah preloaded nothing is cached (NOTICE). Errors: 55000 tenant not active/ready or its server offline, 22004 params null, 22023 params not an array or max_age negative, 54000 more than 65535 params, or over messiah.route_max_rows / route_max_bytes (remote statement cancelled; DETAIL says when it had already completed and committed), 57014 the tenant's statement timeout, 25006 a write with max_age, and the server's own (42P02, 42P18, 42501 ...) with a CONTEXT naming tenant and server. Source: original design "Connectors" (query) and "Cache".$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_insert(text, text, jsonb) IS
$$Inserts one row (data: flat jsonb object) into <table_name> of the tenant's schema (public; tenant_<id> for a supabase tenant) as its application role; for entity tables the defined custom fields at the top level move into custom_fields and are validated first (applyFields); returns the inserted row. Errors: 23514 field violations, 22023, 42P01 unknown table, 42703 unknown column, 55000/54000/57014 as messiah_tenant_query. Source: original design "Connectors" (insert).$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_update(text, text, jsonb, jsonb) IS
$$Updates the rows of <table_name> of the tenant's schema matching match (jsonb object: column = value, AND; a null matches nothing) with data as the tenant's application role: base columns set, custom_fields (and top-level defined fields) merged by JSON Merge Patch (RFC 7396), validated by the tenant's trigger (a supabase tenant, which has none: the matching rows are locked, merged and validated by messiah, then written, in one remote transaction); returns the updated rows. Errors: 22023 empty match or nothing to update, 23514, 42P01, 42703, 55000/54000/57014. Source: original design "Connectors" (update).$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_delete(text, text, jsonb) IS
$$Deletes the rows of <table_name> of the tenant's schema matching match (as messiah_tenant_update) as the tenant's application role; returns the count. Errors: 22023 empty match, 42P01, 42703, 55000/57014. Source: original design "Connectors" (delete).$$;
COMMENT ON FUNCTION @extschema@.messiah_health() IS
$$Checks the admin database, every registered server and every active tenant; one row each: name, kind (admin|server|tenant), status (healthy|unhealthy|unknown = not checked: suspended/inactive tenant, offline server, no key file), message, latency_ms (the check, connect included), checked_at. A tenant is healthy when its application role logs in and (provisioned databases) reads its catalog copy's version equal to the catalog's (one connection per tenant). Concurrent, at most messiah.health_concurrency connections at once, each bounded by messiah.health_timeout ms; the tenants of a server that does not answer are unhealthy without a connection each. Unreachable things are rows, not errors. Source: original design "Health".$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_health(text) IS
$$messiah_health() for one tenant: rows for the admin database, the tenant's server and the tenant. Errors: 22023 invalid tenant_id, 42704 no such tenant.$$;
COMMENT ON FUNCTION @extschema@.messiah_metrics(text) IS
$$The fleet's metrics, one row per sample: metric (Prometheus name in base units: seconds, bytes; counters end in _total), labels (jsonb object), value (double precision), help, type (counter|gauge). metric_prefix (default NULL: all) returns, and gathers, only the families whose name starts with it. Families: messiah_tenants{status,server} (catalog); messiah_provisionings_started_total, _failed_total, messiah_provisioning_duration_seconds_sum/_count; messiah_routed_calls_total{tenant}, messiah_routed_errors_total{tenant}, messiah_routed_duration_seconds_sum/_count{tenant}; messiah_cache_hits_total, _misses_total, _evictions_total, messiah_cache_entries, messiah_cache_bytes, messiah_cache_capacity_bytes; messiah_sweeper_runs_total, messiah_sweeper_last_run_timestamp_seconds, messiah_sweeper_databases_swept_total (shared memory of this cluster, since it started; per admin database except the cache, which is cluster-wide); messiah_field_validations_total{tenant,table}, messiah_field_rejections_total{tenant,table} (counted by the trigger on each tenant's server, gathered from every registered server not offline over one maintenance connection each; messiah_server_counters_up{server} says whether that worked); messiah_counter_overflow_total. Without messiah in shared_preload_libraries only messiah_tenants is returned (NOTICE). Never raises for an unreachable server (NOTICE). Source: original design "next steps: metrics"; Prometheus naming practices.$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_stats() IS
$$One row per ready tenant: tenant_id, server, status, routed_calls, routed_errors, routed_seconds (summed duration, s), rows_validated, rows_rejected (by the tenant's trigger on its server since that server started), database_size_bytes (pg_database_size; NULL for a supabase tenant or an unreadable server). The citus_stat_tenants idea, per database. Counters are 0 without messiah preloaded (NOTICE).$$;
COMMENT ON FUNCTION @extschema@.messiah_cache_clear(text) IS
$$Empties the routed result cache for one tenant of this admin database, or for all its tenants when tenant_id is NULL (default); returns the entries removed. Other admin databases' entries are untouched. 0 without messiah preloaded. Errors: 22023 invalid tenant_id.$$;
COMMENT ON FUNCTION @extschema@.messiah_add_migration(bigint, text, text) IS
$$Registers tenant schema migration version (bigint >= 1): sql (<= 1 MiB; statements a transaction may hold, so no CREATE INDEX CONCURRENTLY), description. Applied in ascending version order to every tenant database by messiah_migrate_tenants, as the tenant's owner role inside a security-restricted operation (it can change the tenant's schema and nothing else; what it creates never runs as a superuser: messiah_move_tenant refuses triggers enabled ALWAYS or REPLICA and constraints, indexes and defaults calling the tenant's own functions, which PG15's replication would run as one), and to each server's template (new tenants start with every migration). The same SQL again changes nothing. Returns {"version","checksum" (sha256 of sql),"description"}. Errors: 22004, 22023 version < 1 or empty sql, 54000 sql too large, 55000 the version is applied in a tenant database with other SQL (immutable: register a new version), or is not above the highest version applied somewhere (as the catalog last recorded it; messiah_migrate_tenants reports a database whose applied SQL differs).$$;
COMMENT ON FUNCTION @extschema@.messiah_migrate_tenants(integer, bigint) IS
$$Applies the pending tenant schema migrations (up to target_version; default all) to every ready tenant database, at most concurrency (default 4) at once over asynchronous connections: each database is asked its version (nothing is read from the catalog), then gets its pending migrations, each in its own transaction, under lock_timeout = messiah.migration_lock_timeout (a migration never queues the tenant's writers for long: it fails and a re-run retries it). Rebuilds the templates. One row per tenant: tenant_id, from_version, to_version (read from its database), status ok|failed|skipped (supabase tenant, offline server, another installation's), message, duration_ms. A failure stops that tenant at its previous version and not the others; a re-run does only what is left. A database that applied a version with other SQL than the catalog's, or a version the catalog does not have, is failed with the reason (verified in the database: its checksum). Applied migrations stay committed in the tenant databases whatever this call's transaction does. Errors: 22004, 22023 concurrency < 1 or target_version < 1, 55P03 another run in progress.$$;
COMMENT ON FUNCTION @extschema@.messiah_upgrade_tenants(integer) IS
$$Brings every ready tenant database's messiah_tenant extension to this admin database's version (ALTER EXTENSION messiah_tenant UPDATE TO <version>, with the upgrade scripts the package ships; run it after ALTER EXTENSION messiah UPDATE here), at most concurrency (default 4) databases at once over asynchronous connections, under messiah.migration_lock_timeout; re-applies each upgraded tenant's roles and grants after COMMIT; records each tenant's version in the catalog (tenants.extension_version); rebuilds the templates. One row per tenant: tenant_id, from_version, to_version (read from its database), status ok|failed|skipped, message, duration_ms. A failure is recorded and the others continue; a re-run does only what is left; the tenants keep working meanwhile (no lock on their tables). Errors: 22004, 22023 concurrency < 1, 55P03 another run in progress.$$;
COMMENT ON FUNCTION @extschema@.messiah_move_tenant(text, text, boolean) IS
$$Moves a tenant's database to server to_server (NULL: the placement policy's choice) with PostgreSQL logical replication: a copy from the target's template under a temporary name, a publication of schema public on the source and a subscription on the target, the initial copy while the tenant works, the catalog copy and field indexes installed; then the cutover: new routed calls wait (every routed call takes the tenant's move lock shared; at most messiah.move_cutover_timeout for calls in flight), the tenant's sessions on the source end and its role loses LOGIN there, the target catches up to the source's WAL position, sequences are set (PG15 does not replicate them), subscription, slot and publication go, the copy is renamed tenant_<id>, the catalog points to the target and the roles are made there; all effective at COMMIT. The source database is dropped after COMMIT (with the tenant's roles there), or kept and marked with keep_source. Returns {"tenant_id","from","to","copy_ms","cutover_ms","source"}. Needs wal_level = logical on the source and a superuser conninfo for the target (PG15 CREATE SUBSCRIPTION). A failure leaves the tenant on its source, working; what could not be removed goes with messiah_reconcile(repair => true) (kind move_leftover, and the copy as an aborted creation). Errors: 25001 moving off this admin database's own server in a transaction that has already written (its replication slot would wait for it), 22023 already there, 42704, 55000 (not ready, target not active, wal_level, tables without primary key, tenant behind the current extension or migration version, code of the tenant's that the replication would run as a superuser: triggers enabled ALWAYS or REPLICA, constraints, indexes or defaults calling its own functions; copy failed), 42501 target user not superuser, 42P04 target has a database of that name, 53400 no room, 55P03 routed calls in flight past the cutover timeout, 57014 messiah.move_timeout or cancel.$$;
COMMENT ON FUNCTION @extschema@.messiah_drain_server(text, boolean) IS
$$Moves every ready tenant off server name: marks it draining (no new tenants), then moves each tenant (messiah_move_tenant with the placement policy's target), each in its own transaction over a connection of this backend to this admin database, so each cutover commits on its own and a failure does not stop the others. One row per tenant: tenant_id, to_server, status moved|failed, message, copy_ms, cutover_ms. Errors: 42704 no such server, 55000 the local server is not registered.$$;
COMMENT ON FUNCTION @extschema@.messiah_list_migrations(text) IS
$$Where every ready tenant (or one) stands: tenant_id, server, migration_version (as the last messiah_migrate_tenants found it in its database), latest_version (highest registered), pending (registered versions above its own), migrated_at. Errors: 22023 invalid tenant_id.$$;
COMMENT ON FUNCTION @extschema@.messiah_tenant_disconnect(text) IS
$$Closes this backend's connections into the tenant's database, or all of messiah's connections in this backend when tenant_id is null; returns how many. Errors: 22023, 42704. Source: original design "Connectors" (close).$$;
COMMENT ON FUNCTION @extschema@.messiah_set_supabase_config(text, jsonb) IS
$$Sets (replaces) a tenant's Supabase config (keys as in messiah_create_tenant's config), anon_key and service_key encrypted with the current key of messiah.key_file. Returns the tenant (keys masked). Errors: 22023/54000 invalid config, 42704 no such tenant, F0000 no usable key file. Errors never log the calling statement.$$;
COMMENT ON FUNCTION @extschema@.messiah_drop_tenant(text, boolean) IS
$$Drops a tenant: the row is marked dropping now (gone from get/list), and after COMMIT the executor drops its database WITH (FORCE) (only if its marker says this installation created it under that name) and deletes the catalog rows. A rollback or failed COMMIT drops nothing. keep_database => true removes the rows now and keeps the database (messiah.detached_databases). A supabase tenant: its schema tenant_<id> and roles are dropped, never the project's database; keep_database => true is 0A000. Returns {"tenant_id","database","database_kept"}. Errors: 22023, 42704, 55000 managed by another installation (only keep_database => true is allowed). DESIGN.md decision 3.$$;
COMMENT ON FUNCTION @extschema@.messiah_reconcile(boolean, boolean) IS
$$Lists (repair => false) or fixes (repair => true) drift, as rows (kind, tenant_id, database_name, action, server). Kinds: aborted_creation (repair drops it: proven garbage of this installation), orphan_database (no catalog row: always left alone, reported with size and, with deep, row counts), missing_database (repair recreates it empty), snapshot_drift (deep: the tenant database's catalog copy differs; repair installs the catalog's), foreign_tenant (another installation manages the row), owned_elsewhere (the database names another installation), stale_template (repair drops it), pending_action (a queued remote action that failed; repair runs it), move_leftover (a failed move's replication slot or publication on its source; repair drops it; a move's copy on the target is an aborted creation). Without repair or deep, local databases are read from the shared catalogs only (no connection).$$;
COMMENT ON FUNCTION @extschema@.messiah_run_pending(integer) IS
$$Carries out the queued remote actions (drop_database, push_snapshot, claim_database) now in this session; with wait_ms > 0 (milliseconds) waits that long at most for the ones another session runs or that fail and are retried. Returns {"done","failed","pending","actions":[{"action","tenant_id","database","outcome"}]}. Errors: 22004, 22023 negative wait.$$;
COMMENT ON FUNCTION @extschema@.messiah_adopt_database(text, text) IS
$$Brings an orphan tenant database (named tenant_<id>, no catalog row) on a server (default local) back into the catalog from the copy it keeps of its own catalog row and field definitions; its marker is rewritten to this installation after COMMIT. Returns the tenant. Errors: 22023 not a tenant database name, 3D000 no such database, 55000 a row names it or it has no catalog copy, 23505 tenant_id or slug taken. DESIGN.md decision 10.$$;
COMMENT ON FUNCTION @extschema@.messiah_drop_orphan(text, text) IS
$$Drops at once, on purpose, a database named like a tenant database (or a temporary messiah_new_ database) that no catalog row names, on a server (default local). Returns {"database","server","dropped","size_bytes"}. Errors: 22023 not a tenant database name, 3D000 no such database, 55000 a catalog row names it.$$;
COMMENT ON FUNCTION @extschema@.messiah_takeover() IS
$$Makes this installation manage the tenants another installation's id names (a restored copy replacing the original); markers and catalog copies are rewritten after COMMIT, after which the original sees those tenants as not its own. Returns rows (tenant_id, outcome). DESIGN.md decision 10.$$;
COMMENT ON FUNCTION @extschema@.messiah_get_secret(text, text) IS
$$Returns a secret in clear text: name anon_key or service_key of the tenant's Supabase config. Not granted by messiah_grant_admin; grant it explicitly. Errors: 22023 unknown name, 42704 no such tenant or config, F0000 no usable key file or the sealing key is missing, XX001 altered ciphertext.$$;
COMMENT ON FUNCTION @extschema@.messiah_rotate_key() IS
$$Re-encrypts every stored secret with the current (first) key of messiah.key_file in one transaction and returns how many. Not granted by messiah_grant_admin. Errors: F0000 no usable key file or a secret sealed by a key no longer in the file.$$;
COMMENT ON FUNCTION @extschema@.messiah_grant_admin(text) IS
$$Grants the management API (EXECUTE on every messiah_* function except messiah_get_secret, messiah_rotate_key and the grant functions) to a role, now and after every upgrade (recorded in messiah.admin_roles). For Supabase: SELECT messiah_grant_admin('service_role'). Returns {"role","functions":[...]}. Errors: 22004, 42704 no such role.$$;
COMMENT ON FUNCTION @extschema@.messiah_revoke_admin(text) IS
$$Revokes what messiah_grant_admin granted to a role and forgets it. Returns {"role","functions":[...]}. Errors: 22004, 42704 no such role.$$;
COMMENT ON FUNCTION @extschema@.messiah_openapi() IS
$$Returns an OpenAPI 3.1 document (jsonb) describing POST /rpc/<name> for every exposed messiah_* function as PostgREST serves it: argument names and JSON types, required arguments (those without a default), return shapes, descriptions from these COMMENTs.$$;
COMMENT ON FUNCTION @extschema@.messiah_define_field(text, text, text, text, text, text, boolean, boolean, boolean, boolean, text, jsonb, jsonb) IS
$$Creates or updates (and reactivates) a custom-field definition; returns it as jsonb. Args: tenant_id, entity_table (clients|projects|activities), field_name (^[a-z][a-z0-9_]*$, <= 40 bytes, not a base column), field_type (text|number|boolean|date|json|select), display_name (<= 200 code points), description (<= 2000 code points), is_required, is_searchable, is_filterable, is_sortable (index per the README's index table), default_value (text parsed as the type, must pass every rule including is_required, <= 8 KiB), validation_rules (jsonb object <= 64 KiB; text: minLength, maxLength in code points, pattern (ECMA-262 classes, linear time), format email|uri|uuid; number: min, max, integer; date: min, max; json: schema (JSON Schema); select: options, multiple), ui_config (jsonb object <= 64 KiB). The tenant database enforces it once the catalog copy is pushed after COMMIT (milliseconds with the executor worker). Errors: 22023 naming the field, 54000 too large, 22004 null, 42704 no such tenant, 55000 managed by another installation. Source: original design extension_field_definitions; DESIGN.md decisions 5-6.$$;
COMMENT ON FUNCTION @extschema@.messiah_drop_field(text, text, text) IS
$$Deactivates a field definition (is_active = false; its index in the tenant database is dropped); stored values stay, new writes treat the key as unknown. Returns the definition. Errors: 22023, 22004, 42704 no such tenant or field.$$;
COMMENT ON FUNCTION @extschema@.messiah_list_fields(text, text) IS
$$A tenant's field definitions (active and inactive) as jsonb rows ordered by entity_table, field_name; entity_table null for all. Errors: 22023, 22004, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_validate_custom_fields(text, text, jsonb) IS
$$Validates a custom_fields document against the tenant's active definitions of entity_table as an INSERT would; returns a jsonb array of {"field","code","message"} (empty: valid). Codes: not_object, required, type, min_length, max_length, pattern, format, minimum, maximum, integer, date, schema, option, duplicate, unknown_field, index_limit, too_many_errors. Errors: 22023, 22004, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_apply_fields(text, text, jsonb) IS
$$The original design's applyFields: moves the keys of a flat record that are defined fields into custom_fields, keeps base columns, applies the unknown-field policy and defaults, validates; returns the record ready to insert. Errors: 23514 with every failing field in DETAIL, 22023, 22004, 42704.$$;
COMMENT ON FUNCTION @extschema@.messiah_check_existing(text, text) IS
$$Checks the rows of the tenant's entity_table against the definitions as the calling transaction sees them (so a tightening can be planned inside a transaction that is then rolled back); the tenant database reads rows in batches through a cursor. Returns {"entity_table","checked","violations","sample":[{"id","errors"}]} (at most 10 samples). Errors: 22023, 22004, 42704, 0A000 a supabase tenant (no messiah in its database), the tenant database's errors with a CONTEXT naming tenant and server.$$;
COMMENT ON FUNCTION @extschema@.messiah_add_server(text, text, integer) IS
$$Registers a server that holds tenant databases. Args: name text (^[a-z][a-z0-9_]*$, <= 63 bytes), conninfo text (libpq keyword=value, a host required, no password: libpq's password file supplies it; a dbname names the maintenance database, default postgres), capacity integer (most tenants it may hold; null: no limit). The server must be reachable and have messiah installed. Returns the server as jsonb. Errors: 22023 bad name or conninfo, 23505 name taken, 08001 unreachable, 55000 no messiah there; nothing is written on error. DESIGN.md decision 9.$$;
COMMENT ON FUNCTION @extschema@.messiah_alter_server(text, jsonb) IS
$$Changes a server from a jsonb patch with any of conninfo (applies to every tenant on it), status (active|draining|offline: only active servers receive new tenants), capacity (integer >= 0 or null). Returns the server. Errors: 22023, 42704 no such server, 08001/55000 a conninfo that does not reach a server with messiah.$$;
COMMENT ON FUNCTION @extschema@.messiah_drop_server(text) IS
$$Removes a server from the registry; returns what it was. Errors: 42704 no such server, 55000 the local server, 2BP01 tenants still live there.$$;
COMMENT ON FUNCTION @extschema@.messiah_list_servers() IS
$$The registered servers as rows (name, conninfo, status, capacity, tenants, reachable, message): tenants is the count of tenants placed there; reachable says whether a connection to its maintenance database opens (local: always).$$;
COMMENT ON FUNCTION messiah.create_tenant_database(uuid) IS
$$Internal (deferred trigger at COMMIT, reconcile): creates the database of a provisioning tenant under a temporary name carrying this installation and the creating transaction, marks it, renames it to tenant_<id>, installs the catalog copy, marks the row ready. 42P04 if it exists.$$;
COMMENT ON FUNCTION messiah.register_local_server() IS
$$Internal (CREATE EXTENSION): registers this cluster as the server local (first Unix socket directory, port, the extension owner).$$;
COMMENT ON FUNCTION messiah.route_lookup(text) IS
$$Internal (diagnosis; the benchmark of the lookup alone): the catalog entry a routed call uses for tenant_id, through the per-backend catalog cache when messiah.catalog_cache is on: {"tenant_id","server","database","status","lifecycle","row_version"} or NULL. Opens no connection. Not granted.$$;
COMMENT ON FUNCTION messiah.regrant_admins() IS
$$Internal (every extension script): re-grants the management functions to the roles recorded by messiah_grant_admin.$$;
COMMENT ON FUNCTION messiah.tenants_provision() IS
$$Deferred constraint trigger on messiah.tenants: creates a provisioning tenant's database at COMMIT (DESIGN.md decision 3).$$;

-- Last, so that it covers every function above. DESIGN.md decision 8: nothing is executable
-- by PUBLIC; messiah_grant_admin(role) grants the management API, and every version's script
-- re-grants it to the roles granted before.
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
             AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
SELECT messiah.regrant_admins();
