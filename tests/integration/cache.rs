//! The per-backend catalog cache (issue "The tenant cache, health checks and metrics"): two
//! sessions, every kind of catalog change a routed call's lookup depends on, committed and
//! rolled back. Session `a` keeps calling (its cache is warm); session `b` changes the catalog.

use crate::common::*;
use postgres::Client;

const T: &str = "it_cache_a";

fn routed(c: &mut Client) -> Result<i64, postgres::Error> {
    c.query_one(
        "SELECT (r->>'n')::bigint FROM messiah_tenant_query($1, 'SELECT 41 + 1 AS n') r",
        &[&T],
    )
    .map(|r| r.get(0))
}

fn set_status(c: &mut Client, status: &str) {
    c.execute("SELECT messiah_set_tenant_status($1, $2)", &[&T, &status])
        .unwrap();
}

fn insert(c: &mut Client, score: i32) -> Result<(), postgres::Error> {
    c.execute(
        "SELECT messiah_tenant_insert($1, 'clients', jsonb_build_object('name', 'n', 'score', $2::int))",
        &[&T, &score],
    )
    .map(|_| ())
}

#[test]
fn a_warm_cache_sees_every_committed_change_and_no_rolled_back_one() {
    drop_db(&format!("tenant_{T}"));
    let mut a = admin_db("messiah_it_cache");
    a.execute(
        "SELECT messiah_create_tenant($1, 'Cache', 'it-cache-a')",
        &[&T],
    )
    .unwrap();
    settle(&mut a);
    let mut b = connect("messiah_it_cache");
    assert_eq!(routed(&mut a).unwrap(), 42);
    assert_eq!(routed(&mut a).unwrap(), 42);

    // status: rolled back, then committed, then restored
    b.batch_execute(&format!(
        "BEGIN; SELECT messiah_set_tenant_status('{T}', 'suspended'); ROLLBACK"
    ))
    .unwrap();
    assert_eq!(routed(&mut a).unwrap(), 42);
    set_status(&mut b, "suspended");
    assert_eq!(sqlstate(&routed(&mut a).unwrap_err()), "55000");
    set_status(&mut b, "active");
    settle(&mut b);
    assert_eq!(routed(&mut a).unwrap(), 42);

    // a REPEATABLE READ transaction sees the catalog as of its snapshot: a suspension
    // committed since is not seen there, but the login is refused (28000) and is never given
    // back from that old snapshot
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    assert_eq!(routed(&mut a).unwrap(), 42);
    set_status(&mut b, "suspended");
    settle(&mut b);
    a.batch_execute(&format!("SELECT messiah_tenant_disconnect('{T}')"))
        .unwrap();
    let e = routed(&mut a).unwrap_err();
    assert_eq!(sqlstate(&e), "28000", "{e}");
    a.batch_execute("COMMIT").unwrap();
    let login: bool = b
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&format!("tenant_{T}")],
        )
        .unwrap()
        .get(0);
    assert!(!login);
    assert_eq!(sqlstate(&routed(&mut a).unwrap_err()), "55000");
    set_status(&mut b, "active");
    settle(&mut b);
    assert_eq!(routed(&mut a).unwrap(), 42);

    // the session's own uncommitted change is seen by it, and forgotten at its rollback
    a.batch_execute(&format!(
        "BEGIN; SELECT messiah_set_tenant_status('{T}', 'inactive')"
    ))
    .unwrap();
    assert_eq!(sqlstate(&routed(&mut a).unwrap_err()), "55000");
    a.batch_execute("ROLLBACK").unwrap();
    assert_eq!(routed(&mut a).unwrap(), 42);

    // field definitions: not a field (a column clients lacks: 42703), then defined, then tightened (rolled back, then
    // committed); the insert path reads the compiled definitions from the cache
    assert_eq!(sqlstate(&insert(&mut a, 5).unwrap_err()), "42703");
    b.batch_execute(&format!(
        "SELECT messiah_define_field('{T}', 'clients', 'score', 'number', 'Score')"
    ))
    .unwrap();
    // the tenant database's trigger validates too, from its copy, pushed after COMMIT
    settle(&mut b);
    insert(&mut a, 5).unwrap();
    b.batch_execute(&format!(
        "BEGIN; SELECT messiah_define_field('{T}', 'clients', 'score', 'number', 'Score', \
         validation_rules => '{{\"min\": 10}}')"
    ))
    .unwrap();
    // b's change is not committed yet: a still inserts 5
    insert(&mut a, 5).unwrap();
    b.batch_execute("ROLLBACK").unwrap();
    insert(&mut a, 5).unwrap();
    b.batch_execute(&format!(
        "SELECT messiah_define_field('{T}', 'clients', 'score', 'number', 'Score', \
         validation_rules => '{{\"min\": 10}}')"
    ))
    .unwrap();
    // refused by messiah before sending (the cache has the committed definition), whether or
    // not the copy has reached the tenant database yet
    let e = insert(&mut a, 5).unwrap_err();
    assert_eq!(sqlstate(&e), "23514", "{e}");
    assert_eq!(
        e.as_db_error().unwrap().hint(),
        Some("The tenant's field definitions are listed by messiah_list_fields().")
    );
    let applied: String = a
        .query_one(
            "SELECT messiah_apply_fields($1, 'clients', '{\"name\": \"x\", \"score\": 11}')::text",
            &[&T],
        )
        .unwrap()
        .get(0);
    assert!(applied.contains("\"score\": 11"), "{applied}");
    b.batch_execute(&format!(
        "SELECT messiah_drop_field('{T}', 'clients', 'score')"
    ))
    .unwrap();
    assert_eq!(sqlstate(&insert(&mut a, 5).unwrap_err()), "42703");

    // the server: marked offline, then active again
    b.batch_execute("SELECT messiah_alter_server('local', '{\"status\": \"offline\"}')")
        .unwrap();
    let offline = routed(&mut a);
    b.batch_execute("SELECT messiah_alter_server('local', '{\"status\": \"active\"}')")
        .unwrap();
    assert_eq!(sqlstate(&offline.unwrap_err()), "55000");
    assert_eq!(routed(&mut a).unwrap(), 42);

    // a dropped tenant is gone for the warm session at once
    b.batch_execute(&format!("SELECT messiah_drop_tenant('{T}')"))
        .unwrap();
    assert_eq!(sqlstate(&routed(&mut a).unwrap_err()), "42704");
    settle(&mut b);
}
