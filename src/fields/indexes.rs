//! Which index each field flag gets in the tenant database (decided from measurements, see the
//! README's "Indexes" section). Plain Rust.
//!
//! - `is_filterable`: no index of its own. The tenant schema's GIN index on `custom_fields`
//!   (clients, projects) serves containment, `custom_fields @> '{"country": "Brazil"}'`, which
//!   is what PostgREST's `custom_fields=cs.{"country":"Brazil"}` compiles to. A hash or btree
//!   index per filterable field nearly doubled the cost of every insert (14.0 -> 25.3 us a row
//!   with five fields) for filters the GIN index already serves.
//! - `is_sortable`: one btree expression index, `messiah_cf_<table>_<field>`, on the form
//!   PostgREST and SQL order and compare by: `custom_fields ->> 'f'` (text) for text, select and
//!   date fields (ISO dates order as text), `custom_fields -> 'f'` (jsonb, numbers compared as
//!   numbers) for number, boolean and json fields. It also serves equality and range filters
//!   in that form (`custom_fields->>country=eq.Brazil`).
//! - `activities` has no GIN index in the seed (the largest table, read by project): its
//!   filterable fields get no index; sortable ones get their btree index as anywhere else.

use super::define::FieldType;
use serde_json::Value;

/// Prefix of every field index messiah keeps.
pub const PREFIX: &str = "messiah_cf_";

/// One index messiah keeps in a tenant database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// `messiah_cf_<table>_<field>` (at most 11 + 10 + 1 + 40 = 62 bytes).
    pub name: String,
    pub table: String,
    /// The indexed expression, e.g. `(custom_fields ->> 'country')`.
    pub expression: String,
}

impl IndexSpec {
    /// `CREATE INDEX CONCURRENTLY IF NOT EXISTS ...` (a statement of its own: it cannot run in a
    /// transaction block or a function).
    pub fn create_sql(&self) -> String {
        format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{}\" ON public.\"{}\" USING btree ({})",
            self.name, self.table, self.expression
        )
    }

    /// Whether `indexdef` (pg_get_indexdef of an existing index of that name) is this index.
    pub fn matches(&self, indexdef: &str) -> bool {
        // pg_get_indexdef deparses `(custom_fields ->> 'f')` as `((custom_fields ->> 'f'::text))`
        let deparsed = self.expression.replacen("')", "'::text)", 1);
        indexdef.contains(&format!(" ON public.{} USING btree ", self.table))
            && indexdef.ends_with(&format!("USING btree (({deparsed}))"))
    }
}

/// `DROP INDEX CONCURRENTLY IF EXISTS public."<name>"`.
pub fn drop_sql(name: &str) -> String {
    format!(
        "DROP INDEX CONCURRENTLY IF EXISTS public.\"{}\"",
        name.replace('"', "\"\"")
    )
}

/// The indexes a catalog snapshot (`{"fields": [...]}`) calls for.
pub fn wanted(snapshot: &Value) -> Vec<IndexSpec> {
    let mut out = Vec::new();
    for f in snapshot
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let flag = |k: &str| f.get(k).and_then(Value::as_bool).unwrap_or(false);
        let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("");
        let (table, field) = (text("entity_table"), text("field_name"));
        let active = f.get("is_active").and_then(Value::as_bool).unwrap_or(true);
        if !active || !flag("is_sortable") || !super::ENTITY_TABLES.contains(&table) {
            continue;
        }
        // field names are lowercase identifiers (checked when defined); quoted anyway
        if super::check_field_name(table, field).is_err() {
            continue;
        }
        let op = match FieldType::parse(text("field_type")) {
            Some(FieldType::Text | FieldType::Select | FieldType::Date) => "->>",
            Some(_) => "->",
            None => continue,
        };
        out.push(IndexSpec {
            name: format!("{PREFIX}{table}_{field}"),
            table: table.to_string(),
            expression: format!("(custom_fields {op} '{field}')"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sortable_fields_get_one_btree_in_the_form_they_are_compared_by() {
        let snap = json!({"fields": [
            {"entity_table": "clients", "field_name": "country", "field_type": "select", "is_filterable": true, "is_sortable": true},
            {"entity_table": "clients", "field_name": "total", "field_type": "number", "is_sortable": true},
            {"entity_table": "clients", "field_name": "note", "field_type": "text", "is_filterable": true},
            {"entity_table": "activities", "field_name": "when", "field_type": "date", "is_sortable": true, "is_active": false},
        ]});
        let w = wanted(&snap);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].name, "messiah_cf_clients_country");
        assert_eq!(
            w[0].create_sql(),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"messiah_cf_clients_country\" ON public.\"clients\" USING btree ((custom_fields ->> 'country'))"
        );
        assert!(w[0].matches(
            "CREATE INDEX messiah_cf_clients_country ON public.clients USING btree (((custom_fields ->> 'country'::text)))"
        ));
        assert!(!w[0].matches(
            "CREATE INDEX messiah_cf_clients_country ON public.clients USING hash (((custom_fields -> 'country'::text)))"
        ));
        assert_eq!(w[1].expression, "(custom_fields -> 'total')");
        assert!(w[1].matches(
            "CREATE INDEX messiah_cf_clients_total ON public.clients USING btree (((custom_fields -> 'total'::text)))"
        ));
    }
}
