//! Configuration parameters (GUCs). Units are in the names' documentation.

use pgrx::guc::*;
use std::ffi::{CStr, CString};

/// `messiah.server_conninfo`: libpq keyword/value conninfo (no dbname) of the server on which
/// new tenant databases are created. Empty (default): this cluster, over its first Unix socket
/// directory and port, as the function owner (DESIGN.md decision 3).
pub static SERVER_CONNINFO: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `messiah.clone_strategy`: `wal_log` (default, measured faster for small templates) or
/// `file_copy`, passed to CREATE DATABASE ... STRATEGY.
pub static CLONE_STRATEGY: GucSetting<CloneStrategy> =
    GucSetting::<CloneStrategy>::new(CloneStrategy::WalLog);

/// `messiah.database`: the admin database the sweeper background worker connects to.
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// `messiah.sweep_interval`: milliseconds between sweeps of the provisioning journal by the
/// background worker.
pub static SWEEP_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `messiah.fault_injection`: superuser-only test hook. `error_after_create` raises an error
/// right after CREATE DATABASE at commit; `sleep_after_create` waits 30 s there (so a test can
/// kill the backend in that window). Empty by default.
pub static FAULT_INJECTION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// STRATEGY of CREATE DATABASE.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum CloneStrategy {
    WalLog,
    FileCopy,
}

impl CloneStrategy {
    pub fn sql(self) -> &'static str {
        match self {
            CloneStrategy::WalLog => "WAL_LOG",
            CloneStrategy::FileCopy => "FILE_COPY",
        }
    }
}

pub fn register() {
    GucRegistry::define_string_guc(
        c"messiah.server_conninfo",
        c"Conninfo (keyword=value, no dbname) of the server where tenant databases are created.",
        c"Empty means this cluster over its Unix socket. May hold a password; it is never shown by messiah functions.",
        &SERVER_CONNINFO,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_enum_guc(
        c"messiah.clone_strategy",
        c"CREATE DATABASE strategy used to clone the tenant template: wal_log or file_copy.",
        c"",
        &CLONE_STRATEGY,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"messiah.database",
        c"Admin database (holding the messiah extension) that the sweeper background worker connects to.",
        c"",
        &DATABASE,
        // Not Postmaster: without preloading, the library is loaded after startup, where
        // Postgres refuses to define PGC_POSTMASTER variables. The worker reads it at start.
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"messiah.sweep_interval",
        c"Milliseconds between sweeps of aborted tenant-database creations by the background worker.",
        c"",
        &SWEEP_INTERVAL_MS,
        100,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"messiah.fault_injection",
        c"Test hook: error_after_create or sleep_after_create. Empty in production.",
        c"",
        &FAULT_INJECTION,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
}

/// The value of a string GUC, empty when unset.
pub fn string(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .as_deref()
        .map(CStr::to_string_lossy)
        .map(|s| s.into_owned())
        .unwrap_or_default()
}
