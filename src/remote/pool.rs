//! The connections of this backend: a small pool keyed by server, conninfo and database.
//!
//! Why a pool, and why a bounded one: opening a connection costs about 2 ms, a command on an
//! open one about 0.05 ms, so connections are kept between calls. But every connection is a
//! backend on the other side: N sessions each holding M connections must never exhaust a
//! cluster (the loopback connections of 110 sessions once filled 199 of 200 slots). So:
//! - at most `messiah.max_remote_connections` per backend, least recently used closed first;
//! - every connection asks its server to end it after `messiah.remote_idle_timeout` ms idle
//!   (`idle_session_timeout`), which frees the remote slot even if this session never runs
//!   another statement; at each transaction end, local handles idle that long are closed too;
//! - read-only work on the local cluster (listing, reconcile without repair) reads shared
//!   catalogs and opens no connection at all.
//!
//! The key includes a hash of the server's conninfo, so a conninfo change (messiah_alter_server)
//! makes the next call open a new connection; the old one ages out.

use super::error::RemoteError;
use super::libpq::Conn;
use super::Endpoint;
use std::cell::RefCell;
use std::time::{Duration, Instant};

#[derive(Clone, PartialEq, Eq, Debug)]
struct Key {
    server_id: i64,
    conninfo: u64,
    database: String,
    /// The role logged in as (`None`: the server's configured user, for maintenance).
    user: Option<String>,
    /// Hash of the password given, so a rotated credential opens a new connection.
    credential: u64,
}

impl Key {
    fn of(ep: &Endpoint) -> Key {
        Key {
            server_id: ep.server.id,
            conninfo: crate::ident::fnv64(ep.server.conninfo.render().as_bytes()),
            database: ep.database.clone(),
            user: ep.login.as_ref().map(|l| l.user.clone()),
            credential: ep.login.as_ref().map_or(0, |l| {
                crate::ident::fnv64(l.password.as_bytes())
                    ^ l.generation.rotate_left(1)
                    ^ u64::from(l.read_only)
            }),
        }
    }
}

struct Slot {
    key: Key,
    conn: Conn,
    last_used: Instant,
}

thread_local! {
    static POOL: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    static CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn idle_timeout() -> Duration {
    Duration::from_millis(crate::guc::REMOTE_IDLE_TIMEOUT_MS.get().max(1) as u64)
}

fn take(key: &Key) -> Option<Conn> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|s| &s.key == key)?;
        Some(p.swap_remove(i).conn)
    })
}

fn put(key: Key, conn: Conn) {
    register_callback();
    let max = crate::guc::MAX_REMOTE_CONNECTIONS.get().max(1) as usize;
    let evicted: Vec<Slot> = POOL.with(|p| {
        let mut p = p.borrow_mut();
        // one connection per server, database and role: one opened under an older credential
        // or other settings goes (else it would linger until idle, holding a slot of the
        // role's connection limit)
        let mut out: Vec<Slot> = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let k = &p[i].key;
            if k.server_id == key.server_id
                && k.database == key.database
                && k.user == key.user
                && k.user.is_some()
            {
                out.push(p.swap_remove(i));
            } else {
                i += 1;
            }
        }
        p.push(Slot {
            key,
            conn,
            last_used: Instant::now(),
        });
        while p.len() > max {
            let oldest = p
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
                .unwrap_or(0);
            out.push(p.swap_remove(oldest));
        }
        out
    });
    drop(evicted);
}

fn connect(ep: &Endpoint) -> Result<Conn, RemoteError> {
    let timeout = Duration::from_millis(crate::guc::CONNECT_TIMEOUT_MS.get().max(1) as u64);
    Conn::connect(&ep.params(), timeout, &ep.server.name, &ep.database)
}

pub(super) fn with_conn<R>(
    ep: &Endpoint,
    f: &mut dyn FnMut(&mut Conn) -> Result<R, RemoteError>,
) -> Result<R, RemoteError> {
    let key = Key::of(ep);
    let mut pooled = None;
    if let Some(mut c) = take(&key) {
        // A connection the server closed while it sat idle is dropped here.
        if c.is_healthy() {
            pooled = Some(c);
        }
    }
    let reused = pooled.is_some();
    let mut conn = match pooled {
        Some(c) => c,
        None => connect(ep)?,
    };
    let mut result = f(&mut conn);
    if let Err(e) = &result {
        if reused && e.is_connection_failure() {
            drop(conn);
            conn = connect(ep)?;
            result = f(&mut conn);
        }
    }
    if conn.can_be_pooled() {
        put(key, conn);
    }
    result
}

/// Closes this backend's connections to `database` on server `server_id` (before that
/// database is dropped or renamed, and for `messiah_tenant_disconnect`).
pub fn close_database(server_id: i64, database: &str) -> usize {
    close_where(|k| k.server_id == server_id && k.database == database)
}

/// Closes this backend's connections to `database` on server `server_id` logged in as
/// `user` (a supabase tenant's, in a project database other tenants share).
pub fn close_login(server_id: i64, database: &str, user: &str) -> usize {
    close_where(|k| {
        k.server_id == server_id && k.database == database && k.user.as_deref() == Some(user)
    })
}

/// Closes every connection of this backend (`messiah_tenant_disconnect()`).
pub fn close_all() -> usize {
    close_where(|_| true)
}

fn close_where(pred: impl Fn(&Key) -> bool) -> usize {
    let closed: Vec<Slot> = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let (out, keep): (Vec<Slot>, Vec<Slot>) = p.drain(..).partition(|s| pred(&s.key));
        *p = keep;
        out
    });
    closed.len()
}

/// Closes this backend's connections to server `server_id` (its conninfo changed or it was
/// removed).
pub fn close_server(server_id: i64) {
    let closed: Vec<Slot> = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let (out, keep): (Vec<Slot>, Vec<Slot>) =
            p.drain(..).partition(|s| s.key.server_id == server_id);
        *p = keep;
        out
    });
    drop(closed);
}

/// At every transaction end: closes connections idle longer than the idle timeout. Only
/// frees libpq handles (no SPI, no error raised), so it is safe in the COMMIT callback.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_end(
    event: pgrx::pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pgrx::pg_sys::XactEvent;
    if event != XactEvent::XACT_EVENT_COMMIT && event != XactEvent::XACT_EVENT_ABORT {
        return;
    }
    let limit = idle_timeout();
    let closed: Vec<Slot> = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let (out, keep): (Vec<Slot>, Vec<Slot>) =
            p.drain(..).partition(|s| s.last_used.elapsed() >= limit);
        *p = keep;
        out
    });
    drop(closed);
}

fn register_callback() {
    if CALLBACK.with(|c| c.replace(true)) {
        return;
    }
    // SAFETY: registers a plain function for the life of the backend, once.
    unsafe { pgrx::pg_sys::RegisterXactCallback(Some(xact_end), std::ptr::null_mut()) };
}
