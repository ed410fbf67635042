//! The tenant's roles on its server: routing must not be a way out of the tenant.
//!
//! - The **application role** is named like the tenant's database (`tenant_<id>`), LOGIN. It
//!   can connect to that database only (CONNECT is revoked from PUBLIC on every tenant
//!   database, and granted to it), read and write the tenant's tables, and nothing else: it
//!   owns nothing, so it cannot disable or drop messiah's triggers; it has no right on schema
//!   `messiah` but EXECUTE on `messiah.jsonb_merge_patch`, so it cannot touch
//!   `messiah.field_snapshot`; it is not a member of any role but `messiah_tenant_roles`
//!   (which has no privileges: it exists for pg_hba.conf). Routed statements log in as it: a
//!   `SET ROLE` on a superuser connection could be undone by the routed SQL itself.
//! - The **owner role** `owner_<id>` (NOLOGIN) owns the tenant's tables, for schema changes.
//!
//! The application role's password is derived, never stored: HMAC-SHA256 of key
//! `credential_key_id` of `messiah.key_file` over the installation, the role and
//! `credential_version` (`secrets::crypto::derive`). The server receives only its SCRAM
//! verifier, computed by libpq on this side. `messiah_rotate_tenant_credentials` (or a key
//! rotation) bumps the version.
//!
//! Every change is a remote effect decided by a transaction (creation, status, limits,
//! rotation) and carried out after it commits: the outbox's `apply_roles` action runs
//! [`apply`], which makes the roles match the catalog row as it then is (idempotent). A
//! tenant that is not `active` has a NOLOGIN application role and its sessions are ended.

use super::catalog::{installation_id, Tenant};
use crate::err::{Code, Error};
use crate::ident::{quote_ident, quote_literal};
use crate::remote::{self, Login, Server};

/// The role every application role is a member of, for pg_hba.conf
/// (`host sameuser +messiah_tenant_roles ... scram-sha-256`). It has no privileges.
pub const GROUP_ROLE: &str = "messiah_tenant_roles";

/// Whether the server's conninfo user is a superuser (SQL, for scripts run on that server):
/// a CREATEROLE role (a Supabase project's `postgres`) cannot set some attributes and settings.
const IS_SUPERUSER: &str = "(SELECT r.rolsuper FROM pg_catalog.pg_roles r \
                            WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)";

/// The role (NOLOGIN, no rights but in templates) that owns what tenant schema migrations
/// create in a template database (`tenants::provision::ensure_template`); in a tenant
/// database created from it, all of that goes to the tenant's owner role.
pub const MIGRATOR_ROLE: &str = "messiah_migrator";

/// The seed's tables (the tenant schema), owned by the owner role.
const TENANT_TABLES: [&str; 3] = ["clients", "projects", "activities"];

/// The comment that marks a role as this tenant's (`COMMENT ON ROLE`): a role of that name
/// without it belongs to someone else and is never altered or dropped.
fn marker(kind: &str, tenant_id: &str) -> String {
    serde_json::json!({"messiah_role": kind, "tenant_id": tenant_id}).to_string()
}

/// The application role's name, `tenant_<id>` (a provisioned tenant's database name too).
pub fn application_role(t: &Tenant) -> String {
    format!("tenant_{}", t.tenant_id)
}

/// The application role's current password, derived from the key file. Errors: F0000 no
/// usable key file, or the key it was derived from is gone.
fn password(t: &Tenant, key_id: &str, installation: &str) -> Result<String, Error> {
    let ring = crate::secrets::ring()?;
    let label = format!(
        "{}/{}/v{}",
        installation,
        application_role(t),
        t.credential_version
    );
    crate::secrets::crypto::derive(&ring, key_id, &label).map_err(Error::from)
}

/// The login of the tenant's application role, for routed connections. Errors: F0000 no
/// usable key file (routing needs one); 55000 when the roles have not been set up yet.
/// `installation`: this admin installation's id (part of what the password is derived from).
pub fn login(t: &Tenant, installation: &str) -> Result<Login, Error> {
    let Some(key_id) = &t.credential_key_id else {
        // no key file: F0000 says so
        crate::secrets::ring()?;
        return Err(Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the roles of tenant \"{}\" are not set up yet", t.tenant_id),
        )
        .hint("They are set up after the tenant's creation commits; messiah_run_pending() shows why they are not."));
    };
    Ok(Login {
        user: application_role(t),
        password: password(t, key_id, installation)?,
        generation: crate::ident::fnv64(format!("{:?}", t.limits).as_bytes()),
        read_only: t.is_supabase(),
    })
}

/// Makes the tenant's roles on its server match its catalog row (see the module comment).
/// Returns what was done. Errors: 42710 a role of that name exists and is not this tenant's;
/// F0000 key file; remote errors with a CONTEXT naming the tenant and server.
///
/// Takes the tenant's move lock shared first, then reads the row again: a role change never
/// runs while a move cuts the tenant over, nor from a row read before it (it would give the
/// login back on the server being left).
pub fn apply(t: &Tenant) -> Result<String, Error> {
    crate::fleet::moves::lock_shared(&t.tenant_id);
    // read again after the wait: a move may have changed the server meanwhile
    let fresh = crate::spi::with_fresh_snapshot(|| Tenant::find(&t.tenant_id, false))
        .filter(|f| f.row_id == t.row_id);
    let t = fresh.as_ref().unwrap_or(t);
    if t.lifecycle != "ready" || !t.is_ours() {
        return Ok(format!("skipped: tenant is {}", t.lifecycle));
    }
    let server = t.server()?;
    let context = t.describe(&server);
    refuse_foreign(t, &server)?;
    if t.is_supabase() {
        refuse_foreign_schema(t, &server)?;
    }
    let maint = server.maintenance();
    let app = application_role(t);
    let verifier = match credential(t)? {
        None => None,
        Some(password) => Some(
            remote::with_conn(&maint, |c| Ok(c.scram_verifier(&password, &app)))
                .map_err(|e| e.into_error(&context))?
                .ok_or_else(|| {
                    Error::new(
                        Code::ERRCODE_INTERNAL_ERROR,
                        "libpq could not compute a SCRAM verifier",
                    )
                    .context(context.clone())
                })?,
        ),
    };
    remote::execute(&maint, &server_script(t, verifier.as_deref()))
        .map_err(|e| e.into_error(&context))?;
    let mut note = String::new();
    if (t.status != "active" || verifier.is_none()) && !end_sessions(&maint, &app, &context)? {
        note = "; its open sessions were not ended: the server's user is neither a superuser nor a member of pg_signal_backend".into();
    }
    let db = server.database(&t.database_name);
    if t.is_supabase() {
        let script =
            super::supabase::schema_script(&t.tenant_id, &t.schema_name, &t.owner_role, &app);
        remote::execute(&db, &script).map_err(|e| e.into_error(&context))?;
    } else {
        remote::execute(&db, &grants_script(t)).map_err(|e| e.into_error(&context))?;
        remote::execute(&db, &ownership_script(t)).map_err(|e| e.into_error(&context))?;
    }
    if !t.is_supabase() {
        // (a project's database is shared: other tenants' connections stay)
        remote::close_database(server.id, &t.database_name);
    }
    Ok(format!(
        "roles {} ({}) and {} applied{note}",
        app,
        match (t.status == "active", verifier.is_some()) {
            (true, true) => "login",
            (false, _) => "no login",
            (true, false) => "no login: no key file to derive its password from",
        },
        t.owner_role
    ))
}

/// The key a new tenant's application-role password is derived from: the current key of
/// `messiah.key_file`, recorded with the catalog row when it is created (so setting up the
/// roles later changes nothing the user sees, not even `updated_at`). `None` when no usable
/// key file is configured: the roles are then set up without a login, and the key is
/// recorded the first time one is (see [`credential`]).
pub fn initial_key_id() -> Option<String> {
    match crate::secrets::ring_if_configured() {
        Ok(Some(ring)) => Some(ring.current().id().to_string()),
        _ => None,
    }
}

/// The application role's password, its key recorded in the catalog the first time; `None`
/// when no key file is configured (the role then cannot log in and routed calls fail with
/// F0000; everything else works). Errors: F0000 for a key file that is set but unusable.
fn credential(t: &Tenant) -> Result<Option<String>, Error> {
    let key_id = match &t.credential_key_id {
        Some(k) => k.clone(),
        None => {
            let ring = match crate::secrets::ring_if_configured()? {
                Some(r) => r,
                None => return Ok(None),
            };
            let k = ring.current().id().to_string();
            crate::spi::run(
                "UPDATE messiah.tenants SET credential_key_id = $2 WHERE tenant_id = $1",
                &[t.tenant_id.as_str().into(), k.as_str().into()],
            );
            k
        }
    };
    password(t, &key_id, &installation_id()).map(Some)
}

/// 42P06 when the project already has a schema of the supabase tenant's name that messiah did
/// not create: checked before the roles are made, so that no login exists for a tenant whose
/// tables cannot be set up.
fn refuse_foreign_schema(t: &Tenant, server: &Server) -> Result<(), Error> {
    let context = t.describe(server);
    let rows = remote::query(
        &server.database(&t.database_name),
        super::supabase::schema_owner_query(),
        &[
            Some(&t.schema_name),
            Some(&super::supabase::marker(&t.tenant_id)),
        ],
    )
    .map_err(|e| e.into_error(&context))?;
    if rows.scalar() == Some("foreign") {
        return Err(Error::new(
            Code::ERRCODE_DUPLICATE_SCHEMA,
            format!(
                "schema {} exists and is not tenant {}'s",
                t.schema_name, t.tenant_id
            ),
        )
        .detail("messiah marks the schemas it creates with a comment; this one has another.")
        .hint("Rename or drop that schema, then messiah_run_pending().")
        .context(context));
    }
    Ok(())
}

/// 42710 when a role of the tenant's names exists without this tenant's marker.
fn refuse_foreign(t: &Tenant, server: &Server) -> Result<(), Error> {
    let rows = remote::query(
        &server.maintenance(),
        "SELECT rolname::text, pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles \
         WHERE rolname OPERATOR(pg_catalog.=) $1 OR rolname OPERATOR(pg_catalog.=) $2",
        &[Some(&application_role(t)), Some(&t.owner_role)],
    )
    .map_err(|e| e.into_error(&t.describe(server)))?;
    for r in rows.rows {
        let name = r.first().cloned().flatten().unwrap_or_default();
        let kind = if name == t.owner_role {
            "owner"
        } else {
            "application"
        };
        if r.get(1).cloned().flatten().as_deref() != Some(marker(kind, &t.tenant_id).as_str()) {
            return Err(Error::new(
                Code::ERRCODE_DUPLICATE_OBJECT,
                format!(
                    "role \"{name}\" exists on server \"{}\" and is not tenant \"{}\"'s",
                    server.name, t.tenant_id
                ),
            )
            .detail("messiah marks the roles it creates with a comment; this one has another.")
            .hint("Rename or drop that role, then messiah_run_pending()."));
        }
    }
    Ok(())
}

/// The server-level statements (one implicit transaction): roles, their marker, attributes,
/// limits, password (verifier), membership, and CONNECT on the tenant's database.
fn server_script(t: &Tenant, verifier: Option<&str>) -> String {
    let app = quote_ident(&application_role(t));
    let owner = quote_ident(&t.owner_role);
    let create = |role: &str, name: &str| {
        format!(
            "DO $$BEGIN CREATE ROLE {name} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$;\n\
             COMMENT ON ROLE {name} IS {};\n",
            quote_literal(&marker(role, &t.tenant_id))
        )
    };
    let mut sql = format!(
        "DO $$BEGIN CREATE ROLE {g} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$;\n",
        g = quote_ident(GROUP_ROLE)
    );
    sql.push_str(&create("owner", &owner));
    sql.push_str(&create("application", &app));
    // SUPERUSER, REPLICATION and BYPASSRLS only a superuser may set or clear; a server
    // reached as a CREATEROLE role (a Supabase project's `postgres`) creates roles without
    // them and cannot give them
    sql.push_str(&format!(
        "DO $$BEGIN IF {IS_SUPERUSER} THEN \
           ALTER ROLE {app} NOSUPERUSER NOREPLICATION NOBYPASSRLS; \
           ALTER ROLE {owner} NOSUPERUSER NOREPLICATION NOBYPASSRLS; \
         END IF; END$$;\n"
    ));
    sql.push_str(&format!(
        "ALTER ROLE {app} WITH {} NOCREATEDB NOCREATEROLE CONNECTION LIMIT {} PASSWORD {};\n",
        if t.status == "active" && verifier.is_some() {
            "LOGIN"
        } else {
            "NOLOGIN"
        },
        t.limits.connection_limit,
        verifier.map_or("NULL".to_string(), quote_literal)
    ));
    // Settings the role gave itself (any role may ALTER ROLE CURRENT_USER SET ..., also IN
    // DATABASE) go: the role's settings are exactly the tenant's limits.
    sql.push_str(&format!(
        "ALTER ROLE {app} RESET ALL;\nALTER ROLE {app} IN DATABASE {} RESET ALL;\n",
        quote_ident(&t.database_name)
    ));
    if t.is_supabase() {
        // routed statements name the tenant's tables unqualified, as in a provisioned database
        sql.push_str(&format!(
            "ALTER ROLE {app} SET search_path = {};\n",
            quote_ident(&t.schema_name)
        ));
    }
    let setting = |name: &str, value: Option<String>| match value {
        Some(v) => format!("ALTER ROLE {app} SET {name} = {};\n", quote_literal(&v)),
        None => format!("ALTER ROLE {app} RESET {name};\n"),
    };
    sql.push_str(&setting(
        "statement_timeout",
        t.limits.statement_timeout_ms.map(|ms| format!("{ms}ms")),
    ));
    // temp_file_limit is superuser-only (PGC_SUSET): set when this connection may set it (a
    // superuser, or GRANT SET ON PARAMETER temp_file_limit, Postgres 15); otherwise it stays
    // the server's (a CREATEROLE role cannot give it: README "Connector types")
    let temp = setting(
        "temp_file_limit",
        t.limits.temp_file_limit_kb.map(|kb| {
            if kb < 0 {
                "-1".into()
            } else {
                format!("{kb}kB")
            }
        }),
    );
    sql.push_str(&format!(
        "DO $$BEGIN IF {IS_SUPERUSER} \
                    OR pg_catalog.has_parameter_privilege('temp_file_limit', 'SET') THEN \
           EXECUTE {}; \
         END IF; END$$;\n",
        quote_literal(temp.trim_end().trim_end_matches(';'))
    ));
    sql.push_str(&format!(
        "GRANT {} TO {app};\nGRANT CONNECT ON DATABASE {} TO {app};\n",
        quote_ident(GROUP_ROLE),
        quote_ident(&t.database_name)
    ));
    sql
}

/// The rights of the application role inside the tenant's database (one implicit
/// transaction): table and sequence rights, `messiah.jsonb_merge_patch` for merging updates.
/// GRANT takes no lock on the tables, so it never waits for (or queues) the tenant's writers.
///
/// The owner role may create in `public` (migrations run as it: `fleet::migrations`), and
/// what it creates there is readable and writable by the application role (default
/// privileges), as the seed's tables are.
fn grants_script(t: &Tenant) -> String {
    let app = quote_ident(&application_role(t));
    let owner = quote_ident(&t.owner_role);
    format!(
        "GRANT USAGE, CREATE ON SCHEMA public TO {owner};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app};\n\
         GRANT USAGE ON SCHEMA public TO {app};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app};\n\
         GRANT USAGE ON SCHEMA messiah TO {app};\n\
         GRANT EXECUTE ON FUNCTION messiah.jsonb_merge_patch(jsonb, jsonb) TO {app};\n\
         DO $$BEGIN IF pg_catalog.to_regprocedure('messiah.field_snapshot_version()') IS NOT NULL THEN \
           GRANT EXECUTE ON FUNCTION messiah.field_snapshot_version() TO {app}; END IF; END$$;\n"
    )
}

/// Gives the seed's tables, and whatever the template's migrations created (owned by
/// [`MIGRATOR_ROLE`]), to the owner role, only what it does not own yet. `ALTER TABLE
/// OWNER` needs an ACCESS EXCLUSIVE lock; waiting for it would queue every writer of the table
/// behind any transaction that holds a lock on it (the issue-8 stall). So the lock is taken
/// `NOWAIT` (never queued): when a transaction holds the table, the action fails with 55P03
/// and the outbox retries it later. The application role's rights come from GRANTs, not from
/// ownership, so routing works meanwhile.
fn ownership_script(t: &Tenant) -> String {
    let tables = TENANT_TABLES
        .iter()
        .map(|name| quote_literal(name))
        .collect::<Vec<_>>()
        .join(", ");
    let owner = quote_literal(&t.owner_role);
    format!(
        "DO $$DECLARE r record; BEGIN\n\
         FOR r IN SELECT c.oid::pg_catalog.regclass AS rel FROM pg_catalog.pg_class c\n\
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace\n\
           WHERE n.nspname OPERATOR(pg_catalog.=) 'public'\n\
             AND (c.relname OPERATOR(pg_catalog.=) ANY (ARRAY[{tables}]::pg_catalog.name[])\n\
                  OR (c.relowner OPERATOR(pg_catalog.=) pg_catalog.to_regrole({migrator})\n\
                      AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f']::\"char\"[])))\n\
             AND c.relowner OPERATOR(pg_catalog.<>) {owner}::pg_catalog.regrole\n\
         LOOP\n\
           EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', r.rel);\n\
           EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO %I', r.rel, {owner});\n\
         END LOOP;\n\
         IF pg_catalog.to_regrole({migrator}) IS NOT NULL THEN\n\
           EXECUTE pg_catalog.format('REASSIGN OWNED BY %I TO %I', {migrator}, {owner});\n\
         END IF;\n\
         END$$;\n",
        migrator = quote_literal(MIGRATOR_ROLE)
    )
}

/// Locks the application role of a tenant that is gone from the catalog but whose database
/// was kept (`messiah_drop_tenant(keep_database => true)`): NOLOGIN, its sessions ended. The
/// roles stay (the owner role owns the kept tables), marked as the tenant's, so that
/// `messiah_adopt_database` can bring the tenant back with them. A role without this tenant's
/// marker is left alone.
pub fn lock_out(tenant_id: &str, role: &str, server: &Server) -> Result<String, Error> {
    let context = format!("server \"{}\"", server.name);
    let rows = remote::query(
        &server.maintenance(),
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1 \
         AND pg_catalog.shobj_description(oid, 'pg_authid') OPERATOR(pg_catalog.=) $2",
        &[Some(role), Some(&marker("application", tenant_id))],
    )
    .map_err(|e| e.into_error(&context))?;
    if rows.rows.is_empty() {
        return Ok(format!("skipped: no role {role} of tenant {tenant_id}"));
    }
    remote::execute(
        &server.maintenance(),
        &format!("ALTER ROLE {} NOLOGIN", quote_ident(role)),
    )
    .map_err(|e| e.into_error(&context))?;
    end_sessions(&server.maintenance(), role, &context)?;
    Ok(format!(
        "role {role} locked out (the tenant is gone, its database kept)"
    ))
}

/// Ends the sessions of `role` on the server of `maint`, when the server's user may (a
/// superuser, or a member of `pg_signal_backend`, as a Supabase project's `postgres` may be);
/// false when it may not (nothing is ended: the role's NOLOGIN still keeps new sessions out).
fn end_sessions(maint: &remote::Endpoint, role: &str, context: &str) -> Result<bool, Error> {
    let allowed = remote::query(
        maint,
        "SELECT (r.rolsuper OR pg_catalog.pg_has_role('pg_signal_backend', 'MEMBER'))::pg_catalog.text \
         FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER",
        &[],
    )
    .map_err(|e| e.into_error(context))?;
    if allowed.scalar() != Some("true") {
        return Ok(false);
    }
    remote::query(
        maint,
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
         WHERE usename OPERATOR(pg_catalog.=) $1",
        &[Some(role)],
    )
    .map_err(|e| e.into_error(context))?;
    Ok(true)
}

/// Drops the tenant's roles on `server` once its database is gone (the drop action), each
/// only if it carries this tenant's marker. Returns the roles dropped.
pub fn drop_roles(t: &Tenant, server: &Server) -> Result<Vec<String>, Error> {
    let tenant_id = t.tenant_id.as_str();
    let mut dropped = Vec::new();
    for (kind, role) in [
        ("application", application_role(t)),
        ("owner", t.owner_role.clone()),
    ] {
        let role = role.as_str();
        let rows = remote::query(
            &server.maintenance(),
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1 \
             AND pg_catalog.shobj_description(oid, 'pg_authid') OPERATOR(pg_catalog.=) $2",
            &[Some(role), Some(&marker(kind, tenant_id))],
        )
        .map_err(|e| e.into_error(&format!("server \"{}\"", server.name)))?;
        if rows.rows.is_empty() {
            continue;
        }
        remote::execute(
            &server.maintenance(),
            &format!("DROP ROLE IF EXISTS {}", quote_ident(role)),
        )
        .map_err(|e| e.into_error(&format!("server \"{}\"", server.name)))?;
        dropped.push(role.to_string());
    }
    Ok(dropped)
}
