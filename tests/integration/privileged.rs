//! The privileged surface (DESIGN.md decision 8; issue "Security" sections 2-5): secrets
//! never reach results, errors, the server log or a dump, and rotate with their key; read-only
//! work opens no connection, so sessions never multiply the cluster's backends; every catalog
//! argument is bounded; tenant databases expose nothing to PUBLIC.

use crate::common::*;
use postgres::{Client, NoTls};

fn connect_as(role: &str, dbname: &str) -> Result<Client, postgres::Error> {
    let (host, port) = host_port();
    Client::connect(
        &format!("host={host} port={port} user={role} dbname={dbname}"),
        NoTls,
    )
}

fn create_role(c: &mut Client, role: &str) {
    c.batch_execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \
         THEN CREATE ROLE {role} LOGIN; END IF; END $$"
    ))
    .unwrap();
}

/// Writes a key file (mode 0600, owned by postgres) with `keys` (hex) and returns its path.
fn key_file(name: &str, keys: &[&str]) -> String {
    let path = format!("/tmp/messiah-it-keys/{name}");
    std::fs::create_dir_all("/tmp/messiah-it-keys").unwrap();
    std::fs::write(&path, keys.join("\n") + "\n").unwrap();
    assert!(std::process::Command::new("chmod")
        .args(["600", &path])
        .status()
        .unwrap()
        .success());
    assert!(std::process::Command::new("chown")
        .args(["postgres:postgres", &path, "/tmp/messiah-it-keys"])
        .status()
        .unwrap()
        .success());
    path
}

const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// The server log of the test cluster.
fn server_log() -> String {
    let (host, _) = host_port();
    std::fs::read_to_string(format!("{host}/log")).unwrap_or_default()
}

fn pg_dump(db: &str) -> String {
    let (host, port) = host_port();
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .args(["-h", &host, "-p", &port.to_string(), "-U", "postgres", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The input of the issue: a create with a literal service key, run twice; the second fails
/// with 23505, and the server log's STATEMENT line carried the key. Now no secret reaches a
/// result, an error, the log, or a pg_dump of the admin database.
#[test]
fn secrets_never_reach_results_errors_the_log_or_a_dump() {
    drop_db("tenant_it_sec_p1");
    let mut admin = admin_db("messiah_it_secrets");
    let secret = format!("sk_SECRET_{}", std::process::id());
    let anon = format!("anon_SECRET_{}", std::process::id());
    let create = format!(
        "SELECT messiah_create_tenant('it_sec_p1', 'P1', 'it-sec-p1', config => '{{\"supabase_project_id\":\"p1\", \
         \"supabase_url\": \"https://p1.example.test\", \"anon_key\":\"{anon}\", \"service_key\":\"{secret}\"}}')"
    );
    let first = admin.simple_query(&create).unwrap();
    let e = admin.batch_execute(&create).unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    // a control statement that fails with a literal of its own is logged: the log works
    let control = format!("control_{}", std::process::id());
    assert!(admin
        .batch_execute(&format!("SELECT '{control}'::int"))
        .is_err());
    assert!(
        wait_until(10, || server_log().contains(&control)),
        "the control statement never reached the server log"
    );
    let mut seen = format!("{first:?} {e:?} {}", message(&e));
    for sql in [
        "SELECT messiah_get_tenant('it_sec_p1')::text",
        "SELECT string_agg(t::text, ',') FROM messiah_list_tenants() t",
        "SELECT coalesce(string_agg(r::text, ','), '') FROM messiah_reconcile(deep => true) r",
    ] {
        seen.push_str(&admin.query_one(sql, &[]).unwrap().get::<_, String>(0));
    }
    for s in [&secret, &anon] {
        assert!(!seen.contains(s.as_str()), "a result or error carried {s}");
        assert_eq!(
            server_log().matches(s.as_str()).count(),
            0,
            "the server log carries {s}"
        );
    }
    let dump = pg_dump("messiah_it_secrets");
    assert!(dump.contains("it_sec_p1"), "the dump carries the catalog");
    assert!(dump.contains("msk1:"), "the dump carries the ciphertexts");
    for s in [&secret, &anon] {
        assert_eq!(dump.matches(s.as_str()).count(), 0, "pg_dump carries {s}");
    }
    // the one function that reveals it
    let got: String = admin
        .query_one("SELECT messiah_get_secret('it_sec_p1', 'service_key')", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, secret);
    drop_tenant(&mut admin, "it_sec_p1");
}

/// Rotation: a new key first in the file, the old one below; messiah_rotate_key re-encrypts
/// everything in one transaction; then the old key can go. Without a usable key file only the
/// functions that need a secret fail, with F0000.
#[test]
fn keys_rotate_and_a_missing_key_file_fails_only_what_needs_it() {
    for t in ["it_key_a", "it_key_b"] {
        drop_db(&format!("tenant_{t}"));
    }
    let db = "messiah_it_keys";
    let mut admin = admin_db(db);
    let old = key_file("old.key", &[KEY_A]);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '{old}'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    let cfg = |k: &str| {
        format!(
            "'{{\"supabase_project_id\": \"p\", \"supabase_url\": \"https://p.test\", \"anon_key\": \"anon-{k}\", \"service_key\": \"svc-{k}\"}}'"
        )
    };
    for t in ["it_key_a", "it_key_b"] {
        admin
            .batch_execute(&format!(
                "SELECT messiah_create_tenant('{t}', 'K', '{}', config => {})",
                t.replace('_', "-"),
                cfg(t)
            ))
            .unwrap();
    }
    let key_ids = |c: &mut Client| -> Vec<String> {
        c.query(
            "SELECT DISTINCT split_part(service_key, ':', 2) FROM messiah.tenant_supabase_configs \
             UNION SELECT DISTINCT split_part(anon_key, ':', 2) FROM messiah.tenant_supabase_configs",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let before = key_ids(&mut admin);
    assert_eq!(before.len(), 1);
    // rotation
    let both = key_file("both.key", &[KEY_B, KEY_A]);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '{both}'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    let n: i64 = admin
        .query_one("SELECT messiah_rotate_key()", &[])
        .unwrap()
        .get(0);
    // 4 secrets re-encrypted, and both tenants' role passwords moved to the new key
    assert_eq!(n, 6);
    let moved: i64 = admin
        .query_one(
            "SELECT count(*) FROM messiah.tenants WHERE tenant_id IN ('it_key_a', 'it_key_b') \
             AND credential_version = 2",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(moved, 2);
    let after = key_ids(&mut admin);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    let new_only = key_file("new.key", &[KEY_B]);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '{new_only}'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    let got: String = admin
        .query_one("SELECT messiah_get_secret('it_key_b', 'anon_key')", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, "anon-it_key_b");
    // the old key alone cannot read what the new one sealed: F0000 naming the key
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '{old}'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    let e = fails(
        &mut admin,
        "SELECT messiah_get_secret('it_key_a', 'service_key')",
    );
    assert_eq!(sqlstate(&e), "F0000", "{e}");
    assert!(message(&e).contains(&after[0]), "{e}");
    // no key file at all
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '/tmp/messiah-it-keys/missing.key'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    for sql in [
        "SELECT messiah_get_secret('it_key_a', 'service_key')".to_string(),
        "SELECT messiah_rotate_key()".to_string(),
        format!(
            "SELECT messiah_set_supabase_config('it_key_a', {})",
            cfg("x")
        ),
        format!(
            "SELECT messiah_create_tenant('it_key_c', 'K', 'it-key-c', config => {})",
            cfg("c")
        ),
    ] {
        let e = fails(&mut admin, &sql);
        assert_eq!(sqlstate(&e), "F0000", "{sql}: {e}");
    }
    assert_eq!(tenant_rows(&mut admin, "it_key_c"), 0);
    // everything else keeps working
    admin
        .batch_execute(
            "SELECT messiah_get_tenant('it_key_a'); SELECT count(*) FROM messiah_list_tenants()",
        )
        .unwrap();
    // a key file other OS users can read is refused
    let loose = key_file("loose.key", &[KEY_A]);
    std::process::Command::new("chmod")
        .args(["644", &loose])
        .status()
        .unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '{loose}'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    let e = fails(
        &mut admin,
        "SELECT messiah_get_secret('it_key_a', 'service_key')",
    );
    assert_eq!(sqlstate(&e), "F0000", "{e}");
    assert!(message(&e).contains("readable by other OS users"), "{e}");
    // the rotated role passwords cannot be set up without a usable key: fixed by the operator
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.key_file = '{new_only}'"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    for t in ["it_key_a", "it_key_b"] {
        drop_tenant(&mut admin, t);
    }
}

/// The input of the issue: with max_connections = 200, 110 sessions of a granted role each ran
/// messiah_reconcile() and stayed connected; each kept a loopback backend open, 199 of 200
/// slots filled and superusers were refused. Now read-only work opens no connection.
#[test]
fn read_only_calls_never_multiply_backends() {
    let db = "messiah_it_slots";
    let role = "messiah_it_slot_user";
    let mut admin = admin_db(db);
    create_role(&mut admin, role);
    admin
        .batch_execute(&format!("SELECT messiah_grant_admin('{role}')"))
        .unwrap();
    drop_db("tenant_it_slots");
    admin
        .batch_execute("SELECT messiah_create_tenant('it_slots', 'Slots', 'it-slots')")
        .unwrap();
    let messiah_backends = || -> i64 {
        connect_retry("postgres")
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'messiah' AND datname = $1",
                &[&db],
            )
            .unwrap()
            .get(0)
    };
    // (the creating session may keep its maintenance connection for messiah.remote_idle_timeout)
    let before = messiah_backends();
    let mut sessions = Vec::new();
    for _ in 0..110 {
        let mut s = connect_as(role, db).expect("a session of the granted role");
        let n: i64 = s
            .query_one(
                "SELECT count(*) FROM messiah_reconcile() WHERE tenant_id = 'it_slots'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        s.batch_execute(
            "SELECT count(*) FROM messiah_list_tenants(); SELECT messiah_get_tenant('it_slots')",
        )
        .unwrap();
        sessions.push(s);
    }
    let mut pg = connect_retry("postgres");
    let here: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name <> 'messiah' \
             AND backend_type = 'client backend'",
            &[&db],
        )
        .unwrap()
        .get(0);
    assert!(
        messiah_backends() <= before,
        "messiah opened connections for read-only work"
    );
    assert!(here <= 110 + 1, "{here} backends for 110 sessions");
    // superusers still get in
    connect_retry("postgres").batch_execute("SELECT 1").unwrap();
    drop(sessions);
    drop_tenant(&mut admin, "it_slots");
}

/// Every catalog argument has a limit; names have no control characters; the contact e-mail
/// follows the field engine's e-mail rule. Nothing is written by a refused call.
#[test]
fn catalog_arguments_are_bounded() {
    let mut admin = admin_db("messiah_it_bounds");
    let big_name = format!("'{}'", "x".repeat(1_000_000));
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("SELECT messiah_create_tenant('it_b1', {big_name}, 'it-b1')"), "54000", "name is too long: 1000000 characters, at most 200"),
        ("SELECT messiah_create_tenant('it_b1', E'Acme\\nInc', 'it-b1')".into(), "22023", "name must not contain control characters (found U+000A)"),
        ("SELECT messiah_create_tenant('it_b1', E'Acme\\x01', 'it-b1')".into(), "22023", "name must not contain control characters (found U+0001)"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_name => E'Ann\\tB')".into(), "22023", "contact_name must not contain control characters (found U+0009)"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', settings => jsonb_build_object('blob', repeat('x', 10000000)))".into(), "54000", "settings is too large: 10000011 bytes, at most 65536"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_email => 'a@.')".into(), "22023", "contact_email \"a@.\" is not an e-mail address"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_email => 'ops@example.test.')".into(), "22023", "contact_email \"ops@example.test.\" is not an e-mail address"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_email => '<a@b.c>')".into(), "22023", "contact_email \"<a@b.c>\" is not an e-mail address"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_email => 'a@b,c')".into(), "22023", "contact_email \"a@b,c\" is not an e-mail address"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_email => 'a@b..c')".into(), "22023", "contact_email \"a@b..c\" is not an e-mail address"),
        (format!("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', contact_email => '{}@b.c')", "a".repeat(300)), "54000", "contact_email is too large: 304 bytes, at most 254"),
        ("SELECT messiah_create_tenant('it_b1', 'Acme', 'it-b1', config => jsonb_build_object('supabase_project_id', 'p', 'supabase_url', repeat('u', 5000), 'anon_key', 'a', 'service_key', 's'))".into(), "54000", "config.supabase_url is too large: 5000 bytes, at most 4096"),
    ];
    for (sql, code, msg) in &cases {
        let e = fails(&mut admin, sql);
        assert_eq!(
            (sqlstate(&e).as_str(), message(&e).as_str()),
            (*code, *msg),
            "{}",
            &sql[..sql.len().min(120)]
        );
    }
    assert_eq!(tenant_rows(&mut admin, "it_b1"), 0);
    drop_db("tenant_it_b2");
    admin
        .batch_execute("SELECT messiah_create_tenant('it_b2', 'Fine', 'it-b2', contact_email => 'ops@acme.test')")
        .unwrap();
    for (sql, code, msg) in [
        ("SELECT messiah_update_tenant('it_b2', jsonb_build_object('name', repeat('n', 201)))", "54000", "name is too long: 201 characters, at most 200"),
        ("SELECT messiah_update_tenant('it_b2', '{\"contact_email\": \"a@b..c\"}')", "22023", "contact_email \"a@b..c\" is not an e-mail address"),
        ("SELECT messiah_update_tenant('it_b2', jsonb_build_object('settings', jsonb_build_object('x', repeat('s', 70000))))", "54000", "patch is too large: 70021 bytes, at most 65536"),
        ("SELECT messiah_define_field('it_b2', 'clients', 'f', 'text', repeat('d', 201))", "54000", "field \"f\": display_name is too long: 201 characters, at most 200"),
        ("SELECT messiah_define_field('it_b2', 'clients', 'f', 'text', E'D\\u0007')", "22023", "field \"f\": display_name must not contain control characters (found U+0007)"),
        ("SELECT messiah_define_field('it_b2', 'clients', 'f', 'text', 'F', description => repeat('d', 2001))", "54000", "field \"f\": description is too long: 2001 characters, at most 2000"),
        ("SELECT messiah_define_field('it_b2', 'clients', 'f', 'text', 'F', default_value => repeat('d', 9000))", "54000", "field \"f\": default_value is too large: 9000 bytes, at most 8192"),
        ("SELECT messiah_define_field('it_b2', 'clients', 'f', 'text', 'F', ui_config => jsonb_build_object('x', repeat('u', 70000)))", "54000", "field \"f\": ui_config is too large: 70008 bytes, at most 65536"),
    ] {
        let e = fails(&mut admin, sql);
        assert_eq!((sqlstate(&e).as_str(), message(&e).as_str()), (code, msg), "{sql}");
    }
    let fields: i64 = admin
        .query_one(
            "SELECT count(*) FROM messiah.extension_field_definitions",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(fields, 0);
    drop_tenant(&mut admin, "it_b2");
}

/// A tenant database holds the tenant's tables and only what enforcement needs; nothing in
/// it is reachable by PUBLIC, and no login role can connect to it by default.
#[test]
fn tenant_databases_expose_nothing() {
    drop_db("tenant_it_exposed");
    let mut admin = admin_db("messiah_it_exposed");
    admin
        .batch_execute("SELECT messiah_create_tenant('it_exposed', 'Exposed', 'it-exposed')")
        .unwrap();
    let role = "messiah_it_stranger";
    create_role(&mut admin, role);
    let e = connect_as(role, "tenant_it_exposed")
        .err()
        .expect("a stranger connected");
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let mut t = connect_retry("tenant_it_exposed");
    let r = t
        .query_one(
            "SELECT (SELECT count(*) FROM pg_proc WHERE proname LIKE 'messiah\\_%'), \
                    (SELECT count(*) FROM pg_proc WHERE proname LIKE 'dblink%'), \
                    (SELECT count(*) FROM pg_extension WHERE extname IN ('messiah', 'dblink')), \
                    (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'messiah'::regnamespace \
                       AND has_function_privilege('public', p.oid, 'execute')), \
                    (SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'messiah'::regnamespace \
                       AND has_table_privilege('public', c.oid, 'select')), \
                    has_schema_privilege('public', 'messiah', 'usage'), \
                    has_database_privilege('public', current_database(), 'connect'), \
                    has_database_privilege('public', current_database(), 'temporary'), \
                    (SELECT extversion FROM pg_extension WHERE extname = 'messiah_tenant')",
            &[],
        )
        .unwrap();
    assert_eq!(
        r.get::<_, i64>(0),
        0,
        "messiah_* admin functions in a tenant database"
    );
    assert_eq!(
        r.get::<_, i64>(1),
        0,
        "dblink functions in a tenant database"
    );
    assert_eq!(r.get::<_, i64>(2), 0);
    assert_eq!(r.get::<_, i64>(3), 0, "functions executable by PUBLIC");
    assert_eq!(r.get::<_, i64>(4), 0, "tables readable by PUBLIC");
    assert!(!r.get::<_, bool>(5));
    assert!(!r.get::<_, bool>(6));
    assert!(!r.get::<_, bool>(7));
    assert_eq!(r.get::<_, String>(8), env!("CARGO_PKG_VERSION"));
    drop(t);
    drop_tenant(&mut admin, "it_exposed");
}
