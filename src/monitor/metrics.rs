//! `messiah_metrics()` and `messiah_tenant_stats()`: the fleet's numbers, named and typed the
//! Prometheus way (`snake_case`, base units: seconds and bytes, counters ending in `_total`;
//! https://prometheus.io/docs/practices/naming/).
//!
//! Where each number comes from:
//! - tenants by status and server: the catalog;
//! - provisionings, routed calls, the executor's sweeps: this cluster's shared memory
//!   (`counters`), for this admin database;
//! - the result cache: this cluster's shared memory (the cache is shared by every admin
//!   database of the cluster);
//! - field validations and rejections: where the trigger runs, on each tenant's server. The
//!   admin gathers them when asked: this cluster's from its own shared memory, every other
//!   registered server's over one maintenance connection into one of its tenant databases
//!   (`messiah.validation_counters()`, which that server's own monitoring may also read).

use super::counters;
use crate::remote::{self, Server};
use crate::tenants::catalog::Tenant;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// `counter` or `gauge` (Prometheus metric types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One sample: a family's name, its labels, its value, the family's help and type.
#[derive(Debug, Clone)]
pub struct Sample {
    pub metric: &'static str,
    pub labels: Map<String, Value>,
    pub value: f64,
    pub help: &'static str,
    pub kind: Kind,
}

/// A metric family: name, type and help, defined once.
struct Family(&'static str, Kind, &'static str);

const TENANTS: Family = Family(
    "messiah_tenants",
    Kind::Gauge,
    "Tenants in the catalog, by status (the lifecycle while not ready) and server.",
);
const PROV_STARTED: Family = Family(
    "messiah_provisionings_started_total",
    Kind::Counter,
    "Tenant database creations started (at COMMIT of messiah_create_tenant, or by reconcile).",
);
const PROV_FAILED: Family = Family(
    "messiah_provisionings_failed_total",
    Kind::Counter,
    "Tenant database creations that failed.",
);
const PROV_SUM: Family = Family(
    "messiah_provisioning_duration_seconds_sum",
    Kind::Counter,
    "Seconds spent in tenant database creations that succeeded.",
);
const PROV_COUNT: Family = Family(
    "messiah_provisioning_duration_seconds_count",
    Kind::Counter,
    "Tenant database creations that succeeded.",
);
const VALIDATED: Family = Family("messiah_field_validations_total", Kind::Counter, "Rows whose custom_fields the trigger validated, by tenant and table (counted on the tenant's server since it started).");
const REJECTED: Family = Family(
    "messiah_field_rejections_total",
    Kind::Counter,
    "Rows the trigger rejected (23514), by tenant and table.",
);
const ROUTED: Family = Family("messiah_routed_calls_total", Kind::Counter, "Routed calls (messiah_tenant_query, _insert, _update, _delete), by tenant; reads served from the result cache included.");
const ROUTED_ERRORS: Family = Family(
    "messiah_routed_errors_total",
    Kind::Counter,
    "Routed calls that failed in or on the way to the tenant's database, by tenant.",
);
const ROUTED_SUM: Family = Family(
    "messiah_routed_duration_seconds_sum",
    Kind::Counter,
    "Seconds spent in routed calls, by tenant.",
);
const ROUTED_COUNT: Family = Family(
    "messiah_routed_duration_seconds_count",
    Kind::Counter,
    "Routed calls timed, by tenant.",
);
const CACHE_HITS: Family = Family(
    "messiah_cache_hits_total",
    Kind::Counter,
    "Routed reads served from the result cache (cluster-wide).",
);
const CACHE_MISSES: Family = Family(
    "messiah_cache_misses_total",
    Kind::Counter,
    "Routed reads with max_age not found in the result cache, or found older than max_age.",
);
const CACHE_EVICTIONS: Family = Family(
    "messiah_cache_evictions_total",
    Kind::Counter,
    "Result cache entries evicted to make room (least recently used first).",
);
const CACHE_ENTRIES: Family = Family(
    "messiah_cache_entries",
    Kind::Gauge,
    "Entries in the result cache.",
);
const CACHE_BYTES: Family = Family(
    "messiah_cache_bytes",
    Kind::Gauge,
    "Bytes of keys and values held by the result cache.",
);
const CACHE_CAPACITY: Family = Family(
    "messiah_cache_capacity_bytes",
    Kind::Gauge,
    "Bytes the result cache may hold (messiah.result_cache_size, less its directory).",
);
const SWEEPS: Family = Family(
    "messiah_sweeper_runs_total",
    Kind::Counter,
    "Executor passes that swept the servers for databases left by aborted creations.",
);
const SWEEP_LAST: Family = Family(
    "messiah_sweeper_last_run_timestamp_seconds",
    Kind::Gauge,
    "Unix time of the last sweep (0: none since the server started).",
);
const SWEPT: Family = Family(
    "messiah_sweeper_databases_swept_total",
    Kind::Counter,
    "Databases the sweeps dropped.",
);
const SERVER_UP: Family = Family("messiah_server_counters_up", Kind::Gauge, "1 when the server's validation counters were gathered, 0 when not (unreachable, or messiah not preloaded there).");
const OVERFLOW: Family = Family(
    "messiah_counter_overflow_total",
    Kind::Counter,
    "Counts dropped because a counter table in shared memory was full (this cluster).",
);

struct Out<'a> {
    prefix: Option<&'a str>,
    samples: Vec<Sample>,
}

impl Out<'_> {
    /// Whether any family starting with `start` is asked for.
    fn wants(&self, start: &str) -> bool {
        self.prefix
            .is_none_or(|p| start.starts_with(p) || p.starts_with(start))
    }

    fn push(&mut self, f: &Family, labels: Value, value: f64) {
        if self.prefix.is_some_and(|p| !f.0.starts_with(p)) {
            return;
        }
        let Value::Object(labels) = labels else {
            return;
        };
        self.samples.push(Sample {
            metric: f.0,
            labels,
            value,
            help: f.2,
            kind: f.1,
        });
    }
}

/// The samples of every family whose name starts with `prefix` (all when `None`: one
/// exporter query per family then gathers nothing it does not return). Families kept in
/// shared memory are absent when messiah is not preloaded (a NOTICE says so).
pub fn collect(prefix: Option<&str>) -> Vec<Sample> {
    let mut out = Out {
        prefix,
        samples: Vec::new(),
    };
    if out.wants(TENANTS.0) {
        tenants(&mut out);
    }
    if !counters::available() {
        if out.wants("messiah_") && prefix.is_none_or(|p| p != TENANTS.0) {
            pgrx::notice!(
                "messiah is not in shared_preload_libraries: its counters (provisionings, routed calls, the result cache, sweeps, validations) are absent"
            );
        }
        return out.samples;
    }
    if out.wants("messiah_provisioning") || out.wants("messiah_sweeper") {
        database_counters(&mut out);
    }
    if out.wants("messiah_routed") {
        routed(&mut out);
    }
    if out.wants("messiah_cache") {
        cache(&mut out);
    }
    if out.wants("messiah_field") || out.wants(SERVER_UP.0) {
        let servers = Server::all();
        let gathered = gather(&servers, false);
        for g in &gathered {
            out.push(&SERVER_UP, json!({"server": g.server}), g.up as u8 as f64);
        }
        for v in gathered.iter().flat_map(|g| &g.tables) {
            let labels = json!({"tenant": v.tenant_id, "table": v.table});
            out.push(&VALIDATED, labels.clone(), v.validated as f64);
            out.push(&REJECTED, labels, v.rejected as f64);
        }
    }
    out.push(&OVERFLOW, json!({}), counters::overflow() as f64);
    out.samples
}

fn tenants(out: &mut Out) {
    let rows = crate::spi::text_rows(
        "SELECT CASE WHEN t.lifecycle = 'ready' THEN t.status ELSE t.lifecycle END, s.name, count(*)::text \
         FROM messiah.tenants t JOIN messiah.servers s ON s.id = t.server_id GROUP BY 1, 2 ORDER BY 1, 2",
        &[],
        3,
    );
    for r in rows {
        let v = r[2].as_deref().and_then(|n| n.parse().ok()).unwrap_or(0.0);
        out.push(&TENANTS, json!({"status": r[0], "server": r[1]}), v);
    }
}

fn database_counters(out: &mut Out) {
    let Some(d) = counters::db_counts() else {
        return;
    };
    let none = json!({});
    out.push(&PROV_STARTED, none.clone(), d.provisionings_started as f64);
    out.push(&PROV_FAILED, none.clone(), d.provisionings_failed as f64);
    out.push(&PROV_SUM, none.clone(), d.provisioning_us as f64 / 1e6);
    out.push(&PROV_COUNT, none.clone(), d.provisionings_done as f64);
    out.push(&SWEEPS, none.clone(), d.sweeps as f64);
    out.push(&SWEEP_LAST, none.clone(), d.last_sweep_ms as f64 / 1e3);
    out.push(&SWEPT, none, d.databases_swept as f64);
}

fn routed(out: &mut Out) {
    let mut rows = counters::routed_counts().unwrap_or_default();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (tenant, c) in rows {
        let labels = json!({ "tenant": tenant });
        out.push(&ROUTED, labels.clone(), c.calls as f64);
        out.push(&ROUTED_ERRORS, labels.clone(), c.errors as f64);
        out.push(&ROUTED_SUM, labels.clone(), c.duration_us as f64 / 1e6);
        out.push(&ROUTED_COUNT, labels, c.calls as f64);
    }
}

fn cache(out: &mut Out) {
    let s = crate::cache::results::stats().unwrap_or_default();
    let none = json!({});
    out.push(&CACHE_HITS, none.clone(), s.hits as f64);
    out.push(&CACHE_MISSES, none.clone(), s.misses as f64);
    out.push(&CACHE_EVICTIONS, none.clone(), s.evictions as f64);
    out.push(&CACHE_ENTRIES, none.clone(), s.entries as f64);
    out.push(&CACHE_BYTES, none.clone(), s.bytes as f64);
    out.push(&CACHE_CAPACITY, none, s.capacity as f64);
}

/// One tenant table's validation counts.
#[derive(Debug, Clone)]
pub struct TableCounts {
    pub tenant_id: String,
    pub table: String,
    pub validated: u64,
    pub rejected: u64,
}

/// What was gathered from one server.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub server: String,
    pub up: bool,
    pub tables: Vec<TableCounts>,
    /// Database name to size in bytes (when asked).
    pub sizes: HashMap<String, i64>,
}

/// Validation counts (and database sizes when `sizes`) of this installation's tenants, from
/// each registered server that is not offline. A server that cannot be read is `up: false`
/// with a NOTICE naming why; it never fails the call.
pub fn gather(servers: &[Server], sizes: bool) -> Vec<Gathered> {
    let tenants: Vec<Tenant> = Tenant::all_ready()
        .into_iter()
        .filter(|t| !t.is_supabase())
        .collect();
    servers
        .iter()
        .filter(|s| s.status != "offline")
        .map(|s| {
            let mine: HashMap<&str, &str> = tenants
                .iter()
                .filter(|t| t.server_id == s.id)
                .map(|t| (t.database_name.as_str(), t.tenant_id.as_str()))
                .collect();
            let read = if s.is_local() {
                read_local(sizes)
            } else {
                read_remote(s, mine.keys().next().copied(), sizes)
            };
            match read {
                Ok((rows, db_sizes)) => Gathered {
                    server: s.name.clone(),
                    up: true,
                    tables: rows
                        .into_iter()
                        .filter_map(|(db, name, v, r)| {
                            let tenant = mine.get(db.as_str())?;
                            let table = name.strip_prefix("public.")?;
                            Some(TableCounts {
                                tenant_id: tenant.to_string(),
                                table: table.to_string(),
                                validated: v,
                                rejected: r,
                            })
                        })
                        .collect(),
                    sizes: db_sizes,
                },
                Err(why) => {
                    pgrx::notice!("server \"{}\": counters not gathered: {why}", s.name);
                    Gathered {
                        server: s.name.clone(),
                        up: false,
                        tables: Vec::new(),
                        sizes: HashMap::new(),
                    }
                }
            }
        })
        .collect()
}

type Read = (Vec<(String, String, u64, u64)>, HashMap<String, i64>);

fn read_local(sizes: bool) -> Result<Read, String> {
    let counts = counters::validation_counts()
        .ok_or("messiah is not in shared_preload_libraries on this server")?;
    let names: HashMap<String, String> = crate::spi::text_rows(
        "SELECT oid::text, datname::text FROM pg_catalog.pg_database",
        &[],
        2,
    )
    .into_iter()
    .filter_map(|r| Some((r[0].clone()?, r[1].clone()?)))
    .collect();
    let rows = counts
        .into_iter()
        .filter_map(|c| {
            let db = names.get(&c.database_oid.to_string())?;
            Some((db.clone(), c.name, c.validated, c.rejected))
        })
        .collect();
    let db_sizes = if sizes {
        crate::spi::text_rows(
            "SELECT datname::text, pg_catalog.pg_database_size(oid)::text FROM pg_catalog.pg_database WHERE datallowconn",
            &[],
            2,
        )
        .into_iter()
        .filter_map(|r| Some((r[0].clone()?, r[1].as_deref()?.parse().ok()?)))
        .collect()
    } else {
        HashMap::new()
    };
    Ok((rows, db_sizes))
}

fn read_remote(server: &Server, any_db: Option<&str>, sizes: bool) -> Result<Read, String> {
    let Some(db) = any_db else {
        // no tenant database there: nothing of ours is counted
        return Ok((Vec::new(), HashMap::new()));
    };
    let ep = server.database(db);
    let text = |e: remote::RemoteError| e.into_error(&ep.describe()).message;
    let counted = remote::query(
        &ep,
        "SELECT d.datname::pg_catalog.text, c.table_name, c.rows_validated::pg_catalog.text, \
                c.rows_rejected::pg_catalog.text \
         FROM messiah.validation_counters() c \
         JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) c.database_oid",
        &[],
    );
    let db_sizes = if sizes && counted.is_ok() {
        remote::query(
            &ep,
            "SELECT datname::pg_catalog.text, pg_catalog.pg_database_size(oid)::pg_catalog.text \
             FROM pg_catalog.pg_database WHERE datallowconn",
            &[],
        )
        .map_err(text)
    } else {
        Ok(remote::Rows::default())
    };
    remote::close_database(server.id, db);
    let counted = counted.map_err(text)?;
    let num = |v: &Option<String>| v.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
    let rows = counted
        .rows
        .iter()
        .map(|r| {
            let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            (s(0), s(1), num(&r[2]), num(&r[3]))
        })
        .collect();
    let sizes = db_sizes?
        .rows
        .iter()
        .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.as_deref()?.parse().ok()?)))
        .collect();
    Ok((rows, sizes))
}

/// One row of `messiah_tenant_stats()`.
#[derive(Debug, Clone, Default)]
pub struct TenantStats {
    pub tenant_id: String,
    pub server: String,
    pub status: String,
    pub routed_calls: u64,
    pub routed_errors: u64,
    pub routed_seconds: f64,
    pub rows_validated: u64,
    pub rows_rejected: u64,
    pub database_size_bytes: Option<i64>,
}

/// Every ready tenant's counts and size (see `messiah_tenant_stats()`).
pub fn tenant_stats() -> Vec<TenantStats> {
    if !counters::available() {
        pgrx::notice!("messiah is not in shared_preload_libraries: routed calls and validations are not counted");
    }
    let servers = Server::all();
    let gathered = gather(&servers, true);
    let routed: HashMap<String, counters::RoutedCounts> = counters::routed_counts()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Tenant::all_ready()
        .into_iter()
        .map(|t| {
            let server = servers.iter().find(|s| s.id == t.server_id);
            let server_name = server.map(|s| s.name.clone()).unwrap_or_default();
            let g = gathered.iter().find(|g| g.server == server_name);
            let tables = g
                .into_iter()
                .flat_map(|g| &g.tables)
                .filter(|c| c.tenant_id == t.tenant_id);
            let (validated, rejected) =
                tables.fold((0, 0), |(v, r), c| (v + c.validated, r + c.rejected));
            let r = routed.get(&t.tenant_id).cloned().unwrap_or_default();
            TenantStats {
                server: server_name,
                status: t.status.clone(),
                routed_calls: r.calls,
                routed_errors: r.errors,
                routed_seconds: r.duration_us as f64 / 1e6,
                rows_validated: validated,
                rows_rejected: rejected,
                database_size_bytes: if t.is_supabase() {
                    None
                } else {
                    g.and_then(|g| g.sizes.get(&t.database_name).copied())
                },
                tenant_id: t.tenant_id,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every family `messiah_metrics()` may return, in its order (the exporter file lists them).
    const FAMILIES: &[&str] = &[
        super::TENANTS.0,
        super::PROV_STARTED.0,
        super::PROV_FAILED.0,
        super::PROV_SUM.0,
        super::PROV_COUNT.0,
        super::VALIDATED.0,
        super::REJECTED.0,
        super::ROUTED.0,
        super::ROUTED_ERRORS.0,
        super::ROUTED_SUM.0,
        super::ROUTED_COUNT.0,
        super::CACHE_HITS.0,
        super::CACHE_MISSES.0,
        super::CACHE_EVICTIONS.0,
        super::CACHE_ENTRIES.0,
        super::CACHE_BYTES.0,
        super::CACHE_CAPACITY.0,
        super::SWEEPS.0,
        super::SWEEP_LAST.0,
        super::SWEPT.0,
        super::SERVER_UP.0,
        super::OVERFLOW.0,
    ];

    /// The shipped exporter file has one query per family, named so that the exporter's
    /// `<query>_<column>` is the family's name.
    #[test]
    fn the_exporter_file_covers_every_family() {
        let file = include_str!("../../monitoring/postgres_exporter.yaml");
        for f in FAMILIES {
            let (query, column) = match f.strip_suffix("_sum").or(f.strip_suffix("_count")) {
                Some(base) => (base, if f.ends_with("_sum") { "sum" } else { "count" }),
                None => f.rsplit_once('_').unwrap(),
            };
            let at = file
                .find(&format!("\n{query}:\n"))
                .unwrap_or_else(|| panic!("no query {query} for {f}"));
            let rest = &file[at + 1..];
            let end = rest[1..].find("\nmessiah").map_or(rest.len(), |e| e + 1);
            let block = &rest[..end];
            assert!(
                block.contains(&format!("    - {column}:\n")),
                "{f}: column {column}"
            );
            assert!(
                block.contains(&format!("'{f}")),
                "{f}: not asked for in its query"
            );
        }
    }
}
