//! Rules against state that would outlive a transaction, where a pooled server connection would hand it to the next
//! client's transaction. They apply to every role while `tenant_guard.allow_session_scope` is off (the setting for
//! roles behind a transaction-mode pooler).
//!
//! - a session-level `SET tenant_guard.token` (`SET LOCAL` and `RESET` stay allowed); the other session-level forms
//!   (`set_config(..., false)`, `tenant.authenticate(token, 'session')`, a connection option) are refused where the
//!   token is used, see `context`;
//! - **a session-level `search_path` or `role`** (`SET`, `set_config(..., false)`), refused at COMMIT, also when a
//!   later `SET LOCAL` masks it: the next client's unqualified names would resolve in the schemas this client chose,
//!   or its statements run as this client's role. `SET LOCAL` and connection options stay allowed; a role's own
//!   defaults (`ALTER ROLE ... SET`, which reaches every later connection of the role) may be changed by
//!   administrators only;
//! - **anything left in the session's temporary schema past COMMIT**: a temporary table keeps rows a tenant copied
//!   into it, and any temporary object (a view, a table even if emptied at COMMIT, a function, a sequence, a type)
//!   would shadow the next client's unqualified names (`pg_temp` is searched first) and run its creator's code in
//!   that client's transaction, with that client's tenant. Only `CREATE TEMP TABLE ... ON COMMIT DROP` (and
//!   `CREATE TEMP TABLE ... AS ... ON COMMIT DROP`) stays allowed: it is gone when the transaction ends. The schema an
//!   object goes to is resolved as PostgreSQL resolves it (`TEMP`, a `pg_temp.` name, or `pg_temp` first on the
//!   search path). The statements are checked first, for a clear error; and at COMMIT, every object created in the
//!   transaction that is still in the temporary schema and would not go with an ON COMMIT DROP table refuses the
//!   COMMIT, whatever statement made it (a `CREATE TABLE AS` inside `EXPLAIN ANALYZE`, a view that became temporary
//!   because it reads a temporary table, code run by a function).

use crate::errors;
use crate::gucs;
use crate::privileged::{with_latest_snapshot, with_pinned_search_path};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

thread_local! {
    /// Objects created in this transaction that could be in the temporary schema: (catalog, object).
    static CREATED: RefCell<Vec<(pg_sys::Oid, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
    /// Relations created by statements that create an `ON COMMIT DROP` temporary table: the tables among them are
    /// dropped at COMMIT, with what depends on them.
    static DROPPED_AT_COMMIT: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// The statement being run creates an ON COMMIT DROP temporary table.
    static CREATING_DROPPED_TABLE: Cell<bool> = const { Cell::new(false) };
}

/// The catalogs whose objects can live in the temporary schema (pg_conversion, pg_ts_config and pg_ts_dict by their
/// fixed catalog oids, which pgrx does not bind).
fn can_be_temporary(class_id: pg_sys::Oid) -> bool {
    const CONVERSION: pg_sys::Oid = pg_sys::Oid::from_u32(2607);
    const TS_CONFIG: pg_sys::Oid = pg_sys::Oid::from_u32(3602);
    const TS_DICTIONARY: pg_sys::Oid = pg_sys::Oid::from_u32(3600);
    [
        pg_sys::RelationRelationId,
        pg_sys::TypeRelationId,
        pg_sys::ProcedureRelationId,
        pg_sys::OperatorRelationId,
        CONVERSION,
        pg_sys::CollationRelationId,
        crate::pg_version::STATISTIC_EXT_RELATION_ID,
        TS_CONFIG,
        TS_DICTIONARY,
    ]
    .contains(&class_id)
}

/// Called for each object PostgreSQL creates (OAT_POST_CREATE).
pub fn object_created(class_id: pg_sys::Oid, object_id: pg_sys::Oid, sub_id: i32) {
    if sub_id != 0 || !can_be_temporary(class_id) || gucs::session_scope_allowed() {
        return;
    }
    if class_id == pg_sys::RelationRelationId && CREATING_DROPPED_TABLE.get() {
        // the table, and what PostgreSQL makes with it (a serial column's sequence, first): the tables among them
        // are the ON COMMIT DROP ones (temp_leftovers.sql)
        DROPPED_AT_COMMIT.with_borrow_mut(|d| d.push(object_id));
    }
    CREATED.with_borrow_mut(|c| c.push((class_id, object_id)));
}

/// Held while a utility statement runs: whatever way it ends, the statement's ON COMMIT DROP mark goes with it, and
/// the mark of the statement it runs inside (a serial column's sequence inside CREATE TABLE) comes back.
pub struct StatementScope(bool);

impl StatementScope {
    pub fn enter() -> StatementScope {
        StatementScope(CREATING_DROPPED_TABLE.get())
    }
}

impl Drop for StatementScope {
    fn drop(&mut self) {
        CREATING_DROPPED_TABLE.set(self.0);
    }
}

pub fn init() {
    // SAFETY: a backend-lifetime callback with a static function and no argument.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => check_at_commit(),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => forget(),
        _ => {}
    }
}

/// The settings a client may not leave behind for the next one: what unqualified names resolve to, and who runs.
const SESSION_SETTINGS: [&std::ffi::CStr; 2] = [c"search_path", c"role"];

/// At PRE_COMMIT: refuses the COMMIT if the transaction changed a setting of `SESSION_SETTINGS` for the session,
/// or if an object created in the transaction is still in the temporary schema and does not go with an ON COMMIT
/// DROP table.
pub fn check_at_commit() {
    if !gucs::session_scope_allowed() {
        if let Some(name) = SESSION_SETTINGS.iter().find(|n| gucs::set_for_session_here(n)) {
            errors::session_setting_refused(&name.to_string_lossy());
        }
    }
    let created = CREATED.take();
    let dropped = DROPPED_AT_COMMIT.take();
    if created.is_empty() || gucs::session_scope_allowed() {
        return;
    }
    let (classes, objects): (Vec<pg_sys::Oid>, Vec<pg_sys::Oid>) = created.into_iter().unzip();
    // (at PRE_COMMIT no statement's snapshot is active)
    let leftover = with_latest_snapshot(|| {
        with_pinned_search_path(|| {
            Spi::connect(|client| {
                client
                    .select(
                        include_str!("../../sql/queries/temp_leftovers.sql"),
                        None,
                        &[classes.into(), objects.into(), dropped.into()],
                    )
                    .map(|rows| rows.into_iter().next().and_then(|r| r.get::<String>(1).ok().flatten()))
            })
        })
    })
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not check the temporary schema: {e}")));
    if let Some(what) = leftover {
        errors::temp_object_refused(&what);
    }
}

/// At the end of every transaction.
pub fn forget() {
    CREATED.with_borrow_mut(Vec::clear);
    DROPPED_AT_COMMIT.with_borrow_mut(Vec::clear);
    CREATING_DROPPED_TABLE.set(false);
}

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
            pg_sys::NodeTag::T_ExplainStmt => {
                // EXPLAIN ANALYZE runs the statement it explains: CREATE TABLE AS creates its table
                let query = super::utility_of((*(node as *mut pg_sys::ExplainStmt)).query);
                if !query.is_null() && (*query).type_ == pg_sys::NodeTag::T_CreateTableAsStmt {
                    check(query);
                }
            }
            pg_sys::NodeTag::T_VariableSetStmt => set(node as *mut pg_sys::VariableSetStmt),
            pg_sys::NodeTag::T_AlterRoleSetStmt | pg_sys::NodeTag::T_AlterDatabaseSetStmt if !super::is_admin() => {
                // a role's own defaults reach every later connection of the role, the pooler's included
                errors::stored_setting_refused()
            }
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
        crate::tenant_stats::refused(None, crate::token::reason::Reason::Origin);
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
    if !temporary {
        return;
    }
    if on_commit != Some(pg_sys::OnCommitAction::ONCOMMIT_DROP) {
        errors::temp_object_refused(what);
    }
    CREATING_DROPPED_TABLE.set(true);
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
