//! The `supabase` connector: a tenant whose tables live in schema `tenant_<id>` of an existing
//! Supabase project's database (the original design's connector type `supabase`).
//!
//! A Supabase project cannot load messiah's library, so the schema has no messiah trigger and
//! no catalog copy: routed inserts and updates are validated by messiah before they are sent
//! (`routing`), and direct writes into the project are not validated. The database belongs to
//! the project: messiah creates and drops only the tenant's schema and roles, never the
//! database, and leaves every other object in it alone.
//!
//! Supabase's REST API (PostgREST) serves the schemas it is configured to expose (`public`,
//! `graphql_public` by default) to the roles `anon` and `authenticated`, and Supabase's
//! default privileges grant those roles everything on new tables in `public`. The tenant's
//! tables are kept out of reach three ways: a schema of their own that is not exposed, no
//! right on it or its tables for anyone but the tenant's roles (rights granted to PUBLIC,
//! `anon`, `authenticated` or `service_role` by default privileges are revoked), and row level
//! security enabled with a policy for the tenant's application role only.
//!
//! Plain Rust: the SQL is built here and run by `roles::apply`.

use crate::ident::{quote_ident, quote_literal};

/// The roles a Supabase project's API uses; whatever default privileges gave them on the
/// tenant's objects is revoked.
pub const API_ROLES: [&str; 3] = ["anon", "authenticated", "service_role"];

/// The marker comment of a tenant's schema: a schema of that name without it belongs to
/// someone else and is never altered or dropped.
pub fn marker(tenant_id: &str) -> String {
    serde_json::json!({"messiah_schema": tenant_id}).to_string()
}

/// The tenant schema's statements (tables and indexes from `sql/tenant_schema.sql`, the one
/// source of the tenant tables), qualified with `schema` and made idempotent; messiah's
/// triggers are left out (the project has no messiah library).
fn tables(schema: &str) -> String {
    let qualified = format!("{}.", quote_ident(schema));
    let text: String = super::provision::TENANT_SCHEMA_SQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(';')
        .map(str::trim)
        .filter(|stmt| stmt.starts_with("CREATE TABLE") || stmt.starts_with("CREATE INDEX"))
        .map(|stmt| {
            stmt.replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
                .replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                .replace("public.", &qualified)
                .replace("gen_random_uuid()", "pg_catalog.gen_random_uuid()")
                .replace("DEFAULT now()", "DEFAULT pg_catalog.now()")
                + ";\n"
        })
        .collect()
}

/// The tables of the tenant schema (as in `sql/tenant_schema.sql`).
pub const TABLES: [&str; 3] = ["clients", "projects", "activities"];

/// The statements that make the tenant's schema in the project's database match what messiah
/// expects (one explicit transaction: a failure leaves the connection in an aborted
/// transaction, which the pool discards; idempotent), run as the server's conninfo user (a
/// superuser, or a role with CREATEROLE like a Supabase project's `postgres`): the schema
/// owned by the owner role, its tables (created as the owner role), an `updated_at` trigger,
/// row level security with a policy for the application role only, and the application
/// role's rights. Fails with 42P06 when a schema of that name exists and is not the tenant's.
pub fn schema_script(tenant_id: &str, schema: &str, owner: &str, app: &str) -> String {
    let s = quote_ident(schema);
    let owner_q = quote_ident(owner);
    let app_q = quote_ident(app);
    let mark = quote_literal(&marker(tenant_id));
    let mut sql = format!(
        "BEGIN;\n\
         GRANT {owner_q} TO CURRENT_USER;\n\
         DO $$BEGIN\n\
           IF EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) {name}\n\
                      AND pg_catalog.obj_description(n.oid, 'pg_namespace') IS DISTINCT FROM {mark}) THEN\n\
             RAISE EXCEPTION 'schema % exists and is not tenant %''s', {name}, {tid}\n\
               USING ERRCODE = 'duplicate_schema',\n\
                     DETAIL = 'messiah marks the schemas it creates with a comment; this one has another.',\n\
                     HINT = 'Rename or drop that schema, then messiah_run_pending().';\n\
           END IF;\n\
         END$$;\n\
         CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {owner_q};\n\
         COMMENT ON SCHEMA {s} IS {mark};\n\
         SET LOCAL ROLE {owner_q};\n",
        name = quote_literal(schema),
        tid = quote_literal(tenant_id),
    );
    sql.push_str(&tables(schema));
    sql.push_str(&format!(
        "CREATE OR REPLACE FUNCTION {s}.touch_updated_at() RETURNS trigger\n\
         LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS\n\
         'BEGIN NEW.updated_at := pg_catalog.now(); RETURN NEW; END';\n"
    ));
    for table in TABLES {
        let t = format!("{s}.{}", quote_ident(table));
        if table != "activities" {
            sql.push_str(&format!(
                "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE ON {t} \
                 FOR EACH ROW EXECUTE FUNCTION {s}.touch_updated_at();\n",
                quote_ident(&format!("{table}_touch"))
            ));
        }
        sql.push_str(&format!(
            "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;\n\
             DROP POLICY IF EXISTS messiah_tenant_access ON {t};\n\
             CREATE POLICY messiah_tenant_access ON {t} TO {app_q} USING (true) WITH CHECK (true);\n"
        ));
    }
    sql.push_str(&format!(
        "RESET ROLE;\n\
         REVOKE ALL ON SCHEMA {s} FROM PUBLIC;\n\
         REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC;\n\
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC;\n\
         REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;\n"
    ));
    for role in API_ROLES {
        sql.push_str(&format!(
            "DO $$BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) {r}) THEN\n\
               EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA %I FROM %I', {name}, {r});\n\
               EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', {name}, {r});\n\
               EXECUTE pg_catalog.format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', {name}, {r});\n\
               EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM %I', {name}, {r});\n\
             END IF; END$$;\n",
            r = quote_literal(role),
            name = quote_literal(schema),
        ));
    }
    sql.push_str(&format!(
        "GRANT USAGE ON SCHEMA {s} TO {app_q};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {app_q};\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {app_q};\n\
         COMMIT;\n"
    ));
    sql
}

/// Whose the schema named `schema` is, on the project's side: the query's one value is
/// `ours`, `foreign` (a schema of that name without the tenant's marker) or `absent`.
pub fn schema_owner_query() -> &'static str {
    "SELECT CASE WHEN n.oid IS NULL THEN 'absent' \
                 WHEN pg_catalog.obj_description(n.oid, 'pg_namespace') OPERATOR(pg_catalog.=) $2 THEN 'ours' \
                 ELSE 'foreign' END \
     FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) $1"
}

/// Drops the tenant's schema (call only when it is the tenant's: [`schema_owner_query`]),
/// never the database, and never anything outside the schema: the tables, then the trigger
/// function, then the schema, each `RESTRICT`. A project object that depends on them (a view,
/// a foreign key, a column of their row type, a function) makes the drop fail with 2BP01
/// naming it, and the action stays queued until the project removes it. Then the
/// application role's privileges granted by the project are revoked (`DROP OWNED`: the role
/// owns nothing) when the connecting user may, so that the role can be dropped.
pub fn drop_script(schema: &str, app: &str) -> String {
    let s = quote_ident(schema);
    let tables = TABLES
        .iter()
        .map(|t| format!("{s}.{}", quote_ident(t)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "BEGIN;\n\
         DROP TABLE IF EXISTS {tables} RESTRICT;\n\
         DROP FUNCTION IF EXISTS {s}.touch_updated_at() RESTRICT;\n\
         DROP SCHEMA {s} RESTRICT;\n\
         DO $$BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) {app_l})\n\
                      AND pg_catalog.pg_has_role({app_l}, 'MEMBER') THEN\n\
             EXECUTE pg_catalog.format('DROP OWNED BY %I', {app_l});\n\
           END IF; END$$;\n\
         COMMIT;\n",
        app_l = quote_literal(app),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_come_from_the_tenant_schema_qualified_and_idempotent() {
        let t = tables("tenant_acme");
        assert_eq!(
            t.matches("CREATE TABLE IF NOT EXISTS \"tenant_acme\".")
                .count(),
            3
        );
        assert!(
            t.contains("CREATE INDEX IF NOT EXISTS clients_email_idx ON \"tenant_acme\".clients")
        );
        assert!(!t.contains("public."));
        assert!(!t.contains("messiah."));
        assert!(!t.contains("TRIGGER"));
    }

    #[test]
    fn the_schema_script_keeps_the_api_roles_out() {
        let s = schema_script("acme", "tenant_acme", "owner_acme", "tenant_acme");
        assert!(s.contains("REVOKE ALL ON SCHEMA \"tenant_acme\" FROM PUBLIC"));
        assert!(s.contains("'authenticated'"));
        assert!(s.contains("ENABLE ROW LEVEL SECURITY"));
        assert!(s.contains("TO \"tenant_acme\" USING (true)"));
    }
}
