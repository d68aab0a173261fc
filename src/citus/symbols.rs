//! The Citus functions tenant_guard calls, found in the loaded `citus` library by name (never linked, so
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

/// A function-manager (version-1) function: what every SQL-callable C function of Citus is.
pub type V1Function = unsafe extern "C-unwind" fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum;

/// Citus's functions, found by name. The internal ones (the first four) are exported by Citus built for PostgreSQL
/// 15 only: from 16 on, PostgreSQL builds extensions with hidden symbols, and only SQL-callable functions (the last
/// two, which every build exports) can be found. `calls` chooses.
pub struct Symbols {
    pub use_coordinated_transaction: Option<UseCoordinatedTransaction>,
    pub postprocess_variable_set: Option<PostprocessVariableSetStmt>,
    pub send_to_workers: Option<SendCommandToWorkersWithMetadata>,
    pub current_transaction_id: Option<GetCurrentDistributedTransactionId>,
    /// `execute_command_on_remote_nodes_as_user(query text, username text)`: runs a command on every other node
    /// as that user, in the coordinated transaction, committed with two-phase commit (superusers only).
    pub execute_on_remote_nodes: Option<V1Function>,
    /// `create_intermediate_result(result_id text, query text)`: stores a query's result in this transaction's
    /// intermediate results, after making the transaction a coordinated one.
    pub create_intermediate_result: Option<V1Function>,
}

static SYMBOLS: OnceLock<Option<Symbols>> = OnceLock::new();

/// Whether the citus library is loaded in this process.
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
    // every Citus build exports its SQL-callable functions: this one says the library is loaded
    find(c"citus_version")?;
    // SAFETY: each symbol, when present, is Citus's function with the signature above (Citus 11 to 13 define them
    // so; the version-1 functions have the calling convention of every SQL-callable C function).
    unsafe {
        Some(Symbols {
            use_coordinated_transaction: find(c"UseCoordinatedTransaction")
                .map(|p| std::mem::transmute::<*mut libc::c_void, UseCoordinatedTransaction>(p)),
            postprocess_variable_set: find(c"PostprocessVariableSetStmt")
                .map(|p| std::mem::transmute::<*mut libc::c_void, PostprocessVariableSetStmt>(p)),
            send_to_workers: find(c"SendCommandToWorkersWithMetadata")
                .map(|p| std::mem::transmute::<*mut libc::c_void, SendCommandToWorkersWithMetadata>(p)),
            current_transaction_id: find(c"GetCurrentDistributedTransactionId")
                .map(|p| std::mem::transmute::<*mut libc::c_void, GetCurrentDistributedTransactionId>(p)),
            execute_on_remote_nodes: find(c"execute_command_on_remote_nodes_as_user")
                .map(|p| std::mem::transmute::<*mut libc::c_void, V1Function>(p)),
            create_intermediate_result: find(c"create_intermediate_result")
                .map(|p| std::mem::transmute::<*mut libc::c_void, V1Function>(p)),
        })
    }
}
