//! Caches, each in a module of its own with its reasoning written down (issue "The tenant
//! cache, health checks and metrics").

pub mod catalog;
pub mod results;

use crate::shim::tenant_id_arg;
use pgrx::prelude::*;

/// Empties the routed result cache of one tenant of this admin database, or of every tenant of
/// it when `tenant_id` is NULL (the default); returns how many entries were removed. Entries
/// of other admin databases of the cluster are left alone. Errors: 22023 invalid id. Without
/// messiah preloaded there is no cache: returns 0.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_cache_clear(tenant_id: default!(Option<&str>, "NULL")) -> i64 {
    match tenant_id {
        Some(_) => results::invalidate_tenant(tenant_id_arg(tenant_id).as_str()) as i64,
        None => {
            // SAFETY: plain read.
            let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
            results::invalidate(results::Which::Database(db)) as i64
        }
    }
}

#[pg_schema]
mod messiah {
    use pgrx::prelude::*;

    /// Internal (diagnosis and the benchmark of the lookup alone): what a routed call looks
    /// up for `tenant_id`, through the catalog cache when `messiah.catalog_cache` is on:
    /// `{"tenant_id", "server", "database", "status", "lifecycle", "row_version"}`, or NULL
    /// when no such tenant. Opens no connection.
    #[pg_extern(security_definer, stable, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn route_lookup(tenant_id: &str) -> Option<pgrx::JsonB> {
        let r = super::catalog::route_row(tenant_id)?;
        Some(pgrx::JsonB(serde_json::json!({
            "tenant_id": r.tenant.tenant_id,
            "server": r.server.name,
            "database": r.tenant.database_name,
            "status": r.tenant.status,
            "lifecycle": r.tenant.lifecycle,
            "row_version": r.row_version,
        })))
    }
}
