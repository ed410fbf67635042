//! Database-per-tenant provisioning (DESIGN.md decision 3, mechanism (b) plus a journal).
//!
//! `CREATE DATABASE` cannot run inside a transaction, so it runs over a second connection
//! (dblink) and cannot be rolled back. messiah makes it behave as if it could:
//! - `messiah_create_tenant` only writes the catalog row; a deferred constraint trigger
//!   creates the database at COMMIT. A transaction that rolls back, or whose backend dies
//!   before COMMIT, never created anything.
//! - Two creations of one tenant_id serialize on the catalog's unique index: the second waits
//!   for the first and gets 23505, so it never reaches CREATE DATABASE and never cleans up
//!   anything of the winner's.
//! - The remaining window (the database was created at COMMIT, then the commit failed or the
//!   backend died before the commit record) is covered by the provisioning journal: before
//!   CREATE DATABASE, a journal row with the creating transaction id is committed over a
//!   separate connection. [`sweep`] drops journalled databases whose transaction aborted and
//!   that no committed catalog row names; it runs at every create and reconcile and in the
//!   background worker.

use crate::err::{raise, Code, SpiExt};
use crate::guc;
use crate::ident::{quote_ident, quote_literal, Conninfo, TenantId};
use crate::remote::{dblink, wait_ms, Dblink};
use pgrx::prelude::*;

/// The tenant schema run once in each server's template database.
pub const TENANT_SCHEMA_SQL: &str = include_str!("../sql/tenant_schema.sql");

/// A database server that holds tenant databases.
pub struct Server {
    /// Keyword/value conninfo without dbname.
    pub conninfo: Conninfo,
    /// Whether this is the cluster the admin database is on, reached over its Unix socket.
    pub local: bool,
}

impl Server {
    /// The server new tenants go to: `messiah.server_conninfo`, or this cluster.
    pub fn current() -> Server {
        let configured = guc::string(&guc::SERVER_CONNINFO);
        if configured.trim().is_empty() {
            return Server {
                conninfo: local_conninfo(),
                local: true,
            };
        }
        let mut conninfo = Conninfo::parse(&configured).unwrap_or_else(|e| {
            raise(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("messiah.server_conninfo is invalid: {e}"),
                None,
                Some(
                    "Use libpq keyword=value form, e.g. host=db2.internal port=5432 user=postgres"
                        .into(),
                ),
            )
        });
        conninfo.remove("dbname");
        let local = conninfo == local_conninfo();
        Server { conninfo, local }
    }

    /// The server of a catalog row (its stored `server_conninfo`).
    pub fn from_catalog(stored: &str) -> Server {
        let conninfo = Conninfo::parse(stored).unwrap_or_else(|e| {
            raise(
                Code::ERRCODE_DATA_CORRUPTED,
                format!("a tenant's server_conninfo in the catalog is invalid: {e}"),
                None,
                None,
            )
        });
        let local = conninfo == local_conninfo();
        Server { conninfo, local }
    }

    /// Conninfo of a database on this server.
    pub fn database(&self, dbname: &str) -> String {
        self.conninfo.with_dbname(dbname).render()
    }

    /// Conninfo of the database server-level commands run in: the admin database itself on
    /// this cluster (so journal and CREATE DATABASE share one connection), `postgres` elsewhere.
    pub fn maintenance(&self) -> String {
        if self.local {
            self.database(&current_database())
        } else {
            self.database("postgres")
        }
    }
}

fn current_database() -> String {
    crate::spi::one::<String>("SELECT current_database()::text", &[]).unwrap_or_default()
}

/// This cluster over its first Unix socket directory (or localhost), as the current user
/// (the function owner inside SECURITY DEFINER functions).
fn local_conninfo() -> Conninfo {
    let (dir, port, user) = Spi::get_three::<String, String, String>(
        "SELECT btrim(split_part(current_setting('unix_socket_directories'), ',', 1)), \
                current_setting('port'), current_user::text",
    )
    .or_raise("reading the local socket settings");
    let mut c = Conninfo::default();
    let dir = dir.unwrap_or_default();
    c.set("host", if dir.is_empty() { "localhost" } else { &dir });
    c.set("port", &port.unwrap_or_else(|| "5432".into()));
    c.set("user", &user.unwrap_or_else(|| "postgres".into()));
    c
}

/// Name of the template database for this version of messiah and of the tenant schema:
/// `messiah_template_<16 hex digits>`. A new version gets a new template.
pub fn template_name() -> String {
    thread_local! {
        static NAME: std::cell::OnceCell<String> = const { std::cell::OnceCell::new() };
    }
    NAME.with(|n| {
        n.get_or_init(|| {
            let mut h = crate::remote::fnv64(TENANT_SCHEMA_SQL.as_bytes());
            h ^= crate::remote::fnv64(&installed_script()).rotate_left(1);
            format!("messiah_template_{h:016x}")
        })
        .clone()
    })
}

/// The installed extension script (`<sharedir>/extension/messiah--<version>.sql`), so that any
/// change to the extension's SQL gets a new template even without a version bump.
fn installed_script() -> Vec<u8> {
    let mut buf = [0 as std::ffi::c_char; pg_sys::MAXPGPATH as usize];
    // SAFETY: my_exec_path is set at backend start; get_share_path writes a NUL-terminated
    // path of at most MAXPGPATH bytes into buf.
    let share = unsafe {
        pg_sys::get_share_path(
            std::ptr::addr_of!(pg_sys::my_exec_path) as *const std::ffi::c_char,
            buf.as_mut_ptr(),
        );
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let path = format!(
        "{share}/extension/messiah--{}.sql",
        env!("CARGO_PKG_VERSION")
    );
    // pgrx does not write the script's statements in a stable order; sorted lines hash the
    // same for the same content, so reinstalling the same build reuses the template.
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_string());
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n").into_bytes()
}

fn advisory_lock(key: &str) {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[key.into()],
    )
    .or_raise("taking an advisory lock");
}

/// `DROP DATABASE IF EXISTS ... WITH (FORCE)` over the server's maintenance connection.
fn force_drop(dbl: &Dblink, conn: &str, maint: &str, datname: &str) {
    dbl.exec(
        conn,
        maint,
        &format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(datname)
        ),
    );
}

/// Whether `datname` exists on the server.
pub fn database_exists(dbl: &Dblink, server: &Server, datname: &str) -> bool {
    let maint = server.maintenance();
    let conn = dbl.connection(&maint);
    let rows = dbl.query(
        &conn,
        &format!(
            "SELECT 'x' FROM pg_catalog.pg_database WHERE datname = {}",
            quote_literal(datname)
        ),
        1,
    );
    !rows.is_empty()
}

/// Makes sure the server has the template database (messiah extension and tenant schema),
/// building it once if not. The build is autonomous: it survives the calling transaction,
/// which is what a cache should do.
///
/// Builders on any admin database of any cluster may race (advisory locks are per database,
/// so they cannot serialize them): each builds under its own name,
/// `<template>_b<pid of its server-side connection>`, then renames it to the template name;
/// the first rename wins, the others drop their copy. A copy left by a builder that died (its
/// server-side connection is gone) is dropped by the next builder.
pub fn ensure_template(dbl: &Dblink, server: &Server) -> String {
    let tpl = template_name();
    if database_exists(dbl, server, &tpl) {
        return tpl;
    }
    let maint = server.maintenance();
    let conn = dbl.connection(&maint);
    let leftovers = dbl.query(
        &conn,
        &format!(
            "SELECT datname::text FROM pg_catalog.pg_database d WHERE datname LIKE {} \
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a \
                             WHERE a.pid::text = substring(d.datname from '_b([0-9]+)$'))",
            quote_literal(&format!("{tpl}\\_b%"))
        ),
        1,
    );
    for l in leftovers
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        force_drop(dbl, &conn, &maint, &l);
    }
    let pid = dbl
        .query(&conn, "SELECT pg_catalog.pg_backend_pid()::text", 1)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .unwrap_or_default();
    let build = format!("{tpl}_b{pid}");
    force_drop(dbl, &conn, &maint, &build);
    dbl.exec(
        &conn,
        &maint,
        &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&build)),
    );
    let setup = format!(
        "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS messiah CASCADE; {TENANT_SCHEMA_SQL}"
    );
    dbl.exec_once(&server.database(&build), &setup);
    // The setup connection's backend may still be exiting; RENAME waits up to 5 s for it.
    let renamed = dbl.exec_may_fail(
        &conn,
        &maint,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&build),
            quote_ident(&tpl)
        ),
    );
    match renamed {
        Ok(()) => {
            // Nobody may connect to a template: a connected session would make CREATE
            // DATABASE ... TEMPLATE fail.
            dbl.exec(
                &conn,
                &maint,
                &format!(
                    "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
                    quote_ident(&tpl)
                ),
            );
        }
        Err(why) => {
            force_drop(dbl, &conn, &maint, &build);
            if !database_exists(dbl, server, &tpl) {
                raise(
                    Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("could not install the template database \"{tpl}\""),
                    Some(why),
                    None,
                );
            }
        }
    }
    tpl
}

fn fault(point: &str) -> bool {
    guc::string(&guc::FAULT_INJECTION) == point
}

/// Creates the tenant database (called at COMMIT by the deferred trigger on
/// `messiah.tenants`, and by reconcile to recreate a missing one). Journals first, then
/// `CREATE DATABASE ... TEMPLATE <template> STRATEGY <messiah.clone_strategy>`, then marks
/// the database with a comment naming its tenant and admin database.
/// Errors: 42P04 if the database already exists (it is left untouched).
pub fn create_database(tenant_id: &str, datname: &str, server_conninfo: &str) {
    let server = Server::from_catalog(server_conninfo);
    let dbl = dblink();
    let tpl = ensure_template(&dbl, &server);
    advisory_lock(&format!("messiah:db:{datname}"));

    // Journal over the admin database's own connection: committed on its own, before the
    // database exists, so a crash at any later point leaves a trace for the sweeper.
    let admin = Server {
        conninfo: local_conninfo(),
        local: true,
    }
    .maintenance();
    let admin_conn = dbl.connection(&admin);
    let xid = crate::spi::one::<String>("SELECT pg_catalog.pg_current_xact_id()::text", &[])
        .unwrap_or_default();
    dbl.exec(
        &admin_conn,
        &admin,
        &format!(
            "INSERT INTO messiah.provisioning_journal (database_name, server_conninfo, creating_xid) \
             VALUES ({}, {}, {}::xid8) ON CONFLICT DO NOTHING",
            quote_literal(datname),
            quote_literal(server_conninfo),
            quote_literal(&xid)
        ),
    );

    let maint = server.maintenance();
    let conn = dbl.connection(&maint);
    let strategy = guc::CLONE_STRATEGY.get().sql();
    if database_exists(&dbl, &server, datname) {
        forget_journal(&dbl, &admin_conn, &admin, datname, &xid);
        raise(
            Code::ERRCODE_DUPLICATE_DATABASE,
            format!("database \"{datname}\" for tenant \"{tenant_id}\" already exists"),
            Some("messiah creates one database per tenant and never adopts or overwrites an existing one.".into()),
            Some("Drop or rename that database, or choose another tenant_id.".into()),
        );
    }
    dbl.exec(
        &conn,
        &maint,
        &format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY {strategy}",
            quote_ident(datname),
            quote_ident(&tpl)
        ),
    );
    let marker = serde_json::json!({
        "messiah_tenant": tenant_id,
        "database": datname,
        "admin_database": current_database(),
        "admin_system_identifier": system_identifier(),
    });
    dbl.exec(
        &conn,
        &maint,
        &format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(datname),
            quote_literal(&marker.to_string())
        ),
    );
    // A tenant created with fields or a non-default unknown-field policy in the same
    // transaction gets its definitions now; the template holds the empty default.
    let needs_push = crate::spi::one::<bool>(
        "SELECT fields_version > 0 OR coalesce(settings ->> 'unknown_custom_fields', 'reject') <> 'reject' \
         FROM messiah.tenants WHERE tenant_id = $1",
        &[tenant_id.into()],
    )
    .unwrap_or(false);
    if needs_push {
        Spi::run_with_args(
            "SELECT messiah.push_field_snapshot($1)",
            &[tenant_id.into()],
        )
        .or_raise("pushing the field snapshot");
    }
    if fault("error_after_create") {
        raise(
            Code::ERRCODE_INTERNAL_ERROR,
            "messiah.fault_injection: error_after_create",
            None,
            None,
        );
    }
    if fault("sleep_after_create") {
        for _ in 0..30_000 {
            wait_ms(1);
        }
    }
}

fn forget_journal(dbl: &Dblink, conn: &str, conninfo: &str, datname: &str, xid: &str) {
    dbl.exec(
        conn,
        conninfo,
        &format!(
            "DELETE FROM messiah.provisioning_journal WHERE database_name = {} AND creating_xid = {}::xid8",
            quote_literal(datname),
            quote_literal(xid)
        ),
    );
}

fn system_identifier() -> String {
    crate::spi::one::<String>(
        "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
        &[],
    )
    .unwrap_or_default()
}

/// Drops a tenant database, disconnecting its sessions (`WITH (FORCE)`). Called at COMMIT by
/// the deferred trigger on DELETE from `messiah.tenants`, and by sweep/reconcile repair.
pub fn drop_database(datname: &str, server_conninfo: &str) {
    let server = Server::from_catalog(server_conninfo);
    let dbl = dblink();
    advisory_lock(&format!("messiah:db:{datname}"));
    let maint = server.maintenance();
    let conn = dbl.connection(&maint);
    force_drop(&dbl, &conn, &maint, datname);
}

/// Drops a deleted tenant's database at COMMIT, but only if it carries this admin database's
/// marker: a database of that name that messiah did not create (for example, created by hand
/// while a transaction created and dropped the tenant before its COMMIT) is left alone.
/// Returns whether it dropped.
pub fn drop_tenant_database(datname: &str, server_conninfo: &str) -> bool {
    if !marker_is_ours(datname, server_conninfo) {
        return false;
    }
    drop_database(datname, server_conninfo);
    true
}

/// Drops databases whose creating transaction aborted (see the module comment) and forgets
/// journal rows of committed creations. Returns the names of the databases dropped.
pub fn sweep() -> Vec<String> {
    let rows = crate::spi::text_rows(
        "SELECT database_name, server_conninfo, creating_xid::text, \
                coalesce(pg_catalog.pg_xact_status(creating_xid), 'unknown') \
         FROM messiah.provisioning_journal ORDER BY created_at",
        &[],
        4,
    );
    let mut dropped = Vec::new();
    for row in rows {
        let [datname, server_conninfo, xid, status] =
            [0, 1, 2, 3].map(|i| row[i].clone().unwrap_or_default());
        if status == "in progress" {
            continue;
        }
        // Wait for anyone creating or dropping this database right now.
        advisory_lock(&format!("messiah:db:{datname}"));
        let status = crate::spi::one::<String>(
            "SELECT coalesce(pg_catalog.pg_xact_status($1::xid8), 'unknown')",
            &[xid.as_str().into()],
        )
        .unwrap_or_default();
        if status == "in progress" {
            continue;
        }
        let owned = crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM messiah.tenants WHERE database_name = $1)",
            &[datname.as_str().into()],
        )
        .unwrap_or(true);
        // Only a database carrying this admin database's marker comment is dropped: a
        // database someone else created under that name in the meantime is never touched.
        if status != "committed" && !owned && marker_is_ours(&datname, &server_conninfo) {
            drop_database(&datname, &server_conninfo);
            dropped.push(datname.clone());
        }
        Spi::run_with_args(
            "DELETE FROM messiah.provisioning_journal WHERE database_name = $1 AND creating_xid = $2::xid8",
            &[datname.as_str().into(), xid.as_str().into()],
        )
        .or_raise("forgetting a journal row");
    }
    dropped
}

/// Whether `datname` exists and carries the marker comment messiah writes for this admin
/// database (`None` in the marker means no such database or no marker).
fn marker_is_ours(datname: &str, server_conninfo: &str) -> bool {
    let server = Server::from_catalog(server_conninfo);
    let dbl = dblink();
    let conn = dbl.connection(&server.maintenance());
    let rows = dbl.query(
        &conn,
        &format!(
            "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database WHERE datname = {}",
            quote_literal(datname)
        ),
        1,
    );
    rows.first()
        .and_then(|r| r[0].as_deref())
        .map(|c| marker_matches(c, datname, &current_database(), &system_identifier()))
        .unwrap_or(false)
}

/// Whether a database comment is the marker messiah wrote when it created `datname` for this
/// admin database. The marker names the database too: a database renamed since (an archive
/// of a kept tenant, say) carries a marker for another name and is not messiah's to drop.
fn marker_matches(comment: &str, datname: &str, admin_db: &str, sysid: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(comment)
        .map(|m| {
            m.get("database").and_then(|v| v.as_str()) == Some(datname)
                && m.get("admin_database").and_then(|v| v.as_str()) == Some(admin_db)
                && m.get("admin_system_identifier").and_then(|v| v.as_str()) == Some(sysid)
        })
        .unwrap_or(false)
}

/// One finding of [`reconcile`].
pub struct Drift {
    pub kind: &'static str,
    pub tenant_id: String,
    pub database_name: String,
    pub action: String,
}

/// Lists, and with `repair` fixes, the drift between the catalog and the servers:
/// - `orphan_database`: a database named like a tenant database (`tenant_<valid id>`) with no
///   catalog row. Repair drops it if messiah created it for this admin database (its comment
///   says so); one without messiah's comment is reported and left alone, since messiah cannot
///   know whose it is. Databases kept by `messiah_drop_tenant(keep_database => true)` are
///   not drift. Databases created by messiah for another admin database are not listed.
/// - `missing_database`: a catalog row whose database does not exist. Repair recreates it
///   empty from the template (the catalog is the source of truth).
/// - `stale_template`: a template database of an earlier build of messiah. Repair drops it.
pub fn reconcile(repair: bool) -> Vec<Drift> {
    let mut out = Vec::new();
    if repair {
        for d in sweep() {
            let tenant_id = TenantId::from_database_name(&d)
                .map(|t| t.to_string())
                .unwrap_or_default();
            out.push(Drift {
                kind: "aborted_creation",
                tenant_id,
                database_name: d,
                action: "dropped".into(),
            });
        }
    }
    let catalog: Vec<(String, String, String)> = crate::spi::text_rows(
        "SELECT tenant_id, database_name, server_conninfo FROM messiah.tenants ORDER BY tenant_id",
        &[],
        3,
    )
    .into_iter()
    .map(|r| {
        let mut r = r.into_iter().map(Option::unwrap_or_default);
        (
            r.next().unwrap_or_default(),
            r.next().unwrap_or_default(),
            r.next().unwrap_or_default(),
        )
    })
    .collect();
    let detached =
        crate::spi::column::<String>("SELECT database_name FROM messiah.detached_databases", &[]);

    let mut servers: Vec<String> = catalog.iter().map(|c| c.2.clone()).collect();
    servers.push(Server::current().conninfo.render());
    servers.sort();
    servers.dedup();

    let dbl = dblink();
    let me = current_database();
    let sysid = system_identifier();
    for server_conninfo in servers {
        let server = Server::from_catalog(&server_conninfo);
        let maint = server.maintenance();
        let conn = dbl.connection(&maint);
        let dbs = dbl.query(
            &conn,
            "SELECT datname::text, pg_catalog.shobj_description(oid, 'pg_database') \
             FROM pg_catalog.pg_database WHERE datname LIKE 'tenant\\_%' ORDER BY datname",
            2,
        );
        for db in &dbs {
            let datname = db[0].clone().unwrap_or_default();
            let Some(tid) = TenantId::from_database_name(&datname) else {
                continue;
            };
            let in_catalog = catalog
                .iter()
                .any(|c| c.1 == datname && c.2 == server_conninfo);
            if in_catalog || detached.contains(&datname) {
                continue;
            }
            let marker: Option<serde_json::Value> = db[1]
                .as_deref()
                .filter(|c| c.contains("messiah_tenant"))
                .and_then(|c| serde_json::from_str(c).ok());
            let text = |m: &serde_json::Value, k: &str| {
                m.get(k).and_then(|v| v.as_str()).map(str::to_string)
            };
            let action = match marker {
                None => "left alone: not created by messiah (no marker comment); drop it by hand if unwanted".to_string(),
                Some(m)
                    if text(&m, "admin_database").as_deref() != Some(me.as_str())
                        || text(&m, "admin_system_identifier").as_deref() != Some(sysid.as_str()) =>
                {
                    continue; // another admin database's tenant
                }
                Some(m) if text(&m, "database").as_deref() != Some(datname.as_str()) => format!(
                    "left alone: messiah created it as {:?}, it was renamed since; drop it by hand if unwanted",
                    text(&m, "database").unwrap_or_default()
                ),
                Some(_) if repair => {
                    drop_database(&datname, &server_conninfo);
                    "dropped".to_string()
                }
                Some(_) => "would drop".to_string(),
            };
            out.push(Drift {
                kind: "orphan_database",
                tenant_id: tid.to_string(),
                database_name: datname,
                action,
            });
        }
        for (tenant_id, datname, conninfo) in catalog.iter().filter(|c| c.2 == server_conninfo) {
            if dbs
                .iter()
                .any(|d| d[0].as_deref() == Some(datname.as_str()))
            {
                continue;
            }
            let action = if repair {
                create_database(tenant_id, datname, conninfo);
                "recreated empty".to_string()
            } else {
                "would recreate empty".to_string()
            };
            out.push(Drift {
                kind: "missing_database",
                tenant_id: tenant_id.clone(),
                database_name: datname.clone(),
                action,
            });
        }
        // Templates of earlier builds of messiah: no new tenant is cloned from them.
        let current = template_name();
        let stale = dbl.query(
            &conn,
            &format!(
                "SELECT datname::text FROM pg_catalog.pg_database WHERE datistemplate \
                 AND datname LIKE 'messiah\\_template\\_%' AND datname !~ '_b[0-9]+$' \
                 AND datname <> {} ORDER BY 1",
                quote_literal(&current)
            ),
            1,
        );
        for name in stale
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let action = if repair {
                dbl.exec(
                    &conn,
                    &maint,
                    &format!(
                        "ALTER DATABASE {} WITH IS_TEMPLATE false",
                        quote_ident(&name)
                    ),
                );
                force_drop(&dbl, &conn, &maint, &name);
                "dropped".to_string()
            } else {
                "would drop".to_string()
            };
            out.push(Drift {
                kind: "stale_template",
                tenant_id: String::new(),
                database_name: name,
                action,
            });
        }
    }
    out
}
