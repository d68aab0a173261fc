//! Running tenant_guard's own fixed queries with the rights they need, whoever called.
//!
//! The key tables (`tenant.trusted_issuer`, `tenant.data_key`) are readable by superusers only, yet any role with a
//! tenant context must be able to verify a token or decrypt. Internal queries therefore run as the bootstrap
//! superuser, the way a SECURITY DEFINER function with `SET search_path` would: the user switch is marked
//! `SECURITY_LOCAL_USERID_CHANGE` (so `SET ROLE` is refused meanwhile), and `search_path` is pinned to
//! `pg_catalog, pg_temp`, so that no object the caller created (an operator, a function) can be picked up by the
//! privileged query. The queries themselves are fixed text with parameters.

use pgrx::pg_sys;

/// Runs `f` as the bootstrap superuser with `search_path = pg_catalog, pg_temp`.
pub fn as_bootstrap_superuser<R>(f: impl FnOnce() -> R) -> R {
    struct Restore {
        user: pg_sys::Oid,
        sec: i32,
        nest: i32,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores exactly what GetUserIdAndSecContext returned and pops the GUC nest level pushed
            // below. While unwinding from an ERROR the GUC level is left to (sub)transaction abort, which pops it;
            // the user id is restored either way (abort would restore the same values).
            unsafe {
                if !std::thread::panicking() {
                    pg_sys::AtEOXact_GUC(true, self.nest);
                }
                pg_sys::SetUserIdAndSecContext(self.user, self.sec);
            }
        }
    }
    let mut user = pg_sys::InvalidOid;
    let mut sec = 0;
    // SAFETY: plain FFI getters/setters of backend-local state, paired by `Restore`. set_config_option with
    // GUC_ACTION_SAVE inside a new nest level is what fmgr_security_definer does for `SET search_path`.
    let _restore = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        let nest = pg_sys::NewGUCNestLevel();
        let restore = Restore { user, sec, nest };
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        restore
    };
    f()
}
