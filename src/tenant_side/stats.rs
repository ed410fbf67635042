//! The validation counters of this server (`monitor::counters`), read by the admin
//! installation's `messiah_metrics()` and `messiah_tenant_stats()` over a maintenance
//! connection into one tenant database of each server.

use crate::err::{Code, Error, OrRaise};
use pgrx::prelude::*;

/// Every table of every database of this server whose rows the trigger validated since the
/// server started: the database's oid, `schema.table`, rows validated, rows rejected.
/// Errors: 55000 when messiah is not in `shared_preload_libraries` here (nothing is counted).
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn validation_counters() -> TableIterator<
    'static,
    (
        name!(database_oid, pg_sys::Oid),
        name!(table_name, String),
        name!(rows_validated, i64),
        name!(rows_rejected, i64),
    ),
> {
    let counts = crate::monitor::counters::validation_counts()
        .ok_or_else(|| {
            Error::new(
                Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "messiah is not in shared_preload_libraries on this server: validations are not counted",
            )
            .hint("Add messiah to shared_preload_libraries and restart the server.")
        })
        .or_raise();
    TableIterator::new(counts.into_iter().map(|c| {
        (
            pg_sys::Oid::from(c.database_oid),
            c.name,
            c.validated as i64,
            c.rejected as i64,
        )
    }))
}
