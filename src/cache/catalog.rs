//! The per-backend catalog cache: what every routed call looks up (the tenant's row, its
//! server and connector, status, this installation's id, whether role changes are queued) and
//! the compiled field definitions of a tenant, kept between calls.
//!
//! # Why it is never stale
//! A TTL (the original design's 600 s) serves stale rows for up to the TTL. This cache is
//! instead invalidated the way Postgres invalidates its own catalog caches:
//! - Every statement that writes a catalog table messiah reads here (`messiah.tenants`,
//!   `servers`, `installation`, `outbox`, `extension_field_definitions`) fires a
//!   statement-level trigger, [`messiah_catalog_changed`], that registers a relcache
//!   invalidation of `messiah.tenants` (`CacheInvalidateRelcacheByRelid`). Postgres sends it
//!   to every backend of the cluster when the transaction commits, and never when it aborts.
//!   The writing backend itself processes it at its next command, and again at abort, so an
//!   entry filled from its own uncommitted rows never outlives them.
//! - Each backend registers a relcache callback that empties its cache when that relation (or
//!   every relation) is invalidated, and every lookup first calls `AcceptInvalidationMessages`
//!   (a read of a shared counter when nothing is pending): a lookup made after a change's
//!   COMMIT returned sees the change, as a catalog read would.
//! - Only READ COMMITTED transactions use and fill it: every statement there reads the newest
//!   committed rows, so an entry is what a read would return now. Under REPEATABLE READ or
//!   SERIALIZABLE the transaction's snapshot may predate the newest commit: lookups read
//!   through.
//!
//! It works without `shared_preload_libraries` (invalidations are Postgres' own, not shared
//! memory). Bounded: past [`MAX_ENTRIES`] tenants it is emptied and refilled on demand.

use crate::fields::CompiledSnapshot;
use crate::tenants::catalog::{RouteRow, Tenant};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// At most this many tenants are cached per backend (each entry is a few hundred bytes, a
/// compiled snapshot a few KiB).
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
struct Cache {
    routes: HashMap<String, RouteRow>,
    snapshots: HashMap<String, Rc<CompiledSnapshot>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// `messiah.tenants`' oid: its invalidation is the cache's channel (unknown until the
    /// first fill; forgotten when it is invalidated, so a re-created extension is found).
    static CHANNEL: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let ours = CHANNEL.with(|c| c.get().is_none_or(|ch| ch == relid));
    if relid == pg_sys::InvalidOid || ours {
        clear();
    }
}

/// Empties this backend's cache.
pub fn clear() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.routes.clear();
        c.snapshots.clear();
    });
    CHANNEL.with(|c| c.set(None));
}

/// Whether this transaction may use the cache (READ COMMITTED, `messiah.catalog_cache` on),
/// after taking in the
/// invalidations other backends committed.
fn usable() -> bool {
    // SAFETY: plain read of the transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } > pg_sys::XACT_READ_COMMITTED as i32
        || !crate::guc::CATALOG_CACHE.get()
    {
        return false;
    }
    if !REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: registering a plain function for relcache invalidations, once per backend.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0))
        };
    }
    // SAFETY: inside a transaction (called from SQL functions); processes pending messages,
    // which may run the callback above.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if CHANNEL.with(|c| c.get()).is_none() {
        let oid = crate::spi::one_ro::<pg_sys::Oid>(
            "SELECT 'messiah.tenants'::pg_catalog.regclass::pg_catalog.oid",
            &[],
        );
        CHANNEL.with(|c| c.set(oid));
    }
    true
}

/// [`Tenant::for_route`], cached.
pub fn route_row(tenant_id: &str) -> Option<RouteRow> {
    if !usable() {
        return Tenant::for_route(tenant_id);
    }
    if let Some(r) = CACHE.with(|c| c.borrow().routes.get(tenant_id).cloned()) {
        return Some(r);
    }
    let row = Tenant::for_route(tenant_id)?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.routes.len() >= MAX_ENTRIES {
            c.routes.clear();
        }
        c.routes.insert(tenant_id.to_string(), row.clone());
    });
    Some(row)
}

/// The compiled active field definitions of `tenant_id` (`messiah.snapshot_json`), cached;
/// `None` when they do not compile.
pub fn snapshot(tenant_id: &str) -> Option<Rc<CompiledSnapshot>> {
    let compile = || {
        let json = crate::tenants::catalog::snapshot_json(tenant_id);
        crate::fields::compile_snapshot(&json).ok().map(Rc::new)
    };
    if !usable() {
        return compile();
    }
    if let Some(s) = CACHE.with(|c| c.borrow().snapshots.get(tenant_id).cloned()) {
        return Some(s);
    }
    let s = compile()?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.snapshots.len() >= MAX_ENTRIES {
            c.snapshots.clear();
        }
        c.snapshots.insert(tenant_id.to_string(), s.clone());
    });
    Some(s)
}

/// pgrx's V1 calling-convention marker for [`messiah_catalog_changed`].
#[no_mangle]
pub extern "C" fn pg_finfo_messiah_catalog_changed() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// AFTER ... FOR EACH STATEMENT trigger (SQL: `messiah.catalog_changed()`) on the catalog
/// tables the cache reads: registers the invalidation that empties every backend's cache when
/// this transaction commits (see the module comment). Returns NULL, as a statement trigger
/// does.
///
/// # Safety
/// Called by Postgres' function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn messiah_catalog_changed(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let oid = crate::spi::one::<pg_sys::Oid>(
        "SELECT 'messiah.tenants'::pg_catalog.regclass::pg_catalog.oid",
        &[],
    );
    if let Some(oid) = oid {
        // SAFETY: a plain call inside the firing transaction; the invalidation is queued and
        // sent at commit (discarded at abort) by Postgres.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
    }
    pg_sys::Datum::from(0)
}
