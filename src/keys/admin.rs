//! The key admin API: create, rotate, shred a tenant's data keys, and rewrap them all after a master-key change.
//! SECURITY DEFINER in SQL (see sql/keys.sql), executable by tenant_guard_admin.

use super::master::{current_kek, load_kek, new_dek, unwrap_dek, wrap_dek};
use super::nonce::nonce;
use super::table::{check_writable, insert_key, key_ref, with_tenant_locked, State};
use super::{cache, ensure_key, Ensured};
use crate::ciphertext;
use crate::errors;
use crate::gucs::KekSlot;
use crate::privileged::as_bootstrap_superuser;
use crate::uuids::{from_pg, to_pg};
use pgrx::prelude::*;
use uuid::Uuid;

/// Creates the tenant's first data key if it has none. Returns the active version.
pub fn create(tenant: &Uuid) -> u32 {
    crate::citus::replication::check_admin_here("create a data key");
    cache::sync();
    match ensure_key(tenant, true) {
        Ensured::Created(version, _) => version,
        Ensured::Existing(row) => row.version,
    }
}

/// Adds a new active version; the previous one is retired (it still decrypts). Returns the new version.
pub fn rotate(tenant: &Uuid) -> u32 {
    crate::citus::replication::check_admin_here("rotate a data key");
    cache::sync();
    check_writable("rotate a data key");
    let version = with_tenant_locked(tenant, |client, rows| {
        if rows.iter().any(|r| r.state == State::Destroyed) {
            errors::keys_destroyed(Some(tenant));
        }
        let version = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        let (_dek, wrapped) = new_dek(tenant, version, key_ref(client, tenant).as_deref());
        client
            .update(
                "UPDATE tenant.data_key SET state = 'retired', retired_at = now() \
                 WHERE tenant = $1 AND state = 'active'",
                None,
                &[to_pg(tenant).into()],
            )
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not retire a data key: {e}")));
        if !insert_key(client, tenant, version, wrapped) {
            errors::key_creation_conflict();
        }
        version
    });
    crate::citus::replication::keys_changed(Some(&[*tenant]));
    version
}

/// Destroys every data key version of the tenant and leaves a tombstone. Returns how many versions were destroyed.
pub fn shred(tenant: &Uuid) -> i32 {
    crate::citus::replication::check_admin_here("shred a tenant's keys");
    cache::sync();
    check_writable("shred a tenant's keys");
    let live = with_tenant_locked(tenant, |client, rows| {
        let live = rows.iter().filter(|r| r.state != State::Destroyed).count() as i32;
        if rows.is_empty() {
            client
                .update(
                    "INSERT INTO tenant.data_key (tenant, version, state, wrapped, destroyed_at) \
                     VALUES ($1, 1, 'destroyed', NULL, now())",
                    None,
                    &[to_pg(tenant).into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not record the shred: {e}")));
        } else if live > 0 {
            client
                .update(
                    "UPDATE tenant.data_key SET state = 'destroyed', wrapped = NULL, destroyed_at = now() \
                     WHERE tenant = $1 AND state <> 'destroyed'",
                    None,
                    &[to_pg(tenant).into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not shred the keys: {e}")));
        }
        live
    });
    crate::citus::replication::keys_changed(Some(&[*tenant]));
    live
}

/// Rewraps every data key that the previous master key wrapped under the current one. Returns how many it rewrapped.
pub fn rewrap_all() -> i64 {
    crate::citus::replication::check_admin_here("rewrap data keys");
    cache::sync();
    check_writable("rewrap data keys");
    cache::transaction_local();
    let current = current_kek(true);
    let previous = load_kek(KekSlot::Previous, true);
    let rewrapped = as_bootstrap_superuser(|| {
        Spi::connect_mut(|client| {
            // Blocks key creation, rotation and shredding until commit, so no key is missed; reads go on.
            client
                .update("LOCK TABLE tenant.data_key IN SHARE ROW EXCLUSIVE MODE", None, &[])
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not lock tenant.data_key: {e}")));
            let rows: Vec<(pgrx::Uuid, i32, Vec<u8>)> = client
                .update(
                    "SELECT tenant, version, wrapped FROM tenant.data_key k WHERE wrapped IS NOT NULL \
                        AND NOT EXISTS (SELECT 1 FROM tenant.key_provider p \
                                         WHERE p.tenant OPERATOR(pg_catalog.=) k.tenant) \
                     ORDER BY tenant, version",
                    None,
                    &[],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read tenant.data_key: {e}")))
                .filter_map(|row| Some((row.get(1).ok()??, row.get(2).ok()??, row.get::<Vec<u8>>(3).ok()??)))
                .collect();
            let mut rewrapped = Vec::new();
            let mut unknown = 0i64;
            for (tenant, version, wrapped) in rows {
                let tenant = from_pg(&tenant);
                let id = ciphertext::wrapped_kek_id(&wrapped)
                    .unwrap_or_else(|_| errors::wrapped_key_corrupt(version as u32));
                if id == current.id {
                    continue;
                }
                match previous.as_ref().filter(|p| p.id == id) {
                    Some(prev) => {
                        let dek = ciphertext::unwrap(&prev.key, tenant.as_bytes(), version as u32, &wrapped)
                            .unwrap_or_else(|_| errors::wrapped_key_corrupt(version as u32));
                        let again = ciphertext::wrap(&current.key, tenant.as_bytes(), version as u32, &dek, &nonce());
                        rewrapped.push((tenant, version, again));
                    }
                    None => unknown += 1,
                }
            }
            if unknown > 0 {
                errors::kek_unknown(Some(unknown));
            }
            for (tenant, version, wrapped) in &rewrapped {
                client
                    .update(
                        "UPDATE tenant.data_key SET wrapped = $3 WHERE tenant = $1 AND version = $2",
                        None,
                        &[to_pg(tenant).into(), (*version).into(), wrapped.clone().into()],
                    )
                    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a data key: {e}")));
            }
            rewrapped.len() as i64
        })
    });
    if rewrapped > 0 {
        crate::citus::replication::keys_changed(None);
    }
    rewrapped
}

/// Longest key reference accepted, in bytes (the table's CHECK says the same).
const MAX_KEY_REF: usize = 512;

/// Refuses a key reference no provider should be given (22023).
pub fn check_key_ref(r: &str) {
    if r.is_empty() || r.len() > MAX_KEY_REF || r.chars().any(char::is_control) {
        errors::invalid_parameter(
            format!("key_ref must be 1 to {MAX_KEY_REF} bytes long, without control characters"),
            Some("Pass the reference of the tenant's key in its KMS (an ARN, a key name), as the key command expects it."),
        );
    }
}

/// Gives `tenant` its own master key (bring your own key): `key_ref` names it to `tenant_guard.tenant_kek_command`
/// (None: back to the platform's master key). Every live data key version of the tenant is unwrapped with the key
/// that wraps it now and wrapped again with the new one, in place; keys it creates later are wrapped with the new
/// one. Returns how many versions it rewrapped.
pub fn set_provider(tenant: &Uuid, new_ref: Option<&str>) -> i32 {
    crate::citus::replication::check_admin_here("set a tenant's key provider");
    if let Some(r) = new_ref {
        check_key_ref(r);
    }
    cache::sync();
    check_writable("set a tenant's key provider");
    let rewrapped = with_tenant_locked(tenant, |client, rows| {
        if rows.iter().any(|r| r.state == State::Destroyed) {
            errors::keys_destroyed(Some(tenant));
        }
        let old_ref = key_ref(client, tenant);
        let mut again = Vec::new();
        for row in &rows {
            let wrapped = row.wrapped.as_deref().unwrap_or_else(|| errors::wrapped_key_corrupt(row.version));
            let (dek, _) = unwrap_dek(tenant, row.version, wrapped, old_ref.as_deref());
            again.push((row.version, wrap_dek(tenant, row.version, &dek, new_ref)));
        }
        if rows.is_empty() {
            if let Some(r) = new_ref {
                // the provider must work before it is relied on
                super::master::tenant_kek(tenant, r, true);
            }
        }
        for (version, wrapped) in &again {
            client
                .update(
                    "UPDATE tenant.data_key SET wrapped = $3 WHERE tenant = $1 AND version = $2",
                    None,
                    &[to_pg(tenant).into(), (*version as i32).into(), wrapped.clone().into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a data key: {e}")));
        }
        let stored = match new_ref {
            Some(r) => client.update(
                "INSERT INTO tenant.key_provider (tenant, key_ref) VALUES ($1, $2) \
                 ON CONFLICT (tenant) DO UPDATE SET key_ref = EXCLUDED.key_ref, set_at = now()",
                None,
                &[to_pg(tenant).into(), r.into()],
            ),
            None => client.update("DELETE FROM tenant.key_provider WHERE tenant = $1", None, &[to_pg(tenant).into()]),
        };
        stored.unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store the key provider: {e}")));
        again.len() as i32
    });
    crate::citus::replication::keys_changed(Some(&[*tenant]));
    rewrapped
}

// ---------------------------------------------------------------------------------------------------------------
// SQL API. Thin wrappers; the logic is above.

/// Creates the tenant's data key if it has none; returns its active version.
#[pg_extern(volatile, parallel_unsafe, strict, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn create_key(tenant: pgrx::Uuid) -> i32 {
    create(&from_pg(&tenant)) as i32
}

/// Adds a new active data key version for the tenant; returns it. Older versions still decrypt.
#[pg_extern(volatile, parallel_unsafe, strict, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_key(tenant: pgrx::Uuid) -> i32 {
    rotate(&from_pg(&tenant)) as i32
}

/// Crypto-shredding: destroys every data key version of the tenant. Returns how many versions it destroyed.
#[pg_extern(volatile, parallel_unsafe, strict, security_definer, name = "shred")]
#[search_path(pg_catalog, pg_temp)]
fn shred_tenant(tenant: pgrx::Uuid) -> i32 {
    shred(&from_pg(&tenant))
}

/// Rewraps every data key under the current master key; returns how many it rewrapped.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn rewrap_keys() -> i64 {
    rewrap_all()
}

/// Bring your own key: wraps the tenant's data keys with its own master key, named by `key_ref` to
/// `tenant_guard.tenant_kek_command` (NULL: the platform's master key again). Returns how many versions it rewrapped.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_key_provider(tenant: Option<pgrx::Uuid>, key_ref: Option<&str>) -> i32 {
    let Some(tenant) = tenant else { errors::invalid_parameter("tenant must not be NULL".into(), None) };
    set_provider(&from_pg(&tenant), key_ref)
}
