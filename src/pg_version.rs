//! What differs between the PostgreSQL majors tenant_guard supports (15, 17, 18), each difference in one place and
//! commented. Everything else compiles against each major's headers unchanged.

use pgrx::pg_sys;

/// The backend's local transaction id: it changes with every top-level transaction, so per-transaction caches key
/// on it. PostgreSQL 17 moved it into the backend's virtual transaction id (`PGPROC.vxid.lxid`, commit
/// "Store the virtual transaction id in PGPROC"); 15 and 16 have `PGPROC.lxid`.
pub fn local_transaction_id() -> u32 {
    // SAFETY: MyProc is set for every backend that runs SQL, before any hook or function of ours can run.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            (*pg_sys::MyProc).lxid
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            (*pg_sys::MyProc).vxid.lxid
        }
    }
}

/// A backend's virtual transaction id (backend id or proc number, local transaction id): unique for the server's
/// life, because PostgreSQL keeps each slot's local transaction counter across the backends that use it. (A PGPROC
/// and a local transaction id alone are not: on 15 and 16 a new backend may take an old backend's PGPROC with
/// another slot's counter.) 15 and 16: `PGPROC.backendId` and `PGPROC.lxid`; 17 moved both into `PGPROC.vxid`.
///
/// # Safety
/// `proc` is a valid PGPROC.
pub unsafe fn virtual_transaction_id(proc: *mut pg_sys::PGPROC) -> (i32, u32) {
    // SAFETY: as the caller promises.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            ((*proc).backendId, (*proc).lxid)
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            ((*proc).vxid.procNumber, (*proc).vxid.lxid)
        }
    }
}

/// The oid of the catalog `pg_statistic_ext` (fixed at 3381 in its catalog header since PostgreSQL 10). pgrx 0.18's
/// bindings for 18 do not export the constant `StatisticExtRelationId`, so it is spelled out there.
#[cfg(not(feature = "pg18"))]
pub const STATISTIC_EXT_RELATION_ID: pg_sys::Oid = pg_sys::StatisticExtRelationId;
#[cfg(feature = "pg18")]
pub const STATISTIC_EXT_RELATION_ID: pg_sys::Oid = pg_sys::Oid::from_u32(3381);
