//! The master key (KEK): loaded from the provider the `tenant_guard.kek_*` settings name (see
//! `tenant_guard_core::kek`), cached per backend, zeroized on drop. A new data key is always wrapped by a freshly
//! loaded master key; an unwrap that meets an unknown master key id reloads both providers once before it fails.

use super::nonce::{nonce, random};
use crate::ciphertext::{self, Key, KEY_LEN};
use crate::errors;
use crate::gucs::{self, KekSlot, KekSource};
use crate::kek;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A loaded master key and the provider it came from.
pub struct LoadedKek {
    source: KekSource,
    pub key: Key,
    pub id: [u8; ciphertext::KEK_ID_LEN],
}

thread_local! {
    static KEKS: RefCell<[Option<Rc<LoadedKek>>; 2]> = const { RefCell::new([None, None]) };
    /// Tenants' own master keys, by (tenant, key reference), with when they were loaded.
    static TENANT_KEKS: RefCell<HashMap<(Uuid, String), Cached>> = RefCell::new(HashMap::new());
}

type Cached = Rc<TenantKek>;

/// When a tenant's own master key was loaded from its provider: what it, and the data keys it unwrapped, may be
/// used for from this backend's cache.
#[derive(Clone, Copy)]
pub struct Fresh {
    loaded: Instant,
    statement: pg_sys::TimestampTz,
}

impl Fresh {
    pub fn now() -> Fresh {
        // SAFETY: a plain read of backend state.
        Fresh { loaded: Instant::now(), statement: unsafe { pg_sys::GetCurrentStatementStartTimestamp() } }
    }

    /// Whether it may still be used: younger than `tenant_guard.tenant_key_cache_seconds`, or loaded by the current
    /// statement (with 0, the provider runs once per statement, not once per value).
    pub fn valid(&self) -> bool {
        // SAFETY: as in `now`.
        self.loaded.elapsed() < Duration::from_secs(gucs::tenant_key_cache_seconds())
            || self.statement == unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
    }
}

/// A tenant's own master key (bring your own key), from `tenant_guard.tenant_kek_command`.
pub struct TenantKek {
    pub key: Key,
    pub id: [u8; ciphertext::KEK_ID_LEN],
    pub fresh: Fresh,
}

/// The master key of `tenant`'s provider (`key_ref`), from this backend's cache unless it is older than
/// `tenant_guard.tenant_key_cache_seconds` or `fresh`; 58000 naming the tenant when the provider fails (a revoked
/// customer key) or none is configured.
pub fn tenant_kek(tenant: &Uuid, key_ref: &str, fresh: bool) -> Rc<TenantKek> {
    let cache_key = (*tenant, key_ref.to_owned());
    if !fresh {
        let hit = TENANT_KEKS.with_borrow(|c| c.get(&cache_key).filter(|k| k.fresh.valid()).cloned());
        if let Some(hit) = hit {
            return hit;
        }
    }
    let Some(command) = gucs::tenant_kek_command() else { errors::tenant_kek_not_configured(tenant) };
    let tenant_text = tenant.to_string();
    let key = match kek::from_command_with_args(&command, &[&tenant_text, key_ref]) {
        Ok(key) => key,
        Err(e) => {
            TENANT_KEKS.with_borrow_mut(|c| c.remove(&cache_key));
            errors::tenant_kek_unavailable(tenant, &e)
        }
    };
    let loaded = Rc::new(TenantKek { id: ciphertext::kek_id(&key), key, fresh: Fresh::now() });
    TENANT_KEKS.with_borrow_mut(|c| {
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(cache_key, loaded.clone());
    });
    loaded
}

fn server_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The master key of `slot`, or None when that slot is not configured. `fresh` reloads it from its provider.
pub fn load_kek(slot: KekSlot, fresh: bool) -> Option<Rc<LoadedKek>> {
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

pub fn current_kek(fresh: bool) -> Rc<LoadedKek> {
    load_kek(KekSlot::Current, fresh).unwrap_or_else(|| errors::kek_unavailable(KekSlot::Current, None))
}

/// Unwraps a stored data key with whichever configured master key wrapped it. The previous master key's provider
/// is asked only when the current key did not wrap it: a failing previous provider never stops data wrapped by the
/// current key from decrypting, and fails only what needs it (with an error naming the previous-key settings).
///
/// A tenant with its own key (`key_ref`) has its data keys wrapped by that key: its provider is asked (through this
/// backend's cache), and its failure fails the unwrap, naming the tenant.
/// Returns the key, and for a tenant's own key, when the master key that unwrapped it was loaded.
pub fn unwrap_dek(tenant: &Uuid, version: u32, wrapped: &[u8], key_ref: Option<&str>) -> (Key, Option<Fresh>) {
    let id = ciphertext::wrapped_kek_id(wrapped).unwrap_or_else(|_| errors::wrapped_key_corrupt(version));
    if let Some(key_ref) = key_ref {
        for fresh in [false, true] {
            let own = tenant_kek(tenant, key_ref, fresh);
            if own.id == id {
                let key = ciphertext::unwrap(&own.key, tenant.as_bytes(), version, wrapped)
                    .unwrap_or_else(|_| errors::wrapped_key_corrupt(version));
                return (key, Some(own.fresh));
            }
        }
        // not wrapped by the tenant's own key: its provider now returns another key than the one that wrapped it
        errors::tenant_kek_changed(tenant);
    }
    for fresh in [false, true] {
        let current = current_kek(fresh);
        let kek =
            if current.id == id { Some(current) } else { load_kek(KekSlot::Previous, fresh).filter(|k| k.id == id) };
        if let Some(kek) = kek {
            let key = ciphertext::unwrap(&kek.key, tenant.as_bytes(), version, wrapped)
                .unwrap_or_else(|_| errors::wrapped_key_corrupt(version));
            return (key, None);
        }
    }
    errors::kek_unknown(None)
}

/// A new random data key for `tenant`/`version`, and its wrapping under a freshly loaded master key: the
/// tenant's own (`key_ref`), else the platform's.
pub fn new_dek(tenant: &Uuid, version: u32, key_ref: Option<&str>) -> (Key, Vec<u8>) {
    let dek: Key = random::<KEY_LEN>();
    let wrapped = wrap_dek(tenant, version, &dek, key_ref);
    (dek, wrapped)
}

/// `dek` wrapped for `tenant`/`version` under a freshly loaded master key: the tenant's own (`key_ref`), else the
/// platform's current one.
pub fn wrap_dek(tenant: &Uuid, version: u32, dek: &Key, key_ref: Option<&str>) -> Vec<u8> {
    match key_ref {
        Some(key_ref) => {
            ciphertext::wrap(&tenant_kek(tenant, key_ref, true).key, tenant.as_bytes(), version, dek, &nonce())
        }
        None => ciphertext::wrap(&current_kek(true).key, tenant.as_bytes(), version, dek, &nonce()),
    }
}
