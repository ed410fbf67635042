//! messiah: a multi-tenant SaaS control plane inside PostgreSQL.
//!
//! Layout (DESIGN.md "Layout"), by area:
//! - plain Rust, no Postgres: `ident` (identifier and conninfo rules), `fields` (the
//!   validation engine), `tenants::args`, `tenants::marker`, `secrets::crypto`;
//! - `tenants`: the catalog, provisioning at COMMIT, the outbox of remote actions, reconcile,
//!   and the tenant SQL API; `fields_admin`: the field SQL API;
//! - `remote`: the one remote command layer (servers, libpq connections, typed errors);
//! - `tenant_side`: what runs inside tenant databases (the trigger, the catalog copy);
//! - `worker`: the launcher and executor background workers;
//! - `security`: grants, the OpenAPI description, the DROP EXTENSION guard; `secrets`;
//! - shared shims: `err` (errors), `shim` (arguments), `spi`, `guc`, `jsonarg`.
#![deny(unsafe_op_in_unsafe_fn)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod fields;
pub mod ident;

mod cache;
mod err;
mod fields_admin;
mod fleet;
mod guc;
mod jsonarg;
mod monitor;
mod remote;
mod routing;
mod secrets;
mod security;
mod shim;
mod shmem;
mod spi;
mod tenant_side;
mod tenants;
mod worker;

// Hand-written SQL (DESIGN.md layout: sql/). The catalog comes first; functions written in
// Rust follow; api.sql and finalize.sql refer to both.
extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
extension_sql_file!("../sql/api.sql", name = "api_sql", requires = ["catalog"]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Library load: registers the GUCs, and, when loaded from `shared_preload_libraries`, the
/// shared registry and the launcher background worker.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx appends a captured Rust backtrace to an error's DETAIL when RUST_BACKTRACE is set
    // in the server's environment: that would show internals to SQL clients (DESIGN.md
    // decision 8). The backend is single-threaded here.
    if std::env::var_os("MESSIAH_DEBUG_BACKTRACE").is_none() {
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
    guc::register();
    // SAFETY: reading a plain global that Postgres sets before loading preload libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        guc::register_preloaded();
        worker::init_preloaded();
        shmem::init_preloaded();
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn catalog_exists() {
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'messiah' \
             AND tablename IN ('tenants','tenant_supabase_configs','extension_field_definitions')",
        );
        assert_eq!(n, Ok(Some(3)));
    }

    #[pg_test(error = "tenant_id \"Bad\" is invalid: it must start with a lowercase ASCII letter")]
    fn create_tenant_rejects_bad_id() {
        Spi::run("SELECT messiah_create_tenant('Bad', 'x', 'x')").unwrap();
    }

    #[pg_test]
    fn local_server_is_registered() {
        let n = Spi::get_one::<String>("SELECT name FROM messiah.servers ORDER BY id LIMIT 1");
        assert_eq!(n, Ok(Some("local".to_string())));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
