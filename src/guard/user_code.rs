//! Finding code that is not trusted with every tenant's rows on a table, and the tables a type reaches, from the
//! catalog (see `sql/trusted_code.sql` for what "trusted" means). Everything here reads what PostgreSQL recorded
//! (pg_depend, pg_attribute, pg_inherits) after parsing and resolving a statement, never a raw parse tree: operators
//! behind BETWEEN, implicit casts and domain checks are all there.

use crate::errors;
use crate::privileged::with_pinned_search_path;
use pgrx::pg_sys;
use pgrx::prelude::*;

fn oids(sql: &str, arg: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(sql, None, &[arg.into()])
                .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect::<Vec<_>>())
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read the catalog: {e}")))
        })
    })
}

/// The relations with a column whose values the type constrains (a domain, a type over it, arrays, composites).
pub fn type_users(type_oid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    if type_oid == pg_sys::InvalidOid {
        return Vec::new();
    }
    oids(include_str!("../../sql/queries/type_users.sql"), type_oid)
}

/// The tables typed by a composite type (`CREATE TABLE ... OF type`).
pub fn typed_tables(type_oid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    if type_oid == pg_sys::InvalidOid {
        return Vec::new();
    }
    oids("SELECT oid FROM pg_catalog.pg_class WHERE reloftype OPERATOR(pg_catalog.=) $1", type_oid)
}

/// Every partition and inheritance child of a relation, at any depth (what a statement on it without ONLY reaches).
pub fn descendants(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    oids(
        "WITH RECURSIVE d(relid) AS (SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent OPERATOR(pg_catalog.=) $1 \
         UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d ON i.inhparent OPERATOR(pg_catalog.=) d.relid) \
         SELECT relid FROM d",
        relid,
    )
}

/// The first trigger, rule, policy, default, index, constraint, statistics object or column domain of a table that
/// runs code not trusted with every tenant's rows: (object, function), the function absent for a rule.
pub fn untrusted_code_on(relid: pg_sys::Oid) -> Option<(String, Option<String>)> {
    with_pinned_search_path(|| {
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT object, callee FROM tenant._untrusted_code($1) ORDER BY 1, 2 LIMIT 1",
                    None,
                    &[relid.into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not check a table: {e}")));
            rows.into_iter().next().map(|row| {
                (row.get::<String>(1).ok().flatten().unwrap_or_default(), row.get::<String>(2).ok().flatten())
            })
        })
    })
}

/// PostgreSQL's FirstNormalObjectId: objects with a lower oid are PostgreSQL's own (created by initdb).
#[pg_extern(immutable, parallel_safe, name = "_first_normal_oid")]
fn first_normal_oid() -> i64 {
    pg_sys::FirstNormalObjectId as i64
}

/// Whether a transaction id is the current transaction's or one of its subtransactions' (a catalog row's xmin).
#[pg_extern(stable, parallel_safe, strict, name = "_written_here")]
fn written_here(xid: pg_sys::TransactionId) -> bool {
    // SAFETY: a lookup in the backend's own transaction state; non-normal ids return false.
    unsafe { pg_sys::TransactionIdIsCurrentTransactionId(xid) }
}

extension_sql_file!(
    "../../sql/trusted_code.sql",
    name = "trusted_code",
    requires = [first_normal_oid, written_here, "labels_schema"]
);
