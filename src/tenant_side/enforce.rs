//! Enforcement inside a tenant database (DESIGN.md decisions 5 and 6).
//!
//! The tenant database holds a copy of its tenant's active definitions in
//! `messiah.field_snapshot`. Each backend compiles that snapshot once and keeps it until a
//! relcache invalidation of the snapshot table arrives: `install_field_snapshot` sends one when
//! it commits, and Postgres delivers invalidations to every backend before its next statement
//! takes its locks, so a committed change is seen by the next statement of every session and
//! a rolled-back one never is. The per-row path is: look up the compiled entity, read
//! `custom_fields` in its binary form, validate, return the original tuple.

use super::jsonb::Jb;
use crate::err::{raise, Code, SpiExt};
use crate::fields::{self, CompiledSnapshot, Operation};
use crate::jsonarg::JsonbArg;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::cell::RefCell;
use std::rc::Rc;

struct Cache {
    snapshot: Rc<CompiledSnapshot>,
    /// Set when loaded under a transaction-level snapshot (REPEATABLE READ, SERIALIZABLE):
    /// such a read may predate a committed change whose invalidation was already processed,
    /// so the cache is only good until that transaction (this local xid) ends.
    only_for_lxid: Option<u32>,
    snapshot_relid: pg_sys::Oid,
    /// attribute number of custom_fields per relation (a handful: a linear search beats hashing)
    attnums: Vec<(pg_sys::Oid, i16)>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
    static CALLBACK_REGISTERED: RefCell<bool> = const { RefCell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let drop_all = match c.as_ref() {
            Some(cache) => relid == pg_sys::InvalidOid || relid == cache.snapshot_relid,
            None => false,
        };
        if drop_all {
            *c = None;
        } else if let Some(cache) = c.as_mut() {
            cache.attnums.retain(|(r, _)| *r != relid);
        }
    });
}

fn load() -> Cache {
    CALLBACK_REGISTERED.with(|r| {
        if !*r.borrow() {
            // SAFETY: registering a plain function for relcache invalidations, once per backend.
            unsafe {
                pg_sys::CacheRegisterRelcacheCallback(
                    Some(relcache_callback),
                    pg_sys::Datum::from(0),
                )
            };
            *r.borrow_mut() = true;
        }
    });
    // The engine reads jsonb keys and strings as UTF-8.
    // SAFETY: plain read of the database encoding.
    if unsafe { pg_sys::GetDatabaseEncoding() } != pg_sys::pg_enc::PG_UTF8 as i32 {
        raise(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            "messiah's custom-field trigger needs a UTF8 database",
            None,
            Some("Tenant databases are created UTF8 by messiah; this one was not.".into()),
        );
    }
    // The trigger runs as whoever writes the row (an application role with no rights on the
    // messiah schema). Read the copy as the bootstrap superuser, as Postgres' own RI triggers
    // switch to the table owner, with search_path pinned (the writer's path must not resolve
    // anything run with these rights); the guards switch back even when the read fails.
    let _as_superuser = crate::spi::AsUser::enter(
        pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
        pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
    );
    let _path = crate::spi::PinnedSearchPath::enter();
    // SAFETY: catalog lookups by name; both return InvalidOid when missing.
    let relid = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"messiah".as_ptr(), true);
        pg_sys::get_relname_relid(c"field_snapshot".as_ptr(), nsp)
    };
    let snapshot = Spi::get_one::<JsonB>("SELECT snapshot FROM messiah.field_snapshot")
        .or_raise("reading the field snapshot");
    let json = snapshot
        .map(|j| j.0)
        .unwrap_or_else(|| serde_json::json!({"version": 0, "fields": []}));
    let compiled = fields::compile_snapshot(&json).unwrap_or_else(|e| {
        raise(
            Code::ERRCODE_DATA_CORRUPTED,
            format!("this database's copy of its field definitions does not compile: {e}"),
            None,
            Some("Re-push it from the admin database with messiah_define_field or messiah_reconcile.".into()),
        )
    });
    // SAFETY: plain reads of this backend's transaction state.
    let only_for_lxid = unsafe {
        (pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32)
            .then(|| (*pg_sys::MyProc).lxid)
    };
    Cache {
        snapshot: Rc::new(compiled),
        only_for_lxid,
        snapshot_relid: relid,
        attnums: Vec::new(),
    }
}

thread_local! {
    /// (local transaction id, command id) of the statement that last looked for invalidations.
    static LAST_STATEMENT: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// Once per statement, processes pending invalidations: a backend already holding its lock on
/// the table (a statement later in an open transaction) would otherwise not look for them,
/// and "the next statement sees a committed definition change" must hold there too.
fn accept_invalidations_once_per_statement() {
    extern "C" {
        // xact.c: returns the current command id; with `used = false` it only reads state
        // and raises no error, so it is called without pgrx's guard (once per row).
        fn GetCurrentCommandId(used: bool) -> pg_sys::CommandId;
    }
    // SAFETY: MyProc is this backend's PGPROC; GetCurrentCommandId(false) only reads xact
    // state; AcceptInvalidationMessages may run at any point a lock could be taken.
    unsafe {
        let now = ((*pg_sys::MyProc).lxid, GetCurrentCommandId(false));
        if LAST_STATEMENT.with(|l| l.replace(now)) != now {
            pg_sys::AcceptInvalidationMessages();
        }
    }
}

fn snapshot() -> Rc<CompiledSnapshot> {
    accept_invalidations_once_per_statement();
    // SAFETY: MyProc is this backend's PGPROC.
    let lxid = unsafe { (*pg_sys::MyProc).lxid };
    CACHE.with(|c| {
        let stale = c
            .borrow()
            .as_ref()
            .is_some_and(|c| c.only_for_lxid.is_some_and(|x| x != lxid));
        if stale {
            *c.borrow_mut() = None;
        }
        if c.borrow().is_none() {
            let loaded = load();
            *c.borrow_mut() = Some(loaded);
        }
        c.borrow()
            .as_ref()
            .map(|c| c.snapshot.clone())
            .unwrap_or_else(|| crate::err::internal("loading the field snapshot", "cache empty"))
    })
}

/// The attribute number of the relation's `custom_fields` column, verified at every call:
/// the column exists, is not dropped, and is `jsonb` (a column changed to `json` or `text`
/// would otherwise be read as jsonb, and a wrong read crashes the backend). The number is
/// cached per relation and re-verified against the current tuple descriptor each time.
/// Errors: 42703 no such column, 42804 not jsonb.
fn custom_fields_attnum(rel: pg_sys::Relation) -> i16 {
    // SAFETY: rel is the trigger's open relation; its tuple descriptor is current for this
    // call and has natts attributes.
    let (relid, attrs) = unsafe {
        let desc = (*rel).rd_att;
        ((*rel).rd_id, (*desc).attrs.as_slice((*desc).natts as usize))
    };
    // NameData is NUL-padded: the name and its terminating NUL are compared as bytes.
    const NAME: &[u8; 14] = b"custom_fields\0";
    let is_ours = |a: &pg_sys::FormData_pg_attribute| {
        !a.attisdropped
            && a.attname.data[..NAME.len()]
                .iter()
                .map(|&c| c as u8)
                .eq(NAME.iter().copied())
    };
    let cached = CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|c| c.attnums.iter().find(|(r, _)| *r == relid).map(|(_, n)| *n))
    });
    if let Some(n) = cached {
        if let Some(a) = attrs.get((n as usize).wrapping_sub(1)) {
            if is_ours(a) && a.atttypid == pg_sys::JSONBOID {
                return n;
            }
        }
    }
    // SAFETY: rel is open; relname is a NameData.
    let table = unsafe { pgrx::name_data_to_str(&(*(*rel).rd_rel).relname).to_string() };
    let Some(a) = attrs.iter().find(|a| is_ours(a)) else {
        raise(
            Code::ERRCODE_UNDEFINED_COLUMN,
            format!("relation \"{table}\" has no custom_fields column, which messiah.enforce_custom_fields() validates"),
            None,
            Some("Restore the column (jsonb) or drop the trigger.".into()),
        );
    };
    if a.atttypid != pg_sys::JSONBOID {
        // SAFETY: format_type_be returns a palloc'd C string for any type oid.
        let ty = unsafe {
            std::ffi::CStr::from_ptr(pg_sys::format_type_be(a.atttypid))
                .to_string_lossy()
                .into_owned()
        };
        raise(
            Code::ERRCODE_DATATYPE_MISMATCH,
            format!("column custom_fields of relation \"{table}\" is of type {ty}, but messiah.enforce_custom_fields() needs jsonb"),
            None,
            Some("ALTER TABLE ... ALTER COLUMN custom_fields TYPE jsonb USING custom_fields::jsonb".into()),
        );
    }
    let n = a.attnum;
    CACHE.with(|c| {
        if let Some(c) = c.borrow_mut().as_mut() {
            c.attnums.retain(|(r, _)| *r != relid);
            c.attnums.push((relid, n));
        }
    });
    n
}

/// Whether two varlena datums have the same bytes (as stored: a value kept unchanged by an
/// UPDATE, inline or TOAST pointer, compares equal).
///
/// # Safety
/// Both must be valid varlena datums.
unsafe fn same_varlena(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
    // SAFETY: both are valid varlena datums (contract); varsize_any reads their headers and the
    // slices cover exactly their bytes.
    unsafe {
        let (pa, pb) = (
            a.cast_mut_ptr::<pg_sys::varlena>(),
            b.cast_mut_ptr::<pg_sys::varlena>(),
        );
        if pa == pb {
            return true;
        }
        let (la, lb) = (
            pgrx::varlena::varsize_any(pa),
            pgrx::varlena::varsize_any(pb),
        );
        la == lb
            && std::slice::from_raw_parts(pa as *const u8, la)
                == std::slice::from_raw_parts(pb as *const u8, lb)
    }
}

/// Postgres' own jsonb operators (`||` and `- text[]`), as raw fmgr entry points for
/// DirectFunctionCall (pgrx wraps its bindings in Rust functions, which fmgr cannot call).
mod fmgr {
    use pgrx::pg_sys::{Datum, FunctionCallInfo};
    extern "C-unwind" {
        pub fn jsonb_concat(fcinfo: FunctionCallInfo) -> Datum;
        pub fn jsonb_delete_array(fcinfo: FunctionCallInfo) -> Datum;
    }
}

/// pgrx's V1 calling-convention marker for [`messiah_enforce_custom_fields`].
#[no_mangle]
pub extern "C" fn pg_finfo_messiah_enforce_custom_fields() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// BEFORE INSERT OR UPDATE row trigger (SQL: `messiah.enforce_custom_fields(entity_table)`):
/// validates `custom_fields` against the tenant's definitions, applies defaults on INSERT,
/// strips unknown keys under the `strip` policy. A violation raises 23514 naming the table,
/// with DETAIL listing every failing field. An UPDATE that leaves `custom_fields` byte-for-byte
/// unchanged is not re-checked (like a NOT VALID constraint, rows written before a definition
/// was tightened stay updatable; `messiah_check_existing` finds them).
///
/// # Safety
/// Called by Postgres' function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn messiah_enforce_custom_fields(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid (fmgr contract); its context is checked to be TriggerData
    // before use; the tuples, relation and descriptor it names are valid for this call;
    // attnum is verified against the current descriptor; the jsonb is detoasted before it is
    // read in place and lives until the end of the call.
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
            raise(
                Code::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                "messiah.enforce_custom_fields() must be called as a trigger",
                None,
                None,
            );
        }
        let td = context as *mut pg_sys::TriggerData;
        let event = (*td).tg_event;
        let is_row_before = event & pg_sys::TRIGGER_EVENT_ROW != 0
            && event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
        let op = match event & pg_sys::TRIGGER_EVENT_OPMASK {
            pg_sys::TRIGGER_EVENT_INSERT => Operation::Insert,
            pg_sys::TRIGGER_EVENT_UPDATE => Operation::Update,
            _ => raise(
                Code::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                "messiah.enforce_custom_fields() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger",
                None,
                None,
            ),
        };
        if !is_row_before {
            raise(
                Code::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                "messiah.enforce_custom_fields() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger",
                None,
                None,
            );
        }
        let trigger = (*td).tg_trigger;
        let entity: &[u8] = if (*trigger).tgnargs >= 1 {
            std::ffi::CStr::from_ptr(*(*trigger).tgargs).to_bytes()
        } else {
            b""
        };
        let rel = (*td).tg_relation;
        let tuple = if op == Operation::Update {
            (*td).tg_newtuple
        } else {
            (*td).tg_trigtuple
        };
        let snap = snapshot();
        let Some(compiled) = snap.entity_bytes(entity) else {
            let entity = String::from_utf8_lossy(entity);
            raise(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("messiah.enforce_custom_fields({entity:?}): not an entity table"),
                Some(format!(
                    "Entity tables: {}.",
                    fields::ENTITY_TABLES.join(", ")
                )),
                None,
            );
        };
        let attnum = custom_fields_attnum(rel);
        let desc = (*rel).rd_att;
        let datum = super::tuple::varlena_attr(tuple, attnum, desc);
        if op == Operation::Update {
            let old = super::tuple::varlena_attr((*td).tg_trigtuple, attnum, desc);
            let unchanged = match (datum, old) {
                (None, None) => true,
                (Some(new), Some(old)) => same_varlena(new, old),
                _ => false,
            };
            if unchanged {
                return pg_sys::Datum::from(tuple);
            }
        }
        let mut short: super::tuple::ShortBuf = [0; 33];
        let jsonb =
            datum.map(|d| super::tuple::readable_varlena(d, &mut short) as *mut pg_sys::Jsonb);
        let doc = jsonb.map(|p| Jb::root(p));
        let outcome = fields::validate_document(compiled, doc, op);
        crate::monitor::counters::count_validation(
            (*rel).rd_id,
            !outcome.errors.is_empty(),
            || qualified_name(rel),
        );
        if !outcome.errors.is_empty() {
            let table = pgrx::name_data_to_str(&(*(*rel).rd_rel).relname).to_string();
            raise(
                Code::ERRCODE_CHECK_VIOLATION,
                format!(
                    "new row for relation \"{table}\" violates {}",
                    fields::violation_count(&outcome.errors)
                ),
                Some(fields::errors_detail(&outcome.errors)),
                Some("The tenant's field definitions are listed by messiah_list_fields() in the admin database.".into()),
            );
        }
        if outcome.is_unchanged() {
            return pg_sys::Datum::from(tuple);
        }
        // Slow path (defaults to add or keys to strip): rewrite custom_fields with Postgres' own
        // jsonb operators, so the document is never converted to text (which would be lossy for
        // documents nested deeper than a JSON parser's recursion limit).
        let mut value = match jsonb {
            Some(p) => pg_sys::Datum::from(p),
            None => pg_sys::Datum::from(0usize),
        };
        if outcome.add_defaults {
            // `defaults || document`: keys present in the document win, missing ones get defaults.
            let defaults = JsonB(serde_json::Value::Object(compiled.defaults_object()))
                .into_datum()
                .unwrap_or_else(|| crate::err::internal("building defaults", "no datum"));
            value = if jsonb.is_none() {
                defaults
            } else {
                pg_sys::DirectFunctionCall2Coll(
                    Some(fmgr::jsonb_concat),
                    pg_sys::InvalidOid,
                    defaults,
                    value,
                )
            };
        }
        if !outcome.strip_keys.is_empty() && value != pg_sys::Datum::from(0usize) {
            let keys =
                outcome.strip_keys.clone().into_datum().unwrap_or_else(|| {
                    crate::err::internal("building the keys to strip", "no datum")
                });
            value = pg_sys::DirectFunctionCall2Coll(
                Some(fmgr::jsonb_delete_array),
                pg_sys::InvalidOid,
                value,
                keys,
            );
        }
        let mut col = attnum as i32;
        let mut null = false;
        let modified =
            pg_sys::heap_modify_tuple_by_cols(tuple, desc, 1, &mut col, &mut value, &mut null);
        pg_sys::Datum::from(modified)
    }
}

/// `schema.table` of `rel`, for the validation counters.
///
/// # Safety
/// `rel` is an open relation.
unsafe fn qualified_name(rel: pg_sys::Relation) -> String {
    // SAFETY: rel is open (the caller's contract); get_namespace_name returns a palloc'd
    // copy or NULL.
    unsafe {
        let class = &*(*rel).rd_rel;
        let ns = pg_sys::get_namespace_name(class.relnamespace);
        let schema = if ns.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(ns).to_string_lossy().into_owned()
        };
        format!("{schema}.{}", pgrx::name_data_to_str(&class.relname))
    }
}

/// Installs the catalog copy in this (tenant) database; called over a maintenance connection
/// by the admin installation that manages the tenant. `snapshot` is `{"version", "policy",
/// "fields": [...], "tenant": {...}}` and must compile (22023 otherwise). Unless `force`:
/// a version not newer than the installed one is ignored (`unchanged`), so a late or repeated
/// push never goes back in time, and a copy that names another installation is refused
/// (55000: the tenant was taken over). `force` (creation, takeover, adoption, reconcile
/// repair) installs whatever is given. Field indexes are not this function's business: they
/// are built concurrently by the admin side afterwards (`tenants::indexes`). Returns
/// `installed` or `unchanged`.
#[pg_extern(sql = false)]
fn install_snapshot(
    installation_id: pgrx::Uuid,
    tenant_id: &str,
    version: i64,
    snapshot: JsonbArg,
    force: bool,
) -> String {
    if let Err(e) = fields::compile_snapshot(&snapshot.0) {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("field snapshot does not compile: {e}"),
            None,
            None,
        );
    }
    let installation = installation_id.to_string();
    Spi::run("LOCK TABLE messiah.field_snapshot IN EXCLUSIVE MODE")
        .or_raise("locking the snapshot");
    let current = crate::spi::text_rows(
        "SELECT version::text, installation_id::text FROM messiah.field_snapshot",
        &[],
        2,
    )
    .into_iter()
    .next();
    if let (Some(row), false) = (&current, force) {
        let owner = row.get(1).cloned().flatten().unwrap_or_default();
        if owner != installation {
            raise(
                Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "tenant \"{tenant_id}\" is managed by another messiah installation ({owner})"
                ),
                Some(format!(
                    "Installation {installation} tried to update its catalog copy."
                )),
                Some(
                    "The tenant was taken over (messiah_takeover) by another admin database."
                        .into(),
                ),
            );
        }
        let installed: i64 = row
            .first()
            .cloned()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if installed >= version {
            return "unchanged".into();
        }
    }
    Spi::run_with_args(
        "INSERT INTO messiah.field_snapshot (tenant_id, installation_id, version, snapshot) \
         VALUES ($1, $2::uuid, $3, $4) \
         ON CONFLICT (singleton) DO UPDATE SET tenant_id = excluded.tenant_id, \
             installation_id = excluded.installation_id, version = excluded.version, \
             snapshot = excluded.snapshot, installed_at = pg_catalog.now()",
        &[
            tenant_id.into(),
            installation.as_str().into(),
            version.into(),
            JsonB(snapshot.0.clone()).into(),
        ],
    )
    .or_raise("writing the snapshot");
    // SAFETY: catalog lookups by name, then a relcache invalidation of the snapshot table,
    // sent to every backend at commit.
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"messiah".as_ptr(), false);
        let relid = pg_sys::get_relname_relid(c"field_snapshot".as_ptr(), nsp);
        pg_sys::CacheInvalidateRelcacheByRelid(relid);
    }
    "installed".into()
}

/// Rows read per cursor fetch by [`check_rows`].
/// What [`check_rows`] found so far.
#[derive(Default)]
struct Tally {
    checked: i64,
    violations: i64,
    sample: Vec<serde_json::Value>,
}

/// Validates every row of one fetched batch (`id::text, custom_fields`), read in place as the
/// trigger reads it (any depth, exact numbers); the first `sample_size` violating rows are
/// kept with their errors. A detoasted copy is freed as soon as its row is checked.
fn check_batch(
    batch: &mut pgrx::spi::SpiTupleTable,
    entity: &fields::CompiledEntity,
    sample_size: usize,
    tally: &mut Tally,
) -> Result<(), pgrx::spi::Error> {
    while batch.next().is_some() {
        tally.checked += 1;
        let mut short: super::tuple::ShortBuf = [0; 33];
        let datum = batch.get_datum_by_ordinal(2)?;
        // SAFETY: a non-null jsonb column value of the current row, valid until the batch is
        // freed; made readable in `short` or a palloc'd copy.
        let readable = datum.map(|d| unsafe { super::tuple::readable_varlena(d, &mut short) });
        // SAFETY: a readable (4-byte header, uncompressed) jsonb, alive until below.
        let doc = readable.map(|p| unsafe { Jb::root(p as *mut pg_sys::Jsonb) });
        let outcome = fields::validate_document(entity, doc, Operation::Update);
        if let (Some(d), Some(p)) = (datum, readable) {
            if p != d.cast_mut_ptr() && p != short.as_mut_ptr() as *mut pg_sys::varlena {
                // SAFETY: p was palloc'd by pg_detoast_datum and nothing refers to it any
                // more (`outcome`'s errors own their strings).
                unsafe { pg_sys::pfree(p as *mut std::ffi::c_void) };
            }
        }
        if !outcome.errors.is_empty() {
            tally.violations += 1;
            if tally.sample.len() < sample_size {
                let id = batch.get::<String>(1)?.unwrap_or_default();
                tally.sample.push(serde_json::json!({"id": id, "errors": fields::errors_to_json(&outcome.errors)}));
            }
        }
    }
    Ok(())
}

const CHECK_BATCH: i64 = 1000;

/// Checks the rows of `entity_table` in this (tenant) database against `snapshot` (the
/// definitions as the admin transaction sees them, so a tightening can be checked before it
/// commits), reading them through a cursor [`CHECK_BATCH`] rows at a time, so the memory used
/// does not grow with the table. Returns `{"entity_table", "checked", "violations", "sample":
/// [{"id", "errors"}]}` with at most `sample_size` sample rows.
#[pg_extern(sql = false)]
fn check_rows(entity_table: &str, snapshot: JsonbArg, sample_size: i32) -> JsonB {
    let compiled = fields::compile_snapshot(&snapshot.0).unwrap_or_else(|e| {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("field snapshot does not compile: {e}"),
            None,
            None,
        )
    });
    let Some(entity) = compiled.entity(entity_table) else {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{entity_table:?} is not an entity table"),
            Some(format!(
                "Entity tables: {}.",
                fields::ENTITY_TABLES.join(", ")
            )),
            None,
        );
    };
    let q = format!(
        "SELECT id::text, custom_fields FROM public.{}",
        crate::ident::quote_ident(entity_table)
    );
    let (checked, violations, sample) = Spi::connect(|c| {
        let mut cursor = c.open_cursor(&q, &[]);
        let mut tally = Tally::default();
        loop {
            let found = {
                let mut batch = cursor.fetch(CHECK_BATCH)?;
                let found = !batch.is_empty();
                check_batch(&mut batch, entity, sample_size.max(0) as usize, &mut tally)?;
                found
            };
            // pgrx leaves fetched tuple tables to SPI_finish: free this batch's now, or every
            // row of the table would stay in memory until the end of the call.
            // SAFETY: SPI_tuptable is the batch just read (out of scope: nothing refers to it).
            unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
            if !found {
                break;
            }
        }
        Ok::<_, pgrx::spi::Error>((tally.checked, tally.violations, tally.sample))
    })
    .or_raise("checking rows");
    JsonB(serde_json::json!({
        "entity_table": entity_table,
        "checked": checked,
        "violations": violations,
        "sample": sample,
    }))
}

/// Validates `custom_fields` of `entity_table` against this database's installed snapshot and
/// returns the errors as a jsonb array of `{"field", "code", "message"}` (empty: valid), with
/// INSERT semantics. The tenant-side twin of `messiah_validate_custom_fields`.
#[pg_extern(sql = false)]
fn validate_local(entity_table: Option<&str>, custom_fields: Option<JsonbArg>) -> JsonB {
    let entity_table = crate::shim::required("entity_table", entity_table);
    let snap = snapshot();
    let Some(entity) = snap.entity(entity_table) else {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{entity_table:?} is not an entity table"),
            None,
            None,
        );
    };
    let doc = custom_fields.map(|j| j.0);
    JsonB(fields::errors_to_json(
        &fields::validate_document(entity, doc.as_ref(), Operation::Insert).errors,
    ))
}
