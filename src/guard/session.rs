//! Rules against state that would outlive a transaction, where a pooled server connection would hand it to the next
//! client's transaction. They apply to every role while `tenant_guard.allow_session_scope` is off (the setting for
//! roles behind a transaction-mode pooler).
//!
//! - a session-level `SET tenant_guard.token` (`SET LOCAL` and `RESET` stay allowed); the other session-level forms
//!   (`set_config(..., false)`, `tenant.authenticate(token, 'session')`, a connection option) are refused where the
//!   token is used, see `context`;
//! - **anything left in the session's temporary schema past COMMIT**: a temporary table keeps rows a tenant copied
//!   into it, and any temporary object (a view, a table even if emptied at COMMIT, a function, a sequence, a type)
//!   would shadow the next client's unqualified names (`pg_temp` is searched first) and run its creator's code in
//!   that client's transaction, with that client's tenant. Only `CREATE TEMP TABLE ... ON COMMIT DROP` (and
//!   `CREATE TEMP TABLE ... AS ... ON COMMIT DROP`) stays allowed: it is gone when the transaction ends. The schema an
//!   object goes to is resolved as PostgreSQL resolves it (`TEMP`, a `pg_temp.` name, or `pg_temp` first on the
//!   search path).

use crate::errors;
use crate::gucs;
use pgrx::pg_sys;

/// Checks a statement against the rules above (they cost nothing while session scope is allowed).
///
/// # Safety
/// `node` is the statement's parse tree.
pub unsafe fn check(node: *mut pg_sys::Node) {
    if gucs::session_scope_allowed() {
        return;
    }
    // SAFETY: each branch casts the node to the type its tag names.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_VariableSetStmt => set(node as *mut pg_sys::VariableSetStmt),
            pg_sys::NodeTag::T_CreateStmt => {
                let stmt = node as *mut pg_sys::CreateStmt;
                temp_relation((*stmt).relation, Some((*stmt).oncommit), "a temporary table")
            }
            pg_sys::NodeTag::T_CreateTableAsStmt => {
                let into = (*(node as *mut pg_sys::CreateTableAsStmt)).into;
                if !into.is_null() {
                    temp_relation((*into).rel, Some((*into).onCommit), "a temporary table")
                }
            }
            pg_sys::NodeTag::T_ViewStmt => {
                temp_relation((*(node as *mut pg_sys::ViewStmt)).view, None, "a temporary view")
            }
            pg_sys::NodeTag::T_CreateSeqStmt => {
                temp_relation((*(node as *mut pg_sys::CreateSeqStmt)).sequence, None, "a temporary sequence")
            }
            pg_sys::NodeTag::T_CompositeTypeStmt => {
                temp_relation((*(node as *mut pg_sys::CompositeTypeStmt)).typevar, None, "a temporary type")
            }
            pg_sys::NodeTag::T_CreateFunctionStmt => {
                temp_name((*(node as *mut pg_sys::CreateFunctionStmt)).funcname, "a temporary function")
            }
            pg_sys::NodeTag::T_DefineStmt => {
                temp_name((*(node as *mut pg_sys::DefineStmt)).defnames, "a temporary object")
            }
            pg_sys::NodeTag::T_CreateEnumStmt => {
                temp_name((*(node as *mut pg_sys::CreateEnumStmt)).typeName, "a temporary type")
            }
            pg_sys::NodeTag::T_CreateRangeStmt => {
                temp_name((*(node as *mut pg_sys::CreateRangeStmt)).typeName, "a temporary type")
            }
            pg_sys::NodeTag::T_CreateDomainStmt => {
                temp_name((*(node as *mut pg_sys::CreateDomainStmt)).domainname, "a temporary domain")
            }
            pg_sys::NodeTag::T_CreateConversionStmt => {
                temp_name((*(node as *mut pg_sys::CreateConversionStmt)).conversion_name, "a temporary conversion")
            }
            _ => {}
        }
    }
}

/// `SET [SESSION] tenant_guard.token = ...`.
unsafe fn set(stmt: *mut pg_sys::VariableSetStmt) {
    // SAFETY: reads the statement.
    let (sets_value, is_local, name) = unsafe {
        (
            matches!((*stmt).kind, pg_sys::VariableSetKind::VAR_SET_VALUE | pg_sys::VariableSetKind::VAR_SET_CURRENT),
            (*stmt).is_local,
            super::cstr((*stmt).name),
        )
    };
    if sets_value && !is_local && name.eq_ignore_ascii_case(&gucs::TOKEN_NAME.to_string_lossy()) {
        errors::session_scope_disabled();
    }
}

/// A relation created in the temporary schema, allowed only as a table dropped at COMMIT.
unsafe fn temp_relation(rv: *mut pg_sys::RangeVar, on_commit: Option<pg_sys::OnCommitAction::Type>, what: &str) {
    if rv.is_null() {
        return;
    }
    // SAFETY: resolves where PostgreSQL will create the relation (raising the statement's own error for a missing
    // schema); for a temporary relation it initializes the session's temporary schema, as the statement would.
    let temporary = unsafe { pg_sys::isTempNamespace(pg_sys::RangeVarGetCreationNamespace(rv)) };
    if temporary && on_commit != Some(pg_sys::OnCommitAction::ONCOMMIT_DROP) {
        errors::temp_object_refused(what);
    }
}

/// An object named by a qualified-name list, created in the temporary schema.
unsafe fn temp_name(names: *mut pg_sys::List, what: &str) {
    if names.is_null() {
        return;
    }
    let mut object: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: resolves the creation schema of a name list from the parse tree, as the statement will.
    let temporary = unsafe { pg_sys::isTempNamespace(pg_sys::QualifiedNameGetCreationNamespace(names, &mut object)) };
    if temporary {
        errors::temp_object_refused(what);
    }
}
