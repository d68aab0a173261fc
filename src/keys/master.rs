//! The master key (KEK): loaded from the provider the `tenant_guard.kek_*` settings name (see
//! `tenant_guard_core::kek`), cached per backend, zeroized on drop. A new data key is always wrapped by a freshly
//! loaded master key; an unwrap that meets an unknown master key id reloads both providers once before it fails.

use super::nonce::{nonce, random};
use crate::ciphertext::{self, Key, KEY_LEN};
use crate::errors;
use crate::gucs::{self, KekSlot, KekSource};
use crate::kek;
use std::cell::RefCell;
use std::rc::Rc;
use uuid::Uuid;

/// A loaded master key and the provider it came from.
pub struct LoadedKek {
    source: KekSource,
    pub key: Key,
    pub id: [u8; ciphertext::KEK_ID_LEN],
}

thread_local! {
    static KEKS: RefCell<[Option<Rc<LoadedKek>>; 2]> = const { RefCell::new([None, None]) };
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
pub fn unwrap_dek(tenant: &Uuid, version: u32, wrapped: &[u8]) -> Key {
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

/// A new random data key for `tenant`/`version`, and its wrapping under a freshly loaded master key.
pub fn new_dek(tenant: &Uuid, version: u32) -> (Key, Vec<u8>) {
    let kek = current_kek(true);
    let dek: Key = random::<KEY_LEN>();
    let wrapped = ciphertext::wrap(&kek.key, tenant.as_bytes(), version, &dek, &nonce());
    (dek, wrapped)
}
