//! search_path attacks on every path that runs with the owner's rights (DESIGN.md decision 8;
//! issue "Security" section 1).
//!
//! A non-superuser role that was given the management API (messiah_grant_admin) and owns a
//! schema shadows pg_catalog: for every plain function of pg_catalog (and every binary
//! operator on the types messiah's SQL uses) it creates one of the same name and signature
//! in its schema whose body, when it finds itself running as a superuser, records the fact
//! in a sentinel table and makes the attacker a superuser. It then puts its schema before
//! pg_catalog in search_path (pg_catalog is searched first when it is not listed) and calls
//! every exposed function, in autocommit and inside explicit transactions (so COMMIT-time
//! paths run: the provisioning trigger, the outbox executor woken at COMMIT), and writes to
//! a tenant database the same way (the trigger reads the catalog copy as the bootstrap
//! superuser). Afterwards the role is still not a superuser and the sentinels are empty.

use crate::common::*;
use postgres::{Client, NoTls};

const ROLE: &str = "messiah_it_attacker";

fn connect_as(role: &str, dbname: &str) -> Client {
    let (host, port) = host_port();
    Client::connect(
        &format!("host={host} port={port} user={role} dbname={dbname}"),
        NoTls,
    )
    .unwrap_or_else(|e| panic!("connecting as {role} to {dbname}: {e}"))
}

/// The attacker's schema `evil`: the payload, the sentinel, and the shadows of pg_catalog's
/// functions and operators. Run as the attacker in the database it is connected to.
const SHADOWS: &str = r#"
CREATE SCHEMA evil;
CREATE TABLE evil.sentinel (who text, what text, at timestamptz DEFAULT pg_catalog.now());
GRANT ALL ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.sentinel TO PUBLIC;
CREATE FUNCTION evil.pwn(what text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        INSERT INTO evil.sentinel (who, what) VALUES (CURRENT_USER, what);
        EXECUTE 'ALTER ROLE messiah_it_attacker SUPERUSER';
    END IF;
END $f$;
GRANT EXECUTE ON FUNCTION evil.pwn(text) TO PUBLIC;
DO $do$
DECLARE
    p record;
    args text;
    call text;
BEGIN
    FOR p IN
        SELECT f.oid, f.proname, f.pronargs, f.prorettype,
               pg_catalog.format_type(f.prorettype, NULL) AS ret
        FROM pg_catalog.pg_proc f
        WHERE f.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
          AND f.prokind OPERATOR(pg_catalog.=) 'f' AND NOT f.proretset AND f.provariadic OPERATOR(pg_catalog.=) 0
          AND f.pronargs OPERATOR(pg_catalog.<=) 4
          AND f.proname NOT IN ('pwn')
          AND (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) f.prorettype) OPERATOR(pg_catalog.<>) 'p'
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(f.proargtypes::pg_catalog.oid[]) a
                          JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a
                          WHERE t.typtype OPERATOR(pg_catalog.=) 'p')
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format_type(a, NULL), ', ' ORDER BY o),
               pg_catalog.string_agg('$' OPERATOR(pg_catalog.||) o, ', ' ORDER BY o)
          INTO args, call
          FROM pg_catalog.unnest((SELECT f.proargtypes::pg_catalog.oid[] FROM pg_catalog.pg_proc f WHERE f.oid OPERATOR(pg_catalog.=) p.oid))
               WITH ORDINALITY AS u(a, o);
        BEGIN
            EXECUTE pg_catalog.format(
                'CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS $b$ BEGIN PERFORM evil.pwn(%L); RETURN pg_catalog.%I(%s); END $b$',
                p.proname, coalesce(args, ''), p.ret, p.proname, p.proname, coalesce(call, ''));
        EXCEPTION WHEN OTHERS THEN
            NULL; -- a signature that cannot be redeclared (duplicate after type aliasing, ...)
        END;
    END LOOP;
    FOR p IN
        SELECT o.oid, o.oprname, pg_catalog.format_type(o.oprleft, NULL) AS l,
               pg_catalog.format_type(o.oprright, NULL) AS r,
               pg_catalog.format_type(o.oprresult, NULL) AS ret
        FROM pg_catalog.pg_operator o
        WHERE o.oprkind OPERATOR(pg_catalog.=) 'b'
          AND o.oprleft IN ('text'::pg_catalog.regtype, 'bigint'::pg_catalog.regtype, 'integer'::pg_catalog.regtype,
                            'uuid'::pg_catalog.regtype, 'name'::pg_catalog.regtype, 'oid'::pg_catalog.regtype,
                            'boolean'::pg_catalog.regtype, 'xid8'::pg_catalog.regtype, 'jsonb'::pg_catalog.regtype,
                            'timestamp with time zone'::pg_catalog.regtype)
          AND o.oprright OPERATOR(pg_catalog.=) o.oprleft OR (o.oprkind OPERATOR(pg_catalog.=) 'b'
              AND o.oprleft OPERATOR(pg_catalog.=) 'jsonb'::pg_catalog.regtype
              AND o.oprright IN ('text'::pg_catalog.regtype, 'integer'::pg_catalog.regtype, 'text[]'::pg_catalog.regtype))
    LOOP
        BEGIN
            EXECUTE pg_catalog.format(
                'CREATE FUNCTION evil.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS $b$ BEGIN PERFORM evil.pwn(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END $b$',
                p.oid, p.l, p.r, p.ret, 'operator ' OPERATOR(pg_catalog.||) p.oprname, p.oprname);
            EXECUTE pg_catalog.format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op_%s)',
                p.oprname, p.l, p.r, p.oid);
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END LOOP;
END $do$;
"#;

/// Number of shadows the attacker made in the connected database.
fn shadows(c: &mut Client) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_proc WHERE pronamespace = 'evil'::regnamespace), \
                    (SELECT count(*) FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace)",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn assert_not_escalated(db: &str) {
    let mut pg = connect_retry(db);
    let sup: bool = pg
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&ROLE])
        .unwrap()
        .get(0);
    let hits: Vec<String> = pg
        .query("SELECT who || ': ' || what FROM evil.sentinel", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!sup, "the attacker became a superuser; sentinel: {hits:?}");
    assert!(
        hits.is_empty(),
        "owner-run code called the attacker's functions: {hits:?}"
    );
}

#[test]
fn shadowing_pg_catalog_never_runs_with_the_owners_rights() {
    let admin_name = "messiah_it_attack";
    for t in ["it_atk", "it_atk_tx", "it_atk_b"] {
        drop_db(&format!("tenant_{t}"));
    }
    let mut admin = admin_db(admin_name);
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') \
             THEN CREATE ROLE {ROLE} LOGIN; END IF; END $$; \
             ALTER ROLE {ROLE} NOSUPERUSER; \
             GRANT CREATE ON DATABASE {admin_name} TO {ROLE}; \
             SELECT messiah_grant_admin('{ROLE}')"
        ))
        .unwrap();
    let mut a = connect_as(ROLE, admin_name);
    a.batch_execute(SHADOWS).unwrap();
    let (funcs, ops) = shadows(&mut a);
    assert!(funcs > 1000, "only {funcs} functions shadowed");
    assert!(ops > 50, "only {ops} operators shadowed");
    a.batch_execute("SET search_path = evil, pg_catalog, public")
        .unwrap();
    // the shadows are live for the attacker's own statements
    a.batch_execute("SELECT now(); SELECT lower('X')").unwrap();
    assert_eq!(
        a.query_one("SELECT count(*) FROM evil.sentinel", &[])
            .unwrap()
            .get::<_, i64>(0),
        0,
        "the payload only fires for a superuser"
    );
    let config = r#"{"supabase_project_id": "p1", "supabase_url": "https://p1.example.test", "anon_key": "anon_x", "service_key": "sk_x"}"#;
    let calls: Vec<String> = vec![
        format!("SELECT messiah_create_tenant('it_atk', 'Attack', 'it-atk', contact_email => 'a@b.test', config => '{config}')"),
        "SELECT messiah_get_tenant('it_atk')".into(),
        "SELECT count(*) FROM messiah_list_tenants()".into(),
        "SELECT messiah_update_tenant('it_atk', '{\"name\": \"Renamed\", \"settings\": {\"unknown_custom_fields\": \"strip\"}}')".into(),
        "SELECT messiah_set_tenant_status('it_atk', 'inactive')".into(),
        "SELECT messiah_set_tenant_status('it_atk', 'active')".into(),
        format!("SELECT messiah_set_supabase_config('it_atk', '{config}')"),
        "SELECT messiah_define_field('it_atk', 'clients', 'score', 'number', 'Score', is_sortable => true, default_value => '1', validation_rules => '{\"min\": 0}')".into(),
        "SELECT messiah_define_field('it_atk', 'clients', 'code', 'text', 'Code', validation_rules => '{\"pattern\": \"^[A-Z]+$\", \"maxLength\": 9}')".into(),
        "SELECT count(*) FROM messiah_list_fields('it_atk')".into(),
        "SELECT messiah_validate_custom_fields('it_atk', 'clients', '{\"score\": -1}')".into(),
        "SELECT messiah_apply_fields('it_atk', 'clients', '{\"name\": \"n\", \"score\": 2}')".into(),
        "SELECT messiah_run_pending(wait_ms => 10000)".into(),
        "SELECT messiah_check_existing('it_atk', 'clients')".into(),
        // routing: the calls open connections, build SQL, and re-apply roles with the
        // owner's rights
        "SELECT count(*) FROM messiah_tenant_query('it_atk', 'SELECT $1::int AS n, lower($2) AS l', '[1, \"X\"]')".into(),
        "SELECT messiah_tenant_insert('it_atk', 'clients', '{\"name\": \"routed\", \"score\": 5}')".into(),
        "SELECT count(*) FROM messiah_tenant_update('it_atk', 'clients', '{\"custom_fields\": {\"score\": 6}}', '{\"name\": \"routed\"}')".into(),
        "SELECT messiah_tenant_delete('it_atk', 'clients', '{\"name\": \"routed\"}')".into(),
        "SELECT messiah_set_tenant_limits('it_atk', statement_timeout_ms => 5000, connection_limit => 5)".into(),
        "SELECT messiah_rotate_tenant_credentials('it_atk')".into(),
        "SELECT messiah_run_pending(wait_ms => 10000)".into(),
        "SELECT count(*) FROM messiah_tenant_query('it_atk', 'SELECT 1')".into(),
        "SELECT messiah_tenant_disconnect('it_atk')".into(),
        "SELECT messiah_tenant_disconnect()".into(),
        "SELECT count(*) FROM messiah_health()".into(),
        "SELECT count(*) FROM messiah_tenant_health('it_atk')".into(),
        "SELECT count(*) FROM messiah_tenant_query('it_atk', 'SELECT $1::int AS n', '[1]', max_age => '1 minute')".into(),
        "SELECT count(*) FROM messiah_tenant_query('it_atk', 'SELECT $1::int AS n', '[1]', max_age => '1 minute')".into(),
        "SELECT count(*) FROM messiah_metrics()".into(),
        "SELECT count(*) FROM messiah_tenant_stats()".into(),
        "SELECT messiah_cache_clear('it_atk') + messiah_cache_clear()".into(),
        "SELECT messiah_drop_field('it_atk', 'clients', 'code')".into(),
        "SELECT count(*) FROM messiah_reconcile()".into(),
        "SELECT count(*) FROM messiah_reconcile(repair => true, deep => true)".into(),
        "SELECT count(*) FROM messiah_list_servers()".into(),
        "SELECT messiah_openapi() IS NOT NULL".into(),
        "SELECT count(*) FROM messiah_takeover()".into(),
        "BEGIN; SELECT messiah_create_tenant('it_atk_tx', 'In a transaction', 'it-atk-tx'); \
         SELECT messiah_define_field('it_atk_tx', 'projects', 'stage', 'select', 'Stage', validation_rules => '{\"options\": [\"a\"]}'); COMMIT".into(),
        "BEGIN; SELECT messiah_create_tenant('it_atk_b', 'Rolled back', 'it-atk-b'); SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK".into(),
        "SELECT messiah_drop_tenant('it_atk_tx')".into(),
        "SELECT messiah_run_pending(wait_ms => 10000)".into(),
        // fleet operations: probes, migrations run as the tenant's owner, templates rebuilt,
        // tenant upgrades, a drain whose moves run over a loopback connection (and fail here:
        // there is no other server)
        "SELECT messiah_add_migration(1, 'CREATE TABLE atk_notes (id bigserial PRIMARY KEY)')".into(),
        "SELECT count(*) FROM messiah_migrate_tenants()".into(),
        "SELECT count(*) FROM messiah_list_migrations()".into(),
        "SELECT count(*) FROM messiah_upgrade_tenants()".into(),
        "SELECT count(*) FROM messiah_drain_server('local')".into(),
        "SELECT messiah_alter_server('local', '{\"status\": \"active\"}')".into(),
        "SELECT messiah_run_pending(wait_ms => 10000)".into(),
    ];
    for sql in &calls {
        a.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", message(&e)));
    }
    // error paths run owner code too
    for sql in [
        "SELECT messiah_create_tenant('it_atk', 'Again', 'it-atk-2')",
        "SELECT messiah_get_tenant('nobody_here')",
        "SELECT messiah_adopt_database('tenant_it_atk_none')",
        "SELECT messiah_drop_orphan('tenant_it_atk')",
        "SELECT messiah_add_server('elsewhere', 'host=/nonexistent port=1 user=postgres')",
        "SELECT count(*) FROM messiah_tenant_query('it_atk', 'SELECT * FROM no_such_table')",
        "SELECT count(*) FROM messiah_tenant_query('it_atk', 'SELECT $1::int, $2::int', '[1]')",
        "SELECT messiah_tenant_insert('it_atk', 'clients', '{\"name\": \"bad\", \"score\": -1}')",
        "SELECT count(*) FROM messiah_tenant_update('it_atk', 'clients', '{\"name\": \"x\"}', '{}')",
        "SELECT messiah_tenant_delete('it_atk', 'no_such_table', '{\"id\": 1}')",
        "SELECT messiah_move_tenant('it_atk', 'local')",
        "SELECT messiah_move_tenant('it_atk', NULL)",
        "SELECT messiah_add_migration(1, 'SELECT 1')",
    ] {
        assert!(a.batch_execute(sql).is_err(), "{sql} must fail");
    }
    assert!(
        wait_until(10, || !db_exists("tenant_it_atk_b")),
        "the rolled-back creation was not swept"
    );
    assert!(!db_exists("tenant_it_atk_tx"));
    assert_not_escalated(admin_name);

    // the tenant database: the attacker writes rows with its shadows first in search_path;
    // the trigger reads the catalog copy as the bootstrap superuser
    let tenant_db = "tenant_it_atk";
    admin
        .batch_execute(
            "SELECT messiah_define_field('it_atk', 'clients', 'tier', 'select', 'Tier', default_value => 'gold', validation_rules => '{\"options\": [\"gold\"]}')",
        )
        .unwrap();
    settle(&mut admin);
    connect_retry(tenant_db)
        .batch_execute(&format!(
            "GRANT CONNECT, CREATE ON DATABASE {tenant_db} TO {ROLE}; \
             GRANT USAGE ON SCHEMA public TO {ROLE}; \
             GRANT SELECT, INSERT, UPDATE ON public.clients TO {ROLE}"
        ))
        .unwrap();
    let mut t = connect_as(ROLE, tenant_db);
    t.batch_execute(SHADOWS).unwrap();
    t.batch_execute("SET search_path = evil, pg_catalog, public")
        .unwrap();
    t.batch_execute(
        "INSERT INTO clients (name, custom_fields) VALUES ('ok', '{\"score\": 3}'); \
         UPDATE clients SET custom_fields = '{\"score\": 4, \"tier\": \"gold\"}'",
    )
    .unwrap();
    let e = t
        .batch_execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('bad', '{\"score\": -3}')",
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    drop(t);
    assert_not_escalated(tenant_db);
    drop(a);
    drop_tenant(&mut admin, "it_atk");
    admin
        .batch_execute(&format!("SELECT messiah_revoke_admin('{ROLE}'); DROP SCHEMA evil CASCADE; REVOKE ALL ON DATABASE {admin_name} FROM {ROLE}"))
        .unwrap();
}
