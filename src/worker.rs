//! The sweeper background worker (registered when messiah is in shared_preload_libraries).
//!
//! Every `messiah.sweep_interval` ms it connects to `messiah.database` and, if messiah is
//! installed there, runs `messiah.sweep()`: databases whose creating transaction aborted
//! after CREATE DATABASE (the backend died inside COMMIT) disappear without anyone calling
//! messiah again. Without the worker, the next `messiah_create_tenant` or
//! `messiah_reconcile(repair => true)` sweeps.

use crate::guc;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::time::Duration;

pub fn register() {
    BackgroundWorkerBuilder::new("messiah sweeper")
        .set_function("messiah_sweeper_main")
        .set_library("messiah")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// Entry point of the sweeper worker.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn messiah_sweeper_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = guc::string(&guc::DATABASE);
    BackgroundWorker::connect_worker_to_spi(
        Some(if db.is_empty() { "postgres" } else { &db }),
        None,
    );
    loop {
        BackgroundWorker::transaction(|| {
            let installed = Spi::get_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'messiah')",
            )
            .ok()
            .flatten()
            .unwrap_or(false);
            if installed {
                let n = Spi::get_one::<i64>("SELECT count(*) FROM messiah.sweep()")
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                if n > 0 {
                    log!(
                        "messiah sweeper: dropped {n} database(s) left by aborted tenant creations"
                    );
                }
            }
        });
        let interval = guc::SWEEP_INTERVAL_MS.get().max(100) as u64;
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(interval))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloading the config file in a background worker, as Postgres' own do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}
