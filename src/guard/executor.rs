//! Statements whose output counts or carries other tenants' rows, refused for confined roles when their plan touches
//! a protected table (the planner's flattened range table: subqueries, CTEs, views, partitions, EXECUTE):
//! - `EXPLAIN ANALYZE`: its actual row counts ("Rows Removed by Filter", loops) count other tenants' rows;
//! - plain `EXPLAIN`: its row estimates come from statistics over every tenant's rows (a value another tenant has
//!   many of is estimated at many rows), unless `tenant_guard.allow_explain` is on for the role;
//! - `DECLARE ... WITH HOLD`: the cursor's rows outlive COMMIT, into the next transaction on the connection.
//!   Every run of a holdable cursor (each FETCH, and the run to the end that keeps its rows at COMMIT) is watched
//!   too: a query it runs through a function (or anything else) that touches a protected table is refused then, so
//!   no function can carry rows out; and a procedure's FOR loop held across its own COMMIT may not keep a protected
//!   table's rows.
//!
//! The utility hook marks the statement while it runs ([`watch`]); the executor-start hook checks every plan started
//! under the mark. The executor-run hook marks the run of a holdable cursor being kept at COMMIT.

use super::is_admin;
use crate::errors;
use crate::gucs;
use crate::labels;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::Cell;

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_RUN: pg_sys::ExecutorRun_hook_type = None;

/// Statements that run plans whose results outlive what row-level security can vouch for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    Explain,
    ExplainAnalyze,
    HoldCursor,
    /// A holdable cursor being run to the end at COMMIT, by a confined role.
    KeepingHoldCursor,
}

thread_local! {
    /// The statement in progress whose plans must not touch a protected table (set only for confined roles).
    static WATCHED: Cell<Option<Watched>> = const { Cell::new(None) };
}

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to the hooks installed before.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_EXECUTOR_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
    }
}

/// Restores the previous mark however the statement ends (an error unwinds through Drop).
pub struct WatchMark(Option<Watched>);

impl WatchMark {
    fn new(what: Watched) -> WatchMark {
        WatchMark(WATCHED.replace(Some(what)))
    }
}

impl Drop for WatchMark {
    fn drop(&mut self) {
        WATCHED.set(self.0);
    }
}

/// Marks a watched utility statement for a confined role (EXPLAIN, DECLARE ... WITH HOLD).
///
/// # Safety
/// `node` is NULL or the utility statement's parse tree.
pub unsafe fn watch(node: *mut pg_sys::Node) -> Option<WatchMark> {
    // SAFETY: as the caller promises; reads the parse tree only.
    let what = unsafe { watched(node) }?;
    (!is_admin()).then(|| WatchMark::new(what))
}

/// Whether `node` is `EXPLAIN [ANALYZE]` or `DECLARE ... WITH HOLD`.
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
                let analyze = PgList::<pg_sys::DefElem>::from_pg((*stmt).options)
                    .iter_ptr()
                    .any(|opt| super::cstr((*opt).defname) == "analyze" && pg_sys::defGetBoolean(opt));
                Some(if analyze { Watched::ExplainAnalyze } else { Watched::Explain })
            }
            pg_sys::NodeTag::T_DeclareCursorStmt => {
                let stmt = node as *mut pg_sys::DeclareCursorStmt;
                ((*stmt).options & pg_sys::CURSOR_OPT_HOLD as std::ffi::c_int != 0).then_some(Watched::HoldCursor)
            }
            _ => None,
        }
    }
}

/// The first protected table in a plan's range table.
unsafe fn protected_table(query_desc: *mut pg_sys::QueryDesc) -> Option<pg_sys::Oid> {
    // SAFETY: the executor passes a valid QueryDesc whose PlannedStmt has a range table of RangeTblEntry nodes;
    // relid is meaningful for RTE_RELATION entries only.
    unsafe {
        PgList::<pg_sys::RangeTblEntry>::from_pg((*(*query_desc).plannedstmt).rtable)
            .iter_ptr()
            .filter(|rte| (**rte).rtekind == pg_sys::RTEKind::RTE_RELATION)
            .map(|rte| (*rte).relid)
            .find(|relid| labels::protected_column(*relid).is_some())
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    ENTRIES.set(ENTRIES.get() + 1);
    crate::context::statement_started(query_desc as usize);
    super::function_rights::executor_started(query_desc as usize);
    // SAFETY: a valid QueryDesc from the executor; its text is NUL-terminated.
    unsafe { super::prepared_statement_of((*query_desc).sourceText) };
    // SAFETY: the QueryDesc's plan, valid for the executor's whole run.
    unsafe { crate::citus::context::forward_for_plan((*query_desc).plannedstmt) };
    // SAFETY: as above.
    unsafe { super::admin_reach::check_plan((*query_desc).plannedstmt) };
    if let Some(what) = WATCHED.get() {
        let refused = match what {
            Watched::Explain => !gucs::explain_allowed(),
            Watched::ExplainAnalyze | Watched::HoldCursor | Watched::KeepingHoldCursor => true,
        };
        // SAFETY: a valid QueryDesc from the executor.
        if let Some(relid) = refused.then(|| unsafe { protected_table(query_desc) }).flatten() {
            let table = super::display_name(relid);
            match what {
                Watched::Explain => errors::explain_refused(&table),
                Watched::ExplainAnalyze => errors::explain_analyze_refused(&table),
                Watched::HoldCursor => errors::hold_cursor_refused(&table),
                Watched::KeepingHoldCursor => errors::hold_cursor_kept_refused(&table),
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

/// Whether this run is the client's own portal running its query (not a query nested in a function).
unsafe fn runs_active_portal(query_desc: *mut pg_sys::QueryDesc) -> bool {
    // SAFETY: ActivePortal is NULL or the portal being run.
    unsafe {
        let portal = pg_sys::ActivePortal;
        !portal.is_null() && (*portal).queryDesc == query_desc
    }
}

/// A prepared statement reports its text anew at each execution (the extended protocol's Execute): redact it again.
fn redact_reported_text(query_desc: *mut pg_sys::QueryDesc) {
    // SAFETY: a valid QueryDesc from the executor; its source text is NUL-terminated.
    unsafe {
        if runs_active_portal(query_desc) {
            crate::redaction::report_activity((*query_desc).sourceText);
        }
    }
}

/// Whether this run is a holdable cursor's, or the one PostgreSQL makes at COMMIT to keep a portal's rows
/// (PersistHoldablePortal: a holdable cursor, or a procedure's FOR loop held across its own COMMIT), running its own
/// query. Returns whether it is the keeping run.
unsafe fn holdable_run(query_desc: *mut pg_sys::QueryDesc) -> Option<bool> {
    // SAFETY: ActivePortal is NULL or the portal being run.
    unsafe {
        let portal = pg_sys::ActivePortal;
        if !runs_active_portal(query_desc) {
            return None;
        }
        let holdable = (*portal).cursorOptions & pg_sys::CURSOR_OPT_HOLD as std::ffi::c_int != 0;
        // a portal that runs its own query into its hold store is being kept past COMMIT (HoldPinnedPortals marks a
        // procedure's loop autoHeld only after it has kept it)
        let keeping = !(*portal).holdStore.is_null();
        (holdable || keeping).then_some(keeping)
    }
}

/// Marks every run of a confined role's holdable cursor, its FETCHes as well as the run that keeps its rows at
/// COMMIT: a function the cursor's query calls may read a protected table during either, and the rows it reads
/// are kept past COMMIT (a FETCH before COMMIT fills a function scan's result, which the run at COMMIT reuses). At
/// COMMIT, the kept query's own plan is checked too (a procedure's FOR loop is held without a DECLARE).
fn hold_mark(query_desc: *mut pg_sys::QueryDesc) -> Option<WatchMark> {
    // SAFETY: a valid QueryDesc from the executor.
    let keeping = unsafe { holdable_run(query_desc) }?;
    if is_admin() {
        return None;
    }
    if keeping {
        // SAFETY: as above.
        if let Some(relid) = unsafe { protected_table(query_desc) } {
            errors::hold_cursor_kept_refused(&super::display_name(relid));
        }
    }
    Some(WatchMark::new(Watched::KeepingHoldCursor))
}

#[cfg(not(feature = "pg18"))]
#[pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query_desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    redact_reported_text(query_desc);
    // a cursor or portal run again by a later statement: the context must still hold (revoked, suspended?)
    crate::context::statement_continued(query_desc as usize);
    super::function_rights::executor_running(query_desc as usize);
    let _mark = hold_mark(query_desc);
    let _depth = RunDepth::enter();
    ENTRIES.set(ENTRIES.get() + 1);
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_RUN {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, direction, count, execute_once)),
            None => pg_sys::standard_ExecutorRun(query_desc, direction, count, execute_once),
        }
    }
    drop(_depth);
    if RUN_DEPTH.get() == 0 {
        crate::labels::after_citus_conversion();
    }
}

/// How many times this backend entered the executor (ExecutorStart or ExecutorRun): a change tells that something
/// was executed in between.
pub fn executor_entries() -> u64 {
    ENTRIES.get()
}

thread_local! {
    static ENTRIES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// How many ExecutorRun calls are in progress (statements run by functions nest).
    static RUN_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts a running ExecutorRun however it ends (an error unwinds through Drop).
struct RunDepth;

impl RunDepth {
    fn enter() -> RunDepth {
        RUN_DEPTH.set(RUN_DEPTH.get() + 1);
        RunDepth
    }
}

impl Drop for RunDepth {
    fn drop(&mut self) {
        RUN_DEPTH.set(RUN_DEPTH.get() - 1);
    }
}

/// PostgreSQL 18 dropped the `execute_once` argument.
#[cfg(feature = "pg18")]
#[pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query_desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    redact_reported_text(query_desc);
    // a cursor or portal run again by a later statement: the context must still hold (revoked, suspended?)
    crate::context::statement_continued(query_desc as usize);
    super::function_rights::executor_running(query_desc as usize);
    let _mark = hold_mark(query_desc);
    let _depth = RunDepth::enter();
    ENTRIES.set(ENTRIES.get() + 1);
    // SAFETY: passes the arguments on unchanged, to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_RUN {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, direction, count)),
            None => pg_sys::standard_ExecutorRun(query_desc, direction, count),
        }
    }
    drop(_depth);
    if RUN_DEPTH.get() == 0 {
        crate::labels::after_citus_conversion();
    }
}
