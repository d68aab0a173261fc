//! The four Citus functions tenant_guard calls, found in the loaded `citus` library by name (never linked, so
//! tenant_guard loads and works without Citus). Their signatures are those of Citus 11 to 13.

use pgrx::pg_sys;
use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

/// `void UseCoordinatedTransaction(void)`: the statement's remote work runs in transaction blocks on the workers.
pub type UseCoordinatedTransaction = unsafe extern "C-unwind" fn();
/// `void PostprocessVariableSetStmt(VariableSetStmt *, const char *)`: sends a `SET LOCAL` to the workers already
/// in the transaction and replays it at the start of every remote transaction opened later in this (sub)transaction.
pub type PostprocessVariableSetStmt = unsafe extern "C-unwind" fn(*mut pg_sys::VariableSetStmt, *const c_char);
/// `void SendCommandToWorkersWithMetadata(const char *)`: runs a command on every worker in the coordinator's
/// transaction, committed with two-phase commit.
pub type SendCommandToWorkersWithMetadata = unsafe extern "C-unwind" fn(*const c_char);

/// Citus's `DistributedTransactionId` (transaction_identifier.h, Citus 11 to 13).
#[repr(C)]
pub struct DistributedTransactionId {
    pub initiator_node_identifier: i32,
    pub transaction_originator: bool,
    pub transaction_number: u64,
    pub timestamp: pg_sys::TimestampTz,
}

/// `DistributedTransactionId *GetCurrentDistributedTransactionId(void)`: a palloc'd copy of this backend's id.
pub type GetCurrentDistributedTransactionId = unsafe extern "C-unwind" fn() -> *mut DistributedTransactionId;

pub struct Symbols {
    pub use_coordinated_transaction: UseCoordinatedTransaction,
    pub postprocess_variable_set: PostprocessVariableSetStmt,
    pub send_to_workers: SendCommandToWorkersWithMetadata,
    pub current_transaction_id: GetCurrentDistributedTransactionId,
}

static SYMBOLS: OnceLock<Option<Symbols>> = OnceLock::new();

/// Whether the citus library is loaded in this process (and has the functions tenant_guard needs).
pub fn loaded() -> bool {
    get().is_some()
}

/// The functions, when the citus library is loaded in this process.
pub fn get() -> Option<&'static Symbols> {
    SYMBOLS.get_or_init(lookup).as_ref()
}

fn lookup() -> Option<Symbols> {
    // Only a library already loaded (by shared_preload_libraries) counts: looking it up must never load it.
    // SAFETY: dlsym on the process's global symbol table (PostgreSQL loads libraries with RTLD_GLOBAL); a NULL
    // result means absent.
    let find = |name: &CStr| unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        (!p.is_null()).then_some(p)
    };
    let use_coordinated = find(c"UseCoordinatedTransaction")?;
    let postprocess = find(c"PostprocessVariableSetStmt")?;
    let send = find(c"SendCommandToWorkersWithMetadata")?;
    let current = find(c"GetCurrentDistributedTransactionId")?;
    // SAFETY: the symbols are Citus's functions with the signatures above (Citus 11 to 13 all define them so).
    unsafe {
        Some(Symbols {
            use_coordinated_transaction: std::mem::transmute::<*mut libc::c_void, UseCoordinatedTransaction>(
                use_coordinated,
            ),
            postprocess_variable_set: std::mem::transmute::<*mut libc::c_void, PostprocessVariableSetStmt>(postprocess),
            send_to_workers: std::mem::transmute::<*mut libc::c_void, SendCommandToWorkersWithMetadata>(send),
            current_transaction_id: std::mem::transmute::<*mut libc::c_void, GetCurrentDistributedTransactionId>(
                current,
            ),
        })
    }
}
