//! The launcher: one static background worker, connected to no database, that starts
//! executor passes (see the module comment of `worker`).

use super::{now_ms, state, REGISTRY};
use crate::guc;
use pgrx::bgworkers::*;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::time::Duration;

/// Registers the launcher (from `_PG_init` while preloading).
pub fn register() {
    BackgroundWorkerBuilder::new("messiah launcher")
        .set_type("messiah launcher")
        .set_function("messiah_launcher_main")
        .set_library("messiah")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// A database of the cluster, from the shared catalog.
struct Db {
    oid: u32,
    name: String,
    allow_connections: bool,
    is_template: bool,
    /// `datconnlimit = -2` (Postgres 15.4+): an interrupted DROP DATABASE; connecting fails.
    invalid: bool,
}

/// Reads `pg_database` with a catalog scan (the launcher is connected to no database, like
/// the autovacuum launcher's `get_database_list`).
fn databases() -> Vec<Db> {
    BackgroundWorker::transaction(|| {
        let mut out = Vec::new();
        // SAFETY: a heap scan of a shared catalog inside a transaction, as autovacuum.c's
        // get_database_list does; each tuple's data is read before the next heap_getnext.
        unsafe {
            let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as _);
            let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
            loop {
                let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tup.is_null() {
                    break;
                }
                let data = (*tup).t_data;
                let form = (data as *mut u8).add((*data).t_hoff as usize)
                    as *const pg_sys::FormData_pg_database;
                out.push(Db {
                    oid: (*form).oid.to_u32(),
                    name: pgrx::name_data_to_str(&(*form).datname).to_string(),
                    allow_connections: (*form).datallowconn,
                    is_template: (*form).datistemplate,
                    invalid: (*form).datconnlimit == -2,
                });
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
        }
        out
    })
}

/// Databases an admin installation can live in: not a template, valid, accepting connections, and
/// not one of messiah's own (tenant databases, databases being created, templates).
fn candidate(d: &Db) -> bool {
    d.allow_connections
        && !d.is_template
        && !d.invalid
        && !d.name.starts_with("tenant_")
        && !d.name.starts_with("messiah_new_")
        && !d.name.starts_with("messiah_template_")
}

/// Entry point of the launcher.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn messiah_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    {
        let mut r = REGISTRY.exclusive();
        // SAFETY: this process's latch lives in its PGPROC in shared memory.
        r.launcher_latch = unsafe { pg_sys::MyLatch } as usize;
        // SAFETY: plain read.
        r.launcher_pid = unsafe { pg_sys::MyProcPid };
        for s in r.slots.iter_mut() {
            s.running = false;
        }
    }
    // Probe every database an admin installation can live in.
    let dbs = databases();
    {
        let mut r = REGISTRY.exclusive();
        for d in dbs.iter().filter(|d| candidate(d)) {
            if let Some(s) = r.slot(d.oid) {
                if s.state != state::NOT_ADMIN {
                    s.wake = true;
                }
            }
        }
    }
    let mut running: Vec<(u32, DynamicBackgroundWorker)> = Vec::new();
    loop {
        reap(&mut running);
        start_due(&mut running);
        let wait = next_wait();
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloading the config file in a background worker, as Postgres' own do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    let mut r = REGISTRY.exclusive();
    r.launcher_latch = 0;
    r.launcher_pid = 0;
}

/// Forgets executors that have exited.
fn reap(running: &mut Vec<(u32, DynamicBackgroundWorker)>) {
    let mut done = Vec::new();
    running.retain(|(db, w)| {
        let alive = w.pid().is_ok();
        if !alive {
            done.push(*db);
        }
        alive
    });
    if done.is_empty() {
        return;
    }
    let mut r = REGISTRY.exclusive();
    for s in r.slots.iter_mut().filter(|s| done.contains(&s.db)) {
        s.running = false;
        // An executor that could not even find out whether messiah is there (its database
        // was dropped) leaves the slot unknown: free it.
        if s.state == state::UNKNOWN && !s.wake {
            s.state = state::FREE;
        }
    }
}

/// Starts an executor for every database that asked for one or is due, within
/// `messiah.max_executors`.
fn start_due(running: &mut Vec<(u32, DynamicBackgroundWorker)>) {
    let max = guc::MAX_EXECUTORS.get().max(1) as usize;
    let now = now_ms();
    let wanted: Vec<u32> = {
        let mut r = REGISTRY.exclusive();
        let mut out = Vec::new();
        for s in r.slots.iter_mut() {
            let due = s.state == state::ADMIN && s.due_ms <= now;
            let asked = s.wake && (s.state == state::ADMIN || s.state == state::UNKNOWN);
            if !s.running && (asked || due) && running.len() + out.len() < max {
                s.wake = false;
                s.running = true;
                out.push(s.db);
            }
        }
        out
    };
    for db in wanted {
        let started = BackgroundWorkerBuilder::new("messiah executor")
            .set_type("messiah executor")
            .set_function("messiah_executor_main")
            .set_library("messiah")
            .set_argument(Some(pg_sys::Datum::from(db as usize)))
            .enable_spi_access()
            // SAFETY: plain read.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .set_restart_time(None)
            .load_dynamic();
        match started {
            Ok(w) => running.push((db, w)),
            Err(_) => {
                // No free worker slot (max_worker_processes): try again at the next wakeup.
                let mut r = REGISTRY.exclusive();
                if let Some(s) = r
                    .slots
                    .iter_mut()
                    .find(|s| s.db == db && s.state != state::FREE)
                {
                    s.running = false;
                    s.wake = true;
                }
            }
        }
    }
}

/// How long to sleep: until the earliest due pass, at most `messiah.sweep_interval`, at least
/// 10 ms (an executor that could not start is retried then).
fn next_wait() -> Duration {
    let interval = guc::SWEEP_INTERVAL_MS.get().max(100) as i64;
    let now = now_ms();
    let r = REGISTRY.share();
    let retry = r
        .slots
        .iter()
        .any(|s| s.wake && !s.running && s.state != state::FREE);
    let earliest = r
        .slots
        .iter()
        .filter(|s| s.state == state::ADMIN && !s.running)
        .map(|s| s.due_ms - now)
        .min()
        .unwrap_or(interval);
    let ms = if retry {
        100
    } else {
        earliest.clamp(10, interval)
    };
    Duration::from_millis(ms as u64)
}
