//! The policy set of a protected table: row-level security enabled and forced, the two managed policies, the
//! tenant column's DEFAULT and NOT NULL; applied and removed as tenant_guard's own DDL, which the tamper guard lets
//! through.

use super::{protect_partitions, Table};
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

/// The policy expression, fully qualified so that search_path cannot change what it means.
pub fn policy_predicate(column: &str) -> String {
    format!("{} OPERATOR(pg_catalog.=) (SELECT tenant.current_id())", spi::quote_identifier(column))
}

/// The policy expression as PostgreSQL deparses it (`pg_get_expr` with `pg_catalog` on the search path), which
/// `tenant._policy_intact` compares the stored policies with (SQL: `tenant._policy_expression(column)`).
#[pg_extern(immutable, parallel_safe, strict, name = "_policy_expression")]
pub fn deparsed_policy_predicate(column: &str) -> String {
    format!("({} = ( SELECT tenant.current_id() AS current_id))", spi::quote_identifier(column))
}

pub(super) fn apply_protection(t: &Table, column: &str) {
    let (tbl, col, pred) = (&t.qualified, spi::quote_identifier(column), policy_predicate(column));
    internal_ddl(&format!(
        "ALTER TABLE {tbl} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY;
         ALTER TABLE {tbl} ALTER COLUMN {col} SET DEFAULT tenant.current_id();
         ALTER TABLE {tbl} ALTER COLUMN {col} SET NOT NULL;
         {drop}
         CREATE POLICY {ISOLATION_POLICY} ON {tbl} AS RESTRICTIVE FOR ALL TO PUBLIC
             USING ({pred}) WITH CHECK ({pred});
         CREATE POLICY {ACCESS_POLICY} ON {tbl} AS PERMISSIVE FOR ALL TO PUBLIC
             USING ({pred}) WITH CHECK ({pred});",
        drop = drop_managed_policies(t)
    ));
    protect_partitions(t.relid, &Label::TenantScoped { column: column.to_owned() });
}

pub(super) fn remove_protection(t: &Table, column: &str) {
    let (tbl, col) = (&t.qualified, spi::quote_identifier(column));
    internal_ddl(&format!("{} ALTER TABLE {tbl} ALTER COLUMN {col} DROP DEFAULT;", drop_managed_policies(t)));
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
        internal_ddl(&format!(
            "ALTER TABLE {tbl} NO FORCE ROW LEVEL SECURITY; ALTER TABLE {tbl} DISABLE ROW LEVEL SECURITY;"
        ));
    }
}

/// DROP POLICY statements for the managed policies the table has now (none if it has none: no NOTICE noise).
fn drop_managed_policies(t: &Table) -> String {
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
    existing.iter().map(|p| format!("DROP POLICY {} ON {};", spi::quote_identifier(p), t.qualified)).collect()
}
