//! Values returned by the lifecycle API: get, list, update, set_status, and their errors.

use crate::common::*;
use serde_json::{json, Value};

/// The tenant JSON without the volatile keys.
fn stable(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("a tenant is a JSON object");
    for k in ["id", "created_at", "updated_at"] {
        assert!(o.remove(k).is_some(), "missing key {k}");
    }
    v
}

#[test]
fn lifecycle_api_returns_exact_values() {
    for id in ["a", "b", "c"] {
        drop_db(&format!("tenant_it_api_{id}"));
    }
    let mut admin = admin_db("messiah_it_api");
    let created = json(
        &mut admin,
        "messiah_create_tenant('it_api_a', 'Acme', 'it-api-a', contact_email => 'ops@acme.test', \
         contact_name => 'Ann', settings => '{\"unknown_custom_fields\": \"strip\", \"theme\": {\"color\": \"red\"}}', \
         config => '{\"supabase_project_id\": \"proj1\", \"supabase_url\": \"https://proj1.supabase.co\", \
                     \"anon_key\": \"anon-1\", \"service_key\": \"very-secret-1\"}')",
    );
    let expected_a = json!({
        "tenant_id": "it_api_a",
        "name": "Acme",
        "slug": "it-api-a",
        "status": "active",
        "contact_email": "ops@acme.test",
        "contact_name": "Ann",
        "settings": {"unknown_custom_fields": "strip", "theme": {"color": "red"}},
        "database": "tenant_it_api_a",
        "server": "local",
        "connector_type": "postgres",
        "schema": "public",
        "roles": {"application": "tenant_it_api_a", "owner": "owner_it_api_a"},
        "limits": {"statement_timeout_ms": 30000, "connection_limit": 20, "temp_file_limit_kb": 1048576},
        "lifecycle": "provisioning",
        "snapshot_version": 0,
        "supabase": {
            "supabase_project_id": "proj1",
            "supabase_url": "https://proj1.supabase.co",
            "anon_key": "********",
            "service_key": "********",
            "region": "us-east-1",
            "plan": "free",
            "is_active": true
        }
    });
    assert_eq!(stable(created.clone()), expected_a);
    let id: String = admin
        .query_one(
            "SELECT id::text FROM messiah.tenants WHERE tenant_id = 'it_api_a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(created["id"], json!(id));
    // the secret is stored encrypted, returned only by messiah_get_secret
    let key: String = admin
        .query_one(
            "SELECT service_key FROM messiah.tenant_supabase_configs WHERE tenant_id = 'it_api_a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        key.starts_with("msk1:") && !key.contains("very-secret-1"),
        "{key}"
    );
    let secret: String = admin
        .query_one("SELECT messiah_get_secret('it_api_a', 'service_key')", &[])
        .unwrap()
        .get(0);
    assert_eq!(secret, "very-secret-1");
    let got = json(&mut admin, "messiah_get_tenant('it_api_a')");
    // committed: the database exists and the row is ready
    assert_eq!(got["lifecycle"], json!("ready"));
    let mut ready = created.clone();
    ready["lifecycle"] = json!("ready");
    assert_eq!(got, ready);
    assert!(!got.to_string().contains("very-secret-1"));
    assert!(db_exists("tenant_it_api_a"));

    let b = json(
        &mut admin,
        "messiah_create_tenant('it_api_b', 'Beta', 'it-api-b')",
    );
    assert_eq!(
        stable(b),
        json!({
            "tenant_id": "it_api_b", "name": "Beta", "slug": "it-api-b", "status": "active",
            "contact_email": null, "contact_name": null, "settings": {},
            "database": "tenant_it_api_b", "server": "local", "lifecycle": "provisioning",
            "snapshot_version": 0, "supabase": null, "connector_type": "postgres", "schema": "public",
            "roles": {"application": "tenant_it_api_b", "owner": "owner_it_api_b"},
            "limits": {"statement_timeout_ms": 30000, "connection_limit": 20, "temp_file_limit_kb": 1048576}
        })
    );
    admin
        .execute(
            "SELECT messiah_create_tenant('it_api_c', 'Gamma', 'it-api-c')",
            &[],
        )
        .unwrap();

    // set_status
    let s = json(
        &mut admin,
        "messiah_set_tenant_status('it_api_b', 'suspended')",
    );
    assert_eq!(s["status"], json!("suspended"));
    assert_eq!(s["tenant_id"], json!("it_api_b"));

    // list
    let list = |admin: &mut postgres::Client, args: &str| -> Vec<String> {
        admin
            .query(
                &format!("SELECT t ->> 'tenant_id' FROM messiah_list_tenants({args}) t"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(list(&mut admin, ""), ["it_api_a", "it_api_b", "it_api_c"]);
    assert_eq!(list(&mut admin, "status => 'suspended'"), ["it_api_b"]);
    assert_eq!(
        list(&mut admin, "status => 'active'"),
        ["it_api_a", "it_api_c"]
    );
    assert_eq!(
        list(&mut admin, "status => 'inactive'"),
        Vec::<String>::new()
    );
    assert_eq!(
        list(&mut admin, "\"offset\" => 1, \"limit\" => 1"),
        ["it_api_b"]
    );
    assert_eq!(list(&mut admin, "\"offset\" => 2"), ["it_api_c"]);
    assert_eq!(list(&mut admin, "\"offset\" => 3"), Vec::<String>::new());
    assert_eq!(
        list(
            &mut admin,
            "status => 'active', \"offset\" => 1, \"limit\" => 5"
        ),
        ["it_api_c"]
    );
    let listed = json(
        &mut admin,
        "(SELECT t FROM messiah_list_tenants(\"limit\" => 1) t)",
    );
    assert_eq!(listed, ready);
    for (args, what) in [
        ("status => 'deleted'", "deleted"),
        ("\"offset\" => -1", "offset"),
        ("\"limit\" => 0", "limit"),
        ("\"limit\" => 1001", "limit"),
    ] {
        let e = fails(
            &mut admin,
            &format!("SELECT * FROM messiah_list_tenants({args})"),
        );
        assert_eq!(sqlstate(&e), "22023", "{args}: {e}");
        assert!(message(&e).contains(what), "{args}: {e}");
    }

    // update: merge patch of settings, contacts cleared by null
    let before_updated: String = admin
        .query_one(
            "SELECT updated_at::text FROM messiah.tenants WHERE tenant_id = 'it_api_a'",
            &[],
        )
        .unwrap()
        .get(0);
    let u = json(
        &mut admin,
        "messiah_update_tenant('it_api_a', '{\"name\": \"Acme Corp\", \"contact_name\": null, \
         \"settings\": {\"theme\": {\"color\": null, \"font\": \"serif\"}, \"beta\": true}}')",
    );
    let mut expected = expected_a.clone();
    expected["name"] = json!("Acme Corp");
    expected["contact_name"] = Value::Null;
    expected["settings"] =
        json!({"unknown_custom_fields": "strip", "theme": {"font": "serif"}, "beta": true});
    expected["lifecycle"] = json!("ready");
    // the tenant database's copy of the row follows: a new snapshot version
    assert!(u["snapshot_version"].as_i64().unwrap() > 0, "{u}");
    expected["snapshot_version"] = u["snapshot_version"].clone();
    assert_eq!(stable(u.clone()), expected);
    assert_eq!(u["id"], created["id"]);
    assert_eq!(u["created_at"], created["created_at"]);
    let after_updated: String = admin
        .query_one(
            "SELECT updated_at::text FROM messiah.tenants WHERE tenant_id = 'it_api_a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_ne!(before_updated, after_updated, "updated_at is maintained");
    assert_eq!(
        stable(json(&mut admin, "messiah_get_tenant('it_api_a')")),
        expected
    );
    let u = json(
        &mut admin,
        "messiah_update_tenant('it_api_a', '{\"slug\": \"acme-corp\"}')",
    );
    assert_eq!(u["slug"], json!("acme-corp"));

    // update errors
    for (patch, state, what) in [
        ("{\"status\": \"inactive\"}", "22023", "status"),
        ("{\"tenant_id\": \"x\"}", "22023", "tenant_id"),
        ("{\"name\": \"  \"}", "22023", "name"),
        ("{\"slug\": \"Bad Slug\"}", "22023", "Bad Slug"),
        (
            "{\"contact_email\": \"not-an-email\"}",
            "22023",
            "not-an-email",
        ),
        (
            "{\"settings\": {\"unknown_custom_fields\": \"maybe\"}}",
            "22023",
            "unknown_custom_fields",
        ),
        ("{\"settings\": 5}", "22023", "settings"),
        ("{\"slug\": \"it-api-b\"}", "23505", "it-api-b"),
    ] {
        let e = fails(
            &mut admin,
            &format!("SELECT messiah_update_tenant('it_api_a', '{patch}')"),
        );
        assert_eq!(sqlstate(&e), state, "{patch}: {e}");
        assert!(message(&e).contains(what), "{patch}: {e}");
    }
    let e = fails(
        &mut admin,
        "SELECT messiah_update_tenant('it_api_a', '[1]')",
    );
    assert_eq!(sqlstate(&e), "22023", "{e}");
    let e = fails(
        &mut admin,
        "SELECT messiah_update_tenant('it_api_zz', '{\"name\": \"x\"}')",
    );
    assert_eq!(sqlstate(&e), "42704", "{e}");
    // nothing changed by the failed updates
    let mut expected_now = expected.clone();
    expected_now["slug"] = json!("acme-corp");
    expected_now["snapshot_version"] = u["snapshot_version"].clone();
    assert_eq!(
        stable(json(&mut admin, "messiah_get_tenant('it_api_a')")),
        expected_now
    );

    // set_status errors
    let e = fails(
        &mut admin,
        "SELECT messiah_set_tenant_status('it_api_a', 'deleted')",
    );
    assert_eq!(sqlstate(&e), "22023", "{e}");
    assert!(message(&e).contains("deleted"), "{e}");
    let e = fails(
        &mut admin,
        "SELECT messiah_set_tenant_status('it_api_a', NULL)",
    );
    assert_eq!(sqlstate(&e), "22004", "{e}");
    let e = fails(
        &mut admin,
        "SELECT messiah_set_tenant_status('it_api_zz', 'active')",
    );
    assert_eq!(sqlstate(&e), "42704", "{e}");
    let e = fails(&mut admin, "SELECT messiah_get_tenant('it_api_zz')");
    assert_eq!(sqlstate(&e), "42704", "{e}");
    assert!(message(&e).contains("it_api_zz"), "{e}");
    let e = fails(&mut admin, "SELECT messiah_get_tenant('It-Api')");
    assert_eq!(sqlstate(&e), "22023", "{e}");

    // create with a taken slug: 23505, nothing created
    drop_db("tenant_it_api_d");
    let e = fails(
        &mut admin,
        "SELECT messiah_create_tenant('it_api_d', 'Delta', 'it-api-b')",
    );
    assert_eq!(sqlstate(&e), "23505", "{e}");
    assert!(!db_exists("tenant_it_api_d"));
    assert_eq!(tenant_rows(&mut admin, "it_api_d"), 0);

    for id in ["a", "b", "c"] {
        admin
            .execute("SELECT messiah_drop_tenant($1)", &[&format!("it_api_{id}")])
            .unwrap();
        settle(&mut admin);
        assert!(!db_exists(&format!("tenant_it_api_{id}")));
    }
    assert_eq!(list(&mut admin, ""), Vec::<String>::new());
    let configs: i64 = admin
        .query_one("SELECT count(*) FROM messiah.tenant_supabase_configs", &[])
        .unwrap()
        .get(0);
    assert_eq!(configs, 0);
}
