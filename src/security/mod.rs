//! The privileged surface (DESIGN.md decision 8): who may call what (`grants`), the OpenAPI
//! description of the RPC surface (`openapi`), and the guard against dropping the extension
//! while tenants exist (`ddl_guard`).

pub mod ddl_guard;
pub mod grants;
pub mod openapi;
