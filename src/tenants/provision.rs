//! Database-per-tenant provisioning (DESIGN.md decision 3).
//!
//! `CREATE DATABASE` cannot run inside a transaction, so it runs over a maintenance
//! connection and cannot be rolled back. The contract:
//! - `messiah_create_tenant` writes the catalog row (lifecycle `provisioning`); a deferred
//!   constraint trigger creates the database at COMMIT. A transaction that rolls back, or whose
//!   backend dies before COMMIT, never created anything.
//! - The creation is the only remote step taken before our commit, and it is reversible by
//!   proof: the database is created under a temporary name carrying this installation and the
//!   creating (sub)transaction (`messiah_new_<inst>_<xid>_<row>`), marked with a comment naming
//!   both, and only then renamed to `tenant_<id>`. If our commit then fails (serialization
//!   failure, a savepoint rolled back after SET CONSTRAINTS ALL IMMEDIATE, a cancel, a crash),
//!   the server's own catalog proves the database is garbage of this installation, and
//!   [`sweep`] drops it: a temporary name of this installation whose transaction is over, or a
//!   marked tenant database whose creating transaction aborted and that no catalog row names.
//!   No journal row needs an autonomous write, so no state can be lost between two commits.
//! - Everything else that touches another database (dropping it, pushing the catalog copy)
//!   happens after COMMIT, through the outbox (`outbox`).

use super::catalog::{installation_id, Tenant};
use super::marker::{self, Marker};
use crate::err::{Code, Error};
use crate::guc;
use crate::ident::{quote_ident, quote_literal};
use crate::remote::{self, Server};
use pgrx::prelude::*;

/// The tenant schema, run once in each server's template database after
/// `CREATE EXTENSION messiah_tenant`.
pub const TENANT_SCHEMA_SQL: &str = include_str!("../../sql/tenant_schema.sql");
/// The tenant-side extension's script (installed as messiah_tenant--<version>.sql).
pub const TENANT_EXTENSION_SQL: &str = include_str!("../../sql/messiah_tenant.sql");

/// Name of the template database for this build and these migrations:
/// `messiah_template_<16 hex digits>`, a hash of the tenant schema, the tenant-side
/// extension's script, the version and the registered tenant schema migrations
/// (`fleet::migrations::fingerprint`). A new build with different tenant-side SQL, or a new
/// migration, gets a new template; otherwise it is reused.
///
/// A template with migrations is this installation's alone (its name hashes the installation
/// id too, and its COMMENT names it, [`template_marker`]): another installation on the same
/// server never counts it as stale.
pub fn template_name() -> String {
    let migrations = crate::fleet::migrations::fingerprint();
    if migrations.is_empty() {
        return base_template_name();
    }
    let h = build_hash()
        ^ crate::ident::fnv64(format!("{}/{migrations}", installation_id()).as_bytes())
            .rotate_left(3);
    format!("messiah_template_{h:016x}")
}

/// The template of this build without migrations (shared by every installation on a server).
pub fn base_template_name() -> String {
    format!("messiah_template_{:016x}", build_hash())
}

fn build_hash() -> u64 {
    let mut h = crate::ident::fnv64(TENANT_SCHEMA_SQL.as_bytes());
    h ^= crate::ident::fnv64(TENANT_EXTENSION_SQL.as_bytes()).rotate_left(1);
    h ^ crate::ident::fnv64(env!("CARGO_PKG_VERSION").as_bytes()).rotate_left(2)
}

/// The COMMENT of a template built with this installation's migrations.
pub fn template_marker(installation: &str) -> String {
    serde_json::json!({ "messiah_template_of": installation }).to_string()
}

/// A database of a server, as its catalog shows it.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub comment: Option<String>,
    pub is_template: bool,
    /// `datallowconn`: templates are built with connections allowed, then closed to them.
    pub allow_connections: bool,
    /// `datconnlimit = -2`: a `DROP DATABASE` was interrupted, or is running now (Postgres
    /// 15.4+ marks the database so before removing its files). Only `DROP DATABASE` is allowed
    /// on it: `ALTER DATABASE` fails with 55000 and connecting fails.
    pub invalid: bool,
    pub size_bytes: Option<i64>,
}

const LIST_DATABASES: &str =
    "SELECT datname::text, pg_catalog.shobj_description(oid, 'pg_database'), \
     datistemplate::text, \
     CASE WHEN datconnlimit OPERATOR(pg_catalog.=) -2 THEN NULL \
          ELSE pg_catalog.pg_database_size(oid)::text END, \
     datallowconn::text, (datconnlimit OPERATOR(pg_catalog.=) -2)::text \
     FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.~~) $1 ORDER BY datname";

/// The databases of `server` whose names match the LIKE `pattern`, with their comments and
/// sizes. On the local cluster this reads the shared catalog directly (no connection).
pub fn list_databases(server: &Server, pattern: &str) -> Result<Vec<Database>, Error> {
    let rows = if server.is_local() {
        crate::spi::text_rows(LIST_DATABASES, &[pattern.into()], 6)
    } else {
        remote::query_or_error(&server.maintenance(), LIST_DATABASES, &[Some(pattern)])?.rows
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            let t = |i: usize| r.get(i).cloned().flatten();
            Database {
                name: t(0).unwrap_or_default(),
                comment: t(1),
                is_template: t(2).as_deref() == Some("true"),
                size_bytes: t(3).and_then(|s| s.parse().ok()),
                allow_connections: t(4).as_deref() != Some("false"),
                invalid: t(5).as_deref() == Some("true"),
            }
        })
        .collect())
}

/// `pattern` for LIKE matching `name` exactly.
fn like_exact(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The database `name` of `server`, if it exists.
pub fn find_database(server: &Server, name: &str) -> Result<Option<Database>, Error> {
    Ok(list_databases(server, &like_exact(name))?
        .into_iter()
        .find(|d| d.name == name))
}

/// Takes the transaction-level advisory lock that serializes every creation, drop and sweep
/// of one database name on one server (in this admin database).
pub fn lock_database(server: &Server, name: &str) {
    crate::spi::run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("messiah:db:{}:{name}", server.id).as_str().into()],
    );
}

/// `DROP DATABASE IF EXISTS <name> WITH (FORCE)` on the server (sessions still connected are
/// ended; this backend's own pooled connections to it are closed first).
///
/// A move's subscription in it (a failed move's copy) is dropped first: PostgreSQL refuses to
/// drop a database that has a subscription (55006).
pub fn force_drop(server: &Server, name: &str) -> Result<(), Error> {
    let subs = remote::query_or_error(
        &server.maintenance(),
        "SELECT s.subname::pg_catalog.text FROM pg_catalog.pg_subscription s          JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid          WHERE d.datname OPERATOR(pg_catalog.=) $1 AND d.datallowconn AND s.subname OPERATOR(pg_catalog.~~) 'messiah\\_move\\_%'",
        &[Some(name)],
    )?;
    for sub in subs
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        crate::fleet::moves::drop_subscription(server, name, &sub)?;
    }
    remote::close_database(server.id, name);
    remote::execute_or_error(
        &server.maintenance(),
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
    )?;
    Ok(())
}

/// `ENCODING 'UTF8'` plus, when the server's template0 has a locale that cannot hold UTF8, a
/// locale that can (the engine reads jsonb keys and text as UTF-8: tenant databases and
/// templates are always UTF8, whatever the cluster's default).
fn encoding_clause(server: &Server) -> Result<String, Error> {
    const Q: &str = "SELECT pg_catalog.pg_encoding_to_char(encoding)::text, datctype::text \
                     FROM pg_catalog.pg_database WHERE datname = 'template0'";
    let row = if server.is_local() {
        crate::spi::text_rows(Q, &[], 2).into_iter().next()
    } else {
        remote::query_or_error(&server.maintenance(), Q, &[])?
            .rows
            .into_iter()
            .next()
    }
    .unwrap_or_default();
    let encoding = row.first().cloned().flatten().unwrap_or_default();
    let ctype = row.get(1).cloned().flatten().unwrap_or_default();
    let lower = ctype.to_ascii_lowercase();
    Ok(
        if encoding == "UTF8" || lower == "c" || lower == "posix" || lower.contains("utf") {
            "ENCODING 'UTF8'".to_string()
        } else {
            "ENCODING 'UTF8' LOCALE 'C.UTF-8'".to_string()
        },
    )
}

/// Makes sure `server` has this build's template database (messiah_tenant and the tenant
/// schema), building it once if not. The build commits on its own: it survives the calling
/// transaction, as a cache should.
///
/// Builders on any admin database of any cluster may race: each builds under its own name,
/// `<template>_b<pid of its server-side connection>`, then renames it to the template name;
/// the first rename wins, the others drop their copy. A copy left by a builder that died (its
/// server-side connection is gone) is dropped by the next builder.
pub fn ensure_template(server: &Server) -> Result<String, Error> {
    let tpl = template_name();
    if find_database(server, &tpl)?.is_some() {
        return Ok(tpl);
    }
    let maint = server.maintenance();
    let leftovers = remote::query_or_error(
        &maint,
        // any template's build (not only this one's: a build whose migrations failed has a
        // template name no later build shares)
        "SELECT datname::text FROM pg_catalog.pg_database d \
         WHERE datname OPERATOR(pg_catalog.~) '^messiah_template_[0-9a-f]{16}_b[0-9]+$' AND NOT EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_stat_activity a \
             WHERE a.pid::text OPERATOR(pg_catalog.=) pg_catalog.substring(d.datname, '_b([0-9]+)$'))",
        &[],
    )?;
    for name in leftovers
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        force_drop(server, &name)?;
    }
    let pid = remote::query_or_error(&maint, "SELECT pg_catalog.pg_backend_pid()::text", &[])?
        .scalar()
        .unwrap_or("0")
        .to_string();
    let build = format!("{tpl}_b{pid}");
    force_drop(server, &build)?;
    remote::execute_or_error(
        &maint,
        &format!(
            "CREATE DATABASE {} TEMPLATE template0 {}",
            quote_ident(&build),
            encoding_clause(server)?
        ),
    )?;
    let setup = format!(
        "SET client_min_messages = warning; CREATE EXTENSION messiah_tenant; {TENANT_SCHEMA_SQL}"
    );
    let built = remote::execute_or_error(&server.database(&build), &setup)
        .and_then(|_| apply_migrations(server, &build));
    remote::close_database(server.id, &build);
    if let Err(e) = built {
        // a failed build is never renamed: it goes now (or, if that fails too, with the next
        // build on this server, its builder's connection being gone)
        let _ = force_drop(server, &build);
        return Err(e);
    }
    let renamed = remote::execute(
        &maint,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&build),
            quote_ident(&tpl)
        ),
    );
    match renamed {
        Ok(_) => {
            // Nobody may connect to a template: a connected session would make CREATE
            // DATABASE ... TEMPLATE fail.
            remote::execute_or_error(
                &maint,
                &format!(
                    "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
                    quote_ident(&tpl)
                ),
            )?;
        }
        Err(why) => {
            force_drop(server, &build)?;
            if find_database(server, &tpl)?.is_none() {
                return Err(Error::new(
                    Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("could not install the template database \"{tpl}\""),
                )
                .detail(why.to_string()));
            }
        }
    }
    Ok(tpl)
}

/// Applies every registered tenant schema migration to template database `build`, as
/// [`roles::MIGRATOR_ROLE`](super::roles::MIGRATOR_ROLE) (a NOLOGIN role made for it, given
/// the seed's tables and CREATE on `public` there; a tenant database created from the
/// template gives all of it to the tenant's owner role). Errors: the first failing
/// migration's, with a CONTEXT naming the server and database.
fn apply_migrations(server: &Server, build: &str) -> Result<(), Error> {
    let migrations = crate::fleet::migrations::Migration::all(None);
    if migrations.is_empty() {
        return Ok(());
    }
    let role = quote_ident(super::roles::MIGRATOR_ROLE);
    remote::execute_or_error(
        &server.maintenance(),
        &format!(
            "DO $$BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$"
        ),
    )?;
    remote::execute_or_error(
        &server.maintenance(),
        &format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(build),
            quote_literal(&template_marker(&installation_id()))
        ),
    )?;
    let mut sql = format!(
        "GRANT USAGE, CREATE ON SCHEMA public TO {role};\n\
         ALTER TABLE public.clients OWNER TO {role};\n\
         ALTER TABLE public.projects OWNER TO {role};\n\
         ALTER TABLE public.activities OWNER TO {role};\n{}",
        crate::fleet::migrations::session_settings()
    );
    for m in &migrations {
        sql.push_str(&m.statement(super::roles::MIGRATOR_ROLE));
    }
    remote::execute_or_error(&server.database(build), &sql).map(|_| ())
}

/// A fault injection point (`messiah.fault_injection` = `error:<point>` or `sleep:<point>`,
/// superuser-only, for tests): raises, or waits 30 s with interrupts handled (so a test can
/// cancel or kill the backend there). Points: `after_create_database`, `after_marker`,
/// `after_rename`, `after_create`.
fn fault(point: &str) -> Result<(), Error> {
    let f = guc::string(&guc::FAULT_INJECTION);
    if f == format!("error:{point}") {
        return Err(Error::new(
            Code::ERRCODE_INTERNAL_ERROR,
            format!("messiah.fault_injection: error:{point}"),
        ));
    }
    if f == format!("sleep:{point}") {
        crate::spi::sleep_ms(30_000);
    }
    Ok(())
}

/// The 42P04 of an existing tenant database name.
fn exists_error(t: &Tenant, server: &Server) -> Error {
    Error::new(
        Code::ERRCODE_DUPLICATE_DATABASE,
        format!(
            "database \"{}\" for tenant \"{}\" already exists on server \"{}\"",
            t.database_name, t.tenant_id, server.name
        ),
    )
    .detail("messiah creates one database per tenant and never adopts or overwrites an existing one.")
    .hint("Drop or rename that database, or choose another tenant_id; messiah_reconcile() lists leftover tenant databases and messiah_adopt_database() adopts one messiah made.")
}

/// Whether `server` has a database `t.database_name` (42P04 if so, for the calling API).
pub fn refuse_existing(t: &Tenant, server: &Server) -> Result<(), Error> {
    match find_database(server, &t.database_name)? {
        Some(_) => Err(exists_error(t, server)),
        None => Ok(()),
    }
}

/// Creates the tenant database of a `provisioning` row at COMMIT (see the module comment),
/// installs the catalog copy in it, and marks the row `ready`.
/// Errors: 42P04 if the database exists (it is left untouched); remote errors with a CONTEXT
/// naming the tenant and server.
///
/// Counted (`monitor::counters`: started, failed, the duration of those that succeed).
pub fn create_database(t: &Tenant) -> Result<(), Error> {
    use crate::monitor::counters;
    let started = std::time::Instant::now();
    counters::update_db(|c| c.provisionings_started += 1);
    let result = create_database_counted(t);
    let us = started.elapsed().as_micros() as u64;
    counters::update_db(|c| match &result {
        Ok(()) => {
            c.provisionings_done += 1;
            c.provisioning_us += us;
        }
        Err(_) => c.provisionings_failed += 1,
    });
    result
}

fn create_database_counted(t: &Tenant) -> Result<(), Error> {
    let server = t.server()?;
    let tpl = ensure_template(&server)?;
    lock_database(&server, &t.database_name);
    refuse_existing(t, &server)?;
    // If this transaction aborts after the database exists, the executor sweeps it at once.
    crate::worker::wake_at_abort();
    let xid: u64 = t.creating_xid.parse().map_err(|_| {
        Error::new(
            Code::ERRCODE_DATA_CORRUPTED,
            format!("tenant \"{}\" has no creating transaction", t.tenant_id),
        )
    })?;
    let tmp = marker::temp_name(&t.installation_id, xid, &t.row_id);
    let marker = marker_for(t, &t.creating_xid);
    let maint = server.maintenance();
    let strategy = guc::CLONE_STRATEGY.get().sql();
    let context = t.describe(&server);
    let step = |sql: String| remote::execute(&maint, &sql).map_err(|e| e.into_error(&context));
    step(format!(
        "CREATE DATABASE {} TEMPLATE {} STRATEGY {strategy}",
        quote_ident(&tmp),
        quote_ident(&tpl)
    ))?;
    fault("after_create_database")?;
    step(format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(&tmp),
        quote_literal(&marker.render())
    ))?;
    step(format!(
        "REVOKE ALL ON DATABASE {} FROM PUBLIC",
        quote_ident(&tmp)
    ))?;
    fault("after_marker")?;
    let renamed = step(format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&tmp),
        quote_ident(&t.database_name)
    ));
    if let Err(e) = renamed {
        // Ours by name; the sweep would drop it too once this transaction is over.
        let _ = force_drop(&server, &tmp);
        return Err(if e.code == Code::ERRCODE_DUPLICATE_DATABASE {
            exists_error(t, &server)
        } else {
            e
        });
    }
    fault("after_rename")?;
    install_copy(t, &server, true)?;
    // fields defined in the creating transaction: their indexes, in the still-private database
    let snapshot = t.snapshot();
    super::indexes::sync(
        &server.database(&t.database_name),
        &snapshot,
        &t.describe(&server),
    )?;
    remote::close_database(server.id, &t.database_name);
    fault("after_create")?;
    crate::spi::run(
        "UPDATE messiah.tenants SET lifecycle = 'ready' WHERE id = $1::uuid",
        &[t.row_id.as_str().into()],
    );
    Ok(())
}

/// The marker of tenant `t`'s database, naming this installation and `creating_xid`.
pub fn marker_for(t: &Tenant, creating_xid: &str) -> Marker {
    Marker {
        messiah_tenant: t.tenant_id.clone(),
        database: t.database_name.clone(),
        installation: installation_id(),
        admin_database: crate::spi::current_database(),
        system_identifier: system_identifier(),
        creating_xid: creating_xid.to_string(),
    }
}

/// Rewrites the marker of tenant `t`'s existing database to name this installation and the
/// committed transaction `creating_xid` (after an adoption or takeover commits).
pub fn write_marker(t: &Tenant, server: &Server, creating_xid: &str) -> Result<(), Error> {
    remote::execute(
        &server.maintenance(),
        &format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(&t.database_name),
            quote_literal(&marker_for(t, creating_xid).render())
        ),
    )
    .map_err(|e| e.into_error(&t.describe(server)))?;
    Ok(())
}

/// Installs the tenant's catalog copy (as the calling transaction sees it) in its database.
/// `force` replaces whatever is there (creation, takeover, adoption); otherwise an older
/// version is ignored and a copy managed by another installation is refused (55000).
/// Returns `installed` or `unchanged`.
pub fn install_copy(t: &Tenant, server: &Server, force: bool) -> Result<String, Error> {
    install_copy_in(t, server, &t.database_name, force)
}

/// Installs the tenant's catalog copy, replacing whatever is there, in database `database` of
/// `server` (a move's copy, under its temporary name).
pub fn install_copy_into(t: &Tenant, server: &Server, database: &str) -> Result<String, Error> {
    install_copy_in(t, server, database, true)
}

fn install_copy_in(
    t: &Tenant,
    server: &Server,
    database: &str,
    force: bool,
) -> Result<String, Error> {
    let snapshot = t.snapshot();
    let version = snapshot
        .get("version")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        .to_string();
    let snapshot = snapshot.to_string();
    let rows = remote::query_once(
        &server.database(database),
        "SELECT messiah.install_snapshot($1::uuid, $2, $3::bigint, $4::jsonb, $5::boolean)",
        &[
            Some(&installation_id()),
            Some(&t.tenant_id),
            Some(&version),
            Some(&snapshot),
            Some(if force { "true" } else { "false" }),
        ],
    )
    .map_err(|e| e.into_error(&t.describe(server)))?;
    Ok(rows.scalar().unwrap_or("unchanged").to_string())
}

/// The cluster's system identifier (for the marker's human-readable part).
pub fn system_identifier() -> String {
    crate::spi::one::<String>(
        "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
        &[],
    )
    .unwrap_or_default()
}

/// The status of a transaction of this cluster given as xid8 text: `in progress`,
/// `committed`, `aborted`, or `unknown` (older than the commit log keeps, or not a valid
/// transaction id of this cluster).
pub fn xact_status(xid: &str) -> String {
    let Ok(value) = xid.parse::<u64>() else {
        return "unknown".into();
    };
    // SAFETY: reads the next full transaction id from shared memory (takes XidGenLock).
    let next = unsafe { pg_sys::ReadNextFullTransactionId() }.value;
    if value >= next {
        // pg_xact_status raises for a transaction id "in the future": not one of this cluster.
        return "unknown".into();
    }
    crate::spi::one::<String>(
        "SELECT coalesce(pg_catalog.pg_xact_status($1::xid8), 'unknown')",
        &[xid.into()],
    )
    .unwrap_or_else(|| "unknown".into())
}

/// A database swept by [`sweep`].
#[derive(Debug, Clone)]
pub struct Swept {
    pub tenant_id: String,
    pub database_name: String,
}

/// Finds, and with `drop` drops, the databases that are provably aborted creations of this
/// installation (see the module comment) on `servers`. Never touches anything else.
pub fn sweep(servers: &[Server], drop: bool) -> Result<Vec<Swept>, Error> {
    let inst = installation_id();
    let mut out = Vec::new();
    for server in servers {
        let temp = format!(
            "{}{}\\_%",
            like_exact(marker::TEMP_PREFIX),
            marker::short_installation(&inst)
        );
        for db in list_databases(server, &temp)? {
            let Some(xid) = marker::temp_name_xid(&inst, &db.name) else {
                continue;
            };
            if xact_status(&xid.to_string()) == "in progress" {
                continue;
            }
            if drop {
                lock_database(server, &db.name);
                force_drop(server, &db.name)?;
            }
            out.push(Swept {
                tenant_id: String::new(),
                database_name: db.name,
            });
        }
        let copies = format!(
            "{}{}\\_%",
            like_exact(crate::fleet::moves::COPY_PREFIX),
            marker::short_installation(&inst)
        );
        for db in list_databases(server, &copies)? {
            if crate::fleet::moves::abandoned_copy(&db.name) != Some(true) {
                continue;
            }
            if drop {
                lock_database(server, &db.name);
                force_drop(server, &db.name)?;
            }
            out.push(Swept {
                tenant_id: String::new(),
                database_name: db.name,
            });
        }
        for db in list_databases(server, "tenant\\_%")? {
            if let Some(m) = aborted_creation(&inst, &db, server) {
                if drop {
                    lock_database(server, &db.name);
                    force_drop(server, &db.name)?;
                }
                out.push(Swept {
                    tenant_id: m.messiah_tenant,
                    database_name: db.name,
                });
            }
        }
    }
    Ok(out)
}

/// The marker of `db` if it is a tenant database of installation `inst` whose creating
/// transaction aborted and that no catalog row names.
///
/// "Names" means on `server`: a move that failed after renaming its copy on the target
/// server leaves a database the catalog names on the source only (`fleet::moves`).
pub fn aborted_creation(inst: &str, db: &Database, server: &Server) -> Option<Marker> {
    let m = Marker::parse(db.comment.as_deref()?)?;
    if !m.is_of(inst, &db.name) {
        return None;
    }
    let named = crate::spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM messiah.tenants WHERE database_name = $1 AND server_id = $2)",
        &[db.name.as_str().into(), server.id.into()],
    )
    .unwrap_or(true);
    (!named && xact_status(&m.creating_xid) == "aborted").then_some(m)
}

/// The current (sub)transaction's id as xid8 text (assigning one if needed): the transaction
/// whose commit makes a creation real.
pub fn current_xid8() -> String {
    // SAFETY: assigns (if needed) and reads the current subtransaction's full xid.
    let fxid = unsafe { pg_sys::GetCurrentFullTransactionId() };
    fxid.value.to_string()
}
