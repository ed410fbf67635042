//! Reading the trigger's row without pgrx's error guard: the two Postgres calls the trigger makes
//! for every row (fetching `custom_fields` from the tuple, making the jsonb readable in place)
//! are done here the way Postgres' own inline functions do them (htup_details.h's
//! `fastgetattr`, fmgr.c's `pg_detoast_datum`), calling into Postgres only for the cases that
//! need it. pgrx's guard (a `sigsetjmp` per call) was a measurable share of the trigger's cost.

use pgrx::pg_sys;

/// Postgres functions that read memory and neither allocate nor raise an error, declared
/// without pgrx's guard.
mod unguarded {
    use pgrx::pg_sys::{Datum, HeapTuple, TupleDesc};
    extern "C" {
        /// heaptuple.c: an attribute's datum when its offset is not cached (a variable-width
        /// column precedes it, or the tuple has NULLs). Reads the tuple; caches offsets in the
        /// descriptor; never raises.
        pub fn nocachegetattr(tup: HeapTuple, attnum: std::ffi::c_int, desc: TupleDesc) -> Datum;
    }
}

/// htup_details.h
const HEAP_NATTS_MASK: u16 = 0x07FF;
const HEAP_HASNULL: u16 = 0x0001;

/// The datum of user attribute `attnum` (1-based) of `tuple`, `None` for NULL: htup_details.h's
/// `heap_getattr`, with `fastgetattr` inlined and `nocachegetattr` called unguarded.
///
/// # Safety
/// `tuple` must be a valid heap tuple described by `desc`, and `attnum` a user attribute of
/// `desc` (1..=natts) of a pass-by-reference type (the datum is a pointer into the tuple).
pub unsafe fn varlena_attr(
    tuple: pg_sys::HeapTuple,
    attnum: i16,
    desc: pg_sys::TupleDesc,
) -> Option<pg_sys::Datum> {
    // SAFETY: per the contract; every read is of the tuple header, its null bitmap (present
    // when HEAP_HASNULL, with one bit per stored attribute) or the descriptor's attributes.
    unsafe {
        let header = (*tuple).t_data;
        let stored = (*header).t_infomask2 & HEAP_NATTS_MASK;
        if attnum as u16 > stored {
            // a column added after the row was written: its missing value, or NULL
            let mut isnull = false;
            let d = pg_sys::getmissingattr(desc, attnum.into(), &mut isnull);
            return (!isnull).then_some(d);
        }
        let i = (attnum - 1) as usize;
        if (*header).t_infomask & HEAP_HASNULL == 0 {
            let att = (*desc).attrs.as_ptr().add(i);
            if (*att).attcacheoff >= 0 {
                let data = (header as *mut u8).add((*header).t_hoff as usize);
                return Some(pg_sys::Datum::from(data.add((*att).attcacheoff as usize)));
            }
        } else {
            let bits = (*header).t_bits.as_ptr();
            if *bits.add(i >> 3) & (1 << (i & 7)) == 0 {
                return None;
            }
        }
        Some(unguarded::nocachegetattr(tuple, attnum.into(), desc))
    }
}

/// Room for a short-header (1-byte) inline varlena given a 4-byte header: at most 126 data
/// bytes (postgres.h: VARATT_SHORT_MAX is 127 bytes, header included) plus the header.
pub type ShortBuf = [u32; 33];

/// A varlena datum in the form that can be read in place (4-byte header, uncompressed, 4-byte
/// aligned, as jsonb needs): a plain inline value as is; a short-header value copied into
/// `buf` (what `pg_detoast_datum` does, without allocating); compressed or external values
/// detoasted by Postgres (palloc'd in the current memory context).
///
/// # Safety
/// `datum` must be a valid varlena datum. The result lives as long as `buf` and the datum.
pub unsafe fn readable_varlena(datum: pg_sys::Datum, buf: &mut ShortBuf) -> *mut pg_sys::varlena {
    // SAFETY: datum is a valid varlena (contract); the header macros read its first byte(s);
    // a short value's data (at most 126 bytes) fits in buf after its 4-byte header.
    unsafe {
        let p = datum.cast_mut_ptr::<pg_sys::varlena>();
        if pgrx::varlena::varatt_is_4b_u(p) {
            return p;
        }
        if pgrx::varlena::varatt_is_1b(p) && !pgrx::varlena::varatt_is_1b_e(p) {
            let len = pgrx::varlena::varsize_1b(p) - 1;
            let out = buf.as_mut_ptr() as *mut pg_sys::varlena;
            pgrx::varlena::set_varsize_4b(out, (len + 4) as i32);
            std::ptr::copy_nonoverlapping(
                pgrx::varlena::vardata_1b(p) as *const u8,
                (out as *mut u8).add(4),
                len,
            );
            return out;
        }
        pg_sys::pg_detoast_datum(p)
    }
}
