//! Row locations of protected tables, hidden from confined roles (part of `tenant_guard.hide_statistics`).
//!
//! A row's `ctid` is its place in the table's heap, which every tenant's rows share: the line pointer of a row a
//! tenant has just inserted counts the rows other tenants put on the same page before it, and inserting and
//! deleting a probe row twice counts what they wrote in between. For roles that are not superusers or members of
//! `tenant_guard_admin`, a statement that reads the `ctid` of a protected table (in its select list, WHERE clause
//! or RETURNING) is refused with 42501. The column privileges PostgreSQL checks before every statement
//! (ExecutorCheckPerms_hook) name every column it reads, system columns included, through views and functions too.
//! PostgreSQL's own use of `ctid` (UPDATE, DELETE, row locks) is not a column the statement selects and is not
//! affected.
//!
//! `TABLESAMPLE` gives the same away: BERNOULLI with `REPEATABLE (seed)` picks a row by hashing its block and line
//! number with the seed, so the seeds under which a row is picked spell out its location; SYSTEM picks whole pages.
//! Sampling a protected table is refused to confined roles too.

use super::is_admin;
use crate::errors;
use crate::gucs;
use crate::labels;
use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREV_CHECK_PERMS: pg_sys::ExecutorCheckPerms_hook_type = None;

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to the hook installed before.
    unsafe {
        PREV_CHECK_PERMS = pg_sys::ExecutorCheckPerms_hook;
        pg_sys::ExecutorCheckPerms_hook = Some(check_perms);
    }
}

/// Refuses reading the `ctid` of `relid` if it is protected and the current user is confined.
///
/// # Safety
/// `selected` is the statement's Bitmapset of selected columns for the relation (or NULL).
unsafe fn check(relid: pg_sys::Oid, selected: *const pg_sys::Bitmapset) {
    let bit = pg_sys::SelfItemPointerAttributeNumber - pg_sys::FirstLowInvalidHeapAttributeNumber;
    // SAFETY: as the caller promises; bms_is_member reads the set (NULL is the empty set).
    if unsafe { pg_sys::bms_is_member(bit, selected) } && labels::is_protected_cached(relid) && !is_admin() {
        errors::row_location_hidden(&super::display_name(relid));
    }
}

/// Refuses a TABLESAMPLE of a protected table for confined roles. Called by the planner for each relation it
/// plans (the executor's range table no longer carries the sample clause).
///
/// # Safety
/// `root` and `rel` are the planner's PlannerInfo and the RelOptInfo of a base relation.
pub unsafe fn check_sample(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo) {
    if !gucs::statistics_hidden() {
        return;
    }
    // SAFETY: as the caller promises; simple_rte_array is indexed by the relation's range-table index.
    unsafe {
        let index = (*rel).relid as usize;
        if (*root).simple_rte_array.is_null() || index == 0 {
            return;
        }
        let rte = *(*root).simple_rte_array.add(index);
        if !rte.is_null() && !(*rte).tablesample.is_null() && labels::is_protected_cached((*rte).relid) && !is_admin() {
            errors::table_sample_refused(&super::display_name((*rte).relid));
        }
    }
}

#[cfg(feature = "pg15")]
#[pg_guard]
unsafe extern "C-unwind" fn check_perms(range_table: *mut pg_sys::List, ereport_on_violation: bool) -> bool {
    if gucs::statistics_hidden() {
        // SAFETY: the executor passes its range table of RangeTblEntry nodes.
        unsafe {
            for rte in pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg(range_table).iter_ptr() {
                if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION {
                    check((*rte).relid, (*rte).selectedCols);
                }
            }
        }
    }
    // SAFETY: passes the arguments on unchanged to the previous hook.
    unsafe {
        match PREV_CHECK_PERMS {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(range_table, ereport_on_violation)),
            None => true,
        }
    }
}

#[cfg(not(feature = "pg15"))]
#[pg_guard]
unsafe extern "C-unwind" fn check_perms(
    range_table: *mut pg_sys::List,
    perm_infos: *mut pg_sys::List,
    ereport_on_violation: bool,
) -> bool {
    if gucs::statistics_hidden() {
        // SAFETY: the executor passes its list of RTEPermissionInfo nodes.
        unsafe {
            for info in pgrx::PgList::<pg_sys::RTEPermissionInfo>::from_pg(perm_infos).iter_ptr() {
                check((*info).relid, (*info).selectedCols);
            }
        }
    }
    // SAFETY: passes the arguments on unchanged to the previous hook.
    unsafe {
        match PREV_CHECK_PERMS {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(range_table, perm_infos, ereport_on_violation)),
            None => true,
        }
    }
}
