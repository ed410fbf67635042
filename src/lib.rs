//! messiah: a multi-tenant SaaS control plane inside PostgreSQL.
//!
//! Layout (DESIGN.md "Layout"): plain-Rust modules hold the rules and need no Postgres
//! (`ident`, `fields`); the pgrx modules are shims that run guards, talk SPI/dblink and call
//! into them (`api`, `provision`, `remote`, `guc`, `err`, `worker`).

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod fields;
pub mod ident;

mod api;
mod enforce;
mod err;
mod fields_api;
mod guc;
mod jsonarg;
mod jsonb;
mod provision;
mod remote;
mod spi;
mod worker;

// Hand-written SQL (DESIGN.md layout: sql/). The catalog comes first; functions written in
// Rust follow; api.sql and finalize.sql refer to both.
extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
extension_sql_file!(
    "../sql/tenant_side.sql",
    name = "tenant_side",
    requires = ["catalog"]
);
extension_sql_file!("../sql/api.sql", name = "api_sql", requires = ["catalog"]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Library load: registers the GUCs, and the sweeper background worker when loaded from
/// `shared_preload_libraries`.
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
        worker::register();
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
