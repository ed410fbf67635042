//! The SQL API: `messiah_*` functions in the extension's schema (DESIGN.md decision 1: one
//! signature per name, named parameters, catalog column names). Each is a thin shim: check
//! the arguments (22023 with DETAIL/HINT), then call the catalog over SPI with bind
//! parameters, or the provisioning module. All are SECURITY DEFINER with a pinned
//! search_path and are not executable by PUBLIC (sql/finalize.sql).

use crate::err::{raise, Code, SpiExt};
use crate::ident::{check_slug, TenantId, SLUG_RULE, TENANT_ID_RULE};
use crate::jsonarg::JsonbArg;
use crate::provision::{self, Server};
use crate::remote::dblink;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

/// Tenant statuses (the original design's CHECK).
pub const STATUSES: [&str; 3] = ["active", "inactive", "suspended"];
/// Values of `settings.unknown_custom_fields` (DESIGN.md decision 6).
pub const UNKNOWN_FIELD_POLICIES: [&str; 3] = ["reject", "strip", "allow"];

pub(crate) fn invalid(message: String, detail: Option<String>, hint: Option<String>) -> ! {
    raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, message, detail, hint)
}

/// The value of an argument that has a non-NULL default; 22004 when NULL is passed explicitly.
pub(crate) fn not_null<T>(what: &str, v: Option<T>) -> T {
    match v {
        Some(v) => v,
        None => raise(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be null"),
            None,
            Some("Omit the argument to use its default.".into()),
        ),
    }
}

/// The value of a required argument; 22004 when it is NULL (the functions are not STRICT, so a
/// NULL argument is an error rather than a silent NULL result).
pub(crate) fn required<'a>(what: &str, v: Option<&'a str>) -> &'a str {
    match v {
        Some(s) => s,
        None => raise(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be null"),
            None,
            None,
        ),
    }
}

pub(crate) fn tenant_id_arg(v: Option<&str>) -> TenantId {
    TenantId::parse(required("tenant_id", v))
        .unwrap_or_else(|e| invalid(e.to_string(), None, Some(TENANT_ID_RULE.into())))
}

fn slug_arg(v: &str) -> String {
    check_slug(v)
        .map(str::to_string)
        .unwrap_or_else(|e| invalid(e.to_string(), None, Some(SLUG_RULE.into())))
}

fn name_arg(v: &str) -> String {
    if v.trim().is_empty() {
        invalid("name must not be blank".into(), None, None);
    }
    v.to_string()
}

fn email_arg(v: Option<&str>) -> Option<String> {
    let v = v?;
    let ok = v.split_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && !d.is_empty() && !d.contains('@') && !v.chars().any(char::is_whitespace)
    });
    if !ok {
        invalid(
            format!("contact_email {v:?} is not an e-mail address"),
            None,
            Some("Use the form name@example.com.".into()),
        );
    }
    Some(v.to_string())
}

fn status_arg(v: Option<&str>) -> String {
    let v = required("status", v);
    if !STATUSES.contains(&v) {
        invalid(
            format!("unknown tenant status {v:?}"),
            Some(format!("Allowed statuses: {}.", STATUSES.join(", "))),
            None,
        );
    }
    v.to_string()
}

/// Checks tenant settings: a JSON object whose `unknown_custom_fields`, if present, is a policy.
fn settings_arg(v: &Value) {
    let Some(obj) = v.as_object() else {
        invalid(
            "settings must be a JSON object".into(),
            Some(format!("Got: {v}")),
            None,
        );
    };
    if let Some(p) = obj.get("unknown_custom_fields") {
        if !p
            .as_str()
            .is_some_and(|p| UNKNOWN_FIELD_POLICIES.contains(&p))
        {
            invalid(
                format!("settings.unknown_custom_fields must be one of {}, got {p}", UNKNOWN_FIELD_POLICIES.join(", ")),
                None,
                Some("reject (default) refuses custom_fields keys that are not defined fields; strip drops them; allow keeps them.".into()),
            );
        }
    }
}

/// The Supabase config of a tenant, checked key by key (the original design's
/// tenant_supabase_configs columns).
struct SupabaseConfig {
    project_id: String,
    url: String,
    anon_key: String,
    service_key: String,
    region: String,
    plan: String,
    is_active: bool,
}

fn config_arg(v: &Value) -> SupabaseConfig {
    const KEYS: [&str; 7] = [
        "supabase_project_id",
        "supabase_url",
        "anon_key",
        "service_key",
        "region",
        "plan",
        "is_active",
    ];
    const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];
    let Some(obj) = v.as_object() else {
        invalid("config must be a JSON object".into(), None, None);
    };
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        invalid(
            format!("config has an unknown key {k:?}"),
            Some(format!("Allowed keys: {}.", KEYS.join(", "))),
            None,
        );
    }
    let text = |k: &str, default: Option<&str>| -> String {
        match (obj.get(k), default) {
            (Some(Value::String(s)), _) if !s.is_empty() => s.clone(),
            (None, Some(d)) => d.to_string(),
            _ => invalid(format!("config.{k} must be a non-empty string"), None, None),
        }
    };
    let plan = text("plan", Some("free"));
    if !PLANS.contains(&plan.as_str()) {
        invalid(
            format!(
                "config.plan must be one of {}, got {plan:?}",
                PLANS.join(", ")
            ),
            None,
            None,
        );
    }
    let is_active = match obj.get("is_active") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => invalid("config.is_active must be a boolean".into(), None, None),
    };
    SupabaseConfig {
        project_id: text("supabase_project_id", None),
        url: text("supabase_url", None),
        anon_key: text("anon_key", None),
        service_key: text("service_key", None),
        region: text("region", Some("us-east-1")),
        plan,
        is_active,
    }
}

fn tenant_json(tenant_id: &str) -> Option<Value> {
    crate::spi::one::<JsonB>(
        "SELECT messiah.tenant_json(t) FROM messiah.tenants t WHERE t.tenant_id = $1",
        &[tenant_id.into()],
    )
    .map(|j| j.0)
}

pub(crate) fn not_found(tenant_id: &str) -> ! {
    raise(
        Code::ERRCODE_UNDEFINED_OBJECT,
        format!("tenant \"{tenant_id}\" does not exist"),
        None,
        Some("messiah_list_tenants() lists the tenants.".into()),
    )
}

/// Creates a tenant: its catalog row (and Supabase config when `config` is given) now, its
/// database `tenant_<tenant_id>` at COMMIT, cloned from the template database.
///
/// Arguments: `tenant_id` (DESIGN.md decision 4: `^[a-z][a-z0-9_]*$`, at most 56 bytes),
/// `name` (not blank), `slug` (lowercase letters/digits in hyphen-joined groups, at most 63
/// bytes), `contact_email`, `contact_name`, `settings` (JSON object; `unknown_custom_fields`:
/// reject | strip | allow), `config` (JSON object: supabase_project_id, supabase_url,
/// anon_key, service_key required; region default us-east-1; plan free|pro|team|enterprise;
/// is_active).
///
/// Returns the tenant as jsonb (`messiah.tenant_json`), whose `database` is the database name.
/// The database exists once the calling transaction commits (in autocommit, when the call
/// returns); a transaction that rolls back leaves neither row nor database.
///
/// Errors: 22023 invalid argument; 22004 null argument; 23505 tenant_id or slug taken (a
/// concurrent creation of the same id waits for the first to finish, then gets 23505);
/// 42P04 the database already exists (left untouched), raised by the call or at COMMIT.
#[allow(clippy::too_many_arguments)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_create_tenant(
    tenant_id: Option<&str>,
    name: Option<&str>,
    slug: Option<&str>,
    contact_email: default!(Option<&str>, "NULL"),
    contact_name: default!(Option<&str>, "NULL"),
    settings: default!(Option<JsonbArg>, "'{}'"),
    config: default!(Option<JsonbArg>, "NULL"),
) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    let name = name_arg(required("name", name));
    let slug = slug_arg(required("slug", slug));
    let email = email_arg(contact_email);
    let settings = settings
        .map(|s| s.0)
        .unwrap_or_else(|| Value::Object(Map::new()));
    settings_arg(&settings);
    let config = config.map(|c| config_arg(&c.0));

    provision::sweep();
    let server = Server::current();
    let server_conninfo = server.conninfo.render();
    let datname = id.database_name();

    // ON CONFLICT DO NOTHING waits for a concurrent inserter of the same id to finish, so
    // exactly one of N concurrent creations inserts; the others see no row and raise 23505.
    let inserted = crate::spi::one::<bool>(
        "INSERT INTO messiah.tenants (tenant_id, name, slug, contact_email, contact_name, settings, \
                                      database_name, server_conninfo) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING true",
        &[
            id.as_str().into(),
            name.as_str().into(),
            slug.as_str().into(),
            email.into(),
            contact_name.into(),
            JsonB(settings).into(),
            datname.as_str().into(),
            server_conninfo.as_str().into(),
        ],
    )
    .unwrap_or(false);
    if !inserted {
        let (id_taken, slug_owner) = Spi::get_two_with_args::<bool, String>(
            "SELECT EXISTS (SELECT 1 FROM messiah.tenants WHERE tenant_id = $1), \
                    (SELECT tenant_id FROM messiah.tenants WHERE slug = $2)",
            &[id.as_str().into(), slug.as_str().into()],
        )
        .or_raise("reading the conflicting tenant");
        let detail = if id_taken == Some(true) {
            format!("tenant_id \"{id}\" is taken.")
        } else if let Some(owner) = slug_owner {
            format!("slug \"{slug}\" belongs to tenant \"{owner}\".")
        } else {
            format!("database name \"{datname}\" is taken.")
        };
        raise(
            Code::ERRCODE_UNIQUE_VIOLATION,
            format!("tenant \"{id}\" already exists or conflicts with an existing tenant"),
            Some(detail),
            Some(
                "Choose another tenant_id or slug, or messiah_get_tenant() the existing one."
                    .into(),
            ),
        );
    }

    // A database kept by an earlier drop of this id and since dropped by hand leaves a stale
    // record; a new tenant of that name owns its database again.
    Spi::run_with_args(
        "DELETE FROM messiah.detached_databases WHERE database_name = $1",
        &[datname.as_str().into()],
    )
    .or_raise("forgetting a stale detached database");
    let dbl = dblink();
    if provision::database_exists(&dbl, &server, &datname) {
        raise(
            Code::ERRCODE_DUPLICATE_DATABASE,
            format!("database \"{datname}\" for tenant \"{id}\" already exists"),
            Some("messiah creates one database per tenant and never adopts or overwrites an existing one.".into()),
            Some("Drop or rename that database, or choose another tenant_id; messiah_reconcile() lists leftover tenant databases.".into()),
        );
    }
    // Build the template now rather than at COMMIT, so its cost and its errors show here.
    provision::ensure_template(&dbl, &server);

    if let Some(c) = config {
        Spi::run_with_args(
            "INSERT INTO messiah.tenant_supabase_configs (tenant_id, supabase_project_id, supabase_url, \
                 anon_key, service_key, region, plan, is_active) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            &[
                id.as_str().into(),
                c.project_id.into(),
                c.url.into(),
                c.anon_key.into(),
                c.service_key.into(),
                c.region.into(),
                c.plan.into(),
                c.is_active.into(),
            ],
        )
        .or_raise("inserting the Supabase config");
    }
    JsonB(tenant_json(id.as_str()).unwrap_or_else(|| not_found(id.as_str())))
}

/// Returns the tenant as jsonb (see `messiah_create_tenant`). Errors: 22023 invalid id,
/// 42704 no such tenant.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_get_tenant(tenant_id: Option<&str>) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    JsonB(tenant_json(id.as_str()).unwrap_or_else(|| not_found(id.as_str())))
}

/// Lists tenants as jsonb rows ordered by tenant_id, optionally only those with `status`,
/// skipping `offset` rows and returning at most `limit` (1..=1000) rows.
/// Errors: 22023 unknown status, negative offset, limit out of range.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_list_tenants(
    status: default!(Option<&str>, "NULL"),
    offset: default!(Option<i64>, 0),
    limit: default!(Option<i64>, 100),
) -> SetOfIterator<'static, JsonB> {
    let status = status.map(|s| status_arg(Some(s)));
    let offset = not_null("offset", offset);
    let limit = not_null("limit", limit);
    if offset < 0 {
        invalid(format!("offset must be >= 0, got {offset}"), None, None);
    }
    if !(1..=1000).contains(&limit) {
        invalid(
            format!("limit must be between 1 and 1000, got {limit}"),
            None,
            Some("Page with offset.".into()),
        );
    }
    let rows = crate::spi::column::<JsonB>(
        "SELECT messiah.tenant_json(t) FROM messiah.tenants t \
         WHERE $1::text IS NULL OR t.status = $1 ORDER BY t.tenant_id OFFSET $2 LIMIT $3",
        &[status.into(), offset.into(), limit.into()],
    );
    SetOfIterator::new(rows)
}

/// JSON Merge Patch (RFC 7396): objects merge recursively, `null` removes a key, anything
/// else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(p)) => {
            let mut fresh = Value::Object(Map::new());
            merge_patch(&mut fresh, &Value::Object(p.clone()));
            *target = fresh;
        }
        _ => *target = patch.clone(),
    }
}

/// Updates a tenant from `patch`, a JSON object with any of `name`, `slug`, `contact_email`,
/// `contact_name` (null clears a contact) and `settings` (merged into the current settings
/// by JSON Merge Patch, RFC 7396). Returns the tenant.
/// Errors: 22023 unknown key or invalid value, 23505 slug taken, 42704 no such tenant.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_update_tenant(tenant_id: Option<&str>, patch: Option<JsonbArg>) -> JsonB {
    const KEYS: [&str; 5] = ["name", "slug", "contact_email", "contact_name", "settings"];
    let id = tenant_id_arg(tenant_id);
    let patch = patch.map(|p| p.0).unwrap_or(Value::Null);
    if patch.is_null() {
        raise(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "patch must not be null",
            None,
            None,
        );
    }
    let Some(p) = patch.as_object() else {
        invalid("patch must be a JSON object".into(), None, None);
    };
    if let Some(k) = p.keys().find(|k| !KEYS.contains(&k.as_str())) {
        invalid(
            format!("patch has an unknown key {k:?}"),
            Some(format!("Updatable keys: {}.", KEYS.join(", "))),
            Some("Use messiah_set_tenant_status() for the status.".into()),
        );
    }
    let current = crate::spi::one::<JsonB>(
        "SELECT settings FROM messiah.tenants WHERE tenant_id = $1 FOR UPDATE",
        &[id.as_str().into()],
    )
    .unwrap_or_else(|| not_found(id.as_str()));
    let text = |k: &str| -> Option<Option<String>> {
        p.get(k).map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            _ => invalid(format!("patch.{k} must be a string or null"), None, None),
        })
    };
    let name = text("name").map(|n| name_arg(n.as_deref().unwrap_or("")));
    let slug = text("slug").map(|s| slug_arg(s.as_deref().unwrap_or("")));
    let email = text("contact_email").map(|e| email_arg(e.as_deref()));
    let contact_name = text("contact_name");
    let settings = p.get("settings").map(|s| {
        if !s.is_object() {
            invalid("patch.settings must be a JSON object".into(), None, None);
        }
        let mut merged = current.0.clone();
        merge_patch(&mut merged, s);
        settings_arg(&merged);
        merged
    });
    let slug_taken = slug.as_ref().is_some_and(|s| {
        crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM messiah.tenants WHERE slug = $1 AND tenant_id <> $2)",
            &[s.as_str().into(), id.as_str().into()],
        )
        .unwrap_or(false)
    });
    if slug_taken {
        raise(
            Code::ERRCODE_UNIQUE_VIOLATION,
            format!(
                "slug \"{}\" is taken by another tenant",
                slug.as_deref().unwrap_or("")
            ),
            None,
            None,
        );
    }
    Spi::run_with_args(
        "UPDATE messiah.tenants SET \
            name = CASE WHEN $2 THEN $3 ELSE name END, \
            slug = CASE WHEN $4 THEN $5 ELSE slug END, \
            contact_email = CASE WHEN $6 THEN $7 ELSE contact_email END, \
            contact_name = CASE WHEN $8 THEN $9 ELSE contact_name END, \
            settings = CASE WHEN $10 THEN $11 ELSE settings END, \
            fields_version = CASE WHEN $10 AND \
                coalesce($11 ->> 'unknown_custom_fields', 'reject') \
                IS DISTINCT FROM coalesce(settings ->> 'unknown_custom_fields', 'reject') \
                THEN nextval('messiah.fields_version_seq') ELSE fields_version END \
         WHERE tenant_id = $1",
        &[
            id.as_str().into(),
            name.is_some().into(),
            name.clone().into(),
            slug.is_some().into(),
            slug.clone().into(),
            email.is_some().into(),
            email.flatten().into(),
            contact_name.is_some().into(),
            contact_name.flatten().into(),
            settings.is_some().into(),
            settings.map(JsonB).into(),
        ],
    )
    .or_raise("updating the tenant");
    JsonB(tenant_json(id.as_str()).unwrap_or_else(|| not_found(id.as_str())))
}

/// Sets a tenant's status: `active`, `inactive` or `suspended` (the original design's
/// CHECK). Returns the tenant. Errors: 22023 unknown status, 42704 no such tenant.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_set_tenant_status(tenant_id: Option<&str>, status: Option<&str>) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    let status = status_arg(status);
    let found = crate::spi::one::<bool>(
        "UPDATE messiah.tenants SET status = $2 WHERE tenant_id = $1 RETURNING true",
        &[id.as_str().into(), status.as_str().into()],
    )
    .unwrap_or(false);
    if !found {
        not_found(id.as_str());
    }
    JsonB(tenant_json(id.as_str()).unwrap_or_else(|| not_found(id.as_str())))
}

/// Drops a tenant: its catalog rows now (configs and field definitions cascade), its
/// database at COMMIT with `DROP DATABASE ... WITH (FORCE)`, which disconnects sessions still
/// connected to it. With `keep_database => true` the database stays, recorded in
/// `messiah.detached_databases` so reconcile does not treat it as an orphan.
/// Returns `{"tenant_id", "database", "database_kept"}`. Errors: 42704 no such tenant.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_drop_tenant(
    tenant_id: Option<&str>,
    keep_database: default!(Option<bool>, false),
) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    let keep_database = not_null("keep_database", keep_database);
    let datname = crate::spi::one::<String>(
        "DELETE FROM messiah.tenants WHERE tenant_id = $1 RETURNING database_name",
        &[id.as_str().into()],
    )
    .unwrap_or_else(|| not_found(id.as_str()));
    if keep_database {
        Spi::run_with_args(
            "INSERT INTO messiah.detached_databases (database_name, tenant_id) VALUES ($1, $2) \
             ON CONFLICT (database_name) DO UPDATE SET tenant_id = excluded.tenant_id, detached_at = now()",
            &[datname.as_str().into(), id.as_str().into()],
        )
        .or_raise("recording the kept database");
    }
    JsonB(serde_json::json!({
        "tenant_id": id.as_str(),
        "database": datname,
        "database_kept": keep_database,
    }))
}

/// Lists, and with `repair => true` fixes, drift between the catalog and the databases on
/// the servers: `orphan_database` (named like a tenant database, no catalog row; repair drops
/// those messiah created), `missing_database` (catalog row without database; repair recreates
/// it empty), `aborted_creation` (repair: swept from the provisioning journal).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_reconcile(
    repair: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(tenant_id, String),
        name!(database_name, String),
        name!(action, String),
    ),
> {
    let rows = provision::reconcile(repair)
        .into_iter()
        .map(|d| (d.kind.to_string(), d.tenant_id, d.database_name, d.action))
        .collect::<Vec<_>>();
    TableIterator::new(rows)
}

/// Internal functions, in the `messiah` schema (not exposed to API roles).
#[pg_schema]
mod messiah {
    use crate::provision;
    use pgrx::prelude::*;

    /// Internal, called at COMMIT by the deferred trigger on `messiah.tenants`: creates the
    /// tenant database (see `provision::create_database`).
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn create_tenant_database(tenant_id: &str, database_name: &str, server_conninfo: &str) {
        provision::create_database(tenant_id, database_name, server_conninfo);
    }

    /// Internal, called at COMMIT by the deferred trigger on DELETE from `messiah.tenants`:
    /// schedules the drop for the very end of the commit (XACT_EVENT_PRE_COMMIT, after every
    /// deferred trigger, including user-defined ones, has run), since a DROP DATABASE cannot be
    /// undone if something later failed the COMMIT. Returns true (scheduled).
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn drop_tenant_database(database_name: &str, server_conninfo: &str) -> bool {
        let (db, conninfo) = (database_name.to_string(), server_conninfo.to_string());
        // The callback runs outside this SECURITY DEFINER function, as the session's role:
        // remember the owner to act as it.
        let owner = crate::spi::AsUser::current();
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::PreCommit, move || {
            let _as_owner = crate::spi::AsUser::enter(owner, 0);
            // Portals are closed by now: SPI needs a snapshot of its own.
            // SAFETY: the transaction is still in progress at PRE_COMMIT; the snapshot is
            // popped again below (or released by the abort if the drop fails).
            unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
            provision::drop_tenant_database(&db, &conninfo);
            // SAFETY: pops the snapshot pushed above.
            unsafe { pg_sys::PopActiveSnapshot() };
        });
        true
    }

    /// Drops databases whose creating transaction aborted (provisioning journal) and returns
    /// their names. Run by the background worker, by every create and by reconcile(repair).
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn sweep() -> SetOfIterator<'static, String> {
        SetOfIterator::new(provision::sweep())
    }
}

#[cfg(test)]
mod unit {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7396_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": ["b"]});
        merge_patch(&mut t, &json!({"a": "c"}));
        assert_eq!(t, json!({"a": "c"}));
        let mut t = json!({"a": "foo"});
        merge_patch(&mut t, &json!({"b": {"c": null}}));
        assert_eq!(t, json!({"a": "foo", "b": {}}));
    }
}
