//! The one remote command layer (DESIGN.md decision 9): every operation in another database
//! (provisioning, snapshot pushes, sweeps, reconcile) goes through here.
//!
//! - [`Server`]: a row of the server registry `messiah.servers`, read from the catalog on every
//!   call (never stale). `local` is the cluster the admin database runs on; its shared catalogs
//!   (`pg_database`, database comments) are read locally, without a connection.
//! - [`Endpoint`]: a database on a server, reached for maintenance (as the server's configured
//!   user, `search_path` pinned to `pg_catalog, pg_temp`).
//! - [`with_conn`]: runs statements on a pooled connection of this backend (see `pool`), keyed
//!   by server, database and purpose; a broken connection is discarded and reopened once.
//! - Errors are [`RemoteError`]s, turned into a Postgres error with a CONTEXT line naming the
//!   server and database (or tenant) in one place, [`RemoteError::into_error`].

pub mod error;
pub mod libpq;
mod pool;
pub mod probe;
mod servers_api;

pub use error::RemoteError;
pub use libpq::{Caps, Conn, Param, Rows};
pub use pool::{close_all, close_database, close_login, close_server};

use crate::err::{Code, Error};
use crate::ident::Conninfo;

/// Name of the server row that stands for the cluster the admin database runs on.
pub const LOCAL_SERVER: &str = "local";

/// A registered server (`messiah.servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: i64,
    pub name: String,
    /// Keyword/value conninfo without password; a `dbname` in it names the maintenance
    /// database (default `postgres`).
    pub conninfo: Conninfo,
    pub status: String,
}

impl Server {
    /// Whether this is the cluster the admin database runs on.
    pub fn is_local(&self) -> bool {
        self.name == LOCAL_SERVER
    }

    /// The database server-level commands (CREATE/DROP/ALTER DATABASE) run in: the admin
    /// database itself on the local cluster, else the conninfo's dbname or `postgres`.
    pub fn maintenance(&self) -> Endpoint {
        let database = if self.is_local() {
            crate::spi::current_database()
        } else {
            self.conninfo
                .get("dbname")
                .unwrap_or("postgres")
                .to_string()
        };
        self.database(&database)
    }

    /// A database on this server, reached for maintenance.
    pub fn database(&self, database: &str) -> Endpoint {
        Endpoint {
            server: self.clone(),
            database: database.to_string(),
            login: None,
        }
    }

    /// The server a catalog row names. Errors: 42704 when no such server exists.
    pub fn by_id(id: i64) -> Result<Server, Error> {
        Self::lookup("id = $1", id.into()).ok_or_else(|| {
            Error::new(
                Code::ERRCODE_UNDEFINED_OBJECT,
                format!("server with id {id} does not exist"),
            )
        })
    }

    /// The server named `name`. Errors: 42704.
    pub fn by_name(name: &str) -> Result<Server, Error> {
        Self::lookup("name = $1", name.into()).ok_or_else(|| {
            Error::new(
                Code::ERRCODE_UNDEFINED_OBJECT,
                format!("server \"{name}\" does not exist"),
            )
            .hint("messiah_list_servers() lists the registered servers.")
        })
    }

    /// The local server.
    pub fn local() -> Result<Server, Error> {
        Self::by_name(LOCAL_SERVER)
    }

    fn lookup(condition: &str, arg: pgrx::datum::DatumWithOid<'static>) -> Option<Server> {
        let rows = crate::spi::text_rows(
            &format!(
                "SELECT id::text, name, conninfo, status FROM messiah.servers WHERE {condition}"
            ),
            &[arg],
            4,
        );
        rows.into_iter().next().map(|r| Self::from_text(&r))
    }

    /// A server from the text of its catalog columns (id, name, conninfo, status).
    pub fn from_text(row: &[Option<String>]) -> Server {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Server {
            id: text(0).parse().unwrap_or(0),
            name: text(1),
            conninfo: Conninfo::parse(&text(2)).unwrap_or_default(),
            status: text(3),
        }
    }

    /// Every registered server.
    pub fn all() -> Vec<Server> {
        crate::spi::column::<String>("SELECT name FROM messiah.servers ORDER BY id", &[])
            .into_iter()
            .filter_map(|n| Self::by_name(&n).ok())
            .collect()
    }
}

/// A database on a server, reached as the server's configured user (maintenance) or as a
/// [`Login`] (a tenant's application role, for routed calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub server: Server,
    pub database: String,
    pub login: Option<Login>,
}

/// A role and its password, given to libpq as connection parameters (never in a conninfo
/// string, never stored).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    /// Changes when the role's settings change (limits, credential): pooled connections
    /// opened under other settings are not reused.
    pub generation: u64,
    /// Sessions start read-only (`default_transaction_read_only`, set as a connection option,
    /// which the role's own settings cannot override): a `supabase` tenant's free SQL cannot
    /// write around the validation messiah does before sending; its writes run in explicit
    /// `BEGIN READ WRITE` transactions.
    pub read_only: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("generation", &self.generation)
            .finish()
    }
}

impl Endpoint {
    /// `server "local" (database "tenant_acme")`, for CONTEXT lines.
    pub fn describe(&self) -> String {
        format!(
            "server \"{}\" (database \"{}\")",
            self.server.name, self.database
        )
    }

    /// libpq connection parameters: the server's conninfo, this database, and messiah's fixed
    /// settings: `application_name=messiah`, UTF8, `search_path` pinned (statements run with
    /// the server user's rights must not resolve names through anyone's schema), and
    /// `idle_session_timeout` = `messiah.remote_idle_timeout`, so the remote slot is freed
    /// after that idle time even when this session stays idle (the local handle is then found
    /// closed and reopened at the next use).
    ///
    /// With a [`Login`], the connection logs in as that role with its password, and its
    /// `search_path` is the role's own (it has no rights to pin anything against).
    pub fn params(&self) -> Vec<(String, String)> {
        let mut c = self.server.conninfo.clone();
        c.set("dbname", &self.database);
        c.set("application_name", "messiah");
        c.set("client_encoding", "UTF8");
        let idle = crate::guc::REMOTE_IDLE_TIMEOUT_MS.get();
        let mut options = c.get("options").unwrap_or("").to_string();
        if self.login.is_none() {
            options.push_str(" -c search_path=pg_catalog,pg_temp");
        }
        options.push_str(&format!(" -c idle_session_timeout={idle}"));
        if self.login.as_ref().is_some_and(|l| l.read_only) {
            options.push_str(" -c default_transaction_read_only=on");
        }
        c.set("options", options.trim());
        let mut pairs = c.pairs();
        if let Some(login) = &self.login {
            pairs.retain(|(k, _)| k != "user" && k != "passfile");
            pairs.push(("user".into(), login.user.clone()));
            pairs.push(("password".into(), login.password.clone()));
        }
        pairs
    }
}

/// Runs `f` on a connection of this backend to `ep` (opened if needed, kept in the pool
/// afterwards). A pooled connection found broken is discarded and reopened; when `f` fails
/// because a reused connection broke under it, it runs once more on a fresh one.
pub fn with_conn<R>(
    ep: &Endpoint,
    mut f: impl FnMut(&mut Conn) -> Result<R, RemoteError>,
) -> Result<R, RemoteError> {
    pool::with_conn(ep, &mut f)
}

/// Runs one parameterized statement on `ep` and returns its rows.
pub fn query(ep: &Endpoint, sql: &str, params: &[Option<&str>]) -> Result<Rows, RemoteError> {
    let server = ep.server.name.clone();
    with_conn(ep, |c| c.query(sql, params, &server))
}

/// Runs SQL text (utility statements, scripts) on `ep`.
pub fn execute(ep: &Endpoint, sql: &str) -> Result<Rows, RemoteError> {
    let server = ep.server.name.clone();
    with_conn(ep, |c| c.execute(sql, &server))
}

/// Like [`query`], then closes this backend's connections to `ep`'s database: for one-off
/// work inside a tenant database, so that no connection of ours lingers there (a lingering
/// session would make a plain DROP DATABASE or RENAME of that database fail).
pub fn query_once(ep: &Endpoint, sql: &str, params: &[Option<&str>]) -> Result<Rows, RemoteError> {
    let r = query(ep, sql, params);
    close_database(ep.server.id, &ep.database);
    r
}

/// Like [`query`], turning a failure into an [`Error`] whose CONTEXT names `ep`.
pub fn query_or_error(ep: &Endpoint, sql: &str, params: &[Option<&str>]) -> Result<Rows, Error> {
    query(ep, sql, params).map_err(|e| e.into_error(&ep.describe()))
}

/// Like [`execute`], turning a failure into an [`Error`] whose CONTEXT names `ep`.
pub fn execute_or_error(ep: &Endpoint, sql: &str) -> Result<Rows, Error> {
    execute(ep, sql).map_err(|e| e.into_error(&ep.describe()))
}
