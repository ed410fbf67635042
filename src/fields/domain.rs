//! The entity tables of messiah and their base (non-custom) columns.

/// Entity tables that carry a `custom_fields jsonb` column.
pub const ENTITY_TABLES: &[&str] = &["clients", "projects", "activities"];

const CLIENTS: &[&str] = &[
    "id",
    "name",
    "email",
    "phone",
    "custom_fields",
    "created_at",
    "updated_at",
];
const PROJECTS: &[&str] = &[
    "id",
    "client_id",
    "name",
    "status",
    "custom_fields",
    "created_at",
    "updated_at",
];
const ACTIVITIES: &[&str] = &[
    "id",
    "project_id",
    "type",
    "description",
    "custom_fields",
    "created_at",
];

/// The base columns of `entity` (one of [`ENTITY_TABLES`]), or `None` for
/// an unknown table. A custom field may not be named like a base column.
pub fn base_columns(entity: &str) -> Option<&'static [&'static str]> {
    match entity {
        "clients" => Some(CLIENTS),
        "projects" => Some(PROJECTS),
        "activities" => Some(ACTIVITIES),
        _ => None,
    }
}
