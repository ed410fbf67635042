//! Validating `custom_fields` documents against a compiled entity.

use super::decimal::Decimal;
use super::define::{guard, CompiledEntity, CompiledField, Rules, UnknownKeyPolicy};
use super::domain::base_columns;
use super::view::{JsonView, Kind};
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Echoed string values in messages are cut to this many code points.
const ECHO_CHARS: usize = 64;
/// At most this many errors are reported per document (then one `too_many_errors` entry),
/// and per field for the items of a multiple select or the errors of a JSON Schema, so that
/// an error's DETAIL stays small whatever the input (a huge DETAIL would exhaust memory).
pub const MAX_ERRORS: usize = 20;
const MAX_ERRORS_PER_FIELD: usize = 5;
/// Longest message taken from the JSON Schema validator, in code points.
const SCHEMA_MESSAGE_CHARS: usize = 300;

/// Whether a row is being inserted or updated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// INSERT: missing keys of fields with a default get the default.
    Insert,
    /// UPDATE: defaults never apply.
    Update,
}

/// One validation error. Serializes to `{"field", "code", "message"}`;
/// `field` is `null` for document-level errors.
///
/// Codes: `not_object`, `required`, `type`, `min_length`, `max_length`,
/// `pattern`, `format`, `minimum`, `maximum`, `integer`, `date`, `schema`,
/// `option`, `duplicate`, `unknown_field`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field (or unknown key) the error is about; `None` for the
    /// document itself.
    pub field: Option<String>,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message naming the field.
    pub message: String,
}

/// The result of [`validate_document`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Every error, sorted by field name, document-level errors first.
    pub errors: Vec<FieldError>,
    /// True when the caller must add the default of every defaulted field
    /// whose key is missing (see [`CompiledEntity::apply_defaults`]).
    /// Only ever set on [`Operation::Insert`].
    pub add_defaults: bool,
    /// Unknown keys the caller must remove (policy `strip`), sorted.
    pub strip_keys: Vec<String>,
}

impl Outcome {
    /// True when there are no errors.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// True when the document is valid and needs no change.
    pub fn is_unchanged(&self) -> bool {
        self.errors.is_empty() && !self.add_defaults && self.strip_keys.is_empty()
    }
}

/// JSON string literal of `s` (with escapes), for messages.
pub(super) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// `s` cut to at most `max` code points, with `…` appended when cut.
pub(super) fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

/// Short rendering of a value for messages: strings quoted (cut to 64 code
/// points), numbers exact, `true`/`false`/`null`, `an array`/`an object`.
fn describe<'a, V: JsonView<'a>>(v: V) -> String {
    match v.kind() {
        Kind::Null => "null".to_owned(),
        Kind::Bool => v.as_bool().unwrap_or(false).to_string(),
        Kind::Number => v
            .as_decimal()
            .map_or_else(|| "a number".to_owned(), |d| echo_number(&d)),
        Kind::String => quote(&truncate_chars(v.as_str().unwrap_or(""), ECHO_CHARS)),
        Kind::Array => "an array".to_owned(),
        Kind::Object => "an object".to_owned(),
    }
}

/// A number for messages; past 64 characters, scientific notation with the
/// digits cut (`1.11…e100`).
fn echo_number(d: &Decimal) -> String {
    let s = d.to_string();
    if s.len() <= ECHO_CHARS {
        s
    } else {
        d.to_short_string(ECHO_CHARS / 2)
    }
}

fn err(field: &str, code: &'static str, message: String) -> FieldError {
    FieldError {
        field: Some(field.to_owned()),
        code,
        message,
    }
}

fn type_err(f: &CompiledField, expected: &str, got: Kind) -> FieldError {
    err(
        &f.name,
        "type",
        format!("{} must be {expected}, got {}", quote(&f.name), got.name()),
    )
}

/// Validates one non-null value against a field's type and rules, pushing
/// every failing rule.
pub(super) fn check_value<'a, V: JsonView<'a>>(
    f: &CompiledField,
    v: V,
    errors: &mut Vec<FieldError>,
) {
    match &f.rules {
        Rules::Text {
            min_length,
            max_length,
            pattern,
            format,
        } => {
            let Some(s) = v.as_str() else {
                errors.push(type_err(f, "a string", v.kind()));
                return;
            };
            if min_length.is_some() || max_length.is_some() {
                let n = s.chars().count() as u64;
                if let Some(min) = *min_length {
                    if n < min {
                        errors.push(err(
                            &f.name,
                            "min_length",
                            format!(
                                "{} must be at least {min} characters, got {n}",
                                quote(&f.name)
                            ),
                        ));
                    }
                }
                if let Some(max) = *max_length {
                    if n > max {
                        errors.push(err(
                            &f.name,
                            "max_length",
                            format!(
                                "{} must be at most {max} characters, got {n}",
                                quote(&f.name)
                            ),
                        ));
                    }
                }
            }
            if let Some(p) = pattern {
                if !p.is_match(s) {
                    errors.push(err(
                        &f.name,
                        "pattern",
                        format!("{} does not match pattern {}", quote(&f.name), p.source),
                    ));
                }
            }
            if let Some(fmt) = format {
                if !fmt.matches(s) {
                    errors.push(err(
                        &f.name,
                        "format",
                        format!("{} is not a valid {}", quote(&f.name), fmt.as_str()),
                    ));
                }
            }
        }
        Rules::Number {
            min,
            max,
            bounds,
            integer,
        } => {
            if v.kind() != Kind::Number {
                errors.push(type_err(f, "a number", v.kind()));
                return;
            }
            let Some(d) = v.as_base10000() else {
                errors.push(err(
                    &f.name,
                    "type",
                    format!(
                        "{} must be a number, got a malformed number",
                        quote(&f.name)
                    ),
                ));
                return;
            };
            let below = bounds.0.as_ref().is_some_and(|m| d < *m);
            let above = bounds.1.as_ref().is_some_and(|m| d > *m);
            if below || above || (*integer && !d.is_integer()) {
                let d = d.to_decimal();
                check_number(f, &d, min.as_ref(), max.as_ref(), *integer, errors);
            }
        }
        Rules::Boolean => {
            if v.as_bool().is_none() {
                errors.push(type_err(f, "a boolean", v.kind()));
            }
        }
        Rules::Date { min, max } => {
            let Some(s) = v.as_str() else {
                errors.push(type_err(f, "a date string (YYYY-MM-DD)", v.kind()));
                return;
            };
            if !super::formats::is_date(s) {
                errors.push(err(
                    &f.name,
                    "date",
                    format!(
                        "{} is not a calendar date (YYYY-MM-DD): {}",
                        quote(&f.name),
                        quote(&truncate_chars(s, ECHO_CHARS))
                    ),
                ));
                return;
            }
            // Valid dates are fixed-width, so string order is date order.
            if let Some(min) = min {
                if s < min.as_str() {
                    errors.push(err(
                        &f.name,
                        "minimum",
                        format!("{} must be >= {min}, got {s}", quote(&f.name)),
                    ));
                }
            }
            if let Some(max) = max {
                if s > max.as_str() {
                    errors.push(err(
                        &f.name,
                        "maximum",
                        format!("{} must be <= {max}, got {s}", quote(&f.name)),
                    ));
                }
            }
        }
        Rules::Json { schema } => {
            if let Some(validator) = schema {
                check_schema(f, validator, v, errors);
            }
        }
        Rules::Select {
            options,
            sorted,
            display,
            multiple,
        } => {
            let not_option = |got: String| {
                err(
                    &f.name,
                    "option",
                    format!("{} must be one of {display}, got {got}", quote(&f.name)),
                )
            };
            if !*multiple {
                let ok = v
                    .as_str()
                    .is_some_and(|s| Rules::option_index(options, sorted, s).is_some());
                if !ok {
                    errors.push(not_option(describe(v)));
                }
                return;
            }
            if v.kind() != Kind::Array {
                errors.push(type_err(f, "an array", v.kind()));
                return;
            }
            // Occurrence counts per option: on the stack for ≤ 256 options.
            let mut small = [0u8; 256];
            let mut large = Vec::new();
            let counts: &mut [u8] = if options.len() <= small.len() {
                &mut small[..]
            } else {
                large.resize(options.len(), 0u8);
                &mut large[..]
            };
            let before = errors.len();
            let mut suppressed = 0usize;
            for i in 0..v.array_len() {
                if errors.len() - before >= MAX_ERRORS_PER_FIELD {
                    suppressed += 1;
                    continue;
                }
                let Some(item) = v.array_get(i) else { continue };
                let idx = item
                    .as_str()
                    .and_then(|s| Rules::option_index(options, sorted, s));
                match idx.and_then(|i| counts.get_mut(i).map(|c| (i, c))) {
                    None => errors.push(not_option(describe(item))),
                    Some((i, c)) => {
                        *c = c.saturating_add(1);
                        if *c == 2 {
                            errors.push(err(
                                &f.name,
                                "duplicate",
                                format!(
                                    "{} contains {} more than once",
                                    quote(&f.name),
                                    quote(options.get(i).map_or("", String::as_str))
                                ),
                            ));
                        }
                    }
                }
            }
            if suppressed > 0 {
                errors.push(err(
                    &f.name,
                    "too_many_errors",
                    format!(
                        "{}: {suppressed} more item(s) not checked after {MAX_ERRORS_PER_FIELD} errors",
                        quote(&f.name)
                    ),
                ));
            }
        }
    }
}

/// For a sortable field (btree-indexed in the tenant database): the value must fit an index
/// entry, [`MAX_INDEXED_BYTES`](super::define::MAX_INDEXED_BYTES) (a string's UTF-8 bytes, a
/// number's NUMERIC size (significant digits / 2), an array's or object's JSON text), or the
/// validator says so first (`index_limit`) instead of the index failing the INSERT with 54000.
pub(super) fn check_indexed<'a, V: JsonView<'a>>(
    f: &CompiledField,
    v: V,
    errors: &mut Vec<FieldError>,
) {
    if !f.is_sortable {
        return;
    }
    let max = super::define::MAX_INDEXED_BYTES;
    let len = match v.kind() {
        Kind::String => v.as_str().map_or(0, str::len),
        // NUMERIC stores four decimal digits in two bytes
        Kind::Number => v
            .as_base10000()
            .map_or(0, |d| d.significant_digits().div_ceil(2)),
        Kind::Bool | Kind::Null => 0,
        Kind::Array | Kind::Object => v.to_serde().map_or(usize::MAX, |j| j.to_string().len()),
    };
    if len > max {
        errors.push(err(
            &f.name,
            "index_limit",
            format!(
                "{} is sortable (indexed): its value may be at most {max} bytes, got {}",
                quote(&f.name),
                if len == usize::MAX {
                    "more".to_string()
                } else {
                    len.to_string()
                }
            ),
        ));
    }
}

fn check_number(
    f: &CompiledField,
    d: &Decimal,
    min: Option<&Decimal>,
    max: Option<&Decimal>,
    integer: bool,
    errors: &mut Vec<FieldError>,
) {
    if let Some(min) = min {
        if d < min {
            errors.push(err(
                &f.name,
                "minimum",
                format!(
                    "{} must be >= {min}, got {}",
                    quote(&f.name),
                    echo_number(d)
                ),
            ));
        }
    }
    if let Some(max) = max {
        if d > max {
            errors.push(err(
                &f.name,
                "maximum",
                format!(
                    "{} must be <= {max}, got {}",
                    quote(&f.name),
                    echo_number(d)
                ),
            ));
        }
    }
    if integer && !d.is_integer() {
        errors.push(err(
            &f.name,
            "integer",
            format!(
                "{} must be an integer, got {}",
                quote(&f.name),
                echo_number(d)
            ),
        ));
    }
}

fn check_schema<'a, V: JsonView<'a>>(
    f: &CompiledField,
    validator: &jsonschema::Validator,
    v: V,
    errors: &mut Vec<FieldError>,
) {
    let schema_errors = |instance: &Value, errors: &mut Vec<FieldError>| {
        let found = guard(|| {
            if validator.is_valid(instance) {
                return Vec::new();
            }
            validator
                .iter_errors(instance)
                .take(MAX_ERRORS_PER_FIELD)
                .map(|e| {
                    let path = e.instance_path().as_str();
                    let path = if path.is_empty() { "(root)" } else { path };
                    let what = e.to_string();
                    format!(
                        "{} does not match its schema: {} at {}",
                        quote(&f.name),
                        truncate_chars(&what, SCHEMA_MESSAGE_CHARS),
                        truncate_chars(path, ECHO_CHARS)
                    )
                })
                .collect()
        });
        match found {
            Ok(messages) => {
                errors.extend(messages.into_iter().map(|m| err(&f.name, "schema", m)));
            }
            Err(reason) => errors.push(unchecked(f, &reason)),
        }
    };
    if let Some(instance) = v.as_serde() {
        schema_errors(instance, errors);
        return;
    }
    match v.to_serde() {
        Ok(instance) => schema_errors(&instance, errors),
        Err(reason) => errors.push(unchecked(f, &reason)),
    }
}

/// The `schema` error for a value that could not be run through the JSON Schema validator.
fn unchecked(f: &CompiledField, reason: &str) -> FieldError {
    err(
        &f.name,
        "schema",
        format!(
            "{} could not be checked against its schema: {reason}",
            quote(&f.name)
        ),
    )
}

fn missing(f: &CompiledField, op: Operation, out: &mut Outcome) {
    if op == Operation::Insert && f.default_value.is_some() {
        out.add_defaults = true;
    } else if f.is_required {
        out.errors.push(required(f));
    }
}

pub(super) fn required(f: &CompiledField) -> FieldError {
    err(
        &f.name,
        "required",
        format!("{} is required", quote(&f.name)),
    )
}

fn unknown(entity: &CompiledEntity, key: &str) -> FieldError {
    err(
        key,
        "unknown_field",
        format!(
            "{} is not a defined field of {}",
            quote(&truncate_chars(key, ECHO_CHARS)),
            entity.entity_table
        ),
    )
}

fn not_object(what: &str, kind: Kind) -> FieldError {
    FieldError {
        field: None,
        code: "not_object",
        message: format!("{what} must be a JSON object, got {}", kind.name()),
    }
}

fn sort_errors(errors: &mut [FieldError]) {
    // Stable: rule order within a field is kept; `None` sorts first.
    errors.sort_by(|a, b| a.field.cmp(&b.field));
}

/// Validates a `custom_fields` document (`None` = SQL NULL) of `entity`.
///
/// - The document must be a JSON object (else one `not_object` error).
///   `None` is treated as `{}` (on Insert, defaults are then to be applied).
/// - No coercion: `"5"` is not a number, `1` and `"true"` are not booleans.
/// - A missing key of a required field is `required`, unless on Insert the
///   field has a default (then `add_defaults`). Explicit `null` is
///   `required` for a required field and accepted ("no value") otherwise.
/// - Rules: see [`FieldType`](super::FieldType); every failing rule of every
///   field is reported.
/// - Unknown keys follow the entity's [`UnknownKeyPolicy`].
///
/// Errors are sorted by field name, document-level errors first. A valid
/// document that needs no change is checked without heap allocation (for
/// numbers of up to 24 significant digits and json fields without schema
/// errors).
pub fn validate_document<'a, V: JsonView<'a>>(
    entity: &CompiledEntity,
    doc: Option<V>,
    op: Operation,
) -> Outcome {
    let mut out = Outcome::default();
    let Some(doc) = doc else {
        for f in &entity.fields {
            missing(f, op, &mut out);
        }
        return out;
    };
    if doc.kind() != Kind::Object {
        out.errors.push(not_object("custom_fields", doc.kind()));
        return out;
    }
    let mut hidden = 0usize;
    // All defined keys in one lookup, in jsonb key order, checked in that order (the errors
    // are sorted by field name below).
    let n = entity.fields.len();
    let mut inline = [None; 8];
    let mut heap = Vec::new();
    let values: &mut [Option<V>] = if n <= inline.len() {
        &mut inline[..n]
    } else {
        heap.resize(n, None);
        &mut heap
    };
    doc.lookup_sorted(&entity.jsonb_names, values);
    let mut found = 0usize;
    for (&i, value) in entity.jsonb_order.iter().zip(values.iter()) {
        let f = &entity.fields[i];
        match value {
            None => missing(f, op, &mut out),
            Some(v) => {
                found += 1;
                if v.kind() == Kind::Null {
                    if f.is_required {
                        out.errors.push(required(f));
                    }
                } else {
                    check_value(f, *v, &mut out.errors);
                    check_indexed(f, *v, &mut out.errors);
                }
            }
        }
    }
    if found != doc.object_len() && entity.policy != UnknownKeyPolicy::Allow {
        let policy = entity.policy;
        let Outcome {
            errors, strip_keys, ..
        } = &mut out;
        doc.for_each_key(&mut |k| {
            if entity.field(k).is_none() {
                match policy {
                    // Past the cap only count them: a document may have millions of keys.
                    UnknownKeyPolicy::Reject if errors.len() > MAX_ERRORS => hidden += 1,
                    UnknownKeyPolicy::Reject => errors.push(unknown(entity, k)),
                    UnknownKeyPolicy::Strip => strip_keys.push(k.to_owned()),
                    UnknownKeyPolicy::Allow => {}
                }
            }
        });
        strip_keys.sort();
    }
    if out.errors.len() > 1 {
        sort_errors(&mut out.errors);
    }
    cap_errors(&mut out.errors, hidden);
    out
}

/// Keeps the first [`MAX_ERRORS`] errors and says how many more there were (`hidden`: errors
/// counted but never built).
fn cap_errors(errors: &mut Vec<FieldError>, hidden: usize) {
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS + hidden;
        errors.truncate(MAX_ERRORS);
        errors.push(FieldError {
            field: None,
            code: "too_many_errors",
            message: format!("{more} more error(s) not shown"),
        });
    }
}

/// "1 custom field rule", "3 custom field rules", or "more than 20 custom field rules" when
/// the report was cut (see [`MAX_ERRORS`]): the count for an error message.
pub fn violation_count(errors: &[FieldError]) -> String {
    let shown = errors
        .iter()
        .filter(|e| e.code != "too_many_errors")
        .count();
    if shown < errors.len() {
        format!("more than {shown} custom field rules")
    } else if shown == 1 {
        "1 custom field rule".to_string()
    } else {
        format!("{shown} custom field rules")
    }
}

/// The errors as a JSON array of `{"field", "code", "message"}` objects.
pub fn errors_to_json(errors: &[FieldError]) -> Value {
    Value::Array(
        errors
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert(
                    "field".to_owned(),
                    e.field.clone().map_or(Value::Null, Value::String),
                );
                m.insert("code".to_owned(), Value::String(e.code.to_owned()));
                m.insert("message".to_owned(), Value::String(e.message.clone()));
                Value::Object(m)
            })
            .collect(),
    )
}

/// The errors as text for a Postgres `DETAIL`: one line per error,
/// `message (code)`, lines separated by `\n` (no trailing newline).
pub fn errors_detail(errors: &[FieldError]) -> String {
    let mut s = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = write!(s, "{} ({})", e.message, e.code);
    }
    s
}

/// The original design's `applyFields`: splits a flat record of `entity`
/// into base columns and `custom_fields`, applies defaults and validates.
///
/// `record` must be a JSON object. Keys that are defined fields move into
/// `record["custom_fields"]` (merged into an existing object there, the
/// top-level key winning; `null` counts as `{}`; any other value is a
/// `not_object` error). Base-column keys stay. Other keys follow the policy:
/// Reject → `unknown_field`, Strip → dropped, Allow → moved into
/// `custom_fields`. Then missing defaults are added and `custom_fields` is
/// validated with Insert semantics (unknown keys already inside it follow
/// the policy too). Returns the new record, or every error.
pub fn apply_fields(entity: &CompiledEntity, record: &Value) -> Result<Value, Vec<FieldError>> {
    let (mut out, custom, mut errors) = split_record(entity, record);
    let mut custom_value = Value::Object(custom);
    let outcome = validate_document(entity, Some(&custom_value), Operation::Insert);
    errors.extend(outcome.errors);
    if !errors.is_empty() {
        sort_errors(&mut errors);
        cap_errors(&mut errors, 0);
        return Err(errors);
    }
    if let Value::Object(custom) = &mut custom_value {
        for k in &outcome.strip_keys {
            custom.remove(k);
        }
        if outcome.add_defaults {
            entity.apply_defaults(custom);
        }
    }
    out.insert("custom_fields".to_owned(), custom_value);
    Ok(Value::Object(out))
}

/// The first half of [`apply_fields`], for partial records (a routed update): splits a flat
/// record into its base columns and its `custom_fields` (the defined fields given at the top
/// level, merged over a `custom_fields` object given; other keys by the unknown-field policy),
/// without validating the fields or adding defaults. The errors are the record's shape and
/// unknown keys (policy reject).
pub fn split_record(
    entity: &CompiledEntity,
    record: &Value,
) -> (Map<String, Value>, Map<String, Value>, Vec<FieldError>) {
    let Value::Object(rec) = record else {
        return (
            Map::new(),
            Map::new(),
            vec![not_object("record", (&record).kind())],
        );
    };
    let base = base_columns(&entity.entity_table).unwrap_or(&[]);
    let mut errors = Vec::new();
    let mut custom = match rec.get("custom_fields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            errors.push(not_object("custom_fields", (&other).kind()));
            Map::new()
        }
    };
    let mut out = Map::new();
    for (k, v) in rec {
        if k == "custom_fields" {
            continue;
        }
        if entity.field(k).is_some() {
            custom.insert(k.clone(), v.clone());
        } else if base.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        } else {
            match entity.policy {
                UnknownKeyPolicy::Reject => errors.push(unknown(entity, k)),
                UnknownKeyPolicy::Strip => {}
                UnknownKeyPolicy::Allow => {
                    custom.insert(k.clone(), v.clone());
                }
            }
        }
    }
    (out, custom, errors)
}
