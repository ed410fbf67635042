//! The outbox: remote actions decided by a transaction and carried out after it commits
//! (DESIGN.md decision 3).
//!
//! A transaction that drops a tenant or changes its catalog copy writes a row in
//! `messiah.outbox`, so the action commits or aborts with the catalog change. After COMMIT the
//! row is carried out by the executor: the admin database's executor worker (woken at once by
//! the committing backend when messiah is preloaded, and every `messiah.sweep_interval` ms),
//! or, without preloading, the next messiah call in that database. Nothing is done in the
//! COMMIT callback itself except setting a latch: interrupts are held there, SPI is unusable,
//! errors cannot be raised, and a DROP DATABASE sent from it would wait on PG15's barrier for
//! this very backend.
//!
//! Every action is idempotent and re-checks the catalog when it runs, so running one twice,
//! or after the state changed, is harmless:
//! - `drop_database`: drops the database of a `dropping` tenant if its marker says this
//!   installation created it under that name (a database taken over or replaced is left
//!   alone), then deletes the catalog row.
//! - `push_snapshot`: installs the tenant's current catalog copy (all queued pushes of one
//!   tenant are done by one install of the newest copy; an older version never overwrites a
//!   newer one).
//! - `claim_database`: after an adoption or a takeover commits, rewrites the database's marker
//!   to name this installation (and the claiming transaction, which has committed) and installs
//!   the catalog copy over the previous owner's. Done after COMMIT because a marker naming this
//!   installation and a transaction that then aborted would make the database look like an
//!   aborted creation.
//!
//! - `apply_roles`: makes the tenant's roles on its server match its catalog row (creation,
//!   status, limits, credential rotation; see `roles`). The drop action drops them with the
//!   database.
//!
//! A failed action stays queued with its error and is retried with exponential backoff (1 s
//! doubling to 30 s); `messiah_reconcile()` lists it as `pending_action`.

use super::catalog::{installation_id, Tenant};
use super::marker::Marker;
use super::provision;
use crate::err::{Code, Error, OrRaise};
use crate::remote::Server;
use pgrx::prelude::*;

/// A queued remote action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DropDatabase,
    PushSnapshot,
    ClaimDatabase,
    ApplyRoles,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::DropDatabase => "drop_database",
            Action::PushSnapshot => "push_snapshot",
            Action::ClaimDatabase => "claim_database",
            Action::ApplyRoles => "apply_roles",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "drop_database" => Some(Action::DropDatabase),
            "push_snapshot" => Some(Action::PushSnapshot),
            "claim_database" => Some(Action::ClaimDatabase),
            "apply_roles" => Some(Action::ApplyRoles),
            _ => None,
        }
    }
}

/// Queues `action` for tenant `t`, to run after the calling transaction commits, and asks
/// for the executor to be woken at that commit.
pub fn enqueue(action: Action, t: &Tenant) {
    enqueue_with(action, t, serde_json::json!({}));
}

/// [`enqueue`] with a payload.
pub fn enqueue_with(action: Action, t: &Tenant, payload: serde_json::Value) {
    crate::spi::run(
        "INSERT INTO messiah.outbox (action, tenant_id, server_id, database_name, payload) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            action.as_str().into(),
            t.tenant_id.as_str().into(),
            t.server_id.into(),
            t.database_name.as_str().into(),
            pgrx::JsonB(payload).into(),
        ],
    );
    crate::worker::wake_at_commit();
}

/// One queued row.
struct Item {
    id: i64,
    action: Action,
    tenant_id: String,
    server_id: i64,
    database_name: String,
    payload: serde_json::Value,
}

/// What a run of the executor did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// (action, tenant_id, database, outcome) of every action carried out or failed.
    pub items: Vec<(String, String, String, String)>,
    pub done: i64,
    pub failed: i64,
    /// Actions still queued after the run (failed ones, or ones another session is running).
    pub pending: i64,
}

/// Which queued actions a run carries out: all, or one tenant's of one kind.
#[derive(Clone, Copy, Default)]
struct Filter<'a> {
    tenant_id: Option<&'a str>,
    action: Option<Action>,
}

/// The next queued action to carry out, locked. Actions of a tenant still `provisioning` are
/// never taken: that is only visible inside its creating transaction (a
/// `messiah_run_pending()` there), and its database does not exist before COMMIT; they are
/// carried out after it.
fn next_item(force: bool, skip: &[i64], filter: Filter) -> Option<Item> {
    let rows = crate::spi::text_rows_mut(
        "SELECT id::text, action, tenant_id, server_id::text, database_name, payload::text FROM messiah.outbox \
         WHERE ($1 OR next_attempt_at <= pg_catalog.clock_timestamp()) AND NOT (id = ANY ($2)) \
           AND ($3::text IS NULL OR tenant_id = $3) AND ($4::text IS NULL OR action = $4) \
           AND NOT EXISTS (SELECT 1 FROM messiah.tenants t WHERE t.tenant_id = outbox.tenant_id \
                           AND t.lifecycle = 'provisioning') \
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        &[
            force.into(),
            skip.to_vec().into(),
            filter.tenant_id.into(),
            filter.action.map(Action::as_str).into(),
        ],
        6,
    );
    let r = rows.into_iter().next()?;
    let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    Some(Item {
        id: t(0).parse().unwrap_or(0),
        action: Action::parse(&t(1))?,
        tenant_id: t(2),
        server_id: t(3).parse().unwrap_or(0),
        database_name: t(4),
        payload: serde_json::from_str(&t(5)).unwrap_or_default(),
    })
}

/// Carries out due actions (every queued one when `force`), each in its own subtransaction
/// so one failure does not undo the others; a failure is recorded on its row.
pub fn run(force: bool) -> Report {
    run_filtered(force, Filter::default())
}

/// Carries out now the queued `action`s of one tenant, failed ones included (a routed call
/// needs its roles set up), waiting up to 5 s for one that another session is carrying out.
/// Returns whether any was queued (the catalog row may have changed meanwhile).
pub fn run_for_tenant(tenant_id: &str, action: Action) -> bool {
    let filter = Filter {
        tenant_id: Some(tenant_id),
        action: Some(action),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut any = false;
    loop {
        let queued = crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM messiah.outbox WHERE tenant_id = $1 AND action = $2)",
            &[tenant_id.into(), action.as_str().into()],
        )
        .unwrap_or(false);
        any |= queued;
        if !queued || std::time::Instant::now() >= deadline {
            return any;
        }
        let r = run_filtered(true, filter);
        if r.done + r.failed == 0 {
            crate::spi::sleep_ms(50);
        } else if r.failed > 0 {
            return any;
        }
    }
}

fn run_filtered(force: bool, filter: Filter) -> Report {
    let mut report = Report::default();
    let mut seen = Vec::new();
    while let Some(item) = next_item(force, &seen, filter) {
        seen.push(item.id);
        // An Err is raised inside the subtransaction so that its partial work is rolled back.
        let outcome = crate::spi::in_subtransaction(|| execute(&item).or_raise());
        match outcome {
            Ok(what) => {
                report.done += 1;
                report.items.push((
                    item.action.as_str().into(),
                    item.tenant_id.clone(),
                    item.database_name.clone(),
                    what,
                ));
            }
            Err(e) => {
                report.failed += 1;
                crate::spi::run(
                    "UPDATE messiah.outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = pg_catalog.clock_timestamp() + \
                         LEAST(30, pg_catalog.power(2, attempts)) * interval '1 second' \
                     WHERE id = $1",
                    &[item.id.into(), e.message.as_str().into()],
                );
                report.items.push((
                    item.action.as_str().into(),
                    item.tenant_id.clone(),
                    item.database_name.clone(),
                    format!("failed: {}", e.message),
                ));
            }
        }
    }
    report.pending =
        crate::spi::one::<i64>("SELECT count(*) FROM messiah.outbox", &[]).unwrap_or(0);
    report
}

fn execute(item: &Item) -> Result<String, Error> {
    match item.action {
        Action::DropDatabase => drop_database(item),
        Action::PushSnapshot => push_snapshot(item),
        Action::ClaimDatabase => claim_database(item),
        Action::ApplyRoles => apply_roles(item),
    }
}

/// All queued role changes of the tenant are served by one [`super::roles::apply`] of the
/// catalog row as it is now (coalesced as pushes are).
fn apply_roles(item: &Item) -> Result<String, Error> {
    crate::spi::run(
        "DELETE FROM messiah.outbox WHERE id = $2 OR id IN ( \
             SELECT id FROM messiah.outbox WHERE tenant_id = $1 AND action = 'apply_roles' \
             FOR UPDATE SKIP LOCKED)",
        &[item.tenant_id.as_str().into(), item.id.into()],
    );
    match Tenant::find(&item.tenant_id, false) {
        // dropped with keep_database: the database stays, nobody logs in as the tenant
        None => super::roles::lock_out(
            &item.tenant_id,
            &item.database_name,
            &Server::by_id(item.server_id)?,
        ),
        Some(t) => super::roles::apply(&t),
    }
}

fn claim_database(item: &Item) -> Result<String, Error> {
    crate::spi::run(
        "DELETE FROM messiah.outbox WHERE id = $1",
        &[item.id.into()],
    );
    let Some(t) = Tenant::find(&item.tenant_id, false) else {
        return Ok("skipped: the tenant is gone".into());
    };
    if !t.is_ours() || t.lifecycle != "ready" {
        return Ok("skipped: not this installation's ready tenant".into());
    }
    let server = t.server()?;
    provision::lock_database(&server, &t.database_name);
    if provision::find_database(&server, &t.database_name)?.is_none() {
        return Ok("skipped: the database is missing".into());
    }
    let xid = item
        .payload
        .get("creating_xid")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    provision::write_marker(&t, &server, xid)?;
    provision::install_copy(&t, &server, true)?;
    // its roles' passwords derive from the installation: set again, as a separate action
    enqueue(Action::ApplyRoles, &t);
    Ok("claimed".into())
}

fn drop_database(item: &Item) -> Result<String, Error> {
    let server = Server::by_id(item.server_id)?;
    if let Some(t) = Tenant::find(&item.tenant_id, false).filter(|t| t.is_supabase()) {
        return drop_supabase_schema(item, &t, &server);
    }
    provision::lock_database(&server, &item.database_name);
    let outcome = match provision::find_database(&server, &item.database_name)? {
        None => "already gone".to_string(),
        Some(db) => {
            let inst = installation_id();
            match db.comment.as_deref().and_then(Marker::parse) {
                Some(m) if m.is_of(&inst, &item.database_name) => {
                    provision::force_drop(&server, &item.database_name)?;
                    let roles = match Tenant::find(&item.tenant_id, false) {
                        Some(t) => super::roles::drop_roles(&t, &server)?,
                        None => Vec::new(),
                    };
                    if roles.is_empty() {
                        "dropped".to_string()
                    } else {
                        format!("dropped, with roles {}", roles.join(", "))
                    }
                }
                Some(m) if m.installation != inst => {
                    format!("left alone: managed by installation {} now", m.installation)
                }
                _ => "left alone: not created by messiah under this name".to_string(),
            }
        }
    };
    forget_dropped(item);
    Ok(outcome)
}

/// The end of a drop action: the tenant's catalog rows and the action go.
fn forget_dropped(item: &Item) {
    crate::spi::run(
        "DELETE FROM messiah.tenants WHERE tenant_id = $1 AND lifecycle = 'dropping'",
        &[item.tenant_id.as_str().into()],
    );
    crate::spi::run(
        "DELETE FROM messiah.outbox WHERE id = $1",
        &[item.id.into()],
    );
}

/// The drop of a `supabase` tenant: its schema (if marked as its own) and roles go, the
/// project's database and everything else in it stay.
fn drop_supabase_schema(item: &Item, t: &Tenant, server: &Server) -> Result<String, Error> {
    let db = server.database(&t.database_name);
    let context = t.describe(server);
    let app = super::roles::application_role(t);
    let whose = crate::remote::query(
        &db,
        super::supabase::schema_owner_query(),
        &[
            Some(&t.schema_name),
            Some(&super::supabase::marker(&t.tenant_id)),
        ],
    )
    .map_err(|e| e.into_error(&context))?;
    let schema = match whose.scalar() {
        Some("ours") => {
            crate::remote::execute(&db, &super::supabase::drop_script(&t.schema_name, &app))
                .map_err(|e| {
                    let e = e.into_error(&context);
                    if e.code == Code::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST {
                        e.hint("Objects of the project depend on the tenant's tables; messiah drops nothing outside the tenant's schema. Drop or change them, then messiah_run_pending().")
                    } else {
                        e
                    }
                })?;
            format!("schema {} dropped", t.schema_name)
        }
        Some("foreign") => format!(
            "schema {} left alone (not created by messiah)",
            t.schema_name
        ),
        _ => format!("schema {} already gone", t.schema_name),
    };
    crate::remote::execute(
        &db,
        &format!(
            "DO $$BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) {}) THEN \
               REVOKE ALL ON DATABASE {} FROM {}; END IF; END$$;\n",
            crate::ident::quote_literal(&app),
            crate::ident::quote_ident(&t.database_name),
            crate::ident::quote_ident(&app)
        ),
    )
    .map_err(|e| e.into_error(&context))?;
    let roles = super::roles::drop_roles(t, server).map_err(|e| {
        if e.code == Code::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST {
            e.hint("The project granted the tenant's roles rights or gave them objects (pg_shdepend lists them); revoke or reassign them, then messiah_run_pending().")
        } else {
            e
        }
    })?;
    forget_dropped(item);
    Ok(format!(
        "{schema} (database {} kept: it is the project's); roles {}",
        t.database_name,
        if roles.is_empty() {
            "none".to_string()
        } else {
            roles.join(", ")
        }
    ))
}

fn push_snapshot(item: &Item) -> Result<String, Error> {
    // Every queued push of this tenant is served by this one install of the newest copy: the
    // copy is read below, after the delete, so it includes every change whose push is deleted.
    // Rows another session has locked are skipped, not waited for (it serves them itself):
    // two executors coalescing each other's rows would otherwise deadlock.
    crate::spi::run(
        "DELETE FROM messiah.outbox WHERE id = $2 OR id IN ( \
             SELECT id FROM messiah.outbox WHERE tenant_id = $1 AND action = 'push_snapshot' \
             FOR UPDATE SKIP LOCKED)",
        &[item.tenant_id.as_str().into(), item.id.into()],
    );
    let Some(t) = Tenant::find(&item.tenant_id, false) else {
        return Ok("skipped: the tenant is gone".into());
    };
    if t.lifecycle != "ready" {
        return Ok(format!("skipped: the tenant is {}", t.lifecycle));
    }
    if !t.is_ours() {
        return Ok("skipped: managed by another installation".into());
    }
    if t.is_supabase() {
        return Ok(
            "skipped: a supabase tenant has no catalog copy (messiah validates its routed writes)"
                .into(),
        );
    }
    let server = t.server()?;
    let installed = provision::install_copy(&t, &server, false)?;
    let ep = server.database(&t.database_name);
    let built = super::indexes::sync(&ep, &t.snapshot(), &t.describe(&server))?;
    crate::remote::close_database(server.id, &t.database_name);
    Ok(if built.is_empty() {
        installed
    } else {
        format!("{installed}; {}", built.join(", "))
    })
}

/// Carries out due actions in this session when no executor worker serves this database
/// (messiah not preloaded): "the next messiah call" of the outbox contract. Only under READ
/// COMMITTED (a transaction-level snapshot could push an older copy); failures stay queued.
pub fn run_in_session() {
    if crate::worker::executor_available() {
        return;
    }
    // SAFETY: plain read of the transaction's isolation level.
    let read_committed = unsafe { pg_sys::XactIsoLevel } <= pg_sys::XACT_READ_COMMITTED as i32;
    if !read_committed {
        return;
    }
    let due = crate::spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM messiah.outbox WHERE next_attempt_at <= pg_catalog.clock_timestamp())",
        &[],
    )
    .unwrap_or(false);
    if due {
        run(false);
    }
}

/// Runs the outbox now (every queued action) and, with `wait_ms` > 0, waits up to that long
/// for actions another session is running, retrying failed ones every 100 ms.
pub fn run_and_wait(wait_ms: i64) -> Report {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(wait_ms.max(0) as u64);
    let mut total = Report::default();
    loop {
        let r = run(true);
        total.done += r.done;
        total.failed = r.failed;
        // an action that fails on every pass is listed once, with its latest outcome
        for item in r.items {
            let again = total.items.iter_mut().find(|x| {
                (&x.0, &x.1, &x.2) == (&item.0, &item.1, &item.2) && x.3.starts_with("failed")
            });
            match again {
                Some(x) => *x = item,
                None => total.items.push(item),
            }
        }
        total.pending = r.pending;
        if r.pending == 0 || std::time::Instant::now() >= deadline || blocking_others() {
            return total;
        }
        crate::spi::sleep_ms(100);
    }
}

/// Whether another session of this admin database (the executor works in it) waits for a lock
/// this transaction holds. The actions this call
/// carried out are not committed until the caller's transaction ends, and an action the
/// executor took meanwhile may wait for them (the same tenant's catalog row): waiting for it
/// here would only wait out `wait_ms`. The caller's COMMIT lets it finish; calling again then
/// finds it done.
fn blocking_others() -> bool {
    crate::spi::one_ro::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a \
         WHERE a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database() \
           AND pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids(a.pid)))",
        &[],
    )
    .unwrap_or(false)
}

/// 55006 for a tenant whose database is still being dropped.
pub fn still_dropping(tenant_id: &str) -> Error {
    Error::new(
        Code::ERRCODE_OBJECT_IN_USE,
        format!("tenant \"{tenant_id}\" is still being dropped"),
    )
    .detail("Its database is dropped after the dropping transaction commits.")
    .hint("Retry in a moment; messiah_run_pending(wait_ms => 5000) waits for it.")
}
