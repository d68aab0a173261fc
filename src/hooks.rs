//! Hooks into the executor of utility statements: the tamper guard.
//!
//! For any role other than a superuser or a member of `tenant_guard_admin`, these are refused with 42501 on a table
//! labelled `tenant_scoped` (partitions carry their own label, so a detached partition stays guarded):
//! - `ALTER TABLE ... DISABLE ROW LEVEL SECURITY` / `NO FORCE ROW LEVEL SECURITY`;
//! - `DROP POLICY` / `ALTER POLICY` / `ALTER POLICY ... RENAME` of `tenant_isolation` or `tenant_access`;
//! - dropping, retyping or renaming the tenant column, or dropping its default or NOT NULL;
//! - `TRUNCATE` (which ignores row-level security and would empty every tenant's rows), including a protected table
//!   reached through `TRUNCATE ... CASCADE`.
//!
//! `CREATE POLICY tenant_isolation|tenant_access` on a protected table that already has it is skipped with a NOTICE
//! (tenant_guard manages those policies; a restore of pg_dump output re-creates them after the label has).
//!
//! A session-level `SET tenant_guard.token` is refused for everyone while `tenant_guard.allow_session_scope` is off
//! (`SET LOCAL` and `RESET` stay allowed), like `tenant.authenticate(token, 'session')`.
//!
//! Two statements that run a query are refused for the same roles when the query's plan touches a protected table:
//! - `EXPLAIN ANALYZE`: its actual row counts ("Rows Removed by Filter") count other tenants' rows;
//! - `DECLARE ... WITH HOLD`: the cursor's rows outlive COMMIT, so the next transaction on the same connection
//!   (another client's, behind a transaction pooler) could FETCH them.
//!
//! The utility hook marks the statement while it runs; the executor-start hook refuses a marked plan whose range
//! table (the planner's flattened one: subqueries, CTEs, views and partitions included) holds a protected table.
//! Plain EXPLAIN runs nothing and stays allowed; so do cursors without HOLD, which end with their transaction.

use crate::errors;
use crate::gucs;
use crate::labels;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::Cell;
use std::ffi::CStr;

/// Members of this role may change protected tables like a superuser.
pub const ADMIN_ROLE: &CStr = c"tenant_guard_admin";

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

thread_local! {
    /// The statement being run whose plan must not touch a protected table (for a non-administrator), if any.
    static WATCHED: Cell<Option<Watched>> = const { Cell::new(None) };
}

/// Statements that run a plan whose results outlive what row-level security can vouch for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watched {
    /// `EXPLAIN ANALYZE`: its actual row counts count other tenants' rows.
    ExplainAnalyze,
    /// `DECLARE ... WITH HOLD`: its rows outlive COMMIT, into the next transaction on the connection.
    HoldCursor,
}

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to whatever hooks were installed before.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

/// Marks the watched statement in progress; restores the previous mark however the statement ends (an error unwinds
/// through Drop).
struct WatchMark(Option<Watched>);

impl WatchMark {
    fn new(what: Watched) -> WatchMark {
        WatchMark(WATCHED.with(|w| w.replace(Some(what))))
    }
}

impl Drop for WatchMark {
    fn drop(&mut self) {
        WATCHED.with(|w| w.set(self.0));
    }
}

/// Whether `node` is `EXPLAIN (ANALYZE ...)` or `DECLARE ... WITH HOLD`.
unsafe fn watched(node: *mut pg_sys::Node) -> Option<Watched> {
    // SAFETY: nodes are cast to the type their tag names; EXPLAIN options are DefElems (defGetBoolean reads an
    // option given without a value as true, and raises the usual error for a value that is not a boolean).
    unsafe {
        if node.is_null() {
            return None;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_ExplainStmt => {
                let stmt = node as *mut pg_sys::ExplainStmt;
                PgList::<pg_sys::DefElem>::from_pg((*stmt).options)
                    .iter_ptr()
                    .any(|opt| cstr((*opt).defname) == "analyze" && pg_sys::defGetBoolean(opt))
                    .then_some(Watched::ExplainAnalyze)
            }
            pg_sys::NodeTag::T_DeclareCursorStmt => {
                let stmt = node as *mut pg_sys::DeclareCursorStmt;
                ((*stmt).options & pg_sys::CURSOR_OPT_HOLD as std::ffi::c_int != 0).then_some(Watched::HoldCursor)
            }
            _ => None,
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    let watched = WATCHED.with(Cell::get);
    if watched.is_some() && eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as std::ffi::c_int == 0 {
        // SAFETY: the executor passes a valid QueryDesc whose PlannedStmt has a range table of RangeTblEntry nodes.
        let rtable = unsafe { PgList::<pg_sys::RangeTblEntry>::from_pg((*(*query_desc).plannedstmt).rtable) };
        // SAFETY: each entry is a RangeTblEntry; relid is meaningful for RTE_RELATION entries only.
        let protected = rtable
            .iter_ptr()
            .filter(|rte| unsafe { (**rte).rtekind == pg_sys::RTEKind::RTE_RELATION })
            .map(|rte| unsafe { (*rte).relid })
            .find(|relid| labels::protected_column(*relid).is_some());
        if let Some(relid) = protected {
            match watched {
                Some(Watched::ExplainAnalyze) => errors::explain_analyze_refused(&display_name(relid)),
                _ => errors::hold_cursor_refused(&display_name(relid)),
            }
        }
    }
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, eflags)),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

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
    // SAFETY: pstmt is the statement PostgreSQL is about to execute; we only read its parse tree.
    let run = unsafe { guard((*pstmt).utilityStmt) };
    if !run {
        return;
    }
    // SAFETY: reads the node tag only.
    let is_seclabel =
        unsafe { !(*pstmt).utilityStmt.is_null() && (*(*pstmt).utilityStmt).type_ == pg_sys::NodeTag::T_SecLabelStmt };
    // SAFETY: reads the parse tree only.
    let _mark = unsafe { watched((*pstmt).utilityStmt) }.filter(|_| !is_admin()).map(WatchMark::new);
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_PROCESS_UTILITY {
            // through pgrx's FFI boundary, so that an ERROR unwinds our frames (and drops the EXPLAIN ANALYZE mark)
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
    if is_seclabel {
        // the labelled table is closed again: apply what the label hook decided
        labels::flush_actions();
    }
}

fn is_admin() -> bool {
    // SAFETY: plain catalog lookups for the current user.
    unsafe {
        if pg_sys::superuser() {
            return true;
        }
        let admin = pg_sys::get_role_oid(ADMIN_ROLE.as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetUserId(), admin)
    }
}

fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: parse-tree strings are NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Resolves a RangeVar without locking or erroring (the statement itself will do both).
unsafe fn relid_of(rv: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: rv is a RangeVar from the parse tree.
    unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

fn display_name(relid: pg_sys::Oid) -> String {
    labels::qualified_name(relid).unwrap_or_else(|| "?".into())
}

fn is_managed_policy(name: &str) -> bool {
    name == labels::ISOLATION_POLICY || name == labels::ACCESS_POLICY
}

/// `relids` and every table that references them through foreign keys, transitively (what TRUNCATE CASCADE empties).
unsafe fn with_referencing_tables(mut relids: Vec<pg_sys::Oid>) -> Vec<pg_sys::Oid> {
    let mut frontier = relids.clone();
    while !frontier.is_empty() {
        // SAFETY: heap_truncate_find_FKs takes an OID list (T_OidList) and returns one, without duplicates, of the
        // tables whose foreign keys reference those; it only reads pg_constraint.
        let found = unsafe {
            let oids = pg_sys::list_make1_impl(pg_sys::NodeTag::T_OidList, pg_sys::ListCell { oid_value: frontier[0] });
            let oids = frontier[1..].iter().fold(oids, |l, o| pg_sys::lappend_oid(l, *o));
            pg_sys::heap_truncate_find_FKs(oids)
        };
        frontier = PgList::<pg_sys::Oid>::from_pg(found).iter_oid().filter(|o| !relids.contains(o)).collect();
        relids.extend(frontier.iter().copied());
    }
    relids
}

/// Returns whether the statement should run. Raises 42501 when the tamper guard refuses it.
unsafe fn guard(node: *mut pg_sys::Node) -> bool {
    if node.is_null() || labels::in_internal_ddl() {
        return true;
    }
    // SAFETY: each branch casts the node to the type its tag names.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_VariableSetStmt => {
                // SET tenant_guard.token (session level) while session scope is off; SET LOCAL and RESET are fine
                let stmt = node as *mut pg_sys::VariableSetStmt;
                let sets_value = matches!(
                    (*stmt).kind,
                    pg_sys::VariableSetKind::VAR_SET_VALUE | pg_sys::VariableSetKind::VAR_SET_CURRENT
                );
                if sets_value
                    && !(*stmt).is_local
                    && cstr((*stmt).name).eq_ignore_ascii_case(&gucs::TOKEN_NAME.to_string_lossy())
                    && !gucs::session_scope_allowed()
                {
                    errors::session_scope_disabled();
                }
                true
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = node as *mut pg_sys::AlterTableStmt;
                let relid = relid_of((*stmt).relation);
                let Some(column) = labels::protected_column(relid) else { return true };
                if is_admin() {
                    return true;
                }
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                    let name = cstr((*cmd).name);
                    let refused = match (*cmd).subtype {
                        pg_sys::AlterTableType::AT_DisableRowSecurity => Some("DISABLE ROW LEVEL SECURITY"),
                        pg_sys::AlterTableType::AT_NoForceRowSecurity => Some("NO FORCE ROW LEVEL SECURITY"),
                        pg_sys::AlterTableType::AT_DropColumn if name == column => Some("dropping the tenant column"),
                        pg_sys::AlterTableType::AT_AlterColumnType if name == column => {
                            Some("changing the type of the tenant column")
                        }
                        pg_sys::AlterTableType::AT_ColumnDefault if name == column => {
                            Some("changing the default of the tenant column")
                        }
                        pg_sys::AlterTableType::AT_DropNotNull if name == column => {
                            Some("dropping NOT NULL from the tenant column")
                        }
                        _ => None,
                    };
                    if let Some(what) = refused {
                        errors::tamper_refused(what, &display_name(relid));
                    }
                }
                true
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let stmt = node as *mut pg_sys::RenameStmt;
                let relid = relid_of((*stmt).relation);
                let Some(column) = labels::protected_column(relid) else { return true };
                let sub = cstr((*stmt).subname);
                let refused = match (*stmt).renameType {
                    pg_sys::ObjectType::OBJECT_COLUMN if sub == column => Some("renaming the tenant column"),
                    pg_sys::ObjectType::OBJECT_POLICY if is_managed_policy(&sub) => Some("renaming its policy"),
                    _ => None,
                };
                if let Some(what) = refused {
                    if !is_admin() {
                        errors::tamper_refused(what, &display_name(relid));
                    }
                }
                true
            }
            pg_sys::NodeTag::T_AlterPolicyStmt => {
                let stmt = node as *mut pg_sys::AlterPolicyStmt;
                let relid = relid_of((*stmt).table);
                if is_managed_policy(&cstr((*stmt).policy_name))
                    && labels::protected_column(relid).is_some()
                    && !is_admin()
                {
                    errors::tamper_refused("ALTER POLICY", &display_name(relid));
                }
                true
            }
            pg_sys::NodeTag::T_DropStmt => {
                let stmt = node as *mut pg_sys::DropStmt;
                if (*stmt).removeType != pg_sys::ObjectType::OBJECT_POLICY {
                    return true;
                }
                for names in PgList::<pg_sys::List>::from_pg((*stmt).objects).iter_ptr() {
                    let parts: Vec<String> =
                        PgList::<pg_sys::String>::from_pg(names).iter_ptr().map(|s| cstr((*s).sval)).collect();
                    let Some((policy, _)) = parts.split_last() else { continue };
                    if !is_managed_policy(policy) {
                        continue;
                    }
                    let table_names = pg_sys::list_truncate(pg_sys::list_copy(names), (parts.len() - 1) as i32);
                    let relid = relid_of(pg_sys::makeRangeVarFromNameList(table_names));
                    if labels::protected_column(relid).is_some() && !is_admin() {
                        errors::tamper_refused("DROP POLICY", &display_name(relid));
                    }
                }
                true
            }
            pg_sys::NodeTag::T_TruncateStmt => {
                let stmt = node as *mut pg_sys::TruncateStmt;
                let mut relids: Vec<pg_sys::Oid> = PgList::<pg_sys::RangeVar>::from_pg((*stmt).relations)
                    .iter_ptr()
                    .map(|rv| relid_of(rv))
                    .filter(|r| *r != pg_sys::InvalidOid)
                    .collect();
                if (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE {
                    relids = with_referencing_tables(relids);
                }
                if let Some(relid) = relids.into_iter().find(|r| labels::protected_column(*r).is_some()) {
                    if !is_admin() {
                        errors::tamper_refused("TRUNCATE", &display_name(relid));
                    }
                }
                true
            }
            pg_sys::NodeTag::T_CreatePolicyStmt => {
                let stmt = node as *mut pg_sys::CreatePolicyStmt;
                let name = cstr((*stmt).policy_name);
                if !is_managed_policy(&name) {
                    return true;
                }
                let relid = relid_of((*stmt).table);
                if labels::protected_column(relid).is_none() {
                    return true;
                }
                let exists = Spi::get_one_with_args::<bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = $1 AND polname = $2)",
                    &[relid.into(), name.as_str().into()],
                )
                .ok()
                .flatten()
                .unwrap_or(false);
                if exists {
                    pgrx::notice!(
                        "policy \"{name}\" on {} is managed by tenant_guard; CREATE POLICY skipped",
                        display_name(relid)
                    );
                    return false;
                }
                true
            }
            _ => true,
        }
    }
}
