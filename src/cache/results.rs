//! The routed result cache: results of `messiah_tenant_query(..., max_age)` shared by every
//! session of the cluster, in shared memory of `messiah.result_cache_size` kB.
//!
//! # What a key is, and why another tenant's rows can never be served
//! A key is the whole of what determines a result, compared byte for byte (its 64-bit hash
//! only picks the bucket): the admin database's oid, the tenant id, the version of the
//! tenant's catalog row (its `xmin`: any status change, move, limit or credential change
//! writes a new row version, so entries made before it are never found again), the statement
//! text and every parameter. Two tenants running the same statement have two keys.
//!
//! # Why a result is never older than `max_age`, nor older than a routed write
//! - Each entry records when its statement ran (before it ran, so the age is an upper bound);
//!   a lookup with `max_age` skips an older entry.
//! - A routed write to a tenant (insert, update, delete, or `messiah_tenant_query` without
//!   `max_age`, which may write) removes the tenant's entries after it completes, and bumps
//!   the tenant's generation. A read records the generation before its statement runs and
//!   stores its result only if the generation has not moved: a read that ran before a write
//!   committed can never store its result after the write's invalidation. (Generations are
//!   kept per hash bucket of tenants: a collision only makes a store be skipped.)
//! - Writes made directly in the tenant database (the tenant's own sessions) are not seen:
//!   `max_age` is then the bound. The README and the function's COMMENT say so.
//!
//! # Shape
//! The region is a header, an entry directory, hash buckets (chained entries), and blocks of
//! [`BLOCK`] bytes holding each entry's key and value in a chain. Least recently used entries
//! are evicted first (a doubly linked list, most recent at the head). An entry larger than an
//! eighth of the cache is not stored. One lightweight lock guards it all; values are copied
//! out under it.

use crate::shmem::Region;
use std::hash::Hasher;

/// Bytes per block.
pub const BLOCK: usize = 1024;
const NIL: u32 = u32::MAX;
const GENERATIONS: usize = 1024;

#[repr(C)]
struct Header {
    initialized: u32,
    nblocks: u32,
    free_block: u32,
    free_blocks: u32,
    free_entry: u32,
    lru_head: u32,
    lru_tail: u32,
    entries: u32,
    bytes: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    generations: [u64; GENERATIONS],
    /// Entries per generation bucket (an invalidation with none to remove walks nothing).
    gen_entries: [u32; GENERATIONS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    tenant: u64,
    /// The admin database's oid.
    db: u32,
    created_ms: i64,
    key_len: u32,
    val_len: u32,
    first: u32,
    nblocks: u32,
    prev: u32,
    next: u32,
    chain: u32,
    used: u32,
}

fn size_kb() -> usize {
    crate::guc::RESULT_CACHE_SIZE_KB.get().max(0) as usize
}

/// The cache's region (`messiah.result_cache_size` kB; none when 0).
pub static REGION: Region = Region::new(c"messiah_result_cache", || {
    let kb = size_kb();
    if kb == 0 {
        0
    } else {
        kb * 1024
    }
});

/// Per block: its bytes, its chain link, one entry and one bucket.
const PER_BLOCK: usize = BLOCK + std::mem::size_of::<u32>() * 2 + std::mem::size_of::<Entry>();

/// Views of the region's parts.
struct Cache {
    h: *mut Header,
    entries: *mut Entry,
    buckets: *mut u32,
    next_block: *mut u32,
    data: *mut u8,
    n: usize,
}

// The accessors hand out `&mut` into shared memory from `&self`: a `Cache` is a view of the
// region, only made under its exclusive lock (`with_cache`), and no two live references to
// one element are held at once (each use reads or writes one field and drops it).
#[allow(clippy::mut_from_ref)]
impl Cache {
    /// # Safety
    /// `base` is the region's base, `size` its size, and the caller holds its lock.
    unsafe fn at(base: *mut u8, size: usize) -> Cache {
        let head = std::mem::size_of::<Header>().next_multiple_of(8);
        let n = size.saturating_sub(head) / PER_BLOCK;
        // SAFETY: every part lies inside the region (n is computed from its size); entries
        // come first after the header, so they are 8-byte aligned.
        unsafe {
            let entries = base.add(head) as *mut Entry;
            let buckets = entries.add(n) as *mut u32;
            let next_block = buckets.add(n);
            let data = next_block.add(n) as *mut u8;
            let c = Cache {
                h: base as *mut Header,
                entries,
                buckets,
                next_block,
                data,
                n,
            };
            if (*c.h).initialized == 0 {
                c.init();
            }
            c
        }
    }

    fn h(&self) -> &mut Header {
        // SAFETY: inside the region, under its lock (Cache::at's contract).
        unsafe { &mut *self.h }
    }
    fn e(&self, i: u32) -> &mut Entry {
        debug_assert!((i as usize) < self.n);
        // SAFETY: i < n, under the lock.
        unsafe { &mut *self.entries.add(i as usize) }
    }
    fn bucket(&self, hash: u64) -> &mut u32 {
        // SAFETY: index < n, under the lock.
        unsafe { &mut *self.buckets.add((hash % self.n as u64) as usize) }
    }
    fn next_block(&self, b: u32) -> &mut u32 {
        // SAFETY: b < n, under the lock.
        unsafe { &mut *self.next_block.add(b as usize) }
    }
    fn block(&self, b: u32) -> &mut [u8] {
        // SAFETY: block b lies inside the data part, under the lock.
        unsafe { std::slice::from_raw_parts_mut(self.data.add(b as usize * BLOCK), BLOCK) }
    }

    fn init(&self) {
        let h = self.h();
        h.nblocks = self.n as u32;
        for i in 0..self.n as u32 {
            *self.next_block(i) = if i + 1 < self.n as u32 { i + 1 } else { NIL };
            let e = self.e(i);
            *e = Entry {
                hash: 0,
                tenant: 0,
                db: 0,
                created_ms: 0,
                key_len: 0,
                val_len: 0,
                first: NIL,
                nblocks: 0,
                prev: NIL,
                next: NIL,
                chain: if i + 1 < self.n as u32 { i + 1 } else { NIL },
                used: 0,
            };
            // SAFETY: i < n, under the lock.
            unsafe { *self.buckets.add(i as usize) = NIL };
        }
        let first = if self.n > 0 { 0 } else { NIL };
        h.free_block = first;
        h.free_blocks = self.n as u32;
        h.free_entry = first;
        h.lru_head = NIL;
        h.lru_tail = NIL;
        h.initialized = 1;
    }

    /// The entry of `key`, if cached.
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let mut i = *self.bucket(hash);
        while i != NIL {
            let e = *self.e(i);
            if e.hash == hash
                && e.key_len as usize == key.len()
                && self.read(i, 0, key.len()) == key
            {
                return Some(i);
            }
            i = e.chain;
        }
        None
    }

    /// `len` bytes of entry `i`'s data from `offset`.
    fn read(&self, i: u32, offset: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut b = self.e(i).first;
        let mut pos = 0;
        while b != NIL && out.len() < len {
            let block = self.block(b);
            let lo = offset.max(pos);
            let hi = (offset + len).min(pos + BLOCK);
            if lo < hi {
                out.extend_from_slice(&block[lo - pos..hi - pos]);
            }
            pos += BLOCK;
            b = *self.next_block(b);
        }
        out
    }

    fn unlink_lru(&self, i: u32) {
        let (prev, next) = (self.e(i).prev, self.e(i).next);
        if prev == NIL {
            self.h().lru_head = next;
        } else {
            self.e(prev).next = next;
        }
        if next == NIL {
            self.h().lru_tail = prev;
        } else {
            self.e(next).prev = prev;
        }
    }

    fn push_lru(&self, i: u32) {
        let head = self.h().lru_head;
        let e = self.e(i);
        e.prev = NIL;
        e.next = head;
        if head == NIL {
            self.h().lru_tail = i;
        } else {
            self.e(head).prev = i;
        }
        self.h().lru_head = i;
    }

    fn remove(&self, i: u32) {
        self.unlink_lru(i);
        let e = *self.e(i);
        let head = self.bucket(e.hash);
        if *head == i {
            *head = e.chain;
        } else {
            let mut j = *head;
            while j != NIL && self.e(j).chain != i {
                j = self.e(j).chain;
            }
            if j != NIL {
                self.e(j).chain = e.chain;
            }
        }
        let mut b = e.first;
        while b != NIL {
            let next = *self.next_block(b);
            *self.next_block(b) = self.h().free_block;
            self.h().free_block = b;
            self.h().free_blocks += 1;
            b = next;
        }
        let h = self.h();
        h.entries -= 1;
        h.bytes -= (e.key_len + e.val_len) as u64;
        let g = (e.tenant % GENERATIONS as u64) as usize;
        h.gen_entries[g] = h.gen_entries[g].saturating_sub(1);
        *self.e(i) = Entry {
            used: 0,
            first: NIL,
            chain: h.free_entry,
            ..e
        };
        h.free_entry = i;
    }

    fn store(
        &self,
        hash: u64,
        (db, tenant): (u32, u64),
        key: &[u8],
        value: &[u8],
        created_ms: i64,
    ) {
        if let Some(old) = self.find(hash, key) {
            self.remove(old);
        }
        let total = key.len() + value.len();
        let needed = total.div_ceil(BLOCK).max(1) as u32;
        if needed as usize > self.n / 8 {
            return;
        }
        while self.h().free_blocks < needed || self.h().free_entry == NIL {
            let tail = self.h().lru_tail;
            if tail == NIL {
                return;
            }
            self.remove(tail);
            self.h().evictions += 1;
        }
        let i = self.h().free_entry;
        self.h().free_entry = self.e(i).chain;
        let mut first = NIL;
        let mut last = NIL;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        for k in 0..needed as usize {
            let b = self.h().free_block;
            self.h().free_block = *self.next_block(b);
            self.h().free_blocks -= 1;
            *self.next_block(b) = NIL;
            let chunk = &bytes[k * BLOCK..((k + 1) * BLOCK).min(total)];
            self.block(b)[..chunk.len()].copy_from_slice(chunk);
            if last == NIL {
                first = b;
            } else {
                *self.next_block(last) = b;
            }
            last = b;
        }
        let bucket = self.bucket(hash);
        let chain = *bucket;
        *bucket = i;
        *self.e(i) = Entry {
            hash,
            tenant,
            db,
            created_ms,
            key_len: key.len() as u32,
            val_len: value.len() as u32,
            first,
            nblocks: needed,
            prev: NIL,
            next: NIL,
            chain,
            used: 1,
        };
        self.push_lru(i);
        let h = self.h();
        h.entries += 1;
        h.bytes += total as u64;
        h.gen_entries[(tenant % GENERATIONS as u64) as usize] += 1;
    }

    /// Removes the entries of `which` and bumps the generation(s); how many were removed.
    fn invalidate(&self, which: Which) -> u64 {
        let h = self.h();
        match which {
            Which::Tenant(t) => {
                let g = (t % GENERATIONS as u64) as usize;
                h.generations[g] += 1;
                if h.gen_entries[g] == 0 {
                    return 0;
                }
            }
            Which::Database(_) => h.generations.iter_mut().for_each(|g| *g += 1),
        }
        let mut removed = 0;
        let mut i = h.lru_head;
        while i != NIL {
            let e = *self.e(i);
            let hit = match which {
                Which::Tenant(t) => e.tenant == t,
                Which::Database(db) => e.db == db,
            };
            if hit {
                self.remove(i);
                removed += 1;
            }
            i = e.next;
        }
        removed
    }
}

/// What [`invalidate`] removes.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    /// One tenant ([`tenant_hash`]).
    Tenant(u64),
    /// Every entry of one admin database (oid).
    Database(u32),
}

/// A cached read's identity: see the module comment.
pub struct Key {
    bytes: Vec<u8>,
    hash: u64,
    db: u32,
    tenant: u64,
}

fn hash_of(bytes: &[u8]) -> u64 {
    // SipHash with fixed keys: the same in every process.
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The hash standing for one tenant of one admin database.
pub fn tenant_hash(db: u32, tenant_id: &str) -> u64 {
    let mut b = db.to_le_bytes().to_vec();
    b.extend_from_slice(tenant_id.as_bytes());
    hash_of(&b)
}

impl Key {
    /// The key of `statement` with `params` run for `tenant_id` (of admin database `db`) at
    /// catalog row version `row_version`. Every part is length-prefixed, so no two different
    /// inputs give the same bytes.
    pub fn new<'a>(
        db: u32,
        tenant_id: &str,
        row_version: &str,
        statement: &str,
        params: impl Iterator<Item = (u32, Option<&'a str>)>,
    ) -> Key {
        let mut bytes = db.to_le_bytes().to_vec();
        let mut part = |p: Option<&[u8]>| match p {
            Some(p) => {
                bytes.extend_from_slice(&(p.len() as u64).to_le_bytes());
                bytes.extend_from_slice(p);
            }
            None => bytes.extend_from_slice(&u64::MAX.to_le_bytes()),
        };
        part(Some(tenant_id.as_bytes()));
        part(Some(row_version.as_bytes()));
        part(Some(statement.as_bytes()));
        for (type_oid, value) in params {
            part(Some(&type_oid.to_le_bytes()));
            part(value.map(str::as_bytes));
        }
        let hash = hash_of(&bytes);
        Key {
            bytes,
            hash,
            db,
            tenant: tenant_hash(db, tenant_id),
        }
    }
}

fn with_cache<R>(f: impl FnOnce(&Cache) -> R) -> Option<R> {
    let (_, size) = REGION.get()?;
    // SAFETY: the region's base and size, under its lock.
    REGION.locked(|base| f(&unsafe { Cache::at(base, size) }))
}

/// Whether the cache exists (messiah preloaded, `messiah.result_cache_size` > 0).
pub fn available() -> bool {
    REGION.get().is_some()
}

/// The value cached under `key` if it was made at most `max_age_ms` before `now_ms`
/// (counted as a hit; otherwise a miss). A hit becomes the most recently used entry.
pub fn lookup(key: &Key, max_age_ms: i64, now_ms: i64) -> Option<Vec<u8>> {
    with_cache(|c| {
        let found = c
            .find(key.hash, &key.bytes)
            .filter(|&i| now_ms - c.e(i).created_ms <= max_age_ms);
        match found {
            Some(i) => {
                c.h().hits += 1;
                c.unlink_lru(i);
                c.push_lru(i);
                let e = *c.e(i);
                Some(c.read(i, e.key_len as usize, e.val_len as usize))
            }
            None => {
                c.h().misses += 1;
                None
            }
        }
    })
    .flatten()
}

/// The tenant's generation now; give it to [`store`] after the statement ran.
pub fn generation(key: &Key) -> u64 {
    with_cache(|c| c.h().generations[(key.tenant % GENERATIONS as u64) as usize]).unwrap_or(0)
}

/// Caches `value` under `key` (made at `created_ms`), unless the tenant was invalidated since
/// `generation` was read.
pub fn store(key: &Key, generation: u64, value: &[u8], created_ms: i64) {
    with_cache(|c| {
        if c.h().generations[(key.tenant % GENERATIONS as u64) as usize] == generation {
            c.store(
                key.hash,
                (key.db, key.tenant),
                &key.bytes,
                value,
                created_ms,
            );
        }
    });
}

/// Removes the entries of `which`; how many.
pub fn invalidate(which: Which) -> u64 {
    with_cache(|c| c.invalidate(which)).unwrap_or(0)
}

/// Removes the entries of tenant `tenant_id` of this admin database (after a status change,
/// a move, a drop: see the module comment for why it is not needed for correctness).
pub fn invalidate_tenant(tenant_id: &str) -> u64 {
    // SAFETY: plain read.
    let db = unsafe { pgrx::pg_sys::MyDatabaseId }.to_u32();
    invalidate(Which::Tenant(tenant_hash(db, tenant_id)))
}

/// Cluster-wide statistics: hits, misses, evictions, entries, bytes (of keys and values),
/// capacity in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: u64,
    pub bytes: u64,
    pub capacity: u64,
}

/// The cache's statistics (`None`: no cache).
pub fn stats() -> Option<Stats> {
    with_cache(|c| {
        let h = c.h();
        Stats {
            hits: h.hits,
            misses: h.misses,
            evictions: h.evictions,
            entries: h.entries as u64,
            bytes: h.bytes,
            capacity: (c.n * BLOCK) as u64,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_region<R>(kb: usize, f: impl FnOnce(&Cache) -> R) -> R {
        let mut mem = vec![0u64; kb * 1024 / 8];
        // SAFETY: a private, 8-byte aligned buffer of kb KiB stands for the region.
        let c = unsafe { Cache::at(mem.as_mut_ptr() as *mut u8, kb * 1024) };
        f(&c)
    }

    fn key(t: &str, stmt: &str) -> Key {
        Key::new(1, t, "v1", stmt, [(0, Some("x")), (0, None)].into_iter())
    }

    #[test]
    fn two_tenants_same_statement_have_their_own_entries() {
        with_region(64, |c| {
            let (a, b) = (key("acme", "SELECT 1"), key("beta", "SELECT 1"));
            c.store(a.hash, (a.db, a.tenant), &a.bytes, b"rows of acme", 0);
            c.store(b.hash, (b.db, b.tenant), &b.bytes, b"rows of beta", 0);
            let read = |k: &Key| {
                let i = c.find(k.hash, &k.bytes).unwrap();
                c.read(i, c.e(i).key_len as usize, c.e(i).val_len as usize)
            };
            assert_eq!(read(&a), b"rows of acme");
            assert_eq!(read(&b), b"rows of beta");
            assert_eq!(c.invalidate(Which::Tenant(a.tenant)), 1);
            assert!(c.find(a.hash, &a.bytes).is_none());
            assert!(c.find(b.hash, &b.bytes).is_some());
        });
    }

    #[test]
    fn params_and_versions_are_part_of_the_key() {
        let k = |v: &str, p: &[(u32, Option<&str>)]| {
            Key::new(1, "acme", v, "SELECT $1", p.iter().copied()).bytes
        };
        assert_ne!(k("v1", &[(0, None)]), k("v1", &[(0, Some(""))]));
        assert_ne!(k("v1", &[(0, Some("a"))]), k("v2", &[(0, Some("a"))]));
        assert_ne!(k("v1", &[(0, Some("1"))]), k("v1", &[(3802, Some("1"))]));
        assert_ne!(
            k("v1", &[(0, Some("ab")), (0, Some("c"))]),
            k("v1", &[(0, Some("a")), (0, Some("bc"))])
        );
    }

    #[test]
    fn least_recently_used_goes_first_and_sizes_add_up() {
        with_region(64, |c| {
            let value = vec![7u8; 3 * BLOCK];
            let keys: Vec<Key> = (0..40)
                .map(|i| key("acme", &format!("SELECT {i}")))
                .collect();
            for (n, k) in keys.iter().enumerate() {
                c.store(k.hash, (k.db, k.tenant), &k.bytes, &value, n as i64);
                // touch the first key each time: it stays
                let i = c.find(keys[0].hash, &keys[0].bytes).unwrap();
                c.unlink_lru(i);
                c.push_lru(i);
            }
            assert!(c.h().evictions > 0);
            assert!(c.find(keys[0].hash, &keys[0].bytes).is_some());
            assert!(c.find(keys[1].hash, &keys[1].bytes).is_none());
            assert!(c.find(keys[39].hash, &keys[39].bytes).is_some());
            let used = c.n as u32 - c.h().free_blocks;
            assert_eq!(used, c.h().entries * 4);
            let i = c.find(keys[39].hash, &keys[39].bytes).unwrap();
            assert_eq!(c.read(i, keys[39].bytes.len(), value.len()), value);
            let entries = c.h().entries as u64;
            assert_eq!(c.invalidate(Which::Database(1)), entries);
            assert_eq!(
                (c.h().entries, c.h().free_blocks, c.h().bytes),
                (0, c.n as u32, 0)
            );
        });
    }

    #[test]
    fn an_entry_larger_than_an_eighth_is_not_stored() {
        with_region(64, |c| {
            let k = key("acme", "SELECT big");
            c.store(
                k.hash,
                (k.db, k.tenant),
                &k.bytes,
                &vec![0u8; c.n * BLOCK / 4],
                0,
            );
            assert!(c.find(k.hash, &k.bytes).is_none());
        });
    }
}
