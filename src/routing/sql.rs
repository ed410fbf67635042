//! The statements routed calls send, and the conversions of their values: plain Rust, no
//! Postgres. Values always travel as protocol parameters; the only names spliced into SQL are
//! table and column names, quoted (`quote_ident`) and qualified, and every operator and
//! function is schema-qualified, since the statements run with the tenant role's own
//! `search_path`.

use crate::fields::Decimal;
use crate::ident::quote_ident;
use crate::remote::Param;
use serde_json::{Map, Value};

/// Type OID of `jsonb` (pg_type.dat; stable across servers, as every built-in type's is).
const JSONB_OID: u32 = 3802;

/// Why a routed call's arguments were refused (22023).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("params must be a JSON array, got {0}")]
    ParamsNotArray(&'static str),
    #[error("{0} must be a JSON object, got {1}")]
    NotObject(&'static str, &'static str),
    #[error("match must name at least one column: an empty match would {0} every row")]
    EmptyMatch(&'static str),
    #[error("data has nothing to update")]
    NothingToUpdate,
    #[error("{0} must not be empty")]
    EmptyName(&'static str),
    /// More values than the protocol can bind (54000, checked before anything is sent).
    #[error("params has {0} values; a statement takes at most {MAX_PARAMS}")]
    TooManyParams(usize),
}

/// The most parameters one statement can have: the Bind message counts them in a 16-bit
/// integer (Postgres frontend/backend protocol, "Bind"; libpq refuses more).
pub const MAX_PARAMS: usize = 65_535;

/// The JSON type name of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `params` (a JSON array) as statement parameters `$1..$n`: scalars as untyped text, so the
/// server infers their type from the statement (`uuid_col = $1` works); objects and arrays as
/// `jsonb`; `null` as SQL NULL.
pub fn params(v: &Value) -> Result<Vec<Param>, ArgError> {
    let Value::Array(items) = v else {
        return Err(ArgError::ParamsNotArray(kind(v)));
    };
    if items.len() > MAX_PARAMS {
        return Err(ArgError::TooManyParams(items.len()));
    }
    Ok(items
        .iter()
        .map(|item| match item {
            Value::Null => Param {
                value: None,
                type_oid: 0,
            },
            Value::String(s) => Param {
                value: Some(s.clone()),
                type_oid: 0,
            },
            Value::Bool(b) => Param {
                value: Some(b.to_string()),
                type_oid: 0,
            },
            Value::Number(n) => Param {
                value: Some(n.to_string()),
                type_oid: 0,
            },
            other => Param {
                value: Some(other.to_string()),
                type_oid: JSONB_OID,
            },
        })
        .collect())
}

/// One result row as a JSON object (`{"column": value}`; a later column of the same name
/// wins, as in `to_jsonb` of a row): booleans, integers and numbers (exact) as JSON, `json` and
/// `jsonb` as the documents they hold, NULL as null, every other type as its text form. The
/// types are the server's built-in OIDs (pg_type.dat).
pub fn row_object(columns: &[String], types: &[u32], values: &[Option<String>]) -> Value {
    let mut out = Map::new();
    for ((name, ty), value) in columns.iter().zip(types).zip(values) {
        out.insert(name.clone(), value_of(*ty, value.as_deref()));
    }
    Value::Object(out)
}

fn value_of(ty: u32, text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    match ty {
        // bool
        16 => Value::Bool(text == "t"),
        // int8, int2, int4, oid, float4, float8, numeric: JSON numbers when they are
        // (NaN and infinities are not)
        20 | 21 | 23 | 26 | 700 | 701 | 1700 => number(text),
        // json, jsonb
        114 | 3802 => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
        _ => Value::String(text.into()),
    }
}

/// A number's text as an exact JSON number, or as a string when it is not one.
fn number(text: &str) -> Value {
    if Decimal::parse(text).is_some() {
        if let Ok(v @ Value::Number(_)) = serde_json::from_str::<Value>(text) {
            return v;
        }
    }
    Value::String(text.into())
}

/// A table of the tenant schema, qualified and quoted (the schema is `public` in a
/// provisioned database and `tenant_<id>` in a Supabase project's).
fn table(schema: &str, name: &str) -> String {
    if schema == "public" {
        format!("public.{}", quote_ident(name))
    } else {
        format!("{}.{}", quote_ident(schema), quote_ident(name))
    }
}

/// `r.<c> OPERATOR(pg_catalog.=) m.<c> AND ...` for the match columns.
fn conditions(match_columns: &[String]) -> String {
    match_columns
        .iter()
        .map(|c| {
            let c = quote_ident(c);
            format!("r.{c} OPERATOR(pg_catalog.=) m.{c}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `<c> = d.<c>` for the columns to set (`d`: the data record).
fn assignments(set_cols: &[String]) -> Vec<String> {
    set_cols
        .iter()
        .map(|c| {
            let c = quote_ident(c);
            format!("{c} = d.{c}")
        })
        .collect()
}

/// The column names of a JSON object, in its order.
pub fn columns(v: &Map<String, Value>) -> Vec<String> {
    v.keys().cloned().collect()
}

/// INSERT of one row given as a JSON object (`$1`): the columns it names get its values
/// (converted by `jsonb_populate_record` to the columns' types), the others their defaults.
/// Returns the inserted row as jsonb.
pub fn insert(schema: &str, table_name: &str, cols: &[String]) -> String {
    let t = table(schema, table_name);
    if cols.is_empty() {
        return format!("INSERT INTO {t} AS r DEFAULT VALUES RETURNING pg_catalog.to_jsonb(r.*)");
    }
    let list = cols
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {t} AS r ({list}) SELECT {list} \
         FROM pg_catalog.jsonb_populate_record(NULL::{t}, $1::pg_catalog.jsonb) \
         RETURNING pg_catalog.to_jsonb(r.*)"
    )
}

/// UPDATE of the rows whose `match_cols` equal those of `$2` (a JSON object), setting
/// `set_cols` from `$1` and, with `merge_custom`, merging `$3` into `custom_fields` (JSON
/// Merge Patch, `messiah.jsonb_merge_patch` of the tenant database). Returns the updated rows
/// as jsonb. Errors: an empty match or nothing to set.
pub fn update(
    schema: &str,
    table_name: &str,
    set_cols: &[String],
    merge_custom: bool,
    match_cols: &[String],
) -> Result<String, ArgError> {
    if match_cols.is_empty() {
        return Err(ArgError::EmptyMatch("update"));
    }
    let mut sets = assignments(set_cols);
    if merge_custom {
        sets.push(
            "custom_fields = messiah.jsonb_merge_patch(r.custom_fields, $3::pg_catalog.jsonb)"
                .into(),
        );
    }
    if sets.is_empty() {
        return Err(ArgError::NothingToUpdate);
    }
    let t = table(schema, table_name);
    Ok(format!(
        "UPDATE {t} AS r SET {} \
         FROM pg_catalog.jsonb_populate_record(NULL::{t}, $1::pg_catalog.jsonb) AS d, \
              pg_catalog.jsonb_populate_record(NULL::{t}, $2::pg_catalog.jsonb) AS m \
         WHERE {} RETURNING pg_catalog.to_jsonb(r.*)",
        sets.join(", "),
        conditions(match_cols)
    ))
}

/// DELETE of the rows whose `match_cols` equal those of `$1`. Errors: an empty match.
pub fn delete(schema: &str, table_name: &str, match_cols: &[String]) -> Result<String, ArgError> {
    if match_cols.is_empty() {
        return Err(ArgError::EmptyMatch("delete"));
    }
    let t = table(schema, table_name);
    Ok(format!(
        "DELETE FROM {t} AS r USING pg_catalog.jsonb_populate_record(NULL::{t}, $1::pg_catalog.jsonb) AS m \
         WHERE {}",
        conditions(match_cols)
    ))
}

/// For an update validated before it is sent (a supabase tenant: no trigger in the project's
/// database): locks the rows whose `match_cols` equal those of `$1` and returns each one's
/// `ctid` and `custom_fields`, for [`update_rows`] in the same transaction. Errors: an empty
/// match.
pub fn select_for_update(
    schema: &str,
    table_name: &str,
    match_cols: &[String],
) -> Result<String, ArgError> {
    if match_cols.is_empty() {
        return Err(ArgError::EmptyMatch("update"));
    }
    let t = table(schema, table_name);
    Ok(format!(
        "SELECT r.ctid::pg_catalog.text, r.custom_fields::pg_catalog.text FROM {t} AS r, \
              pg_catalog.jsonb_populate_record(NULL::{t}, $1::pg_catalog.jsonb) AS m \
         WHERE {} FOR UPDATE OF r",
        conditions(match_cols)
    ))
}

/// The second half of [`select_for_update`]: sets `set_cols` from `$1` and each locked row's
/// `custom_fields` to the value computed for it (`$2`: a JSON array of `{"row_ctid",
/// "custom_fields"}`). Returns the updated rows as jsonb.
pub fn update_rows(schema: &str, table_name: &str, set_cols: &[String]) -> String {
    let t = table(schema, table_name);
    let mut sets = assignments(set_cols);
    sets.push("custom_fields = x.custom_fields".into());
    format!(
        "UPDATE {t} AS r SET {} \
         FROM pg_catalog.jsonb_populate_record(NULL::{t}, $1::pg_catalog.jsonb) AS d, \
              pg_catalog.jsonb_to_recordset($2::pg_catalog.jsonb) AS x(row_ctid pg_catalog.tid, custom_fields pg_catalog.jsonb) \
         WHERE r.ctid OPERATOR(pg_catalog.=) x.row_ctid RETURNING pg_catalog.to_jsonb(r.*)",
        sets.join(", ")
    )
}

/// The server's answer to a statement that uses more parameters than `params` gives. Over
/// the extended protocol the server infers the count from the statement and refuses the Bind
/// with 08P01 ("bind message supplies 1 parameters, but prepared statement \"\" requires
/// 2"), a protocol-class code that reads as a broken connection; this returns the error the
/// server raises for the same mistake in SQL (`PREPARE`/`EXECUTE`, SPI): 42P02 "there is no
/// parameter $n", the server's message kept as DETAIL. `None` for any other error.
pub fn missing_parameter(sqlstate: &str, message: &str) -> Option<(String, String)> {
    if sqlstate != "08P01" {
        return None;
    }
    let rest = message.strip_prefix("bind message supplies ")?;
    let (given, rest) = rest.split_once(" parameters, but prepared statement ")?;
    let (_, required) = rest.rsplit_once(" requires ")?;
    let given: u32 = given.parse().ok()?;
    let required: u32 = required.parse().ok()?;
    (given < required).then(|| {
        (
            format!("there is no parameter ${}", given + 1),
            message.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_untyped_scalars_and_jsonb_documents() {
        // parsed from text, as the jsonb argument arrives: the number keeps its digits
        let v: Value = serde_json::from_str(r#"["a", 1.50, true, null, {"k": [1]}, [2]]"#).unwrap();
        let p = params(&v).unwrap();
        assert_eq!(
            p[0],
            Param {
                value: Some("a".into()),
                type_oid: 0
            }
        );
        assert_eq!(p[1].value.as_deref(), Some("1.50"));
        assert_eq!(p[2].value.as_deref(), Some("true"));
        assert_eq!(
            p[3],
            Param {
                value: None,
                type_oid: 0
            }
        );
        assert_eq!(
            p[4],
            Param {
                value: Some("{\"k\":[1]}".into()),
                type_oid: JSONB_OID
            }
        );
        assert_eq!(p[5].type_oid, JSONB_OID);
        assert_eq!(
            params(&json!({"a": 1})),
            Err(ArgError::ParamsNotArray("an object"))
        );
    }

    #[test]
    fn too_few_parameters_are_42p02() {
        assert_eq!(
            missing_parameter(
                "08P01",
                "bind message supplies 1 parameters, but prepared statement \"\" requires 3"
            ),
            Some((
                "there is no parameter $2".into(),
                "bind message supplies 1 parameters, but prepared statement \"\" requires 3".into()
            ))
        );
        let other = "bind message has 2 parameter formats but 1 parameters";
        assert_eq!(missing_parameter("08P01", other), None);
        assert_eq!(
            missing_parameter(
                "42601",
                "bind message supplies 1 parameters, but prepared statement \"\" requires 3"
            ),
            None
        );
    }

    #[test]
    fn rows_keep_json_types() {
        let cols = ["b", "i", "n", "f", "j", "t", "nan", "z"].map(String::from);
        let types = [16, 23, 1700, 701, 3802, 25, 1700, 25];
        let vals = [
            Some("t"),
            Some("42"),
            Some("12345678901234567890.5"),
            Some("1e+20"),
            Some("{\"a\": [1, null]}"),
            Some("text"),
            Some("NaN"),
            None,
        ]
        .map(|v| v.map(String::from));
        let row = row_object(&cols, &types, &vals);
        let expected: Value = serde_json::from_str(
            r#"{"b": true, "i": 42, "n": 12345678901234567890.5, "f": 1e+20,
                "j": {"a": [1, null]}, "t": "text", "nan": "NaN", "z": null}"#,
        )
        .unwrap();
        assert_eq!(row, expected);
        assert_eq!(row["n"].to_string(), "12345678901234567890.5");
    }

    #[test]
    fn statements_quote_names_and_qualify_everything() {
        let cols = vec!["name".to_string(), "we\"ird".to_string()];
        assert_eq!(
            insert("public", "clients", &cols),
            "INSERT INTO public.\"clients\" AS r (\"name\", \"we\"\"ird\") SELECT \"name\", \"we\"\"ird\" \
             FROM pg_catalog.jsonb_populate_record(NULL::public.\"clients\", $1::pg_catalog.jsonb) \
             RETURNING pg_catalog.to_jsonb(r.*)"
        );
        assert_eq!(
            insert("public", "clients", &[]),
            "INSERT INTO public.\"clients\" AS r DEFAULT VALUES RETURNING pg_catalog.to_jsonb(r.*)"
        );
        let u = update("public", "clients", &["name".into()], true, &["id".into()]).unwrap();
        assert!(u.contains("SET \"name\" = d.\"name\", custom_fields = messiah.jsonb_merge_patch(r.custom_fields, $3::pg_catalog.jsonb)"), "{u}");
        assert!(
            u.contains("WHERE r.\"id\" OPERATOR(pg_catalog.=) m.\"id\" RETURNING"),
            "{u}"
        );
        assert_eq!(
            update("public", "clients", &["name".into()], false, &[]),
            Err(ArgError::EmptyMatch("update"))
        );
        assert_eq!(
            update("public", "clients", &[], false, &["id".into()]),
            Err(ArgError::NothingToUpdate)
        );
        assert_eq!(
            delete("public", "clients", &[]),
            Err(ArgError::EmptyMatch("delete"))
        );
        assert!(delete("public", "Odd Table", &["id".into(), "name".into()])
            .unwrap()
            .contains("DELETE FROM public.\"Odd Table\" AS r USING pg_catalog.jsonb_populate_record(NULL::public.\"Odd Table\", $1::pg_catalog.jsonb) AS m WHERE r.\"id\" OPERATOR(pg_catalog.=) m.\"id\" AND r.\"name\" OPERATOR(pg_catalog.=) m.\"name\""));
    }
}
