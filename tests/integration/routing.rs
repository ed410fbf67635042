//! Routing into tenant databases (issue "Where tenants live"): messiah_tenant_query / insert /
//! update / delete / disconnect run as the tenant's application role; statements that try to
//! leave the tenant are refused; suspended means suspended; limits and caps; cancel, timeout
//! and a server stopped mid-session.

use crate::common::*;
use postgres::Client;
use serde_json::{json, Value};

/// A fresh admin database `messiah_it_<admin>` with the given tenants created and settled
/// (their roles exist).
fn setup(admin: &str, tenants: &[&str]) -> Client {
    for t in tenants {
        drop_db(&format!("tenant_{t}"));
    }
    let mut c = admin_db(&format!("messiah_it_{admin}"));
    for t in tenants {
        c.execute(
            "SELECT messiah_create_tenant($1, $1, $2)",
            &[t, &t.replace('_', "-")],
        )
        .unwrap();
    }
    settle(&mut c);
    c
}

/// The rows of a routed query, as JSON values.
fn query(
    c: &mut Client,
    tenant: &str,
    sql: &str,
    params: Value,
) -> Result<Vec<Value>, postgres::Error> {
    c.query(
        "SELECT r::text FROM messiah_tenant_query($1, $2, $3::text::jsonb) r",
        &[&tenant, &sql, &params.to_string()],
    )
    .map(|rows| {
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
            .collect()
    })
}

/// A JSON value from its text (numbers exactly as written).
fn exact(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// SQLSTATE, message and CONTEXT of an error.
fn parts(e: &postgres::Error) -> (String, String, String) {
    let d = e.as_db_error().expect("a server error");
    (
        d.code().code().to_string(),
        d.message().to_string(),
        d.where_().unwrap_or("").to_string(),
    )
}

#[test]
fn routed_calls_read_and_write_as_the_tenant() {
    let t = "it_rt_a";
    let mut c = setup("rt_a", &[t]);
    c.batch_execute(&format!(
        "SELECT messiah_define_field('{t}', 'clients', 'country', 'select', 'Country', \
             validation_rules => '{{\"options\": [\"Brazil\", \"Canada\"]}}'); \
         SELECT messiah_define_field('{t}', 'clients', 'total', 'number', 'Total')"
    ))
    .unwrap();
    settle(&mut c);
    // insert: the top-level field moves into custom_fields
    let row = json(
        &mut c,
        &format!(
            "messiah_tenant_insert('{t}', 'clients', '{{\"id\": \"00000000-0000-0000-0000-0000000000a1\", \
             \"name\": \"Ana\", \"email\": \"ana@example.com\", \"country\": \"Brazil\", \
             \"custom_fields\": {{\"total\": 12345678901234567890.5}}}}')"
        ),
    );
    assert_eq!(row["name"], "Ana");
    assert_eq!(
        row["custom_fields"],
        exact(r#"{"country": "Brazil", "total": 12345678901234567890.5}"#)
    );
    assert_eq!(
        row["custom_fields"]["total"].to_string(),
        "12345678901234567890.5"
    );
    // validated before it is sent, and by the trigger
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_insert('{t}', 'clients', '{{\"name\": \"Bo\", \"country\": \"Peru\"}}')"),
    );
    assert_eq!(sqlstate(&e), "23514", "{e}");
    // query: params bound, scalars untyped (uuid inferred), exact numbers, jsonb as JSON
    let rows = query(
        &mut c,
        t,
        "SELECT id, name, custom_fields, (custom_fields->>'total')::numeric AS total, true AS ok \
         FROM clients WHERE id = $1 AND name = $2",
        json!(["00000000-0000-0000-0000-0000000000a1", "Ana"]),
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![exact(
            r#"{"id": "00000000-0000-0000-0000-0000000000a1", "name": "Ana",
                "custom_fields": {"country": "Brazil", "total": 12345678901234567890.5},
                "total": 12345678901234567890.5, "ok": true}"#
        )]
    );
    // objects and arrays are jsonb parameters
    let rows = query(
        &mut c,
        t,
        "SELECT $1 @> '{\"a\": 1}' AS has",
        json!([{"a": 1, "b": 2}]),
    )
    .unwrap();
    assert_eq!(rows, vec![json!({"has": true})]);
    // update: base columns set, custom_fields merged (RFC 7396), validated
    let updated = query_rows(
        &mut c,
        &format!(
            "SELECT r::text FROM messiah_tenant_update('{t}', 'clients', \
             '{{\"phone\": \"555\", \"country\": \"Canada\", \"custom_fields\": {{\"total\": null}}}}', \
             '{{\"id\": \"00000000-0000-0000-0000-0000000000a1\"}}') r"
        ),
    );
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["phone"], "555");
    assert_eq!(updated[0]["custom_fields"], json!({"country": "Canada"}));
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_update('{t}', 'clients', '{{\"country\": \"Peru\"}}', '{{\"name\": \"Ana\"}}')"),
    );
    assert_eq!(sqlstate(&e), "23514", "{e}");
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_update('{t}', 'clients', '{{\"phone\": \"1\"}}', '{{}}')"),
    );
    assert_eq!(sqlstate(&e), "22023", "{e}");
    assert!(message(&e).contains("empty match"), "{e}");
    // unknown table and column, named by the server
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_insert('{t}', 'nope', '{{\"a\": 1}}')"),
    );
    assert_eq!(parts(&e).0, "42P01", "{e}");
    assert!(parts(&e).1.contains("nope"), "{e}");
    assert!(
        parts(&e)
            .2
            .contains(&format!("tenant \"{t}\" on server \"local\"")),
        "{e}"
    );
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_delete('{t}', 'clients', '{{\"shoe_size\": 1}}')"),
    );
    assert_eq!(sqlstate(&e), "42703", "{e}");
    // too few parameters: the server's own error, with the tenant named
    let e = query(&mut c, t, "SELECT $1::int + $2::int", json!([1])).unwrap_err();
    let (code, msg, context) = parts(&e);
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("42P02", "there is no parameter $2"),
        "{e}"
    );
    assert!(context.contains(&format!("tenant \"{t}\"")), "{context}");
    // too many: the extra one's type cannot be inferred
    let e = query(&mut c, t, "SELECT $1::int AS a", json!([1, 2])).unwrap_err();
    let (code, msg, _) = parts(&e);
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("42P18", "could not determine data type of parameter $2"),
        "{e}"
    );
    // the connection is still good after both
    assert_eq!(
        query(&mut c, t, "SELECT $1::int AS a", json!([7])).unwrap(),
        vec![json!({"a": 7})]
    );
    let e = query(&mut c, t, "SELECT 1", json!({"a": 1})).unwrap_err();
    assert_eq!(sqlstate(&e), "22023", "{e}");
    // delete: the count
    let n: i64 = c
        .query_one(
            &format!("SELECT messiah_tenant_delete('{t}', 'clients', '{{\"name\": \"Ana\"}}')"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_delete('{t}', 'clients', '{{}}')"),
    );
    assert_eq!(sqlstate(&e), "22023", "{e}");
    // the statements ran as the tenant's application role
    let who = query(
        &mut c,
        t,
        "SELECT current_user AS u, session_user AS s",
        json!([]),
    )
    .unwrap();
    assert_eq!(
        who,
        vec![json!({"u": format!("tenant_{t}"), "s": format!("tenant_{t}")})]
    );
    // disconnect closes this backend's connection to the tenant
    let n: i64 = c
        .query_one(&format!("SELECT messiah_tenant_disconnect('{t}')"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop_tenant(&mut c, t);
    // its roles went with it
    let roles: i64 = connect("postgres")
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)",
            &[&vec![format!("tenant_{t}"), format!("owner_{t}")]],
        )
        .unwrap()
        .get(0);
    assert_eq!(roles, 0);
}

/// The rows (jsonb text, first column) of a query, as JSON values.
fn query_rows(c: &mut Client, sql: &str) -> Vec<Value> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect()
}

/// Every statement that tries to leave the tenant is refused, and another tenant's sentinel
/// row is unchanged.
#[test]
fn routed_statements_cannot_leave_the_tenant() {
    let (a, b) = ("it_rt_atk_a", "it_rt_atk_b");
    let mut c = setup("rt_atk", &[a, b]);
    let sentinel = format!(
        "SELECT messiah_tenant_insert('{b}', 'clients', '{{\"name\": \"sentinel\", \"email\": \"s@b.example\"}}')"
    );
    c.batch_execute(&sentinel).unwrap();
    let cases = [
        ("COPY (SELECT 1) TO PROGRAM 'true'", "42501"),
        ("ALTER TABLE clients DISABLE TRIGGER ALL", "42501"),
        ("DROP TRIGGER clients_custom_fields ON clients", "42501"),
        ("SET ROLE postgres", "42501"),
        ("SET SESSION AUTHORIZATION postgres", "42501"),
        ("SELECT * FROM pg_read_file('postgresql.conf')", "42501"),
        ("UPDATE messiah.field_snapshot SET version = 0", "42501"),
        ("SELECT messiah.install_snapshot(gen_random_uuid(), 'x', 1, '{}', true)", "42501"),
        ("CREATE TABLE public.mine (a int)", "42501"),
        ("ALTER ROLE CURRENT_USER SUPERUSER", "42501"),
        ("CREATE EXTENSION dblink", "42501"),
        // COPY to or from the client cannot be served through a routed call
        ("COPY clients TO STDOUT", "0A000"),
        ("COPY clients (name) FROM STDIN", "0A000"),
        (
            "UPDATE clients SET name = 'x' WHERE id IN (SELECT id FROM tenant_it_rt_atk_b.public.clients)",
            "0A000",
        ),
    ];
    for (statement, code) in cases {
        let e = query(&mut c, a, statement, json!([])).unwrap_err();
        assert_eq!(sqlstate(&e), code, "{statement}: {e}");
    }
    // RESET ROLE is harmless: the session is the tenant role's own
    let who = query(
        &mut c,
        a,
        "SELECT set_config('role', 'none', false) AS r, current_user AS u",
        json!([]),
    )
    .unwrap();
    assert_eq!(who[0]["u"], format!("tenant_{a}"));
    // no right to connect to another tenant's database, and the server refuses it
    let can = query(
        &mut c,
        a,
        "SELECT has_database_privilege($1, 'CONNECT') AS can",
        json!([format!("tenant_{b}")]),
    )
    .unwrap();
    assert_eq!(can, vec![json!({"can": false})]);
    let (host, port) = host_port();
    let err = postgres::Client::connect(
        &format!("host={host} port={port} user=tenant_{a} dbname=tenant_{b} password=wrong"),
        postgres::NoTls,
    )
    .err()
    .expect("a tenant role cannot connect to another tenant's database");
    // refused by the `reject` line before any password is asked for
    let code = err.as_db_error().map(|d| d.code().code().to_string());
    assert_eq!(code.as_deref(), Some("28000"), "{err}");
    // the sentinel is untouched
    let rows = query(&mut c, b, "SELECT name, email FROM clients", json!([])).unwrap();
    assert_eq!(
        rows,
        vec![json!({"name": "sentinel", "email": "s@b.example"})]
    );
    drop_tenant(&mut c, a);
    drop_tenant(&mut c, b);
}

/// `suspended` refuses routed calls at once and, after COMMIT, the role's logins and
/// sessions; `active` restores access.
#[test]
fn suspended_means_suspended() {
    let t = "it_rt_susp";
    let mut c = setup("rt_susp", &[t]);
    assert_eq!(
        query(&mut c, t, "SELECT 1 AS one", json!([])).unwrap(),
        vec![json!({"one": 1})]
    );
    // a session of the role (messiah's pooled connection of this backend)
    let mut watch = connect("postgres");
    let sessions = |w: &mut Client| -> i64 {
        w.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&format!("tenant_{t}")],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(sessions(&mut watch), 1);
    c.batch_execute(&format!(
        "SELECT messiah_set_tenant_status('{t}', 'suspended')"
    ))
    .unwrap();
    let e = query(&mut c, t, "SELECT 1", json!([])).unwrap_err();
    let (code, msg, _) = parts(&e);
    assert_eq!(
        (code.as_str(), msg.as_str()),
        (
            "55000",
            "tenant \"it_rt_susp\" is suspended: routed calls are refused"
        )
    );
    settle(&mut c);
    assert!(
        wait_until(10, || sessions(&mut watch) == 0),
        "the role's sessions were not ended"
    );
    let login: bool = watch
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&format!("tenant_{t}")],
        )
        .unwrap()
        .get(0);
    assert!(!login);
    // messiah's own maintenance still works while suspended
    c.batch_execute(&format!(
        "SELECT messiah_define_field('{t}', 'clients', 'tier', 'text', 'Tier')"
    ))
    .unwrap();
    settle(&mut c);
    c.batch_execute(&format!(
        "SELECT messiah_set_tenant_status('{t}', 'inactive')"
    ))
    .unwrap();
    let e = query(&mut c, t, "SELECT 1", json!([])).unwrap_err();
    assert_eq!(
        message(&e),
        "tenant \"it_rt_susp\" is inactive: routed calls are refused"
    );
    c.batch_execute(&format!(
        "SELECT messiah_set_tenant_status('{t}', 'active')"
    ))
    .unwrap();
    assert_eq!(
        query(&mut c, t, "SELECT 2 AS two", json!([])).unwrap(),
        vec![json!({"two": 2})]
    );
    drop(watch);
    drop_tenant(&mut c, t);
}

/// Per-tenant limits and the result caps, each with its own error; a cancel of the caller
/// cancels the remote statement.
#[test]
fn limits_caps_and_cancel() {
    let t = "it_rt_lim";
    let mut c = setup("rt_lim", &[t]);
    let tenant = json(&mut c, &format!("messiah_set_tenant_limits('{t}', statement_timeout_ms => 300, temp_file_limit_kb => 1024)"));
    assert_eq!(
        tenant["limits"],
        json!({"statement_timeout_ms": 300, "connection_limit": 20, "temp_file_limit_kb": 1024})
    );
    let e = query(&mut c, t, "SELECT pg_sleep(5)", json!([])).unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e}");
    let settings = query(
        &mut c,
        t,
        "SELECT current_setting('temp_file_limit') AS t",
        json!([]),
    )
    .unwrap();
    assert_eq!(settings, vec![json!({"t": "1MB"})]);
    // the routed SQL cannot lift the timeout for itself: enforced on messiah's side too
    let e = query(
        &mut c,
        t,
        "SELECT set_config('statement_timeout', '0', false), pg_sleep(0.1)",
        json!([]),
    );
    assert!(e.is_ok());
    let e = query(&mut c, t, "SELECT pg_sleep(5)", json!([])).unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e}");
    let e = fails(
        &mut c,
        &format!("SELECT messiah_set_tenant_limits('{t}', connection_limit => -2)"),
    );
    assert_eq!(
        (sqlstate(&e), message(&e)),
        (
            "22023".into(),
            "connection_limit must be between -1 and 100000, got -2".into()
        )
    );
    c.batch_execute(&format!(
        "SELECT messiah_set_tenant_limits('{t}', statement_timeout_ms => 0)"
    ))
    .unwrap();
    // caps: rows and bytes
    c.batch_execute("SET messiah.route_max_rows = 5").unwrap();
    let e = query(
        &mut c,
        t,
        "SELECT g FROM generate_series(1, 100) g",
        json!([]),
    )
    .unwrap_err();
    let (code, msg, _) = parts(&e);
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("54000", "the result has more than 5 rows")
    );
    assert_eq!(
        query(
            &mut c,
            t,
            "SELECT g FROM generate_series(1, 5) g",
            json!([])
        )
        .unwrap()
        .len(),
        5
    );
    c.batch_execute("RESET messiah.route_max_rows; SET messiah.route_max_bytes = 2048")
        .unwrap();
    let e = query(&mut c, t, "SELECT repeat('x', 4096) AS big", json!([])).unwrap_err();
    assert_eq!(message(&e), "the result has more than 2048 bytes");
    c.batch_execute("RESET messiah.route_max_bytes").unwrap();
    // cancel: the caller's cancel cancels the remote statement too
    let pid = backend_pid(&mut c);
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        connect("postgres")
            .query_one("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
    });
    let e = query(&mut c, t, "SELECT pg_sleep(30)", json!([])).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(sqlstate(&e), "57014", "{e}");
    let mut watch = connect("postgres");
    assert!(
        wait_until(5, || {
            watch
            .query_one(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%pg_sleep(30)%' AND state = 'active'",
                &[&format!("tenant_{t}")],
            )
            .unwrap()
            .get(0)
        }),
        "the remote statement kept running"
    );
    assert_eq!(
        query(&mut c, t, "SELECT 3 AS three", json!([])).unwrap(),
        vec![json!({"three": 3})]
    );
    drop(watch);
    drop_tenant(&mut c, t);
}

/// The original design's other connector types are refused before anything is written.
#[test]
fn unsupported_connector_types() {
    let mut c = admin_db("messiah_it_rt_conn");
    for (kind, detail) in [
        ("mongodb", "No MongoDB connector exists"),
        ("mysql", "The connector types are postgres"),
    ] {
        let e = fails(
            &mut c,
            &format!("SELECT messiah_create_tenant('it_rt_conn', 'C', 'it-rt-conn', connector_type => '{kind}')"),
        );
        let d = e.as_db_error().unwrap();
        assert_eq!(d.code().code(), "0A000", "{e}");
        assert_eq!(
            d.message(),
            format!("unsupported connector type \"{kind}\"")
        );
        assert!(d.detail().unwrap_or("").contains(detail), "{e}");
    }
    assert_eq!(tenant_rows(&mut c, "it_rt_conn"), 0);
    assert!(!db_exists("tenant_it_rt_conn"));
}

/// A routed call to a tenant on a registered second server: works, fails with the server's
/// SQLSTATE and a context naming tenant and server while that server is down, and works again
/// after it restarts.
#[test]
fn routing_to_a_second_server_survives_its_restart() {
    let other = OtherCluster::start("/tmp/messiah-it-route2", 28819, None, "");
    let mut c = admin_db("messiah_it_rt_srv");
    c.execute(
        "SELECT messiah_add_server('second', $1)",
        &[&other.conninfo()],
    )
    .unwrap();
    c.batch_execute(
        "SELECT messiah_create_tenant('it_rt_srv', 'S', 'it-rt-srv', server => 'second')",
    )
    .unwrap();
    settle(&mut c);
    let t = "it_rt_srv";
    assert_eq!(
        query(&mut c, t, "SELECT current_database() AS d", json!([])).unwrap(),
        vec![json!({"d": "tenant_it_rt_srv"})]
    );
    // stopped (fast shutdown) in the middle of a routed statement: the server's own 57P01
    let running = std::thread::spawn(|| {
        let mut c = connect_retry("messiah_it_rt_srv");
        query(&mut c, "it_rt_srv", "SELECT pg_sleep(30)", json!([])).unwrap_err()
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    other.stop_mode("fast");
    let e = running.join().unwrap();
    let (code, msg, context) = parts(&e);
    assert_eq!(
        (code.as_str(), msg.as_str()),
        (
            "57P01",
            "terminating connection due to administrator command"
        ),
        "{e}"
    );
    assert!(
        context.contains("tenant \"it_rt_srv\" on server \"second\""),
        "{context}"
    );
    // this backend's idle connection is found broken, reopened once, and the server is down
    let e = query(&mut c, t, "SELECT 1", json!([])).unwrap_err();
    let (code, _, context) = parts(&e);
    assert_eq!(code, "08001", "{e}");
    assert!(
        context.contains("tenant \"it_rt_srv\" on server \"second\""),
        "{context}"
    );
    other.restart();
    assert_eq!(
        query(&mut c, t, "SELECT 4 AS four", json!([])).unwrap(),
        vec![json!({"four": 4})]
    );
    drop_tenant(&mut c, t);
    drop(other);
}

/// A tenant dropped with `keep_database => true` keeps its database (and its roles, for a
/// later `messiah_adopt_database`), but nobody logs in as it any more: its application role
/// loses its login and its sessions are ended after COMMIT.
#[test]
fn a_kept_database_is_no_way_back_in() {
    let t = "it_rt_keep";
    let mut c = setup("rt_keep", &[t]);
    assert_eq!(
        query(&mut c, t, "SELECT 1 AS one", json!([])).unwrap(),
        vec![json!({"one": 1})]
    );
    let role = format!("tenant_{t}");
    let mut watch = connect("postgres");
    let state = |w: &mut Client| -> (bool, i64) {
        let r = w
            .query_one(
                "SELECT rolcanlogin, (SELECT count(*) FROM pg_stat_activity WHERE usename = $1) \
                 FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(state(&mut watch), (true, 1));
    c.batch_execute(&format!(
        "SELECT messiah_drop_tenant('{t}', keep_database => true)"
    ))
    .unwrap();
    settle(&mut c);
    assert!(
        wait_until(10, || state(&mut watch) == (false, 0)),
        "the kept database's role can still log in: {:?}",
        state(&mut watch)
    );
    assert!(db_exists(&format!("tenant_{t}")));
    let e = query(&mut c, t, "SELECT 1", json!([])).unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e}");
    // clean up by hand: the database and the roles are no tenant's now
    drop_db(&format!("tenant_{t}"));
    watch
        .batch_execute(&format!(
            "DROP ROLE \"tenant_{t}\"; DROP ROLE \"owner_{t}\""
        ))
        .unwrap();
}

/// Nothing a routed statement leaves in its session reaches the next call on the pooled
/// connection: settings, role, prepared statements, LISTEN, advisory locks, an open
/// transaction (the connection itself is kept: same remote backend).
#[test]
fn the_pool_keeps_nothing_a_routed_statement_left() {
    let t = "it_rt_pool";
    let mut c = setup("rt_pool", &[t]);
    let one = |c: &mut Client, sql: &str| -> Value {
        let mut rows = query(c, t, sql, json!([])).unwrap();
        assert_eq!(rows.len(), 1, "{sql}");
        rows.remove(0)
    };
    let pid = one(&mut c, "SELECT pg_backend_pid() AS pid")["pid"].clone();
    one(
        &mut c,
        "SELECT set_config('search_path', 'pg_catalog', false) AS s",
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT current_setting('search_path') AS p, pg_backend_pid() AS pid"
        ),
        json!({"p": "\"$user\", public", "pid": pid})
    );
    query(&mut c, t, "SET ROLE messiah_tenant_roles", json!([])).unwrap();
    assert_eq!(
        one(
            &mut c,
            "SELECT current_user::text AS u, pg_backend_pid() AS pid"
        ),
        json!({"u": format!("tenant_{t}"), "pid": pid})
    );
    query(&mut c, t, "PREPARE p AS SELECT 1", json!([])).unwrap();
    let e = query(&mut c, t, "EXECUTE p", json!([])).unwrap_err();
    assert_eq!(
        (sqlstate(&e), message(&e)),
        (
            "26000".into(),
            "prepared statement \"p\" does not exist".into()
        )
    );
    query(&mut c, t, "LISTEN messiah_channel", json!([])).unwrap();
    one(&mut c, "SELECT pg_advisory_lock(42) AS l");
    assert_eq!(
        one(
            &mut c,
            "SELECT (SELECT count(*) FROM pg_listening_channels()) AS listening, \
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                       AND pid = pg_backend_pid()) AS locks"
        ),
        json!({"listening": 0, "locks": 0})
    );
    // a transaction block left open: that connection is closed, the next call is outside it
    query(&mut c, t, "BEGIN", json!([])).unwrap();
    let after = one(&mut c, "SELECT pg_backend_pid() AS pid");
    assert_ne!(after["pid"], pid);
    let mut watch = connect("postgres");
    let pid = pid.as_i64().unwrap() as i32;
    assert!(
        wait_until(5, || watch
            .query_one(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1",
                &[&pid]
            )
            .unwrap()
            .get(0)),
        "the connection left in a transaction block is still open"
    );
    drop_tenant(&mut c, t);
}

/// Any role may change its own password and settings (ALTER ROLE CURRENT_USER): a changed
/// password is put back at the next login (28P01 re-applies the roles), and settings the role
/// gave itself are removed whenever the roles are applied.
#[test]
fn a_role_that_changed_itself_is_put_back() {
    let t = "it_rt_self";
    let mut c = setup("rt_self", &[t]);
    for sql in [
        "ALTER ROLE CURRENT_USER SET work_mem = '77MB'",
        &format!("ALTER ROLE CURRENT_USER IN DATABASE tenant_{t} SET work_mem = '78MB'"),
        "ALTER ROLE CURRENT_USER PASSWORD 'chosen-by-the-tenant'",
    ] {
        query(&mut c, t, sql, json!([])).unwrap();
    }
    c.batch_execute(&format!("SELECT messiah_tenant_disconnect('{t}')"))
        .unwrap();
    // the next login fails with 28P01, the roles are applied again, the call goes through
    assert_eq!(
        query(
            &mut c,
            t,
            "SELECT current_setting('work_mem') AS w",
            json!([])
        )
        .unwrap(),
        vec![json!({"w": "4MB"})]
    );
    let settings: i64 = connect("postgres")
        .query_one(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
             WHERE r.rolname = $1 AND array_to_string(s.setconfig, ',') LIKE '%work_mem%'",
            &[&format!("tenant_{t}")],
        )
        .unwrap()
        .get(0);
    assert_eq!(settings, 0);
    drop_tenant(&mut c, t);
}

/// More parameters than the protocol can bind are refused before anything is sent (54000),
/// and the tenant's connection limit reached is 53300 naming that limit.
#[test]
fn parameter_and_connection_limits() {
    let t = "it_rt_cl";
    let mut c = setup("rt_cl", &[t]);
    let e = query(&mut c, t, "SELECT 1", json!(vec![1; 65_536])).unwrap_err();
    assert_eq!(
        (sqlstate(&e), message(&e)),
        (
            "54000".into(),
            "params has 65536 values; a statement takes at most 65535".into()
        )
    );
    c.batch_execute(&format!(
        "SELECT messiah_set_tenant_limits('{t}', connection_limit => 1)"
    ))
    .unwrap();
    settle(&mut c);
    // this session's pooled connection holds the one slot
    assert_eq!(
        query(&mut c, t, "SELECT 1 AS one", json!([])).unwrap(),
        vec![json!({"one": 1})]
    );
    let mut other = connect("messiah_it_rt_cl");
    let e = query(&mut other, t, "SELECT 1 AS one", json!([])).unwrap_err();
    let d = e.as_db_error().unwrap();
    assert_eq!(d.code().code(), "53300", "{e}");
    assert_eq!(
        d.detail(),
        Some(format!("Tenant \"{t}\" may have at most 1 connection(s) open at once (its connection_limit).").as_str())
    );
    assert!(d
        .where_()
        .unwrap_or("")
        .contains(&format!("tenant \"{t}\"")));
    c.batch_execute(&format!("SELECT messiah_tenant_disconnect('{t}')"))
        .unwrap();
    assert!(wait_until(5, || query(
        &mut other,
        t,
        "SELECT 1 AS one",
        json!([])
    )
    .is_ok()));
    drop(other);
    drop_tenant(&mut c, t);
}

/// Inputs found by a hostile review: a cap hit by a write that had already committed says so;
/// a terminated caller's remote statement is cancelled; unknown top-level keys are columns
/// (42703), never fields; a field given twice differently is 22023; NULL params is 22004.
#[test]
fn writes_stopped_by_a_cap_terminated_callers_and_unknown_keys() {
    let t = "it_rt_rev";
    let mut c = setup("rt_rev", &[t]);
    query(
        &mut c,
        t,
        "INSERT INTO clients (name, phone) SELECT 'bulk', 'p' FROM generate_series(1, 2000)",
        json!([]),
    )
    .unwrap();
    c.batch_execute("SET messiah.route_max_rows = 5").unwrap();
    let e = fails(
        &mut c,
        &format!("SELECT count(*) FROM messiah_tenant_update('{t}', 'clients', '{{\"phone\": \"q\"}}', '{{\"phone\": \"p\"}}')"),
    );
    c.batch_execute("RESET messiah.route_max_rows").unwrap();
    let d = e.as_db_error().unwrap();
    assert_eq!(d.code().code(), "54000");
    let changed = query(
        &mut c,
        t,
        "SELECT count(*) AS n FROM clients WHERE phone = 'q'",
        json!([]),
    )
    .unwrap()[0]["n"]
        .clone();
    let detail = d.detail().unwrap_or("");
    if changed == json!(2000) {
        assert!(
            detail.contains("(UPDATE 2000)") && detail.contains("anything it wrote stays"),
            "{detail}"
        );
    } else {
        assert_eq!(changed, json!(0));
        assert!(detail.contains("nothing it did was kept"), "{detail}");
    }

    // the caller terminated mid-statement: the remote statement does not run on
    let pid = std::sync::Arc::new(std::sync::Mutex::new(0i32));
    let running = {
        let pid = pid.clone();
        std::thread::spawn(move || {
            let mut c = connect_retry("messiah_it_rt_rev");
            *pid.lock().unwrap() = backend_pid(&mut c);
            let _ = query(&mut c, "it_rt_rev", "SELECT pg_sleep(20)", json!([]));
        })
    };
    let mut watch = connect("postgres");
    let sleeping = |w: &mut Client| -> bool {
        w.query_one(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'tenant_it_rt_rev' \
             AND query LIKE '%pg_sleep(20)%' AND state = 'active'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert!(wait_until(10, || sleeping(&mut watch)));
    terminate(*pid.lock().unwrap());
    running.join().unwrap();
    assert!(
        wait_until(5, || !sleeping(&mut watch)),
        "the remote statement of a terminated caller kept running"
    );

    // unknown top-level keys are columns: 42703 naming them, whatever the policy
    for policy in ["reject", "allow", "strip"] {
        c.batch_execute(&format!(
            "SELECT messiah_update_tenant('{t}', '{{\"settings\": {{\"unknown_custom_fields\": \"{policy}\"}}}}')"
        ))
        .unwrap();
        let e = fails(
            &mut c,
            &format!("SELECT messiah_tenant_insert('{t}', 'clients', '{{\"name\": \"Typo\", \"emial\": \"a@b.c\"}}')"),
        );
        assert_eq!(
            (sqlstate(&e), message(&e)),
            (
                "42703".into(),
                "column \"emial\" of relation \"clients\" does not exist".into()
            ),
            "{policy}"
        );
    }
    c.batch_execute(&format!(
        "SELECT messiah_define_field('{t}', 'clients', 'country', 'text', 'Country')"
    ))
    .unwrap();
    settle(&mut c);
    let e = fails(
        &mut c,
        &format!("SELECT messiah_tenant_insert('{t}', 'clients', '{{\"name\": \"Twice\", \"country\": \"Brazil\", \"custom_fields\": {{\"country\": \"USA\"}}}}')"),
    );
    assert_eq!(
        (sqlstate(&e), message(&e)),
        (
            "22023".into(),
            "field \"country\" is given twice with different values, at the top level and in custom_fields".into()
        )
    );
    let e = fails(
        &mut c,
        &format!("SELECT * FROM messiah_tenant_query('{t}', 'SELECT 1', NULL)"),
    );
    assert_eq!(
        (sqlstate(&e), message(&e)),
        ("22004".into(), "params must not be null".into())
    );
    drop(watch);
    drop_tenant(&mut c, t);
}

/// `messiah_run_pending()` in the transaction that creates the tenant cannot set its roles up
/// (the database is created at COMMIT): the action stays queued and is carried out after.
#[test]
fn roles_queued_in_the_creating_transaction_survive_an_early_run() {
    let t = "it_rt_early";
    drop_db(&format!("tenant_{t}"));
    let mut c = admin_db("messiah_it_rt_early");
    let early: String = {
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "SELECT messiah_create_tenant($1, 'E', 'it-rt-early')",
            &[&t],
        )
        .unwrap();
        let r = tx
            .query_one("SELECT messiah_run_pending()::text", &[])
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        r
    };
    // not taken before COMMIT: still pending when the early run returns
    let early: Value = serde_json::from_str(&early).unwrap();
    assert_eq!(early["pending"], json!(1), "{early}");
    settle(&mut c);
    assert_eq!(
        query(&mut c, t, "SELECT current_user::text AS u", json!([])).unwrap(),
        vec![json!({"u": format!("tenant_{t}")})]
    );
    drop_tenant(&mut c, t);
}
