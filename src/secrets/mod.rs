//! Secrets in the catalog (DESIGN.md decision 8): encrypted with keys from a file outside the
//! database (`crypto`), read back only through `messiah_get_secret`, re-encrypted in one
//! transaction by `messiah_rotate_key`.
//!
//! What happens without a usable key file: functions that need a secret (creating a tenant
//! with a Supabase config, `messiah_set_supabase_config`, `messiah_get_secret`,
//! `messiah_rotate_key`) fail with SQLSTATE F0000 naming the problem; everything else keeps
//! working.

pub mod crypto;

use crate::err::{Code, Error, OrRaise};
use crate::shim::{required, tenant_id_arg};
use crypto::{KeyRing, SecretError};
use pgrx::prelude::*;

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Error {
        let hint = match &e {
            SecretError::NotConfigured | SecretError::Unreadable { .. } | SecretError::Empty | SecretError::BadKey { .. } =>
                "Create a key file readable only by the server's OS user (head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > messiah.key; chmod 600), set messiah.key_file in postgresql.conf and reload.",
            SecretError::Permissions { .. } => "chmod 600 the key file (owner: the server's OS user).",
            SecretError::UnknownKey { .. } => "Put the old key back in the key file (below the current one) until messiah_rotate_key() has re-encrypted everything.",
            SecretError::Corrupt => "The stored value was altered or copied from another row; set it again.",
        };
        let code = match e {
            SecretError::Corrupt => Code::ERRCODE_DATA_CORRUPTED,
            _ => Code::ERRCODE_CONFIG_FILE_ERROR,
        };
        Error::new(code, e.to_string()).hint(hint)
    }
}

/// The key ring of `messiah.key_file`, checked at each use (a reload or rotation is seen at
/// once): the file is `stat`ed every time and read again whenever it is another file or was
/// changed (inode, size, mode, modification and change times); otherwise this backend's
/// parsed copy is used (a routed call needs the ring on every call).
pub fn ring() -> Result<KeyRing, Error> {
    load(&crate::guc::string(&crate::guc::KEY_FILE)).map_err(Error::from)
}

/// The key ring, or `None` when `messiah.key_file` is not set at all (a key file that is set
/// but unusable is still an error).
pub fn ring_if_configured() -> Result<Option<KeyRing>, Error> {
    match load(&crate::guc::string(&crate::guc::KEY_FILE)) {
        Ok(r) => Ok(Some(r)),
        Err(SecretError::NotConfigured) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What identifies one version of a file: path, device, inode, size, mode, mtime, ctime.
type FileStamp = (String, u64, u64, u64, u32, i64, i64, i64, i64);

thread_local! {
    static LOADED: std::cell::RefCell<Option<(FileStamp, KeyRing)>> =
        const { std::cell::RefCell::new(None) };
}

fn load(path: &str) -> Result<KeyRing, SecretError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(path) else {
        // not set, missing, unreadable: KeyRing::load says which
        return KeyRing::load(path);
    };
    let stamp: FileStamp = (
        path.to_string(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mode(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    if let Some(ring) = LOADED.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(s, _)| *s == stamp)
            .map(|(_, r)| r.clone())
    }) {
        return Ok(ring);
    }
    let ring = KeyRing::load(path)?;
    LOADED.with(|l| *l.borrow_mut() = Some((stamp, ring.clone())));
    Ok(ring)
}

/// The secrets messiah stores: (table, key column).
const SECRET_COLUMNS: [&str; 2] = ["anon_key", "service_key"];

/// Returns one secret in clear text: `name` is `anon_key` or `service_key` of the tenant's
/// Supabase config. The one function that reveals a secret: it is not granted by
/// `messiah_grant_admin` and must be granted explicitly (GRANT EXECUTE ON FUNCTION
/// messiah_get_secret(text, text) TO ...). Errors: 22023 unknown name, 42704 no such tenant or
/// no config, F0000 no usable key file or the key that sealed it is missing, XX001 altered.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_get_secret(tenant_id: Option<&str>, name: Option<&str>) -> String {
    let id = tenant_id_arg(tenant_id);
    let name = required("name", name);
    if !SECRET_COLUMNS.contains(&name) {
        crate::shim::invalid(
            format!("{name:?} is not a secret messiah stores"),
            Some(format!("Secrets: {}.", SECRET_COLUMNS.join(", "))),
            None,
        );
    }
    crate::tenants::catalog::Tenant::existing(id.as_str(), false).or_raise();
    let sealed = crate::spi::one::<String>(
        &format!(
            "SELECT {name} FROM messiah.tenant_supabase_configs WHERE tenant_id = $1 \
             ORDER BY created_at DESC LIMIT 1"
        ),
        &[id.as_str().into()],
    )
    .unwrap_or_else(|| {
        Error::new(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("tenant \"{id}\" has no Supabase config"),
        )
        .raise()
    });
    let ring = ring().or_raise();
    ring.open(
        &sealed,
        &crypto::aad("tenant_supabase_configs", name, id.as_str()),
    )
    .map_err(Error::from)
    .or_raise()
}

/// Re-encrypts every stored secret with the current (first) key of `messiah.key_file`, in
/// one transaction: all or nothing; and moves every tenant's application-role password to a
/// new one derived from that key (set on its server after COMMIT). Rotation: put a new key on the first line of the key file,
/// keep the old one below it, reload, run this, then remove the old key. Returns the number of
/// secrets re-encrypted plus credentials moved. Errors: F0000 no usable key file, or a secret sealed by a key that is
/// no longer in the file (named by its id).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn messiah_rotate_key() -> i64 {
    let ring = ring().or_raise();
    let rows = crate::spi::text_rows_mut(
        "SELECT id::text, tenant_id, anon_key, service_key FROM messiah.tenant_supabase_configs FOR UPDATE",
        &[],
        4,
    );
    let mut n = 0;
    for r in rows {
        let t = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (id, tenant) = (t(0), t(1));
        let mut sealed = Vec::new();
        for (i, column) in SECRET_COLUMNS.iter().enumerate() {
            let aad = crypto::aad("tenant_supabase_configs", column, &tenant);
            let plain = ring.open(&t(2 + i), &aad).map_err(Error::from).or_raise();
            sealed.push(ring.seal(&plain, &aad));
            n += 1;
        }
        crate::spi::run(
            "UPDATE messiah.tenant_supabase_configs SET anon_key = $2, service_key = $3 WHERE id = $1::uuid",
            &[id.as_str().into(), sealed[0].as_str().into(), sealed[1].as_str().into()],
        );
    }
    // the tenants' application-role passwords derive from a key: moved to the new one (set
    // on their servers after COMMIT)
    let current = ring.current().id().to_string();
    let ids = crate::spi::text_rows_mut(
        "SELECT tenant_id FROM messiah.tenants WHERE credential_key_id IS DISTINCT FROM $1 \
           AND lifecycle = 'ready' AND installation_id = messiah.installation_id() FOR UPDATE",
        &[current.as_str().into()],
        1,
    );
    for id in ids
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        if let Some(t) = crate::tenants::catalog::Tenant::find(&id, false) {
            crate::tenants::access::rotate(&t, &current);
            n += 1;
        }
    }
    n
}
