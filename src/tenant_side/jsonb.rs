//! The validation engine's [`JsonView`] over Postgres' binary `jsonb`, read in place: keys are
//! found by the container's binary search, strings and numbers point into the datum, and
//! nothing is converted to text (DESIGN.md decision 5: no per-row work that can be avoided).

use crate::fields::{Decimal, JsonView, Kind};
use pgrx::pg_sys;
use std::marker::PhantomData;

const JB_CMASK: u32 = 0x0FFF_FFFF;
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

/// Decodes a NUMERIC in its on-disk form (short or long header; see Postgres'
/// utils/adt/numeric.c) into an exact [`Decimal`]. NaN and infinities, which jsonb cannot
/// hold, give `None`.
///
/// # Safety
/// `n` must point to a valid numeric varlena.
pub unsafe fn numeric_to_decimal(n: pg_sys::Numeric) -> Option<Decimal> {
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
                let mut w = i32::from(header & 0x003F);
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
                (flag == 0x4000, i32::from(w), 4usize)
            }
        };
        let ndigits = (total - digits_at) / 2;
        let mut digits = smallvec::SmallVec::<[i16; 16]>::with_capacity(ndigits);
        for i in 0..ndigits {
            digits.push(std::ptr::read_unaligned(
                data.add(digits_at + 2 * i) as *const i16
            ));
        }
        Decimal::from_base10000(negative, weight, &digits)
    }
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
        // SAFETY: jbvString points at `len` bytes inside the live datum.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.v.val.string.val as *const u8,
                self.v.val.string.len as usize,
            )
        };
        // jsonb text is in the database encoding; messiah's databases are UTF-8.
        std::str::from_utf8(bytes).ok()
    }

    fn as_decimal(&self) -> Option<Decimal> {
        if self.v.type_ != pg_sys::jbvType::jbvNumeric {
            return None;
        }
        // SAFETY: jbvNumeric points at a numeric varlena inside the live datum.
        unsafe { numeric_to_decimal(self.v.val.numeric) }
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
        // whose pointers point into the container.
        unsafe {
            let mut res: pg_sys::JsonbValue = std::mem::zeroed();
            let p = pg_sys::getKeyJsonValueFromContainer(
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
    use super::numeric_to_decimal;
    use crate::fields::Decimal;
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
}
