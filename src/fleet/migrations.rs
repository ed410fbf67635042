//! Tenant schema migrations: the platform owner changes what every tenant has (issue
//! "Operating the fleet").
//!
//! - `messiah_add_migration(version, sql)` registers one in the catalog (`messiah.migrations`),
//!   with the sha256 of its SQL. Versions are applied in ascending order; a version is
//!   immutable once applied in any tenant database, and a version below one already applied
//!   somewhere is refused (it could never be applied in order there).
//! - `messiah_migrate_tenants(concurrency, target_version)` brings every ready tenant database
//!   to the target (the highest registered version by default). Nothing is read from the
//!   catalog to decide what to do: each database is asked (`messiah.migration_version()`), all
//!   at once over asynchronous connections (`remote::probe`, at most `concurrency`), then each
//!   database that is behind gets its pending migrations in one round trip, **each in its own
//!   transaction** (`BEGIN; SELECT messiah.run_migration(...); COMMIT;` per migration), under
//!   `lock_timeout` = `messiah.migration_lock_timeout`, so a migration never queues a tenant's
//!   writers for long: it fails, is reported, and a re-run retries it. A failure stops that
//!   tenant at its previous version and does not stop the others; a re-run does only what is
//!   left.
//! - The migration runs as the tenant's owner role in a security-restricted operation
//!   (`tenant_side::migrate`): it can change the tenant's schema and nothing else.
//! - New tenants start with every migration applied: the template's name includes the
//!   migrations' fingerprint, so a new migration gives a new template, built with them
//!   (`tenants::provision::ensure_template`).

use super::rounds::{self, report, round, targets};
use crate::err::{Code, Error};
use crate::ident::quote_literal;
use crate::remote::probe;
use crate::remote::Server;
use crate::tenants::catalog::Tenant;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// One registered migration.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub sql: String,
    pub checksum: String,
    pub description: Option<String>,
}

/// Bytes of SQL one migration may hold.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// The sha256 of a migration's SQL, in hex.
pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the catalog has `messiah.migrations` (not when it is still on 0.1.0's SQL, run by
/// this library before `ALTER EXTENSION messiah UPDATE`: there are no migrations then).
fn catalog_has_migrations() -> bool {
    crate::spi::one_ro::<bool>(
        "SELECT pg_catalog.to_regclass('messiah.migrations') IS NOT NULL",
        &[],
    ) == Some(true)
}

impl Migration {
    /// Every registered migration up to `target` (all when `None`), by version.
    pub fn all(target: Option<i64>) -> Vec<Migration> {
        if !catalog_has_migrations() {
            return Vec::new();
        }
        crate::spi::text_rows(
            // ORDER BY m.version: a bare `version` would sort the text output column
            "SELECT m.version::text, m.sql, m.checksum, m.description FROM messiah.migrations m \
             WHERE $1::bigint IS NULL OR m.version <= $1 ORDER BY m.version",
            &[target.into()],
            4,
        )
        .into_iter()
        .map(|r| Migration {
            version: r[0].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            sql: r[1].clone().unwrap_or_default(),
            checksum: r[2].clone().unwrap_or_default(),
            description: r[3].clone(),
        })
        .collect()
    }

    /// `BEGIN; SELECT messiah.run_migration(...); COMMIT;`: this migration in its own
    /// transaction, run as `role`.
    pub fn statement(&self, role: &str) -> String {
        format!(
            "BEGIN; SELECT messiah.run_migration({}, {}, {}, {}, {}); COMMIT;\n",
            self.version,
            quote_literal(&self.sql),
            quote_literal(&self.checksum),
            self.description
                .as_deref()
                .map_or("NULL".into(), quote_literal),
            quote_literal(role)
        )
    }
}

/// What the template's name depends on: every migration's version and checksum (empty
/// without migrations, or without the table: [`catalog_has_migrations`]).
pub fn fingerprint() -> String {
    if !catalog_has_migrations() {
        return String::new();
    }
    crate::spi::one_ro::<String>(
        "SELECT coalesce(string_agg(version::text || ':' || checksum, ',' ORDER BY version), '') \
         FROM messiah.migrations",
        &[],
    )
    .unwrap_or_default()
}

/// `SET lock_timeout` for a migration session.
pub fn session_settings() -> String {
    format!(
        "SET lock_timeout = {}; SET statement_timeout = 0;\n",
        crate::guc::MIGRATION_LOCK_TIMEOUT_MS.get().max(1)
    )
}

/// Registers migration `version` (see the module comment). Errors: 22023 version < 1 or
/// empty SQL; 54000 SQL over 1 MiB; 55000 the version is applied somewhere with other SQL, or
/// is below the highest version applied somewhere.
pub fn add(version: i64, sql: &str, description: Option<&str>) -> Result<Migration, Error> {
    if version < 1 {
        return Err(Error::new(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("migration version {version} is invalid: it must be at least 1"),
        ));
    }
    if sql.trim().is_empty() {
        return Err(Error::new(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            "a migration's sql must not be empty",
        ));
    }
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::new(
            Code::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "a migration's sql is at most {MAX_SQL_BYTES} bytes, got {}",
                sql.len()
            ),
        ));
    }
    crate::spi::run(
        "LOCK TABLE messiah.migrations IN SHARE ROW EXCLUSIVE MODE",
        &[],
    );
    let sum = checksum(sql);
    let applied = crate::spi::one::<i64>(
        "SELECT coalesce(max(migration_version), 0) FROM messiah.tenants",
        &[],
    )
    .unwrap_or(0);
    let existing = crate::spi::one::<String>(
        "SELECT checksum FROM messiah.migrations WHERE version = $1",
        &[version.into()],
    );
    match existing {
        // the same SQL again: only a given description changes (it is not part of the checksum)
        Some(c) if c == sum => {
            if description.is_some() {
                crate::spi::run(
                    "UPDATE messiah.migrations SET description = $2 WHERE version = $1",
                    &[version.into(), description.into()],
                );
            }
        }
        Some(_) if applied >= version => {
            return Err(Error::new(
                Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("migration {version} is applied in tenant databases: it cannot change"),
            )
            .hint("Register the change as a new version."))
        }
        None if applied >= version => {
            return Err(Error::new(
                Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("migration {version} is not above migration {applied}, applied in tenant databases"),
            )
            .detail("Migrations are applied in ascending version order; this one could never be applied there in order (or that version is there already).")
            .hint(format!("Register it with a version above {applied}.")))
        }
        _ => crate::spi::run(
            "INSERT INTO messiah.migrations (version, sql, checksum, description) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (version) DO UPDATE SET sql = excluded.sql, checksum = excluded.checksum, \
                 description = excluded.description, created_at = pg_catalog.now()",
            &[version.into(), sql.into(), sum.as_str().into(), description.into()],
        ),
    }
    Ok(Migration {
        version,
        sql: sql.to_string(),
        checksum: sum,
        description: crate::spi::one::<String>(
            "SELECT description FROM messiah.migrations WHERE version = $1",
            &[version.into()],
        ),
    })
}

/// One row of `messiah_migrate_tenants()`.
pub type Report = rounds::Report<i64>;

/// Asks each tenant's database its migration version (`messiah.migration_version()`).
fn versions(
    tenants: &[&Tenant],
    servers: &HashMap<i64, Server>,
    concurrency: usize,
    timeout: Duration,
) -> Vec<probe::Outcome> {
    round(
        tenants,
        servers,
        |_| VERSION_PROBE_SQL.into(),
        concurrency,
        timeout,
    )
}

/// A database's migration version and the checksum it applied at that version, as
/// `<version>:<checksum>` (`0:` when it has none).
const VERSION_PROBE_SQL: &str = "SELECT s.v::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) \
     coalesce((SELECT a.checksum FROM messiah.applied_migrations a WHERE a.version OPERATOR(pg_catalog.=) s.v), '') \
     FROM (SELECT messiah.migration_version() AS v) s";

/// Parses a `VERSION_PROBE_SQL` value.
fn probed(value: Option<&str>) -> Option<(i64, &str)> {
    let (v, sum) = value?.split_once(':')?;
    Some((v.parse().ok()?, sum))
}

/// Why a database at `version` with `checksum` disagrees with the catalog's migrations, if it
/// does: it holds a version the catalog has with other SQL (re-registered after a run whose
/// calling transaction rolled back), or one the catalog does not have at all. Verified in each
/// database, not read from the catalog (issue "Operating the fleet").
fn disagreement(catalog: &HashMap<i64, String>, version: i64, checksum: &str) -> Option<String> {
    if version == 0 {
        return None;
    }
    match catalog.get(&version) {
        Some(c) if c == checksum => None,
        Some(c) => Some(format!(
            "its database applied migration {version} with checksum {checksum}, the catalog's migration {version} has checksum {c} (registered again with other SQL after a run that did not commit): register it again with the SQL applied there, or repair that database"
        )),
        None => Some(format!(
            "its database applied migration {version} (checksum {checksum}), which the catalog does not have (registered by a transaction that did not commit): register it with the SQL applied there"
        )),
    }
}

/// `messiah_migrate_tenants` (see the module comment). Errors: 22023 concurrency < 1 or
/// target_version < 1; 55P03 another run is in progress.
pub fn migrate(concurrency: i32, target: Option<i64>) -> Result<Vec<Report>, Error> {
    if let Some(t) = target.filter(|t| *t < 1) {
        return Err(Error::new(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("target_version {t} is invalid: migration versions start at 1"),
        )
        .hint("Leave it NULL for the latest migration."));
    }
    let concurrency = rounds::start("messiah_migrate_tenants", concurrency)?;
    let catalog: HashMap<i64, String> = Migration::all(None)
        .into_iter()
        .map(|m| (m.version, m.checksum))
        .collect();
    let migrations = Migration::all(target);
    let target_version = migrations.last().map_or(0, |m| m.version);
    let servers: HashMap<i64, Server> = Server::all().into_iter().map(|s| (s.id, s)).collect();
    let (tenants, mut out) = targets(
        &servers,
        "a supabase tenant has no messiah library in its project's database: migrate it with the project's own tools",
    );
    let connect = rounds::connect_timeout();
    let all: Vec<&Tenant> = tenants.iter().collect();
    let found = versions(&all, &servers, concurrency, connect);
    let mut behind = Vec::new();
    for (t, o) in tenants.iter().zip(found) {
        let found = probed(o.value.as_deref());
        let mut r = report(t, "ok", "");
        r.duration_ms = o.elapsed.as_secs_f64() * 1000.0;
        if let Some(why) = found.and_then(|(v, sum)| disagreement(&catalog, v, sum)) {
            // not recorded in the catalog: what the databases hold and the catalog agree on
            // is what `add` protects, so registering the applied SQL again repairs this
            r.status = "failed";
            r.from_version = found.map(|(v, _)| v);
            r.message = why;
            out.push(r);
            continue;
        }
        match (o.ok, found.map(|(v, _)| v)) {
            (true, Some(v)) if v >= target_version => {
                r.from_version = Some(v);
                r.to_version = Some(v);
                r.message = "nothing to do".into();
                out.push(r);
            }
            (true, Some(v)) => behind.push((t, v, r)),
            _ => {
                r.status = "failed";
                r.message = format!("could not read its migration version: {}", o.message);
                out.push(r);
            }
        }
    }
    let pending = |t: &Tenant, from: i64| -> String {
        let mut sql = session_settings();
        for m in migrations.iter().filter(|m| m.version > from) {
            sql.push_str(&m.statement(&t.owner_role));
        }
        sql.push_str("SELECT messiah.migration_version();");
        sql
    };
    let from: HashMap<&str, i64> = behind
        .iter()
        .map(|(t, v, _)| (t.tenant_id.as_str(), *v))
        .collect();
    let work: Vec<&Tenant> = behind.iter().map(|(t, _, _)| *t).collect();
    let applied = round(
        &work,
        &servers,
        |t| pending(t, from[t.tenant_id.as_str()]),
        concurrency,
        Duration::from_secs(3600),
    );
    let mut failed = Vec::new();
    for ((t, v, mut r), o) in behind.into_iter().zip(applied) {
        r.from_version = Some(v);
        r.duration_ms += o.elapsed.as_secs_f64() * 1000.0;
        if o.ok {
            r.to_version = o.value.as_deref().and_then(|x| x.parse().ok());
            r.message = format!(
                "applied {} migration(s)",
                migrations.iter().filter(|m| m.version > v).count()
            );
            out.push(r);
        } else {
            r.status = "failed";
            r.message = o.message;
            failed.push((t, r));
        }
    }
    // where the failed ones stopped, read again from their databases
    let stopped: Vec<&Tenant> = failed.iter().map(|(t, _)| *t).collect();
    let now = versions(&stopped, &servers, concurrency, connect);
    for ((_, mut r), o) in failed.into_iter().zip(now) {
        r.to_version = probed(o.value.as_deref()).map(|(v, _)| v);
        out.push(r);
    }
    record(&out);
    rounds::rebuild_templates(&servers, &tenants);
    out.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    Ok(out)
}

/// Records in the catalog the versions found in the databases.
fn record(reports: &[Report]) {
    for r in reports {
        if let Some(v) = r.to_version {
            crate::spi::run(
                "UPDATE messiah.tenants SET migration_version = $2, migrated_at = pg_catalog.now() \
                 WHERE tenant_id = $1 AND migration_version IS DISTINCT FROM $2",
                &[r.tenant_id.as_str().into(), v.into()],
            );
        }
    }
}

/// One row of `messiah_list_migrations()`.
#[derive(Debug, Clone)]
pub struct Standing {
    pub tenant_id: String,
    pub server: String,
    pub migration_version: i64,
    pub latest_version: i64,
    pub pending: i64,
    /// Unix time of the last run that found its version.
    pub migrated_at: Option<f64>,
}

/// Where every tenant (or one) stands, as the last `messiah_migrate_tenants` found it.
pub fn standings(tenant_id: Option<&str>) -> Vec<Standing> {
    crate::spi::text_rows(
        "SELECT t.tenant_id, s.name::text, t.migration_version::text, \
                coalesce((SELECT max(version) FROM messiah.migrations), 0)::text, \
                (SELECT count(*) FROM messiah.migrations m WHERE m.version > t.migration_version)::text, \
                extract(epoch FROM t.migrated_at)::text \
         FROM messiah.tenants t JOIN messiah.servers s ON s.id = t.server_id \
         WHERE t.lifecycle = 'ready' AND ($1::text IS NULL OR t.tenant_id = $1) ORDER BY t.tenant_id",
        &[tenant_id.into()],
        6,
    )
    .into_iter()
    .map(|r| {
        let n = |i: usize| r[i].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        Standing {
            tenant_id: r[0].clone().unwrap_or_default(),
            server: r[1].clone().unwrap_or_default(),
            migration_version: n(2),
            latest_version: n(3),
            pending: n(4),
            migrated_at: r[5].as_deref().and_then(|v| v.parse().ok()),
        }
    })
    .collect()
}
