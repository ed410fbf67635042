//! The validation engine's [`JsonView`] over Postgres' binary `jsonb`, read in place: keys are
//! found by the container's binary search, strings and numbers point into the datum, and
//! nothing is converted to text (DESIGN.md decision 5: no per-row work that can be avoided).

use crate::fields::{Base10000, Decimal, JsonView, Kind};
use pgrx::pg_sys;
use std::marker::PhantomData;

/// Postgres functions called once per field per row that cannot raise an error, declared
/// without pgrx's error guard (a `sigsetjmp` per call, a measurable share of the trigger's
/// cost). Only functions that neither allocate nor `ereport` belong here.
mod unguarded {
    use pgrx::pg_sys::{JsonbContainer, JsonbValue};
    extern "C" {
        /// jsonb_util.c: binary search of `keyVal` in an object container; writes the value
        /// into `res` (given, so nothing is allocated) and returns it, or NULL. Reads only.
        pub fn getKeyJsonValueFromContainer(
            container: *mut JsonbContainer,
            keyVal: *const std::ffi::c_char,
            keyLen: std::ffi::c_int,
            res: *mut JsonbValue,
        ) -> *mut JsonbValue;
    }
}

const JB_CMASK: u32 = 0x0FFF_FFFF;
// JEntry bits (jsonb.h)
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;

/// The length of the entry whose data starts at `offset` (jsonb.h: an entry stores either its
/// end offset, when JENTRY_HAS_OFF, or its length).
fn entry_len(je: u32, offset: u32) -> u32 {
    if je & JENTRY_HAS_OFF != 0 {
        (je & JENTRY_OFFLENMASK).wrapping_sub(offset)
    } else {
        je & JENTRY_OFFLENMASK
    }
}

/// `INTALIGN`: numeric and container data are 4-byte aligned inside the value area.
fn intalign(x: u32) -> u32 {
    (x + 3) & !3
}
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;

/// One jsonb value borrowed from a detoasted `Jsonb` that lives at least as long as `'a`.
#[derive(Clone, Copy)]
pub struct Jb<'a> {
    v: pg_sys::JsonbValue,
    _life: PhantomData<&'a ()>,
}

impl<'a> Jb<'a> {
    /// The root value of a detoasted jsonb.
    ///
    /// # Safety
    /// `jsonb` must point to a detoasted (4-byte header) jsonb that outlives `'a`.
    pub unsafe fn root(jsonb: *mut pg_sys::Jsonb) -> Jb<'a> {
        // SAFETY: jsonb is a detoasted jsonb that outlives 'a (contract); its root container is read
        // as Postgres' jsonb.h describes it.
        unsafe {
            let container = std::ptr::addr_of_mut!((*jsonb).root);
            let header = (*container).header;
            if header & JB_FSCALAR != 0 {
                // A top-level scalar is stored as a one-element "raw scalar" array.
                let first = pg_sys::getIthJsonbValueFromContainer(container, 0);
                if !first.is_null() {
                    return Jb {
                        v: *first,
                        _life: PhantomData,
                    };
                }
            }
            let mut v: pg_sys::JsonbValue = std::mem::zeroed();
            v.type_ = pg_sys::jbvType::jbvBinary;
            v.val.binary.data = container;
            v.val.binary.len = 0;
            Jb {
                v,
                _life: PhantomData,
            }
        }
    }

    fn container(&self) -> Option<*mut pg_sys::JsonbContainer> {
        if self.v.type_ == pg_sys::jbvType::jbvBinary {
            // SAFETY: jbvBinary values carry a container pointer into the live datum.
            Some(unsafe { self.v.val.binary.data })
        } else {
            None
        }
    }

    fn header(&self) -> u32 {
        // SAFETY: the container pointer is valid for 'a (see `root`).
        self.container()
            .map(|c| unsafe { (*c).header })
            .unwrap_or(0)
    }

    fn is_object(&self) -> bool {
        self.header() & JB_FOBJECT != 0
    }

    fn is_array(&self) -> bool {
        let h = self.header();
        h & JB_FARRAY != 0 && h & JB_FSCALAR == 0
    }

    /// The whole value as jsonb text (only for json-schema checks and rewriting a document).
    pub fn to_text(self) -> String {
        match self.container() {
            // SAFETY: JsonbToCString reads the live container and returns a palloc'd C string.
            Some(c) => unsafe {
                let s = pg_sys::JsonbToCString(std::ptr::null_mut(), c, 64);
                std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
            },
            None => match self.kind() {
                Kind::Null => "null".into(),
                Kind::Bool => self.as_bool().unwrap_or(false).to_string(),
                Kind::Number => self
                    .as_decimal()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "null".into()),
                Kind::String => {
                    serde_json::to_string(self.as_str().unwrap_or("")).unwrap_or_default()
                }
                _ => "null".into(),
            },
        }
    }
}

/// The JsonbValue of a value entry `je` whose data is at `offset` (length `len`) from `base`:
/// jsonb_util.c's fillJsonbValue.
///
/// # Safety
/// `base + offset .. + len` must be the entry's data inside a live container.
unsafe fn value_at(je: u32, base: *const u8, offset: u32, len: u32) -> pg_sys::JsonbValue {
    // SAFETY: per the contract; an all-zero JsonbValue is a valid starting point.
    unsafe {
        let mut v: pg_sys::JsonbValue = std::mem::zeroed();
        match je & JENTRY_TYPEMASK {
            JENTRY_ISSTRING => {
                v.type_ = pg_sys::jbvType::jbvString;
                v.val.string.val = base.add(offset as usize) as *mut std::ffi::c_char;
                v.val.string.len = len as i32;
            }
            JENTRY_ISNUMERIC => {
                v.type_ = pg_sys::jbvType::jbvNumeric;
                v.val.numeric = base.add(intalign(offset) as usize) as pg_sys::Numeric;
            }
            JENTRY_ISBOOL_TRUE | JENTRY_ISBOOL_FALSE => {
                v.type_ = pg_sys::jbvType::jbvBool;
                v.val.boolean = je & JENTRY_TYPEMASK == JENTRY_ISBOOL_TRUE;
            }
            JENTRY_ISNULL => v.type_ = pg_sys::jbvType::jbvNull,
            _ => {
                let start = intalign(offset);
                v.type_ = pg_sys::jbvType::jbvBinary;
                v.val.binary.data = base.add(start as usize) as *mut pg_sys::JsonbContainer;
                v.val.binary.len = (len - (start - offset)) as i32;
            }
        }
        v
    }
}

/// Decodes a NUMERIC in its on-disk form (short or long header; see Postgres'
/// utils/adt/numeric.c) into its exact [`Base10000`] form. NaN and infinities, which jsonb
/// cannot hold, give `None`.
///
/// # Safety
/// `n` must point to a valid numeric varlena.
pub unsafe fn numeric_to_base10000(n: pg_sys::Numeric) -> Option<Base10000> {
    // SAFETY: n is a valid numeric varlena (contract); every read stays within its data, whose
    // length comes from its header.
    unsafe {
        let p = n as *const u8;
        let total = pgrx::varlena::varsize_any_exhdr(p as *const pg_sys::varlena);
        let data = pgrx::varlena::vardata_any(p as *const pg_sys::varlena) as *const u8;
        if total < 2 {
            return None;
        }
        let header = std::ptr::read_unaligned(data as *const u16);
        let (negative, weight, digits_at) = match header & 0xC000 {
            0x8000 => {
                let neg = header & 0x2000 != 0;
                let mut w = i64::from(header & 0x003F);
                if header & 0x0040 != 0 {
                    w |= !0x003F;
                }
                (neg, w, 2usize)
            }
            0xC000 => return None,
            flag => {
                if total < 4 {
                    return None;
                }
                let w = std::ptr::read_unaligned(data.add(2) as *const i16);
                (flag == 0x4000, i64::from(w), 4usize)
            }
        };
        let ndigits = (total - digits_at) / 2;
        let digits = data.add(digits_at) as *const i16;
        // i < ndigits: inside the value's data
        Base10000::from_digit_fn(negative, weight, ndigits, |i| {
            std::ptr::read_unaligned(digits.add(i))
        })
    }
}

/// [`numeric_to_base10000`] as a [`Decimal`].
///
/// # Safety
/// `n` must point to a valid numeric varlena.
pub unsafe fn numeric_to_decimal(n: pg_sys::Numeric) -> Option<Decimal> {
    // SAFETY: forwarded contract.
    unsafe { numeric_to_base10000(n) }.map(|b| b.to_decimal())
}

impl<'a> JsonView<'a> for Jb<'a> {
    fn kind(&self) -> Kind {
        match self.v.type_ {
            pg_sys::jbvType::jbvNull => Kind::Null,
            pg_sys::jbvType::jbvString => Kind::String,
            pg_sys::jbvType::jbvNumeric => Kind::Number,
            pg_sys::jbvType::jbvBool => Kind::Bool,
            _ if self.is_object() => Kind::Object,
            _ => Kind::Array,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        if self.v.type_ == pg_sys::jbvType::jbvBool {
            // SAFETY: the union member matches the type tag (read only then: another member's
            // bytes need not be a valid bool).
            Some(unsafe { self.v.val.boolean })
        } else {
            None
        }
    }

    fn as_str(&self) -> Option<&'a str> {
        if self.v.type_ != pg_sys::jbvType::jbvString {
            return None;
        }
        // SAFETY: jbvString points at `len` bytes inside the live datum. They are valid UTF-8:
        // jsonb strings are verified in the database encoding when the value is built, and
        // the trigger refuses to run in a database that is not UTF8 (enforce::load), so they
        // are not verified again for every row.
        unsafe {
            let bytes = std::slice::from_raw_parts(
                self.v.val.string.val as *const u8,
                self.v.val.string.len as usize,
            );
            Some(std::str::from_utf8_unchecked(bytes))
        }
    }

    fn as_decimal(&self) -> Option<Decimal> {
        if self.v.type_ != pg_sys::jbvType::jbvNumeric {
            return None;
        }
        // SAFETY: jbvNumeric points at a numeric varlena inside the live datum.
        unsafe { numeric_to_decimal(self.v.val.numeric) }
    }

    fn as_base10000(&self) -> Option<Base10000> {
        if self.v.type_ != pg_sys::jbvType::jbvNumeric {
            return None;
        }
        // SAFETY: jbvNumeric points at a numeric varlena inside the live datum.
        unsafe { numeric_to_base10000(self.v.val.numeric) }
    }

    fn array_len(&self) -> usize {
        if self.is_array() {
            (self.header() & JB_CMASK) as usize
        } else {
            0
        }
    }

    fn array_get(&self, i: usize) -> Option<Self> {
        if i >= self.array_len() {
            return None;
        }
        let c = self.container()?;
        // SAFETY: i is in range; the result is palloc'd in the current (per-row) context.
        let p = unsafe { pg_sys::getIthJsonbValueFromContainer(c, i as u32) };
        // SAFETY: non-null pointer to an initialized JsonbValue.
        (!p.is_null()).then(|| Jb {
            v: unsafe { *p },
            _life: PhantomData,
        })
    }

    fn object_len(&self) -> usize {
        if self.is_object() {
            (self.header() & JB_CMASK) as usize
        } else {
            0
        }
    }

    fn object_get(&self, key: &str) -> Option<Self> {
        if !self.is_object() {
            return None;
        }
        let c = self.container()?;
        // SAFETY: binary search in the live container; the result is written into `res`,
        // whose pointers point into the container; the function raises no error.
        unsafe {
            let mut res: pg_sys::JsonbValue = std::mem::zeroed();
            let p = unguarded::getKeyJsonValueFromContainer(
                c,
                key.as_ptr() as *const std::ffi::c_char,
                key.len() as i32,
                &mut res,
            );
            (!p.is_null()).then_some(Jb {
                v: res,
                _life: PhantomData,
            })
        }
    }

    fn lookup_sorted<K: AsRef<str>>(&self, keys: &[K], out: &mut [Option<Self>]) {
        let Some(c) = self.container().filter(|_| self.is_object()) else {
            return;
        };
        // One pass over the object's keys, which jsonb stores sorted in the same order as
        // `keys` (shorter first, then bytewise), then over the values of the matches: the
        // layout of jsonb.h, read as jsonb_util.c's getKeyJsonValueFromContainer and
        // fillJsonbValue read it.
        // SAFETY: the container is live for 'a (see `root`); it holds `n` key entries then
        // `n` value entries, followed by their data; every offset read stays inside it.
        unsafe {
            let n = ((*c).header & JB_CMASK) as usize;
            let children = (*c).children.as_ptr();
            let base = children.add(2 * n) as *const u8;
            let mut matched: smallvec::SmallVec<[(usize, usize); 16]> = smallvec::SmallVec::new();
            let mut offset = 0u32;
            let mut k = 0usize;
            for i in 0..n {
                let len = entry_len(*children.add(i), offset);
                let key = std::slice::from_raw_parts(base.add(offset as usize), len as usize);
                offset = offset.wrapping_add(len);
                // skip the wanted keys that sort before this one (shorter, or as long and
                // bytewise smaller: jsonb_key_order, with the length compared first so that
                // most comparisons never look at the bytes)
                while let Some(want) = keys.get(k).map(|w| w.as_ref().as_bytes()) {
                    match crate::fields::jsonb_key_order(want, key) {
                        std::cmp::Ordering::Less => k += 1,
                        std::cmp::Ordering::Equal => {
                            matched.push((k, i));
                            k += 1;
                            break;
                        }
                        std::cmp::Ordering::Greater => break,
                    }
                }
            }
            let mut m = 0usize;
            for j in 0..n {
                if m == matched.len() {
                    break;
                }
                let je = *children.add(n + j);
                let len = entry_len(je, offset);
                if matched[m].1 == j {
                    let v = value_at(je, base, offset, len);
                    if let Some(slot) = out.get_mut(matched[m].0) {
                        *slot = Some(Jb {
                            v,
                            _life: PhantomData,
                        });
                    }
                    m += 1;
                }
                offset = offset.wrapping_add(len);
            }
        }
    }

    fn for_each_key(&self, f: &mut dyn FnMut(&str)) {
        let Some(c) = self.container().filter(|_| self.is_object()) else {
            return;
        };
        // SAFETY: iterating the live container; tokens' strings point into it.
        unsafe {
            let mut it = pg_sys::JsonbIteratorInit(c);
            let mut v: pg_sys::JsonbValue = std::mem::zeroed();
            loop {
                let tok = pg_sys::JsonbIteratorNext(&mut it, &mut v, true);
                if tok == pg_sys::JsonbIteratorToken::WJB_DONE {
                    break;
                }
                if tok == pg_sys::JsonbIteratorToken::WJB_KEY
                    && v.type_ == pg_sys::jbvType::jbvString
                {
                    let bytes = std::slice::from_raw_parts(
                        v.val.string.val as *const u8,
                        v.val.string.len as usize,
                    );
                    if let Ok(k) = std::str::from_utf8(bytes) {
                        f(k);
                    }
                }
            }
        }
    }

    fn to_serde(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.to_text()).map_err(|e| e.to_string())
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{numeric_to_decimal, Jb};
    use crate::fields::{jsonb_key_order, Decimal, JsonView};
    use pgrx::prelude::*;

    /// The in-place NUMERIC decoder agrees with Postgres' own numeric_out on short-header,
    /// long-header, negative, fractional, huge and tiny values: each value is built by
    /// numeric_in, decoded in place, and compared (numerically) with numeric_out's text.
    #[pg_test]
    fn numeric_decoding_matches_numeric_out() {
        for text in [
            "0",
            "5",
            "-5",
            "5.0",
            "0.5",
            "-0.0001",
            "123456789.987654321",
            "1e400",
            "-1.5e-300",
            "99999999999999999999999999",
            "10000",
            "0.00000000000000000001",
            "-123456789012345678901234567890.000000000000000000001",
        ] {
            let c = std::ffi::CString::new(text).unwrap();
            // SAFETY: numeric_in takes a C string, a type oid and a typmod and returns a
            // palloc'd numeric; numeric_out takes that numeric and returns a C string.
            let (decoded, out) = unsafe {
                let datum = pgrx::direct_function_call::<pg_sys::Datum>(
                    pg_sys::numeric_in,
                    &[
                        Some(pg_sys::Datum::from(c.as_ptr())),
                        Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                        Some(pg_sys::Datum::from(-1i32)),
                    ],
                )
                .unwrap();
                let out = pgrx::direct_function_call::<&std::ffi::CStr>(
                    pg_sys::numeric_out,
                    &[Some(datum)],
                )
                .unwrap()
                .to_string_lossy()
                .into_owned();
                (numeric_to_decimal(datum.cast_mut_ptr()), out)
            };
            assert_eq!(
                decoded,
                Decimal::parse(&out),
                "{text}: numeric_out says {out}"
            );
            assert!(decoded.is_some(), "{text}");
        }
    }

    /// The one-pass lookup agrees with Postgres' own getKeyJsonValueFromContainer for every
    /// key of objects of 1 to 100 keys (past 32 keys jsonb stores offsets instead of lengths
    /// every 32 entries), for values of every type, and for absent keys.
    #[pg_test]
    fn lookup_sorted_matches_object_get() {
        for n in [1usize, 5, 31, 32, 33, 64, 100] {
            let doc: serde_json::Map<String, serde_json::Value> = (0..n)
                .map(|i| {
                    let v = match i % 6 {
                        0 => serde_json::json!(format!("s{}", "x".repeat(i))),
                        1 => serde_json::json!(i as f64 + 0.5),
                        2 => serde_json::json!(i % 4 == 1),
                        3 => serde_json::Value::Null,
                        4 => serde_json::json!({"nested": [i, "y"]}),
                        _ => serde_json::json!([i, {"k": "v"}]),
                    };
                    (format!("k{}{}", "a".repeat(i % 7), i), v)
                })
                .collect();
            let datum = pgrx::JsonB(serde_json::Value::Object(doc.clone()))
                .into_datum()
                .unwrap();
            // SAFETY: a fresh jsonb datum, detoasted, alive for this test.
            let root = unsafe {
                Jb::root(pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::Jsonb)
            };
            let mut keys: Vec<String> = doc.keys().cloned().collect();
            keys.extend(["absent".to_string(), "zz".to_string(), String::new()]);
            keys.sort_by(|a, b| jsonb_key_order(a.as_bytes(), b.as_bytes()));
            keys.dedup();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut out = vec![None; refs.len()];
            root.lookup_sorted(&refs, &mut out);
            for (k, got) in refs.iter().zip(&out) {
                let want = root.object_get(k);
                assert_eq!(got.is_some(), want.is_some(), "n={n} key {k}");
                if let (Some(g), Some(w)) = (got, want) {
                    assert_eq!(g.kind(), w.kind(), "n={n} key {k}");
                    assert_eq!(g.to_text(), w.to_text(), "n={n} key {k}");
                }
            }
        }
    }
}
