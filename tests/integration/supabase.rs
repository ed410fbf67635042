//! The `supabase` connector (issue "Where tenants live"): a tenant whose tables live in schema
//! `tenant_<id>` of an existing Supabase project's database. A second cluster stands in for
//! the project: no messiah library there; Supabase's API roles (`anon`, `authenticated`,
//! `service_role`) and its default privileges on `public`; a password-authenticated pg_hba as
//! a project has; the database `postgres` already holds other tables, which stay untouched.

use crate::common::*;
use postgres::Client;
use serde_json::{json, Value};

const DIR: &str = "/tmp/messiah-it-supabase";
const PORT: u16 = 28820;

/// What a Supabase project's database has that matters here (its roles, its default
/// privileges on `public`, a table of the project's own with rows).
const PROJECT: &str = "
-- messiah connects as the project's admin role, which is not a superuser (as a project's
-- `postgres` is not): it creates roles, and may end other roles' sessions
CREATE ROLE project_admin LOGIN CREATEROLE CREATEDB;
GRANT pg_signal_backend TO project_admin;
GRANT CREATE ON DATABASE postgres TO project_admin;
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'api-secret';
GRANT anon, authenticated, service_role TO authenticator;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
-- wider than Supabase's own: every new table of any schema, for the role messiah connects as
ALTER DEFAULT PRIVILEGES FOR ROLE project_admin GRANT ALL ON TABLES TO anon, authenticated;
CREATE TABLE public.todos (id bigserial PRIMARY KEY, title text NOT NULL);
INSERT INTO public.todos (title) VALUES ('write the launch post'), ('ship');
";

/// A Supabase project's pg_hba: password logins for everyone (the superuser over the socket
/// by trust, as the test's other clusters).
const PROJECT_HBA: &str = "local all postgres trust\nlocal all project_admin trust\nlocal all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n";

fn project() -> OtherCluster {
    let p = OtherCluster::start(DIR, PORT, None, "");
    std::fs::write(format!("{DIR}/data/pg_hba.conf"), PROJECT_HBA).unwrap();
    let mut pg = p.connect("postgres");
    pg.batch_execute("SELECT pg_reload_conf()").unwrap();
    pg.batch_execute(PROJECT).unwrap();
    p
}

/// The project's own table, as a fingerprint.
fn todos(p: &OtherCluster) -> String {
    p.connect("postgres")
        .query_one(
            "SELECT count(*)::text || ':' || md5(string_agg(id || title, ',' ORDER BY id)) FROM public.todos",
            &[],
        )
        .unwrap()
        .get(0)
}

fn rows(c: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Vec<Value> {
    c.query(sql, params)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect()
}

/// Waits until the queued action of `tenant` has failed with an error containing `needle`
/// (the executor or this session runs it; either way it stays queued).
fn await_failure(c: &mut Client, tenant: &str, needle: &str) {
    let mut last = String::new();
    assert!(
        wait_until(20, || {
            c.batch_execute("SELECT messiah_run_pending()").unwrap();
            last = c
                .query_one(
                    "SELECT coalesce(string_agg(action, ' | '), '') FROM messiah_reconcile() \
                     WHERE kind = 'pending_action' AND tenant_id = $1",
                    &[&tenant],
                )
                .unwrap()
                .get(0);
            last.contains(needle)
        }),
        "{last}"
    );
}

#[test]
fn a_supabase_tenant_lives_in_its_own_schema_of_the_project() {
    let p = project();
    let before = todos(&p);
    let mut c = admin_db("messiah_it_supabase");
    c.batch_execute(&format!(
        "SELECT messiah_add_server('supa', 'host={DIR} port={PORT} user=project_admin dbname=postgres')"
    ))
    .unwrap();
    let config = r#"{"supabase_project_id": "p1", "supabase_url": "https://p1.supabase.co", "anon_key": "anon_x", "service_key": "sk_x"}"#;
    // both the server and the config are needed, before anything is written
    let e = fails(
        &mut c,
        &format!("SELECT messiah_create_tenant('it_sb', 'SB', 'it-sb', config => '{config}', connector_type => 'supabase')"),
    );
    assert_eq!(
        (sqlstate(&e), message(&e)),
        (
            "22023".into(),
            "a supabase tenant needs server => the project's registered server".into()
        )
    );
    let e = fails(
        &mut c,
        "SELECT messiah_create_tenant('it_sb', 'SB', 'it-sb', server => 'supa', connector_type => 'supabase')",
    );
    assert_eq!(sqlstate(&e), "22023");
    assert_eq!(tenant_rows(&mut c, "it_sb"), 0);

    let t = json(
        &mut c,
        &format!("messiah_create_tenant('it_sb', 'SB', 'it-sb', server => 'supa', config => '{config}', connector_type => 'supabase')"),
    );
    assert_eq!(
        (
            &t["connector_type"],
            &t["database"],
            &t["schema"],
            &t["server"],
            &t["roles"]
        ),
        (
            &json!("supabase"),
            &json!("postgres"),
            &json!("tenant_it_sb"),
            &json!("supa"),
            &json!({"application": "tenant_it_sb", "owner": "owner_it_sb"})
        )
    );
    c.batch_execute(
        "SELECT messiah_define_field('it_sb', 'clients', 'country', 'select', 'Country', \
             validation_rules => '{\"options\": [\"Brazil\", \"Canada\"]}'); \
         SELECT messiah_define_field('it_sb', 'clients', 'tier', 'text', 'Tier', default_value => 'basic')",
    )
    .unwrap();
    settle(&mut c);

    // the schema, owned by the owner role, row level security on; no database was created
    let mut pg = p.connect("postgres");
    let shape: String = pg
        .query_one(
            "SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner) || ':' || c.relrowsecurity, ',' ORDER BY c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'tenant_it_sb' AND c.relkind = 'r'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        shape,
        "activities:owner_it_sb:true,clients:owner_it_sb:true,projects:owner_it_sb:true"
    );
    let dbs: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenant%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dbs, 0);

    // a routed insert, validated by messiah before it is sent (no trigger in the project)
    let row = json(
        &mut c,
        "messiah_tenant_insert('it_sb', 'clients', '{\"name\": \"Ana\", \"email\": \"ana@example.com\", \"country\": \"Brazil\"}')",
    );
    assert_eq!(
        row["custom_fields"],
        json!({"country": "Brazil", "tier": "basic"})
    );
    let e = fails(
        &mut c,
        "SELECT messiah_tenant_insert('it_sb', 'clients', '{\"name\": \"Bo\", \"country\": \"Mars\"}')",
    );
    assert_eq!(
        (sqlstate(&e), message(&e)),
        (
            "23514".into(),
            "new row for relation \"clients\" violates 1 custom field rule".into()
        )
    );
    // a routed update merges custom_fields and validates the merged value
    let updated = rows(
        &mut c,
        "SELECT r::text FROM messiah_tenant_update('it_sb', 'clients', '{\"custom_fields\": {\"tier\": \"gold\"}}', '{\"email\": \"ana@example.com\"}') r",
        &[],
    );
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0]["custom_fields"],
        json!({"country": "Brazil", "tier": "gold"})
    );
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_update('it_sb', 'clients', '{\"custom_fields\": {\"country\": \"Mars\"}}', '{\"email\": \"ana@example.com\"}')",
    );
    assert_eq!(sqlstate(&e), "23514", "{e}");
    let now = rows(
        &mut c,
        "SELECT r::text FROM messiah_tenant_query('it_sb', 'SELECT name, custom_fields FROM clients ORDER BY name') r",
        &[],
    );
    assert_eq!(
        now,
        vec![json!({"name": "Ana", "custom_fields": {"country": "Brazil", "tier": "gold"}})]
    );
    // its own SQL is read-only: writes go through the validating calls
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_query('it_sb', 'UPDATE clients SET custom_fields = ''{\"country\": \"Mars\"}''')",
    );
    assert_eq!(sqlstate(&e), "25006", "{e}");
    assert!(e
        .as_db_error()
        .unwrap()
        .hint()
        .unwrap_or("")
        .contains("messiah_tenant_insert"));
    // the tenant role cannot read the project's tables
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_query('it_sb', 'SELECT * FROM public.todos')",
    );
    assert_eq!(sqlstate(&e), "42501", "{e}");

    // the project's API roles cannot reach the tenant's tables; the project's own table is
    // untouched and still theirs
    for role in ["anon", "authenticated"] {
        let e = pg
            .batch_execute(&format!(
                "SET ROLE {role}; SELECT * FROM tenant_it_sb.clients"
            ))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{role}: {e}");
        pg.batch_execute("RESET ROLE").unwrap();
        pg.batch_execute(&format!("SET ROLE {role}")).unwrap();
        let n: i64 = pg
            .query_one("SELECT count(*) FROM public.todos", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        pg.batch_execute("RESET ROLE").unwrap();
    }
    let grants: i64 = pg
        .query_one(
            "SELECT count(*) FROM information_schema.role_table_grants \
             WHERE table_schema = 'tenant_it_sb' AND grantee IN ('anon', 'authenticated', 'service_role', 'PUBLIC')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(grants, 0);
    assert_eq!(todos(&p), before);

    // a second tenant in the same project: neither reaches the other's schema
    let config_b = config.replace("p1", "p2");
    json(
        &mut c,
        &format!("messiah_create_tenant('it_sb_b', 'SB b', 'it-sb-b', server => 'supa', config => '{config_b}', connector_type => 'supabase')"),
    );
    settle(&mut c);
    json(
        &mut c,
        "messiah_tenant_insert('it_sb_b', 'clients', '{\"name\": \"Bea\"}')",
    );
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_query('it_sb', 'SELECT * FROM tenant_it_sb_b.clients')",
    );
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_query('it_sb_b', 'SELECT * FROM tenant_it_sb.clients')",
    );
    assert_eq!(sqlstate(&e), "42501", "{e}");
    drop_tenant(&mut c, "it_sb_b");

    // suspended means suspended here too: refused before any connection, the role NOLOGIN
    // (the project's admin role may end its sessions: pg_signal_backend)
    c.batch_execute("SELECT messiah_set_tenant_status('it_sb', 'suspended')")
        .unwrap();
    settle(&mut c);
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_query('it_sb', 'SELECT 1')",
    );
    assert_eq!(sqlstate(&e), "55000");
    let login: bool = pg
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tenant_it_sb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!login);
    c.batch_execute("SELECT messiah_set_tenant_status('it_sb', 'active')")
        .unwrap();
    settle(&mut c);
    assert_eq!(
        rows(
            &mut c,
            "SELECT r::text FROM messiah_tenant_query('it_sb', 'SELECT count(*) AS n FROM clients') r",
            &[]
        ),
        vec![json!({"n": 1})]
    );

    // a schema of a tenant's name that the project already has is not taken over
    pg.batch_execute("CREATE SCHEMA tenant_it_sb_x; CREATE TABLE tenant_it_sb_x.mine (v int); INSERT INTO tenant_it_sb_x.mine VALUES (7)")
        .unwrap();
    let config_x = config.replace("p1", "p3");
    json(
        &mut c,
        &format!("messiah_create_tenant('it_sb_x', 'SB x', 'it-sb-x', server => 'supa', config => '{config_x}', connector_type => 'supabase')"),
    );
    // the executor or this session tries it; either way it fails and stays queued
    await_failure(
        &mut c,
        "it_sb_x",
        "schema tenant_it_sb_x exists and is not tenant it_sb_x's",
    );
    drop_tenant(&mut c, "it_sb_x");
    let mine: i32 = pg
        .query_one("SELECT v FROM tenant_it_sb_x.mine", &[])
        .unwrap()
        .get(0);
    assert_eq!(mine, 7);

    // a project object that depends on the tenant's tables: the drop touches nothing outside
    // the schema, so it waits (2BP01) until the project removes it
    pg.batch_execute(
        "CREATE VIEW public.sb_report AS SELECT count(*) AS n FROM tenant_it_sb.clients",
    )
    .unwrap();
    c.batch_execute("SELECT messiah_drop_tenant('it_sb')")
        .unwrap();
    await_failure(&mut c, "it_sb", "depend");
    let view: i64 = pg
        .query_one("SELECT n FROM public.sb_report", &[])
        .unwrap()
        .get(0);
    assert_eq!(view, 1);
    pg.batch_execute("DROP VIEW public.sb_report").unwrap();
    settle(&mut c);
    // (a dropped tenant cannot be dropped again with keep_database; checked on the next one)
    let config_k = config.replace("p1", "p4");
    json(
        &mut c,
        &format!("messiah_create_tenant('it_sb', 'SB', 'it-sb', server => 'supa', config => '{config_k}', connector_type => 'supabase')"),
    );
    settle(&mut c);

    // keeping the database is not for a project's database; dropping drops the schema only
    let e = fails(
        &mut c,
        "SELECT messiah_drop_tenant('it_sb', keep_database => true)",
    );
    assert_eq!(sqlstate(&e), "0A000");
    drop_tenant(&mut c, "it_sb");
    let left: (i64, i64) = pg
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_it_sb'), \
                    (SELECT count(*) FROM pg_roles WHERE rolname IN ('tenant_it_sb', 'owner_it_sb'))",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(left, (0, 0));
    assert_eq!(todos(&p), before);
    c.batch_execute("SELECT messiah_drop_server('supa')")
        .unwrap();
}
