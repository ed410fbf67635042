//! Health checks (the original design's "Health", done for a fleet): the admin database,
//! every registered server, every active tenant.
//!
//! A tenant is healthy when its application role can log in to its database and run a
//! statement (what a routed call needs), and, for a provisioned database, the catalog copy
//! (`messiah.field_snapshot`, read through `messiah.field_snapshot_version()`, which the role
//! may execute) is at the catalog's version (what its trigger enforces): one connection per
//! tenant. All checks run concurrently (`remote::probe`), at most
//! `messiah.health_concurrency` connections at once, each bounded by `messiah.health_timeout`.
//! Servers are checked first: the tenants of a server that does not answer are reported
//! unhealthy without a connection each, so a dead server costs one timeout, not one per tenant.

use crate::remote::probe::{self, Outcome, Probe};
use crate::remote::Server;
use crate::tenants::catalog::{installation_id, Tenant};
use crate::tenants::roles;
use std::time::{Duration, Instant};

/// One row of `messiah_health()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    /// `admin`, `server` or `tenant`.
    pub kind: &'static str,
    /// `healthy`, `unhealthy` or `unknown` (not checked: offline server, suspended tenant...).
    pub status: &'static str,
    pub message: String,
    /// Milliseconds the check took (connect included); `None` when nothing was run.
    pub latency_ms: Option<f64>,
}

fn ms(d: Duration) -> Option<f64> {
    Some(d.as_secs_f64() * 1000.0)
}

fn settings() -> (usize, Duration) {
    (
        crate::guc::HEALTH_CONCURRENCY.get().max(1) as usize,
        Duration::from_millis(crate::guc::HEALTH_TIMEOUT_MS.get().max(1) as u64),
    )
}

/// The admin database: the catalog answers.
fn admin() -> Check {
    let t0 = Instant::now();
    let n = crate::spi::one::<i64>("SELECT count(*) FROM messiah.tenants", &[]);
    Check {
        name: crate::spi::current_database(),
        kind: "admin",
        status: if n.is_some() { "healthy" } else { "unhealthy" },
        message: match n {
            Some(n) => format!("catalog readable, {n} tenant row(s)"),
            None => "the catalog could not be read".into(),
        },
        latency_ms: ms(t0.elapsed()),
    }
}

fn unknown(name: &str, kind: &'static str, message: String) -> Check {
    Check {
        name: name.to_string(),
        kind,
        status: "unknown",
        message,
        latency_ms: None,
    }
}

/// Checks the admin database, `servers` and `tenants` (each tenant's server must be among
/// `servers`); returns admin first, then servers, then tenants, in the order given.
pub fn check(servers: &[Server], tenants: &[Tenant]) -> Vec<Check> {
    let (concurrency, timeout) = settings();
    let mut out = vec![admin()];
    let checked: Vec<&Server> = servers.iter().filter(|s| s.status != "offline").collect();
    let probes: Vec<Probe> = checked
        .iter()
        .map(|s| Probe {
            params: s.maintenance().params(),
            sql: "SELECT pg_catalog.version()".into(),
        })
        .collect();
    let found = probe::run(&probes, concurrency, timeout);
    let mut down: Vec<(i64, String)> = Vec::new();
    for s in servers {
        if s.status == "offline" {
            out.push(unknown(
                &s.name,
                "server",
                "marked offline: not checked".into(),
            ));
            continue;
        }
        let i = checked.iter().position(|c| c.id == s.id).unwrap_or(0);
        let o = &found[i];
        if !o.ok {
            down.push((s.id, o.message.clone()));
        }
        out.push(Check {
            name: s.name.clone(),
            kind: "server",
            status: if o.ok { "healthy" } else { "unhealthy" },
            message: if o.ok {
                format!("reachable ({})", short_version(o.value.as_deref()))
            } else {
                o.message.clone()
            },
            latency_ms: ms(o.elapsed),
        });
    }
    out.extend(tenant_checks(servers, tenants, &down, concurrency, timeout));
    out
}

/// `PostgreSQL 15.8 (Debian ...) on x86_64...` -> `PostgreSQL 15.8`.
fn short_version(v: Option<&str>) -> String {
    v.unwrap_or("")
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What is checked for one tenant: its probe (an index into the probe list), or a result
/// decided without connecting.
enum Plan {
    Probe { login: usize },
    Decided(Check),
}

fn tenant_checks(
    servers: &[Server],
    tenants: &[Tenant],
    down: &[(i64, String)],
    concurrency: usize,
    timeout: Duration,
) -> Vec<Check> {
    let installation = installation_id();
    let mut probes = Vec::new();
    let mut plans = Vec::new();
    for t in tenants {
        plans.push(plan(t, servers, down, &installation, &mut probes));
    }
    let found = probe::run(&probes, concurrency, timeout);
    tenants
        .iter()
        .zip(plans)
        .map(|(t, p)| match p {
            Plan::Decided(c) => c,
            Plan::Probe { login } => judge(t, &found[login]),
        })
        .collect()
}

fn plan(
    t: &Tenant,
    servers: &[Server],
    down: &[(i64, String)],
    installation: &str,
    probes: &mut Vec<Probe>,
) -> Plan {
    let name = &t.tenant_id;
    if t.status != "active" {
        return Plan::Decided(unknown(
            name,
            "tenant",
            format!("{}: not checked", t.status),
        ));
    }
    if !t.is_ours() {
        return Plan::Decided(unknown(
            name,
            "tenant",
            format!("managed by installation {}: not checked", t.installation_id),
        ));
    }
    let Some(server) = servers.iter().find(|s| s.id == t.server_id) else {
        return Plan::Decided(unknown(name, "tenant", "its server is not listed".into()));
    };
    if server.status == "offline" {
        return Plan::Decided(unknown(
            name,
            "tenant",
            format!("server \"{}\" is marked offline: not checked", server.name),
        ));
    }
    if let Some((_, why)) = down.iter().find(|(id, _)| *id == server.id) {
        return Plan::Decided(Check {
            name: name.clone(),
            kind: "tenant",
            status: "unhealthy",
            message: format!("server \"{}\" does not answer: {why}", server.name),
            latency_ms: None,
        });
    }
    let mut ep = server.database(&t.database_name);
    match roles::login(t, installation) {
        Ok(l) => ep.login = Some(l),
        Err(e) => {
            return Plan::Decided(unknown(
                name,
                "tenant",
                format!("no login to check with: {}", e.message),
            ))
        }
    }
    // one connection per tenant: as its application role, which may read the copy's version
    // (messiah.field_snapshot_version(), granted to it) but not the copy
    probes.push(Probe {
        params: ep.params(),
        sql: if t.is_supabase() {
            "SELECT NULL::pg_catalog.text".into()
        } else {
            "SELECT coalesce(messiah.field_snapshot_version()::pg_catalog.text, 'none')".into()
        },
    });
    Plan::Probe {
        login: probes.len() - 1,
    }
}

fn judge(t: &Tenant, login: &Outcome) -> Check {
    let want = t.snapshot_version.to_string();
    let problem = if !login.ok {
        Some(format!(
            "the application role's check failed: {}",
            login.message
        ))
    } else if !t.is_supabase() && login.value.as_deref() != Some(want.as_str()) {
        Some(format!(
            "the catalog copy is at version {}, the catalog at {want} (a push is pending or failed: messiah_reconcile() lists it)",
            login.value.as_deref().unwrap_or("none")
        ))
    } else {
        None
    };
    Check {
        name: t.tenant_id.clone(),
        kind: "tenant",
        status: if problem.is_none() {
            "healthy"
        } else {
            "unhealthy"
        },
        message: match problem {
            Some(p) => p,
            None if t.is_supabase() => "the application role logs in and runs a statement".into(),
            None => "the application role logs in; the catalog copy is current".into(),
        },
        latency_ms: ms(login.elapsed),
    }
}
