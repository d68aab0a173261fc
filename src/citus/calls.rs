//! How tenant_guard asks Citus to do things. Citus built for PostgreSQL 15 exports its internal functions, and
//! tenant_guard calls them directly ([`symbols`]). From PostgreSQL 16 on, extensions are built with hidden symbols:
//! only Citus's SQL-callable functions can be found, and each operation below then goes through those, to the same
//! effect:
//!
//! | operation | Citus for 15 | Citus for 16 and later |
//! |---|---|---|
//! | make the transaction a coordinated one | `UseCoordinatedTransaction` | `create_intermediate_result` of an empty query (it starts one first) |
//! | a `SET LOCAL` on every worker connection, now and later | `PostprocessVariableSetStmt` | the `SET LOCAL` run in a `DO` block with `citus.propagate_set_commands = local` (Citus then calls the same function) |
//! | a command on every worker, in the transaction, with two-phase commit | `SendCommandToWorkersWithMetadata` | `execute_command_on_remote_nodes_as_user` |
//! | this backend's distributed transaction id | `GetCurrentDistributedTransactionId` | `get_current_transaction_id()`; whether this backend started it: no `assign_distributed_transaction_id` ran in it |

use super::symbols::{self, V1Function};
use crate::privileged::{as_bootstrap_superuser, with_pinned_search_path};
use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::cell::Cell;
use std::ffi::CStr;

thread_local! {
    /// The local transaction in which `assign_distributed_transaction_id` ran in this backend, if any.
    static ASSIGNED_IN: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Makes the current transaction a coordinated one: Citus runs its remote work in transaction blocks, which begin
/// with the `SET LOCAL`s handed to it.
pub fn coordinate() {
    let Some(s) = symbols::get() else { return };
    if let Some(f) = s.use_coordinated_transaction {
        // SAFETY: Citus's function may raise a PostgreSQL ERROR, hence the guard.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| f()) };
    } else if let Some(f) = s.create_intermediate_result {
        call2(f, "tenant_guard_coordinated", "SELECT 1 WHERE false");
    }
}

/// Hands Citus a `SET LOCAL` for every worker connection of the transaction, now and later.
pub fn set_local_everywhere(name: &CStr, text: &str) {
    let Some(s) = symbols::get() else { return };
    if let Some(f) = s.postprocess_variable_set {
        let text = zeroize::Zeroizing::new(std::ffi::CString::new(text).expect("no NUL").into_bytes_with_nul());
        // SAFETY: a zeroed node of the right tag, allocated in the current memory context; Citus reads only the
        // text, which outlives the call (Citus copies it). Citus may raise a PostgreSQL ERROR, hence the guard.
        unsafe {
            let stmt = pg_sys::palloc0(std::mem::size_of::<pg_sys::VariableSetStmt>()) as *mut pg_sys::VariableSetStmt;
            (*stmt).type_ = pg_sys::NodeTag::T_VariableSetStmt;
            (*stmt).kind = pg_sys::VariableSetKind::VAR_SET_VALUE;
            (*stmt).name = pg_sys::pstrdup(name.as_ptr());
            (*stmt).is_local = true;
            let text = CStr::from_bytes_with_nul(&text).expect("one NUL at the end");
            pg_sys::ffi::pg_guard_ffi_boundary(|| f(stmt, text.as_ptr()));
        }
    } else {
        // Citus forwards a SET LOCAL that runs in a DO block (a "multi-statement transaction" to it) while
        // citus.propagate_set_commands is 'local'. The setting, and the SET LOCAL itself, end with the nest level
        // opened here: this node's own settings are as they were (the value set is the one it already has).
        let block = zeroize::Zeroizing::new(format!("DO $tenant_guard$ BEGIN {text}; END $tenant_guard$"));
        super::pruning::unchanged_token(|| {
            super::with_setting(c"citus.propagate_set_commands", c"local", || {
                with_pinned_search_path(|| Spi::run(&block)).unwrap_or_else(|e| {
                    crate::errors::internal(format!("tenant_guard could not hand Citus a SET LOCAL: {e}"))
                })
            })
        });
    }
}

/// Runs `command` on every worker in the current transaction, connected as the current user; Citus commits it with
/// two-phase commit, on every node or none. May raise a PostgreSQL ERROR (a worker down, or refusing).
pub fn send_to_workers(command: &str) {
    let Some(s) = symbols::get() else { return };
    if let Some(f) = s.send_to_workers {
        let command = std::ffi::CString::new(command).expect("commands have no NUL");
        // SAFETY: a NUL-terminated command that outlives the call; Citus may raise a PostgreSQL ERROR, which
        // aborts this transaction on every node.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| f(command.as_ptr())) }
    } else if let Some(f) = s.execute_on_remote_nodes {
        // SAFETY: the current user's name, a palloc'd NUL-terminated copy.
        let user = unsafe { CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) }
            .to_string_lossy()
            .into_owned();
        // Citus lets superusers only run it; it connects as `user`
        as_bootstrap_superuser(|| call2(f, command, &user));
    }
}

/// This backend's distributed transaction id: (this backend started it, initiator node, number, timestamp); None
/// outside one.
pub fn transaction_id() -> Option<(bool, i32, u64, i64)> {
    let s = symbols::get()?;
    if let Some(f) = s.current_transaction_id {
        // SAFETY: Citus returns a palloc'd copy of this backend's id (zeroed outside a distributed transaction).
        let id = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| f()) };
        if id.is_null() {
            return None;
        }
        // SAFETY: not NULL, so a valid DistributedTransactionId.
        let id = unsafe { &*id };
        return (id.transaction_number != 0).then_some((
            id.transaction_originator,
            id.initiator_node_identifier,
            id.transaction_number,
            id.timestamp,
        ));
    }
    // the timestamp as PostgreSQL stores it: microseconds since 2000-01-01 UTC
    let row = with_pinned_search_path(|| {
        Spi::get_three::<i32, i64, i64>(
            "SELECT initiator_node_identifier, transaction_number, \
                    ((pg_catalog.date_part('epoch', transaction_stamp)::pg_catalog.numeric \
                      OPERATOR(pg_catalog.-) 946684800) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 \
               FROM pg_catalog.get_current_transaction_id()",
        )
    })
    .ok()?;
    let (Some(initiator), Some(number), Some(stamp)) = row else { return None };
    let assigned = ASSIGNED_IN.get() == Some(crate::pg_version::local_transaction_id());
    (number != 0).then_some((!assigned, initiator, number as u64, stamp))
}

/// `assign_distributed_transaction_id` is about to run in this backend: the transaction's id is not its own.
pub fn transaction_id_assigned() {
    ASSIGNED_IN.set(Some(crate::pg_version::local_transaction_id()));
}

/// Calls a version-1 function with two text arguments.
fn call2(f: V1Function, a: &str, b: &str) {
    let (Some(a), Some(b)) = (a.into_datum(), b.into_datum()) else { return };
    // SAFETY: a version-1 function of two text arguments, called as fmgr would; it may raise a PostgreSQL ERROR
    // (DirectFunctionCall2Coll raises one if it returns NULL).
    unsafe { pg_sys::DirectFunctionCall2Coll(Some(f), pg_sys::InvalidOid, a, b) };
}
