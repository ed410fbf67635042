//! Custom-field validation engine of messiah (pure Rust, no Postgres).
//!
//! Catalog definitions ([`FieldSpec`], or a whole snapshot JSON) are
//! compiled once ([`compile_field`], [`compile_entity`],
//! [`compile_snapshot`]) with every definition-time check, then documents
//! are validated many times with [`validate_document`] through the
//! [`JsonView`] trait, which runs over `serde_json` values here and over
//! binary `jsonb` in the extension. Numbers are compared exactly with
//! [`Decimal`].
//!
//! Inside this module tree, paths are `super::`/`self::` only, so the
//! directory can be copied into another crate as `src/fields/`.

mod decimal;
mod define;
mod domain;
mod formats;
pub mod indexes;
mod validate;
mod view;

#[cfg(test)]
mod tests;

pub use self::decimal::{Base10000, Decimal};
pub use self::define::{
    check_field_name, compile_entity, compile_field, compile_snapshot, CompiledEntity,
    CompiledField, CompiledSnapshot, DefinitionError, FieldSpec, FieldType, TextFormat,
    UnknownKeyPolicy, MAX_FIELD_NAME_BYTES, PATTERN_SIZE_LIMIT,
};
pub use self::domain::{base_columns, ENTITY_TABLES};
pub use self::formats::is_email;
pub use self::validate::{
    apply_fields, errors_detail, errors_to_json, split_record, validate_document, violation_count,
    FieldError, Operation, Outcome, MAX_ERRORS,
};
pub use self::view::{jsonb_key_order, JsonView, Kind};
