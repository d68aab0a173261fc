//! An administrator's statement that reaches a relation of a role that is not trusted (A43): the owner's own
//! functions run with the owner's rights (see `function_rights`), but PostgreSQL's functions written directly into
//! the owner's expressions (a column default, a check, a view, a rule, a domain of a column) run with the caller's.
//! Those that would use an administrator's rights against the administrator (run a query given as text, change a
//! setting or take a session lock, or any function PUBLIC may not execute) are refused: the statement is refused
//! before it runs, naming the relation and the function.
//!
//! The verdict on a relation is kept for the statement in progress only.

use super::{functions, ADMIN_ROLE};
use crate::errors;
use crate::privileged::with_pinned_search_path;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A statement: (local transaction id, statement start).
type Statement = (u32, pg_sys::TimestampTz);
/// The statement the verdicts are for, and the verdict per relation.
type Verdicts = (Option<Statement>, HashMap<pg_sys::Oid, Option<String>>);

thread_local! {
    /// Relation -> the first refused function its owner's expressions call (None: nothing to refuse), for the
    /// statement in progress: judged again at each statement (an administrator's statements are few; a relcache
    /// callback slot, of which PostgreSQL has ten for every extension together, is not spent on this).
    static VERDICTS: RefCell<Verdicts> = RefCell::new((None, HashMap::new()));
    /// Set while a relation is being judged (the judging query runs through the executor too).
    static JUDGING: Cell<bool> = const { Cell::new(false) };
}

/// The statement the cached verdicts belong to: (local transaction id, statement start).
fn statement() -> Statement {
    // SAFETY: plain reads of backend state.
    (crate::pg_version::local_transaction_id(), unsafe { pg_sys::GetCurrentStatementStartTimestamp() })
}

/// Whether `role` is a superuser or has the privileges of tenant_guard_admin.
fn trusted(role: pg_sys::Oid) -> bool {
    // SAFETY: role lookups by oid and name (missing_ok).
    unsafe {
        if pg_sys::superuser_arg(role) {
            return true;
        }
        let admin = pg_sys::get_role_oid(ADMIN_ROLE.as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, admin)
    }
}

/// The first of PostgreSQL's functions the owner's expressions on `relid` call that an administrator's rights must
/// not run; None when there is none, or when the owner is trusted.
fn refused_call(relid: pg_sys::Oid) -> Option<String> {
    let now = statement();
    let known = VERDICTS.with_borrow_mut(|(at, v)| {
        if *at != Some(now) {
            *at = Some(now);
            v.clear();
        }
        v.get(&relid).cloned()
    });
    if let Some(known) = known {
        return known;
    }
    let found = JUDGING.replace(true);
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            JUDGING.set(self.0);
        }
    }
    let _reset = Reset(found);
    let calls: Vec<(pg_sys::Oid, String, bool, pg_sys::Oid)> = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT f, f::pg_catalog.regprocedure::pg_catalog.text, \
                            pg_catalog.has_function_privilege('public', f, 'EXECUTE'), c.relowner \
                       FROM pg_catalog.pg_class c \
                      CROSS JOIN LATERAL ( \
                            SELECT o.classid, o.objid FROM tenant._code_objects(c.oid) o \
                            UNION ALL \
                            SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid FROM pg_catalog.pg_rewrite r \
                             WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid \
                               AND r.rulename OPERATOR(pg_catalog.=) '_RETURN' \
                            UNION ALL \
                            SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, a.atttypid FROM pg_catalog.pg_attribute a \
                             WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 \
                               AND NOT a.attisdropped \
                               AND a.atttypid::pg_catalog.int8 OPERATOR(pg_catalog.>=) tenant._first_normal_oid() \
                           ) o \
                      CROSS JOIN LATERAL tenant._callees(o.classid, o.objid) f \
                      WHERE c.oid OPERATOR(pg_catalog.=) $1 \
                        AND f::pg_catalog.int8 OPERATOR(pg_catalog.<) tenant._first_normal_oid()",
                    None,
                    &[relid.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| {
                        Some((
                            r.get::<pg_sys::Oid>(1).ok()??,
                            r.get::<String>(2).ok()??,
                            r.get::<bool>(3).ok()??,
                            r.get::<pg_sys::Oid>(4).ok()??,
                        ))
                    })
                    .collect()
                })
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read a relation's code: {e}")))
        })
    });
    let verdict = calls
        .iter()
        .find(|(f, _, public, owner)| !trusted(*owner) && (!public || functions::acts_on_session(*f)))
        .map(|(_, name, _, _)| name.clone());
    VERDICTS.with_borrow_mut(|(_, v)| v.insert(relid, verdict.clone()));
    verdict
}

/// The relation's owner, if it exists.
fn relation_owner(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup of the relation by oid, released at once.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as _, pg_sys::Datum::from(relid));
        if tuple.is_null() {
            return None;
        }
        let owner = (*(pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}

/// Refuses the relation if an administrator's statement would run a refused function of its owner's expressions.
pub fn check_relation(relid: pg_sys::Oid) {
    // SAFETY: plain read of a backend global (set while an extension script runs).
    if JUDGING.get() || unsafe { pg_sys::creating_extension } || !super::is_admin() {
        return;
    }
    // the relations of trusted owners (every catalog, most tables) cost a syscache lookup
    if relation_owner(relid).is_none_or(trusted) || !functions::installed_here() {
        return;
    }
    if let Some(function) = refused_call(relid) {
        errors::admin_reaches_owner_call(&super::display_name(relid), &function);
    }
}

/// Every relation a plan reads or writes, for an administrator's statement.
///
/// # Safety
/// `pstmt` is a valid planned statement.
pub unsafe fn check_plan(pstmt: *mut pg_sys::PlannedStmt) {
    // SAFETY: as in `check_relation`.
    if JUDGING.get() || unsafe { pg_sys::creating_extension } || !super::is_admin() {
        return;
    }
    // SAFETY: the statement's range table, a list of RangeTblEntry nodes.
    let rtable = unsafe { PgList::<pg_sys::RangeTblEntry>::from_pg((*pstmt).rtable) };
    for rte in rtable.iter_ptr() {
        // SAFETY: each entry is a RangeTblEntry.
        let (kind, relid) = unsafe { ((*rte).rtekind, (*rte).relid) };
        if kind == pg_sys::RTEKind::RTE_RELATION && relid != pg_sys::InvalidOid {
            check_relation(relid);
        }
    }
}
