//! Connection helpers shared by the integration tests.
#![allow(dead_code)]

use postgres::{Client, NoTls};

/// Host (socket directory) and port of the cluster under test.
pub fn host_port() -> (String, u16) {
    let host = std::env::var("MESSIAH_TEST_HOST").unwrap_or_else(|_| "/tmp/messiah-cluster".into());
    let port = std::env::var("MESSIAH_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(28815);
    (host, port)
}

/// A connection to `dbname` as postgres.
pub fn connect(dbname: &str) -> Client {
    let (host, port) = host_port();
    Client::connect(
        &format!("host={host} port={port} user=postgres dbname={dbname}"),
        NoTls,
    )
    .unwrap_or_else(|e| panic!("connecting to {dbname}: {e}"))
}

/// Creates a fresh admin database `name` with messiah installed (dropping an old one).
pub fn admin_db(name: &str) -> Client {
    let mut pg = connect("postgres");
    pg.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name}"
    ))
    .unwrap();
    let mut c = connect(name);
    c.batch_execute("SET client_min_messages = warning; CREATE EXTENSION messiah CASCADE")
        .unwrap();
    c
}

/// Whether database `name` exists.
pub fn db_exists(name: &str) -> bool {
    let mut pg = connect("postgres");
    pg.query_one(
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &[&name],
    )
    .map(|r| r.get::<_, i64>(0) == 1)
    .unwrap()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}
