//! Randomness for keys and nonces, from the operating system's random source.

use crate::ciphertext::NONCE_LEN;
use crate::errors;
use pgrx::pg_sys;
use std::cell::RefCell;
use zeroize::Zeroizing;

/// N random bytes (a data key), zeroized when dropped.
pub fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::getrandom(bytes.as_mut()).unwrap_or_else(|_| {
        errors::internal("tenant_guard could not read the operating system's random source".into())
    });
    bytes
}

/// Nonces drawn from the operating system's random source per `getrandom` call (a 12-byte read costs a system call,
/// about half of a 100-byte encryption on this machine class).
const NONCES_PER_READ: usize = 341;

struct NoncePool {
    /// The process that filled it: a pool is never used by two processes (a fork would share it).
    pid: i32,
    next: usize,
    bytes: [u8; NONCES_PER_READ * NONCE_LEN],
}

thread_local! {
    static NONCES: RefCell<NoncePool> =
        const { RefCell::new(NoncePool { pid: 0, next: NONCES_PER_READ, bytes: [0; NONCES_PER_READ * NONCE_LEN] }) };
}

/// A fresh random nonce for one encryption: each one is handed out once, and only in the process that read it.
pub fn nonce() -> [u8; NONCE_LEN] {
    // SAFETY: plain read of a backend global, set after fork.
    let pid = unsafe { pg_sys::MyProcPid };
    NONCES.with_borrow_mut(|pool| {
        if pool.pid != pid || pool.next >= NONCES_PER_READ {
            getrandom::getrandom(&mut pool.bytes).unwrap_or_else(|_| {
                errors::internal("tenant_guard could not read the operating system's random source".into())
            });
            pool.pid = pid;
            pool.next = 0;
        }
        let at = pool.next * NONCE_LEN;
        pool.next += 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&pool.bytes[at..at + NONCE_LEN]);
        pool.bytes[at..at + NONCE_LEN].fill(0);
        nonce
    })
}
