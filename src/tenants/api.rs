//! The tenant SQL API: `messiah_*` functions in the extension's schema (DESIGN.md decision 1:
//! one signature per name, named parameters, catalog column names). Each is a thin shim: check
//! the arguments (22023/54000 with DETAIL/HINT), then call the catalog over SPI with bind
//! parameters, or the provisioning and outbox modules. All are SECURITY DEFINER with a pinned
//! search_path and are not executable by PUBLIC (sql/finalize.sql).

use super::args;
use super::catalog::{self, installation_id, not_found, Tenant};
use super::{outbox, provision, reconcile};
use crate::err::{Code, Error, OrRaise};
use crate::ident::{check_slug, SLUG_RULE};
use crate::jsonarg::JsonbArg;
use crate::remote::Server;
use crate::shim::{check, invalid, not_null, required, tenant_id_arg};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

/// Tenant statuses (the original design's CHECK).
pub const STATUSES: [&str; 3] = ["active", "inactive", "suspended"];
/// Values of `settings.unknown_custom_fields` (DESIGN.md decision 6).
pub const UNKNOWN_FIELD_POLICIES: [&str; 3] = ["reject", "strip", "allow"];

fn slug_arg(v: &str) -> String {
    check_slug(v)
        .map(str::to_string)
        .unwrap_or_else(|e| invalid(e.to_string(), None, Some(SLUG_RULE.into())))
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

/// Checks tenant settings: a JSON object of at most 64 KiB whose `unknown_custom_fields`, if
/// present, is a policy.
fn settings_arg(v: &Value) {
    let Some(obj) = v.as_object() else {
        invalid("settings must be a JSON object".into(), None, None);
    };
    check(args::check_document("settings", v));
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

fn contact_args(email: Option<&str>, contact_name: Option<&str>) {
    if let Some(e) = email {
        check(args::check_email("contact_email", e));
    }
    if let Some(n) = contact_name {
        check(args::check_name("contact_name", n, false));
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
            format!(
                "config has an unknown key {:?}",
                k.chars().take(64).collect::<String>()
            ),
            Some(format!("Allowed keys: {}.", KEYS.join(", "))),
            None,
        );
    }
    // Values are never echoed: two of them are secrets.
    let text = |k: &str, default: Option<&str>| -> String {
        match (obj.get(k), default) {
            (Some(Value::String(s)), _) if !s.is_empty() => {
                check(args::check_bytes(
                    &format!("config.{k}"),
                    s.len(),
                    args::MAX_CONFIG_VALUE_BYTES,
                ));
                if s.chars().any(char::is_control) {
                    invalid(
                        format!("config.{k} must not contain control characters"),
                        None,
                        None,
                    );
                }
                s.clone()
            }
            (None, Some(d)) => d.to_string(),
            _ => invalid(format!("config.{k} must be a non-empty string"), None, None),
        }
    };
    let plan = text("plan", Some("free"));
    if !PLANS.contains(&plan.as_str()) {
        invalid(
            format!(
                "config.plan must be one of {}, got {:?}",
                PLANS.join(", "),
                plan.chars().take(64).collect::<String>()
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

/// Replaces the tenant's Supabase config with `c`, its keys encrypted.
fn store_config(tenant_id: &str, c: SupabaseConfig) -> Result<(), Error> {
    let ring = crate::secrets::ring()?;
    let seal = |column: &str, v: &str| {
        ring.seal(
            v,
            &crate::secrets::crypto::aad("tenant_supabase_configs", column, tenant_id),
        )
    };
    crate::spi::run(
        "DELETE FROM messiah.tenant_supabase_configs WHERE tenant_id = $1",
        &[tenant_id.into()],
    );
    crate::spi::run(
        "INSERT INTO messiah.tenant_supabase_configs (tenant_id, supabase_project_id, supabase_url, \
             anon_key, service_key, region, plan, is_active) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        &[
            tenant_id.into(),
            c.project_id.as_str().into(),
            c.url.as_str().into(),
            seal("anon_key", &c.anon_key).as_str().into(),
            seal("service_key", &c.service_key).as_str().into(),
            c.region.as_str().into(),
            c.plan.as_str().into(),
            c.is_active.into(),
        ],
    );
    Ok(())
}

fn tenant_result(tenant_id: &str) -> JsonB {
    JsonB(catalog::tenant_json(tenant_id).unwrap_or_else(|| not_found(tenant_id).raise()))
}

/// The server a new tenant goes to: `name` if given (it must be `active` and under its
/// capacity), else the placement policy: the `active` server with the fewest tenants that is
/// under its capacity (ties: the oldest server). Errors: 42704 unknown server, 55000 a server
/// that is draining or offline, 53400 no room.
pub fn place(name: Option<&str>) -> Result<Server, Error> {
    const LOAD: &str = "(SELECT count(*) FROM messiah.tenants t WHERE t.server_id = s.id)";
    if let Some(name) = name {
        let s = Server::by_name(name)?;
        if s.status != "active" {
            return Err(Error::new(
                Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "server \"{name}\" is {} and receives no new tenants",
                    s.status
                ),
            )
            .hint("messiah_alter_server(name, '{\"status\": \"active\"}') reopens it."));
        }
        let full = crate::spi::one_ro::<bool>(
            &format!("SELECT s.capacity IS NOT NULL AND {LOAD} >= s.capacity FROM messiah.servers s WHERE s.id = $1"),
            &[s.id.into()],
        )
        .unwrap_or(false);
        if full {
            return Err(Error::new(
                Code::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!("server \"{name}\" is at its capacity"),
            )
            .hint("Raise its capacity with messiah_alter_server() or choose another server."));
        }
        return Ok(s);
    }
    let chosen = crate::spi::one_ro::<String>(
        &format!(
            "SELECT s.name FROM messiah.servers s WHERE s.status = 'active' \
               AND (s.capacity IS NULL OR {LOAD} < s.capacity) \
             ORDER BY {LOAD}, s.id LIMIT 1"
        ),
        &[],
    );
    match chosen {
        Some(n) => Server::by_name(&n),
        None => Err(Error::new(
            Code::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            "no active server has room for a new tenant",
        )
        .hint("messiah_list_servers() shows status and capacity; messiah_add_server() adds one.")),
    }
}

/// Creates a tenant: its catalog row (and Supabase config when `config` is given, its keys
/// encrypted) now, its database `tenant_<tenant_id>` at COMMIT, cloned from the template
/// database of its server.
///
/// Arguments: `tenant_id` (DESIGN.md decision 4: `^[a-z][a-z0-9_]*$`, at most 56 bytes),
/// `name` (not blank, at most 200 code points, no control characters), `slug` (lowercase
/// letters/digits in hyphen-joined groups, at most 63 bytes), `contact_email` (WHATWG e-mail,
/// at most 254 bytes), `contact_name` (at most 200 code points), `settings` (JSON object, at
/// most 64 KiB; `unknown_custom_fields`: reject | strip | allow), `config` (JSON object:
/// supabase_project_id, supabase_url, anon_key, service_key required, at most 4 KiB each;
/// region default us-east-1; plan free|pro|team|enterprise; is_active), `server` (a registered
/// server's name; NULL: the placement policy), `connector_type` (`postgres`: a database
/// provisioned on the server; `supabase`: schema `tenant_<id>` in the existing database of a
/// Supabase project registered as `server`, which must be given, as must `config`; see
/// `tenants::supabase`).
///
/// Returns the tenant as jsonb (`messiah.tenant_json`). The database exists once the calling
/// transaction commits; a transaction that rolls back (or whose COMMIT fails) leaves neither
/// row nor database.
///
/// Errors: 22023 invalid argument; 54000 too large; 22004 null argument; 23505 tenant_id or
/// slug taken; 55006 a tenant of that id is still being dropped; 42P04 the database already
/// exists (left untouched); 42704/55000/53400 server; F0000 no key file for a config; 0A000
/// an unsupported connector type.
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
    server: default!(Option<&str>, "NULL"),
    connector_type: default!(Option<&str>, "'postgres'"),
) -> JsonB {
    outbox::run_in_session();
    let supabase = connector_type_arg(connector_type);
    let id = tenant_id_arg(tenant_id);
    let name = required("name", name);
    check(args::check_name("name", name, true));
    let slug = slug_arg(required("slug", slug));
    contact_args(contact_email, contact_name);
    let settings = settings
        .map(|s| s.0)
        .unwrap_or_else(|| Value::Object(Map::new()));
    settings_arg(&settings);
    let config = config.map(|c| {
        check(args::check_document("config", &c.0));
        config_arg(&c.0)
    });
    if config.is_some() {
        // Fail before anything is written when no key is available.
        crate::secrets::ring().or_raise();
    }
    if supabase {
        supabase_args(server, config.is_some());
    }
    let server = place(server).or_raise();
    if supabase {
        return create_supabase_tenant(
            &id,
            name,
            &slug,
            contact_email,
            contact_name,
            &settings,
            &server,
            config,
        );
    }
    let datname = id.database_name();

    if let Some(old) = Tenant::find(id.as_str(), false) {
        if old.lifecycle == "dropping" {
            outbox::run_and_wait(5_000);
            if Tenant::find(id.as_str(), false).is_some() {
                outbox::still_dropping(id.as_str()).raise();
            }
        }
    }
    // A leftover of an aborted creation of this id is garbage: it goes now rather than
    // making this creation fail.
    if let Some(db) = provision::find_database(&server, &datname).or_raise() {
        if provision::aborted_creation(&installation_id(), &db, &server).is_some() {
            provision::lock_database(&server, &datname);
            provision::force_drop(&server, &datname).or_raise();
        }
    }

    // ON CONFLICT DO NOTHING waits for a concurrent inserter of the same id to finish, so
    // exactly one of N concurrent creations inserts; the others see no row and raise 23505.
    let inserted = crate::spi::one::<bool>(
        "INSERT INTO messiah.tenants (tenant_id, name, slug, contact_email, contact_name, settings, \
                                      database_name, server_id, creating_xid, credential_key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::xid8, $10) ON CONFLICT DO NOTHING RETURNING true",
        &[
            id.as_str().into(),
            name.into(),
            slug.as_str().into(),
            contact_email.into(),
            contact_name.into(),
            JsonB(settings).into(),
            datname.as_str().into(),
            server.id.into(),
            provision::current_xid8().as_str().into(),
            super::roles::initial_key_id().into(),
        ],
    )
    .unwrap_or(false);
    if !inserted {
        conflict(id.as_str(), &slug, &datname).raise();
    }
    let t = Tenant::find(id.as_str(), false).unwrap_or_else(|| not_found(id.as_str()).raise());
    // A database kept by an earlier drop of this id and since dropped by hand leaves a stale
    // record; a new tenant of that name owns its database again.
    crate::spi::run(
        "DELETE FROM messiah.detached_databases WHERE database_name = $1",
        &[datname.as_str().into()],
    );
    provision::refuse_existing(&t, &server).or_raise();
    // Build the template now rather than at COMMIT, so its cost and its errors show here.
    provision::ensure_template(&server).or_raise();
    // its roles are created after COMMIT, once the database exists
    outbox::enqueue(outbox::Action::ApplyRoles, &t);
    if let Some(c) = config {
        store_config(id.as_str(), c).or_raise();
    }
    tenant_result(id.as_str())
}

/// The connector types (the original design's `postgres`, `supabase`, `mongodb`): `postgres`
/// (a database messiah provisions) and `supabase` (a schema in an existing project's
/// database); true for `supabase`. Errors: 0A000 for any other, before anything is written.
fn connector_type_arg(v: Option<&str>) -> bool {
    match v.unwrap_or("postgres") {
        "postgres" => false,
        "supabase" => true,
        other => Error::new(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("unsupported connector type \"{other}\""),
        )
        .detail(match other {
            "mongodb" => "No MongoDB connector exists: tenant data lives in Postgres databases.",
            _ => "The connector types are postgres (a database messiah provisions on a registered server) and supabase (a schema in a Supabase project's database).",
        })
        .hint("Create the tenant with connector_type => 'postgres' or 'supabase'.")
        .raise(),
    }
}

/// A `supabase` tenant names the project's server (registered with the project's conninfo:
/// its database is the conninfo's `dbname`, `postgres` by default) and gives its config (the
/// project's URL and keys). Errors: 22023 for either missing, before anything is written.
fn supabase_args(server: Option<&str>, has_config: bool) {
    if server.is_none() {
        Error::new(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            "a supabase tenant needs server => the project's registered server",
        )
        .detail("Its tables go into an existing Supabase project's database: no placement policy chooses one.")
        .hint("messiah_add_server('<name>', 'host=db.<project>.supabase.co port=5432 user=postgres dbname=postgres sslmode=require') first.")
        .raise();
    }
    if !has_config {
        Error::new(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            "a supabase tenant needs config => its project's supabase_project_id, supabase_url, anon_key and service_key",
        )
        .raise();
    }
}

/// The rest of `messiah_create_tenant` for a `supabase` tenant: the catalog row (`ready`: no
/// database is created) and its config now; its roles, schema and tables after COMMIT (the
/// outbox's `apply_roles`, see `roles::apply`).
#[allow(clippy::too_many_arguments)]
fn create_supabase_tenant(
    id: &crate::ident::TenantId,
    name: &str,
    slug: &str,
    contact_email: Option<&str>,
    contact_name: Option<&str>,
    settings: &Value,
    server: &crate::remote::Server,
    config: Option<SupabaseConfig>,
) -> JsonB {
    let database = server.maintenance().database;
    let inserted = crate::spi::one::<bool>(
        "INSERT INTO messiah.tenants (tenant_id, name, slug, contact_email, contact_name, settings, \
                                      database_name, server_id, lifecycle, connector_type, schema_name, \
                                      credential_key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ready', 'supabase', 'tenant_' || $1, $9) \
         ON CONFLICT DO NOTHING RETURNING true",
        &[
            id.as_str().into(),
            name.into(),
            slug.into(),
            contact_email.into(),
            contact_name.into(),
            JsonB(settings.clone()).into(),
            database.as_str().into(),
            server.id.into(),
            super::roles::initial_key_id().into(),
        ],
    )
    .unwrap_or(false);
    if !inserted {
        conflict(id.as_str(), slug, &database).raise();
    }
    let t = Tenant::find(id.as_str(), false).unwrap_or_else(|| not_found(id.as_str()).raise());
    outbox::enqueue(outbox::Action::ApplyRoles, &t);
    if let Some(c) = config {
        store_config(id.as_str(), c).or_raise();
    }
    tenant_result(id.as_str())
}

/// The 23505 of a creation that lost to an existing or concurrent tenant.
fn conflict(id: &str, slug: &str, datname: &str) -> Error {
    let (id_taken, slug_owner) = Spi::get_two_with_args::<bool, String>(
        "SELECT EXISTS (SELECT 1 FROM messiah.tenants WHERE tenant_id = $1), \
                (SELECT tenant_id FROM messiah.tenants WHERE slug = $2)",
        &[id.into(), slug.into()],
    )
    .unwrap_or((None, None));
    let detail = if id_taken == Some(true) {
        format!("tenant_id \"{id}\" is taken.")
    } else if let Some(owner) = slug_owner {
        format!("slug \"{slug}\" belongs to tenant \"{owner}\".")
    } else {
        format!("database name \"{datname}\" is taken.")
    };
    Error::new(
        Code::ERRCODE_UNIQUE_VIOLATION,
        format!("tenant \"{id}\" already exists or conflicts with an existing tenant"),
    )
    .detail(detail)
    .hint("Choose another tenant_id or slug, or messiah_get_tenant() the existing one.")
}

/// Returns the tenant as jsonb (see `messiah_create_tenant`). Errors: 22023 invalid id,
/// 42704 no such tenant (or one being dropped).
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_get_tenant(tenant_id: Option<&str>) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    Tenant::existing(id.as_str(), false).or_raise();
    tenant_result(id.as_str())
}

/// Lists tenants as jsonb rows ordered by tenant_id (those being dropped excluded),
/// optionally only those with `status`, skipping `offset` rows and returning at most `limit`
/// (1..=1000) rows. Errors: 22023 unknown status, negative offset, limit out of range.
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
         WHERE ($1::text IS NULL OR t.status = $1) AND t.lifecycle <> 'dropping' \
         ORDER BY t.tenant_id OFFSET $2 LIMIT $3",
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

/// Updates a tenant from `patch`, a JSON object (at most 64 KiB) with any of `name`, `slug`,
/// `contact_email`, `contact_name` (null clears a contact) and `settings` (merged into the
/// current settings by JSON Merge Patch, RFC 7396). The tenant database's copy of the row is
/// updated after COMMIT. Returns the tenant.
/// Errors: 22023 unknown key or invalid value, 54000 too large, 23505 slug taken, 42704 no
/// such tenant, 55000 managed by another installation.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_update_tenant(tenant_id: Option<&str>, patch: Option<JsonbArg>) -> JsonB {
    const KEYS: [&str; 5] = ["name", "slug", "contact_email", "contact_name", "settings"];
    outbox::run_in_session();
    let id = tenant_id_arg(tenant_id);
    let patch = patch.map(|p| p.0).unwrap_or(Value::Null);
    if patch.is_null() {
        Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "patch must not be null",
        )
        .raise();
    }
    let Some(p) = patch.as_object() else {
        invalid("patch must be a JSON object".into(), None, None);
    };
    check(args::check_document("patch", &patch));
    if let Some(k) = p.keys().find(|k| !KEYS.contains(&k.as_str())) {
        invalid(
            format!("patch has an unknown key {:?}", k.chars().take(64).collect::<String>()),
            Some(format!("Updatable keys: {}.", KEYS.join(", "))),
            Some("Use messiah_set_tenant_status() for the status and messiah_set_supabase_config() for the Supabase config.".into()),
        );
    }
    let t = Tenant::existing(id.as_str(), true).or_raise();
    t.require_ours().or_raise();
    let current = crate::spi::one::<JsonB>(
        "SELECT settings FROM messiah.tenants WHERE tenant_id = $1",
        &[id.as_str().into()],
    )
    .map(|j| j.0)
    .unwrap_or_else(|| Value::Object(Map::new()));
    let text = |k: &str| -> Option<Option<String>> {
        p.get(k).map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            _ => invalid(format!("patch.{k} must be a string or null"), None, None),
        })
    };
    let name = text("name").map(|n| {
        let n = n.unwrap_or_default();
        check(args::check_name("name", &n, true));
        n
    });
    let slug = text("slug").map(|s| slug_arg(s.as_deref().unwrap_or("")));
    let email = text("contact_email");
    let contact_name = text("contact_name");
    contact_args(
        email.clone().flatten().as_deref(),
        contact_name.clone().flatten().as_deref(),
    );
    let settings = p.get("settings").map(|s| {
        if !s.is_object() {
            invalid("patch.settings must be a JSON object".into(), None, None);
        }
        let mut merged = current.clone();
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
        Error::new(
            Code::ERRCODE_UNIQUE_VIOLATION,
            format!(
                "slug \"{}\" is taken by another tenant",
                slug.as_deref().unwrap_or("")
            ),
        )
        .raise();
    }
    crate::spi::run(
        "UPDATE messiah.tenants SET \
            name = CASE WHEN $2 THEN $3 ELSE name END, \
            slug = CASE WHEN $4 THEN $5 ELSE slug END, \
            contact_email = CASE WHEN $6 THEN $7 ELSE contact_email END, \
            contact_name = CASE WHEN $8 THEN $9 ELSE contact_name END, \
            settings = CASE WHEN $10 THEN $11 ELSE settings END \
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
    );
    catalog::bump_snapshot(&t).or_raise();
    tenant_result(id.as_str())
}

/// Sets a tenant's status: `active`, `inactive` or `suspended` (the original design's
/// CHECK). Anything but `active` refuses routed calls at once (55000), and after COMMIT the
/// tenant's application role can no longer log in and its sessions are ended; messiah's own
/// maintenance connections still work. `active` again restores access. Returns the tenant.
/// Errors: 22023 unknown status, 42704 no such tenant, 55000 managed by another installation.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_set_tenant_status(tenant_id: Option<&str>, status: Option<&str>) -> JsonB {
    outbox::run_in_session();
    let id = tenant_id_arg(tenant_id);
    let status = status_arg(status);
    let t = Tenant::existing(id.as_str(), true).or_raise();
    t.require_ours().or_raise();
    crate::spi::run(
        "UPDATE messiah.tenants SET status = $2 WHERE tenant_id = $1",
        &[id.as_str().into(), status.as_str().into()],
    );
    catalog::bump_snapshot(&t).or_raise();
    crate::cache::results::invalidate_tenant(id.as_str());
    // after COMMIT: the application role loses (or regains) LOGIN, its sessions are ended
    if t.lifecycle == "ready" {
        outbox::enqueue(outbox::Action::ApplyRoles, &t);
    }
    tenant_result(id.as_str())
}

/// Sets (replaces) the tenant's Supabase config (the original design's
/// tenant_supabase_configs), its keys encrypted with the current key of `messiah.key_file`;
/// `config` is the object `messiah_create_tenant` takes. Returns the tenant (keys masked).
/// Errors: 22023/54000 invalid config, 42704 no such tenant, F0000 no usable key file.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_set_supabase_config(tenant_id: Option<&str>, config: Option<JsonbArg>) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    let Some(config) = config else {
        Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "config must not be null",
        )
        .raise();
    };
    check(args::check_document("config", &config.0));
    let c = config_arg(&config.0);
    Tenant::existing(id.as_str(), true).or_raise();
    store_config(id.as_str(), c).or_raise();
    tenant_result(id.as_str())
}

/// Drops a tenant. Its row is marked `dropping` now (it disappears from get/list at once) and
/// its database is dropped after COMMIT by the executor, `WITH (FORCE)` (sessions still
/// connected are ended), and only if its marker says this installation created it under that
/// name; then the catalog rows go (configs and field definitions cascade). A transaction that
/// rolls back, or whose COMMIT fails, drops nothing. With `keep_database => true` the catalog
/// rows go now and the database stays, recorded in `messiah.detached_databases`.
/// Returns `{"tenant_id", "database", "database_kept"}`.
/// Errors: 42704 no such tenant; 55000 managed by another installation (only
/// `keep_database => true` is allowed then: it forgets the row and touches nothing).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_drop_tenant(
    tenant_id: Option<&str>,
    keep_database: default!(Option<bool>, false),
) -> JsonB {
    outbox::run_in_session();
    let id = tenant_id_arg(tenant_id);
    let keep_database = not_null("keep_database", keep_database);
    let t = Tenant::existing(id.as_str(), true).or_raise();
    if !keep_database {
        t.require_ours().or_raise();
    } else if t.is_supabase() {
        Error::new(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("keep_database is for provisioned databases; tenant \"{}\" is a supabase tenant", t.tenant_id),
        )
        .detail("Its tables are schema tenant_<id> of the project's database, which messiah never drops; dropping the tenant drops that schema.")
        .hint("Save the schema first (pg_dump --schema=tenant_<id>), then messiah_drop_tenant(tenant_id).")
        .raise();
    }
    crate::cache::results::invalidate_tenant(id.as_str());
    let key = [t.row_id.as_str().into()];
    if t.lifecycle == "provisioning" {
        // Created in this transaction: its database does not exist yet and never will.
        crate::spi::run("DELETE FROM messiah.tenants WHERE id = $1::uuid", &key);
    } else if keep_database {
        // the kept database stays, its application role loses its login (after COMMIT: the
        // role change finds the tenant gone and locks the role out)
        if t.is_ours() {
            outbox::enqueue(outbox::Action::ApplyRoles, &t);
        }
        crate::spi::run("DELETE FROM messiah.tenants WHERE id = $1::uuid", &key);
        crate::spi::run(
            "INSERT INTO messiah.detached_databases (database_name, tenant_id) VALUES ($1, $2) \
             ON CONFLICT (database_name) DO UPDATE SET tenant_id = excluded.tenant_id, detached_at = now()",
            &[t.database_name.as_str().into(), id.as_str().into()],
        );
    } else {
        crate::spi::run(
            "UPDATE messiah.tenants SET lifecycle = 'dropping' WHERE id = $1::uuid",
            &key,
        );
        // queued role changes of the tenant are skipped from now on (lifecycle `dropping`):
        // the drop drops the roles too
        outbox::enqueue(outbox::Action::DropDatabase, &t);
    }
    JsonB(serde_json::json!({
        "tenant_id": id.as_str(),
        "database": t.database_name,
        "database_kept": keep_database,
    }))
}

/// Lists, and with `repair => true` fixes, drift between the catalog and the servers.
/// Kinds: `aborted_creation` (a database this installation was creating when its transaction
/// aborted; repair drops it), `orphan_database` (named tenant_<id>, no catalog row: always left
/// alone and reported with its size, and with `deep` its row counts), `missing_database`
/// (repair recreates it empty), `snapshot_drift` (`deep` only: the tenant database's catalog
/// copy differs from the catalog; repair installs the catalog's), `foreign_tenant` (a row
/// another installation manages), `owned_elsewhere` (the database names another installation
/// now), `stale_template` (repair drops it), `pending_action` (a queued remote action that
/// failed; repair runs it). Without `repair` or `deep`, tenant databases on the local cluster
/// are looked at through the shared catalogs only: no connection is opened.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_reconcile(
    repair: default!(bool, false),
    deep: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(tenant_id, String),
        name!(database_name, String),
        name!(action, String),
        name!(server, String),
    ),
> {
    let rows = reconcile::reconcile(repair, deep)
        .or_raise()
        .into_iter()
        .map(|d| {
            (
                d.kind.to_string(),
                d.tenant_id,
                d.database_name,
                d.action,
                d.server,
            )
        })
        .collect::<Vec<_>>();
    TableIterator::new(rows)
}

/// Carries out the queued remote actions (drops, catalog copy pushes) now, in this session,
/// and with `wait_ms` > 0 waits up to that many milliseconds for the ones another session
/// (the executor worker) is running or that fail and are retried. It returns early when
/// another session waits for this transaction (an action the executor took may wait for the
/// ones done here, which commit with the caller): call it again after COMMIT. Returns
/// `{"done", "failed", "pending", "actions": [{"action","tenant_id","database","outcome"}]}`.
/// Errors: 22004, 22023 negative wait.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_run_pending(wait_ms: default!(Option<i32>, 0)) -> JsonB {
    let wait_ms = not_null("wait_ms", wait_ms);
    if wait_ms < 0 {
        invalid(format!("wait_ms must be >= 0, got {wait_ms}"), None, None);
    }
    let r = outbox::run_and_wait(i64::from(wait_ms));
    JsonB(serde_json::json!({
        "done": r.done,
        "failed": r.failed,
        "pending": r.pending,
        "actions": r.items.iter().map(|(a, t, d, o)| serde_json::json!({
            "action": a, "tenant_id": t, "database": d, "outcome": o,
        })).collect::<Vec<_>>(),
    }))
}

/// Brings an orphan tenant database (one no catalog row names, for example after the catalog
/// was lost) back into the catalog, from the copy each tenant database keeps of its own
/// catalog row and field definitions: name, slug, status, contacts, settings and every field
/// definition are restored (not the Supabase config, whose keys are never copied). Its marker
/// is rewritten to name this installation after COMMIT. Returns the tenant.
/// Errors: 22023 not a tenant database name, 3D000 no such database, 55000 a catalog row
/// names it or it holds no catalog copy, 23505 its tenant_id or slug is taken.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_adopt_database(
    database_name: Option<&str>,
    server: default!(Option<&str>, "'local'"),
) -> JsonB {
    let database_name = required("database_name", database_name);
    let server = Server::by_name(not_null("server", server)).or_raise();
    let tid = reconcile::adopt(&server, database_name).or_raise();
    tenant_result(&tid)
}

/// Drops, on purpose and at once, a database named like a tenant database (or a temporary
/// database of a creation) that no catalog row names. Returns
/// `{"database", "server", "dropped", "size_bytes"}`.
/// Errors: 22023 not a tenant database name, 3D000 no such database, 55000 a catalog row names
/// it (use messiah_drop_tenant).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_drop_orphan(
    database_name: Option<&str>,
    server: default!(Option<&str>, "'local'"),
) -> JsonB {
    let database_name = required("database_name", database_name);
    let server = Server::by_name(not_null("server", server)).or_raise();
    JsonB(reconcile::drop_orphan(&server, database_name).or_raise())
}

/// Makes this installation manage the tenants that another installation's id names: what a
/// restored copy of an admin database runs when it is to replace the original. The tenant
/// databases' markers and catalog copies are rewritten after COMMIT; from then on the original
/// installation sees those tenants as no longer its own. Returns rows (tenant_id, outcome).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_takeover() -> TableIterator<'static, (name!(tenant_id, String), name!(outcome, String))>
{
    TableIterator::new(reconcile::takeover().or_raise())
}

/// Inserts the catalog row and field definitions of an adopted database from its copy
/// (`snapshot`: `{"fields": [...], "tenant": {...}}`), and queues the claim of its database.
pub fn insert_adopted(tenant_id: &str, server: &Server, snapshot: &Value) -> Result<(), Error> {
    let tenant = snapshot.get("tenant").cloned().unwrap_or(Value::Null);
    let text = |k: &str| tenant.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let slug = text("slug").unwrap_or_else(|| tenant_id.replace('_', "-"));
    let inserted = crate::spi::one::<bool>(
        "INSERT INTO messiah.tenants (tenant_id, name, slug, status, contact_email, contact_name, \
             settings, database_name, server_id, lifecycle, creating_xid, snapshot_version) \
         VALUES ($1, $2, $3, coalesce($4, 'active'), $5, $6, coalesce($7, '{}'), $8, $9, 'ready', $10::xid8, \
                 nextval('messiah.snapshot_version_seq')) \
         ON CONFLICT DO NOTHING RETURNING true",
        &[
            tenant_id.into(),
            text("name").unwrap_or_else(|| tenant_id.to_string()).into(),
            slug.as_str().into(),
            text("status").into(),
            text("contact_email").into(),
            text("contact_name").into(),
            tenant.get("settings").cloned().map(JsonB).into(),
            format!("tenant_{tenant_id}").into(),
            server.id.into(),
            provision::current_xid8().as_str().into(),
        ],
    )
    .unwrap_or(false);
    if !inserted {
        return Err(conflict(tenant_id, &slug, &format!("tenant_{tenant_id}")));
    }
    crate::spi::run(
        "INSERT INTO messiah.extension_field_definitions (tenant_id, entity_table, field_name, field_type, \
             display_name, description, is_required, is_searchable, is_filterable, is_sortable, \
             default_value, validation_rules, ui_config, is_active) \
         SELECT $1, f->>'entity_table', f->>'field_name', f->>'field_type', \
                coalesce(f->>'display_name', f->>'field_name'), f->>'description', \
                coalesce((f->>'is_required')::boolean, false), coalesce((f->>'is_searchable')::boolean, true), \
                coalesce((f->>'is_filterable')::boolean, true), coalesce((f->>'is_sortable')::boolean, false), \
                f->>'default_value', coalesce(f->'validation_rules', '{}'), coalesce(f->'ui_config', '{}'), \
                coalesce((f->>'is_active')::boolean, true) \
         FROM jsonb_array_elements(coalesce($2->'fields', '[]')) f",
        &[tenant_id.into(), JsonB(snapshot.clone()).into()],
    );
    crate::spi::run(
        "DELETE FROM messiah.detached_databases WHERE database_name = $1",
        &[format!("tenant_{tenant_id}").into()],
    );
    let t = Tenant::find(tenant_id, false).ok_or_else(|| not_found(tenant_id))?;
    outbox::enqueue_with(
        outbox::Action::ClaimDatabase,
        &t,
        serde_json::json!({"creating_xid": t.creating_xid}),
    );
    Ok(())
}

/// Internal functions, in the `messiah` schema (not exposed to API roles).
#[pg_schema]
mod messiah {
    use crate::err::OrRaise;
    use crate::tenants::catalog::Tenant;
    use pgrx::prelude::*;

    /// Internal, called at COMMIT by the deferred trigger on `messiah.tenants`: creates the
    /// database of a `provisioning` row (see `provision::create_database`).
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn create_tenant_database(row_id: pgrx::Uuid) {
        let row_id = row_id.to_string();
        if let Some(t) = Tenant::by_row_id(&row_id) {
            if t.lifecycle == "provisioning" {
                crate::tenants::provision::create_database(&t).or_raise();
            }
        }
    }

    /// Internal, run by CREATE EXTENSION: registers this cluster as the server `local`, reached
    /// over its first Unix socket directory (or localhost) and port, as the extension's owner.
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn register_local_server() {
        let (dir, port, user) = Spi::get_three::<String, String, String>(
            "SELECT pg_catalog.btrim(pg_catalog.split_part(pg_catalog.current_setting('unix_socket_directories'), ',', 1)), \
                    pg_catalog.current_setting('port'), CURRENT_USER::text",
        )
        .unwrap_or((None, None, None));
        let mut c = crate::ident::Conninfo::default();
        let dir = dir.unwrap_or_default();
        c.set("host", if dir.is_empty() { "localhost" } else { &dir });
        c.set("port", &port.unwrap_or_else(|| "5432".into()));
        c.set("user", &user.unwrap_or_else(|| "postgres".into()));
        crate::spi::run(
            "INSERT INTO messiah.servers (name, conninfo) VALUES ('local', $1) ON CONFLICT (name) DO NOTHING",
            &[c.render().as_str().into()],
        );
        // A new admin installation: the launcher starts serving this database.
        // SAFETY: plain read.
        crate::worker::wake(unsafe { pg_sys::MyDatabaseId });
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
