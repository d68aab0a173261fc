//! Rules against weakening a protected table's protection, for confined roles (see the module above):
//! row-level security switched off, tenant_guard's policies or other policies changed, the tenant column dropped,
//! retyped, renamed or loosened, and TRUNCATE (which ignores row-level security), also through CASCADE.

use super::{guarded, lookup, Guarded};
use crate::errors;
use crate::labels;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

/// ALTER TABLE subcommands that switch the protection off or loosen the tenant column.
///
/// # Safety
/// `stmt` is the statement's (writable) AlterTableStmt; `table` its resolved, locked relation.
pub unsafe fn alter_table(table: &Guarded, stmt: *mut pg_sys::AlterTableStmt) {
    // SAFETY: the subcommands are AlterTableCmd nodes.
    for cmd in unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() } {
        // SAFETY: as above.
        let (subtype, name) = unsafe { ((*cmd).subtype, super::cstr((*cmd).name)) };
        let on_tenant_column = name == table.column;
        let refused = match subtype {
            pg_sys::AlterTableType::AT_DisableRowSecurity => Some("DISABLE ROW LEVEL SECURITY"),
            pg_sys::AlterTableType::AT_NoForceRowSecurity => Some("NO FORCE ROW LEVEL SECURITY"),
            pg_sys::AlterTableType::AT_DropColumn if on_tenant_column => Some("dropping the tenant column"),
            pg_sys::AlterTableType::AT_AlterColumnType if on_tenant_column => {
                Some("changing the type of the tenant column")
            }
            pg_sys::AlterTableType::AT_ColumnDefault if on_tenant_column => {
                Some("changing the default of the tenant column")
            }
            pg_sys::AlterTableType::AT_DropNotNull if on_tenant_column => {
                Some("dropping NOT NULL from the tenant column")
            }
            _ => None,
        };
        if let Some(what) = refused {
            errors::tamper_refused(what, &table.name);
        }
    }
}

/// Renaming the tenant column or a policy of a protected table.
///
/// # Safety
/// `stmt` is the statement's (writable) RenameStmt.
pub unsafe fn rename(stmt: *mut pg_sys::RenameStmt) {
    // SAFETY: reads the statement; pins the relation it names under the lock the rename takes.
    unsafe {
        if (*stmt).renameType == pg_sys::ObjectType::OBJECT_TABLE {
            let relid = lookup::pin((*stmt).relation, pg_sys::AccessExclusiveLock);
            refuse_moving_a_shard(relid, "renaming a shard");
            return;
        }
        let what = match (*stmt).renameType {
            pg_sys::ObjectType::OBJECT_COLUMN => "renaming the tenant column",
            pg_sys::ObjectType::OBJECT_POLICY => "renaming a policy",
            _ => return,
        };
        let relid = lookup::pin((*stmt).relation, pg_sys::AccessExclusiveLock);
        let Some(table) = guarded(relid) else { return };
        let sub = super::cstr((*stmt).subname);
        if (*stmt).renameType == pg_sys::ObjectType::OBJECT_POLICY || sub == table.column {
            errors::tamper_refused(what, &table.name);
        }
    }
}

/// A Citus shard is known by its name (`<table>_<shard id>` in the table's schema): renamed or moved to another
/// schema, a shard of a protected table would leave the guard, and a table created under its old name would take
/// the tenants' rows without row-level security. Refused to every role but administrators.
pub fn refuse_moving_a_shard(relid: pg_sys::Oid, what: &str) {
    if relid != pg_sys::InvalidOid
        && crate::citus::shell_of(relid).is_some()
        && labels::protected_column(relid).is_some()
    {
        errors::tamper_refused(what, &super::display_name(relid));
    }
}

/// Whether a CREATE POLICY re-creates one of tenant_guard's policies that the table already has (as a restore of
/// pg_dump output does, after the label has attached them): then it is skipped with a NOTICE, for every role.
///
/// # Safety
/// `stmt` is the statement's CreatePolicyStmt.
pub unsafe fn managed_policy_exists(stmt: *mut pg_sys::CreatePolicyStmt) -> bool {
    // SAFETY: reads the statement; the lookup takes no lock (skipping changes nothing).
    let (name, relid) = unsafe {
        let name = super::cstr((*stmt).policy_name);
        if !labels::is_managed_policy(&name) {
            return false;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*stmt).table,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        (name, relid)
    };
    if labels::protected_column(relid).is_none() {
        return false;
    }
    let exists = crate::privileged::with_pinned_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1 \
             AND polname OPERATOR(pg_catalog.=) $2)",
            &[relid.into(), name.as_str().into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if exists {
        pgrx::notice!(
            "policy \"{name}\" on {} is managed by tenant_guard; CREATE POLICY skipped",
            super::display_name(relid)
        );
    }
    exists
}

/// COPY FROM into a protected table that row-level security confines for the current role: PostgreSQL refuses it
/// too (and Citus, for a distributed table, on the workers); tenant_guard's error says what to do instead.
///
/// # Safety
/// `stmt` is the statement's CopyStmt.
pub unsafe fn copy_from(stmt: *mut pg_sys::CopyStmt) {
    // SAFETY: reads the statement; the lookup takes no lock (COPY takes its own before it reads a row).
    let relid = unsafe {
        if !(*stmt).is_from || (*stmt).relation.is_null() {
            return;
        }
        pg_sys::RangeVarGetRelidExtended(
            (*stmt).relation,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    if relid == pg_sys::InvalidOid || labels::protected_column(relid).is_none() {
        return;
    }
    // SAFETY: a plain catalog check of the current role against an existing relation.
    let confined = unsafe { pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true) }
        == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32;
    if confined {
        errors::copy_from_refused(&super::display_name(relid));
    }
}

/// DROP TABLE of a shard of a protected Citus table, on a worker: a table recreated under the shard's name would
/// take the tenants' new rows without row-level security. Dropping a protected distributed table (which drops its
/// shards on every worker) is for administrators.
///
/// # Safety
/// `stmt` is the statement's DropStmt.
pub unsafe fn drop_shard(stmt: *mut pg_sys::DropStmt) {
    // SAFETY: DROP TABLE's objects are name lists `[schema.]table`; the lookup takes no lock (DROP takes its own).
    unsafe {
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_TABLE || !crate::citus::installed() {
            return;
        }
        for names in pgrx::PgList::<pg_sys::List>::from_pg((*stmt).objects).iter_ptr() {
            let rv = pg_sys::makeRangeVarFromNameList(names);
            let relid = pg_sys::RangeVarGetRelidExtended(
                rv,
                pg_sys::NoLock as _,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            );
            if relid != pg_sys::InvalidOid
                && crate::citus::shell_of(relid).is_some()
                && labels::protected_column(relid).is_some()
                && !crate::citus::is_new_shard(relid)
            {
                errors::tamper_refused("DROP TABLE", &super::display_name(relid));
            }
        }
    }
}

/// Whether a DROP statement drops tables only, none of them protected (nor a shard of a protected table). Citus's
/// drop trigger then calls its shard-dropping functions for the tables' shards, which are not protected either
/// (`shard_dropped` still refuses any protected one).
///
/// # Safety
/// `stmt` is the statement's DropStmt.
pub unsafe fn drops_only_unprotected_tables(stmt: *mut pg_sys::DropStmt) -> bool {
    // SAFETY: DROP TABLE's objects are name lists `[schema.]table`; the lookup takes no lock (DROP takes its own).
    unsafe {
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_TABLE {
            return false;
        }
        pgrx::PgList::<pg_sys::List>::from_pg((*stmt).objects).iter_ptr().all(|names| {
            let rv = pg_sys::makeRangeVarFromNameList(names);
            let relid = pg_sys::RangeVarGetRelidExtended(
                rv,
                pg_sys::NoLock as _,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            );
            relid == pg_sys::InvalidOid
                || (labels::protected_column(relid).is_none()
                    && crate::citus::shell_of(relid).is_none_or(|shell| labels::protected_column(shell).is_none()))
        })
    }
}

/// A shard of a protected Citus table about to be dropped, however (DROP TABLE, Citus's own functions that drop
/// shards: undistributing, altering or dropping the table, moving shards): for administrators only. Citus copies a
/// table's rows as its caller, whom the policies confine, before it drops the old shards: a confined role would
/// lose every other tenant's rows. A shard built in this transaction may go.
pub fn shard_dropped(relid: pg_sys::Oid) {
    if !crate::citus::installed() || super::is_admin() || crate::citus::is_new_shard(relid) {
        return;
    }
    let shard = labels::table_label(relid).is_some() && crate::citus::shell_of(relid).is_some()
        || crate::citus::shell_of(relid).is_some_and(|shell| labels::protected_column(shell).is_some());
    if shard && labels::protected_column(relid).is_some() {
        errors::tamper_refused("dropping a shard", &super::display_name(relid));
    }
}

/// A VACUUM or ANALYZE whose report would reach the client: VERBOSE, or any run while `client_min_messages` is
/// at a DEBUG level (PostgreSQL reports the same counts at DEBUG2 without VERBOSE). Over a protected table or a
/// Citus shard of one, the report counts the live and dead rows of every tenant (of the few hashed to a shard).
/// Without a list of tables, the statement reaches every table the role owns: refused when it would report at all.
///
/// # Safety
/// `stmt` is the statement's VacuumStmt.
pub unsafe fn vacuum_reports(stmt: *mut pg_sys::VacuumStmt) {
    // SAFETY: plain read of a backend global (an elevel: DEBUG5..DEBUG1 are below LOG).
    let debug = unsafe { pg_sys::client_min_messages } < pg_sys::LOG as i32;
    // SAFETY: a VacuumStmt's options are DefElem nodes and its rels VacuumRelation nodes.
    unsafe {
        let verbose = pgrx::PgList::<pg_sys::DefElem>::from_pg((*stmt).options)
            .iter_ptr()
            .any(|d| super::cstr((*d).defname) == "verbose");
        if !verbose && !debug {
            return;
        }
        let what =
            if verbose { "VACUUM or ANALYZE VERBOSE" } else { "VACUUM or ANALYZE at a DEBUG client_min_messages" };
        let rels = pgrx::PgList::<pg_sys::VacuumRelation>::from_pg((*stmt).rels);
        if rels.is_empty() {
            errors::vacuum_report_refused_unnamed(what);
        }
        for rel in rels.iter_ptr() {
            if (*rel).relation.is_null() {
                continue;
            }
            let relid = pg_sys::RangeVarGetRelidExtended(
                (*rel).relation,
                pg_sys::NoLock as _,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            );
            if relid == pg_sys::InvalidOid {
                continue;
            }
            let protected = labels::protected_column(relid).is_some()
                || crate::citus::shell_of(relid).is_some_and(|shell| labels::protected_column(shell).is_some());
            if protected {
                errors::tamper_refused(what, &super::display_name(relid));
            }
        }
    }
}

/// Whether a COPY reads or writes Citus intermediate results (`COPY "<result id>" ... WITH (format result)`).
///
/// # Safety
/// `stmt` is the statement's CopyStmt.
pub unsafe fn copies_intermediate_results(stmt: *mut pg_sys::CopyStmt) -> bool {
    // SAFETY: a CopyStmt's options are DefElem nodes; defGetString reads a DefElem's value of any kind.
    unsafe {
        pgrx::PgList::<pg_sys::DefElem>::from_pg((*stmt).options).iter_ptr().any(|d| {
            super::cstr((*d).defname) == "format"
                && !(*d).arg.is_null()
                && std::ffi::CStr::from_ptr(pg_sys::defGetString(d)).to_bytes().eq_ignore_ascii_case(b"result")
        })
    }
}

pub enum CitusPolicy {
    /// Nothing to change.
    Other,
    /// One of tenant_guard's policies on a Citus table or shard: `tenant_isolation` is made restrictive; on a
    /// protected one, the policy is let through for the table owner that Citus runs it as, and checked once created
    /// (see [`verify_managed_policy`]).
    Managed { relid: pg_sys::Oid, protected: bool },
}

/// CREATE POLICY on a Citus table or shard. Citus (13.2) copies a policy to the shards and to the workers' copies of
/// the table without `AS RESTRICTIVE`: `tenant_isolation` would arrive permissive, and another permissive policy
/// could then widen it. So `tenant_isolation` on a Citus table or shard is always created restrictive, and a
/// restrictive policy of an administrator's on a protected Citus table, which the shards would get as a permissive
/// one, is refused.
///
/// # Safety
/// `stmt` is the statement's CreatePolicyStmt.
pub unsafe fn citus_policy(stmt: *mut pg_sys::CreatePolicyStmt) -> CitusPolicy {
    // SAFETY: reads the statement; the lookup takes no lock (the statement takes its own before it changes anything).
    let (name, permissive, relid) = unsafe {
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*stmt).table,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        (super::cstr((*stmt).policy_name), (*stmt).permissive, relid)
    };
    if relid == pg_sys::InvalidOid {
        return CitusPolicy::Other;
    }
    let shell = crate::citus::shell_of(relid);
    let citus_table = shell.is_some() || crate::citus::is_citus_table(relid);
    if !citus_table {
        return CitusPolicy::Other;
    }
    if labels::is_managed_policy(&name) {
        return CitusPolicy::Managed { relid, protected: labels::protected_column(relid).is_some() };
    }
    if !permissive && shell.is_none() && labels::protected_column(relid).is_some() {
        errors::citus_restrictive_policy_refused(&super::display_name(relid));
    }
    CitusPolicy::Other
}

/// The relation a CREATE POLICY tenant_isolation named (after it ran), if any.
///
/// # Safety
/// `stmt` is the statement's CreatePolicyStmt.
pub unsafe fn isolation_policy_target(stmt: *mut pg_sys::CreatePolicyStmt) -> Option<pg_sys::Oid> {
    // SAFETY: reads the statement; the relation is locked by the statement that has just run.
    unsafe {
        if super::cstr((*stmt).policy_name) != labels::ISOLATION_POLICY {
            return None;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*stmt).table,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}

/// After Citus created one of tenant_guard's policies on a protected Citus table or shard (a table owner's session
/// on a worker, creating shards or applying the coordinator's policies): it must be exactly tenant_guard's policy,
/// or the statement fails and nothing of it stays.
pub fn verify_managed_policy(relid: pg_sys::Oid, name: &str) {
    let column = labels::protected_column(relid).unwrap_or_default();
    let intact = crate::privileged::with_pinned_search_path(|| {
        Spi::get_one_with_args::<bool>(
            include_str!("../../sql/queries/managed_policy_intact.sql"),
            &[relid.into(), name.into(), column.as_str().into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if !intact {
        errors::tamper_refused("CREATE POLICY", &super::display_name(relid));
    }
}

/// Policies on a protected table are an administrator's: a restrictive policy is evaluated beside tenant_guard's
/// own, in cost order, so a cheap expression in it could see (and by its errors reveal) other tenants' rows.
///
/// # Safety
/// `stmt` is the statement's (writable) CreatePolicyStmt.
pub unsafe fn create_policy(stmt: *mut pg_sys::CreatePolicyStmt) {
    // SAFETY: pins the table under the lock CREATE POLICY takes.
    let relid = unsafe { lookup::pin((*stmt).table, pg_sys::AccessExclusiveLock) };
    if let Some(table) = guarded(relid) {
        errors::tamper_refused("CREATE POLICY", &table.name);
    }
}

/// # Safety
/// `stmt` is the statement's (writable) AlterPolicyStmt.
pub unsafe fn alter_policy(stmt: *mut pg_sys::AlterPolicyStmt) {
    // SAFETY: pins the table under the lock ALTER POLICY takes.
    let relid = unsafe { lookup::pin((*stmt).table, pg_sys::AccessExclusiveLock) };
    if let Some(table) = guarded(relid) {
        errors::tamper_refused("ALTER POLICY", &table.name);
    }
}

/// # Safety
/// `stmt` is the statement's (writable) DropStmt.
pub unsafe fn drop_policy(stmt: *mut pg_sys::DropStmt) {
    // SAFETY: DROP POLICY's objects are name lists `[schema.]table.policy`; each is pinned and qualified in place.
    unsafe {
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_POLICY {
            return;
        }
        let objects = (*stmt).objects;
        if objects.is_null() {
            return;
        }
        let cells = std::slice::from_raw_parts_mut((*objects).elements, (*objects).length as usize);
        for cell in cells {
            let names = cell.ptr_value as *mut pg_sys::List;
            let (relid, qualified) = lookup::pin_names(names, 1, pg_sys::AccessExclusiveLock);
            cell.ptr_value = qualified as *mut std::ffi::c_void;
            if let Some(table) = guarded(relid) {
                errors::tamper_refused("DROP POLICY", &table.name);
            }
        }
    }
}

/// TRUNCATE ignores row-level security: refused for each protected table it would empty, named directly, as a
/// partition of a named table, or reached through CASCADE. Called by the object-access hook, which PostgreSQL runs
/// for every relation TRUNCATE is about to empty, after locking it and checking the privilege.
pub fn truncated(relid: pg_sys::Oid) {
    if let Some(table) = guarded(relid) {
        if !super::is_admin() {
            errors::tamper_refused("TRUNCATE", &table.name);
        }
    }
}
