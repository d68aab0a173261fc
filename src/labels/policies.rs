//! The policy set of a protected table: row-level security enabled and forced, the two managed policies, the
//! tenant column's DEFAULT and NOT NULL; applied and removed as tenant_guard's own DDL, which the tamper guard lets
//! through.

use super::{protect_partitions, Table};
use crate::citus;
use crate::errors;
use crate::privileged::with_pinned_search_path;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CString;
use tenant_guard_core::label::Label;

pub const ISOLATION_POLICY: &str = "tenant_isolation";
pub const ACCESS_POLICY: &str = "tenant_access";

thread_local! {
    /// Depth of DDL that tenant_guard itself is running: the tamper guard lets it through.
    static INTERNAL_DDL: Cell<u32> = const { Cell::new(0) };
}

/// Whether `name` is one of the two policies tenant_guard attaches.
pub fn is_managed_policy(name: &str) -> bool {
    name == ISOLATION_POLICY || name == ACCESS_POLICY
}

/// Whether tenant_guard's own DDL is running (the tamper guard must not refuse it).
pub fn in_internal_ddl() -> bool {
    INTERNAL_DDL.get() > 0
}

/// Runs tenant_guard's own DDL, one statement per call (Citus forwards a statement's text to the shards as is, and
/// a worker refuses several commands in one).
fn internal_ddl(sql: &str) {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            INTERNAL_DDL.set(INTERNAL_DDL.get() - 1);
        }
    }
    INTERNAL_DDL.set(INTERNAL_DDL.get() + 1);
    let _depth = Depth;
    with_pinned_search_path(|| Spi::run(sql))
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not apply its policies: {e}")));
}

/// Where tenant_guard's DDL on a table must take effect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// A table outside Citus: this node only.
    Local,
    /// A Citus table on the coordinator: the table and every shard on every worker, whatever
    /// `citus.enable_ddl_propagation` says in the session.
    Shards,
    /// A Citus table's shell on a worker: this node only (the coordinator's DDL reaches the shards).
    ShellOnly,
}

fn reach(t: &Table) -> Reach {
    if !(citus::is_citus_table(t.relid) || CONVERTING.get()) {
        Reach::Local
    } else if citus::is_worker() {
        Reach::ShellOnly
    } else {
        Reach::Shards
    }
}

fn ddl(reach: Reach, sql: &str) {
    match reach {
        Reach::Local => internal_ddl(sql),
        Reach::Shards => citus::with_ddl_propagation(true, || internal_ddl(sql)),
        Reach::ShellOnly => citus::with_ddl_propagation(false, || internal_ddl(sql)),
    }
}

/// DDL that only this node needs. The tenant column's DEFAULT: Citus refuses a DEFAULT on the distribution column of
/// the shards, and the node that plans an INSERT fills it in before routing the row. Its NOT NULL: Citus refuses a
/// NULL distribution column itself, and the policies' WITH CHECK refuses a NULL tenant in every table (validating
/// NOT NULL on a shard would read every tenant's rows there, which a worker refuses to a table owner).
fn ddl_this_node(reach: Reach, sql: &str) {
    match reach {
        Reach::Local => internal_ddl(sql),
        Reach::Shards | Reach::ShellOnly => citus::with_ddl_propagation(false, || internal_ddl(sql)),
    }
}

thread_local! {
    /// Set while Citus converts tables (create_distributed_table, ...): policies get the form Citus accepts.
    static CONVERTING: Cell<bool> = const { Cell::new(false) };
}

/// Refuses (before the label is stored) a tenant column that is missing or not a uuid.
pub(super) fn check_tenant_column(t: &Table, column: &str) {
    let ccol = CString::new(column).expect("labels have no NUL");
    // SAFETY: syscache lookups on an existing relation.
    let (attnum, atttype) = unsafe {
        let attnum = pg_sys::get_attnum(t.relid, ccol.as_ptr());
        let atttype = if attnum == pg_sys::InvalidAttrNumber as i16 {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_atttype(t.relid, attnum)
        };
        (attnum, atttype)
    };
    if attnum == pg_sys::InvalidAttrNumber as i16 {
        errors::missing_tenant_column(&t.qualified, column);
    }
    if atttype != pg_sys::UUIDOID {
        errors::tenant_column_not_uuid(&t.qualified, column);
    }
}

/// The policy expression, fully qualified so that search_path cannot change what it means. `per_row` is the form
/// for Citus tables, whose engine refuses a subquery in a policy: the function is then called per row (STABLE, and
/// cheap after the first call of a statement) instead of once per statement as an InitPlan.
pub fn policy_predicate(column: &str, per_row: bool) -> String {
    if per_row {
        format!("{} OPERATOR(pg_catalog.=) tenant.current_id()", spi::quote_identifier(column))
    } else {
        format!("{} OPERATOR(pg_catalog.=) (SELECT tenant.current_id())", spi::quote_identifier(column))
    }
}

/// The policy expression as PostgreSQL deparses it (`pg_get_expr` with `pg_catalog` on the search path), which
/// `tenant._policy_intact` compares the stored policies with (SQL: `tenant._policy_expression(column)`).
#[pg_extern(immutable, parallel_safe, strict, name = "_policy_expression")]
pub fn deparsed_policy_predicate(column: &str) -> String {
    format!("({} = ( SELECT tenant.current_id() AS current_id))", spi::quote_identifier(column))
}

/// The per-row form (Citus tables) as PostgreSQL deparses it (SQL: `tenant._policy_expression_per_row(column)`).
#[pg_extern(immutable, parallel_safe, strict, name = "_policy_expression_per_row")]
pub fn deparsed_per_row_predicate(column: &str) -> String {
    format!("({} = tenant.current_id())", spi::quote_identifier(column))
}

pub(super) fn apply_protection(t: &Table, column: &str) {
    crate::placement::check_table_to_protect(&t.qualified, column);
    let reach = reach(t);
    let (tbl, col) = (&t.qualified, spi::quote_identifier(column));
    let pred = policy_predicate(column, reach != Reach::Local);
    ddl(reach, &format!("ALTER TABLE {tbl} ENABLE ROW LEVEL SECURITY"));
    ddl(reach, &format!("ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY"));
    ddl_this_node(reach, &format!("ALTER TABLE {tbl} ALTER COLUMN {col} SET DEFAULT tenant.current_id()"));
    ddl_this_node(reach, &format!("ALTER TABLE {tbl} ALTER COLUMN {col} SET NOT NULL"));
    for drop in drop_managed_policies(t) {
        ddl(reach, &drop);
    }
    ddl(
        reach,
        &format!(
            "CREATE POLICY {ISOLATION_POLICY} ON {tbl} AS RESTRICTIVE FOR ALL TO PUBLIC USING ({pred}) WITH CHECK ({pred})"
        ),
    );
    ddl(
        reach,
        &format!(
            "CREATE POLICY {ACCESS_POLICY} ON {tbl} AS PERMISSIVE FOR ALL TO PUBLIC USING ({pred}) WITH CHECK ({pred})"
        ),
    );
    let label = Label::TenantScoped { column: column.to_owned() };
    if reach == Reach::Shards && !CONVERTING.get() {
        citus::replication::label_on_workers(tbl, Some(&label.canonical()));
    }
    protect_partitions(t.relid, &label);
}

/// Gives the policies of every protected table that is not yet a Citus table the form Citus accepts: called when
/// a Citus function that converts tables is about to run (it copies a table's policies to its shards and refuses
/// the InitPlan form). The ones that stay local get their InitPlan form back when the statement ends.
pub fn prepare_for_citus() {
    let tables: Vec<(pg_sys::Oid, String)> = with_pinned_search_path(|| {
        Spi::connect(|c| {
            c.select(include_str!("../../sql/queries/protected_local_tables.sql"), None, &[])
                .map(|rows| {
                    rows.filter_map(|r| Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<String>(2).ok()??))).collect()
                })
                .unwrap_or_default()
        })
    });
    CONVERTING.set(true);
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            CONVERTING.set(false);
        }
    }
    let _done = Done;
    for (relid, column) in &tables {
        if let Some(t) = super::table(*relid) {
            apply_protection(&t, column);
        }
    }
    PREPARED.with_borrow_mut(|p| p.extend(tables));
}

/// After the statement that converted tables: those that did not become Citus tables get their InitPlan form back.
pub fn after_citus_conversion() {
    citus::set_converting(false);
    let prepared = PREPARED.take();
    for (relid, column) in prepared {
        if let (Some(t), false) = (super::table(relid), citus::is_citus_table(relid)) {
            if super::protected_column(relid).as_deref() == Some(column.as_str()) {
                apply_protection(&t, &column);
            }
        }
    }
}

/// At the end of a transaction: nothing prepared is left for the next one.
pub fn forget_prepared() {
    PREPARED.with_borrow_mut(Vec::clear);
}

thread_local! {
    /// Tables whose policies prepare_for_citus changed, with their tenant column.
    static PREPARED: std::cell::RefCell<Vec<(pg_sys::Oid, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub(super) fn remove_protection(t: &Table, column: &str) {
    let reach = reach(t);
    let (tbl, col) = (&t.qualified, spi::quote_identifier(column));
    for drop in drop_managed_policies(t) {
        ddl(reach, &drop);
    }
    ddl_this_node(reach, &format!("ALTER TABLE {tbl} ALTER COLUMN {col} DROP DEFAULT"));
    // Turn row-level security off again only if no other policy relies on it.
    let others = with_pinned_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1)",
            &[t.relid.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(true);
    if !others {
        ddl(reach, &format!("ALTER TABLE {tbl} NO FORCE ROW LEVEL SECURITY"));
        ddl(reach, &format!("ALTER TABLE {tbl} DISABLE ROW LEVEL SECURITY"));
    }
    if reach == Reach::Shards {
        let label = super::table_label(t.relid).map(|l| l.canonical());
        citus::replication::label_on_workers(tbl, label.as_deref());
    }
}

/// DROP POLICY statements for the managed policies the table has now (none if it has none: no NOTICE noise).
fn drop_managed_policies(t: &Table) -> Vec<String> {
    let existing: Vec<String> = with_pinned_search_path(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT polname::pg_catalog.text FROM pg_catalog.pg_policy \
                  WHERE polrelid OPERATOR(pg_catalog.=) $1 \
                    AND polname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ARRAY[$2, $3])",
                None,
                &[t.relid.into(), ISOLATION_POLICY.into(), ACCESS_POLICY.into()],
            )
            .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
            .unwrap_or_default()
        })
    });
    existing.iter().map(|p| format!("DROP POLICY {} ON {}", spi::quote_identifier(p), t.qualified)).collect()
}
