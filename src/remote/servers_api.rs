//! The server registry's SQL API (DESIGN.md decision 9): servers that hold tenant databases.
//!
//! A server's conninfo is libpq keyword/value text without a password: passwords come from
//! the password file of the server's OS user (libpq's `passfile`, default `~/.pgpass` of the
//! `postgres` OS user), or from any method that needs no secret in the conninfo (peer, cert,
//! GSSAPI). A `dbname` in it names the maintenance database (default `postgres`). The user
//! must be able to create databases and roles there (a superuser, in practice), and the server
//! needs messiah's library (the `messiah_tenant` extension) installed.

use super::{libpq, Server};
use crate::err::{Code, Error, OrRaise};
use crate::ident::Conninfo;
use crate::jsonarg::JsonbArg;
use crate::shim::{invalid, required};
use pgrx::prelude::*;
use pgrx::JsonB;

/// Keywords refused in a stored conninfo: secrets, and settings messiah sets itself.
const REFUSED: [&str; 4] = ["password", "sslpassword", "application_name", "replication"];

/// Checks a server conninfo: keyword/value form, keywords libpq knows, no password.
/// Errors: 22023 naming the problem.
pub fn check_conninfo(text: &str) -> Result<Conninfo, Error> {
    let c = Conninfo::parse(text).map_err(|e| {
        Error::invalid(format!("conninfo is invalid: {e}"))
            .hint("Use libpq keyword=value form, e.g. host=db2.internal port=5432 user=postgres")
    })?;
    let known = libpq::known_keywords();
    for k in c.keys() {
        if REFUSED.contains(&k) {
            return Err(Error::invalid(format!("conninfo must not contain {k}"))
                .detail("The catalog never stores credentials or settings messiah chooses itself.")
                .hint("Put the password in the password file of the server's OS user (~postgres/.pgpass, or passfile=...)."));
        }
        if !known.iter().any(|n| n == k) {
            return Err(Error::invalid(format!(
                "conninfo has an unknown keyword {k:?}"
            )));
        }
    }
    if c.get("host").is_none() && c.get("hostaddr").is_none() {
        return Err(Error::invalid("conninfo must name a host (or hostaddr)"));
    }
    Ok(c)
}

fn name_arg(name: Option<&str>) -> String {
    let name = required("name", name);
    let ok = name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 63;
    if !ok {
        invalid(
            format!(
                "server name {:?} is invalid",
                name.chars().take(64).collect::<String>()
            ),
            None,
            Some(
                "A server name is a lowercase identifier (^[a-z][a-z0-9_]*$, at most 63 bytes)."
                    .into(),
            ),
        );
    }
    name.to_string()
}

fn capacity_arg(v: Option<i32>) -> Option<i32> {
    if let Some(c) = v {
        if c < 0 {
            invalid(format!("capacity must be >= 0, got {c}"), None, None);
        }
    }
    v
}

/// Connects to the server's maintenance database and checks that it can hold tenants (the
/// messiah_tenant extension is available there).
fn probe(s: &Server) -> Result<(), Error> {
    let ep = s.maintenance();
    let rows = super::query(
        &ep,
        "SELECT count(*)::text FROM pg_catalog.pg_available_extensions WHERE name = 'messiah_tenant'",
        &[],
    )
    .map_err(|e| e.into_error(&ep.describe()))?;
    if rows.scalar() != Some("1") {
        return Err(Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("server \"{}\" does not have messiah installed", s.name),
        )
        .hint("Install messiah's package (make package) on that server: tenant databases need its library and the messiah_tenant extension."));
    }
    Ok(())
}

fn server_json(name: &str) -> JsonB {
    JsonB(
        crate::spi::one::<JsonB>(
            "SELECT jsonb_build_object('name', s.name, 'conninfo', s.conninfo, 'status', s.status, \
                 'capacity', s.capacity, 'tenants', (SELECT count(*) FROM messiah.tenants t WHERE t.server_id = s.id), \
                 'created_at', s.created_at, 'updated_at', s.updated_at) \
             FROM messiah.servers s WHERE s.name = $1",
            &[name.into()],
        )
        .map(|j| j.0)
        .unwrap_or(serde_json::Value::Null),
    )
}

/// Registers a server that holds tenant databases. `conninfo`: libpq keyword/value text
/// without a password (see the module comment); `capacity`: the most tenants it may hold
/// (NULL: no limit). The server must be reachable and have messiah installed. Returns the
/// server as jsonb. Errors: 22023 bad name or conninfo (a password in it included), 23505 name
/// taken, 08001/55000 unreachable or without messiah; nothing is written on error.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_add_server(
    name: Option<&str>,
    conninfo: Option<&str>,
    capacity: default!(Option<i32>, "NULL"),
) -> JsonB {
    let name = name_arg(name);
    let c = check_conninfo(required("conninfo", conninfo)).or_raise();
    let capacity = capacity_arg(capacity);
    if Server::by_name(&name).is_ok() {
        Error::new(
            Code::ERRCODE_UNIQUE_VIOLATION,
            format!("server \"{name}\" already exists"),
        )
        .raise();
    }
    probe(&Server {
        id: -1,
        name: name.clone(),
        conninfo: c.clone(),
        status: "active".into(),
    })
    .or_raise();
    crate::spi::run(
        "INSERT INTO messiah.servers (name, conninfo, capacity) VALUES ($1, $2, $3)",
        &[
            name.as_str().into(),
            c.render().as_str().into(),
            capacity.into(),
        ],
    );
    server_json(&name)
}

/// Changes a server from `patch`, a JSON object with any of `conninfo` (applies to every
/// tenant on it; this backend's open connections to it are reset, the others' age out),
/// `status` (`active` | `draining` | `offline`: only active servers receive new tenants) and
/// `capacity` (integer >= 0 or null). Returns the server. Errors: 22023 unknown key or bad
/// value, 42704 no such server, 08001/55000 a new conninfo that does not reach a server with
/// messiah installed.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_alter_server(name: Option<&str>, patch: Option<JsonbArg>) -> JsonB {
    const KEYS: [&str; 3] = ["conninfo", "status", "capacity"];
    let name = name_arg(name);
    let mut server = Server::by_name(&name).or_raise();
    let Some(patch) = patch else {
        Error::new(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "patch must not be null",
        )
        .raise();
    };
    let Some(p) = patch.0.as_object() else {
        invalid("patch must be a JSON object".into(), None, None);
    };
    if let Some(k) = p.keys().find(|k| !KEYS.contains(&k.as_str())) {
        invalid(
            format!(
                "patch has an unknown key {:?}",
                k.chars().take(64).collect::<String>()
            ),
            Some(format!("Keys: {}.", KEYS.join(", "))),
            None,
        );
    }
    if let Some(v) = p.get("status") {
        let s = v.as_str().unwrap_or("");
        if !["active", "draining", "offline"].contains(&s) {
            invalid(
                "patch.status must be active, draining or offline".into(),
                None,
                None,
            );
        }
        crate::spi::run(
            "UPDATE messiah.servers SET status = $2 WHERE name = $1",
            &[name.as_str().into(), s.into()],
        );
    }
    if let Some(v) = p.get("capacity") {
        let cap = match v {
            serde_json::Value::Null => None,
            v => match v.as_i64().and_then(|c| i32::try_from(c).ok()) {
                Some(c) => capacity_arg(Some(c)),
                None => invalid(
                    "patch.capacity must be an integer or null".into(),
                    None,
                    None,
                ),
            },
        };
        crate::spi::run(
            "UPDATE messiah.servers SET capacity = $2 WHERE name = $1",
            &[name.as_str().into(), cap.into()],
        );
    }
    if let Some(v) = p.get("conninfo") {
        let Some(text) = v.as_str() else {
            invalid("patch.conninfo must be a string".into(), None, None);
        };
        let c = check_conninfo(text).or_raise();
        server.conninfo = c.clone();
        probe(&server).or_raise();
        super::close_server(server.id);
        crate::spi::run(
            "UPDATE messiah.servers SET conninfo = $2 WHERE name = $1",
            &[name.as_str().into(), c.render().as_str().into()],
        );
    }
    server_json(&name)
}

/// Removes a server from the registry. Errors: 42704 no such server, 55000 the local server,
/// 2BP01 tenants still live there (move or drop them first).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_drop_server(name: Option<&str>) -> JsonB {
    let name = name_arg(name);
    let server = Server::by_name(&name).or_raise();
    if server.is_local() {
        Error::new(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the local server cannot be dropped",
        )
        .raise();
    }
    let tenants = crate::spi::one::<i64>(
        "SELECT count(*) FROM messiah.tenants WHERE server_id = $1",
        &[server.id.into()],
    )
    .unwrap_or(0);
    if tenants > 0 {
        Error::new(
            Code::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!("server \"{name}\" still holds {tenants} tenant(s)"),
        )
        .hint("Drop or move its tenants first; messiah_alter_server(name, '{\"status\": \"draining\"}') stops new ones.")
        .raise();
    }
    let out = server_json(&name);
    crate::spi::run(
        "DELETE FROM messiah.servers WHERE id = $1",
        &[server.id.into()],
    );
    super::close_server(server.id);
    out
}

/// Lists the registered servers: name, conninfo (never a password: none is stored), status,
/// capacity, tenants (count), reachable (a connection to its maintenance database works; the
/// local server is always reachable) and message (why not).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn messiah_list_servers() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(conninfo, String),
        name!(status, String),
        name!(capacity, Option<i32>),
        name!(tenants, i64),
        name!(reachable, bool),
        name!(message, Option<String>),
    ),
> {
    let mut out = Vec::new();
    for s in Server::all() {
        let (capacity, tenants) = Spi::get_two_with_args::<i32, i64>(
            "SELECT s.capacity, (SELECT count(*) FROM messiah.tenants t WHERE t.server_id = s.id) \
             FROM messiah.servers s WHERE s.id = $1",
            &[s.id.into()],
        )
        .unwrap_or((None, Some(0)));
        let (reachable, message) = if s.is_local() {
            (true, None)
        } else {
            match super::query(&s.maintenance(), "SELECT 1", &[]) {
                Ok(_) => (true, None),
                Err(e) => (false, Some(e.to_string())),
            }
        };
        out.push((
            s.name.clone(),
            s.conninfo.render(),
            s.status.clone(),
            capacity,
            tenants.unwrap_or(0),
            reachable,
            message,
        ));
    }
    TableIterator::new(out)
}
