//! Planner statistics over every tenant's rows, hidden from confined roles (`tenant_guard.hide_planner_statistics`,
//! on by default).
//!
//! The planner chooses plans from column statistics gathered over every tenant's rows (most common values,
//! histograms, distinct counts) and from extended statistics. A confined role never reads them, but it sees their
//! effect: which plan runs decides the order of its own rows (a hash aggregate sized by an estimate, an index scan
//! against a sequential scan) and how long the statement takes, so comparing two of its own queries tells it whether
//! a value is common among other tenants' rows. For roles that are not superusers or members of
//! `tenant_guard_admin`, the planner is given no column, expression-index or extended statistics of protected
//! tables: it plans with PostgreSQL's default estimates, and the same query plans the same whatever other tenants
//! hold; the average width of a column's values is the one PostgreSQL assumes for its type. Table and index sizes
//! (`reltuples`, `relpages`), which every role can read in `pg_class`, are still used.
//!
//! The cost: plans of confined roles on protected tables cannot use value frequencies, so a query whose plan
//! depends on them (a skewed column, a range over a histogram) may plan worse. Queries that lead with the tenant
//! column and a key plan as before. `make bench` measures it; turn the setting off for a role where the plans matter
//! more than this oracle.

use super::is_admin;
use crate::gucs;
use crate::labels;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;

static mut PREV_RELATION_STATS: pg_sys::get_relation_stats_hook_type = None;
static mut PREV_INDEX_STATS: pg_sys::get_index_stats_hook_type = None;
static mut PREV_RELATION_INFO: pg_sys::get_relation_info_hook_type = None;
static mut PREV_ATTAVGWIDTH: pg_sys::get_attavgwidth_hook_type = None;

thread_local! {
    /// (local transaction id, user) -> confined, for the planner's many questions within one statement.
    static CONFINED: Cell<(u32, pg_sys::Oid, bool)> = const { Cell::new((0, pg_sys::InvalidOid, false)) };
}

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to the hooks installed before.
    unsafe {
        PREV_RELATION_STATS = pg_sys::get_relation_stats_hook;
        pg_sys::get_relation_stats_hook = Some(relation_stats);
        PREV_INDEX_STATS = pg_sys::get_index_stats_hook;
        pg_sys::get_index_stats_hook = Some(index_stats);
        PREV_RELATION_INFO = pg_sys::get_relation_info_hook;
        pg_sys::get_relation_info_hook = Some(relation_info);
        PREV_ATTAVGWIDTH = pg_sys::get_attavgwidth_hook;
        pg_sys::get_attavgwidth_hook = Some(attavgwidth);
    }
}

/// Whether the planner must not see statistics of `relid` for the current user.
fn hidden(relid: pg_sys::Oid) -> bool {
    if !gucs::planner_statistics_hidden() || !labels::is_protected_cached(relid) {
        return false;
    }
    // SAFETY: a plain read of backend state.
    let (lxid, user) = (crate::pg_version::local_transaction_id(), unsafe { pg_sys::GetUserId() });
    let (cached_lxid, cached_user, confined) = CONFINED.get();
    if cached_lxid == lxid && cached_user == user {
        return confined;
    }
    let confined = !is_admin();
    CONFINED.set((lxid, user, confined));
    confined
}

/// No statistics: the hook "supplies" an empty result, and the planner falls back to its default estimates.
unsafe fn no_statistics(vardata: *mut pg_sys::VariableStatData) -> bool {
    // SAFETY: the planner passes its VariableStatData to fill.
    unsafe {
        (*vardata).statsTuple = std::ptr::null_mut();
        (*vardata).freefunc = None;
    }
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_stats(
    root: *mut pg_sys::PlannerInfo,
    rte: *mut pg_sys::RangeTblEntry,
    attnum: pg_sys::AttrNumber,
    vardata: *mut pg_sys::VariableStatData,
) -> bool {
    // SAFETY: the planner passes a RangeTblEntry of a relation and its VariableStatData.
    unsafe {
        if hidden((*rte).relid) {
            return no_statistics(vardata);
        }
        match PREV_RELATION_STATS {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(root, rte, attnum, vardata)),
            None => false,
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn index_stats(
    root: *mut pg_sys::PlannerInfo,
    index: pg_sys::Oid,
    attnum: pg_sys::AttrNumber,
    vardata: *mut pg_sys::VariableStatData,
) -> bool {
    // SAFETY: a syscache lookup of the index's table; the planner passes its VariableStatData.
    unsafe {
        if hidden(pg_sys::IndexGetRelation(index, true)) {
            return no_statistics(vardata);
        }
        match PREV_INDEX_STATS {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(root, index, attnum, vardata)),
            None => false,
        }
    }
}

/// The average width of a column's values (measured by ANALYZE over every tenant's rows): for hidden tables, the
/// width PostgreSQL assumes for the column's type instead.
#[pg_guard]
unsafe extern "C-unwind" fn attavgwidth(relid: pg_sys::Oid, attnum: pg_sys::AttrNumber) -> i32 {
    // SAFETY: syscache lookups of the column's type; get_typavgwidth computes from the type alone.
    unsafe {
        if hidden(relid) {
            let (mut typid, mut typmod, mut collation) = (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
            pg_sys::get_atttypetypmodcoll(relid, attnum, &mut typid, &mut typmod, &mut collation);
            return pg_sys::get_typavgwidth(typid, typmod).max(1);
        }
        match PREV_ATTAVGWIDTH {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(relid, attnum)),
            None => 0,
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_info(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Oid,
    inhparent: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: the planner passes the RelOptInfo it has just filled; extended statistics are a List we drop.
    unsafe {
        super::row_location::check_sample(root, rel);
        if hidden(relid) {
            (*rel).statlist = std::ptr::null_mut();
        }
        if let Some(prev) = PREV_RELATION_INFO {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(root, relid, inhparent, rel));
        }
    }
}
