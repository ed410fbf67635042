//! Secrets at rest (DESIGN.md decision 8). Plain Rust, no Postgres.
//!
//! Keys live outside the database, in a key file named by the superuser-only GUC
//! `messiah.key_file` (as pgsodium's getkey script keeps its root key out of the database):
//! one key per line, 64 hexadecimal digits (32 bytes), `#` comments allowed. The first key
//! encrypts; every key listed decrypts, so old and new keys coexist during a rotation.
//!
//! A sealed secret is `msk1:<key id>:<base64(nonce || ciphertext || tag)>`: XChaCha20-Poly1305
//! (RustCrypto's `chacha20poly1305`, never a home-made cipher) with a random 24-byte nonce and
//! associated data naming where the secret belongs (table, column, tenant), so a ciphertext
//! copied into another row or column does not decrypt. The key id is the first 8 bytes of
//! SHA-256("messiah key id" || key), in hex: it names the key without revealing it.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// A credential derived from a key and a label (HMAC-SHA256, RFC 2104, RustCrypto's `hmac`),
/// as 43 characters of unpadded base64url: stored nowhere, derived again whenever needed, and
/// changed by changing the label (a version) or the key. `key_id` names the key of the ring to
/// use. Errors: [`SecretError::UnknownKey`] when that key is not in the key file.
pub fn derive(ring: &KeyRing, key_id: &str, label: &str) -> Result<String, SecretError> {
    use hmac::Mac as _;
    let key = ring.find(key_id).ok_or_else(|| SecretError::UnknownKey {
        key_id: key_id.to_string(),
    })?;
    let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&key.bytes)
        .map_err(|_| SecretError::Corrupt)?;
    mac.update(b"messiah derived credential\0");
    mac.update(label.as_bytes());
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Prefix of a sealed secret (format version 1).
pub const PREFIX: &str = "msk1";
const NONCE_BYTES: usize = 24;

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no key file is configured (messiah.key_file is empty)")]
    NotConfigured,
    #[error("key file {path:?} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("key file {path:?} is readable by other OS users (mode {mode:o})")]
    Permissions { path: String, mode: u32 },
    #[error("key file line {line} is not a key: expected 64 hexadecimal digits")]
    BadKey { line: usize },
    #[error("key file holds no key")]
    Empty,
    #[error("the secret was encrypted with key {key_id}, which is not in the key file")]
    UnknownKey { key_id: String },
    #[error("the secret is not a messiah ciphertext or was altered")]
    Corrupt,
}

/// One 256-bit key.
#[derive(Clone)]
pub struct Key {
    id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Key {
        let mut h = Sha256::new();
        h.update(b"messiah key id");
        h.update(bytes);
        let digest = h.finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Key { id, bytes }
    }

    /// The key id (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys of a key file: the first encrypts, all decrypt.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

fn hex_key(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl KeyRing {
    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<KeyRing, SecretError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = hex_key(line).ok_or(SecretError::BadKey { line: i + 1 })?;
            keys.push(Key::new(bytes));
        }
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// Reads and parses the key file at `path`, refusing one that other OS users can read
    /// (as Postgres refuses a group- or world-readable ssl_key_file).
    pub fn load(path: &str) -> Result<KeyRing, SecretError> {
        if path.is_empty() {
            return Err(SecretError::NotConfigured);
        }
        let unreadable = |e: std::io::Error| SecretError::Unreadable {
            path: path.into(),
            reason: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::Permissions {
                    path: path.into(),
                    mode,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        KeyRing::parse(&text)
    }

    /// The key that encrypts.
    pub fn current(&self) -> &Key {
        &self.keys[0]
    }

    fn find(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Encrypts `plaintext` for the place named by `aad`.
    pub fn seal(&self, plaintext: &str, aad: &str) -> String {
        let key = self.current();
        let cipher = XChaCha20Poly1305::new((&key.bytes).into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: aad.as_bytes(),
        };
        // Encryption with a valid key and nonce cannot fail for inputs below 256 GiB.
        let ct = cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!(
            "{PREFIX}:{}:{}",
            key.id(),
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// Decrypts a secret sealed by [`KeyRing::seal`] for the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, SecretError> {
        let key_id = key_id_of(sealed).ok_or(SecretError::Corrupt)?;
        let key = self.find(key_id).ok_or_else(|| SecretError::UnknownKey {
            key_id: key_id.to_string(),
        })?;
        let b64 = sealed.splitn(3, ':').nth(2).ok_or(SecretError::Corrupt)?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SecretError::Corrupt)?;
        if blob.len() < NONCE_BYTES + 16 {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ct) = blob.split_at(NONCE_BYTES);
        let cipher = XChaCha20Poly1305::new((&key.bytes).into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Corrupt)
    }
}

/// The key id a sealed secret names, if it has the sealed form.
pub fn key_id_of(sealed: &str) -> Option<&str> {
    let mut parts = sealed.splitn(3, ':');
    (parts.next()? == PREFIX).then_some(())?;
    let id = parts.next()?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The associated data of a secret: where it belongs.
pub fn aad(table: &str, column: &str, tenant_id: &str) -> String {
    format!("messiah:{table}.{column}:{tenant_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn seal_open_round_trip_and_binding() {
        let ring = KeyRing::parse(&format!("# test\n{K1}\n")).unwrap();
        let a = aad("tenant_supabase_configs", "service_key", "acme");
        let s = ring.seal("sk_SECRET_123", &a);
        assert!(s.starts_with("msk1:"));
        assert!(!s.contains("SECRET"));
        assert_eq!(ring.open(&s, &a).unwrap(), "sk_SECRET_123");
        // another row or column: refused
        let other = aad("tenant_supabase_configs", "service_key", "other");
        assert_eq!(ring.open(&s, &other), Err(SecretError::Corrupt));
        // two seals of one value differ (random nonce)
        assert_ne!(ring.seal("x", &a), ring.seal("x", &a));
    }

    #[test]
    fn rotation_keeps_old_keys_readable() {
        let old = KeyRing::parse(K1).unwrap();
        let s = old.seal("v", "a");
        let both = KeyRing::parse(&format!("{K2}\n{K1}")).unwrap();
        assert_eq!(both.open(&s, "a").unwrap(), "v");
        assert_ne!(both.current().id(), old.current().id());
        let new_only = KeyRing::parse(K2).unwrap();
        assert_eq!(
            new_only.open(&s, "a"),
            Err(SecretError::UnknownKey {
                key_id: old.current().id().to_string()
            })
        );
        assert_eq!(key_id_of(&s), Some(old.current().id()));
    }

    #[test]
    fn derived_credentials_depend_on_key_and_label() {
        let ring = KeyRing::parse(&format!("{}\n{}", "11".repeat(32), "22".repeat(32))).unwrap();
        let first = ring.current().id().to_string();
        let a = derive(&ring, &first, "role a v1").unwrap();
        assert_eq!(a.len(), 43);
        assert_eq!(a, derive(&ring, &first, "role a v1").unwrap());
        assert_ne!(a, derive(&ring, &first, "role a v2").unwrap());
        let second = Key::new([0x22; 32]).id().to_string();
        assert_ne!(a, derive(&ring, &second, "role a v1").unwrap());
        assert!(matches!(
            derive(&ring, "0000000000000000", "x"),
            Err(SecretError::UnknownKey { .. })
        ));
    }

    #[test]
    fn bad_key_files() {
        assert_eq!(KeyRing::parse("# only\n").unwrap_err(), SecretError::Empty);
        assert_eq!(
            KeyRing::parse("abc").unwrap_err(),
            SecretError::BadKey { line: 1 }
        );
        assert_eq!(KeyRing::load("").unwrap_err(), SecretError::NotConfigured);
        let ring = KeyRing::parse(K1).unwrap();
        assert_eq!(ring.open("plain text", "a"), Err(SecretError::Corrupt));
        let s = ring.seal("v", "a");
        let tampered = format!("{}A", &s[..s.len() - 1]);
        assert!(ring.open(&tampered, "a").is_err());
    }
}
