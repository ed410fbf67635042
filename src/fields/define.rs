//! Definition-time checks: turning catalog rows (`FieldSpec`) into compiled
//! fields, entities and snapshots.

use super::decimal::{Base10000, Decimal};
use super::domain::{base_columns, ENTITY_TABLES};
use super::validate::check_value;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Longest allowed field name, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 40;

/// Largest compiled program size of a `pattern` regex (1 MiB); larger
/// patterns are rejected at definition time.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Largest value of a sortable field, in bytes of its JSON text (its string's UTF-8 bytes for
/// a string). A btree index entry holds at most about 2,700 bytes (a third of a page); 2,000
/// leaves room for the entry's header and never relies on compression, so anything the
/// validator accepts, the field's index accepts too.
pub const MAX_INDEXED_BYTES: usize = 2_000;

/// One custom-field definition as stored in the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpec {
    /// One of [`ENTITY_TABLES`].
    pub entity_table: String,
    /// Lowercase identifier `^[a-z][a-z0-9_]*$`, at most 40 bytes, not a
    /// base column of the entity.
    pub field_name: String,
    /// `text`, `number`, `boolean`, `date`, `json` or `select`.
    pub field_type: String,
    /// Whether the key must be present (and not `null`) in `custom_fields`.
    pub is_required: bool,
    /// Whether the field has a btree index in the tenant database: its values must then fit
    /// an index entry ([`MAX_INDEXED_BYTES`]).
    pub is_sortable: bool,
    /// The default as catalog TEXT: text → the raw string; number → a JSON
    /// number literal; boolean → `true`/`false`; date → `YYYY-MM-DD`;
    /// json → any JSON text; select → an option, or (multiple) a JSON array
    /// of options.
    pub default_value: Option<String>,
    /// A JSON object of rules allowed for the type (see [`FieldType`]).
    /// `null` is treated as `{}`.
    pub validation_rules: Value,
}

/// A rejected field definition (or snapshot). `field` is the offending field
/// name (empty for errors not about one field); `message` says what is wrong.
///
/// Displays as `field "postal_code": unknown rule "minLenght" for type text
/// (allowed: minLength, maxLength, pattern, format)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field_prefix(.field))]
pub struct DefinitionError {
    /// The field name the error is about, or empty.
    pub field: String,
    /// What is wrong, without the field prefix.
    pub message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field {}: ", super::validate::quote(field))
    }
}

impl DefinitionError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// The type of a custom field and the rule keys it allows in
/// `validation_rules` (any other key is an error):
///
/// - `text`: `minLength`, `maxLength` (non-negative integers, in Unicode code
///   points), `pattern` (regex, unanchored as in JSON Schema), `format`
///   (`email` per WHATWG HTML, `uri` per RFC 3986, `uuid` per JSON Schema)
/// - `number`: `min`, `max` (JSON numbers, exact), `integer` (bool)
/// - `boolean`: none
/// - `date`: `min`, `max` (`YYYY-MM-DD` calendar dates)
/// - `json`: `schema` (a JSON Schema object)
/// - `select`: `options` (non-empty array of distinct strings, required),
///   `multiple` (bool)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A JSON string.
    Text,
    /// A JSON number.
    Number,
    /// `true` / `false`.
    Boolean,
    /// A `YYYY-MM-DD` string.
    Date,
    /// Any JSON value, optionally checked with a JSON Schema.
    Json,
    /// One option string, or (multiple) an array of distinct options.
    Select,
}

impl FieldType {
    /// Every type, in catalog order.
    pub const ALL: [FieldType; 6] = [
        FieldType::Text,
        FieldType::Number,
        FieldType::Boolean,
        FieldType::Date,
        FieldType::Json,
        FieldType::Select,
    ];

    /// The catalog name (`text`, `number`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Json => "json",
            FieldType::Select => "select",
        }
    }

    /// Parses a catalog name; `None` if unknown (case-sensitive).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The rule keys allowed for this type.
    pub fn allowed_rules(self) -> &'static [&'static str] {
        match self {
            FieldType::Text => &["minLength", "maxLength", "pattern", "format"],
            FieldType::Number => &["min", "max", "integer"],
            FieldType::Boolean => &[],
            FieldType::Date => &["min", "max"],
            FieldType::Json => &["schema"],
            FieldType::Select => &["options", "multiple"],
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text `format` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// WHATWG HTML "valid e-mail address".
    Email,
    /// RFC 3986 URI with a scheme.
    Uri,
    /// JSON Schema `uuid`: 8-4-4-4-12 hyphenated hex.
    Uuid,
}

impl TextFormat {
    /// The rule value (`email`, `uri`, `uuid`).
    pub fn as_str(self) -> &'static str {
        match self {
            TextFormat::Email => "email",
            TextFormat::Uri => "uri",
            TextFormat::Uuid => "uuid",
        }
    }

    /// Whether `s` has this format. Never allocates.
    pub fn matches(self, s: &str) -> bool {
        match self {
            TextFormat::Email => super::formats::is_email(s),
            TextFormat::Uri => super::formats::is_uri(s),
            TextFormat::Uuid => super::formats::is_uuid(s),
        }
    }
}

/// A compiled `pattern` rule: its source text and the regex.
#[derive(Clone, Debug)]
pub(super) struct Pattern {
    pub(super) source: String,
    regex: regex::Regex,
    /// The same regex as a fully built DFA, when it fits [`PATTERN_DFA_LIMIT`]: the `regex`
    /// crate's lazy DFA is built for long haystacks and costs a few hundred instructions of
    /// setup per search, more than matching a short field value (the trigger's profile); a
    /// prebuilt dense DFA is a table walk from the first byte. Same engine (regex-automata),
    /// same syntax and semantics; any search it gives up on falls back to `regex`.
    dfa: Option<Box<regex_automata::dfa::dense::DFA<Vec<u32>>>>,
}

/// Largest dense DFA built for one pattern (bytes). Typical patterns (postal codes, SKUs,
/// phone numbers) need a few KiB; a pattern past the limit is matched by `regex` alone.
pub const PATTERN_DFA_LIMIT: usize = 256 << 10;

impl Pattern {
    /// Compiles the translated (Rust syntax) pattern; the error is `regex`'s message.
    pub(super) fn new(source: &str, translated: &str) -> Result<Self, regex::Error> {
        let regex = regex::RegexBuilder::new(translated)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .build()?;
        let dfa = regex_automata::dfa::dense::Builder::new()
            .configure(
                regex_automata::dfa::dense::Config::new()
                    .start_kind(regex_automata::dfa::StartKind::Unanchored)
                    .dfa_size_limit(Some(PATTERN_DFA_LIMIT))
                    .determinize_size_limit(Some(PATTERN_DFA_LIMIT)),
            )
            .thompson(
                regex_automata::nfa::thompson::Config::new()
                    .nfa_size_limit(Some(PATTERN_SIZE_LIMIT)),
            )
            .build(translated)
            .ok()
            .map(Box::new);
        Ok(Self {
            source: source.to_owned(),
            regex,
            dfa,
        })
    }

    /// Whether the pattern matches anywhere in `s` (JSON Schema's `pattern` is unanchored).
    pub(super) fn is_match(&self, s: &str) -> bool {
        use regex_automata::dfa::Automaton;
        let Some(dfa) = &self.dfa else {
            return self.regex.is_match(s);
        };
        // The DFA walk of regex-automata's `Automaton` documentation: a match state (entered
        // one byte after a match ends) answers yes at once, the dead state no; past the last
        // byte, the end-of-input transition decides.
        let Ok(mut state) = dfa.start_state_forward(&regex_automata::Input::new(s)) else {
            return self.regex.is_match(s);
        };
        for &b in s.as_bytes() {
            state = dfa.next_state(state, b);
            if dfa.is_special_state(state) {
                if dfa.is_match_state(state) {
                    return true;
                }
                if dfa.is_dead_state(state) {
                    return false;
                }
                if dfa.is_quit_state(state) {
                    return self.regex.is_match(s);
                }
            }
        }
        dfa.is_match_state(dfa.next_eoi_state(state))
    }
}

/// Compiled rules of a field, per type.
pub(super) enum Rules {
    Text {
        min_length: Option<u64>,
        max_length: Option<u64>,
        pattern: Option<Pattern>,
        format: Option<TextFormat>,
    },
    Number {
        min: Option<Decimal>,
        max: Option<Decimal>,
        /// `min` and `max` in NUMERIC's base-10000 form, compared with jsonb numbers as
        /// stored (see [`Base10000`]).
        bounds: (Option<Base10000>, Option<Base10000>),
        integer: bool,
    },
    Boolean,
    Date {
        min: Option<String>,
        max: Option<String>,
    },
    Json {
        schema: Option<Box<jsonschema::Validator>>,
    },
    Select {
        /// Options in definition order.
        options: Vec<String>,
        /// The options in jsonb key order (length first, then bytewise), each with its
        /// index into `options`: the binary search behind every select check.
        sorted: Vec<OptionKey>,
        /// `["a", "b"]`, for messages.
        display: String,
        multiple: bool,
    },
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rules::Text {
                min_length,
                max_length,
                pattern,
                format,
            } => f
                .debug_struct("Text")
                .field("min_length", min_length)
                .field("max_length", max_length)
                .field("pattern", &pattern.as_ref().map(|p| &p.source))
                .field("format", format)
                .finish(),
            Rules::Number {
                min, max, integer, ..
            } => f
                .debug_struct("Number")
                .field("min", min)
                .field("max", max)
                .field("integer", integer)
                .finish(),
            Rules::Boolean => f.write_str("Boolean"),
            Rules::Date { min, max } => f
                .debug_struct("Date")
                .field("min", min)
                .field("max", max)
                .finish(),
            Rules::Json { schema } => f
                .debug_struct("Json")
                .field("schema", &schema.is_some())
                .finish(),
            Rules::Select {
                options, multiple, ..
            } => f
                .debug_struct("Select")
                .field("options", options)
                .field("multiple", multiple)
                .finish(),
        }
    }
}

impl Rules {
    /// Index of `s` among select options.
    pub(super) fn option_index(options: &[String], sorted: &[OptionKey], s: &str) -> Option<usize> {
        let want = OptionKey::new(s, 0);
        sorted
            .binary_search_by(|k| {
                k.len
                    .cmp(&want.len)
                    .then(k.prefix.cmp(&want.prefix))
                    .then_with(|| {
                        let o = options.get(k.index).map_or(&b""[..], |o| o.as_bytes());
                        o.get(8..).cmp(&s.as_bytes().get(8..))
                    })
            })
            .ok()
            .and_then(|pos| sorted.get(pos).map(|k| k.index))
    }
}

/// A select option's place in the binary search: its length and first eight bytes (a
/// big-endian word, zero-padded) decide nearly every comparison without reading the option
/// text; equal ones compare the rest. The order is jsonb key order (length, then bytes).
#[derive(Clone, Copy, Debug)]
pub(super) struct OptionKey {
    len: usize,
    prefix: u64,
    index: usize,
}

impl OptionKey {
    fn new(s: &str, index: usize) -> Self {
        let b = s.as_bytes();
        let prefix = match b.first_chunk::<8>() {
            Some(first) => u64::from_be_bytes(*first),
            None => {
                let mut w = [0u8; 8];
                for (slot, &c) in w.iter_mut().zip(b) {
                    *slot = c;
                }
                u64::from_be_bytes(w)
            }
        };
        Self {
            len: s.len(),
            prefix,
            index,
        }
    }
}

/// One field definition after all definition-time checks: ready to validate
/// values with no further parsing.
#[derive(Debug)]
pub struct CompiledField {
    pub(super) name: String,
    pub(super) field_type: FieldType,
    pub(super) is_required: bool,
    pub(super) is_sortable: bool,
    pub(super) default_text: Option<String>,
    pub(super) default_value: Option<Value>,
    pub(super) rules: Rules,
    pub(super) rules_json: Value,
}

impl CompiledField {
    /// The field name (the key in `custom_fields`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The field type.
    pub fn field_type(&self) -> FieldType {
        self.field_type
    }

    /// Whether the key must be present and not `null`.
    pub fn is_required(&self) -> bool {
        self.is_required
    }

    /// The default as JSON (e.g. catalog text `42` → number 42, text `abc`
    /// of a text field → string "abc"), if any.
    pub fn default_value(&self) -> Option<&Value> {
        self.default_value.as_ref()
    }

    /// The default as stored in the catalog (TEXT), if any.
    pub fn default_text(&self) -> Option<&str> {
        self.default_text.as_deref()
    }

    /// The `validation_rules` object as given.
    pub fn validation_rules(&self) -> &Value {
        &self.rules_json
    }
}

/// Checks a field name: `^[a-z][a-z0-9_]*$`, at most 40 bytes, and not a
/// base column of `entity_table`. Returns the error message.
pub fn check_field_name(entity_table: &str, name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let shape_ok = b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if !shape_ok {
        return Err(format!(
            "invalid field name {}: must match ^[a-z][a-z0-9_]*$",
            super::validate::quote(name)
        ));
    }
    if b.len() > MAX_FIELD_NAME_BYTES {
        return Err(format!(
            "field name is {} bytes long, at most {MAX_FIELD_NAME_BYTES} allowed",
            b.len()
        ));
    }
    if base_columns(entity_table).is_some_and(|cols| cols.contains(&name)) {
        return Err(format!(
            "{} is a base column of {entity_table}",
            super::validate::quote(name)
        ));
    }
    Ok(())
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    super::validate::truncate_chars(&s, 80).into_owned()
}

fn non_negative_int(field: &str, key: &str, v: &Value) -> Result<u64, DefinitionError> {
    let bad = || {
        DefinitionError::new(
            field,
            format!(
                "rule {key:?} must be a non-negative integer, got {}",
                compact(v)
            ),
        )
    };
    let d = match v {
        Value::Number(n) => Decimal::parse(n.as_str()).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !d.is_integer() || d.is_negative() {
        return Err(bad());
    }
    // Exact digits of a whole number: beyond u64 means "no practical limit".
    Ok(d.to_string().parse::<u64>().unwrap_or(u64::MAX))
}

fn number_rule(field: &str, key: &str, v: &Value) -> Result<Decimal, DefinitionError> {
    match v {
        Value::Number(n) => Decimal::parse(n.as_str()),
        _ => None,
    }
    .ok_or_else(|| {
        DefinitionError::new(
            field,
            format!("rule {key:?} must be a number, got {}", compact(v)),
        )
    })
}

fn bool_rule(field: &str, key: &str, v: &Value) -> Result<bool, DefinitionError> {
    v.as_bool().ok_or_else(|| {
        DefinitionError::new(
            field,
            format!("rule {key:?} must be true or false, got {}", compact(v)),
        )
    })
}

fn date_rule(field: &str, key: &str, v: &Value) -> Result<String, DefinitionError> {
    match v.as_str() {
        Some(s) if super::formats::is_date(s) => Ok(s.to_owned()),
        _ => Err(DefinitionError::new(
            field,
            format!(
                "rule {key:?} must be a calendar date string YYYY-MM-DD, got {}",
                compact(v)
            ),
        )),
    }
}

fn format_rule(field: &str, v: &Value) -> Result<TextFormat, DefinitionError> {
    match v.as_str() {
        Some("email") => Ok(TextFormat::Email),
        Some("uri") => Ok(TextFormat::Uri),
        Some("uuid") => Ok(TextFormat::Uuid),
        _ => Err(DefinitionError::new(
            field,
            format!(
                "rule \"format\" must be one of \"email\", \"uri\", \"uuid\", got {}",
                compact(v)
            ),
        )),
    }
}

fn min_max_order<T: PartialOrd + fmt::Display>(
    field: &str,
    min_key: &str,
    max_key: &str,
    min: Option<&T>,
    max: Option<&T>,
) -> Result<(), DefinitionError> {
    if let (Some(a), Some(b)) = (min, max) {
        if a > b {
            return Err(DefinitionError::new(
                field,
                format!("rule {min_key:?} ({a}) must be <= {max_key:?} ({b})"),
            ));
        }
    }
    Ok(())
}

/// Runs `f`, turning a panic inside a dependency into an error message.
pub(super) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| "internal error in JSON Schema engine".to_owned())
}

fn compile_rules(
    field: &str,
    ty: FieldType,
    rules: &Map<String, Value>,
) -> Result<Rules, DefinitionError> {
    let allowed = ty.allowed_rules();
    for key in rules.keys() {
        if !allowed.contains(&key.as_str()) {
            let list = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(DefinitionError::new(
                field,
                format!(
                    "unknown rule {} for type {ty} (allowed: {list})",
                    super::validate::quote(key)
                ),
            ));
        }
    }
    let get = |k: &str| rules.get(k);
    Ok(match ty {
        FieldType::Text => {
            let min_length = get("minLength")
                .map(|v| non_negative_int(field, "minLength", v))
                .transpose()?;
            let max_length = get("maxLength")
                .map(|v| non_negative_int(field, "maxLength", v))
                .transpose()?;
            min_max_order(
                field,
                "minLength",
                "maxLength",
                min_length.as_ref(),
                max_length.as_ref(),
            )?;
            let pattern = match get("pattern") {
                None => None,
                Some(Value::String(p)) => {
                    // JSON Schema's pattern dialect (ECMA-262: \d is [0-9], \w and \b are
                    // ASCII), translated to the linear-time regex crate exactly as the
                    // jsonschema crate translates a json field's "pattern".
                    // A pattern the translation cannot read is compiled as given, so that the
                    // error below names what is wrong with it.
                    let translated = jsonschema_regex::to_rust_regex(p)
                        .map(std::borrow::Cow::into_owned)
                        .unwrap_or_else(|()| p.clone());
                    Some(Pattern::new(p, &translated).map_err(|e| {
                        DefinitionError::new(
                            field,
                            format!("rule \"pattern\" is not a valid regular expression: {e}"),
                        )
                    })?)
                }
                Some(v) => {
                    return Err(DefinitionError::new(
                        field,
                        format!("rule \"pattern\" must be a string, got {}", compact(v)),
                    ))
                }
            };
            let format = get("format").map(|v| format_rule(field, v)).transpose()?;
            Rules::Text {
                min_length,
                max_length,
                pattern,
                format,
            }
        }
        FieldType::Number => {
            let min = get("min")
                .map(|v| number_rule(field, "min", v))
                .transpose()?;
            let max = get("max")
                .map(|v| number_rule(field, "max", v))
                .transpose()?;
            min_max_order(field, "min", "max", min.as_ref(), max.as_ref())?;
            let integer = get("integer")
                .map(|v| bool_rule(field, "integer", v))
                .transpose()?
                .unwrap_or(false);
            let bounds = (
                min.as_ref().map(Base10000::from_decimal),
                max.as_ref().map(Base10000::from_decimal),
            );
            Rules::Number {
                min,
                max,
                bounds,
                integer,
            }
        }
        FieldType::Boolean => Rules::Boolean,
        FieldType::Date => {
            let min = get("min").map(|v| date_rule(field, "min", v)).transpose()?;
            let max = get("max").map(|v| date_rule(field, "max", v)).transpose()?;
            min_max_order(field, "min", "max", min.as_ref(), max.as_ref())?;
            Rules::Date { min, max }
        }
        FieldType::Json => {
            let schema = match get("schema") {
                None => None,
                Some(s @ Value::Object(_)) => {
                    let compiled = guard(|| jsonschema::validator_for(s))
                        .map_err(|e| DefinitionError::new(field, e))?
                        .map_err(|e| {
                            DefinitionError::new(
                                field,
                                format!("rule \"schema\" is not a valid JSON Schema: {e}"),
                            )
                        })?;
                    Some(Box::new(compiled))
                }
                Some(v) => {
                    return Err(DefinitionError::new(
                        field,
                        format!(
                            "rule \"schema\" must be a JSON Schema object, got {}",
                            compact(v)
                        ),
                    ))
                }
            };
            Rules::Json { schema }
        }
        FieldType::Select => {
            let bad = |v: &Value| {
                DefinitionError::new(
                    field,
                    format!(
                        "rule \"options\" must be a non-empty array of strings, got {}",
                        compact(v)
                    ),
                )
            };
            let options: Vec<String> = match get("options") {
                None => {
                    return Err(DefinitionError::new(
                        field,
                        "type select requires rule \"options\"",
                    ))
                }
                Some(v @ Value::Array(items)) => {
                    if items.is_empty() {
                        return Err(bad(v));
                    }
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| bad(v)))
                        .collect::<Result<_, _>>()?
                }
                Some(v) => return Err(bad(v)),
            };
            let mut sorted: Vec<OptionKey> = options
                .iter()
                .enumerate()
                .map(|(i, o)| OptionKey::new(o, i))
                .collect();
            sorted.sort_by(|a, b| {
                super::view::jsonb_key_order(
                    options[a.index].as_bytes(),
                    options[b.index].as_bytes(),
                )
            });
            if let Some(w) = sorted
                .windows(2)
                .find(|w| options[w[0].index] == options[w[1].index])
            {
                return Err(DefinitionError::new(
                    field,
                    format!(
                        "rule \"options\" contains {} more than once",
                        super::validate::quote(&options[w[0].index])
                    ),
                ));
            }
            let multiple = get("multiple")
                .map(|v| bool_rule(field, "multiple", v))
                .transpose()?
                .unwrap_or(false);
            // Messages name the options; a long list is cut so that an error stays short.
            const SHOWN: usize = 10;
            let mut shown = options
                .iter()
                .take(SHOWN)
                .map(|o| super::validate::quote(&super::validate::truncate_chars(o, 64)))
                .collect::<Vec<_>>();
            if options.len() > SHOWN {
                shown.push(format!("… ({} options in all)", options.len()));
            }
            let display = format!("[{}]", shown.join(", "));
            Rules::Select {
                options,
                sorted,
                display,
                multiple,
            }
        }
    })
}

/// Parses the catalog TEXT of a default into JSON for the field's type.
fn parse_default(
    field: &str,
    ty: FieldType,
    multiple: bool,
    text: &str,
) -> Result<Value, DefinitionError> {
    let bad = |what: &str| {
        DefinitionError::new(
            field,
            format!(
                "default value {} is not {what}",
                super::validate::quote(&super::validate::truncate_chars(text, 80))
            ),
        )
    };
    match ty {
        FieldType::Text | FieldType::Date => Ok(Value::String(text.to_owned())),
        FieldType::Select if !multiple => Ok(Value::String(text.to_owned())),
        FieldType::Number => {
            if Decimal::parse(text).is_none() {
                return Err(bad("a JSON number"));
            }
            serde_json::from_str::<Value>(text).map_err(|_| bad("a JSON number"))
        }
        FieldType::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("true or false")),
        },
        FieldType::Json => serde_json::from_str::<Value>(text).map_err(|_| bad("valid JSON")),
        FieldType::Select => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Array(_)) => Ok(v),
            _ => Err(bad("a JSON array of options")),
        },
    }
}

/// Compiles one field definition, running every definition-time check:
/// known entity table, field name shape/length/not a base column, known
/// type, `validation_rules` an object whose keys are all allowed for the type
/// and whose values are well-formed (`min <= max`, regex compiles within
/// 1 MiB, options non-empty and distinct, schema compiles), and a default
/// that parses as the type and passes the rules.
pub fn compile_field(spec: &FieldSpec) -> Result<CompiledField, DefinitionError> {
    let field = spec.field_name.as_str();
    if base_columns(&spec.entity_table).is_none() {
        return Err(DefinitionError::new(
            field,
            format!(
                "unknown entity table {} (expected one of {})",
                super::validate::quote(&spec.entity_table),
                ENTITY_TABLES.join(", ")
            ),
        ));
    }
    check_field_name(&spec.entity_table, field).map_err(|m| DefinitionError::new(field, m))?;
    let ty = FieldType::parse(&spec.field_type).ok_or_else(|| {
        DefinitionError::new(
            field,
            format!(
                "unknown field type {} (expected one of text, number, boolean, date, json, select)",
                super::validate::quote(&spec.field_type)
            ),
        )
    })?;
    let empty = Map::new();
    let rules_map = match &spec.validation_rules {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            return Err(DefinitionError::new(
                field,
                format!(
                    "validation_rules must be a JSON object, got {}",
                    super::view::JsonView::kind(&other).name()
                ),
            ))
        }
    };
    let rules = compile_rules(field, ty, rules_map)?;
    let mut compiled = CompiledField {
        name: field.to_owned(),
        field_type: ty,
        is_required: spec.is_required,
        is_sortable: spec.is_sortable,
        default_text: None,
        default_value: None,
        rules,
        rules_json: Value::Object(rules_map.clone()),
    };
    if let Some(text) = &spec.default_value {
        let multiple = matches!(compiled.rules, Rules::Select { multiple: true, .. });
        let value = parse_default(field, ty, multiple, text)?;
        let mut errors = Vec::new();
        // A default passes every rule of its field, is_required included: a required field's
        // default can not be JSON null.
        if value.is_null() {
            if compiled.is_required {
                errors.push(super::validate::required(&compiled));
            }
        } else {
            check_value(&compiled, &value, &mut errors);
            super::validate::check_indexed(&compiled, &value, &mut errors);
        }
        if !errors.is_empty() {
            let reasons: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            return Err(DefinitionError::new(
                field,
                format!(
                    "default value {} is invalid: {}",
                    super::validate::quote(&super::validate::truncate_chars(text, 80)),
                    reasons.join("; ")
                ),
            ));
        }
        compiled.default_text = Some(text.clone());
        compiled.default_value = Some(value);
    }
    Ok(compiled)
}

/// What to do with keys of `custom_fields` that are not defined active
/// fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnknownKeyPolicy {
    /// Error `unknown_field` for each unknown key (the default).
    #[default]
    Reject,
    /// No error; the keys are listed in [`Outcome::strip_keys`](super::Outcome)
    /// for the caller to remove.
    Strip,
    /// Keep unknown keys as they are.
    Allow,
}

impl UnknownKeyPolicy {
    /// Parses `"reject"`, `"strip"` or `"allow"` (exact, lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reject" => Some(Self::Reject),
            "strip" => Some(Self::Strip),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }

    /// `"reject"`, `"strip"` or `"allow"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Strip => "strip",
            Self::Allow => "allow",
        }
    }
}

impl FromStr for UnknownKeyPolicy {
    type Err = DefinitionError;

    /// Same as [`UnknownKeyPolicy::parse`], with an error naming the choices.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| {
            DefinitionError::new(
                "",
                format!(
                    "unknown key policy {} (expected reject, strip or allow)",
                    super::validate::quote(s)
                ),
            )
        })
    }
}

/// The compiled active fields of one entity table (sorted by name) and the
/// unknown-key policy.
#[derive(Debug)]
pub struct CompiledEntity {
    pub(super) entity_table: String,
    pub(super) fields: Vec<CompiledField>,
    pub(super) policy: UnknownKeyPolicy,
    /// Indices into `fields` in jsonb key order (see [`super::jsonb_key_order`]), for
    /// [`super::JsonView::lookup_sorted`].
    pub(super) jsonb_order: Vec<usize>,
    /// The field names in that order (the keys handed to `lookup_sorted` for every row).
    pub(super) jsonb_names: Vec<String>,
}

impl CompiledEntity {
    /// The entity table name.
    pub fn entity_table(&self) -> &str {
        &self.entity_table
    }

    /// The fields, sorted by name.
    pub fn fields(&self) -> &[CompiledField] {
        &self.fields
    }

    /// The policy for keys that are not defined fields.
    pub fn policy(&self) -> UnknownKeyPolicy {
        self.policy
    }

    /// The field named `name` (binary search).
    pub fn field(&self, name: &str) -> Option<&CompiledField> {
        self.fields
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.fields.get(i))
    }

    /// Every field that has a default: field name → default JSON value.
    pub fn defaults_object(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .filter_map(|f| Some((f.name.clone(), f.default_value.clone()?)))
            .collect()
    }

    /// Inserts the default of every defaulted field whose key is missing
    /// from `obj` (explicit `null` is not missing). This is what a caller
    /// does when [`Outcome::add_defaults`](super::Outcome) is true.
    pub fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        for f in &self.fields {
            if let Some(d) = &f.default_value {
                if !obj.contains_key(&f.name) {
                    obj.insert(f.name.clone(), d.clone());
                }
            }
        }
    }
}

/// Compiles the active fields of `entity_table` (one of [`ENTITY_TABLES`]).
/// Every spec must be for that table; names must be unique.
pub fn compile_entity(
    entity_table: &str,
    specs: &[FieldSpec],
    policy: UnknownKeyPolicy,
) -> Result<CompiledEntity, DefinitionError> {
    if base_columns(entity_table).is_none() {
        return Err(DefinitionError::new(
            "",
            format!(
                "unknown entity table {} (expected one of {})",
                super::validate::quote(entity_table),
                ENTITY_TABLES.join(", ")
            ),
        ));
    }
    let mut fields = Vec::with_capacity(specs.len());
    for spec in specs {
        if spec.entity_table != entity_table {
            return Err(DefinitionError::new(
                &spec.field_name,
                format!(
                    "belongs to {}, not {entity_table}",
                    super::validate::quote(&spec.entity_table)
                ),
            ));
        }
        fields.push(compile_field(spec)?);
    }
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = fields.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(DefinitionError::new(
            &w[0].name,
            format!("defined more than once for {entity_table}"),
        ));
    }
    let mut jsonb_order: Vec<usize> = (0..fields.len()).collect();
    jsonb_order.sort_by(|&a, &b| {
        super::view::jsonb_key_order(fields[a].name.as_bytes(), fields[b].name.as_bytes())
    });
    let jsonb_names = jsonb_order
        .iter()
        .map(|&i| fields[i].name.clone())
        .collect();
    Ok(CompiledEntity {
        entity_table: entity_table.to_owned(),
        fields,
        policy,
        jsonb_order,
        jsonb_names,
    })
}

/// Every entity table's compiled fields, from one catalog snapshot.
#[derive(Debug)]
pub struct CompiledSnapshot {
    version: Option<i64>,
    policy: UnknownKeyPolicy,
    entities: Vec<CompiledEntity>,
}

impl CompiledSnapshot {
    /// The compiled entity `name`; every table of [`ENTITY_TABLES`] exists,
    /// even without fields (the policy still applies to its keys).
    pub fn entity(&self, name: &str) -> Option<&CompiledEntity> {
        self.entity_bytes(name.as_bytes())
    }

    /// [`CompiledSnapshot::entity`] by the name's bytes (a trigger argument, not re-checked
    /// as UTF-8 for every row).
    pub fn entity_bytes(&self, name: &[u8]) -> Option<&CompiledEntity> {
        self.entities
            .iter()
            .find(|e| e.entity_table.as_bytes() == name)
    }

    /// The snapshot's `version`, if it had one.
    pub fn version(&self) -> Option<i64> {
        self.version
    }

    /// The unknown-key policy of every entity.
    pub fn policy(&self) -> UnknownKeyPolicy {
        self.policy
    }

    /// All entities, in [`ENTITY_TABLES`] order.
    pub fn entities(&self) -> &[CompiledEntity] {
        &self.entities
    }
}

fn spec_from_json(item: &Value) -> Result<Option<FieldSpec>, DefinitionError> {
    let Value::Object(m) = item else {
        return Err(DefinitionError::new(
            "",
            format!(
                "snapshot field entries must be objects, got {}",
                compact(item)
            ),
        ));
    };
    let name = m.get("field_name").and_then(Value::as_str).unwrap_or("");
    let string = |key: &str| -> Result<String, DefinitionError> {
        m.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                DefinitionError::new(name, format!("snapshot entry needs a string {key:?}"))
            })
    };
    let boolean = |key: &str, default: bool| -> Result<bool, DefinitionError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(DefinitionError::new(
                name,
                format!("snapshot entry {key:?} must be a boolean"),
            )),
        }
    };
    if !boolean("is_active", true)? {
        return Ok(None);
    }
    let default_value = match m.get("default_value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(DefinitionError::new(
                name,
                "snapshot entry \"default_value\" must be a string or null",
            ))
        }
    };
    Ok(Some(FieldSpec {
        entity_table: string("entity_table")?,
        field_name: string("field_name")?,
        field_type: string("field_type")?,
        is_required: boolean("is_required", false)?,
        is_sortable: boolean("is_sortable", false)?,
        default_value,
        validation_rules: m
            .get("validation_rules")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    }))
}

/// Compiles a catalog snapshot:
/// `{"version": 7, "policy": "reject", "fields": [ {"entity_table": "clients",
/// "field_name": "...", "field_type": "...", "is_required": false,
/// "default_value": null, "validation_rules": {...}}, ... ]}`.
///
/// `policy` defaults to `reject`, `fields` to `[]`, `is_required` to false,
/// `validation_rules` to `{}`; entries with `"is_active": false` are skipped.
/// The first definition error is returned.
pub fn compile_snapshot(snapshot: &Value) -> Result<CompiledSnapshot, DefinitionError> {
    let Value::Object(root) = snapshot else {
        return Err(DefinitionError::new("", "snapshot must be a JSON object"));
    };
    let version =
        match root.get("version") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                DefinitionError::new("", "snapshot \"version\" must be an integer")
            })?),
        };
    let policy = match root.get("policy") {
        None | Some(Value::Null) => UnknownKeyPolicy::Reject,
        Some(Value::String(s)) => s.parse()?,
        Some(_) => {
            return Err(DefinitionError::new(
                "",
                "snapshot \"policy\" must be a string",
            ))
        }
    };
    let items: &[Value] = match root.get("fields") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(DefinitionError::new(
                "",
                "snapshot \"fields\" must be an array",
            ))
        }
    };
    let mut per_entity: Vec<Vec<FieldSpec>> = ENTITY_TABLES.iter().map(|_| Vec::new()).collect();
    for item in items {
        let Some(spec) = spec_from_json(item)? else {
            continue;
        };
        let Some(idx) = ENTITY_TABLES.iter().position(|t| *t == spec.entity_table) else {
            return Err(DefinitionError::new(
                &spec.field_name,
                format!(
                    "unknown entity table {} (expected one of {})",
                    super::validate::quote(&spec.entity_table),
                    ENTITY_TABLES.join(", ")
                ),
            ));
        };
        if let Some(bucket) = per_entity.get_mut(idx) {
            bucket.push(spec);
        }
    }
    let entities = ENTITY_TABLES
        .iter()
        .zip(&per_entity)
        .map(|(table, specs)| compile_entity(table, specs, policy))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledSnapshot {
        version,
        policy,
        entities,
    })
}
