//! Reaching a database server, or one database on it, through Postgres' own dblink.
//!
//! Server-level commands (CREATE/DROP DATABASE, journal writes) go over a named dblink
//! connection kept for the life of the backend (about 0.05 ms a command instead of about
//! 1.9 ms for a connection per call, measured here). They are sent asynchronously and waited
//! for on this backend's latch, so the wait processes interrupts: DROP DATABASE makes every
//! backend absorb a ProcSignalBarrier, and a backend blocked in a synchronous libpq call would
//! never absorb it, so the DROP would wait forever for the very backend that sent it.

use crate::err::{raise, Code, SpiExt};
use pgrx::prelude::*;

/// dblink's functions, qualified by the schema dblink is installed in (our functions pin
/// `search_path`, so nothing is found by name alone).
pub struct Dblink {
    schema: String,
}

/// Finds dblink. Errors: 42883 when the dblink extension is missing in this database.
pub fn dblink() -> Dblink {
    let schema = crate::spi::one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'",
        &[],
    );
    match schema {
        Some(schema) => Dblink { schema },
        None => raise(
            Code::ERRCODE_UNDEFINED_FUNCTION,
            "messiah needs the dblink extension in this database",
            None,
            Some("CREATE EXTENSION dblink; (CREATE EXTENSION messiah CASCADE installs it.)".into()),
        ),
    }
}

/// FNV-1a, 64 bits: a stable short name for a conninfo (not a security boundary).
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Dblink {
    fn f(&self, name: &str) -> String {
        format!("{}.{}", self.schema, name)
    }

    /// The name of this backend's persistent dblink connection for `conninfo`, connecting it
    /// first if needed. Errors: the connection's (08001 and friends), raised by dblink.
    pub fn connection(&self, conninfo: &str) -> String {
        let name = format!("messiah_{:016x}", fnv64(conninfo.as_bytes()));
        let open = Spi::get_one_with_args::<bool>(
            &format!(
                "SELECT $1 = ANY(coalesce({}(), '{{}}'::text[]))",
                self.f("dblink_get_connections")
            ),
            &[name.as_str().into()],
        )
        .or_raise("listing dblink connections")
        .unwrap_or(false);
        if !open {
            self.connect(&name, conninfo);
        }
        name
    }

    fn connect(&self, name: &str, conninfo: &str) {
        Spi::run_with_args(
            &format!("SELECT {}($1, $2)", self.f("dblink_connect")),
            &[name.into(), conninfo.into()],
        )
        .or_raise("connecting with dblink");
    }

    fn disconnect(&self, name: &str) {
        Spi::run_with_args(
            &format!("SELECT {}($1)", self.f("dblink_disconnect")),
            &[name.into()],
        )
        .or_raise("disconnecting dblink");
    }

    /// Runs one SQL command on the named connection (from [`Dblink::connection`]) and waits
    /// for it on this backend's latch. A remote error is re-raised by dblink with the remote
    /// SQLSTATE, message, DETAIL and HINT. A connection found broken when sending is
    /// reconnected once with `conninfo`.
    pub fn exec(&self, name: &str, conninfo: &str, sql: &str) {
        self.send_and_wait(name, conninfo, sql);
        Spi::run_with_args(
            &format!(
                "SELECT * FROM {}($1, true) AS t(status text)",
                self.f("dblink_get_result")
            ),
            &[name.into()],
        )
        .or_raise("reading a dblink result");
        self.drain(name);
    }

    /// Sends `sql` on the named connection (reconnecting once if the connection is broken)
    /// and waits until its result is ready.
    fn send_and_wait(&self, name: &str, conninfo: &str, sql: &str) {
        // A command that failed earlier may have left its final result unread.
        self.drain(name);
        let send = format!("SELECT {}($1, $2)", self.f("dblink_send_query"));
        let sent = crate::spi::one::<i32>(&send, &[name.into(), sql.into()]).unwrap_or(0);
        if sent != 1 {
            self.disconnect(name);
            self.connect(name, conninfo);
            let again = crate::spi::one::<i32>(&send, &[name.into(), sql.into()]).unwrap_or(0);
            if again != 1 {
                raise(
                    Code::ERRCODE_CONNECTION_FAILURE,
                    "could not send a command to the tenant database server",
                    Some(format!(
                        "dblink connection {name} could not send the command after reconnecting"
                    )),
                    Some("Check that the server in messiah.server_conninfo is up.".into()),
                );
            }
        }
        let busy = format!("SELECT {}($1)", self.f("dblink_is_busy"));
        // Short commands finish in well under a millisecond: poll quickly at first, then back
        // off to 1 ms, handling interrupts between polls.
        let mut pause_us = 20u32;
        loop {
            let b = crate::spi::one::<i32>(&busy, &[name.into()]).unwrap_or(0);
            if b == 0 {
                break;
            }
            pause(pause_us);
            pause_us = (pause_us * 2).min(1000);
        }
    }

    /// Like [`Dblink::exec`], but a remote error comes back as `Err(message)` instead of being
    /// raised (dblink reports it as a NOTICE), for commands whose failure is an expected outcome.
    pub fn exec_may_fail(&self, name: &str, conninfo: &str, sql: &str) -> Result<(), String> {
        self.send_and_wait(name, conninfo, sql);
        crate::spi::text_rows(
            &format!(
                "SELECT * FROM {}($1, false) AS t(status text)",
                self.f("dblink_get_result")
            ),
            &[name.into()],
            1,
        );
        let message = crate::spi::one::<String>(
            &format!("SELECT {}($1)", self.f("dblink_error_message")),
            &[name.into()],
        )
        .unwrap_or_default();
        self.drain(name);
        if message == "OK" || message.is_empty() {
            Ok(())
        } else {
            Err(message)
        }
    }

    fn drain(&self, name: &str) {
        Spi::run_with_args(
            &format!(
                "SELECT count(*) FROM {}($1, false) AS t(status text)",
                self.f("dblink_get_result")
            ),
            &[name.into()],
        )
        .or_raise("draining a dblink connection");
    }

    /// Runs a query that returns text columns on the named connection (synchronously: only
    /// for catalog reads that never wait on this backend) and returns its rows.
    pub fn query(&self, name: &str, sql: &str, ncols: usize) -> Vec<Vec<Option<String>>> {
        self.drain(name);
        self.rows(name, sql, ncols)
    }

    /// Runs a query returning text columns in the database named by `conninfo`, over a
    /// connection opened for this call only.
    pub fn query_once(&self, conninfo: &str, sql: &str, ncols: usize) -> Vec<Vec<Option<String>>> {
        self.rows(conninfo, sql, ncols)
    }

    /// `dblink(target, sql)` where target is a connection name or a conninfo.
    fn rows(&self, target: &str, sql: &str, ncols: usize) -> Vec<Vec<Option<String>>> {
        let cols = (0..ncols)
            .map(|i| format!("c{i} text"))
            .collect::<Vec<_>>()
            .join(", ");
        let q = format!("SELECT * FROM {}($1, $2) AS t({cols})", self.f("dblink"));
        crate::spi::text_rows(&q, &[target.into(), sql.into()], ncols)
    }

    /// Runs SQL (one or more commands) in the database named by `conninfo`, over a
    /// connection opened for this call only (about 1.9 ms). For work inside one tenant
    /// database, which never waits on this backend.
    pub fn exec_once(&self, conninfo: &str, sql: &str) {
        Spi::run_with_args(
            &format!("SELECT {}($1, $2)", self.f("dblink_exec")),
            &[conninfo.into(), sql.into()],
        )
        .or_raise("running a command with dblink");
    }
}

/// Sleeps `us` microseconds, then handles interrupts (cancel, terminate, ProcSignalBarrier
/// absorption).
fn pause(us: u32) {
    // SAFETY: pg_usleep is a plain sleep.
    unsafe { pg_sys::pg_usleep(us as _) };
    pgrx::check_for_interrupts!();
}

/// Sleeps `ms` milliseconds on this backend's latch, handling interrupts (cancel, terminate,
/// ProcSignalBarrier absorption) as any Postgres wait does.
pub fn wait_ms(ms: i64) {
    // SAFETY: MyLatch is this backend's own latch, valid for the life of the process; WaitLatch
    // and ResetLatch are the documented way to sleep in a backend.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}

/// Runs `f`, which works in a tenant's database; an error from there is re-raised with its
/// SQLSTATE, DETAIL and HINT, its message prefixed with the tenant and database it came from
/// (as Citus names the node a remote error came from). Rust-side errors pass unchanged.
pub fn in_tenant<R>(
    tenant_id: &str,
    datname: &str,
    what: &str,
    f: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> R {
    use pgrx::pg_sys::panic::CaughtError;
    let prefix = format!("tenant \"{tenant_id}\" (database \"{datname}\"), {what}");
    PgTryBuilder::new(f)
        .catch_others(move |e| match e {
            CaughtError::PostgresError(r) => crate::err::raise(
                r.sql_error_code(),
                format!("{prefix}: {}", r.message()),
                r.detail().map(str::to_string),
                r.hint().map(str::to_string),
            ),
            other => other.rethrow(),
        })
        .execute()
}
