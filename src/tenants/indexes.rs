//! Field indexes in tenant databases (`crate::fields::indexes` decides which): built and
//! dropped with `CREATE/DROP INDEX CONCURRENTLY`, one statement at a time over a maintenance
//! connection, after COMMIT (from the outbox executor), so a definition change never queues
//! the tenant's writers behind an index build. Each statement runs under
//! `messiah.index_lock_timeout`: a build that would wait longer for older transactions fails
//! (leaving an INVALID index), the action is retried with backoff, and the next attempt drops
//! the invalid leftover and builds again. Reconcile lists missing and invalid field indexes.

use crate::err::Error;
use crate::fields::indexes::{self, IndexSpec};
use crate::remote::{self, Endpoint, RemoteError};
use serde_json::Value;

/// A field index of a tenant database: name, valid, definition.
struct Existing {
    name: String,
    valid: bool,
    def: String,
}

const EXISTING: &str =
    "SELECT c.relname::text, i.indisvalid::text, pg_catalog.pg_get_indexdef(i.indexrelid) \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relname LIKE 'messiah\\_cf\\_%' ORDER BY 1";

fn existing(conn: &mut remote::Conn, server: &str) -> Result<Vec<Existing>, RemoteError> {
    Ok(conn
        .query(EXISTING, &[], server)?
        .rows
        .into_iter()
        .map(|r| {
            let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            Existing {
                name: t(0),
                valid: t(1) == "true",
                def: t(2),
            }
        })
        .collect())
}

/// What differs between the indexes a snapshot calls for and those present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexDrift {
    Missing(IndexSpec),
    /// INVALID (a failed concurrent build) or defined differently (the field's type changed).
    Invalid(IndexSpec),
    /// Not called for any more (the field was dropped or is no longer sortable).
    Unwanted(String),
}

fn diff(wanted: &[IndexSpec], have: &[Existing]) -> Vec<IndexDrift> {
    let mut out = Vec::new();
    for e in have {
        match wanted.iter().find(|w| w.name == e.name) {
            None => out.push(IndexDrift::Unwanted(e.name.clone())),
            Some(w) if !e.valid || !w.matches(&e.def) => out.push(IndexDrift::Invalid(w.clone())),
            Some(_) => {}
        }
    }
    for w in wanted {
        if !have.iter().any(|e| e.name == w.name) {
            out.push(IndexDrift::Missing(w.clone()));
        }
    }
    out
}

/// The field-index drift of the tenant database at `ep` for `snapshot`.
pub fn audit(ep: &Endpoint, snapshot: &Value) -> Result<Vec<IndexDrift>, Error> {
    let server = ep.server.name.clone();
    let have = remote::with_conn(ep, |c| existing(c, &server))
        .map_err(|e| e.into_error(&ep.describe()))?;
    Ok(diff(&indexes::wanted(snapshot), &have))
}

/// Brings the field indexes of the tenant database at `ep` in line with `snapshot`: drops
/// unwanted and invalid ones, builds missing ones, concurrently. Returns what it did.
pub fn sync(ep: &Endpoint, snapshot: &Value, context: &str) -> Result<Vec<String>, Error> {
    let server = ep.server.name.clone();
    let wanted = indexes::wanted(snapshot);
    let timeout = crate::guc::INDEX_LOCK_TIMEOUT_MS.get();
    remote::with_conn(ep, |c| {
        let drift = diff(&wanted, &existing(c, &server)?);
        let mut done = Vec::new();
        if drift.is_empty() {
            return Ok(done);
        }
        c.execute(&format!("SET lock_timeout = {timeout}"), &server)?;
        let mut build = Vec::new();
        for d in drift {
            match d {
                IndexDrift::Unwanted(name) => {
                    c.execute(&indexes::drop_sql(&name), &server)?;
                    done.push(format!("dropped {name}"));
                }
                IndexDrift::Invalid(spec) => {
                    c.execute(&indexes::drop_sql(&spec.name), &server)?;
                    done.push(format!("dropped invalid {}", spec.name));
                    build.push(spec);
                }
                IndexDrift::Missing(spec) => build.push(spec),
            }
        }
        for spec in build {
            c.execute(&spec.create_sql(), &server)?;
            done.push(format!("built {}", spec.name));
        }
        c.execute("RESET lock_timeout", &server)?;
        Ok(done)
    })
    .map_err(|e| e.into_error(context))
}
