//! Metric counters in shared memory (`messiah_metrics()`, `messiah_tenant_stats()`): they
//! survive across sessions and reset when the server restarts, as Prometheus expects of a
//! counter. Only when messiah is preloaded (`shmem`); otherwise nothing is counted and the
//! metric functions say so.
//!
//! Three tables, each of fixed size:
//! - per table of a tenant database (database oid, relation oid): rows the trigger validated
//!   and rejected, counted where the trigger runs, on each tenant's server. A slot is claimed
//!   with a compare-and-swap and counted with atomic adds (no lock on the trigger's path);
//!   each backend remembers the slot of the last relation it counted.
//! - per admin database and tenant: routed calls, errors, and their summed duration;
//! - per admin database: provisionings started, failed, done and their summed duration;
//!   executor sweeps, the last one's time, databases swept.
//!
//! The last two take the region's lock (a routed call or a provisioning costs far more).
//! When a table is full, further keys are not counted; `messiah_counter_overflow_total` says
//! how many times that happened. Slots are never freed before a restart (a dropped tenant's
//! counts stay until then, as a dropped table's do in `pg_stat_user_tables` until its stats
//! are removed).

use crate::shmem::Region;
use pgrx::pg_sys;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Tables of tenant databases counted per server.
pub const MAX_TABLES: usize = 16_384;
/// (admin database, tenant) pairs counted.
pub const MAX_TENANTS: usize = 8_192;
/// Admin databases counted.
pub const MAX_DATABASES: usize = 256;
const NAME_BYTES: usize = 128;

#[repr(C)]
struct TableSlot {
    /// `database oid << 32 | relation oid`; 0: free.
    key: AtomicU64,
    /// 1 once `name` is written.
    ready: AtomicU32,
    name_len: AtomicU32,
    validated: AtomicU64,
    rejected: AtomicU64,
    name: [u8; NAME_BYTES],
}

#[repr(C)]
struct TenantSlot {
    db: u32,
    len: u32,
    tenant: [u8; 64],
    calls: u64,
    errors: u64,
    duration_us: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct DbCounters {
    db: u32,
    pub provisionings_started: u64,
    pub provisionings_failed: u64,
    pub provisionings_done: u64,
    pub provisioning_us: u64,
    pub sweeps: u64,
    /// Milliseconds since the Unix epoch; 0: never.
    pub last_sweep_ms: i64,
    pub databases_swept: u64,
}

#[repr(C)]
struct Shared {
    overflow: AtomicU64,
    tables: [TableSlot; MAX_TABLES],
    tenants: [TenantSlot; MAX_TENANTS],
    dbs: [DbCounters; MAX_DATABASES],
}

/// The counters' region (about 3.5 MB).
pub static REGION: Region = Region::new(c"messiah_counters", std::mem::size_of::<Shared>);

fn shared() -> Option<&'static Shared> {
    // SAFETY: the region is at least size_of::<Shared>() bytes, zeroed at creation (a valid
    // Shared: every field is an integer or atomic), and lives as long as the server; fields
    // written without atomics are only touched under the region's lock (see `with_locked`).
    REGION.get().map(|(p, _)| unsafe { &*(p as *const Shared) })
}

fn with_locked<R>(f: impl FnOnce(&mut Shared) -> R) -> Option<R> {
    // SAFETY: exclusive access to the non-atomic fields under the region's lock.
    REGION.locked(|p| f(unsafe { &mut *(p as *mut Shared) }))
}

/// Whether counters exist (messiah preloaded).
pub fn available() -> bool {
    REGION.get().is_some()
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer: spreads consecutive oids over the table
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

thread_local! {
    /// The key and slot index this backend counted last.
    static LAST: Cell<(u64, usize)> = const { Cell::new((0, usize::MAX)) };
}

/// Counts one row the trigger validated (`rejected`: and refused) in relation `relid` of
/// this database. `name` gives `schema.table` the first time the relation is counted on the
/// server. Never raises; does nothing when messiah is not preloaded.
pub fn count_validation(relid: pg_sys::Oid, rejected: bool, name: impl FnOnce() -> String) {
    let Some(s) = shared() else { return };
    // SAFETY: plain read of this backend's database.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let key = (db as u64) << 32 | relid.to_u32() as u64;
    let (last_key, last_i) = LAST.with(|c| c.get());
    let i = if last_key == key {
        last_i
    } else {
        match claim(s, key, name) {
            Some(i) => {
                LAST.with(|c| c.set((key, i)));
                i
            }
            None => return,
        }
    };
    let slot = &s.tables[i];
    slot.validated.fetch_add(1, Ordering::Relaxed);
    if rejected {
        slot.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// The index of `key`'s slot, claimed (and named) if new; `None` when the table is full.
fn claim(s: &Shared, key: u64, name: impl FnOnce() -> String) -> Option<usize> {
    let start = (mix(key) % MAX_TABLES as u64) as usize;
    for step in 0..MAX_TABLES {
        let i = (start + step) % MAX_TABLES;
        let slot = &s.tables[i];
        let k = slot.key.load(Ordering::Acquire);
        if k == key {
            return Some(i);
        }
        if k != 0 {
            continue;
        }
        match slot
            .key
            .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let name = name();
                let n = name.len().min(NAME_BYTES);
                let bytes = slot.name.as_ptr() as *mut u8;
                // SAFETY: this process just claimed the slot: nobody else writes its name, and
                // readers read it only after `ready` (Release below).
                unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), bytes, n) };
                slot.name_len.store(n as u32, Ordering::Relaxed);
                slot.ready.store(1, Ordering::Release);
                return Some(i);
            }
            Err(k) if k == key => return Some(i),
            Err(_) => continue,
        }
    }
    s.overflow.fetch_add(1, Ordering::Relaxed);
    None
}

/// One relation's validation counts on this server.
#[derive(Debug, Clone)]
pub struct TableCounts {
    pub database_oid: u32,
    /// `schema.table`.
    pub name: String,
    pub validated: u64,
    pub rejected: u64,
}

/// Every counted relation of this server (`None`: messiah not preloaded).
pub fn validation_counts() -> Option<Vec<TableCounts>> {
    let s = shared()?;
    let mut out = Vec::new();
    for slot in s.tables.iter() {
        let key = slot.key.load(Ordering::Acquire);
        if key == 0 || slot.ready.load(Ordering::Acquire) == 0 {
            continue;
        }
        let n = (slot.name_len.load(Ordering::Relaxed) as usize).min(NAME_BYTES);
        out.push(TableCounts {
            database_oid: (key >> 32) as u32,
            name: String::from_utf8_lossy(&slot.name[..n]).into_owned(),
            validated: slot.validated.load(Ordering::Relaxed),
            rejected: slot.rejected.load(Ordering::Relaxed),
        });
    }
    Some(out)
}

/// Keys that found their table full (not counted).
pub fn overflow() -> u64 {
    shared().map_or(0, |s| s.overflow.load(Ordering::Relaxed))
}

fn this_db() -> u32 {
    // SAFETY: plain read.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Counts one routed call of `tenant` from this (admin) database: `error` when it failed,
/// `duration` its time.
pub fn count_routed(tenant: &str, error: bool, duration: std::time::Duration) {
    let db = this_db();
    let id = tenant.as_bytes();
    if id.len() > 64 {
        return;
    }
    let done = with_locked(|s| {
        let start = (mix(db as u64 ^ fnv(id)) % MAX_TENANTS as u64) as usize;
        for step in 0..MAX_TENANTS {
            let t = &mut s.tenants[(start + step) % MAX_TENANTS];
            let free = t.len == 0;
            if free {
                t.db = db;
                t.len = id.len() as u32;
                t.tenant[..id.len()].copy_from_slice(id);
            }
            if free || (t.db == db && &t.tenant[..t.len as usize] == id) {
                t.calls += 1;
                t.errors += error as u64;
                t.duration_us += duration.as_micros() as u64;
                return true;
            }
        }
        false
    });
    if done == Some(false) {
        if let Some(s) = shared() {
            s.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// One tenant's routed-call counts in this admin database.
#[derive(Debug, Clone, Default)]
pub struct RoutedCounts {
    pub calls: u64,
    pub errors: u64,
    pub duration_us: u64,
}

/// Routed-call counts of this admin database's tenants, by tenant id.
pub fn routed_counts() -> Option<Vec<(String, RoutedCounts)>> {
    let db = this_db();
    with_locked(|s| {
        s.tenants
            .iter()
            .filter(|t| t.len != 0 && t.db == db)
            .map(|t| {
                (
                    String::from_utf8_lossy(&t.tenant[..t.len as usize]).into_owned(),
                    RoutedCounts {
                        calls: t.calls,
                        errors: t.errors,
                        duration_us: t.duration_us,
                    },
                )
            })
            .collect()
    })
}

/// Changes this admin database's counters with `f` (nothing when not preloaded or full).
pub fn update_db(f: impl FnOnce(&mut DbCounters)) {
    let db = this_db();
    with_locked(|s| {
        let i = s
            .dbs
            .iter()
            .position(|d| d.db == db)
            .or_else(|| s.dbs.iter().position(|d| d.db == 0))?;
        s.dbs[i].db = db;
        f(&mut s.dbs[i]);
        Some(())
    });
}

/// This admin database's counters (zero when none were counted yet).
pub fn db_counts() -> Option<DbCounters> {
    let db = this_db();
    with_locked(|s| {
        s.dbs
            .iter()
            .find(|d| d.db == db)
            .copied()
            .unwrap_or_default()
    })
}
