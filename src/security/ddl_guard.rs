//! `DROP EXTENSION messiah` (or `DROP SCHEMA messiah`) while tenants exist would drop the
//! catalog and orphan every tenant database. A `ddl_command_start` event trigger written in C
//! sees the statement's parse tree before anything is dropped (PL/pgSQL cannot tell which
//! extension a DROP EXTENSION names, and `sql_drop` fires too late), and refuses it.

use crate::err::{Code, Error};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// pgrx's V1 calling-convention marker for [`messiah_ddl_guard`].
#[no_mangle]
pub extern "C" fn pg_finfo_messiah_ddl_guard() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The names of a DROP statement's objects when they are plain names (extensions, schemas).
///
/// # Safety
/// `stmt` must be a valid `DropStmt` whose objects are `String` nodes.
unsafe fn names(stmt: *const pg_sys::DropStmt) -> Vec<String> {
    // SAFETY: per the contract, stmt is a valid DropStmt; its object list has `length`
    // elements, each a node pointer; String nodes hold a NUL-terminated sval.
    unsafe {
        let list = (*stmt).objects;
        if list.is_null() {
            return Vec::new();
        }
        (0..(*list).length as usize)
            .filter_map(|i| {
                let node = (*(*list).elements.add(i)).ptr_value as *const pg_sys::Node;
                if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_String {
                    return None;
                }
                let s = (*(node as *const pg_sys::String)).sval;
                (!s.is_null()).then(|| std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned())
            })
            .collect()
    }
}

/// Event trigger (`ddl_command_start`, tags DROP EXTENSION and DROP SCHEMA): raises 2BP01
/// when the statement would drop messiah's catalog while it still has tenants.
///
/// # Safety
/// Called by Postgres' function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn messiah_ddl_guard(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid (contract); its context is checked to be EventTriggerData
    // before it is read as one, and its parse tree to be a DropStmt.
    let (kind, names) = unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            Error::new(
                Code::ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
                "messiah.ddl_guard() must be called as an event trigger",
            )
            .raise();
        }
        let tree = (*(context as *mut pg_sys::EventTriggerData)).parsetree;
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_DropStmt {
            return pg_sys::Datum::from(0);
        }
        let stmt = tree as *const pg_sys::DropStmt;
        ((*stmt).removeType, names(stmt))
    };
    let hits = matches!(
        kind,
        pg_sys::ObjectType::OBJECT_EXTENSION | pg_sys::ObjectType::OBJECT_SCHEMA
    ) && names.iter().any(|n| n == "messiah");
    if !hits {
        return pg_sys::Datum::from(0);
    }
    let _path = crate::spi::PinnedSearchPath::enter();
    let tenants = crate::spi::one::<i64>("SELECT count(*) FROM messiah.tenants", &[]).unwrap_or(0);
    if tenants > 0 {
        let what = if kind == pg_sys::ObjectType::OBJECT_EXTENSION {
            "extension messiah"
        } else {
            "schema messiah"
        };
        Error::new(
            Code::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!("cannot drop {what}: this admin database still has {tenants} tenant(s)"),
        )
        .detail("Dropping it would delete the tenant catalog and leave every tenant database without an owner.")
        .hint("Drop the tenants first with messiah_drop_tenant() (keep_database => true keeps their data), then drop the extension.")
        .raise();
    }
    lock_catalog();
    pg_sys::Datum::from(0)
}

/// Takes ACCESS EXCLUSIVE on every table of schema messiah at once, before the drop locks
/// them one by one in its own order: the executor worker reads them in another order, and the
/// two deadlocked. All at once means NOWAIT (a wait while holding some would deadlock the same
/// way), retried every 20 ms for up to 10 s: the executor's transactions are short. Errors:
/// 55P03 if the tables stayed locked that long.
fn lock_catalog() {
    let tables = crate::spi::column::<String>(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE n.nspname OPERATOR(pg_catalog.=) 'messiah' AND c.relkind IN ('r', 'p') ORDER BY c.oid",
        &[],
    );
    if tables.is_empty() {
        return;
    }
    let sql = format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT",
        tables.join(", ")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match crate::spi::in_subtransaction(|| crate::spi::run(&sql, &[])) {
            Ok(()) => return,
            Err(e)
                if e.code == Code::ERRCODE_LOCK_NOT_AVAILABLE
                    && std::time::Instant::now() < deadline =>
            {
                crate::spi::sleep_ms(20)
            }
            Err(e) => e.raise(),
        }
    }
}
