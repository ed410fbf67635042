//! Every way a transaction can end (DESIGN.md decision 3, issue "Integrity" section 1): a
//! backend killed before or inside COMMIT, an error at COMMIT, a cancel while the database is
//! being created, a serialization failure at COMMIT, a savepoint rolled back after SET
//! CONSTRAINTS ALL IMMEDIATE, and a field change whose COMMIT fails. Nothing irreversible
//! happens in another database before our commit: a drop is carried out after COMMIT, a
//! creation leaves only databases the server's catalog proves to be garbage, and those are
//! swept within a bounded time.

use crate::common::*;
use postgres::Client;
use std::thread;
use std::time::Duration;

/// Waits (15 s at most) until the database is gone: swept by the executor worker, woken by
/// the abort, or by messiah_reconcile(repair => true) run here every second.
fn swept_within(c: &mut Client, datname: &str) -> bool {
    wait_until(15, || {
        if db_exists(datname) {
            let _ = swept(c);
            thread::sleep(Duration::from_millis(200));
        }
        !db_exists(datname)
    })
}

#[test]
fn backend_killed_before_commit_leaves_nothing() {
    drop_db("tenant_it_killed");
    let mut admin = admin_db("messiah_it_killed");
    let mut a = connect_retry("messiah_it_killed");
    a.batch_execute("BEGIN; SELECT messiah_create_tenant('it_killed', 'Killed', 'it-killed')")
        .unwrap();
    let pid = backend_pid(&mut a);
    terminate(pid);
    assert_eq!(tenant_rows(&mut admin, "it_killed"), 0);
    assert!(!db_exists("tenant_it_killed"));
    assert_eq!(temp_databases(&mut admin), 0);
    assert_eq!(swept(&mut admin), Vec::<String>::new());
}

/// Starts a creation of `id` in autocommit that waits 30 s at fault point `point` (inside
/// COMMIT), waits until `visible` exists, then ends the backend with `end` (terminate or
/// cancel). Returns the creation's error.
fn end_inside_commit(
    admin_name: &'static str,
    id: &'static str,
    point: &str,
    visible: impl Fn() -> bool,
    cancel: bool,
) -> postgres::Error {
    let mut a = connect_retry(admin_name);
    let a_pid = backend_pid(&mut a);
    a.batch_execute(&format!("SET messiah.fault_injection = 'sleep:{point}'"))
        .unwrap();
    let slug = id.replace('_', "-");
    let handle = thread::spawn(move || {
        a.execute(
            "SELECT messiah_create_tenant($1, 'Ends in commit', $2)",
            &[&id, &slug],
        )
    });
    assert!(wait_until(20, visible), "the database never appeared");
    assert!(
        !handle.is_finished(),
        "the creation returned before it was ended"
    );
    if cancel {
        let mut pg = connect_retry("postgres");
        pg.execute("SELECT pg_cancel_backend($1)", &[&a_pid])
            .unwrap();
    } else {
        terminate(a_pid);
    }
    handle
        .join()
        .unwrap()
        .expect_err("the ended creation must not succeed")
}

#[test]
fn backend_killed_inside_commit_is_swept() {
    drop_db("tenant_it_incommit");
    let mut admin = admin_db("messiah_it_incommit");
    end_inside_commit(
        "messiah_it_incommit",
        "it_incommit",
        "after_create",
        || db_exists("tenant_it_incommit"),
        false,
    );
    assert_eq!(tenant_rows(&mut admin, "it_incommit"), 0);
    assert!(
        swept_within(&mut admin, "tenant_it_incommit"),
        "tenant_it_incommit was not swept within 15 s"
    );
    assert_eq!(temp_databases(&mut admin), 0);
    // The id is free again.
    admin
        .execute(
            "SELECT messiah_create_tenant('it_incommit', 'Again', 'it-incommit')",
            &[],
        )
        .unwrap();
    assert!(db_exists("tenant_it_incommit"));
    drop_tenant(&mut admin, "it_incommit");
    assert!(!db_exists("tenant_it_incommit"));
}

/// The input of the issue: a cancel while the database is being created at COMMIT left
/// `tenant_x` without a marker, the sweep forgot it, and a new create of x got 42P04. Now the
/// database being created has a temporary name that proves whose it is.
#[test]
fn cancel_during_create_leaves_nothing_and_the_id_stays_usable() {
    drop_db("tenant_it_cancel");
    let mut admin = admin_db("messiah_it_cancel");
    let e = end_inside_commit(
        "messiah_it_cancel",
        "it_cancel",
        "after_create_database",
        || {
            let mut pg = connect_retry("postgres");
            pg.query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'messiah\\_new\\_%' \
                 AND shobj_description(oid, 'pg_database') IS NULL",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
        },
        true,
    );
    assert_eq!(sqlstate(&e), "57014", "{e}");
    assert_eq!(tenant_rows(&mut admin, "it_cancel"), 0);
    assert!(!db_exists("tenant_it_cancel"));
    assert!(
        wait_until(15, || {
            let _ = swept(&mut admin);
            temp_databases(&mut admin) == 0
        }),
        "the unmarked database being created was not swept"
    );
    admin
        .execute(
            "SELECT messiah_create_tenant('it_cancel', 'Again', 'it-cancel')",
            &[],
        )
        .unwrap();
    assert!(db_exists("tenant_it_cancel"));
    drop_tenant(&mut admin, "it_cancel");
}

#[test]
fn error_at_commit_aborts_and_the_database_is_swept() {
    drop_db("tenant_it_errac");
    let mut admin = admin_db("messiah_it_errac");
    admin
        .batch_execute("SET messiah.fault_injection = 'error:after_create'")
        .unwrap();
    let e = fails(
        &mut admin,
        "SELECT messiah_create_tenant('it_errac', 'Error at commit', 'it-errac')",
    );
    assert_eq!(sqlstate(&e), "XX000", "{e}");
    assert!(message(&e).contains("error:after_create"), "{e}");
    admin
        .batch_execute("RESET messiah.fault_injection")
        .unwrap();
    assert_eq!(tenant_rows(&mut admin, "it_errac"), 0);
    assert!(swept_within(&mut admin, "tenant_it_errac"));
    assert_eq!(swept(&mut admin), Vec::<String>::new());
}

/// Two SERIALIZABLE transactions form a pivot; the one that dropped a tenant fails at
/// COMMIT with 40001. Nothing may have been dropped: the drop is carried out only after a
/// COMMIT that succeeded.
#[test]
fn drop_whose_commit_fails_on_serialization_drops_nothing() {
    for id in ["it_ser", "it_ser_other"] {
        drop_db(&format!("tenant_{id}"));
    }
    let mut admin = admin_db("messiah_it_ser");
    for id in ["it_ser", "it_ser_other"] {
        admin
            .execute(
                "SELECT messiah_create_tenant($1, 'Ser', $2)",
                &[&id, &id.replace('_', "-")],
            )
            .unwrap();
    }
    let mut t1 = connect_retry("messiah_it_ser");
    let mut t2 = connect_retry("messiah_it_ser");
    t1.batch_execute(
        "BEGIN ISOLATION LEVEL SERIALIZABLE; \
         SELECT name FROM messiah.tenants WHERE tenant_id = 'it_ser_other'",
    )
    .unwrap();
    t2.batch_execute(
        "BEGIN ISOLATION LEVEL SERIALIZABLE; \
         SELECT name FROM messiah.tenants WHERE tenant_id = 'it_ser'",
    )
    .unwrap();
    t1.batch_execute("SELECT messiah_drop_tenant('it_ser')")
        .unwrap();
    t2.batch_execute(
        "UPDATE messiah.tenants SET name = 'T2' WHERE tenant_id = 'it_ser_other'; COMMIT",
    )
    .unwrap();
    let e = fails(&mut t1, "COMMIT");
    assert_eq!(sqlstate(&e), "40001", "{e}");
    settle(&mut admin);
    assert!(
        db_exists("tenant_it_ser"),
        "a drop whose COMMIT failed dropped the database"
    );
    let lifecycle: String = admin
        .query_one(
            "SELECT lifecycle FROM messiah.tenants WHERE tenant_id = 'it_ser'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(lifecycle, "ready");
    assert_eq!(
        admin
            .query_one("SELECT count(*) FROM messiah.outbox", &[])
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    for id in ["it_ser", "it_ser_other"] {
        drop_tenant(&mut admin, id);
    }
}

/// `SET CONSTRAINTS ALL IMMEDIATE` fires deferred triggers inside a savepoint that is then
/// rolled back: the drop is not carried out, and the database the creation made is swept.
#[test]
fn savepoint_rolled_back_after_set_constraints_immediate() {
    for id in ["it_sp_drop", "it_sp_new"] {
        drop_db(&format!("tenant_{id}"));
    }
    let mut admin = admin_db("messiah_it_sp");
    admin
        .execute(
            "SELECT messiah_create_tenant('it_sp_drop', 'Kept', 'it-sp-drop')",
            &[],
        )
        .unwrap();
    admin
        .batch_execute(
            "BEGIN; SAVEPOINT s; SELECT messiah_drop_tenant('it_sp_drop'); \
             SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK TO SAVEPOINT s; COMMIT",
        )
        .unwrap();
    settle(&mut admin);
    assert!(
        db_exists("tenant_it_sp_drop"),
        "the rolled-back drop dropped the database"
    );
    assert_eq!(tenant_rows(&mut admin, "it_sp_drop"), 1);

    admin
        .batch_execute(
            "BEGIN; SAVEPOINT s; SELECT messiah_create_tenant('it_sp_new', 'Gone', 'it-sp-new'); \
             SET CONSTRAINTS ALL IMMEDIATE",
        )
        .unwrap();
    assert!(
        db_exists("tenant_it_sp_new"),
        "SET CONSTRAINTS ALL IMMEDIATE creates it"
    );
    admin
        .batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT")
        .unwrap();
    assert_eq!(tenant_rows(&mut admin, "it_sp_new"), 0);
    assert!(
        swept_within(&mut admin, "tenant_it_sp_new"),
        "the orphan of the rolled-back savepoint was not swept"
    );
    drop_tenant(&mut admin, "it_sp_drop");
}

/// A definition change and, later in the same transaction, something that makes the COMMIT
/// fail (another tenant's creation hitting 42P04): the catalog has no definition and the
/// tenant database does not enforce it.
#[test]
fn field_change_whose_commit_fails_is_not_enforced() {
    for id in ["it_pa", "it_pa_other"] {
        drop_db(&format!("tenant_{id}"));
    }
    let mut admin = admin_db("messiah_it_pa");
    admin
        .execute("SELECT messiah_create_tenant('it_pa', 'Pa', 'it-pa')", &[])
        .unwrap();
    admin.batch_execute("BEGIN").unwrap();
    admin
        .batch_execute(
            "SELECT messiah_define_field('it_pa', 'clients', 'tier', 'text', 'Tier', is_required => true); \
             SELECT messiah_create_tenant('it_pa_other', 'Other', 'it-pa-other')",
        )
        .unwrap();
    // the other tenant's database appears after the call checked for it: the COMMIT fails
    connect_retry("postgres")
        .batch_execute("CREATE DATABASE tenant_it_pa_other")
        .unwrap();
    let e = fails(&mut admin, "COMMIT");
    assert_eq!(sqlstate(&e), "42P04", "{e}");
    settle(&mut admin);
    let defs: i64 = admin
        .query_one(
            "SELECT count(*) FROM messiah.extension_field_definitions WHERE tenant_id = 'it_pa'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(defs, 0);
    let mut t = connect_retry("tenant_it_pa");
    t.batch_execute("INSERT INTO clients (name) VALUES ('no tier, as the catalog says')")
        .unwrap();
    let drift: i64 = admin
        .query_one(
            "SELECT count(*) FROM messiah_reconcile(deep => true) WHERE tenant_id = 'it_pa'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(drift, 0);
    drop(t);
    drop_tenant(&mut admin, "it_pa");
    drop_db("tenant_it_pa_other");
}
