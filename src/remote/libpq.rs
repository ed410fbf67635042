//! Small safe adapters over libpq (the `pq-sys` bindings), for use inside a backend.
//!
//! libpq is reached directly, as postgres_fdw and dblink do, because values must travel as
//! protocol parameters (dblink cannot bind them). Every wait is on this backend's latch and the
//! connection's socket (`WaitLatchOrSocket`), followed by `CHECK_FOR_INTERRUPTS`, so a query
//! cancel or terminate interrupts a remote call, and a `ProcSignalBarrier` (which PG15's DROP
//! DATABASE waits for in every backend) is absorbed while we wait. PG15 has no
//! `libpq-be-fe-helpers.h`, so the interruptible connect and the cancel on interrupt are written
//! here the way PG15's postgres_fdw `connection.c` writes them. Each open connection holds one
//! of the backend's external file descriptors (`AcquireExternalFD`), as postgres_fdw's do.

use super::error::RemoteError;
use pgrx::pg_sys;
use pq_sys as pq;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// Field codes of `PQresultErrorField` (libpq's `PG_DIAG_*`, from postgres_ext.h).
const DIAG_SQLSTATE: i32 = b'C' as i32;
const DIAG_MESSAGE: i32 = b'M' as i32;
const DIAG_DETAIL: i32 = b'D' as i32;
const DIAG_HINT: i32 = b'H' as i32;
const DIAG_CONTEXT: i32 = b'W' as i32;

/// One result set of a statement, values in text form.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Column type OIDs, as the server sent them.
    pub types: Vec<u32>,
    /// Rows of text values (`None` = SQL NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows affected (INSERT/UPDATE/DELETE/SELECT count from the command tag), if any.
    pub affected: Option<u64>,
}

impl Rows {
    /// The first value of the first row, if any.
    pub fn scalar(&self) -> Option<&str> {
        self.rows
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_deref())
    }
}

/// An open libpq connection owned by this backend.
pub struct Conn {
    raw: NonNull<pq::PGconn>,
    /// Set when a statement was interrupted: the connection has unread results and must not
    /// be reused.
    poisoned: bool,
    /// The wait event set of this connection's socket, made at the first wait for a result.
    waits: Option<WaitSet>,
    /// A `DISCARD ALL` was sent and its result not read yet ([`Conn::reset_later`]).
    resetting: bool,
}

/// A wait event set kept for one connection (this backend's latch, postmaster death, the
/// socket readable). `WaitLatchOrSocket` builds and frees a set at every wait (an
/// `epoll_create1`, three `epoll_ctl` and a `close`); a routed call waits once per statement,
/// so a set kept with the connection makes that wait one `epoll_wait`. It holds one of the
/// backend's external file descriptors (`CreateWaitEventSet` acquires it) until dropped.
struct WaitSet(NonNull<pg_sys::WaitEventSet>);

impl WaitSet {
    fn new(sock: i32) -> Option<WaitSet> {
        // SAFETY: a set in TopMemoryContext (it lives as long as the connection), with this
        // backend's latch and a live socket; CreateWaitEventSet raises if no descriptor is left.
        unsafe {
            let set = pg_sys::CreateWaitEventSet(pg_sys::TopMemoryContext, 3);
            let set = NonNull::new(set)?;
            pg_sys::AddWaitEventToSet(
                set.as_ptr(),
                pg_sys::WL_LATCH_SET,
                -1,
                pg_sys::MyLatch,
                std::ptr::null_mut(),
            );
            pg_sys::AddWaitEventToSet(
                set.as_ptr(),
                pg_sys::WL_EXIT_ON_PM_DEATH,
                -1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            pg_sys::AddWaitEventToSet(
                set.as_ptr(),
                pg_sys::WL_SOCKET_READABLE,
                sock,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            Some(WaitSet(set))
        }
    }

    /// Waits until the socket is readable, the latch is set, or `deadline` passes, then
    /// processes interrupts (which may raise). Returns false on timeout.
    fn readable(&self, deadline: Option<Instant>) -> bool {
        let timeout: i64 = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                left.as_millis().clamp(1, i64::from(i32::MAX) as u128) as i64
            }
            None => -1,
        };
        let mut event = pg_sys::WaitEvent::default();
        // SAFETY: the set is live; one event slot.
        let n = unsafe {
            let n = pg_sys::WaitEventSetWait(
                self.0.as_ptr(),
                timeout as _,
                &mut event,
                1,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
            n
        };
        pgrx::check_for_interrupts!();
        n > 0 || deadline.is_some_and(|d| Instant::now() < d)
    }
}

impl Drop for WaitSet {
    fn drop(&mut self) {
        // SAFETY: made by CreateWaitEventSet, freed once (releasing its descriptor).
        unsafe { pg_sys::FreeWaitEventSet(self.0.as_ptr()) };
    }
}

/// No-op notice receiver: remote NOTICEs (`DROP DATABASE IF EXISTS ... skipping`) would
/// otherwise go to the server's stderr.
unsafe extern "C" fn ignore_notice(_arg: *mut std::ffi::c_void, _res: *const pq::PGresult) {}

/// `PQconnectStartParams` with keyword/value `params` (never expanded as a conninfo): a
/// connection being set up without blocking, or `None` when libpq is out of memory.
pub(super) fn connect_start(params: &[(String, String)]) -> Option<NonNull<pq::PGconn>> {
    let keys: Vec<CString> = params.iter().map(|(k, _)| cstring(k)).collect();
    let values: Vec<CString> = params.iter().map(|(_, v)| cstring(v)).collect();
    let mut kp: Vec<*const std::ffi::c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let mut vp: Vec<*const std::ffi::c_char> = values.iter().map(|v| v.as_ptr()).collect();
    kp.push(std::ptr::null());
    vp.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of C strings that outlive the call.
    NonNull::new(unsafe { pq::PQconnectStartParams(kp.as_ptr(), vp.as_ptr(), 0) })
}

pub(super) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Waits until `sock` is ready (readable and/or writable) or the deadline passes, on this
/// backend's latch, then processes interrupts (which may raise: query cancel, terminate).
/// Returns false on timeout.
fn wait_socket(sock: i32, read: bool, write: bool, deadline: Option<Instant>) -> bool {
    let mut events = pg_sys::WL_LATCH_SET | pg_sys::WL_EXIT_ON_PM_DEATH;
    if read {
        events |= pg_sys::WL_SOCKET_READABLE;
    }
    if write {
        events |= pg_sys::WL_SOCKET_WRITEABLE;
    }
    let timeout = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            events |= pg_sys::WL_TIMEOUT;
            left.as_millis().clamp(1, i64::from(i32::MAX) as u128) as i64
        }
        None => -1,
    };
    // SAFETY: MyLatch is this backend's latch; sock is an open socket of a live PGconn.
    let rc = unsafe {
        let rc = pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            events as i32,
            sock,
            timeout as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        rc
    };
    pgrx::check_for_interrupts!();
    rc as u32 & pg_sys::WL_TIMEOUT == 0 || deadline.is_some_and(|d| Instant::now() < d)
}

/// The SQLSTATE and message of a server error in libpq's verbose error text
/// (`FATAL:  57P01:  terminating connection due to administrator command`), if it starts with
/// one.
pub fn server_error_in(text: &str) -> Option<(String, String)> {
    let line = text.lines().next()?;
    let (severity, rest) = line.split_once(":  ")?;
    if !matches!(severity, "ERROR" | "FATAL" | "PANIC") {
        return None;
    }
    let (code, message) = rest.split_once(": ")?;
    let valid = code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    valid.then(|| (code.to_string(), message.trim().to_string()))
}

/// The server's error in libpq's text of a failed connection attempt (`connection to server
/// on socket "..." failed: FATAL:  53300: too many connections for role "x"`), if it sent one.
pub fn refusal_in(text: &str) -> Option<(String, String)> {
    let at = ["FATAL:  ", "ERROR:  "]
        .iter()
        .filter_map(|m| text.find(m))
        .min()?;
    server_error_in(&text[at..])
}

impl Conn {
    /// Opens a connection with libpq keyword/value `params` (never expanded as a conninfo),
    /// waiting at most `timeout`. Errors: [`RemoteError::NoFileDescriptor`] when the backend's
    /// descriptor budget is used up; [`RemoteError::Connect`] with libpq's message.
    pub fn connect(
        params: &[(String, String)],
        timeout: Duration,
        server: &str,
        database: &str,
    ) -> Result<Conn, RemoteError> {
        // SAFETY: plain call; paired with ReleaseExternalFD in Drop (or below on failure).
        if !unsafe { pg_sys::AcquireExternalFD() } {
            return Err(RemoteError::NoFileDescriptor);
        }
        let Some(raw) = connect_start(params) else {
            // SAFETY: releases the descriptor acquired above.
            unsafe { pg_sys::ReleaseExternalFD() };
            return Err(RemoteError::Connect {
                server: server.into(),
                database: database.into(),
                message: "out of memory".into(),
            });
        };
        let conn = Conn {
            raw,
            poisoned: false,
            waits: None,
            resetting: false,
        };
        // SAFETY: conn.raw is a live PGconn.
        unsafe {
            pq::PQsetNoticeReceiver(conn.raw.as_ptr(), Some(ignore_notice), std::ptr::null_mut())
        };
        let deadline = Instant::now() + timeout;
        // Verbose error text carries the SQLSTATE of an error the server sends while the
        // connection is being set up (authentication, too many connections, no database).
        // SAFETY: conn.raw is a live PGconn; the setting applies to errors received later.
        unsafe { pq::PQsetErrorVerbosity(conn.raw.as_ptr(), pq::PGVerbosity::PQERRORS_VERBOSE) };
        let fail = |conn: &Conn| {
            let message = conn.error_message();
            match refusal_in(&message) {
                Some((sqlstate, text)) => RemoteError::Refused {
                    server: server.into(),
                    database: database.into(),
                    sqlstate,
                    message: text,
                },
                None => RemoteError::Connect {
                    server: server.into(),
                    database: database.into(),
                    message,
                },
            }
        };
        // SAFETY: conn.raw is a live PGconn.
        if unsafe { pq::PQstatus(conn.raw.as_ptr()) } == pq::ConnStatusType::CONNECTION_BAD {
            return Err(fail(&conn));
        }
        loop {
            // SAFETY: conn.raw is a live PGconn being connected.
            let state = unsafe { pq::PQconnectPoll(conn.raw.as_ptr()) };
            let (read, write) = match state {
                // verbosity (set above) stays: an error the server sends just before closing
                // the connection keeps its code ([`Conn::lost`])
                pq::PostgresPollingStatusType::PGRES_POLLING_OK => return Ok(conn),
                pq::PostgresPollingStatusType::PGRES_POLLING_FAILED => return Err(fail(&conn)),
                pq::PostgresPollingStatusType::PGRES_POLLING_READING => (true, false),
                pq::PostgresPollingStatusType::PGRES_POLLING_WRITING => (false, true),
                pq::PostgresPollingStatusType::PGRES_POLLING_ACTIVE => continue,
            };
            if !wait_socket(conn.socket(), read, write, Some(deadline)) {
                return Err(RemoteError::Connect {
                    server: server.into(),
                    database: database.into(),
                    message: format!("timed out after {} ms", timeout.as_millis()),
                });
            }
        }
    }

    fn socket(&self) -> i32 {
        // SAFETY: self.raw is a live PGconn.
        unsafe { pq::PQsocket(self.raw.as_ptr()) }
    }

    /// libpq's last error message for this connection, trimmed.
    pub fn error_message(&self) -> String {
        // SAFETY: PQerrorMessage returns a NUL-terminated string owned by the PGconn.
        unsafe {
            let p = pq::PQerrorMessage(self.raw.as_ptr());
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().trim().to_string()
            }
        }
    }

    /// Whether the connection is usable: open, idle, not interrupted mid-statement, and the
    /// server has not closed it while it sat idle (idle_session_timeout, a restart, a DROP
    /// DATABASE ... WITH (FORCE)): pending input on an idle connection is read without
    /// waiting, which turns a closed socket into a bad status.
    pub fn is_healthy(&mut self) -> bool {
        if self.poisoned || (self.resetting && !self.finish_reset()) {
            return false;
        }
        let raw = self.raw.as_ptr();
        // SAFETY: raw is a live PGconn; PQconsumeInput does not block.
        unsafe {
            if pq::PQstatus(raw) != pq::ConnStatusType::CONNECTION_OK {
                return false;
            }
            if pq::PQtransactionStatus(raw) != pq::PGTransactionStatusType::PQTRANS_IDLE {
                return false;
            }
            let mut pfd = libc_pollfd(self.socket());
            if poll_now(&mut pfd) && (pq::PQconsumeInput(raw) == 0 || pq::PQisBusy(raw) != 0) {
                return false;
            }
            pq::PQstatus(raw) == pq::ConnStatusType::CONNECTION_OK
        }
    }

    /// Whether the connection may go back to the pool now: [`Conn::is_healthy`], except that a
    /// reset still running is not waited for (it is, at the next use).
    pub fn can_be_pooled(&mut self) -> bool {
        if self.resetting {
            // SAFETY: self.raw is a live PGconn.
            !self.poisoned
                && unsafe { pq::PQstatus(self.raw.as_ptr()) } == pq::ConnStatusType::CONNECTION_OK
        } else {
            self.is_healthy()
        }
    }

    /// Asks the server to reset the session after a statement whose text a caller wrote, and
    /// does not wait: `DISCARD ALL` undoes `SET`, `SET ROLE`, `PREPARE`, `LISTEN`, temporary
    /// tables and session advisory locks, so nothing a routed statement left in the session
    /// reaches the next call on this pooled connection. Its result is read when the
    /// connection is next taken from the pool, by which time it has usually arrived: the
    /// round trip is off the caller's path. A connection left inside a transaction block (a
    /// routed `BEGIN`) cannot be reset so: it is poisoned, and the pool closes it.
    pub fn reset_later(&mut self) {
        let raw = self.raw.as_ptr();
        // SAFETY: raw is a live PGconn with no statement in progress (the caller read every
        // result); the command text is a NUL-terminated literal.
        let sent = unsafe {
            pq::PQstatus(raw) == pq::ConnStatusType::CONNECTION_OK
                && pq::PQtransactionStatus(raw) == pq::PGTransactionStatusType::PQTRANS_IDLE
                && pq::PQsendQuery(raw, c"DISCARD ALL".as_ptr()) == 1
        };
        if sent {
            self.resetting = true;
        } else {
            self.poisoned = true;
        }
    }

    /// Reads the result of the reset [`Conn::reset_later`] sent, waiting at most 2 s (on the
    /// socket and the latch: interrupts are served). False when it failed or did not come.
    fn finish_reset(&mut self) -> bool {
        let raw = self.raw.as_ptr();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut ok = true;
        loop {
            // SAFETY: raw is a live PGconn; neither call blocks.
            let busy = unsafe { pq::PQconsumeInput(raw) == 0 || pq::PQisBusy(raw) != 0 };
            // SAFETY: as above.
            if unsafe { pq::PQstatus(raw) } != pq::ConnStatusType::CONNECTION_OK {
                return false;
            }
            if busy {
                if !wait_socket(self.socket(), true, false, Some(deadline)) {
                    return false;
                }
                continue;
            }
            // SAFETY: raw is live and not busy, so PQgetResult does not block; each result is
            // cleared once.
            unsafe {
                let res = pq::PQgetResult(raw);
                if res.is_null() {
                    break;
                }
                ok &= pq::PQresultStatus(res) == pq::ExecStatusType::PGRES_COMMAND_OK;
                pq::PQclear(res);
            }
        }
        self.resetting = false;
        ok
    }

    /// Runs one statement with protocol parameters (extended query protocol: `$1..$n`, text
    /// values, types left for the server to infer) and returns its rows.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
        server: &str,
    ) -> Result<Rows, RemoteError> {
        let params: Vec<Param> = params
            .iter()
            .map(|p| Param {
                value: p.map(str::to_string),
                type_oid: 0,
            })
            .collect();
        self.send_params(sql, &params, server)?;
        self.collect(server)
    }

    /// Sends one statement with protocol parameters (`PQsendQueryParams`: text values, each
    /// with its type OID, 0 for the server to infer). Errors: the connection is lost.
    fn send_params(
        &mut self,
        sql: &str,
        params: &[Param],
        server: &str,
    ) -> Result<(), RemoteError> {
        let c_sql = cstring(sql);
        let values: Vec<Option<CString>> = params
            .iter()
            .map(|p| p.value.as_deref().map(cstring))
            .collect();
        let ptrs: Vec<*const std::ffi::c_char> = values
            .iter()
            .map(|v| v.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
            .collect();
        let types: Vec<pq::Oid> = params.iter().map(|p| p.type_oid).collect();
        // SAFETY: the query, values and types outlive the call; text format throughout.
        let sent = unsafe {
            pq::PQsendQueryParams(
                self.raw.as_ptr(),
                c_sql.as_ptr(),
                ptrs.len() as i32,
                if types.is_empty() {
                    std::ptr::null()
                } else {
                    types.as_ptr()
                },
                if ptrs.is_empty() {
                    std::ptr::null()
                } else {
                    ptrs.as_ptr()
                },
                std::ptr::null(),
                std::ptr::null(),
                0,
            )
        };
        if sent == 0 {
            return Err(self.lost(server));
        }
        Ok(())
    }

    /// Runs SQL text with the simple query protocol (one or more statements, no parameters:
    /// for scripts and for utility statements, which take no parameters).
    pub fn execute(&mut self, sql: &str, server: &str) -> Result<Rows, RemoteError> {
        let c_sql = cstring(sql);
        // SAFETY: c_sql outlives the call.
        if unsafe { pq::PQsendQuery(self.raw.as_ptr(), c_sql.as_ptr()) } == 0 {
            return Err(self.lost(server));
        }
        self.collect(server)
    }

    /// The SCRAM-SHA-256 verifier of `password` for role `user`, computed here by libpq
    /// (`PQencryptPasswordConn`), so that `ALTER ROLE ... PASSWORD` carries no password: the
    /// server's log and `pg_stat_statements` see only the verifier. `None` if libpq failed.
    pub fn scram_verifier(&mut self, password: &str, user: &str) -> Option<String> {
        let (p, u, alg) = (cstring(password), cstring(user), cstring("scram-sha-256"));
        // SAFETY: the strings outlive the call; the result is freed with PQfreemem.
        unsafe {
            let out =
                pq::PQencryptPasswordConn(self.raw.as_ptr(), p.as_ptr(), u.as_ptr(), alg.as_ptr());
            if out.is_null() {
                return None;
            }
            let v = CStr::from_ptr(out).to_string_lossy().into_owned();
            pq::PQfreemem(out as *mut std::ffi::c_void);
            Some(v)
        }
    }

    /// The error of a connection that broke in use: the server's own error when it sent one
    /// before closing (libpq 15 keeps only its text then, which verbosity makes carry the
    /// SQLSTATE: a fast shutdown's 57P01, a terminated backend's), else [`RemoteError::Lost`].
    fn lost(&self, server: &str) -> RemoteError {
        let message = self.error_message();
        match server_error_in(&message) {
            Some((sqlstate, text)) => RemoteError::Server {
                sqlstate,
                message: text,
                detail: None,
                hint: None,
                remote_context: None,
            },
            None => RemoteError::Lost {
                server: server.into(),
                message,
            },
        }
    }

    /// Runs one statement for a routed call: parameters with their types (0 = let the
    /// server infer), rows read one at a time (libpq's single-row mode) so that `caps` stop a
    /// result that is too large before it is in memory, and a deadline after which the remote
    /// statement is cancelled. Errors: [`RemoteError::Limit`] (54000), [`RemoteError::Timeout`]
    /// (57014), or the server's.
    pub fn query_capped(
        &mut self,
        sql: &str,
        params: &[Param],
        caps: &Caps,
        server: &str,
    ) -> Result<Rows, RemoteError> {
        self.send_params(sql, params, server)?;
        // SAFETY: called right after sending, as libpq requires.
        unsafe { pq::PQsetSingleRowMode(self.raw.as_ptr()) };
        self.collect_with(server, Some(caps))
    }

    /// Reads every result of the statement just sent, waiting on latch and socket; keeps the
    /// last row set and the first error. On an interrupt (cancel, terminate) the remote
    /// statement is cancelled and the connection poisoned.
    fn collect(&mut self, server: &str) -> Result<Rows, RemoteError> {
        self.collect_with(server, None)
    }

    /// [`Conn::collect`], enforcing `caps` when given: past a cap or the deadline the remote
    /// statement is cancelled, the rest of its results are read and discarded, and the cap's
    /// error replaces whatever the cancel produced.
    fn collect_with(&mut self, server: &str, caps: Option<&Caps>) -> Result<Rows, RemoteError> {
        let raw = self.raw.as_ptr();
        let mut guard = CancelOnUnwind::new(raw);
        let deadline = caps.and_then(|c| c.timeout).map(|t| Instant::now() + t);
        let mut out = Rows::default();
        let mut bytes = 0u64;
        let mut error: Option<RemoteError> = None;
        let mut stopped: Option<RemoteError> = None;
        loop {
            let wait_until = if stopped.is_none() { deadline } else { None };
            let res = match self.next_result(wait_until) {
                Next::Result(r) => r,
                Next::Done => break,
                Next::TimedOut => {
                    cancel(raw);
                    let ms = caps.and_then(|c| c.timeout).unwrap_or_default().as_millis();
                    stopped = Some(RemoteError::Timeout {
                        server: server.into(),
                        ms,
                        completed: None,
                    });
                    continue;
                }
                Next::Lost => {
                    guard.armed = false;
                    self.poisoned = true;
                    return Err(self.lost(server));
                }
            };
            // SAFETY: res is a live PGresult until it drops.
            let status = unsafe { pq::PQresultStatus(res.0) };
            match status {
                pq::ExecStatusType::PGRES_SINGLE_TUPLE if stopped.is_none() => {
                    let row = res.rows();
                    if out.columns.is_empty() {
                        out.columns = row.columns;
                        out.types = row.types;
                    }
                    for r in row.rows {
                        bytes += r.iter().flatten().map(|v| v.len() as u64).sum::<u64>();
                        out.rows.push(r);
                    }
                    if let Some(c) = caps {
                        if let Some(e) = c.exceeded(out.rows.len() as u64, bytes) {
                            cancel(raw);
                            stopped = Some(e);
                        }
                    }
                }
                pq::ExecStatusType::PGRES_SINGLE_TUPLE => {}
                pq::ExecStatusType::PGRES_TUPLES_OK | pq::ExecStatusType::PGRES_COMMAND_OK
                    if stopped.is_some() =>
                {
                    // the statement finished before the cancel reached it
                    // SAFETY: res is live; PQcmdStatus returns a string owned by it.
                    let tag = unsafe { CStr::from_ptr(pq::PQcmdStatus(res.0)) }
                        .to_string_lossy()
                        .into_owned();
                    if let Some(
                        RemoteError::Limit { completed, .. }
                        | RemoteError::Timeout { completed, .. },
                    ) = stopped.as_mut()
                    {
                        *completed = Some(tag);
                    }
                }
                pq::ExecStatusType::PGRES_TUPLES_OK | pq::ExecStatusType::PGRES_COMMAND_OK => {
                    let last = res.rows();
                    if caps.is_none() {
                        out = last;
                    } else {
                        if out.columns.is_empty() {
                            out.columns = last.columns;
                            out.types = last.types;
                        }
                        out.affected = last.affected;
                    }
                }
                pq::ExecStatusType::PGRES_EMPTY_QUERY => {}
                pq::ExecStatusType::PGRES_COPY_OUT
                | pq::ExecStatusType::PGRES_COPY_IN
                | pq::ExecStatusType::PGRES_COPY_BOTH => {
                    // libpq would hand back this result forever until the copy is served:
                    // the connection is given up (dropped, so its server ends the COPY)
                    guard.armed = false;
                    self.poisoned = true;
                    return Err(RemoteError::Server {
                        sqlstate: "0A000".into(),
                        message: "COPY to or from the client is not supported here".into(),
                        detail: None,
                        hint: Some(
                            "Use SELECT or INSERT statements, or COPY over a direct connection to the database."
                                .into(),
                        ),
                        remote_context: None,
                    });
                }
                _ if error.is_none() => error = Some(res.error(server, self)),
                _ => {}
            }
        }
        guard.armed = false;
        // SAFETY: raw is live.
        if unsafe { pq::PQstatus(raw) } != pq::ConnStatusType::CONNECTION_OK {
            self.poisoned = true;
        }
        match stopped.or(error) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The next result of the statement in flight, waiting on latch and socket (until
    /// `deadline`, if given).
    fn next_result(&mut self, deadline: Option<Instant>) -> Next {
        let raw = self.raw.as_ptr();
        // SAFETY: raw is live (possibly closed by its server: then libpq only hands back what
        // it had parsed, and nothing here waits on its socket).
        if unsafe { pq::PQstatus(raw) } == pq::ConnStatusType::CONNECTION_BAD {
            let res = unsafe { pq::PQgetResult(raw) };
            return if res.is_null() {
                Next::Done
            } else {
                Next::Result(ResultGuard(res))
            };
        }
        let sock = self.socket();
        // SAFETY: raw is live; PQisBusy/PQconsumeInput do not block.
        while unsafe { pq::PQisBusy(raw) } != 0 {
            if self.waits.is_none() {
                self.waits = WaitSet::new(sock);
            }
            let ready = match &self.waits {
                Some(w) => w.readable(deadline),
                None => wait_socket(sock, true, false, deadline),
            };
            if !ready {
                return Next::TimedOut;
            }
            if unsafe { pq::PQconsumeInput(raw) } == 0 {
                // The server may have said why before it closed the connection (a FATAL such
                // as 57P01 at shutdown): report its error, not the end of file that followed.
                self.poisoned = true;
                // SAFETY: the connection is closed; PQgetResult returns what was parsed.
                let res = unsafe { pq::PQgetResult(raw) };
                if res.is_null() {
                    return Next::Lost;
                }
                let res = ResultGuard(res);
                return if res.field(DIAG_SQLSTATE).is_some() {
                    Next::Result(res)
                } else {
                    Next::Lost
                };
            }
        }
        // SAFETY: not busy, so PQgetResult does not block.
        let res = unsafe { pq::PQgetResult(raw) };
        if res.is_null() {
            Next::Done
        } else {
            Next::Result(ResultGuard(res))
        }
    }
}

/// One step of reading a statement's results.
enum Next {
    Result(ResultGuard),
    Done,
    TimedOut,
    Lost,
}

/// A statement parameter: its text value (`None` = NULL) and type OID (0: the server infers
/// it, as for an untyped literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub value: Option<String>,
    pub type_oid: u32,
}

/// Caps on a routed statement: rows and bytes (of text values) returned, and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub timeout: Option<Duration>,
}

impl Caps {
    /// The error for a result of `rows` rows and `bytes` bytes, if it is over a cap.
    fn exceeded(&self, rows: u64, bytes: u64) -> Option<RemoteError> {
        if rows > self.max_rows {
            Some(RemoteError::Limit {
                what: "rows",
                limit: self.max_rows,
                completed: None,
            })
        } else if bytes > self.max_bytes {
            Some(RemoteError::Limit {
                what: "bytes",
                limit: self.max_bytes,
                completed: None,
            })
        } else {
            None
        }
    }
}

/// Asks the server to cancel the statement in flight on `conn` (libpq's PQcancel, over its own
/// connection; a failure to deliver is ignored: the statement then simply runs to its end).
/// Sends a cancel request for the statement in flight on `conn` (a live PGconn); waits for
/// the request to be delivered, not for the statement to end.
pub(super) fn cancel(conn: *mut pq::PGconn) {
    // SAFETY: conn is a live PGconn; PQcancel writes at most 256 bytes into errbuf.
    unsafe {
        let c = pq::PQgetCancel(conn);
        if !c.is_null() {
            let mut errbuf = [0 as std::ffi::c_char; 256];
            pq::PQcancel(c, errbuf.as_mut_ptr(), errbuf.len() as i32);
            pq::PQfreeCancel(c);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // the wait set first: it watches the socket PQfinish closes
        self.waits = None;
        // SAFETY: the PGconn is finished once; its descriptor was acquired in `connect`.
        unsafe {
            pq::PQfinish(self.raw.as_ptr());
            pg_sys::ReleaseExternalFD();
        }
    }
}

/// Sends a cancel request for the statement in flight when dropped while armed (an interrupt
/// or error unwound out of the wait), so `pg_cancel_backend` of a caller cancels the remote
/// statement too. While it lives, the connection is also recorded for [`cancel_at_exit`]: a
/// terminated caller (`pg_terminate_backend`, FATAL) leaves the process without unwinding,
/// so no Drop runs then.
struct CancelOnUnwind {
    conn: *mut pq::PGconn,
    armed: bool,
}

thread_local! {
    /// The connection whose statement this backend is waiting for, if any.
    static IN_FLIGHT: std::cell::Cell<*mut pq::PGconn> = const { std::cell::Cell::new(std::ptr::null_mut()) };
    static EXIT_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl CancelOnUnwind {
    fn new(conn: *mut pq::PGconn) -> CancelOnUnwind {
        if !EXIT_HOOK.with(|h| h.replace(true)) {
            // SAFETY: registers a plain function, once per backend, to run at process exit.
            unsafe { pg_sys::before_shmem_exit(Some(cancel_at_exit), pg_sys::Datum::from(0)) };
        }
        IN_FLIGHT.with(|f| f.set(conn));
        CancelOnUnwind { conn, armed: true }
    }
}

impl Drop for CancelOnUnwind {
    fn drop(&mut self) {
        IN_FLIGHT.with(|f| f.set(std::ptr::null_mut()));
        if !self.armed {
            return;
        }
        // the Conn outlives this guard, so conn is live
        cancel(self.conn);
    }
}

/// At process exit (`before_shmem_exit`): cancels the remote statement this backend was
/// waiting for when it was terminated, so that it does not run on, holding the tenant's
/// connection slot and its locks, after its caller is gone.
unsafe extern "C-unwind" fn cancel_at_exit(_code: i32, _arg: pg_sys::Datum) {
    let conn = IN_FLIGHT.with(|f| f.replace(std::ptr::null_mut()));
    if !conn.is_null() {
        // the connection is still open: nothing closes connections before this hook
        cancel(conn);
    }
}

/// Owns a PGresult.
struct ResultGuard(*mut pq::PGresult);

impl Drop for ResultGuard {
    fn drop(&mut self) {
        // SAFETY: each PGresult is cleared once.
        unsafe { pq::PQclear(self.0) };
    }
}

impl ResultGuard {
    fn field(&self, code: i32) -> Option<String> {
        // SAFETY: the result is live; the field is a NUL-terminated string or NULL.
        unsafe {
            let p = pq::PQresultErrorField(self.0, code);
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }

    fn error(&self, server: &str, conn: &Conn) -> RemoteError {
        match (self.field(DIAG_SQLSTATE), self.field(DIAG_MESSAGE)) {
            (Some(sqlstate), Some(message)) => RemoteError::Server {
                sqlstate,
                message,
                detail: self.field(DIAG_DETAIL),
                hint: self.field(DIAG_HINT),
                remote_context: self.field(DIAG_CONTEXT),
            },
            _ => RemoteError::Lost {
                server: server.into(),
                message: conn.error_message(),
            },
        }
    }

    fn rows(&self) -> Rows {
        let r = self.0;
        // SAFETY: indices are within PQnfields/PQntuples of the live result.
        unsafe {
            let nf = pq::PQnfields(r);
            let nt = pq::PQntuples(r);
            let text =
                |p: *const std::ffi::c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
            let columns = (0..nf).map(|i| text(pq::PQfname(r, i))).collect();
            let types = (0..nf).map(|i| pq::PQftype(r, i)).collect();
            let rows = (0..nt)
                .map(|t| {
                    (0..nf)
                        .map(|f| {
                            (pq::PQgetisnull(r, t, f) == 0).then(|| text(pq::PQgetvalue(r, t, f)))
                        })
                        .collect()
                })
                .collect();
            let tag = text(pq::PQcmdTuples(r));
            Rows {
                columns,
                types,
                rows,
                affected: tag.parse().ok(),
            }
        }
    }
}

/// `struct pollfd` (poll(2)).
#[repr(C)]
pub(super) struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

extern "C" {
    /// poll(2).
    pub(super) fn poll(fds: *mut PollFd, nfds: u64, timeout: i32) -> i32;
}

fn libc_pollfd(fd: i32) -> PollFd {
    const POLLIN: i16 = 0x001;
    PollFd {
        fd,
        events: POLLIN,
        revents: 0,
    }
}

/// Whether `pfd` has input (or hang-up) pending right now, without waiting.
fn poll_now(pfd: &mut PollFd) -> bool {
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { poll(pfd, 1, 0) > 0 && pfd.revents != 0 }
}

/// The connection keywords this libpq knows (`PQconndefaults`), for checking a conninfo
/// before it is stored.
pub fn known_keywords() -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: PQconndefaults returns an array terminated by a NULL keyword (or NULL on out of
    // memory), freed with PQconninfoFree.
    unsafe {
        let opts = pq::PQconndefaults();
        if opts.is_null() {
            return out;
        }
        let mut p = opts;
        while !(*p).keyword.is_null() {
            out.push(CStr::from_ptr((*p).keyword).to_string_lossy().into_owned());
            p = p.add(1);
        }
        pq::PQconninfoFree(opts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{refusal_in, server_error_in};

    #[test]
    fn refusals_are_found_in_connection_errors() {
        assert_eq!(
            refusal_in(
                "connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: FATAL:  53300: too many connections for role \"t\"\nLOCATION:  x"
            ),
            Some(("53300".into(), "too many connections for role \"t\"".into()))
        );
        assert_eq!(
            refusal_in("connection to server at \"h\" failed: Connection refused"),
            None
        );
    }

    #[test]
    fn server_errors_are_found_in_verbose_text() {
        let text = "FATAL:  57P01: terminating connection due to administrator command\n\
                    LOCATION:  ProcessInterrupts, postgres.c:3200\n\
                    server closed the connection unexpectedly";
        assert_eq!(
            server_error_in(text),
            Some((
                "57P01".into(),
                "terminating connection due to administrator command".into()
            ))
        );
        assert_eq!(
            server_error_in("server closed the connection unexpectedly"),
            None
        );
        assert_eq!(server_error_in("FATAL:  terminating connection"), None);
        assert_eq!(server_error_in("NOTICE:  00000: hello"), None);
        assert_eq!(server_error_in("ERROR:  42p01: lower case"), None);
    }
}
