//! The marker messiah writes on every database it creates (its `COMMENT ON DATABASE`, which
//! lives in the shared catalog `pg_shdescription`, so it can be read from any database of the
//! server without connecting to the tenant's), and the names of databases under creation.
//! Plain Rust.
//!
//! A tenant database is created under a temporary name that carries the creating installation
//! and transaction ([`temp_name`]), marked, and then renamed to `tenant_<id>`, all before the
//! admin transaction commits. Whatever happens next, the server's own catalog proves what the
//! database is: a temporary name, or a marker naming this installation and a creating
//! transaction that aborted, is provably garbage of this installation; anything else is not
//! messiah's to drop (DESIGN.md decision 3).

use serde::{Deserialize, Serialize};

/// Prefix of the temporary names of databases being created.
pub const TEMP_PREFIX: &str = "messiah_new_";

/// The marker comment of a tenant database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The tenant's id.
    pub messiah_tenant: String,
    /// The name the database was created under (a renamed database is not the same tenant
    /// database any more).
    pub database: String,
    /// The admin installation that created it (and manages it; a takeover rewrites it).
    pub installation: String,
    /// The admin database's name and cluster, for people reading the comment.
    pub admin_database: String,
    pub system_identifier: String,
    /// The (sub)transaction, as xid8, that inserted the tenant's catalog row: the creation is
    /// real if and only if it committed.
    pub creating_xid: String,
}

impl Marker {
    /// Parses a database comment; `None` when it is not a messiah marker.
    pub fn parse(comment: &str) -> Option<Marker> {
        if !comment.contains("messiah_tenant") {
            return None;
        }
        serde_json::from_str(comment).ok()
    }

    /// The comment text.
    pub fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether this marker says the database named `datname` was created by `installation`.
    pub fn is_of(&self, installation: &str, datname: &str) -> bool {
        self.installation == installation && self.database == datname
    }
}

/// The short form of an installation id used in temporary names: its first 8 hex digits.
pub fn short_installation(installation: &str) -> String {
    installation
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect()
}

/// `messiah_new_<installation 8 hex>_<creating xid8>_<tenant row id 8 hex>`: at most 12 + 8 + 1
/// + 20 + 1 + 8 = 50 bytes.
pub fn temp_name(installation: &str, xid: u64, tenant_row_id: &str) -> String {
    format!(
        "{TEMP_PREFIX}{}_{xid}_{}",
        short_installation(installation),
        short_installation(tenant_row_id)
    )
}

/// The creating transaction of a temporary name of `installation`, if `datname` is one.
pub fn temp_name_xid(installation: &str, datname: &str) -> Option<u64> {
    let rest = datname.strip_prefix(TEMP_PREFIX)?;
    let rest = rest.strip_prefix(&short_installation(installation))?;
    let rest = rest.strip_prefix('_')?;
    let (xid, tail) = rest.split_once('_')?;
    (tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    xid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INST: &str = "2f1c0a4e-7b1d-4c7e-9a51-0d3c2b1a0f9e";

    #[test]
    fn temp_names_round_trip() {
        let n = temp_name(INST, 1234567890123, "9e8d7c6b-0000-4000-8000-000000000000");
        assert_eq!(n, "messiah_new_2f1c0a4e_1234567890123_9e8d7c6b");
        assert!(n.len() <= 63);
        assert_eq!(temp_name_xid(INST, &n), Some(1234567890123));
        // another installation's temporary database is not ours
        assert_eq!(
            temp_name_xid("aaaaaaaa-0000-0000-0000-000000000000", &n),
            None
        );
        assert_eq!(temp_name_xid(INST, "tenant_acme"), None);
        assert_eq!(temp_name_xid(INST, "messiah_new_2f1c0a4e_x_9e8d7c6b"), None);
        let longest = temp_name(INST, u64::MAX, "9e8d7c6b");
        assert!(longest.len() <= 63, "{longest}");
    }

    #[test]
    fn markers() {
        let m = Marker {
            messiah_tenant: "acme".into(),
            database: "tenant_acme".into(),
            installation: INST.into(),
            admin_database: "messiah_admin".into(),
            system_identifier: "7".into(),
            creating_xid: "42".into(),
        };
        let back = Marker::parse(&m.render()).unwrap();
        assert_eq!(back, m);
        assert!(m.is_of(INST, "tenant_acme"));
        assert!(!m.is_of(INST, "tenant_acme_archive"));
        assert!(!m.is_of("other", "tenant_acme"));
        assert_eq!(Marker::parse("my own comment"), None);
        assert_eq!(Marker::parse("{\"messiah_tenant\": 1}"), None);
    }
}
