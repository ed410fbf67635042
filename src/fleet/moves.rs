//! Moving a tenant to another server with Postgres' own logical replication (issue "Operating
//! the fleet"; the idea of Citus' `citus_schema_move`).
//!
//! `messiah_move_tenant(tenant_id, to_server, keep_source)`, in one call; the cutover takes
//! effect when the calling transaction commits (called inside a longer transaction, the
//! tenant's routed calls wait until that commits: call it on its own):
//! 1. **Checks** before anything is made: the tenant is ready and provisioned; the target is
//!    active and another server; the source has `wal_level = logical`; the target's user is a
//!    superuser (PG15's `CREATE SUBSCRIPTION` needs one); every table of the tenant has a
//!    replica identity (a primary key), or its updates would fail during the copy; the
//!    database has no code the replication would run as that superuser (triggers enabled
//!    ALWAYS or REPLICA; constraints, indexes, defaults calling functions of its own), checked
//!    on the source and again on the copy before the subscription is made.
//! 2. **Copy**: the target database is created from the target's template under a temporary
//!    name of this installation and tenant (`messiah_mv_<inst>_<tag>`; garbage, and swept, when
//!    no move of that tag runs), a publication of schema `public` is created in the source
//!    database, and a subscription in the target one (its slot on the source); the initial copy
//!    runs while the tenant keeps working; then the catalog copy and the custom-field indexes
//!    are installed. **This transaction has no transaction id during the copy**: creating a
//!    logical slot (and each table's synchronization slot) waits for every transaction with an
//!    id on the source server to end, and the source may be the admin's own cluster, so one
//!    would wait for the other forever. No row lock is taken and nothing is written until the
//!    cutover.
//! 3. **Cutover**: the tenant's move lock is taken exclusively (`lock_timeout` =
//!    `messiah.move_cutover_timeout`): every routed call takes it shared, so new routed calls
//!    wait from here until the catalog points to the target (this call's COMMIT); the tenant's
//!    own sessions on the source are ended and its role loses LOGIN there; the target catches up
//!    to the source's WAL position; sequences are set (logical replication does not carry
//!    them); the subscription (with its slot) and the publication go; the copy is renamed
//!    `tenant_<id>`; the catalog row points to the target; the roles are made there.
//! 4. After COMMIT the source database (and the tenant's roles there) is dropped by the outbox,
//!    or, with `keep_source`, kept and marked as moved.
//!
//! **Failure** at any step (the target stopped mid-copy, the call cancelled, a timeout) leaves
//! the tenant on its source, working: the subscription, slot, publication and copy are removed
//! at once when reachable. What cannot be (the session killed, a server gone) is found by
//! `messiah_reconcile(repair => true)` (and the executor's sweep): the copy of a move that no
//! longer runs is swept (its subscription dropped first, with `slot_name = NONE` when the
//! source is gone, since `DROP DATABASE` refuses a database with a subscription), a copy
//! renamed by a cutover that did not commit is an aborted creation, and slots and publications
//! named `messiah_move_*` of a tenant that is not moving now are dropped on every server
//! (`move_leftovers`).

use crate::err::{Code, Error};
use crate::ident::{quote_ident, quote_literal};
use crate::remote::{self, Server};
use crate::tenants::catalog::{installation_id, Tenant};
use crate::tenants::{marker, outbox, provision, roles};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Prefix of the publication, subscription and slot of a move.
pub const PREFIX: &str = "messiah_move_";

/// The publication, subscription and slot name of tenant `tenant_id`'s move.
pub fn name(tenant_id: &str) -> String {
    format!("{PREFIX}{}", tag(tenant_id))
}

/// The advisory lock key of a tenant's move (in the admin database).
fn key(tenant_id: &str) -> i64 {
    crate::ident::fnv64(format!("messiah:move:{tenant_id}").as_bytes()) as i64
}

/// Takes the tenant's move lock shared until the transaction ends: every routed call and role
/// change does, so that none runs while a move cuts over (they wait for its COMMIT instead).
pub fn lock_shared(tenant_id: &str) {
    crate::spi::run_ro(
        "SELECT pg_catalog.pg_advisory_xact_lock_shared($1)",
        &[key(tenant_id).into()],
    );
}

/// The hash naming a tenant's move objects (16 hex digits).
fn tag(tenant_id: &str) -> String {
    format!("{:016x}", crate::ident::fnv64(tenant_id.as_bytes()))
}

/// Prefix of the copies' names on targets: `messiah_mv_<installation>_<tag>`.
pub const COPY_PREFIX: &str = "messiah_mv_";

/// The name of a tenant's copy on the target while it moves. It names no transaction: a move
/// keeps no transaction id while it copies (see [`move_tenant`]); the copy is garbage when no
/// move of that tag runs ([`running_by_tag`]).
fn copy_name(tenant_id: &str) -> String {
    format!(
        "{COPY_PREFIX}{}_{}",
        marker::short_installation(&installation_id()),
        tag(tenant_id)
    )
}

/// The advisory lock key held by a running move of the tenant (by its tag), for its whole
/// duration.
fn running_key(tag: &str) -> i64 {
    crate::ident::fnv64(format!("messiah:moving:{tag}").as_bytes()) as i64
}

/// Whether a copy named `datname` (of this installation) belongs to no running move: then it
/// is garbage. Holds the move's running lock shared until the transaction ends, so that none
/// starts meanwhile. `None` when `datname` is not a copy of this installation.
pub fn abandoned_copy(datname: &str) -> Option<bool> {
    let rest = datname.strip_prefix(COPY_PREFIX)?;
    let rest = rest.strip_prefix(&marker::short_installation(&installation_id()))?;
    let tag = rest.strip_prefix('_')?;
    Some(
        crate::spi::one_ro::<bool>(
            "SELECT pg_catalog.pg_try_advisory_xact_lock_shared($1)",
            &[running_key(tag).into()],
        ) == Some(true),
    )
}

/// Whether no move of `tenant_id` is running now (then its leftovers are garbage). Holds the
/// running lock shared until the transaction ends, so that none starts meanwhile.
pub fn not_moving(tenant_id: &str) -> bool {
    crate::spi::one_ro::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock_shared($1)",
        &[running_key(&tag(tenant_id)).into()],
    ) == Some(true)
}

/// Leftovers of failed moves on `server` (see the module comment): slots named
/// `messiah_move_*` of its tenants that are not moving now and, with `deep`, their
/// publications; dropped with `repair` (a slot in use is left: its subscriber is alive).
/// Returns `(tenant_id, what, action)`.
pub fn leftovers(
    server: &Server,
    tenants: &[Tenant],
    repair: bool,
    deep: bool,
) -> Result<Vec<(String, String, String)>, Error> {
    let ours: Vec<&Tenant> = tenants
        .iter()
        .filter(|t| t.lifecycle == "ready" && t.is_ours() && !t.is_supabase())
        .collect();
    const SLOTS: &str = "SELECT slot_name::pg_catalog.text, active::pg_catalog.text \
         FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.~~) 'messiah\\_move\\_%'";
    // this cluster's slots are in a shared view: read here, without a connection (a read-only
    // reconcile opens none)
    let slots = if server.is_local() {
        crate::spi::text_rows(SLOTS, &[], 2)
    } else {
        remote::query_or_error(&server.maintenance(), SLOTS, &[])?.rows
    };
    let mut out = Vec::new();
    for t in &ours {
        let n = name(&t.tenant_id);
        let slot = slots
            .iter()
            .find(|r| r.first().cloned().flatten().as_deref() == Some(n.as_str()));
        let publication = deep
            && !remote::query_or_error(
                &server.database(&t.database_name),
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname OPERATOR(pg_catalog.=) $1",
                &[Some(&n)],
            )?
            .rows
            .is_empty();
        if slot.is_none() && !publication {
            continue;
        }
        if !not_moving(&t.tenant_id) {
            continue;
        }
        let active = slot.is_some_and(|r| r.get(1).cloned().flatten().as_deref() == Some("true"));
        let what = match (slot.is_some(), publication) {
            (true, true) => format!("replication slot and publication {n}"),
            (true, false) => format!("replication slot {n}"),
            _ => format!("publication {n}"),
        };
        let action = if active {
            "left alone: the slot is in use (a subscriber still reads it)".to_string()
        } else if repair {
            drop_source_leftovers(server, &t.database_name, &n)?;
            remote::close_database(server.id, &t.database_name);
            "dropped".to_string()
        } else {
            "would drop".to_string()
        };
        out.push((t.tenant_id.clone(), what, action));
    }
    Ok(out)
}

/// Everything a move works with.
struct Move {
    tenant: Tenant,
    source: Server,
    target: Server,
    name: String,
    /// The copy's temporary name on the target.
    temp: String,
    context: String,
}

fn prerequisite(message: String) -> Error {
    Error::new(Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, message)
}

/// What of a database's own code the replication would run as the subscription's owner:
/// triggers enabled ALWAYS or REPLICA (they fire where `session_replication_role = replica`),
/// and every function that an expression the apply evaluates calls (constraints of the
/// published tables and of the database's own domains, index expressions and predicates,
/// generated columns: read from their stored node trees, `:funcid`/`:opfuncid`/`:opno`,
/// since Postgres records no dependency on pinned pg_catalog functions), or that the
/// database's own types call (a range's `subtype_diff`), unless it is an IMMUTABLE function
/// of `pg_catalog` or one of an extension. An allow-list, not a deny-list: a pg_catalog
/// function that is not immutable may run SQL given as text (`query_to_xml`) or need a
/// superuser (`lo_export`), and would run as one. Plain defaults are not evaluated: the
/// copy's tables have the source's columns.
const RUNS_AS_SUBSCRIBER_SQL: &str = "\
WITH member AS (\
  SELECT e.classid, e.objid FROM pg_catalog.pg_depend e WHERE e.deptype OPERATOR(pg_catalog.=) 'e'), \
safe_fn AS (\
  SELECT p.oid FROM pg_catalog.pg_proc p \
  WHERE (p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace AND p.provolatile OPERATOR(pg_catalog.=) 'i') \
     OR (p.oid, 'pg_catalog.pg_proc'::pg_catalog.regclass) IN (SELECT m.objid, m.classid FROM member m)), \
public_rel AS (\
  SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) 'public'::pg_catalog.regnamespace), \
own_type AS (\
  SELECT t.oid FROM pg_catalog.pg_type t \
  WHERE t.typnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace]::pg_catalog.oid[]) \
    AND (t.oid, 'pg_catalog.pg_type'::pg_catalog.regclass) NOT IN (SELECT m.objid, m.classid FROM member m)), \
exprs AS (\
  SELECT pg_catalog.pg_describe_object('pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, 0) AS what, k.conbin::pg_catalog.text AS tree \
  FROM pg_catalog.pg_constraint k WHERE k.conbin IS NOT NULL \
    AND (k.conrelid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM public_rel) OR k.contypid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM own_type)) \
  UNION ALL SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid, 0), \
         coalesce(i.indexprs::pg_catalog.text, '') OPERATOR(pg_catalog.||) coalesce(i.indpred::pg_catalog.text, '') \
  FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM public_rel) \
  UNION ALL SELECT pg_catalog.pg_describe_object('pg_catalog.pg_attrdef'::pg_catalog.regclass, d.oid, 0), d.adbin::pg_catalog.text \
  FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum \
  WHERE a.attgenerated OPERATOR(pg_catalog.<>) '' AND d.adrelid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM public_rel)), \
called AS (\
  SELECT e.what, m.m[1] AS kind, m.m[2]::pg_catalog.oid AS id FROM exprs e, \
         pg_catalog.regexp_matches(e.tree, ':(funcid|opfuncid|hashfuncid|negfuncid|opno) ([0-9]+)', 'g') AS m(m)) \
SELECT pg_catalog.string_agg(w.what, '; ' ORDER BY w.what) FROM (\
  SELECT pg_catalog.format('trigger %s on table %s (ENABLE %s)', t.tgname, t.tgrelid::pg_catalog.regclass, \
         CASE t.tgenabled WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END) AS what \
  FROM pg_catalog.pg_trigger t \
  WHERE NOT t.tgisinternal AND t.tgenabled OPERATOR(pg_catalog.=) ANY ('{A,R}'::pg_catalog.\"char\"[]) \
  UNION \
  SELECT c.what FROM called c WHERE c.id OPERATOR(pg_catalog.<>) 0 AND CASE WHEN c.kind OPERATOR(pg_catalog.=) 'opno' \
    THEN (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) c.id) \
    ELSE c.id END OPERATOR(pg_catalog.<>) ALL (SELECT oid FROM safe_fn) \
  UNION \
  SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_catalog.pg_depend d \
  WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass \
    AND d.objid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM own_type) \
    AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass \
    AND d.refobjid OPERATOR(pg_catalog.<>) ALL (SELECT oid FROM safe_fn)) w";

/// Refuses (55000) to replicate into or out of `db` when the replication would run code of the
/// tenant's as a superuser. PostgreSQL 15 runs a subscription's initial copy and its apply as
/// the subscription's owner (a superuser: `CREATE SUBSCRIPTION` needs one; the `run_as_owner`
/// choice came in 16), so a trigger the tenant's owner role enabled ALWAYS, or a constraint,
/// index or default calling its own function, would run with a superuser's rights on the target.
fn refuse_code_run_as_subscriber(db: &remote::Endpoint, tenant_id: &str) -> Result<(), Error> {
    let found = remote::query_or_error(db, RUNS_AS_SUBSCRIBER_SQL, &[])?;
    match found.scalar() {
        None => Ok(()),
        Some(objects) => Err(prerequisite(format!(
            "tenant \"{tenant_id}\" has code that the move's replication would run as a superuser: {objects}"
        ))
        .detail("PostgreSQL 15 applies a subscription's rows as the subscription's owner, who must be a superuser: triggers enabled ALWAYS or REPLICA fire there, and constraints, indexes and defaults are evaluated there.")
        .hint("Make such triggers plain ENABLE (they do not fire during replication), and use only immutable functions of pg_catalog or an extension's in constraints, index expressions, generated columns and types (a migration); then move again.")),
    }
}

impl Move {
    fn plan(tenant_id: &str, to: Option<&str>) -> Result<Move, Error> {
        // no row lock (it would give this transaction an id, see `move_tenant`): moves of one
        // tenant are serialized by its running lock, and the cutover locks the row
        let t = Tenant::existing(tenant_id, false)?;
        t.require_ours()?;
        if t.lifecycle != "ready" {
            return Err(prerequisite(format!(
                "tenant \"{}\" is {}",
                t.tenant_id, t.lifecycle
            )));
        }
        if t.is_supabase() {
            return Err(Error::new(
                Code::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "tenant \"{}\" is a supabase tenant: its tables live in its project",
                    t.tenant_id
                ),
            ));
        }
        let source = t.server()?;
        let target = crate::tenants::api::place(to)?;
        if target.id == source.id {
            return Err(Error::new(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "tenant \"{}\" is already on server \"{}\"",
                    t.tenant_id, target.name
                ),
            ));
        }
        let temp = copy_name(&t.tenant_id);
        Ok(Move {
            context: t.describe(&source),
            name: name(&t.tenant_id),
            tenant: t,
            source,
            target,
            temp,
        })
    }

    fn source_db(&self) -> remote::Endpoint {
        self.source.database(&self.tenant.database_name)
    }

    fn copy_db(&self) -> remote::Endpoint {
        self.target.database(&self.temp)
    }

    /// The checks of step 1 (nothing is made yet).
    fn check(&self) -> Result<(), Error> {
        let wal = remote::query_or_error(&self.source.maintenance(), "SHOW wal_level", &[])?;
        if wal.scalar() != Some("logical") {
            return Err(prerequisite(format!(
                "server \"{}\" has wal_level = {}: moving a tenant off it needs logical replication",
                self.source.name,
                wal.scalar().unwrap_or("?")
            ))
            .hint("Set wal_level = logical in its postgresql.conf and restart it."));
        }
        let su = remote::query_or_error(
            &self.target.maintenance(),
            "SELECT rolsuper::pg_catalog.text FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER",
            &[],
        )?;
        if su.scalar() != Some("true") {
            return Err(Error::new(
                Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "server \"{}\" is reached as a role that is not a superuser",
                    self.target.name
                ),
            )
            .detail("PostgreSQL 15's CREATE SUBSCRIPTION needs a superuser.")
            .hint("Register the server with a superuser's conninfo (messiah_alter_server)."));
        }
        if provision::find_database(&self.target, &self.tenant.database_name)?.is_some() {
            return Err(Error::new(
                Code::ERRCODE_DUPLICATE_DATABASE,
                format!(
                    "server \"{}\" already has a database \"{}\"",
                    self.target.name, self.tenant.database_name
                ),
            )
            .hint("A source kept by an earlier move (keep_source) stays until dropped: messiah_drop_orphan(database_name, server)."));
        }
        // the copy starts from the target's template: the tenant must be at its versions
        let versions = remote::query_or_error(
            &self.source_db(),
            "SELECT e.extversion::pg_catalog.text, CASE WHEN pg_catalog.to_regprocedure('messiah.migration_version()') IS NULL \
                    THEN '0' ELSE (SELECT messiah.migration_version())::pg_catalog.text END \
             FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'messiah_tenant'",
            &[],
        )?;
        let cell = |i: usize| {
            versions
                .rows
                .first()
                .and_then(|r| r.get(i).cloned().flatten())
                .unwrap_or_default()
        };
        let (ext, migrated) = (cell(0), cell(1));
        let admin = super::upgrades::admin_version();
        let latest = super::migrations::Migration::all(None)
            .last()
            .map_or(0, |m| m.version)
            .to_string();
        if ext != admin || migrated != latest {
            return Err(prerequisite(format!(
                "tenant \"{}\" is at messiah_tenant {ext} and migration {migrated}; new databases start at {admin} and migration {latest}",
                self.tenant.tenant_id
            ))
            .hint("Run messiah_upgrade_tenants() and messiah_migrate_tenants() first."));
        }
        let keyless = remote::query_or_error(
            &self.source_db(),
            "SELECT pg_catalog.string_agg(c.relname::pg_catalog.text, ', ') FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE n.nspname OPERATOR(pg_catalog.=) 'public' AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}') \
               AND c.relreplident OPERATOR(pg_catalog.=) 'd' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                   WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisprimary)",
            &[],
        )?;
        if let Some(tables) = keyless.scalar() {
            return Err(prerequisite(format!(
                "tables of tenant \"{}\" have no primary key: {tables}",
                self.tenant.tenant_id
            ))
            .detail(
                "Logical replication needs a replica identity to carry their updates and deletes.",
            )
            .hint("Add a primary key (a migration), or ALTER TABLE ... REPLICA IDENTITY FULL."));
        }
        refuse_code_run_as_subscriber(&self.source_db(), &self.tenant.tenant_id)
    }

    /// Step 2: the copy, up to the end of the initial synchronization.
    fn copy(&self) -> Result<(), Error> {
        let tpl = provision::ensure_template(&self.target)?;
        let maint = self.target.maintenance();
        remote::execute_or_error(
            &maint,
            &format!(
                "CREATE DATABASE {} TEMPLATE {} STRATEGY {}",
                quote_ident(&self.temp),
                quote_ident(&tpl),
                crate::guc::CLONE_STRATEGY.get().sql()
            ),
        )?;
        remote::execute_or_error(
            &maint,
            &format!(
                "REVOKE ALL ON DATABASE {} FROM PUBLIC",
                quote_ident(&self.temp)
            ),
        )?;
        // the copy is what the subscription's owner writes into: checked itself (its template
        // may differ from the source)
        refuse_code_run_as_subscriber(&self.copy_db(), &self.tenant.tenant_id)?;
        remote::execute_or_error(
            &self.source_db(),
            &format!(
                "CREATE PUBLICATION {} FOR TABLES IN SCHEMA public",
                quote_ident(&self.name)
            ),
        )?;
        let mut conninfo = self.source.conninfo.with_dbname(&self.tenant.database_name);
        conninfo.set("application_name", &self.name);
        let conninfo = conninfo.render();
        remote::execute_or_error(
            &self.copy_db(),
            &format!(
                "CREATE SUBSCRIPTION {n} CONNECTION {} PUBLICATION {n} WITH (copy_data = true, slot_name = {})",
                quote_literal(&conninfo),
                quote_literal(&self.name),
                n = quote_ident(&self.name)
            ),
        )?;
        self.wait_for_sync()?;
        provision::install_copy_into(&self.tenant, &self.target, &self.temp)?;
        crate::tenants::indexes::sync(&self.copy_db(), &self.tenant.snapshot(), &self.context)?;
        Ok(())
    }

    /// Waits until every table's initial copy is done; fails on a subscription error reported
    /// by the target (e.g. it cannot reach the source) or after `messiah.move_timeout`.
    fn wait_for_sync(&self) -> Result<(), Error> {
        let deadline = Instant::now() + timeout();
        let mut polls: u64 = 0;
        loop {
            // a subscription whose publisher is gone reports no error (its apply worker only
            // fails to start): the source is asked itself, about once a second
            polls += 1;
            if polls.is_multiple_of(20) {
                remote::query_or_error(&self.source_db(), "SELECT 1", &[])?;
            }
            let r = remote::query_or_error(
                &self.copy_db(),
                "SELECT (SELECT count(*) FROM pg_catalog.pg_subscription_rel r \
                         WHERE r.srsubstate OPERATOR(pg_catalog.<>) ALL ('{r,s}'))::pg_catalog.text, \
                        (SELECT count(*) FROM pg_catalog.pg_subscription_rel)::pg_catalog.text, \
                        (SELECT coalesce(sum(s.apply_error_count + s.sync_error_count), 0) \
                           FROM pg_catalog.pg_stat_subscription_stats s)::pg_catalog.text",
                &[],
            )?;
            let cell = |i: usize| r.rows.first().and_then(|row| row.get(i).cloned().flatten());
            let (pending, total, errors) = (cell(0), cell(1), cell(2));
            if errors.as_deref().is_some_and(|e| e != "0") {
                return Err(prerequisite(format!(
                    "the copy of tenant \"{}\" to server \"{}\" failed: its subscription reports errors",
                    self.tenant.tenant_id, self.target.name
                ))
                .hint("The target server's log says why (it may not reach the source with the source's conninfo)."));
            }
            if pending.as_deref() == Some("0") && total.as_deref() != Some("0") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    Code::ERRCODE_QUERY_CANCELED,
                    format!(
                        "the copy of tenant \"{}\" did not finish within messiah.move_timeout",
                        self.tenant.tenant_id
                    ),
                ));
            }
            crate::spi::sleep_ms(50);
        }
    }

    /// Step 3 (see the module comment); returns how long writes waited (ms).
    fn cutover(&self) -> Result<f64, Error> {
        crate::spi::run(
            &format!(
                "SET LOCAL lock_timeout = {}",
                crate::guc::MOVE_CUTOVER_TIMEOUT_MS.get().max(1)
            ),
            &[],
        );
        crate::spi::run(
            "SELECT pg_catalog.pg_advisory_xact_lock($1)",
            &[key(&self.tenant.tenant_id).into()],
        );
        crate::spi::run("SET LOCAL lock_timeout = 0", &[]);
        let started = Instant::now();
        let app = roles::application_role(&self.tenant);
        roles::lock_out(&self.tenant.tenant_id, &app, &self.source)?;
        let lsn = remote::query_or_error(
            &self.source.maintenance(),
            "SELECT pg_catalog.pg_current_wal_lsn()::pg_catalog.text",
            &[],
        )?
        .scalar()
        .unwrap_or("0/0")
        .to_string();
        self.wait_for_lsn(&lsn)?;
        self.copy_sequences()?;
        remote::execute_or_error(
            &self.copy_db(),
            &format!("DROP SUBSCRIPTION {}", quote_ident(&self.name)),
        )?;
        remote::execute_or_error(
            &self.source_db(),
            &format!("DROP PUBLICATION IF EXISTS {}", quote_ident(&self.name)),
        )?;
        remote::close_database(self.target.id, &self.temp);
        remote::close_database(self.source.id, &self.tenant.database_name);
        // from here this transaction has an id: the copy is marked with it and renamed, and
        // if the transaction does not commit, the renamed copy is an aborted creation
        let xid = provision::current_xid8();
        let now = Tenant::existing(&self.tenant.tenant_id, true)?;
        if now.lifecycle != "ready" || now.server_id != self.source.id {
            return Err(prerequisite(format!(
                "tenant \"{}\" changed during its move ({} on server id {})",
                now.tenant_id, now.lifecycle, now.server_id
            )));
        }
        remote::execute_or_error(
            &self.target.maintenance(),
            &format!(
                "COMMENT ON DATABASE {} IS {}; ALTER DATABASE {} RENAME TO {}",
                quote_ident(&self.temp),
                quote_literal(&provision::marker_for(&self.tenant, &xid).render()),
                quote_ident(&self.temp),
                quote_ident(&self.tenant.database_name)
            ),
        )?;
        // the catalog's guard lets only a move's cutover change these (sql/api.sql)
        crate::spi::run(
            "SELECT pg_catalog.set_config('messiah_internal.moving', $1, true)",
            &[self.tenant.tenant_id.as_str().into()],
        );
        crate::spi::run(
            "UPDATE messiah.tenants SET server_id = $2, creating_xid = $3::xid8 WHERE id = $1::uuid",
            &[self.tenant.row_id.as_str().into(), self.target.id.into(), xid.as_str().into()],
        );
        let moved = Tenant::existing(&self.tenant.tenant_id, false)?;
        roles::apply(&moved)?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    }

    /// Waits until the subscription has confirmed the source's WAL up to `lsn`.
    fn wait_for_lsn(&self, lsn: &str) -> Result<(), Error> {
        let deadline = Instant::now() + timeout();
        loop {
            let r = remote::query_or_error(
                &self.source.maintenance(),
                "SELECT (confirmed_flush_lsn OPERATOR(pg_catalog.>=) $2::pg_catalog.pg_lsn)::pg_catalog.text \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1",
                &[Some(&self.name), Some(lsn)],
            )?;
            if r.scalar() == Some("true") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    Code::ERRCODE_QUERY_CANCELED,
                    format!(
                        "tenant \"{}\": the target did not catch up within messiah.move_timeout",
                        self.tenant.tenant_id
                    ),
                ));
            }
            crate::spi::sleep_ms(10);
        }
    }

    /// Sets the copy's sequences to the source's values (logical replication does not carry
    /// sequences in PostgreSQL 15).
    fn copy_sequences(&self) -> Result<(), Error> {
        let seqs = remote::query_or_error(
            &self.source_db(),
            "SELECT pg_catalog.format('%I.%I', schemaname, sequencename), last_value::pg_catalog.text \
             FROM pg_catalog.pg_sequences WHERE schemaname OPERATOR(pg_catalog.=) 'public' AND last_value IS NOT NULL",
            &[],
        )?;
        for row in seqs.rows {
            let (Some(seq), Some(value)) = (
                row.first().cloned().flatten(),
                row.get(1).cloned().flatten(),
            ) else {
                continue;
            };
            remote::query_or_error(
                &self.copy_db(),
                "SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::bigint, true)",
                &[Some(&seq), Some(&value)],
            )?;
        }
        Ok(())
    }

    /// Removes what the move made, as far as the servers answer (never raises: what is left is
    /// reconcile's, see the module comment). Gives the source role its login back.
    fn undo(&self) {
        let mut failed = Vec::new();
        if let Err(e) = drop_subscription(&self.target, &self.temp, &self.name) {
            failed.push(e.message);
        }
        if let Err(e) = provision::force_drop(&self.target, &self.temp) {
            failed.push(e.message);
        }
        if let Err(e) = drop_source_leftovers(&self.source, &self.tenant.database_name, &self.name)
        {
            failed.push(e.message);
        }
        if let Err(e) = roles::apply(&self.tenant) {
            failed.push(e.message);
        }
        if !failed.is_empty() {
            pgrx::notice!(
                "the failed move of tenant \"{}\" left something behind ({}): messiah_reconcile(repair => true) removes it",
                self.tenant.tenant_id,
                failed.join("; ")
            );
        }
    }
}

/// Whether this transaction has a transaction id (it has written something).
fn writes_pending() -> bool {
    crate::spi::one_ro::<bool>(
        "SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL",
        &[],
    )
    .unwrap_or(false)
}

fn timeout() -> Duration {
    Duration::from_millis(crate::guc::MOVE_TIMEOUT_MS.get().max(1) as u64)
}

/// Drops move subscription `name` in database `db` of `server` (its slot on the source too
/// when the source answers; otherwise with `slot_name = NONE` first, as PostgreSQL requires).
pub fn drop_subscription(server: &Server, db: &str, name: &str) -> Result<(), Error> {
    let ep = server.database(db);
    let exists = remote::query_or_error(
        &server.maintenance(),
        "SELECT 1 FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid \
         WHERE d.datname OPERATOR(pg_catalog.=) $1 AND s.subname OPERATOR(pg_catalog.=) $2",
        &[Some(db), Some(name)],
    )?;
    if exists.rows.is_empty() {
        return Ok(());
    }
    let n = quote_ident(name);
    if remote::execute(&ep, &format!("DROP SUBSCRIPTION {n}")).is_err() {
        remote::execute_or_error(
            &ep,
            &format!("ALTER SUBSCRIPTION {n} DISABLE; ALTER SUBSCRIPTION {n} SET (slot_name = NONE); DROP SUBSCRIPTION {n}"),
        )?;
    }
    remote::close_database(server.id, db);
    Ok(())
}

/// Drops the move's slots (its own and table-synchronization ones of database `db`) and its
/// publication on the source `server`; a slot still in use is left (its subscriber is alive).
pub fn drop_source_leftovers(server: &Server, db: &str, name: &str) -> Result<(), Error> {
    remote::query_or_error(
        &server.maintenance(),
        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots \
         WHERE NOT active AND (slot_name OPERATOR(pg_catalog.=) $1 \
               OR (database OPERATOR(pg_catalog.=) $2 AND slot_name OPERATOR(pg_catalog.~~) 'pg\\_%\\_sync\\_%'))",
        &[Some(name), Some(db)],
    )?;
    let exists = remote::query_or_error(
        &server.maintenance(),
        "SELECT 1 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) $1 AND datallowconn",
        &[Some(db)],
    )?;
    if !exists.rows.is_empty() {
        remote::execute_or_error(
            &server.database(db),
            &format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)),
        )?;
    }
    Ok(())
}

/// `messiah_move_tenant` (see the module comment). Returns `{"tenant_id", "from", "to",
/// "copy_ms", "cutover_ms", "source"}`.
pub fn move_tenant(tenant_id: &str, to: Option<&str>, keep_source: bool) -> Result<Value, Error> {
    // held until this transaction ends: reconcile and the sweep leave a running move's objects
    // alone, and a second move of the tenant waits
    crate::spi::run_ro(
        "SELECT pg_catalog.pg_advisory_xact_lock($1)",
        &[running_key(&tag(tenant_id)).into()],
    );
    let m = Move::plan(tenant_id, to)?;
    if m.source.is_local() && writes_pending() {
        return Err(Error::new(
            Code::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!(
                "tenant \"{tenant_id}\" cannot move off this server in a transaction that has already written"
            ),
        )
        .detail("Creating the move's replication slot waits for every transaction with an id on the source server to end, and this one is on it: it would wait for itself.")
        .hint("Call messiah_move_tenant in a transaction of its own (autocommit), or before the transaction writes anything."));
    }
    m.check()?;
    let started = Instant::now();
    let copied =
        crate::spi::in_subtransaction(std::panic::AssertUnwindSafe(|| m.copy())).and_then(|r| r);
    if let Err(e) = copied {
        m.undo();
        return Err(e);
    }
    let copy_ms = started.elapsed().as_secs_f64() * 1000.0;
    let cut =
        crate::spi::in_subtransaction(std::panic::AssertUnwindSafe(|| m.cutover())).and_then(|r| r);
    let cutover_ms = match cut {
        Ok(ms) => ms,
        Err(e) => {
            m.undo();
            return Err(e);
        }
    };
    let moved = Tenant::existing(tenant_id, false)?;
    outbox::enqueue(outbox::Action::PushSnapshot, &moved);
    crate::cache::results::invalidate_tenant(tenant_id);
    let source = if keep_source {
        remote::execute_or_error(
            &m.source.maintenance(),
            &format!(
                "COMMENT ON DATABASE {} IS {}",
                quote_ident(&m.tenant.database_name),
                quote_literal(&json!({"messiah_moved_to": m.target.name, "tenant_id": tenant_id, "installation": installation_id()}).to_string())
            ),
        )?;
        "kept (its role may not log in; reconcile lists it as an orphan and leaves it alone)"
    } else {
        // after COMMIT: the outbox drops the source database and the tenant's roles there
        outbox::enqueue(outbox::Action::DropDatabase, &m.tenant);
        "dropped after COMMIT"
    };
    Ok(json!({
        "tenant_id": tenant_id,
        "from": m.source.name,
        "to": m.target.name,
        "copy_ms": copy_ms,
        "cutover_ms": cutover_ms,
        "source": source,
    }))
}

/// One row of `messiah_drain_server()`.
#[derive(Debug, Clone)]
pub struct Drained {
    pub tenant_id: String,
    pub to_server: Option<String>,
    pub status: &'static str,
    pub message: String,
    pub copy_ms: Option<f64>,
    pub cutover_ms: Option<f64>,
}

/// `messiah_drain_server` (see its shim): each move runs in its own transaction, over a
/// connection of this backend to this admin database (the local server's maintenance
/// endpoint), so that every tenant's cutover commits on its own.
pub fn drain(name: &str, keep_source: bool) -> Result<Vec<Drained>, Error> {
    let server = Server::by_name(name)?;
    let loopback = Server::local()?.maintenance();
    let schema = crate::spi::one_ro::<String>(
        "SELECT quote_ident(n.nspname::text) FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'messiah'",
        &[],
    )
    .unwrap_or_else(|| "public".into());
    if server.status == "active" {
        remote::query_or_error(
            &loopback,
            &format!("SELECT {schema}.messiah_alter_server($1, '{{\"status\": \"draining\"}}'::pg_catalog.jsonb)"),
            &[Some(name)],
        )?;
    }
    let tenants: Vec<Tenant> = Tenant::on_server(server.id)
        .into_iter()
        .filter(|t| t.lifecycle == "ready" && !t.is_supabase() && t.is_ours())
        .collect();
    let keep = if keep_source { "true" } else { "false" };
    let mut out = Vec::new();
    for t in tenants {
        let moved = remote::query(
            &loopback,
            &format!("SELECT {schema}.messiah_move_tenant($1, NULL, $2::boolean)::pg_catalog.text"),
            &[Some(&t.tenant_id), Some(keep)],
        );
        let row = match moved {
            Ok(rows) => {
                let v: Value = rows
                    .scalar()
                    .and_then(|j| serde_json::from_str(j).ok())
                    .unwrap_or(Value::Null);
                Drained {
                    tenant_id: t.tenant_id.clone(),
                    to_server: v.get("to").and_then(Value::as_str).map(str::to_string),
                    status: "moved",
                    message: v
                        .get("source")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    copy_ms: v.get("copy_ms").and_then(Value::as_f64),
                    cutover_ms: v.get("cutover_ms").and_then(Value::as_f64),
                }
            }
            Err(e) => Drained {
                tenant_id: t.tenant_id.clone(),
                to_server: None,
                status: "failed",
                message: e.into_error(&loopback.describe()).message,
                copy_ms: None,
                cutover_ms: None,
            },
        };
        out.push(row);
    }
    Ok(out)
}
