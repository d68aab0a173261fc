//! Labels and policies: `SECURITY LABEL FOR tenant_guard ... IS 'tenant_scoped'` and what it attaches.
//!
//! Protecting a table, in one step:
//! - ENABLE and FORCE ROW LEVEL SECURITY;
//! - the RESTRICTIVE policy `tenant_isolation` and the PERMISSIVE policy `tenant_access`, both for ALL commands with
//!   USING and WITH CHECK `<column> = (SELECT tenant.current_id())` (an InitPlan: evaluated once per statement,
//!   index-friendly, plain equality on the column so that Citus can prune shards). RLS grants nothing unless some
//!   permissive policy allows it, so `tenant_access` is that permission; `tenant_isolation` is what confines: other
//!   permissive policies a DBA adds can never widen it;
//! - the column DEFAULT `tenant.current_id()` and NOT NULL.
//!
//! Partitions of a protected partitioned table are labelled (and so protected) too, including partitions created or
//! attached later, so that they are also confined when queried directly. A schema labelled `tenant_scoped` labels
//! every table in it that has the tenant column, and every table created there later; a table created there without
//! the column must be labelled `global` before its transaction commits.

pub use tenant_guard_core::label as grammar;

mod policies;
mod queue;

pub use policies::{
    after_citus_conversion, deparsed_per_row_predicate, deparsed_policy_predicate, in_internal_ddl, is_managed_policy,
    policy_predicate, prepare_for_citus, ACCESS_POLICY, ISOLATION_POLICY,
};
pub use queue::{flush_actions, init_xact, label_created_relations, relation_created, tables_altered};

use policies::check_tenant_column;
use queue::{queue, Action};

use crate::errors;
use crate::guard;
use crate::privileged::with_pinned_search_path;
use grammar::Label;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};

pub const PROVIDER: &CStr = c"tenant_guard";

/// Registers the label provider. Called from `_PG_init` (needs shared_preload_libraries).
pub fn init() {
    // SAFETY: registers a static callback under a static provider name, and a backend-lifetime relcache callback,
    // once, at load time.
    unsafe {
        pg_sys::register_label_provider(PROVIDER.as_ptr(), Some(on_relabel));
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_protected), pg_sys::Datum::from(0));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relabel(object: *const pg_sys::ObjectAddress, seclabel: *const std::ffi::c_char) {
    // SAFETY: PostgreSQL passes a valid ObjectAddress and a NUL-terminated label, or NULL to remove the label.
    let object = unsafe { &*object };
    let label = if seclabel.is_null() {
        None
    } else {
        // SAFETY: not NULL, so the NUL-terminated label PostgreSQL is about to store.
        let text = unsafe { CStr::from_ptr(seclabel) }.to_string_lossy();
        Some(grammar::parse(&text).unwrap_or_else(|e| errors::invalid_label(&text, &e)))
    };
    match object.classId {
        pg_sys::RelationRelationId => {
            if object.objectSubId != 0 {
                errors::wrong_object_type("tenant_guard labels apply to tables and schemas, not to columns");
            }
            relabel_table(object.objectId, label)
        }
        pg_sys::NamespaceRelationId => relabel_schema(object.objectId, label),
        _ => errors::wrong_object_type("tenant_guard labels apply to tables and schemas only"),
    }
}

/// The tenant column a label names, NULL for a label that protects nothing (`global`) or is not a label at all: the
/// one reading of the label grammar, for SQL (the audit, `tenant.scoped_tables`, the trusted-code checks).
#[pg_extern(immutable, parallel_safe, strict, name = "_label_column")]
pub fn label_column(label: &str) -> Option<String> {
    match grammar::parse(label) {
        Ok(Label::TenantScoped { column }) => Some(column),
        _ => None,
    }
}

/// The tenant_guard label of a table or schema, if any.
pub fn label_of(class_id: pg_sys::Oid, object_id: pg_sys::Oid) -> Option<Label> {
    let address = pg_sys::ObjectAddress { classId: class_id, objectId: object_id, objectSubId: 0 };
    // SAFETY: GetSecurityLabel reads pg_seclabel and returns a palloc'd copy or NULL.
    let text = unsafe { pg_sys::GetSecurityLabel(&address, PROVIDER.as_ptr()) };
    if text.is_null() {
        return None;
    }
    // SAFETY: not NULL, so a NUL-terminated copy of the stored label.
    grammar::parse(&unsafe { CStr::from_ptr(text) }.to_string_lossy()).ok()
}

pub fn table_label(relid: pg_sys::Oid) -> Option<Label> {
    label_of(pg_sys::RelationRelationId, relid)
}

/// The tenant column of a protected table, or of a Citus shard of one (a shard on a worker is protected like the
/// table it is a shard of: the guard refuses the same statements on it).
pub fn protected_column(relid: pg_sys::Oid) -> Option<String> {
    match table_label(relid) {
        Some(Label::TenantScoped { column }) => Some(column),
        Some(_) => None,
        None => match crate::citus::shell_of(relid).and_then(table_label) {
            Some(Label::TenantScoped { column }) => Some(column),
            _ => None,
        },
    }
}

thread_local! {
    /// Relation -> protected, for the planner's hot path; entries go with the relation's relcache invalidation
    /// (protecting or unprotecting a table always alters it, which invalidates it in every backend).
    static PROTECTED: RefCell<std::collections::HashMap<pg_sys::Oid, bool>> = RefCell::new(Default::default());
}

/// Whether a relation is protected, remembered per backend until the relation changes.
pub fn is_protected_cached(relid: pg_sys::Oid) -> bool {
    if let Some(known) = PROTECTED.with_borrow(|p| p.get(&relid).copied()) {
        return known;
    }
    let protected = protected_column(relid).is_some();
    PROTECTED.with_borrow_mut(|p| p.insert(relid, protected));
    protected
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_protected(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    PROTECTED.with_borrow_mut(|p| {
        if relid == pg_sys::InvalidOid {
            p.clear();
        } else {
            p.remove(&relid);
        }
    });
}

/// The `tenant_scoped` label of a protected table.
pub fn protected_label(relid: pg_sys::Oid) -> Option<Label> {
    table_label(relid).filter(|l| matches!(l, Label::TenantScoped { .. }))
}

/// Labels a table the way `SECURITY LABEL` would: validates and queues the protection, then stores the label.
/// (`SetSecurityLabel` only writes the catalog; it does not call the provider hook.)
fn label_table(relid: pg_sys::Oid, label: &Label) {
    relabel_table(relid, Some(label.clone()));
    let address = pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: relid, objectSubId: 0 };
    let text = CString::new(label.canonical()).expect("labels have no NUL");
    // SAFETY: a valid address of an existing table, and NUL-terminated provider and label strings.
    unsafe { pg_sys::SetSecurityLabel(&address, PROVIDER.as_ptr(), text.as_ptr()) }
}

struct Table {
    relid: pg_sys::Oid,
    relkind: u8,
    qualified: String,
}

fn table(relid: pg_sys::Oid) -> Option<Table> {
    // SAFETY: syscache lookups by oid; NULL / 0 when the relation does not exist.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        let relkind = pg_sys::get_rel_relkind(relid) as u8;
        Some(Table {
            relid,
            relkind,
            qualified: spi::quote_qualified_identifier(
                CStr::from_ptr(nsp).to_string_lossy(),
                CStr::from_ptr(name).to_string_lossy(),
            ),
        })
    }
}

/// The schema-qualified, quoted-where-needed name of a relation, as every tenant_guard message spells it.
pub fn qualified_name(relid: pg_sys::Oid) -> Option<String> {
    table(relid).map(|t| t.qualified)
}

fn is_table(relkind: u8) -> bool {
    relkind == pg_sys::RELKIND_RELATION || relkind == pg_sys::RELKIND_PARTITIONED_TABLE
}

/// Decides what a table's new label means and queues it.
///
/// Only superusers and members of tenant_guard_admin may remove or change a `tenant_scoped` label: for anyone
/// else, the owner included, 42501 (the owner of a protected table manages its shape, not who sees its rows). A
/// role that is not an administrator may protect a table only if nothing on it runs code that is not trusted with
/// every tenant's rows (a trigger of its own, a rule, ...).
fn relabel_table(relid: pg_sys::Oid, label: Option<Label>) {
    let Some(t) = table(relid) else { return };
    if !is_table(t.relkind) {
        errors::wrong_object_type("tenant_guard labels apply to tables and partitioned tables only");
    }
    let current = table_label(relid);
    if let Some(Label::TenantScoped { column }) = &current {
        if label.as_ref() != current.as_ref() {
            if !guard::is_admin() {
                errors::unprotect_refused(&t.qualified);
            }
            queue(Action::Unprotect { relid, column: column.clone() });
        }
    }
    if let Some(Label::TenantScoped { column }) = &label {
        check_tenant_column(&t, column);
        if current.as_ref() != label.as_ref() && !guard::is_admin() {
            guard::refuse_untrusted_code_on(relid, "protecting it");
            // a child is read through its parents under their row-level security: they must be protected the same way
            if let Some(parent) = parents(relid).into_iter().find(|p| table_label(*p).as_ref() != label.as_ref()) {
                errors::protected_child_of_unprotected_parent(&t.qualified, &guard::display_name(parent));
            }
        }
        queue(Action::Protect { relid, column: column.clone() });
    }
}

/// The direct parents of a relation (partitioned tables and inheritance parents).
fn parents(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    with_pinned_search_path(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid OPERATOR(pg_catalog.=) $1 ORDER BY inhseqno",
                None,
                &[relid.into()],
            )
            .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect())
            .unwrap_or_default()
        })
    })
}

/// Labels every direct child of `parent` (partitions and inheritance children) that has no tenant_guard label yet
/// (each label recurses further down): a query on the parent reads them under the parent's policies, and a query
/// on a child directly must be confined too.
fn protect_partitions(parent: pg_sys::Oid, label: &Label) {
    let children: Vec<pg_sys::Oid> = with_pinned_search_path(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent OPERATOR(pg_catalog.=) $1",
                None,
                &[parent.into()],
            )
            .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect())
            .unwrap_or_default()
        })
    });
    for child in children {
        if table_label(child).is_none() {
            label_table(child, label);
        }
    }
}

fn relabel_schema(nspid: pg_sys::Oid, label: Option<Label>) {
    let current = label_of(pg_sys::NamespaceRelationId, nspid);
    if matches!(current, Some(Label::TenantScoped { .. })) && current != label && !guard::is_admin() {
        // SAFETY: a syscache lookup of an existing schema; the name is NULL or NUL-terminated.
        let name = unsafe { guard::cstr(pg_sys::get_namespace_name(nspid)) };
        errors::unprotect_refused(&format!("schema {}", spi::quote_identifier(name)));
    }
    match label {
        None => {} // tables keep their own labels
        Some(Label::Global) => errors::invalid_parameter(
            "the 'global' label applies to tables only".into(),
            Some("Label the schema 'tenant_scoped', and single tables in it 'global'."),
        ),
        Some(Label::TenantScoped { ref column }) => {
            let tables: Vec<(pg_sys::Oid, bool)> = with_pinned_search_path(|| {
                Spi::connect(|c| {
                    c.select(
                        include_str!("../../sql/queries/schema_tables.sql"),
                        None,
                        &[nspid.into(), column.as_str().into()],
                    )
                    .map(|rows| {
                        rows.filter_map(|r| Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<bool>(2).ok()??))).collect()
                    })
                    .unwrap_or_default()
                })
            });
            for (relid, has_column) in tables {
                if has_column && table_label(relid).is_none() {
                    label_table(relid, label.as_ref().unwrap());
                }
            }
            // applied by flush_actions() once SECURITY LABEL ON SCHEMA has finished
        }
    }
}

/// Protects a table: the same as `SECURITY LABEL FOR tenant_guard ON TABLE tbl IS 'tenant_scoped column=...'`.
/// (SQL: `tenant.protect(tbl regclass, tenant_column name)`, a SQL wrapper that passes the table's oid, so that an
/// oid that names no table is a clean 42809, not a failed relation open.)
#[pg_extern(volatile, parallel_unsafe, name = "_protect")]
fn protect(tbl: Option<pg_sys::Oid>, tenant_column: Option<&str>) {
    let (Some(relid), Some(tenant_column)) = (tbl, tenant_column) else {
        errors::invalid_parameter("tenant.protect() takes a table and a column name".into(), None)
    };
    let label = grammar::parse(&Label::TenantScoped { column: tenant_column.to_owned() }.canonical())
        .unwrap_or_else(|e| errors::invalid_label(tenant_column, &e));
    let text = label.canonical();
    let Some(t) = table(relid) else { errors::wrong_object_type("tenant.protect() takes a table") };
    with_pinned_search_path(|| {
        Spi::run(&format!("SECURITY LABEL FOR tenant_guard ON TABLE {} IS {}", t.qualified, spi::quote_literal(text)))
    })
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not label the table: {e}")));
}

extension_sql_file!(
    "../../sql/labels.sql",
    name = "labels_schema",
    requires = ["admin_role", protect, label_column, deparsed_policy_predicate, deparsed_per_row_predicate]
);
