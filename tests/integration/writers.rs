//! Field changes never stall a tenant's writers (issue "Fast by default"): index builds run
//! concurrently after COMMIT, so a writer keeps its latency while another session sits idle in
//! a transaction, and the index becomes valid within a bounded time after that session ends.

use crate::common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn defining_an_indexed_field_never_queues_writers() {
    let db = "messiah_it_writers";
    let id = "it_writers";
    drop_db(&format!("tenant_{id}"));
    let mut admin = admin_db(db);
    // a short wait per build attempt, so the retries come quickly in a test
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET messiah.index_lock_timeout = 300"
        ))
        .unwrap();
    let mut admin = connect_retry(db);
    admin
        .batch_execute(&format!(
            "SELECT messiah_create_tenant('{id}', 'Writers', 'it-writers')"
        ))
        .unwrap();
    let tenant_db = format!("tenant_{id}");
    // a session that wrote to the table and stays idle in its transaction
    let mut idle = connect_retry(&tenant_db);
    idle.batch_execute("BEGIN; INSERT INTO clients (name) VALUES ('idle')")
        .unwrap();
    // a writer inserting a row every 20 ms
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let tenant_db = tenant_db.clone();
        std::thread::spawn(move || {
            let mut w = connect_retry(&tenant_db);
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                w.batch_execute("INSERT INTO clients (name) VALUES ('w')")
                    .unwrap();
                worst = worst.max(t0.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (n, worst)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    admin
        .batch_execute(&format!(
            "SELECT messiah_define_field('{id}', 'clients', 'rank', 'number', 'Rank', is_filterable => true, is_sortable => true)"
        ))
        .unwrap();
    let define_ms = t0.elapsed().as_millis();
    assert!(
        define_ms < 1000,
        "the definition change waited {define_ms} ms"
    );
    // the index cannot be built while the idle transaction is open; the writer keeps going
    std::thread::sleep(Duration::from_secs(3));
    let valid = |c: &mut postgres::Client| -> bool {
        c.query_one(
            "SELECT coalesce(bool_and(i.indisvalid), false) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'messiah_cf_clients_rank'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let mut t = connect_retry(&tenant_db);
    assert!(
        !valid(&mut t),
        "built while an older transaction was still open"
    );
    idle.batch_execute("COMMIT").unwrap();
    let ended = Instant::now();
    assert!(
        wait_until(60, || valid(&mut t)),
        "the index was not valid within 60 s of the idle transaction's end"
    );
    let to_valid = ended.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (inserts, worst) = writer.join().unwrap();
    assert!(inserts > 50, "{inserts} inserts");
    assert!(
        worst < Duration::from_millis(50),
        "a writer insert took {} ms while the field was defined",
        worst.as_millis()
    );
    // the definition was enforced meanwhile
    let e = t
        .batch_execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('x', '{\"rank\": \"high\"}')",
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    eprintln!(
        "writer: {inserts} inserts, worst {} ms; index valid {} ms after the idle transaction ended",
        worst.as_millis(),
        to_valid.as_millis()
    );
    drop((t, idle));
    drop_tenant(&mut admin, id);
}
