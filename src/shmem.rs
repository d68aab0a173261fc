//! Shared memory that tenant_guard's modules create at server start: one helper for making or finding a named
//! struct, so each module writes only what its struct holds.

use pgrx::pg_sys;
use std::ffi::CStr;

/// Finds the shared struct `name` of `size` bytes, or makes it (zeroed, then `init`) if this is the first process
/// to ask, under AddinShmemInitLock as every module does. Returns its address, the same in every backend the
/// postmaster forks.
///
/// # Safety
/// Called from a `shmem_startup_hook`, with `size` what the module requested in its `shmem_request_hook`.
pub(crate) unsafe fn init_struct(name: &CStr, size: usize, init: impl FnOnce(*mut u8)) -> *mut u8 {
    // SAFETY: as the caller promises; AddinShmemInitLock, a macro in C, is the 22nd of PostgreSQL's main LWLocks.
    unsafe {
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(name.as_ptr(), size, &mut found) as *mut u8;
        if !found {
            std::ptr::write_bytes(ptr, 0, size);
            init(ptr);
        }
        pg_sys::LWLockRelease(init_lock);
        ptr
    }
}

/// 16 random bytes for a table's salt; the clock and an address if the system has no randomness to give.
pub(crate) fn salt(fallback: usize) -> [u8; 16] {
    let mut salt = [0u8; 16];
    if getrandom::getrandom(&mut salt).is_err() {
        // SAFETY: reads the system clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        salt = (now as u128 ^ (fallback as u128) << 64).to_le_bytes();
    }
    salt
}
