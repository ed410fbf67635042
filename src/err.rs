//! Errors at the Postgres boundary.
//!
//! Modules return `Result<_, Error>` (or their own thiserror types that convert into it), and the
//! `#[pg_extern]` shims turn an [`Error`] into a Postgres ERROR in one place, [`Error::raise`]:
//! a real SQLSTATE (never XX000 for a user's mistake), the message, DETAIL, HINT and, when the
//! error came from another database, a CONTEXT line naming the tenant and server (as Citus and
//! postgres_fdw name the node a remote error came from).

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub use pgrx::PgSqlErrorCode as Code;

/// An error to be raised as a Postgres ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// A CONTEXT line (for example `tenant "acme" on server "local" (database "tenant_acme")`).
    pub context: Option<String>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error with a code and a message.
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
        }
    }

    /// 22023 invalid_parameter_value.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::ERRCODE_INVALID_PARAMETER_VALUE, message)
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the CONTEXT line unless one is set already (the innermost context wins: it names
    /// the tenant and server the error came from).
    pub fn context(mut self, context: impl Into<String>) -> Error {
        if self.context.is_none() {
            self.context = Some(context.into());
        }
        self
    }

    /// Raises this error as a Postgres ERROR. Does not return.
    pub fn raise(self) -> ! {
        if let Some(context) = &self.context {
            push_context_line(context);
        }
        let mut report = ErrorReport::new(self.code, self.message, "messiah");
        if let Some(d) = self.detail {
            report = report.set_detail(d);
        }
        if let Some(h) = self.hint {
            report = report.set_hint(h);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) returned")
    }

    /// The error a caught Postgres or Rust error stands for (SQLSTATE, message, DETAIL, HINT).
    pub fn from_caught(e: &CaughtError) -> Error {
        let r = match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        Error {
            code: r.sql_error_code(),
            message: r.message().to_string(),
            detail: r.detail().map(str::to_string),
            hint: r.hint().map(str::to_string),
            context: None,
        }
    }
}

/// Raises an ERROR with `code`, `message` and optional DETAIL and HINT. Does not return.
pub fn raise(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    detail: Option<String>,
    hint: Option<String>,
) -> ! {
    Error {
        code,
        message: message.into(),
        detail,
        hint,
        context: None,
    }
    .raise()
}

/// For failures that are not SQL errors (those are raised by Postgres itself with their own
/// SQLSTATE): a result of an unexpected shape, which is a bug in messiah.
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

/// Unwraps a result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, Error> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
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

/// The text of the CONTEXT line pushed by [`push_context_line`], kept with its callback.
#[repr(C)]
struct ContextLine {
    callback: pg_sys::ErrorContextCallback,
    text: *mut std::ffi::c_char,
}

extern "C-unwind" {
    // errcontext() is a macro around this; pgrx does not bind it.
    fn errcontext_msg(fmt: *const std::ffi::c_char, ...) -> std::ffi::c_int;
}

/// # Safety
/// Called by Postgres' error machinery with the `arg` given in [`push_context_line`].
unsafe extern "C-unwind" fn context_callback(arg: *mut std::ffi::c_void) {
    let line = arg as *const ContextLine;
    // SAFETY: arg is the ContextLine allocated in TopTransactionContext by push_context_line,
    // alive until the transaction's abort, which runs after the error is reported.
    unsafe {
        if !line.is_null() && !(*line).text.is_null() {
            errcontext_msg(c"%s".as_ptr(), (*line).text);
        }
    }
}

/// Pushes a CONTEXT line onto Postgres' error context stack right before an ERROR is raised,
/// so that the report (made by pgrx at the function boundary) carries it. Postgres resets the
/// stack during error recovery (PG_CATCH and the main loop restore it), and the line lives in
/// TopTransactionContext, which is freed only after the error has been reported. Outside a
/// transaction it does nothing.
fn push_context_line(text: &str) {
    // SAFETY: IsTransactionState only reads transaction state; the allocations are in
    // TopTransactionContext, which outlives the error report (see above); the new entry's
    // `previous` is the current stack top, as errcontext callbacks require.
    unsafe {
        if !pg_sys::IsTransactionState() || pg_sys::TopTransactionContext.is_null() {
            return;
        }
        let line = pg_sys::MemoryContextAllocZero(
            pg_sys::TopTransactionContext,
            std::mem::size_of::<ContextLine>(),
        ) as *mut ContextLine;
        let bytes = text.replace('\0', "");
        let cstr =
            pg_sys::MemoryContextAlloc(pg_sys::TopTransactionContext, bytes.len() + 1) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), cstr, bytes.len());
        *cstr.add(bytes.len()) = 0;
        (*line).text = cstr as *mut std::ffi::c_char;
        (*line).callback.callback = Some(context_callback);
        (*line).callback.arg = line as *mut std::ffi::c_void;
        (*line).callback.previous = pg_sys::error_context_stack;
        pg_sys::error_context_stack = std::ptr::addr_of_mut!((*line).callback);
    }
}

/// Runs `f`; an error it raises (Postgres or Rust) is returned instead of propagating, with
/// the error context stack restored to what it was (Rust-level catches must do so, as
/// PG_CATCH does). Does not roll anything back: callers that continue after an SQL error use
/// [`crate::spi::in_subtransaction`].
pub fn catch<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, Error> {
    // SAFETY: reading the current error context stack pointer.
    let saved = unsafe { pg_sys::error_context_stack };
    pgrx::PgTryBuilder::new(|| Ok(f()))
        .catch_others(move |e| {
            // SAFETY: restoring the pointer saved above, as PG_CATCH does.
            unsafe { pg_sys::error_context_stack = saved };
            Err(Error::from_caught(&e))
        })
        .execute()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_context_wins() {
        let e = Error::invalid("x")
            .context("tenant \"a\" on server \"s\"")
            .context("outer");
        assert_eq!(e.context.as_deref(), Some("tenant \"a\" on server \"s\""));
        assert_eq!(e.code, Code::ERRCODE_INVALID_PARAMETER_VALUE);
    }
}
