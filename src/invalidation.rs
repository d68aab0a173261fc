//! How every backend learns that a table tenant_guard caches from has changed, one mechanism for both caches:
//! trusted issuers (`tenant.trusted_issuer`, with the scopes in `tenant.issuer_tenant` and the revocations in
//! `tenant.revoked_token`, `tenant.revoked_subject` and `tenant.suspended_tenant`) and data keys
//! (`tenant.data_key`).
//!
//! A statement trigger on each of those tables (`tenant._table_changed_trigger`, sql/invalidation.sql) calls
//! `tenant._table_changed`, which queues a relcache invalidation of the watched table; PostgreSQL sends it to every
//! backend at commit. Each backend's relcache callback bumps the table's generation: a cache filled at an older
//! generation is stale. Backends process invalidations at the start of each transaction and on lock acquisition;
//! [`accept_once_per_statement`] makes a backend look at pending ones at each statement too, for caches that must
//! not lag a statement behind (a shredded tenant's keys).

use crate::errors;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;

/// A table whose rows tenant_guard caches in every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Trusted issuers and their scopes.
    Issuers,
    /// Data keys.
    Keys,
}

impl Watched {
    const ALL: [Watched; 2] = [Watched::Issuers, Watched::Keys];

    /// The table whose relcache invalidation stands for a change.
    fn table(self) -> &'static CStr {
        match self {
            Watched::Issuers => c"trusted_issuer",
            Watched::Keys => c"data_key",
        }
    }

    /// The watched table's oid (InvalidOid if the extension is not installed here).
    fn relid(self) -> pg_sys::Oid {
        // SAFETY: catalog lookups by name, missing_ok.
        unsafe {
            let schema = pg_sys::get_namespace_oid(c"tenant".as_ptr(), true);
            if schema == pg_sys::InvalidOid {
                return pg_sys::InvalidOid;
            }
            pg_sys::get_relname_relid(self.table().as_ptr(), schema)
        }
    }

    /// The tables whose changes are changes of this one.
    fn sources(self) -> &'static [&'static str] {
        match self {
            Watched::Issuers => &[
                "tenant.trusted_issuer",
                "tenant.issuer_tenant",
                "tenant.revoked_token",
                "tenant.revoked_subject",
                "tenant.suspended_tenant",
                "tenant.placement",
                "tenant.database_binding",
            ],
            Watched::Keys => &["tenant.data_key", "tenant.key_provider"],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

thread_local! {
    /// Per watched table: the generation, bumped by invalidations.
    static GENERATIONS: [Cell<u64>; 2] = const { [Cell::new(1), Cell::new(1)] };
    /// Per watched table: its oid, from the first time a cache is filled from it (see `watch`).
    static RELIDS: [Cell<pg_sys::Oid>; 2] = const { [Cell::new(pg_sys::InvalidOid), Cell::new(pg_sys::InvalidOid)] };
    /// (local transaction id, statement start) of the last statement that accepted invalidations.
    static LAST_STATEMENT: Cell<(u32, i64)> = const { Cell::new((0, i64::MIN)) };
}

/// Registers the relcache callback. Called once from `_PG_init`.
pub fn init() {
    // SAFETY: registers a backend-lifetime callback with a static function and no argument.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0)) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    for watched in Watched::ALL {
        let ours = RELIDS.with(|r| r[watched.index()].get());
        if relid == pg_sys::InvalidOid || (ours != pg_sys::InvalidOid && relid == ours) {
            bump(watched);
        }
    }
}

/// The current generation of a watched table: a cache filled at an older one is stale.
pub fn generation(watched: Watched) -> u64 {
    GENERATIONS.with(|g| g[watched.index()].get())
}

/// Marks every cache of a watched table stale (a transaction-local cache at the end of its transaction).
pub fn bump(watched: Watched) {
    GENERATIONS.with(|g| {
        let cell = &g[watched.index()];
        cell.set(cell.get().wrapping_add(1));
    });
}

/// Watches a table before a cache is filled from it, and returns the generation to fill it at: keep what was filled
/// only if the generation is still the same afterwards. The table is watched (its oid known to the invalidation
/// callback) before its rows are read, so that an invalidation that arrives while they are read, even one that
/// PostgreSQL processes as the reading query takes its lock, moves the generation on rather than being lost.
pub fn watch(watched: Watched) -> u64 {
    let relid = watched.relid();
    RELIDS.with(|r| r[watched.index()].set(relid));
    generation(watched)
}

/// Accepts pending invalidations once per statement.
pub fn accept_once_per_statement() {
    // SAFETY: a plain read of backend state.
    let now = (crate::pg_version::local_transaction_id(), unsafe { pg_sys::GetCurrentStatementStartTimestamp() });
    if LAST_STATEMENT.get() != now {
        LAST_STATEMENT.set(now);
        // SAFETY: what every lock acquisition does; it runs our callbacks, which only touch Cells.
        unsafe { pg_sys::AcceptInvalidationMessages() };
    }
}

/// Called by the statement trigger on each watched table: queues the invalidation of the table it stands for.
#[pg_extern(volatile, parallel_unsafe)]
fn _table_changed(relid: pg_sys::Oid) {
    let name = crate::labels::qualified_name(relid);
    let Some(watched) = Watched::ALL.into_iter().find(|w| w.sources().contains(&name.as_deref().unwrap_or(""))) else {
        errors::invalid_parameter(
            "tenant._table_changed() is called only by the triggers on tenant_guard's own tables".into(),
            Some("It is internal to tenant_guard."),
        )
    };
    crate::citus::replication::table_changed(watched);
    let target = watched.relid();
    // SAFETY: queues a relcache invalidation of an existing relation (its trigger is running), sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(target) }
}

extension_sql_file!(
    "../sql/invalidation.sql",
    name = "invalidation",
    requires = [_table_changed, "issuers_schema", "keys_schema", "revocations_schema", "placement"]
);
