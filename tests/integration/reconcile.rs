//! Drift between catalog and databases (DESIGN.md decisions 3 and 10): an existing database
//! is never adopted by a creation (42P04); messiah_reconcile() lists drift and repairs only
//! what it can prove, leaving orphans to messiah_adopt_database() and messiah_drop_orphan();
//! DROP EXTENSION is refused while tenants exist; drop_tenant's error and keep_database paths.

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
    assert_eq!(swept(&mut admin), Vec::<String>::new());
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
    assert_eq!(temp_databases(&mut admin), 0);
    assert_eq!(swept(&mut admin), Vec::<String>::new());
    assert!(table_exists("tenant_it_exists_late", "keepme"));
    drop_db("tenant_it_exists_late");
}

/// Rows of `reconcile()` with the action cut before its first " (" (sizes and row counts
/// vary), for exact comparison.
fn short(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|(k, t, d, a)| (k, t, d, a.split(" (").next().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn reconcile_lists_and_repairs_drift_and_never_drops_what_it_cannot_prove() {
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
    connect_retry("tenant_it_rc_orphan")
        .batch_execute("INSERT INTO clients (name) VALUES ('a'), ('b')")
        .unwrap();
    // orphan: catalog row deleted by hand
    admin
        .batch_execute("DELETE FROM messiah.tenants WHERE tenant_id = 'it_rc_orphan'")
        .unwrap();
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

    let handmade = "left alone: not created by messiah";
    let orphan = "left alone: created by this installation, but no catalog row names it";
    assert_eq!(
        short(reconcile(&mut admin, false, "it_rc_")),
        vec![
            row("missing_database", "it_rc_missing", "would recreate empty"),
            row("orphan_database", "it_rc_handmade", handmade),
            row("orphan_database", "it_rc_orphan", orphan),
        ]
    );
    // listing changes nothing
    assert!(db_exists("tenant_it_rc_orphan"));
    assert!(!db_exists("tenant_it_rc_missing"));

    // repair recreates the missing database and drops no orphan: it cannot prove them garbage
    let repaired = reconcile(&mut admin, true, "it_rc_");
    assert_eq!(
        short(repaired.clone()),
        vec![
            row("missing_database", "it_rc_missing", "recreated empty"),
            row("orphan_database", "it_rc_handmade", handmade),
            row("orphan_database", "it_rc_orphan", orphan),
        ]
    );
    let orphan_action = &repaired[2].3;
    assert!(
        orphan_action.contains("clients: 2, projects: 0, activities: 0 rows"),
        "{orphan_action}"
    );
    assert!(
        orphan_action
            .ends_with("messiah_adopt_database() adopts it, messiah_drop_orphan() drops it"),
        "{orphan_action}"
    );
    assert!(db_exists("tenant_it_rc_orphan"));
    assert!(db_exists("tenant_it_rc_handmade"));
    for t in ["clients", "projects", "activities"] {
        assert!(table_exists("tenant_it_rc_missing", t), "{t}");
    }
    assert!(db_exists("tenant_it_rc_kept"));
    assert!(db_exists("tenant_it_rc_fine"));

    // the orphan is adopted back from its own catalog copy; the hand-made one dropped on purpose
    let adopted = json(&mut admin, "messiah_adopt_database('tenant_it_rc_orphan')");
    assert_eq!(adopted["name"], "Reconcile orphan");
    assert_eq!(adopted["slug"], "it-rc-orphan");
    settle(&mut admin);
    let dropped = json(&mut admin, "messiah_drop_orphan('tenant_it_rc_handmade')");
    assert_eq!(dropped["dropped"], true);
    assert!(!db_exists("tenant_it_rc_handmade"));
    assert_eq!(reconcile(&mut admin, true, "it_rc_"), vec![]);
    assert_eq!(
        connect_retry("tenant_it_rc_orphan")
            .query_one("SELECT count(*) FROM clients", &[])
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    assert_eq!(swept(&mut admin), Vec::<String>::new());
    assert_eq!(temp_databases(&mut admin), 0);

    for id in ["missing", "fine", "orphan"] {
        drop_tenant(&mut admin, &format!("it_rc_{id}"));
        assert!(!db_exists(&format!("tenant_it_rc_{id}")));
    }
    drop_db("tenant_it_rc_kept");
}

/// `messiah_drop_orphan` and `messiah_adopt_database` refuse what is not an orphan.
#[test]
fn drop_orphan_and_adopt_refuse_non_orphans() {
    drop_db("tenant_it_rc_named");
    let mut admin = admin_db("messiah_it_rc_named");
    admin
        .execute(
            "SELECT messiah_create_tenant('it_rc_named', 'Named', 'it-rc-named')",
            &[],
        )
        .unwrap();
    for (sql, code) in [
        ("SELECT messiah_drop_orphan('tenant_it_rc_named')", "55000"),
        (
            "SELECT messiah_adopt_database('tenant_it_rc_named')",
            "55000",
        ),
        ("SELECT messiah_drop_orphan('postgres')", "22023"),
        ("SELECT messiah_drop_orphan('messiah_admin')", "22023"),
        (
            "SELECT messiah_drop_orphan('tenant_it_rc_nowhere')",
            "3D000",
        ),
        (
            "SELECT messiah_adopt_database('tenant_it_rc_nowhere')",
            "3D000",
        ),
        (
            "SELECT messiah_drop_orphan('tenant_it_rc_named', server => 'nosuch')",
            "42704",
        ),
    ] {
        let e = fails(&mut admin, sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
    assert!(db_exists("tenant_it_rc_named"));
    drop_tenant(&mut admin, "it_rc_named");
}

/// The input of the issue: `DROP EXTENSION messiah` succeeded silently with tenants holding
/// rows, and after `CREATE EXTENSION messiah`, `messiah_reconcile(repair => true)` dropped
/// every tenant database. Now the drop is refused, and if it is forced anyway (the event
/// trigger disabled by a superuser), repair drops nothing and the tenants can be adopted.
#[test]
fn drop_extension_is_refused_and_repair_never_destroys_orphans() {
    drop_db("tenant_it_dx");
    let mut admin = admin_db("messiah_it_dx");
    admin
        .batch_execute(
            "SELECT messiah_create_tenant('it_dx', 'Drop ext', 'it-dx', settings => '{\"tier\": \"gold\"}'); \
             SELECT messiah_define_field('it_dx', 'clients', 'score', 'number', 'Score', validation_rules => '{\"min\": 0}')",
        )
        .unwrap();
    settle(&mut admin);
    connect_retry("tenant_it_dx")
        .batch_execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('keep me', '{\"score\": 3}')",
        )
        .unwrap();
    for sql in [
        "DROP EXTENSION messiah",
        "DROP EXTENSION messiah CASCADE",
        "DROP EXTENSION IF EXISTS pg_trgm, messiah",
        "DROP SCHEMA messiah CASCADE",
    ] {
        let e = fails(&mut admin, sql);
        assert_eq!(sqlstate(&e), "2BP01", "{sql}: {e}");
        assert_eq!(
            message(&e),
            if sql.contains("SCHEMA") {
                "cannot drop schema messiah: this admin database still has 1 tenant(s)"
            } else {
                "cannot drop extension messiah: this admin database still has 1 tenant(s)"
            }
        );
    }
    assert_eq!(tenant_rows(&mut admin, "it_dx"), 1);
    // forced by a superuser. Without the guard (whose catalog lock prevents it), the DROP
    // takes the catalog's locks one by one and can deadlock with the executor reading them
    // (40P01, the DROP is the one rolled back): a superuser retries, as this does.
    let mut attempts = 0;
    while let Err(e) = admin.batch_execute(
        "BEGIN; ALTER EVENT TRIGGER messiah_ddl_guard DISABLE; DROP EXTENSION messiah; \
         SET client_min_messages = warning; CREATE EXTENSION messiah; COMMIT",
    ) {
        attempts += 1;
        assert!(attempts < 10 && sqlstate(&e) == "40P01", "{e}");
        admin.batch_execute("ROLLBACK").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let rows = reconcile(&mut admin, true, "it_dx");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "orphan_database");
    assert!(
        rows[0].3.starts_with(
            "left alone: created by an earlier installation of messiah in this database"
        ),
        "{rows:?}"
    );
    assert!(
        db_exists("tenant_it_dx"),
        "repair dropped a tenant database with data"
    );
    let adopted = json(&mut admin, "messiah_adopt_database('tenant_it_dx')");
    assert_eq!(adopted["name"], "Drop ext");
    assert_eq!(adopted["settings"], serde_json::json!({"tier": "gold"}));
    let fields: i64 = admin
        .query_one(
            "SELECT count(*) FROM messiah_list_fields('it_dx') f WHERE f->>'field_name' = 'score'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(fields, 1);
    settle(&mut admin);
    assert_eq!(reconcile(&mut admin, true, "it_dx"), vec![]);
    let mut t = connect_retry("tenant_it_dx");
    let e = t
        .execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('x', '{\"score\": -1}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    drop(t);
    drop_tenant(&mut admin, "it_dx");
    assert!(!db_exists("tenant_it_dx"));
    // with no tenant left, the extension can be dropped
    admin.batch_execute("DROP EXTENSION messiah").unwrap();
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
    settle(&mut admin);
    admin.batch_execute("COMMIT").unwrap();
    let kept = db_exists("tenant_it_foreign");
    drop_db("tenant_it_foreign");
    assert!(kept, "messiah dropped a database it never created");
}
