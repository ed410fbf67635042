//! Argument handling shared by the `#[pg_extern]` shims: NULLs, tenant ids and the argument
//! rules of `tenants::args`, each turned into the documented SQLSTATE.

use crate::err::{Code, Error, OrRaise};
use crate::ident::{TenantId, TENANT_ID_RULE};
use crate::tenants::args::ArgError;

impl From<ArgError> for Error {
    fn from(e: ArgError) -> Error {
        let code = if e.too_large {
            Code::ERRCODE_PROGRAM_LIMIT_EXCEEDED
        } else {
            Code::ERRCODE_INVALID_PARAMETER_VALUE
        };
        let mut out = Error::new(code, e.message);
        out.hint = e.hint;
        out
    }
}

/// Raises an argument rule's error (22023, or 54000 for a size limit).
pub fn check(r: Result<(), ArgError>) {
    r.map_err(Error::from).or_raise()
}

/// Raises 22023 with a message.
pub fn invalid(message: String, detail: Option<String>, hint: Option<String>) -> ! {
    Error {
        code: Code::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        detail,
        hint,
        context: None,
    }
    .raise()
}

/// The value of an argument that has a non-NULL default; 22004 when NULL is passed explicitly.
pub fn not_null<T>(what: &str, v: Option<T>) -> T {
    match v {
        Some(v) => v,
        None => Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be null"),
        )
        .hint("Omit the argument to use its default.")
        .raise(),
    }
}

/// The value of a required argument; 22004 when it is NULL (the functions are not STRICT, so a
/// NULL argument is an error rather than a silent NULL result).
pub fn required<'a>(what: &str, v: Option<&'a str>) -> &'a str {
    match v {
        Some(s) => s,
        None => Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be null"),
        )
        .raise(),
    }
}

/// A tenant id argument: 22004 when NULL, 22023 when it breaks the rule.
pub fn tenant_id_arg(v: Option<&str>) -> TenantId {
    TenantId::parse(required("tenant_id", v))
        .unwrap_or_else(|e| invalid(e.to_string(), None, Some(TENANT_ID_RULE.into())))
}
