//! Whose rights a function runs with, when a function PostgreSQL did not ship is called (PostgreSQL's `fmgr` hooks,
//! the mechanism of SECURITY DEFINER).
//!
//! - **Inside foreign-key checks and actions.** PostgreSQL runs them as the owner of the tables involved with
//!   `SECURITY_NOFORCE_RLS`: row-level security is off for that owner's tables, FORCE or not, so that the key is
//!   checked against every row. Code that runs inside (a trigger on a table an `ON UPDATE CASCADE` writes, a default
//!   an `ON DELETE SET DEFAULT` computes, a cast or domain check in the cascaded statement) would inherit that and
//!   see every tenant's rows of every table that owner owns. For the duration of each call of such a function,
//!   tenant_guard clears the flag: only PostgreSQL's own key-checking queries keep it.
//! - **Reached by an administrator.** Superusers and members of `tenant_guard_admin` are trusted with every tenant's
//!   rows and with the issuer and key API; a table owner is not. A function owned by a role that is neither (a
//!   trigger function, a domain check, a default, an operator the owner wrote), when an administrator's statement
//!   reaches it, runs with its owner's rights instead, as if it were SECURITY DEFINER: an administrator seeding a
//!   table, or running a migration the owner may not run, does not lend the owner's code the rights to trust an
//!   issuer, read the key tables or alter a role. It runs as a restricted operation (no `SET ROLE`, no temporary
//!   objects), and every setting it changes, session-level ones included, is undone when it returns: nothing it does
//!   outlives the call in the administrator's session.
//!
//! PostgreSQL asks whether a function needs the hook when it looks the function up (functions it ships never ask),
//! and keeps the answer as long as it keeps the lookup: a type's support functions for the life of the backend, a
//! domain's checks planned once. So every function whose owner is not trusted is wrapped, always, and the hook
//! decides at each call; a wrapped SQL function is never inlined (have an administrator own a hot SQL function to
//! get it inlined again). Functions with trusted owners are wrapped only when the lookup happens inside a
//! foreign-key action. PostgreSQL's own functions that run a query given as text are refused inside foreign-key
//! actions (see `functions`): they are never wrapped.

use super::ADMIN_ROLE;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

static mut PREV_NEEDS: pg_sys::needs_fmgr_hook_type = None;
static mut PREV_HOOK: pg_sys::fmgr_hook_type = None;

thread_local! {
    /// Function -> (owner, whether the owner is trusted); emptied whenever pg_proc or pg_authid changes.
    static OWNERS: RefCell<HashMap<pg_sys::Oid, (pg_sys::Oid, bool)>> = RefCell::new(HashMap::new());
    /// What each wrapped call changed, to restore when it ends: (user, security context) before, or None; and the
    /// GUC nest level pushed for a call run as its owner on an administrator's behalf.
    static SAVED: RefCell<Vec<Option<Saved>>> = const { RefCell::new(Vec::new()) };
    /// The executor runs the owner's code started on an administrator's behalf, in this transaction.
    static OWNER_STARTED: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to the hooks installed before, and
    // register backend-lifetime syscache callbacks with a static function and no argument.
    unsafe {
        PREV_NEEDS = pg_sys::needs_fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs);
        PREV_HOOK = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(hook);
        for cache in [pg_sys::SysCacheIdentifier::PROCOID, pg_sys::SysCacheIdentifier::AUTHOID] {
            pg_sys::CacheRegisterSyscacheCallback(cache as _, Some(forget_owners), pg_sys::Datum::from(0));
        }
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    // (a procedure that COMMITs inside a wrapped call is still in that call: a commit keeps the stack)
    if matches!(event, XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT) {
        // calls an ERROR cut short leave nothing to restore: abort restored the user itself
        SAVED.with_borrow_mut(Vec::clear);
    }
    if matches!(event, XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT) {
        OWNER_STARTED.with_borrow_mut(HashSet::clear);
    }
}

/// An executor run started: remembered when the owner's code started it on an administrator's behalf.
pub fn executor_started(query_desc: usize) {
    if owner_code_for_administrator() {
        OWNER_STARTED.with_borrow_mut(|s| s.insert(query_desc));
    }
}

/// An executor run continued (a cursor fetched, moved): the owner's code run on an administrator's behalf may
/// fetch only from what it started itself, not from the administrator's cursors (a PL/pgSQL loop's portals have
/// guessable names), which would hand it rows read with the administrator's rights.
pub fn executor_running(query_desc: usize) {
    if owner_code_for_administrator() && !OWNER_STARTED.with_borrow(|s| s.contains(&query_desc)) {
        crate::errors::session_read_in_owner_code("FETCH from a cursor of the administrator's");
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_owners(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    OWNERS.with_borrow_mut(HashMap::clear);
}

/// The function's owner, and whether that owner is a superuser or has the privileges of tenant_guard_admin.
fn owner(function: pg_sys::Oid) -> Option<(pg_sys::Oid, bool)> {
    if let Some(known) = OWNERS.with_borrow(|o| o.get(&function).copied()) {
        return Some(known);
    }
    // SAFETY: a syscache lookup of the function by oid, released at once; role lookups by oid and name.
    let found = unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as _, pg_sys::Datum::from(function));
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_proc;
        let owner = (*form).proowner;
        pg_sys::ReleaseSysCache(tuple);
        let admin = pg_sys::get_role_oid(ADMIN_ROLE.as_ptr(), true);
        let trusted =
            pg_sys::superuser_arg(owner) || (admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(owner, admin));
        (owner, trusted)
    };
    OWNERS.with_borrow_mut(|o| o.insert(function, found));
    Some(found)
}

/// Whether `user` is a superuser or has the privileges of tenant_guard_admin.
fn is_admin_role(user: pg_sys::Oid) -> bool {
    // SAFETY: role lookups by oid and name (missing_ok).
    unsafe {
        if pg_sys::superuser_arg(user) {
            return true;
        }
        let admin = pg_sys::get_role_oid(ADMIN_ROLE.as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(user, admin)
    }
}

/// What a wrapped call switched: the user and security context before it, and the GUC nest level it pushed (for a
/// call run as its owner on an administrator's behalf).
#[derive(Clone, Copy)]
struct Saved {
    user: pg_sys::Oid,
    context: i32,
    nest: Option<i32>,
}

/// What a call of `function` must run as, if not as now: (user, security context, whether it runs as its owner on
/// an administrator's behalf).
fn rights_for(function: pg_sys::Oid) -> Option<(pg_sys::Oid, i32, bool)> {
    if (function.to_u32() as i64) < pg_sys::FirstNormalObjectId as i64 {
        return None; // PostgreSQL's own
    }
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads the backend's current user and security context.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let mut changed = false;
    let mut as_owner = false;
    let noforce = pg_sys::SECURITY_NOFORCE_RLS as i32;
    if context & noforce != 0 {
        context &= !noforce;
        changed = true;
    }
    // an administrator's statement, also through a SECURITY DEFINER function of the owner (which already runs as
    // the owner: its settings must not outlive it either)
    // SAFETY: reads the session's outer user (what SET ROLE set, not what SECURITY DEFINER switched to).
    let admin_behind = is_admin_role(user) || is_admin_role(unsafe { pg_sys::GetOuterUserId() });
    if admin_behind {
        if let Some((owner, false)) = owner(function) {
            if is_admin_role(user) {
                user = owner;
                context |= pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
            }
            // a restricted operation, as PostgreSQL runs an owner's index expressions in VACUUM: no SET ROLE, no
            // temporary objects (which would shadow the administrator's tables for the rest of the session)
            context |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
            changed = true;
            as_owner = true;
        }
    }
    changed.then_some((user, context, as_owner))
}

/// Whether a call of `function` is wrapped: every function PostgreSQL did not ship whose owner is neither a superuser
/// nor an administrator, whoever calls it and wherever. PostgreSQL keeps what it looks up for a long time (a type's
/// functions for the life of the backend, a domain's checks planned once, inlined into the plan), so the decision
/// cannot depend on who calls first or in which context: `rights_for` decides at each call instead. Such functions
/// are therefore never inlined by the planner.
fn wrapped(function: pg_sys::Oid) -> bool {
    (function.to_u32() as i64) >= pg_sys::FirstNormalObjectId as i64 && owner(function).is_some_and(|(_, t)| !t)
}

/// Whether the owner's code is running on an administrator's behalf (a wrapped call in progress that switched to
/// its owner): it may change no setting (`SET`, `RESET`, `set_config`), which would outlive it in the
/// administrator's session or transaction when it has a SET clause of its own (PostgreSQL then keeps a plain `SET`
/// made inside past the function's end); without one, the nest level it runs in discards whatever it set.
///
/// Also when PostgreSQL itself switched from an administrator to a role that is not trusted, in the
/// administrator's session: a foreign-key action runs as the referencing table's owner (its rules too), a
/// materialized view is refreshed and an index built as the relation's owner.
pub fn owner_code_for_administrator() -> bool {
    if SAVED.with_borrow(|s| s.iter().any(|saved| saved.is_some_and(|s| s.nest.is_some()))) {
        return true;
    }
    // SAFETY: plain reads of the backend's user ids and security context, and role lookups.
    unsafe {
        (pg_sys::InLocalUserIdChange() || pg_sys::InSecurityRestrictedOperation())
            && !role_trusted(pg_sys::GetUserId())
            && role_trusted(pg_sys::GetOuterUserId())
    }
}

/// Whether `role` is a superuser or has the privileges of tenant_guard_admin.
pub fn role_trusted(role: pg_sys::Oid) -> bool {
    // SAFETY: role lookups by oid and name (missing_ok).
    unsafe {
        if pg_sys::superuser_arg(role) {
            return true;
        }
        let admin = pg_sys::get_role_oid(ADMIN_ROLE.as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, admin)
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn needs(function: pg_sys::Oid) -> bool {
    // SAFETY: calls the previous hook with the same argument.
    let previous = unsafe { PREV_NEEDS.is_some_and(|prev| pg_sys::ffi::pg_guard_ffi_boundary(|| prev(function))) };
    previous || wrapped(function) || rights_for(function).is_some()
}

#[pg_guard]
unsafe extern "C-unwind" fn hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    private: *mut pg_sys::Datum,
) {
    match event {
        pg_sys::FmgrHookEventType::FHET_START => {
            // SAFETY: the function manager passes the FmgrInfo of the function being called.
            let function = unsafe { (*flinfo).fn_oid };
            let change = rights_for(function);
            let saved = change.map(|(user, context, as_owner)| {
                let (mut before_user, mut before_context) = (pg_sys::InvalidOid, 0);
                // SAFETY: saves the current user and context, then switches as SECURITY DEFINER does; for an owner's
                // code on an administrator's behalf, a new GUC nest level whose changes are all discarded when the
                // call ends (see FHET_END): no setting the owner's code makes, even a session-level one
                // (set_config(..., false), a search_path naming the owner's schema), outlives the call.
                unsafe {
                    pg_sys::GetUserIdAndSecContext(&mut before_user, &mut before_context);
                    let nest = as_owner.then(|| pg_sys::NewGUCNestLevel());
                    pg_sys::SetUserIdAndSecContext(user, context);
                    Saved { user: before_user, context: before_context, nest }
                }
            });
            SAVED.with_borrow_mut(|s| s.push(saved));
        }
        pg_sys::FmgrHookEventType::FHET_END | pg_sys::FmgrHookEventType::FHET_ABORT => {
            if let Some(Some(saved)) = SAVED.with_borrow_mut(Vec::pop) {
                // SAFETY: restores exactly what the matching FHET_START saved. The nest level is popped, discarding
                // its changes, when the call ends normally; after an error, (sub)transaction abort pops it.
                unsafe {
                    if let (Some(nest), pg_sys::FmgrHookEventType::FHET_END) = (saved.nest, event) {
                        pg_sys::AtEOXact_GUC(false, nest);
                    }
                    pg_sys::SetUserIdAndSecContext(saved.user, saved.context);
                }
            }
        }
        _ => {}
    }
    // SAFETY: passes the arguments on unchanged to the previous hook.
    unsafe {
        if let Some(prev) = PREV_HOOK {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(event, flinfo, private));
        }
    }
}
