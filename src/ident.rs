//! Identifier and conninfo rules (DESIGN.md decision 4). Plain Rust, no pgrx.
//!
//! A tenant id is validated once into [`TenantId`]; from then on it is only ever used quoted
//! ([`quote_ident`]) in SQL and escaped by libpq's rules ([`conninfo_value`]) in conninfo
//! strings. Values never reach SQL text unquoted.

use std::fmt;

/// Longest identifier Postgres keeps: NAMEDATALEN - 1 bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Prefix of every tenant database name (the original design: `tenant_<tenant_id>`).
pub const DATABASE_PREFIX: &str = "tenant_";
/// Longest tenant id, so that `tenant_<tenant_id>` fits in 63 bytes.
pub const MAX_TENANT_ID_BYTES: usize = MAX_IDENTIFIER_BYTES - DATABASE_PREFIX.len();

/// Why an identifier was refused; the message names the offending value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is too long: {len} bytes, at most {max}")]
    TooLong {
        what: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?} is invalid: {rule}")]
    Invalid {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
}

impl IdentError {
    /// The rule the value broke, for a HINT.
    pub fn hint(&self) -> &'static str {
        match self {
            IdentError::Empty { what }
            | IdentError::TooLong { what, .. }
            | IdentError::Invalid { what, .. } => {
                if *what == "slug" {
                    SLUG_RULE
                } else {
                    TENANT_ID_RULE
                }
            }
        }
    }
}

/// The tenant id rule, as stated to users.
pub const TENANT_ID_RULE: &str =
    "a tenant_id starts with a lowercase ASCII letter, continues with lowercase letters, digits or '_', and is at most 56 bytes (so that tenant_<tenant_id> fits Postgres' 63-byte names)";
/// The slug rule, as stated to users.
pub const SLUG_RULE: &str =
    "a slug is lowercase ASCII letters and digits in groups joined by single hyphens (e.g. acme-corp-2), at most 63 bytes";

/// A tenant id that satisfies [`TENANT_ID_RULE`]. The only way to build one is [`TenantId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Validates `s` against [`TENANT_ID_RULE`]. Errors: empty, over 56 bytes, or any other
    /// character than `[a-z0-9_]` (uppercase, hyphens, spaces, quotes, multibyte letters), or a
    /// first character that is not a letter. Keywords are fine: the id is always quoted.
    pub fn parse(s: &str) -> Result<TenantId, IdentError> {
        const WHAT: &str = "tenant_id";
        if s.is_empty() {
            return Err(IdentError::Empty { what: WHAT });
        }
        if s.len() > MAX_TENANT_ID_BYTES {
            return Err(IdentError::TooLong {
                what: WHAT,
                value: s.to_string(),
                len: s.len(),
                max: MAX_TENANT_ID_BYTES,
            });
        }
        let bytes = s.as_bytes();
        if !bytes[0].is_ascii_lowercase() {
            return Err(IdentError::Invalid {
                what: WHAT,
                value: s.to_string(),
                rule: "it must start with a lowercase ASCII letter",
            });
        }
        if let Some(_bad) = bytes
            .iter()
            .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_'))
        {
            return Err(IdentError::Invalid {
                what: WHAT,
                value: s.to_string(),
                rule: "only lowercase ASCII letters, digits and '_' are allowed",
            });
        }
        Ok(TenantId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant database's name, `tenant_<tenant_id>` (at most 63 bytes by construction).
    pub fn database_name(&self) -> String {
        format!("{DATABASE_PREFIX}{}", self.0)
    }

    /// Recovers the tenant id from a database name, if the name is one a tenant database could
    /// have (used by reconcile to find databases "named like a tenant database").
    pub fn from_database_name(datname: &str) -> Option<TenantId> {
        datname
            .strip_prefix(DATABASE_PREFIX)
            .and_then(|rest| TenantId::parse(rest).ok())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a slug against [`SLUG_RULE`] and returns it unchanged.
pub fn check_slug(s: &str) -> Result<&str, IdentError> {
    const WHAT: &str = "slug";
    if s.is_empty() {
        return Err(IdentError::Empty { what: WHAT });
    }
    if s.len() > MAX_IDENTIFIER_BYTES {
        return Err(IdentError::TooLong {
            what: WHAT,
            value: s.to_string(),
            len: s.len(),
            max: MAX_IDENTIFIER_BYTES,
        });
    }
    let groups_ok = s.split('-').all(|g| {
        !g.is_empty()
            && g.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !groups_ok {
        return Err(IdentError::Invalid {
            what: WHAT,
            value: s.to_string(),
            rule: "only lowercase ASCII letters and digits, in groups joined by single hyphens",
        });
    }
    Ok(s)
}

/// Quotes an identifier for SQL text the way Postgres' `quote_ident` does when quoting is
/// needed, but always: `"` around it, inner `"` doubled. Always quoting makes keywords and
/// any character safe.
pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a value as an SQL string literal (standard_conforming_strings on, as since
/// Postgres 9.1): `'` around it, inner `'` doubled; a value with a backslash uses the
/// `E'...'` form with backslashes doubled, as Postgres' `quote_literal` does.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    if s.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Escapes a conninfo value by libpq's rules (libpq "Connection Strings", keyword/value
/// form): always single-quoted, with `\` and `'` backslash-escaped.
pub fn conninfo_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// FNV-1a, 64 bits: a stable short hash for names and cache keys (not a security boundary).
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Why a conninfo string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    #[error("conninfo URIs (postgresql://...) are not accepted here; use the keyword=value form")]
    Uri,
    #[error("conninfo is malformed near byte {at}: {why}")]
    Malformed { at: usize, why: &'static str },
}

/// A parsed libpq keyword/value conninfo: the pairs in order, values unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conninfo {
    pairs: Vec<(String, String)>,
}

impl Conninfo {
    /// Parses the keyword/value form by libpq's rules: `key = value` pairs separated by
    /// whitespace; a value is either a run of non-space characters or single-quoted with `\`
    /// escapes. URIs are refused (they would need percent-decoding rules of their own).
    pub fn parse(s: &str) -> Result<Conninfo, ConninfoError> {
        let t = s.trim_start();
        if t.starts_with("postgresql://") || t.starts_with("postgres://") {
            return Err(ConninfoError::Uri);
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut pairs = Vec::new();
        let skip_ws = |i: &mut usize| {
            while *i < b.len() && b[*i].is_ascii_whitespace() {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            if i >= b.len() {
                break;
            }
            let start = i;
            while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            let key = &s[start..i];
            if key.is_empty() {
                return Err(ConninfoError::Malformed {
                    at: i,
                    why: "empty keyword",
                });
            }
            skip_ws(&mut i);
            if i >= b.len() || b[i] != b'=' {
                return Err(ConninfoError::Malformed {
                    at: i,
                    why: "expected '=' after keyword",
                });
            }
            i += 1;
            skip_ws(&mut i);
            let mut value = Vec::new();
            if i < b.len() && b[i] == b'\'' {
                i += 1;
                loop {
                    if i >= b.len() {
                        return Err(ConninfoError::Malformed {
                            at: i,
                            why: "unterminated quoted value",
                        });
                    }
                    match b[i] {
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        b'\\' if i + 1 < b.len() => {
                            value.push(b[i + 1]);
                            i += 2;
                        }
                        c => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
            } else {
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        value.push(b[i + 1]);
                        i += 2;
                    } else {
                        value.push(b[i]);
                        i += 1;
                    }
                }
            }
            // The input is &str and we only split at ASCII bytes, so this cannot fail; map
            // the impossible case to an error rather than panic anyway.
            let value = String::from_utf8(value).map_err(|_| ConninfoError::Malformed {
                at: i,
                why: "invalid UTF-8",
            })?;
            pairs.push((key.to_string(), value));
        }
        Ok(Conninfo { pairs })
    }

    /// The value of `key`, the last one if repeated (libpq keeps the last).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, replacing every earlier occurrence.
    pub fn set(&mut self, key: &str, value: &str) {
        self.pairs.retain(|(k, _)| k != key);
        self.pairs.push((key.to_string(), value.to_string()));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.pairs.retain(|(k, _)| k != key);
    }

    /// The pairs in order (for libpq's keyword/value arrays).
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.pairs.clone()
    }

    /// The keywords present.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// Renders the conninfo with every value escaped by [`conninfo_value`].
    pub fn render(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The same conninfo with `dbname` set (for reaching one database on the server).
    pub fn with_dbname(&self, dbname: &str) -> Conninfo {
        let mut c = self.clone();
        c.set("dbname", dbname);
        c
    }

    /// Renders the conninfo with secrets (password, sslpassword) replaced by `********`, for
    /// anything shown to users (DESIGN.md decision 8).
    pub fn render_public(&self) -> String {
        let mut c = self.clone();
        for (k, v) in c.pairs.iter_mut() {
            if k == "password" || k == "sslpassword" {
                *v = "********".to_string();
            }
        }
        c.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tenant_id_accepts_the_rule() {
        for ok in [
            "a",
            "acme",
            "acme_2",
            "select",
            "user",
            "a1_b2",
            &"x".repeat(56),
        ] {
            assert_eq!(TenantId::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            TenantId::parse("acme").unwrap().database_name(),
            "tenant_acme"
        );
    }

    #[test]
    fn tenant_id_refuses_everything_else() {
        let cases = [
            ("", "tenant_id must not be empty"),
            ("Acme", "tenant_id \"Acme\" is invalid: it must start with a lowercase ASCII letter"),
            ("1acme", "tenant_id \"1acme\" is invalid: it must start with a lowercase ASCII letter"),
            ("_acme", "tenant_id \"_acme\" is invalid: it must start with a lowercase ASCII letter"),
            ("acme-corp", "tenant_id \"acme-corp\" is invalid: only lowercase ASCII letters, digits and '_' are allowed"),
            ("acme corp", "tenant_id \"acme corp\" is invalid: only lowercase ASCII letters, digits and '_' are allowed"),
            ("acMe", "tenant_id \"acMe\" is invalid: only lowercase ASCII letters, digits and '_' are allowed"),
            ("a\"; DROP DATABASE postgres; --", "tenant_id \"a\\\"; DROP DATABASE postgres; --\" is invalid: only lowercase ASCII letters, digits and '_' are allowed"),
            ("a' host=evil", "tenant_id \"a' host=evil\" is invalid: only lowercase ASCII letters, digits and '_' are allowed"),
            ("são", "tenant_id \"são\" is invalid: only lowercase ASCII letters, digits and '_' are allowed"),
        ];
        for (input, msg) in cases {
            assert_eq!(
                TenantId::parse(input).unwrap_err().to_string(),
                msg,
                "input {input:?}"
            );
        }
        let long = "x".repeat(57);
        assert_eq!(
            TenantId::parse(&long).unwrap_err().to_string(),
            format!("tenant_id {long:?} is too long: 57 bytes, at most 56")
        );
        // 19 two-byte letters = 38 bytes but refused for the characters, not the length
        assert!(matches!(
            TenantId::parse(&"é".repeat(19)),
            Err(IdentError::Invalid { .. })
        ));
    }

    #[test]
    fn database_name_round_trip() {
        assert_eq!(
            TenantId::from_database_name("tenant_acme")
                .unwrap()
                .as_str(),
            "acme"
        );
        assert!(TenantId::from_database_name("tenant_").is_none());
        assert!(TenantId::from_database_name("tenant_Acme").is_none());
        assert!(TenantId::from_database_name("postgres").is_none());
    }

    #[test]
    fn slug_rule() {
        for ok in ["acme", "acme-corp", "a-1-b", "2fast"] {
            assert_eq!(check_slug(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "-acme",
            "acme-",
            "acme--corp",
            "Acme",
            "acme_corp",
            "acme corp",
            "sé",
        ] {
            assert!(check_slug(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            check_slug(&"a".repeat(64)),
            Err(IdentError::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("tenant_acme"), "\"tenant_acme\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(conninfo_value("pa'ss\\w d"), "'pa\\'ss\\\\w d'");
    }

    #[test]
    fn conninfo_parse_render() {
        let c = Conninfo::parse(
            "host=/var/run/postgresql port=5432  user = 'post gres' password='p\\'w'",
        )
        .unwrap();
        assert_eq!(c.get("host"), Some("/var/run/postgresql"));
        assert_eq!(c.get("user"), Some("post gres"));
        assert_eq!(c.get("password"), Some("p'w"));
        assert_eq!(
            c.with_dbname("tenant_acme").render_public(),
            "host='/var/run/postgresql' port='5432' user='post gres' password='********' dbname='tenant_acme'"
        );
        assert_eq!(Conninfo::parse(&c.render()).unwrap(), c);
        assert_eq!(Conninfo::parse("postgresql://x/y"), Err(ConninfoError::Uri));
        assert!(matches!(
            Conninfo::parse("host"),
            Err(ConninfoError::Malformed { .. })
        ));
        assert!(matches!(
            Conninfo::parse("host='x"),
            Err(ConninfoError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn conninfo_values_round_trip(v in ".*") {
            let mut c = Conninfo::default();
            c.set("password", &v);
            c.set("dbname", "tenant_a");
            let back = Conninfo::parse(&c.render()).unwrap();
            prop_assert_eq!(back.get("password"), Some(v.as_str()));
            prop_assert_eq!(back.get("dbname"), Some("tenant_a"));
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = TenantId::parse(&s);
            let _ = check_slug(&s);
            let _ = Conninfo::parse(&s);
        }

        #[test]
        fn accepted_ids_are_plain_identifiers(s in "[a-z][a-z0-9_]{0,70}") {
            match TenantId::parse(&s) {
                Ok(id) => prop_assert!(id.database_name().len() <= 63),
                Err(e) => {
                    let too_long = matches!(e, IdentError::TooLong { .. });
                    prop_assert!(too_long);
                }
            }
        }
    }
}
