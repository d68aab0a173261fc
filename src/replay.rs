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

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// First 16 bytes of SHA-256(issuer, NUL, jti); all zero: never used.
    key: [u8; 16],
    /// Seconds since the epoch after which the entry may be reused.
    until: i64,
    /// The process id of the backend whose transaction used it (a PGPROC slot and a local transaction id are both
    /// reused by later backends; a process id together with its local transaction id is not, within a token's life).
    pid: i32,
    /// That backend's local transaction id.
    lxid: u32,
}

#[repr(C)]
struct Table {
    capacity: usize,
    lock: *mut pg_sys::LWLock,
    slots: [Slot; 0],
}

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
static mut TABLE: *mut Table = std::ptr::null_mut();

thread_local! {
    /// (local transaction id, key) of the last `jti` this backend recorded: the same token again in the same
    /// transaction costs nothing.
    static LAST: Cell<Option<(u32, [u8; 16])>> = const { Cell::new(None) };
}

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
        pg_sys::RequestAddinShmemSpace(size(gucs::replay_cache_size()));
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: chaining; then the table is created once (or found) under AddinShmemInitLock, as every module does;
    // the postmaster's pointer is inherited by every backend it forks.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let capacity = gucs::replay_cache_size();
        // AddinShmemInitLock, a macro: the 22nd of PostgreSQL's main LWLocks
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let table = pg_sys::ShmemInitStruct(SHMEM_NAME.as_ptr(), size(capacity), &mut found) as *mut Table;
        if !found {
            std::ptr::write_bytes(table as *mut u8, 0, size(capacity));
            (*table).capacity = capacity;
            (*table).lock = &mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
        }
        TABLE = table;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// The transaction a `jti` is used by: this backend's, or a parallel worker's leader's (process id, local
/// transaction id).
fn owner() -> (i32, u32) {
    // SAFETY: MyProc is set in every backend that runs SQL; a parallel worker's lock-group leader is its leader,
    // whose transaction it is part of for as long as it runs.
    unsafe {
        let me = pg_sys::MyProc;
        let leader = (*me).lockGroupLeader;
        if pg_sys::ParallelWorkerNumber >= 0 && !leader.is_null() {
            ((*leader).pid, crate::pg_version::proc_local_transaction_id(leader))
        } else {
            ((*me).pid, crate::pg_version::local_transaction_id())
        }
    }
}

/// Records that the current transaction uses token `jti` of `issuer` (valid until `until`), or refuses it because
/// another transaction used it. A full table raises 53400.
pub fn consume(issuer: &str, jti: &str, until: i64, now: i64) -> Result<(), Rejection> {
    let mut hasher = Sha256::new();
    hasher.update(issuer.as_bytes());
    hasher.update([0u8]);
    hasher.update(jti.as_bytes());
    let digest = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    if key == [0u8; 16] {
        key[0] = 1; // the empty marker
    }
    let (pid, lxid) = owner();
    if LAST.get() == Some((lxid, key)) {
        return Ok(());
    }
    // SAFETY: TABLE is the shared table (NULL only if the library was not preloaded, which _PG_init refuses); its
    // slots are read and written under its exclusive lock, released on every path (an error below is raised after
    // the release).
    let outcome = unsafe {
        let table = TABLE;
        if table.is_null() {
            errors::internal("tenant_guard's replay table is missing".into());
        }
        let capacity = (*table).capacity;
        let slots = std::slice::from_raw_parts_mut((*table).slots.as_mut_ptr(), capacity);
        pg_sys::LWLockAcquire((*table).lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let start = (u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) % capacity as u64) as usize;
        let mut reusable = None;
        let mut outcome = Outcome::Full;
        for i in 0..capacity {
            let slot = &mut slots[(start + i) % capacity];
            if slot.key == key {
                outcome = if slot.until < now || (slot.pid, slot.lxid) == (pid, lxid) {
                    *slot = Slot { key, until, pid, lxid };
                    Outcome::Recorded
                } else {
                    Outcome::Replayed
                };
                break;
            }
            if slot.key == [0u8; 16] {
                let target = reusable.unwrap_or((start + i) % capacity);
                slots[target] = Slot { key, until, pid, lxid };
                outcome = Outcome::Recorded;
                break;
            }
            if reusable.is_none() && slot.until < now {
                reusable = Some((start + i) % capacity);
            }
        }
        if let (Outcome::Full, Some(target)) = (outcome, reusable) {
            slots[target] = Slot { key, until, pid, lxid };
            outcome = Outcome::Recorded;
        }
        pg_sys::LWLockRelease((*table).lock);
        outcome
    };
    match outcome {
        Outcome::Recorded => {
            LAST.set(Some((lxid, key)));
            Ok(())
        }
        Outcome::Replayed => Err(Rejection::Replayed),
        Outcome::Full => errors::replay_table_full(gucs::replay_cache_size()),
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Recorded,
    Replayed,
    Full,
}
