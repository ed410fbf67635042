//! Connection helpers shared by the integration tests.
#![allow(dead_code)]

use postgres::{Client, NoTls};

/// Host (socket directory) and port of the cluster under test.
pub fn host_port() -> (String, u16) {
    let host = std::env::var("MESSIAH_TEST_HOST").unwrap_or_else(|_| "/tmp/messiah-cluster".into());
    let port = std::env::var("MESSIAH_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(28815);
    (host, port)
}

/// A connection to `dbname` as postgres.
pub fn connect(dbname: &str) -> Client {
    let (host, port) = host_port();
    Client::connect(
        &format!("host={host} port={port} user=postgres dbname={dbname}"),
        NoTls,
    )
    .unwrap_or_else(|e| panic!("connecting to {dbname}: {e}"))
}

/// Creates a fresh admin database `name` with messiah installed (dropping an old one).
pub fn admin_db(name: &str) -> Client {
    let mut pg = connect_retry("postgres");
    // Two round trips: a multi-statement simple query is one implicit transaction, in which
    // DROP/CREATE DATABASE are refused (25001).
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    pg.batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let mut c = connect_retry(name);
    c.batch_execute("SET client_min_messages = warning; CREATE EXTENSION messiah CASCADE")
        .unwrap();
    c
}

/// Whether database `name` exists.
pub fn db_exists(name: &str) -> bool {
    let mut pg = connect("postgres");
    pg.query_one(
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &[&name],
    )
    .map(|r| r.get::<_, i64>(0) == 1)
    .unwrap()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// A connection to `dbname`, retrying for about a minute when the cluster is restarting
/// (another engineer may restart it while tests run).
pub fn connect_retry(dbname: &str) -> Client {
    let (host, port) = host_port();
    let conninfo = format!("host={host} port={port} user=postgres dbname={dbname}");
    let mut last = None;
    for _ in 0..4 {
        match Client::connect(&conninfo, NoTls) {
            Ok(c) => return c,
            Err(e) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_secs(20));
            }
        }
    }
    panic!("connecting to {dbname}: {}", last.unwrap())
}

/// Drops database `name` (cluster-global) if it is left over from an earlier run.
pub fn drop_db(name: &str) {
    let mut pg = connect_retry("postgres");
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// Number of catalog rows of `tenant_id` in the admin database `c` is connected to.
pub fn tenant_rows(c: &mut Client, tenant_id: &str) -> i64 {
    c.query_one(
        "SELECT count(*) FROM messiah.tenants WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .unwrap()
    .get(0)
}

/// Carries out every queued remote action (drops, catalog copy pushes) and waits for the
/// ones the executor worker is running: what "after COMMIT" has finished means in a test.
/// Each call is a transaction of its own: one returns early when the executor waits for what
/// it did (see `messiah_run_pending`), and the next finds that done after its COMMIT.
pub fn settle(c: &mut Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r: String = c
            .query_one("SELECT messiah_run_pending(wait_ms => 5000)::text", &[])
            .unwrap()
            .get(0);
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        if v["pending"] == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "remote actions still pending after 30 s: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Drops a tenant and waits for its database to be dropped after COMMIT.
pub fn drop_tenant(c: &mut Client, tenant_id: &str) {
    c.execute("SELECT messiah_drop_tenant($1)", &[&tenant_id])
        .unwrap();
    settle(c);
}

/// The databases `messiah_reconcile(repair => true)` drops as aborted creations, sorted.
pub fn swept(c: &mut Client) -> Vec<String> {
    let mut v: Vec<String> = c
        .query(
            "SELECT database_name FROM messiah_reconcile(repair => true) WHERE kind = 'aborted_creation'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort();
    v
}

/// Number of databases being created (temporary names) by the installation of the admin
/// database `c` is connected to.
pub fn temp_databases(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_database WHERE datname LIKE \
         'messiah\\_new\\_' || left(messiah.installation_id()::text, 8) || '\\_%'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The backend pid of a session.
pub fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// Polls `f` every 100 ms until it is true or `secs` seconds have passed; returns its last value.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Terminates backend `pid` from a fresh session and waits until it is gone.
pub fn terminate(pid: i32) {
    let mut pg = connect_retry("postgres");
    let ok: bool = pg
        .query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid])
        .unwrap()
        .get(0);
    assert!(
        ok,
        "backend {pid} did not exit within 10 s of pg_terminate_backend"
    );
}

/// Whether backend `pid` is waiting on a heavyweight lock.
pub fn waiting_on_lock(pid: i32) -> bool {
    let mut pg = connect_retry("postgres");
    pg.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
        &[&pid],
    )
    .unwrap()
    .get(0)
}

/// A query's single jsonb (fetched as text) parsed into a serde_json value.
pub fn json(c: &mut Client, sql: &str) -> serde_json::Value {
    let s: String = c
        .query_one(&format!("SELECT ({sql})::text"), &[])
        .unwrap()
        .get(0);
    serde_json::from_str(&s).unwrap()
}

/// The error of a statement that must fail.
pub fn fails(c: &mut Client, sql: &str) -> postgres::Error {
    match c.batch_execute(sql) {
        Ok(()) => panic!("expected an error from: {sql}"),
        Err(e) => e,
    }
}

/// The error's message (the server's, without the "db error: " prefix).
pub fn message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Whether `table` exists in the public schema of database `dbname`.
pub fn table_exists(dbname: &str, table: &str) -> bool {
    let mut c = connect_retry(dbname);
    c.query_one(
        "SELECT to_regclass($1) IS NOT NULL",
        &[&format!("public.{table}")],
    )
    .unwrap()
    .get(0)
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Runs a PostgreSQL program as the postgres OS user; panics with its output on failure.
pub fn as_postgres(program: &str, args: &[&str]) {
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway cluster of its own (directory, socket and port), stopped and removed on drop.
pub struct OtherCluster {
    pub dir: String,
    pub port: u16,
}

impl OtherCluster {
    /// Creates and starts a cluster in `dir` on `port` (after removing a leftover of an earlier
    /// run), `-E encoding --locale=C` (initdb's defaults when `encoding` is None), with extra
    /// postgresql.conf lines; messiah's library is not preloaded unless `conf` says so.
    pub fn start(dir: &str, port: u16, encoding: Option<&str>, conf: &str) -> OtherCluster {
        let c = OtherCluster {
            dir: dir.to_string(),
            port,
        };
        c.stop();
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        assert!(std::process::Command::new("chown")
            .args(["postgres:postgres", dir])
            .status()
            .unwrap()
            .success());
        let data = format!("{dir}/data");
        let mut args = vec!["-D", &data, "-U", "postgres", "-A", "trust"];
        if let Some(e) = encoding {
            args.extend(["-E", e, "--locale=C"]);
        }
        as_postgres("initdb", &args);
        // tenant roles log in with their password, as on the main test cluster
        let hba = format!("{data}/pg_hba.conf");
        let lines = format!(
            "{}{}",
            include_str!("../../scripts/pg_hba_tenants.conf"),
            std::fs::read_to_string(&hba).unwrap()
        );
        std::fs::write(&hba, lines).unwrap();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(format!("{data}/postgresql.conf"))
                .unwrap();
            writeln!(
                f,
                "port = {port}\nunix_socket_directories = '{dir}'\nlisten_addresses = ''\nfsync = off\n{conf}"
            )
            .unwrap();
        }
        as_postgres(
            "pg_ctl",
            &["-D", &data, "-l", &format!("{dir}/log"), "-w", "start"],
        );
        c
    }

    /// A superuser connection to `db` on this cluster.
    pub fn connect(&self, db: &str) -> Client {
        Client::connect(
            &format!(
                "host={} port={} user=postgres dbname={db}",
                self.dir, self.port
            ),
            NoTls,
        )
        .unwrap_or_else(|e| panic!("connecting to {db} on port {}: {e}", self.port))
    }

    /// libpq conninfo of this cluster (no dbname).
    pub fn conninfo(&self) -> String {
        format!("host={} port={} user=postgres", self.dir, self.port)
    }

    /// Stops the server (immediate), if it runs.
    pub fn stop(&self) {
        self.stop_mode("immediate");
    }

    /// Stops the cluster with pg_ctl's shutdown `mode` (smart, fast, immediate).
    pub fn stop_mode(&self, mode: &str) {
        let data = format!("{}/data", self.dir);
        if std::path::Path::new(&format!("{data}/postmaster.pid")).exists() {
            let _ = std::process::Command::new("runuser")
                .args([
                    "-u",
                    "postgres",
                    "--",
                    &format!("{PG_BIN}/pg_ctl"),
                    "-D",
                    &data,
                ])
                .args(["-m", mode, "-w", "stop"])
                .output();
        }
    }

    /// Starts the server again after [`OtherCluster::stop`].
    pub fn restart(&self) {
        let data = format!("{}/data", self.dir);
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &format!("{}/log", self.dir),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for OtherCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The conninfo of the cluster under test (no dbname).
pub fn main_conninfo() -> String {
    let (host, port) = host_port();
    format!("host={host} port={port} user=postgres")
}
