//! Tenants: the catalog, provisioning at COMMIT, the outbox of remote actions carried out after
//! COMMIT, reconcile/adopt/takeover, and the SQL API over them.

pub mod access;
pub mod api;
pub mod args;
pub mod catalog;
pub mod indexes;
pub mod marker;
pub mod outbox;
pub mod provision;
pub mod reconcile;
pub mod roles;
pub mod supabase;
