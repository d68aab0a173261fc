//! Rules against reaching a protected table through another relation, for confined roles.
//!
//! A query on a partitioned or inheritance parent reads its children's rows under the **parent's** row-level
//! security, not theirs. So a protected table must never become a child of a parent that is not protected the same
//! way (every tenant's rows would be readable through that parent), and a table that becomes a child of a protected
//! table is protected with it (the label hook does that) and must not bring untrusted code with it (its triggers
//! would then see every tenant's rows routed into it). Attaching a partition to a protected table with a DEFAULT
//! partition validates the default partition's rows of every tenant, and is refused too.
//!
//! Logical replication reaches a table without any row-level security: publishing a protected table
//! (`CREATE PUBLICATION ... FOR TABLE`, `ALTER PUBLICATION ... ADD/SET TABLE`) would stream every tenant's rows to a
//! subscriber, and is refused. (Publishing whole schemas or all tables is for superusers only in PostgreSQL; the
//! audit reports every publication that includes a protected table, however it got there.)

use super::{lookup, owner_code};
use crate::errors;
use crate::labels;
use crate::labels::grammar::Label;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

/// ATTACH PARTITION and INHERIT, on the relation `relid` the statement names (already pinned).
///
/// # Safety
/// `stmt` is the statement's (writable) AlterTableStmt.
pub unsafe fn alter_table(relid: pg_sys::Oid, stmt: *mut pg_sys::AlterTableStmt) {
    // SAFETY: the subcommands are AlterTableCmd nodes whose `def` has the type their subtype implies.
    for cmd in unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() } {
        // SAFETY: `cmd` is a valid AlterTableCmd of the list; `def` is checked for NULL before use.
        unsafe {
            match (*cmd).subtype {
                pg_sys::AlterTableType::AT_AttachPartition => {
                    let partition = (*cmd).def as *mut pg_sys::PartitionCmd;
                    if partition.is_null() {
                        continue;
                    }
                    let child = lookup::pin((*partition).name, pg_sys::AccessExclusiveLock);
                    join(relid, child, "ATTACH PARTITION");
                    if labels::protected_column(relid).is_some() && has_default_partition(relid) {
                        errors::validation_refused(
                            "ATTACH PARTITION to a table with a DEFAULT partition",
                            &super::display_name(relid),
                        );
                    }
                }
                pg_sys::AlterTableType::AT_AddInherit => {
                    let parent = lookup::pin((*cmd).def as *mut pg_sys::RangeVar, pg_sys::ShareUpdateExclusiveLock);
                    join(parent, relid, "INHERIT");
                }
                _ => {}
            }
        }
    }
}

/// `child` is about to become a child of `parent`.
fn join(parent: pg_sys::Oid, child: pg_sys::Oid, what: &str) {
    if parent == pg_sys::InvalidOid || child == pg_sys::InvalidOid {
        return;
    }
    let (parent_label, child_label) = (labels::protected_label(parent), labels::table_label(child));
    if matches!(child_label, Some(Label::TenantScoped { .. })) && parent_label != child_label {
        errors::unprotected_parent_refused(what, &super::display_name(child), &super::display_name(parent));
    }
    if parent_label.is_some() || reaches_protected(child) {
        // validating the rows it attaches runs the partition keys of the parent and its ancestors
        owner_code::refuse_untrusted_partition_key(parent, what);
    }
    if parent_label.is_some() {
        if child_label.is_some() && child_label != parent_label {
            // a 'global' child, or one protected by another column, would hold rows routed from the parent unprotected
            errors::unprotected_child_refused(what, &super::display_name(child), &super::display_name(parent));
        }
        owner_code::refuse_untrusted_code_on(child, what);
    }
}

/// Whether `relid` or one of its partitions or children is protected.
fn reaches_protected(relid: pg_sys::Oid) -> bool {
    labels::protected_column(relid).is_some()
        || super::user_code::descendants(relid).into_iter().any(|r| labels::protected_column(r).is_some())
}

/// CREATE TABLE ... PARTITION OF (and INHERITS) a protected parent: a new partition validates the rows of the
/// parent's DEFAULT partition, through the parent's partition keys.
///
/// # Safety
/// `stmt` is the statement's (writable) CreateStmt.
pub unsafe fn create_table(stmt: *mut pg_sys::CreateStmt) {
    // SAFETY: the parents are RangeVars of the statement.
    let parents: Vec<pg_sys::Oid> = unsafe {
        PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations)
            .iter_ptr()
            .map(|rv| lookup::pin(rv, pg_sys::ShareUpdateExclusiveLock))
            .collect()
    };
    for parent in parents {
        if parent != pg_sys::InvalidOid && reaches_protected(parent) {
            owner_code::refuse_untrusted_partition_key(parent, "CREATE TABLE");
        }
    }
}

fn has_default_partition(relid: pg_sys::Oid) -> bool {
    crate::privileged::with_pinned_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT partdefid OPERATOR(pg_catalog.<>) 0 FROM pg_catalog.pg_partitioned_table \
             WHERE partrelid OPERATOR(pg_catalog.=) $1",
            &[relid.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// The tables a publication statement adds: refused if one is protected.
///
/// # Safety
/// `objects` is the List of PublicationObjSpec of a writable CREATE/ALTER PUBLICATION statement.
pub unsafe fn publication(objects: *mut pg_sys::List) {
    // SAFETY: the objects are PublicationObjSpec nodes; a TABLE object has its PublicationTable.
    for spec in unsafe { PgList::<pg_sys::PublicationObjSpec>::from_pg(objects).iter_ptr() } {
        // SAFETY: `spec` is a valid PublicationObjSpec of the list; `pubtable` is checked for NULL before use.
        unsafe {
            if (*spec).pubobjtype != pg_sys::PublicationObjSpecType::PUBLICATIONOBJ_TABLE || (*spec).pubtable.is_null()
            {
                continue;
            }
            let relid = lookup::pin((*(*spec).pubtable).relation, pg_sys::ShareUpdateExclusiveLock);
            if labels::protected_column(relid).is_some() {
                errors::publication_refused(&super::display_name(relid));
            }
        }
    }
}
