//! Verified tokens, shared by every backend of the server: a token whose signature one backend checked is accepted
//! by the others without checking it again (behind a pooler, one token lands on many backends).
//!
//! The table lives in shared memory, `tenant_guard.verification_cache_size` entries (a postmaster setting; 0 turns
//! it off). An entry holds SHA-256(salt, SHA-256(token)), never the token, the fingerprint of the key that checked
//! its signature, and until when it is worth keeping (the token's `exp` plus the clock leeway). What it vouches for
//! is the signature only: a backend that finds its token here still runs every other check against its own current
//! view of the issuers (the issuer, the key's presence and fingerprint, the claims, the scopes, the revocations and
//! suspensions, then the time, the binding and the replay checks at each use). So a removed or replaced key, a
//! revocation or a suspension applies at once, whatever the table remembers, and the table needs no invalidation.
//!
//! Slots are found by the key's hash in a window of [`WINDOW`] slots; a new entry takes an empty or expired slot of
//! the window, else the one that expires first (of those, the one written first). Reads take the table's lock shared, writes exclusive.

use crate::gucs;
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

const TRANCHE: &CStr = c"tenant_guard_verifications";
const SHMEM_NAME: &CStr = c"tenant_guard verification table";
/// Slots an entry may occupy, from the one its hash names.
const WINDOW: usize = 8;

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// SHA-256(salt, SHA-256(token)); all zero: never used.
    key: [u8; 32],
    /// The fingerprint of the key that checked the signature (`Jwk::fingerprint`).
    signer: [u8; 32],
    /// Seconds since the epoch after which the slot may be reused.
    until: i64,
    /// When it was written (the table's write count then): of entries that expire at the same time, the oldest is
    /// replaced first.
    written: u64,
}

#[repr(C)]
struct Table {
    capacity: usize,
    lock: *mut pg_sys::LWLock,
    salt: [u8; 16],
    /// Signatures checked by a backend that found no entry, and signatures skipped thanks to one.
    checked: AtomicU64,
    shared: AtomicU64,
    /// Entries written so far (under the exclusive lock).
    writes: u64,
    slots: [Slot; 0],
}

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
static mut TABLE: *mut Table = std::ptr::null_mut();

fn size(capacity: usize) -> usize {
    std::mem::size_of::<Table>() + capacity * std::mem::size_of::<Slot>()
}

/// Installs the shared-memory hooks. Called once from `_PG_init`, after `gucs::init`.
pub fn init() {
    // SAFETY: _PG_init runs once in the postmaster while it loads shared_preload_libraries; the previous hooks are
    // chained.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: chaining, then requesting this module's space and lock while the postmaster sizes shared memory.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        if gucs::verification_cache_size() > 0 {
            pg_sys::RequestAddinShmemSpace(size(gucs::verification_cache_size()));
            pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: chaining; then the table is made once (or found); the postmaster's pointer is inherited by every
    // backend it forks. A crash restart makes it anew, empty.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let capacity = gucs::verification_cache_size();
        if capacity == 0 {
            return;
        }
        TABLE = crate::shmem::init_struct(SHMEM_NAME, size(capacity), |ptr| {
            let table = ptr as *mut Table;
            (*table).capacity = capacity;
            (*table).lock = &mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
            (*table).salt = crate::shmem::salt(table as usize);
        }) as *mut Table;
    }
}

/// A token's place in the table: its key there, and the first slot of its window.
pub struct Entry {
    key: [u8; 32],
    start: usize,
}

/// The entry of the token whose SHA-256 is `digest`; None when the table is off.
pub fn entry(digest: &[u8; 32]) -> Option<Entry> {
    // SAFETY: TABLE is null or the shared table, whose capacity and salt never change after it is made.
    let (capacity, salt) = unsafe {
        let table = TABLE;
        if table.is_null() {
            return None;
        }
        ((*table).capacity, (*table).salt)
    };
    let mut h = Sha256::new();
    h.update(salt);
    h.update(digest);
    let mut key: [u8; 32] = h.finalize().into();
    if key == [0u8; 32] {
        key[0] = 1; // the empty marker
    }
    let start = (u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) % capacity as u64) as usize;
    Some(Entry { key, start })
}

/// Whether some backend checked this token's signature with the key of fingerprint `signer`.
pub fn known(entry: &Entry, signer: &[u8; 32]) -> bool {
    // SAFETY: the table exists (an Entry was made); its slots are read under its lock, taken shared and released
    // before anything can raise; the window stays within the slots (indices modulo the capacity).
    unsafe {
        let table = TABLE;
        let capacity = (*table).capacity;
        let slots = (&raw const (*table).slots) as *const Slot;
        pg_sys::LWLockAcquire((*table).lock, pg_sys::LWLockMode::LW_SHARED);
        let mut found = false;
        for i in 0..WINDOW.min(capacity) {
            let slot = &*slots.add((entry.start + i) % capacity);
            if slot.key == entry.key {
                found = slot.signer == *signer;
                break;
            }
        }
        pg_sys::LWLockRelease((*table).lock);
        if found {
            (*table).shared.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
}

/// Remembers that this backend checked the token's signature with the key of fingerprint `signer`; `exp` is the
/// token's expiry (the entry is worth keeping until then, plus the clock leeway).
pub fn remember(entry: &Entry, signer: &[u8; 32], exp: i64) {
    let until = exp.saturating_add(i64::from(gucs::MAX_CLOCK_SKEW));
    let now = crate::replay::real_now();
    // SAFETY: as in `known`, under the lock taken exclusively.
    unsafe {
        let table = TABLE;
        let capacity = (*table).capacity;
        let slots = (&raw mut (*table).slots) as *mut Slot;
        pg_sys::LWLockAcquire((*table).lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut chosen = entry.start;
        let mut earliest = (i64::MAX, u64::MAX);
        for i in 0..WINDOW.min(capacity) {
            let at = (entry.start + i) % capacity;
            let slot = &*slots.add(at);
            if slot.key == entry.key || slot.key == [0u8; 32] || slot.until < now {
                chosen = at;
                break;
            }
            // else the one that expires first, and of those the one written first
            if (slot.until, slot.written) < earliest {
                earliest = (slot.until, slot.written);
                chosen = at;
            }
        }
        (*table).writes += 1;
        *slots.add(chosen) = Slot { key: entry.key, signer: *signer, until, written: (*table).writes };
        pg_sys::LWLockRelease((*table).lock);
        (*table).checked.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the table holds and how it served, for administrators: its capacity, its unexpired entries, the
/// signatures checked (and remembered) since the server started, and those skipped thanks to an entry.
#[pg_extern(volatile, parallel_safe, name = "verification_cache_stats")]
fn stats() -> TableIterator<
    'static,
    (name!(capacity, i64), name!(entries, i64), name!(signatures_checked, i64), name!(signatures_shared, i64)),
> {
    let now = crate::replay::real_now();
    // SAFETY: TABLE is null or the shared table; its slots are read under its lock, taken shared.
    let row = unsafe {
        let table = TABLE;
        if table.is_null() {
            (0, 0, 0, 0)
        } else {
            let capacity = (*table).capacity;
            let slots = (&raw const (*table).slots) as *const Slot;
            pg_sys::LWLockAcquire((*table).lock, pg_sys::LWLockMode::LW_SHARED);
            let entries = (0..capacity).filter(|i| (*slots.add(*i)).until >= now).count();
            pg_sys::LWLockRelease((*table).lock);
            (
                capacity as i64,
                entries as i64,
                (*table).checked.load(Ordering::Relaxed) as i64,
                (*table).shared.load(Ordering::Relaxed) as i64,
            )
        }
    };
    TableIterator::once(row)
}

extension_sql_file!("../sql/shared_verifications.sql", name = "shared_verifications", requires = ["admin_role", stats]);
