//! The Supabase RPC contract (issue "Security" section 6): every exposed function called the
//! way PostgREST calls it (`POST /rpc/<name>` with a JSON object of named arguments: the body
//! is bound as one parameter, each argument cast from its JSON value to the parameter's type
//! by `json_to_record`, the function called in named notation inside a transaction after
//! `SET LOCAL ROLE`), as each of Supabase's roles; and the OpenAPI description generated from
//! the functions, checked with a well-kept validator.

use crate::common::*;
use postgres::Client;
use serde_json::{json, Value};

/// One exposed function: name, input (name, type) pairs, returns a set.
struct Function {
    name: String,
    inputs: Vec<(String, String)>,
    set: bool,
    /// Returns rows with columns (RETURNS TABLE), not scalars.
    table: bool,
}

fn functions(c: &mut Client) -> Vec<Function> {
    c.query(
        "SELECT p.proname::text, p.proretset, p.proallargtypes IS NOT NULL, \
                coalesce((SELECT json_agg(json_build_array(p.proargnames[o], format_type(t, NULL)) ORDER BY o) \
                          FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, o))::text, '[]') \
         FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e' \
         JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah' \
         WHERE p.pronamespace = e.extnamespace AND p.proname LIKE 'messiah\\_%' ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let args: Vec<Vec<String>> = serde_json::from_str(&r.get::<_, String>(3)).unwrap();
        Function {
            name: r.get(0),
            set: r.get(1),
            table: r.get(2),
            inputs: args.into_iter().map(|a| (a[0].clone(), a[1].clone())).collect(),
        }
    })
    .collect()
}

/// Calls `f` as PostgREST does for `POST /rpc/f` with JSON `body`, as `role`; returns the
/// response body PostgREST would send (a JSON value; an array for set-returning functions).
fn rpc(c: &mut Client, role: &str, f: &Function, body: &Value) -> Result<Value, postgres::Error> {
    let given: Vec<&(String, String)> = f
        .inputs
        .iter()
        .filter(|(n, _)| body.get(n).is_some())
        .collect();
    let columns = given
        .iter()
        .map(|(n, t)| format!("\"{n}\" {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    let names = given
        .iter()
        .map(|(n, _)| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let call_args = given
        .iter()
        .map(|(n, _)| format!("\"{n}\" := pgrst_args.\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let args_source = if given.is_empty() {
        "(SELECT 1) pgrst_args".to_string()
    } else {
        format!(
            "LATERAL (SELECT {names} FROM json_to_record(pgrst_payload.json_data) AS _({columns}) LIMIT 1) pgrst_args"
        )
    };
    let (call, body_expr) = if f.table {
        (
            format!(
                "LATERAL (SELECT * FROM \"public\".\"{}\"({call_args})) pgrst_call",
                f.name
            ),
            "coalesce(json_agg(_postgrest_t), '[]')::text",
        )
    } else if f.set {
        (
            format!(
                "LATERAL (SELECT \"public\".\"{}\"({call_args}) pgrst_scalar) pgrst_call",
                f.name
            ),
            "coalesce(json_agg(_postgrest_t.pgrst_scalar), '[]')::text",
        )
    } else {
        (
            format!(
                "LATERAL (SELECT \"public\".\"{}\"({call_args}) pgrst_scalar) pgrst_call",
                f.name
            ),
            "coalesce((json_agg(_postgrest_t.pgrst_scalar)->0)::text, 'null')",
        )
    };
    let sql = format!(
        "WITH pgrst_source AS (SELECT pgrst_call.* FROM (SELECT $1::text::json AS json_data) pgrst_payload, \
         {args_source}, {call}) \
         SELECT {body_expr} AS body FROM (SELECT pgrst_source.* FROM pgrst_source) _postgrest_t"
    );
    let mut tx = c.transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE {role}; SELECT set_config('request.jwt.claims', '{{\"role\": \"{role}\"}}', true)"
    ))?;
    let body_text = body.to_string();
    let r = tx.query_one(&sql, &[&body_text])?;
    let out: String = r.get(0);
    tx.commit()?;
    Ok(serde_json::from_str(&out).unwrap())
}

/// A body giving every argument of `f` a value of its type (the call then resolves, and only
/// the privilege check can refuse it).
fn full_body(f: &Function) -> Value {
    let mut m = serde_json::Map::new();
    for (n, t) in &f.inputs {
        let v = match t.as_str() {
            "boolean" => json!(false),
            "integer" | "bigint" => json!(1),
            "jsonb" => json!({}),
            _ => json!("x"),
        };
        m.insert(n.clone(), v);
    }
    Value::Object(m)
}

fn setup_supabase_roles(c: &mut Client) {
    c.batch_execute(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF; \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF; \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF; \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN CREATE ROLE authenticator LOGIN NOINHERIT; END IF; \
         END $$; \
         GRANT anon, authenticated, service_role TO authenticator",
    )
    .unwrap();
}

fn authenticator(db: &str) -> Client {
    let (host, port) = host_port();
    Client::connect(
        &format!("host={host} port={port} user=authenticator dbname={db}"),
        postgres::NoTls,
    )
    .unwrap()
}

#[test]
fn postgrest_calls_as_each_supabase_role() {
    let db = "messiah_it_rpc";
    for t in ["it_rpc", "it_rpc_b"] {
        drop_db(&format!("tenant_{t}"));
    }
    let mut admin = admin_db(db);
    setup_supabase_roles(&mut admin);
    let fs = functions(&mut admin);
    assert!(fs.len() >= 25, "{} functions", fs.len());
    // one signature per name: PostgREST cannot choose between overloads
    let mut names: Vec<&str> = fs.iter().map(|f| f.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len(), fs.len());
    let mut pgrst = authenticator(db);
    // anon and authenticated reach nothing; service_role nothing before the grant
    for role in ["anon", "authenticated", "service_role"] {
        for f in &fs {
            let e = rpc(&mut pgrst, role, f, &full_body(f)).expect_err(&f.name);
            assert_eq!(sqlstate(&e), "42501", "{role} calling {}: {e}", f.name);
        }
        for table in [
            "tenants",
            "tenant_supabase_configs",
            "extension_field_definitions",
            "servers",
            "outbox",
            "installation",
            "detached_databases",
            "admin_roles",
        ] {
            let mut tx = pgrst.transaction().unwrap();
            tx.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
            let e = tx
                .batch_execute(&format!("SELECT * FROM messiah.{table}"))
                .expect_err(table);
            assert_eq!(sqlstate(&e), "42501", "{role} reading messiah.{table}");
        }
    }
    // the documented one-line grant
    let granted = json(&mut admin, "messiah_grant_admin('service_role')");
    assert_eq!(granted["role"], "service_role");
    let by_name = |n: &str| fs.iter().find(|f| f.name == n).unwrap();
    let created = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_create_tenant"),
        &json!({"tenant_id": "it_rpc", "name": "Via RPC", "slug": "it-rpc",
                "settings": {"plan": "gold"}, "contact_email": "ops@rpc.test"}),
    )
    .unwrap();
    assert_eq!(created["tenant_id"], "it_rpc", "{created}");
    assert_eq!(created["database"], "tenant_it_rpc");
    assert_eq!(created["settings"], json!({"plan": "gold"}));
    assert!(
        db_exists("tenant_it_rpc"),
        "created at the request's COMMIT"
    );
    let listed = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_list_tenants"),
        &json!({"limit": 10}),
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["tenant_id"], "it_rpc");
    let field = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_define_field"),
        &json!({"tenant_id": "it_rpc", "entity_table": "clients", "field_name": "score",
                "field_type": "number", "display_name": "Score", "validation_rules": {"min": 0}}),
    )
    .unwrap();
    assert_eq!(field["field_name"], "score");
    let errors = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_validate_custom_fields"),
        &json!({"tenant_id": "it_rpc", "entity_table": "clients", "custom_fields": {"score": -1}}),
    )
    .unwrap();
    assert_eq!(
        errors,
        json!([{"field": "score", "code": "minimum", "message": "\"score\" must be >= 0, got -1"}])
    );
    let drift = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_reconcile"),
        &json!({}),
    )
    .unwrap();
    assert!(drift.is_array());
    let openapi = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_openapi"),
        &json!({}),
    )
    .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    // errors come back with their SQLSTATE (PostgREST puts it in "code")
    let e = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_create_tenant"),
        &json!({"tenant_id": "it_rpc", "name": "Again", "slug": "it-rpc-2"}),
    )
    .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    // secrets stay out of reach of the granted role
    for n in [
        "messiah_get_secret",
        "messiah_rotate_key",
        "messiah_grant_admin",
        "messiah_revoke_admin",
    ] {
        let e = rpc(
            &mut pgrst,
            "service_role",
            by_name(n),
            &full_body(by_name(n)),
        )
        .expect_err(n);
        assert_eq!(sqlstate(&e), "42501", "{n}");
    }
    let dropped = rpc(
        &mut pgrst,
        "service_role",
        by_name("messiah_drop_tenant"),
        &json!({"tenant_id": "it_rpc"}),
    )
    .unwrap();
    assert_eq!(
        dropped,
        json!({"tenant_id": "it_rpc", "database": "tenant_it_rpc", "database_kept": false})
    );
    settle(&mut admin);
    assert!(!db_exists("tenant_it_rpc"));
    // still nothing for anon after the grant
    let e = rpc(
        &mut pgrst,
        "anon",
        by_name("messiah_list_tenants"),
        &full_body(by_name("messiah_list_tenants")),
    )
    .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    admin
        .batch_execute("SELECT messiah_revoke_admin('service_role')")
        .unwrap();
}

/// messiah_openapi() is a valid OpenAPI 3.1 document (checked by Python's
/// openapi-spec-validator, which `make test` installs) listing every exposed function with
/// its arguments, required ones, and descriptions from the COMMENTs.
#[test]
fn openapi_document_is_valid_and_complete() {
    let mut admin = admin_db("messiah_it_openapi");
    let doc = json(&mut admin, "messiah_openapi()");
    let path = "/tmp/messiah-it-openapi.json";
    std::fs::write(path, doc.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; \
             validate(json.load(open(sys.argv[1]))); print('valid')",
            path,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "valid",
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let fs = functions(&mut admin);
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), fs.len());
    for f in &fs {
        let op = &paths[&format!("/rpc/{}", f.name)]["post"];
        assert_eq!(op["operationId"], json!(f.name));
        let props = op["requestBody"]["content"]["application/json"]["schema"]["properties"]
            .as_object()
            .unwrap();
        let mut expected: Vec<&str> = f.inputs.iter().map(|(n, _)| n.as_str()).collect();
        expected.sort();
        let mut got: Vec<&str> = props.keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, expected, "{}", f.name);
        assert!(
            op["description"].as_str().unwrap_or("").len() > 20,
            "{} has no COMMENT",
            f.name
        );
    }
    let create = &paths["/rpc/messiah_create_tenant"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_eq!(create["required"], json!(["tenant_id", "name", "slug"]));
    assert_eq!(create["properties"]["settings"], json!({}));
    assert_eq!(create["properties"]["name"], json!({"type": "string"}));
    let list = &paths["/rpc/messiah_list_tenants"]["post"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert_eq!(list["type"], "array");
    let reconcile = &paths["/rpc/messiah_reconcile"]["post"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert_eq!(
        reconcile["items"]["properties"]["kind"],
        json!({"type": "string"})
    );
}
