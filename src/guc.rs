//! Configuration parameters (GUCs). Units are in the names' documentation.

use pgrx::guc::*;
use std::ffi::{CStr, CString};

/// `messiah.clone_strategy`: `wal_log` (default, measured faster for small templates) or
/// `file_copy`, passed to CREATE DATABASE ... STRATEGY.
pub static CLONE_STRATEGY: GucSetting<CloneStrategy> =
    GucSetting::<CloneStrategy>::new(CloneStrategy::WalLog);

/// `messiah.sweep_interval`: milliseconds between two passes of an admin database's executor
/// when nothing wakes it earlier (retries of failed remote actions, sweeps after crashes).
pub static SWEEP_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `messiah.max_executors`: at most this many executor workers run at once on the cluster.
pub static MAX_EXECUTORS: GucSetting<i32> = GucSetting::<i32>::new(4);

/// `messiah.fault_injection`: superuser-only test hook (see `provision::fault`).
pub static FAULT_INJECTION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `messiah.remote_idle_timeout`: milliseconds after which an idle remote connection is ended
/// by its server (`idle_session_timeout`) and closed here at the next transaction end.
pub static REMOTE_IDLE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `messiah.max_remote_connections`: connections one backend keeps open at most.
pub static MAX_REMOTE_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(8);

/// `messiah.connect_timeout`: milliseconds to wait for a remote connection to open.
pub static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `messiah.index_lock_timeout`: milliseconds a field index build or drop in a tenant
/// database may wait for older transactions before it gives up (and is retried later).
pub static INDEX_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2_000);

/// `messiah.migration_lock_timeout`: milliseconds a tenant schema migration may wait for a
/// lock in a tenant database (`lock_timeout`) before it fails (and is retried by a re-run),
/// so that it never queues the tenant's writers for long.
pub static MIGRATION_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2_000);

/// `messiah.move_timeout`: milliseconds a tenant move may wait for its initial copy, and
/// for the target to catch up at cutover, before it gives up (and undoes itself).
pub static MOVE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(600_000);

/// `messiah.move_cutover_timeout`: milliseconds a tenant move waits for the routed calls in
/// flight (their transactions) before cutting over; past it the move fails and undoes itself.
pub static MOVE_CUTOVER_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);

/// `messiah.route_max_rows`: rows a routed call (`messiah_tenant_query`, ...) may return;
/// past it the remote statement is cancelled and the call fails with 54000.
pub static ROUTE_MAX_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `messiah.route_max_bytes`: bytes (of the values' text) a routed call may return; past it,
/// as past `route_max_rows`.
pub static ROUTE_MAX_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 << 20);

/// `messiah.catalog_cache`: whether routed calls use the per-backend catalog cache
/// (`cache::catalog`); off reads the catalog on every call (for comparison and diagnosis).
pub static CATALOG_CACHE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `messiah.health_concurrency`: connections `messiah_health()` opens at once at most.
pub static HEALTH_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(32);

/// `messiah.health_timeout`: milliseconds one health check (connect and `SELECT`) may take.
pub static HEALTH_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2_000);

/// `messiah.result_cache_size`: kB of shared memory for the routed result cache
/// (`cache::results`); 0 turns it off. Read at server start (needs messiah preloaded).
pub static RESULT_CACHE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(8 * 1024);

/// `messiah.key_file`: path of the file holding the secret keys (see `secrets`).
/// Superuser-only (PGC_SUSET and hidden from other roles): set it in postgresql.conf, or per
/// database with ALTER DATABASE ... SET as a superuser.
pub static KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

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

fn int(
    name: &'static CStr,
    short: &'static CStr,
    setting: &'static GucSetting<i32>,
    (min, max): (i32, i32),
    context: GucContext,
    ms: bool,
) {
    GucRegistry::define_int_guc(
        name,
        short,
        c"",
        setting,
        min,
        max,
        context,
        if ms {
            GucFlags::UNIT_MS
        } else {
            GucFlags::default()
        },
    );
}

pub fn register() {
    GucRegistry::define_enum_guc(
        c"messiah.clone_strategy",
        c"CREATE DATABASE strategy used to clone the tenant template: wal_log or file_copy.",
        c"",
        &CLONE_STRATEGY,
        GucContext::Suset,
        GucFlags::default(),
    );
    int(
        c"messiah.sweep_interval",
        c"Milliseconds between two passes of an admin database's executor worker when nothing wakes it earlier.",
        &SWEEP_INTERVAL_MS,
        (100, 3_600_000),
        GucContext::Sighup,
        true,
    );
    int(
        c"messiah.max_executors",
        c"Executor workers (one per admin database with pending work) running at once.",
        &MAX_EXECUTORS,
        (1, 64),
        GucContext::Sighup,
        false,
    );
    GucRegistry::define_string_guc(
        c"messiah.fault_injection",
        c"Test hook (error_after_create, sleep_after_create, sleep_before_rename). Empty in production.",
        c"",
        &FAULT_INJECTION,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    int(
        c"messiah.remote_idle_timeout",
        c"Milliseconds after which an idle connection messiah opened is ended by its server and closed here.",
        &REMOTE_IDLE_TIMEOUT_MS,
        (100, 86_400_000),
        GucContext::Suset,
        true,
    );
    int(
        c"messiah.max_remote_connections",
        c"Connections to other databases one backend keeps open at most (least recently used closed first).",
        &MAX_REMOTE_CONNECTIONS,
        (1, 1000),
        GucContext::Suset,
        false,
    );
    int(
        c"messiah.connect_timeout",
        c"Milliseconds to wait for a connection to another database to open.",
        &CONNECT_TIMEOUT_MS,
        (100, 600_000),
        GucContext::Suset,
        true,
    );
    int(
        c"messiah.index_lock_timeout",
        c"Milliseconds a field index build or drop in a tenant database waits for older transactions before it is retried later.",
        &INDEX_LOCK_TIMEOUT_MS,
        (10, 3_600_000),
        GucContext::Suset,
        true,
    );
    int(
        c"messiah.migration_lock_timeout",
        c"Milliseconds a tenant schema migration waits for a lock in a tenant database before it fails (a re-run retries it).",
        &MIGRATION_LOCK_TIMEOUT_MS,
        (1, 3_600_000),
        GucContext::Suset,
        true,
    );
    int(
        c"messiah.move_timeout",
        c"Milliseconds a tenant move waits for its initial copy, and for the target to catch up at cutover, before it undoes itself.",
        &MOVE_TIMEOUT_MS,
        (100, i32::MAX),
        GucContext::Suset,
        true,
    );
    int(
        c"messiah.move_cutover_timeout",
        c"Milliseconds a tenant move waits for the tenant's routed calls in flight before cutting over; past it the move fails and undoes itself.",
        &MOVE_CUTOVER_TIMEOUT_MS,
        (1, 3_600_000),
        GucContext::Suset,
        true,
    );
    int(
        c"messiah.route_max_rows",
        c"Rows a routed call (messiah_tenant_query, _insert, _update) may return; past it the remote statement is cancelled (54000).",
        &ROUTE_MAX_ROWS,
        (1, i32::MAX),
        GucContext::Suset,
        false,
    );
    int(
        c"messiah.route_max_bytes",
        c"Bytes (of the values' text form) a routed call may return; past it the remote statement is cancelled (54000).",
        &ROUTE_MAX_BYTES,
        (1024, i32::MAX),
        GucContext::Suset,
        false,
    );
    GucRegistry::define_bool_guc(
        c"messiah.catalog_cache",
        c"Whether routed calls keep catalog lookups per backend (invalidated at every catalog change's COMMIT); off reads the catalog on every call.",
        c"",
        &CATALOG_CACHE,
        GucContext::Userset,
        GucFlags::default(),
    );
    int(
        c"messiah.health_concurrency",
        c"Connections messiah_health() opens at once at most (each one of the backend's file descriptors).",
        &HEALTH_CONCURRENCY,
        (1, 1000),
        GucContext::Suset,
        false,
    );
    int(
        c"messiah.health_timeout",
        c"Milliseconds one health check (connect and one statement) may take before it counts as unhealthy.",
        &HEALTH_TIMEOUT_MS,
        (10, 600_000),
        GucContext::Suset,
        true,
    );
    GucRegistry::define_string_guc(
        c"messiah.key_file",
        c"File holding the keys that encrypt secrets in the catalog (one 64-hex-digit key per line, first line encrypts).",
        c"Must be readable only by the server's OS user (mode 0600 or 0400).",
        &KEY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
}

/// Registers the GUCs read at server start (PGC_POSTMASTER): Postgres allows them only while
/// `shared_preload_libraries` is processed, which is also the only way they can matter.
pub fn register_preloaded() {
    GucRegistry::define_int_guc(
        c"messiah.result_cache_size",
        c"Shared memory for results of routed reads cached with max_age (messiah_tenant_query); 0 turns the cache off. Needs messiah in shared_preload_libraries.",
        c"Least recently used entries are evicted first; an entry larger than an eighth of the cache is not stored.",
        &RESULT_CACHE_SIZE_KB,
        0,
        4 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::UNIT_KB,
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
