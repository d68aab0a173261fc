//! Issuers and data keys are the same on every node of a Citus cluster.
//!
//! On the coordinator, every change to the trusted issuers (whatever made it: `trust_issuer`, `untrust_issuer`,
//! `scope_issuer`, an administrator's rows in `tenant.issuer_tenant`) and to a tenant's data keys (`create_key`,
//! `rotate_key`, `shred`, `rewrap_keys`, the key an encryption creates) is sent to every worker in the same
//! transaction, as the new contents of the changed rows; Citus commits it on all nodes with two-phase commit, or on
//! none. Wrapped keys travel wrapped: every node has the same master key (`tenant_guard.kek_*`, set by the DBA on
//! each node). A worker takes these changes only from the coordinator: anything else that would change its issuers
//! or keys, an encryption that would create a key included, is refused there.

use super::calls;
use crate::errors;
use crate::invalidation::Watched;
use crate::privileged::as_bootstrap_superuser;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::cell::Cell;
use uuid::Uuid;

thread_local! {
    /// Set while a worker applies what the coordinator sent.
    static APPLYING: Cell<bool> = const { Cell::new(false) };
}

/// After a statement changed a table of issuers or keys (its statement trigger): a coordinator sends the issuers
/// to the workers; a worker refuses the change unless it comes from the coordinator.
pub fn table_changed(what: Watched) {
    if !super::installed() {
        return;
    }
    if super::is_worker() {
        if !APPLYING.get() {
            errors::citus_worker_refused(match what {
                Watched::Issuers => "change trusted issuers or revocations",
                Watched::Keys => "change data keys",
            });
        }
    } else if what == Watched::Issuers && super::is_coordinator() {
        let state =
            as_bootstrap_superuser(|| Spi::get_one::<JsonB>(include_str!("../../sql/queries/issuer_state.sql")))
                .ok()
                .flatten()
                .map(|j| j.0.to_string())
                .unwrap_or_else(|| errors::internal("tenant_guard could not read the trusted issuers".into()));
        send(&format!("SELECT tenant._replica_issuers({})", spi::quote_literal(&state)));
    }
}

/// Before an administrator's key change (create, rotate, shred, rewrap): a worker takes them from the coordinator.
pub fn check_admin_here(what: &str) {
    if super::is_worker() && !APPLYING.get() {
        errors::citus_worker_refused(what);
    }
}

/// Before a data key would be created on this node: a worker never creates one by itself.
pub fn check_key_creation(tenant: &Uuid) {
    if super::is_worker() && !APPLYING.get() {
        errors::key_missing_on_worker(tenant);
    }
}

/// After a change to data keys on the coordinator: the workers get the rows of these tenants (all when None).
pub fn keys_changed(tenants: Option<&[Uuid]>) {
    if !super::is_coordinator() {
        return;
    }
    let ids: Option<Vec<pgrx::Uuid>> = tenants.map(|t| t.iter().map(crate::uuids::to_pg).collect());
    let rows = as_bootstrap_superuser(|| {
        Spi::get_one_with_args::<JsonB>(include_str!("../../sql/queries/key_rows.sql"), &[ids.clone().into()])
    })
    .ok()
    .flatten()
    .map(|j| j.0.to_string())
    .unwrap_or_else(|| errors::internal("tenant_guard could not read tenant.data_key".into()));
    let tenants_sql = match &ids {
        None => "NULL".to_string(),
        Some(ids) => format!(
            "ARRAY[{}]::pg_catalog.uuid[]",
            ids.iter()
                .map(|u| spi::quote_literal(uuid::Uuid::from_bytes(*u.as_bytes()).to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    send(&format!("SELECT tenant._replica_keys({tenants_sql}, {})", spi::quote_literal(&rows)));
}

/// A Citus table's label on every worker's copy of the table, where the session does not propagate DDL (Citus
/// propagates SECURITY LABEL itself otherwise): the workers' guard protects the shards of a labelled table.
pub fn label_on_workers(table: &str, label: Option<&str>) {
    if !super::is_coordinator() || super::ddl_propagation_on() {
        return;
    }
    let label = label.map_or("NULL".to_string(), spi::quote_literal);
    send_as_caller("SET LOCAL citus.enable_ddl_propagation TO off");
    send_as_caller(&format!("SECURITY LABEL FOR tenant_guard ON TABLE {table} IS {label}"));
}

fn send_as_caller(command: &str) {
    calls::send_to_workers(command)
}

fn send(command: &str) {
    // As the bootstrap superuser: Citus connects to the workers as the current user, and only a superuser may run
    // the functions that apply the change there.
    as_bootstrap_superuser(|| calls::send_to_workers(command))
}

fn applying<R>(f: impl FnOnce() -> R) -> R {
    if !super::is_worker() {
        errors::citus_replica_refused();
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            APPLYING.set(false);
        }
    }
    APPLYING.set(true);
    let _reset = Reset;
    f()
}

/// On a worker: replaces the trusted issuers and the revocations with the coordinator's (SQL: superusers only;
/// the coordinator calls it).
#[pg_extern(volatile, parallel_unsafe, name = "_replica_issuers")]
fn replica_issuers(state: Option<&str>) {
    let state = not_null(state);
    apply(
        &[
            "DELETE FROM tenant.trusted_issuer",
            "INSERT INTO tenant.trusted_issuer SELECT * FROM pg_catalog.jsonb_populate_recordset(\
             NULL::tenant.trusted_issuer, $1::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'issuers')",
            "INSERT INTO tenant.issuer_tenant SELECT * FROM pg_catalog.jsonb_populate_recordset(\
             NULL::tenant.issuer_tenant, $1::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'tenants')",
            "DELETE FROM tenant.revoked_token",
            "INSERT INTO tenant.revoked_token SELECT * FROM pg_catalog.jsonb_populate_recordset(\
             NULL::tenant.revoked_token, $1::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'revoked_tokens')",
            "DELETE FROM tenant.revoked_subject",
            "INSERT INTO tenant.revoked_subject SELECT * FROM pg_catalog.jsonb_populate_recordset(\
             NULL::tenant.revoked_subject, $1::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'revoked_subjects')",
            "DELETE FROM tenant.suspended_tenant",
            "INSERT INTO tenant.suspended_tenant SELECT * FROM pg_catalog.jsonb_populate_recordset(\
             NULL::tenant.suspended_tenant, $1::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'suspended_tenants')",
        ],
        vec![state.into()],
    )
}

/// On a worker: replaces the data keys of these tenants (all when NULL) with the coordinator's rows.
#[pg_extern(volatile, parallel_unsafe, name = "_replica_keys")]
fn replica_keys(tenants: Option<Vec<Option<pgrx::Uuid>>>, rows: Option<&str>) {
    let rows = not_null(rows);
    apply(
        &[
            "DELETE FROM tenant.data_key WHERE $1 IS NULL OR tenant OPERATOR(pg_catalog.=) ANY ($1)",
            "INSERT INTO tenant.data_key SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::tenant.data_key, \
             $2::pg_catalog.jsonb)",
        ],
        vec![tenants.into(), rows.into()],
    )
}

/// The coordinator's change, which is never NULL (checked after the node: elsewhere these functions refuse first).
fn not_null(value: Option<&str>) -> &str {
    if !super::is_worker() {
        errors::citus_replica_refused();
    }
    value.unwrap_or_else(|| errors::invalid_parameter("the coordinator's change must not be NULL".into(), None))
}

/// Runs the statements (each may use any of `args`) as the bootstrap superuser, marked as the coordinator's change.
fn apply(statements: &[&str], args: Vec<pgrx::datum::DatumWithOid<'_>>) {
    applying(|| {
        as_bootstrap_superuser(|| {
            Spi::connect_mut(|client| {
                for sql in statements {
                    client.update(*sql, None, &args).unwrap_or_else(|e| {
                        errors::internal(format!("tenant_guard could not apply a change from the coordinator: {e}"))
                    });
                }
            })
        })
    })
}

/// Whether this node is the coordinator of a Citus cluster (SQL: `tenant._citus_coordinator()`, for the audit).
#[pg_extern(stable, parallel_safe, name = "_citus_coordinator")]
fn citus_coordinator() -> bool {
    super::is_coordinator()
}

extension_sql_file!(
    "../../sql/citus.sql",
    name = "citus",
    requires =
        [replica_issuers, replica_keys, citus_coordinator, "invalidation", "labels_schema", "revocations_schema"]
);
