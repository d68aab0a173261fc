//! Rules against state that would outlive a transaction, where a pooled server connection would hand it to the next
//! client's transaction. They apply to every role while `tenant_guard.allow_session_scope` is off (the setting for
//! roles behind a transaction-mode pooler).
//!
//! - a session-level `SET tenant_guard.token` (`SET LOCAL` and `RESET` stay allowed); the other session-level forms
//!   (`set_config(..., false)`, `tenant.authenticate(token, 'session')`, a connection option) are refused where the
//!   token is used, see `context`;
//! - a temporary table that keeps its rows after COMMIT (`CREATE TEMP TABLE`, `CREATE TEMP TABLE ... AS`,
//!   `SELECT ... INTO TEMP` without `ON COMMIT DROP` or `ON COMMIT DELETE ROWS`): rows a tenant copied into it would be
//!   readable by the next client on the same server connection.

use crate::errors;
use crate::gucs;
use pgrx::pg_sys;

/// `SET [SESSION] tenant_guard.token = ...`.
///
/// # Safety
/// `stmt` is the statement's VariableSetStmt.
pub unsafe fn set(stmt: *mut pg_sys::VariableSetStmt) {
    // SAFETY: reads the statement.
    let (sets_value, is_local, name) = unsafe {
        (
            matches!((*stmt).kind, pg_sys::VariableSetKind::VAR_SET_VALUE | pg_sys::VariableSetKind::VAR_SET_CURRENT),
            (*stmt).is_local,
            super::cstr((*stmt).name),
        )
    };
    if sets_value
        && !is_local
        && name.eq_ignore_ascii_case(&gucs::TOKEN_NAME.to_string_lossy())
        && !gucs::session_scope_allowed()
    {
        errors::session_scope_disabled();
    }
}

/// `CREATE TEMP TABLE` that keeps rows past COMMIT.
///
/// # Safety
/// `stmt` is the statement's CreateStmt.
pub unsafe fn create_table(stmt: *mut pg_sys::CreateStmt) {
    // SAFETY: reads the statement.
    unsafe { temp_table((*stmt).relation, (*stmt).oncommit) }
}

/// `CREATE TEMP TABLE ... AS` and `SELECT ... INTO TEMP` that keep rows past COMMIT.
///
/// # Safety
/// `stmt` is the statement's CreateTableAsStmt.
pub unsafe fn create_table_as(stmt: *mut pg_sys::CreateTableAsStmt) {
    // SAFETY: reads the statement; `into` is set for CREATE TABLE AS and SELECT INTO.
    unsafe {
        let into = (*stmt).into;
        if !into.is_null() {
            temp_table((*into).rel, (*into).onCommit);
        }
    }
}

unsafe fn temp_table(rv: *mut pg_sys::RangeVar, on_commit: pg_sys::OnCommitAction::Type) {
    // SAFETY: reads the RangeVar.
    let temporary = !rv.is_null() && unsafe { (*rv).relpersistence } as u8 == pg_sys::RELPERSISTENCE_TEMP;
    let keeps_rows =
        !matches!(on_commit, pg_sys::OnCommitAction::ONCOMMIT_DROP | pg_sys::OnCommitAction::ONCOMMIT_DELETE_ROWS);
    if temporary && keeps_rows && !gucs::session_scope_allowed() {
        errors::temp_table_refused();
    }
}
