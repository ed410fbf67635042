//! Faults found in public bug reports and in the code (issue "Integrity" sections 4 and 5),
//! each as a whole kind: a table whose shape changed under the trigger, a remote connection
//! that broke, a default that contradicts `is_required`, an index that would reject what the
//! validator accepts, pattern semantics that differ by field type, a cluster whose default
//! encoding is not UTF8.

use crate::common::*;
use postgres::Client;

fn tenant(admin: &str, id: &str) -> Client {
    drop_db(&format!("tenant_{id}"));
    let mut c = admin_db(admin);
    c.execute(
        "SELECT messiah_create_tenant($1, 'Faults', $2)",
        &[&id, &id.replace('_', "-")],
    )
    .unwrap();
    c
}

fn define(c: &mut Client, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", message(&e)));
    settle(c);
}

/// The input of the issue: `ALTER TABLE activities ALTER COLUMN custom_fields TYPE json`, then
/// an INSERT with a defined field crashed the backend (signal 11) and restarted the cluster.
/// The trigger now verifies the column at every call; every way of changing it is a clean
/// error, and a column re-added as jsonb works again.
#[test]
fn the_trigger_verifies_the_table_at_every_call() {
    let id = "it_fx_shape";
    let mut c = tenant("messiah_it_fx_shape", id);
    define(
        &mut c,
        "SELECT messiah_define_field('it_fx_shape', 'activities', 'hours', 'number', 'Hours', validation_rules => '{\"min\": 0}')",
    );
    let mut t = connect_retry(&format!("tenant_{id}"));
    t.batch_execute(
        "INSERT INTO activities (type, custom_fields) VALUES ('call', '{\"hours\": 1}')",
    )
    .unwrap();
    let cases = [
        (
            "ALTER TABLE activities ALTER COLUMN custom_fields TYPE json USING custom_fields::json",
            "INSERT INTO activities (type, custom_fields) VALUES ('call', '{\"hours\": 2}')",
            "42804",
            "column custom_fields of relation \"activities\" is of type json, but messiah.enforce_custom_fields() needs jsonb",
        ),
        (
            "ALTER TABLE activities ALTER COLUMN custom_fields TYPE text USING custom_fields::text",
            "INSERT INTO activities (type, custom_fields) VALUES ('call', '{\"hours\": 2}')",
            "42804",
            "column custom_fields of relation \"activities\" is of type text, but messiah.enforce_custom_fields() needs jsonb",
        ),
        (
            "ALTER TABLE activities RENAME COLUMN custom_fields TO extra",
            "INSERT INTO activities (type) VALUES ('call')",
            "42703",
            "relation \"activities\" has no custom_fields column, which messiah.enforce_custom_fields() validates",
        ),
        (
            "ALTER TABLE activities DROP COLUMN extra",
            "INSERT INTO activities (type) VALUES ('call')",
            "42703",
            "relation \"activities\" has no custom_fields column, which messiah.enforce_custom_fields() validates",
        ),
    ];
    for (alter, insert, code, msg) in cases {
        t.batch_execute(alter).unwrap();
        let e = t.batch_execute(insert).unwrap_err();
        assert_eq!(
            (sqlstate(&e).as_str(), message(&e).as_str()),
            (code, msg),
            "after {alter}"
        );
        // the session (and the cluster) survive
        t.batch_execute("SELECT 1").unwrap();
        if alter.contains("TYPE") {
            t.batch_execute("ALTER TABLE activities ALTER COLUMN custom_fields TYPE jsonb USING custom_fields::jsonb")
                .unwrap();
        }
    }
    // re-added as jsonb, at a new attribute number: enforced again
    t.batch_execute("ALTER TABLE activities ADD COLUMN custom_fields jsonb DEFAULT '{}'")
        .unwrap();
    t.batch_execute(
        "INSERT INTO activities (type, custom_fields) VALUES ('call', '{\"hours\": 3}')",
    )
    .unwrap();
    let e = t
        .batch_execute(
            "INSERT INTO activities (type, custom_fields) VALUES ('call', '{\"hours\": -3}')",
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    drop(t);
    drop_tenant(&mut c, id);
}

/// The input of the issue: with `idle_session_timeout = 1s` on the admin database, a session
/// that created a tenant, waited 2 s and created another failed for the rest of the session
/// ("no connection to the server"). A broken connection is now detected, discarded and
/// reopened; the kind: the server ended it while idle, it was terminated, or it timed out.
#[test]
fn a_broken_remote_connection_is_reopened() {
    let db = "messiah_it_fx_conn";
    for t in ["it_fx_c1", "it_fx_c2", "it_fx_c3", "it_fx_c4"] {
        drop_db(&format!("tenant_{t}"));
    }
    let mut admin = admin_db(db);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET idle_session_timeout = '1s'"
        ))
        .unwrap();
    let mut s = connect_retry(db);
    s.batch_execute("SET idle_session_timeout = 0").unwrap();
    s.batch_execute("SELECT messiah_create_tenant('it_fx_c1', 'C1', 'it-fx-c1')")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    s.batch_execute("SELECT messiah_create_tenant('it_fx_c2', 'C2', 'it-fx-c2')")
        .unwrap();
    // messiah's own idle limit ends the connection on the server side
    s.batch_execute("SET messiah.remote_idle_timeout = 300")
        .unwrap();
    s.batch_execute("SELECT messiah_create_tenant('it_fx_c3', 'C3', 'it-fx-c3')")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    s.batch_execute("SELECT messiah_create_tenant('it_fx_c4', 'C4', 'it-fx-c4')")
        .unwrap();
    // terminated by someone else
    s.batch_execute("RESET messiah.remote_idle_timeout")
        .unwrap();
    let mut pg = connect_retry("postgres");
    pg.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE application_name = 'messiah' AND datname = $1",
        &[&db],
    )
    .unwrap();
    for t in ["it_fx_c1", "it_fx_c2", "it_fx_c3", "it_fx_c4"] {
        s.execute("SELECT messiah_drop_tenant($1)", &[&t]).unwrap();
    }
    settle(&mut s);
    for t in ["it_fx_c1", "it_fx_c2", "it_fx_c3", "it_fx_c4"] {
        assert!(!db_exists(&format!("tenant_{t}")), "{t}");
    }
}

/// The input of the issue: a required json field with `default_value => 'null'` was accepted
/// and inserts stored `{"meta": null}`, which check_existing then reported. A default passes
/// every rule of its field, is_required included, for every type.
#[test]
fn a_default_passes_is_required() {
    let id = "it_fx_default";
    let mut c = tenant("messiah_it_fx_default", id);
    let e = fails(
        &mut c,
        "SELECT messiah_define_field('it_fx_default', 'clients', 'meta', 'json', 'Meta', is_required => true, default_value => 'null')",
    );
    assert_eq!(
        (sqlstate(&e).as_str(), message(&e).as_str()),
        (
            "22023",
            "field \"meta\": default value \"null\" is invalid: \"meta\" is required"
        )
    );
    // not required: null means "no value", as for any optional field
    define(
        &mut c,
        "SELECT messiah_define_field('it_fx_default', 'clients', 'meta', 'json', 'Meta', default_value => '{\"a\": 1}', is_required => true)",
    );
    let mut t = connect_retry(&format!("tenant_{id}"));
    let stored: String = t
        .query_one(
            "INSERT INTO clients (name) VALUES ('x') RETURNING custom_fields::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, r#"{"meta": {"a": 1}}"#);
    let r = json(&mut c, "messiah_check_existing('it_fx_default', 'clients')");
    assert_eq!(r["violations"], 0, "{r}");
    drop(t);
    drop_tenant(&mut c, id);
}

/// The input of the issue: a sortable text field with a 6.4 kB value; the validator said
/// valid and the INSERT failed with 54000 from the btree index. Now the validator says it
/// first, per field (index_limit), for every type, and validator and trigger agree.
#[test]
fn indexes_accept_what_the_validator_accepts() {
    let id = "it_fx_index";
    let mut c = tenant("messiah_it_fx_index", id);
    for (name, ty) in [
        ("note", "text"),
        ("amount", "number"),
        ("doc", "json"),
        ("tag", "select"),
    ] {
        let rules = if ty == "select" {
            format!(
                ", validation_rules => '{{\"options\": [\"a\", \"{}\"]}}'",
                "b".repeat(2100)
            )
        } else {
            String::new()
        };
        define(
            &mut c,
            &format!("SELECT messiah_define_field('{id}', 'clients', '{name}', '{ty}', '{name}', is_sortable => true{rules})"),
        );
    }
    let mut t = connect_retry(&format!("tenant_{id}"));
    let long = "x".repeat(6400);
    // 4,100 significant digits: a NUMERIC of about 2 kB
    let big_number = format!("1{}", "23456789".repeat(512));
    for (doc, field) in [
        (format!("{{\"note\": \"{long}\"}}"), "note"),
        (format!("{{\"amount\": {big_number}}}"), "amount"),
        (format!("{{\"doc\": [\"{long}\"]}}"), "doc"),
        (format!("{{\"tag\": \"{}\"}}", "b".repeat(2100)), "tag"),
    ] {
        let verdict = json(
            &mut c,
            &format!("messiah_validate_custom_fields('{id}', 'clients', '{doc}')"),
        );
        assert_eq!(verdict[0]["code"], "index_limit", "{field}: {verdict}");
        assert_eq!(verdict[0]["field"], field);
        let e = t
            .batch_execute(&format!(
                "INSERT INTO clients (name, custom_fields) VALUES ('x', '{doc}')"
            ))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "23514", "{field}: {e}");
        let detail = e
            .as_db_error()
            .and_then(|d| d.detail())
            .unwrap_or_default()
            .to_string();
        assert!(detail.ends_with("(index_limit)"), "{detail}");
    }
    // up to the limit, the index takes it
    t.batch_execute(&format!(
        "INSERT INTO clients (name, custom_fields) VALUES ('x', '{{\"note\": \"{}\"}}')",
        "y".repeat(2000)
    ))
    .unwrap();
    drop(t);
    drop_tenant(&mut c, id);
}

/// The input of the issue: a text field with pattern `^\d{5}$` accepted Arabic-Indic digits
/// while the same pattern in a json field's schema rejected them. Both follow JSON Schema's
/// (ECMA-262) classes now.
#[test]
fn text_patterns_follow_json_schema() {
    let id = "it_fx_pattern";
    let mut c = tenant("messiah_it_fx_pattern", id);
    define(
        &mut c,
        "SELECT messiah_define_field('it_fx_pattern', 'clients', 'zip', 'text', 'Zip', validation_rules => '{\"pattern\": \"^\\\\d{5}$\"}'); \
         SELECT messiah_define_field('it_fx_pattern', 'clients', 'zip_doc', 'json', 'Zip doc', validation_rules => '{\"schema\": {\"type\": \"string\", \"pattern\": \"^\\\\d{5}$\"}}')",
    );
    let mut t = connect_retry(&format!("tenant_{id}"));
    let arabic = "\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}";
    for field in ["zip", "zip_doc"] {
        let e = t
            .batch_execute(&format!("INSERT INTO clients (name, custom_fields) VALUES ('x', '{{\"{field}\": \"{arabic}\"}}')"))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "23514", "{field}");
        t.batch_execute(&format!(
            "INSERT INTO clients (name, custom_fields) VALUES ('x', '{{\"{field}\": \"12345\"}}')"
        ))
        .unwrap();
    }
    drop(t);
    drop_tenant(&mut c, id);
}

/// A cluster whose default encoding is LATIN1: the template and tenant databases are created
/// UTF8 anyway, and the extension refuses a non-UTF8 admin database with a clear error.
#[test]
fn a_latin1_cluster_gets_utf8_tenant_databases() {
    let other = OtherCluster::start(
        "/tmp/messiah-it-latin1",
        28818,
        Some("LATIN1"),
        "shared_preload_libraries = 'messiah'\nmax_worker_processes = 16",
    );
    let mut pg = other.connect("postgres");
    let e = pg.batch_execute("CREATE EXTENSION messiah").unwrap_err();
    assert_eq!(sqlstate(&e), "0A000", "{e}");
    assert_eq!(
        message(&e),
        "messiah needs a UTF8 database; this one is LATIN1"
    );
    pg.batch_execute("CREATE DATABASE admin_utf8 ENCODING 'UTF8' TEMPLATE template0")
        .unwrap();
    let mut admin = other.connect("admin_utf8");
    admin.batch_execute("CREATE EXTENSION messiah").unwrap();
    admin
        .batch_execute(
            "SELECT messiah_create_tenant('it_l1', 'Latin', 'it-l1'); \
             SELECT messiah_define_field('it_l1', 'clients', 'café', 'text', 'Café', is_filterable => false)",
        )
        .unwrap_err();
    admin
        .batch_execute(
            "SELECT messiah_create_tenant('it_l1', 'Latin', 'it-l1'); \
             SELECT messiah_define_field('it_l1', 'clients', 'city', 'select', 'City', validation_rules => '{\"options\": [\"São Paulo\", \"Zürich\"]}')",
        )
        .unwrap();
    settle(&mut admin);
    let encodings: Vec<(String, String)> = pg
        .query(
            "SELECT datname, pg_encoding_to_char(encoding) FROM pg_database \
             WHERE datname LIKE 'tenant\\_%' OR datname LIKE 'messiah\\_template\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(encodings.len(), 2, "{encodings:?}");
    assert!(encodings.iter().all(|(_, e)| e == "UTF8"), "{encodings:?}");
    let mut t = other.connect("tenant_it_l1");
    t.batch_execute(
        "INSERT INTO clients (name, custom_fields) VALUES ('Zé', '{\"city\": \"São Paulo\"}')",
    )
    .unwrap();
    let e = t
        .batch_execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('x', '{\"city\": \"Sao Paulo\"}')",
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
}
