//! Versioned upgrades of every tenant database (issue "Operating the fleet").
//!
//! One `$libdir/messiah` serves every version: after a new package is installed, the admin
//! database runs `ALTER EXTENSION messiah UPDATE` (its catalog and API), and
//! `messiah_upgrade_tenants()` brings each tenant database's `messiah_tenant` extension to the
//! admin's version with `ALTER EXTENSION messiah_tenant UPDATE TO '<version>'` (the
//! hand-written `messiah_tenant--A--B.sql` scripts the package ships), concurrently over
//! asynchronous connections like the migrations. What a version changes in the tenant's roles
//! and grants is then applied by the outbox's role action after COMMIT. The catalog records
//! each tenant's version (`tenants.extension_version`), the templates are rebuilt for the new
//! version, and a re-run does only what is left. `ALTER EXTENSION ... UPDATE` takes no lock on
//! the tenant's tables, so the tenant keeps working while it runs.

use super::rounds::{self, report, round, targets};
use crate::err::Error;
use crate::ident::quote_literal;
use crate::remote::Server;
use crate::tenants::catalog::Tenant;
use crate::tenants::outbox;
use std::collections::HashMap;
use std::time::Duration;

/// One row of `messiah_upgrade_tenants()`.
pub type Report = rounds::Report<String>;

const VERSION_SQL: &str = "SELECT extversion FROM pg_catalog.pg_extension \
                           WHERE extname OPERATOR(pg_catalog.=) 'messiah_tenant'";

/// `1.10.0` > `1.9.0`: versions compared by their numeric parts.
pub fn newer(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) > parts(b)
}

/// This admin database's extension version (the target).
pub fn admin_version() -> String {
    crate::spi::one_ro::<String>(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'messiah'",
        &[],
    )
    .unwrap_or_default()
}

/// `messiah_upgrade_tenants` (see the module comment). Errors: 22023 concurrency < 1; 55P03
/// another run is in progress.
pub fn upgrade(concurrency: i32) -> Result<Vec<Report>, Error> {
    let concurrency = rounds::start("messiah_upgrade_tenants", concurrency)?;
    let target = admin_version();
    let servers: HashMap<i64, Server> = Server::all().into_iter().map(|s| (s.id, s)).collect();
    let (tenants, mut out) = targets(
        &servers,
        "a supabase tenant's project database has no messiah_tenant extension",
    );
    let all: Vec<&Tenant> = tenants.iter().collect();
    let found = round(
        &all,
        &servers,
        |_| VERSION_SQL.into(),
        concurrency,
        rounds::connect_timeout(),
    );
    let mut behind = Vec::new();
    for (t, o) in tenants.iter().zip(found) {
        let mut r: Report = report(t, "ok", "");
        r.duration_ms = o.elapsed.as_secs_f64() * 1000.0;
        r.from_version = o.value.clone();
        r.to_version = o.value.clone();
        match o.value {
            _ if !o.ok => {
                r.status = "failed";
                r.message = format!("could not read its version: {}", o.message);
                out.push(r);
            }
            None => {
                r.status = "failed";
                r.message = "messiah_tenant is not installed in its database".into();
                out.push(r);
            }
            Some(v) if v == target => {
                r.message = "nothing to do".into();
                out.push(r);
            }
            Some(v) if newer(&v, &target) => {
                r.status = "skipped";
                r.message = format!("its version {v} is newer than the admin's {target}");
                out.push(r);
            }
            Some(_) => behind.push((t, r)),
        }
    }
    let work: Vec<&Tenant> = behind.iter().map(|(t, _)| *t).collect();
    let sql = format!(
        "SET lock_timeout = {}; ALTER EXTENSION messiah_tenant UPDATE TO {}; {VERSION_SQL}",
        crate::guc::MIGRATION_LOCK_TIMEOUT_MS.get().max(1),
        quote_literal(&target)
    );
    let done = round(
        &work,
        &servers,
        |_| sql.clone(),
        concurrency,
        Duration::from_secs(3600),
    );
    let mut failed = Vec::new();
    for ((t, mut r), o) in behind.into_iter().zip(done) {
        r.duration_ms += o.elapsed.as_secs_f64() * 1000.0;
        if o.ok {
            r.to_version = o.value;
            r.message = format!("upgraded to {target}");
            // the new version's grants and role settings, after COMMIT
            outbox::enqueue(outbox::Action::ApplyRoles, t);
            out.push(r);
        } else {
            r.status = "failed";
            r.message = o.message;
            failed.push((t, r));
        }
    }
    let stopped: Vec<&Tenant> = failed.iter().map(|(t, _)| *t).collect();
    let now = round(
        &stopped,
        &servers,
        |_| VERSION_SQL.into(),
        concurrency,
        rounds::connect_timeout(),
    );
    for ((_, mut r), o) in failed.into_iter().zip(now) {
        r.to_version = o.value;
        out.push(r);
    }
    for r in &out {
        if let Some(v) = &r.to_version {
            crate::spi::run(
                "UPDATE messiah.tenants SET extension_version = $2 \
                 WHERE tenant_id = $1 AND extension_version IS DISTINCT FROM $2",
                &[r.tenant_id.as_str().into(), v.as_str().into()],
            );
        }
    }
    rounds::rebuild_templates(&servers, &tenants);
    out.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_compare_by_their_numbers() {
        assert!(super::newer("0.10.0", "0.9.0"));
        assert!(super::newer("0.2.0", "0.1.0"));
        assert!(!super::newer("0.2.0", "0.2.0"));
        assert!(!super::newer("0.1.9", "0.2.0"));
    }
}
