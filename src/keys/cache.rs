//! The per-backend cache of unwrapped data keys: expanded AES-GCM keys, zeroized when dropped, dropped when
//! `tenant.data_key` changes (see `invalidation`) and at the end of a transaction that read keys under its own
//! snapshot or wrote them.

use crate::ciphertext::DataKey;
use crate::invalidation::{self, Watched};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use uuid::Uuid;

/// Most unwrapped data keys remembered per backend; the cache is emptied when it is full.
const CACHE_CAPACITY: usize = 4096;

/// A usable data key of one tenant.
pub struct Dek {
    pub version: u32,
    pub key: DataKey,
    /// For a key unwrapped with the tenant's own master key: when that key was loaded (see `master::Fresh`).
    pub until: Option<super::master::Fresh>,
}

#[derive(Default)]
pub struct Cache {
    generation: u64,
    pub active: HashMap<Uuid, Rc<Dek>>,
    pub versions: HashMap<(Uuid, u32), Rc<Dek>>,
    pub destroyed: HashSet<Uuid>,
}

impl Cache {
    fn clear(&mut self) {
        self.active.clear();
        self.versions.clear();
        self.destroyed.clear();
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// The cache holds keys read under a transaction snapshot, or written by this transaction.
    static TRANSACTION_LOCAL: Cell<bool> = const { Cell::new(false) };
}

/// Registers the transaction callback. Called once from `_PG_init`.
pub fn init() {
    // SAFETY: registering a backend-lifetime callback with a static function and no argument.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE) && TRANSACTION_LOCAL.replace(false) {
        invalidation::bump(Watched::Keys);
    }
}

/// Marks the cache as holding keys of this transaction only (read under its snapshot, or written by it).
pub fn transaction_local() {
    TRANSACTION_LOCAL.set(true);
}

/// Accepts pending invalidations once per statement, then drops the cache if it is stale.
pub fn sync() {
    invalidation::accept_once_per_statement();
    let generation = invalidation::generation(Watched::Keys);
    CACHE.with_borrow_mut(|c| {
        if c.generation != generation {
            c.clear();
            c.generation = generation;
        }
    });
}

/// Reads the cache.
pub fn with<R>(f: impl FnOnce(&Cache) -> R) -> R {
    CACHE.with_borrow(f)
}

/// Caches with `f`, unless an invalidation arrived since `generation` was read.
pub fn remember(generation: u64, f: impl FnOnce(&mut Cache)) {
    if invalidation::generation(Watched::Keys) != generation {
        return;
    }
    CACHE.with_borrow_mut(|c| {
        if c.versions.len() + c.destroyed.len() >= CACHE_CAPACITY {
            c.clear();
        }
        f(c)
    });
}
