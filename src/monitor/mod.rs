//! Looking at the fleet: health checks of the admin database, every registered server and
//! every tenant (issue "The tenant cache, health checks and metrics").

pub mod counters;
pub mod health;
pub mod metrics;

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

/// The fleet's metrics, one row per sample: `metric` (a Prometheus name in base units:
/// seconds, bytes; counters end in `_total`), `labels` (jsonb object of label = value),
/// `value`, `help`, `type` (counter | gauge). `metric_prefix` (default NULL: all) returns only
/// the families whose name starts with it, and gathers nothing else (the shipped
/// prometheus-postgres-exporter file asks for one family per query).
///
/// Families: tenants by status and server (the catalog); provisionings started, failed and
/// their duration; routed calls, errors and duration by tenant; result cache hits, misses,
/// evictions, entries and bytes; executor sweeps, the last one's time and databases swept
/// (shared memory of this cluster, since it started); field validations and rejections by
/// tenant and table, gathered from every registered server that is not offline (counted
/// where the trigger runs; a server that cannot be read gets `messiah_server_counters_up` 0
/// and a NOTICE). Without messiah in `shared_preload_libraries`, only the catalog's families
/// are returned (a NOTICE says so). Never raises for an unreachable server.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_metrics(
    metric_prefix: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(labels, pgrx::JsonB),
        name!(value, f64),
        name!(help, String),
        name!(type, String),
    ),
> {
    let samples = metrics::collect(metric_prefix);
    TableIterator::new(samples.into_iter().map(|s| {
        (
            s.metric.to_string(),
            pgrx::JsonB(serde_json::Value::Object(s.labels)),
            s.value,
            s.help.to_string(),
            s.kind.as_str().to_string(),
        )
    }))
}

/// Per tenant of this installation (the citus_stat_tenants idea, per database): `tenant_id`,
/// `server`, `status`, `routed_calls`, `routed_errors`, `routed_seconds` (summed duration),
/// `rows_validated`, `rows_rejected` (by its trigger, on its server, since that server
/// started), `database_size_bytes` (`pg_database_size`; NULL for a supabase tenant, whose
/// tables share a project database, or when the server cannot be read). Counters are 0
/// without messiah preloaded (a NOTICE says so). Never raises for an unreachable server.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_stats() -> TableIterator<
    'static,
    (
        name!(tenant_id, String),
        name!(server, String),
        name!(status, String),
        name!(routed_calls, i64),
        name!(routed_errors, i64),
        name!(routed_seconds, f64),
        name!(rows_validated, i64),
        name!(rows_rejected, i64),
        name!(database_size_bytes, Option<i64>),
    ),
> {
    TableIterator::new(metrics::tenant_stats().into_iter().map(|s| {
        (
            s.tenant_id,
            s.server,
            s.status,
            s.routed_calls as i64,
            s.routed_errors as i64,
            s.routed_seconds,
            s.rows_validated as i64,
            s.rows_rejected as i64,
            s.database_size_bytes,
        )
    }))
}
