//! Reading the tenant catalog (over SPI, with bind parameters).

use crate::err::{Code, Error};
use crate::remote::Server;
use pgrx::prelude::*;
use pgrx::JsonB;

/// A catalog row, as the calling transaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// `messiah.tenants.id` (uuid as text).
    pub row_id: String,
    pub tenant_id: String,
    pub database_name: String,
    pub server_id: i64,
    pub status: String,
    pub lifecycle: String,
    pub installation_id: String,
    /// xid8 of the inserting (sub)transaction, as text.
    pub creating_xid: String,
    pub snapshot_version: i64,
    /// `postgres` (a database messiah provisioned) or `supabase` (a schema in an existing
    /// Supabase project's database, see [`Tenant::is_supabase`]).
    pub connector_type: String,
    /// The schema of the tenant's tables (`public`; `tenant_<id>` for supabase).
    pub schema_name: String,
    /// Role that owns the tenant's tables (NOLOGIN).
    pub owner_role: String,
    /// Limits of the application role; `None`: the server's setting.
    pub limits: Limits,
    /// The application role's password is derived from this key id and version.
    pub credential_key_id: Option<String>,
    pub credential_version: i64,
}

/// [`Tenant::for_route`]'s result.
#[derive(Debug, Clone)]
pub struct RouteRow {
    pub tenant: Tenant,
    pub server: Server,
    pub installation_id: String,
    /// `apply_roles` actions are queued for the tenant.
    pub roles_queued: bool,
    /// The version of the tenant's catalog row (its `xmin`): every change to the row gives a
    /// new one (the result cache's keys include it).
    pub row_version: String,
}

/// Per-tenant limits (catalog columns), applied to the tenant's application role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    pub statement_timeout_ms: Option<i64>,
    /// -1: no limit.
    pub connection_limit: i64,
    /// -1: no limit.
    pub temp_file_limit_kb: Option<i64>,
}

const COLUMNS: &str = "id::text, tenant_id, database_name, server_id::text, status, lifecycle, \
                       installation_id::text, coalesce(creating_xid::text, ''), snapshot_version::text, \
                       connector_type, owner_role, statement_timeout_ms::text, connection_limit::text, \
                       temp_file_limit_kb::text, credential_key_id, credential_version::text, schema_name";
const NCOLUMNS: usize = 17;

fn from_row(r: Vec<Option<String>>) -> Tenant {
    let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    Tenant {
        row_id: t(0),
        tenant_id: t(1),
        database_name: t(2),
        server_id: t(3).parse().unwrap_or(0),
        status: t(4),
        lifecycle: t(5),
        installation_id: t(6),
        creating_xid: t(7),
        snapshot_version: t(8).parse().unwrap_or(0),
        connector_type: t(9),
        owner_role: t(10),
        limits: Limits {
            statement_timeout_ms: t(11).parse().ok(),
            connection_limit: t(12).parse().unwrap_or(-1),
            temp_file_limit_kb: t(13).parse().ok(),
        },
        credential_key_id: r.get(14).cloned().flatten(),
        credential_version: t(15).parse().unwrap_or(1),
        schema_name: t(16),
    }
}

impl Tenant {
    /// A `supabase` tenant: its tables live in schema `tenant_<id>` of an existing Supabase
    /// project's database, which has no messiah library (no trigger, no catalog copy): routed
    /// writes are validated by messiah before they are sent, and the database is never
    /// created or dropped by messiah.
    pub fn is_supabase(&self) -> bool {
        self.connector_type == "supabase"
    }

    /// The row of `tenant_id`, whatever its lifecycle; `lock` takes FOR UPDATE.
    pub fn find(tenant_id: &str, lock: bool) -> Option<Tenant> {
        let q = format!(
            "SELECT {COLUMNS} FROM messiah.tenants WHERE tenant_id = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        );
        let rows = if lock {
            crate::spi::text_rows_mut(&q, &[tenant_id.into()], NCOLUMNS)
        } else {
            crate::spi::text_rows(&q, &[tenant_id.into()], NCOLUMNS)
        };
        rows.into_iter().next().map(from_row)
    }

    /// What a routed call needs, in one catalog read: the row of `tenant_id`, its server,
    /// this installation's id, and whether role changes are queued for it.
    pub fn for_route(tenant_id: &str) -> Option<RouteRow> {
        let q = format!(
            "SELECT x.*, s.id::text, s.name, s.conninfo, s.status, i.id::text, \
                    EXISTS (SELECT 1 FROM messiah.outbox o WHERE o.tenant_id OPERATOR(pg_catalog.=) x.tenant_id \
                            AND o.action OPERATOR(pg_catalog.=) 'apply_roles')::text \
             FROM (SELECT {COLUMNS}, xmin::text AS row_version FROM messiah.tenants WHERE tenant_id = $1) x \
             JOIN messiah.servers s ON s.id OPERATOR(pg_catalog.=) x.server_id::bigint \
             CROSS JOIN messiah.installation i"
        );
        let mut row = crate::spi::text_rows(&q, &[tenant_id.into()], NCOLUMNS + 7)
            .into_iter()
            .next()?;
        let mut rest = row.split_off(NCOLUMNS);
        let row_version = rest.remove(0).unwrap_or_default();
        Some(RouteRow {
            tenant: from_row(row),
            server: Server::from_text(&rest[..4]),
            installation_id: rest[4].clone().unwrap_or_default(),
            roles_queued: rest[5].as_deref() == Some("true"),
            row_version,
        })
    }

    /// Every `ready` row, ordered by tenant_id (health checks).
    pub fn all_ready() -> Vec<Tenant> {
        crate::spi::text_rows(
            &format!("SELECT {COLUMNS} FROM messiah.tenants WHERE lifecycle = 'ready' ORDER BY tenant_id"),
            &[],
            NCOLUMNS,
        )
        .into_iter()
        .map(from_row)
        .collect()
    }

    /// The row with primary key `row_id`.
    pub fn by_row_id(row_id: &str) -> Option<Tenant> {
        crate::spi::text_rows(
            &format!("SELECT {COLUMNS} FROM messiah.tenants WHERE id = $1::uuid"),
            &[row_id.into()],
            NCOLUMNS,
        )
        .into_iter()
        .next()
        .map(from_row)
    }

    /// Every row on `server_id`, by tenant_id.
    pub fn on_server(server_id: i64) -> Vec<Tenant> {
        crate::spi::text_rows(
            &format!(
                "SELECT {COLUMNS} FROM messiah.tenants WHERE server_id = $1 ORDER BY tenant_id"
            ),
            &[server_id.into()],
            NCOLUMNS,
        )
        .into_iter()
        .map(from_row)
        .collect()
    }

    /// A tenant that exists and is not being dropped: 42704 otherwise.
    pub fn existing(tenant_id: &str, lock: bool) -> Result<Tenant, Error> {
        match Tenant::find(tenant_id, lock) {
            Some(t) if t.lifecycle != "dropping" => Ok(t),
            _ => Err(not_found(tenant_id)),
        }
    }

    /// Whether this installation manages the tenant (a restored copy's rows name the
    /// original installation until messiah_takeover()).
    pub fn is_ours(&self) -> bool {
        self.installation_id == installation_id()
    }

    /// 55000 for a tenant another installation manages.
    pub fn require_ours(&self) -> Result<(), Error> {
        self.require_installation(&installation_id())
    }

    /// 55000 unless installation `id` (this one's, read by the caller) manages the tenant.
    pub fn require_installation(&self, id: &str) -> Result<(), Error> {
        if self.installation_id == id {
            return Ok(());
        }
        Err(Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "tenant \"{}\" is managed by another messiah installation ({})",
                self.tenant_id, self.installation_id
            ),
        )
        .detail("This admin database is a restored copy, or the tenant was taken over by another installation.")
        .hint("messiah_takeover() makes this installation manage the tenants of a restored copy."))
    }

    /// The server the tenant's database lives on.
    pub fn server(&self) -> Result<Server, Error> {
        Server::by_id(self.server_id)
    }

    /// `tenant "acme" on server "local" (database "tenant_acme")`, for CONTEXT lines.
    pub fn describe(&self, server: &Server) -> String {
        format!(
            "tenant \"{}\" on server \"{}\" (database \"{}\")",
            self.tenant_id, server.name, self.database_name
        )
    }

    /// The catalog copy of this tenant as the calling transaction sees it.
    pub fn snapshot(&self) -> serde_json::Value {
        snapshot_json(&self.tenant_id)
    }
}

/// The tenant as the API returns it (`messiah.tenant_json`).
pub fn tenant_json(tenant_id: &str) -> Option<serde_json::Value> {
    crate::spi::one::<JsonB>(
        "SELECT messiah.tenant_json(t) FROM messiah.tenants t WHERE t.tenant_id = $1",
        &[tenant_id.into()],
    )
    .map(|j| j.0)
}

/// The catalog copy `{"version","policy","fields","tenant"}` of a tenant (`messiah.snapshot_json`).
pub fn snapshot_json(tenant_id: &str) -> serde_json::Value {
    crate::spi::one::<JsonB>("SELECT messiah.snapshot_json($1)", &[tenant_id.into()])
        .map(|j| j.0)
        .unwrap_or(serde_json::Value::Null)
}

/// 42704: no such tenant.
pub fn not_found(tenant_id: &str) -> Error {
    Error::new(
        Code::ERRCODE_UNDEFINED_OBJECT,
        format!("tenant \"{tenant_id}\" does not exist"),
    )
    .hint("messiah_list_tenants() lists the tenants.")
}

/// The id of this admin installation.
pub fn installation_id() -> String {
    // the table read directly (a kept plan), not through the SQL function, whose body would
    // be planned again on every call
    crate::spi::one_ro::<String>("SELECT i.id::text FROM messiah.installation i", &[])
        .unwrap_or_default()
}

/// Bumps the tenant's snapshot version (a new value of the sequence, never reused) and
/// queues the push of its catalog copy after COMMIT. The row lock also serializes concurrent
/// changes of one tenant.
pub fn bump_snapshot(t: &Tenant) -> Result<(), Error> {
    Spi::run_with_args(
        "UPDATE messiah.tenants SET snapshot_version = nextval('messiah.snapshot_version_seq') \
         WHERE tenant_id = $1",
        &[t.tenant_id.as_str().into()],
    )
    .map_err(|e| Error::new(Code::ERRCODE_INTERNAL_ERROR, e.to_string()))?;
    if t.lifecycle == "ready" {
        crate::tenants::outbox::enqueue(crate::tenants::outbox::Action::PushSnapshot, t);
    }
    Ok(())
}
