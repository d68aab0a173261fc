//! `tenant.data_key`: one row per tenant and key version, its state (`active`, `retired`, `destroyed`) and the
//! wrapped key (see `ciphertext` for the format), readable by superusers only. A tenant has at most one active
//! version. Changes to one tenant's keys are serialized by a transaction-level lock of tenant_guard's own
//! ([`lock_tenant`]), which no SQL function can take.

use super::cache;
use crate::errors;
use crate::privileged::{as_bootstrap_superuser, select_latest};
use crate::uuids::to_pg;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use uuid::Uuid;

/// First key of the locks tenant_guard takes on a tenant's keys (ASCII "tgk" and 1).
const LOCK_CLASS: u32 = 0x7467_6b01;
/// The advisory-lock subtype of those locks: `pg_advisory_lock(bigint)` takes 1 and `pg_advisory_lock(int, int)`
/// takes 2, so no SQL function can take (and hold, to stall another tenant's first encryption) one of ours.
const LOCK_SUBTYPE: u16 = 0x7467;

/// Takes the transaction-level lock on a tenant's keys, waiting for whoever holds it.
fn lock_tenant(tenant: &Uuid) {
    let words = tenant.as_bytes().chunks(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")));
    let tag = pg_sys::LOCKTAG {
        // SAFETY: plain read of a backend global.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: LOCK_CLASS,
        locktag_field3: words.fold(0, |acc, w| acc ^ w),
        locktag_field4: LOCK_SUBTYPE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a valid lock tag; a transaction-level lock (released at commit or abort), waiting as long as it takes.
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false) };
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Retired,
    Destroyed,
}

pub struct Row {
    pub version: u32,
    pub state: State,
    pub wrapped: Option<Vec<u8>>,
    /// The tenant's own key reference (`tenant.set_key_provider`), when its own master key wraps its data keys.
    pub key_ref: Option<String>,
}

fn parse_state(text: &str) -> State {
    match text {
        "active" => State::Active,
        "retired" => State::Retired,
        _ => State::Destroyed,
    }
}

/// A tenant's key rows, read with the latest snapshot (see `privileged::select_latest`). Inside `Spi::connect`.
fn select_rows(tenant: &Uuid) -> Vec<Row> {
    select_latest(
        c"SELECT k.version, k.state, k.wrapped, p.key_ref \
            FROM tenant.data_key k LEFT JOIN tenant.key_provider p ON p.tenant OPERATOR(pg_catalog.=) k.tenant \
           WHERE k.tenant OPERATOR(pg_catalog.=) $1 ORDER BY k.version",
        &[(pg_sys::UUIDOID, to_pg(tenant).into_datum())],
        |row| Row {
            version: row.get::<i32>(1).unwrap_or(0) as u32,
            state: parse_state(&row.get::<String>(2).unwrap_or_default()),
            wrapped: row.get::<Vec<u8>>(3),
            key_ref: row.get::<String>(4),
        },
    )
    .unwrap_or_else(|_| errors::internal("tenant_guard could not read tenant.data_key".into()))
}

/// Reads a tenant's key rows with the latest snapshot (see the module notes), as the bootstrap superuser.
pub fn read_rows(tenant: &Uuid) -> Vec<Row> {
    // SAFETY: plain read of a backend global.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        cache::transaction_local();
    }
    as_bootstrap_superuser(|| Spi::connect(|_client| select_rows(tenant)))
}

/// Raises 25006 unless keys can be written here and now.
pub fn check_writable(what: &str) {
    // SAFETY: plain reads of backend state.
    if unsafe { pg_sys::RecoveryInProgress() || pg_sys::XactReadOnly } {
        errors::keys_read_only(what);
    }
}

/// Runs `f` as the bootstrap superuser with the tenant's key rows locked against concurrent changes.
pub fn with_tenant_locked<R>(tenant: &Uuid, f: impl FnOnce(&mut SpiClient<'_>, Vec<Row>) -> R) -> R {
    cache::transaction_local();
    lock_tenant(tenant);
    as_bootstrap_superuser(|| {
        Spi::connect_mut(|client| {
            // what the lock's previous holder committed
            let rows = select_rows(tenant);
            f(client, rows)
        })
    })
}

/// The tenant's own key reference, read now under its lock (None: the platform's master key wraps its keys).
pub fn key_ref(client: &SpiClient<'_>, tenant: &Uuid) -> Option<String> {
    client
        .select(
            "SELECT key_ref FROM tenant.key_provider WHERE tenant OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[to_pg(tenant).into()],
        )
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read tenant.key_provider: {e}")))
        .next()
        .and_then(|r| r.get::<String>(1).ok().flatten())
}

pub fn insert_key(client: &mut SpiClient<'_>, tenant: &Uuid, version: u32, wrapped: Vec<u8>) -> bool {
    let inserted = client
        .update(
            "INSERT INTO tenant.data_key (tenant, version, state, wrapped) VALUES ($1, $2, 'active', $3) \
             ON CONFLICT DO NOTHING RETURNING version",
            None,
            &[to_pg(tenant).into(), (version as i32).into(), wrapped.into()],
        )
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a data key: {e}")));
    !inserted.is_empty()
}
