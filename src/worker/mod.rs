//! Background workers (when messiah is in `shared_preload_libraries`): a launcher and, per
//! admin database, short-lived executors that carry out the outbox and sweep aborted
//! creations (DESIGN.md decision 3).
//!
//! Why short-lived executors started by a launcher, rather than one permanent worker per
//! admin database: a worker connected to a database keeps it from being dropped or used as a
//! template, and a cluster may hold many admin databases. So the launcher (connected to no
//! database, it reads the shared catalog `pg_database`) keeps a small registry in shared
//! memory, one slot per admin database, and starts an executor for a database when a backend
//! asks for one (the COMMIT of a transaction that queued remote actions, the ABORT of one
//! that created a database, CREATE EXTENSION) or when its next due time comes (retries, and a
//! sweep every `messiah.sweep_interval` ms). The executor runs one pass and exits. At start
//! the launcher probes every database that allows connections and is not a tenant database or
//! template; an executor that finds no messiah there marks the slot and exits.
//!
//! Without preloading there are no workers: the next messiah call in the database carries out
//! what is due (`tenants::outbox::run_in_session`), and `messiah_reconcile(repair => true)`
//! sweeps.

pub mod executor;
pub mod launcher;

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Slots in the registry: admin databases (and probed databases) tracked at once.
pub const SLOTS: usize = 256;

/// What the launcher knows of a database.
pub mod state {
    pub const FREE: u8 = 0;
    /// To be probed: an executor will find out whether messiah is installed.
    pub const UNKNOWN: u8 = 1;
    /// messiah is installed: executors run there.
    pub const ADMIN: u8 = 2;
    /// messiah is not installed (until a backend there asks again).
    pub const NOT_ADMIN: u8 = 3;
}

/// One database's slot.
#[derive(Copy, Clone, Default, Debug)]
#[repr(C)]
pub struct Slot {
    pub db: u32,
    pub state: u8,
    /// A backend asked for an executor pass.
    pub wake: bool,
    /// An executor for this database is running.
    pub running: bool,
    /// Milliseconds since the Unix epoch of the next pass that is due anyway.
    pub due_ms: i64,
}

/// The shared registry.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct Registry {
    /// The launcher's latch (a pointer into shared memory), 0 when no launcher runs.
    pub launcher_latch: usize,
    pub launcher_pid: i32,
    pub slots: [Slot; SLOTS],
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            launcher_latch: 0,
            launcher_pid: 0,
            slots: [Slot::default(); SLOTS],
        }
    }
}

// SAFETY: plain data (integers and a pointer-sized integer into shared memory), the same in
// every process.
unsafe impl PGRXSharedMemory for Registry {}

/// The registry, in shared memory (initialized only when preloaded).
pub static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"messiah_registry") };

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init` during `shared_preload_libraries` processing.
pub fn init_preloaded() {
    pgrx::pg_shmem_init!(REGISTRY);
    PRELOADED.store(true, Ordering::Relaxed);
    launcher::register();
}

/// Whether the registry exists (messiah was preloaded).
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// The slot of `db`, taking a free one if needed.
    pub fn slot(&mut self, db: u32) -> Option<&mut Slot> {
        let i = self
            .slots
            .iter()
            .position(|s| s.state != state::FREE && s.db == db)
            .or_else(|| self.slots.iter().position(|s| s.state == state::FREE))?;
        let s = &mut self.slots[i];
        if s.state == state::FREE {
            *s = Slot {
                db,
                state: state::UNKNOWN,
                ..Slot::default()
            };
        }
        Some(s)
    }
}

/// Asks for an executor pass in database `db` now, and wakes the launcher. Safe in a COMMIT
/// or ABORT callback: takes a lightweight lock and sets a latch, nothing else.
pub fn wake(db: pg_sys::Oid) {
    if !preloaded() {
        return;
    }
    let latch = {
        let mut r = REGISTRY.exclusive();
        if let Some(s) = r.slot(db.to_u32()) {
            s.wake = true;
            if s.state == state::NOT_ADMIN {
                s.state = state::UNKNOWN;
            }
        }
        r.launcher_latch
    };
    if latch != 0 {
        // SAFETY: the launcher's latch lives in shared memory for the life of the cluster.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// Whether an executor will serve this database (messiah preloaded and the launcher running).
pub fn executor_available() -> bool {
    preloaded() && REGISTRY.share().launcher_pid != 0
}

thread_local! {
    static COMMIT_HOOKED: Cell<u32> = const { Cell::new(0) };
    static ABORT_HOOKED: Cell<u32> = const { Cell::new(0) };
}

fn local_xid() -> u32 {
    // SAFETY: MyProc is this backend's PGPROC.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// Wakes this database's executor when the current transaction commits (once per
/// transaction, however many actions it queued).
pub fn wake_at_commit() {
    if !preloaded() || COMMIT_HOOKED.with(|c| c.replace(local_xid())) == local_xid() {
        return;
    }
    // SAFETY: plain read.
    let db = unsafe { pg_sys::MyDatabaseId };
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || wake(db));
}

/// Wakes this database's executor if the current transaction, or a subtransaction of it,
/// aborts (a database it created before COMMIT is then garbage to sweep).
pub fn wake_at_abort() {
    if !preloaded() || ABORT_HOOKED.with(|c| c.replace(local_xid())) == local_xid() {
        return;
    }
    // SAFETY: plain read.
    let db = unsafe { pg_sys::MyDatabaseId };
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, move || wake(db));
    // A savepoint rolled back after SET CONSTRAINTS ALL IMMEDIATE created the database.
    pgrx::register_subxact_callback(pgrx::PgSubXactCallbackEvent::AbortSub, move |_, _| wake(db));
}
