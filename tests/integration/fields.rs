//! Extension fields (DESIGN.md decisions 5 and 6) across databases and sessions: definition-time
//! errors, enforcement by the tenant database's own trigger on direct writes, visibility of
//! committed (and invisibility of rolled-back) definition changes to already-open sessions,
//! validation while the admin database (or its whole server) is unreachable,
//! messiah_check_existing, messiah_apply_fields, field indexes and messiah_drop_field.

use crate::common::*;
use postgres::Client;
use serde_json::{json, Value};

/// A fresh admin database `messiah_it_<admin>` with tenant `tenant` created (committed, so its
/// database exists), after dropping a leftover `tenant_<tenant>` of an earlier run.
fn setup(admin: &str, tenant: &str) -> Client {
    drop_db(&format!("tenant_{tenant}"));
    let mut c = admin_db(&format!("messiah_it_{admin}"));
    c.execute(
        "SELECT messiah_create_tenant($1, $2, $3)",
        &[
            &tenant,
            &format!("Fields {tenant}"),
            &tenant.replace('_', "-"),
        ],
    )
    .unwrap();
    assert!(db_exists(&format!("tenant_{tenant}")));
    c
}

/// Drops the tenant (its database goes at COMMIT, open sessions are disconnected).
fn teardown(admin: &mut Client, tenant: &str) {
    admin
        .execute("SELECT messiah_drop_tenant($1)", &[&tenant])
        .unwrap();
    settle(admin);
    assert!(!db_exists(&format!("tenant_{tenant}")));
}

/// A session on the tenant's own database, as an app writing directly would have.
fn tenant_session(tenant: &str) -> Client {
    connect_retry(&format!("tenant_{tenant}"))
}

/// `messiah_define_field(tenant, entity, <rest>)` in autocommit; `rest` is SQL argument text.
fn define(c: &mut Client, tenant: &str, entity: &str, rest: &str) {
    c.batch_execute(&format!(
        "SELECT messiah_define_field('{tenant}', '{entity}', {rest})"
    ))
    .unwrap_or_else(|e| panic!("defining {rest}: {}", message(&e)));
    settle(c);
}

/// SQLSTATE, message and DETAIL of an error.
fn parts(e: &postgres::Error) -> (String, String, Option<String>) {
    (
        sqlstate(e),
        message(e),
        e.as_db_error().and_then(|d| d.detail()).map(str::to_string),
    )
}

/// Inserts a client with `custom_fields` (SQL text, e.g. `'{"a": 1}'` or `NULL`) and returns
/// the stored custom_fields.
fn insert(t: &mut Client, cf: &str) -> Result<Value, postgres::Error> {
    t.query_one(
        &format!(
            "INSERT INTO public.clients (name, custom_fields) VALUES ('c', {cf}) RETURNING custom_fields::text"
        ),
        &[],
    )
    .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
}

/// Inserts a client with a JSON document (as a bind parameter) and returns the stored
/// custom_fields.
fn insert_doc(t: &mut Client, doc: &Value) -> Result<Value, postgres::Error> {
    insert(t, &sql_literal(&doc.to_string()))
}

fn sql_literal(s: &str) -> String {
    format!("'{}'::jsonb", s.replace('\'', "''"))
}

/// The 23514 rejection of a client insert: (message, DETAIL).
fn rejected(t: &mut Client, doc: &Value) -> (String, String) {
    match insert_doc(t, doc) {
        Ok(v) => panic!("insert of {doc} was accepted, stored {v}"),
        Err(e) => {
            let (code, msg, detail) = parts(&e);
            assert_eq!(code, "23514", "{doc}: {msg}");
            (msg, detail.unwrap_or_default())
        }
    }
}

fn violates(n: usize) -> String {
    format!(
        "new row for relation \"clients\" violates {n} custom field rule{}",
        if n == 1 { "" } else { "s" }
    )
}

/// messiah_validate_custom_fields(tenant, 'clients', doc) as a JSON value.
fn validate(c: &mut Client, tenant: &str, doc: &Value) -> Value {
    let s: String = c
        .query_one(
            "SELECT messiah_validate_custom_fields($1, 'clients', $2::text::jsonb)::text",
            &[&tenant, &doc.to_string()],
        )
        .unwrap()
        .get(0);
    serde_json::from_str(&s).unwrap()
}

/// The installed snapshot version of the tenant database `t` is connected to.
fn snapshot_version(t: &mut Client) -> i64 {
    t.query_one("SELECT version FROM messiah.field_snapshot", &[])
        .unwrap()
        .get(0)
}

fn e(field: &str, code: &str, message: &str) -> Value {
    json!({"field": field, "code": code, "message": message})
}

// ---------------------------------------------------------------------------------------------
// 1. definition-time errors

#[test]
fn definition_errors_are_22023_naming_the_field() {
    let t = "it_f_defs_a";
    let mut c = setup("f_defs", t);
    let cases: &[(&str, &str)] = &[
        (
            "'code', 'text', 'Code', validation_rules => '{\"minLenght\": 3}'",
            "field \"code\": unknown rule \"minLenght\" for type text (allowed: minLength, maxLength, pattern, format)",
        ),
        (
            "'code', 'text', 'Code', validation_rules => '{\"pattern\": \"(\"}'",
            "field \"code\": rule \"pattern\" is not a valid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group",
        ),
        (
            "'kind', 'select', 'Kind', validation_rules => '{\"options\": []}'",
            "field \"kind\": rule \"options\" must be a non-empty array of strings, got []",
        ),
        (
            "'kind', 'select', 'Kind', validation_rules => '{\"options\": [\"a\", \"b\", \"a\"]}'",
            "field \"kind\": rule \"options\" contains \"a\" more than once",
        ),
        (
            "'total', 'number', 'Total', default_value => 'abc'",
            "field \"total\": default value \"abc\" is not a JSON number",
        ),
        (
            "'total', 'number', 'Total', default_value => '1', validation_rules => '{\"min\": 5}'",
            "field \"total\": default value \"1\" is invalid: \"total\" must be >= 5, got 1",
        ),
        (
            "'Total', 'number', 'Total'",
            "field \"Total\": invalid field name \"Total\": must match ^[a-z][a-z0-9_]*$",
        ),
        (
            "'1total', 'number', 'Total'",
            "field \"1total\": invalid field name \"1total\": must match ^[a-z][a-z0-9_]*$",
        ),
        (
            "'email', 'text', 'E-mail'",
            "field \"email\": \"email\" is a base column of clients",
        ),
        (
            "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'text', 'Long'",
            "field \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": field name is 41 bytes long, at most 40 allowed",
        ),
        (
            "'born', 'date', 'Born', validation_rules => '{\"min\": \"2024-02-30\"}'",
            "field \"born\": rule \"min\" must be a calendar date string YYYY-MM-DD, got \"2024-02-30\"",
        ),
        (
            "'site', 'text', 'Site', validation_rules => '{\"format\": \"url\"}'",
            "field \"site\": rule \"format\" must be one of \"email\", \"uri\", \"uuid\", got \"url\"",
        ),
    ];
    for (args, want) in cases {
        let err = fails(
            &mut c,
            &format!("SELECT messiah_define_field('{t}', 'clients', {args})"),
        );
        let (code, msg, _) = parts(&err);
        assert_eq!((code.as_str(), msg.as_str()), ("22023", *want), "{args}");
    }
    // exactly 40 bytes is allowed
    define(
        &mut c,
        t,
        "clients",
        "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'text', 'Forty', is_filterable => false",
    );
    // unknown entity table: 22023, the entity table named, the choices in DETAIL
    let err = fails(
        &mut c,
        &format!("SELECT messiah_define_field('{t}', 'invoices', 'amount', 'number', 'Amount')"),
    );
    assert_eq!(
        parts(&err),
        (
            "22023".into(),
            "\"invoices\" is not an entity table".into(),
            Some("Entity tables: clients, projects, activities.".into())
        )
    );
    // unknown tenant: 42704
    let err = fails(
        &mut c,
        "SELECT messiah_define_field('it_f_defs_nosuch', 'clients', 'x', 'text', 'X')",
    );
    assert_eq!(sqlstate(&err), "42704");
    assert_eq!(message(&err), "tenant \"it_f_defs_nosuch\" does not exist");
    // none of the failed calls wrote anything: only the 40-byte field exists
    let names: Vec<String> = c
        .query(
            "SELECT f ->> 'field_name' FROM messiah_list_fields($1) f",
            &[&t],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, vec!["a".repeat(40)]);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// 2. enforcement in the tenant database by direct writes

#[test]
fn tenant_database_enforces_every_type_on_direct_writes() {
    let t = "it_f_enf_a";
    let mut c = setup("f_enf", t);
    for rest in [
        "'code', 'text', 'Code', validation_rules => '{\"maxLength\": 3}'",
        "'mail', 'text', 'Mail', validation_rules => '{\"format\": \"email\"}'",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 100}'",
        "'big', 'number', 'Big'",
        "'vip', 'boolean', 'VIP'",
        "'born', 'date', 'Born'",
        "'meta', 'json', 'Meta', validation_rules => '{\"schema\": {\"type\": \"object\", \"required\": [\"a\"]}}'",
        "'tier', 'select', 'Tier', validation_rules => '{\"options\": [\"gold\", \"silver\"]}'",
        "'tags', 'select', 'Tags', validation_rules => '{\"options\": [\"a\", \"b\"], \"multiple\": true}'",
    ] {
        define(&mut c, t, "clients", rest);
    }
    let mut s = tenant_session(t);
    // one valid value per type is stored as given
    for doc in [
        json!({"code": "São"}), // 3 code points, 4 bytes
        json!({"mail": "ann@example.com"}),
        json!({"total": 100}),
        json!({"total": -2.5}),
        json!({"vip": false}),
        json!({"born": "2024-02-29"}),
        json!({"meta": {"a": [1, {"b": null}]}}),
        json!({"tier": "gold"}),
        json!({"tags": ["b", "a"]}),
        json!({"tags": []}),
        json!({}),
    ] {
        assert_eq!(insert_doc(&mut s, &doc).unwrap(), doc);
    }
    // one invalid value per type (and the coercions that must not happen)
    let invalid: &[(Value, &str)] = &[
        (
            json!({"code": "Sãoo"}),
            "\"code\" must be at most 3 characters, got 4 (max_length)",
        ),
        (
            json!({"code": 5}),
            "\"code\" must be a string, got number (type)",
        ),
        (
            json!({"mail": "ann.example.com"}),
            "\"mail\" is not a valid email (format)",
        ),
        (
            json!({"total": "5"}),
            "\"total\" must be a number, got string (type)",
        ),
        (
            json!({"total": 101}),
            "\"total\" must be <= 100, got 101 (maximum)",
        ),
        (
            json!({"vip": 1}),
            "\"vip\" must be a boolean, got number (type)",
        ),
        (
            json!({"vip": "true"}),
            "\"vip\" must be a boolean, got string (type)",
        ),
        (
            json!({"born": "2023-02-29"}),
            "\"born\" is not a calendar date (YYYY-MM-DD): \"2023-02-29\" (date)",
        ),
        (
            json!({"born": "2024-2-29"}),
            "\"born\" is not a calendar date (YYYY-MM-DD): \"2024-2-29\" (date)",
        ),
        (
            json!({"meta": {"b": 1}}),
            "\"meta\" does not match its schema: \"a\" is a required property at (root) (schema)",
        ),
        (
            json!({"tier": "bronze"}),
            "\"tier\" must be one of [\"gold\", \"silver\"], got \"bronze\" (option)",
        ),
        (
            json!({"tags": ["a", "a"]}),
            "\"tags\" contains \"a\" more than once (duplicate)",
        ),
        (
            json!({"tags": "a"}),
            "\"tags\" must be an array, got string (type)",
        ),
        (
            json!({"other": 1}),
            "\"other\" is not a defined field of clients (unknown_field)",
        ),
    ];
    for (doc, detail) in invalid {
        assert_eq!(
            rejected(&mut s, doc),
            (violates(1), detail.to_string()),
            "{doc}"
        );
    }
    // custom_fields must be an object
    let err = insert(&mut s, "'[1, 2]'").unwrap_err();
    assert_eq!(
        parts(&err),
        (
            "23514".into(),
            violates(1),
            Some("custom_fields must be a JSON object, got array (not_object)".into())
        )
    );
    // a number beyond f64: rejected by max 100 (message echoes it), stored exactly without max
    let big = json!({"total": serde_json::Number::from_string_unchecked("1e400".into())});
    assert_eq!(
        rejected(&mut s, &big),
        (
            violates(1),
            "\"total\" must be <= 100, got 1e400 (maximum)".into()
        )
    );
    let stored: String = s
        .query_one(
            "INSERT INTO public.clients (name, custom_fields) VALUES ('big', '{\"big\": 1e400}') \
             RETURNING custom_fields ->> 'big'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, format!("1{}", "0".repeat(400)));
    let exact: bool = s
        .query_one(
            "SELECT (custom_fields -> 'big')::numeric = 1e400::numeric FROM public.clients WHERE name = 'big'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(exact);
    // every error is collected: DETAIL lists every failing field, sorted by field
    let all = json!({"code": "Sãoo1", "mail": "x", "total": "5", "vip": 1, "born": "2023-02-29",
                     "meta": {"b": 1}, "tier": "bronze", "tags": ["a", "a", "c"], "zzz": true});
    let expected = json!([
        e(
            "born",
            "date",
            "\"born\" is not a calendar date (YYYY-MM-DD): \"2023-02-29\""
        ),
        e(
            "code",
            "max_length",
            "\"code\" must be at most 3 characters, got 5"
        ),
        e("mail", "format", "\"mail\" is not a valid email"),
        e(
            "meta",
            "schema",
            "\"meta\" does not match its schema: \"a\" is a required property at (root)"
        ),
        e(
            "tags",
            "duplicate",
            "\"tags\" contains \"a\" more than once"
        ),
        e(
            "tags",
            "option",
            "\"tags\" must be one of [\"a\", \"b\"], got \"c\""
        ),
        e(
            "tier",
            "option",
            "\"tier\" must be one of [\"gold\", \"silver\"], got \"bronze\""
        ),
        e("total", "type", "\"total\" must be a number, got string"),
        e("vip", "type", "\"vip\" must be a boolean, got number"),
        e(
            "zzz",
            "unknown_field",
            "\"zzz\" is not a defined field of clients"
        ),
    ]);
    let detail = expected
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{} ({})",
                x["message"].as_str().unwrap(),
                x["code"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(rejected(&mut s, &all), (violates(10), detail));
    // the admin-side function returns the same errors as a JSON array
    assert_eq!(validate(&mut c, t, &all), expected);
    assert_eq!(
        validate(&mut c, t, &json!({"code": "São", "big": 1})),
        json!([])
    );
    // nothing invalid was stored: 11 valid rows + the big one
    let n: i64 = s
        .query_one("SELECT count(*) FROM public.clients", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 12);
    drop(s);
    teardown(&mut c, t);
}

#[test]
fn required_defaults_null_and_updates() {
    let t = "it_f_req_a";
    let mut c = setup("f_req", t);
    define(
        &mut c,
        t,
        "clients",
        "'tier', 'select', 'Tier', is_required => true, default_value => 'silver', \
         validation_rules => '{\"options\": [\"gold\", \"silver\"]}'",
    );
    define(
        &mut c,
        t,
        "clients",
        "'level', 'number', 'Level', is_required => true",
    );
    define(&mut c, t, "clients", "'note', 'text', 'Note'");
    define(
        &mut c,
        t,
        "projects",
        "'stage', 'text', 'Stage', default_value => 'new'",
    );
    let mut s = tenant_session(t);
    // missing key with a default: the default is applied on INSERT
    assert_eq!(
        insert_doc(&mut s, &json!({"level": 1})).unwrap(),
        json!({"level": 1, "tier": "silver"})
    );
    // explicit null on a required field is an error, even with a default
    assert_eq!(
        rejected(&mut s, &json!({"level": 1, "tier": null})),
        (violates(1), "\"tier\" is required (required)".into())
    );
    // explicit null on an optional field means "no value"
    assert_eq!(
        insert_doc(&mut s, &json!({"level": 1, "note": null})).unwrap(),
        json!({"level": 1, "note": null, "tier": "silver"})
    );
    // missing required field without a default
    assert_eq!(
        rejected(&mut s, &json!({})),
        (violates(1), "\"level\" is required (required)".into())
    );
    // custom_fields NULL: defaults apply, required fields without default still fail
    let err = insert(&mut s, "NULL").unwrap_err();
    assert_eq!(
        parts(&err),
        (
            "23514".into(),
            violates(1),
            Some("\"level\" is required (required)".into())
        )
    );
    let cf: String = s
        .query_one(
            "INSERT INTO public.projects (name, custom_fields) VALUES ('p', NULL) RETURNING custom_fields::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&cf).unwrap(),
        json!({"stage": "new"})
    );
    // custom_fields omitted from the INSERT: the column default '{}' gets the defaults
    let cf: String = s
        .query_one(
            "INSERT INTO public.projects (name) VALUES ('q') RETURNING custom_fields::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&cf).unwrap(),
        json!({"stage": "new"})
    );
    // UPDATE of custom_fields: defaults never apply, the missing required key is an error
    let id: String = s
        .query_one(
            "SELECT id::text FROM public.clients ORDER BY custom_fields::text LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let err = s
        .execute(
            "UPDATE public.clients SET custom_fields = '{\"level\": 2}' WHERE id = $1::text::uuid",
            &[&id],
        )
        .unwrap_err();
    assert_eq!(
        parts(&err),
        (
            "23514".into(),
            violates(1),
            Some("\"tier\" is required (required)".into())
        )
    );
    let n = s
        .execute(
            "UPDATE public.clients SET custom_fields = '{\"level\": 2, \"tier\": \"gold\"}' WHERE id = $1::text::uuid",
            &[&id],
        )
        .unwrap();
    assert_eq!(n, 1);
    // tighten level (max 1): rows with level 2 now violate it, but an UPDATE that leaves
    // custom_fields alone still succeeds; one that changes it is checked
    define(
        &mut c,
        t,
        "clients",
        "'level', 'number', 'Level', is_required => true, validation_rules => '{\"max\": 1}'",
    );
    let n = s
        .execute(
            "UPDATE public.clients SET name = 'renamed' WHERE id = $1::text::uuid",
            &[&id],
        )
        .unwrap();
    assert_eq!(n, 1);
    let n = s
        .execute(
            "UPDATE public.clients SET custom_fields = custom_fields WHERE id = $1::text::uuid",
            &[&id],
        )
        .unwrap();
    assert_eq!(n, 1);
    let err = s
        .execute(
            "UPDATE public.clients SET custom_fields = custom_fields || '{\"note\": \"x\"}' WHERE id = $1::text::uuid",
            &[&id],
        )
        .unwrap_err();
    assert_eq!(
        parts(&err),
        (
            "23514".into(),
            violates(1),
            Some("\"level\" must be <= 1, got 2 (maximum)".into())
        )
    );
    let (name, cf): (String, String) = {
        let r = s
            .query_one(
                "SELECT name, custom_fields::text FROM public.clients WHERE id = $1::text::uuid",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(name, "renamed");
    assert_eq!(
        serde_json::from_str::<Value>(&cf).unwrap(),
        json!({"level": 2, "tier": "gold"})
    );
    drop(s);
    teardown(&mut c, t);
}

#[test]
fn unknown_key_policy_follows_the_tenant_setting_in_open_sessions() {
    let t = "it_f_pol_a";
    let mut c = setup("f_pol", t);
    define(&mut c, t, "clients", "'a', 'text', 'A'");
    let mut s = tenant_session(t);
    let doc = json!({"a": "x", "zz": 1, "yy": [true]});
    // default policy: reject, every unknown key named
    assert_eq!(
        rejected(&mut s, &doc),
        (
            violates(2),
            "\"yy\" is not a defined field of clients (unknown_field)\n\"zz\" is not a defined field of clients (unknown_field)".into()
        )
    );
    let policy = |s: &mut Client| -> String {
        s.query_one(
            "SELECT snapshot ->> 'policy' FROM messiah.field_snapshot",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(policy(&mut s), "reject");
    for (p, expected) in [
        ("strip", Some(json!({"a": "x"}))),
        ("allow", Some(doc.clone())),
        ("reject", None),
        ("strip", Some(json!({"a": "x"}))),
    ] {
        c.execute(
            "SELECT messiah_update_tenant($1, jsonb_build_object('settings', jsonb_build_object('unknown_custom_fields', $2::text)))",
            &[&t, &p],
        )
        .unwrap();
        settle(&mut c);
        // the very next statement of the already-open session follows the new policy
        match expected {
            Some(v) => assert_eq!(insert_doc(&mut s, &doc).unwrap(), v, "policy {p}"),
            None => assert_eq!(rejected(&mut s, &doc).0, violates(2), "policy {p}"),
        }
        assert_eq!(policy(&mut s), p);
    }
    // strip also applies to unknown keys on UPDATE
    let cf: String = s
        .query_one(
            "UPDATE public.clients SET custom_fields = '{\"a\": \"y\", \"gone\": 1}' \
             WHERE id = (SELECT id FROM public.clients LIMIT 1) RETURNING custom_fields::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&cf).unwrap(),
        json!({"a": "y"})
    );
    drop(s);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// 3. cross-session visibility

#[test]
fn committed_change_is_seen_by_the_next_statement_rolled_back_never() {
    let t = "it_f_vis_a";
    let mut c = setup("f_vis", t);
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 100}'",
    );
    let mut s = tenant_session(t);
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 50})).unwrap(),
        json!({"total": 50})
    );
    // tighter rule, committed in the admin database: the same session's next statement sees it
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 10}'",
    );
    assert_eq!(
        rejected(&mut s, &json!({"total": 50})),
        (
            violates(1),
            "\"total\" must be <= 10, got 50 (maximum)".into()
        )
    );
    let version = snapshot_version(&mut s);
    let admin_version: i64 = c
        .query_one(
            "SELECT snapshot_version FROM messiah.tenants WHERE tenant_id = $1",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, admin_version);
    // a change inside an open admin transaction is not visible in the tenant database
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "SELECT messiah_define_field($1, 'clients', 'total', 'number', 'Total', validation_rules => '{\"max\": 1}')",
        &[&t],
    )
    .unwrap();
    // (the admin transaction itself validates with the planned definition)
    let planned: String = tx
        .query_one(
            "SELECT messiah_validate_custom_fields($1, 'clients', '{\"total\": 5}')::text",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&planned).unwrap(),
        json!([e("total", "maximum", "\"total\" must be <= 1, got 5")])
    );
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 5})).unwrap(),
        json!({"total": 5})
    );
    let mut s2 = tenant_session(t);
    assert_eq!(
        insert_doc(&mut s2, &json!({"total": 5})).unwrap(),
        json!({"total": 5})
    );
    tx.rollback().unwrap();
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 5})).unwrap(),
        json!({"total": 5})
    );
    assert_eq!(
        insert_doc(&mut s2, &json!({"total": 5})).unwrap(),
        json!({"total": 5})
    );
    assert_eq!(snapshot_version(&mut s), version);
    assert_eq!(validate(&mut c, t, &json!({"total": 5})), json!([]));
    drop((s, s2));
    teardown(&mut c, t);
}

/// A statement later in an already-open (READ COMMITTED) transaction of the tenant session
/// also sees a definition change committed meanwhile.
#[test]
fn open_transaction_sees_a_committed_change_at_its_next_statement() {
    let t = "it_f_open_a";
    let mut c = setup("f_open", t);
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 100}'",
    );
    let mut s = tenant_session(t);
    s.batch_execute("BEGIN").unwrap();
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 50})).unwrap(),
        json!({"total": 50})
    );
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 10}'",
    );
    assert_eq!(
        rejected(&mut s, &json!({"total": 50})),
        (
            violates(1),
            "\"total\" must be <= 10, got 50 (maximum)".into()
        )
    );
    s.batch_execute("ROLLBACK").unwrap();
    drop(s);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// 4. the admin database (or its server) unreachable

/// Restores ALLOW_CONNECTIONS on drop, so a failed assertion does not leave the admin
/// database locked.
struct AllowConnections(String);

impl Drop for AllowConnections {
    fn drop(&mut self) {
        if let Ok(mut pg) = std::panic::catch_unwind(|| connect_retry("postgres")) {
            let _ = pg.batch_execute(&format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
                self.0
            ));
        }
    }
}

#[test]
fn tenant_database_validates_while_admin_database_is_unreachable() {
    let t = "it_f_down_a";
    let admin = "messiah_it_f_down";
    let mut c = setup("f_down", t);
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', is_required => true, validation_rules => '{\"min\": 0}'",
    );
    drop(c);
    let guard = AllowConnections(admin.into());
    let mut pg = connect_retry("postgres");
    pg.batch_execute(&format!(
        "ALTER DATABASE {admin} WITH ALLOW_CONNECTIONS false"
    ))
    .unwrap();
    pg.execute(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = $1",
        &[&admin],
    )
    .unwrap();
    // the admin database refuses connections
    let (host, port) = host_port();
    let refused = postgres::Client::connect(
        &format!("host={host} port={port} user=postgres dbname={admin}"),
        postgres::NoTls,
    )
    .err()
    .expect("the admin database must refuse connections");
    assert_eq!(sqlstate(&refused), "55000");
    // a new tenant session (compiling the snapshot from its local copy) still enforces
    let mut s = tenant_session(t);
    assert_eq!(
        rejected(&mut s, &json!({"total": -1})),
        (
            violates(1),
            "\"total\" must be >= 0, got -1 (minimum)".into()
        )
    );
    assert_eq!(
        rejected(&mut s, &json!({})),
        (violates(1), "\"total\" is required (required)".into())
    );
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 3})).unwrap(),
        json!({"total": 3})
    );
    drop(s);
    drop(guard);
    let mut c = connect_retry(admin);
    teardown(&mut c, t);
}

/// A definition change commits even when its tenant database refuses connections: the push
/// stays queued (reconcile lists it as pending_action with the error), is retried, and lands
/// once the database accepts connections again. The catalog is the source of truth.
#[test]
fn undeliverable_push_stays_queued_and_lands_later() {
    let t = "it_f_push_a";
    let tenant_db = "tenant_it_f_push_a";
    let mut c = setup("f_push", t);
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 10}'",
    );
    let guard = AllowConnections(tenant_db.into());
    let mut pg = connect_retry("postgres");
    pg.batch_execute(&format!(
        "ALTER DATABASE {tenant_db} WITH ALLOW_CONNECTIONS false"
    ))
    .unwrap();
    c.batch_execute(&format!(
        "SELECT messiah_define_field('{t}', 'clients', 'total', 'number', 'Total', validation_rules => '{{\"max\": 1}}')"
    ))
    .unwrap();
    let r = json(&mut c, "messiah_run_pending()");
    assert_eq!(r["pending"], 1, "{r}");
    // listed once an attempt has failed and committed (the executor worker may be in the
    // middle of one, with the row locked, when run_pending skips it)
    let mut rows = Vec::new();
    assert!(
        wait_until(10, || {
            rows = c
                .query(
                    "SELECT kind, action FROM messiah_reconcile() WHERE tenant_id = $1",
                    &[&t],
                )
                .unwrap();
            rows.len() == 1
        }),
        "no pending_action listed"
    );
    assert_eq!(rows[0].get::<_, String>(0), "pending_action");
    let action: String = rows[0].get(1);
    assert!(
        action.starts_with("push_snapshot failed")
            && action.contains("is not currently accepting connections"),
        "{action}"
    );
    drop(guard);
    settle(&mut c);
    let mut s = tenant_session(t);
    let version: i64 = c
        .query_one(
            "SELECT snapshot_version FROM messiah.tenants WHERE tenant_id = $1",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert_eq!(snapshot_version(&mut s), version);
    assert_eq!(
        rejected(&mut s, &json!({"total": 5})),
        (
            violates(1),
            "\"total\" must be <= 1, got 5 (maximum)".into()
        )
    );
    drop(s);
    teardown(&mut c, t);
}

/// The admin database on a second server that places its tenant on the main cluster: after
/// the second server is stopped, the tenant database on the main cluster still enforces the
/// definitions made from there.
#[test]
fn tenant_database_validates_while_admin_server_is_stopped() {
    let t = "it_f_remote_a";
    let tenant_db = "tenant_it_f_remote_a";
    drop_db(tenant_db);
    let admin2 = OtherCluster::start("/tmp/messiah-it-admin2", 28816, None, "");
    let mut p2 = admin2.connect("postgres");
    p2.batch_execute("CREATE DATABASE messiah_it_f_remote")
        .unwrap();
    let mut c = admin2.connect("messiah_it_f_remote");
    c.batch_execute("SET client_min_messages = warning; CREATE EXTENSION messiah CASCADE")
        .unwrap();
    c.execute("SELECT messiah_add_server('main', $1)", &[&main_conninfo()])
        .unwrap();
    c.execute(
        "SELECT messiah_create_tenant($1, 'Remote', 'it-f-remote-a', server => 'main')",
        &[&t],
    )
    .unwrap_or_else(|e| panic!("creating the tenant from the second cluster: {e:?}"));
    assert!(
        db_exists(tenant_db),
        "the tenant database is on the main cluster"
    );
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', is_required => true, validation_rules => '{\"max\": 10}'",
    );
    define(
        &mut c,
        t,
        "clients",
        "'tier', 'select', 'Tier', default_value => 'gold', validation_rules => '{\"options\": [\"gold\"]}'",
    );
    drop((c, p2));
    admin2.stop();
    let mut s = tenant_session(t);
    assert_eq!(
        rejected(&mut s, &json!({"total": 11, "x": 1})),
        (
            violates(2),
            "\"total\" must be <= 10, got 11 (maximum)\n\"x\" is not a defined field of clients (unknown_field)".into()
        )
    );
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 10})).unwrap(),
        json!({"total": 10, "tier": "gold"})
    );
    drop(s);
    drop(admin2);
    drop_db(tenant_db);
    assert!(!db_exists(tenant_db));
}

// ---------------------------------------------------------------------------------------------
// 5. messiah_check_existing

#[test]
fn check_existing_plans_a_tightening_without_applying_it() {
    let t = "it_f_chk_a";
    let mut c = setup("f_chk", t);
    define(&mut c, t, "clients", "'total', 'number', 'Total'");
    let mut s = tenant_session(t);
    for (i, total) in [(1, 5), (2, 50), (3, 70)] {
        s.execute(
            &format!(
                "INSERT INTO public.clients (id, name, custom_fields) \
                 VALUES ('00000000-0000-0000-0000-00000000000{i}', 'c{i}', '{{\"total\": {total}}}')"
            ),
            &[],
        )
        .unwrap();
    }
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "SELECT messiah_define_field($1, 'clients', 'total', 'number', 'Total', validation_rules => '{\"max\": 10}')",
        &[&t],
    )
    .unwrap();
    let report: String = tx
        .query_one("SELECT messiah_check_existing($1, 'clients')::text", &[&t])
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&report).unwrap(),
        json!({
            "entity_table": "clients",
            "checked": 3,
            "violations": 2,
            "sample": [
                {"id": "00000000-0000-0000-0000-000000000002",
                 "errors": [e("total", "maximum", "\"total\" must be <= 10, got 50")]},
                {"id": "00000000-0000-0000-0000-000000000003",
                 "errors": [e("total", "maximum", "\"total\" must be <= 10, got 70")]}
            ]
        })
    );
    // rolled back: the tenant still accepts the looser values
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 50})).unwrap(),
        json!({"total": 50})
    );
    // with the committed (loose) definitions, nothing violates
    let report = json(&mut c, &format!("messiah_check_existing('{t}', 'clients')"));
    assert_eq!(
        report,
        json!({"entity_table": "clients", "checked": 4, "violations": 0, "sample": []})
    );
    drop(s);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// 6. messiah_apply_fields

#[test]
fn apply_fields_builds_the_record_or_raises_23514() {
    let t = "it_f_apply_a";
    let mut c = setup("f_apply", t);
    define(
        &mut c,
        t,
        "clients",
        "'tier', 'select', 'Tier', default_value => 'silver', validation_rules => '{\"options\": [\"gold\", \"silver\"]}'",
    );
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"min\": 0}'",
    );
    let out = json(
        &mut c,
        &format!(
            "messiah_apply_fields('{t}', 'clients', '{{\"name\": \"Acme\", \"email\": \"ops@acme.test\", \"total\": 5}}')"
        ),
    );
    assert_eq!(
        out,
        json!({"name": "Acme", "email": "ops@acme.test",
               "custom_fields": {"total": 5, "tier": "silver"}})
    );
    // keys already under custom_fields are merged (the top-level key wins)
    let out = json(
        &mut c,
        &format!(
            "messiah_apply_fields('{t}', 'clients', '{{\"name\": \"B\", \"tier\": \"gold\", \"custom_fields\": {{\"tier\": \"silver\", \"total\": 1}}}}')"
        ),
    );
    assert_eq!(
        out,
        json!({"name": "B", "custom_fields": {"total": 1, "tier": "gold"}})
    );
    // the record is ready to insert in the tenant database
    let mut s = tenant_session(t);
    let cf: String = s
        .query_one(
            "INSERT INTO public.clients (name, custom_fields) VALUES ('B', '{\"total\": 1, \"tier\": \"gold\"}') RETURNING custom_fields::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&cf).unwrap(),
        out["custom_fields"]
    );
    let err = fails(
        &mut c,
        &format!(
            "SELECT messiah_apply_fields('{t}', 'clients', '{{\"name\": \"A\", \"total\": -1, \"color\": \"red\"}}')"
        ),
    );
    assert_eq!(
        parts(&err),
        (
            "23514".into(),
            format!("record for clients of tenant \"{t}\" violates 2 custom field rules"),
            Some(
                "\"color\" is not a defined field of clients (unknown_field)\n\"total\" must be >= 0, got -1 (minimum)"
                    .into()
            )
        )
    );
    drop(s);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// 7. indexes

fn field_indexes(s: &mut Client) -> Vec<(String, String)> {
    s.query(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' \
         AND indexname LIKE 'messiah\\_cf\\_%' ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// EXPLAIN of `sql` (one text).
fn plan(s: &mut Client, sql: &str) -> String {
    s.query(&format!("EXPLAIN {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The index decisions (README "Indexes"), proven by the planner on a table of realistic size
/// (50,000 clients): a filterable field gets no index of its own, the GIN index serves
/// containment (PostgREST `cs.`); a sortable field gets one btree index in the form it is
/// compared by, which serves ORDER BY, equality and ranges (PostgREST `->>` filters and
/// `order=`); dropping the field or the flag drops the index.
#[test]
fn field_indexes_serve_the_documented_query_forms() {
    let t = "it_f_idx_a";
    let mut c = setup("f_idx", t);
    let mut s = tenant_session(t);
    assert_eq!(field_indexes(&mut s), vec![]);
    define(&mut c, t, "clients", "'country', 'text', 'Country'");
    define(&mut c, t, "clients", "'note', 'text', 'Note'");
    define(&mut c, t, "activities", "'kind', 'text', 'Kind'");
    // default flags (filterable): no index of their own
    assert_eq!(field_indexes(&mut s), vec![]);
    s.batch_execute(
        "INSERT INTO clients (name, custom_fields) \
         SELECT 'c' || i, jsonb_build_object('country', 'country ' || (i % 1000), 'note', 'n') \
         FROM generate_series(1, 50000) i; \
         INSERT INTO clients (name, custom_fields) VALUES ('long', jsonb_build_object('note', repeat('x', 10000))); \
         ANALYZE clients",
    )
    .unwrap();
    let p = plan(
        &mut s,
        "SELECT id FROM clients WHERE custom_fields @> '{\"country\": \"country 7\"}'",
    );
    assert!(
        p.contains("clients_custom_fields_gin"),
        "containment uses the GIN index: {p}"
    );
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', is_sortable => true",
    );
    define(
        &mut c,
        t,
        "clients",
        "'country', 'text', 'Country', is_sortable => true",
    );
    let idx = |name: &str, table: &str, expr: &str| {
        (
            name.to_string(),
            format!("CREATE INDEX {name} ON public.{table} USING btree ({expr})"),
        )
    };
    assert_eq!(
        field_indexes(&mut s),
        vec![
            idx(
                "messiah_cf_clients_country",
                "clients",
                "((custom_fields ->> 'country'::text))"
            ),
            idx(
                "messiah_cf_clients_total",
                "clients",
                "((custom_fields -> 'total'::text))"
            ),
        ]
    );
    // the indexes are what the catalog calls for: reconcile finds no index drift
    let drift: i64 = c
        .query_one(
            "SELECT count(*) FROM messiah_reconcile(deep => true) WHERE tenant_id = $1",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert_eq!(drift, 0);
    s.batch_execute(
        "UPDATE clients SET custom_fields = custom_fields || jsonb_build_object('total', (random() * 1000)::int) \
         WHERE name <> 'long'; ANALYZE clients",
    )
    .unwrap();
    for (sql, index) in [
        // PostgREST custom_fields->>country=eq.country 7
        (
            "SELECT id FROM clients WHERE custom_fields ->> 'country' = 'country 7'",
            "messiah_cf_clients_country",
        ),
        // order=custom_fields->>country
        (
            "SELECT id FROM clients ORDER BY custom_fields ->> 'country' LIMIT 10",
            "messiah_cf_clients_country",
        ),
        // custom_fields->total=gt.995 (jsonb comparison: numbers as numbers)
        (
            "SELECT id FROM clients WHERE custom_fields -> 'total' > '995'",
            "messiah_cf_clients_total",
        ),
        (
            "SELECT id FROM clients ORDER BY custom_fields -> 'total' DESC LIMIT 10",
            "messiah_cf_clients_total",
        ),
    ] {
        let p = plan(&mut s, sql);
        assert!(p.contains(index), "{sql} does not use {index}: {p}");
    }
    // dropping the field, or the flag, drops its index
    c.execute("SELECT messiah_drop_field($1, 'clients', 'country')", &[&t])
        .unwrap();
    settle(&mut c);
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', is_sortable => false",
    );
    assert_eq!(field_indexes(&mut s), vec![]);
    drop(s);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// 8. messiah_drop_field

#[test]
fn dropped_field_becomes_unknown_and_define_reactivates_it() {
    let t = "it_f_drop_a";
    let mut c = setup("f_drop", t);
    define(&mut c, t, "clients", "'color', 'text', 'Color'");
    define(&mut c, t, "clients", "'size', 'number', 'Size'");
    let mut s = tenant_session(t);
    assert_eq!(
        insert_doc(&mut s, &json!({"color": "red", "size": 1})).unwrap(),
        json!({"color": "red", "size": 1})
    );
    let dropped = json(
        &mut c,
        &format!("messiah_drop_field('{t}', 'clients', 'color')"),
    );
    assert_eq!(dropped["field_name"], json!("color"));
    assert_eq!(dropped["is_active"], json!(false));
    settle(&mut c);
    assert_eq!(
        rejected(&mut s, &json!({"color": "red", "size": 1})),
        (
            violates(1),
            "\"color\" is not a defined field of clients (unknown_field)".into()
        )
    );
    assert_eq!(
        validate(&mut c, t, &json!({"color": "red"})),
        json!([e(
            "color",
            "unknown_field",
            "\"color\" is not a defined field of clients"
        )])
    );
    let listed: Vec<(String, bool)> = c
        .query(
            "SELECT f ->> 'field_name', (f ->> 'is_active')::boolean FROM messiah_list_fields($1, 'clients') f",
            &[&t],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(listed, vec![("color".into(), false), ("size".into(), true)]);
    // rows written before the drop keep their value and stay updatable
    let n = s
        .execute("UPDATE public.clients SET name = 'kept'", &[])
        .unwrap();
    assert_eq!(n, 1);
    // unknown field: 42704
    let err = fails(
        &mut c,
        &format!("SELECT messiah_drop_field('{t}', 'clients', 'nope')"),
    );
    assert_eq!(sqlstate(&err), "42704");
    assert_eq!(
        message(&err),
        format!("field \"nope\" of clients does not exist for tenant \"{t}\"")
    );
    // defining it again reactivates it
    define(&mut c, t, "clients", "'color', 'text', 'Color'");
    let active: bool = c
        .query_one(
            "SELECT (f ->> 'is_active')::boolean FROM messiah_list_fields($1, 'clients') f WHERE f ->> 'field_name' = 'color'",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert!(active);
    assert_eq!(
        insert_doc(&mut s, &json!({"color": "blue"})).unwrap(),
        json!({"color": "blue"})
    );
    drop(s);
    teardown(&mut c, t);
}

// ---------------------------------------------------------------------------------------------
// A session that reloads its compiled snapshot inside a REPEATABLE READ transaction sees the
// definitions of its transaction snapshot there, and the committed ones after it ends.

#[test]
fn repeatable_read_session_does_not_keep_stale_definitions() {
    let t = "it_f_rr_a";
    let mut c = setup("f_rr", t);
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 100}'",
    );
    let mut s = tenant_session(t);
    assert_eq!(
        insert_doc(&mut s, &json!({"total": 50})).unwrap(),
        json!({"total": 50})
    );
    s.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM public.projects")
        .unwrap();
    define(
        &mut c,
        t,
        "clients",
        "'total', 'number', 'Total', validation_rules => '{\"max\": 10}'",
    );
    // inside the old transaction the old definitions may apply
    let _ = insert_doc(&mut s, &json!({"total": 50}));
    s.batch_execute("COMMIT").unwrap();
    // a new transaction of the same session must use the committed definitions
    let result = insert_doc(&mut s, &json!({"total": 50}));
    let stored = snapshot_version(&mut s);
    drop(s);
    teardown(&mut c, t);
    let err = result.expect_err(&format!(
        "accepted {{\"total\": 50}} after max 10 was committed (installed version {stored})"
    ));
    assert_eq!(
        parts(&err),
        (
            "23514".into(),
            violates(1),
            Some("\"total\" must be <= 10, got 50 (maximum)".into())
        )
    );
}
