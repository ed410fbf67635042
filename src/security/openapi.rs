//! The OpenAPI description of the RPC surface (the original design lists it as a next step),
//! generated from the functions themselves: names, argument names and types, which arguments
//! are required (those without a default), return shapes, and descriptions from the SQL
//! COMMENTs. Requests are described as PostgREST builds them: `POST /rpc/<function>` with a
//! JSON object of named arguments; a set-returning function answers with a JSON array.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

/// JSON Schema of a Postgres type as PostgREST renders it in JSON.
pub fn json_schema(pg_type: &str) -> Value {
    match pg_type {
        "text" | "name" | "character varying" => json!({"type": "string"}),
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "timestamp with time zone" => json!({"type": "string", "format": "date-time"}),
        "boolean" => json!({"type": "boolean"}),
        "integer" => json!({"type": "integer", "format": "int32"}),
        "bigint" => json!({"type": "integer", "format": "int64"}),
        "double precision" | "numeric" => json!({"type": "number"}),
        "jsonb" | "json" => json!({}),
        "interval" => json!({"type": "string", "format": "duration"}),
        other => json!({"type": "string", "description": format!("Postgres type {other}")}),
    }
}

/// One function as pg_proc describes it.
struct Function {
    name: String,
    returns_set: bool,
    return_type: String,
    comment: String,
    /// (name, type, mode) of every argument, IN and OUT.
    args: Vec<(String, String, String)>,
    defaults: usize,
}

fn functions() -> Vec<Function> {
    let rows = crate::spi::text_rows(
        "SELECT p.proname::text, p.proretset::text, pg_catalog.format_type(p.prorettype, NULL), \
                coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), ''), p.pronargdefaults::text, \
                (SELECT pg_catalog.json_agg(pg_catalog.json_build_array( \
                        coalesce(p.proargnames[o], ''), pg_catalog.format_type(t, NULL), \
                        coalesce(p.proargmodes[o], 'i')) ORDER BY o) \
                 FROM pg_catalog.unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS u(t, o))::text \
         FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid \
              AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'messiah' \
         WHERE p.pronamespace = e.extnamespace AND p.proname LIKE 'messiah\\_%' ORDER BY 1",
        &[],
        6,
    );
    rows.into_iter()
        .map(|r| {
            let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let args: Vec<Value> = serde_json::from_str(&t(5)).unwrap_or_default();
            Function {
                name: t(0),
                returns_set: t(1) == "true",
                return_type: t(2),
                comment: t(3),
                defaults: t(4).parse().unwrap_or(0),
                args: args
                    .iter()
                    .map(|a| {
                        let s =
                            |i: usize| a.get(i).and_then(|v| v.as_str()).unwrap_or("").to_string();
                        (s(0), s(1), s(2))
                    })
                    .collect(),
            }
        })
        .collect()
}

fn operation(f: &Function) -> Value {
    let inputs: Vec<&(String, String, String)> =
        f.args.iter().filter(|a| a.2 == "i" || a.2 == "b").collect();
    let outputs: Vec<&(String, String, String)> = f
        .args
        .iter()
        .filter(|a| a.2 == "o" || a.2 == "t" || a.2 == "b")
        .collect();
    let mut properties = Map::new();
    for (name, ty, _) in &inputs {
        properties.insert(name.clone(), json_schema(ty));
    }
    let required: Vec<&String> = inputs
        .iter()
        .take(inputs.len().saturating_sub(f.defaults))
        .map(|a| &a.0)
        .collect();
    let item = if outputs.is_empty() {
        json_schema(&f.return_type)
    } else {
        let mut cols = Map::new();
        for (name, ty, _) in &outputs {
            cols.insert(name.clone(), json_schema(ty));
        }
        json!({"type": "object", "properties": cols})
    };
    let result = if f.returns_set {
        json!({"type": "array", "items": item})
    } else if f.return_type == "void" {
        json!({"type": "null"})
    } else {
        item
    };
    let summary = f
        .comment
        .split(". ")
        .next()
        .unwrap_or("")
        .chars()
        .take(120)
        .collect::<String>();
    json!({
        "post": {
            "operationId": f.name,
            "summary": summary,
            "description": f.comment,
            "requestBody": {
                "required": !required.is_empty(),
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                }}}
            },
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": result}}},
                "default": {"description": "An error: PostgREST's {\"code\", \"message\", \"details\", \"hint\"} with the SQLSTATE in code", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        }
    })
}

/// Returns an OpenAPI 3.1 document (jsonb) describing `POST /rpc/<name>` for every exposed
/// messiah_* function, as PostgREST serves them: argument names and JSON types, required
/// arguments (those without a default), return shapes (set-returning functions answer with an
/// array), and descriptions from the functions' COMMENTs.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_openapi() -> JsonB {
    let mut paths = Map::new();
    for f in functions() {
        paths.insert(format!("/rpc/{}", f.name), operation(&f));
    }
    JsonB(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "messiah",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-tenant control plane in PostgreSQL, called through PostgREST / Supabase RPC: POST /rpc/<function> with a JSON object of named arguments.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "SQLSTATE"},
                "message": {"type": "string"},
                "details": {"type": ["string", "null"]},
                "hint": {"type": ["string", "null"]},
            },
        }}},
    }))
}
