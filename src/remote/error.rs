//! The remote layer's error type and its one conversion into a Postgres error.

use crate::err::{Code, Error};

/// What went wrong reaching another database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The connection could not be opened (libpq's message: refused, authentication, timeout).
    #[error("could not connect to server \"{server}\" (database \"{database}\"): {message}")]
    Connect {
        server: String,
        database: String,
        message: String,
    },
    /// The server refused the connection with an error of its own (authentication 28P01, no
    /// such database 3D000, too many connections 53300, shutting down 57P03): its SQLSTATE is
    /// kept.
    #[error("server \"{server}\" refused the connection to database \"{database}\": {message}")]
    Refused {
        server: String,
        database: String,
        sqlstate: String,
        message: String,
    },
    /// The server answered with an error: its SQLSTATE, message, DETAIL, HINT and CONTEXT.
    #[error("{message}")]
    Server {
        sqlstate: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
        remote_context: Option<String>,
    },
    /// The connection broke while in use (server restarted, backend terminated).
    #[error("connection to server \"{server}\" was lost: {message}")]
    Lost { server: String, message: String },
    /// Every external file descriptor of this backend is in use.
    #[error("out of file descriptors for remote connections")]
    NoFileDescriptor,
    /// A routed statement's result passed a cap (`messiah.route_max_rows` / `_bytes`).
    #[error("the result has more than {limit} {what}")]
    Limit {
        what: &'static str,
        limit: u64,
        /// The command tag (`UPDATE 20000`) when the statement completed on the server before
        /// the cancel reached it: a statement in its own transaction then committed.
        completed: Option<String>,
    },
    /// A routed statement ran past the tenant's statement timeout and was cancelled.
    #[error("canceling statement on server \"{server}\" due to the tenant's statement timeout ({ms} ms)")]
    Timeout {
        server: String,
        ms: u128,
        /// As for [`RemoteError::Limit`].
        completed: Option<String>,
    },
}

impl RemoteError {
    /// Whether the connection itself failed (as opposed to a statement error): such a
    /// connection is discarded.
    pub fn is_connection_failure(&self) -> bool {
        match self {
            RemoteError::Connect { .. }
            | RemoteError::Refused { .. }
            | RemoteError::Lost { .. } => true,
            RemoteError::Server { sqlstate, .. } => {
                // 08P01 (a bind message that does not fit the statement) leaves the
                // connection usable
                (sqlstate.starts_with("08") && sqlstate != "08P01")
                    || sqlstate == "57P01"
                    || sqlstate == "57P02"
            }
            RemoteError::NoFileDescriptor
            | RemoteError::Limit { .. }
            | RemoteError::Timeout { .. } => false,
        }
    }

    /// The Postgres error to raise, with `context` (naming the tenant or server and database)
    /// as its CONTEXT line. A server error keeps the remote SQLSTATE, message, DETAIL and HINT.
    pub fn into_error(self, context: &str) -> Error {
        let e = match self {
            RemoteError::Server {
                sqlstate,
                message,
                detail,
                hint,
                remote_context: _,
            } => Error {
                code: code_of(&sqlstate),
                message,
                detail,
                hint,
                context: None,
            },
            e @ RemoteError::Connect { .. } => {
                Error::new(Code::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, e.to_string())
                    .hint("Check that the server is up and that its conninfo (messiah_list_servers()) and password file are right.")
            }
            RemoteError::Refused {
                ref sqlstate,
                ..
            } => {
                let hint = match sqlstate.as_str() {
                    "28P01" => "Check the server's pg_hba.conf and the password file messiah's conninfo uses (README \"Servers\").",
                    "28000" => "The role may not log in: a tenant's application role loses its login while the tenant is suspended or inactive (a transaction that began before that change still sees the tenant active); otherwise pg_hba.conf refuses it.",
                    "53300" => "The server's max_connections or the role's connection limit is reached.",
                    "3D000" => "The database is gone: messiah_reconcile() lists what the catalog and the server disagree on.",
                    _ => "Check that the server is up and that its conninfo (messiah_list_servers()) and password file are right.",
                };
                Error::new(code_of(sqlstate), self.to_string()).hint(hint)
            }
            e @ RemoteError::Lost { .. } => {
                Error::new(Code::ERRCODE_CONNECTION_FAILURE, e.to_string())
            }
            e @ RemoteError::NoFileDescriptor => Error::new(Code::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, e.to_string())
                .hint("Lower messiah.max_remote_connections or raise max_files_per_process."),
            RemoteError::Limit {
                what,
                ref completed,
                ..
            } => Error::new(Code::ERRCODE_PROGRAM_LIMIT_EXCEEDED, self.to_string())
                .detail(outcome(completed))
                .hint(if what == "rows" {
                    "Add a LIMIT, or raise messiah.route_max_rows."
                } else {
                    "Select fewer or smaller columns, or raise messiah.route_max_bytes."
                }),
            RemoteError::Timeout { ref completed, .. } => {
                Error::new(Code::ERRCODE_QUERY_CANCELED, self.to_string())
                    .detail(outcome(completed))
                    .hint("The tenant's statement_timeout is set by messiah_set_tenant_limits().")
            }
        };
        e.context(context)
    }
}

/// What became of a statement stopped by a cap or the timeout: cancelled (nothing done), or
/// completed before the cancel reached it (a statement in its own transaction committed).
fn outcome(completed: &Option<String>) -> String {
    match completed {
        None => "The remote statement was cancelled: nothing was returned, and nothing it did was kept.".into(),
        Some(tag) => format!(
            "The statement had already completed on the server ({tag}) when it was stopped: a routed statement commits on its own, so anything it wrote stays. Its rows were not returned."
        ),
    }
}

/// The pgrx error code for a five-character SQLSTATE (XX000 when it is not one).
pub fn code_of(sqlstate: &str) -> Code {
    let b = sqlstate.as_bytes();
    if b.len() != 5
        || !b
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Code::ERRCODE_INTERNAL_ERROR;
    }
    // MAKE_SQLSTATE: six bits per character, first character lowest.
    let mut v: i32 = 0;
    for (i, c) in b.iter().enumerate() {
        v |= (i32::from(*c - b'0') & 0x3F) << (6 * i);
    }
    Code::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_round_trip() {
        assert_eq!(code_of("42P01"), Code::ERRCODE_UNDEFINED_TABLE);
        assert_eq!(code_of("23514"), Code::ERRCODE_CHECK_VIOLATION);
        assert_eq!(code_of("57P01"), Code::ERRCODE_ADMIN_SHUTDOWN);
        assert_eq!(code_of("nope"), Code::ERRCODE_INTERNAL_ERROR);
    }

    #[test]
    fn connection_failures() {
        let lost = RemoteError::Lost {
            server: "s".into(),
            message: "m".into(),
        };
        assert!(lost.is_connection_failure());
        let sql = RemoteError::Server {
            sqlstate: "42P01".into(),
            message: "x".into(),
            detail: None,
            hint: None,
            remote_context: None,
        };
        assert!(!sql.is_connection_failure());
        let e = sql.into_error("tenant \"a\" on server \"local\"");
        assert_eq!(e.code, Code::ERRCODE_UNDEFINED_TABLE);
        assert_eq!(
            e.context.as_deref(),
            Some("tenant \"a\" on server \"local\"")
        );
    }
}
