//! Backup and restore of the admin database (DESIGN.md decision 10; issue "Integrity"
//! section 3), the way users already do it: `pg_dump admin | psql -d copy`. The load has no
//! side effects and restores the catalog completely; the copy has an identity of its own and
//! manages nothing of the original's until told to take over, after which the original sees
//! those tenants as no longer its own.

use crate::common::*;
use postgres::Client;

fn dump(db: &str) -> Vec<u8> {
    let (host, port) = host_port();
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .args(["-h", &host, "-p", &port.to_string(), "-U", "postgres", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `psql -v ON_ERROR_STOP=1 -d db` with `script` on stdin at host/port; panics with psql's
/// output unless it exits 0 without an ERROR.
fn load(host: &str, port: u16, db: &str, script: &[u8]) {
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ERROR"),
        "restore failed: {stderr}"
    );
}

/// Which of this test's tenant databases exist (only its own: the other test of this file
/// creates and drops `tenant_it_rs_far` on the same cluster at the same time).
fn own_databases() -> Vec<String> {
    let mut pg = connect_retry("postgres");
    pg.query(
        "SELECT datname FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
        &[&vec!["tenant_it_rs_a", "tenant_it_rs_b"]],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn installation(c: &mut Client) -> String {
    c.query_one("SELECT messiah.installation_id()::text", &[])
        .unwrap()
        .get(0)
}

fn catalog(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT t.tenant_id || ' ' || t.name || ' ' || t.slug || ' ' || t.lifecycle || ' fields=' || \
                (SELECT count(*) FROM messiah.extension_field_definitions d WHERE d.tenant_id = t.tenant_id) || \
                ' configs=' || (SELECT count(*) FROM messiah.tenant_supabase_configs s WHERE s.tenant_id = t.tenant_id) \
         FROM messiah.tenants t ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn kinds(c: &mut Client) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = c
        .query(
            "SELECT kind, tenant_id FROM messiah_reconcile(deep => true) WHERE tenant_id LIKE 'it\\_rs\\_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    v.sort();
    v
}

#[test]
fn restore_on_the_same_cluster_is_complete_and_inert_until_takeover() {
    for t in ["it_rs_a", "it_rs_b"] {
        drop_db(&format!("tenant_{t}"));
    }
    drop_db("messiah_it_restore_copy");
    let mut orig = admin_db("messiah_it_restore");
    orig.batch_execute(
        "SELECT messiah_create_tenant('it_rs_a', 'Restore A', 'it-rs-a', config => \
            '{\"supabase_project_id\": \"p\", \"supabase_url\": \"https://p.test\", \"anon_key\": \"a\", \"service_key\": \"s\"}'); \
         SELECT messiah_create_tenant('it_rs_b', 'Restore B', 'it-rs-b'); \
         SELECT messiah_define_field('it_rs_a', 'clients', 'score', 'number', 'Score', validation_rules => '{\"min\": 0}')",
    )
    .unwrap();
    settle(&mut orig);
    let before = own_databases();
    assert_eq!(before, ["tenant_it_rs_a", "tenant_it_rs_b"]);
    let script = dump("messiah_it_restore");
    connect_retry("postgres")
        .batch_execute("CREATE DATABASE messiah_it_restore_copy")
        .unwrap();
    let (host, port) = host_port();
    load(&host, port, "messiah_it_restore_copy", &script);
    // complete, and nothing was created or dropped by the load
    let mut copy = connect_retry("messiah_it_restore_copy");
    assert_eq!(catalog(&mut copy), catalog(&mut orig));
    assert_eq!(own_databases(), before);
    assert_ne!(installation(&mut copy), installation(&mut orig));
    settle(&mut copy);
    assert_eq!(own_databases(), before);
    // the copy knows it is a copy: it changes nothing of the original's tenants
    assert_eq!(
        kinds(&mut copy),
        vec![
            ("foreign_tenant".into(), "it_rs_a".into()),
            ("foreign_tenant".into(), "it_rs_b".into())
        ]
    );
    for sql in [
        "SELECT messiah_drop_tenant('it_rs_b')",
        "SELECT messiah_define_field('it_rs_a', 'clients', 'x', 'text', 'X')",
        "SELECT messiah_update_tenant('it_rs_a', '{\"name\": \"copy\"}')",
    ] {
        let e = fails(&mut copy, sql);
        assert_eq!(sqlstate(&e), "55000", "{sql}: {e}");
    }
    assert_eq!(swept(&mut copy), Vec::<String>::new());
    assert_eq!(own_databases(), before);
    // the original still manages them
    assert_eq!(kinds(&mut orig), vec![]);
    // takeover: the copy manages them now, the original sees them as someone else's
    let taken: i64 = copy
        .query_one("SELECT count(*) FROM messiah_takeover()", &[])
        .unwrap()
        .get(0);
    assert_eq!(taken, 2);
    settle(&mut copy);
    assert_eq!(kinds(&mut copy), vec![]);
    copy.batch_execute("SELECT messiah_define_field('it_rs_a', 'clients', 'tier', 'text', 'Tier')")
        .unwrap();
    settle(&mut copy);
    assert_eq!(
        kinds(&mut orig),
        vec![
            ("owned_elsewhere".into(), "it_rs_a".into()),
            ("owned_elsewhere".into(), "it_rs_b".into())
        ]
    );
    // the original's change can no longer reach the tenant database
    orig.batch_execute(
        "SELECT messiah_define_field('it_rs_a', 'clients', 'other', 'text', 'Other')",
    )
    .unwrap();
    // (waiting: the executor, woken at that commit, may be running the push right now)
    let r = json(&mut orig, "messiah_run_pending(wait_ms => 10000)");
    assert_eq!(r["failed"], 1, "{r}");
    assert!(
        r["actions"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("managed by another messiah installation"),
        "{r}"
    );
    // and its drop leaves the database alone
    orig.batch_execute("DELETE FROM messiah.outbox").unwrap();
    drop_tenant(&mut orig, "it_rs_b");
    assert!(
        db_exists("tenant_it_rs_b"),
        "the original dropped a tenant it no longer manages"
    );
    // the copy drops what it manages
    drop_tenant(&mut copy, "it_rs_b");
    assert!(!db_exists("tenant_it_rs_b"));
    drop_tenant(&mut copy, "it_rs_a");
    assert!(!db_exists("tenant_it_rs_a"));
    drop(copy);
    drop_db("messiah_it_restore_copy");
}

/// A dump restored on another cluster, where none of the tenant databases exist: nothing is
/// created, and reconcile lists them as missing, left alone.
#[test]
fn restore_on_another_cluster_creates_nothing() {
    drop_db("tenant_it_rs_far");
    let mut orig = admin_db("messiah_it_restore_far");
    orig.batch_execute("SELECT messiah_create_tenant('it_rs_far', 'Far', 'it-rs-far')")
        .unwrap();
    let script = dump("messiah_it_restore_far");
    let other = OtherCluster::start(
        "/tmp/messiah-it-restore2",
        28817,
        None,
        "shared_preload_libraries = 'messiah'\nmax_worker_processes = 16",
    );
    other
        .connect("postgres")
        .batch_execute("CREATE DATABASE admin_copy")
        .unwrap();
    load(&other.dir, other.port, "admin_copy", &script);
    let mut copy = other.connect("admin_copy");
    settle(&mut copy);
    let created: i64 = other
        .connect("postgres")
        .query_one("SELECT count(*) FROM pg_database WHERE datname LIKE 'tenant\\_%' OR datname LIKE 'messiah\\_%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(created, 0, "the restore created databases");
    let rows = copy
        .query(
            "SELECT kind, tenant_id, action FROM messiah_reconcile(repair => true) WHERE tenant_id = 'it_rs_far'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "missing_database");
    assert_eq!(rows[0].get::<_, String>(1), "it_rs_far");
    assert!(rows[0]
        .get::<_, String>(2)
        .starts_with("left alone: managed by installation"));
    assert!(
        db_exists("tenant_it_rs_far"),
        "the original's database is untouched"
    );
    drop(copy);
    drop(other);
    drop_tenant(&mut orig, "it_rs_far");
}
