//! Key management: each tenant's data keys (DEKs), stored only wrapped by the master key (KEK); the per-backend cache
//! of unwrapped keys; the admin API (create, rotate, rewrap, shred).
//!
//! **Storage.** `tenant.data_key` holds one row per tenant and key version: its state (`active`, `retired`,
//! `destroyed`) and the wrapped key (see `ciphertext` for the format), readable by superusers only. A tenant has at
//! most one active version. Shredding sets every version to `destroyed` and erases the wrapped key; a tenant shredded
//! before it had a key gets a `destroyed` version 1 as its tombstone. Changes to one tenant's keys are serialized by a
//! transaction-level lock of tenant_guard's own ([`lock_tenant`]), which no SQL function can take.
//!
//! **Master key.** Loaded from the provider the `tenant_guard.kek_*` settings name (see `kek`), cached per backend,
//! zeroized on drop. A new data key is always wrapped by a freshly loaded master key; an unwrap that meets an unknown
//! master key id reloads both providers once before it fails.
//!
//! **Cache.** Unwrapped keys are cached per backend as expanded AES-GCM keys, which are zeroized when dropped. A
//! statement trigger on the key table sends a relcache invalidation at commit; every backend accepts pending
//! invalidations once per statement before it uses the cache, so a rotation or shred in one backend is seen by every
//! other backend within its next statement. Keys are read with the latest snapshot, taken after those invalidations
//! were accepted (in SPI's read-only mode, so that a REPEATABLE READ transaction that has written something reads
//! with it too: see `privileged::select_latest`), so no committed shred can be missed by a fresh read. Keys read in a
//! REPEATABLE READ or SERIALIZABLE transaction, or written by the current one, are forgotten at its end.

use crate::ciphertext::{self, DataKey, Key, KEY_LEN, NONCE_LEN};
use crate::errors;
use crate::gucs::{self, KekSlot, KekSource};
use crate::kek;
use crate::privileged::{as_bootstrap_superuser, select_latest};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Most unwrapped data keys remembered per backend; the cache is emptied when it is full.
const CACHE_CAPACITY: usize = 4096;
/// First key of the locks tenant_guard takes on a tenant's keys (ASCII "tgk" and 1).
const LOCK_CLASS: u32 = 0x7467_6b01;
/// The advisory-lock subtype of those locks: `pg_advisory_lock(bigint)` takes 1 and `pg_advisory_lock(int, int)`
/// takes 2, so no SQL function can take (and hold, to stall another tenant's first encryption) one of ours.
const LOCK_SUBTYPE: u16 = 0x7467;

/// Takes the transaction-level lock on a tenant's keys, waiting for whoever holds it.
fn lock_tenant(tenant: &Uuid) {
    let words = tenant.as_bytes().chunks(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")));
    let tag = pg_sys::LOCKTAG {
        // SAFETY: plain read of a backend global.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: LOCK_CLASS,
        locktag_field3: words.fold(0, |acc, w| acc ^ w),
        locktag_field4: LOCK_SUBTYPE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a valid lock tag; a transaction-level lock (released at commit or abort), waiting as long as it takes.
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false) };
}

/// A usable data key of one tenant.
pub struct Dek {
    pub version: u32,
    pub key: DataKey,
}

#[derive(Default)]
struct Cache {
    generation: u64,
    active: HashMap<Uuid, Rc<Dek>>,
    versions: HashMap<(Uuid, u32), Rc<Dek>>,
    destroyed: HashSet<Uuid>,
}

impl Cache {
    fn clear(&mut self) {
        self.active.clear();
        self.versions.clear();
        self.destroyed.clear();
    }
}

struct LoadedKek {
    source: KekSource,
    key: Key,
    id: [u8; 8],
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// Bumped by invalidations; the cache is emptied when it belongs to an older generation.
    static GENERATION: Cell<u64> = const { Cell::new(1) };
    static KEY_RELID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// (local transaction id, statement start) of the last statement that accepted invalidations.
    static LAST_STATEMENT: Cell<(u32, i64)> = const { Cell::new((0, i64::MIN)) };
    /// The cache holds keys read under a transaction snapshot, or written by this transaction.
    static TRANSACTION_LOCAL: Cell<bool> = const { Cell::new(false) };
    static KEKS: RefCell<[Option<Rc<LoadedKek>>; 2]> = const { RefCell::new([None, None]) };
}

/// Registers the transaction and relcache callbacks. Called once from `_PG_init`.
pub fn init() {
    // SAFETY: registering backend-lifetime callbacks with static functions and no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
    }
}

fn invalidate() {
    GENERATION.set(GENERATION.get().wrapping_add(1));
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE) && TRANSACTION_LOCAL.replace(false) {
        invalidate();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let ours = KEY_RELID.get();
    if relid == pg_sys::InvalidOid || (ours != pg_sys::InvalidOid && relid == ours) {
        invalidate();
        KEY_RELID.set(pg_sys::InvalidOid);
    }
}

/// Accepts pending invalidations once per statement, then drops the cache if it is stale.
fn sync() {
    // SAFETY: plain reads of backend state; MyProc is set for every backend that runs SQL.
    let now = unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetCurrentStatementStartTimestamp()) };
    if LAST_STATEMENT.get() != now {
        LAST_STATEMENT.set(now);
        // SAFETY: what every lock acquisition does; it runs our callbacks, which only touch Cells.
        unsafe { pg_sys::AcceptInvalidationMessages() };
    }
    let generation = GENERATION.get();
    CACHE.with_borrow_mut(|c| {
        if c.generation != generation {
            c.clear();
            c.generation = generation;
        }
    });
}

/// Caches with `f`, unless an invalidation arrived since `generation` was read.
fn remember(generation: u64, f: impl FnOnce(&mut Cache)) {
    if GENERATION.get() != generation {
        return;
    }
    CACHE.with_borrow_mut(|c| {
        if c.versions.len() + c.destroyed.len() >= CACHE_CAPACITY {
            c.clear();
        }
        f(c)
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Master key

fn server_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The master key of `slot`, or None when that slot is not configured. `fresh` reloads it from its provider.
fn load_kek(slot: KekSlot, fresh: bool) -> Option<Rc<LoadedKek>> {
    let index = slot as usize;
    let source = match gucs::kek_source(slot) {
        Err(gucs::AmbiguousKek) => errors::kek_ambiguous(slot),
        Ok(None) => {
            KEKS.with_borrow_mut(|k| k[index] = None);
            return None;
        }
        Ok(Some(source)) => source,
    };
    if !fresh {
        if let Some(hit) = KEKS.with_borrow(|k| k[index].clone().filter(|k| k.source == source)) {
            return Some(hit);
        }
    }
    let key = match &source {
        KekSource::File(path) => kek::from_file(std::path::Path::new(path), server_uid()),
        KekSource::Command(command) => kek::from_command(command),
    }
    .unwrap_or_else(|e| errors::kek_unavailable(slot, Some(&e)));
    let id = ciphertext::kek_id(&key);
    let loaded = Rc::new(LoadedKek { source, key, id });
    KEKS.with_borrow_mut(|k| k[index] = Some(loaded.clone()));
    Some(loaded)
}

fn current_kek(fresh: bool) -> Rc<LoadedKek> {
    load_kek(KekSlot::Current, fresh).unwrap_or_else(|| errors::kek_unavailable(KekSlot::Current, None))
}

/// Unwraps a stored data key with whichever configured master key wrapped it. The previous master key's provider
/// is asked only when the current key did not wrap it: a failing previous provider never stops data wrapped by the
/// current key from decrypting, and fails only what needs it (with an error naming the previous-key settings).
fn unwrap_dek(tenant: &Uuid, version: u32, wrapped: &[u8]) -> Key {
    let id = ciphertext::wrapped_kek_id(wrapped).unwrap_or_else(|_| errors::wrapped_key_corrupt(version));
    for fresh in [false, true] {
        let current = current_kek(fresh);
        let kek =
            if current.id == id { Some(current) } else { load_kek(KekSlot::Previous, fresh).filter(|k| k.id == id) };
        if let Some(kek) = kek {
            return ciphertext::unwrap(&kek.key, tenant.as_bytes(), version, wrapped)
                .unwrap_or_else(|_| errors::wrapped_key_corrupt(version));
        }
    }
    errors::kek_unknown(None)
}

fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::getrandom(bytes.as_mut()).unwrap_or_else(|_| {
        errors::internal("tenant_guard could not read the operating system's random source".into())
    });
    bytes
}

/// Nonces drawn from the operating system's random source per `getrandom` call (a 12-byte read costs a system call,
/// about half of a 100-byte encryption on this machine class).
const NONCES_PER_READ: usize = 341;

struct NoncePool {
    /// The process that filled it: a pool is never used by two processes (a fork would share it).
    pid: i32,
    next: usize,
    bytes: [u8; NONCES_PER_READ * NONCE_LEN],
}

thread_local! {
    static NONCES: RefCell<NoncePool> =
        const { RefCell::new(NoncePool { pid: 0, next: NONCES_PER_READ, bytes: [0; NONCES_PER_READ * NONCE_LEN] }) };
}

/// A fresh random nonce for one encryption: each one is handed out once, and only in the process that read it.
pub fn nonce() -> [u8; NONCE_LEN] {
    // SAFETY: plain read of a backend global, set after fork.
    let pid = unsafe { pg_sys::MyProcPid };
    NONCES.with_borrow_mut(|pool| {
        if pool.pid != pid || pool.next >= NONCES_PER_READ {
            getrandom::getrandom(&mut pool.bytes).unwrap_or_else(|_| {
                errors::internal("tenant_guard could not read the operating system's random source".into())
            });
            pool.pid = pid;
            pool.next = 0;
        }
        let at = pool.next * NONCE_LEN;
        pool.next += 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&pool.bytes[at..at + NONCE_LEN]);
        pool.bytes[at..at + NONCE_LEN].fill(0);
        nonce
    })
}

/// A new random data key for `tenant`/`version`, and its wrapping under a freshly loaded master key.
fn new_dek(tenant: &Uuid, version: u32) -> (Key, Vec<u8>) {
    let kek = current_kek(true);
    let dek: Key = random::<KEY_LEN>();
    let wrapped = ciphertext::wrap(&kek.key, tenant.as_bytes(), version, &dek, &nonce());
    (dek, wrapped)
}

// ---------------------------------------------------------------------------------------------------------------
// The key table

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Retired,
    Destroyed,
}

struct Row {
    version: u32,
    state: State,
    wrapped: Option<Vec<u8>>,
}

fn pg_uuid(u: &Uuid) -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*u.as_bytes())
}

fn parse_state(text: &str) -> State {
    match text {
        "active" => State::Active,
        "retired" => State::Retired,
        _ => State::Destroyed,
    }
}

/// A tenant's key rows, read with the latest snapshot (see `privileged::select_latest`). Inside `Spi::connect`.
fn select_rows(tenant: &Uuid) -> Vec<Row> {
    select_latest(
        c"SELECT version, state, wrapped FROM tenant.data_key WHERE tenant OPERATOR(pg_catalog.=) $1 ORDER BY version",
        &[(pg_sys::UUIDOID, pg_uuid(tenant).into_datum())],
        |row| Row {
            version: row.get::<i32>(1).unwrap_or(0) as u32,
            state: parse_state(&row.get::<String>(2).unwrap_or_default()),
            wrapped: row.get::<Vec<u8>>(3),
        },
    )
    .unwrap_or_else(|_| errors::internal("tenant_guard could not read tenant.data_key".into()))
}

/// Reads a tenant's key rows with the latest snapshot (see the module notes), as the bootstrap superuser.
fn read_rows(tenant: &Uuid) -> Vec<Row> {
    // SAFETY: plain read of a backend global.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        TRANSACTION_LOCAL.set(true);
    }
    as_bootstrap_superuser(|| {
        Spi::connect(|client| {
            if KEY_RELID.get() == pg_sys::InvalidOid {
                let relid = client
                    .select("SELECT 'tenant.data_key'::pg_catalog.regclass::pg_catalog.oid", None, &[])
                    .and_then(|t| t.first().get_one::<pg_sys::Oid>())
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| errors::internal("tenant_guard could not find tenant.data_key".into()));
                KEY_RELID.set(relid);
            }
            select_rows(tenant)
        })
    })
}

/// Raises 25006 unless keys can be written here and now.
fn check_writable(what: &str) {
    // SAFETY: plain reads of backend state.
    if unsafe { pg_sys::RecoveryInProgress() || pg_sys::XactReadOnly } {
        errors::keys_read_only(what);
    }
}

/// Runs `f` as the bootstrap superuser with the tenant's key rows locked against concurrent changes.
fn with_tenant_locked<R>(tenant: &Uuid, f: impl FnOnce(&mut SpiClient<'_>, Vec<Row>) -> R) -> R {
    TRANSACTION_LOCAL.set(true);
    lock_tenant(tenant);
    as_bootstrap_superuser(|| {
        Spi::connect_mut(|client| {
            // what the lock's previous holder committed
            let rows = select_rows(tenant);
            f(client, rows)
        })
    })
}

fn insert_key(client: &mut SpiClient<'_>, tenant: &Uuid, version: u32, wrapped: Vec<u8>) -> bool {
    let inserted = client
        .update(
            "INSERT INTO tenant.data_key (tenant, version, state, wrapped) VALUES ($1, $2, 'active', $3) \
             ON CONFLICT DO NOTHING RETURNING version",
            None,
            &[pg_uuid(tenant).into(), (version as i32).into(), wrapped.into()],
        )
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a data key: {e}")));
    !inserted.is_empty()
}

// ---------------------------------------------------------------------------------------------------------------
// What encryption uses

/// The cached key `pick` chooses (after accepting invalidations), or 55000 if the tenant is known to be shredded.
fn cached(tenant: &Uuid, pick: impl FnOnce(&Cache) -> Option<Rc<Dek>>) -> Option<Rc<Dek>> {
    sync();
    CACHE
        .with_borrow(|c| if c.destroyed.contains(tenant) { Err(()) } else { Ok(pick(c)) })
        .unwrap_or_else(|()| errors::keys_destroyed(None))
}

/// The tenant's key rows, read fresh; 55000 (remembered) if the tenant was shredded.
fn live_rows(tenant: &Uuid, generation: u64) -> Vec<Row> {
    let rows = read_rows(tenant);
    if rows.iter().any(|r| r.state == State::Destroyed) {
        remember(generation, |c| {
            c.destroyed.insert(*tenant);
        });
        errors::keys_destroyed(None);
    }
    rows
}

/// The usable key of a stored row.
fn unwrap_row(tenant: &Uuid, row: &Row) -> Rc<Dek> {
    let wrapped = row.wrapped.as_deref().unwrap_or_else(|| errors::wrapped_key_corrupt(row.version));
    Rc::new(Dek { version: row.version, key: DataKey::new(&unwrap_dek(tenant, row.version, wrapped)) })
}

/// The tenant's active data key, creating version 1 if the tenant has none.
pub fn active_key(tenant: &Uuid) -> Rc<Dek> {
    if let Some(dek) = cached(tenant, |c| c.active.get(tenant).cloned()) {
        return dek;
    }
    let generation = GENERATION.get();
    let rows = live_rows(tenant, generation);
    let dek = match rows.iter().find(|r| r.state == State::Active) {
        Some(row) => unwrap_row(tenant, row),
        None => create_first(tenant),
    };
    remember(generation, |c| {
        c.active.insert(*tenant, dek.clone());
        c.versions.insert((*tenant, dek.version), dek.clone());
    });
    dek
}

/// Version `version` of the tenant's data key.
pub fn version_key(tenant: &Uuid, version: u32) -> Rc<Dek> {
    if let Some(dek) = cached(tenant, |c| c.versions.get(&(*tenant, version)).cloned()) {
        return dek;
    }
    let generation = GENERATION.get();
    let rows = live_rows(tenant, generation);
    let Some(row) = rows.iter().find(|r| r.version == version) else { errors::unknown_key_version(version) };
    let dek = unwrap_row(tenant, row);
    remember(generation, |c| {
        c.versions.insert((*tenant, version), dek.clone());
    });
    dek
}

/// What [`ensure_key`] found or made.
enum Ensured {
    /// The active row (made by another transaction while this one waited for the lock, or long ago), still wrapped.
    Existing(Row),
    /// A version this call created, and its key.
    Created(u32, Key),
}

/// Under the tenant's lock: its active key, creating version 1 if it has none. `named`: whether errors name the
/// tenant (the admin API) or say "the current tenant" (encryption).
fn ensure_key(tenant: &Uuid, named: bool) -> Ensured {
    check_writable("create a data key");
    with_tenant_locked(tenant, |client, rows| {
        if rows.iter().any(|r| r.state == State::Destroyed) {
            errors::keys_destroyed(named.then_some(tenant));
        }
        let version = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        if let Some(row) = rows.into_iter().find(|r| r.state == State::Active) {
            return Ensured::Existing(row);
        }
        let (dek, wrapped) = new_dek(tenant, version);
        if !insert_key(client, tenant, version, wrapped) {
            errors::key_creation_conflict();
        }
        Ensured::Created(version, dek)
    })
}

/// Creates the tenant's first data key (on its first encryption).
fn create_first(tenant: &Uuid) -> Rc<Dek> {
    match ensure_key(tenant, false) {
        Ensured::Created(version, dek) => Rc::new(Dek { version, key: DataKey::new(&dek) }),
        Ensured::Existing(row) => unwrap_row(tenant, &row),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Admin operations

/// Creates the tenant's first data key if it has none. Returns the active version.
pub fn create(tenant: &Uuid) -> u32 {
    sync();
    match ensure_key(tenant, true) {
        Ensured::Created(version, _) => version,
        Ensured::Existing(row) => row.version,
    }
}

/// Adds a new active version; the previous one is retired (it still decrypts). Returns the new version.
pub fn rotate(tenant: &Uuid) -> u32 {
    sync();
    check_writable("rotate a data key");
    with_tenant_locked(tenant, |client, rows| {
        if rows.iter().any(|r| r.state == State::Destroyed) {
            errors::keys_destroyed(Some(tenant));
        }
        let version = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        let (_dek, wrapped) = new_dek(tenant, version);
        client
            .update(
                "UPDATE tenant.data_key SET state = 'retired', retired_at = now() \
                 WHERE tenant = $1 AND state = 'active'",
                None,
                &[pg_uuid(tenant).into()],
            )
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not retire a data key: {e}")));
        if !insert_key(client, tenant, version, wrapped) {
            errors::key_creation_conflict();
        }
        version
    })
}

/// Destroys every data key version of the tenant and leaves a tombstone. Returns how many versions were destroyed.
pub fn shred(tenant: &Uuid) -> i32 {
    sync();
    check_writable("shred a tenant's keys");
    with_tenant_locked(tenant, |client, rows| {
        let live = rows.iter().filter(|r| r.state != State::Destroyed).count() as i32;
        if rows.is_empty() {
            client
                .update(
                    "INSERT INTO tenant.data_key (tenant, version, state, wrapped, destroyed_at) \
                     VALUES ($1, 1, 'destroyed', NULL, now())",
                    None,
                    &[pg_uuid(tenant).into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not record the shred: {e}")));
        } else if live > 0 {
            client
                .update(
                    "UPDATE tenant.data_key SET state = 'destroyed', wrapped = NULL, destroyed_at = now() \
                     WHERE tenant = $1 AND state <> 'destroyed'",
                    None,
                    &[pg_uuid(tenant).into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not shred the keys: {e}")));
        }
        live
    })
}

/// Rewraps every data key that the previous master key wrapped under the current one. Returns how many it rewrapped.
pub fn rewrap_all() -> i64 {
    sync();
    check_writable("rewrap data keys");
    TRANSACTION_LOCAL.set(true);
    let current = current_kek(true);
    let previous = load_kek(KekSlot::Previous, true);
    as_bootstrap_superuser(|| {
        Spi::connect_mut(|client| {
            // Blocks key creation, rotation and shredding until commit, so no key is missed; reads go on.
            client
                .update("LOCK TABLE tenant.data_key IN SHARE ROW EXCLUSIVE MODE", None, &[])
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not lock tenant.data_key: {e}")));
            let rows: Vec<(pgrx::Uuid, i32, Vec<u8>)> = client
                .update(
                    "SELECT tenant, version, wrapped FROM tenant.data_key WHERE wrapped IS NOT NULL \
                     ORDER BY tenant, version",
                    None,
                    &[],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read tenant.data_key: {e}")))
                .filter_map(|row| Some((row.get(1).ok()??, row.get(2).ok()??, row.get::<Vec<u8>>(3).ok()??)))
                .collect();
            let mut rewrapped = Vec::new();
            let mut unknown = 0i64;
            for (tenant, version, wrapped) in rows {
                let tenant = Uuid::from_bytes(*tenant.as_bytes());
                let id = ciphertext::wrapped_kek_id(&wrapped)
                    .unwrap_or_else(|_| errors::wrapped_key_corrupt(version as u32));
                if id == current.id {
                    continue;
                }
                match previous.as_ref().filter(|p| p.id == id) {
                    Some(prev) => {
                        let dek = ciphertext::unwrap(&prev.key, tenant.as_bytes(), version as u32, &wrapped)
                            .unwrap_or_else(|_| errors::wrapped_key_corrupt(version as u32));
                        let again = ciphertext::wrap(&current.key, tenant.as_bytes(), version as u32, &dek, &nonce());
                        rewrapped.push((tenant, version, again));
                    }
                    None => unknown += 1,
                }
            }
            if unknown > 0 {
                errors::kek_unknown(Some(unknown));
            }
            for (tenant, version, wrapped) in &rewrapped {
                client
                    .update(
                        "UPDATE tenant.data_key SET wrapped = $3 WHERE tenant = $1 AND version = $2",
                        None,
                        &[pg_uuid(tenant).into(), (*version).into(), wrapped.clone().into()],
                    )
                    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a data key: {e}")));
            }
            rewrapped.len() as i64
        })
    })
}

// ---------------------------------------------------------------------------------------------------------------
// SQL API (admin). Thin wrappers; the logic is above.

fn from_pg(u: pgrx::Uuid) -> Uuid {
    Uuid::from_bytes(*u.as_bytes())
}

/// Creates the tenant's data key if it has none; returns its active version.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn create_key(tenant: pgrx::Uuid) -> i32 {
    create(&from_pg(tenant)) as i32
}

/// Adds a new active data key version for the tenant; returns it. Older versions still decrypt.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn rotate_key(tenant: pgrx::Uuid) -> i32 {
    rotate(&from_pg(tenant)) as i32
}

/// Crypto-shredding: destroys every data key version of the tenant. Returns how many versions it destroyed.
#[pg_extern(volatile, parallel_unsafe, strict, name = "shred")]
fn shred_tenant(tenant: pgrx::Uuid) -> i32 {
    shred(&from_pg(tenant))
}

/// Rewraps every data key under the current master key; returns how many it rewrapped.
#[pg_extern(volatile, parallel_unsafe)]
fn rewrap_keys() -> i64 {
    rewrap_all()
}

/// Called by the statement trigger on tenant.data_key: tells every backend to drop its cached data keys.
#[pg_extern(volatile, parallel_unsafe)]
fn _keys_changed(relid: pg_sys::Oid) {
    if crate::labels::qualified_name(relid).as_deref() != Some("tenant.data_key") {
        errors::invalid_parameter(
            "tenant._keys_changed() is called only by the trigger on tenant.data_key".into(),
            Some("It is internal to tenant_guard."),
        );
    }
    // SAFETY: queues a relcache invalidation for an existing relation (the trigger's own table); sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) }
}

extension_sql!(
    r#"
CREATE TABLE tenant.data_key (
    tenant       uuid NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    state        text NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    wrapped      bytea CHECK (octet_length(wrapped) = 69),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    destroyed_at timestamptz,
    PRIMARY KEY (tenant, version),
    CHECK ((state = 'destroyed') = (wrapped IS NULL))
);
CREATE UNIQUE INDEX data_key_one_active ON tenant.data_key (tenant) WHERE state = 'active';
COMMENT ON TABLE tenant.data_key IS
    'Per-tenant data keys, wrapped by the master key. Superusers only. Use tenant.create_key(), rotate_key(), shred().';
REVOKE ALL ON tenant.data_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.data_key', '');

CREATE FUNCTION tenant._keys_changed_trigger() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tenant._keys_changed(TG_RELID);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION tenant._keys_changed_trigger() FROM PUBLIC;
CREATE TRIGGER keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.data_key
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._keys_changed_trigger();

CREATE VIEW tenant.keys AS
SELECT tenant, version, state, created_at, retired_at, destroyed_at,
       pg_catalog.encode(pg_catalog.substr(wrapped, 2, 8), 'hex') AS kek_id
  FROM tenant.data_key;
COMMENT ON VIEW tenant.keys IS
    'Data key versions per tenant: state, timestamps, and the id of the master key that wraps each. No key material.';
REVOKE ALL ON tenant.keys FROM PUBLIC;
GRANT SELECT ON tenant.keys TO tenant_guard_admin;

REVOKE ALL ON FUNCTION tenant.create_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.rotate_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.shred(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.rewrap_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant._keys_changed(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.create_key(uuid), tenant.rotate_key(uuid), tenant.shred(uuid), tenant.rewrap_keys()
    TO tenant_guard_admin;
"#,
    name = "keys_schema",
    requires = ["labels_schema", create_key, rotate_key, shred_tenant, rewrap_keys, _keys_changed],
);
