//! DESIGN.md decision 8 and enforcement for application roles: an application connected to a
//! tenant database as an ordinary role is validated like anyone else (the trigger reads the
//! definition copy with elevated rights, the role needs none on the messiah schema); an
//! ordinary role in the admin database cannot call management functions.

use crate::common::*;
use postgres::{Client, NoTls};

fn connect_as(role: &str, dbname: &str) -> Client {
    let (host, port) = host_port();
    Client::connect(
        &format!("host={host} port={port} user={role} dbname={dbname}"),
        NoTls,
    )
    .unwrap_or_else(|e| panic!("connecting as {role} to {dbname}: {e}"))
}

#[test]
fn application_role_writes_are_validated() {
    drop_db("tenant_it_sec_app");
    let mut admin = admin_db("messiah_it_sec_app");
    admin
        .batch_execute(
            "SELECT messiah_create_tenant('it_sec_app', 'App', 'it-sec-app'); \
             SELECT messiah_define_field('it_sec_app', 'clients', 'score', 'number', 'Score', \
                 validation_rules => '{\"min\": 0}', default_value => '1')",
        )
        .unwrap();
    settle(&mut admin);
    let mut owner = connect("tenant_it_sec_app");
    owner
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'messiah_it_app') \
             THEN CREATE ROLE messiah_it_app LOGIN; END IF; END $$; \
             GRANT CONNECT ON DATABASE tenant_it_sec_app TO messiah_it_app; \
             GRANT USAGE ON SCHEMA public TO messiah_it_app; \
             GRANT SELECT, INSERT, UPDATE ON clients TO messiah_it_app",
        )
        .unwrap();
    let mut app = connect_as("messiah_it_app", "tenant_it_sec_app");
    // the role has no rights on the messiah schema...
    let e = app
        .query_one("SELECT version FROM messiah.field_snapshot", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    // ...and still gets defaults applied and violations rejected
    let row = app
        .query_one(
            "INSERT INTO clients (name) VALUES ('ok') RETURNING custom_fields::text",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), r#"{"score": 1}"#);
    let e = app
        .execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('bad', '{\"score\": -1}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    assert_eq!(
        e.as_db_error().and_then(|d| d.detail()),
        Some("\"score\" must be >= 0, got -1 (minimum)")
    );
    drop(app);
    admin
        .execute("SELECT messiah_drop_tenant('it_sec_app')", &[])
        .unwrap();
    settle(&mut admin);
    owner.batch_execute("SELECT 1").ok();
}

#[test]
fn ordinary_role_cannot_manage_tenants() {
    let mut admin = admin_db("messiah_it_sec_mgmt");
    admin
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'messiah_it_api') \
             THEN CREATE ROLE messiah_it_api LOGIN; END IF; END $$",
        )
        .unwrap();
    let mut api = connect_as("messiah_it_api", "messiah_it_sec_mgmt");
    for sql in [
        "SELECT messiah_create_tenant('it_sec_nope', 'x', 'it-sec-nope')",
        "SELECT messiah_list_tenants()",
        "SELECT messiah_define_field('x', 'clients', 'a', 'text', 'A')",
        "SELECT * FROM messiah.tenants",
    ] {
        let e = api.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}");
    }
    // granted explicitly, the function works for that role (SECURITY DEFINER)
    admin
        .batch_execute("GRANT EXECUTE ON FUNCTION messiah_list_tenants(text, bigint, bigint) TO messiah_it_api")
        .unwrap();
    let n: i64 = api
        .query_one("SELECT count(*) FROM messiah_list_tenants()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

/// The README's way of delegating tenant management: a plain role given the API with
/// messiah_grant_admin can create and drop tenants (the drop is carried out after COMMIT, as
/// the functions' owner).
#[test]
fn granted_role_creates_and_drops_tenants() {
    drop_db("tenant_it_sec_svc");
    let mut admin = admin_db("messiah_it_sec_svc");
    admin
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'messiah_it_svc') \
             THEN CREATE ROLE messiah_it_svc LOGIN; END IF; END $$; \
             SELECT messiah_grant_admin('messiah_it_svc')",
        )
        .unwrap();
    let mut svc = connect_as("messiah_it_svc", "messiah_it_sec_svc");
    svc.execute(
        "SELECT messiah_create_tenant('it_sec_svc', 'Svc', 'it-sec-svc')",
        &[],
    )
    .unwrap();
    svc.execute(
        "SELECT messiah_define_field('it_sec_svc', 'clients', 'tier', 'text', 'Tier')",
        &[],
    )
    .unwrap();
    settle(&mut svc);
    assert!(db_exists("tenant_it_sec_svc"));
    let dropped: String = svc
        .query_one("SELECT messiah_drop_tenant('it_sec_svc')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        dropped,
        r#"{"database": "tenant_it_sec_svc", "tenant_id": "it_sec_svc", "database_kept": false}"#
    );
    settle(&mut svc);
    assert!(!db_exists("tenant_it_sec_svc"));
}
