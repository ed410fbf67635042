//! Operating the fleet (issue "Operating the fleet"): tenant schema migrations, versioned
//! upgrades of every tenant database, and moving tenants between servers.

pub mod migrations;
pub mod moves;
pub mod rounds;
pub mod upgrades;

use crate::err::OrRaise;
use crate::shim::required;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Registers tenant schema migration `version` (bigint >= 1): `sql` (at most 1 MiB; any
/// statements a transaction may hold: no `CREATE INDEX CONCURRENTLY`), applied in ascending
/// version order by `messiah_migrate_tenants` to every tenant database as the tenant's owner
/// role, and to every server's template for new tenants. Registering the same SQL again
/// changes nothing. Returns `{"version", "checksum" (sha256 of sql), "description"}`.
/// Errors: 22004 null version or sql; 22023 version < 1 or empty sql; 54000 sql too large;
/// 55000 the version is applied in tenant databases with other SQL (immutable), or is below
/// the highest version applied somewhere.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_add_migration(
    version: Option<i64>,
    sql: Option<&str>,
    description: default!(Option<&str>, "NULL"),
) -> JsonB {
    let version = crate::shim::not_null("version", version);
    let sql = required("sql", sql);
    let m = migrations::add(version, sql, description).or_raise();
    JsonB(serde_json::json!({
        "version": m.version,
        "checksum": m.checksum,
        "description": m.description,
    }))
}

/// Applies the pending tenant schema migrations (up to `target_version`, default all) to every
/// ready tenant database, at most `concurrency` databases at once, each migration in its own
/// transaction there under `messiah.migration_lock_timeout`; then rebuilds the templates.
/// One row per tenant: `tenant_id`, `from_version` and `to_version` (read from its database),
/// `status` (ok | failed | skipped), `message`, `duration_ms`. A failure stops that tenant at
/// its previous version and not the others; a re-run does only what is left. Migrations
/// already applied are committed in the tenant databases whatever this call's transaction
/// does; the catalog's record of versions (`messiah_list_migrations`) is updated by it. A
/// database that applied a version with other SQL than the catalog's (its checksum), or a
/// version the catalog does not have, is `failed` with the reason.
/// Errors: 22023 concurrency < 1 or target_version < 1; 55P03 another run is in progress.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_migrate_tenants(
    concurrency: default!(Option<i32>, 4),
    target_version: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(tenant_id, String),
        name!(from_version, Option<i64>),
        name!(to_version, Option<i64>),
        name!(status, String),
        name!(message, String),
        name!(duration_ms, f64),
    ),
> {
    let concurrency = crate::shim::not_null("concurrency", concurrency);
    let reports = migrations::migrate(concurrency, target_version).or_raise();
    TableIterator::new(reports.into_iter().map(|r| {
        (
            r.tenant_id,
            r.from_version,
            r.to_version,
            r.status.to_string(),
            r.message,
            r.duration_ms,
        )
    }))
}

/// Where every ready tenant stands (or one, with `tenant_id`): `tenant_id`, `server`,
/// `migration_version` (as the last `messiah_migrate_tenants` found it in its database),
/// `latest_version` (the highest registered), `pending` (registered versions above its own),
/// `migrated_at`. Errors: 22023 invalid tenant_id.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, stable, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_list_migrations(
    tenant_id: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(tenant_id, String),
        name!(server, String),
        name!(migration_version, i64),
        name!(latest_version, i64),
        name!(pending, i64),
        name!(migrated_at, Option<TimestampWithTimeZone>),
    ),
> {
    let id = tenant_id.map(|t| crate::shim::tenant_id_arg(Some(t)));
    let rows = migrations::standings(id.as_ref().map(|i| i.as_str()));
    TableIterator::new(rows.into_iter().map(|s| {
        (
            s.tenant_id,
            s.server,
            s.migration_version,
            s.latest_version,
            s.pending,
            s.migrated_at
                .map(pgrx::datum::datetime_support::to_timestamp),
        )
    }))
}

/// Brings every ready tenant database's `messiah_tenant` extension to this admin database's
/// version (`ALTER EXTENSION messiah_tenant UPDATE TO ...` with the upgrade scripts the
/// package ships), at most `concurrency` databases at once, re-applies the tenant's roles and
/// grants after COMMIT, records each tenant's version in the catalog and rebuilds the
/// templates. Run it after `ALTER EXTENSION messiah UPDATE` in the admin database. One row per
/// tenant: `tenant_id`, `from_version`, `to_version` (read from its database), `status` (ok |
/// failed | skipped), `message`, `duration_ms`. A failure is recorded and the others
/// continue; a re-run does only what is left; the tenants keep working meanwhile (no lock on
/// their tables). Errors: 22023 concurrency < 1; 55P03 another run is in progress.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_upgrade_tenants(
    concurrency: default!(Option<i32>, 4),
) -> TableIterator<
    'static,
    (
        name!(tenant_id, String),
        name!(from_version, Option<String>),
        name!(to_version, Option<String>),
        name!(status, String),
        name!(message, String),
        name!(duration_ms, f64),
    ),
> {
    let concurrency = crate::shim::not_null("concurrency", concurrency);
    let reports = upgrades::upgrade(concurrency).or_raise();
    TableIterator::new(reports.into_iter().map(|r| {
        (
            r.tenant_id,
            r.from_version,
            r.to_version,
            r.status.to_string(),
            r.message,
            r.duration_ms,
        )
    }))
}

/// Moves a tenant's database to server `to_server` (NULL: where the placement policy puts a new
/// tenant) with logical replication (see
/// `fleet::moves`): a copy on the target from its template, a publication and subscription,
/// the initial copy while the tenant works, then a cutover during which new routed calls wait
/// (at most `messiah.move_cutover_timeout` for calls in flight, then the catch-up), the
/// tenant's own sessions on the source are ended, sequences are set, and the catalog points to
/// the target at COMMIT. The source database is dropped after COMMIT, or kept (and its role
/// locked out) with `keep_source`. Returns `{"tenant_id","from","to","copy_ms","cutover_ms",
/// "source"}`. A failure leaves the tenant on its source, working; what could not be removed
/// at once goes with `messiah_reconcile(repair => true)`. Called inside a longer transaction,
/// the cutover takes effect (and routed calls wait) until it commits. Errors: 25001 moving off
/// this admin database's own server in a transaction that has written (its slot would wait for
/// it); 22023 already there; 42704 no such tenant or server; 55000 not ready, target not
/// active, source without `wal_level = logical`, tables without a primary key, tenant not at
/// the current versions, code of the tenant's that PG15's replication would run as a
/// superuser (triggers enabled ALWAYS or REPLICA; constraints, indexes, defaults calling its
/// own functions), or the copy failed; 42501 the target's user is not a superuser;
/// 42P04 the target has a database of that name; 55P03 routed calls in flight past the cutover
/// timeout; 57014 `messiah.move_timeout`.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_move_tenant(
    tenant_id: Option<&str>,
    to_server: Option<&str>,
    keep_source: default!(Option<bool>, false),
) -> JsonB {
    let id = crate::shim::tenant_id_arg(tenant_id);
    let to = to_server;
    let keep = crate::shim::not_null("keep_source", keep_source);
    JsonB(moves::move_tenant(id.as_str(), to, keep).or_raise())
}

/// Moves every tenant off server `name`: marks it `draining` (it receives no new tenant),
/// then moves its ready tenants one at a time to the server the placement policy chooses (the
/// active server with the fewest tenants), **each move in its own transaction** (run over a
/// connection of this backend to this admin database, so each tenant's cutover commits on its
/// own and a failure does not stop the others). One row per tenant: `tenant_id`, `to_server`,
/// `status` (moved | failed), `message`, `copy_ms`, `cutover_ms`. Errors: 42704 no such
/// server; 55000 messiah's local server is not registered (the moves run through it).
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_drain_server(
    name: Option<&str>,
    keep_source: default!(Option<bool>, false),
) -> TableIterator<
    'static,
    (
        name!(tenant_id, String),
        name!(to_server, Option<String>),
        name!(status, String),
        name!(message, String),
        name!(copy_ms, Option<f64>),
        name!(cutover_ms, Option<f64>),
    ),
> {
    let name = required("name", name);
    let keep = crate::shim::not_null("keep_source", keep_source);
    let rows = moves::drain(name, keep).or_raise();
    TableIterator::new(rows.into_iter().map(|r| {
        (
            r.tenant_id,
            r.to_server,
            r.status.to_string(),
            r.message,
            r.copy_ms,
            r.cutover_ms,
        )
    }))
}
