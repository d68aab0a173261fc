//! Key sets fetched from identity providers (OpenID Connect Discovery): `tenant.trust_issuer_discovery` registers
//! an issuer whose keys a background worker fetches from its `/.well-known/openid-configuration` and `jwks_uri`, and
//! keeps fresh.
//!
//! One worker per database listed in `tenant_guard.discovery_databases` ([`worker`]). It fetches over HTTPS only
//! ([`fetch`]), outside any transaction, and stores a key set only when it passes the same rules as
//! `tenant.trust_issuer`; a failed fetch is recorded (`tenant.issuers` shows it) and keeps the last good set. It
//! refetches when the provider's cache lifetime ends, within `tenant_guard.discovery_min_refresh` and
//! `discovery_max_refresh`, and early when a backend meets a token whose `kid` no trusted key has (at most once per
//! minimum interval). No query backend ever waits on the network: the SQL functions record what to do and wake the
//! worker when their transaction commits; a backend that meets an unknown `kid` raises a flag in shared memory.

pub mod fetch;
pub mod worker;

use crate::errors;
use crate::gucs;
use crate::issuers::{check_text, MAX_ISSUER_BYTES};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use tenant_guard_core::discovery;

/// Most databases with a discovery worker.
pub const MAX_DATABASES: usize = 32;
const SHMEM_NAME: &CStr = c"tenant_guard discovery workers";

/// What the backends of one database tell its worker, and how they wake it.
#[repr(C)]
struct Slot {
    /// The worker's database (InvalidOid until it has connected).
    database: AtomicU32,
    /// The worker's latch.
    latch: AtomicPtr<pg_sys::Latch>,
    /// A discovered issuer was registered or asked to refresh.
    requested: AtomicBool,
    /// A token named a `kid` no trusted key has.
    unknown_key: AtomicBool,
}

#[repr(C)]
struct Shared {
    slots: [Slot; MAX_DATABASES],
}

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
static mut SHARED: *mut Shared = std::ptr::null_mut();

thread_local! {
    /// This transaction asked the worker for a fetch: wake it at commit, when it can see what was asked.
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// Registers the workers and the shared memory they are reached through. Called once from `_PG_init`, after
/// `gucs::init`.
pub fn init() {
    // SAFETY: _PG_init runs once in the postmaster while it loads shared_preload_libraries; the previous hooks are
    // chained, and the transaction callback is a static function with no argument.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
    }
    worker::register_all();
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: chaining, then requesting this module's space while the postmaster sizes shared memory.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Shared>());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: chaining; then the struct is made once (all zero: no worker, nothing asked) or found.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        SHARED = crate::shmem::init_struct(SHMEM_NAME, std::mem::size_of::<Shared>(), |_| {}) as *mut Shared;
    }
}

/// This backend's database's slot, if a worker serves it.
fn my_slot() -> Option<&'static Slot> {
    // SAFETY: SHARED is null or the shared struct, which lives as long as the server; its members are atomics.
    let shared = unsafe { SHARED.as_ref()? };
    // SAFETY: plain read of a backend global.
    let me = unsafe { pg_sys::MyDatabaseId };
    shared.slots.iter().find(|s| s.database.load(Ordering::Acquire) == me.to_u32())
}

/// The slot of the `index`th listed database, for its worker.
fn slot(index: usize) -> Option<&'static Slot> {
    // SAFETY: as in my_slot.
    unsafe { SHARED.as_ref() }.and_then(|s| s.slots.get(index))
}

fn wake(slot: &Slot) {
    let latch = slot.latch.load(Ordering::Acquire);
    if !latch.is_null() {
        // SAFETY: the latch is the worker's PGPROC latch, in shared memory for the server's lifetime; setting a
        // latch of another process is what it is for.
        unsafe { pg_sys::SetLatch(latch) };
    }
}

/// A token named a `kid` that no trusted key has: the worker may fetch early (it decides how often).
pub fn unknown_key_seen() {
    if let Some(slot) = my_slot() {
        if !slot.unknown_key.swap(true, Ordering::AcqRel) {
            wake(slot);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT if WAKE_AT_COMMIT.replace(false) => {
            if let Some(slot) = my_slot() {
                slot.requested.store(true, Ordering::Release);
                wake(slot);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT => WAKE_AT_COMMIT.set(false),
        _ => {}
    }
}

fn current_database() -> String {
    // SAFETY: the name of this backend's database, palloc'd in the current context.
    unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if name.is_null() {
            return String::new();
        }
        CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// Registers an issuer whose key set the discovery worker fetches and keeps fresh (SQL: see sql/discovery.sql).
/// Returns at once: the fetch happens after the transaction commits; `tenant.issuers` shows its outcome.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "trust_issuer_discovery")]
#[search_path(pg_catalog, pg_temp)]
fn trust_issuer_discovery(
    issuer: Option<&str>,
    audience: default!(Option<&str>, "NULL"),
    tenant_claim: default!(Option<&str>, "NULL"),
    tenants: default!(Option<Vec<Option<pgrx::Uuid>>>, "NULL"),
    require_cert_binding: default!(Option<bool>, "NULL"),
    require_jti: default!(Option<bool>, "NULL"),
    allowed_hosts: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    let Some(issuer) = issuer else { errors::invalid_parameter("issuer must not be NULL".into(), None) };
    check_text("issuer", issuer, MAX_ISSUER_BYTES);
    let configuration_url = discovery::configuration_url(issuer).unwrap_or_else(|e| {
        errors::invalid_parameter(e.to_string(), Some("Pass the issuer exactly as its tokens' iss claim names it."))
    });
    let hosts: Vec<String> = allowed_hosts
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let h = h.unwrap_or_else(|| errors::invalid_parameter("allowed_hosts must not contain NULL".into(), None));
            discovery::allowed_host(&h).unwrap_or_else(|e| errors::invalid_parameter(e.to_string(), None))
        })
        .collect();
    let database = current_database();
    if !gucs::discovery_databases().contains(&database) {
        errors::discovery_not_enabled(&database);
    }
    crate::issuers::register(issuer, None, audience, tenant_claim, tenants, require_cert_binding, require_jti);
    // keys fetched from a place the new allowed hosts no longer allow stop verifying now, not at the next fetch
    let fetched_from = Spi::get_one_with_args::<String>(
        "SELECT jwks_uri FROM tenant.issuer_discovery WHERE issuer = $1",
        &[issuer.into()],
    )
    .ok()
    .flatten();
    if fetched_from.is_some_and(|uri| discovery::check_host(&uri, issuer, &hosts).is_err()) {
        Spi::run_with_args(
            "UPDATE tenant.trusted_issuer SET jwks = '{\"keys\": []}', updated_at = pg_catalog.now() WHERE issuer = $1",
            &[issuer.into()],
        )
        .and_then(|_| {
            Spi::run_with_args("UPDATE tenant.issuer_discovery SET jwks_uri = NULL WHERE issuer = $1", &[issuer.into()])
        })
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not register the discovery: {e}")));
    }
    Spi::run_with_args(
        "INSERT INTO tenant.issuer_discovery AS d (issuer, configuration_url, allowed_hosts, refresh_requested) \
         VALUES ($1, $2, $3, true) \
         ON CONFLICT (issuer) DO UPDATE SET configuration_url = EXCLUDED.configuration_url, \
             allowed_hosts = EXCLUDED.allowed_hosts, refresh_requested = true",
        &[issuer.into(), configuration_url.into(), hosts.into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not register the discovery: {e}")));
    WAKE_AT_COMMIT.set(true);
}

/// Asks the discovery worker to fetch a discovered issuer's key set now (after this transaction commits).
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn refresh_issuer(issuer: Option<&str>) {
    let Some(issuer) = issuer else { errors::invalid_parameter("issuer must not be NULL".into(), None) };
    let found = Spi::get_one_with_args::<bool>(
        "WITH u AS (UPDATE tenant.issuer_discovery SET refresh_requested = true WHERE issuer = $1 RETURNING 1) \
         SELECT pg_catalog.count(*) > 0 FROM u",
        &[issuer.into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not request the refresh: {e}")))
    .unwrap_or(false);
    if !found {
        errors::not_discovered(issuer);
    }
    WAKE_AT_COMMIT.set(true);
}

extension_sql_file!(
    "../../sql/discovery.sql",
    name = "discovery",
    requires = ["issuers_schema", trust_issuer_discovery, refresh_issuer],
);
