//! Health checks (issue "The tenant cache, health checks and metrics"): the admin database,
//! every server and every active tenant, concurrently; a stopped server costs one timeout and
//! its tenants are unhealthy; a tenant whose catalog copy is behind is unhealthy.

use crate::common::*;
use postgres::Client;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `(kind, name) -> (status, message)` of the rows about this test's objects.
fn health(c: &mut Client, sql: &str) -> BTreeMap<(String, String), (String, String)> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r.get::<_, String>("kind"), r.get::<_, String>("name")),
                (r.get::<_, String>("status"), r.get::<_, String>("message")),
            )
        })
        .filter(|((kind, name), _)| {
            kind == "admin" || name.starts_with("it_hl") || name == "hl2" || name == "local"
        })
        .collect()
}

/// `(status, message)` of the row `kind`/`name`, or `("absent", "absent")`.
fn row<'a>(
    h: &'a BTreeMap<(String, String), (String, String)>,
    kind: &str,
    name: &str,
) -> (&'a str, &'a str) {
    h.get(&(kind.to_string(), name.to_string()))
        .map_or(("absent", "absent"), |(s, m)| (s.as_str(), m.as_str()))
}

fn status<'a>(
    h: &'a BTreeMap<(String, String), (String, String)>,
    kind: &str,
    name: &str,
) -> &'a str {
    row(h, kind, name).0
}

fn message<'a>(
    h: &'a BTreeMap<(String, String), (String, String)>,
    kind: &str,
    name: &str,
) -> &'a str {
    row(h, kind, name).1
}

#[test]
fn health_of_the_admin_database_servers_and_tenants() {
    let other = OtherCluster::start("/tmp/messiah-it-health2", 28821, None, "");
    for t in ["it_hl_a", "it_hl_s", "it_hl_old"] {
        drop_db(&format!("tenant_{t}"));
    }
    let mut c = admin_db("messiah_it_health");
    c.execute("SELECT messiah_add_server('hl2', $1)", &[&other.conninfo()])
        .unwrap();
    c.batch_execute(
        "SELECT messiah_create_tenant('it_hl_a', 'A', 'it-hl-a', server => 'local'); \
         SELECT messiah_create_tenant('it_hl_s', 'S', 'it-hl-s', server => 'local'); \
         SELECT messiah_create_tenant('it_hl_old', 'Old', 'it-hl-old', server => 'local'); \
         SELECT messiah_create_tenant('it_hl_b', 'B', 'it-hl-b', server => 'hl2')",
    )
    .unwrap();
    c.batch_execute("SELECT messiah_set_tenant_status('it_hl_s', 'suspended')")
        .unwrap();
    settle(&mut c);
    // a catalog copy left behind (as a failed push would leave it)
    connect_retry("tenant_it_hl_old")
        .batch_execute("UPDATE messiah.field_snapshot SET version = version - 1")
        .unwrap();

    let h = health(&mut c, "SELECT * FROM messiah_health()");
    assert_eq!(status(&h, "admin", "messiah_it_health"), "healthy");
    assert_eq!(status(&h, "server", "local"), "healthy");
    assert_eq!(status(&h, "server", "hl2"), "healthy");
    assert_eq!(status(&h, "tenant", "it_hl_a"), "healthy", "{h:?}");
    assert_eq!(status(&h, "tenant", "it_hl_b"), "healthy", "{h:?}");
    assert_eq!(
        (
            status(&h, "tenant", "it_hl_s"),
            message(&h, "tenant", "it_hl_s")
        ),
        ("unknown", "suspended: not checked")
    );
    assert_eq!(status(&h, "tenant", "it_hl_old"), "unhealthy");
    assert!(
        message(&h, "tenant", "it_hl_old").starts_with("the catalog copy is at version"),
        "{h:?}"
    );
    // a check whose statement blocks: timed out, and cancelled on the server too (no session
    // of the tenant's role is left behind holding a slot of its connection limit)
    let mut locker = connect_retry("tenant_it_hl_a");
    locker
        .batch_execute("BEGIN; LOCK TABLE messiah.field_snapshot IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    c.batch_execute("SET messiah.health_timeout = 500").unwrap();
    let blocked = health(&mut c, "SELECT * FROM messiah_tenant_health('it_hl_a')");
    c.batch_execute("RESET messiah.health_timeout").unwrap();
    assert_eq!(
        (status(&blocked, "tenant", "it_hl_a"), message(&blocked, "tenant", "it_hl_a")),
        (
            "unhealthy",
            "the application role's check failed: the statement did not finish within 500 ms (cancelled)"
        )
    );
    let mut watch = connect("postgres");
    assert!(
        wait_until(5, || watch
            .query_one(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'tenant_it_hl_a'",
                &[]
            )
            .unwrap()
            .get(0)),
        "a timed-out check left its session behind"
    );
    locker.batch_execute("ROLLBACK").unwrap();
    drop(locker);
    let one = health(&mut c, "SELECT * FROM messiah_tenant_health('it_hl_a')");
    assert_eq!(one.len(), 3, "{one:?}");
    assert_eq!(status(&one, "tenant", "it_hl_a"), "healthy");

    // the second server stopped: one timeout for the whole call, its tenant unhealthy
    other.stop();
    c.batch_execute("SET messiah.health_timeout = 1000")
        .unwrap();
    let t0 = Instant::now();
    let h = health(&mut c, "SELECT * FROM messiah_health()");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    assert_eq!(status(&h, "server", "hl2"), "unhealthy");
    assert_eq!(status(&h, "tenant", "it_hl_b"), "unhealthy");
    assert!(
        message(&h, "tenant", "it_hl_b").starts_with("server \"hl2\" does not answer"),
        "{h:?}"
    );
    assert_eq!(status(&h, "tenant", "it_hl_a"), "healthy");
    let e = fails(&mut c, "SELECT * FROM messiah_tenant_health('nobody_here')");
    assert_eq!(sqlstate(&e), "42704");

    other.restart();
    for t in ["it_hl_a", "it_hl_s", "it_hl_old", "it_hl_b"] {
        c.execute("SELECT messiah_drop_tenant($1)", &[&t]).unwrap();
    }
    settle(&mut c);
    c.batch_execute("SELECT messiah_drop_server('hl2')")
        .unwrap();
}
