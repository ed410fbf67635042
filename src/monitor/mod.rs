//! Looking at the fleet: health checks of the admin database, every registered server and
//! every tenant (issue "The tenant cache, health checks and metrics").

pub mod health;

use crate::err::OrRaise;
use crate::shim::tenant_id_arg;
use crate::tenants::catalog::Tenant;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

type HealthRow = (
    String,
    String,
    String,
    String,
    Option<f64>,
    Option<TimestampWithTimeZone>,
);

fn rows(checks: Vec<health::Check>) -> TableIterator<'static, HealthRow> {
    let at = Spi::get_one::<TimestampWithTimeZone>("SELECT pg_catalog.clock_timestamp()")
        .ok()
        .flatten();
    TableIterator::new(checks.into_iter().map(move |c| {
        (
            c.name,
            c.kind.to_string(),
            c.status.to_string(),
            c.message,
            c.latency_ms,
            at,
        )
    }))
}

/// Checks the admin database, every registered server and every active tenant, and returns
/// one row each: `name`, `kind` (admin | server | tenant), `status` (healthy | unhealthy |
/// unknown: not checked, e.g. a suspended tenant or an offline server), `message`,
/// `latency_ms` (the check's duration, connect included), `checked_at` (when the checks
/// finished). A tenant is healthy when its application role logs in and runs `SELECT 1` and
/// its catalog copy is at the catalog's version. Checks run concurrently, at most
/// `messiah.health_concurrency` connections at once, each bounded by `messiah.health_timeout`
/// (ms); the tenants of a server that does not answer are unhealthy without a check each.
/// Never raises for an unreachable server or tenant: that is a row.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_health() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(kind, String),
        name!(status, String),
        name!(message, String),
        name!(latency_ms, Option<f64>),
        name!(checked_at, Option<TimestampWithTimeZone>),
    ),
> {
    let servers = crate::remote::Server::all();
    let tenants = Tenant::all_ready();
    rows(health::check(&servers, &tenants))
}

/// `messiah_health()` for one tenant: the admin database, the tenant's server and the tenant.
/// Errors: 22023 invalid id; 42704 no such tenant.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_health(
    tenant_id: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(kind, String),
        name!(status, String),
        name!(message, String),
        name!(latency_ms, Option<f64>),
        name!(checked_at, Option<TimestampWithTimeZone>),
    ),
> {
    let id = tenant_id_arg(tenant_id);
    let t = Tenant::existing(id.as_str(), false).or_raise();
    let server = t.server().or_raise();
    rows(health::check(&[server], &[t]))
}
