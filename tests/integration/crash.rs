//! Backends that die around provisioning (DESIGN.md decision 3): before COMMIT nothing was
//! created; inside COMMIT after CREATE DATABASE the provisioning journal lets sweep() (and the
//! background sweeper) drop the database; an error at COMMIT aborts the creation.

use crate::common::*;
use std::thread;

#[test]
fn backend_killed_before_commit_leaves_nothing() {
    drop_db("tenant_it_killed");
    let mut admin = admin_db("messiah_it_killed");
    let mut a = connect_retry("messiah_it_killed");
    let a_pid = backend_pid(&mut a);
    a.batch_execute("BEGIN").unwrap();
    let db: String = a
        .query_one(
            "SELECT messiah_create_tenant('it_killed', 'Killed', 'it-killed') ->> 'database'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(db, "tenant_it_killed");
    terminate(a_pid);
    assert!(
        a.batch_execute("COMMIT").is_err(),
        "A's session must be gone"
    );
    assert!(!db_exists("tenant_it_killed"));
    assert_eq!(tenant_rows(&mut admin, "it_killed"), 0);
    assert_eq!(journal_rows(&mut admin, None), 0);
    assert_eq!(sweep(&mut admin), Vec::<String>::new());
    assert!(!db_exists("tenant_it_killed"));
}

/// Starts a creation of `id` in autocommit with `sleep_after_create`, waits until its
/// database exists (the backend then sleeps inside COMMIT) and kills the backend.
fn kill_inside_commit(admin_name: &'static str, id: &'static str) {
    let mut a = connect_retry(admin_name);
    let a_pid = backend_pid(&mut a);
    a.batch_execute("SET messiah.fault_injection = 'sleep_after_create'")
        .unwrap();
    let slug = id.replace('_', "-");
    let handle = thread::spawn(move || {
        a.execute(
            "SELECT messiah_create_tenant($1, 'Dies in commit', $2)",
            &[&id, &slug],
        )
    });
    let datname = format!("tenant_{id}");
    assert!(
        wait_until(20, || db_exists(&datname)),
        "the database never appeared"
    );
    assert!(
        !handle.is_finished(),
        "the creation returned before it was killed"
    );
    terminate(a_pid);
    let r = handle.join().unwrap();
    assert!(r.is_err(), "the killed creation must not succeed");
}

#[test]
fn backend_killed_inside_commit_is_swept() {
    drop_db("tenant_it_incommit");
    let mut admin = admin_db("messiah_it_incommit");
    kill_inside_commit("messiah_it_incommit", "it_incommit");
    assert_eq!(tenant_rows(&mut admin, "it_incommit"), 0);
    // No background worker runs in this admin database: the database stays until a sweep.
    assert!(db_exists("tenant_it_incommit"));
    assert_eq!(journal_rows(&mut admin, Some("tenant_it_incommit")), 1);
    let status: String = admin
        .query_one(
            "SELECT pg_xact_status(creating_xid) FROM messiah.provisioning_journal \
             WHERE database_name = 'tenant_it_incommit'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "aborted");
    assert_eq!(sweep(&mut admin), vec!["tenant_it_incommit".to_string()]);
    assert!(!db_exists("tenant_it_incommit"));
    assert_eq!(journal_rows(&mut admin, None), 0);
    assert_eq!(sweep(&mut admin), Vec::<String>::new());
    // The id is free again.
    admin
        .execute(
            "SELECT messiah_create_tenant('it_incommit', 'Again', 'it-incommit')",
            &[],
        )
        .unwrap();
    assert!(db_exists("tenant_it_incommit"));
    admin
        .execute("SELECT messiah_drop_tenant('it_incommit')", &[])
        .unwrap();
    assert!(!db_exists("tenant_it_incommit"));
}

/// The sweeper worker connects to messiah.database = messiah_admin only, so this one runs
/// there, with an id no one else uses.
#[test]
fn background_sweeper_drops_database_of_backend_killed_inside_commit() {
    let id = "it_bgsweep";
    drop_db("tenant_it_bgsweep");
    let mut admin = connect_retry("messiah_admin");
    let interval: String = admin
        .query_one("SHOW messiah.sweep_interval", &[])
        .unwrap()
        .get(0);
    assert_eq!(interval, "1s", "the test cluster sweeps every second");
    admin
        .execute(
            "DELETE FROM messiah.provisioning_journal WHERE database_name = 'tenant_it_bgsweep'",
            &[],
        )
        .unwrap();
    kill_inside_commit("messiah_admin", id);
    assert!(
        wait_until(15, || !db_exists("tenant_it_bgsweep")),
        "the sweeper did not drop tenant_it_bgsweep within 15 s"
    );
    assert_eq!(tenant_rows(&mut admin, id), 0);
    assert!(
        wait_until(5, || journal_rows(&mut admin, Some("tenant_it_bgsweep"))
            == 0),
        "the sweeper left the journal row"
    );
}

#[test]
fn error_after_create_aborts_and_sweep_drops_the_database() {
    drop_db("tenant_it_errac");
    let mut admin = admin_db("messiah_it_errac");
    admin
        .batch_execute("SET messiah.fault_injection = 'error_after_create'")
        .unwrap();
    let e = fails(
        &mut admin,
        "SELECT messiah_create_tenant('it_errac', 'Error at commit', 'it-errac')",
    );
    assert_eq!(sqlstate(&e), "XX000", "{e}");
    assert!(message(&e).contains("error_after_create"), "{e}");
    admin
        .batch_execute("RESET messiah.fault_injection")
        .unwrap();
    assert_eq!(tenant_rows(&mut admin, "it_errac"), 0);
    assert!(
        db_exists("tenant_it_errac"),
        "CREATE DATABASE ran before the error"
    );
    assert_eq!(journal_rows(&mut admin, Some("tenant_it_errac")), 1);
    assert_eq!(sweep(&mut admin), vec!["tenant_it_errac".to_string()]);
    assert!(!db_exists("tenant_it_errac"));
    assert_eq!(journal_rows(&mut admin, None), 0);
}
