//! Routing into tenant databases: the original design's connector calls (query, insert,
//! update, delete, close; ../shared/SEED.md "Connectors") as SQL functions.
//!
//! Every routed statement runs in the tenant's database **as its application role**, logged
//! in with its derived password (`tenants::roles`), over this backend's pool (`remote`): the
//! role is the boundary, not the statement. Values travel as protocol parameters; results are
//! read one row at a time and capped (`messiah.route_max_rows`, `messiah.route_max_bytes`,
//! 54000); the tenant's `statement_timeout` is enforced on this side too (the routed SQL could
//! change its own). A tenant that is not `active` and `ready` is refused (55000) before any
//! connection. Catalog lookups come from the per-backend catalog cache (`cache::catalog`,
//! never stale); reads with `max_age` may be served from the shared result cache
//! (`cache::results`). Every call is counted (`monitor::counters`).

pub mod sql;

use crate::err::{Code, Error, OrRaise};
use crate::fields;
use crate::jsonarg::JsonbArg;
use crate::remote::{self, Caps, Endpoint, Param, Rows};
use crate::shim::{required, tenant_id_arg};
use crate::tenants::catalog::Tenant;
use crate::tenants::{outbox, roles};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

impl From<sql::ArgError> for Error {
    fn from(e: sql::ArgError) -> Error {
        match e {
            sql::ArgError::TooManyParams(_) => {
                Error::new(Code::ERRCODE_PROGRAM_LIMIT_EXCEEDED, e.to_string())
                    .hint("Pass a large list as one JSON array parameter (jsonb) and unnest it in the statement.")
            }
            _ => Error::new(Code::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string()),
        }
    }
}

/// A routed call's target: the tenant, its application role's endpoint, the caps.
struct Route {
    tenant: Tenant,
    endpoint: Endpoint,
    caps: Caps,
    context: String,
    /// The catalog row's version (`RouteRow::row_version`).
    row_version: String,
}

/// Resolves `tenant_id` to a route. Errors: 22023 invalid id; 42704 no such tenant; 55000
/// another installation's tenant, not ready, not active (naming the status), or on a server
/// marked `offline`; 0A000 a
/// connector type that cannot be routed; F0000 no key file.
///
/// It first takes the tenant's move lock shared (`fleet::moves`): while a move of the tenant
/// cuts over, the call waits, then routes to the tenant's new server.
fn route(tenant_id: Option<&str>) -> Result<Route, Error> {
    let id = tenant_id_arg(tenant_id);
    crate::fleet::moves::lock_shared(id.as_str());
    crate::spi::with_fresh_snapshot(|| route_locked(&id))
}

/// [`route`] once the move lock is held.
fn route_locked(id: &crate::ident::TenantId) -> Result<Route, Error> {
    let row = match crate::cache::catalog::route_row(id.as_str()) {
        Some(r) if r.tenant.lifecycle != "dropping" => r,
        _ => return Err(crate::tenants::catalog::not_found(id.as_str())),
    };
    let t = row.tenant;
    let row_version = row.row_version;
    t.require_installation(&row.installation_id)?;
    if t.lifecycle != "ready" {
        return Err(not_routable(&t, format!("is {}", t.lifecycle)));
    }
    if t.status != "active" {
        return Err(not_routable(&t, format!("is {}", t.status))
            .hint("messiah_set_tenant_status(tenant_id, 'active') restores access."));
    }
    if row.server.status == "offline" {
        return Err(Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "server \"{}\" of tenant \"{}\" is offline: routed calls are refused",
                row.server.name, t.tenant_id
            ),
        )
        .hint("messiah_alter_server(name, '{\"status\": \"active\"}') brings it back."));
    }
    if t.connector_type != "postgres" && !t.is_supabase() {
        return Err(Error::new(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("unsupported connector type \"{}\"", t.connector_type),
        ));
    }
    // Role changes decided by committed transactions and not yet carried out (just created,
    // reactivated, rotated): carried out now rather than failing the login.
    let (t, server) =
        if row.roles_queued && outbox::run_for_tenant(&t.tenant_id, outbox::Action::ApplyRoles) {
            let t = Tenant::existing(id.as_str(), false)?;
            let server = t.server()?;
            (t, server)
        } else {
            (t, row.server)
        };
    let context = t.describe(&server);
    let mut endpoint = server.database(&t.database_name);
    endpoint.login = Some(roles::login(&t, &row.installation_id)?);
    let timeout = t
        .limits
        .statement_timeout_ms
        .map(|ms| std::time::Duration::from_millis(ms as u64 + 500));
    Ok(Route {
        tenant: t,
        endpoint,
        caps: Caps {
            max_rows: crate::guc::ROUTE_MAX_ROWS.get().max(1) as u64,
            max_bytes: crate::guc::ROUTE_MAX_BYTES.get().max(1) as u64,
            timeout,
        },
        context,
        row_version,
    })
}

/// 55000: the tenant cannot be routed to now.
fn not_routable(t: &Tenant, why: String) -> Error {
    Error::new(
        Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("tenant \"{}\" {why}: routed calls are refused", t.tenant_id),
    )
}

/// What a routed statement is: one messiah wrote (insert, update, delete: it changes no
/// session state), or the caller's own text (`messiah_tenant_query`: it may `SET`, `PREPARE`,
/// `LISTEN`..., so the session is reset after it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Statement {
    Ours,
    Callers,
    /// The caller's text in a `READ ONLY` transaction (a cached read: it cannot write).
    CallersReadOnly,
}

impl Statement {
    /// Whether it may change the tenant's data (the tenant's cached results are then dropped).
    fn may_write(self) -> bool {
        self != Statement::CallersReadOnly
    }
}

impl Route {
    /// Runs one statement as the tenant's application role. A login refused with 28P01 means
    /// the role's password is no longer the derived one (any role may `ALTER ROLE
    /// CURRENT_USER PASSWORD`): the roles are applied again from the catalog, and the
    /// statement tried once more.
    fn run(&self, statement: &str, params: &[Param], kind: Statement) -> Result<Rows, Error> {
        self.attempt(kind, || self.run_once(statement, params, kind))
    }

    /// Runs `f` (remote work as the application role); a login refused with 28P01 re-applies
    /// the roles and runs it once more (see [`Route::run`]). Errors are translated.
    ///
    /// 28000 (the role may not log in) while the catalog says the tenant is active means the
    /// role change that restores its login has not been carried out yet (the executor is
    /// behind): the same re-apply serves it. Only under READ COMMITTED, from the catalog as
    /// committed now: a transaction with an older snapshot could otherwise give the login
    /// back to a tenant suspended since.
    ///
    /// Every attempt is counted (`monitor::counters`: a call, an error, its duration), and one
    /// that may write drops the tenant's cached results (`cache::results`) once it is over,
    /// whatever its outcome (a failed call may still have written).
    fn attempt<T>(
        &self,
        kind: Statement,
        f: impl Fn() -> Result<T, remote::RemoteError>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let result = self.attempt_once(f);
        if kind.may_write() {
            crate::cache::results::invalidate(crate::cache::results::Which::Tenant(
                self.tenant_hash(),
            ));
        }
        crate::monitor::counters::count_routed(
            &self.tenant.tenant_id,
            result.is_err(),
            started.elapsed(),
        );
        result
    }

    /// The tenant's hash in the result cache.
    fn tenant_hash(&self) -> u64 {
        // SAFETY: plain read.
        let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
        crate::cache::results::tenant_hash(db, &self.tenant.tenant_id)
    }

    fn attempt_once<T>(&self, f: impl Fn() -> Result<T, remote::RemoteError>) -> Result<T, Error> {
        let result = match f() {
            Err(remote::RemoteError::Refused { ref sqlstate, .. })
                if (sqlstate == "28P01" || sqlstate == "28000") && self.may_reapply()? =>
            {
                f()
            }
            r => r,
        };
        result.map_err(|e| self.translate(e))
    }

    /// Re-applies the tenant's roles from the committed catalog when that is safe (READ
    /// COMMITTED, the tenant active and ready); whether it did.
    fn may_reapply(&self) -> Result<bool, Error> {
        // SAFETY: plain read of the transaction's isolation level.
        if unsafe { pg_sys::XactIsoLevel } > pg_sys::XACT_READ_COMMITTED as i32 {
            return Ok(false);
        }
        let Some(t) =
            crate::spi::with_fresh_snapshot(|| Tenant::find(&self.tenant.tenant_id, false))
        else {
            return Ok(false);
        };
        if t.status != "active" || t.lifecycle != "ready" || t.server_id != self.tenant.server_id {
            return Ok(false);
        }
        roles::apply(&t)?;
        Ok(true)
    }

    fn run_once(
        &self,
        statement: &str,
        params: &[Param],
        kind: Statement,
    ) -> Result<Rows, remote::RemoteError> {
        let server = self.endpoint.server.name.clone();
        let writable = self.tenant.is_supabase() && kind == Statement::Ours;
        remote::with_conn(&self.endpoint, |c| {
            if writable || kind == Statement::CallersReadOnly {
                // a supabase tenant's sessions are read-only: messiah's own (validated)
                // writes run in a read-write transaction; a cached read runs read-only
                let begin = if writable {
                    "BEGIN READ WRITE"
                } else {
                    "BEGIN READ ONLY"
                };
                let done = in_transaction(c, begin, &self.caps, &server, |c| {
                    c.query_capped(statement, params, &self.caps, &server)
                        .map(Ok::<_, std::convert::Infallible>)
                });
                if kind == Statement::CallersReadOnly {
                    c.reset_later();
                }
                return Ok(match done? {
                    Ok(rows) => rows,
                    Err(never) => match never {},
                });
            }
            let r = c.query_capped(statement, params, &self.caps, &server);
            if kind == Statement::Callers {
                c.reset_later();
            }
            r
        })
    }

    /// The Postgres error of a failed routed statement, with a CONTEXT naming the tenant and
    /// server: a statement with too few parameters gets 42P02; the tenant's connection limit
    /// reached (53300) says which limit.
    fn translate(&self, e: remote::RemoteError) -> Error {
        let e = match e {
            remote::RemoteError::Server {
                ref sqlstate,
                ref message,
                ..
            } => match sql::missing_parameter(sqlstate, message) {
                Some((message, detail)) => remote::RemoteError::Server {
                    sqlstate: "42P02".into(),
                    message,
                    detail: Some(detail),
                    hint: Some("params needs one value for each $n the statement uses.".into()),
                    remote_context: None,
                },
                None => e,
            },
            e => e,
        };
        let limited = matches!(&e, remote::RemoteError::Refused { sqlstate, message, .. }
            if sqlstate == "53300" && message.contains("for role"));
        let read_only = self.tenant.is_supabase()
            && matches!(&e, remote::RemoteError::Server { sqlstate, .. } if sqlstate == "25006");
        let err = e.into_error(&self.context);
        if read_only {
            return err.hint("A supabase tenant's own SQL is read-only (its project has no trigger to validate writes): write with messiah_tenant_insert, _update or _delete, which validate before sending.");
        }
        if limited {
            err.detail(format!(
                "Tenant \"{}\" may have at most {} connection(s) open at once (its connection_limit).",
                self.tenant.tenant_id, self.tenant.limits.connection_limit
            ))
            .hint("Raise it with messiah_set_tenant_limits(), or close idle sessions of the tenant's application role.")
        } else {
            err
        }
    }

    /// The compiled definitions of `table` when it is an entity table of the tenant (from the
    /// catalog cache).
    fn entity(&self, table: &str) -> Option<std::rc::Rc<fields::CompiledSnapshot>> {
        if !fields::ENTITY_TABLES.contains(&table) {
            return None;
        }
        crate::cache::catalog::snapshot(&self.tenant.tenant_id)
    }
}

/// A text argument that must not be empty.
fn name_arg<'a>(what: &'static str, v: Option<&'a str>) -> &'a str {
    let v = required(what, v);
    if v.is_empty() {
        Error::from(sql::ArgError::EmptyName(what)).raise();
    }
    v
}

/// A jsonb argument that must not be NULL (22004, as every argument with a default).
fn required_json(what: &'static str, v: Option<JsonbArg>) -> Value {
    match v {
        Some(j) => j.0,
        None => Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be null"),
        )
        .hint("Omit it for its default, '[]'.")
        .raise(),
    }
}

/// A jsonb argument that must be an object.
fn object_arg(what: &'static str, v: Option<JsonbArg>) -> Map<String, Value> {
    match v.map(|j| j.0) {
        Some(Value::Object(m)) => m,
        Some(other) => Error::from(sql::ArgError::NotObject(what, sql::kind(&other))).raise(),
        None => Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be null"),
        )
        .raise(),
    }
}

/// The jsonb of the first column of each row (`RETURNING to_jsonb(r.*)`).
fn returned(rows: Rows) -> Vec<JsonB> {
    rows.rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .map(|text| JsonB(serde_json::from_str(&text).unwrap_or(Value::String(text))))
        .collect()
}

/// Runs `query` in the tenant's database as the tenant's application role and returns one
/// jsonb object per row (`{"column": value}`: booleans, numbers (exact) and json/jsonb as
/// JSON, other types as their text). `params` is a JSON array bound to `$1..$n`: scalars as
/// untyped parameters (the server infers their type: `uuid_col = $1` works), objects and
/// arrays as jsonb, null as NULL. One statement per call.
///
/// `max_age` (an interval, default NULL: not cached) serves the result from the routed result
/// cache when one at most that old exists for the same tenant, statement and parameters, and
/// otherwise runs the statement in a `READ ONLY` transaction and caches its result (shared by
/// every session of the cluster; `cache::results`, `messiah.result_cache_size`). A write is
/// then refused (25006), so a cached result never replays a write. Routed writes, status
/// changes, moves and drops of the tenant invalidate its entries; writes made directly in the
/// tenant's database do not (`max_age` bounds how stale a result can be then). The original
/// design cached for 600 s. Without messiah preloaded, nothing is cached (a NOTICE says so)
/// and the statement still runs read-only.
///
/// Errors: 55000 tenant not active or not ready; 22023 params not an array, or a negative
/// max_age; 54000 more rows than `messiah.route_max_rows` or bytes than
/// `messiah.route_max_bytes` (the remote statement is cancelled); 57014 the tenant's statement
/// timeout; 25006 a write with max_age; the server's own errors (42P02 too few params,
/// 08P01/42P18 wrong params, 42501 a right the tenant role lacks), each with a CONTEXT line
/// naming the tenant and server.
#[pg_extern(
    name = "messiah_tenant_query",
    security_definer,
    volatile,
    parallel_unsafe
)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_query_v2(
    tenant_id: Option<&str>,
    query: Option<&str>,
    params: default!(Option<JsonbArg>, "'[]'"),
    max_age: default!(Option<pgrx::datum::Interval>, "NULL"),
) -> SetOfIterator<'static, JsonB> {
    let query = name_arg("query", query);
    let params = sql::params(&required_json("params", params))
        .map_err(Error::from)
        .or_raise();
    let max_age_ms = max_age.map(|a| {
        if a.is_negative() {
            Error::new(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                "max_age must not be negative",
            )
            .hint("NULL does not cache; '0' refreshes the cached result.")
            .raise()
        }
        (a.as_micros() / 1000).min(i64::MAX as i128) as i64
    });
    let r = route(tenant_id).or_raise();
    let out = match max_age_ms {
        None => {
            let rows = r.run(query, &params, Statement::Callers).or_raise();
            as_objects(&rows)
        }
        Some(ms) => cached_query(&r, query, &params, ms).or_raise(),
    };
    SetOfIterator::new(out.into_iter().map(JsonB))
}

/// The 0.1.0 signature `messiah_tenant_query(text, text, jsonb)`, kept in the library under
/// its 0.1.0 symbol (`messiah_tenant_query_wrapper`) and not in 0.2.0's SQL: there is one
/// `$libdir/messiah` for every version, so a database still on 0.1.0's SQL calls this
/// library until `ALTER EXTENSION messiah UPDATE`, and its 3-argument calls must reach a
/// 3-argument function (the 0.2.0 function reads a fourth argument). Same behaviour as 0.1.0.
#[pg_extern(sql = false)]
fn messiah_tenant_query(
    tenant_id: Option<&str>,
    query: Option<&str>,
    params: Option<JsonbArg>,
) -> SetOfIterator<'static, JsonB> {
    messiah_tenant_query_v2(tenant_id, query, params, None)
}

/// One jsonb object per row.
fn as_objects(rows: &Rows) -> Vec<Value> {
    rows.rows
        .iter()
        .map(|v| sql::row_object(&rows.columns, &rows.types, v))
        .collect()
}

/// `messiah_tenant_query` with `max_age_ms`: from the result cache, or run read-only and
/// cached (see `cache::results` for why an entry is never another tenant's, nor older than a
/// routed write). A cached result larger than this caller's caps is not served (the statement
/// runs and hits the cap).
fn cached_query(
    r: &Route,
    query: &str,
    params: &[Param],
    max_age_ms: i64,
) -> Result<Vec<Value>, Error> {
    use crate::cache::results;
    if !results::available() {
        pgrx::notice!(
            "the result is not cached: messiah is not in shared_preload_libraries, or messiah.result_cache_size is 0"
        );
        return run_read_only(r, query, params).map(|rows| as_objects(&rows));
    }
    // SAFETY: plain read.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let key = results::Key::new(
        db,
        &r.tenant.tenant_id,
        &r.row_version,
        query,
        params.iter().map(|p| (p.type_oid, p.value.as_deref())),
    );
    let started = std::time::Instant::now();
    let now = crate::worker::now_ms();
    // max_age 0 always runs the statement (and refreshes the entry)
    let cached = (max_age_ms > 0)
        .then(|| results::lookup(&key, max_age_ms, now))
        .flatten();
    if let Some(cached) = cached {
        if let Some(rows) = CachedRows::decode(&cached).filter(|c| c.within(&r.caps)) {
            crate::monitor::counters::count_routed(&r.tenant.tenant_id, false, started.elapsed());
            return Ok(rows.values);
        }
    }
    let generation = results::generation(&key);
    let rows = run_read_only(r, query, params)?;
    let values = as_objects(&rows);
    let bytes = rows
        .rows
        .iter()
        .flatten()
        .flatten()
        .map(|v| v.len() as u64)
        .sum();
    let entry = CachedRows {
        rows: rows.rows.len() as u64,
        bytes,
        values,
    };
    results::store(&key, generation, &entry.encode(), now);
    Ok(entry.values)
}

/// Runs the caller's statement in a `READ ONLY` transaction; a write is 25006 with a hint.
fn run_read_only(r: &Route, query: &str, params: &[Param]) -> Result<Rows, Error> {
    r.run(query, params, Statement::CallersReadOnly).map_err(|e| {
        if e.code == Code::ERRCODE_READ_ONLY_SQL_TRANSACTION && !r.tenant.is_supabase() {
            e.hint("With max_age the statement runs read-only (a cached result must never replay a write): call messiah_tenant_query without max_age to write.")
        } else {
            e
        }
    })
}

/// A cached result: its row count and bytes (as the caps count them), and its rows.
struct CachedRows {
    rows: u64,
    bytes: u64,
    values: Vec<Value>,
}

impl CachedRows {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.rows.to_le_bytes().to_vec();
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(Value::Array(self.values.clone()).to_string().as_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<CachedRows> {
        let word = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let values = serde_json::from_slice(b.get(16..)?).ok()?;
        Some(CachedRows {
            rows: word(0)?,
            bytes: word(8)?,
            values,
        })
    }

    /// Whether serving it stays within `caps`.
    fn within(&self, caps: &Caps) -> bool {
        self.rows <= caps.max_rows && self.bytes <= caps.max_bytes
    }
}

/// Inserts one row into `table_name` (a table of the tenant schema, in `public`) of the
/// tenant's database, as its application role, and returns the inserted row. `data` is a
/// flat JSON object: for an entity table (clients, projects, activities), the defined custom
/// fields given at its top level are moved into `custom_fields` first and validated (the
/// original design's applyFields, `messiah_apply_fields`; defaults added); the tenant's
/// trigger validates again. Columns not given get their defaults.
///
/// Errors: 23514 field violations (every failing field in DETAIL); 22023 data not an object;
/// 42P01 no such table; 42703 no such column; 55000/54000/57014 as `messiah_tenant_query`.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_insert(
    tenant_id: Option<&str>,
    table_name: Option<&str>,
    data: Option<JsonbArg>,
) -> JsonB {
    let table = name_arg("table_name", table_name);
    let mut record = Value::Object(object_arg("data", data));
    let r = route(tenant_id).or_raise();
    if let Some(snap) = r.entity(table) {
        if let Some(e) = snap.entity(table) {
            let extra = set_aside(e, &mut record).or_raise();
            record = fields::apply_fields(e, &record)
                .unwrap_or_else(|errors| violation(table, &errors).raise());
            if let Value::Object(m) = &mut record {
                m.extend(extra);
            }
        }
    }
    let cols = match &record {
        Value::Object(m) => sql::columns(m),
        _ => Vec::new(),
    };
    let rows = r
        .run(
            &sql::insert(&r.tenant.schema_name, table, &cols),
            &[Param {
                value: Some(record.to_string()),
                type_oid: 0,
            }],
            Statement::Ours,
        )
        .or_raise();
    returned(rows)
        .into_iter()
        .next()
        .unwrap_or(JsonB(Value::Null))
}

/// The top-level keys of a routed record for an entity table that are neither base columns,
/// defined fields nor `custom_fields`, taken out of `record`: they go to the table as columns
/// (an unknown one is the server's 42703 naming it), never into `custom_fields` (a typo of a
/// column must not become a field, whatever the unknown-field policy). Also 22023 when a
/// defined field is given both at the top level and inside `custom_fields` with different
/// values.
fn set_aside(e: &fields::CompiledEntity, record: &mut Value) -> Result<Map<String, Value>, Error> {
    let Value::Object(m) = record else {
        return Ok(Map::new());
    };
    let base = fields::base_columns(e.entity_table()).unwrap_or(&[]);
    if let Some(Value::Object(inner)) = m.get("custom_fields") {
        for (k, v) in m.iter() {
            if e.field(k).is_some() && inner.get(k).is_some_and(|w| !same_value(w, v)) {
                return Err(Error::new(
                    Code::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("field \"{k}\" is given twice with different values, at the top level and in custom_fields"),
                )
                .hint("Give each field once."));
            }
        }
    }
    let extra: Vec<String> = m
        .keys()
        .filter(|k| {
            k.as_str() != "custom_fields" && !base.contains(&k.as_str()) && e.field(k).is_none()
        })
        .cloned()
        .collect();
    Ok(extra
        .into_iter()
        .filter_map(|k| m.remove(&k).map(|v| (k, v)))
        .collect())
}

/// JSON equality with numbers compared by value (`1` and `1.0` are one value, as in jsonb).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (
                fields::Decimal::parse(&x.to_string()),
                fields::Decimal::parse(&y.to_string()),
            ) {
                (Some(x), Some(y)) => x.cmp(&y) == std::cmp::Ordering::Equal,
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

/// 23514 for a routed record whose fields break their definitions.
fn violation(table: &str, errors: &[fields::FieldError]) -> Error {
    Error::new(
        Code::ERRCODE_CHECK_VIOLATION,
        format!(
            "new row for relation \"{table}\" violates {}",
            fields::violation_count(errors)
        ),
    )
    .detail(fields::errors_detail(errors))
    .hint("The tenant's field definitions are listed by messiah_list_fields().")
}

/// Updates the rows of `table_name` whose columns equal `match` (a JSON object of column =
/// value conditions joined by AND; `=` semantics: a null matches nothing) with `data`, as the
/// tenant's application role, and returns the updated rows. Base columns in `data` are set;
/// `custom_fields` (and, for an entity table, defined fields given at the top level) are
/// merged into the stored `custom_fields` by JSON Merge Patch (RFC 7396: null removes a key),
/// not replaced; the tenant's trigger validates the result.
///
/// Errors: 22023 empty match, nothing to update, data or match not an object; 23514 the
/// merged fields break their definitions, or an unknown field (policy reject); 42P01/42703
/// unknown table or column; 55000/54000/57014 as `messiah_tenant_query`.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_update(
    tenant_id: Option<&str>,
    table_name: Option<&str>,
    data: Option<JsonbArg>,
    r#match: Option<JsonbArg>,
) -> SetOfIterator<'static, JsonB> {
    let table = name_arg("table_name", table_name);
    let data = object_arg("data", data);
    let conditions = object_arg("match", r#match);
    let r = route(tenant_id).or_raise();
    let (base, custom) = split_update(&r, table, data);
    if r.tenant.is_supabase() {
        if let Some(patch) = custom {
            let rows = update_validated(&r, table, base, patch, conditions).or_raise();
            return SetOfIterator::new(returned(rows));
        }
    }
    let statement = sql::update(
        &r.tenant.schema_name,
        table,
        &sql::columns(&base),
        custom.is_some(),
        &sql::columns(&conditions),
    )
    .map_err(Error::from)
    .or_raise();
    let param = |v: Value| Param {
        value: Some(v.to_string()),
        type_oid: 0,
    };
    let mut params = vec![param(Value::Object(base)), param(Value::Object(conditions))];
    if let Some(c) = custom {
        params.push(param(Value::Object(c)));
    }
    SetOfIterator::new(returned(
        r.run(&statement, &params, Statement::Ours).or_raise(),
    ))
}

/// A routed update of a supabase tenant that changes `custom_fields`: the project's database
/// has no messiah trigger, so messiah validates the merged result before it is written. In one
/// transaction there: the matching rows are locked (`FOR UPDATE`), each one's stored
/// `custom_fields` merged with `patch` (JSON Merge Patch, RFC 7396) and validated with the
/// trigger's rules (Update: no defaults; unchanged values are not re-checked; unknown keys by
/// the tenant's policy), then written by `ctid` (stable while the rows are locked). Any
/// violation rolls the transaction back: nothing is written (23514, every failing field in
/// DETAIL).
fn update_validated(
    r: &Route,
    table: &str,
    base: Map<String, Value>,
    patch: Map<String, Value>,
    conditions: Map<String, Value>,
) -> Result<Rows, Error> {
    let schema = &r.tenant.schema_name;
    let lock = sql::select_for_update(schema, table, &sql::columns(&conditions))?;
    let write = sql::update_rows(schema, table, &sql::columns(&base));
    let snap = r.entity(table);
    let entity = snap.as_ref().and_then(|s| s.entity(table));
    let text = |v: Value| Param {
        value: Some(v.to_string()),
        type_oid: 0,
    };
    let (conditions, base, patch) = (
        text(Value::Object(conditions)),
        text(Value::Object(base)),
        Value::Object(patch),
    );
    let server = r.endpoint.server.name.clone();
    r.attempt(Statement::Ours, || {
        remote::with_conn(&r.endpoint, |c| {
            in_transaction(c, "BEGIN READ WRITE", &r.caps, &server, |c| {
                let locked =
                    c.query_capped(&lock, std::slice::from_ref(&conditions), &r.caps, &server)?;
                let mut writes = Vec::with_capacity(locked.rows.len());
                for row in &locked.rows {
                    let cell = |i: usize| row.get(i).cloned().flatten();
                    let stored: Value = cell(1)
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or(Value::Null);
                    match merge_checked(entity, &stored, &patch) {
                        Ok(merged) => writes.push(
                            serde_json::json!({"row_ctid": cell(0), "custom_fields": merged}),
                        ),
                        Err(errors) => return Ok(Err(violation(table, &errors))),
                    }
                }
                let rows = [base.clone(), text(Value::Array(writes))];
                c.query_capped(&write, &rows, &r.caps, &server).map(Ok)
            })
        })
    })?
}

/// Runs `body` in a transaction opened by `begin` (`BEGIN READ WRITE` or `BEGIN READ ONLY`)
/// ... `COMMIT` on `c`, rolled back when
/// `body` fails (a remote error) or refuses (`Ok(Err(_))`: nothing is written). A cap or
/// timeout stopping a statement inside it rolls everything back, so its `completed` tag (which
/// would say the write stayed) is dropped.
fn in_transaction<T, E>(
    c: &mut remote::Conn,
    begin: &str,
    caps: &remote::Caps,
    server: &str,
    body: impl FnOnce(&mut remote::Conn) -> Result<Result<T, E>, remote::RemoteError>,
) -> Result<Result<T, E>, remote::RemoteError> {
    c.query_capped(begin, &[], caps, server)?;
    let result = body(c);
    let end = if matches!(result, Ok(Ok(_))) {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    match (result, c.query_capped(end, &[], caps, server)) {
        (Ok(Ok(v)), Ok(_)) => Ok(Ok(v)),
        (Ok(Ok(_)), Err(e)) => Err(e),
        (Err(mut e), _) => {
            if let remote::RemoteError::Limit { completed, .. }
            | remote::RemoteError::Timeout { completed, .. } = &mut e
            {
                *completed = None;
            }
            Err(e)
        }
        (result, _) => result,
    }
}

/// `stored` merged with `patch` (JSON Merge Patch) and, for an entity table, validated as the
/// trigger would on UPDATE (a value left unchanged is not re-checked; unknown keys stripped
/// under the `strip` policy). Returns the value to write, or every violation.
fn merge_checked(
    entity: Option<&fields::CompiledEntity>,
    stored: &Value,
    patch: &Value,
) -> Result<Value, Vec<fields::FieldError>> {
    let mut merged = match stored {
        Value::Null => Value::Object(Map::new()),
        v => v.clone(),
    };
    crate::tenants::api::merge_patch(&mut merged, patch);
    let Some(e) = entity else {
        return Ok(merged);
    };
    if &merged == stored {
        return Ok(merged);
    }
    let outcome = fields::validate_document(e, Some(&merged), fields::Operation::Update);
    if !outcome.errors.is_empty() {
        return Err(outcome.errors);
    }
    if let Value::Object(m) = &mut merged {
        for k in &outcome.strip_keys {
            m.remove(k);
        }
    }
    Ok(merged)
}

/// The base columns to set and the `custom_fields` patch (if any) of a routed update.
fn split_update(
    r: &Route,
    table: &str,
    data: Map<String, Value>,
) -> (Map<String, Value>, Option<Map<String, Value>>) {
    let snap = r.entity(table);
    let Some(e) = snap.as_ref().and_then(|s| s.entity(table)) else {
        let mut base = data;
        let custom = match base.remove("custom_fields") {
            Some(Value::Object(c)) => Some(c),
            Some(other) => {
                Error::from(sql::ArgError::NotObject("custom_fields", sql::kind(&other))).raise()
            }
            None => None,
        };
        return (base, custom);
    };
    let given = data.contains_key("custom_fields");
    let mut data = Value::Object(data);
    let extra = set_aside(e, &mut data).or_raise();
    let (mut base, custom, errors) = fields::split_record(e, &data);
    if !errors.is_empty() {
        violation(table, &errors).raise();
    }
    base.extend(extra);
    let custom = (given || !custom.is_empty()).then_some(custom);
    (base, custom)
}

/// Deletes the rows of `table_name` whose columns equal `match` (as `messiah_tenant_update`),
/// as the tenant's application role; returns how many. Errors: 22023 empty match or match not
/// an object; 42P01/42703; 55000/57014 as `messiah_tenant_query`.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_delete(
    tenant_id: Option<&str>,
    table_name: Option<&str>,
    r#match: Option<JsonbArg>,
) -> i64 {
    let table = name_arg("table_name", table_name);
    let conditions = object_arg("match", r#match);
    let r = route(tenant_id).or_raise();
    let statement = sql::delete(&r.tenant.schema_name, table, &sql::columns(&conditions))
        .map_err(Error::from)
        .or_raise();
    let rows = r
        .run(
            &statement,
            &[Param {
                value: Some(Value::Object(conditions).to_string()),
                type_oid: 0,
            }],
            Statement::Ours,
        )
        .or_raise();
    rows.affected.unwrap_or(0) as i64
}

/// Closes this backend's connections into the tenant's database (the original design's
/// close()), or every connection messiah holds in this backend when `tenant_id` is null.
/// Returns how many were closed. Errors: 22023 invalid id; 42704 no such tenant.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_tenant_disconnect(tenant_id: default!(Option<&str>, "NULL")) -> i64 {
    let Some(id) = tenant_id else {
        return remote::close_all() as i64;
    };
    let id = tenant_id_arg(Some(id));
    let t = Tenant::existing(id.as_str(), false).or_raise();
    if t.is_supabase() {
        // the project's database is shared with other tenants and maintenance connections
        return remote::close_login(t.server_id, &t.database_name, &roles::application_role(&t))
            as i64;
    }
    remote::close_database(t.server_id, &t.database_name) as i64
}
