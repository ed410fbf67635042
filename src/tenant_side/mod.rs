//! The tenant side: what runs inside each tenant database (the `messiah_tenant` extension):
//! the custom-field trigger over a per-backend compiled copy of the definitions, the install
//! of the catalog copy, and row checks. The engine itself is `crate::fields`.

pub mod enforce;
pub mod jsonb;
pub mod migrate;
pub mod stats;
pub mod tuple;
