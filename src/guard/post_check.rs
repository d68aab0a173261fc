//! The owner line, checked on what a statement did (see `sql/queries/owner_line.sql`): code that is not trusted with every
//! tenant's rows, foreign keys that cross the tenant boundary, unique keys without the tenant column and children
//! without their parent's protection must not appear on a protected table through a statement of a role that is
//! not an administrator.
//!
//! The check runs once the statement has run, on the catalog: PostgreSQL has resolved every name, operator, cast
//! and domain and recorded what the statement wrote, whatever statement wrote it (a schema element, an ALTER DOMAIN
//! or ALTER TYPE that changes what an existing constraint calls, a label set on a table that already carries the
//! code). Such code runs later, in each tenant's own writes, so refusing it before the transaction commits is
//! enough.

use crate::errors;
use crate::privileged::with_pinned_search_path;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use std::cell::RefCell;

thread_local! {
    /// The owner-line query, planned once per backend (it is long; planning it for every DDL statement would cost
    /// more than running it).
    static PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

/// Whether a statement can write the catalog rows the owner line reads (the others cost nothing).
pub fn may_write_catalog(tag: pg_sys::NodeTag) -> bool {
    use pg_sys::NodeTag::*;
    !matches!(
        tag,
        T_TransactionStmt
            | T_VariableSetStmt
            | T_VariableShowStmt
            | T_DiscardStmt
            | T_ListenStmt
            | T_UnlistenStmt
            | T_NotifyStmt
            | T_PrepareStmt
            | T_ExecuteStmt
            | T_DeallocateStmt
            | T_DeclareCursorStmt
            | T_ClosePortalStmt
            | T_FetchStmt
            | T_CopyStmt
            | T_VacuumStmt
            | T_CheckPointStmt
            | T_LockStmt
            | T_LoadStmt
            | T_CallStmt
            | T_DoStmt
            | T_ConstraintsSetStmt
            | T_TruncateStmt
    )
}

/// Raises 42501 for the first thing the current transaction added on a protected table that the owner line
/// forbids. `what` names the statement.
pub fn verify(what: &str) {
    // SAFETY: reads the backend's transaction state.
    if unsafe { pg_sys::GetTopTransactionIdIfAny() } == pg_sys::InvalidTransactionId {
        return; // nothing written
    }
    let breach = with_pinned_search_path(|| {
        Spi::connect(|client| {
            let failed = |e: pgrx::spi::SpiError| -> ! {
                errors::internal(format!("tenant_guard could not check a statement: {e}"))
            };
            if PLAN.with_borrow(Option::is_none) {
                let plan = client
                    .prepare(include_str!("../../sql/queries/owner_line.sql"), &[])
                    .unwrap_or_else(|e| failed(e))
                    .keep();
                PLAN.set(Some(plan));
            }
            let rows = PLAN
                .with_borrow(|plan| client.select(plan.as_ref().expect("prepared above"), None, &[]))
                .unwrap_or_else(|e| failed(e));
            rows.into_iter().next().map(|r| {
                (
                    r.get::<pg_sys::Oid>(1).ok().flatten().unwrap_or(pg_sys::InvalidOid),
                    r.get::<String>(2).ok().flatten().unwrap_or_default(),
                    r.get::<String>(3).ok().flatten().unwrap_or_default(),
                    r.get::<String>(4).ok().flatten(),
                )
            })
        })
    });
    let Some((relid, kind, object, detail)) = breach else { return };
    let table = super::display_name(relid);
    match (kind.as_str(), detail) {
        ("foreign_key", Some(other)) => errors::crossing_foreign_key_refused(what, &table, &object, &other),
        ("unique_key", Some(column)) => errors::unique_key_refused(what, &table, &object, &column),
        ("unprotected_child", _) => errors::unprotected_child_refused(what, &object, &table),
        (_, Some(function)) => {
            errors::untrusted_code_refused(what, &table, &format!("{object}, which calls function {function}"))
        }
        (_, None) => errors::untrusted_code_refused(what, &table, &object),
    }
}
