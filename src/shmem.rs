//! Shared-memory regions whose size is known only at postmaster start (a GUC), each with its
//! own lightweight lock: the routed result cache (`cache::results`) and the metric counters
//! (`monitor::counters`). pgrx's `PgLwLock<T>` needs a type of fixed size and builds its
//! initial value on the stack, so these few megabytes are requested and zeroed here the way a
//! C extension does it (`shmem_request_hook`, then `ShmemInitStruct` under
//! `AddinShmemInitLock` in `shmem_startup_hook`).
//!
//! Only when messiah is in `shared_preload_libraries`; otherwise [`Region::get`] is `None`
//! and the features that need a region say so (a NOTICE) and work without it.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A named region of shared memory and the lightweight lock that guards what needs a lock in
/// it. Zero bytes are its initial state.
pub struct Region {
    name: &'static CStr,
    /// Bytes to request (read after the GUCs are loaded, in `shmem_request_hook`).
    size: fn() -> usize,
    base: AtomicPtr<u8>,
    lock: AtomicPtr<pg_sys::LWLock>,
}

impl Region {
    pub const fn new(name: &'static CStr, size: fn() -> usize) -> Region {
        Region {
            name,
            size,
            base: AtomicPtr::new(std::ptr::null_mut()),
            lock: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The region's base address and size, when it exists (messiah preloaded, size > 0).
    pub fn get(&self) -> Option<(*mut u8, usize)> {
        let p = self.base.load(Ordering::Acquire);
        (!p.is_null()).then(|| (p, (self.size)()))
    }

    /// Runs `f` holding the region's lock exclusively. `f` must not raise an error (a raise
    /// would still release the lock at abort, but leave the region half-changed).
    pub fn locked<R>(&self, f: impl FnOnce(*mut u8) -> R) -> Option<R> {
        let (base, _) = self.get()?;
        let lock = self.lock.load(Ordering::Acquire);
        // SAFETY: `lock` is this region's tranche lock in shared memory (set at startup
        // together with `base`); the guard releases it however `f` ends.
        unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
        struct Release(*mut pg_sys::LWLock);
        impl Drop for Release {
            fn drop(&mut self) {
                // SAFETY: acquired above by this process; released once.
                unsafe { pg_sys::LWLockRelease(self.0) };
            }
        }
        let _release = Release(lock);
        Some(f(base))
    }
}

/// Every region messiah asks for.
fn regions() -> [&'static Region; 2] {
    [
        &crate::monitor::counters::REGION,
        &crate::cache::results::REGION,
    ]
}

static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// Installs the hooks; called from `_PG_init` during `shared_preload_libraries` processing,
/// after the GUCs are registered.
pub fn init_preloaded() {
    // SAFETY: _PG_init runs single-threaded in the postmaster, before any hook is called.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: the hook contract: called once in the postmaster, when space may be requested.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        for r in regions() {
            let size = (r.size)();
            if size > 0 {
                pg_sys::RequestAddinShmemSpace(size);
                pg_sys::RequestNamedLWLockTranche(r.name.as_ptr(), 1);
            }
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: the hook contract: shared memory is being set up; ShmemInitStruct is called
    // under AddinShmemInitLock as Postgres requires; a fresh region is zeroed.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        // AddinShmemInitLock is MainLWLockArray[21] (lwlocknames.txt), as pgrx's own shmem uses
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for r in regions() {
            let size = (r.size)();
            if size == 0 {
                continue;
            }
            let mut found = false;
            let p = pg_sys::ShmemInitStruct(r.name.as_ptr(), size, &mut found) as *mut u8;
            if !found {
                std::ptr::write_bytes(p, 0, size);
            }
            let lock = &raw mut (*pg_sys::GetNamedLWLockTranche(r.name.as_ptr())).lock;
            r.lock.store(lock, Ordering::Release);
            r.base.store(p, Ordering::Release);
        }
        pg_sys::LWLockRelease(init_lock);
    }
}
