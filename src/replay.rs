//! Replay protection: with `require_jti` on its issuer, a token's `jti` is usable in one transaction only, across
//! every backend of the server.
//!
//! The table of used `jti`s lives in shared memory, `tenant_guard.replay_cache_size` entries (a postmaster setting),
//! each the first 16 bytes of SHA-256(issuer, NUL, jti), the token's expiry and the transaction that used it (its
//! backend's process id and local transaction id; a parallel worker acts for its leader). An entry is kept until
//! the token's `exp` plus the clock leeway, after which the token is refused as expired anyway. A full table is an
//! error (53400) rather than a silent acceptance. The table starts empty at server start: a token used before a restart
//! can be used once more after it, within its lifetime.

use crate::errors;
use crate::gucs;
use crate::token::Rejection;
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::ffi::CStr;

const TRANCHE: &CStr = c"tenant_guard_replay";
const SHMEM_NAME: &CStr = c"tenant_guard replay table";

/// Issuer buckets: each issuer that requires a `jti` once is hashed to one, and a bucket holds at most its share of
/// the table (the capacity divided by the number of such issuers, at most 64), so that no issuer, a customer's own
/// identity provider say, can fill the table for the others.
const BUCKETS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// First 16 bytes of SHA-256(salt, issuer, NUL, jti); all zero: never used.
    key: [u8; 16],
    /// Seconds since the epoch after which the entry may be reused.
    until: i64,
    /// The virtual transaction id that used it (backend id or proc number, local transaction id).
    backend: i32,
    lxid: u32,
    /// Its issuer's bucket plus one; 0: counted in no bucket (expired and reclaimed).
    bucket: u8,
}

#[repr(C)]
pub(crate) struct Table {
    pub(crate) capacity: usize,
    lock: *mut pg_sys::LWLock,
    /// When the table was made (seconds since the epoch): tokens issued before it cannot have been recorded.
    created: i64,
    /// Random, per table: nobody can choose jtis whose keys cluster.
    salt: [u8; 16],
    /// Until when (seconds) the table is known to have no free or expired slot: refused without a scan.
    pub(crate) full_until: i64,
    /// Live entries per issuer bucket.
    counts: [u32; BUCKETS],
    slots: [Slot; 0],
}

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
static mut TABLE: *mut Table = std::ptr::null_mut();

/// A virtual transaction id: backend id (proc number on 17 and later), local transaction id.
type Vxid = (i32, u32);

thread_local! {
    /// (virtual transaction id, key) of the last `jti` this backend recorded: the same token again in the same
    /// transaction costs nothing.
    static LAST: Cell<Option<(Vxid, [u8; 16])>> = const { Cell::new(None) };
}

pub(crate) fn size(capacity: usize) -> usize {
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
        pg_sys::RequestAddinShmemSpace(size(gucs::replay_cache_size()));
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

/// Seconds since the epoch, now (not the transaction's clock).
pub(crate) fn real_now() -> i64 {
    const UNIX_TO_PG_EPOCH_SECS: i64 = 946_684_800;
    // SAFETY: reads the system clock.
    unsafe { pg_sys::GetCurrentTimestamp() }.div_euclid(1_000_000) + UNIX_TO_PG_EPOCH_SECS
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: chaining; then the table is created once (or found); the postmaster's pointer is inherited by every
    // backend it forks. A crash restart makes it anew.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let capacity = gucs::replay_cache_size();
        let table = crate::shmem::init_struct(SHMEM_NAME, size(capacity), |ptr| {
            let table = ptr as *mut Table;
            (*table).capacity = capacity;
            (*table).lock = &mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
            (*table).created = real_now();
            (*table).salt = crate::shmem::salt(table as usize);
        }) as *mut Table;
        TABLE = table;
    }
}

/// The transaction a `jti` is used by: this backend's, or a parallel worker's leader's.
fn owner() -> Vxid {
    // SAFETY: MyProc is set in every backend that runs SQL; a parallel worker's lock-group leader is its leader,
    // whose transaction it is part of for as long as it runs.
    unsafe {
        let me = pg_sys::MyProc;
        let leader = (*me).lockGroupLeader;
        if pg_sys::ParallelWorkerNumber >= 0 && !leader.is_null() {
            crate::pg_version::virtual_transaction_id(leader)
        } else {
            crate::pg_version::virtual_transaction_id(me)
        }
    }
}

/// What the current transaction may do with a `require_jti` token.
pub struct Use<'a> {
    pub issuer: &'a str,
    pub jti: &'a str,
    /// The token's `exp`.
    pub exp: i64,
    /// When it was issued: `iat`, else `nbf`, else `exp` minus the longest lifetime.
    pub issued: i64,
    /// How many trusted issuers require a `jti` once (they share the table).
    pub sharing: usize,
}

/// Records that the current transaction uses the token, or refuses it: another transaction used it, it has expired
/// by the clock (a transaction's clock is fixed at its first check, and an expired entry may have been reused), or
/// it was issued before the table was made, or within the clock leeway after (a restart, or a crash restart,
/// emptied it: such a token may have been used before). A full table, or a full
/// share of it, raises 53400.
pub fn consume(u: &Use) -> Result<(), Rejection> {
    // SAFETY: TABLE is the shared table (set in every backend of a server that preloaded tenant_guard, which
    // _PG_init requires); its salt and creation time never change after it is made.
    let (table, salt, created) = unsafe {
        let table = TABLE;
        if table.is_null() {
            errors::internal("tenant_guard's replay table is missing".into());
        }
        (table, (*table).salt, (*table).created)
    };
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(u.issuer.as_bytes());
    hasher.update([0u8]);
    hasher.update(u.jti.as_bytes());
    let digest = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    if key == [0u8; 16] {
        key[0] = 1; // the empty marker
    }
    let vxid = owner();
    if LAST.get() == Some((vxid, key)) {
        return Ok(());
    }
    let now = real_now();
    let until = u.exp.saturating_add(i64::from(gucs::MAX_CLOCK_SKEW));
    if until < now {
        return Err(Rejection::Expired);
    }
    // issued before the table was made, by an issuer whose clock may run ahead by the leeway: perhaps used before
    if u.issued <= created.saturating_add(gucs::clock_skew()) {
        return Err(Rejection::IssuedBeforeReplayTable);
    }
    let bucket = {
        let mut h = Sha256::new();
        h.update(u.issuer.as_bytes());
        (h.finalize()[0] as usize) % BUCKETS
    };
    // SAFETY: the table's slots and counters are read and written only under its exclusive lock, taken here and
    // released on every path before anything is raised.
    let outcome = unsafe {
        pg_sys::LWLockAcquire((*table).lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let outcome = record(table, key, until, vxid, bucket, u.sharing, now);
        pg_sys::LWLockRelease((*table).lock);
        outcome
    };
    match outcome {
        Outcome::Recorded => {
            LAST.set(Some((vxid, key)));
            Ok(())
        }
        Outcome::Replayed => Err(Rejection::Replayed),
        Outcome::Full => errors::replay_table_full(gucs::replay_cache_size()),
        Outcome::ShareFull => errors::replay_share_full(u.issuer),
    }
}

/// The table's bookkeeping, under its lock.
///
/// # Safety
/// `table` is the shared table and its lock is held exclusively.
pub(crate) unsafe fn record(
    table: *mut Table,
    key: [u8; 16],
    until: i64,
    (backend, lxid): Vxid,
    bucket: usize,
    sharing: usize,
    now: i64,
) -> Outcome {
    // SAFETY: as the caller promises; the slots follow the header, `capacity` of them.
    unsafe {
        let capacity = (*table).capacity;
        let slots = (&raw mut (*table).slots) as *mut Slot;
        let counts = &mut (*table).counts;
        let tag = (bucket + 1) as u8;
        if (*table).full_until >= now {
            return Outcome::Full; // known full until an entry expires: no scan
        }
        let start = (u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) % capacity as u64) as usize;
        // the key itself, or where it would go
        let mut reusable = None;
        let mut empty = None;
        let mut min_until = i64::MAX;
        for i in 0..capacity {
            let at = (start + i) % capacity;
            let slot = &mut *slots.add(at);
            if slot.key == key {
                if slot.until >= now && (slot.backend, slot.lxid) != (backend, lxid) {
                    return Outcome::Replayed;
                }
                if slot.bucket == 0 {
                    counts[bucket] += 1;
                }
                *slot = Slot { key, until, backend, lxid, bucket: tag };
                return Outcome::Recorded;
            }
            if slot.key == [0u8; 16] {
                empty = Some(at);
                break;
            }
            if reusable.is_none() && slot.until < now {
                reusable = Some(at);
            }
            min_until = min_until.min(slot.until);
        }
        // a new key: within the issuer's share, in a free or expired slot
        let share = (capacity / sharing.clamp(1, BUCKETS)).max(1);
        if sharing > 1 && counts[bucket] as usize >= share {
            // reclaim the bucket's expired entries (they stay in place as expired slots: chains stay whole)
            for at in 0..capacity {
                let slot = &mut *slots.add(at);
                if slot.bucket == tag && slot.until < now {
                    slot.bucket = 0;
                    counts[bucket] -= 1;
                }
            }
            if counts[bucket] as usize >= share {
                return Outcome::ShareFull;
            }
        }
        let Some(at) = reusable.or(empty) else {
            // every slot was seen, none free or expired: full until the first of them expires
            (*table).full_until = min_until;
            return Outcome::Full;
        };
        let slot = &mut *slots.add(at);
        if slot.bucket != 0 {
            counts[usize::from(slot.bucket - 1)] -= 1;
        }
        *slot = Slot { key, until, backend, lxid, bucket: tag };
        counts[bucket] += 1;
        Outcome::Recorded
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Recorded,
    Replayed,
    Full,
    ShareFull,
}
