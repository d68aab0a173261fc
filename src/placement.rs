//! Silo, pool and hybrid behind one API: which tenants this database serves.
//!
//! - **Silo**: `tenant.bind_database(tenant)` binds the database to one tenant; tokens for any other tenant are
//!   refused (28000). The schema, the labels and the policies stay the same, so the application's SQL is the
//!   same in a silo and in the pool.
//! - **Pool**: any tenant, except those placed in another database with `tenant.place_tenant(tenant, database)`:
//!   their tokens are refused with an error that names where the tenant went, so a stale route can neither read
//!   nor write the old copy.
//! - **Placement**: `tenant.placement` says which database (and server) serves which tenant, for the application or
//!   a router to read.
//!
//! Both live in tables (sql/placement.sql), dumped with the database, and are read with the trusted issuers into
//! the key store every backend caches ([`crate::issuers::load`]): a change reaches every backend through
//! `invalidation` like an issuer change, from its next statement on, contexts already established included. The
//! check itself is pure Rust (`tenant_guard_core::token::Placement`).

use crate::errors;
use crate::privileged::select_latest;
use crate::token::{Location, Placement};
use crate::uuids::{from_pg, to_pg};
use pgrx::prelude::*;
use uuid::Uuid;

fn fail<T>(_status: i32) -> T {
    errors::internal("tenant_guard could not read the tenant placement".into())
}

/// Reads the binding and the tenants served elsewhere. The caller is inside `Spi::connect`, as the bootstrap
/// superuser.
pub fn load() -> Placement {
    let bound = select_latest(c"SELECT tenant FROM tenant.database_binding", &[], |r| r.get::<pgrx::Uuid>(1))
        .unwrap_or_else(fail)
        .into_iter()
        .flatten()
        .next()
        .map(|t| from_pg(&t));
    let rows = select_latest(
        c"SELECT tenant, database, server FROM tenant.placement \
           WHERE server IS NOT NULL \
              OR database OPERATOR(pg_catalog.<>) pg_catalog.current_database()::pg_catalog.text",
        &[],
        |r| (r.get::<pgrx::Uuid>(1), r.get::<String>(2), r.get::<String>(3)),
    )
    .unwrap_or_else(fail);
    let mut placement = Placement { bound, ..Default::default() };
    for (tenant, database, server) in rows {
        if let (Some(tenant), Some(database)) = (tenant, database) {
            placement.elsewhere.insert(from_pg(&tenant), Location { database, server });
        }
    }
    placement
}

/// The tenant this database is bound to, read now (in the caller's snapshot); None in a pool.
pub(crate) fn bound_tenant() -> Result<Option<pgrx::Uuid>, pgrx::spi::Error> {
    Spi::connect(|client| {
        let rows = client.select("SELECT tenant FROM tenant.database_binding", Some(1), &[])?;
        Ok(rows.into_iter().next().and_then(|r| r.get::<pgrx::Uuid>(1).ok().flatten()))
    })
}

fn tenant_required(tenant: Option<pgrx::Uuid>) -> Uuid {
    let Some(tenant) = tenant else { errors::invalid_parameter("tenant must not be NULL".into(), None) };
    let tenant = from_pg(&tenant);
    if tenant.is_nil() {
        errors::invalid_parameter("the nil uuid is not a tenant".into(), None);
    }
    tenant
}

fn spi_error<T>(what: &str) -> impl FnOnce(pgrx::spi::Error) -> T + '_ {
    move |e| errors::internal(format!("tenant_guard could not {what}: {e}"))
}

/// Places `tenant` in `database` (on `server`, or this server when NULL): served there, refused here unless that
/// is this database. Returns the database it was placed in before, if any.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn place_tenant(
    tenant: Option<pgrx::Uuid>,
    database: Option<&str>,
    server: default!(Option<&str>, "NULL"),
) -> Option<String> {
    let tenant = tenant_required(tenant);
    let Some(database) = database else { errors::invalid_parameter("database must not be NULL".into(), None) };
    crate::issuers::check_text("database", database, 63);
    if let Some(server) = server {
        crate::issuers::check_text("server", server, 255);
    } else {
        let exists = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) $1::pg_catalog.name)",
            &[database.into()],
        )
        .unwrap_or_else(spi_error("read pg_database"))
        .unwrap_or(false);
        if !exists {
            errors::unknown_database(database);
        }
    }
    // transactions that hold the tenant's context end first; new ones wait, then see the placement
    crate::context::wait_for_contexts(Some(&tenant));
    Spi::get_one_with_args::<String>(
        "WITH old AS (SELECT database FROM tenant.placement WHERE tenant OPERATOR(pg_catalog.=) $1), \
              new AS (INSERT INTO tenant.placement AS p (tenant, database, server) VALUES ($1, $2, $3) \
                      ON CONFLICT (tenant) DO UPDATE SET database = EXCLUDED.database, server = EXCLUDED.server, \
                      placed_at = pg_catalog.now() RETURNING 1) \
         SELECT (SELECT database FROM old) FROM new",
        &[to_pg(&tenant).into(), database.into(), server.into()],
    )
    .unwrap_or_else(spi_error("store the placement"))
}

/// Forgets where `tenant` is served: served here again (if this database serves it). Returns whether it was placed.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn unplace_tenant(tenant: Option<pgrx::Uuid>) -> bool {
    let tenant = tenant_required(tenant);
    Spi::get_one_with_args::<bool>(
        "WITH d AS (DELETE FROM tenant.placement WHERE tenant OPERATOR(pg_catalog.=) $1 RETURNING 1) \
         SELECT count(*) OPERATOR(pg_catalog.>) 0 FROM d",
        &[to_pg(&tenant).into()],
    )
    .unwrap_or_else(spi_error("remove the placement"))
    .unwrap_or(false)
}

/// Binds this database to `tenant` (a silo): tokens for any other tenant are refused here. Refused while the
/// database is bound to another tenant, or while a protected table holds rows of another tenant. The placement
/// table records that this database serves the tenant.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn bind_database(tenant: Option<pgrx::Uuid>) {
    let tenant = tenant_required(tenant);
    // no binding can change meanwhile; transactions holding any tenant's context end first (their rows are then in
    // the tables checked below), and new ones wait, then see the binding
    Spi::run("LOCK TABLE tenant.database_binding IN EXCLUSIVE MODE").unwrap_or_else(spi_error("lock the binding"));
    crate::context::wait_for_contexts(None);
    let current = crate::placement::bound_tenant().unwrap_or_else(spi_error("read the binding"));
    match current.map(|t| from_pg(&t)) {
        Some(bound) if bound == tenant => return,
        Some(_) => errors::already_bound(),
        None => {}
    }
    let tables: Vec<(String, String)> = Spi::connect(|client| {
        client
            .select(
                "SELECT table_name::pg_catalog.text, tenant_column::pg_catalog.text FROM tenant.scoped_tables \
                  ORDER BY 1",
                None,
                &[],
            )
            .unwrap_or_else(spi_error("list the protected tables"))
            .filter_map(|r| Some((r.get::<String>(1).ok()??, r.get::<String>(2).ok()??)))
            .collect()
    });
    for (table, column) in tables {
        if holds_other_tenants(&table, &column, &tenant) {
            errors::bind_other_tenants_rows(&table);
        }
    }
    Spi::run_with_args(
        "INSERT INTO tenant.database_binding (tenant) VALUES ($1); \
         ",
        &[to_pg(&tenant).into()],
    )
    .unwrap_or_else(spi_error("store the binding"));
    Spi::run_with_args(
        "INSERT INTO tenant.placement (tenant, database, server) \
         VALUES ($1, pg_catalog.current_database(), NULL) \
         ON CONFLICT (tenant) DO UPDATE SET database = EXCLUDED.database, server = NULL, placed_at = pg_catalog.now()",
        &[to_pg(&tenant).into()],
    )
    .unwrap_or_else(spi_error("store the placement"));
}

/// Whether `table` (a qualified name from the catalog) holds rows whose `column` is not `tenant`. Read as the
/// bootstrap superuser: every row counts.
fn holds_other_tenants(table: &str, column: &str, tenant: &Uuid) -> bool {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE {} IS DISTINCT FROM $1)",
        pgrx::spi::quote_identifier(column)
    );
    crate::privileged::as_bootstrap_superuser(|| {
        Spi::get_one_with_args::<bool>(&sql, &[to_pg(tenant).into()])
            .unwrap_or_else(spi_error("read a protected table"))
            .unwrap_or(false)
    })
}

/// A table about to be protected in a database bound to a tenant: refused while it holds other tenants' rows (the
/// silo would hold them, protected).
pub fn check_table_to_protect(table: &str, column: &str) {
    let bound = crate::privileged::as_bootstrap_superuser(bound_tenant).unwrap_or_else(spi_error("read the binding"));
    let Some(bound) = bound else { return };
    if holds_other_tenants(table, column, &from_pg(&bound)) {
        errors::bound_table_other_rows(table);
    }
}

/// Lifts the binding: the database serves any tenant not placed elsewhere. Returns whether it was bound.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn unbind_database() -> bool {
    Spi::get_one::<bool>(
        "WITH d AS (DELETE FROM tenant.database_binding RETURNING 1) SELECT count(*) OPERATOR(pg_catalog.>) 0 FROM d",
    )
    .unwrap_or_else(spi_error("remove the binding"))
    .unwrap_or(false)
}

/// The tenant this database is bound to; NULL in a pool. (Everyone may read `tenant.database_binding`.)
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn database_tenant() -> Option<pgrx::Uuid> {
    crate::placement::bound_tenant().unwrap_or_else(spi_error("read the binding"))
}

extension_sql_file!(
    "../sql/placement.sql",
    name = "placement",
    requires = ["admin_role", place_tenant, unplace_tenant, bind_database, unbind_database, database_tenant],
);
