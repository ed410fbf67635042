//! Drift between catalog and databases: an existing database is never adopted (42P04),
//! messiah_reconcile() lists and repairs orphans and missing databases, and drop_tenant's
//! error and keep_database paths.

use crate::common::*;
use postgres::Client;

type Row = (String, String, String, String);

/// messiah_reconcile(repair)'s rows for tenant ids starting with `prefix` (other tests'
/// hand-made databases on the cluster are listed too), ordered.
fn reconcile(c: &mut Client, repair: bool, prefix: &str) -> Vec<Row> {
    let mut v: Vec<Row> = c
        .query(
            "SELECT kind, tenant_id, database_name, action FROM messiah_reconcile($1) \
             WHERE starts_with(tenant_id, $2)",
            &[&repair, &prefix],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    v.sort();
    v
}

fn row(kind: &str, id: &str, action: &str) -> Row {
    (
        kind.into(),
        id.into(),
        format!("tenant_{id}"),
        action.into(),
    )
}

#[test]
fn existing_database_is_not_adopted_42p04() {
    drop_db("tenant_it_exists");
    let mut admin = admin_db("messiah_it_exists");
    let mut pg = connect_retry("postgres");
    pg.batch_execute("CREATE DATABASE tenant_it_exists")
        .unwrap();
    connect_retry("tenant_it_exists")
        .batch_execute("CREATE TABLE keepme (x int); INSERT INTO keepme VALUES (42)")
        .unwrap();
    let e = fails(
        &mut admin,
        "SELECT messiah_create_tenant('it_exists', 'Exists', 'it-exists')",
    );
    assert_eq!(sqlstate(&e), "42P04", "{e}");
    assert!(message(&e).contains("tenant_it_exists"), "{e}");
    assert!(db_exists("tenant_it_exists"));
    let x: i32 = connect_retry("tenant_it_exists")
        .query_one("SELECT x FROM keepme", &[])
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
    assert_eq!(tenant_rows(&mut admin, "it_exists"), 0);
    assert_eq!(sweep(&mut admin), Vec::<String>::new());
    assert!(table_exists("tenant_it_exists", "keepme"));
    drop_db("tenant_it_exists");
}

/// The database appears between the call and COMMIT: the COMMIT fails with 42P04 and the
/// other database is neither adopted nor swept.
#[test]
fn database_created_before_commit_fails_the_commit_42p04() {
    drop_db("tenant_it_exists_late");
    let mut admin = admin_db("messiah_it_exists_late");
    admin.batch_execute("BEGIN").unwrap();
    admin
        .execute(
            "SELECT messiah_create_tenant('it_exists_late', 'Late', 'it-exists-late')",
            &[],
        )
        .unwrap();
    connect_retry("postgres")
        .batch_execute("CREATE DATABASE tenant_it_exists_late")
        .unwrap();
    connect_retry("tenant_it_exists_late")
        .batch_execute("CREATE TABLE keepme (x int)")
        .unwrap();
    let e = fails(&mut admin, "COMMIT");
    assert_eq!(sqlstate(&e), "42P04", "{e}");
    assert_eq!(tenant_rows(&mut admin, "it_exists_late"), 0);
    assert_eq!(journal_rows(&mut admin, None), 0);
    assert_eq!(sweep(&mut admin), Vec::<String>::new());
    assert!(table_exists("tenant_it_exists_late", "keepme"));
    drop_db("tenant_it_exists_late");
}

#[test]
fn reconcile_lists_and_repairs_drift() {
    for id in ["orphan", "handmade", "missing", "kept", "fine"] {
        drop_db(&format!("tenant_it_rc_{id}"));
    }
    let mut admin = admin_db("messiah_it_reconcile");
    for id in ["orphan", "missing", "kept", "fine"] {
        admin
            .execute(
                "SELECT messiah_create_tenant($1, $2, $3)",
                &[
                    &format!("it_rc_{id}"),
                    &format!("Reconcile {id}"),
                    &format!("it-rc-{id}"),
                ],
            )
            .unwrap();
        assert!(db_exists(&format!("tenant_it_rc_{id}")));
    }
    assert_eq!(reconcile(&mut admin, false, "it_rc_"), vec![]);

    // orphan: catalog row deleted without the drop trigger firing
    admin
        .batch_execute(
            "SET session_replication_role = replica; \
             DELETE FROM messiah.tenants WHERE tenant_id = 'it_rc_orphan'; \
             RESET session_replication_role",
        )
        .unwrap();
    assert_eq!(tenant_rows(&mut admin, "it_rc_orphan"), 0);
    assert!(
        db_exists("tenant_it_rc_orphan"),
        "replica role must skip the drop trigger"
    );
    // hand-made database named like a tenant database
    connect_retry("postgres")
        .batch_execute("CREATE DATABASE tenant_it_rc_handmade")
        .unwrap();
    // missing: database dropped by hand
    drop_db("tenant_it_rc_missing");
    // kept: detached by drop_tenant(keep_database => true)
    let kept = json(
        &mut admin,
        "messiah_drop_tenant('it_rc_kept', keep_database => true)",
    );
    assert_eq!(
        kept,
        serde_json::json!({"tenant_id": "it_rc_kept", "database": "tenant_it_rc_kept", "database_kept": true})
    );

    let left_alone =
        "left alone: not created by messiah (no marker comment); drop it by hand if unwanted";
    assert_eq!(
        reconcile(&mut admin, false, "it_rc_"),
        vec![
            row("missing_database", "it_rc_missing", "would recreate empty"),
            row("orphan_database", "it_rc_handmade", left_alone),
            row("orphan_database", "it_rc_orphan", "would drop"),
        ]
    );
    // listing changes nothing
    assert!(db_exists("tenant_it_rc_orphan"));
    assert!(!db_exists("tenant_it_rc_missing"));

    assert_eq!(
        reconcile(&mut admin, true, "it_rc_"),
        vec![
            row("missing_database", "it_rc_missing", "recreated empty"),
            row("orphan_database", "it_rc_handmade", left_alone),
            row("orphan_database", "it_rc_orphan", "dropped"),
        ]
    );
    assert!(!db_exists("tenant_it_rc_orphan"));
    assert!(db_exists("tenant_it_rc_handmade"));
    assert!(db_exists("tenant_it_rc_missing"));
    for t in ["clients", "projects", "activities"] {
        assert!(table_exists("tenant_it_rc_missing", t), "{t}");
    }
    assert!(db_exists("tenant_it_rc_kept"));
    assert!(db_exists("tenant_it_rc_fine"));
    assert_eq!(
        reconcile(&mut admin, false, "it_rc_"),
        vec![row("orphan_database", "it_rc_handmade", left_alone)]
    );
    assert_eq!(sweep(&mut admin), Vec::<String>::new());
    assert_eq!(journal_rows(&mut admin, None), 0);

    for id in ["missing", "fine"] {
        admin
            .execute("SELECT messiah_drop_tenant($1)", &[&format!("it_rc_{id}")])
            .unwrap();
        assert!(!db_exists(&format!("tenant_it_rc_{id}")));
    }
    drop_db("tenant_it_rc_handmade");
    drop_db("tenant_it_rc_kept");
}

/// Deleting the row with the provisioning trigger disabled also makes an orphan.
#[test]
fn reconcile_orphan_after_trigger_disabled_delete() {
    drop_db("tenant_it_rc_disabled");
    let mut admin = admin_db("messiah_it_rc_disabled");
    admin
        .execute(
            "SELECT messiah_create_tenant('it_rc_disabled', 'Disabled', 'it-rc-disabled')",
            &[],
        )
        .unwrap();
    admin
        .batch_execute(
            "ALTER TABLE messiah.tenants DISABLE TRIGGER tenants_provision; \
             DELETE FROM messiah.tenants WHERE tenant_id = 'it_rc_disabled'; \
             ALTER TABLE messiah.tenants ENABLE TRIGGER tenants_provision",
        )
        .unwrap();
    assert!(db_exists("tenant_it_rc_disabled"));
    assert_eq!(
        reconcile(&mut admin, false, "it_rc_disabled"),
        vec![row("orphan_database", "it_rc_disabled", "would drop")]
    );
    assert_eq!(
        reconcile(&mut admin, true, "it_rc_disabled"),
        vec![row("orphan_database", "it_rc_disabled", "dropped")]
    );
    assert!(!db_exists("tenant_it_rc_disabled"));
}

#[test]
fn drop_tenant_unknown_id_and_keep_database() {
    drop_db("tenant_it_keep");
    let mut admin = admin_db("messiah_it_keep");
    let e = fails(&mut admin, "SELECT messiah_drop_tenant('it_keep_nobody')");
    assert_eq!(sqlstate(&e), "42704", "{e}");
    assert!(message(&e).contains("it_keep_nobody"), "{e}");
    let e = fails(&mut admin, "SELECT messiah_drop_tenant('Bad-Id')");
    assert_eq!(sqlstate(&e), "22023", "{e}");

    admin
        .execute(
            "SELECT messiah_create_tenant('it_keep', 'Keep', 'it-keep')",
            &[],
        )
        .unwrap();
    connect_retry("tenant_it_keep")
        .batch_execute("INSERT INTO clients (name) VALUES ('kept client')")
        .unwrap();
    let r = json(
        &mut admin,
        "messiah_drop_tenant('it_keep', keep_database => true)",
    );
    assert_eq!(
        r,
        serde_json::json!({"tenant_id": "it_keep", "database": "tenant_it_keep", "database_kept": true})
    );
    assert_eq!(tenant_rows(&mut admin, "it_keep"), 0);
    assert!(db_exists("tenant_it_keep"));
    let name: String = connect_retry("tenant_it_keep")
        .query_one("SELECT name FROM clients", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, "kept client");
    let detached: String = admin
        .query_one(
            "SELECT tenant_id FROM messiah.detached_databases WHERE database_name = 'tenant_it_keep'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(detached, "it_keep");
    let e = fails(&mut admin, "SELECT messiah_drop_tenant('it_keep')");
    assert_eq!(sqlstate(&e), "42704", "{e}");
    assert!(db_exists("tenant_it_keep"));
    drop_db("tenant_it_keep");
}

/// Create and drop of one tenant in one transaction must not drop a database of that name
/// that someone else created meanwhile (messiah never created it): the deferred DELETE
/// trigger only drops databases carrying this admin database's marker comment.
#[test]
fn create_and_drop_in_one_transaction_leaves_foreign_database_alone() {
    drop_db("tenant_it_foreign");
    let mut admin = admin_db("messiah_it_foreign");
    admin.batch_execute("BEGIN").unwrap();
    admin
        .execute(
            "SELECT messiah_create_tenant('it_foreign', 'Foreign', 'it-foreign')",
            &[],
        )
        .unwrap();
    connect_retry("postgres")
        .batch_execute("CREATE DATABASE tenant_it_foreign")
        .unwrap();
    connect_retry("tenant_it_foreign")
        .batch_execute("CREATE TABLE keepme (x int)")
        .unwrap();
    admin
        .execute("SELECT messiah_drop_tenant('it_foreign')", &[])
        .unwrap();
    admin.batch_execute("COMMIT").unwrap();
    let kept = db_exists("tenant_it_foreign");
    drop_db("tenant_it_foreign");
    assert!(kept, "messiah dropped a database it never created");
}
