//! Who may call the management API (DESIGN.md decision 8). Nothing is executable by PUBLIC
//! (sql/finalize.sql revokes every function of the extension). `messiah_grant_admin(role)`
//! grants the management functions to one role (Supabase: `service_role`) and records it, and
//! every extension version's script re-grants its functions to the recorded roles
//! (`messiah.regrant_admins()`), so functions added in later versions are covered too. The
//! functions that reveal or rotate secrets and the grant functions themselves are never
//! granted this way.

use crate::err::{Code, Error};
use crate::ident::quote_ident;
use crate::shim::required;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Exposed functions that `messiah_grant_admin` does not grant.
pub const NOT_GRANTED: [&str; 4] = [
    "messiah_get_secret",
    "messiah_rotate_key",
    "messiah_grant_admin",
    "messiah_revoke_admin",
];

/// The exposed functions (extension members named messiah_* in the extension's schema), as
/// regprocedure text, with their names.
pub fn exposed_functions() -> Vec<(String, String)> {
    crate::spi::text_rows(
        "SELECT p.oid::regprocedure::text, p.proname::text FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid \
              AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah' \
         WHERE p.pronamespace = e.extnamespace AND p.proname LIKE 'messiah\\_%' ORDER BY 2",
        &[],
        2,
    )
    .into_iter()
    .map(|r| {
        let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        (t(0), t(1))
    })
    .collect()
}

fn apply(role: &str, grant: bool) -> Vec<String> {
    let schema = crate::spi::one::<String>(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'messiah'",
        &[],
    )
    .unwrap_or_else(|| "public".into());
    let (verb, prep) = if grant {
        ("GRANT", "TO")
    } else {
        ("REVOKE", "FROM")
    };
    if schema != "public" {
        crate::spi::run(
            &format!(
                "{verb} USAGE ON SCHEMA {} {prep} {}",
                quote_ident(&schema),
                quote_ident(role)
            ),
            &[],
        );
    }
    let mut out = Vec::new();
    for (signature, name) in exposed_functions() {
        if NOT_GRANTED.contains(&name.as_str()) {
            continue;
        }
        crate::spi::run(
            &format!(
                "{verb} EXECUTE ON FUNCTION {signature} {prep} {}",
                quote_ident(role)
            ),
            &[],
        );
        out.push(name);
    }
    out
}

fn existing_role(role: Option<&str>) -> String {
    let role = required("role", role);
    let exists = crate::spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[role.into()],
    )
    .unwrap_or(false);
    if !exists {
        Error::new(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{role}\" does not exist"),
        )
        .raise();
    }
    role.to_string()
}

/// Grants the management API to `role` (for Supabase: `service_role`), now and in every later
/// version of messiah: EXECUTE on every messiah_* function except messiah_get_secret,
/// messiah_rotate_key and the grant functions. Returns `{"role", "functions": [...]}`.
/// Errors: 22004, 42704 no such role. Only the extension's owner (a superuser) can call it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_grant_admin(role: Option<&str>) -> JsonB {
    let role = existing_role(role);
    crate::spi::run(
        "INSERT INTO messiah.admin_roles (role_name) VALUES ($1) ON CONFLICT DO NOTHING",
        &[role.as_str().into()],
    );
    let functions = apply(&role, true);
    JsonB(serde_json::json!({"role": role, "functions": functions}))
}

/// Revokes what `messiah_grant_admin` granted to `role` and forgets it. Returns
/// `{"role", "functions": [...]}`. Errors: 22004, 42704 no such role.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_revoke_admin(role: Option<&str>) -> JsonB {
    let role = existing_role(role);
    crate::spi::run(
        "DELETE FROM messiah.admin_roles WHERE role_name = $1",
        &[role.as_str().into()],
    );
    let functions = apply(&role, false);
    JsonB(serde_json::json!({"role": role, "functions": functions}))
}

#[pg_schema]
mod messiah {
    use pgrx::prelude::*;

    /// Internal, run by every extension script (install and upgrade): re-grants the
    /// management functions to the roles recorded by messiah_grant_admin (roles dropped since
    /// are forgotten). Returns the number of roles.
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn regrant_admins() -> i64 {
        crate::spi::run(
            "DELETE FROM messiah.admin_roles a WHERE NOT EXISTS \
             (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = a.role_name)",
            &[],
        );
        let roles = crate::spi::column::<String>(
            "SELECT role_name::text FROM messiah.admin_roles ORDER BY 1",
            &[],
        );
        for r in &roles {
            super::apply(r, true);
        }
        roles.len() as i64
    }
}
