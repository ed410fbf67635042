//! Tenant lifecycle across sessions: commit creates, rollback leaves nothing.

use crate::common::*;

#[test]
fn rollback_leaves_no_database_and_no_row() {
    let mut admin = admin_db("messiah_it_rollback");
    let mut tx = admin.transaction().unwrap();
    let db: String = tx
        .query_one(
            "SELECT messiah_create_tenant('it_rb', 'Rolled back', 'it-rb') ->> 'database'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(db, "tenant_it_rb");
    tx.rollback().unwrap();
    assert!(!db_exists("tenant_it_rb"));
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM messiah.tenants WHERE tenant_id = 'it_rb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn commit_creates_the_database_and_drop_removes_it() {
    let mut admin = admin_db("messiah_it_commit");
    admin
        .execute(
            "SELECT messiah_create_tenant('it_commit', 'Committed', 'it-commit')",
            &[],
        )
        .unwrap();
    assert!(db_exists("tenant_it_commit"));
    let mut t = connect("tenant_it_commit");
    let tables: i64 = t
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('clients','projects','activities')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 3);
    // still connected: the drop must disconnect this session at commit
    admin
        .execute("SELECT messiah_drop_tenant('it_commit')", &[])
        .unwrap();
    settle(&mut admin);
    assert!(!db_exists("tenant_it_commit"));
    assert!(t.simple_query("SELECT 1").is_err());
}
