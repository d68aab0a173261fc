//! Verified tokens, shared by every backend of the server: a token one backend verified is accepted by the others
//! without verifying it again (behind a pooler, one token lands on many backends).
//!
//! The table lives in shared memory, `tenant_guard.verification_cache_size` entries (a postmaster setting; 0 turns
//! it off). An entry is found by SHA-256(salt, SHA-256(token)), never the token, and holds two things:
//! - the fingerprint of the key that checked the token's signature. A backend that finds it skips the signature
//!   check, and only that: it still decodes the token and runs every other check against its own current view of
//!   the issuers (the issuer, the key's presence and fingerprint, the claims, the scopes, the revocations and
//!   suspensions). This holds whatever changed since.
//! - the verdict ([`token::verdict::Verdict`]: the tenant, the times, the certificate binding), with the scope it
//!   was reached in: the digest of the content of the view of the issuers it was reached on (`KeyStore::digest`:
//!   every issuer, key, scope and requirement, every revocation and suspension) and the settings verification
//!   depends on besides (the default tenant claim, the clock leeway). Verification is a function of the token, the
//!   view and those settings, so a backend whose own view has the same digest, under the same settings, takes the
//!   verdict as its own and decodes nothing (the claims are parsed from its copy of the token if a function asks for
//!   them). It does not matter who loaded the view, when, in which database or transaction: a view that holds a
//!   change (committed or not, replayed on a standby or not) has another digest than one that does not. A
//!   revocation, a suspension, a removed key or issuer apply as soon as the backend's view holds them (its next
//!   statement after the change is visible to it); time, certificate binding and replay are checked at each use.
//!
//! Slots are found by the key's hash in a window of [`WINDOW`] slots; a new entry takes an empty or expired slot of
//! the window, else the one that expires first (of those, the one written first). Reads take the table's lock
//! shared, writes exclusive.

use crate::gucs;
use crate::token::verdict::Verdict;
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
    /// Where the verdict holds; NO_SCOPE: no verdict (a token its issuer allows once).
    scope: Scope,
    verdict: Verdict,
}

// docs/reference/settings.md gives the size of an entry
const _: () = assert!(std::mem::size_of::<Slot>() == 264);

/// Longest default tenant claim name a verdict is shared under (a longer one shares signatures only).
const MAX_CLAIM: usize = 63;

/// Where a verdict holds: the view of the issuers it was reached on (its content), and the settings verification
/// depends on besides.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// `KeyStore::digest` of the view: every issuer, key, scope, requirement, revocation and suspension.
    view: [u8; 32],
    clock_skew: i64,
    claim_len: u8,
    claim: [u8; MAX_CLAIM],
}

impl Scope {
    /// The scope of a verification against a view of digest `view`, under the current settings; None when the claim
    /// name is too long to keep.
    pub fn current(view: [u8; 32]) -> Option<Scope> {
        let name = gucs::tenant_claim().as_bytes();
        if name.is_empty() || name.len() > MAX_CLAIM {
            return None;
        }
        let mut claim = [0u8; MAX_CLAIM];
        claim[..name.len()].copy_from_slice(name);
        Some(Scope { view, clock_skew: gucs::clock_skew(), claim_len: name.len() as u8, claim })
    }
}

/// A slot's scope when it holds no verdict (no claim name is empty).
const NO_SCOPE: Scope = Scope { view: [0; 32], clock_skew: 0, claim_len: 0, claim: [0; MAX_CLAIM] };

#[repr(C)]
struct Table {
    capacity: usize,
    lock: *mut pg_sys::LWLock,
    salt: [u8; 16],
    /// Signatures checked by a backend that found no entry, signatures skipped thanks to one, and of those, the
    /// verifications skipped altogether (a verdict taken).
    checked: AtomicU64,
    shared: AtomicU64,
    verdicts: AtomicU64,
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

/// Whether the table is on (`tenant_guard.verification_cache_size` > 0).
pub fn enabled() -> bool {
    // SAFETY: a plain read of a pointer set once at startup.
    unsafe { !TABLE.is_null() }
}

/// The verdict some backend reached on this token in `scope`, if any.
pub fn verdict(entry: &Entry, scope: &Scope) -> Option<Verdict> {
    // SAFETY: as in `known`.
    unsafe {
        let table = TABLE;
        let capacity = (*table).capacity;
        let slots = (&raw const (*table).slots) as *const Slot;
        pg_sys::LWLockAcquire((*table).lock, pg_sys::LWLockMode::LW_SHARED);
        let mut found = None;
        for i in 0..WINDOW.min(capacity) {
            let slot = &*slots.add((entry.start + i) % capacity);
            if slot.key == entry.key {
                found = (slot.scope != NO_SCOPE && slot.scope == *scope).then_some(slot.verdict);
                break;
            }
        }
        pg_sys::LWLockRelease((*table).lock);
        if found.is_some() {
            (*table).shared.fetch_add(1, Ordering::Relaxed);
            (*table).verdicts.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
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

/// Remembers that this backend verified the token, its signature with the key of fingerprint `signer` (`checked`:
/// this backend checked it; else an entry vouched for it), and the verdict it reached in `scope` (None: the
/// signature only). `exp` is the token's expiry (the entry is worth keeping until then, plus the clock leeway).
pub fn remember(entry: &Entry, signer: &[u8; 32], checked: bool, exp: i64, verdict: Option<(Scope, Verdict)>) {
    let (scope, verdict) = verdict.unwrap_or((NO_SCOPE, Verdict::default()));
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
        *slots.add(chosen) = Slot { key: entry.key, signer: *signer, until, written: (*table).writes, scope, verdict };
        pg_sys::LWLockRelease((*table).lock);
        if checked {
            (*table).checked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the table holds and how it served, for administrators: its capacity, its unexpired entries, the
/// signatures checked (and remembered) since the server started, those skipped thanks to an entry, and of those the
/// verifications skipped altogether (a verdict taken).
#[pg_extern(volatile, parallel_safe, name = "verification_cache_stats")]
fn stats() -> TableIterator<
    'static,
    (
        name!(capacity, i64),
        name!(entries, i64),
        name!(signatures_checked, i64),
        name!(signatures_shared, i64),
        name!(verdicts_shared, i64),
    ),
> {
    let now = crate::replay::real_now();
    // SAFETY: TABLE is null or the shared table; its slots are read under its lock, taken shared.
    let row = unsafe {
        let table = TABLE;
        if table.is_null() {
            (0, 0, 0, 0, 0)
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
                (*table).verdicts.load(Ordering::Relaxed) as i64,
            )
        }
    };
    TableIterator::once(row)
}

extension_sql_file!("../sql/shared_verifications.sql", name = "shared_verifications", requires = ["admin_role", stats]);
