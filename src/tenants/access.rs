//! The SQL API of a tenant's access: limits of its application role and rotation of its
//! credential (see `roles`). Changes take effect after COMMIT, through the outbox.

use super::catalog::{tenant_json, Tenant};
use super::outbox;
use crate::err::OrRaise;
use crate::shim::{invalid, tenant_id_arg};
use pgrx::prelude::*;
use pgrx::JsonB;

/// `v` within `range`, or 22023 naming the argument.
fn bounded(what: &str, v: Option<i64>, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    if let Some(x) = v {
        if !range.contains(&x) {
            invalid(
                format!(
                    "{what} must be between {} and {}, got {x}",
                    range.start(),
                    range.end()
                ),
                None,
                None,
            );
        }
    }
    v
}

/// Sets the limits of the tenant's application role, which routed calls log in as; a NULL
/// argument keeps the current value. `statement_timeout_ms`: milliseconds a statement may run
/// (0: no limit); `connection_limit`: concurrent sessions of the role (-1: no limit);
/// `temp_file_limit_kb`: temporary file space per session in kB (-1: no limit). Applied to the
/// role after COMMIT (new sessions see them; messiah's own pooled connections are reopened).
/// Returns the tenant. Errors: 22023 out of range; 42704 no such tenant; 55000 another
/// installation's tenant.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_set_tenant_limits(
    tenant_id: Option<&str>,
    statement_timeout_ms: default!(Option<i64>, "NULL"),
    connection_limit: default!(Option<i64>, "NULL"),
    temp_file_limit_kb: default!(Option<i64>, "NULL"),
) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    let timeout = bounded(
        "statement_timeout_ms",
        statement_timeout_ms,
        0..=i64::from(i32::MAX),
    );
    let connections = bounded("connection_limit", connection_limit, -1..=100_000);
    let temp = bounded(
        "temp_file_limit_kb",
        temp_file_limit_kb,
        -1..=i64::from(i32::MAX),
    );
    let t = Tenant::existing(id.as_str(), true).or_raise();
    t.require_ours().or_raise();
    crate::spi::run(
        "UPDATE messiah.tenants SET \
             statement_timeout_ms = CASE WHEN $2::bigint IS NULL THEN statement_timeout_ms \
                                         ELSE NULLIF($2::bigint, 0)::integer END, \
             connection_limit = coalesce($3::integer, connection_limit), \
             temp_file_limit_kb = coalesce($4, temp_file_limit_kb) \
         WHERE tenant_id = $1",
        &[
            id.as_str().into(),
            timeout.into(),
            connections.map(|c| c as i32).into(),
            temp.into(),
        ],
    );
    if t.lifecycle == "ready" {
        outbox::enqueue(outbox::Action::ApplyRoles, &t);
    }
    JsonB(tenant_json(id.as_str()).unwrap_or_default())
}

/// Rotates the password of the tenant's application role: a new one is derived from the
/// current key of `messiah.key_file` and set after COMMIT (the old one stops working then;
/// routed calls use the new one). Returns the tenant. Errors: F0000 no usable key file; 42704
/// no such tenant; 55000 another installation's tenant.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_rotate_tenant_credentials(tenant_id: Option<&str>) -> JsonB {
    let id = tenant_id_arg(tenant_id);
    let key = crate::secrets::ring().or_raise().current().id().to_string();
    let t = Tenant::existing(id.as_str(), true).or_raise();
    t.require_ours().or_raise();
    rotate(&t, &key);
    JsonB(tenant_json(id.as_str()).unwrap_or_default())
}

/// Moves tenant `t`'s credential to key `key_id`, a new version, and queues its application.
pub fn rotate(t: &Tenant, key_id: &str) {
    crate::spi::run(
        "UPDATE messiah.tenants SET credential_key_id = $2, credential_version = credential_version + 1 \
         WHERE tenant_id = $1",
        &[t.tenant_id.as_str().into(), key_id.into()],
    );
    if t.lifecycle == "ready" {
        outbox::enqueue(outbox::Action::ApplyRoles, t);
    }
}
