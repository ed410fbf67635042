//! Integration tests against a running cluster with messiah installed (several sessions and
//! databases). Run by `make integration`, which starts a fresh cluster and sets
//! MESSIAH_TEST_HOST / MESSIAH_TEST_PORT.

mod common;

#[path = "integration/api_values.rs"]
mod api_values;
#[path = "integration/attack.rs"]
mod attack;
#[path = "integration/cache.rs"]
mod cache;
#[path = "integration/concurrency.rs"]
mod concurrency;
#[path = "integration/endings.rs"]
mod endings;
#[path = "integration/faults.rs"]
mod faults;
#[path = "integration/fields.rs"]
mod fields;
#[path = "integration/hardening.rs"]
mod hardening;
#[path = "integration/health.rs"]
mod health;
#[path = "integration/lifecycle.rs"]
mod lifecycle;
#[path = "integration/metrics.rs"]
mod metrics;
#[path = "integration/migrations.rs"]
mod migrations;
#[path = "integration/moves.rs"]
mod moves;
#[path = "integration/privileged.rs"]
mod privileged;
#[path = "integration/reconcile.rs"]
mod reconcile;
#[path = "integration/restore.rs"]
mod restore;
#[path = "integration/results_cache.rs"]
mod results_cache;
#[path = "integration/routing.rs"]
mod routing;
#[path = "integration/rpc.rs"]
mod rpc;
#[path = "integration/security.rs"]
mod security;
#[path = "integration/supabase.rs"]
mod supabase;
#[path = "integration/writers.rs"]
mod writers;
