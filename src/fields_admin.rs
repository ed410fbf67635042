//! Extension fields, admin side (DESIGN.md decisions 5 and 6): definitions in the catalog,
//! checked when written; the validation engine's SQL faces. A definition change bumps the
//! tenant's snapshot version and queues the push of its catalog copy, carried out after COMMIT
//! by the outbox executor (`tenants::outbox`).

use crate::err::{raise, Code, OrRaise};
use crate::fields::{self, CompiledSnapshot, FieldSpec};
use crate::ident::TenantId;
use crate::jsonarg::JsonbArg;
use crate::shim::{check, invalid, not_null, required, tenant_id_arg};
use crate::spi::one;
use crate::tenants::args;
use crate::tenants::catalog::{self, Tenant};
use pgrx::prelude::*;
use pgrx::JsonB;

/// A tenant that exists and is not being dropped: 22023 if the id is invalid, 42704 if
/// unknown. `lock` takes its row lock (serializing definition changes of one tenant).
fn tenant_row(tenant_id: &str, lock: bool) -> Tenant {
    let id = tenant_id_arg(Some(tenant_id));
    Tenant::existing(id.as_str(), lock).or_raise()
}

/// [`tenant_row`]'s id.
fn tenant(tenant_id: &str) -> TenantId {
    let t = tenant_row(tenant_id, false);
    tenant_id_arg(Some(&t.tenant_id))
}

fn entity(entity_table: &str) {
    if !fields::ENTITY_TABLES.contains(&entity_table) {
        invalid(
            format!("{entity_table:?} is not an entity table"),
            Some(format!(
                "Entity tables: {}.",
                fields::ENTITY_TABLES.join(", ")
            )),
            None,
        );
    }
}

/// The tenant's definitions as the calling transaction sees them, compiled (from the catalog
/// cache, which holds exactly that: see `cache::catalog`).
fn compiled(tenant_id: &TenantId) -> std::rc::Rc<CompiledSnapshot> {
    if let Some(s) = crate::cache::catalog::snapshot(tenant_id.as_str()) {
        return s;
    }
    let snap = catalog::snapshot_json(tenant_id.as_str());
    fields::compile_snapshot(&snap)
        .map(std::rc::Rc::new)
        .unwrap_or_else(|e| {
            raise(
                Code::ERRCODE_DATA_CORRUPTED,
                format!("the field definitions of tenant \"{tenant_id}\" do not compile: {e}"),
                None,
                None,
            )
        })
}

/// Creates or updates (and reactivates) a field definition; returns it as jsonb.
///
/// Arguments follow the catalog (original design): `field_name` a lowercase identifier
/// (`^[a-z][a-z0-9_]*$`, at most 40 bytes) that is not a base column; `entity_table` one of
/// clients | projects | activities; `field_type` text | number | boolean | date | json |
/// select; `validation_rules` a JSON object with the keys allowed for the type (text:
/// minLength, maxLength (code points), pattern (regex crate, unanchored), format email | uri
/// | uuid; number: min, max, integer; date: min, max (YYYY-MM-DD); json: schema (JSON Schema);
/// select: options, multiple); `default_value` text that parses as the type and passes the
/// rules. `is_filterable`/`is_sortable` keep an expression index on
/// `(custom_fields -> field_name)` in the tenant database.
/// The tenant database enforces the change from the COMMIT of the calling transaction on.
/// Errors: 22023 with the field named; 42704 no such tenant.
#[allow(clippy::too_many_arguments)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_define_field(
    tenant_id: Option<&str>,
    entity_table: Option<&str>,
    field_name: Option<&str>,
    field_type: Option<&str>,
    display_name: Option<&str>,
    description: default!(Option<&str>, "NULL"),
    is_required: default!(Option<bool>, false),
    is_searchable: default!(Option<bool>, true),
    is_filterable: default!(Option<bool>, true),
    is_sortable: default!(Option<bool>, false),
    default_value: default!(Option<&str>, "NULL"),
    validation_rules: default!(Option<JsonbArg>, "'{}'"),
    ui_config: default!(Option<JsonbArg>, "'{}'"),
) -> JsonB {
    let is_required = not_null("is_required", is_required);
    let is_searchable = not_null("is_searchable", is_searchable);
    let is_filterable = not_null("is_filterable", is_filterable);
    let is_sortable = not_null("is_sortable", is_sortable);
    let validation_rules = not_null("validation_rules", validation_rules);
    let ui_config = not_null("ui_config", ui_config);
    let tenant_id = required("tenant_id", tenant_id);
    let entity_table = required("entity_table", entity_table);
    let field_name = required("field_name", field_name);
    let field_type = required("field_type", field_type);
    let display_name = required("display_name", display_name);
    crate::tenants::outbox::run_in_session();
    let t = tenant_row(tenant_id, true);
    t.require_ours().or_raise();
    let id = tenant_id_arg(Some(&t.tenant_id));
    entity(entity_table);
    let what = |arg: &str| format!("field {field_name:?}: {arg}");
    check(args::check_name(&what("display_name"), display_name, true));
    if let Some(d) = description {
        check(args::check_text(
            &what("description"),
            d,
            args::MAX_DESCRIPTION_CHARS,
        ));
    }
    if let Some(d) = default_value {
        check(args::check_bytes(
            &what("default_value"),
            d.len(),
            args::MAX_DEFAULT_BYTES,
        ));
    }
    check(args::check_document(
        &what("validation_rules"),
        &validation_rules.0,
    ));
    check(args::check_document(&what("ui_config"), &ui_config.0));
    if !ui_config.0.is_object() {
        invalid(
            format!("field \"{field_name}\": ui_config must be a JSON object"),
            None,
            None,
        );
    }
    let spec = FieldSpec {
        entity_table: entity_table.into(),
        field_name: field_name.into(),
        field_type: field_type.into(),
        is_required,
        is_sortable,
        default_value: default_value.map(str::to_string),
        validation_rules: validation_rules.0.clone(),
    };
    if let Err(e) = fields::compile_field(&spec) {
        invalid(
            e.to_string(),
            None,
            Some("See messiah_define_field's documentation for the rules allowed per type.".into()),
        );
    }
    let row = one::<JsonB>(
        "INSERT INTO messiah.extension_field_definitions AS d (tenant_id, entity_table, field_name, field_type, \
             display_name, description, is_required, is_searchable, is_filterable, is_sortable, default_value, \
             validation_rules, ui_config, is_active) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,true) \
         ON CONFLICT (tenant_id, entity_table, field_name) DO UPDATE SET field_type = excluded.field_type, \
             display_name = excluded.display_name, description = excluded.description, \
             is_required = excluded.is_required, is_searchable = excluded.is_searchable, \
             is_filterable = excluded.is_filterable, is_sortable = excluded.is_sortable, \
             default_value = excluded.default_value, validation_rules = excluded.validation_rules, \
             ui_config = excluded.ui_config, is_active = true \
         RETURNING to_jsonb(d.*)",
        &[
            id.as_str().into(),
            entity_table.into(),
            field_name.into(),
            field_type.into(),
            display_name.into(),
            description.into(),
            is_required.into(),
            is_searchable.into(),
            is_filterable.into(),
            is_sortable.into(),
            default_value.into(),
            JsonB(validation_rules.0).into(),
            JsonB(ui_config.0).into(),
        ],
    )
    .unwrap_or_else(|| crate::err::internal("defining a field", "no row returned"));
    catalog::bump_snapshot(&t).or_raise();
    row
}

/// Deactivates a field (`is_active = false`; the definition stays in the catalog and
/// `messiah_define_field` reactivates it). Values already stored are kept; new writes treat
/// the key as unknown (tenant policy). Returns the definition. Errors: 42704 no such field.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_drop_field(
    tenant_id: Option<&str>,
    entity_table: Option<&str>,
    field_name: Option<&str>,
) -> JsonB {
    let tenant_id = required("tenant_id", tenant_id);
    let entity_table = required("entity_table", entity_table);
    let field_name = required("field_name", field_name);
    crate::tenants::outbox::run_in_session();
    let t = tenant_row(tenant_id, true);
    t.require_ours().or_raise();
    let id = tenant_id_arg(Some(&t.tenant_id));
    entity(entity_table);
    let row = one::<JsonB>(
        "UPDATE messiah.extension_field_definitions AS d SET is_active = false \
         WHERE tenant_id = $1 AND entity_table = $2 AND field_name = $3 RETURNING to_jsonb(d.*)",
        &[id.as_str().into(), entity_table.into(), field_name.into()],
    )
    .unwrap_or_else(|| {
        raise(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("field \"{field_name}\" of {entity_table} does not exist for tenant \"{id}\""),
            None,
            Some("messiah_list_fields() lists the fields.".into()),
        )
    });
    catalog::bump_snapshot(&t).or_raise();
    row
}

/// Lists a tenant's field definitions (active and inactive) as jsonb rows ordered by
/// entity_table and field_name, optionally for one entity table. Errors: 22023, 42704.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_list_fields(
    tenant_id: Option<&str>,
    entity_table: default!(Option<&str>, "NULL"),
) -> SetOfIterator<'static, JsonB> {
    let tenant_id = required("tenant_id", tenant_id);
    let id = tenant(tenant_id);
    if let Some(e) = entity_table {
        entity(e);
    }
    let rows = crate::spi::column::<JsonB>(
        "SELECT to_jsonb(d.*) FROM messiah.extension_field_definitions d \
         WHERE d.tenant_id = $1 AND ($2::text IS NULL OR d.entity_table = $2) \
         ORDER BY d.entity_table, d.field_name",
        &[id.as_str().into(), entity_table.into()],
    );
    SetOfIterator::new(rows)
}

/// Validates a `custom_fields` document (any jsonb) against the tenant's active definitions
/// of `entity_table` as an INSERT would, and returns every error as a jsonb array of
/// `{"field", "code", "message"}` (empty array: valid). Codes: not_object, required, type,
/// min_length, max_length, pattern, format, minimum, maximum, integer, date, schema, option,
/// duplicate, unknown_field. Errors: 22023, 42704.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_validate_custom_fields(
    tenant_id: Option<&str>,
    entity_table: Option<&str>,
    custom_fields: Option<JsonbArg>,
) -> JsonB {
    let tenant_id = required("tenant_id", tenant_id);
    let entity_table = required("entity_table", entity_table);
    let id = tenant(tenant_id);
    entity(entity_table);
    let snap = compiled(&id);
    let Some(e) = snap.entity(entity_table) else {
        crate::err::internal("validating", "entity missing from snapshot")
    };
    let doc = custom_fields.map(|j| j.0);
    JsonB(fields::errors_to_json(
        &fields::validate_document(e, doc.as_ref(), fields::Operation::Insert).errors,
    ))
}

/// The original design's applyFields: from a flat record (`data`, a JSON object), moves the
/// keys that are defined fields of `entity_table` into `custom_fields`, keeps base columns,
/// treats other keys by the tenant's unknown-field policy, applies defaults, validates, and
/// returns the record ready to insert. Errors: 23514 with every failing field in DETAIL;
/// 22023; 42704.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_apply_fields(
    tenant_id: Option<&str>,
    entity_table: Option<&str>,
    data: Option<JsonbArg>,
) -> JsonB {
    let tenant_id = required("tenant_id", tenant_id);
    let entity_table = required("entity_table", entity_table);
    let Some(data) = data else {
        raise(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "data must not be null",
            None,
            None,
        )
    };
    if !data.0.is_object() {
        invalid(
            "data must be a JSON object (a flat record of the entity's columns and fields)".into(),
            None,
            None,
        );
    }
    let id = tenant(tenant_id);
    entity(entity_table);
    let snap = compiled(&id);
    let Some(e) = snap.entity(entity_table) else {
        crate::err::internal("applying fields", "entity missing from snapshot")
    };
    match fields::apply_fields(e, &data.0) {
        Ok(v) => JsonB(v),
        Err(errors) => raise(
            Code::ERRCODE_CHECK_VIOLATION,
            format!(
                "record for {entity_table} of tenant \"{id}\" violates {}",
                fields::violation_count(&errors)
            ),
            Some(fields::errors_detail(&errors)),
            Some("messiah_list_fields() shows the definitions.".into()),
        ),
    }
}

/// Reports rows of the tenant's `entity_table` that violate its definitions as the calling
/// transaction sees them (so `BEGIN; messiah_define_field(...tighter...);
/// messiah_check_existing(...); ROLLBACK;` plans a tightening without applying it). The
/// tenant database reads its rows in batches through a cursor, so memory stays bounded
/// whatever the table's size. Returns `{"entity_table", "checked", "violations", "sample":
/// [{"id", "errors"}]}` (up to 10 samples). Errors: 22023, 42704, and the tenant database's
/// errors (08xxx when unreachable) with a CONTEXT line naming the tenant and server.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_check_existing(tenant_id: Option<&str>, entity_table: Option<&str>) -> JsonB {
    let tenant_id = required("tenant_id", tenant_id);
    let entity_table = required("entity_table", entity_table);
    let t = tenant_row(tenant_id, false);
    entity(entity_table);
    if t.is_supabase() {
        crate::err::Error::new(
            crate::err::Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("messiah_check_existing needs messiah in the tenant's database; tenant \"{}\" is a supabase tenant", t.tenant_id),
        )
        .detail("A Supabase project cannot load messiah's library: its rows are checked when routed writes are sent, not afterwards.")
        .raise();
    }
    let snap = catalog::snapshot_json(&t.tenant_id).to_string();
    let server = t.server().or_raise();
    let rows = crate::remote::query_once(
        &server.database(&t.database_name),
        "SELECT messiah.check_rows($1, $2::jsonb, 10)::text",
        &[Some(entity_table), Some(&snap)],
    )
    .map_err(|e| e.into_error(&t.describe(&server)))
    .or_raise();
    let text = rows.scalar().unwrap_or("null");
    JsonB(
        serde_json::from_str(text)
            .unwrap_or_else(|e| crate::err::internal("reading check_rows", e)),
    )
}
