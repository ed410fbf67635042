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
