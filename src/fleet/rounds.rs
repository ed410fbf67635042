//! What the fleet operations share: the tenant databases to look at, one statement run in
//! each of them concurrently over asynchronous connections (`remote::probe`), a report row
//! per tenant, and the single-run lock.

use crate::err::{Code, Error};
use crate::remote::probe::{self, Probe};
use crate::remote::Server;
use crate::tenants::catalog::Tenant;
use std::collections::HashMap;
use std::time::Duration;

/// One row of a fleet operation's result: `V` is the version kind (a migration number, an
/// extension version).
#[derive(Debug, Clone)]
pub struct Report<V> {
    pub tenant_id: String,
    pub from_version: Option<V>,
    pub to_version: Option<V>,
    /// `ok`, `failed` or `skipped`.
    pub status: &'static str,
    pub message: String,
    pub duration_ms: f64,
}

pub fn report<V>(t: &Tenant, status: &'static str, message: impl Into<String>) -> Report<V> {
    Report {
        tenant_id: t.tenant_id.clone(),
        from_version: None,
        to_version: None,
        status,
        message: message.into(),
        duration_ms: 0.0,
    }
}

/// The databases to look at: ready, provisioned tenants of this installation on a server
/// that is not offline; the others are reported `skipped` (`supabase`: why a supabase
/// tenant is).
pub fn targets<V>(
    servers: &HashMap<i64, Server>,
    supabase: &'static str,
) -> (Vec<Tenant>, Vec<Report<V>>) {
    let (mut go, mut skipped) = (Vec::new(), Vec::new());
    for t in Tenant::all_ready() {
        let why = if t.is_supabase() {
            Some(supabase)
        } else if !t.is_ours() {
            Some("managed by another installation")
        } else {
            match servers.get(&t.server_id) {
                Some(s) if s.status == "offline" => Some("its server is offline"),
                Some(_) => None,
                None => Some("its server is not registered"),
            }
        };
        match why {
            Some(w) => skipped.push(report(&t, "skipped", w)),
            None => go.push(t),
        }
    }
    (go, skipped)
}

/// Runs `sql` in each tenant's database (maintenance connection), `concurrency` at once.
pub fn round(
    tenants: &[&Tenant],
    servers: &HashMap<i64, Server>,
    sql: impl Fn(&Tenant) -> String,
    concurrency: usize,
    timeout: Duration,
) -> Vec<probe::Outcome> {
    let probes: Vec<Probe> = tenants
        .iter()
        .map(|t| Probe {
            params: servers[&t.server_id].database(&t.database_name).params(),
            sql: sql(t),
        })
        .collect();
    probe::run(&probes, concurrency, timeout)
}

/// How long a round that only reads may take per database (`messiah.connect_timeout`).
pub fn connect_timeout() -> Duration {
    Duration::from_millis(crate::guc::CONNECT_TIMEOUT_MS.get().max(100) as u64)
}

/// 22023 for a concurrency below 1; 55P03 when another run of `operation` holds this admin
/// database's lock (held until the calling transaction ends).
pub fn start(operation: &str, concurrency: i32) -> Result<usize, Error> {
    if concurrency < 1 {
        return Err(Error::new(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("concurrency must be at least 1, got {concurrency}"),
        ));
    }
    let locked = crate::spi::one::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext($1))",
        &[operation.into()],
    );
    if locked != Some(true) {
        return Err(Error::new(
            Code::ERRCODE_LOCK_NOT_AVAILABLE,
            format!("another {operation}() is running in this database"),
        )
        .hint("Wait for it to end; a re-run then does only what is left."));
    }
    Ok(concurrency as usize)
}

/// Builds the template of every server that holds `tenants` for this build and these
/// migrations, so the next tenant created there starts from it (a failure is a WARNING:
/// creating a tenant builds it, and reports the failure, then).
pub fn rebuild_templates(servers: &HashMap<i64, Server>, tenants: &[Tenant]) {
    let mut ids: Vec<i64> = tenants.iter().map(|t| t.server_id).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        if let Some(s) = servers.get(&id) {
            if let Err(e) = crate::tenants::provision::ensure_template(s) {
                pgrx::warning!(
                    "server \"{}\": the template was not rebuilt: {}",
                    s.name,
                    e.message
                );
            }
        }
    }
}
