//! Drift between the catalog and the servers, listed and (with `repair`) fixed, and the
//! explicit operations on databases without a catalog row (adopt, drop, take over).
//!
//! Repair never destroys data it cannot prove is garbage (DESIGN.md decision 3): it drops only
//! aborted creations of this installation (the server's catalog proves them, see
//! `provision`); every other orphan is reported with its size (and, with `deep`, its row
//! counts) and left alone until `messiah_adopt_database` or `messiah_drop_orphan` says what to
//! do with it.

use super::catalog::{installation_id, Tenant};
use super::marker::{self, Marker};
use super::{outbox, provision};
use crate::err::{Code, Error};
use crate::remote::{self, Server};

/// One finding.
#[derive(Debug, Clone)]
pub struct Drift {
    pub kind: &'static str,
    pub tenant_id: String,
    pub database_name: String,
    pub action: String,
    pub server: String,
}

/// The servers reconcile looks at: local and every server a tenant lives on.
fn servers() -> Result<Vec<Server>, Error> {
    let mut out = vec![Server::local()?];
    for id in crate::spi::column::<i64>(
        "SELECT DISTINCT server_id FROM messiah.tenants ORDER BY 1",
        &[],
    ) {
        let s = Server::by_id(id)?;
        if !out.iter().any(|o| o.id == s.id) {
            out.push(s);
        }
    }
    Ok(out)
}

fn pretty_size(bytes: Option<i64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 20 => format!("{} MB", b >> 20),
        Some(b) => format!("{} kB", b >> 10),
        None => "size unknown".into(),
    }
}

/// Exact row counts of the tenant tables of a database (for reports), or why not.
fn row_counts(server: &Server, datname: &str) -> String {
    let ep = server.database(datname);
    let tables = match remote::query(
        &ep,
        "SELECT c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = ANY ('{clients,projects,activities}') \
           AND c.relkind = 'r' ORDER BY 1",
        &[],
    ) {
        Ok(r) => r.rows,
        Err(e) => return format!("row counts unavailable: {e}"),
    };
    let present: Vec<String> = tables
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    // in the seed's order
    let names: Vec<&str> = crate::fields::ENTITY_TABLES
        .iter()
        .copied()
        .filter(|t| present.iter().any(|p| p == t))
        .collect();
    if names.is_empty() {
        return "no tenant tables".into();
    }
    let sql = names
        .iter()
        .map(|n| {
            format!(
                "(SELECT '{n}: ' || count(*) FROM public.{})",
                crate::ident::quote_ident(n)
            )
        })
        .collect::<Vec<_>>()
        .join(" || ', ' || ");
    let counts = remote::query(&ep, &format!("SELECT {sql}"), &[])
        .map(|r| r.scalar().unwrap_or_default().to_string())
        .unwrap_or_else(|e| format!("row counts unavailable: {e}"));
    remote::close_database(server.id, datname);
    format!("{counts} rows")
}

/// Why an orphan tenant database is left alone, or `None` when it is not this
/// installation's business (a live installation elsewhere manages it).
fn orphan_reason(db: &provision::Database, inst: &str, me: &str, sysid: &str) -> Option<String> {
    let Some(m) = db.comment.as_deref().and_then(Marker::parse) else {
        return Some("not created by messiah (no marker comment)".into());
    };
    if m.installation == inst {
        if m.database != db.name {
            return Some(format!(
                "messiah created it as {:?}, it was renamed since",
                m.database
            ));
        }
        return Some("created by this installation, but no catalog row names it".into());
    }
    if m.system_identifier == sysid && m.admin_database == me {
        return Some(format!(
            "created by an earlier installation of messiah in this database ({})",
            m.installation
        ));
    }
    let admin_alive = m.system_identifier == sysid
        && crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
            &[m.admin_database.as_str().into()],
        )
        .unwrap_or(true);
    if m.system_identifier != sysid || admin_alive {
        return None; // another installation's tenant
    }
    Some(format!(
        "created by installation {} of admin database {:?}, which is gone",
        m.installation, m.admin_database
    ))
}

/// Lists (and with `repair` fixes) drift. `deep` (implied by `repair`) also connects to tenant
/// databases: catalog copies (`snapshot_drift`) and row counts of orphans.
pub fn reconcile(repair: bool, deep: bool) -> Result<Vec<Drift>, Error> {
    let deep = deep || repair;
    let inst = installation_id();
    let me = crate::spi::current_database();
    let sysid = provision::system_identifier();
    let mut out = Vec::new();
    let detached =
        crate::spi::column::<String>("SELECT database_name FROM messiah.detached_databases", &[]);
    if repair {
        outbox::run(true);
    }
    for server in servers()? {
        let dbs = provision::list_databases(&server, "tenant\\_%")?;
        let tenants = Tenant::on_server(server.id);
        let swept = provision::sweep(std::slice::from_ref(&server), repair)?;
        for s in &swept {
            out.push(Drift {
                kind: "aborted_creation",
                tenant_id: s.tenant_id.clone(),
                database_name: s.database_name.clone(),
                action: if repair { "dropped" } else { "would drop" }.to_string(),
                server: server.name.clone(),
            });
        }
        for db in &dbs {
            let Some(tid) = crate::ident::TenantId::from_database_name(&db.name) else {
                continue;
            };
            let known = tenants.iter().any(|t| t.database_name == db.name)
                || detached.contains(&db.name)
                || swept.iter().any(|s| s.database_name == db.name);
            if known {
                continue;
            }
            let Some(reason) = orphan_reason(db, &inst, &me, &sysid) else {
                continue;
            };
            let mut facts = pretty_size(db.size_bytes);
            if deep {
                facts = format!("{facts}, {}", row_counts(&server, &db.name));
            }
            out.push(Drift {
                kind: "orphan_database",
                tenant_id: tid.to_string(),
                database_name: db.name.clone(),
                action: format!(
                    "left alone: {reason} ({facts}); messiah_adopt_database() adopts it, messiah_drop_orphan() drops it"
                ),
                server: server.name.clone(),
            });
        }
        for t in &tenants {
            if let Some(d) = tenant_drift(t, &server, &dbs, repair, deep)? {
                out.push(d);
            } else if deep && t.lifecycle == "ready" && t.is_ours() && !t.is_supabase() {
                out.extend(index_drift(t, &server, repair)?);
            }
        }
        out.extend(stale_templates(&server, repair)?);
    }
    // after every server's sweep: a failed move's copy (and its subscription, which keeps the
    // source's slot in use) is gone by now
    for server in servers()? {
        let tenants = Tenant::on_server(server.id);
        for (tenant_id, what, action) in
            crate::fleet::moves::leftovers(&server, &tenants, repair, deep)?
        {
            out.push(Drift {
                kind: "move_leftover",
                tenant_id,
                database_name: what,
                action,
                server: server.name.clone(),
            });
        }
    }
    out.extend(pending_actions());
    Ok(out)
}

fn drift(kind: &'static str, t: &Tenant, server: &Server, action: String) -> Option<Drift> {
    Some(Drift {
        kind,
        tenant_id: t.tenant_id.clone(),
        database_name: t.database_name.clone(),
        action,
        server: server.name.clone(),
    })
}

/// The drift of one catalog row: foreign (restored copy), missing database, catalog copy.
fn tenant_drift(
    t: &Tenant,
    server: &Server,
    dbs: &[provision::Database],
    repair: bool,
    deep: bool,
) -> Result<Option<Drift>, Error> {
    // a supabase tenant's database is its project's (never created, dropped or marked by
    // messiah) and holds no catalog copy: nothing here applies
    if t.lifecycle != "ready" || t.is_supabase() {
        return Ok(None);
    }
    let foreign = (!t.is_ours()).then(|| {
        format!(
            "left alone: managed by installation {}; messiah_takeover() makes this installation manage it",
            t.installation_id
        )
    });
    let Some(db) = dbs.iter().find(|d| d.name == t.database_name) else {
        let action = match foreign {
            Some(f) => f,
            None if repair => {
                recreate(t)?;
                "recreated empty".to_string()
            }
            None => "would recreate empty".to_string(),
        };
        return Ok(drift("missing_database", t, server, action));
    };
    if let Some(f) = foreign {
        return Ok(drift("foreign_tenant", t, server, f));
    }
    let inst = installation_id();
    if let Some(m) = db.comment.as_deref().and_then(Marker::parse) {
        if m.installation != inst {
            return Ok(drift(
                "owned_elsewhere",
                t,
                server,
                format!(
                    "left alone: the database is managed by installation {} now",
                    m.installation
                ),
            ));
        }
    }
    if !deep {
        return Ok(None);
    }
    snapshot_drift(t, server, repair)
}

/// Missing, invalid and unwanted field indexes of a tenant database (`deep`); repair builds
/// and drops them concurrently.
fn index_drift(t: &Tenant, server: &Server, repair: bool) -> Result<Vec<Drift>, Error> {
    use super::indexes::IndexDrift;
    let ep = server.database(&t.database_name);
    let snapshot = t.snapshot();
    let found = super::indexes::audit(&ep, &snapshot)?;
    if repair && !found.is_empty() {
        super::indexes::sync(&ep, &snapshot, &t.describe(server))?;
    }
    remote::close_database(server.id, &t.database_name);
    Ok(found
        .into_iter()
        .map(|d| {
            let (kind, name) = match d {
                IndexDrift::Missing(s) => ("missing_index", s.name),
                IndexDrift::Invalid(s) => ("invalid_index", s.name),
                IndexDrift::Unwanted(n) => ("unwanted_index", n),
            };
            Drift {
                kind,
                tenant_id: t.tenant_id.clone(),
                database_name: t.database_name.clone(),
                action: format!(
                    "{name}: {}",
                    if repair {
                        "fixed (built or dropped concurrently)"
                    } else {
                        "repair builds or drops it concurrently"
                    }
                ),
                server: server.name.clone(),
            }
        })
        .collect())
}

/// Compares the tenant database's catalog copy with the committed catalog.
fn snapshot_drift(t: &Tenant, server: &Server, repair: bool) -> Result<Option<Drift>, Error> {
    let ep = server.database(&t.database_name);
    let found = remote::query_once(
        &ep,
        "SELECT installation_id::text, version::text, snapshot::text FROM messiah.field_snapshot",
        &[],
    );
    let expected = t.snapshot();
    let why = match found {
        Err(e) => format!("the copy cannot be read: {e}"),
        Ok(rows) => match rows.rows.into_iter().next() {
            None => "the database has no catalog copy".into(),
            Some(r) => {
                let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                let copy: serde_json::Value = serde_json::from_str(&text(2)).unwrap_or_default();
                if text(0) != installation_id() {
                    format!("the copy names installation {}", text(0))
                } else if text(1) != t.snapshot_version.to_string() {
                    format!(
                        "the copy is at version {}, the catalog at {}",
                        text(1),
                        t.snapshot_version
                    )
                } else if copy != expected {
                    "the copy's content differs from the catalog".into()
                } else {
                    return Ok(None);
                }
            }
        },
    };
    let action = if repair {
        provision::install_copy(t, server, true)?;
        format!("{why}; installed the catalog's copy")
    } else {
        format!("{why}; repair installs the catalog's copy")
    };
    Ok(drift("snapshot_drift", t, server, action))
}

/// Recreates a ready tenant's missing database, empty, from the template (reconcile repair).
fn recreate(t: &Tenant) -> Result<(), Error> {
    let fresh = Tenant {
        creating_xid: provision::current_xid8(),
        ..t.clone()
    };
    provision::create_database(&fresh)
}

/// Templates of earlier builds, or of this installation's earlier migrations: no new tenant
/// is cloned from them. The template of this build without migrations is shared by every
/// installation on the server, and another installation's migration templates are its own
/// (their COMMENT names it): neither is ever stale here.
fn stale_templates(server: &Server, repair: bool) -> Result<Vec<Drift>, Error> {
    let current = provision::template_name();
    let base = provision::base_template_name();
    let ours = provision::template_marker(&crate::tenants::catalog::installation_id());
    let mut out = Vec::new();
    for db in provision::list_databases(server, "messiah\\_template\\_%")? {
        let foreign = db.comment.as_deref().is_some_and(|c| c != ours);
        if foreign || db.name == base {
            continue;
        }
        // A template of another build; or one whose repair was interrupted after IS_TEMPLATE
        // was cleared (closed to connections, which a template is not while being built:
        // builds run connected, and a fresh rename is not yet closed); or one whose drop was
        // interrupted (invalid).
        let stale = (db.is_template || !db.allow_connections || db.invalid)
            && db.name != current
            && !db
                .name
                .rsplit('_')
                .next()
                .is_some_and(|s| s.starts_with('b'));
        if !stale {
            continue;
        }
        let action = if repair {
            unmark_template(server, &db)?;
            provision::force_drop(server, &db.name)?;
            "dropped".to_string()
        } else {
            "would drop".to_string()
        };
        out.push(Drift {
            kind: "stale_template",
            tenant_id: String::new(),
            database_name: db.name,
            action,
            server: server.name.clone(),
        });
    }
    Ok(out)
}

/// Clears IS_TEMPLATE on a stale template so that it can be dropped. Nothing to do when it is
/// not marked, or is invalid (a drop interrupted or under way: only DROP DATABASE is allowed
/// on it). A concurrent repair may be dropping it: an error is only reported when the database
/// is still there, valid and marked.
fn unmark_template(server: &Server, db: &provision::Database) -> Result<(), Error> {
    if !db.is_template || db.invalid {
        return Ok(());
    }
    let sql = format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE false",
        crate::ident::quote_ident(&db.name)
    );
    let Err(e) = remote::execute(&server.maintenance(), &sql) else {
        return Ok(());
    };
    match provision::find_database(server, &db.name)? {
        Some(now) if now.is_template && !now.invalid => {
            Err(e.into_error(&server.maintenance().describe()))
        }
        _ => Ok(()),
    }
}

/// Queued remote actions that failed at least once.
fn pending_actions() -> Vec<Drift> {
    crate::spi::text_rows(
        "SELECT o.action, o.tenant_id, o.database_name, o.attempts::text, coalesce(o.last_error, ''), \
                coalesce(s.name, '') \
         FROM messiah.outbox o LEFT JOIN messiah.servers s ON s.id = o.server_id \
         WHERE o.attempts > 0 ORDER BY o.id",
        &[],
        6,
    )
    .into_iter()
    .map(|r| {
        let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        Drift {
            kind: "pending_action",
            tenant_id: t(1),
            database_name: t(2),
            action: format!("{} failed {} time(s), retrying: {}", t(0), t(3), t(4)),
            server: t(5),
        }
    })
    .collect()
}

/// A database that no catalog row names, on `server`: 22023 for a name messiah would not
/// make, 55000 when a catalog row names it, 42704 when it does not exist.
fn orphan(server: &Server, database_name: &str) -> Result<provision::Database, Error> {
    let tenantish = crate::ident::TenantId::from_database_name(database_name).is_some();
    let temp = database_name.starts_with(marker::TEMP_PREFIX);
    if !tenantish && !temp {
        return Err(
            Error::invalid(format!("{database_name:?} is not a tenant database name")).hint(
                "Tenant databases are named tenant_<tenant_id>; others are not messiah's to touch.",
            ),
        );
    }
    let named = crate::spi::one::<String>(
        "SELECT tenant_id FROM messiah.tenants WHERE database_name = $1",
        &[database_name.into()],
    );
    if let Some(tid) = named {
        return Err(Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("database \"{database_name}\" belongs to tenant \"{tid}\""),
        )
        .hint("Use messiah_drop_tenant() for a tenant's database."));
    }
    provision::find_database(server, database_name)?.ok_or_else(|| {
        Error::new(
            Code::ERRCODE_INVALID_CATALOG_NAME,
            format!(
                "database \"{database_name}\" does not exist on server \"{}\"",
                server.name
            ),
        )
    })
}

/// Drops an orphan on purpose (`messiah_drop_orphan`).
pub fn drop_orphan(server: &Server, database_name: &str) -> Result<serde_json::Value, Error> {
    provision::lock_database(server, database_name);
    let db = orphan(server, database_name)?;
    provision::force_drop(server, database_name)?;
    Ok(serde_json::json!({
        "database": database_name,
        "server": server.name,
        "dropped": true,
        "size_bytes": db.size_bytes,
    }))
}

/// Brings an orphan back into the catalog from the copy it keeps of its own catalog row and
/// definitions (`messiah_adopt_database`); its marker is rewritten after COMMIT.
pub fn adopt(server: &Server, database_name: &str) -> Result<String, Error> {
    provision::lock_database(server, database_name);
    orphan(server, database_name)?;
    let Some(tid) = crate::ident::TenantId::from_database_name(database_name) else {
        return Err(Error::invalid(format!(
            "{database_name:?} is not a tenant database name"
        )));
    };
    let ep = server.database(database_name);
    let copy = remote::query_once(
        &ep,
        "SELECT tenant_id, snapshot::text FROM messiah.field_snapshot",
        &[],
    )
    .map_err(|e| {
        Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("database \"{database_name}\" has no messiah catalog copy to adopt from"),
        )
        .detail(e.to_string())
    })?;
    let Some(row) = copy.rows.into_iter().next() else {
        return Err(Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("database \"{database_name}\" has an empty catalog copy"),
        ));
    };
    let copy_tid = row.first().cloned().flatten().unwrap_or_default();
    if copy_tid != tid.as_str() {
        return Err(Error::invalid(format!(
            "database \"{database_name}\" holds the copy of tenant \"{copy_tid}\""
        )));
    }
    let snapshot: serde_json::Value =
        serde_json::from_str(&row.get(1).cloned().flatten().unwrap_or_default())
            .unwrap_or_default();
    remote::close_database(server.id, database_name);
    super::api::insert_adopted(tid.as_str(), server, &snapshot)?;
    Ok(tid.to_string())
}

/// Makes this installation manage every tenant row another installation's id names (a
/// restored copy taking over from the original). Markers and copies are rewritten after
/// COMMIT (`claim_database`). Returns (tenant_id, outcome).
pub fn takeover() -> Result<Vec<(String, String)>, Error> {
    let inst = installation_id();
    let xid = provision::current_xid8();
    let rows = crate::spi::text_rows_mut(
        "UPDATE messiah.tenants SET installation_id = messiah.installation_id(), \
             snapshot_version = nextval('messiah.snapshot_version_seq') \
         WHERE installation_id <> messiah.installation_id() AND lifecycle = 'ready' \
         RETURNING tenant_id",
        &[],
        1,
    );
    let mut out = Vec::new();
    for tid in rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        let Some(t) = Tenant::find(&tid, false) else {
            continue;
        };
        if t.is_supabase() {
            out.push((tid, format!("taken over by {inst} (a supabase tenant: its project's database is not claimed)")));
            continue;
        }
        let server = t.server()?;
        let outcome = match provision::find_database(&server, &t.database_name)? {
            Some(_) => {
                outbox::enqueue_with(
                    outbox::Action::ClaimDatabase,
                    &t,
                    serde_json::json!({"creating_xid": xid}),
                );
                format!("taken over from another installation by {inst}; its database is claimed after COMMIT")
            }
            None => "taken over; its database is missing (messiah_reconcile lists it)".into(),
        };
        out.push((tid, outcome));
    }
    Ok(out)
}
