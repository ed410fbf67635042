//! An executor pass in one admin database: carry out the due outbox actions, sweep aborted
//! creations, record when the next pass is due, exit.

use super::{now_ms, state, REGISTRY};
use crate::guc;
use pgrx::bgworkers::*;
use pgrx::pg_sys;
use pgrx::prelude::*;

fn set_slot(db: u32, f: impl FnOnce(&mut super::Slot)) {
    let mut r = REGISTRY.exclusive();
    if let Some(s) = r
        .slots
        .iter_mut()
        .find(|s| s.db == db && s.state != state::FREE)
    {
        f(s);
    }
}

/// Entry point of an executor (argument: the database's oid).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn messiah_executor_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = arg.value() as u32;
    // Until this pass has found messiah, the database is unknown (if connecting fails because
    // the database is gone, the launcher frees the slot).
    set_slot(db, |s| s.state = state::UNKNOWN);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    let installed = BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'messiah')",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    });
    if !installed {
        set_slot(db, |s| s.state = state::NOT_ADMIN);
        return;
    }
    let interval = guc::SWEEP_INTERVAL_MS.get().max(100) as i64;
    // If this pass fails, the next one is still a whole interval away (no restart loop).
    set_slot(db, |s| {
        s.state = state::ADMIN;
        s.due_ms = now_ms() + interval;
    });
    // Owner-run code: names resolve in pg_catalog only; per-statement snapshots, so a push
    // reads the newest committed catalog copy.
    BackgroundWorker::transaction(|| {
        Spi::run("SET search_path = pg_catalog, pg_temp; SET default_transaction_isolation = 'read committed'")
            .ok();
    });
    let next = BackgroundWorker::transaction(pass);
    set_slot(db, |s| s.due_ms = next);
}

/// One pass: the due outbox actions, then the sweep of every server. Returns when the next
/// pass is due (ms since the epoch).
fn pass() -> i64 {
    let interval = guc::SWEEP_INTERVAL_MS.get().max(100) as i64;
    let report = crate::tenants::outbox::run(false);
    for (action, tenant, database, outcome) in &report.items {
        if outcome.starts_with("failed") {
            pgrx::warning!(
                "messiah executor: {action} for tenant \"{tenant}\" ({database}) {outcome}"
            );
        }
    }
    let swept = crate::spi::in_subtransaction(|| {
        let mut servers = vec![];
        if let Ok(local) = crate::remote::Server::local() {
            servers.push(local);
        }
        for id in crate::spi::column::<i64>("SELECT DISTINCT server_id FROM messiah.tenants", &[]) {
            if let Ok(s) = crate::remote::Server::by_id(id) {
                if !servers.iter().any(|o: &crate::remote::Server| o.id == s.id) {
                    servers.push(s);
                }
            }
        }
        crate::tenants::provision::sweep(&servers, true)
    });
    if let Ok(Ok(dropped)) = &swept {
        let n = dropped.len() as u64;
        crate::monitor::counters::update_db(|c| {
            c.sweeps += 1;
            c.last_sweep_ms = now_ms();
            c.databases_swept += n;
        });
    }
    match swept {
        Ok(Ok(dropped)) if !dropped.is_empty() => {
            pgrx::log!(
                "messiah executor: dropped {} database(s) left by aborted tenant creations",
                dropped.len()
            );
        }
        Ok(Err(e)) | Err(e) => pgrx::warning!("messiah executor: sweep failed: {}", e.message),
        _ => {}
    }
    let retry_in = crate::spi::one::<f64>(
        "SELECT (extract(epoch FROM min(next_attempt_at) - pg_catalog.clock_timestamp()) * 1000)::float8 FROM messiah.outbox",
        &[],
    );
    let now = now_ms();
    match retry_in {
        Some(ms) => now + (ms.max(10.0) as i64).min(interval),
        None => now + interval,
    }
}
