//! Tenant schema migrations, applied inside a tenant database (or a template) by the admin's
//! `messiah_migrate_tenants` over a maintenance connection (`fleet::migrations`).
//!
//! A migration is the platform owner's SQL and must change the tenant's schema and nothing
//! else, so it does not run with the maintenance connection's (superuser) rights: it runs as
//! the tenant's owner role inside a *security-restricted operation*, the way Postgres runs
//! a table owner's code in `REFRESH MATERIALIZED VIEW`, `CREATE INDEX` or autovacuum
//! (`SetUserIdAndSecContext(owner, SECURITY_RESTRICTED_OPERATION)`): `SET ROLE`, `RESET ROLE`
//! and `SET SESSION AUTHORIZATION` are refused there, so the SQL cannot take back the
//! session's rights. Its GUC changes are undone at the end (`NewGUCNestLevel`/`AtEOXact_GUC`),
//! and its `search_path` is `public`.

use crate::err::{Code, Error, OrRaise};
use pgrx::prelude::*;
use std::time::Instant;

/// Applies migration `version` (see the SQL COMMENT of `messiah.run_migration`).
#[pg_extern(sql = false)]
fn run_migration(
    version: i64,
    sql: &str,
    checksum: &str,
    description: Option<&str>,
    run_as: &str,
) -> String {
    if let Some(done) = crate::spi::one::<String>(
        "SELECT checksum FROM messiah.applied_migrations WHERE version = $1",
        &[version.into()],
    ) {
        if done == checksum {
            return "unchanged".into();
        }
        Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("migration {version} was applied here with other SQL (checksum {done})"),
        )
        .hint("An applied migration is immutable: register a new version with the change.")
        .raise();
    }
    let current = crate::spi::one::<i64>("SELECT messiah.migration_version()", &[]).unwrap_or(0);
    if current > version {
        Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("migration {version} is older than migration {current}, applied here"),
        )
        .hint("Migrations are applied in ascending version order: register a version above every applied one.")
        .raise();
    }
    let role = crate::spi::one::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[run_as.into()],
    )
    .ok_or_else(|| {
        Error::new(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{run_as}\" does not exist"),
        )
    })
    .or_raise();
    let started = Instant::now();
    {
        let _user = crate::spi::AsUser::enter(role, pg_sys::SECURITY_RESTRICTED_OPERATION as i32);
        let _path = crate::spi::PinnedSearchPath::with(c"public");
        run_sql(version, sql);
    }
    crate::spi::run(
        "INSERT INTO messiah.applied_migrations (version, checksum, description, duration_ms) \
         VALUES ($1, $2, $3, $4)",
        &[
            version.into(),
            checksum.into(),
            description.into(),
            (started.elapsed().as_secs_f64() * 1000.0).into(),
        ],
    );
    "applied".into()
}

/// Runs migration `version`'s SQL. A statement that ends the transaction (`COMMIT`,
/// `ROLLBACK`: SPI refuses them with SPI_ERROR_TRANSACTION) is 2D000, as Postgres' own
/// "invalid transaction termination"; the error names the version, never the SQL (up to 1 MiB).
fn run_sql(version: i64, sql: &str) {
    use pgrx::spi::{SpiError, SpiErrorCodes};
    match Spi::run(sql) {
        Ok(()) => {}
        Err(SpiError::SpiError(SpiErrorCodes::Transaction)) => Error::new(
            Code::ERRCODE_INVALID_TRANSACTION_TERMINATION,
            format!("migration {version} ends its transaction (COMMIT or ROLLBACK)"),
        )
        .detail("Each migration runs in a transaction of its own in each tenant database.")
        .hint("Remove the COMMIT or ROLLBACK; split the SQL into two versions if it needs two transactions.")
        .raise(),
        Err(e) => crate::err::internal(&format!("running migration {version}"), e),
    }
}
