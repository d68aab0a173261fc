//! Per-tenant statistics (`tenant.stats`): what each tenant's context consumed, counted by every backend into one
//! table in shared memory.
//!
//! **What is counted, and for whom.** A transaction belongs to the tenant it is sealed to (see `context`): from the
//! moment it is sealed, its top-level statements (their count, rows returned or written by those that complete,
//! the backend's CPU time and the wall-clock time they took, failed ones included), its end (committed or rolled back), the context being
//! established (an accepted authentication, once per transaction, whichever way the token came) and every
//! encryption and decryption are the tenant's. A refusal is counted under the tenant only when the token was proven
//! to be the tenant's (its signature checked: refused at use, because it expired since, was replayed, came over
//! another connection, or named a second tenant); every other refusal is counted by reason under no tenant (NULL),
//! so that forged tokens can neither create, inflate nor evict a tenant's entry.
//!
//! **Cost.** Counters add up in the backend and reach shared memory once per transaction, at its end: a lookup
//! under the table's lock taken shared (the slot this backend used last is tried first), then atomic additions.
//! Each top-level statement reads the wall clock (vDSO, no system call) at its start and end; the CPU clock is read
//! when a transaction is sealed and when it ends.
//!
//! **Size.** `tenant_guard.stats_max_tenants` entries (a postmaster setting; 0: none). A tenant's entry is found
//! by a salted hash of its id in a window of [`WINDOW`] slots; a new tenant takes a free slot of its window, else
//! evicts the least recently active tenant of the window, and the eviction is counted. Off with
//! `tenant_guard.track_tenants` (reload), which no session can change.

use crate::gucs;
use crate::token::reason::Reason;
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use uuid::Uuid;

const TRANCHE: &CStr = c"tenant_guard_stats";
const SHMEM_NAME: &CStr = c"tenant_guard tenant statistics";
/// Slots a tenant's entry may occupy, from the one its hash names.
const WINDOW: usize = 16;

/// What is counted per tenant; the index into [`Slot::counts`].
#[derive(Clone, Copy)]
enum Counter {
    Commits,
    Rollbacks,
    Statements,
    RowsRead,
    RowsWritten,
    CpuMicros,
    WallMicros,
    Accepted,
    Encryptions,
    Decryptions,
}
const COUNTERS: usize = 10;

#[repr(C)]
struct Slot {
    /// The tenant's id; all zero: free (the nil uuid is never a tenant). Read under the table's lock, written under
    /// it taken exclusively.
    tenant: UnsafeCell<[u8; 16]>,
    counts: [AtomicU64; COUNTERS],
    rejected: [AtomicU64; Reason::COUNT],
    /// When the tenant was last active, and when its entry was made (PostgreSQL timestamps).
    last_activity: AtomicI64,
    since: AtomicI64,
}

impl Slot {
    /// The tenant in the slot (all zero: free); the caller holds the table's lock.
    fn tenant(&self) -> [u8; 16] {
        // SAFETY: written only under the table's lock taken exclusively, which excludes the caller's.
        unsafe { *self.tenant.get() }
    }

    /// Puts `tenant` in the slot (all zero: frees it); the caller holds the table's lock exclusively.
    fn set_tenant(&self, tenant: [u8; 16]) {
        // SAFETY: the exclusive lock keeps every other reader and writer out.
        unsafe { *self.tenant.get() = tenant }
    }
}

// docs/reference/settings.md gives the size of an entry
const _: () = assert!(std::mem::size_of::<Slot>() == 248);

#[repr(C)]
struct Table {
    capacity: usize,
    lock: *mut pg_sys::LWLock,
    salt: [u8; 16],
    /// Entries evicted to make room for another tenant since the last reset.
    evicted: AtomicU64,
    /// Refusals that no tenant is vouched for, by reason.
    unattributed: [AtomicU64; Reason::COUNT],
    /// When the statistics were last reset in full (or made).
    reset_at: AtomicI64,
    slots: [Slot; 0],
}

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_EXECUTOR_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut TABLE: *mut Table = std::ptr::null_mut();

fn size(capacity: usize) -> usize {
    std::mem::size_of::<Table>() + capacity * std::mem::size_of::<Slot>()
}

/// When a statement started (the wall clock: a vDSO read, no system call).
type Started = std::time::Instant;

/// What this backend counted for the tenant of its current transaction, not yet added to the table.
#[derive(Default)]
struct Pending {
    tenant: Option<Uuid>,
    /// Whether the transaction was sealed to it (its end is counted).
    sealed: bool,
    /// This backend's CPU clock (microseconds) where the transaction's CPU time starts (see [`CPU_MARK`]).
    cpu_from: u64,
    counts: [u64; COUNTERS],
    rejected: [u64; Reason::COUNT],
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
    /// Where this backend found each tenant's slot last (checked under the lock before use: the slot may have
    /// been given to another tenant since). Emptied when it reaches [`HINTS_CAPACITY`].
    static HINTS: RefCell<HashMap<Uuid, usize>> = RefCell::new(HashMap::new());
    /// The CPU clock read at the end of this backend's last transaction, when that transaction was a tenant's and
    /// nothing ran since: where the next tenant transaction's CPU time starts. A backend serving tenants reads the
    /// clock (a system call) once per transaction; the CPU a transaction uses before it is sealed (its BEGIN, the
    /// statement that authenticates) is the tenant's too.
    static CPU_MARK: Cell<Option<u64>> = const { Cell::new(None) };
    /// Executor runs and finishes (and utility statements) in progress: only depth 0 is a top-level statement.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Top-level executor statements being timed: QueryDesc address -> (wall clock, CPU clock) at their start, and
    /// the rows they had returned or written when their last run ended.
    static TIMED: RefCell<Vec<(usize, Started, Rows)>> = const { RefCell::new(Vec::new()) };
}

/// Installs the shared-memory, executor, utility and transaction hooks. Called once from `_PG_init`, after
/// `gucs::init`.
pub fn init() {
    // SAFETY: _PG_init runs once in the postmaster while it loads shared_preload_libraries; the previous hooks are
    // chained; the transaction callback is a static function with no argument.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_EXECUTOR_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
        PREV_EXECUTOR_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(executor_end);
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: chaining, then requesting this module's space and lock while the postmaster sizes shared memory.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        if gucs::stats_max_tenants() > 0 {
            pg_sys::RequestAddinShmemSpace(size(gucs::stats_max_tenants()));
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
        let capacity = gucs::stats_max_tenants();
        if capacity == 0 {
            return;
        }
        TABLE = crate::shmem::init_struct(SHMEM_NAME, size(capacity), |ptr| {
            let table = ptr as *mut Table;
            (*table).capacity = capacity;
            (*table).lock = &mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
            (*table).salt = crate::shmem::salt(table as usize);
            (*table).reset_at = AtomicI64::new(pg_sys::GetCurrentTimestamp());
        }) as *mut Table;
    }
}

/// The table, when statistics are kept and collected.
fn table() -> Option<&'static Table> {
    // SAFETY: TABLE is null or the shared table, made before any backend runs SQL and never freed; everything in
    // it that changes after it is made is atomic or read and written under its lock.
    let table = unsafe { TABLE.as_ref() }?;
    gucs::track_tenants().then_some(table)
}

impl Table {
    fn slot(&self, index: usize) -> &Slot {
        debug_assert!(index < self.capacity);
        // SAFETY: the table was made with `capacity` slots after its header; callers pass indices below it.
        unsafe { &*(&raw const self.slots as *const Slot).add(index) }
    }

    /// Fills a slot's fields for a new tenant: only under the exclusive lock, so nobody reads it meanwhile.
    fn claim(&self, index: usize, tenant: &Uuid, now: i64) {
        let slot = self.slot(index);
        slot.set_tenant(*tenant.as_bytes());
        slot.since.store(now, Ordering::Relaxed);
        slot.counts.iter().chain(slot.rejected.iter()).for_each(|c| c.store(0, Ordering::Relaxed));
        slot.last_activity.store(now, Ordering::Relaxed);
    }

    fn window_start(&self, tenant: &Uuid) -> usize {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(tenant.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        (u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % self.capacity as u64) as usize
    }

    fn find(&self, tenant: &Uuid, start: usize) -> Option<usize> {
        (0..WINDOW.min(self.capacity))
            .map(|i| (start + i) % self.capacity)
            .find(|&at| self.slot(at).tenant() == *tenant.as_bytes())
    }

    fn lock(&self, mode: pg_sys::LWLockMode::Type) -> LockGuard {
        // SAFETY: the table's own lock, from its named tranche; released by the guard, also when an error unwinds.
        unsafe { pg_sys::LWLockAcquire(self.lock, mode) };
        LockGuard(self.lock)
    }

    /// Runs `add` on the tenant's slot, making one (evicting the least recently active tenant of its window if
    /// need be) when it has none.
    fn with_slot(&self, tenant: &Uuid, now: i64, add: impl Fn(&Slot)) {
        if let Some(index) = HINTS.with_borrow(|h| h.get(tenant).copied()) {
            let _shared = self.lock(pg_sys::LWLockMode::LW_SHARED);
            if self.slot(index).tenant() == *tenant.as_bytes() {
                return add(self.slot(index));
            }
        }
        let start = self.window_start(tenant);
        {
            let _shared = self.lock(pg_sys::LWLockMode::LW_SHARED);
            if let Some(index) = self.find(tenant, start) {
                hint(tenant, index);
                return add(self.slot(index));
            }
        }
        let _exclusive = self.lock(pg_sys::LWLockMode::LW_EXCLUSIVE);
        let index = match self.find(tenant, start) {
            Some(index) => index,
            None => {
                let window = (0..WINDOW.min(self.capacity)).map(|i| (start + i) % self.capacity);
                let free = window.clone().find(|&at| self.slot(at).tenant() == [0u8; 16]);
                let index = free.unwrap_or_else(|| {
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                    window.min_by_key(|&at| self.slot(at).last_activity.load(Ordering::Relaxed)).expect("a window")
                });
                self.claim(index, tenant, now);
                index
            }
        };
        hint(tenant, index);
        add(self.slot(index))
    }
}

/// Most slot hints a backend keeps.
const HINTS_CAPACITY: usize = 4096;

fn hint(tenant: &Uuid, index: usize) {
    HINTS.with_borrow_mut(|h| {
        if h.len() >= HINTS_CAPACITY {
            h.clear();
        }
        h.insert(*tenant, index);
    });
}

/// Releases an LWLock when dropped.
struct LockGuard(*mut pg_sys::LWLock);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // SAFETY: the lock this guard acquired.
        unsafe { pg_sys::LWLockRelease(self.0) }
    }
}

fn now() -> i64 {
    // SAFETY: reads the system clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Adds what this backend counted to the table, and forgets it.
fn flush() {
    let pending = PENDING.take();
    let Some(tenant) = pending.tenant else { return };
    let Some(table) = table() else { return };
    if pending.counts.iter().chain(pending.rejected.iter()).all(|&c| c == 0) {
        return;
    }
    let now = now();
    table.with_slot(&tenant, now, |slot| {
        for (counter, &n) in slot.counts.iter().zip(&pending.counts) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        for (counter, &n) in slot.rejected.iter().zip(&pending.rejected) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        slot.last_activity.fetch_max(now, Ordering::Relaxed);
    });
}

/// Counts into the pending counters of `tenant` (flushing another tenant's first).
fn count(tenant: &Uuid, f: impl FnOnce(&mut Pending)) {
    if table().is_none() {
        return;
    }
    let other = PENDING.with_borrow(|p| p.tenant.is_some_and(|t| t != *tenant));
    if other {
        flush();
    }
    PENDING.with_borrow_mut(|p| {
        p.tenant = Some(*tenant);
        f(p)
    });
}

// ---------------------------------------------------------------------------------------------------------------
// What the rest of tenant_guard reports.

/// The transaction was just sealed to `tenant`: an accepted authentication, and its statements and end are the
/// tenant's from now on.
pub fn sealed(tenant: &Uuid) {
    count(tenant, |p| {
        p.sealed = true;
        // the CPU clock as read at the end of this backend's previous transaction, if that one was a tenant's too
        // (everything since, this transaction's statements, is this one's); else read now
        p.cpu_from = CPU_MARK.take().unwrap_or_else(cpu_micros);
        p.counts[Counter::Accepted as usize] += 1;
    });
}

/// A refusal: under `tenant` when the token was proven to be the tenant's, else under no tenant.
/// Counted at once (the refusal raises an error next), apart from what this backend has pending.
pub fn refused(tenant: Option<&Uuid>, reason: Reason) {
    let Some(table) = table() else { return };
    match tenant {
        Some(tenant) => {
            let now = now();
            table.with_slot(tenant, now, |slot| {
                slot.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
                slot.last_activity.fetch_max(now, Ordering::Relaxed);
            })
        }
        None => {
            table.unattributed[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A value encrypted for `tenant`.
pub fn encrypted(tenant: &Uuid) {
    count(tenant, |p| p.counts[Counter::Encryptions as usize] += 1);
}

/// A value decrypted for `tenant`.
pub fn decrypted(tenant: &Uuid) {
    count(tenant, |p| p.counts[Counter::Decryptions as usize] += 1);
}

/// Whether top-level statements are timed: whenever statistics are collected, since the statement that
/// establishes a context starts without one (whether it was the tenant's is known at its end).
fn timing() -> bool {
    table().is_some()
}

fn cpu_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given; the backend is single-threaded.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// A top-level statement completed after `started` (wall clock, CPU clock), having read or written `rows`.
fn statement_done(started: Started, rows: Rows) {
    let wall = started.elapsed().as_micros() as u64;
    PENDING.with_borrow_mut(|p| {
        if !p.sealed {
            return;
        }
        p.counts[Counter::Statements as usize] += 1;
        p.counts[Counter::WallMicros as usize] += wall;
        match rows {
            Rows::Read(n) => p.counts[Counter::RowsRead as usize] += n,
            Rows::Written(n) => p.counts[Counter::RowsWritten as usize] += n,
            Rows::None => {}
        }
    });
}

#[derive(Clone, Copy)]
enum Rows {
    Read(u64),
    Written(u64),
    None,
}

/// Counts one level of executor or utility nesting however it ends (an error unwinds through Drop).
struct Nested;

impl Nested {
    fn enter() -> Nested {
        DEPTH.set(DEPTH.get() + 1);
        Nested
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    let counter = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => Counter::Commits,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => Counter::Rollbacks,
        _ => return,
    };
    // statements an error ended count too (a statement that fails after burning CPU must not escape the count);
    // their rows do not
    let failed: Vec<_> = TIMED.with_borrow_mut(std::mem::take);
    if matches!(counter, Counter::Rollbacks) {
        failed.into_iter().for_each(|(_, started, rows)| statement_done(started, rows));
    }
    PENDING.with_borrow_mut(|p| {
        if p.sealed {
            p.counts[counter as usize] += 1;
            let now = cpu_micros();
            p.counts[Counter::CpuMicros as usize] += now.saturating_sub(p.cpu_from);
            CPU_MARK.set(Some(now));
        } else {
            CPU_MARK.set(None);
        }
    });
    DEPTH.set(0);
    flush();
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    if DEPTH.get() == 0 && timing() {
        TIMED.with_borrow_mut(|t| t.push((query_desc as usize, std::time::Instant::now(), Rows::None)));
    }
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, eflags)),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

#[cfg(not(feature = "pg18"))]
#[pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query_desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    let nested = Nested::enter();
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_RUN {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, direction, count, execute_once)),
            None => pg_sys::standard_ExecutorRun(query_desc, direction, count, execute_once),
        }
    }
    drop(nested);
    run_ended(query_desc);
}

/// PostgreSQL 18 dropped the `execute_once` argument.
#[cfg(feature = "pg18")]
#[pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query_desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    let nested = Nested::enter();
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_RUN {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, direction, count)),
            None => pg_sys::standard_ExecutorRun(query_desc, direction, count),
        }
    }
    drop(nested);
    run_ended(query_desc);
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_finish(query_desc: *mut pg_sys::QueryDesc) {
    let _nested = Nested::enter();
    // SAFETY: passes the argument on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_FINISH {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc)),
            None => pg_sys::standard_ExecutorFinish(query_desc),
        }
    }
}

/// The rows a statement has returned or written so far, from its executor state.
///
/// # Safety
/// `query_desc` is a valid QueryDesc whose executor state, if any, is still there.
unsafe fn rows_of(query_desc: *mut pg_sys::QueryDesc) -> Rows {
    // SAFETY: as the caller promises.
    let (operation, processed) =
        unsafe { ((*query_desc).operation, (*query_desc).estate.as_ref().map_or(0, |e| e.es_processed)) };
    match operation {
        pg_sys::CmdType::CMD_SELECT => Rows::Read(processed),
        pg_sys::CmdType::CMD_INSERT
        | pg_sys::CmdType::CMD_UPDATE
        | pg_sys::CmdType::CMD_DELETE
        | pg_sys::CmdType::CMD_MERGE => Rows::Written(processed),
        _ => Rows::None,
    }
}

/// After a top-level run: what it returned or wrote so far, kept for the case that an error ends it before
/// ExecutorEnd (a portal still open when its transaction fails).
fn run_ended(query_desc: *mut pg_sys::QueryDesc) {
    if DEPTH.get() != 0 {
        return;
    }
    TIMED.with_borrow_mut(|t| {
        if let Some((_, _, rows)) = t.iter_mut().find(|(q, ..)| *q == query_desc as usize) {
            // SAFETY: the QueryDesc whose run just returned; its executor state is there until ExecutorEnd.
            *rows = unsafe { rows_of(query_desc) };
        }
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_end(query_desc: *mut pg_sys::QueryDesc) {
    let timed = TIMED.with_borrow_mut(|t| {
        let at = t.iter().position(|(q, ..)| *q == query_desc as usize)?;
        Some(t.swap_remove(at))
    });
    if let Some((_, started, _)) = timed {
        // SAFETY: a valid QueryDesc whose run is over; its estate is still there until the standard ExecutorEnd.
        statement_done(started, unsafe { rows_of(query_desc) });
    }
    // SAFETY: passes the argument on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_END {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc)),
            None => pg_sys::standard_ExecutorEnd(query_desc),
        }
    }
}

/// Utility statements at the top level are timed too, and the rows of those that report them (COPY, FETCH,
/// EXECUTE of a prepared statement, CREATE TABLE AS) counted; what they run inside is nested.
#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let started = (DEPTH.get() == 0 && timing()).then(std::time::Instant::now);
    // SAFETY: the statement's parse tree: only a COPY's direction is read.
    let copy_from = unsafe {
        let node = (*pstmt).utilityStmt;
        !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_CopyStmt && (*(node as *mut pg_sys::CopyStmt)).is_from
    };
    // an error inside counts the statement as it unwinds (see `UtilityTimer`)
    let mut timer = UtilityTimer(started);
    {
        let _nested = Nested::enter();
        // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
        unsafe {
            match PREV_PROCESS_UTILITY {
                Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc)
                }),
                None => pg_sys::standard_ProcessUtility(
                    pstmt,
                    query_string,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                ),
            }
        }
    }
    if let Some(started) = timer.0.take() {
        // SAFETY: qc is NULL or the statement's completion, filled in by the statement that just ran.
        let (tag, processed) =
            unsafe { qc.as_ref().map_or((pg_sys::CommandTag::CMDTAG_UNKNOWN, 0), |q| (q.commandTag, q.nprocessed)) };
        use pg_sys::CommandTag::*;
        let rows = match tag {
            CMDTAG_COPY if copy_from => Rows::Written(processed),
            CMDTAG_COPY | CMDTAG_FETCH | CMDTAG_SELECT => Rows::Read(processed),
            CMDTAG_INSERT | CMDTAG_UPDATE | CMDTAG_DELETE | CMDTAG_MERGE => Rows::Written(processed),
            _ => Rows::None,
        };
        statement_done(started, rows);
    }
}

/// A top-level utility statement being timed: counted without rows if it ends in an error (dropped while still
/// armed, as the error unwinds).
struct UtilityTimer(Option<Started>);

impl Drop for UtilityTimer {
    fn drop(&mut self) {
        if let Some(started) = self.0.take() {
            statement_done(started, Rows::None);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SQL API: for tenant_guard_admin and pg_read_all_stats (see sql/tenant_stats.sql).

fn timestamp(ts: i64) -> Option<pgrx::datum::TimestampWithTimeZone> {
    pgrx::datum::TimestampWithTimeZone::try_from(ts).ok()
}

/// One row per tenant in the table. Times in milliseconds.
#[pg_extern(volatile, parallel_safe, name = "stats_tenants")]
#[allow(clippy::type_complexity)]
fn stats_tenants() -> TableIterator<
    'static,
    (
        name!(tenant, pgrx::Uuid),
        name!(transactions, i64),
        name!(rollbacks, i64),
        name!(statements, i64),
        name!(rows_read, i64),
        name!(rows_written, i64),
        name!(cpu_time, f64),
        name!(wall_time, f64),
        name!(auth_accepted, i64),
        name!(auth_rejected, i64),
        name!(encryptions, i64),
        name!(decryptions, i64),
        name!(since, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(last_activity, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    flush();
    let mut rows = Vec::new();
    // SAFETY: as in `table`; read whether or not collection is on.
    if let Some(table) = unsafe { TABLE.as_ref() } {
        let _shared = table.lock(pg_sys::LWLockMode::LW_SHARED);
        for index in 0..table.capacity {
            let slot = table.slot(index);
            if slot.tenant() == [0u8; 16] {
                continue;
            }
            let c = |counter: Counter| slot.counts[counter as usize].load(Ordering::Relaxed) as i64;
            let rejected: u64 = slot.rejected.iter().map(|r| r.load(Ordering::Relaxed)).sum();
            rows.push((
                crate::uuids::to_pg(&Uuid::from_bytes(slot.tenant())),
                c(Counter::Commits) + c(Counter::Rollbacks),
                c(Counter::Rollbacks),
                c(Counter::Statements),
                c(Counter::RowsRead),
                c(Counter::RowsWritten),
                c(Counter::CpuMicros) as f64 / 1000.0,
                c(Counter::WallMicros) as f64 / 1000.0,
                c(Counter::Accepted),
                rejected as i64,
                c(Counter::Encryptions),
                c(Counter::Decryptions),
                timestamp(slot.since.load(Ordering::Relaxed)),
                timestamp(slot.last_activity.load(Ordering::Relaxed)),
            ));
        }
    }
    TableIterator::new(rows)
}

/// Refusals by tenant (NULL: no tenant vouched for) and reason; only reasons that happened.
#[pg_extern(volatile, parallel_safe)]
fn stats_reasons(
) -> TableIterator<'static, (name!(tenant, Option<pgrx::Uuid>), name!(reason, &'static str), name!(count, i64))> {
    flush();
    let mut rows = Vec::new();
    // SAFETY: as in `table`.
    if let Some(table) = unsafe { TABLE.as_ref() } {
        let _shared = table.lock(pg_sys::LWLockMode::LW_SHARED);
        let mut add = |tenant: Option<pgrx::Uuid>, counters: &[AtomicU64; Reason::COUNT]| {
            for reason in Reason::ALL {
                let n = counters[reason.index()].load(Ordering::Relaxed);
                if n > 0 {
                    rows.push((tenant, reason.name(), n as i64));
                }
            }
        };
        add(None, &table.unattributed);
        for index in 0..table.capacity {
            let slot = table.slot(index);
            if slot.tenant() != [0u8; 16] {
                add(Some(crate::uuids::to_pg(&Uuid::from_bytes(slot.tenant()))), &slot.rejected);
            }
        }
    }
    TableIterator::new(rows)
}

/// The table itself: its capacity, the tenants in it, evictions and refusals under no tenant since the last full
/// reset, and when that was.
#[pg_extern(volatile, parallel_safe)]
fn stats_summary() -> TableIterator<
    'static,
    (
        name!(capacity, i64),
        name!(tenants, i64),
        name!(evicted, i64),
        name!(unattributed_rejections, i64),
        name!(collecting, bool),
        name!(reset_at, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    // SAFETY: as in `table`.
    let row = match unsafe { TABLE.as_ref() } {
        None => (0, 0, 0, 0, false, None),
        Some(table) => {
            let _shared = table.lock(pg_sys::LWLockMode::LW_SHARED);
            let tenants = (0..table.capacity).filter(|&i| table.slot(i).tenant() != [0u8; 16]).count();
            (
                table.capacity as i64,
                tenants as i64,
                table.evicted.load(Ordering::Relaxed) as i64,
                table.unattributed.iter().map(|r| r.load(Ordering::Relaxed)).sum::<u64>() as i64,
                gucs::track_tenants(),
                timestamp(table.reset_at.load(Ordering::Relaxed)),
            )
        }
    };
    TableIterator::once(row)
}

/// Forgets one tenant's statistics, or (NULL) all of them, the evictions and the refusals under no tenant. Returns
/// how many tenants' entries it removed.
#[pg_extern(volatile, parallel_unsafe)]
fn stats_reset(tenant: default!(Option<pgrx::Uuid>, "NULL")) -> i64 {
    // SAFETY: as in `table`.
    let Some(table) = (unsafe { TABLE.as_ref() }) else { return 0 };
    let tenant = tenant.map(|t| crate::uuids::from_pg(&t));
    let _exclusive = table.lock(pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut removed = 0;
    for index in 0..table.capacity {
        let slot = table.slot(index);
        let matches = match &tenant {
            Some(t) => slot.tenant() == *t.as_bytes(),
            None => slot.tenant() != [0u8; 16],
        };
        if matches {
            slot.set_tenant([0u8; 16]);
            removed += 1;
        }
    }
    if tenant.is_none() {
        table.evicted.store(0, Ordering::Relaxed);
        table.unattributed.iter().for_each(|r| r.store(0, Ordering::Relaxed));
        table.reset_at.store(now(), Ordering::Relaxed);
    }
    HINTS.with_borrow_mut(HashMap::clear);
    removed
}

extension_sql_file!(
    "../sql/tenant_stats.sql",
    name = "tenant_stats",
    requires = ["admin_role", stats_tenants, stats_reasons, stats_summary, stats_reset]
);
