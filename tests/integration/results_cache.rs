//! The routed result cache (`messiah_tenant_query(..., max_age)`; issue "The tenant cache,
//! health checks and metrics"): shared by sessions, per tenant, read-only, invalidated by
//! routed writes, status changes and `messiah_cache_clear`, never by direct writes (that is
//! documented, and shown here), bounded by `max_age` and by the caller's caps.

use crate::common::*;
use postgres::Client;

const A: &str = "it_rc_a";
const B: &str = "it_rc_b";
const DB: &str = "messiah_it_rcache";

/// The names in `clients` of `tenant`, read with `max_age` (an interval literal).
fn names(c: &mut Client, tenant: &str, max_age: &str) -> Result<Vec<String>, postgres::Error> {
    c.query(
        "SELECT r->>'name' FROM messiah_tenant_query($1, 'SELECT name FROM clients ORDER BY name', \
                max_age => $2::text::interval) r",
        &[&tenant, &max_age],
    )
    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
}

fn routed_insert(c: &mut Client, tenant: &str, name: &str) {
    c.execute(
        "SELECT messiah_tenant_insert($1, 'clients', jsonb_build_object('name', $2::text))",
        &[&tenant, &name],
    )
    .unwrap();
}

/// Inserts straight into the tenant's database (not through messiah: no invalidation).
fn direct_insert(tenant: &str, name: &str) {
    connect(&format!("tenant_{tenant}"))
        .execute("INSERT INTO clients (name) VALUES ($1)", &[&name])
        .unwrap();
}

fn setup() -> Client {
    for t in [A, B] {
        drop_db(&format!("tenant_{t}"));
    }
    let mut c = admin_db(DB);
    c.batch_execute(&format!(
        "SELECT messiah_create_tenant('{A}', 'A', 'it-rc-a'); \
         SELECT messiah_create_tenant('{B}', 'B', 'it-rc-b');"
    ))
    .unwrap();
    settle(&mut c);
    routed_insert(&mut c, A, "alpha");
    routed_insert(&mut c, B, "beta");
    c
}

#[test]
fn cached_reads_are_per_tenant_shared_bounded_and_invalidated_by_routed_writes() {
    let mut c = setup();
    let mut other = connect(DB);
    let ten = "10 minutes";

    // two tenants, the same statement: each gets its own rows
    assert_eq!(names(&mut c, A, ten).unwrap(), ["alpha"]);
    assert_eq!(names(&mut c, B, ten).unwrap(), ["beta"]);

    // a direct write is not seen while the entry is younger than max_age, by any session:
    // the result comes from the shared cache (documented behaviour)
    direct_insert(A, "direct");
    assert_eq!(names(&mut other, A, ten).unwrap(), ["alpha"]);
    assert_eq!(names(&mut c, B, ten).unwrap(), ["beta"]);
    // max_age 0 refreshes; an older entry is not served
    assert_eq!(names(&mut c, A, "0").unwrap(), ["alpha", "direct"]);
    direct_insert(A, "direct2");
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(
        names(&mut other, A, "10 milliseconds").unwrap(),
        ["alpha", "direct", "direct2"]
    );

    // a routed write (from another session) invalidates the tenant's entries, not the other's
    direct_insert(B, "beta-direct");
    routed_insert(&mut other, A, "routed");
    assert_eq!(
        names(&mut c, A, ten).unwrap(),
        ["alpha", "direct", "direct2", "routed"]
    );
    assert_eq!(names(&mut c, B, ten).unwrap(), ["beta"]);

    // so do routed update and delete, and a query without max_age (it may write)
    for write in [
        "SELECT messiah_tenant_update('it_rc_a', 'clients', '{\"name\": \"alpha2\"}', '{\"name\": \"alpha\"}')",
        "SELECT messiah_tenant_delete('it_rc_a', 'clients', '{\"name\": \"direct\"}')",
        "SELECT * FROM messiah_tenant_query('it_rc_a', 'UPDATE clients SET name = ''routed2'' WHERE name = ''routed''')",
    ] {
        other.batch_execute(write).unwrap();
    }
    assert_eq!(
        names(&mut c, A, ten).unwrap(),
        ["alpha2", "direct2", "routed2"]
    );

    // a status change gives the tenant a new catalog row version: old entries are not found
    direct_insert(A, "zeta");
    other
        .batch_execute(
            "SELECT messiah_set_tenant_status('it_rc_a', 'suspended'); \
             SELECT messiah_set_tenant_status('it_rc_a', 'active')",
        )
        .unwrap();
    settle(&mut other);
    assert_eq!(
        names(&mut c, A, ten).unwrap(),
        ["alpha2", "direct2", "routed2", "zeta"]
    );

    // messiah_cache_clear: one tenant (how many entries went), then all of this database
    direct_insert(A, "omega");
    let cleared: i64 = c
        .query_one("SELECT messiah_cache_clear('it_rc_a')", &[])
        .unwrap()
        .get(0);
    assert_eq!(cleared, 1);
    assert_eq!(names(&mut c, A, ten).unwrap().len(), 5);
    let cleared: i64 = c
        .query_one("SELECT messiah_cache_clear()", &[])
        .unwrap()
        .get(0);
    assert_eq!(cleared, 2, "the entries of it_rc_a and it_rc_b");
    assert_eq!(names(&mut c, B, ten).unwrap(), ["beta", "beta-direct"]);
}

#[test]
fn a_cached_read_never_writes_and_keeps_the_callers_caps() {
    let c = &mut admin_db("messiah_it_rcache2");
    drop_db("tenant_it_rc_w");
    c.batch_execute("SELECT messiah_create_tenant('it_rc_w', 'W', 'it-rc-w')")
        .unwrap();
    settle(c);
    for n in ["a", "b", "c"] {
        routed_insert(c, "it_rc_w", n);
    }
    // UPDATE ... RETURNING with max_age: refused (25006), nothing written, nothing cached
    let e = fails(
        c,
        "SELECT * FROM messiah_tenant_query('it_rc_w', 'UPDATE clients SET name = ''x'' RETURNING name', \
                max_age => '1 minute')",
    );
    assert_eq!(sqlstate(&e), "25006");
    let db = e.as_db_error().unwrap();
    assert!(db.hint().unwrap().contains("without max_age"), "{db:?}");
    assert_eq!(names(c, "it_rc_w", "0").unwrap(), ["a", "b", "c"]);
    // the cached result has 3 rows: a caller allowed 2 gets 54000, not the cached rows
    assert_eq!(names(c, "it_rc_w", "1 hour").unwrap().len(), 3);
    c.batch_execute("SET messiah.route_max_rows = 2").unwrap();
    assert_eq!(
        sqlstate(&names(c, "it_rc_w", "1 hour").unwrap_err()),
        "54000"
    );
    c.batch_execute("RESET messiah.route_max_rows").unwrap();
    // a negative max_age is an error; NULL does not cache
    let e = names(c, "it_rc_w", "-1 second").unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    direct_insert("it_rc_w", "d");
    let rows = c
        .query(
            "SELECT 1 FROM messiah_tenant_query('it_rc_w', 'SELECT name FROM clients', max_age => NULL)",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 4);
}

/// A read whose statement started before a routed write committed must not store its
/// (older) result after the write invalidated the tenant: the next cached read sees the write.
#[test]
fn a_read_that_overlaps_a_routed_write_does_not_store_its_older_result() {
    let c = &mut admin_db("messiah_it_rcache3");
    drop_db("tenant_it_rc_r");
    c.batch_execute("SELECT messiah_create_tenant('it_rc_r', 'R', 'it-rc-r')")
        .unwrap();
    settle(c);
    routed_insert(c, "it_rc_r", "first");
    let slow = std::thread::spawn(|| {
        let mut s = connect("messiah_it_rcache3");
        // the snapshot is taken before the sleep: it cannot see the insert made meanwhile
        s.query(
            "SELECT r->>'name' FROM messiah_tenant_query('it_rc_r', \
                 'SELECT name FROM clients, pg_sleep(1.5) ORDER BY name', max_age => '1 hour') r",
            &[],
        )
        .unwrap()
        .len()
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    routed_insert(c, "it_rc_r", "second");
    assert_eq!(
        slow.join().unwrap(),
        1,
        "the slow read ran on its older snapshot"
    );
    let rows = c
        .query(
            "SELECT r->>'name' FROM messiah_tenant_query('it_rc_r', \
                 'SELECT name FROM clients, pg_sleep(1.5) ORDER BY name', max_age => '1 hour') r",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2, "the older result was not stored");
}
