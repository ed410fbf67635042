//! Small SPI helpers: every query takes bind parameters; failures that are not SQL errors
//! (which Postgres raises itself, with their SQLSTATE) become internal errors naming the query.

use crate::err::SpiExt;
use pgrx::datum::DatumWithOid;
use pgrx::{FromDatum, IntoDatum, Spi};

/// Runs `query` (read-write) and returns the first column of its first row, `None` when there
/// is no row or the value is NULL.
pub fn one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    Spi::connect_mut(|c| {
        let t = c.update(query, None, args)?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<T>()
        }
    })
    .or_raise(query)
}

/// Runs `query` (read-only) and returns the first column of every row, NULLs skipped.
pub fn column<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    Spi::connect(|c| {
        let mut out = Vec::new();
        for row in c.select(query, None, args)? {
            if let Some(v) = row.get::<T>(1)? {
                out.push(v);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise(query)
}

/// Runs `query` (read-only) and returns its first `ncols` columns of every row as text.
pub fn text_rows(query: &str, args: &[DatumWithOid], ncols: usize) -> Vec<Vec<Option<String>>> {
    Spi::connect(|c| {
        let mut out = Vec::new();
        for row in c.select(query, None, args)? {
            let mut r = Vec::with_capacity(ncols);
            for i in 1..=ncols {
                r.push(row.get::<String>(i)?);
            }
            out.push(r);
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise(query)
}

/// Runs as another role until dropped, the way SECURITY DEFINER functions and Postgres' RI
/// triggers switch: `SetUserIdAndSecContext` with `SECURITY_LOCAL_USERID_CHANGE` (plus
/// `extra` context flags). Dropping restores the previous role, also when unwinding from an
/// error.
pub struct AsUser {
    user: pgrx::pg_sys::Oid,
    context: i32,
}

impl AsUser {
    /// Switches to `user`.
    pub fn enter(user: pgrx::pg_sys::Oid, extra: i32) -> AsUser {
        use pgrx::pg_sys;
        let (mut saved, mut context) = (pg_sys::InvalidOid, 0);
        // SAFETY: reading and setting this backend's current user and security context.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved, &mut context);
            pg_sys::SetUserIdAndSecContext(
                user,
                context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | extra,
            );
        }
        AsUser {
            user: saved,
            context,
        }
    }

    /// The current role (inside a SECURITY DEFINER function: its owner).
    pub fn current() -> pgrx::pg_sys::Oid {
        // SAFETY: a plain read of this backend's current user.
        unsafe { pgrx::pg_sys::GetUserId() }
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        // SAFETY: restores the role and context saved by `enter`.
        unsafe { pgrx::pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}
