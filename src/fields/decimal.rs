//! Exact decimal numbers for comparing JSON numbers and Postgres `NUMERIC`
//! values without any loss of precision.

use smallvec::SmallVec;
use std::cmp::Ordering;
use std::fmt::{self, Write as _};

/// Exponents are clamped to this magnitude so that no arithmetic on them can
/// overflow. Only numbers written with more than ~10^18 digits of exponent
/// are affected; their order relative to ordinary numbers stays correct.
const EXP_LIMIT: i64 = 1 << 60;

/// Number of significant decimal digits kept inline (without heap allocation).
const INLINE_DIGITS: usize = 24;

type Digits = SmallVec<[u8; INLINE_DIGITS]>;

/// An exact decimal number: `(-1)^negative × D × 10^exponent`, where `D` is
/// the integer formed by the significant decimal digits.
///
/// The representation is canonical: digits carry no leading or trailing
/// zeros and zero has no digits and is never negative. Therefore the derived
/// `PartialEq`/`Eq`/`Hash` are numeric equality (`1.50 == 1.5 == 15e-1`), and
/// [`Ord`] is the total numeric order.
///
/// Up to 24 significant digits are stored inline, so parsing and comparing
/// ordinary numbers does not allocate. Any size of number can be represented
/// (`1e400`, `-0.000…1`, 30-digit integers); parsing never panics.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Decimal {
    negative: bool,
    /// Significant digits, most significant first, each `0..=9`.
    digits: Digits,
    /// Power of ten of the last (least significant) digit.
    exponent: i64,
}

impl Decimal {
    /// The number zero.
    pub fn zero() -> Self {
        Self::default()
    }

    /// Parses the text of a JSON number (RFC 8259 grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) of any size.
    ///
    /// Returns `None` if the text is not a JSON number (no leading `+`, no
    /// surrounding whitespace, no `NaN`/`Infinity`). Never panics.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let mut i = 0;
        let negative = b.first() == Some(&b'-');
        if negative {
            i = 1;
        }
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &b[int_start..i];
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
            return None;
        }
        let mut frac_digits: &[u8] = &[];
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &b[start..i];
            if frac_digits.is_empty() {
                return None;
            }
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut exp_negative = false;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                exp_negative = b[i] == b'-';
                i += 1;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = exp
                    .saturating_mul(10)
                    .saturating_add(i64::from(b[i] - b'0'))
                    .min(EXP_LIMIT);
                i += 1;
            }
            if start == i {
                return None;
            }
            if exp_negative {
                exp = -exp;
            }
        }
        if i != b.len() {
            return None;
        }
        let frac_len = i64::try_from(frac_digits.len()).unwrap_or(EXP_LIMIT);
        let digits = int_digits.iter().chain(frac_digits).map(|d| d - b'0');
        Some(Self::from_digits(
            negative,
            digits,
            exp.saturating_sub(frac_len),
        ))
    }

    /// Builds a decimal from Postgres `NUMERIC`'s internal base-10000 form:
    /// `value = Σ digits[i] × 10000^(weight − i)`, negated if `negative`.
    ///
    /// Leading and trailing zero digits are allowed (Postgres strips trailing
    /// ones, e.g. 10000 is `weight 1, digits [1]`; 0.5 is `weight −1,
    /// digits [5000]`). Returns `None` if a digit is outside `0..=9999`.
    pub fn from_base10000(negative: bool, weight: i64, digits: &[i16]) -> Option<Self> {
        if digits.iter().any(|d| !(0..=9999).contains(d)) {
            return None;
        }
        // Zero base-10000 digits at either end carry no significant decimal digit.
        let Some(first) = digits.iter().position(|&d| d != 0) else {
            return Some(Self::default());
        };
        let last = digits.iter().rposition(|&d| d != 0).unwrap_or(first);
        let decimal = |d: i16| {
            let d = d.unsigned_abs();
            [
                (d / 1000) as u8,
                (d / 100 % 10) as u8,
                (d / 10 % 10) as u8,
                (d % 10) as u8,
            ]
        };
        // zeros inside the first and last base-10000 digits are not significant either
        let lead = decimal(digits[first])
            .iter()
            .take_while(|&&d| d == 0)
            .count();
        let trail = decimal(digits[last])
            .iter()
            .rev()
            .take_while(|&&d| d == 0)
            .count();
        let mut v = Digits::with_capacity((last - first + 1) * 4 - lead - trail);
        for (k, &d) in digits[first..=last].iter().enumerate() {
            let four = decimal(d);
            let from = if k == 0 { lead } else { 0 };
            let to = if first + k == last { 4 - trail } else { 4 };
            v.extend_from_slice(&four[from..to]);
        }
        // the last kept digit's power of ten
        let last_exp = (weight.saturating_sub(i64::try_from(last).unwrap_or(EXP_LIMIT)))
            .saturating_mul(4)
            .saturating_add(i64::try_from(trail).unwrap_or(0));
        Some(Self {
            negative,
            digits: v,
            exponent: last_exp.clamp(-EXP_LIMIT, EXP_LIMIT),
        })
    }

    /// Normalises a digit sequence (most significant first) whose last digit
    /// has the power of ten `last_exp`.
    fn from_digits(negative: bool, digits: impl Iterator<Item = u8>, last_exp: i64) -> Self {
        let mut v = Digits::new();
        for d in digits {
            if v.is_empty() && d == 0 {
                continue;
            }
            v.push(d);
        }
        let mut exponent = last_exp;
        while v.last() == Some(&0) {
            v.pop();
            exponent = exponent.saturating_add(1);
        }
        if v.is_empty() {
            return Self::default();
        }
        Self {
            negative,
            digits: v,
            exponent: exponent.clamp(-EXP_LIMIT, EXP_LIMIT),
        }
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True for numbers below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && !self.digits.is_empty()
    }

    /// True if the value is a whole number (`5.0`, `1e400` and `-0` are;
    /// `1.5` and `1e-400` are not), as JSON Schema's `integer` type.
    pub fn is_integer(&self) -> bool {
        self.digits.is_empty() || self.exponent >= 0
    }

    /// Number of significant decimal digits (0 for zero).
    pub fn significant_digits(&self) -> usize {
        self.digits.len()
    }

    /// Scientific notation with at most `max_digits` (at least 1) significant
    /// digits; when digits are cut, `…` marks the cut (`1.2345…e100`).
    /// Used to echo very long numbers in messages.
    pub fn to_short_string(&self, max_digits: usize) -> String {
        if self.digits.is_empty() {
            return "0".to_owned();
        }
        let keep = max_digits.clamp(1, self.digits.len());
        let mut s = String::with_capacity(keep + 24);
        if self.negative {
            s.push('-');
        }
        for (i, d) in self.digits[..keep].iter().enumerate() {
            if i == 1 {
                s.push('.');
            }
            s.push(char::from(b'0' + d));
        }
        if keep < self.digits.len() {
            s.push('…');
        }
        let _ = write!(s, "e{}", self.adjusted());
        s
    }

    /// Power of ten of the most significant digit (0 for zero).
    fn adjusted(&self) -> i64 {
        if self.digits.is_empty() {
            0
        } else {
            self.exponent + (self.digits.len() as i64) - 1
        }
    }

    fn signum(&self) -> i8 {
        if self.digits.is_empty() {
            0
        } else if self.negative {
            -1
        } else {
            1
        }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.adjusted()
            .cmp(&other.adjusted())
            .then_with(|| self.digits.as_slice().cmp(other.digits.as_slice()))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match self.signum().cmp(&other.signum()) {
            Ordering::Equal => {}
            ord => return ord,
        }
        match self.signum() {
            0 => Ordering::Equal,
            1 => self.cmp_magnitude(other),
            _ => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Formats as a valid JSON number: plain notation for moderate magnitudes
/// (`-12.5`, `0.001`, `10000`), scientific otherwise (`1e400`, `1.5e-300`).
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits.is_empty() {
            return f.write_char('0');
        }
        if self.negative {
            f.write_char('-')?;
        }
        let adj = self.adjusted();
        let digit = |d: &u8| char::from(b'0' + d);
        if self.exponent >= 0 && adj < 21 {
            for d in &self.digits {
                f.write_char(digit(d))?;
            }
            for _ in 0..self.exponent {
                f.write_char('0')?;
            }
        } else if self.exponent < 0 && adj >= -7 {
            if adj >= 0 {
                let split = (adj + 1) as usize;
                for d in &self.digits[..split] {
                    f.write_char(digit(d))?;
                }
                f.write_char('.')?;
                for d in &self.digits[split..] {
                    f.write_char(digit(d))?;
                }
            } else {
                f.write_str("0.")?;
                for _ in 0..(-adj - 1) {
                    f.write_char('0')?;
                }
                for d in &self.digits {
                    f.write_char(digit(d))?;
                }
            }
        } else {
            f.write_char(digit(&self.digits[0]))?;
            if self.digits.len() > 1 {
                f.write_char('.')?;
                for d in &self.digits[1..] {
                    f.write_char(digit(d))?;
                }
            }
            write!(f, "e{adj}")?;
        }
        Ok(())
    }
}

/// A number in Postgres `NUMERIC`'s own base-10000 form (`value = Σ digits[i] ×
/// 10000^(weight − i)`), which is how jsonb stores numbers: the trigger compares values
/// against a field's bounds in this form, read straight from the row, without converting them
/// to decimal digits (utils/adt/numeric.c describes the layout).
///
/// Canonical like [`Decimal`]: no zero digit at either end, zero has no digits and is never
/// negative, so the derived equality is numeric equality and [`Ord`] is the numeric order.
/// Up to 8 base-10000 digits (32 decimal digits) are kept inline.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Base10000 {
    negative: bool,
    /// Power of 10000 of the first digit (meaningless for zero).
    weight: i64,
    digits: SmallVec<[i16; 8]>,
}

impl Base10000 {
    /// Builds a number from NUMERIC's fields; zero digits at either end are dropped. Returns
    /// `None` if a digit is outside `0..=9999` (a malformed NUMERIC).
    pub fn new(negative: bool, weight: i64, digits: &[i16]) -> Option<Self> {
        if digits.iter().any(|d| !(0..=9999).contains(d)) {
            return None;
        }
        Self::from_digit_fn(negative, weight, digits.len(), |i| {
            digits.get(i).copied().unwrap_or(0)
        })
    }

    /// Builds a number from digits that are already canonical, read by `digit(i)` for `i` in
    /// `0..n` (a NUMERIC read in place): zero digits at either end are skipped without being
    /// copied. Returns `None` if a digit is outside `0..=9999`.
    pub fn from_digit_fn(
        negative: bool,
        weight: i64,
        n: usize,
        digit: impl Fn(usize) -> i16,
    ) -> Option<Self> {
        let mut first = 0;
        while first < n && digit(first) == 0 {
            first += 1;
        }
        let mut last = n;
        while last > first && digit(last - 1) == 0 {
            last -= 1;
        }
        if first == last {
            return Some(Self::default());
        }
        let mut digits = SmallVec::with_capacity(last - first);
        for i in first..last {
            let d = digit(i);
            if !(0..=9999).contains(&d) {
                return None;
            }
            digits.push(d);
        }
        Some(Self {
            negative,
            weight: weight.saturating_sub(first as i64),
            digits,
        })
    }

    /// The same number in base-10000 form (for bounds, converted once per definition).
    pub fn from_decimal(d: &Decimal) -> Self {
        if d.digits.is_empty() {
            return Self::default();
        }
        let n = d.digits.len() as i64;
        // the first digit's power of ten, and the base-10000 group (weight) holding it
        let top = d.exponent.saturating_add(n - 1);
        let weight = top.div_euclid(4);
        let groups = (weight - d.exponent.div_euclid(4) + 1) as usize;
        let mut digits: SmallVec<[i16; 8]> = smallvec::smallvec![0; groups];
        for (j, &digit) in d.digits.iter().enumerate() {
            let p = top - j as i64;
            let g = (weight - p.div_euclid(4)) as usize;
            digits[g] += i16::from(digit) * [1, 10, 100, 1000][p.rem_euclid(4) as usize];
        }
        Self {
            negative: d.negative,
            weight,
            digits,
        }
    }

    /// The same number as a [`Decimal`] (for messages).
    pub fn to_decimal(&self) -> Decimal {
        Decimal::from_base10000(self.negative, self.weight, &self.digits).unwrap_or_default()
    }

    /// True if the value is a whole number (JSON Schema's `integer`).
    pub fn is_integer(&self) -> bool {
        self.digits.is_empty() || self.weight >= self.digits.len() as i64 - 1
    }

    /// Number of significant decimal digits (0 for zero).
    pub fn significant_digits(&self) -> usize {
        let (Some(&first), Some(&last)) = (self.digits.first(), self.digits.last()) else {
            return 0;
        };
        let lead = match first {
            0..=9 => 3,
            10..=99 => 2,
            100..=999 => 1,
            _ => 0,
        };
        let trail = [10, 100, 1000]
            .iter()
            .take_while(|&&m| last % m == 0)
            .count();
        self.digits.len() * 4 - lead - trail
    }

    fn signum(&self) -> i8 {
        match (self.digits.is_empty(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.weight
            .cmp(&other.weight)
            .then_with(|| self.digits.as_slice().cmp(other.digits.as_slice()))
    }
}

impl Ord for Base10000 {
    fn cmp(&self, other: &Self) -> Ordering {
        match self.signum().cmp(&other.signum()) {
            Ordering::Equal => {}
            ord => return ord,
        }
        match self.signum() {
            0 => Ordering::Equal,
            1 => self.cmp_magnitude(other),
            _ => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Base10000 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
