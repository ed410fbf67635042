//! Unit and property tests of the custom-field engine.

use super::validate::check_value;
use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn spec(name: &str, ty: &str, required: bool, default: Option<&str>, rules: Value) -> FieldSpec {
    FieldSpec {
        is_sortable: false,
        entity_table: "clients".to_owned(),
        field_name: name.to_owned(),
        field_type: ty.to_owned(),
        is_required: required,
        default_value: default.map(str::to_owned),
        validation_rules: rules,
    }
}

fn entity(specs: Vec<FieldSpec>, policy: UnknownKeyPolicy) -> CompiledEntity {
    compile_entity("clients", &specs, policy).expect("entity compiles")
}

fn one(s: FieldSpec) -> CompiledEntity {
    entity(vec![s], UnknownKeyPolicy::Reject)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("test JSON parses")
}

fn errs(e: &CompiledEntity, doc: &Value, op: Operation) -> Value {
    errors_to_json(&validate_document(e, Some(doc), op).errors)
}

fn ins(e: &CompiledEntity, doc: &Value) -> Value {
    errs(e, doc, Operation::Insert)
}

fn def_err(s: FieldSpec) -> String {
    compile_field(&s)
        .expect_err("definition must be rejected")
        .to_string()
}

fn e(field: &str, code: &str, message: &str) -> Value {
    json!({"field": field, "code": code, "message": message})
}

// ---------------------------------------------------------------- Decimal

fn d(s: &str) -> Decimal {
    Decimal::parse(s).unwrap_or_else(|| panic!("{s} parses"))
}

#[test]
fn decimal_parse_and_display() {
    assert_eq!(d("0").to_string(), "0");
    assert_eq!(d("-0").to_string(), "0");
    assert_eq!(d("-0.000").to_string(), "0");
    assert_eq!(d("1.50").to_string(), "1.5");
    assert_eq!(d("15e-1"), d("1.5"));
    assert_eq!(d("1E2").to_string(), "100");
    assert_eq!(d("1e400").to_string(), "1e400");
    assert_eq!(d("-1.5e-300").to_string(), "-1.5e-300");
    assert_eq!(d("0.001").to_string(), "0.001");
    assert_eq!(
        d("123456789012345678901234567890").to_string(),
        "1.2345678901234567890123456789e29"
    );
    assert_eq!(
        d("12345678901234567890").to_string(),
        "12345678901234567890"
    );
    assert_eq!(d("-123.456").to_short_string(3), "-1.23…e2");
    assert_eq!(d("0.05").to_short_string(3), "5e-2");
    assert_eq!(d("0").to_short_string(3), "0");
    assert_eq!(d("1e400").significant_digits(), 1);
    for bad in [
        "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "NaN", "Infinity", " 1", "1 ", "0x10", "--1",
        "1.2.3",
    ] {
        assert_eq!(Decimal::parse(bad), None, "{bad:?}");
    }
    // Absurd exponents saturate instead of overflowing.
    assert!(d("1e99999999999999999999999999") > d("1e400"));
    assert!(d("1e-99999999999999999999999999") > Decimal::zero());
    assert!(d("1e-99999999999999999999999999") < d("1e-400"));
}

#[test]
fn decimal_ordering() {
    let sorted = [
        "-1e400",
        "-123456789012345678901234567890",
        "-1.5",
        "-1",
        "-0.000000000000000000000000000001",
        "0",
        "1e-400",
        "0.5",
        "1",
        "1.0000000000000000000000000001",
        "1.5",
        "10",
        "123456789012345678901234567890",
        "123456789012345678901234567891",
        "1e400",
    ];
    for (i, a) in sorted.iter().enumerate() {
        for (j, b) in sorted.iter().enumerate() {
            assert_eq!(d(a).cmp(&d(b)), i.cmp(&j), "{a} vs {b}");
        }
    }
    assert_eq!(d("0").cmp(&d("-0")), std::cmp::Ordering::Equal);
    assert_eq!(d("100"), d("1e2"));
}

#[test]
fn decimal_is_integer() {
    for s in [
        "0",
        "-0",
        "5",
        "5.0",
        "-7.000",
        "1e400",
        "1.5e1",
        "123456789012345678901234567890",
    ] {
        assert!(d(s).is_integer(), "{s}");
    }
    for s in [
        "1.5",
        "0.5",
        "-0.1",
        "1e-400",
        "123456789012345678901234567890.5",
    ] {
        assert!(!d(s).is_integer(), "{s}");
    }
}

#[test]
fn decimal_from_base10000() {
    let b = |neg, w, digits: &[i16]| Decimal::from_base10000(neg, w, digits).expect("valid");
    assert_eq!(b(false, -1, &[5000]), d("0.5"));
    assert_eq!(b(false, 1, &[1]), d("10000"));
    assert_eq!(b(false, 1, &[1, 0]), d("10000"));
    assert_eq!(b(false, 0, &[1, 5000]), d("1.5"));
    assert_eq!(b(true, 0, &[42]), d("-42"));
    assert_eq!(b(false, 1, &[12, 3456, 7800]), d("123456.78"));
    assert_eq!(b(false, -2, &[1]), d("0.00000001"));
    assert_eq!(b(true, 0, &[]), Decimal::zero());
    assert_eq!(b(false, 0, &[0, 0]), Decimal::zero());
    assert_eq!(b(false, 100, &[1]), d("1e400"));
    assert!(b(false, 0, &[1, 1]).cmp(&d("1.0001")).is_eq());
    assert!(!b(false, -1, &[5000]).is_integer());
    assert!(b(false, 1, &[1]).is_integer());
    assert_eq!(Decimal::from_base10000(false, 0, &[10000]), None);
    assert_eq!(Decimal::from_base10000(false, 0, &[-1]), None);
    // Extreme weights do not panic.
    assert!(b(false, i64::from(i32::MAX), &[1]) > d("1e400"));
    assert!(b(false, i64::from(i32::MIN), &[1]) < d("1e-400"));
}

// ---------------------------------------------------------------- domain

#[test]
fn domain_tables() {
    assert_eq!(ENTITY_TABLES, &["clients", "projects", "activities"]);
    assert_eq!(
        base_columns("activities"),
        Some(
            &[
                "id",
                "project_id",
                "type",
                "description",
                "custom_fields",
                "created_at"
            ][..]
        )
    );
    assert!(base_columns("projects").is_some_and(|c| c.contains(&"client_id")));
    assert_eq!(base_columns("users"), None);
}

// ---------------------------------------------------------------- text

#[test]
fn text_lengths_count_code_points() {
    let ent = one(spec(
        "company",
        "text",
        false,
        None,
        json!({"minLength": 2, "maxLength": 3}),
    ));
    assert_eq!(ins(&ent, &json!({"company": "São"})), json!([]));
    assert_eq!(ins(&ent, &json!({"company": "日本"})), json!([]));
    assert_eq!(ins(&ent, &json!({"company": "👍🏽"})), json!([])); // 2 code points
    assert_eq!(
        ins(&ent, &json!({"company": "S"})),
        json!([e(
            "company",
            "min_length",
            "\"company\" must be at least 2 characters, got 1"
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"company": "Sãoo"})),
        json!([e(
            "company",
            "max_length",
            "\"company\" must be at most 3 characters, got 4"
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"company": 5})),
        json!([e(
            "company",
            "type",
            "\"company\" must be a string, got number"
        )])
    );
}

#[test]
fn text_pattern_and_every_failing_rule() {
    let ent = one(spec(
        "postal_code",
        "text",
        false,
        None,
        json!({"pattern": "^[0-9]{5}$", "maxLength": 5}),
    ));
    assert_eq!(ins(&ent, &json!({"postal_code": "12345"})), json!([]));
    assert_eq!(
        ins(&ent, &json!({"postal_code": "123456"})),
        json!([
            e(
                "postal_code",
                "max_length",
                "\"postal_code\" must be at most 5 characters, got 6"
            ),
            e(
                "postal_code",
                "pattern",
                "\"postal_code\" does not match pattern ^[0-9]{5}$"
            ),
        ])
    );
    // Unanchored like JSON Schema.
    let ent = one(spec(
        "code",
        "text",
        false,
        None,
        json!({"pattern": "[0-9]"}),
    ));
    assert_eq!(ins(&ent, &json!({"code": "ab1cd"})), json!([]));
}

#[test]
fn pathological_pattern_finishes() {
    let ent = one(spec(
        "word",
        "text",
        false,
        None,
        json!({"pattern": "(a+)+$"}),
    ));
    let value = format!("{}!", "a".repeat(50_000));
    assert_eq!(
        ins(&ent, &json!({ "word": value })),
        json!([e(
            "word",
            "pattern",
            "\"word\" does not match pattern (a+)+$"
        )])
    );
}

#[test]
fn text_formats() {
    let ent = entity(
        vec![
            spec("mail", "text", false, None, json!({"format": "email"})),
            spec("site", "text", false, None, json!({"format": "uri"})),
            spec("ref_id", "text", false, None, json!({"format": "uuid"})),
        ],
        UnknownKeyPolicy::Reject,
    );
    let ok = json!({
        "mail": "a.b+c@example.co",
        "site": "https://example.com/a?b=c#d",
        "ref_id": "123e4567-E89B-12d3-a456-426614174000"
    });
    assert_eq!(ins(&ent, &ok), json!([]));
    for mail in ["a@b", "x!#$%&'*+/=?^_`{|}~-@a-b.c"] {
        assert_eq!(ins(&ent, &json!({ "mail": mail })), json!([]), "{mail}");
    }
    for site in ["urn:isbn:0451450523", "mailto:a@b.c", "http://[::1]:8080/"] {
        assert_eq!(ins(&ent, &json!({ "site": site })), json!([]), "{site}");
    }
    for mail in [
        "a", "@b.c", "a@", "a@-b.c", "a@b-.c", "a@b..c", "a b@c.d", "a@b@c", "ç@b.c",
    ] {
        assert_eq!(
            ins(&ent, &json!({ "mail": mail })),
            json!([e("mail", "format", "\"mail\" is not a valid email")]),
            "{mail}"
        );
    }
    for site in [
        "example.com",
        "/relative/path",
        "http://exa mple.com",
        "",
        "ht tp://x",
    ] {
        assert_eq!(
            ins(&ent, &json!({ "site": site })),
            json!([e("site", "format", "\"site\" is not a valid uri")]),
            "{site}"
        );
    }
    for id in [
        "123e4567e89b12d3a456426614174000",
        "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456-42661417400g",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
    ] {
        assert_eq!(
            ins(&ent, &json!({ "ref_id": id })),
            json!([e("ref_id", "format", "\"ref_id\" is not a valid uuid")]),
            "{id}"
        );
    }
}

// ---------------------------------------------------------------- number

#[test]
fn number_rules_exact() {
    let ent = entity(
        vec![
            spec(
                "total",
                "number",
                false,
                None,
                json!({"min": 0, "max": 100}),
            ),
            spec("quantity", "number", false, None, json!({"integer": true})),
        ],
        UnknownKeyPolicy::Reject,
    );
    assert_eq!(
        ins(&ent, &parse(r#"{"total": 0, "quantity": 5.0}"#)),
        json!([])
    );
    assert_eq!(
        ins(&ent, &parse(r#"{"total": 100.000, "quantity": 1e400}"#)),
        json!([])
    );
    assert_eq!(
        ins(&ent, &parse(r#"{"total": -1, "quantity": 1.5}"#)),
        json!([
            e(
                "quantity",
                "integer",
                "\"quantity\" must be an integer, got 1.5"
            ),
            e("total", "minimum", "\"total\" must be >= 0, got -1"),
        ])
    );
    assert_eq!(
        ins(&ent, &parse(r#"{"total": 1e400}"#)),
        json!([e("total", "maximum", "\"total\" must be <= 100, got 1e400")])
    );
    assert_eq!(
        ins(
            &ent,
            &parse(r#"{"total": 100.0000000000000000000000000001}"#)
        ),
        json!([e(
            "total",
            "maximum",
            "\"total\" must be <= 100, got 100.0000000000000000000000000001"
        )])
    );
    assert_eq!(
        ins(&ent, &parse(r#"{"total": -1e-400}"#)),
        json!([e("total", "minimum", "\"total\" must be >= 0, got -1e-400")])
    );
    assert_eq!(
        ins(
            &ent,
            &parse(r#"{"quantity": 123456789012345678901234567890}"#)
        ),
        json!([])
    );
    assert_eq!(
        ins(
            &ent,
            &parse(r#"{"quantity": 123456789012345678901234567890.5}"#)
        ),
        json!([e(
            "quantity",
            "integer",
            "\"quantity\" must be an integer, got 123456789012345678901234567890.5"
        )])
    );
}

#[test]
fn no_coercion_of_strings() {
    let ent = entity(
        vec![
            spec("total", "number", false, None, json!({})),
            spec("active", "boolean", false, None, json!({})),
        ],
        UnknownKeyPolicy::Reject,
    );
    assert_eq!(
        ins(&ent, &json!({"total": "5", "active": "true"})),
        json!([
            e("active", "type", "\"active\" must be a boolean, got string"),
            e("total", "type", "\"total\" must be a number, got string"),
        ])
    );
    assert_eq!(
        ins(&ent, &json!({"total": true, "active": 1})),
        json!([
            e("active", "type", "\"active\" must be a boolean, got number"),
            e("total", "type", "\"total\" must be a number, got boolean"),
        ])
    );
    assert_eq!(ins(&ent, &json!({"total": 5, "active": false})), json!([]));
}

// ---------------------------------------------------------------- date

#[test]
fn dates() {
    let ent = one(spec(
        "invoice_date",
        "date",
        false,
        None,
        json!({"min": "2000-01-01", "max": "2030-12-31"}),
    ));
    for ok in ["2024-02-29", "2000-02-29", "2000-01-01", "2030-12-31"] {
        assert_eq!(ins(&ent, &json!({ "invoice_date": ok })), json!([]), "{ok}");
    }
    for bad in [
        "2023-02-29",
        "2024-02-30",
        "2024-13-01",
        "2024-2-3",
        "2024-00-10",
        "2024-04-31",
        "2024-01-00",
        "24-01-01",
        "2024-01-01T00:00:00Z",
        "２０２４-01-01",
    ] {
        let msg = format!("\"invoice_date\" is not a calendar date (YYYY-MM-DD): \"{bad}\"");
        assert_eq!(
            ins(&ent, &json!({ "invoice_date": bad })),
            json!([e("invoice_date", "date", &msg)]),
            "{bad}"
        );
    }
    assert_eq!(
        ins(&ent, &json!({"invoice_date": "1999-12-31"})),
        json!([e(
            "invoice_date",
            "minimum",
            "\"invoice_date\" must be >= 2000-01-01, got 1999-12-31"
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"invoice_date": "2031-01-01"})),
        json!([e(
            "invoice_date",
            "maximum",
            "\"invoice_date\" must be <= 2030-12-31, got 2031-01-01"
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"invoice_date": 20240101})),
        json!([e(
            "invoice_date",
            "type",
            "\"invoice_date\" must be a date string (YYYY-MM-DD), got number"
        )])
    );
    // 1900 is not a leap year.
    let plain = one(spec("day", "date", false, None, json!({})));
    assert_eq!(
        ins(&plain, &json!({"day": "1900-02-29"})),
        json!([e(
            "day",
            "date",
            "\"day\" is not a calendar date (YYYY-MM-DD): \"1900-02-29\""
        )])
    );
}

// ---------------------------------------------------------------- required, null, defaults

#[test]
fn required_null_and_missing() {
    let ent = entity(
        vec![
            spec("company", "text", true, None, json!({})),
            spec("nickname", "text", false, None, json!({"minLength": 2})),
        ],
        UnknownKeyPolicy::Reject,
    );
    let req = e("company", "required", "\"company\" is required");
    assert_eq!(ins(&ent, &json!({})), json!([req]));
    assert_eq!(ins(&ent, &json!({"company": null})), json!([req]));
    assert_eq!(errs(&ent, &json!({}), Operation::Update), json!([req]));
    // Optional: null means "no value", missing is fine.
    assert_eq!(
        ins(&ent, &json!({"company": "x", "nickname": null})),
        json!([])
    );
    assert_eq!(ins(&ent, &json!({"company": "x"})), json!([]));
    // SQL NULL is {}.
    let out = validate_document::<&Value>(&ent, None, Operation::Insert);
    assert_eq!(errors_to_json(&out.errors), json!([req]));
    let out = validate_document::<&Value>(&ent, None, Operation::Update);
    assert_eq!(errors_to_json(&out.errors), json!([req]));
}

#[test]
fn defaults_on_insert_only() {
    let ent = entity(
        vec![
            spec(
                "tier",
                "select",
                true,
                Some("gold"),
                json!({"options": ["gold", "silver"]}),
            ),
            spec("score", "number", false, Some("10"), json!({"max": 100})),
            spec("name_x", "text", false, None, json!({})),
        ],
        UnknownKeyPolicy::Reject,
    );
    let out = validate_document(&ent, Some(&json!({})), Operation::Insert);
    assert_eq!(out.errors, vec![]);
    assert!(out.add_defaults);
    let out = validate_document(
        &ent,
        Some(&json!({"tier": "silver", "score": 1})),
        Operation::Insert,
    );
    assert!(out.is_unchanged());
    // Explicit null on a required field with a default is still "required".
    let out = validate_document(
        &ent,
        Some(&json!({"tier": null, "score": 1})),
        Operation::Insert,
    );
    assert_eq!(
        errors_to_json(&out.errors),
        json!([e("tier", "required", "\"tier\" is required")])
    );
    assert!(!out.add_defaults);
    // Explicit null on an optional field with a default: no value, no default.
    let out = validate_document(
        &ent,
        Some(&json!({"tier": "gold", "score": null})),
        Operation::Insert,
    );
    assert!(out.is_unchanged());
    // Update: never defaults.
    let out = validate_document(&ent, Some(&json!({})), Operation::Update);
    assert_eq!(
        errors_to_json(&out.errors),
        json!([e("tier", "required", "\"tier\" is required")])
    );
    assert!(!out.add_defaults);
    // SQL NULL on insert: defaults to apply.
    let out = validate_document::<&Value>(&ent, None, Operation::Insert);
    assert!(out.errors.is_empty() && out.add_defaults);
    assert_eq!(
        Value::Object(ent.defaults_object()),
        json!({"score": 10, "tier": "gold"})
    );
    let mut m = serde_json::Map::new();
    m.insert("score".into(), json!(50));
    ent.apply_defaults(&mut m);
    assert_eq!(Value::Object(m), json!({"score": 50, "tier": "gold"}));
}

#[test]
fn default_value_parsing_per_type() {
    let c = |ty: &str, default: &str, rules: Value| {
        compile_field(&spec("f", ty, false, Some(default), rules))
            .map(|f| f.default_value().cloned())
    };
    assert_eq!(
        c("text", "hello world", json!({})),
        Ok(Some(json!("hello world")))
    );
    assert_eq!(c("number", "1.50", json!({})), Ok(Some(parse("1.50"))));
    assert_eq!(c("boolean", "false", json!({})), Ok(Some(json!(false))));
    assert_eq!(
        c("date", "2024-02-29", json!({})),
        Ok(Some(json!("2024-02-29")))
    );
    assert_eq!(
        c("json", r#"{"a":[1]}"#, json!({})),
        Ok(Some(json!({"a": [1]})))
    );
    assert_eq!(
        c("select", "b", json!({"options": ["a", "b"]})),
        Ok(Some(json!("b")))
    );
    assert_eq!(
        c(
            "select",
            r#"["a","b"]"#,
            json!({"options": ["a", "b"], "multiple": true})
        ),
        Ok(Some(json!(["a", "b"])))
    );
}

// ---------------------------------------------------------------- select

#[test]
fn select_single() {
    let ent = one(spec(
        "country",
        "select",
        false,
        None,
        json!({"options": ["USA", "Brazil"]}),
    ));
    assert_eq!(ins(&ent, &json!({"country": "Brazil"})), json!([]));
    assert_eq!(
        ins(&ent, &json!({"country": "Mars"})),
        json!([e(
            "country",
            "option",
            "\"country\" must be one of [\"USA\", \"Brazil\"], got \"Mars\""
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"country": ["USA"]})),
        json!([e(
            "country",
            "option",
            "\"country\" must be one of [\"USA\", \"Brazil\"], got an array"
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"country": "usa"})),
        json!([e(
            "country",
            "option",
            "\"country\" must be one of [\"USA\", \"Brazil\"], got \"usa\""
        )])
    );
}

#[test]
fn select_multiple() {
    let ent = one(spec(
        "tags",
        "select",
        false,
        None,
        json!({"options": ["a", "b", "c"], "multiple": true}),
    ));
    assert_eq!(ins(&ent, &json!({"tags": []})), json!([]));
    assert_eq!(ins(&ent, &json!({"tags": ["c", "a"]})), json!([]));
    assert_eq!(
        ins(&ent, &json!({"tags": "a"})),
        json!([e("tags", "type", "\"tags\" must be an array, got string")])
    );
    assert_eq!(
        ins(&ent, &json!({"tags": ["a", "x", "a", 1, "b", "a", "b"]})),
        json!([
            e(
                "tags",
                "option",
                "\"tags\" must be one of [\"a\", \"b\", \"c\"], got \"x\""
            ),
            e(
                "tags",
                "duplicate",
                "\"tags\" contains \"a\" more than once"
            ),
            e(
                "tags",
                "option",
                "\"tags\" must be one of [\"a\", \"b\", \"c\"], got 1"
            ),
            e(
                "tags",
                "duplicate",
                "\"tags\" contains \"b\" more than once"
            ),
        ])
    );
}

#[test]
fn select_many_options() {
    let options: Vec<String> = (0..300).map(|i| format!("o{i}")).collect();
    let ent = one(spec(
        "tags",
        "select",
        false,
        None,
        json!({"options": options, "multiple": true}),
    ));
    assert_eq!(ins(&ent, &json!({"tags": ["o299", "o0"]})), json!([]));
    assert_eq!(
        errors_to_json(
            &validate_document(
                &ent,
                Some(&json!({"tags": ["o299", "o299"]})),
                Operation::Insert
            )
            .errors
        )[0]["code"],
        json!("duplicate")
    );
}

// ---------------------------------------------------------------- json

#[test]
fn json_schema() {
    let ent = one(spec(
        "meta",
        "json",
        false,
        None,
        json!({"schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}),
    ));
    assert_eq!(ins(&ent, &json!({"meta": {"n": 1}})), json!([]));
    assert_eq!(
        ins(&ent, &json!({"meta": {"n": "x"}})),
        json!([e(
            "meta",
            "schema",
            "\"meta\" does not match its schema: \"x\" is not of type \"integer\" at /n"
        )])
    );
    assert_eq!(
        ins(&ent, &json!({"meta": []})),
        json!([e(
            "meta",
            "schema",
            "\"meta\" does not match its schema: [] is not of type \"object\" at (root)"
        )])
    );
    // Numbers beyond f64 do not panic.
    let out = ins(&ent, &parse(r#"{"meta": {"n": 1e400}}"#));
    assert!(out.is_array());
    let out = ins(
        &ent,
        &parse(r#"{"meta": {"n": 123456789012345678901234567890}}"#),
    );
    assert!(out.is_array());
    // Without a schema any JSON is accepted.
    let free = one(spec("meta", "json", false, None, json!({})));
    assert_eq!(
        ins(&free, &json!({"meta": [1, "a", {"b": null}]})),
        json!([])
    );
}

/// A view whose conversion to serde fails, like jsonb with an unrepresentable number.
#[derive(Clone, Copy)]
struct Opaque<'a>(&'a Value);

impl<'a> JsonView<'a> for Opaque<'a> {
    fn kind(&self) -> Kind {
        self.0.kind()
    }
    fn as_bool(&self) -> Option<bool> {
        self.0.as_bool()
    }
    fn as_str(&self) -> Option<&'a str> {
        self.0.as_str()
    }
    fn as_decimal(&self) -> Option<Decimal> {
        JsonView::as_decimal(&self.0)
    }
    fn array_len(&self) -> usize {
        JsonView::array_len(&self.0)
    }
    fn array_get(&self, i: usize) -> Option<Self> {
        JsonView::array_get(&self.0, i).map(Opaque)
    }
    fn object_len(&self) -> usize {
        JsonView::object_len(&self.0)
    }
    fn object_get(&self, key: &str) -> Option<Self> {
        JsonView::object_get(&self.0, key).map(Opaque)
    }
    fn for_each_key(&self, f: &mut dyn FnMut(&str)) {
        self.0.for_each_key(f)
    }
    fn to_serde(&self) -> Result<Value, String> {
        Err("number out of range".to_owned())
    }
}

#[test]
fn json_schema_conversion_failure() {
    let ent = one(spec(
        "meta",
        "json",
        false,
        None,
        json!({"schema": {"type": "object"}}),
    ));
    let doc = json!({"meta": {"a": 1}});
    let out = validate_document(&ent, Some(Opaque(&doc)), Operation::Insert);
    assert_eq!(
        errors_to_json(&out.errors),
        json!([e(
            "meta",
            "schema",
            "\"meta\" could not be checked against its schema: number out of range"
        )])
    );
}

#[test]
fn json_schema_remote_ref_is_a_definition_error() {
    let got = def_err(spec(
        "meta",
        "json",
        false,
        None,
        json!({"schema": {"$ref": "https://example.com/schema.json"}}),
    ));
    assert!(
        got.starts_with("field \"meta\": rule \"schema\" is not a valid JSON Schema: "),
        "{got}"
    );
}

#[test]
fn long_values_are_cut_in_messages() {
    let ent = entity(
        vec![
            spec("total", "number", false, None, json!({"max": 1})),
            spec("tier", "select", false, None, json!({"options": ["a"]})),
        ],
        UnknownKeyPolicy::Reject,
    );
    let doc = parse(&format!(
        r#"{{"total": 1{}, "tier": "{}"}}"#,
        "1".repeat(100),
        "é".repeat(100)
    ));
    let out = validate_document(&ent, Some(&doc), Operation::Insert);
    let messages: Vec<&str> = out.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            format!(
                "\"tier\" must be one of [\"a\"], got \"{}…\"",
                "é".repeat(64)
            ),
            format!("\"total\" must be <= 1, got 1.{}…e100", "1".repeat(31)),
        ]
    );
}

#[test]
fn compiled_items_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CompiledSnapshot>();
    check::<CompiledEntity>();
    check::<DefinitionError>();
    check::<FieldError>();
}

#[test]
fn compiled_field_accessors() {
    let f = compile_field(&spec(
        "score",
        "number",
        true,
        Some("1.50"),
        json!({"max": 10}),
    ))
    .expect("compiles");
    assert_eq!(f.name(), "score");
    assert_eq!(f.field_type(), FieldType::Number);
    assert_eq!(f.field_type().to_string(), "number");
    assert!(f.is_required());
    assert_eq!(f.default_text(), Some("1.50"));
    assert_eq!(
        f.default_value().map(Value::to_string),
        Some("1.50".to_owned())
    );
    assert_eq!(f.validation_rules(), &json!({"max": 10}));
    assert_eq!(FieldType::parse("select"), Some(FieldType::Select));
    assert_eq!(FieldType::parse("Select"), None);
    // null validation_rules is treated as {}.
    assert!(compile_field(&spec("x", "boolean", false, Some("true"), Value::Null)).is_ok());
}

// ---------------------------------------------------------------- document level, unknown keys

#[test]
fn not_object() {
    let ent = one(spec("company", "text", true, None, json!({})));
    let expect = |got: &str| {
        json!([{"field": null, "code": "not_object",
                "message": format!("custom_fields must be a JSON object, got {got}")}])
    };
    assert_eq!(ins(&ent, &json!([])), expect("array"));
    assert_eq!(ins(&ent, &json!("x")), expect("string"));
    assert_eq!(ins(&ent, &json!(null)), expect("null"));
    assert_eq!(ins(&ent, &json!(1)), expect("number"));
}

#[test]
fn unknown_key_policies() {
    let specs = vec![spec("company", "text", false, None, json!({}))];
    let doc = json!({"company": "x", "foo": 1, "bar": null});
    let reject = entity(specs.clone(), UnknownKeyPolicy::Reject);
    assert_eq!(
        ins(&reject, &doc),
        json!([
            e(
                "bar",
                "unknown_field",
                "\"bar\" is not a defined field of clients"
            ),
            e(
                "foo",
                "unknown_field",
                "\"foo\" is not a defined field of clients"
            ),
        ])
    );
    let strip = entity(specs.clone(), UnknownKeyPolicy::Strip);
    let out = validate_document(&strip, Some(&doc), Operation::Update);
    assert!(out.errors.is_empty());
    assert_eq!(out.strip_keys, vec!["bar".to_owned(), "foo".to_owned()]);
    let allow = entity(specs, UnknownKeyPolicy::Allow);
    assert!(validate_document(&allow, Some(&doc), Operation::Update).is_unchanged());
    assert_eq!(
        UnknownKeyPolicy::parse("strip"),
        Some(UnknownKeyPolicy::Strip)
    );
    assert_eq!(
        "allow".parse::<UnknownKeyPolicy>(),
        Ok(UnknownKeyPolicy::Allow)
    );
    assert_eq!(UnknownKeyPolicy::parse("Reject"), None);
    assert!("nope".parse::<UnknownKeyPolicy>().is_err());
}

#[test]
fn errors_sorted_and_detail() {
    let ent = entity(
        vec![
            spec("zeta", "number", true, None, json!({})),
            spec("alpha", "boolean", true, None, json!({})),
        ],
        UnknownKeyPolicy::Reject,
    );
    let out = validate_document(
        &ent,
        Some(&json!({"mid": 1, "alpha": "no"})),
        Operation::Update,
    );
    assert_eq!(
        errors_to_json(&out.errors),
        json!([
            e("alpha", "type", "\"alpha\" must be a boolean, got string"),
            e(
                "mid",
                "unknown_field",
                "\"mid\" is not a defined field of clients"
            ),
            e("zeta", "required", "\"zeta\" is required"),
        ])
    );
    assert_eq!(
        errors_detail(&out.errors),
        "\"alpha\" must be a boolean, got string (type)\n\"mid\" is not a defined field of clients (unknown_field)\n\"zeta\" is required (required)"
    );
    assert_eq!(
        serde_json::to_value(&out.errors[0]).ok(),
        Some(
            json!({"field": "alpha", "code": "type", "message": "\"alpha\" must be a boolean, got string"})
        )
    );
}

// ---------------------------------------------------------------- definition errors

#[test]
fn definition_errors() {
    let cases: Vec<(FieldSpec, &str)> = vec![
        (
            spec("postal_code", "text", false, None, json!({"minLenght": 5})),
            r#"field "postal_code": unknown rule "minLenght" for type text (allowed: minLength, maxLength, pattern, format)"#,
        ),
        (
            spec("flag", "boolean", false, None, json!({"min": 1})),
            r#"field "flag": unknown rule "min" for type boolean (allowed: none)"#,
        ),
        (
            spec("n", "number", false, None, json!({"minLength": 1})),
            r#"field "n": unknown rule "minLength" for type number (allowed: min, max, integer)"#,
        ),
        (
            spec("code", "text", false, None, json!({"pattern": "([a-z]"})),
            "field \"code\": rule \"pattern\" is not a valid regular expression: regex parse error:\n    ([a-z]\n    ^\nerror: unclosed group",
        ),
        (
            spec("code", "text", false, None, json!({"pattern": 5})),
            r#"field "code": rule "pattern" must be a string, got 5"#,
        ),
        (
            spec("code", "text", false, None, json!({"minLength": 5, "maxLength": 2})),
            r#"field "code": rule "minLength" (5) must be <= "maxLength" (2)"#,
        ),
        (
            spec("code", "text", false, None, json!({"minLength": -1})),
            r#"field "code": rule "minLength" must be a non-negative integer, got -1"#,
        ),
        (
            spec("code", "text", false, None, json!({"maxLength": 1.5})),
            r#"field "code": rule "maxLength" must be a non-negative integer, got 1.5"#,
        ),
        (
            spec("code", "text", false, None, json!({"maxLength": "5"})),
            r#"field "code": rule "maxLength" must be a non-negative integer, got "5""#,
        ),
        (
            spec("code", "text", false, None, json!({"format": "phone"})),
            r#"field "code": rule "format" must be one of "email", "uri", "uuid", got "phone""#,
        ),
        (
            spec("total", "number", false, None, json!({"min": 10, "max": 1})),
            r#"field "total": rule "min" (10) must be <= "max" (1)"#,
        ),
        (
            spec("total", "number", false, None, json!({"min": "0"})),
            r#"field "total": rule "min" must be a number, got "0""#,
        ),
        (
            spec("total", "number", false, None, json!({"integer": "yes"})),
            r#"field "total": rule "integer" must be true or false, got "yes""#,
        ),
        (
            spec("day", "date", false, None, json!({"min": "2024-02-30"})),
            r#"field "day": rule "min" must be a calendar date string YYYY-MM-DD, got "2024-02-30""#,
        ),
        (
            spec("day", "date", false, None, json!({"min": "2024-02-02", "max": "2024-02-01"})),
            r#"field "day": rule "min" (2024-02-02) must be <= "max" (2024-02-01)"#,
        ),
        (
            spec("meta", "json", false, None, json!({"schema": {"type": "bogus"}})),
            "",
        ),
        (
            spec("meta", "json", false, None, json!({"schema": "object"})),
            r#"field "meta": rule "schema" must be a JSON Schema object, got "object""#,
        ),
        (
            spec("tags", "select", false, None, json!({})),
            r#"field "tags": type select requires rule "options""#,
        ),
        (
            spec("tags", "select", false, None, json!({"options": []})),
            r#"field "tags": rule "options" must be a non-empty array of strings, got []"#,
        ),
        (
            spec("tags", "select", false, None, json!({"options": ["a", 1]})),
            r#"field "tags": rule "options" must be a non-empty array of strings, got ["a",1]"#,
        ),
        (
            spec("tags", "select", false, None, json!({"options": ["a", "b", "a"]})),
            r#"field "tags": rule "options" contains "a" more than once"#,
        ),
        (
            spec("tags", "select", false, None, json!({"options": ["a"], "multiple": 1})),
            r#"field "tags": rule "multiple" must be true or false, got 1"#,
        ),
        (
            spec("tags", "select", false, None, json!(["a"])),
            r#"field "tags": validation_rules must be a JSON object, got array"#,
        ),
        (
            spec("x", "money", false, None, json!({})),
            r#"field "x": unknown field type "money" (expected one of text, number, boolean, date, json, select)"#,
        ),
        (
            spec("Company", "text", false, None, json!({})),
            r#"field "Company": invalid field name "Company": must match ^[a-z][a-z0-9_]*$"#,
        ),
        (
            spec("1st", "text", false, None, json!({})),
            r#"field "1st": invalid field name "1st": must match ^[a-z][a-z0-9_]*$"#,
        ),
        (
            spec("", "text", false, None, json!({})),
            r#"invalid field name "": must match ^[a-z][a-z0-9_]*$"#,
        ),
        (
            spec("a-b", "text", false, None, json!({})),
            r#"field "a-b": invalid field name "a-b": must match ^[a-z][a-z0-9_]*$"#,
        ),
        (
            spec("email", "text", false, None, json!({})),
            r#"field "email": "email" is a base column of clients"#,
        ),
        (
            spec("custom_fields", "json", false, None, json!({})),
            r#"field "custom_fields": "custom_fields" is a base column of clients"#,
        ),
        (
            spec(&"a".repeat(41), "text", false, None, json!({})),
            &*Box::leak(
                format!(
                    "field \"{}\": field name is 41 bytes long, at most 40 allowed",
                    "a".repeat(41)
                )
                .into_boxed_str(),
            ),
        ),
        // Defaults that do not parse or do not pass the rules.
        (
            spec("code", "text", false, Some("1234"), json!({"pattern": "^[0-9]{5}$"})),
            r#"field "code": default value "1234" is invalid: "code" does not match pattern ^[0-9]{5}$"#,
        ),
        (
            spec("total", "number", false, Some("5"), json!({"min": 10})),
            r#"field "total": default value "5" is invalid: "total" must be >= 10, got 5"#,
        ),
        (
            spec("total", "number", false, Some("abc"), json!({})),
            r#"field "total": default value "abc" is not a JSON number"#,
        ),
        (
            spec("total", "number", false, Some(" 5"), json!({})),
            r#"field "total": default value " 5" is not a JSON number"#,
        ),
        (
            spec("flag", "boolean", false, Some("yes"), json!({})),
            r#"field "flag": default value "yes" is not true or false"#,
        ),
        (
            spec("day", "date", false, Some("2023-02-29"), json!({})),
            r#"field "day": default value "2023-02-29" is invalid: "day" is not a calendar date (YYYY-MM-DD): "2023-02-29""#,
        ),
        (
            spec("meta", "json", false, Some("{bad"), json!({})),
            r#"field "meta": default value "{bad" is not valid JSON"#,
        ),
        (
            spec("tier", "select", false, Some("platinum"), json!({"options": ["gold"]})),
            r#"field "tier": default value "platinum" is invalid: "tier" must be one of ["gold"], got "platinum""#,
        ),
        (
            spec("tags", "select", false, Some("a"), json!({"options": ["a"], "multiple": true})),
            r#"field "tags": default value "a" is not a JSON array of options"#,
        ),
        (
            spec("tags", "select", false, Some(r#"["a","a"]"#), json!({"options": ["a"], "multiple": true})),
            r#"field "tags": default value "[\"a\",\"a\"]" is invalid: "tags" contains "a" more than once"#,
        ),
    ];
    for (s, expected) in cases {
        let got = def_err(s.clone());
        if expected.is_empty() {
            assert!(
                got.starts_with("field \"meta\": rule \"schema\" is not a valid JSON Schema: "),
                "{got}"
            );
        } else {
            assert_eq!(got, expected, "{s:?}");
        }
    }
}

#[test]
fn huge_pattern_rejected() {
    let pattern = format!("(?:{}){{1000}}", "[a-z0-9]{100}");
    let got = def_err(spec(
        "code",
        "text",
        false,
        None,
        json!({ "pattern": pattern }),
    ));
    assert!(
        got.starts_with("field \"code\": rule \"pattern\" is not a valid regular expression:"),
        "{got}"
    );
}

#[test]
fn entity_and_snapshot_errors() {
    let mut s = spec("company", "text", false, None, json!({}));
    s.entity_table = "users".into();
    assert_eq!(
        def_err(s.clone()),
        r#"field "company": unknown entity table "users" (expected one of clients, projects, activities)"#
    );
    let err = compile_entity("clients", &[s], UnknownKeyPolicy::Reject).expect_err("mismatch");
    assert_eq!(
        err.to_string(),
        r#"field "company": belongs to "users", not clients"#
    );
    let a = spec("company", "text", false, None, json!({}));
    let err =
        compile_entity("clients", &[a.clone(), a], UnknownKeyPolicy::Reject).expect_err("dup");
    assert_eq!(
        err.to_string(),
        r#"field "company": defined more than once for clients"#
    );
    // "type" is a base column of activities but not of clients.
    let mut t = spec("type", "text", false, None, json!({}));
    assert!(compile_field(&t).is_ok());
    t.entity_table = "activities".into();
    assert_eq!(
        def_err(t),
        r#"field "type": "type" is a base column of activities"#
    );

    let bad = |snap: Value| {
        compile_snapshot(&snap)
            .expect_err("bad snapshot")
            .to_string()
    };
    assert_eq!(bad(json!([])), "snapshot must be a JSON object");
    assert_eq!(
        bad(json!({"policy": "maybe"})),
        r#"unknown key policy "maybe" (expected reject, strip or allow)"#
    );
    assert_eq!(
        bad(json!({"fields": {}})),
        r#"snapshot "fields" must be an array"#
    );
    assert_eq!(
        bad(json!({"fields": [{"entity_table": "clients", "field_name": "x"}]})),
        r#"field "x": snapshot entry needs a string "field_type""#
    );
    assert_eq!(
        bad(json!({"fields": [{"entity_table": "nope", "field_name": "x", "field_type": "text"}]})),
        r#"field "x": unknown entity table "nope" (expected one of clients, projects, activities)"#
    );
}

#[test]
fn snapshot_compiles() {
    let snap = json!({
        "version": 7,
        "policy": "strip",
        "fields": [
            {"entity_table": "clients", "field_name": "tier", "field_type": "select",
             "is_required": true, "default_value": "gold",
             "validation_rules": {"options": ["gold", "silver"]}},
            {"entity_table": "clients", "field_name": "age", "field_type": "number",
             "is_required": false, "default_value": null, "validation_rules": {"min": 0}},
            {"entity_table": "projects", "field_name": "old", "field_type": "number",
             "is_active": false, "validation_rules": {"bogus": 1}}
        ]
    });
    let s = compile_snapshot(&snap).expect("compiles");
    assert_eq!(s.version(), Some(7));
    assert_eq!(s.policy(), UnknownKeyPolicy::Strip);
    let clients = s.entity("clients").expect("clients");
    let names: Vec<&str> = clients.fields().iter().map(CompiledField::name).collect();
    assert_eq!(names, ["age", "tier"]);
    assert_eq!(
        clients.field("tier").map(CompiledField::field_type),
        Some(FieldType::Select)
    );
    let projects = s
        .entity("projects")
        .expect("projects exists without fields");
    assert!(projects.fields().is_empty());
    let out = validate_document(projects, Some(&json!({"x": 1})), Operation::Update);
    assert_eq!(out.strip_keys, vec!["x".to_owned()]);
    assert!(s.entity("users").is_none());
    assert_eq!(s.entities().len(), 3);
}

// ---------------------------------------------------------------- apply_fields

#[test]
fn apply_fields_moves_and_validates() {
    let specs = vec![
        spec(
            "tier",
            "select",
            true,
            Some("gold"),
            json!({"options": ["gold", "silver"]}),
        ),
        spec("age", "number", false, None, json!({"min": 0})),
        spec("note", "text", false, None, json!({})),
    ];
    let reject = entity(specs.clone(), UnknownKeyPolicy::Reject);
    let rec = json!({"name": "ACME", "email": "a@b.c", "age": 3, "custom_fields": {"note": "hi"}});
    assert_eq!(
        apply_fields(&reject, &rec),
        Ok(json!({"name": "ACME", "email": "a@b.c",
                  "custom_fields": {"age": 3, "note": "hi", "tier": "gold"}}))
    );
    let rec = json!({"name": "ACME", "age": -1, "foo": 1, "custom_fields": {"bar": 2}});
    let errs = apply_fields(&reject, &rec).expect_err("invalid");
    assert_eq!(
        errors_to_json(&errs),
        json!([
            e("age", "minimum", "\"age\" must be >= 0, got -1"),
            e(
                "bar",
                "unknown_field",
                "\"bar\" is not a defined field of clients"
            ),
            e(
                "foo",
                "unknown_field",
                "\"foo\" is not a defined field of clients"
            ),
        ])
    );
    let strip = entity(specs.clone(), UnknownKeyPolicy::Strip);
    assert_eq!(
        apply_fields(&strip, &rec.clone()).map_err(|e| errors_to_json(&e)),
        Err(json!([e("age", "minimum", "\"age\" must be >= 0, got -1")]))
    );
    let rec2 = json!({"name": "ACME", "foo": 1, "tier": "silver", "custom_fields": {"bar": 2}});
    assert_eq!(
        apply_fields(&strip, &rec2),
        Ok(json!({"name": "ACME", "custom_fields": {"tier": "silver"}}))
    );
    let allow = entity(specs.clone(), UnknownKeyPolicy::Allow);
    assert_eq!(
        apply_fields(&allow, &rec2),
        Ok(json!({"name": "ACME", "custom_fields": {"bar": 2, "foo": 1, "tier": "silver"}}))
    );
    // Non-object custom_fields and records.
    assert_eq!(
        apply_fields(&reject, &json!({"custom_fields": [1]})).map_err(|e| errors_to_json(&e)),
        Err(json!([{"field": null, "code": "not_object",
                    "message": "custom_fields must be a JSON object, got array"}]))
    );
    assert_eq!(
        apply_fields(&reject, &json!("x")).map_err(|e| errors_to_json(&e)),
        Err(json!([{"field": null, "code": "not_object",
                    "message": "record must be a JSON object, got string"}]))
    );
    // null custom_fields counts as {}; the top-level key wins over the nested one.
    assert_eq!(
        apply_fields(&reject, &json!({"custom_fields": null, "tier": "silver"})),
        Ok(json!({"custom_fields": {"tier": "silver"}}))
    );
    assert_eq!(
        apply_fields(
            &reject,
            &json!({"custom_fields": {"tier": "gold"}, "tier": "silver"})
        ),
        Ok(json!({"custom_fields": {"tier": "silver"}}))
    );
}

// ---------------------------------------------------------------- properties

fn snapshot_all_types(policy: &str) -> CompiledSnapshot {
    compile_snapshot(&json!({
        "version": 1,
        "policy": policy,
        "fields": [
            {"entity_table": "clients", "field_name": "t", "field_type": "text",
             "validation_rules": {"minLength": 1, "maxLength": 10, "pattern": "^[a-z]+$", "format": "email"}},
            {"entity_table": "clients", "field_name": "n", "field_type": "number", "is_required": true,
             "default_value": "5", "validation_rules": {"min": -1e10, "max": 1e300, "integer": true}},
            {"entity_table": "clients", "field_name": "b", "field_type": "boolean", "is_required": true},
            {"entity_table": "clients", "field_name": "d", "field_type": "date",
             "validation_rules": {"min": "2000-01-01", "max": "2099-12-31"}},
            {"entity_table": "clients", "field_name": "j", "field_type": "json",
             "validation_rules": {"schema": {"type": "object", "properties": {"x": {"type": "number", "maximum": 10}}}}},
            {"entity_table": "clients", "field_name": "s", "field_type": "select",
             "validation_rules": {"options": ["a", "b"]}},
            {"entity_table": "clients", "field_name": "m", "field_type": "select",
             "default_value": "[\"a\"]", "validation_rules": {"options": ["a", "b", "c"], "multiple": true}}
        ]
    }))
    .expect("property snapshot compiles")
}

fn number_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        "0|[1-9][0-9]{0,40}",
        proptest::option::of("[0-9]{1,30}"),
        proptest::option::of(-500i32..500),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some(e) = exp {
                s.push_str(&format!("e{e}"));
            }
            s
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("t".to_owned()),
        Just("n".to_owned()),
        Just("b".to_owned()),
        Just("d".to_owned()),
        Just("j".to_owned()),
        Just("s".to_owned()),
        Just("m".to_owned()),
        Just("x".to_owned()),
        Just("name".to_owned()),
        Just("custom_fields".to_owned()),
        "[a-z_]{0,6}",
        ".{0,4}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number_text().prop_map(|t| serde_json::from_str(&t).unwrap_or(Value::Null)),
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("2024-02-29".to_owned()),
            Just("2023-02-29".to_owned()),
            Just("x@y.z".to_owned()),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}",
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=N runs more.
    #[test]
    fn prop_validation_never_panics(doc in json_value()) {
        for policy in ["reject", "strip", "allow"] {
            let snap = snapshot_all_types(policy);
            let ent = snap.entity("clients").expect("clients");
            for op in [Operation::Insert, Operation::Update] {
                let out = validate_document(ent, Some(&doc), op);
                // Errors are sorted by field, document-level first.
                prop_assert!(out.errors.windows(2).all(|w| w[0].field <= w[1].field));
                let _ = errors_detail(&out.errors);
                if op == Operation::Update {
                    prop_assert!(!out.add_defaults);
                }
            }
            if let Ok(rec) = apply_fields(ent, &doc) {
                // Whatever apply_fields returns validates cleanly as custom_fields.
                let out = validate_document(ent, rec.get("custom_fields"), Operation::Insert);
                prop_assert!(out.is_unchanged(), "{:?}", out);
            }
            let wrapped = json!({"custom_fields": doc.clone()});
            let _ = apply_fields(ent, &wrapped);
        }
    }

    #[test]
    fn prop_decimal_order_matches_f64(a in any::<f64>(), b in any::<f64>()) {
        prop_assume!(a.is_finite() && b.is_finite());
        let da = Decimal::parse(&a.to_string());
        let db = Decimal::parse(&b.to_string());
        prop_assert!(da.is_some() && db.is_some());
        if let (Some(da), Some(db)) = (da, db) {
            prop_assert_eq!(Some(da.cmp(&db)), a.partial_cmp(&b));
            prop_assert_eq!(da.is_integer(), a.fract() == 0.0);
            // Display round-trips exactly, and as f64.
            let shown = da.to_string();
            prop_assert_eq!(Decimal::parse(&shown), Some(da));
            prop_assert_eq!(shown.parse::<f64>().ok(), Some(a));
        }
    }

    #[test]
    fn prop_decimal_parse_any_text(s in ".{0,40}", t in number_text()) {
        let _ = Decimal::parse(&s);
        let parsed = Decimal::parse(&t);
        prop_assert!(parsed.is_some());
        if let Some(p) = parsed {
            prop_assert_eq!(Decimal::parse(&p.to_string()), Some(p));
        }
    }

    #[test]
    fn prop_base10000_matches_text(
        neg in any::<bool>(),
        weight in -40i32..40,
        digits in proptest::collection::vec(0i16..=9999, 0..8),
    ) {
        let mut int: String = digits.iter().map(|d| format!("{d:04}")).collect();
        let trimmed = int.trim_start_matches('0').to_owned();
        int = if trimmed.is_empty() { "0".to_owned() } else { trimmed };
        let exp = 4 * (i64::from(weight) - (digits.len() as i64 - 1));
        let text = format!("{}{int}e{exp}", if neg { "-" } else { "" });
        prop_assert_eq!(Decimal::from_base10000(neg, i64::from(weight), &digits), Decimal::parse(&text));
        // the base-10000 form agrees with the decimal one on everything the validator asks
        let b = Base10000::new(neg, i64::from(weight), &digits);
        let d = Decimal::parse(&text);
        prop_assert!(b.is_some() && d.is_some());
        if let (Some(b), Some(d)) = (b, d) {
            prop_assert_eq!(&b.to_decimal(), &d);
            prop_assert_eq!(&Base10000::from_decimal(&d), &b);
            prop_assert_eq!(b.is_integer(), d.is_integer());
            prop_assert_eq!(b.significant_digits(), d.significant_digits());
        }
    }

    /// The prebuilt DFA answers exactly as the `regex` crate does, for the translated
    /// ECMA-262 patterns a field may carry.
    #[test]
    fn prop_pattern_dfa_matches_regex(s in "[0-9a-zA-Z@._ é-]{0,12}", which in 0usize..10) {
        const PATTERNS: [&str; 10] = [
            "^[0-9]{5}$", "^\\d{3}-\\d{4}$", "[A-Z]{2}", "^(ab|ba)+$", "é+",
            "^\\w+@\\w+\\.com$", "^.{2,4}$", "(?i)abc", "\\bab\\b", "^$",
        ];
        let source = PATTERNS[which];
        let translated = jsonschema_regex::to_rust_regex(source).map(std::borrow::Cow::into_owned).unwrap_or_else(|()| source.to_owned());
        let p = super::define::Pattern::new(source, &translated);
        let r = regex::Regex::new(&translated);
        prop_assert!(p.is_ok() && r.is_ok());
        if let (Ok(p), Ok(r)) = (p, r) {
            prop_assert_eq!(p.is_match(&s), r.is_match(&s), "{} on {:?}", source, s);
        }
    }

    /// Select options are found by their length-and-prefix binary search exactly when they
    /// are options, whatever their lengths (past 8 bytes the rest is compared).
    #[test]
    fn prop_select_finds_exactly_its_options(
        options in proptest::collection::btree_set("[ab]{0,3}|[ab]{9,12}|é[ab]{7}", 1..20),
        probe in "[ab]{0,3}|[ab]{9,12}|é[ab]{7}",
    ) {
        let options: Vec<String> = options.into_iter().collect();
        let ent = one(spec("pick", "select", false, None, json!({"options": options})));
        for o in &options {
            prop_assert_eq!(ins(&ent, &json!({"pick": o})), json!([]), "{:?}", o);
        }
        let found = ins(&ent, &json!({"pick": probe})) == json!([]);
        prop_assert_eq!(found, options.contains(&probe));
    }

    #[test]
    fn prop_jsonb_key_order_is_length_then_bytes(
        a in proptest::collection::vec(any::<u8>(), 0..40),
        b in proptest::collection::vec(any::<u8>(), 0..40),
        same in any::<bool>(),
    ) {
        // often of one length, so the word-at-a-time comparison is exercised
        let b = if same { a.iter().zip(b.iter().chain(std::iter::repeat(&0))).map(|(x, y)| if y % 4 == 0 { *y } else { *x }).collect() } else { b };
        prop_assert_eq!(jsonb_key_order(&a, &b), a.len().cmp(&b.len()).then(a.cmp(&b)));
        prop_assert_eq!(jsonb_key_order(&a, &a), std::cmp::Ordering::Equal);
    }

    #[test]
    fn prop_base10000_order_matches_decimal(a in number_text(), b in number_text()) {
        let (da, db) = (Decimal::parse(&a), Decimal::parse(&b));
        prop_assert!(da.is_some() && db.is_some());
        if let (Some(da), Some(db)) = (da, db) {
            let (ba, bb) = (Base10000::from_decimal(&da), Base10000::from_decimal(&db));
            prop_assert_eq!(ba.cmp(&bb), da.cmp(&db));
            prop_assert_eq!(&ba.to_decimal(), &da);
            prop_assert_eq!(ba.is_integer(), da.is_integer());
            prop_assert_eq!(ba.significant_digits(), da.significant_digits());
        }
    }
}

/// A document that breaks a rule a huge number of times yields a bounded error list (a DETAIL
/// of hundreds of MB would exhaust the backend's memory).
#[test]
fn errors_are_capped() {
    let options: Vec<String> = (0..1000).map(|i| format!("option number {i}")).collect();
    let e = compile_entity(
        "projects",
        &[FieldSpec {
            entity_table: "projects".into(),
            field_name: "big".into(),
            field_type: "select".into(),
            is_required: false,
            is_sortable: false,
            default_value: None,
            validation_rules: json!({"options": options, "multiple": true}),
        }],
        UnknownKeyPolicy::Reject,
    )
    .unwrap();
    let bad: Vec<String> = (0..52_000).map(|i| format!("bad{i}")).collect();
    let mut doc = json!({"big": bad});
    for i in 0..1000 {
        doc[format!("unknown_{i:04}")] = json!(1);
    }
    let out = validate_document(&e, Some(&doc), Operation::Insert);
    assert_eq!(out.errors.len(), MAX_ERRORS + 1);
    let last = out.errors.last().unwrap();
    assert_eq!(last.code, "too_many_errors");
    assert_eq!(last.message, "986 more error(s) not shown");
    let big: Vec<_> = out
        .errors
        .iter()
        .filter(|e| e.field.as_deref() == Some("big"))
        .collect();
    assert_eq!(big.len(), 6);
    assert_eq!(
        big[5].message,
        "\"big\": 51995 more item(s) not checked after 5 errors"
    );
    assert!(
        big[0]
            .message
            .ends_with("… (1000 options in all)], got \"bad0\""),
        "{}",
        big[0].message
    );
    assert!(errors_detail(&out.errors).len() < 8_000);
}

#[test]
fn patterns_follow_ecma_262_like_json_schema() {
    // \d is [0-9] in JSON Schema (ECMA-262): Arabic-Indic digits do not match, in a text
    // field's pattern as in a json field's schema.
    let text = compile_field(&spec(
        "zip",
        "text",
        false,
        None,
        json!({"pattern": "^\\d{5}$"}),
    ))
    .unwrap();
    let schema = compile_field(&spec(
        "doc",
        "json",
        false,
        None,
        json!({"schema": {"type": "string", "pattern": "^\\d{5}$"}}),
    ))
    .unwrap();
    for (input, ok) in [
        ("12345", true),
        ("\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}", false),
        ("1234", false),
    ] {
        let mut e1 = Vec::new();
        check_value(&text, &json!(input), &mut e1);
        let mut e2 = Vec::new();
        check_value(&schema, &json!(input), &mut e2);
        assert_eq!(e1.is_empty(), ok, "text pattern on {input:?}: {e1:?}");
        assert_eq!(
            e2.is_empty(),
            ok,
            "json schema pattern on {input:?}: {e2:?}"
        );
    }
    // \w is ASCII too
    let w = compile_field(&spec(
        "code",
        "text",
        false,
        None,
        json!({"pattern": "^\\w+$"}),
    ))
    .unwrap();
    let mut e = Vec::new();
    check_value(&w, &json!("caf\u{e9}"), &mut e);
    assert_eq!(e.len(), 1);
    // lookaround is refused when the field is defined
    let bad =
        compile_field(&spec("x", "text", false, None, json!({"pattern": "(?=a)"}))).unwrap_err();
    assert!(bad.message.contains("look-around"), "{bad}");
}

#[test]
fn defaults_pass_is_required_for_every_type() {
    let e = compile_field(&spec("meta", "json", true, Some("null"), json!({}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field \"meta\": default value \"null\" is invalid: \"meta\" is required"
    );
    // an optional json field may default to null; a required one to any non-null value
    assert!(compile_field(&spec("meta", "json", false, Some("null"), json!({}))).is_ok());
    assert!(compile_field(&spec("meta", "json", true, Some("{}"), json!({}))).is_ok());
    assert!(compile_field(&spec("meta", "text", true, Some(""), json!({}))).is_ok());
}

#[test]
fn sortable_values_fit_an_index_entry() {
    let mut s = spec("note", "text", false, None, json!({}));
    s.is_sortable = true;
    let f = compile_field(&s).unwrap();
    let e = compile_entity("clients", &[s.clone()], UnknownKeyPolicy::Reject).unwrap();
    let long = "x".repeat(6_400);
    let out = validate_document(&e, Some(&json!({"note": long})), Operation::Insert);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].code, "index_limit");
    assert_eq!(
        out.errors[0].message,
        "\"note\" is sortable (indexed): its value may be at most 2000 bytes, got 6400"
    );
    let ok = validate_document(
        &e,
        Some(&json!({"note": "x".repeat(2_000)})),
        Operation::Insert,
    );
    assert!(ok.is_valid());
    // the same value in a field that is not sortable is fine
    let plain = compile_entity(
        "clients",
        &[spec("note", "text", false, None, json!({}))],
        UnknownKeyPolicy::Reject,
    )
    .unwrap();
    assert!(validate_document(
        &plain,
        Some(&json!({"note": "x".repeat(6_400)})),
        Operation::Insert
    )
    .is_valid());
    // a default is held to it too
    let mut d = s.clone();
    d.default_value = Some("y".repeat(2_001));
    assert!(
        compile_field(&d)
            .unwrap_err()
            .message
            .contains("index_limit")
            || compile_field(&d).is_err()
    );
    let _ = f;
}
