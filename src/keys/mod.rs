//! Key management: each tenant's data keys (DEKs), stored only wrapped by the master key (KEK). One file per part:
//! [`table`] (the key table and its lock), [`master`] (the master key), [`cache`] (unwrapped keys per backend),
//! [`nonce`] (randomness), [`admin`] (create, rotate, shred, rewrap); this module is what encryption uses.
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

mod admin;
mod cache;
mod master;
mod nonce;
mod table;

pub use cache::Dek;
pub use nonce::nonce;

use crate::ciphertext::{DataKey, Key};
use crate::errors;
use crate::invalidation::{self, Watched};
use master::{new_dek, unwrap_dek};
use pgrx::prelude::*;
use std::rc::Rc;
use table::{check_writable, insert_key, read_rows, with_tenant_locked, Row, State};
use uuid::Uuid;

/// Registers the transaction callback. Called once from `_PG_init`.
pub fn init() {
    cache::init();
}

/// The cached key `pick` chooses (after accepting invalidations), or 55000 if the tenant is known to be shredded.
fn cached(tenant: &Uuid, pick: impl FnOnce(&cache::Cache) -> Option<Rc<Dek>>) -> Option<Rc<Dek>> {
    cache::sync();
    cache::with(|c| if c.destroyed.contains(tenant) { Err(()) } else { Ok(pick(c)) })
        .unwrap_or_else(|()| errors::keys_destroyed(None))
        .filter(|dek| dek.until.is_none_or(|fresh| fresh.valid()))
}

/// The tenant's key rows, read fresh; 55000 (remembered) if the tenant was shredded.
fn live_rows(tenant: &Uuid, generation: u64) -> Vec<Row> {
    let rows = read_rows(tenant);
    if rows.iter().any(|r| r.state == State::Destroyed) {
        cache::remember(generation, |c| {
            c.destroyed.insert(*tenant);
        });
        errors::keys_destroyed(None);
    }
    rows
}

/// The usable key of a stored row.
fn unwrap_row(tenant: &Uuid, row: &Row) -> Rc<Dek> {
    let wrapped = row.wrapped.as_deref().unwrap_or_else(|| errors::wrapped_key_corrupt(row.version));
    let (key, fresh) = unwrap_dek(tenant, row.version, wrapped, row.key_ref.as_deref());
    // unwrapped with the tenant's own master key: usable from the cache as long as that key is (a revoked customer
    // key stops decryption within tenant_guard.tenant_key_cache_seconds of when the key was loaded)
    Rc::new(Dek { version: row.version, key: DataKey::new(&key), until: fresh })
}

/// The tenant's active data key, creating version 1 if the tenant has none.
pub fn active_key(tenant: &Uuid) -> Rc<Dek> {
    if let Some(dek) = cached(tenant, |c| c.active.get(tenant).cloned()) {
        return dek;
    }
    let generation = invalidation::watch(Watched::Keys);
    let rows = live_rows(tenant, generation);
    let dek = match rows.iter().find(|r| r.state == State::Active) {
        Some(row) => unwrap_row(tenant, row),
        None => create_first(tenant),
    };
    cache::remember(generation, |c| {
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
    let generation = invalidation::watch(Watched::Keys);
    let rows = live_rows(tenant, generation);
    let Some(row) = rows.iter().find(|r| r.version == version) else { errors::unknown_key_version(version) };
    let dek = unwrap_row(tenant, row);
    cache::remember(generation, |c| {
        c.versions.insert((*tenant, version), dek.clone());
    });
    dek
}

/// What [`ensure_key`] found or made.
pub(super) enum Ensured {
    /// The active row (made by another transaction while this one waited for the lock, or long ago), still wrapped.
    Existing(Row),
    /// A version this call created, and its key.
    Created(u32, Key),
}

/// Under the tenant's lock: its active key, creating version 1 if it has none. `named`: whether errors name the
/// tenant (the admin API) or say "the current tenant" (encryption).
pub(super) fn ensure_key(tenant: &Uuid, named: bool) -> Ensured {
    check_writable("create a data key");
    let ensured = with_tenant_locked(tenant, |client, rows| {
        if rows.iter().any(|r| r.state == State::Destroyed) {
            errors::keys_destroyed(named.then_some(tenant));
        }
        let version = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        if let Some(row) = rows.into_iter().find(|r| r.state == State::Active) {
            return Ensured::Existing(row);
        }
        crate::citus::replication::check_key_creation(tenant);
        let (dek, wrapped) = new_dek(tenant, version, table::key_ref(client, tenant).as_deref());
        if !insert_key(client, tenant, version, wrapped) {
            errors::key_creation_conflict();
        }
        Ensured::Created(version, dek)
    });
    if matches!(ensured, Ensured::Created(..)) {
        crate::citus::replication::keys_changed(Some(&[*tenant]));
    }
    ensured
}

/// Creates the tenant's first data key (on its first encryption).
fn create_first(tenant: &Uuid) -> Rc<Dek> {
    match ensure_key(tenant, false) {
        Ensured::Created(version, dek) => {
            let key_ref = own_key_ref(tenant);
            Rc::new(Dek { version, key: DataKey::new(&dek), until: key_ref.map(|_| master::Fresh::now()) })
        }
        Ensured::Existing(row) => unwrap_row(tenant, &row),
    }
}

pgrx::extension_sql_file!(
    "../../sql/keys.sql",
    name = "keys_schema",
    requires = [
        "admin_role",
        admin::create_key,
        admin::rotate_key,
        admin::shred_tenant,
        admin::rewrap_keys,
        admin::set_key_provider
    ],
);

/// Checks that a wrapped data key about to be imported unwraps here: with the tenant's own key (`key_ref`, after the
/// same checks as `tenant.set_key_provider`) or with a configured master key (58000, XX001 otherwise).
pub fn check_importable(tenant: &Uuid, version: u32, wrapped: &[u8], key_ref: Option<&str>) {
    let _ = master::unwrap_dek(tenant, version, wrapped, key_ref);
}

pub use admin::check_key_ref;

/// The tenant's own key reference (bring your own key), if its own master key wraps its data keys.
pub fn own_key_ref(tenant: &Uuid) -> Option<String> {
    crate::privileged::as_bootstrap_superuser(|| Spi::connect(|c| table::key_ref(c, tenant)))
}

/// Crypto-shreds every data key version of `tenant` (as `tenant.shred`). Returns how many versions it destroyed.
pub fn shred_tenant(tenant: &Uuid) -> i32 {
    admin::shred(tenant)
}

/// The current master key, when one is configured (the secret every node of a Citus cluster shares, from which
/// `citus::ticket` derives its own key; never used directly).
pub fn master_key_if_configured() -> Option<crate::ciphertext::Key> {
    master::load_kek(crate::gucs::KekSlot::Current, false).map(|k| k.key.clone())
}
