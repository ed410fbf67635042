//! Kept plans of the statements messiah runs over SPI, per backend.
//!
//! Why: every messiah call reads the catalog a few times (the tenant by id, its server, the
//! outbox), and `SPI_execute` parses, analyzes and plans each statement every time; measured
//! on a routed one-row call, planning was half of the backend's CPU time. A plan prepared once
//! and kept (`SPI_prepare` + `SPI_keepplan`, as PL/pgSQL keeps the plans of its statements)
//! removes that.
//!
//! Why it is never stale: a kept plan is a plan-cache entry (`plancache.c`); Postgres
//! revalidates it before every use, re-analyzing from the statement text after any change to a
//! table, function or type it depends on (relcache/syscache invalidation, also from other
//! sessions) and when `search_path` differs from the one it was planned under. What is cached
//! is how to run a statement, never a result: every call reads the catalog as it is.
//!
//! Bounds: keyed by statement text, argument types and read-only/read-write; at most
//! [`MAX_PLANS`] are kept; statements past that run unprepared (`SPI_execute`), so statement
//! text built with values in it can never grow the cache without limit. The plans live until
//! the backend exits.

use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Plans one backend keeps at most.
pub const MAX_PLANS: usize = 256;

type Key = (String, bool, Vec<u32>);

thread_local! {
    static PLANS: RefCell<HashMap<Key, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `query` for arguments of `args`' types, prepared on first use; `None`
/// when the cache is full (the caller runs the statement unprepared). `mutating`: prepared
/// for a read-write execution (`SPI_execute_plan` with `read_only = false`).
pub fn get(
    client: &SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid],
    mutating: bool,
) -> SpiResult<Option<Rc<OwnedPreparedStatement>>> {
    let oids: Vec<u32> = args.iter().map(|a| a.oid().to_u32()).collect();
    let key = (query.to_string(), mutating, oids);
    if let Some(plan) = PLANS.with(|p| p.borrow().get(&key).cloned()) {
        return Ok(Some(plan));
    }
    if PLANS.with(|p| p.borrow().len()) >= MAX_PLANS {
        return Ok(None);
    }
    let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
    let prepared = if mutating {
        client.prepare_mut(query, &types)?
    } else {
        client.prepare(query, &types)?
    };
    let plan = Rc::new(prepared.keep());
    PLANS.with(|p| p.borrow_mut().insert(key, plan.clone()));
    Ok(Some(plan))
}
