//! Read-only access to JSON values, so that the same validation engine runs
//! over `serde_json` values and over Postgres' binary `jsonb`.

use super::decimal::{Base10000, Decimal};

/// The JSON type of a value (RFC 8259).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// any JSON number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl Kind {
    /// The lowercase name used in error messages: `null`, `boolean`,
    /// `number`, `string`, `array`, `object`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

/// A cheap, copyable handle on one JSON value borrowed for `'a`.
///
/// Implementations must not panic. Methods that do not apply to the value's
/// [`Kind`] return `None` / `0` / do nothing.
pub trait JsonView<'a>: Copy + 'a {
    /// The JSON type of the value.
    fn kind(&self) -> Kind;
    /// The boolean, if the value is `true`/`false`.
    fn as_bool(&self) -> Option<bool>;
    /// The string, if the value is a string.
    fn as_str(&self) -> Option<&'a str>;
    /// The exact number, if the value is a number (`None` for other kinds
    /// or a malformed number).
    fn as_decimal(&self) -> Option<Decimal>;
    /// The exact number in NUMERIC's base-10000 form, which the validator compares with a
    /// field's bounds. The default converts [`JsonView::as_decimal`]; binary jsonb reads its
    /// NUMERIC in place.
    fn as_base10000(&self) -> Option<Base10000> {
        self.as_decimal().map(|d| Base10000::from_decimal(&d))
    }
    /// Number of elements of an array (0 for other kinds).
    fn array_len(&self) -> usize;
    /// Element `i` (0-based) of an array.
    fn array_get(&self, i: usize) -> Option<Self>;
    /// Number of keys of an object (0 for other kinds).
    fn object_len(&self) -> usize;
    /// The value of `key` in an object.
    fn object_get(&self, key: &str) -> Option<Self>;
    /// Calls `f` with every key of an object (any order).
    fn for_each_key(&self, f: &mut dyn FnMut(&str));
    /// Looks up several keys of an object at once: `keys` are sorted in jsonb key order
    /// ([`jsonb_key_order`]: shorter first, then bytewise), and `out[i]` receives the value of
    /// `keys[i]` or `None`. The default does one [`JsonView::object_get`] per key; binary
    /// jsonb overrides it with a single pass over the object's keys, which are stored in that
    /// order.
    fn lookup_sorted<K: AsRef<str>>(&self, keys: &[K], out: &mut [Option<Self>]) {
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.object_get(k.as_ref());
        }
    }
    /// Converts to an owned `serde_json::Value` (only used to run JSON Schema
    /// validation of `json` fields). `Err` carries a human-readable reason,
    /// e.g. a number that cannot be represented.
    fn to_serde(&self) -> Result<serde_json::Value, String>;
    /// The underlying `serde_json::Value`, if there is one, so that schema
    /// validation needs no conversion. Defaults to `None`.
    fn as_serde(&self) -> Option<&'a serde_json::Value> {
        None
    }
}

/// The order in which jsonb stores an object's keys: shorter keys first, keys of one length
/// bytewise (Postgres' `lengthCompareJsonbStringValue`).
#[inline]
pub fn jsonb_key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| short_bytes_cmp(a, b))
}

/// Bytewise order of two byte strings, eight bytes at a time (big-endian words compare as
/// their bytes do). Field names and select options are short: a call to libc's `memcmp` per
/// comparison cost more than the comparison itself in the trigger's profile.
#[inline]
fn short_bytes_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let x = u64::from_be_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_be_bytes(y.try_into().unwrap_or([0; 8]));
        if x != y {
            return x.cmp(&y);
        }
    }
    if a.len() != b.len() {
        return a.cmp(b);
    }
    for (x, y) in ra.iter().zip(rb) {
        if x != y {
            return x.cmp(y);
        }
    }
    std::cmp::Ordering::Equal
}

impl<'a> JsonView<'a> for &'a serde_json::Value {
    fn kind(&self) -> Kind {
        match self {
            serde_json::Value::Null => Kind::Null,
            serde_json::Value::Bool(_) => Kind::Bool,
            serde_json::Value::Number(_) => Kind::Number,
            serde_json::Value::String(_) => Kind::String,
            serde_json::Value::Array(_) => Kind::Array,
            serde_json::Value::Object(_) => Kind::Object,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        serde_json::Value::as_bool(self)
    }

    fn as_str(&self) -> Option<&'a str> {
        serde_json::Value::as_str(self)
    }

    fn as_decimal(&self) -> Option<Decimal> {
        match self {
            serde_json::Value::Number(n) => Decimal::parse(n.as_str()),
            _ => None,
        }
    }

    fn array_len(&self) -> usize {
        self.as_array().map_or(0, Vec::len)
    }

    fn array_get(&self, i: usize) -> Option<Self> {
        self.as_array().and_then(|a| a.get(i))
    }

    fn object_len(&self) -> usize {
        self.as_object().map_or(0, serde_json::Map::len)
    }

    fn object_get(&self, key: &str) -> Option<Self> {
        self.as_object().and_then(|m| m.get(key))
    }

    fn for_each_key(&self, f: &mut dyn FnMut(&str)) {
        if let Some(m) = self.as_object() {
            for k in m.keys() {
                f(k);
            }
        }
    }

    fn to_serde(&self) -> Result<serde_json::Value, String> {
        Ok((*self).clone())
    }

    fn as_serde(&self) -> Option<&'a serde_json::Value> {
        Some(self)
    }
}
