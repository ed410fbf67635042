//! Concurrent creation (DESIGN.md decision 3): of N creations of one tenant id exactly one
//! wins and the others get 23505 without touching the winner's database; creations of
//! distinct ids do not interfere; a second creation waits for an open first one.

use crate::common::*;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const N: usize = 8;

#[test]
fn same_id_from_eight_sessions_exactly_one_wins() {
    let admin_name = "messiah_it_same";
    drop_db("tenant_it_same");
    let mut admin = admin_db(admin_name);
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut c = connect_retry(admin_name);
                barrier.wait();
                let r = c.query_one(
                    "SELECT messiah_create_tenant('it_same', $1, $2) ->> 'slug'",
                    &[&format!("Same {i}"), &format!("it-same-{i}")],
                );
                (i, r.map(|row| row.get::<_, String>(0)))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|slug| (*i, slug.clone())))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one creation wins: {results:?}");
    let (winner, winner_slug) = winners[0].clone();
    assert_eq!(winner_slug, format!("it-same-{winner}"));
    for (i, r) in &results {
        if let Err(e) = r {
            assert_eq!(sqlstate(e), "23505", "loser {i}: {e}");
            assert!(message(e).contains("it_same"), "loser {i}: {e}");
        }
    }
    let mut pg = connect_retry("postgres");
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'tenant_it_same'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let rows = admin
        .query(
            "SELECT slug, name, database_name FROM messiah.tenants WHERE tenant_id = 'it_same'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), winner_slug);
    assert_eq!(rows[0].get::<_, String>(1), format!("Same {winner}"));
    assert_eq!(rows[0].get::<_, String>(2), "tenant_it_same");
    // The winner's journal row may remain until the next sweep, which only forgets it.
    assert_eq!(swept(&mut admin), Vec::<String>::new());
    assert_eq!(temp_databases(&mut admin), 0);
    assert!(db_exists("tenant_it_same"));
    assert!(table_exists("tenant_it_same", "clients"));

    admin
        .execute("SELECT messiah_drop_tenant('it_same')", &[])
        .unwrap();
    settle(&mut admin);
    assert!(!db_exists("tenant_it_same"));
}

#[test]
fn distinct_ids_from_eight_sessions_all_succeed() {
    let admin_name = "messiah_it_distinct";
    for i in 0..N {
        drop_db(&format!("tenant_it_distinct_{i}"));
    }
    let mut admin = admin_db(admin_name);
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut c = connect_retry(admin_name);
                barrier.wait();
                c.query_one(
                    "SELECT messiah_create_tenant($1, $2, $3) ->> 'database'",
                    &[
                        &format!("it_distinct_{i}"),
                        &format!("Distinct {i}"),
                        &format!("it-distinct-{i}"),
                    ],
                )
                .map(|r| r.get::<_, String>(0))
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let db = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("creation {i}: {e}"));
        assert_eq!(db, format!("tenant_it_distinct_{i}"));
    }
    let mut pg = connect_retry("postgres");
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenant\\_it\\_distinct\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, N as i64);
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM messiah.tenants", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, N as i64);
    for i in 0..N {
        assert!(table_exists(&format!("tenant_it_distinct_{i}"), "projects"));
    }
    assert_eq!(swept(&mut admin), Vec::<String>::new());
    assert_eq!(temp_databases(&mut admin), 0);
    for i in 0..N {
        admin
            .execute(
                "SELECT messiah_drop_tenant($1)",
                &[&format!("it_distinct_{i}")],
            )
            .unwrap();
        settle(&mut admin);
        assert!(!db_exists(&format!("tenant_it_distinct_{i}")));
    }
}

/// Session A holds an uncommitted creation of `it_wait*`; session B's creation of the same
/// id must block until A ends. Returns B's result and A's session.
fn second_creation_while_first_open(
    admin_name: &'static str,
    id: &'static str,
    a_commits: bool,
) -> (Result<String, postgres::Error>, postgres::Client) {
    let mut a = connect_retry(admin_name);
    a.batch_execute("BEGIN").unwrap();
    a.execute(
        "SELECT messiah_create_tenant($1, 'First', $2)",
        &[&id, &format!("{}-a", id.replace('_', "-"))],
    )
    .unwrap();
    let mut b = connect_retry(admin_name);
    let b_pid = backend_pid(&mut b);
    let slug_b = format!("{}-b", id.replace('_', "-"));
    let handle = thread::spawn(move || {
        b.query_one(
            "SELECT messiah_create_tenant($1, 'Second', $2) ->> 'slug'",
            &[&id, &slug_b],
        )
        .map(|r| r.get::<_, String>(0))
    });
    assert!(
        wait_until(10, || waiting_on_lock(b_pid)),
        "B does not wait for A"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(!handle.is_finished(), "B finished while A was still open");
    assert!(
        !db_exists(&format!("tenant_{id}")),
        "database exists before COMMIT"
    );
    a.batch_execute(if a_commits { "COMMIT" } else { "ROLLBACK" })
        .unwrap();
    (handle.join().unwrap(), a)
}

#[test]
fn same_id_waits_for_open_first_creation_which_commits() {
    drop_db("tenant_it_wait");
    let mut admin = admin_db("messiah_it_wait");
    let (b, _a) = second_creation_while_first_open("messiah_it_wait", "it_wait", true);
    let e = b.expect_err("B must fail after A committed");
    assert_eq!(sqlstate(&e), "23505", "{e}");
    assert!(db_exists("tenant_it_wait"));
    let slug: String = admin
        .query_one(
            "SELECT slug FROM messiah.tenants WHERE tenant_id = 'it_wait'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(slug, "it-wait-a");
    assert_eq!(swept(&mut admin), Vec::<String>::new());
    assert!(db_exists("tenant_it_wait"));
    admin
        .execute("SELECT messiah_drop_tenant('it_wait')", &[])
        .unwrap();
    settle(&mut admin);
    assert!(!db_exists("tenant_it_wait"));
}

#[test]
fn same_id_waits_for_open_first_creation_which_rolls_back() {
    drop_db("tenant_it_waitrb");
    let mut admin = admin_db("messiah_it_waitrb");
    let (b, _a) = second_creation_while_first_open("messiah_it_waitrb", "it_waitrb", false);
    assert_eq!(
        b.expect("B must succeed after A rolled back"),
        "it-waitrb-b"
    );
    let mut pg = connect_retry("postgres");
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'tenant_it_waitrb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let rows = admin
        .query(
            "SELECT slug, name FROM messiah.tenants WHERE tenant_id = 'it_waitrb'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "it-waitrb-b");
    assert_eq!(rows[0].get::<_, String>(1), "Second");
    assert!(table_exists("tenant_it_waitrb", "activities"));
    assert_eq!(swept(&mut admin), Vec::<String>::new());
    assert_eq!(temp_databases(&mut admin), 0);
    admin
        .execute("SELECT messiah_drop_tenant('it_waitrb')", &[])
        .unwrap();
    settle(&mut admin);
    assert!(!db_exists("tenant_it_waitrb"));
}
