//! Raising errors with a real SQLSTATE, DETAIL and HINT (never a bare `error!`, which is XX000).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub use pgrx::PgSqlErrorCode as Code;

/// Raises an ERROR with `code`, `message` and optional DETAIL and HINT. Does not return.
pub fn raise(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    detail: Option<String>,
    hint: Option<String>,
) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "messiah");
    if let Some(d) = detail {
        report = report.set_detail(d);
    }
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    // report(ERROR) unwinds into Postgres' error handling and never comes back.
    unreachable!("ereport(ERROR) returned")
}

/// For SPI failures that are not SQL errors (those are raised by Postgres itself with their
/// own SQLSTATE): a result of an unexpected shape, which is a bug in messiah.
pub fn internal(context: &str, e: impl std::fmt::Display) -> ! {
    raise(
        Code::ERRCODE_INTERNAL_ERROR,
        format!("messiah internal error while {context}: {e}"),
        None,
        Some(
            "This is a bug in messiah; please report it with the statement that caused it.".into(),
        ),
    )
}

/// Unwraps an SPI result or raises an internal error naming what was being done.
pub trait SpiExt<T> {
    fn or_raise(self, context: &str) -> T;
}

impl<T> SpiExt<T> for Result<T, pgrx::spi::Error> {
    fn or_raise(self, context: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => internal(context, e),
        }
    }
}
