//! Running tenant_guard's own fixed queries safely, whoever called.
//!
//! Two guarantees, for every internal query (catalog lookups, the DDL that protects a table, the key tables):
//! - **A pinned `search_path`** (`pg_catalog, pg_temp`): no object the caller created, an operator `=` or a function
//!   named like a built-in one in a schema put first on the path, can be picked up by an internal query. The queries
//!   also qualify what they name (`OPERATOR(pg_catalog.=)`, `tenant.current_id()`).
//! - **Raised rights where they are needed**: the key tables (`tenant.trusted_issuer`, `tenant.data_key`, ...) are
//!   readable by superusers only, yet any role with a tenant context must be able to verify a token or decrypt. Those
//!   reads run as the bootstrap superuser, the way a SECURITY DEFINER function with `SET search_path` would: the user
//!   switch is marked `SECURITY_LOCAL_USERID_CHANGE` (so `SET ROLE` is refused meanwhile).
//!
//! The DDL that protects a table runs with the caller's rights (PostgreSQL checks that the caller owns the table),
//! under the pinned search path only.

use pgrx::pg_sys;

/// Restores the GUC nest level (and the user id, when it was switched) however the closure ends.
struct Restore {
    user: Option<(pg_sys::Oid, i32)>,
    nest: i32,
    /// Whether the settings changed inside are kept (pinned internal queries) or all discarded (another role's code
    /// ran inside: nothing it set may outlive it).
    keep: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: pops the GUC nest level pushed by `pin` and restores exactly what GetUserIdAndSecContext returned.
        // While unwinding from an ERROR the GUC level is left to (sub)transaction abort, which pops it; the user id
        // is restored either way (abort would restore the same values).
        unsafe {
            if !std::thread::panicking() {
                pg_sys::AtEOXact_GUC(self.keep, self.nest);
            }
            if let Some((user, sec)) = self.user {
                pg_sys::SetUserIdAndSecContext(user, sec);
            }
        }
    }
}

/// Pushes a GUC nest level with `search_path = pg_catalog, pg_temp` (and `jit = off`), optionally as the bootstrap
/// superuser.
fn pin(as_superuser: bool) -> Restore {
    pin_as(as_superuser.then(|| pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID)), 0, &[])
}

/// Pushes a GUC nest level with `search_path = pg_catalog, pg_temp`, `jit = off` and `settings`, optionally as
/// `user` with the extra security-context flags `restrict`.
fn pin_as(user_id: Option<pg_sys::Oid>, restrict: i32, settings: &[(&std::ffi::CStr, &std::ffi::CStr)]) -> Restore {
    // SAFETY: plain FFI getters/setters of backend-local state, paired by `Restore`. set_config_option with
    // GUC_ACTION_SAVE inside a new nest level is what fmgr_security_definer does for `SET search_path`.
    unsafe {
        let user = if user_id.is_some() {
            let mut user = pg_sys::InvalidOid;
            let mut sec = 0;
            pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
            Some((user, sec))
        } else {
            None
        };
        let nest = pg_sys::NewGUCNestLevel();
        let restore = Restore { user, nest, keep: restrict == 0 };
        if let (Some((_, sec)), Some(id)) = (user, user_id) {
            pg_sys::SetUserIdAndSecContext(id, sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | restrict);
        }
        // jit off too: internal catalog queries are cheap, but JIT compiling them would cost tens of milliseconds
        let pinned = [(c"search_path", c"pg_catalog, pg_temp"), (c"jit", c"off")];
        for (name, value) in pinned.iter().chain(settings) {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        restore
    }
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, with the caller's rights.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    let _restore = pin(false);
    f()
}

/// Runs `f` as the bootstrap superuser with `search_path = pg_catalog, pg_temp`.
pub fn as_bootstrap_superuser<R>(f: impl FnOnce() -> R) -> R {
    let _restore = pin(true);
    f()
}

/// Runs `f` as `owner`, the owner of a protected table, in `tenant`'s context, the way that tenant's own statements
/// would run: row-level security confines it to the tenant's rows, and whatever code the owner attached to the table
/// (triggers, defaults, constraints, index expressions, cascades) runs with the owner's rights, never raised, as a
/// restricted operation (as VACUUM runs an owner's index expressions: no `SET ROLE`, no temporary objects). No
/// parallel workers (they would not see the context). For moving a tenant's rows (`transfer`).
pub fn as_owner_in_tenant<R>(owner: pg_sys::Oid, tenant: uuid::Uuid, f: impl FnOnce() -> R) -> R {
    let _restore = pin_as(
        Some(owner),
        pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        &[(c"max_parallel_workers_per_gather", c"0")],
    );
    crate::context::with_internal_tenant(tenant, f)
}

/// Runs `f` (read-only SPI queries) with a fresh snapshot instead of the transaction's: what tenant_guard reads to
/// decide (trusted issuers, data keys) must be what is committed now, not what a REPEATABLE READ transaction, or a
/// snapshot it imported, saw when it began. The snapshot is a fresh catalog snapshot (an MVCC snapshot of now,
/// like GetLatestSnapshot's), because PostgreSQL refuses GetLatestSnapshot during a parallel query, leader and
/// workers alike, and a token may be verified for the first time there.
pub fn with_latest_snapshot<R>(f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            // on an ERROR, (sub)transaction abort resets the active snapshot stack itself
            if !std::thread::panicking() {
                // SAFETY: pops the snapshot pushed below, the top of the stack once `f` has returned.
                unsafe { pg_sys::PopActiveSnapshot() };
            }
        }
    }
    // SAFETY: drops the cached catalog snapshot so that the next one is taken now, and pushes a copy of it (the
    // catalog snapshot itself is static data that later invalidations reset), popped when `f` returns.
    unsafe {
        pg_sys::InvalidateCatalogSnapshot();
        pg_sys::PushActiveSnapshot(pg_sys::GetCatalogSnapshot(pg_sys::InvalidOid));
    }
    let _pop = Pop;
    f()
}

/// One row of [`select_latest`].
pub struct LatestRow {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl LatestRow {
    /// Column `col` (from 1), converted while the row is alive.
    pub fn get<A: pgrx::FromDatum>(&self, col: i32) -> Option<A> {
        let mut isnull = false;
        // SAFETY: the tuple and descriptor are SPI's current result, alive for the duration of the callback; the
        // column number is the query's own; FromDatum copies the value out.
        unsafe {
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, col, &mut isnull);
            A::from_datum(datum, isnull)
        }
    }
}

/// Runs a fixed, read-only query with the latest snapshot (see [`with_latest_snapshot`]) and maps each row.
///
/// pgrx's SPI client asks SPI for a fresh snapshot per command once the transaction has a transaction id, and under
/// REPEATABLE READ that is the transaction's snapshot: a transaction that had written anything would read, and
/// cache, issuers or keys as they were when it began. SPI in read-only mode uses the active snapshot instead, which
/// is the latest one pushed here. The caller must be inside `Spi::connect`.
pub fn select_latest<T>(
    sql: &std::ffi::CStr,
    args: &[(pg_sys::Oid, Option<pg_sys::Datum>)],
    mut map: impl FnMut(&LatestRow) -> T,
) -> Result<Vec<T>, i32> {
    with_latest_snapshot(|| {
        let mut types: Vec<pg_sys::Oid> = args.iter().map(|(t, _)| *t).collect();
        let mut values: Vec<pg_sys::Datum> = args.iter().map(|(_, v)| v.unwrap_or(pg_sys::Datum::from(0))).collect();
        let nulls: Vec<std::ffi::c_char> =
            args.iter().map(|(_, v)| if v.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        // SAFETY: SPI is connected (the caller's Spi::connect); the query is a fixed, NUL-terminated SELECT; the
        // argument arrays have one entry per parameter; read_only = true makes SPI use the active snapshot.
        unsafe {
            let status = pg_sys::SPI_execute_with_args(
                sql.as_ptr(),
                args.len() as i32,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                true,
                0,
            );
            if status != pg_sys::SPI_OK_SELECT as i32 {
                return Err(status);
            }
            let table = pg_sys::SPI_tuptable;
            if table.is_null() {
                return Ok(Vec::new());
            }
            let rows = std::slice::from_raw_parts((*table).vals, pg_sys::SPI_processed as usize);
            Ok(rows.iter().map(|tuple| map(&LatestRow { tuple: *tuple, desc: (*table).tupdesc })).collect())
        }
    })
}
