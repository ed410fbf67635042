//! Small SPI helpers: every query takes bind parameters; failures that are not SQL errors
//! (which Postgres raises itself, with their SQLSTATE) become internal errors naming the query.
//! Also the adapters that make owner-run code safe to run from any session: a pinned
//! `search_path` ([`PinnedSearchPath`]), a role switch ([`AsUser`]) and internal
//! subtransactions ([`in_subtransaction`]).

pub mod plans;

use crate::err::SpiExt;
use pgrx::datum::DatumWithOid;
use pgrx::spi::{SpiClient, SpiResult, SpiTupleTable};
use pgrx::{FromDatum, IntoDatum, Spi};

/// Runs `query` read-only through its kept plan ([`plans`]), or unprepared when none can be
/// kept.
fn select<'conn>(
    c: &SpiClient<'conn>,
    query: &str,
    args: &[DatumWithOid],
) -> SpiResult<SpiTupleTable<'conn>> {
    match plans::get(c, query, args, false)? {
        Some(plan) => c.select(&*plan, None, args),
        None => c.select(query, None, args),
    }
}

/// Runs `query` read-write through its kept plan ([`plans`]), or unprepared.
fn update<'conn>(
    c: &mut SpiClient<'conn>,
    query: &str,
    args: &[DatumWithOid],
) -> SpiResult<SpiTupleTable<'conn>> {
    match plans::get(c, query, args, true)? {
        Some(plan) => c.update(&*plan, None, args),
        None => c.update(query, None, args),
    }
}

/// Runs `query` (read-write) and returns the first column of its first row, `None` when there
/// is no row or the value is NULL.
pub fn one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    Spi::connect_mut(|c| {
        let t = update(c, query, args)?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<T>()
        }
    })
    .or_raise(query)
}

/// Like [`one`], read-only: for queries that write nothing (a plain read, an advisory lock,
/// `set_config`). pgrx gives a transaction an id at its first read-write SPI statement
/// (`Spi::mark_mutable`); a read must not, or every call would end in a commit record, and a
/// move's copy would wait for itself (a logical slot waits for every transaction with an id).
pub fn one_ro<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    Spi::connect(|c| {
        let t = select(c, query, args)?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<T>()
        }
    })
    .or_raise(query)
}

/// Runs `f` with a new snapshot for its read-only SPI statements (under READ COMMITTED, one
/// taken now; under REPEATABLE READ the transaction's), as a statement of its own would have.
/// Read-only SPI statements otherwise read with the calling statement's snapshot, taken
/// before any lock the call waited for: after waiting for a move's cutover, the catalog must be
/// read as committed now.
pub fn with_fresh_snapshot<R>(f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            // SAFETY: pops the snapshot pushed below (nothing else pushes without popping
            // in between).
            unsafe { pgrx::pg_sys::PopActiveSnapshot() };
        }
    }
    // SAFETY: inside a transaction; the snapshot is registered by PushActiveSnapshot and
    // popped by the guard.
    unsafe { pgrx::pg_sys::PushActiveSnapshot(pgrx::pg_sys::GetTransactionSnapshot()) };
    let _pop = Pop;
    f()
}

/// Runs `query` read-only without a result (see [`one_ro`]).
pub fn run_ro(query: &str, args: &[DatumWithOid]) {
    Spi::connect(|c| select(c, query, args).map(|_| ())).or_raise(query)
}

/// Runs `query` (read-only) and returns the first column of every row, NULLs skipped.
pub fn column<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    Spi::connect(|c| {
        let mut out = Vec::new();
        for row in select(c, query, args)? {
            if let Some(v) = row.get::<T>(1)? {
                out.push(v);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise(query)
}

/// Runs `query` (read-only) and returns its first `ncols` columns of every row as text.
pub fn text_rows(query: &str, args: &[DatumWithOid], ncols: usize) -> Vec<Vec<Option<String>>> {
    Spi::connect(|c| as_text(select(c, query, args)?, ncols)).or_raise(query)
}

/// Like [`text_rows`], in read-write mode (for `SELECT ... FOR UPDATE` and data-changing
/// statements with `RETURNING`).
pub fn text_rows_mut(query: &str, args: &[DatumWithOid], ncols: usize) -> Vec<Vec<Option<String>>> {
    Spi::connect_mut(|c| as_text(update(c, query, args)?, ncols)).or_raise(query)
}

/// The first `ncols` columns of every row of `table`, as text.
fn as_text(table: SpiTupleTable<'_>, ncols: usize) -> SpiResult<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    for row in table {
        let mut r = Vec::with_capacity(ncols);
        for i in 1..=ncols {
            r.push(row.get::<String>(i)?);
        }
        out.push(r);
    }
    Ok(out)
}

/// Runs a statement (read-write) without a result.
pub fn run(query: &str, args: &[DatumWithOid]) {
    Spi::run_with_args(query, args).or_raise(query)
}

/// The name of the database this backend is connected to.
pub fn current_database() -> String {
    // SAFETY: MyDatabaseId is set for every backend connected to a database;
    // get_database_name returns a palloc'd copy or NULL.
    unsafe {
        let p = pgrx::pg_sys::get_database_name(pgrx::pg_sys::MyDatabaseId);
        if p.is_null() {
            crate::err::internal("reading the current database's name", "no name");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Runs as another role until dropped, the way SECURITY DEFINER functions and Postgres' RI
/// triggers switch: `SetUserIdAndSecContext` with `SECURITY_LOCAL_USERID_CHANGE` (plus
/// `extra` context flags). Dropping restores the previous role, also when unwinding from an
/// error.
pub struct AsUser {
    user: pgrx::pg_sys::Oid,
    context: i32,
}

impl AsUser {
    /// Switches to `user`.
    pub fn enter(user: pgrx::pg_sys::Oid, extra: i32) -> AsUser {
        use pgrx::pg_sys;
        let (mut saved, mut context) = (pg_sys::InvalidOid, 0);
        // SAFETY: reading and setting this backend's current user and security context.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved, &mut context);
            pg_sys::SetUserIdAndSecContext(
                user,
                context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | extra,
            );
        }
        AsUser {
            user: saved,
            context,
        }
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        // SAFETY: restores the role and context saved by `enter`.
        unsafe { pgrx::pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// Sets `search_path` to `pg_catalog, pg_temp` until dropped, the way a function's
/// `SET search_path` clause does (a new GUC nest level, restored on drop; an abort restores it
/// too). Every path that runs with the owner's rights outside a SECURITY DEFINER function with
/// a pinned path (triggers running as the bootstrap superuser, event triggers, the background
/// workers) runs under it, so no name or operator resolves through a caller's schema
/// (DESIGN.md decision 8).
pub struct PinnedSearchPath {
    level: i32,
}

impl PinnedSearchPath {
    pub fn enter() -> PinnedSearchPath {
        Self::with(c"pg_catalog, pg_temp")
    }

    /// Sets `search_path` to `path` (a valid list of schema names) until dropped.
    pub fn with(path: &std::ffi::CStr) -> PinnedSearchPath {
        use pgrx::pg_sys;
        // SAFETY: NewGUCNestLevel/set_config_option are how fmgr applies a function's SET
        // clause; a search_path value is not checked against existing schemas.
        let level = unsafe {
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                path.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            level
        };
        PinnedSearchPath { level }
    }
}

impl Drop for PinnedSearchPath {
    fn drop(&mut self) {
        // SAFETY: pops the nest level pushed by `enter` (restoring the caller's value), as
        // fmgr does after a function with a SET clause returns.
        unsafe { pgrx::pg_sys::AtEOXact_GUC(true, self.level) };
    }
}

/// Runs `f` in an internal subtransaction (as a PL/pgSQL block with an EXCEPTION clause
/// does): an error inside is rolled back to the start and returned, and the calling
/// transaction goes on. Used where one failing item must not undo the others (the outbox
/// executor).
pub fn in_subtransaction<R>(
    f: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, crate::err::Error> {
    use pgrx::pg_sys;
    // SAFETY: the begin/release/rollback sequence and the restoring of the memory context and
    // resource owner follow PL/pgSQL's exec_stmt_block.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let result = crate::err::catch(f);
        match &result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

/// Sleeps `ms` milliseconds on this backend's latch, handling interrupts (cancel, terminate,
/// ProcSignalBarrier absorption) as any Postgres wait does.
pub fn sleep_ms(ms: u64) {
    use pgrx::pg_sys;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        // SAFETY: MyLatch is this backend's own latch; WaitLatch/ResetLatch are the documented
        // way to sleep in a backend.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                left.as_millis().max(1) as _,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}
