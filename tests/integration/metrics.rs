//! Metrics (issue "The tenant cache, health checks and metrics"): shared-memory counters,
//! validation counters gathered from every server, `messiah_tenant_stats()`, and a real scrape
//! by Debian's prometheus-postgres-exporter with the queries file the repository ships.

use crate::common::*;
use postgres::Client;
use std::collections::BTreeMap;
use std::io::{Read, Write};

const DB: &str = "messiah_it_metrics";
const EXPORTER_PORT: u16 = 28829;

/// `metric{labels as k=v,...}` -> value, for the rows of `messiah_metrics()`.
fn sql_metrics(c: &mut Client) -> BTreeMap<String, f64> {
    c.query(
        "SELECT metric, labels::text, value FROM messiah_metrics()",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let labels: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&r.get::<_, String>(1)).unwrap();
        let mut l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        l.sort();
        (
            format!("{}{{{}}}", r.get::<_, String>(0), l.join(",")),
            r.get(2),
        )
    })
    .collect()
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} not in {:#?}", m.keys().collect::<Vec<_>>()))
}

fn stats(c: &mut Client, tenant: &str) -> (i64, i64, i64, i64, Option<i64>) {
    let r = c
        .query_one(
            "SELECT routed_calls, routed_errors, rows_validated, rows_rejected, database_size_bytes \
             FROM messiah_tenant_stats() WHERE tenant_id = $1",
            &[&tenant],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// GET /metrics from the exporter, as `name{labels sorted, without the exporter's server}` ->
/// value.
fn scrape() -> BTreeMap<String, f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", EXPORTER_PORT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| l.starts_with("messiah_"))
        .map(|l| {
            let (name_labels, v) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (name_labels, ""),
            };
            let mut l: Vec<String> = labels
                .split(',')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("server="))
                .map(|kv| {
                    // the file renames messiah's `server` label (the exporter has its own)
                    let kv = kv.strip_prefix("messiah_").unwrap_or(kv);
                    kv.replace('"', "")
                })
                .collect();
            l.sort();
            (format!("{name}{{{}}}", l.join(",")), v.parse().unwrap())
        })
        .collect()
}

struct Exporter(std::process::Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_exporter() -> Exporter {
    let (host, port) = host_port();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/monitoring/postgres_exporter.yaml"
    );
    let child = std::process::Command::new("prometheus-postgres-exporter")
        .env(
            "DATA_SOURCE_NAME",
            format!("host={host} port={port} user=postgres dbname={DB} sslmode=disable"),
        )
        .args([
            &format!("--web.listen-address=127.0.0.1:{EXPORTER_PORT}"),
            &format!("--extend.query-path={file}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus-postgres-exporter (scripts/deps.sh installs it)");
    assert!(
        wait_until(20, || std::net::TcpStream::connect((
            "127.0.0.1",
            EXPORTER_PORT
        ))
        .is_ok()),
        "the exporter did not listen"
    );
    Exporter(child)
}

#[test]
fn counters_gathered_from_every_server_and_scraped_by_the_exporter() {
    let other = OtherCluster::start(
        "/tmp/messiah-it-metrics2",
        28822,
        None,
        "shared_preload_libraries = 'messiah'\nmax_worker_processes = 16",
    );
    for t in ["it_mx_a", "it_mx_b"] {
        drop_db(&format!("tenant_{t}"));
    }
    let mut c = admin_db(DB);
    c.execute("SELECT messiah_add_server('mx2', $1)", &[&other.conninfo()])
        .unwrap();
    c.batch_execute(
        "SELECT messiah_create_tenant('it_mx_a', 'A', 'it-mx-a', server => 'local'); \
         SELECT messiah_create_tenant('it_mx_b', 'B', 'it-mx-b', server => 'mx2'); \
         SELECT messiah_define_field('it_mx_a', 'clients', 'score', 'number', 'Score'); \
         SELECT messiah_define_field('it_mx_b', 'clients', 'score', 'number', 'Score');",
    )
    .unwrap();
    settle(&mut c);

    // it_mx_a: 3 routed inserts (validated by the trigger), 1 routed insert refused by messiah
    // before sending (a routed error, not a trigger validation), 2 direct inserts of which one
    // is rejected by the trigger
    for s in [1, 2, 3] {
        c.execute(
            "SELECT messiah_tenant_insert('it_mx_a', 'clients', jsonb_build_object('name', 'n', 'score', $1::int))",
            &[&s],
        )
        .unwrap();
    }
    let e = fails(
        &mut c,
        "SELECT messiah_tenant_insert('it_mx_a', 'clients', '{\"name\": \"n\", \"score\": \"x\"}')",
    );
    assert_eq!(sqlstate(&e), "23514");
    let e = fails(
        &mut c,
        "SELECT * FROM messiah_tenant_query('it_mx_a', 'SELECT nope')",
    );
    assert_eq!(sqlstate(&e), "42703");
    let mut t = connect("tenant_it_mx_a");
    t.execute(
        "INSERT INTO clients (name, custom_fields) VALUES ('d', '{\"score\": 4}')",
        &[],
    )
    .unwrap();
    let e = t
        .execute(
            "INSERT INTO clients (name, custom_fields) VALUES ('d', '{\"score\": \"no\"}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    // an UPDATE that leaves custom_fields unchanged is not validated (not counted)
    t.execute("UPDATE clients SET name = 'u'", &[]).unwrap();
    // it_mx_b, on the other server: 2 routed inserts
    for s in [1, 2] {
        c.execute(
            "SELECT messiah_tenant_insert('it_mx_b', 'clients', jsonb_build_object('name', 'n', 'score', $1::int))",
            &[&s],
        )
        .unwrap();
    }

    let m = sql_metrics(&mut c);
    assert_eq!(
        value(
            &m,
            "messiah_field_validations_total{table=clients,tenant=it_mx_a}"
        ),
        5.0
    );
    assert_eq!(
        value(
            &m,
            "messiah_field_rejections_total{table=clients,tenant=it_mx_a}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "messiah_field_validations_total{table=clients,tenant=it_mx_b}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "messiah_field_rejections_total{table=clients,tenant=it_mx_b}"
        ),
        0.0
    );
    assert_eq!(value(&m, "messiah_server_counters_up{server=mx2}"), 1.0);
    // routed: 3 inserts + 1 failed query reached the tenant (the refused insert was not sent)
    assert_eq!(value(&m, "messiah_routed_calls_total{tenant=it_mx_a}"), 4.0);
    assert_eq!(
        value(&m, "messiah_routed_errors_total{tenant=it_mx_a}"),
        1.0
    );
    assert_eq!(value(&m, "messiah_routed_calls_total{tenant=it_mx_b}"), 2.0);
    assert_eq!(
        value(&m, "messiah_tenants{server=local,status=active}"),
        1.0
    );
    assert_eq!(value(&m, "messiah_tenants{server=mx2,status=active}"), 1.0);
    assert_eq!(value(&m, "messiah_provisionings_started_total{}"), 2.0);
    assert_eq!(
        value(&m, "messiah_provisioning_duration_seconds_count{}"),
        2.0
    );
    assert!(value(&m, "messiah_provisioning_duration_seconds_sum{}") > 0.0);
    let (calls, errors, validated, rejected, size) = stats(&mut c, "it_mx_a");
    assert_eq!((calls, errors, validated, rejected), (4, 1, 5, 1));
    assert!(size.unwrap() > 1_000_000, "{size:?}");
    let (calls, _, validated, _, size) = stats(&mut c, "it_mx_b");
    assert_eq!((calls, validated), (2, 2));
    assert!(size.unwrap() > 1_000_000);

    // the exporter, with the shipped file, scrapes the same values, and every family
    let exporter = start_exporter();
    let scraped = scrape();
    let m = sql_metrics(&mut c);
    for (k, v) in &m {
        let volatile = k.starts_with("messiah_cache_")
            || k.starts_with("messiah_sweeper_")
            || k.starts_with("messiah_counter_overflow");
        match scraped.get(k) {
            Some(s) if volatile || (s - v).abs() < 1e-6 => {}
            other => panic!("{k}: SQL {v}, scraped {other:?}"),
        }
    }
    drop(exporter);

    // one server stopped: the call still answers, that server is down, the local tenant's
    // counts are still there
    other.stop();
    let m = sql_metrics(&mut c);
    assert_eq!(value(&m, "messiah_server_counters_up{server=mx2}"), 0.0);
    assert_eq!(
        value(
            &m,
            "messiah_field_validations_total{table=clients,tenant=it_mx_a}"
        ),
        5.0
    );
    assert!(!m.contains_key("messiah_field_validations_total{table=clients,tenant=it_mx_b}"));
    let (_, _, validated, _, size) = stats(&mut c, "it_mx_b");
    assert_eq!((validated, size), (0, None));
    drop_tenant(&mut c, "it_mx_a");
}
