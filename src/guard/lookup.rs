//! Resolving the relations a statement names, so that the guard decides on the object the statement will alter.
//!
//! A name resolved without a lock can point at another table by the time the statement resolves it again: a
//! concurrent session renames a decoy away and the protected table into its place while the statement waits for its
//! lock. So the guard resolves each name the way the statement will, **taking the statement's own lock** (which keeps
//! the relation from being renamed, moved or dropped until the transaction ends), and then **qualifies the name in
//! the statement with the relation's schema**, so that the statement finds that very relation: no other relation can
//! take a locked relation's schema-qualified name.
//!
//! Before it locks, it checks that the caller has the right the statement needs on the relation, as PostgreSQL's own
//! lookups do, so that nobody can queue a lock on a table they may not touch.

use pgrx::pg_sys;
use std::ffi::c_void;

/// Resolves `rv` holding `lockmode` on the relation (InvalidOid when it does not exist: the statement reports that
/// itself), and qualifies `rv` with the relation's schema. The caller must own the parse tree (a writable copy).
///
/// # Safety
/// `rv` is a RangeVar of a writable parse tree, or NULL.
pub unsafe fn pin(rv: *mut pg_sys::RangeVar, lockmode: u32) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: rv is a valid RangeVar; the callback checks ownership before the lock is taken.
    let relid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            lockmode as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            Some(check_owner),
            std::ptr::null_mut(),
        )
    };
    if relid != pg_sys::InvalidOid {
        // SAFETY: the relation exists and is locked; get_namespace_name returns a palloc'd copy.
        unsafe { (*rv).schemaname = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)) };
    }
    relid
}

/// Resolves `rv` as it stands (InvalidOid when it does not exist or is NULL), holding `lockmode` to the end of the
/// transaction (`NoLock`: none), for a check that does not change the statement: with the statement's own lock the
/// relation cannot be renamed away from the name before the statement resolves it again.
///
/// # Safety
/// `rv` is a RangeVar of a parse tree, or NULL.
pub unsafe fn resolve(rv: *mut pg_sys::RangeVar, lockmode: pg_sys::LOCKMODE) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: rv is a valid RangeVar; missing_ok.
    unsafe {
        pg_sys::RangeVarGetRelidExtended(rv, lockmode, pg_sys::RVROption::RVR_MISSING_OK, None, std::ptr::null_mut())
    }
}

/// Resolves a qualified-name list whose leading parts name a relation (DROP POLICY's `[schema.]table.policy`, with
/// `keep_last` = 1), holding `lockmode`. Returns the relation and the list to put in the statement instead:
/// `schema.table.<kept parts>`.
///
/// # Safety
/// `names` is a List of String nodes of a writable parse tree.
pub unsafe fn pin_names(names: *mut pg_sys::List, keep_last: usize, lockmode: u32) -> (pg_sys::Oid, *mut pg_sys::List) {
    // SAFETY: a List of String nodes; the table part is everything but the last `keep_last` parts.
    unsafe {
        let len = (*names).length as usize;
        if len <= keep_last {
            return (pg_sys::InvalidOid, names);
        }
        let table_names = pg_sys::list_truncate(pg_sys::list_copy(names), (len - keep_last) as i32);
        let rv = pg_sys::makeRangeVarFromNameList(table_names);
        let relid = pin(rv, lockmode);
        if relid == pg_sys::InvalidOid {
            return (relid, names);
        }
        let kept = std::slice::from_raw_parts((*names).elements, len)[len - keep_last..].to_vec();
        let mut rebuilt = pg_sys::list_make1_impl(
            pg_sys::NodeTag::T_List,
            pg_sys::ListCell { ptr_value: pg_sys::makeString((*rv).schemaname) as *mut c_void },
        );
        rebuilt = pg_sys::lappend(rebuilt, pg_sys::makeString((*rv).relname) as *mut c_void);
        for cell in kept {
            rebuilt = pg_sys::lappend(rebuilt, cell.ptr_value);
        }
        (relid, rebuilt)
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_owner(
    relation: *const pg_sys::RangeVar,
    relid: pg_sys::Oid,
    _old_relid: pg_sys::Oid,
    _arg: *mut c_void,
) {
    if relid == pg_sys::InvalidOid {
        return;
    }
    // SAFETY: catalog lookups on an existing relation; aclcheck_error raises the error the statement itself would
    // raise.
    unsafe {
        if !owns(relid, pg_sys::GetUserId()) {
            let kind = pg_sys::get_rel_relkind(relid);
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NOT_OWNER,
                pg_sys::get_relkind_objtype(kind),
                (*relation).relname,
            );
        }
    }
}

/// Whether `user` owns (or has the privileges of the owner of) relation `relid`.
#[cfg(feature = "pg15")]
unsafe fn owns(relid: pg_sys::Oid, user: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup of an existing relation.
    unsafe { pg_sys::pg_class_ownercheck(relid, user) }
}

#[cfg(not(feature = "pg15"))]
unsafe fn owns(relid: pg_sys::Oid, user: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup of an existing relation (object_ownercheck replaced pg_class_ownercheck in 16).
    unsafe { pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, user) }
}
