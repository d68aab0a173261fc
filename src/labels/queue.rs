//! Work decided during a statement and done once it has finished: the protections the label hook decided, the
//! tables a statement created or altered (protected like their parent or schema), and the tables created in a
//! `tenant_scoped` schema without the tenant column, which must be labelled before COMMIT.

use super::policies::{apply_protection, remove_protection};
use super::{is_table, label_of, label_table, parents, protect_partitions, protected_label, table, table_label};
use crate::errors;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use tenant_guard_core::label::Label;

thread_local! {
    /// Tables created in a tenant_scoped schema without the tenant column, to be labelled before COMMIT.
    static PENDING: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Protections decided by the label hook, applied once the labelling statement is done (see flush_actions).
    static ACTIONS: RefCell<Vec<Action>> = const { RefCell::new(Vec::new()) };
    /// Relations created by the running statement, to protect like their schema or parent once it is done.
    static CREATED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Whether flush_actions is running (see there).
    static FLUSHING: Cell<bool> = const { Cell::new(false) };
}

/// Called for each relation PostgreSQL creates (OAT_POST_CREATE), by whatever statement: CREATE TABLE, CREATE TABLE
/// AS and SELECT INTO (inside EXPLAIN ANALYZE too), a schema element of CREATE SCHEMA, a partition.
pub fn relation_created(relid: pg_sys::Oid) {
    CREATED.with_borrow_mut(|c| c.push(relid));
}

/// Protects the tables the statement that just finished created, like their schema or parent.
pub fn label_created_relations() {
    let created = CREATED.take();
    if created.is_empty() {
        return;
    }
    // SAFETY: makes what the statement created visible to the lookups below.
    unsafe { pg_sys::CommandCounterIncrement() };
    for relid in created {
        protect_like_parent_or_schema(relid);
    }
    flush_actions();
}

pub(super) enum Action {
    Protect { relid: pg_sys::Oid, column: String },
    Unprotect { relid: pg_sys::Oid, column: String },
}

/// Applies the protections the label hook decided.
///
/// The hook itself cannot run ALTER TABLE: `SECURITY LABEL ON TABLE` keeps the table open while it calls the hook,
/// and ALTER TABLE refuses a table in use. So the hook validates the label (an invalid one is refused before it is
/// stored) and queues the work; the tamper-guard hook calls this when the SECURITY LABEL statement has finished, and
/// tenant_guard's own callers of SetSecurityLabel call it right after. Everything stays in the same transaction.
/// The work it does (ALTER TABLE, CREATE POLICY) passes the utility hook, which calls it again: that inner call
/// leaves the queue to the outer loop, so labelling a schema of many tables does not nest one call per table.
pub fn flush_actions() {
    if FLUSHING.get() {
        return;
    }
    FLUSHING.set(true);
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            FLUSHING.set(false);
        }
    }
    let _done = Done;
    while let Some(action) = ACTIONS.with_borrow_mut(|a| if a.is_empty() { None } else { Some(a.remove(0)) }) {
        // Act only if the stored label still says so: a label whose statement failed (say, inside a rolled-back
        // savepoint) must not leave its protection queued for the next flush.
        // SAFETY: makes the label just written by this command visible to the lookups below.
        unsafe { pg_sys::CommandCounterIncrement() };
        match action {
            Action::Protect { relid, column } => {
                let wanted = Some(Label::TenantScoped { column: column.clone() });
                if let (Some(t), true) = (table(relid), table_label(relid) == wanted) {
                    apply_protection(&t, &column);
                }
            }
            Action::Unprotect { relid, column } => {
                let old = Some(Label::TenantScoped { column: column.clone() });
                if let (Some(t), true) = (table(relid), table_label(relid) != old) {
                    remove_protection(&t, &column);
                }
            }
        }
    }
}

/// Queues what the label hook decided (see [`flush_actions`]).
pub(super) fn queue(action: Action) {
    ACTIONS.with_borrow_mut(|a| a.push(action));
}

/// After ALTER TABLE (ATTACH PARTITION, INHERIT, or anything else): protects the tables it reached like their
/// parent or schema, and the partitions attached to a protected table.
pub fn tables_altered(relids: &[pg_sys::Oid]) {
    // SAFETY: makes what the statement did visible to the lookups below.
    unsafe { pg_sys::CommandCounterIncrement() };
    for relid in relids {
        protect_like_parent_or_schema(*relid);
    }
    flush_actions();
}

/// Protects a table like its parent (a partition or inheritance child of a protected table) or its schema (a
/// `tenant_scoped` schema), and a protected table's partitions and children; a table created in a `tenant_scoped`
/// schema without the tenant column must be labelled before COMMIT.
fn protect_like_parent_or_schema(relid: pg_sys::Oid) {
    let Some(t) = table(relid) else { return };
    if !is_table(t.relkind) {
        return;
    }
    if let Some(label) = table_label(relid) {
        // ALTER TABLE ... ATTACH PARTITION reports the parent: protect partitions attached to it.
        if matches!(label, Label::TenantScoped { .. }) {
            protect_partitions(relid, &label);
        }
        return;
    }
    // A partition or inheritance child of a protected table is protected like its parent.
    if let Some(label) = parents(relid).into_iter().find_map(protected_label) {
        label_table(relid, &label);
        return;
    }
    // SAFETY: a syscache lookup on an existing relation.
    let nspid = unsafe { pg_sys::get_rel_namespace(relid) };
    if let Some(label @ Label::TenantScoped { .. }) = label_of(pg_sys::NamespaceRelationId, nspid) {
        let Label::TenantScoped { column } = &label else { unreachable!() };
        let ccol = CString::new(column.as_str()).expect("no NUL");
        // SAFETY: syscache lookup on an existing relation.
        let has_column = unsafe { pg_sys::get_attnum(relid, ccol.as_ptr()) } != pg_sys::InvalidAttrNumber as i16;
        if has_column {
            label_table(relid, &label);
        } else {
            PENDING.with_borrow_mut(|p| p.push(relid));
        }
    }
}

/// At PRE_COMMIT: every table created in a tenant_scoped schema must by now be labelled (tenant_scoped or global).
pub fn check_pending_at_commit() {
    let pending = PENDING.with_borrow_mut(std::mem::take);
    for relid in pending {
        let Some(t) = table(relid) else { continue }; // dropped again
        if table_label(relid).is_none() {
            // SAFETY: syscache lookup on an existing relation.
            let nspid = unsafe { pg_sys::get_rel_namespace(relid) };
            if let Some(Label::TenantScoped { column }) = label_of(pg_sys::NamespaceRelationId, nspid) {
                errors::unscoped_table_in_scoped_schema(&t.qualified, &column);
            }
        }
    }
}

pub fn forget_pending() {
    PENDING.with_borrow_mut(Vec::clear);
}

/// Registers the PRE_COMMIT check of tables created in tenant_scoped schemas.
pub fn init_xact() {
    // SAFETY: a backend-lifetime callback with a static function and no argument.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => check_pending_at_commit(),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => {
            forget_pending();
            ACTIONS.with_borrow_mut(Vec::clear);
            CREATED.with_borrow_mut(Vec::clear);
            super::policies::forget_prepared();
        }
        _ => {}
    }
}
